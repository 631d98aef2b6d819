/* test_identity.c — file-CA identity provider: issue on first use, cache, chain to the CA. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ca.h"
#include "node-agent/identity.h"
#include "tls.h"

static char dir[64];
static char cert_path[128], key_path[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/amb-na-test-id.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    struct dp_ca *ca = NULL;
    if (dp_ca_new_root("amb test", 1, &ca) < 0)
        return -1;
    char *cert = NULL, *key = NULL;
    if (dp_pem_cert_to_pem(ca->cert, &cert) < 0 || dp_pem_key_to_pem(ca->key, &key) < 0)
        return -1;
    snprintf(cert_path, sizeof(cert_path), "%s/ca.pem", dir);
    snprintf(key_path, sizeof(key_path), "%s/ca.key", dir);
    if (dp_pem_write_file(cert_path, cert, 0644) < 0 || dp_pem_write_file(key_path, key, 0600) < 0)
        return -1;
    free(cert);
    free(key);
    dp_ca_free(ca);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(cert_path);
    unlink(key_path);
    rmdir(dir);
    return 0;
}

static void test_issue_and_cache(void **state)
{
    (void)state;
    struct na_identity *idp = NULL;
    assert_int_equal(na_identity_file_ca_new(cert_path, key_path, 3600, &idp), 0);
    const char *spiffe = "spiffe://cluster.local/ns/l4/sa/client";
    struct dp_identity *a = NULL, *b = NULL, *c = NULL;
    assert_int_equal(na_identity_get(idp, spiffe, &a), 0);
    assert_string_equal(dp_identity_name(a), spiffe);
    assert_false(dp_identity_expired(a, (int64_t)time(NULL)));
    assert_true(dp_identity_not_after(a) - dp_identity_not_before(a) <= 3600 + 120);
    assert_int_equal(na_identity_get(idp, spiffe, &b), 0);
    assert_string_equal(dp_identity_serial(a), dp_identity_serial(b)); /* cached */
    assert_int_equal(na_identity_get(idp, "spiffe://cluster.local/ns/l4/sa/other", &c), 0);
    assert_string_not_equal(dp_identity_serial(a), dp_identity_serial(c));
    /* only public material is reachable for dumps */
    assert_null(strstr(dp_identity_chain_pem(a), "PRIVATE KEY"));
    assert_non_null(strstr(dp_identity_roots_pem(a), "BEGIN CERTIFICATE"));
    dp_identity_unref(a);
    dp_identity_unref(b);
    dp_identity_unref(c);
    na_identity_free(idp);
}

static void test_bad_files(void **state)
{
    (void)state;
    struct na_identity *idp = NULL;
    assert_true(na_identity_file_ca_new("/nonexistent/ca.pem", key_path, 3600, &idp) < 0);
    assert_true(na_identity_file_ca_new(cert_path, cert_path, 3600, &idp) < 0);
    assert_null(idp);
    na_identity_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_issue_and_cache),
            cmocka_unit_test(test_bad_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
