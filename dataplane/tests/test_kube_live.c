/*
 * The Kubernetes client against a real API server. Skipped (cmocka skip) unless
 * AMBIT_TEST_KUBECONFIG names a kubeconfig; the operator test layer (test/operator) sets it to
 * test/cluster's admin kubeconfig or to a throwaway etcd + kube-apiserver.
 * Everything it creates lives in a namespace named amb-kube-live-<pid>, deleted at the end.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kube.h"
#include "kube_informer.h"
#include "kube_lease.h"

static struct dp_kube_config *cfg;
static struct dp_kube_client *cl;
static char ns[64];

static int setup(void **state)
{
    const char *kc = getenv("AMBIT_TEST_KUBECONFIG");
    char err[256];
    json_t *obj;

    (void)state;
    if (kc == NULL || kc[0] == '\0')
        return 0;
    if (dp_kube_config_load_kubeconfig(kc, NULL, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    if (dp_kube_client_new(cfg, &cl) < 0)
        return -1;
    snprintf(ns, sizeof(ns), "amb-kube-live-%d", (int)getpid());
    obj = json_pack("{s:s,s:s,s:{s:s}}", "apiVersion", "v1", "kind", "Namespace", "metadata",
                    "name", ns);
    if (dp_kube_create(cl, &DP_KUBE_RES_NAMESPACES, NULL, obj, NULL) < 0) {
        fprintf(stderr, "create namespace: %s\n", dp_kube_client_last_error(cl));
        json_decref(obj);
        return -1;
    }
    json_decref(obj);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (cl != NULL)
        dp_kube_delete(cl, &DP_KUBE_RES_NAMESPACES, NULL, ns);
    dp_kube_client_free(cl);
    dp_kube_config_free(cfg);
    return 0;
}

static json_t *configmap(const char *name, const char *app, const char *value)
{
    return json_pack("{s:s,s:s,s:{s:s,s:{s:s}},s:{s:s}}", "apiVersion", "v1", "kind",
                     "ConfigMap", "metadata", "name", name, "labels", "app", app, "data", "v",
                     value);
}

static void test_crud(void **state)
{
    json_t *obj, *got = NULL, *items = NULL, *patch;
    char *rv = NULL;
    int r;

    (void)state;
    if (cl == NULL)
        skip();
    obj = configmap("cm-a", "x", "1");
    assert_int_equal(dp_kube_create(cl, &DP_KUBE_RES_CONFIGMAPS, ns, obj, &got), 0);
    assert_string_equal(dp_kube_meta_str(got, "name"), "cm-a");
    json_decref(got);
    /* creating it again: AlreadyExists */
    assert_int_equal(dp_kube_create(cl, &DP_KUBE_RES_CONFIGMAPS, ns, obj, NULL), -EEXIST);
    assert_non_null(strstr(dp_kube_client_last_error(cl), "AlreadyExists"));
    json_decref(obj);

    /* 7 more, for pagination and selectors */
    for (int i = 0; i < 7; i++) {
        char name[16];

        snprintf(name, sizeof(name), "cm-%d", i);
        obj = configmap(name, i % 2 ? "odd" : "even", "0");
        assert_int_equal(dp_kube_create(cl, &DP_KUBE_RES_CONFIGMAPS, ns, obj, NULL), 0);
        json_decref(obj);
    }
    {
        struct dp_kube_list_opts o = {.limit = 3};

        assert_int_equal(dp_kube_list(cl, &DP_KUBE_RES_CONFIGMAPS, ns, &o, &items, &rv), 0);
        /* 8 of ours, plus kube-root-ca.crt if a controller-manager runs */
        assert_true(json_array_size(items) >= 8);
        assert_string_equal(json_string_value(json_object_get(json_array_get(items, 0), "kind")),
                            "ConfigMap");
        assert_non_null(rv);
        json_decref(items);
        free(rv);
        rv = NULL;
    }
    {
        struct dp_kube_list_opts o = {.label_selector = "app in (odd)", .limit = 2};

        assert_int_equal(dp_kube_list(cl, &DP_KUBE_RES_CONFIGMAPS, ns, &o, &items, NULL), 0);
        assert_int_equal(json_array_size(items), 3);
        json_decref(items);
    }
    {
        struct dp_kube_list_opts o = {.field_selector = "metadata.name=cm-3"};

        assert_int_equal(dp_kube_list(cl, &DP_KUBE_RES_CONFIGMAPS, ns, &o, &items, NULL), 0);
        assert_int_equal(json_array_size(items), 1);
        json_decref(items);
    }

    /* merge patch */
    patch = json_pack("{s:{s:s}}", "data", "w", "2");
    assert_int_equal(dp_kube_merge_patch(cl, &DP_KUBE_RES_CONFIGMAPS, ns, "cm-a", NULL, patch,
                                         &got),
                     0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(got, "data"), "w")), "2");
    json_decref(patch);

    /* update with a stale resourceVersion: Conflict */
    json_object_set_new(json_object_get(got, "metadata"), "resourceVersion", json_string("1"));
    r = dp_kube_update(cl, &DP_KUBE_RES_CONFIGMAPS, ns, got, NULL, NULL);
    assert_int_equal(r, -EBUSY);
    json_decref(got);

    /* server-side apply creates and then owns fields as "ambit" */
    obj = configmap("cm-ssa", "x", "applied");
    assert_int_equal(dp_kube_apply(cl, &DP_KUBE_RES_CONFIGMAPS, ns, obj, NULL, true, &got), 0);
    {
        json_t *mf = json_object_get(json_object_get(got, "metadata"), "managedFields");
        const char *mgr = json_string_value(json_object_get(json_array_get(mf, 0), "manager"));

        assert_non_null(mgr);
        assert_string_equal(mgr, "ambit");
    }
    json_decref(got);
    json_decref(obj);

    assert_int_equal(dp_kube_get(cl, &DP_KUBE_RES_CONFIGMAPS, ns, "cm-ssa", &got), 0);
    json_decref(got);
    assert_int_equal(dp_kube_delete(cl, &DP_KUBE_RES_CONFIGMAPS, ns, "cm-ssa"), 0);
    assert_int_equal(dp_kube_get(cl, &DP_KUBE_RES_CONFIGMAPS, ns, "cm-ssa", &got), -ENOENT);
    assert_int_equal(dp_kube_delete(cl, &DP_KUBE_RES_CONFIGMAPS, ns, "cm-ssa"), -ENOENT);
}

static void test_status_subresource(void **state)
{
    json_t *obj, *got = NULL, *st;

    (void)state;
    if (cl == NULL)
        skip();
    /* a Mesh (our CRD) if installed; otherwise skip this part */
    obj = json_pack("{s:s,s:s,s:{s:s},s:{s:s}}", "apiVersion", "install.ambit.dev/v1alpha1",
                    "kind", "Mesh", "metadata", "name", ns, "spec", "profile", "ambient");
    if (dp_kube_apply(cl, &DP_KUBE_RES_MESHES, NULL, obj, NULL, true, NULL) == -ENOENT) {
        json_decref(obj);
        skip();
    }
    json_decref(obj);
    st = json_pack("{s:{s:s,s:[{s:s,s:s,s:s}]}}", "status", "version", "0.1", "conditions",
                   "type", "Ready", "status", "True", "reason", "Test");
    assert_int_equal(dp_kube_merge_patch(cl, &DP_KUBE_RES_MESHES, NULL, ns, "status", st, &got),
                     0);
    json_decref(st);
    json_decref(got);
    /* a status written through the main resource is ignored by the server */
    st = json_pack("{s:{s:s}}", "status", "version", "9.9");
    assert_int_equal(dp_kube_merge_patch(cl, &DP_KUBE_RES_MESHES, NULL, ns, NULL, st, &got), 0);
    json_decref(st);
    assert_string_equal(
            json_string_value(json_object_get(json_object_get(got, "status"), "version")), "0.1");
    json_decref(got);
    /* schema validation errors come back as -EINVAL with the server's message */
    st = json_pack("{s:{s:s}}", "spec", "profile", "everything");
    assert_int_equal(dp_kube_merge_patch(cl, &DP_KUBE_RES_MESHES, NULL, ns, NULL, st, NULL),
                     -EINVAL);
    assert_non_null(strstr(dp_kube_client_last_error(cl), "profile"));
    json_decref(st);
    assert_int_equal(dp_kube_delete(cl, &DP_KUBE_RES_MESHES, NULL, ns), 0);
}

static void test_token_review_live(void **state)
{
    struct dp_kube_token_info ti;
    json_t *sa, *req, *resp = NULL;
    char *path = NULL;
    const char *tok;

    (void)state;
    if (cl == NULL)
        skip();
    sa = json_pack("{s:s,s:s,s:{s:s}}", "apiVersion", "v1", "kind", "ServiceAccount", "metadata",
                   "name", "ztunnel");
    assert_int_equal(dp_kube_create(cl, &DP_KUBE_RES_SERVICEACCOUNTS, ns, sa, NULL), 0);
    json_decref(sa);
    /* mint a token for it (TokenRequest), audience istio-ca */
    req = json_pack("{s:s,s:s,s:{s:[s],s:i}}", "apiVersion", "authentication.k8s.io/v1", "kind",
                    "TokenRequest", "spec", "audiences", "istio-ca", "expirationSeconds", 600);
    assert_int_equal(dp_kube_path(&DP_KUBE_RES_SERVICEACCOUNTS, ns, "ztunnel", "token", NULL,
                                  &path),
                     0);
    assert_int_equal(dp_kube_request(cl, "POST", path, "application/json", req, NULL, &resp), 0);
    free(path);
    json_decref(req);
    tok = json_string_value(json_object_get(json_object_get(resp, "status"), "token"));
    assert_non_null(tok);

    assert_int_equal(dp_kube_token_review(cl, tok, "istio-ca", &ti), 0);
    assert_true(ti.authenticated);
    assert_string_equal(ti.sa_namespace, ns);
    assert_string_equal(ti.sa_name, "ztunnel");
    dp_kube_token_info_done(&ti);
    /* wrong audience */
    assert_int_equal(dp_kube_token_review(cl, tok, "someone-else", &ti), 0);
    assert_false(ti.authenticated);
    dp_kube_token_info_done(&ti);
    /* garbage */
    assert_int_equal(dp_kube_token_review(cl, "not-a-token", "istio-ca", &ti), 0);
    assert_false(ti.authenticated);
    dp_kube_token_info_done(&ti);
    json_decref(resp);
}

struct seen {
    int adds, updates, deletes, synced;
};
static void on_add(json_t *o, void *arg)
{
    (void)o;
    ((struct seen *)arg)->adds++;
}
static void on_update(json_t *o, json_t *n, void *arg)
{
    (void)o;
    (void)n;
    ((struct seen *)arg)->updates++;
}
static void on_delete(json_t *o, void *arg)
{
    (void)o;
    ((struct seen *)arg)->deletes++;
}
static void on_synced(struct dp_kube_informer *inf, void *arg)
{
    (void)inf;
    ((struct seen *)arg)->synced++;
}

static void run_until(struct dp_loop *loop, struct seen *s, int adds, int updates, int deletes)
{
    uint64_t deadline = dp_now_ms() + 10000;

    while (dp_now_ms() < deadline &&
           (s->adds < adds || s->updates < updates || s->deletes < deletes))
        dp_loop_run_once(loop, 50);
}

static void test_informer_live(void **state)
{
    static const struct dp_kube_informer_ops ops = {on_add, on_update, on_delete, on_synced};
    struct dp_kube_list_opts sel = {.label_selector = "app=inf"};
    struct dp_loop *loop = NULL;
    struct dp_kube_multi *m = NULL;
    struct dp_kube_informer *inf = NULL;
    struct seen s = {0};
    json_t *obj, *patch;
    char key[128];

    (void)state;
    if (cl == NULL)
        skip();
    obj = configmap("inf-1", "inf", "1");
    assert_int_equal(dp_kube_create(cl, &DP_KUBE_RES_CONFIGMAPS, ns, obj, NULL), 0);
    json_decref(obj);
    assert_int_equal(dp_loop_new(&loop), 0);
    assert_int_equal(dp_kube_multi_new(loop, cfg, &m), 0);
    assert_int_equal(dp_kube_informer_new(m, &DP_KUBE_RES_CONFIGMAPS, ns, &sel, &ops, &s, &inf),
                     0);
    assert_int_equal(dp_kube_informer_start(inf), 0);
    run_until(loop, &s, 1, 0, 0);
    assert_int_equal(s.adds, 1);
    assert_int_equal(s.synced, 1);

    obj = configmap("inf-2", "inf", "1");
    assert_int_equal(dp_kube_create(cl, &DP_KUBE_RES_CONFIGMAPS, ns, obj, NULL), 0);
    json_decref(obj);
    obj = configmap("not-mine", "other", "1");
    assert_int_equal(dp_kube_create(cl, &DP_KUBE_RES_CONFIGMAPS, ns, obj, NULL), 0);
    json_decref(obj);
    run_until(loop, &s, 2, 0, 0);
    assert_int_equal(s.adds, 2);

    patch = json_pack("{s:{s:s}}", "data", "v", "2");
    assert_int_equal(dp_kube_merge_patch(cl, &DP_KUBE_RES_CONFIGMAPS, ns, "inf-1", NULL, patch,
                                         NULL),
                     0);
    json_decref(patch);
    run_until(loop, &s, 2, 1, 0);
    assert_int_equal(s.updates, 1);
    snprintf(key, sizeof(key), "%s/inf-1", ns);
    assert_string_equal(json_string_value(json_object_get(
                                json_object_get(dp_kube_informer_get(inf, key), "data"), "v")),
                        "2");

    assert_int_equal(dp_kube_delete(cl, &DP_KUBE_RES_CONFIGMAPS, ns, "inf-2"), 0);
    run_until(loop, &s, 2, 1, 1);
    assert_int_equal(s.deletes, 1);
    assert_int_equal(dp_kube_store_size(dp_kube_informer_store(inf)), 1);
    assert_int_equal(dp_kube_informer_stats(inf)->restarts, 0);

    dp_kube_informer_free(inf);
    dp_kube_multi_free(m);
    dp_loop_free(loop);
}

struct elect {
    int starts, stops;
};
static void on_lead(void *arg)
{
    ((struct elect *)arg)->starts++;
}
static void on_unlead(void *arg)
{
    ((struct elect *)arg)->stops++;
}

static void test_lease_live(void **state)
{
    struct dp_loop *loop = NULL;
    struct dp_kube_multi *m = NULL;
    struct dp_kube_lease *a = NULL, *b = NULL;
    struct elect ea = {0}, eb = {0};
    struct dp_kube_lease_config ca = {.namespace = ns, .name = "amb-lease", .identity = "cand-a",
                                      .lease_duration_ms = 3000, .renew_deadline_ms = 2000,
                                      .retry_period_ms = 200, .on_start = on_lead,
                                      .on_stop = on_unlead, .arg = &ea};
    struct dp_kube_lease_config cb = ca;
    uint64_t deadline;
    json_t *lease = NULL;

    (void)state;
    if (cl == NULL)
        skip();
    cb.identity = "cand-b";
    cb.arg = &eb;
    assert_int_equal(dp_loop_new(&loop), 0);
    assert_int_equal(dp_kube_multi_new(loop, cfg, &m), 0);
    assert_int_equal(dp_kube_lease_new(m, loop, &ca, &a), 0);
    assert_int_equal(dp_kube_lease_new(m, loop, &cb, &b), 0);
    deadline = dp_now_ms() + 3000;
    while (dp_now_ms() < deadline)
        dp_loop_run_once(loop, 50);
    /* exactly one leader, and it stays so across renewals */
    assert_int_equal(dp_kube_lease_is_leader(a) + dp_kube_lease_is_leader(b), 1);
    assert_int_equal(ea.starts + eb.starts, 1);
    assert_int_equal(ea.stops + eb.stops, 0);
    assert_int_equal(dp_kube_get(cl, &DP_KUBE_RES_LEASES, ns, "amb-lease", &lease), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(lease, "spec"),
                                                          "holderIdentity")),
                        dp_kube_lease_is_leader(a) ? "cand-a" : "cand-b");
    json_decref(lease);
    /* the leader steps down (releases); the other takes over well before expiry */
    if (dp_kube_lease_is_leader(a)) {
        dp_kube_lease_free(a);
        a = NULL;
    } else {
        dp_kube_lease_free(b);
        b = NULL;
    }
    deadline = dp_now_ms() + 2500;
    while (dp_now_ms() < deadline && !((a && dp_kube_lease_is_leader(a)) ||
                                       (b && dp_kube_lease_is_leader(b))))
        dp_loop_run_once(loop, 50);
    assert_true((a && dp_kube_lease_is_leader(a)) || (b && dp_kube_lease_is_leader(b)));
    assert_int_equal(ea.starts + eb.starts, 2);
    dp_kube_lease_free(a);
    dp_kube_lease_free(b);
    dp_kube_multi_free(m);
    dp_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_crud),
            cmocka_unit_test(test_status_subresource),
            cmocka_unit_test(test_token_review_live),
            cmocka_unit_test(test_informer_live),
            cmocka_unit_test(test_lease_live),
    };

    return cmocka_run_group_tests_name("kube_live", tests, setup, teardown);
}
