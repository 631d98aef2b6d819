/* test_cni_result.c — spec error codes, error JSON, version handling. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "cni-plugin/cni_result.h"

static void test_code_mapping(void **state)
{
    (void)state;
    assert_int_equal(cni_err_code(CNI_STAGE_ENV, -EINVAL), CNI_ERR_INVALID_ENV);
    assert_int_equal(cni_err_code(CNI_STAGE_DECODE, -EINVAL), CNI_ERR_DECODE);
    assert_int_equal(cni_err_code(CNI_STAGE_CONFIG, -EINVAL), CNI_ERR_INVALID_CONFIG);
    assert_int_equal(cni_err_code(CNI_STAGE_VERSION, -EINVAL), CNI_ERR_INCOMPATIBLE_VERSION);
    assert_int_equal(cni_err_code(CNI_STAGE_NETNS, -ENOENT), CNI_ERR_UNKNOWN_CONTAINER);
    assert_int_equal(cni_err_code(CNI_STAGE_NETNS, -EINVAL), CNI_ERR_UNKNOWN_CONTAINER);
    assert_int_equal(cni_err_code(CNI_STAGE_NETNS, -EACCES), CNI_ERR_IO);
    assert_int_equal(cni_err_code(CNI_STAGE_KUBE, -ETIMEDOUT), CNI_ERR_TRY_AGAIN);
    assert_int_equal(cni_err_code(CNI_STAGE_KUBE, -ENOENT), CNI_ERR_TRY_AGAIN);
    assert_int_equal(cni_err_code(CNI_STAGE_AGENT, -ECONNREFUSED), CNI_ERR_TRY_AGAIN);
    assert_int_equal(cni_err_code(CNI_STAGE_AGENT, -ENOENT), CNI_ERR_TRY_AGAIN);
    assert_int_equal(cni_err_code(CNI_STAGE_AGENT, -EAGAIN), CNI_ERR_TRY_AGAIN);
    assert_int_equal(cni_err_code(CNI_STAGE_AGENT, -EPROTO), CNI_ERR_AGENT_REFUSED);
    assert_int_equal(cni_err_code(CNI_STAGE_RULES, -EPERM), CNI_ERR_REDIRECT);
    assert_int_equal(cni_err_code(CNI_STAGE_IO, -ENOSPC), CNI_ERR_IO);
    assert_int_equal(cni_err_code(CNI_STAGE_AGENT, -ENOMEM), CNI_ERR_INTERNAL);
    /* spec values are fixed numbers */
    assert_int_equal(CNI_ERR_INCOMPATIBLE_VERSION, 1);
    assert_int_equal(CNI_ERR_UNKNOWN_CONTAINER, 3);
    assert_int_equal(CNI_ERR_INVALID_ENV, 4);
    assert_int_equal(CNI_ERR_IO, 5);
    assert_int_equal(CNI_ERR_DECODE, 6);
    assert_int_equal(CNI_ERR_INVALID_CONFIG, 7);
    assert_int_equal(CNI_ERR_TRY_AGAIN, 11);
    assert_true(CNI_ERR_AGENT_REFUSED >= 100 && CNI_ERR_REDIRECT >= 100);
    for (int c = 0; c <= 102; c++)
        assert_non_null(cni_code_str((enum cni_code)c));
}

static void test_error_json(void **state)
{
    (void)state;
    struct cni_error e;
    assert_int_equal(cni_fail(&e, CNI_ERR_INVALID_CONFIG, "d", "field %s bad", "x"), -1);
    json_t *j = cni_error_json(&e, "1.0.0");
    assert_string_equal(json_string_value(json_object_get(j, "cniVersion")), "1.0.0");
    assert_int_equal(json_integer_value(json_object_get(j, "code")), 7);
    assert_string_equal(json_string_value(json_object_get(j, "msg")), "field x bad");
    assert_string_equal(json_string_value(json_object_get(j, "details")), "d");
    json_decref(j);

    assert_int_equal(cni_fail_errno(&e, CNI_STAGE_NETNS, -ENOENT, "netns %s", "/x"), -1);
    assert_int_equal(e.code, CNI_ERR_UNKNOWN_CONTAINER);
    assert_string_equal(e.details, strerror(ENOENT));
    j = cni_error_json(&e, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "cniVersion")), "1.1.0");
    json_decref(j);

    /* no details -> no details member; hostile text stays one JSON string */
    cni_fail(&e, CNI_ERR_IO, NULL, "a\"b\n}{");
    j = cni_error_json(&e, "\xff\xfe"); /* invalid UTF-8 version: member dropped, no crash */
    assert_null(json_object_get(j, "details"));
    assert_string_equal(json_string_value(json_object_get(j, "msg")), "a\"b\n}{");
    json_decref(j);

    char longmsg[2000];
    memset(longmsg, 'm', sizeof(longmsg) - 1);
    longmsg[sizeof(longmsg) - 1] = 0;
    cni_fail(&e, CNI_ERR_IO, longmsg, "%s", longmsg); /* truncated, not overflowed */
    assert_int_equal(strlen(e.msg), sizeof(e.msg) - 1);
    assert_int_equal(strlen(e.details), sizeof(e.details) - 1);
}

static void test_versions(void **state)
{
    (void)state;
    assert_true(cni_version_cmp("0.3.1", "0.4.0") < 0);
    assert_true(cni_version_cmp("1.0.0", "0.4.0") > 0);
    assert_true(cni_version_cmp("1.1.0", "1.1.0") == 0);
    assert_true(cni_version_cmp("1.10.0", "1.9.0") > 0);
    assert_true(cni_version_cmp("junk", "0.1.0") < 0);
    assert_true(cni_version_cmp("1.0", "0.1.0") < 0);
    assert_true(cni_version_cmp("1.0.0x", "0.1.0") < 0);
    assert_true(cni_version_cmp(NULL, "0.1.0") < 0);
    assert_true(cni_version_cmp("99999999.0.0", "0.1.0") < 0); /* absurd: unparsable */
    const char *ok[] = {"0.3.1", "0.4.0", "1.0.0", "1.1.0"};
    for (size_t i = 0; i < 4; i++)
        assert_true(cni_version_supported(ok[i]));
    assert_false(cni_version_supported("0.2.0"));
    assert_false(cni_version_supported("1.2.0"));
    assert_false(cni_version_supported(""));
    assert_false(cni_version_supported(NULL));

    json_t *v = cni_version_json("1.0.0");
    assert_string_equal(json_string_value(json_object_get(v, "cniVersion")), "1.0.0");
    assert_true(json_array_size(json_object_get(v, "supportedVersions")) >= 4);
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_code_mapping),
            cmocka_unit_test(test_error_json),
            cmocka_unit_test(test_versions),
    };
    return cmocka_run_group_tests_name("cni_result", tests, NULL, NULL);
}
