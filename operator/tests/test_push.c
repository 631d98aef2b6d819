/*
 * The config stream's content (operator/push.h): what each node agent receives, decoded by the
 * node agent's own stream consumer (dataplane/mesh.h). Per-node policy scoping: an agent on
 * node A does not get a policy that only selects pods on node B, and gets it (and later loses
 * it) when such a pod is scheduled on A (and goes away). A full push carries exactly the
 * snapshot's objects (policies scoped), batches are shared between streams, resume replays.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mesh.h"
#include "operator/push.h"
#include "operator/snapshot.h"

struct world {
    json_t *namespaces, *pods, *services, *aps;
    struct op_inputs in;
    struct op_mesh_config cfg;
    json_t *snap;
    uint64_t version;
    struct op_push *push;
};

/* the agent side: the node agent's decoder folding the stream in */
struct agent {
    struct op_push_stream *ps;
    struct dp_mesh_stream *st;
    struct dp_mesh_snapshot *last;
    json_t *lines; /* every event of the last drain */
};

static json_t *pod(const char *ns, const char *name, const char *app, const char *node,
                   const char *ip)
{
    return json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s}},s:{s:s},s:{s:s,s:[{s:s,s:s}]}}",
                     "apiVersion", "v1", "kind", "Pod", "metadata", "name", name, "namespace",
                     ns, "labels", "app", app, "spec", "nodeName", node, "status", "podIP", ip,
                     "conditions", "type", "Ready", "status", "True");
}

static json_t *selector_ap(const char *ns, const char *name, const char *app, const char *who)
{
    return json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:{s:{s:s}},s:s,s:[{s:[{s:{s:[s]}}]}]}}",
                     "apiVersion", "security.istio.io/v1", "kind", "AuthorizationPolicy",
                     "metadata", "name", name, "namespace", ns, "spec", "selector",
                     "matchLabels", "app", app, "action", "ALLOW", "rules", "from", "source",
                     "principals", who);
}

static json_t *ns_ap(const char *ns, const char *name)
{
    return json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:s,s:[{s:[{s:{s:[s]}}]}]}}", "apiVersion",
                     "security.istio.io/v1", "kind", "AuthorizationPolicy", "metadata", "name",
                     name, "namespace", ns, "spec", "action", "DENY", "rules", "from", "source",
                     "namespaces", "blocked");
}

static void set(json_t *bucket, json_t *obj)
{
    json_t *md = json_object_get(obj, "metadata");
    char key[300];

    snprintf(key, sizeof(key), "%s/%s", json_string_value(json_object_get(md, "namespace")),
             json_string_value(json_object_get(md, "name")));
    json_object_set_new(bucket, key, obj);
}

static void world_init(struct world *w)
{
    memset(w, 0, sizeof(*w));
    op_mesh_config_defaults(&w->cfg);
    w->namespaces = json_object();
    w->pods = json_object();
    w->services = json_object();
    w->aps = json_object();
    set(w->pods, pod("shop", "web-1", "web", "node-a", "10.244.1.1"));
    set(w->pods, pod("shop", "db-1", "db", "node-b", "10.244.2.1"));
    set(w->pods, pod("other", "o-1", "o", "node-b", "10.244.2.2"));
    set(w->services, json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:s,s:{s:s},s:[{s:i}]}}", "apiVersion",
                               "v1", "kind", "Service", "metadata", "name", "db", "namespace",
                               "shop", "spec", "clusterIP", "10.96.0.5", "selector", "app", "db",
                               "ports", "port", 5432));
    /* selects db pods (node-b only), a namespace policy of a namespace only on node-b, a
     * mesh-wide one, a policy for the web pod (node-a) */
    set(w->aps, selector_ap("shop", "allow-db", "db", "cluster.local/ns/shop/sa/web"));
    set(w->aps, selector_ap("shop", "allow-web", "web", "cluster.local/ns/x/sa/y"));
    set(w->aps, ns_ap("other", "deny-blocked"));
    set(w->aps, ns_ap("istio-system", "global-deny"));
    w->in = (struct op_inputs){.namespaces = w->namespaces, .pods = w->pods,
                               .services = w->services, .authorization_policies = w->aps};
    assert_int_equal(op_snapshot_build(&w->in, &w->cfg, &w->snap, NULL), 0);
    w->version = 10;
    assert_int_equal(op_push_new(&w->push), 0);
}

static void world_done(struct world *w)
{
    op_push_free(w->push);
    json_decref(w->snap);
    json_decref(w->namespaces);
    json_decref(w->pods);
    json_decref(w->services);
    json_decref(w->aps);
}

/* rebuild after a change and publish the difference, as the operator does */
static void rebuild(struct world *w)
{
    json_t *snap = NULL, *events = NULL;

    assert_int_equal(op_snapshot_build(&w->in, &w->cfg, &snap, NULL), 0);
    assert_int_equal(op_snapshot_diff(w->snap, snap, w->version + 1, &events), 0);
    json_decref(w->snap);
    w->snap = snap;
    w->version += json_array_size(events);
    if (json_array_size(events) > 0)
        assert_int_equal(op_push_publish(w->push, w->snap, w->version, events), 0);
    json_decref(events);
}

/* Take everything queued and fold it into the agent's state with the agent's decoder. */
static void drain(struct agent *a)
{
    const char *data;
    size_t len;

    json_decref(a->lines);
    a->lines = json_array();
    while ((data = op_push_peek(a->ps, &len)) != NULL) {
        const char *p = data, *end = data + len;

        /* chunks hold whole lines */
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            struct dp_mesh_snapshot *snap = NULL;
            char err[512] = "";
            json_t *ev;
            int r;

            assert_non_null(nl);
            ev = json_loadb(p, (size_t)(nl - p), 0, NULL);
            assert_non_null(ev);
            json_array_append_new(a->lines, ev);
            r = dp_mesh_stream_feed_line(a->st, p, (size_t)(nl - p), &snap, err, sizeof(err));
            if (r < 0)
                fail_msg("agent rejected %.*s: %s", (int)(nl - p), p, err);
            if (r == DP_MESH_FEED_PUBLISHED) {
                dp_mesh_snapshot_unref(a->last);
                a->last = snap;
            }
            p = nl + 1;
        }
        op_push_advance(a->ps, len);
    }
    assert_int_equal(op_push_queued(a->ps), 0);
}

static void agent_open(struct world *w, struct agent *a, const char *node, const json_t *since)
{
    size_t n = 0;

    memset(a, 0, sizeof(*a));
    assert_int_equal(dp_mesh_stream_new(NULL, &a->st), 0);
    assert_int_equal(op_push_stream_open(w->push, w->snap, w->version, since, false, node,
                                         &a->ps, &n),
                     0);
    assert_true(n > 0);
    drain(a);
}

static void agent_close(struct agent *a)
{
    op_push_stream_close(a->ps);
    dp_mesh_stream_free(a->st);
    dp_mesh_snapshot_unref(a->last);
    json_decref(a->lines);
}

static bool has_policy(const struct agent *a, const char *key)
{
    assert_non_null(a->last);
    return dp_mesh_policy_by_key(a->last, key) != NULL;
}

/* events of the last drain of kind/type (NULL = any) */
static size_t count(const struct agent *a, const char *kind, const char *type)
{
    size_t i, n = 0;
    json_t *e;

    json_array_foreach(a->lines, i, e) {
        const char *k = json_string_value(json_object_get(e, "kind"));
        const char *t = json_string_value(json_object_get(e, "type"));

        if ((kind == NULL || (k != NULL && strcmp(k, kind) == 0)) &&
            (type == NULL || strcmp(t, type) == 0))
            n++;
    }
    return n;
}

static void test_full_push_scoped(void **state)
{
    struct world w;
    struct agent a, b;
    json_t *full = NULL, *e;
    size_t i;

    (void)state;
    world_init(&w);
    agent_open(&w, &a, "node-a", NULL);
    agent_open(&w, &b, "node-b", NULL);
    /* node-a: its web pod's policy and the mesh-wide one only */
    assert_true(has_policy(&a, "shop/allow-web"));
    assert_true(has_policy(&a, "istio-system/global-deny"));
    assert_false(has_policy(&a, "shop/allow-db"));
    assert_false(has_policy(&a, "other/deny-blocked"));
    /* node-b: db and namespace `other` live there */
    assert_true(has_policy(&b, "shop/allow-db"));
    assert_true(has_policy(&b, "other/deny-blocked"));
    assert_true(has_policy(&b, "istio-system/global-deny"));
    assert_false(has_policy(&b, "shop/allow-web"));
    /* every agent gets every workload and service */
    assert_non_null(dp_mesh_workload_by_key(a.last, "Kubernetes//Pod/shop/db-1"));
    assert_non_null(dp_mesh_workload_by_key(b.last, "Kubernetes//Pod/shop/web-1"));
    assert_non_null(dp_mesh_service_by_key(a.last, "shop/db.shop.svc.cluster.local"));
    /* the shared serialisation carries exactly the snapshot's objects at its version */
    assert_int_equal(op_snapshot_full(w.snap, w.version, &full), 0);
    json_array_foreach(full, i, e) {
        const char *kind = json_string_value(json_object_get(e, "kind"));
        const char *key = json_string_value(json_object_get(e, "key"));
        bool found = false;
        size_t j;
        json_t *l;

        if (strcmp(kind, "policy") == 0)
            continue;
        /* a full push carries the current version on every object */
        json_object_set_new(e, "version", json_integer((json_int_t)w.version));
        json_array_foreach(a.lines, j, l) {
            if (strcmp(json_string_value(json_object_get(l, "key")), key) == 0) {
                found = json_equal(l, e);
                break;
            }
        }
        if (!found)
            fail_msg("%s %s not pushed as in op_snapshot_full", kind, key);
    }
    assert_int_equal(count(&a, NULL, "upsert"), json_array_size(full) - 4 + 2);
    assert_int_equal(json_integer_value(json_object_get(
                             json_array_get(a.lines, json_array_size(a.lines) - 1), "version")),
                     (json_int_t)w.version);
    json_decref(full);
    agent_close(&a);
    agent_close(&b);
    world_done(&w);
}

static void test_scope_follows_pods(void **state)
{
    struct world w;
    struct agent a, b;

    (void)state;
    world_init(&w);
    agent_open(&w, &a, "node-a", NULL);
    agent_open(&w, &b, "node-b", NULL);
    assert_false(has_policy(&a, "shop/allow-db"));

    /* a db pod is scheduled on node-a: A now needs allow-db; B gets the workload only */
    set(w.pods, pod("shop", "db-2", "db", "node-a", "10.244.1.2"));
    rebuild(&w);
    drain(&a);
    drain(&b);
    assert_true(has_policy(&a, "shop/allow-db"));
    assert_non_null(dp_mesh_workload_by_key(a.last, "Kubernetes//Pod/shop/db-2"));
    assert_int_equal(count(&b, "policy", NULL), 0);
    assert_int_equal(count(&b, "workload", "upsert"), 1);

    /* the rule changes: both hold it, both get it */
    set(w.aps, selector_ap("shop", "allow-db", "db", "cluster.local/ns/shop/sa/web2"));
    rebuild(&w);
    drain(&a);
    drain(&b);
    assert_int_equal(count(&a, "policy", "upsert"), 1);
    assert_int_equal(count(&b, "policy", "upsert"), 1);

    /* the pod leaves node-a: A drops the policy, B keeps it */
    json_object_del(w.pods, "shop/db-2");
    rebuild(&w);
    drain(&a);
    drain(&b);
    assert_false(has_policy(&a, "shop/allow-db"));
    assert_true(has_policy(&b, "shop/allow-db"));
    assert_int_equal(count(&b, "policy", NULL), 0);

    /* a change of a policy out of A's scope does not reach A */
    set(w.aps, selector_ap("shop", "allow-db", "db", "cluster.local/ns/shop/sa/web3"));
    rebuild(&w);
    drain(&a);
    drain(&b);
    assert_int_equal(count(&a, "policy", NULL), 0);
    assert_int_equal(count(&b, "policy", "upsert"), 1);

    /* namespace `other` gets a pod on node-a: its namespace policy enters A's scope */
    set(w.pods, pod("other", "o-2", "o", "node-a", "10.244.1.3"));
    rebuild(&w);
    drain(&a);
    assert_true(has_policy(&a, "other/deny-blocked"));

    /* the mesh-wide policy becomes a selector policy for db pods (only on node-b now): it
     * leaves A's scope, no workload moved */
    set(w.aps, selector_ap("istio-system", "global-deny", "db", "cluster.local/ns/x/sa/y"));
    rebuild(&w);
    drain(&a);
    drain(&b);
    assert_false(has_policy(&a, "istio-system/global-deny"));
    assert_int_equal(count(&a, "policy", "delete"), 1);
    assert_true(has_policy(&b, "istio-system/global-deny"));
    assert_int_equal(count(&b, "policy", "upsert"), 1);
    /* and back: A gets it again */
    set(w.aps, ns_ap("istio-system", "global-deny"));
    rebuild(&w);
    drain(&a);
    assert_true(has_policy(&a, "istio-system/global-deny"));

    /* deleting a policy reaches everyone */
    json_object_del(w.aps, "istio-system/global-deny");
    rebuild(&w);
    drain(&a);
    drain(&b);
    assert_false(has_policy(&a, "istio-system/global-deny"));
    assert_false(has_policy(&b, "istio-system/global-deny"));
    agent_close(&a);
    agent_close(&b);
    world_done(&w);
}

static void test_resume_scoped(void **state)
{
    struct world w;
    struct agent a, r;
    json_t *log = json_array(), *snap = NULL, *events = NULL, *e;
    uint64_t since;
    size_t i;

    (void)state;
    world_init(&w);
    agent_open(&w, &a, "node-a", NULL);
    since = w.version;
    /* A goes away */
    op_push_stream_close(a.ps);
    a.ps = NULL;
    /* meanwhile a db pod lands on node-a, an unrelated policy changes */
    set(w.pods, pod("shop", "db-2", "db", "node-a", "10.244.1.2"));
    set(w.aps, ns_ap("other", "deny-blocked-2"));
    assert_int_equal(op_snapshot_build(&w.in, &w.cfg, &snap, NULL), 0);
    assert_int_equal(op_snapshot_diff(w.snap, snap, w.version + 1, &events), 0);
    json_array_foreach(events, i, e) {
        json_array_append(log, e);
    }
    json_decref(w.snap);
    w.snap = snap;
    w.version += json_array_size(events);
    assert_int_equal(op_push_publish(w.push, w.snap, w.version, events), 0);
    /* the resumed stream replays the log, scoped, and adds allow-db (now in scope) */
    memset(&r, 0, sizeof(r));
    r.st = a.st;
    r.last = a.last;
    a.st = NULL;
    a.last = NULL;
    {
        size_t n = 0;

        assert_int_equal(op_push_stream_open(w.push, w.snap, w.version, log, false, "node-a",
                                             &r.ps, &n),
                         0);
    }
    drain(&r);
    assert_true(has_policy(&r, "shop/allow-db"));
    assert_false(has_policy(&r, "other/deny-blocked-2"));
    assert_non_null(dp_mesh_workload_by_key(r.last, "Kubernetes//Pod/shop/db-2"));
    /* what the agent holds is unknown after a disconnect: every policy in scope is sent again
     * (allow-web, global-deny, allow-db), nothing out of scope */
    assert_int_equal(count(&r, "policy", "upsert"), 3);
    (void)since;
    json_decref(events);
    json_decref(log);
    agent_close(&r);
    agent_close(&a);
    world_done(&w);
}

/* A stream nobody drains keeps references to shared chunks only: a batch costs it a few
 * bytes of its own, and publishing never blocks on it. */
static void test_shared_batches(void **state)
{
    struct world w;
    struct agent a, slow;
    size_t before;

    (void)state;
    world_init(&w);
    agent_open(&w, &a, "node-a", NULL);
    memset(&slow, 0, sizeof(slow));
    {
        size_t n = 0;

        assert_int_equal(op_push_stream_open(w.push, w.snap, w.version, NULL, false, "node-c",
                                             &slow.ps, &n),
                         0);
    }
    before = op_push_queued(slow.ps);
    for (int i = 0; i < 50; i++) {
        char ip[32];

        snprintf(ip, sizeof(ip), "10.244.9.%d", i + 1);
        set(w.pods, pod("shop", "web-1", "web", "node-a", ip));
        rebuild(&w);
        drain(&a);
        assert_int_equal(count(&a, "workload", "upsert"), 1);
    }
    assert_true(op_push_queued(slow.ps) > before);
    op_push_stream_close(slow.ps);
    agent_close(&a);
    world_done(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_full_push_scoped),
            cmocka_unit_test(test_scope_follows_pods),
            cmocka_unit_test(test_resume_scoped),
            cmocka_unit_test(test_shared_batches),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
