/* The operator's serving certificate (operator/serving_cert.c): lifetime and renewal timing,
 * never outliving the CA, the names the API server and agents dial, verification against the
 * root through an intermediate (cacerts). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/x509v3.h>

#include "operator/serving_cert.h"

static void test_times(void **state)
{
    struct op_serving_times t = {0};
    const int64_t now = 1800000000;

    (void)state;
    /* plenty of CA life: ttl as asked, renewed after two thirds */
    assert_int_equal(op_serving_times(now, 30 * 86400, now + 3650L * 86400, &t), 0);
    assert_int_equal(t.not_before, now - 60);
    assert_int_equal(t.not_after, now + 30 * 86400);
    assert_int_equal(t.renew_at, now + 20 * 86400);
    /* a CA that ends in 9 days caps the leaf; renewal at 6 days */
    assert_int_equal(op_serving_times(now, 30 * 86400, now + 9 * 86400, &t), 0);
    assert_int_equal(t.not_after, now + 9 * 86400);
    assert_int_equal(t.renew_at, now + 6 * 86400);
    /* short test lifetimes */
    assert_int_equal(op_serving_times(now, 6, now + 86400, &t), 0);
    assert_int_equal(t.not_after, now + 6);
    assert_int_equal(t.renew_at, now + 4);
    /* nothing sensible to issue */
    assert_int_equal(op_serving_times(now, 2, now + 86400, &t), -EINVAL);
    assert_int_equal(op_serving_times(now, 86400, now + 2, &t), -EINVAL);
    assert_int_equal(op_serving_times(now, 86400, now - 100, &t), -EINVAL);
}

static void test_sans(void **state)
{
    char buf[1024], small[40];

    (void)state;
    assert_int_equal(op_serving_sans("mesh-a", buf, sizeof(buf)), 0);
    assert_non_null(strstr(buf, "DNS:istiod.mesh-a.svc,"));
    assert_non_null(strstr(buf, "DNS:istiod.mesh-a.svc.cluster.local,"));
    assert_non_null(strstr(buf, "DNS:istiod.mesh-a,"));
    assert_non_null(strstr(buf, "DNS:ambit-operator.mesh-a.svc,"));
    assert_non_null(strstr(buf, "IP:127.0.0.1"));
    assert_int_equal(op_serving_sans("mesh-a", small, sizeof(small)), -ENAMETOOLONG);
}

/* leaf of ctx verifies against root with the ctx's chain, for host */
static void assert_verifies(SSL_CTX *ctx, X509 *root, const char *host, bool want)
{
    X509 *leaf = SSL_CTX_get0_certificate(ctx);
    STACK_OF(X509) *chain = NULL;
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *vctx = X509_STORE_CTX_new();
    int ok;

    assert_non_null(leaf);
    assert_int_equal(SSL_CTX_get0_chain_certs(ctx, &chain), 1);
    X509_STORE_add_cert(store, root);
    X509_STORE_CTX_init(vctx, store, leaf, chain);
    X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(vctx), host, 0);
    X509_STORE_CTX_set_purpose(vctx, X509_PURPOSE_SSL_SERVER);
    ok = X509_verify_cert(vctx);
    if ((ok == 1) != want)
        fail_msg("%s: verify=%d (%s), want %d", host, ok,
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(vctx)), want);
    X509_STORE_CTX_free(vctx);
    X509_STORE_free(store);
}

static void test_issue_self_signed_root(void **state)
{
    struct dp_ca *root = NULL;
    struct op_ca ca = {0};
    SSL_CTX *ctx = NULL;
    int64_t now = (int64_t)time(NULL), renew = 0;
    STACK_OF(X509) *chain = NULL;

    (void)state;
    assert_int_equal(dp_ca_new_root("test", 3650, &root), 0);
    ca.ca = root;
    assert_int_equal(op_serving_ctx_new(&ca, "istio-system", 3600, now, &ctx, &renew), 0);
    assert_int_equal(renew, now + 2400);
    assert_verifies(ctx, root->cert, "istiod.istio-system.svc", true);
    assert_verifies(ctx, root->cert, "istiod.istio-system.svc.cluster.local", true);
    assert_verifies(ctx, root->cert, "ambit-operator.istio-system.svc", true);
    assert_verifies(ctx, root->cert, "istiod.other.svc", false);
    /* the self-signed root is not sent */
    assert_int_equal(SSL_CTX_get0_chain_certs(ctx, &chain), 1);
    assert_int_equal(chain ? sk_X509_num(chain) : 0, 0);
    SSL_CTX_free(ctx);
    dp_ca_free(root);
    /* a CA at the end of its life issues nothing (only notAfter is read) */
    assert_int_equal(dp_ca_new_root("test", 1, &root), 0);
    assert_non_null(ASN1_TIME_set(X509_getm_notAfter(root->cert), (time_t)(now + 1)));
    ca.ca = root;
    ctx = NULL;
    assert_int_equal(op_serving_ctx_new(&ca, "istio-system", 3600, now, &ctx, NULL), -EINVAL);
    assert_null(ctx);
    dp_ca_free(root);
}

static void test_issue_intermediate(void **state)
{
    struct dp_ca *root = NULL, *inter = NULL, *other = NULL;
    struct op_ca ca = {0};
    SSL_CTX *ctx = NULL;
    int64_t now = (int64_t)time(NULL);
    X509 *leaf;
    const ASN1_TIME *na;
    int day, sec;

    (void)state;
    assert_int_equal(dp_ca_new_root("root", 3650, &root), 0);
    assert_int_equal(dp_ca_new_intermediate(root, "inter", 10, &inter), 0);
    assert_int_equal(dp_ca_new_root("other", 3650, &other), 0);
    ca.ca = inter;
    assert_int_equal(op_serving_ctx_new(&ca, "mesh", OP_SERVING_TTL_S, now, &ctx, NULL), 0);
    assert_verifies(ctx, root->cert, "istiod.mesh.svc", true);
    assert_verifies(ctx, other->cert, "istiod.mesh.svc", false);
    /* 30 days asked, the intermediate ends in 10: the leaf ends with it */
    leaf = SSL_CTX_get0_certificate(ctx);
    na = X509_get0_notAfter(leaf);
    assert_int_equal(ASN1_TIME_diff(&day, &sec, X509_get0_notAfter(inter->cert), na), 1);
    assert_true(day == 0 && sec <= 0 && sec > -120);
    SSL_CTX_free(ctx);
    dp_ca_free(other);
    dp_ca_free(inter);
    dp_ca_free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_times),
            cmocka_unit_test(test_sans),
            cmocka_unit_test(test_issue_self_signed_root),
            cmocka_unit_test(test_issue_intermediate),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
