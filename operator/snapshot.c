/*
 * snapshot.c — Kubernetes objects -> mesh objects. See snapshot.h.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube.h"
#include "policy.h"
#include "snapshot.h"

#define LBL_USE_WAYPOINT    "istio.io/use-waypoint"
#define LBL_USE_WAYPOINT_NS "istio.io/use-waypoint-namespace"
#define LBL_WAYPOINT_FOR    "istio.io/waypoint-for"
#define ANN_REDIRECTION     "ambient.istio.io/redirection"
#define ANN_WP_REPLICAS     "ambit.dev/waypoint-replicas"

void op_mesh_config_defaults(struct op_mesh_config *cfg)
{
    cfg->cluster_id = "Kubernetes";
    cfg->trust_domain = "cluster.local";
    cfg->dns_domain = "cluster.local";
    cfg->root_ns = "istio-system";
    cfg->waypoint_class = "istio-waypoint";
}

static void diag(struct op_snapshot_diags *d, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void diag(struct op_snapshot_diags *d, const char *fmt, ...)
{
    va_list ap;

    if (d == NULL)
        return;
    if (d->n >= OP_SNAPSHOT_MAX_DIAGS) {
        d->dropped++;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(d->items[d->n++], sizeof(d->items[0]), fmt, ap);
    va_end(ap);
}

static json_t *jget(const json_t *o, const char *a, const char *b)
{
    json_t *v = json_object_get(o, a);

    return b ? json_object_get(v, b) : v;
}

static const char *jstr(const json_t *o, const char *a, const char *b)
{
    return json_string_value(jget(o, a, b));
}

static const json_t *ns_obj(const struct op_inputs *in, const char *ns)
{
    return json_object_get(in->namespaces, ns);
}

/* ------------------------------------------------------------------ waypoints */

static unsigned long hash_str(const char *s)
{
    unsigned long h = 5381;

    while (*s)
        h = h * 33 + (unsigned char)*s++;
    return h;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool node_ready(const json_t *node)
{
    json_t *conds = jget(node, "status", "conditions"), *c;
    size_t i;

    if (json_is_true(jget(node, "spec", "unschedulable")))
        return false;
    json_array_foreach(conds, i, c) {
        if (json_is_string(json_object_get(c, "type")) &&
            strcmp(json_string_value(json_object_get(c, "type")), "Ready") == 0)
            return json_is_string(json_object_get(c, "status")) &&
                   strcmp(json_string_value(json_object_get(c, "status")), "True") == 0;
    }
    return false;
}

json_t *op_waypoint_place(const json_t *gw, const json_t *nodes)
{
    const char *names[1024];
    size_t n = 0, replicas = 1, start;
    const char *k, *ann;
    json_t *v, *out;
    char key[512];

    json_object_foreach((json_t *)nodes, k, v) {
        if (n < 1024 && node_ready(v))
            names[n++] = k;
    }
    out = json_array();
    if (out == NULL || n == 0)
        return out;
    qsort(names, n, sizeof(names[0]), cmp_str);
    ann = dp_kube_annotation(gw, ANN_WP_REPLICAS);
    if (ann != NULL) {
        long r = strtol(ann, NULL, 10);

        if (r >= 1)
            replicas = r > 64 ? 64 : (size_t)r;
    }
    if (replicas > n)
        replicas = n;
    if (dp_kube_obj_key(gw, key, sizeof(key)) < 0)
        key[0] = '\0';
    start = hash_str(key) % n;
    for (size_t i = 0; i < replicas; i++)
        json_array_append_new(out, json_string(names[(start + i) % n]));
    return out;
}

/* waypoint-for of a Gateway: its label, else default "service" */
static const char *waypoint_for(const json_t *gw)
{
    const char *f = dp_kube_label(gw, LBL_WAYPOINT_FOR);

    if (f == NULL || (strcmp(f, "service") != 0 && strcmp(f, "workload") != 0 &&
                      strcmp(f, "all") != 0 && strcmp(f, "none") != 0))
        return "service";
    return f;
}

static json_t *svc_cluster_ips(const json_t *svc)
{
    json_t *out = json_array(), *ips = jget(svc, "spec", "clusterIPs"), *ip;
    const char *one = jstr(svc, "spec", "clusterIP");
    size_t i;

    if (out == NULL)
        return NULL;
    if (json_array_size(ips) == 0 && one != NULL && strcmp(one, "None") != 0 && one[0])
        json_array_append_new(out, json_string(one));
    json_array_foreach(ips, i, ip) {
        if (json_is_string(ip) && strcmp(json_string_value(ip), "None") != 0 &&
            json_string_value(ip)[0])
            json_array_append(out, ip);
    }
    return out;
}

static int build_waypoints(const struct op_inputs *in, const struct op_mesh_config *cfg,
                           json_t *out, struct op_snapshot_diags *d)
{
    const char *k;
    json_t *gw;

    json_object_foreach((json_t *)in->gateways, k, gw) {
        const char *cls = jstr(gw, "spec", "gatewayClassName");
        const char *name = dp_kube_meta_str(gw, "name"), *ns = dp_kube_meta_str(gw, "namespace");
        json_t *svc, *addrs, *obj;
        char skey[512];

        if (cls == NULL || strcmp(cls, cfg->waypoint_class) != 0)
            continue;
        if (name == NULL || ns == NULL) {
            diag(d, "Gateway %s: no name/namespace", k);
            continue;
        }
        snprintf(skey, sizeof(skey), "%s/%s", ns, name);
        svc = json_object_get(in->services, skey);
        addrs = svc ? svc_cluster_ips(svc) : json_array();
        obj = json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:o,s:i}", "name", name, "namespace", ns, "for",
                        waypoint_for(gw), "serviceAccount", name, "trustDomain",
                        cfg->trust_domain, "nodes", op_waypoint_place(gw, in->nodes),
                        "addresses", addrs, "port", 15008);
        if (obj == NULL || json_object_set_new(out, skey, obj) < 0)
            return -ENOMEM;
    }
    return 0;
}

/*
 * The waypoint reference for an object with labels `obj_labels` in namespace ns, or NULL.
 * kind_ok: "service" or "workload" — which waypoint-for values may be bound.
 */
static json_t *waypoint_ref(const struct op_inputs *in, const json_t *waypoints, const json_t *obj,
                            const char *ns, bool for_workload)
{
    const char *use = dp_kube_label(obj, LBL_USE_WAYPOINT);
    const char *use_ns = dp_kube_label(obj, LBL_USE_WAYPOINT_NS);
    const json_t *nsobj = ns_obj(in, ns);
    const char *f;
    json_t *wp;
    char key[512];

    if (use == NULL) {
        use = dp_kube_label(nsobj, LBL_USE_WAYPOINT);
        use_ns = dp_kube_label(nsobj, LBL_USE_WAYPOINT_NS);
    }
    if (use == NULL || strcmp(use, "none") == 0 || use[0] == '\0')
        return NULL;
    snprintf(key, sizeof(key), "%s/%s", use_ns ? use_ns : ns, use);
    wp = json_object_get(waypoints, key);
    if (wp == NULL)
        return NULL;
    f = jstr(wp, "for", NULL);
    if (strcmp(f, "all") != 0 && strcmp(f, for_workload ? "workload" : "service") != 0)
        return NULL;
    if (json_array_size(json_object_get(wp, "addresses")) == 0)
        return NULL; /* not usable until it has an address (as istiod) */
    return json_pack("{s:s,s:O,s:i}", "key", key, "addresses", json_object_get(wp, "addresses"),
                     "port", 15008);
}

/* ------------------------------------------------------------------ services */

static int build_services(const struct op_inputs *in, const struct op_mesh_config *cfg,
                          const json_t *waypoints, json_t *out, struct op_snapshot_diags *d)
{
    const char *k;
    json_t *svc;

    json_object_foreach((json_t *)in->services, k, svc) {
        const char *name = dp_kube_meta_str(svc, "name"), *ns = dp_kube_meta_str(svc, "namespace");
        const char *type = jstr(svc, "spec", "type");
        json_t *ports, *p, *obj, *wp;
        char host[512], key[600];
        size_t i;

        if (name == NULL || ns == NULL)
            continue;
        if (type != NULL && strcmp(type, "ExternalName") == 0)
            continue;
        snprintf(host, sizeof(host), "%s.%s.svc.%s", name, ns, cfg->dns_domain);
        snprintf(key, sizeof(key), "%s/%s", ns, host);
        ports = json_array();
        if (ports == NULL)
            return -ENOMEM;
        json_array_foreach(jget(svc, "spec", "ports"), i, p) {
            json_t *port = json_object_get(p, "port"), *tp = json_object_get(p, "targetPort");
            const char *proto = json_string_value(json_object_get(p, "protocol"));
            const char *ap = json_string_value(json_object_get(p, "appProtocol"));
            json_t *e;

            if (proto != NULL && strcmp(proto, "TCP") != 0)
                continue; /* the mesh carries TCP only */
            if (!json_is_integer(port) || json_integer_value(port) < 1 ||
                json_integer_value(port) > 65535) {
                diag(d, "Service %s: spec.ports[%zu].port invalid", k, i);
                continue;
            }
            e = json_pack("{s:I,s:I}", "port", json_integer_value(port), "targetPort",
                          json_is_integer(tp) ? json_integer_value(tp)
                          : json_is_string(tp) ? (json_int_t)0
                                                : json_integer_value(port));
            if (e != NULL && ap != NULL)
                json_object_set_new(e, "appProtocol", json_string(ap));
            json_array_append_new(ports, e);
        }
        /* a waypoint's own Service is never sent through a waypoint */
        wp = json_object_get(waypoints, k) ? NULL : waypoint_ref(in, waypoints, svc, ns, false);
        obj = json_pack("{s:s,s:s,s:s,s:o,s:o,s:o,s:[]}", "name", name, "namespace", ns,
                        "hostname", host, "vips", svc_cluster_ips(svc), "ports", ports,
                        "waypoint", wp ? wp : json_null(), "subjectAltNames");
        if (obj == NULL || json_object_set_new(out, key, obj) < 0)
            return -ENOMEM;
    }
    return 0;
}

/* ------------------------------------------------------------------ workloads */

static const char *first_label(const json_t *pod, const char *const *keys)
{
    for (; *keys; keys++) {
        const char *v = dp_kube_label(pod, *keys);

        if (v != NULL && v[0] != '\0')
            return v;
    }
    return NULL;
}

/* workload name/type from ownerReferences */
static void workload_of(const json_t *pod, char *name, size_t namesz, const char **type)
{
    json_t *owners = jget(pod, "metadata", "ownerReferences"), *o;
    const char *hash = dp_kube_label(pod, "pod-template-hash");
    size_t i;

    snprintf(name, namesz, "%s", dp_kube_meta_str(pod, "name"));
    *type = "pod";
    json_array_foreach(owners, i, o) {
        const char *kind = json_string_value(json_object_get(o, "kind"));
        const char *oname = json_string_value(json_object_get(o, "name"));

        if (kind == NULL || oname == NULL || !json_is_true(json_object_get(o, "controller")))
            continue;
        snprintf(name, namesz, "%s", oname);
        if (strcmp(kind, "ReplicaSet") == 0) {
            size_t n = strlen(oname), h = hash ? strlen(hash) : 0;

            *type = "deployment";
            if (h > 0 && n > h + 1 && oname[n - h - 1] == '-' && strcmp(oname + n - h, hash) == 0)
                name[n - h - 1] = '\0';
        } else if (strcmp(kind, "Job") == 0) {
            /* CronJob jobs are named <cronjob>-<scheduled minute> */
            const char *dash = strrchr(oname, '-');

            *type = "job";
            if (dash != NULL && strspn(dash + 1, "0123456789") == strlen(dash + 1) &&
                strlen(dash + 1) >= 8) {
                *type = "cronjob";
                name[dash - oname] = '\0';
            }
        } else {
            *type = "deployment"; /* StatefulSet, DaemonSet: Istio reports them as deployment */
        }
        return;
    }
}

static bool pod_ready(const json_t *pod)
{
    json_t *conds = jget(pod, "status", "conditions"), *c;
    size_t i;

    if (jget(pod, "metadata", "deletionTimestamp") != NULL)
        return false;
    json_array_foreach(conds, i, c) {
        const char *t = json_string_value(json_object_get(c, "type"));
        const char *s = json_string_value(json_object_get(c, "status"));

        if (t != NULL && strcmp(t, "Ready") == 0)
            return s != NULL && strcmp(s, "True") == 0;
    }
    return false;
}

static json_t *pod_ips(const json_t *pod)
{
    json_t *out = json_array(), *ips = jget(pod, "status", "podIPs"), *e;
    const char *one = jstr(pod, "status", "podIP");
    size_t i;

    if (out == NULL)
        return NULL;
    json_array_foreach(ips, i, e) {
        const char *ip = json_string_value(json_object_get(e, "ip"));

        if (ip != NULL && ip[0])
            json_array_append_new(out, json_string(ip));
    }
    if (json_array_size(out) == 0 && one != NULL && one[0])
        json_array_append_new(out, json_string(one));
    return out;
}

/* Resolve a Service port's targetPort for this pod: int, named (container ports), or port. */
static json_int_t resolve_target(const json_t *pod, const json_t *svc_port)
{
    json_t *tp = json_object_get(svc_port, "targetPort"), *c, *p;
    size_t i, j;

    if (json_is_integer(tp))
        return json_integer_value(tp);
    if (json_is_string(tp)) {
        const char *want = json_string_value(tp);

        json_array_foreach(jget(pod, "spec", "containers"), i, c) {
            json_array_foreach(json_object_get(c, "ports"), j, p) {
                const char *pn = json_string_value(json_object_get(p, "name"));

                if (pn != NULL && strcmp(pn, want) == 0 &&
                    json_is_integer(json_object_get(p, "containerPort")))
                    return json_integer_value(json_object_get(p, "containerPort"));
            }
        }
        return -1; /* named port this pod does not have */
    }
    return json_integer_value(json_object_get(svc_port, "port"));
}

static int add_svc_ref(json_t *services, const struct op_mesh_config *cfg, const json_t *svc,
                       json_t *ports_map)
{
    char key[600];

    snprintf(key, sizeof(key), "%s/%s.%s.svc.%s", dp_kube_meta_str(svc, "namespace"),
             dp_kube_meta_str(svc, "name"), dp_kube_meta_str(svc, "namespace"), cfg->dns_domain);
    return json_object_set_new(services, key, ports_map) < 0 ? -ENOMEM : 0;
}

/* selector-less Services: pod key -> {svc key -> ports} from EndpointSlices */
static json_t *slice_index(const struct op_inputs *in)
{
    json_t *idx = json_object(), *sl;
    const char *k;

    if (idx == NULL)
        return NULL;
    json_object_foreach((json_t *)in->endpointslices, k, sl) {
        const char *ns = dp_kube_meta_str(sl, "namespace");
        const char *svcname = dp_kube_label(sl, "kubernetes.io/service-name");
        json_t *svc, *ep, *ports = json_object(), *p;
        char skey[512];
        size_t i;

        if (ports == NULL)
            break;
        if (ns == NULL || svcname == NULL) {
            json_decref(ports);
            continue;
        }
        snprintf(skey, sizeof(skey), "%s/%s", ns, svcname);
        svc = json_object_get(in->services, skey);
        /* selector Services are handled from the pod side */
        if (svc == NULL || json_object_size(jget(svc, "spec", "selector")) > 0) {
            json_decref(ports);
            continue;
        }
        /* service port (matched by port name) -> endpoint port */
        json_array_foreach(json_object_get(sl, "ports"), i, p) {
            const char *pname = json_string_value(json_object_get(p, "name"));
            json_t *sp;
            size_t j;

            json_array_foreach(jget(svc, "spec", "ports"), j, sp) {
                const char *spn = json_string_value(json_object_get(sp, "name"));

                if ((pname == NULL || pname[0] == '\0') ? (spn == NULL || spn[0] == '\0')
                                                        : (spn != NULL && strcmp(spn, pname) == 0)) {
                    char num[16];

                    snprintf(num, sizeof(num), "%lld",
                             (long long)json_integer_value(json_object_get(sp, "port")));
                    json_object_set(ports, num, json_object_get(p, "port"));
                }
            }
        }
        json_array_foreach(json_object_get(sl, "endpoints"), i, ep) {
            json_t *ref = json_object_get(ep, "targetRef"), *pm;
            const char *kind = json_string_value(json_object_get(ref, "kind"));
            const char *pname = json_string_value(json_object_get(ref, "name"));
            char pkey[512];

            if (kind == NULL || strcmp(kind, "Pod") != 0 || pname == NULL)
                continue;
            snprintf(pkey, sizeof(pkey), "%s/%s", ns, pname);
            pm = json_object_get(idx, pkey);
            if (pm == NULL) {
                pm = json_object();
                json_object_set_new(idx, pkey, pm);
            }
            json_object_set(pm, skey, ports);
        }
        json_decref(ports);
    }
    return idx;
}

/* namespace -> array of objects (borrowed refs), so per-pod work only scans its namespace */
static json_t *index_by_ns(const json_t *objs, bool need_selector)
{
    json_t *idx = json_object(), *o;
    const char *k;

    if (idx == NULL)
        return NULL;
    json_object_foreach((json_t *)objs, k, o) {
        const char *ns = dp_kube_meta_str(o, "namespace");
        json_t *arr;

        if (ns == NULL)
            continue;
        if (need_selector && json_object_size(jget(o, "spec", "selector")) == 0)
            continue;
        arr = json_object_get(idx, ns);
        if (arr == NULL) {
            arr = json_array();
            if (arr == NULL || json_object_set_new(idx, ns, arr) < 0) {
                json_decref(idx);
                return NULL;
            }
        }
        json_array_append(arr, o);
    }
    return idx;
}

static int pod_services(const struct op_inputs *in, const struct op_mesh_config *cfg,
                        const json_t *pod, const json_t *slices, const json_t *svc_by_ns,
                        json_t *services)
{
    const char *ns = dp_kube_meta_str(pod, "namespace");
    json_t *labels = jget(pod, "metadata", "labels"), *svc, *refs;
    const char *k;
    char pkey[512];
    size_t si;
    int r;

    json_array_foreach(json_object_get(svc_by_ns, ns), si, svc) {
        json_t *sel = jget(svc, "spec", "selector"), *v, *ports, *sp;
        const char *sk, *type = jstr(svc, "spec", "type");
        bool match = true;
        size_t i;

        if (json_object_size(sel) == 0 || strcmp(dp_kube_meta_str(svc, "namespace"), ns) != 0)
            continue;
        if (type != NULL && strcmp(type, "ExternalName") == 0)
            continue;
        json_object_foreach(sel, sk, v) {
            const char *have = json_string_value(json_object_get(labels, sk));

            if (have == NULL || !json_is_string(v) || strcmp(have, json_string_value(v)) != 0) {
                match = false;
                break;
            }
        }
        if (!match)
            continue;
        ports = json_object();
        if (ports == NULL)
            return -ENOMEM;
        json_array_foreach(jget(svc, "spec", "ports"), i, sp) {
            const char *proto = json_string_value(json_object_get(sp, "protocol"));
            json_int_t t = resolve_target(pod, sp);
            char num[16];

            if ((proto != NULL && strcmp(proto, "TCP") != 0) || t < 1 || t > 65535)
                continue;
            snprintf(num, sizeof(num), "%lld",
                     (long long)json_integer_value(json_object_get(sp, "port")));
            json_object_set_new(ports, num, json_integer(t));
        }
        r = add_svc_ref(services, cfg, svc, ports);
        if (r < 0)
            return r;
    }
    snprintf(pkey, sizeof(pkey), "%s/%s", ns, dp_kube_meta_str(pod, "name"));
    refs = json_object_get(slices, pkey);
    json_object_foreach(refs, k, svc) {
        const json_t *s = json_object_get(in->services, k);

        if (s != NULL && (r = add_svc_ref(services, cfg, s, json_deep_copy(svc))) < 0)
            return r;
    }
    return 0;
}

static int pod_policies(const struct op_mesh_config *cfg, const json_t *pod,
                        const json_t *ap_by_ns, const json_t *pa_list, json_t *out)
{
    const char *ns = dp_kube_meta_str(pod, "namespace");
    json_t *labels = jget(pod, "metadata", "labels"), *ap, *keys = NULL, *kv, *cands[2];
    size_t i, j;

    if (labels == NULL)
        labels = json_object();
    else
        json_incref(labels);
    /* selector policies of the pod's namespace, and of the root namespace (mesh-wide) */
    cands[0] = json_object_get(ap_by_ns, ns);
    cands[1] = strcmp(ns, cfg->root_ns) != 0 ? json_object_get(ap_by_ns, cfg->root_ns) : NULL;
    for (j = 0; j < 2; j++) json_array_foreach(cands[j], i, ap) {
        if (dp_policy_cr_selects(ap, cfg->root_ns, ns, labels)) {
            char key[512];

            snprintf(key, sizeof(key), "%s/%s", dp_kube_meta_str(ap, "namespace"),
                     dp_kube_meta_str(ap, "name"));
            json_array_append_new(out, json_string(key));
        }
    }
    if (json_array_size(pa_list) > 0) {
        struct dp_policy_diags pd = {0};

        if (dp_policy_peerauthn_keys(pa_list, cfg->root_ns, ns, labels, &keys, &pd) == 0) {
            json_array_foreach(keys, i, kv) {
                json_array_append(out, kv);
            }
            json_decref(keys);
        }
    }
    json_decref(labels);
    return 0;
}

static int build_workloads(const struct op_inputs *in, const struct op_mesh_config *cfg,
                           const json_t *waypoints, json_t *out, struct op_snapshot_diags *d)
{
    static const char *const cname_keys[] = {"service.istio.io/canonical-name",
                                             "app.kubernetes.io/name", "app", NULL};
    static const char *const crev_keys[] = {"service.istio.io/canonical-revision",
                                            "app.kubernetes.io/version", "version", NULL};
    json_t *slices = slice_index(in), *pa_list = json_array(), *pa, *pod;
    json_t *svc_by_ns = index_by_ns(in->services, true);
    json_t *ap_by_ns = index_by_ns(in->authorization_policies, true);
    const char *k;
    int r = 0;

    if (slices == NULL || pa_list == NULL || svc_by_ns == NULL || ap_by_ns == NULL) {
        r = -ENOMEM;
        goto out;
    }
    json_object_foreach((json_t *)in->peer_authentications, k, pa) {
        json_array_append(pa_list, pa);
    }

    json_object_foreach((json_t *)in->pods, k, pod) {
        const char *name = dp_kube_meta_str(pod, "name"), *ns = dp_kube_meta_str(pod, "namespace");
        const char *phase = jstr(pod, "status", "phase"), *cname, *crev, *wtype;
        const char *sa = jstr(pod, "spec", "serviceAccountName");
        const char *redir = dp_kube_annotation(pod, ANN_REDIRECTION);
        const char *tunnel = dp_kube_label(pod, "networking.istio.io/tunnel");
        json_t *ips, *obj, *services, *policies, *wp, *labels;
        char uid[700], wname[256];

        if (name == NULL || ns == NULL)
            continue;
        if (phase != NULL && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0))
            continue;
        ips = pod_ips(pod);
        if (ips == NULL) {
            r = -ENOMEM;
            goto out;
        }
        if (json_array_size(ips) == 0) {
            json_decref(ips);
            continue; /* not scheduled / no sandbox yet */
        }
        workload_of(pod, wname, sizeof(wname), &wtype);
        cname = first_label(pod, cname_keys);
        crev = first_label(pod, crev_keys);
        services = json_object();
        policies = json_array();
        labels = jget(pod, "metadata", "labels");
        if (services == NULL || policies == NULL ||
            (r = pod_services(in, cfg, pod, slices, svc_by_ns, services)) < 0 ||
            (r = pod_policies(cfg, pod, ap_by_ns, pa_list, policies)) < 0) {
            json_decref(ips);
            json_decref(services);
            json_decref(policies);
            r = r < 0 ? r : -ENOMEM;
            goto out;
        }
        wp = waypoint_ref(in, waypoints, pod, ns, true);
        snprintf(uid, sizeof(uid), "%s//Pod/%s/%s", cfg->cluster_id, ns, name);
        obj = json_pack("{s:s,s:s?,s:s,s:s,s:s?,s:o,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:o,s:o,"
                        "s:o,s:i}",
                        "uid", uid, "podUid", dp_kube_meta_str(pod, "uid"), "name", name,
                        "namespace", ns, "node", jstr(pod, "spec", "nodeName"), "addresses", ips,
                        "serviceAccount", sa && sa[0] ? sa : "default", "trustDomain",
                        cfg->trust_domain, "protocol",
                        (redir && strcmp(redir, "enabled") == 0) ||
                                        (tunnel && strcmp(tunnel, "http") == 0)
                                ? "HBONE"
                                : "TCP",
                        "status", pod_ready(pod) ? "Healthy" : "Unhealthy", "canonicalName",
                        cname ? cname : wname, "canonicalRevision", crev ? crev : "latest",
                        "workloadName", wname, "workloadType", wtype, "labels",
                        labels ? json_incref(labels) : json_object(), "services", services, "waypoint",
                        wp ? wp : json_null(), "authorizationPolicies", policies, "capacity", 1);
        if (obj == NULL || json_object_set_new(out, uid, obj) < 0) {
            r = -ENOMEM;
            goto out;
        }
        (void)d;
    }
out:
    json_decref(slices);
    json_decref(pa_list);
    json_decref(svc_by_ns);
    json_decref(ap_by_ns);
    return r;
}

/* ------------------------------------------------------------------ policies */

static int build_policies(const struct op_inputs *in, const struct op_mesh_config *cfg, json_t *out,
                          struct op_snapshot_diags *d)
{
    json_t *ap, *pas = json_array(), *pols = NULL, *p;
    struct dp_policy_diags pd;
    const char *k;
    size_t i;
    int r;

    if (pas == NULL)
        return -ENOMEM;
    json_object_foreach((json_t *)in->authorization_policies, k, ap) {
        memset(&pd, 0, sizeof(pd));
        r = dp_policy_compile_authz(ap, cfg->root_ns, &pols, &pd);
        if (r == -ENOMEM)
            goto fail;
        if (r < 0) {
            diag(d, "AuthorizationPolicy %s: %s", k, pd.n ? pd.items[0].text : strerror(-r));
            continue;
        }
        json_array_foreach(pols, i, p) {
            char key[512];

            snprintf(key, sizeof(key), "%s/%s", jstr(p, "namespace", NULL), jstr(p, "name", NULL));
            json_object_set(out, key, p);
        }
        json_decref(pols);
        pols = NULL;
    }
    json_object_foreach((json_t *)in->peer_authentications, k, p) {
        json_array_append(pas, p);
    }
    if (json_array_size(pas) > 0) {
        memset(&pd, 0, sizeof(pd));
        r = dp_policy_compile_peerauthn(pas, cfg->root_ns, &pols, &pd);
        if (r == -ENOMEM)
            goto fail;
        if (r < 0) {
            diag(d, "PeerAuthentication: %s", pd.n ? pd.items[0].text : strerror(-r));
        } else {
            json_array_foreach(pols, i, p) {
                char key[512];

                snprintf(key, sizeof(key), "%s/%s", jstr(p, "namespace", NULL),
                         jstr(p, "name", NULL));
                json_object_set(out, key, p);
            }
            json_decref(pols);
        }
    }
    json_decref(pas);
    return 0;
fail:
    json_decref(pas);
    return -ENOMEM;
}

int op_snapshot_build(const struct op_inputs *in, const struct op_mesh_config *cfg,
                      json_t **ret_snap, struct op_snapshot_diags *diags)
{
    json_t *snap;
    int r;

    snap = json_pack("{s:{},s:{},s:{},s:{}}", "workload", "service", "policy", "waypoint");
    if (snap == NULL)
        return -ENOMEM;
    if ((r = build_waypoints(in, cfg, json_object_get(snap, "waypoint"), diags)) < 0 ||
        (r = build_services(in, cfg, json_object_get(snap, "waypoint"),
                            json_object_get(snap, "service"), diags)) < 0 ||
        (r = build_policies(in, cfg, json_object_get(snap, "policy"), diags)) < 0 ||
        (r = build_workloads(in, cfg, json_object_get(snap, "waypoint"),
                             json_object_get(snap, "workload"), diags)) < 0) {
        json_decref(snap);
        return r;
    }
    *ret_snap = snap;
    return 0;
}

/* ------------------------------------------------------------------ diff */

static const char *const KIND_ORDER[] = {"waypoint", "service", "policy", "workload"};

static int push_event(json_t *events, const char *type, unsigned long long *version,
                      const char *kind, const char *key, json_t *obj)
{
    json_t *e = json_pack("{s:s,s:I,s:s,s:s}", "type", type, "version", (json_int_t)(*version)++,
                          "kind", kind, "key", key);

    if (e == NULL)
        return -ENOMEM;
    if (obj != NULL && json_object_set(e, "object", obj) < 0) {
        json_decref(e);
        return -ENOMEM;
    }
    return json_array_append_new(events, e) < 0 ? -ENOMEM : 0;
}

/* keys of an object, sorted (deterministic event order). NEW malloc'ed array of borrowed keys. */
static const char **sorted_keys(const json_t *o, size_t *ret_n)
{
    size_t n = json_object_size(o), i = 0;
    const char **keys = malloc((n ? n : 1) * sizeof(*keys));
    const char *k;
    json_t *v;

    if (keys == NULL)
        return NULL;
    json_object_foreach((json_t *)o, k, v) {
        keys[i++] = k;
    }
    qsort(keys, n, sizeof(*keys), cmp_str);
    *ret_n = n;
    return keys;
}

int op_snapshot_diff(const json_t *old_snap, const json_t *new_snap,
                     unsigned long long first_version, json_t **ret_events)
{
    unsigned long long v = first_version;
    json_t *events = json_array();
    int r = 0;

    if (events == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < 4 && r == 0; i++) {
        const json_t *o = json_object_get(old_snap, KIND_ORDER[i]);
        const json_t *n = json_object_get(new_snap, KIND_ORDER[i]);
        size_t nk = 0;
        const char **keys = sorted_keys(n, &nk);

        if (keys == NULL) {
            r = -ENOMEM;
            break;
        }
        for (size_t j = 0; j < nk && r == 0; j++) {
            json_t *obj = json_object_get(n, keys[j]), *prev = json_object_get(o, keys[j]);

            if (prev == NULL || !json_equal(prev, obj))
                r = push_event(events, "upsert", &v, KIND_ORDER[i], keys[j], obj);
        }
        free(keys);
    }
    for (size_t i = 4; i-- > 0 && r == 0;) {
        const json_t *o = json_object_get(old_snap, KIND_ORDER[i]);
        const json_t *n = json_object_get(new_snap, KIND_ORDER[i]);
        size_t nk = 0;
        const char **keys = sorted_keys(o, &nk);

        if (keys == NULL) {
            r = -ENOMEM;
            break;
        }
        for (size_t j = 0; j < nk && r == 0; j++) {
            if (json_object_get(n, keys[j]) == NULL)
                r = push_event(events, "delete", &v, KIND_ORDER[i], keys[j], NULL);
        }
        free(keys);
    }
    if (r < 0) {
        json_decref(events);
        return r;
    }
    *ret_events = events;
    return 0;
}

int op_snapshot_full(const json_t *snap, unsigned long long version, json_t **ret_events)
{
    return op_snapshot_diff(NULL, snap, version, ret_events);
}
