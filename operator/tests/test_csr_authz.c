/* Table-driven CSR authorization decisions (operator/csr_authz.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "operator/csr_authz.h"

static json_t *pod(const char *ns, const char *name, const char *uid, const char *sa,
                   const char *node, const char *phase, bool deleting)
{
    json_t *p = json_pack("{s:{s:s,s:s,s:s},s:{s:s,s:s},s:{s:s}}", "metadata", "namespace", ns,
                          "name", name, "uid", uid, "spec", "serviceAccountName", sa, "nodeName",
                          node, "status", "phase", phase);

    if (deleting)
        json_object_set_new(json_object_get(p, "metadata"), "deletionTimestamp",
                            json_string("2026-01-01T00:00:00Z"));
    return p;
}

static void test_decisions(void **state)
{
    static const char *const trusted[] = {"istio-system/ztunnel", NULL};
    const struct op_csr_policy pol = {.trust_domain = "cluster.local",
                                      .trusted_accounts = trusted};
    json_t *pods = json_object(), *wps;
    struct {
        const char *name;
        bool authenticated;
        const char *sa_ns, *sa, *pod_name, *pod_uid, *node;
        const char *identity;
        int want;
        const char *why;
    } cases[] = {
            {"same node pod", true, "istio-system", "ztunnel", "zt-1", "u-zt1", NULL,
             "spiffe://cluster.local/ns/bookinfo/sa/reviews", 0, "runs as"},
            {"node claim only", true, "istio-system", "ztunnel", NULL, NULL, "node-1",
             "spiffe://cluster.local/ns/bookinfo/sa/reviews", 0, "runs as"},
            {"pod on another node", true, "istio-system", "ztunnel", "zt-2", "u-zt2", NULL,
             "spiffe://cluster.local/ns/bookinfo/sa/reviews", -EPERM, "no running pod"},
            {"default service account", true, "istio-system", "ztunnel", "zt-2", NULL, NULL,
             "spiffe://cluster.local/ns/bookinfo/sa/default", 0, "runs as"},
            {"terminated pod does not count", true, "istio-system", "ztunnel", "zt-1", NULL, NULL,
             "spiffe://cluster.local/ns/bookinfo/sa/done", -EPERM, "no running pod"},
            {"deleting pod does not count", true, "istio-system", "ztunnel", "zt-1", NULL, NULL,
             "spiffe://cluster.local/ns/bookinfo/sa/leaving", -EPERM, "no running pod"},
            {"waypoint placed here", true, "istio-system", "ztunnel", "zt-1", NULL, NULL,
             "spiffe://cluster.local/ns/shop/sa/waypoint", 0, "waypoint shop/waypoint"},
            {"waypoint elsewhere", true, "istio-system", "ztunnel", "zt-2", NULL, NULL,
             "spiffe://cluster.local/ns/shop/sa/waypoint", -EPERM, "no running pod"},
            {"not authenticated", false, NULL, NULL, NULL, NULL, NULL,
             "spiffe://cluster.local/ns/bookinfo/sa/reviews", -EACCES, "not authenticated"},
            {"untrusted account", true, "bookinfo", "reviews", NULL, NULL, "node-1",
             "spiffe://cluster.local/ns/bookinfo/sa/reviews", -EPERM, "not a trusted"},
            {"caller pod unknown", true, "istio-system", "ztunnel", "ghost", NULL, NULL,
             "spiffe://cluster.local/ns/bookinfo/sa/reviews", -EPERM, "not found"},
            {"caller pod replaced", true, "istio-system", "ztunnel", "zt-1", "old-uid", NULL,
             "spiffe://cluster.local/ns/bookinfo/sa/reviews", -EPERM, "another uid"},
            {"node claim contradicts pod", true, "istio-system", "ztunnel", "zt-1", NULL,
             "node-2", "spiffe://cluster.local/ns/bookinfo/sa/reviews", -EPERM, "token says"},
            {"no node at all", true, "istio-system", "ztunnel", NULL, NULL, NULL,
             "spiffe://cluster.local/ns/bookinfo/sa/reviews", -EPERM, "node unknown"},
            {"other trust domain", true, "istio-system", "ztunnel", "zt-1", NULL, NULL,
             "spiffe://evil.org/ns/bookinfo/sa/reviews", -EPERM, "trust domain"},
            {"malformed identity", true, "istio-system", "ztunnel", "zt-1", NULL, NULL,
             "spiffe://cluster.local/ns/bookinfo/sa/", -EINVAL, "is not spiffe"},
            {"path tricks", true, "istio-system", "ztunnel", "zt-1", NULL, NULL,
             "spiffe://cluster.local/ns/bookinfo/sa/reviews/x", -EINVAL, "is not spiffe"},
            {"not spiffe", true, "istio-system", "ztunnel", "zt-1", NULL, NULL,
             "https://cluster.local/ns/bookinfo/sa/reviews", -EINVAL, "is not spiffe"},
    };

    (void)state;
    json_object_set_new(pods, "istio-system/zt-1",
                        pod("istio-system", "zt-1", "u-zt1", "ztunnel", "node-1", "Running", false));
    json_object_set_new(pods, "istio-system/zt-2",
                        pod("istio-system", "zt-2", "u-zt2", "ztunnel", "node-2", "Running", false));
    json_object_set_new(pods, "bookinfo/reviews-1",
                        pod("bookinfo", "reviews-1", "r1", "reviews", "node-1", "Running", false));
    json_object_set_new(pods, "bookinfo/ratings-1",
                        pod("bookinfo", "ratings-1", "r2", "", "node-2", "Running", false));
    json_object_set_new(pods, "bookinfo/done-1",
                        pod("bookinfo", "done-1", "d1", "done", "node-1", "Succeeded", false));
    json_object_set_new(pods, "bookinfo/leaving-1",
                        pod("bookinfo", "leaving-1", "l1", "leaving", "node-1", "Running", true));
    wps = json_pack("{s:{s:[s]}}", "shop/waypoint", "nodes", "node-1");

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct dp_kube_token_info ti = {
                .authenticated = cases[i].authenticated,
                .sa_namespace = (char *)cases[i].sa_ns,
                .sa_name = (char *)cases[i].sa,
                .pod_name = (char *)cases[i].pod_name,
                .pod_uid = (char *)cases[i].pod_uid,
                .node_name = (char *)cases[i].node,
        };
        char why[256] = "";
        int r = op_csr_authorize(&pol, &ti, cases[i].identity, pods, wps, why, sizeof(why));

        if (r != cases[i].want || strstr(why, cases[i].why) == NULL)
            fail_msg("%s: got %d (%s), want %d (%s)", cases[i].name, r, why, cases[i].want,
                     cases[i].why);
    }
    json_decref(pods);
    json_decref(wps);
}

static void test_spiffe_parse(void **state)
{
    char td[254], ns[254], sa[254];

    (void)state;
    assert_int_equal(op_spiffe_parse("spiffe://cluster.local/ns/a/sa/b", td, ns, sa), 0);
    assert_string_equal(td, "cluster.local");
    assert_string_equal(ns, "a");
    assert_string_equal(sa, "b");
    assert_int_equal(op_spiffe_parse("spiffe:///ns/a/sa/b", td, ns, sa), -EINVAL);
    assert_int_equal(op_spiffe_parse("spiffe://td/ns/a/sa/b?x", td, ns, sa), -EINVAL);
    assert_int_equal(op_spiffe_parse("spiffe://td/ns/a%2f/sa/b", td, ns, sa), -EINVAL);
    assert_int_equal(op_spiffe_parse("spiffe://td/sa/b/ns/a", td, ns, sa), -EINVAL);
    assert_int_equal(op_spiffe_parse("", td, ns, sa), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_decisions),
            cmocka_unit_test(test_spiffe_parse),
    };

    return cmocka_run_group_tests_name("csr_authz", tests, NULL, NULL);
}
