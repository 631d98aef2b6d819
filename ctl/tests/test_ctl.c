/* Unit tests for ambitctl: ztunnel-config rendering from config dumps, and the CA tool. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "../ctl.h"

/* two node agents; the service and policy appear in both dumps and must be listed once */
static const char *DUMPS =
        "[{\"workloads\":[{\"uid\":\"Kubernetes//Pod/bookinfo/reviews-v1-1\",\"name\":\"reviews-v1-1\","
        "\"namespace\":\"bookinfo\",\"node\":\"node-1\",\"workloadIps\":[\"10.244.1.5\"],"
        "\"protocol\":\"HBONE\"},"
        "{\"uid\":\"Kubernetes//Pod/bar/curl-1\",\"name\":\"curl-1\",\"namespace\":\"bar\","
        "\"node\":\"node-1\",\"addresses\":[\"10.244.1.9\",\"fd00::9\"],\"protocol\":\"TCP\"}],"
        "\"services\":[{\"name\":\"reviews\",\"namespace\":\"bookinfo\",\"hostname\":"
        "\"reviews.bookinfo.svc.cluster.local\",\"vips\":[\"/10.96.0.12\"],\"endpoints\":"
        "{\"a\":{},\"b\":{},\"c\":{}},\"healthyEndpoints\":2,\"waypoint\":{\"destination\":"
        "\"bookinfo/waypoint\"}}],"
        "\"policies\":[{\"name\":\"allow-ingress\",\"namespace\":\"bookinfo\",\"scope\":"
        "\"WorkloadSelector\",\"action\":\"Allow\"}],"
        "\"certificates\":[{\"identity\":\"spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews\","
        "\"state\":\"Available\",\"certChain\":[{\"serialNumber\":\"1a2b\",\"validFrom\":"
        "\"2026-11-28T00:00:00Z\",\"expirationTime\":\"2026-11-29T00:00:00Z\"}],\"rootCerts\":"
        "[{\"serialNumber\":\"ff\",\"validFrom\":\"2026-01-01T00:00:00Z\",\"expirationTime\":"
        "\"2036-01-01T00:00:00Z\"}]}]},"
        "{\"workloads\":[{\"uid\":\"Kubernetes//Pod/bookinfo/productpage-1\",\"name\":"
        "\"productpage-1\",\"namespace\":\"bookinfo\",\"node\":\"node-2\",\"workloadIps\":"
        "[\"10.244.2.3\"],\"protocol\":\"HBONE\"}],"
        "\"services\":[{\"name\":\"reviews\",\"namespace\":\"bookinfo\",\"hostname\":"
        "\"reviews.bookinfo.svc.cluster.local\",\"vips\":[\"/10.96.0.12\"],\"endpoints\":"
        "{\"a\":{},\"b\":{},\"c\":{}},\"healthyEndpoints\":2,\"waypoint\":{\"destination\":"
        "\"bookinfo/waypoint\"}}],"
        "\"policies\":[{\"name\":\"allow-ingress\",\"namespace\":\"bookinfo\",\"scope\":"
        "\"WorkloadSelector\",\"action\":\"Allow\"}],\"certificates\":[]}]";

static char *render(enum ctl_view view, enum ctl_output fmt, long long now)
{
    json_error_t je;
    json_t *dumps = json_loads(DUMPS, 0, &je);
    if (!dumps)
        fail_msg("fixture: %s", je.text);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_int_equal(ctl_render(f, view, fmt, dumps, now), 0);
    fclose(f);
    json_decref(dumps);
    return text;
}

static void test_workloads_table(void **state)
{
    (void)state;
    char *t = render(CTL_VIEW_WORKLOADS, CTL_OUT_TABLE, 0);
    const char *want =
            "NAMESPACE   POD NAME        ADDRESS              NODE     WAYPOINT   PROTOCOL\n"
            "bar         curl-1          10.244.1.9,fd00::9   node-1   None       TCP\n"
            "bookinfo    productpage-1   10.244.2.3           node-2   None       HBONE\n"
            "bookinfo    reviews-v1-1    10.244.1.5           node-1   None       HBONE\n";
    assert_string_equal(t, want);
    free(t);
}

static void test_services_policies(void **state)
{
    (void)state;
    char *t = render(CTL_VIEW_SERVICES, CTL_OUT_TABLE, 0);
    assert_string_equal(t, "NAMESPACE   SERVICE NAME   SERVICE VIP   WAYPOINT   ENDPOINTS\n"
                           "bookinfo    reviews        10.96.0.12    waypoint   2/3\n");
    free(t);
    t = render(CTL_VIEW_POLICIES, CTL_OUT_TABLE, 0);
    assert_string_equal(t, "NAMESPACE   POLICY NAME     ACTION   SCOPE\n"
                           "bookinfo    allow-ingress   Allow    WorkloadSelector\n");
    free(t);
}

static void test_certificates_validity(void **state)
{
    (void)state;
    /* 2026-11-28T12:00:00Z: leaf valid */
    char *t = render(CTL_VIEW_CERTIFICATES, CTL_OUT_TABLE, 1795867200LL);
    assert_non_null(strstr(t, "CERTIFICATE NAME"));
    assert_non_null(strstr(t, "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews   Leaf   "
                              "Available   true "));
    assert_non_null(strstr(t, "Root   Available   true "));
    free(t);
    /* a day later the leaf has expired, the root has not */
    t = render(CTL_VIEW_CERTIFICATES, CTL_OUT_TABLE, 1795867200LL + 86400);
    assert_non_null(strstr(t, "Leaf   Available   false "));
    assert_non_null(strstr(t, "Root   Available   true "));
    free(t);
}

static void test_json_yaml(void **state)
{
    (void)state;
    char *t = render(CTL_VIEW_WORKLOADS, CTL_OUT_JSON, 0);
    json_error_t je;
    json_t *v = json_loads(t, 0, &je);
    assert_non_null(v);
    assert_int_equal(json_array_size(v), 3);
    json_decref(v);
    free(t);
    t = render(CTL_VIEW_POLICIES, CTL_OUT_YAML, 0);
    assert_non_null(strstr(t, "- name: allow-ingress\n"));
    free(t);
}

static void test_parse_names(void **state)
{
    (void)state;
    enum ctl_view v;
    enum ctl_output o;
    assert_int_equal(ctl_view_parse("certificates", &v), 0);
    assert_int_equal(v, CTL_VIEW_CERTIFICATES);
    assert_int_equal(ctl_view_parse("connections", &v), -EINVAL);
    assert_int_equal(ctl_output_parse("yaml", &o), 0);
    assert_int_equal(o, CTL_OUT_YAML);
    assert_int_equal(ctl_output_parse("xml", &o), -EINVAL);
}

static X509 *load_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    return x;
}

static void test_ca_tool(void **state)
{
    (void)state;
    char dir[] = "/tmp/ambit-ctl-ca-XXXXXX", err[512];
    assert_non_null(mkdtemp(dir));
    char root[600], out[600], path[700];
    snprintf(root, sizeof(root), "%s/root", dir);
    snprintf(out, sizeof(out), "%s/cluster1", dir);

    /* intermediate without a root: clear error */
    assert_int_equal(ctl_ca_intermediate(root, out, "cluster1", 3650, 2048, err, sizeof(err)),
                     -ENOENT);
    assert_non_null(strstr(err, "ambitctl x ca root"));

    assert_int_equal(ctl_ca_root(root, 3650, 4096, err, sizeof(err)), 0);
    assert_int_equal(ctl_ca_intermediate(root, out, "cluster1", 3650, 4096, err, sizeof(err)), 0);

    snprintf(path, sizeof(path), "%s/root-cert.pem", root);
    X509 *r = load_cert(path);
    snprintf(path, sizeof(path), "%s/ca-cert.pem", out);
    X509 *i = load_cert(path);
    /* signed by the root, pathlen 0, RSA 4096, ~3650 days */
    EVP_PKEY *rk = X509_get0_pubkey(r);
    assert_int_equal(X509_verify(i, rk), 1);
    assert_int_equal(EVP_PKEY_get_bits(X509_get0_pubkey(i)), 4096);
    assert_int_equal(EVP_PKEY_get_bits(rk), 4096);
    assert_true(X509_check_ca(i) > 0);
    assert_int_equal(X509_get_pathlen(i), 0);
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(i), X509_get0_notAfter(i)),
                     1);
    assert_int_equal(days, 3650);
    /* cert-chain.pem = intermediate then root */
    snprintf(path, sizeof(path), "%s/cert-chain.pem", out);
    FILE *f = fopen(path, "r");
    X509 *c1 = PEM_read_X509(f, NULL, NULL, NULL), *c2 = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_int_equal(X509_cmp(c1, i), 0);
    assert_int_equal(X509_cmp(c2, r), 0);
    X509_free(c1);
    X509_free(c2);
    X509_free(i);
    X509_free(r);
    char cmd[1400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_workloads_table),     cmocka_unit_test(test_services_policies),
            cmocka_unit_test(test_certificates_validity), cmocka_unit_test(test_json_yaml),
            cmocka_unit_test(test_parse_names),         cmocka_unit_test(test_ca_tool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
