/*
 * status.c — AuthorizationPolicy and Mesh status. See status.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
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
    json_t *seen;    /* AuthorizationPolicy key -> the cached object its status was decided
                        for (a push skips unchanged policies instead of compiling each again) */
    char *seen_root; /* the root namespace `seen` was decided with */
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

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

#define MAX_NAMED_NODES 5

json_t *op_mesh_node_component(const json_t *nodes, const json_t *pods, const char *ns,
                               const char *name, const char *app)
{
    size_t n_nodes = json_object_size(nodes), n_missing = 0, i;
    const char **missing = calloc(n_nodes ? n_nodes : 1, sizeof(*missing));
    json_t *ready_on = json_object(), *pod, *node, *comp = NULL;
    const char *k;
    char msg[512] = "";

    if (missing == NULL || ready_on == NULL)
        goto out;
    json_object_foreach((json_t *)pods, k, pod) {
        const char *pns = dp_kube_meta_str(pod, "namespace"), *papp = dp_kube_label(pod, "app");
        const char *on = json_string_value(json_object_get(json_object_get(pod, "spec"),
                                                           "nodeName"));

        if (pns && ns && papp && on && strcmp(pns, ns) == 0 && strcmp(papp, app) == 0 &&
            pod_ready(pod))
            json_object_set_new(ready_on, on, json_true());
    }
    json_object_foreach((json_t *)nodes, k, node) {
        const char *nn = dp_kube_meta_str(node, "name");

        if (nn != NULL && json_object_get(ready_on, nn) == NULL)
            missing[n_missing++] = nn;
    }
    comp = json_pack("{s:s,s:s,s:b,s:I,s:I}", "name", name, "version", AMBIT_VERSION, "ready",
                     n_nodes > 0 && n_missing == 0, "desired", (json_int_t)n_nodes, "available",
                     (json_int_t)(n_nodes - n_missing));
    if (comp == NULL || n_missing == 0)
        goto out;
    qsort(missing, n_missing, sizeof(*missing), cmp_str);
    {
        size_t off = (size_t)snprintf(msg, sizeof(msg), "not ready on ");

        for (i = 0; i < n_missing && i < MAX_NAMED_NODES && off < sizeof(msg); i++)
            off += (size_t)snprintf(msg + off, sizeof(msg) - off, "%s%.63s", i ? ", " : "",
                                    missing[i]);
        if (n_missing > MAX_NAMED_NODES && off < sizeof(msg))
            snprintf(msg + off, sizeof(msg) - off, " and %zu more", n_missing - MAX_NAMED_NODES);
    }
    json_object_set_new(comp, "message", json_string(msg));
out:
    free(missing);
    json_decref(ready_on);
    return comp;
}

/* lastTransitionTime of the same condition type in `old` if its status is unchanged */
static const char *transition_time(const json_t *old, const char *type, const char *status,
                                   const char *now)
{
    json_t *c;
    size_t i;

    json_array_foreach(old, i, c) {
        const char *t = json_string_value(json_object_get(c, "type"));
        const char *st = json_string_value(json_object_get(c, "status"));
        const char *ltt = json_string_value(json_object_get(c, "lastTransitionTime"));

        if (t && st && ltt && strcmp(t, type) == 0)
            return strcmp(st, status) == 0 ? ltt : now;
    }
    return now;
}

static const struct {
    const char *component, *reason, *what;
} NODE_COMPONENTS[] = {
        {"nodeAgent", "NodeAgentsNotReady", "node agents"},
        {"cni", "CNINotReady", "CNI node agents"},
};

json_t *op_mesh_conditions(bool synced, const char *meshcfg_error, const json_t *components,
                           const json_t *old, json_int_t gen, const char *now)
{
    char msg[1536] = "";
    const char *reason = NULL, *deg;
    size_t off = 0, i;
    json_t *comp;

    if (meshcfg_error != NULL) {
        reason = "MeshConfigInvalid";
        off += (size_t)snprintf(msg, sizeof(msg), "%s", meshcfg_error);
    }
    for (size_t j = 0; j < sizeof(NODE_COMPONENTS) / sizeof(NODE_COMPONENTS[0]); j++) {
        json_array_foreach(components, i, comp) {
            const char *name = json_string_value(json_object_get(comp, "name"));
            json_int_t desired = json_integer_value(json_object_get(comp, "desired"));
            json_int_t available = json_integer_value(json_object_get(comp, "available"));
            const char *cmsg = json_string_value(json_object_get(comp, "message"));

            /* no nodes: nothing can run, nothing is missing */
            if (name == NULL || strcmp(name, NODE_COMPONENTS[j].component) != 0 ||
                desired <= 0 || available >= desired)
                continue;
            if (reason == NULL)
                reason = NODE_COMPONENTS[j].reason;
            if (off < sizeof(msg))
                off += (size_t)snprintf(msg + off, sizeof(msg) - off,
                                        "%s%" JSON_INTEGER_FORMAT " of %" JSON_INTEGER_FORMAT
                                        " %s ready%s%s",
                                        off ? "; " : "", available, desired,
                                        NODE_COMPONENTS[j].what, cmsg ? "; " : "",
                                        cmsg ? cmsg : "");
        }
    }
    deg = reason ? "True" : "False";
    return json_pack("[{s:s,s:s,s:s,s:s,s:I,s:s},{s:s,s:s,s:s,s:s,s:I,s:s}]",
                     "type", "Ready", "status", synced ? "True" : "False", "reason",
                     synced ? "Synced" : "NotSynced", "message",
                     synced ? "operator synced; serving config and certificates"
                            : "operator informers not synced",
                     "observedGeneration", gen, "lastTransitionTime",
                     transition_time(old, "Ready", synced ? "True" : "False", now),
                     "type", "Degraded", "status", deg, "reason", reason ? reason : "AsExpected",
                     "message", reason ? msg : "mesh config valid; every component ready",
                     "observedGeneration", gen, "lastTransitionTime",
                     transition_time(old, "Degraded", deg, now));
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
    if (st->seen_root == NULL || strcmp(st->seen_root, op_opts(op)->mesh.root_ns) != 0 ||
        json_object_size(st->seen) > json_object_size(op_authorization_policies(op))) {
        json_object_clear(st->seen); /* root namespace changed, or policies were deleted */
        free(st->seen_root);
        st->seen_root = strdup(op_opts(op)->mesh.root_ns);
    }
    json_object_foreach((json_t *)op_authorization_policies(op), k, ap) {
        json_int_t gen = json_integer_value(json_object_get(json_object_get(ap, "metadata"),
                                                            "generation"));
        const char *ns = dp_kube_meta_str(ap, "namespace"), *name = dp_kube_meta_str(ap, "name");
        json_t *status, *cmp;
        char wkey[600];

        if (!op_may_write(op, ns, NULL))
            continue;
        /* informers replace changed objects: the same object, already written, is done */
        snprintf(wkey, sizeof(wkey), "AuthorizationPolicy/%s/%s", ns ? ns : "", name ? name : "");
        if (json_object_get(st->seen, k) == ap && json_object_get(st->written, wkey) != NULL)
            continue;
        status = json_pack("{s:o}", "conditions",
                           op_authz_conditions(ap, op_opts(op)->mesh.root_ns, gen, now));
        if (status == NULL)
            continue;
        cmp = comparable(status);
        write_status(st, &DP_KUBE_RES_AUTHORIZATIONPOLICIES, ns, name, "security.istio.io/v1",
                     "AuthorizationPolicy", status);
        /* decided once this status is what we wrote (not while writes are throttled) */
        if (cmp != NULL && json_equal(json_object_get(st->written, wkey), cmp) &&
            st->seen_root != NULL)
            json_object_set(st->seen, k, ap);
        json_decref(cmp);
    }
    json_object_foreach((json_t *)op_meshes(op), k, mesh) {
        json_int_t gen = json_integer_value(json_object_get(json_object_get(mesh, "metadata"),
                                                            "generation"));
        const char *ns = op_opts(op)->namespace;
        bool ready = op_ready(op);
        json_t *status, *comps;

        if (!op_may_write(op, NULL, json_object_get(json_object_get(mesh, "metadata"), "labels")))
            continue;
        comps = json_pack("[{s:s,s:s,s:b},o?,o?]", "name", "operator", "version", AMBIT_VERSION,
                          "ready", ready,
                          op_mesh_node_component(op_nodes(op), op_pods(op), ns, "nodeAgent",
                                                 "ambit-node"),
                          op_mesh_node_component(op_nodes(op), op_pods(op), ns, "cni",
                                                 "ambit-cni-node"));
        if (comps == NULL)
            continue;
        status = json_pack(
                "{s:I,s:s,s:o?,s:O,s:o?}", "observedGeneration", gen, "version", AMBIT_VERSION,
                "meshConfig", op_meshconfig_status(op), "components", comps, "conditions",
                op_mesh_conditions(ready, op_meshconfig_error(op), comps,
                                   json_object_get(json_object_get(mesh, "status"), "conditions"),
                                   gen, now));
        json_decref(comps);
        if (status != NULL)
            write_status(st, &DP_KUBE_RES_MESHES, NULL, k, "install.ambit.dev/v1alpha1", "Mesh",
                         status);
    }
}

int op_status_new(struct op_ctx *op, struct op_status **ret_st)
{
    struct op_status *st = calloc(1, sizeof(*st));

    if (st == NULL || (st->written = json_object()) == NULL ||
        (st->seen = json_object()) == NULL) {
        if (st != NULL)
            json_decref(st->written);
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
    json_decref(st->seen);
    free(st->seen_root);
    free(st);
}

void op_status_set_active(struct op_status *st, bool active)
{
    st->active = active;
    if (active) {
        json_object_clear(st->written); /* a new leader re-asserts everything */
        json_object_clear(st->seen);
    }
}
