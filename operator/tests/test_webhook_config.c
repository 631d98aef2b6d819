/* The webhook configuration patch (operator/webhook_config.c): what changes, what does not,
 * malformed objects named, denial messages attributed to our entries. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "operator/webhook_config.h"

static json_t *load(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);

    if (j == NULL)
        fail_msg("bad test JSON: %s", e.text);
    return j;
}

static void assert_patch(const char *vwc_text, const char *bundle, const char *policy,
                         const char *want)
{
    json_t *vwc = load(vwc_text), *patch = (json_t *)1;
    char err[200] = "";
    int r = op_webhook_config_patch(vwc, bundle, policy, &patch, err, sizeof(err));

    assert_int_equal(r, 0);
    if (want == NULL) {
        assert_null(patch);
    } else {
        json_t *w = load(want);
        char *got = json_dumps(patch, JSON_COMPACT);

        if (!json_equal(patch, w))
            fail_msg("patch %s, want %s", got, want);
        free(got);
        json_decref(w);
    }
    json_decref(patch);
    json_decref(vwc);
}

static void test_patch_fills_every_entry(void **state)
{
    (void)state;
    /* empty and missing caBundle, one entry already right */
    assert_patch("{\"webhooks\":[{\"name\":\"a\",\"clientConfig\":{\"caBundle\":\"\"}},"
                 "{\"name\":\"b\",\"clientConfig\":{\"service\":{\"name\":\"istiod\"}}},"
                 "{\"name\":\"c\",\"clientConfig\":{\"caBundle\":\"QUJD\"}}]}",
                 "QUJD", NULL,
                 "[{\"op\":\"test\",\"path\":\"/webhooks/0/name\",\"value\":\"a\"},"
                 "{\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"QUJD\"},"
                 "{\"op\":\"test\",\"path\":\"/webhooks/1/name\",\"value\":\"b\"},"
                 "{\"op\":\"add\",\"path\":\"/webhooks/1/clientConfig/caBundle\",\"value\":\"QUJD\"}]");
    /* a stale bundle (CA changed) is replaced */
    assert_patch("{\"webhooks\":[{\"name\":\"a\",\"clientConfig\":{\"caBundle\":\"T0xE\"}}]}", "TkVX",
                 NULL,
                 "[{\"op\":\"test\",\"path\":\"/webhooks/0/name\",\"value\":\"a\"},"
                 "{\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"TkVX\"}]");
}

static void test_patch_policy(void **state)
{
    (void)state;
    /* NULL policy leaves failurePolicy alone */
    assert_patch("{\"webhooks\":[{\"name\":\"a\",\"failurePolicy\":\"Ignore\","
                 "\"clientConfig\":{\"caBundle\":\"QUJD\"}}]}",
                 "QUJD", NULL, NULL);
    assert_patch("{\"webhooks\":[{\"name\":\"a\",\"failurePolicy\":\"Ignore\","
                 "\"clientConfig\":{\"caBundle\":\"QUJD\"}}]}",
                 "QUJD", "Fail",
                 "[{\"op\":\"test\",\"path\":\"/webhooks/0/name\",\"value\":\"a\"},"
                 "{\"op\":\"add\",\"path\":\"/webhooks/0/failurePolicy\",\"value\":\"Fail\"}]");
    /* both at once, and a missing failurePolicy */
    assert_patch("{\"webhooks\":[{\"name\":\"a\",\"clientConfig\":{}}]}", "QUJD", "Ignore",
                 "[{\"op\":\"test\",\"path\":\"/webhooks/0/name\",\"value\":\"a\"},"
                 "{\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"QUJD\"},"
                 "{\"op\":\"add\",\"path\":\"/webhooks/0/failurePolicy\",\"value\":\"Ignore\"}]");
    assert_patch("{\"webhooks\":[{\"name\":\"a\",\"failurePolicy\":\"Fail\","
                 "\"clientConfig\":{\"caBundle\":\"QUJD\"}}]}",
                 "QUJD", "Fail", NULL);
}

static void test_patch_nothing_to_do(void **state)
{
    (void)state;
    assert_patch("{\"metadata\":{\"name\":\"x\"}}", "QUJD", "Fail", NULL);
    assert_patch("{\"webhooks\":null}", "QUJD", "Fail", NULL);
    assert_patch("{\"webhooks\":[]}", "QUJD", "Fail", NULL);
}

static void assert_malformed(const char *vwc_text, const char *want_err)
{
    json_t *vwc = load(vwc_text), *patch = NULL;
    char err[200] = "";

    assert_int_equal(op_webhook_config_patch(vwc, "QUJD", NULL, &patch, err, sizeof(err)), -EINVAL);
    assert_null(patch);
    assert_string_equal(err, want_err);
    json_decref(vwc);
}

static void test_patch_malformed(void **state)
{
    (void)state;
    assert_malformed("{\"webhooks\":{\"name\":\"a\"}}", "webhooks: not a list");
    assert_malformed("{\"webhooks\":[{\"name\":\"a\",\"clientConfig\":{}},{\"clientConfig\":{}}]}",
                     "webhooks[1].name: missing");
    assert_malformed("{\"webhooks\":[{\"name\":\"a\",\"clientConfig\":\"x\"}]}",
                     "webhooks[0].clientConfig: missing or not an object");
    assert_malformed("{\"webhooks\":[{\"name\":\"a\"}]}",
                     "webhooks[0].clientConfig: missing or not an object");
}

static void test_ca_bundle(void **state)
{
    char *b;

    (void)state;
    b = op_webhook_ca_bundle("-----BEGIN CERTIFICATE-----\nAB\n", NULL);
    assert_non_null(b);
    assert_string_equal(b, "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCkFCCg==");
    free(b);
    b = op_webhook_ca_bundle("", NULL);
    assert_non_null(b);
    assert_string_equal(b, "");
    free(b);
    /* two roots during a rotation, a newline put between when missing */
    b = op_webhook_ca_bundle("NEW", "OLD\n");
    assert_string_equal(b, "TkVXCk9MRAo="); /* "NEW\nOLD\n" */
    free(b);
    b = op_webhook_ca_bundle("NEW\n", "OLD\n");
    assert_string_equal(b, "TkVXCk9MRAo=");
    free(b);
}

static void test_bundle_has(void **state)
{
    json_t *both = load("{\"webhooks\":[{\"name\":\"a\",\"clientConfig\":{\"caBundle\":\"TkVXCk9MRAo=\"}},"
                        "{\"name\":\"b\",\"clientConfig\":{\"caBundle\":\"TkVXCg==\"}}]}");
    json_t *one_stale = load("{\"webhooks\":[{\"name\":\"a\",\"clientConfig\":{\"caBundle\":\"TkVXCg==\"}},"
                             "{\"name\":\"b\",\"clientConfig\":{\"caBundle\":\"T0xECg==\"}}]}");
    json_t *blank = load("{\"webhooks\":[{\"name\":\"a\",\"clientConfig\":{\"caBundle\":\"\"}}]}");
    json_t *junk = load("{\"webhooks\":[{\"name\":\"a\",\"clientConfig\":{\"caBundle\":\"!!!\"}}]}");
    json_t *none = load("{\"webhooks\":[]}");

    (void)state;
    assert_true(op_webhook_bundle_has(both, "NEW\n"));
    assert_false(op_webhook_bundle_has(both, "OLD\n")); /* entry b lacks it */
    assert_false(op_webhook_bundle_has(one_stale, "NEW\n"));
    assert_false(op_webhook_bundle_has(blank, "NEW\n"));
    assert_false(op_webhook_bundle_has(junk, "NEW\n"));
    assert_true(op_webhook_bundle_has(none, "NEW\n"));
    json_decref(both);
    json_decref(one_stale);
    json_decref(blank);
    json_decref(junk);
    json_decref(none);
}

static void test_denied_by(void **state)
{
    json_t *vwc = load("{\"webhooks\":[{\"name\":\"other.example\"},{\"name\":\"validation.ambit.dev\"}]}");

    (void)state;
    assert_true(op_webhook_denied_by(
            vwc, "admission webhook \"validation.ambit.dev\" denied the request: spec.http[0]: bad"));
    assert_false(op_webhook_denied_by(
            vwc, "admission webhook \"someone.else\" denied the request: no"));
    assert_false(op_webhook_denied_by(vwc, "Internal error occurred: failed calling webhook "
                                           "\"validation.ambit.dev\": tls: unknown authority"));
    assert_false(op_webhook_denied_by(vwc, NULL));
    json_decref(vwc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_patch_fills_every_entry),
            cmocka_unit_test(test_patch_policy),
            cmocka_unit_test(test_patch_nothing_to_do),
            cmocka_unit_test(test_patch_malformed),
            cmocka_unit_test(test_ca_bundle),
            cmocka_unit_test(test_bundle_has),
            cmocka_unit_test(test_denied_by),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
