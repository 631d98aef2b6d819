/* AuthorizationPolicy status conditions (operator/status.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "operator/status.h"

static const char *cond(json_t *conds, const char *field)
{
    return json_string_value(json_object_get(json_array_get(conds, 0), field));
}

static void test_authz_conditions(void **state)
{
    json_t *ap, *c;

    (void)state;
    ap = json_loads("{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\"},\"spec\":{\"action\":"
                    "\"DENY\",\"rules\":[{\"from\":[{\"source\":{\"namespaces\":[\"x\"]}}]}]}}",
                    0, NULL);
    c = op_authz_conditions(ap, "istio-system", 2, "T");
    assert_string_equal(cond(c, "type"), "ZtunnelAccepted");
    assert_string_equal(cond(c, "status"), "True");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(c, 0), "observedGeneration")), 2);
    json_decref(c);
    json_decref(ap);

    ap = json_loads("{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\"},\"spec\":{\"rules\":"
                    "[{\"to\":[{\"operation\":{\"paths\":[\"/x\"]}}]}]}}",
                    0, NULL);
    c = op_authz_conditions(ap, "istio-system", 1, "T");
    assert_string_equal(cond(c, "status"), "False");
    assert_string_equal(cond(c, "reason"), "UnsupportedValue");
    assert_non_null(strstr(cond(c, "message"), "paths"));
    json_decref(c);
    json_decref(ap);

    ap = json_loads("{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\"},\"spec\":{\"targetRefs\":"
                    "[{\"kind\":\"Gateway\",\"name\":\"w\"}]}}",
                    0, NULL);
    c = op_authz_conditions(ap, "istio-system", 1, "T");
    assert_string_equal(cond(c, "type"), "WaypointAccepted");
    json_decref(c);
    json_decref(ap);

    /* selector with targetRefs: invalid (the webhook would have rejected it) */
    ap = json_loads("{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\"},\"spec\":{\"targetRefs\":"
                    "[{\"kind\":\"Gateway\",\"name\":\"w\"}],\"selector\":{\"matchLabels\":{\"a\":\"b\"}}}}",
                    0, NULL);
    c = op_authz_conditions(ap, "istio-system", 1, "T");
    assert_string_equal(cond(c, "type"), "WaypointAccepted");
    assert_string_equal(cond(c, "status"), "False");
    assert_string_equal(cond(c, "reason"), "Invalid");
    assert_non_null(strstr(cond(c, "message"), "selector and targetRef"));
    json_decref(c);
    json_decref(ap);

    ap = json_loads("{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\"},\"spec\":{\"rules\":"
                    "[{\"from\":[{\"source\":{\"ipBlocks\":[\"not-a-cidr\"]}}]}]}}",
                    0, NULL);
    c = op_authz_conditions(ap, "istio-system", 1, "T");
    assert_string_equal(cond(c, "status"), "False");
    assert_string_equal(cond(c, "reason"), "Invalid");
    json_decref(c);
    json_decref(ap);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_authz_conditions),
    };

    return cmocka_run_group_tests_name("status", tests, NULL, NULL);
}
