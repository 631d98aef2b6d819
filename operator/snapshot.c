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

/*
 * The service object of Service `svc` (informer key k) into *ret_obj (NEW; NULL = not a mesh
 * service) with its snapshot key in key.
 */
static int build_service(const struct op_inputs *in, const struct op_mesh_config *cfg,
                         const json_t *waypoints, const char *k, const json_t *svc, char *key,
                         size_t keysz, json_t **ret_obj, struct op_snapshot_diags *d)
{
    const char *name = dp_kube_meta_str(svc, "name"), *ns = dp_kube_meta_str(svc, "namespace");
    const char *type = jstr(svc, "spec", "type");
    json_t *ports, *p, *obj, *wp;
    char host[512];
    size_t i;

    *ret_obj = NULL;
    if (name == NULL || ns == NULL)
        return 0;
    if (type != NULL && strcmp(type, "ExternalName") == 0)
        return 0;
    snprintf(host, sizeof(host), "%s.%s.svc.%s", name, ns, cfg->dns_domain);
    snprintf(key, keysz, "%s/%s", ns, host);
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
    obj = json_pack("{s:s,s:s,s:s,s:o,s:o,s:o,s:[]}", "name", name, "namespace", ns, "hostname",
                    host, "vips", svc_cluster_ips(svc), "ports", ports, "waypoint",
                    wp ? wp : json_null(), "subjectAltNames");
    if (obj == NULL)
        return -ENOMEM;
    *ret_obj = obj;
    return 0;
}

static int build_services(const struct op_inputs *in, const struct op_mesh_config *cfg,
                          const json_t *waypoints, json_t *out, struct op_snapshot_diags *d)
{
    const char *k;
    json_t *svc;

    json_object_foreach((json_t *)in->services, k, svc) {
        char key[600];
        json_t *obj;
        int r = build_service(in, cfg, waypoints, k, svc, key, sizeof(key), &obj, d);

        if (r < 0)
            return r;
        if (obj != NULL && json_object_set_new(out, key, obj) < 0)
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

/* selector-less Services: pod key -> {svc key -> ports} from EndpointSlices (of the
 * namespaces in only_ns; NULL = all) */
static json_t *slice_index(const struct op_inputs *in, const json_t *only_ns)
{
    json_t *idx = json_object(), *sl;
    const char *k;

    if (idx == NULL)
        return NULL;
    json_object_foreach((json_t *)in->endpointslices, k, sl) {
        const char *ns = dp_kube_meta_str(sl, "namespace");
        const char *svcname = dp_kube_label(sl, "kubernetes.io/service-name");
        json_t *svc, *ep, *ports, *p;
        char skey[512];
        size_t i;

        if (ns == NULL || svcname == NULL ||
            (only_ns != NULL && json_object_get(only_ns, ns) == NULL))
            continue;
        ports = json_object();
        if (ports == NULL)
            break;
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

/*
 * Selector Services by namespace, resolved once for all pods: namespace -> array of
 * [Service, selector, snapshot key, ports map]. The ports map ({"port": targetPort}) is shared by
 * every workload when no targetPort is named (then it does not depend on the pod), else null.
 */
static json_t *prepare_selector_services(const struct op_inputs *in,
                                         const struct op_mesh_config *cfg)
{
    json_t *idx = json_object(), *svc;
    const char *k;

    if (idx == NULL)
        return NULL;
    json_object_foreach((json_t *)in->services, k, svc) {
        const char *ns = dp_kube_meta_str(svc, "namespace");
        const char *name = dp_kube_meta_str(svc, "name");
        const char *type = jstr(svc, "spec", "type");
        json_t *sel = jget(svc, "spec", "selector"), *ports, *sp, *arr, *ent;
        bool named = false;
        char key[600];
        size_t i;

        if (ns == NULL || name == NULL || json_object_size(sel) == 0 ||
            (type != NULL && strcmp(type, "ExternalName") == 0))
            continue;
        json_array_foreach(jget(svc, "spec", "ports"), i, sp) {
            named |= json_is_string(json_object_get(sp, "targetPort"));
        }
        ports = named ? json_null() : json_object();
        json_array_foreach(named ? NULL : jget(svc, "spec", "ports"), i, sp) {
            const char *proto = json_string_value(json_object_get(sp, "protocol"));
            json_int_t t = resolve_target(NULL, sp);
            char num[16];

            if ((proto != NULL && strcmp(proto, "TCP") != 0) || t < 1 || t > 65535)
                continue;
            snprintf(num, sizeof(num), "%lld",
                     (long long)json_integer_value(json_object_get(sp, "port")));
            json_object_set_new(ports, num, json_integer(t));
        }
        snprintf(key, sizeof(key), "%s/%s.%s.svc.%s", ns, name, ns, cfg->dns_domain);
        ent = json_pack("[O,O,s,o]", svc, sel, key, ports);
        arr = json_object_get(idx, ns);
        if (arr == NULL) {
            arr = json_array();
            if (arr != NULL && json_object_set_new(idx, ns, arr) < 0)
                arr = NULL;
        }
        if (ent == NULL || arr == NULL || json_array_append_new(arr, ent) < 0) {
            json_decref(idx);
            return NULL;
        }
    }
    return idx;
}

/* What building workloads needs besides the pod: indexes over the other caches. */
struct wl_ctx {
    const struct op_inputs *in;
    const struct op_mesh_config *cfg;
    const json_t *waypoints;
    json_t *slices;    /* slice_index() */
    json_t *svc_by_ns; /* namespace -> [[Service, selector, key, shared ports map | null]] */
    json_t *ap_by_ns;  /* selector AuthorizationPolicies by namespace */
    json_t *pa_list;   /* every PeerAuthentication */
    json_t *pa_sel_ns; /* namespaces with a selector PeerAuthentication */
    json_t *pa_memo;   /* namespace -> PA-derived keys, for namespaces without selector PAs */
};

static void wl_ctx_done(struct wl_ctx *c)
{
    json_decref(c->slices);
    json_decref(c->svc_by_ns);
    json_decref(c->ap_by_ns);
    json_decref(c->pa_list);
    json_decref(c->pa_sel_ns);
    json_decref(c->pa_memo);
}

/* only_ns: the namespaces whose pods will be built (NULL = all) */
static int wl_ctx_init(struct wl_ctx *c, const struct op_inputs *in,
                       const struct op_mesh_config *cfg, const json_t *waypoints,
                       const json_t *only_ns)
{
    const char *k;
    json_t *pa;

    memset(c, 0, sizeof(*c));
    c->in = in;
    c->cfg = cfg;
    c->waypoints = waypoints;
    c->slices = slice_index(in, only_ns);
    c->svc_by_ns = prepare_selector_services(in, cfg);
    c->ap_by_ns = index_by_ns(in->authorization_policies, true);
    c->pa_list = json_array();
    c->pa_sel_ns = json_object();
    c->pa_memo = json_object();
    if (c->slices == NULL || c->svc_by_ns == NULL || c->ap_by_ns == NULL || c->pa_list == NULL ||
        c->pa_sel_ns == NULL || c->pa_memo == NULL) {
        wl_ctx_done(c);
        return -ENOMEM;
    }
    json_object_foreach((json_t *)in->peer_authentications, k, pa) {
        const char *ns = dp_kube_meta_str(pa, "namespace");

        json_array_append(c->pa_list, pa);
        if (ns != NULL && jget(pa, "spec", "selector") != NULL)
            json_object_set_new(c->pa_sel_ns, ns, json_true());
    }
    return 0;
}

static int pod_services(struct wl_ctx *c, const json_t *pod, json_t *services)
{
    const char *ns = dp_kube_meta_str(pod, "namespace");
    json_t *labels = jget(pod, "metadata", "labels"), *svc, *refs, *ent;
    const char *k;
    char pkey[512];
    size_t si;
    int r;

    json_array_foreach(json_object_get(c->svc_by_ns, ns), si, ent) {
        json_t *sel = json_array_get(ent, 1), *shared = json_array_get(ent, 3), *v, *ports, *sp;
        const char *sk;
        bool match = true;
        size_t i;

        json_object_foreach(sel, sk, v) {
            const char *have = json_string_value(json_object_get(labels, sk));

            if (have == NULL || !json_is_string(v) || strcmp(have, json_string_value(v)) != 0) {
                match = false;
                break;
            }
        }
        if (!match)
            continue;
        if (!json_is_null(shared)) {
            ports = json_incref(shared); /* immutable, shared by the workloads */
        } else {
            ports = json_object();
            if (ports == NULL)
                return -ENOMEM;
            json_array_foreach(jget(json_array_get(ent, 0), "spec", "ports"), i, sp) {
                const char *proto = json_string_value(json_object_get(sp, "protocol"));
                json_int_t t = resolve_target(pod, sp);
                char num[16];

                if ((proto != NULL && strcmp(proto, "TCP") != 0) || t < 1 || t > 65535)
                    continue;
                snprintf(num, sizeof(num), "%lld",
                         (long long)json_integer_value(json_object_get(sp, "port")));
                json_object_set_new(ports, num, json_integer(t));
            }
        }
        if (json_object_set_new(services, json_string_value(json_array_get(ent, 2)), ports) < 0)
            return -ENOMEM;
    }
    snprintf(pkey, sizeof(pkey), "%s/%s", ns, dp_kube_meta_str(pod, "name"));
    refs = json_object_get(c->slices, pkey);
    json_object_foreach(refs, k, svc) {
        const json_t *s = json_object_get(c->in->services, k);

        if (s != NULL && (r = add_svc_ref(services, c->cfg, s, json_deep_copy(svc))) < 0)
            return r;
    }
    return 0;
}

static int pod_policies(struct wl_ctx *c, const json_t *pod, json_t *out)
{
    const char *ns = dp_kube_meta_str(pod, "namespace"), *root = c->cfg->root_ns;
    json_t *labels = jget(pod, "metadata", "labels"), *ap, *keys = NULL, *kv, *cands[2];
    size_t i, j;

    if (labels == NULL)
        labels = json_object();
    else
        json_incref(labels);
    /* selector policies of the pod's namespace, and of the root namespace (mesh-wide) */
    cands[0] = json_object_get(c->ap_by_ns, ns);
    cands[1] = strcmp(ns, root) != 0 ? json_object_get(c->ap_by_ns, root) : NULL;
    for (j = 0; j < 2; j++) json_array_foreach(cands[j], i, ap) {
        if (dp_policy_cr_selects(ap, root, ns, labels)) {
            char key[512];

            snprintf(key, sizeof(key), "%s/%s", dp_kube_meta_str(ap, "namespace"),
                     dp_kube_meta_str(ap, "name"));
            json_array_append_new(out, json_string(key));
        }
    }
    if (json_array_size(c->pa_list) > 0) {
        /* without a selector PA in the namespace (root ones are ignored for selection) the
         * keys depend on the namespace only: compute them once per namespace */
        bool memo = json_object_get(c->pa_sel_ns, ns) == NULL;
        struct dp_policy_diags pd = {0};

        keys = memo ? json_incref(json_object_get(c->pa_memo, ns)) : NULL;
        if (keys == NULL && dp_policy_peerauthn_keys(c->pa_list, root, ns, labels, &keys, &pd) == 0 &&
            memo)
            json_object_set(c->pa_memo, ns, keys);
        json_array_foreach(keys, i, kv) {
            json_array_append(out, kv);
        }
        json_decref(keys);
    }
    json_decref(labels);
    return 0;
}

/* The workload of `pod` into *ret_obj (NEW; NULL = the pod is no workload) and its uid. */
static int build_workload(struct wl_ctx *c, const json_t *pod, char *uid, size_t uidsz,
                          json_t **ret_obj)
{
    static const char *const cname_keys[] = {"service.istio.io/canonical-name",
                                             "app.kubernetes.io/name", "app", NULL};
    static const char *const crev_keys[] = {"service.istio.io/canonical-revision",
                                            "app.kubernetes.io/version", "version", NULL};
    const struct op_mesh_config *cfg = c->cfg;
    const char *name = dp_kube_meta_str(pod, "name"), *ns = dp_kube_meta_str(pod, "namespace");
    const char *phase = jstr(pod, "status", "phase"), *cname, *crev, *wtype;
    const char *sa = jstr(pod, "spec", "serviceAccountName");
    const char *redir = dp_kube_annotation(pod, ANN_REDIRECTION);
    const char *tunnel = dp_kube_label(pod, "networking.istio.io/tunnel");
    json_t *ips, *obj, *services, *policies, *wp, *labels;
    char wname[256];
    int r = 0;

    *ret_obj = NULL;
    if (name == NULL || ns == NULL)
        return 0;
    if (phase != NULL && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0))
        return 0;
    ips = pod_ips(pod);
    if (ips == NULL)
        return -ENOMEM;
    if (json_array_size(ips) == 0) {
        json_decref(ips);
        return 0; /* not scheduled / no sandbox yet */
    }
    workload_of(pod, wname, sizeof(wname), &wtype);
    cname = first_label(pod, cname_keys);
    crev = first_label(pod, crev_keys);
    services = json_object();
    policies = json_array();
    labels = jget(pod, "metadata", "labels");
    if (services == NULL || policies == NULL || (r = pod_services(c, pod, services)) < 0 ||
        (r = pod_policies(c, pod, policies)) < 0) {
        json_decref(ips);
        json_decref(services);
        json_decref(policies);
        return r < 0 ? r : -ENOMEM;
    }
    wp = waypoint_ref(c->in, c->waypoints, pod, ns, true);
    snprintf(uid, uidsz, "%s//Pod/%s/%s", cfg->cluster_id, ns, name);
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
    if (obj == NULL)
        return -ENOMEM;
    *ret_obj = obj;
    return 0;
}

static int build_workloads(const struct op_inputs *in, const struct op_mesh_config *cfg,
                           const json_t *waypoints, json_t *out, struct op_snapshot_diags *d)
{
    struct wl_ctx c;
    const char *k;
    json_t *pod;
    int r;

    (void)d;
    r = wl_ctx_init(&c, in, cfg, waypoints, NULL);
    if (r < 0)
        return r;
    json_object_foreach((json_t *)in->pods, k, pod) {
        char uid[700];
        json_t *obj;

        r = build_workload(&c, pod, uid, sizeof(uid), &obj);
        if (r < 0)
            break;
        if (obj != NULL && json_object_set_new(out, uid, obj) < 0) {
            r = -ENOMEM;
            break;
        }
    }
    wl_ctx_done(&c);
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

/* ------------------------------------------------------------------ incremental */

int op_changes_add(struct op_changes *ch, enum op_input_kind kind, const char *key)
{
    if (ch->all)
        return 0;
    if (ch->keys[kind] == NULL)
        ch->keys[kind] = json_object();
    if (ch->keys[kind] == NULL || json_object_set_new(ch->keys[kind], key, json_true()) < 0) {
        ch->all = true;
        return -ENOMEM;
    }
    return 0;
}

bool op_changes_empty(const struct op_changes *ch)
{
    if (ch->all)
        return false;
    for (int i = 0; i < OP_IN_COUNT; i++)
        if (json_object_size(ch->keys[i]) > 0)
            return false;
    return true;
}

void op_changes_clear(struct op_changes *ch)
{
    for (int i = 0; i < OP_IN_COUNT; i++) {
        json_decref(ch->keys[i]);
        ch->keys[i] = NULL;
    }
    ch->all = false;
}

/* the namespace part of an informer key "<ns>/<name>" into buf; false without one */
static bool key_ns(const char *key, char *buf, size_t bufsz)
{
    const char *slash = strchr(key, '/');

    if (slash == NULL || (size_t)(slash - key) >= bufsz)
        return false;
    memcpy(buf, key, (size_t)(slash - key));
    buf[slash - key] = '\0';
    return true;
}

/* Put obj (NEW) under key in out, or the previous object if equal (sharing); NULL obj deletes
 * the key. Records the key in touched. */
static int place(json_t *out, const json_t *prev, json_t *touched, const char *key, json_t *obj)
{
    json_t *old = json_object_get(prev, key);

    if (json_object_set_new(touched, key, json_true()) < 0) {
        json_decref(obj);
        return -ENOMEM;
    }
    if (obj == NULL) {
        json_object_del(out, key);
        return 0;
    }
    if (old != NULL && json_equal(old, obj)) {
        json_decref(obj);
        obj = json_incref(old);
    }
    return json_object_set_new(out, key, obj) < 0 ? -ENOMEM : 0;
}

/* Do waypoint references (key, `for`, addresses: what services and workloads copy) differ? */
static bool waypoint_refs_differ(const json_t *a, const json_t *b)
{
    const char *k;
    json_t *wa;

    if (json_object_size(a) != json_object_size(b))
        return true;
    json_object_foreach((json_t *)a, k, wa) {
        json_t *wb = json_object_get(b, k);

        if (wb == NULL || !json_equal(json_object_get(wa, "for"), json_object_get(wb, "for")) ||
            !json_equal(json_object_get(wa, "addresses"), json_object_get(wb, "addresses")))
            return true;
    }
    return false;
}

/* After a full rebuild: objects equal to prev's become prev's (shared by reference). */
static void share_unchanged(const json_t *prev, json_t *snap)
{
    for (size_t i = 0; i < 4; i++) {
        const char *kind = i == 0 ? "workload" : i == 1 ? "service" : i == 2 ? "policy" : "waypoint";
        json_t *o = json_object_get(prev, kind), *n = json_object_get(snap, kind), *obj;
        const char *k;
        void *tmp;

        json_object_foreach_safe(n, tmp, k, obj) {
            json_t *old = json_object_get(o, k);

            if (old != NULL && old != obj && json_equal(old, obj))
                json_object_set(n, k, old);
        }
    }
}

/*
 * Changed AuthorizationPolicies compiled one by one into out (the policy key of an
 * AuthorizationPolicy is its own key). *ret_all: compile every policy instead — a
 * PeerAuthentication changed (they are compiled together), or a key could collide with a
 * PeerAuthentication-derived one (those win in the full build), or a compile gave another key.
 */
static int update_authz_policies(const struct op_inputs *in, const struct op_mesh_config *cfg,
                                 const struct op_changes *ch, const json_t *prev_pols,
                                 json_t *out, json_t *touched, struct op_snapshot_diags *d,
                                 bool *ret_all)
{
    const char *k;
    json_t *v;
    int r;

    *ret_all = json_object_size(ch->keys[OP_IN_PEERAUTHN]) > 0;
    json_object_foreach(ch->keys[OP_IN_AUTHZ], k, v) {
        const char *slash = strchr(k, '/');

        if (slash == NULL || strncmp(slash + 1, "converted_peer_authentication_", 30) == 0 ||
            strcmp(slash + 1, "istio_converted_static_strict") == 0)
            *ret_all = true;
    }
    if (*ret_all)
        return 0;
    json_object_foreach(ch->keys[OP_IN_AUTHZ], k, v) {
        const json_t *ap = json_object_get(in->authorization_policies, k);
        json_t *pols = NULL, *pol = NULL;
        char pkey[600];

        if (ap != NULL) {
            struct dp_policy_diags pd;

            memset(&pd, 0, sizeof(pd));
            r = dp_policy_compile_authz(ap, cfg->root_ns, &pols, &pd);
            if (r == -ENOMEM)
                return r;
            if (r < 0)
                diag(d, "AuthorizationPolicy %s: %s", k, pd.n ? pd.items[0].text : strerror(-r));
            pol = json_array_get(pols, 0);
            if (pol != NULL)
                snprintf(pkey, sizeof(pkey), "%s/%s", jstr(pol, "namespace", NULL),
                         jstr(pol, "name", NULL));
            if (json_array_size(pols) > 1 || (pol != NULL && strcmp(pkey, k) != 0)) {
                json_decref(pols);
                *ret_all = true;
                return 0;
            }
        }
        r = place(out, prev_pols, touched, k, pol ? json_incref(pol) : NULL);
        json_decref(pols);
        if (r < 0)
            return r;
    }
    return 0;
}

/* every policy key some workload of snap lists: NEW set */
static json_t *listed_policies(const json_t *snap)
{
    json_t *out = json_object(), *wl, *kv;
    const char *k;
    size_t i;

    if (out == NULL)
        return NULL;
    json_object_foreach(json_object_get(snap, "workload"), k, wl) {
        json_array_foreach(json_object_get(wl, "authorizationPolicies"), i, kv) {
            if (json_is_string(kv) &&
                json_object_set_new(out, json_string_value(kv), json_true()) < 0) {
                json_decref(out);
                return NULL;
            }
        }
    }
    return out;
}

static int set_add(json_t *set, const char *key)
{
    return json_object_set_new(set, key, json_true()) < 0 ? -ENOMEM : 0;
}

int op_snapshot_update(const json_t *prev, const struct op_inputs *in,
                       const struct op_mesh_config *cfg, const struct op_changes *ch,
                       json_t **ret_snap, json_t **ret_touched, struct op_snapshot_diags *diags)
{
    json_t *snap = NULL, *touched = NULL, *wps = NULL, *aff_ns = NULL, *pods = NULL;
    json_t *pod_ns = NULL, *listed = NULL, *v, *obj;
    const json_t *prev_wps = json_object_get(prev, "waypoint");
    bool all_pods = false, policies = false;
    struct wl_ctx c;
    const char *k;
    char ns[256];
    int r = -ENOMEM;

    if (prev == NULL || ch->all)
        goto full;
    wps = json_object();
    if (wps == NULL || (r = build_waypoints(in, cfg, wps, diags)) < 0)
        goto fail;
    if (waypoint_refs_differ(prev_wps, wps))
        goto full; /* services and workloads carry waypoint references: rebuild all */
    r = -ENOMEM;
    snap = json_pack("{s:o,s:o,s:o,s:O}", "workload",
                     json_copy(json_object_get(prev, "workload")), "service",
                     json_copy(json_object_get(prev, "service")), "policy",
                     json_copy(json_object_get(prev, "policy")), "waypoint", wps);
    touched = json_pack("{s:{},s:{},s:{},s:{}}", "workload", "service", "policy", "waypoint");
    aff_ns = json_object();
    pods = json_object();
    pod_ns = json_object();
    if (snap == NULL || touched == NULL || aff_ns == NULL || pods == NULL || pod_ns == NULL)
        goto fail;
    /* waypoints: same keys and references, maybe other nodes */
    json_object_foreach(wps, k, obj) {
        if ((r = place(json_object_get(snap, "waypoint"), prev_wps,
                       json_object_get(touched, "waypoint"), k, json_incref(obj))) < 0)
            goto fail;
    }
    /* services: the changed ones and those of changed namespaces */
    {
        json_t *svcs = json_object();

        if (svcs == NULL)
            goto fail;
        json_object_foreach(ch->keys[OP_IN_SERVICE], k, v) {
            set_add(svcs, k);
        }
        if (json_object_size(ch->keys[OP_IN_NAMESPACE]) > 0) {
            json_object_foreach((json_t *)in->services, k, v) {
                if (key_ns(k, ns, sizeof(ns)) &&
                    json_object_get(ch->keys[OP_IN_NAMESPACE], ns) != NULL)
                    set_add(svcs, k);
            }
        }
        json_object_foreach(svcs, k, v) {
            const json_t *svc = json_object_get(in->services, k);
            char key[600];

            if (!key_ns(k, ns, sizeof(ns)))
                continue;
            set_add(aff_ns, ns);
            snprintf(key, sizeof(key), "%s/%s.%s.svc.%s", ns, k + strlen(ns) + 1, ns,
                     cfg->dns_domain);
            obj = NULL;
            if (svc != NULL &&
                (r = build_service(in, cfg, wps, k, svc, key, sizeof(key), &obj, diags)) < 0) {
                json_decref(svcs);
                goto fail;
            }
            if ((r = place(json_object_get(snap, "service"), json_object_get(prev, "service"),
                           json_object_get(touched, "service"), key, obj)) < 0) {
                json_decref(svcs);
                goto fail;
            }
        }
        json_decref(svcs);
        r = -ENOMEM;
    }
    json_object_foreach(ch->keys[OP_IN_ENDPOINTSLICE], k, v) {
        if (key_ns(k, ns, sizeof(ns)))
            set_add(aff_ns, ns);
    }
    json_object_foreach(ch->keys[OP_IN_NAMESPACE], k, v) {
        set_add(aff_ns, k);
    }
    /* policies: compile all again (cheap next to workloads); workloads of their namespace
     * (all for the root namespace) — for an AuthorizationPolicy only if it has a selector now
     * or some workload listed it (had one): workloads list selector policies only */
    for (int kind = OP_IN_AUTHZ; kind <= OP_IN_PEERAUTHN; kind++) {
        json_object_foreach(ch->keys[kind], k, v) {
            policies = true;
            if (kind == OP_IN_AUTHZ) {
                const json_t *ap = json_object_get(in->authorization_policies, k);

                if (listed == NULL && (listed = listed_policies(prev)) == NULL)
                    goto fail;
                if (json_object_size(jget(ap, "spec", "selector")) == 0 &&
                    json_object_get(listed, k) == NULL)
                    continue;
            }
            if (!key_ns(k, ns, sizeof(ns)) || strcmp(ns, cfg->root_ns) == 0)
                all_pods = true;
            else
                set_add(aff_ns, ns);
        }
    }
    if (policies) {
        json_t *out = json_object_get(snap, "policy");
        const json_t *prev_pols = json_object_get(prev, "policy");
        bool all_pols = false;

        r = update_authz_policies(in, cfg, ch, prev_pols, out, json_object_get(touched, "policy"),
                                  diags, &all_pols);
        if (r < 0)
            goto fail;
        r = -ENOMEM;
        policies = all_pols;
    }
    if (policies) { /* PeerAuthentications (compiled together) or an unusual AuthorizationPolicy */
        json_t *pols = json_object(), *out = json_object_get(snap, "policy");
        const json_t *prev_pols = json_object_get(prev, "policy");
        void *tmp;

        if (pols == NULL || (r = build_policies(in, cfg, pols, diags)) < 0) {
            json_decref(pols);
            goto fail;
        }
        json_object_foreach_safe(out, tmp, k, obj) {
            if (json_object_get(pols, k) == NULL &&
                (r = place(out, prev_pols, json_object_get(touched, "policy"), k, NULL)) < 0) {
                json_decref(pols);
                goto fail;
            }
        }
        json_object_foreach(pols, k, obj) {
            if ((r = place(out, prev_pols, json_object_get(touched, "policy"), k,
                           json_incref(obj))) < 0) {
                json_decref(pols);
                goto fail;
            }
        }
        json_decref(pols);
        r = -ENOMEM;
    }
    /* workloads: changed pods, and every pod of an affected namespace */
    json_object_foreach(ch->keys[OP_IN_POD], k, v) {
        set_add(pods, k);
    }
    if (all_pods || json_object_size(aff_ns) > 0) {
        json_object_foreach((json_t *)in->pods, k, v) {
            if (all_pods ||
                (key_ns(k, ns, sizeof(ns)) && json_object_get(aff_ns, ns) != NULL))
                set_add(pods, k);
        }
    }
    json_object_foreach(pods, k, v) {
        if (key_ns(k, ns, sizeof(ns)))
            set_add(pod_ns, ns);
    }
    if (json_object_size(pods) > 0) {
        r = wl_ctx_init(&c, in, cfg, wps, all_pods ? NULL : pod_ns);
        if (r < 0)
            goto fail;
        json_object_foreach(pods, k, v) {
            const json_t *pod = json_object_get(in->pods, k);
            char uid[700];

            obj = NULL;
            if (pod != NULL && (r = build_workload(&c, pod, uid, sizeof(uid), &obj)) < 0)
                break;
            snprintf(uid, sizeof(uid), "%s//Pod/%s", cfg->cluster_id, k);
            if ((r = place(json_object_get(snap, "workload"), json_object_get(prev, "workload"),
                           json_object_get(touched, "workload"), uid, obj)) < 0)
                break;
        }
        wl_ctx_done(&c);
        if (r < 0)
            goto fail;
    }
    json_decref(wps);
    json_decref(aff_ns);
    json_decref(pods);
    json_decref(pod_ns);
    json_decref(listed);
    *ret_snap = snap;
    *ret_touched = touched;
    return 0;

full:
    json_decref(wps);
    r = op_snapshot_build(in, cfg, &snap, diags);
    if (r < 0)
        return r;
    if (prev != NULL)
        share_unchanged(prev, snap);
    *ret_snap = snap;
    *ret_touched = NULL;
    return 0;
fail:
    json_decref(snap);
    json_decref(touched);
    json_decref(wps);
    json_decref(aff_ns);
    json_decref(pods);
    json_decref(pod_ns);
    json_decref(listed);
    return r;
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

int op_snapshot_diff_keys(const json_t *old_snap, const json_t *new_snap, const json_t *touched,
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
        const char **keys = sorted_keys(touched ? json_object_get(touched, KIND_ORDER[i]) : n,
                                        &nk);

        if (keys == NULL) {
            r = -ENOMEM;
            break;
        }
        for (size_t j = 0; j < nk && r == 0; j++) {
            json_t *obj = json_object_get(n, keys[j]), *prev = json_object_get(o, keys[j]);

            /* json_equal() is true at once for the same (shared) object */
            if (obj != NULL && (prev == NULL || !json_equal(prev, obj)))
                r = push_event(events, "upsert", &v, KIND_ORDER[i], keys[j], obj);
        }
        free(keys);
    }
    for (size_t i = 4; i-- > 0 && r == 0;) {
        const json_t *o = json_object_get(old_snap, KIND_ORDER[i]);
        const json_t *n = json_object_get(new_snap, KIND_ORDER[i]);
        size_t nk = 0;
        const char **keys = sorted_keys(touched ? json_object_get(touched, KIND_ORDER[i]) : o,
                                        &nk);

        if (keys == NULL) {
            r = -ENOMEM;
            break;
        }
        for (size_t j = 0; j < nk && r == 0; j++) {
            if (json_object_get(o, keys[j]) != NULL && json_object_get(n, keys[j]) == NULL)
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

int op_snapshot_diff(const json_t *old_snap, const json_t *new_snap,
                     unsigned long long first_version, json_t **ret_events)
{
    return op_snapshot_diff_keys(old_snap, new_snap, NULL, first_version, ret_events);
}

int op_snapshot_full(const json_t *snap, unsigned long long version, json_t **ret_events)
{
    return op_snapshot_diff(NULL, snap, version, ret_events);
}
