/* test_cni_kube.c — the enrolment decision (reference §1.2) as a table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "cni-plugin/cni_kube.h"

static struct cni_conf conf(void)
{
    struct cni_conf c;
    struct cni_error e;
    const char *j = "{\"cniVersion\":\"1.0.0\"}";
    assert_int_equal(cni_conf_parse(j, strlen(j), &c, &e), 0);
    return c;
}

static json_t *obj(const char *text)
{
    json_error_t je;
    json_t *o = json_loads(text, JSON_DECODE_ANY, &je);
    assert_non_null(o);
    return o;
}

struct row {
    const char *pod, *ns;
    bool want;
    const char *reason;
};

static void test_decision_table(void **state)
{
    (void)state;
    struct cni_conf c = conf();
    const struct row rows[] = {
            {"{\"metadata\":{\"name\":\"a\",\"namespace\":\"app\",\"labels\":{\"istio.io/dataplane-mode\":\"ambient\"}}}",
             "{\"metadata\":{\"name\":\"app\"}}", true, "pod labelled ambient"},
            {"{\"metadata\":{\"name\":\"a\",\"namespace\":\"app\"}}",
             "{\"metadata\":{\"name\":\"app\",\"labels\":{\"istio.io/dataplane-mode\":\"ambient\"}}}",
             true, "namespace labelled ambient"},
            {"{\"metadata\":{\"name\":\"a\",\"namespace\":\"app\",\"labels\":{\"istio.io/dataplane-mode\":\"none\"}}}",
             "{\"metadata\":{\"name\":\"app\",\"labels\":{\"istio.io/dataplane-mode\":\"ambient\"}}}",
             false, "pod opted out"},
            {"{\"metadata\":{\"name\":\"a\",\"namespace\":\"app\"}}", "{\"metadata\":{\"name\":\"app\"}}",
             false, "not ambient"},
            {"{\"metadata\":{\"name\":\"a\",\"namespace\":\"app\",\"labels\":{\"istio.io/dataplane-mode\":\"sidecar\"}}}",
             "{\"metadata\":{\"name\":\"app\",\"labels\":{\"istio.io/dataplane-mode\":\"none\"}}}",
             false, "not ambient"},
            {"{\"metadata\":{\"name\":\"a\",\"namespace\":\"kube-system\",\"labels\":{\"istio.io/dataplane-mode\":\"ambient\"}}}",
             "{\"metadata\":{\"name\":\"kube-system\"}}", false, "namespace excluded"},
            {"{\"metadata\":{\"name\":\"a\",\"namespace\":\"app\",\"labels\":{\"istio.io/dataplane-mode\":\"ambient\"}},\"spec\":{\"hostNetwork\":true}}",
             "{\"metadata\":{\"name\":\"app\"}}", false, "host network pod"},
            {"{\"metadata\":{\"name\":\"a\",\"namespace\":\"app\",\"annotations\":{\"sidecar.istio.io/status\":\"{}\"}}}",
             "{\"metadata\":{\"name\":\"app\",\"labels\":{\"istio.io/dataplane-mode\":\"ambient\"}}}",
             false, "sidecar-injected pod"},
            {"{\"metadata\":{\"name\":\"ambit-node-x1\",\"namespace\":\"istio-system\"}}",
             "{\"metadata\":{\"name\":\"istio-system\",\"labels\":{\"istio.io/dataplane-mode\":\"ambient\"}}}",
             false, "mesh's own pod"},
            {"{\"metadata\":{\"name\":\"z\",\"namespace\":\"istio-system\",\"labels\":{\"app\":\"ztunnel\"}}}",
             "{\"metadata\":{\"name\":\"istio-system\",\"labels\":{\"istio.io/dataplane-mode\":\"ambient\"}}}",
             false, "mesh's own pod"},
            {"{\"metadata\":{\"name\":\"istiod\",\"namespace\":\"istio-system\"}}",
             "{\"metadata\":{\"name\":\"istio-system\",\"labels\":{\"istio.io/dataplane-mode\":\"ambient\"}}}",
             true, "namespace labelled ambient"},
            /* hostile shapes: wrong types never match and never crash */
            {"{\"metadata\":{\"labels\":{\"istio.io/dataplane-mode\":5}}}", "{\"metadata\":7}", false,
             "not ambient"},
            {"[]", "\"x\"", false, "not ambient"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        json_t *p = obj(rows[i].pod), *n = obj(rows[i].ns);
        const char *why = NULL;
        bool got = cni_enrol_decide(&c, p, n, &why);
        if (got != rows[i].want || strcmp(why, rows[i].reason) != 0)
            fail_msg("row %zu: got %d (%s), want %d (%s)", i, got, why, rows[i].want,
                     rows[i].reason);
        json_decref(p);
        json_decref(n);
    }
    cni_conf_done(&c);
}

static void test_custom_exclusions(void **state)
{
    (void)state;
    struct cni_conf c;
    struct cni_error e;
    const char *j = "{\"cniVersion\":\"1.0.0\",\"exclude_namespaces\":[\"legacy\"],"
                    "\"mesh_namespace\":\"ambit-system\"}";
    assert_int_equal(cni_conf_parse(j, strlen(j), &c, &e), 0);
    json_t *p = obj("{\"metadata\":{\"name\":\"a\",\"namespace\":\"kube-system\",\"labels\":"
                    "{\"istio.io/dataplane-mode\":\"ambient\"}}}");
    json_t *n = obj("{\"metadata\":{\"name\":\"kube-system\"}}");
    const char *why;
    /* the list replaces the default: kube-system is no longer excluded */
    assert_true(cni_enrol_decide(&c, p, n, &why));
    json_decref(p);
    json_decref(n);
    p = obj("{\"metadata\":{\"name\":\"a\",\"namespace\":\"legacy\",\"labels\":"
            "{\"istio.io/dataplane-mode\":\"ambient\"}}}");
    n = obj("{\"metadata\":{\"name\":\"legacy\"}}");
    assert_false(cni_enrol_decide(&c, p, n, &why));
    json_decref(p);
    json_decref(n);
    p = obj("{\"metadata\":{\"name\":\"ambit-node-abc\",\"namespace\":\"ambit-system\"}}");
    n = obj("{\"metadata\":{\"name\":\"ambit-system\",\"labels\":{\"istio.io/dataplane-mode\":"
            "\"ambient\"}}}");
    assert_false(cni_enrol_decide(&c, p, n, &why));
    assert_string_equal(why, "mesh's own pod");
    json_decref(p);
    json_decref(n);
    cni_conf_done(&c);
}

static void test_redirect_opts(void **state)
{
    (void)state;
    struct cni_conf c = conf();
    struct dp_nft_pod_opts o;
    json_t *p = obj("{\"metadata\":{\"name\":\"a\"}}");
    cni_pod_redirect_opts(&c, p, &o);
    assert_false(o.dns_capture);
    assert_false(o.bypass_inbound);
    assert_true(o.ipv6);
    assert_int_equal(o.port_outbound, 15001);
    json_decref(p);

    p = obj("{\"metadata\":{\"annotations\":{\"ambient.istio.io/dns-capture\":\"true\","
            "\"ambient.istio.io/bypass-inbound-capture\":\"true\"}}}");
    cni_pod_redirect_opts(&c, p, &o);
    assert_true(o.dns_capture);
    assert_true(o.bypass_inbound);
    json_decref(p);

    c.dns_capture = true; /* config on, pod says off */
    p = obj("{\"metadata\":{\"annotations\":{\"ambient.istio.io/dns-capture\":\"false\","
            "\"ambient.istio.io/bypass-inbound-capture\":\"yes\"}}}");
    cni_pod_redirect_opts(&c, p, &o);
    assert_false(o.dns_capture);
    assert_false(o.bypass_inbound); /* only "true" counts */
    json_decref(p);
    p = obj("{\"metadata\":{\"annotations\":{\"ambient.istio.io/dns-capture\":7}}}");
    cni_pod_redirect_opts(&c, p, &o);
    assert_true(o.dns_capture); /* wrong type: default stays */
    json_decref(p);
    cni_conf_done(&c);
}

static void test_installer_pod(void **state)
{
    (void)state;
    struct cni_conf c = conf();
    assert_string_equal(c.mesh_namespace, "istio-system");
    assert_true(cni_installer_pod(&c, "istio-system", "ambit-cni-node-x7k2p"));
    assert_false(cni_installer_pod(&c, "istio-system", "ambit-cni-node-"));
    assert_false(cni_installer_pod(&c, "istio-system", "ambit-cni-nodes"));
    assert_false(cni_installer_pod(&c, "istio-system", "ambit-operator-5d9c7-abcde"));
    assert_false(cni_installer_pod(&c, "app", "ambit-cni-node-x7k2p"));
    assert_false(cni_installer_pod(&c, NULL, "ambit-cni-node-x7k2p"));
    snprintf(c.mesh_namespace, sizeof(c.mesh_namespace), "mesh");
    assert_true(cni_installer_pod(&c, "mesh", "ambit-cni-node-x7k2p"));
    assert_false(cni_installer_pod(&c, "istio-system", "ambit-cni-node-x7k2p"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_decision_table),
            cmocka_unit_test(test_custom_exclusions),
            cmocka_unit_test(test_redirect_opts),
            cmocka_unit_test(test_installer_pod),
    };
    return cmocka_run_group_tests_name("cni_kube", tests, NULL, NULL);
}
