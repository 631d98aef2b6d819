/*
 * status.c — AuthorizationPolicy and Mesh status. See status.h.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kube.h"
#include "log.h"
#include "policy.h"
#include "status.h"

#define SCOPE       "operator"
#define AMBIT_VERSION "0.1.0"

struct op_status {
    struct op_ctx *op;
    struct op_sub sub;
    json_t *written; /* "<kind>/<key>" -> status content last applied (without timestamps) */
    bool active;
    unsigned inflight;
};

json_t *op_authz_conditions(const json_t *ap, const char *root_ns, json_int_t gen, const char *now)
{
    json_t *spec = json_object_get(ap, "spec"), *pols = NULL;
    struct dp_policy_diags d = {0};
    bool waypoint = json_object_get(spec, "targetRef") || json_object_get(spec, "targetRefs");
    char msg[1024] = "";
    size_t off = 0;
    int r;

    if (waypoint && json_object_get(spec, "selector") != NULL)
        /* the webhook rejects this (analyze.h SelectorAndTargetRefs); one that got in anyway
         * (webhook off) is neither a valid waypoint nor a ztunnel policy */
        return json_pack("[{s:s,s:s,s:s,s:s,s:I,s:s}]", "type", "WaypointAccepted", "status",
                         "False", "reason", "Invalid", "message",
                         "selector and targetRef(s) cannot be used together", "observedGeneration",
                         gen, "lastTransitionTime", now);
    if (waypoint)
        return json_pack("[{s:s,s:s,s:s,s:s,s:I,s:s}]", "type", "WaypointAccepted", "status",
                         "True", "reason", "Accepted", "message",
                         "bound to its target; enforced by the waypoint", "observedGeneration",
                         gen, "lastTransitionTime", now);
    r = dp_policy_compile_authz(ap, root_ns, &pols, &d);
    json_decref(pols);
    for (size_t i = 0; i < d.n && off < sizeof(msg) - 1; i++)
        off += (size_t)snprintf(msg + off, sizeof(msg) - off, "%s%s", i ? "; " : "",
                                d.items[i].text);
    if (off >= sizeof(msg))
        off = sizeof(msg) - 1;
    /* the compiler may keep going past a bad rule (fail closed) and report it as an error */
    if (r < 0 || d.n_errors > 0)
        return json_pack("[{s:s,s:s,s:s,s:s,s:I,s:s}]", "type", "ZtunnelAccepted", "status",
                         "False", "reason", "Invalid", "message", off ? msg : "invalid policy",
                         "observedGeneration", gen, "lastTransitionTime", now);
    if (d.n_warnings > 0)
        return json_pack("[{s:s,s:s,s:s,s:s,s:I,s:s}]", "type", "ZtunnelAccepted", "status",
                         "False", "reason", "UnsupportedValue", "message", msg,
                         "observedGeneration", gen, "lastTransitionTime", now);
    return json_pack("[{s:s,s:s,s:s,s:s,s:I,s:s}]", "type", "ZtunnelAccepted", "status", "True",
                     "reason", "Accepted", "message", "attached to ztunnel", "observedGeneration",
                     gen, "lastTransitionTime", now);
}

/* content without lastTransitionTime, to compare what we wrote with what we would write */
static json_t *comparable(const json_t *status)
{
    json_t *c = json_deep_copy(status), *cond;
    size_t i;

    json_array_foreach(json_object_get(c, "conditions"), i, cond) {
        json_object_del(cond, "lastTransitionTime");
    }
    return c;
}

struct write_req {
    struct op_status *st;
    char key[600];
};

static void on_written(int r, long http, json_t *body, const char *errmsg, void *arg)
{
    struct write_req *w = arg;

    (void)http;
    (void)body;
    w->st->inflight--;
    if (r < 0 && r != -ENOENT) {
        /* forget it so the next push retries */
        json_object_del(w->st->written, w->key);
        dp_warn(SCOPE, "status write failed", DP_LS("object", w->key), DP_LS("detail", errmsg));
    }
    free(w);
}

static void write_status(struct op_status *st, const struct dp_kube_resource *res,
                         const char *ns, const char *name, const char *api_version,
                         const char *kind, json_t *status /* steals */)
{
    char key[600], *path = NULL, *full = NULL;
    json_t *cmp = comparable(status), *obj;
    struct write_req *w;

    snprintf(key, sizeof(key), "%s/%s/%s", kind, ns ? ns : "", name);
    if (json_equal(json_object_get(st->written, key), cmp) || st->inflight > 64) {
        json_decref(cmp);
        json_decref(status);
        return;
    }
    obj = json_pack("{s:s,s:s,s:{s:s,s:s?},s:o}", "apiVersion", api_version, "kind", kind,
                    "metadata", "name", name, "namespace", ns, "status", status);
    w = calloc(1, sizeof(*w));
    if (obj == NULL || w == NULL ||
        dp_kube_path(res, ns, name, "status", NULL, &path) < 0 ||
        asprintf(&full, "%s?fieldManager=%s&force=true", path, DP_KUBE_FIELD_MANAGER) < 0) {
        full = NULL;
        goto out;
    }
    w->st = st;
    snprintf(w->key, sizeof(w->key), "%s", key);
    if (dp_kube_multi_request(op_multi(st->op), "PATCH", full, "application/apply-patch+yaml",
                              obj, on_written, w, NULL) == 0) {
        st->inflight++;
        json_object_set(st->written, key, cmp);
        w = NULL;
    }
out:
    free(w);
    free(path);
    free(full);
    json_decref(obj);
    json_decref(cmp);
}

static void now_str(char *buf, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static bool pod_ready(const json_t *pod)
{
    size_t i;
    json_t *c;

    json_array_foreach(json_object_get(json_object_get(pod, "status"), "conditions"), i, c) {
        const char *type = json_string_value(json_object_get(c, "type"));
        const char *status = json_string_value(json_object_get(c, "status"));

        if (type && status && strcmp(type, "Ready") == 0)
            return strcmp(status, "True") == 0;
    }
    return false;
}

/*
 * A per-node component (the charts' DaemonSets, found by their `app` label in the operator
 * namespace): desired = nodes, available = its Ready pods. New reference.
 */
static json_t *node_component(struct op_ctx *op, const char *name, const char *app)
{
    json_int_t desired = (json_int_t)json_object_size(op_nodes(op)), available = 0;
    const char *k, *ns = op_opts(op)->namespace;
    json_t *pod;

    json_object_foreach((json_t *)op_pods(op), k, pod) {
        const char *pns = dp_kube_meta_str(pod, "namespace"), *papp = dp_kube_label(pod, "app");

        if (pns && ns && papp && strcmp(pns, ns) == 0 && strcmp(papp, app) == 0 &&
            pod_ready(pod))
            available++;
    }
    return json_pack("{s:s,s:s,s:b,s:I,s:I}", "name", name, "version", AMBIT_VERSION, "ready",
                     desired > 0 && available >= desired, "desired", desired, "available",
                     available);
}

static void on_push(struct op_ctx *op, const json_t *events, void *arg)
{
    struct op_status *st = arg;
    const char *k;
    json_t *ap, *mesh;
    char now[32];

    (void)events;
    if (!st->active)
        return;
    now_str(now, sizeof(now));
    json_object_foreach((json_t *)op_authorization_policies(op), k, ap) {
        json_int_t gen = json_integer_value(json_object_get(json_object_get(ap, "metadata"),
                                                            "generation"));
        json_t *status;

        if (!op_may_write(op, dp_kube_meta_str(ap, "namespace"), NULL))
            continue;
        status = json_pack("{s:o}", "conditions",
                           op_authz_conditions(ap, op_opts(op)->mesh.root_ns, gen, now));
        if (status != NULL)
            write_status(st, &DP_KUBE_RES_AUTHORIZATIONPOLICIES, dp_kube_meta_str(ap, "namespace"),
                         dp_kube_meta_str(ap, "name"), "security.istio.io/v1",
                         "AuthorizationPolicy", status);
    }
    json_object_foreach((json_t *)op_meshes(op), k, mesh) {
        json_int_t gen = json_integer_value(json_object_get(json_object_get(mesh, "metadata"),
                                                            "generation"));
        bool ready = op_ready(op);
        json_t *status;

        if (!op_may_write(op, NULL, json_object_get(json_object_get(mesh, "metadata"), "labels")))
            continue;
        status = json_pack(
                "{s:I,s:s,s:[{s:s,s:s,s:b}],s:[{s:s,s:s,s:s,s:s,s:I,s:s}]}", "observedGeneration",
                gen, "version", AMBIT_VERSION, "components", "name", "operator", "version",
                AMBIT_VERSION, "ready", ready, "conditions", "type", "Ready", "status",
                ready ? "True" : "False", "reason", ready ? "Synced" : "NotSynced", "message",
                ready ? "operator synced; serving config and certificates"
                      : "operator informers not synced",
                "observedGeneration", gen, "lastTransitionTime", now);

        if (status != NULL) {
            json_t *comps = json_object_get(status, "components");

            json_array_append_new(comps, node_component(op, "nodeAgent", "ambit-node"));
            json_array_append_new(comps, node_component(op, "cni", "ambit-cni-node"));
        }
        if (status != NULL)
            write_status(st, &DP_KUBE_RES_MESHES, NULL, k, "install.ambit.dev/v1alpha1", "Mesh",
                         status);
    }
}

int op_status_new(struct op_ctx *op, struct op_status **ret_st)
{
    struct op_status *st = calloc(1, sizeof(*st));

    if (st == NULL || (st->written = json_object()) == NULL) {
        free(st);
        return -ENOMEM;
    }
    st->op = op;
    st->active = true;
    op_subscribe(op, &st->sub, on_push, st);
    *ret_st = st;
    return 0;
}

void op_status_free(struct op_status *st)
{
    if (st == NULL)
        return;
    op_unsubscribe(&st->sub);
    json_decref(st->written);
    free(st);
}

void op_status_set_active(struct op_status *st, bool active)
{
    st->active = active;
    if (active)
        json_object_clear(st->written); /* a new leader re-asserts everything */
}
