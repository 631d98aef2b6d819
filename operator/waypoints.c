/*
 * waypoints.c — waypoint ServiceAccount/Service/EndpointSlice and Gateway status. See
 * waypoints.h.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kube_queue.h"
#include "log.h"
#include "waypoints.h"

#define SCOPE "operator"
#define CLASS_CONTROLLER "istio.io/mesh-controller"

struct op_waypoints {
    struct op_ctx *op;
    struct op_sub sub;
    struct dp_kube_queue q;
    struct dp_timer timer;
    unsigned inflight;
    bool active;
    bool class_done;
};

static const char *jstr(const json_t *o, const char *a, const char *b)
{
    return json_string_value(json_object_get(json_object_get(o, a), b));
}

static json_t *owner_ref(const json_t *gw)
{
    return json_pack("[{s:s,s:s,s:s,s:s?,s:b,s:b}]", "apiVersion", "gateway.networking.k8s.io/v1",
                     "kind", "Gateway", "name", dp_kube_meta_str(gw, "name"), "uid",
                     dp_kube_meta_str(gw, "uid"), "controller", 1, "blockOwnerDeletion", 0);
}

static const char *node_ip(const json_t *node)
{
    json_t *addrs = json_object_get(json_object_get(node, "status"), "addresses"), *a;
    size_t i;

    json_array_foreach(addrs, i, a) {
        const char *t = json_string_value(json_object_get(a, "type"));

        if (t != NULL && strcmp(t, "InternalIP") == 0 &&
            strchr(json_string_value(json_object_get(a, "address")) ?: ":", ':') == NULL)
            return json_string_value(json_object_get(a, "address"));
    }
    return NULL;
}

json_t *op_waypoint_resources(const json_t *gw, const json_t *wp, const json_t *nodes)
{
    const char *name = dp_kube_meta_str(gw, "name"), *ns = dp_kube_meta_str(gw, "namespace");
    json_t *labels = json_pack("{s:s,s:s}", "gateway.networking.k8s.io/gateway-name", name,
                               "gateway.istio.io/managed", "istio.io-mesh-controller");
    json_t *endpoints = json_array(), *n, *out;
    char slice[300];
    size_t i;

    json_array_foreach(json_object_get(wp, "nodes"), i, n) {
        const char *ip = node_ip(json_object_get(nodes, json_string_value(n)));

        if (ip != NULL)
            json_array_append_new(endpoints,
                                  json_pack("{s:[s],s:s,s:{s:b}}", "addresses", ip, "nodeName",
                                            json_string_value(n), "conditions", "ready", 1));
    }
    snprintf(slice, sizeof(slice), "%s-ambit", name);
    out = json_pack(
            "[{s:s,s:s,s:{s:s,s:s,s:O,s:o}},"
            "{s:s,s:s,s:{s:s,s:s,s:O,s:o},s:{s:s,s:s,s:[{s:s,s:i,s:s,s:s}]}},"
            "{s:s,s:s,s:{s:s,s:s,s:o,s:o},s:s,s:o,s:[{s:s,s:i,s:s}]}]",
            /* ServiceAccount */
            "apiVersion", "v1", "kind", "ServiceAccount", "metadata", "name", name, "namespace",
            ns, "labels", labels, "ownerReferences", owner_ref(gw),
            /* Service */
            "apiVersion", "v1", "kind", "Service", "metadata", "name", name, "namespace", ns,
            "labels", labels, "ownerReferences", owner_ref(gw), "spec", "type", "ClusterIP",
            "ipFamilyPolicy", "PreferDualStack", "ports", "name", "mesh", "port", 15008,
            "protocol", "TCP", "appProtocol", "hbone",
            /* EndpointSlice */
            "apiVersion", "discovery.k8s.io/v1", "kind", "EndpointSlice", "metadata", "name",
            slice, "namespace", ns, "labels",
            json_pack("{s:s,s:s}", "kubernetes.io/service-name", name,
                      "endpointslice.kubernetes.io/managed-by", "ambit.dev"),
            "ownerReferences", owner_ref(gw), "addressType", "IPv4", "endpoints", endpoints,
            "ports", "name", "mesh", "port", 15008, "protocol", "TCP");
    json_decref(labels);
    return out;
}

static json_t *condition(const char *type, bool ok, const char *reason, const char *msg,
                         json_int_t gen, const char *now)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:I,s:s}", "type", type, "status", ok ? "True" : "False",
                     "reason", reason, "message", msg, "observedGeneration", gen,
                     "lastTransitionTime", now);
}

json_t *op_waypoint_status(const json_t *gw, const json_t *wp, const json_t *svc,
                           const char *dns_domain, const char *now)
{
    const char *name = dp_kube_meta_str(gw, "name"), *ns = dp_kube_meta_str(gw, "namespace");
    json_int_t gen = json_integer_value(json_object_get(json_object_get(gw, "metadata"),
                                                        "generation"));
    const char *vip = jstr(svc, "spec", "clusterIP");
    bool has_vip = vip != NULL && vip[0] && strcmp(vip, "None") != 0;
    bool has_node = json_array_size(json_object_get(wp, "nodes")) > 0;
    json_t *addrs = json_array(), *conds;
    char host[600], msg[700];

    snprintf(host, sizeof(host), "%s.%s.svc.%s", name, ns, dns_domain);
    if (has_vip && has_node) {
        json_array_append_new(addrs, json_pack("{s:s,s:s}", "type", "Hostname", "value", host));
        json_array_append_new(addrs, json_pack("{s:s,s:s}", "type", "IPAddress", "value", vip));
        snprintf(msg, sizeof(msg), "Resource programmed, assigned to service(s) %s:15008", host);
    } else {
        snprintf(msg, sizeof(msg), "%s", !has_node ? "no Ready node can host the waypoint"
                                                   : "waiting for the Service's ClusterIP");
    }
    conds = json_pack("[o,o]", condition("Accepted", true, "Accepted", "Resource accepted", gen, now),
                      has_vip && has_node
                              ? condition("Programmed", true, "Programmed", msg, gen, now)
                              : condition("Programmed", false, "AddressNotAssigned", msg, gen, now));
    return json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:o,s:o}}", "apiVersion",
                     "gateway.networking.k8s.io/v1", "kind", "Gateway", "metadata", "name", name,
                     "namespace", ns, "status", "addresses", addrs, "conditions", conds);
}

/* ------------------------------------------------------------------ applying */

struct apply_req {
    struct op_waypoints *w;
    char key[300];
    int *pending; /* shared countdown of one reconcile; the last one finishes the key */
    int *failed;
};

static void kick(struct op_waypoints *w);

static void on_applied(int r, long http, json_t *body, const char *errmsg, void *arg)
{
    struct apply_req *a = arg;
    struct op_waypoints *w = a->w;
    uint64_t now = dp_loop_now(op_loop(w->op));

    (void)http;
    (void)body;
    if (r < 0) {
        (*a->failed)++;
        dp_warn(SCOPE, "waypoint apply failed", DP_LS("gateway", a->key), DP_LS("detail", errmsg));
    }
    if (--(*a->pending) == 0) {
        w->inflight--;
        dp_kube_queue_finish(&w->q, a->key, now);
        if (*a->failed)
            dp_kube_queue_retry(&w->q, a->key, now);
        else
            dp_kube_queue_forget(&w->q, a->key);
        free(a->pending);
        free(a->failed);
        kick(w);
    }
    free(a);
}

static int apply(struct op_waypoints *w, const struct dp_kube_resource *res, const json_t *obj,
                 const char *sub, const char *key, int *pending, int *failed)
{
    struct apply_req *a = calloc(1, sizeof(*a));
    char *path = NULL, *full = NULL;
    int r;

    if (a == NULL)
        return -ENOMEM;
    a->w = w;
    a->pending = pending;
    a->failed = failed;
    snprintf(a->key, sizeof(a->key), "%s", key);
    r = dp_kube_path(res, dp_kube_meta_str(obj, "namespace"), dp_kube_meta_str(obj, "name"), sub,
                     NULL, &path);
    if (r == 0 && asprintf(&full, "%s?fieldManager=%s&force=true", path,
                           DP_KUBE_FIELD_MANAGER) < 0) {
        full = NULL;
        r = -ENOMEM;
    }
    if (r == 0)
        r = dp_kube_multi_request(op_multi(w->op), "PATCH", full, "application/apply-patch+yaml",
                                  obj, on_applied, a, NULL);
    free(path);
    free(full);
    if (r < 0) {
        free(a);
        return r;
    }
    (*pending)++;
    return 0;
}

static void reconcile(struct op_waypoints *w, const char *key)
{
    const json_t *gw = json_object_get(op_gateways(w->op), key);
    const json_t *wp = json_object_get(json_object_get(op_snapshot(w->op), "waypoint"), key);
    const json_t *svc = json_object_get(op_services(w->op), key);
    uint64_t now_ms = dp_loop_now(op_loop(w->op));
    int *pending = calloc(1, sizeof(int)), *failed = calloc(1, sizeof(int));
    json_t *objs = NULL, *st = NULL, *o;
    char now[32];
    time_t t = time(NULL);
    struct tm tm;
    size_t i;

    if (pending == NULL || failed == NULL || gw == NULL || wp == NULL ||
        !op_may_write(w->op, dp_kube_meta_str(gw, "namespace"), NULL)) {
        /* Gateway gone or not a waypoint (any more): owner references clean up */
        free(pending);
        free(failed);
        dp_kube_queue_finish(&w->q, key, now_ms);
        dp_kube_queue_forget(&w->q, key);
        return;
    }
    gmtime_r(&t, &tm);
    strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
    objs = op_waypoint_resources(gw, wp, op_nodes(w->op));
    st = op_waypoint_status(gw, wp, svc, op_opts(w->op)->mesh.dns_domain, now);
    json_array_foreach(objs, i, o) {
        const struct dp_kube_resource *res = i == 0   ? &DP_KUBE_RES_SERVICEACCOUNTS
                                             : i == 1 ? &DP_KUBE_RES_SERVICES
                                                      : &DP_KUBE_RES_ENDPOINTSLICES;

        if (apply(w, res, o, NULL, key, pending, failed) < 0)
            (*failed)++;
    }
    if (st != NULL && apply(w, &DP_KUBE_RES_GATEWAYS, st, "status", key, pending, failed) < 0)
        (*failed)++;
    json_decref(objs);
    json_decref(st);
    if (*pending == 0) {
        dp_kube_queue_finish(&w->q, key, now_ms);
        dp_kube_queue_retry(&w->q, key, now_ms);
        free(pending);
        free(failed);
        return;
    }
    w->inflight++;
}

static void on_class_applied(int r, long http, json_t *body, const char *errmsg, void *arg)
{
    struct op_waypoints *w = arg;

    (void)http;
    (void)body;
    if (r == 0)
        w->class_done = true;
    else if (r != -ENOENT) /* -ENOENT: Gateway API not installed */
        dp_warn(SCOPE, "cannot apply GatewayClass istio-waypoint", DP_LS("detail", errmsg));
}

static void apply_class(struct op_waypoints *w)
{
    json_t *gc = json_pack("{s:s,s:s,s:{s:s},s:{s:s,s:s}}", "apiVersion",
                           "gateway.networking.k8s.io/v1", "kind", "GatewayClass", "metadata",
                           "name", op_opts(w->op)->mesh.waypoint_class, "spec", "controllerName",
                           CLASS_CONTROLLER, "description", "ambit waypoints");
    char *path = NULL, *full = NULL;

    if (gc != NULL &&
        dp_kube_path(&DP_KUBE_RES_GATEWAYCLASSES, NULL, op_opts(w->op)->mesh.waypoint_class,
                     NULL, NULL, &path) == 0 &&
        asprintf(&full, "%s?fieldManager=%s&force=true", path, DP_KUBE_FIELD_MANAGER) >= 0) {
        dp_kube_multi_request(op_multi(w->op), "PATCH", full, "application/apply-patch+yaml", gc,
                              on_class_applied, w, NULL);
        free(full);
    }
    free(path);
    json_decref(gc);
}

static void kick(struct op_waypoints *w)
{
    uint64_t now = dp_loop_now(op_loop(w->op));
    const char *key;
    int64_t due;

    if (!w->active)
        return;
    while (w->inflight < 8 && dp_kube_queue_pop(&w->q, now, &key) == 0) {
        char copy[300];

        snprintf(copy, sizeof(copy), "%s", key);
        reconcile(w, copy);
    }
    due = dp_kube_queue_next_due(&w->q, now);
    if (due >= 0)
        dp_timer_arm(op_loop(w->op), &w->timer, (uint64_t)due);
}

static void on_timer(struct dp_loop *loop, void *arg)
{
    (void)loop;
    kick(arg);
}

static void queue_all(struct op_waypoints *w)
{
    const json_t *wps = json_object_get(op_snapshot(w->op), "waypoint");
    uint64_t now = dp_loop_now(op_loop(w->op));
    const char *k;
    json_t *v;

    json_object_foreach((json_t *)wps, k, v) {
        dp_kube_queue_add(&w->q, k, now, 0);
    }
}

static void on_push(struct op_ctx *op, const json_t *events, void *arg)
{
    struct op_waypoints *w = arg;
    uint64_t now = dp_loop_now(op_loop(op));
    json_t *e;
    size_t i;

    if (!w->class_done && w->active && json_object_size(op_gateways(op)) > 0)
        apply_class(w);
    json_array_foreach(events, i, e) {
        const char *kind = json_string_value(json_object_get(e, "kind"));
        const char *type = json_string_value(json_object_get(e, "type"));

        if (kind != NULL && strcmp(kind, "waypoint") == 0 && type != NULL &&
            strcmp(type, "upsert") == 0)
            dp_kube_queue_add(&w->q, json_string_value(json_object_get(e, "key")), now, 0);
    }
    kick(w);
}

int op_waypoints_new(struct op_ctx *op, struct op_waypoints **ret_w)
{
    struct op_waypoints *w = calloc(1, sizeof(*w));

    if (w == NULL)
        return -ENOMEM;
    w->op = op;
    w->active = true;
    dp_kube_queue_init(&w->q, 500, 60000, 20, 50, 10000);
    dp_timer_init(&w->timer, on_timer, w);
    op_subscribe(op, &w->sub, on_push, w);
    *ret_w = w;
    return 0;
}

void op_waypoints_free(struct op_waypoints *w)
{
    if (w == NULL)
        return;
    op_unsubscribe(&w->sub);
    dp_timer_cancel(&w->timer);
    dp_kube_queue_done(&w->q);
    free(w);
}

void op_waypoints_set_active(struct op_waypoints *w, bool active)
{
    w->active = active;
    if (active) {
        w->class_done = false;
        queue_all(w);
        kick(w);
    }
}
