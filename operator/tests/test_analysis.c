/* The status the operator writes for analyzer findings (operator/analysis.c): Istio's
 * validationMessages, the Valid condition, and the comparison that keeps it from rewriting an
 * unchanged status. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "operator/analysis.h"

static json_t *finding(const char *level, const char *code, const char *istio_code,
                       const char *istio_name, const char *path, const char *msg)
{
    json_t *f = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "level", level, "code", code, "kind",
                          "VirtualService", "namespace", "ns", "name", "vs", "path", path,
                          "message", msg);

    if (istio_code != NULL) {
        json_object_set_new(f, "istioCode", json_string(istio_code));
        json_object_set_new(f, "istioName", json_string(istio_name));
    }
    return f;
}

static void test_status_shape(void **state)
{
    json_t *fs = json_array(), *st, *vm, *cond;
    const char *msg;

    (void)state;
    json_array_append_new(fs, finding("Error", "SubsetNotDefined", "IST0101",
                                      "ReferencedResourceNotFound",
                                      "spec.http[0].route[0].destination.subset",
                                      "Referenced host+subset in destinationrule not found: "
                                      "\"reviews+v3\""));
    json_array_append_new(fs, finding("Error", "UnknownHost", "IST0101",
                                      "ReferencedResourceNotFound",
                                      "spec.http[0].route[1].destination.host",
                                      "Referenced host not found: \"nosuch\""));
    json_array_append_new(fs, finding("Warning", "WeightsNot100", "IST0133", "SchemaWarning",
                                      "spec.http[0].route", "destination weights sum to 90"));
    json_array_append_new(fs, finding("Warning", "ConflictingPeerAuthentication", NULL, NULL,
                                      "spec", "ignored"));
    st = op_analysis_status(fs, 7, NULL, "2026-11-28T05:00:00Z");
    assert_non_null(st);
    assert_int_equal(json_integer_value(json_object_get(st, "observedGeneration")), 7);
    /* one entry per distinct message type; none for a finding Istio has no code for */
    assert_int_equal(json_array_size(json_object_get(st, "validationMessages")), 2);
    vm = json_array_get(json_object_get(st, "validationMessages"), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(vm, "type"), "code")),
                        "IST0101");
    assert_string_equal(json_string_value(json_object_get(json_object_get(vm, "type"), "name")),
                        "ReferencedResourceNotFound");
    assert_string_equal(json_string_value(json_object_get(vm, "level")), "ERROR");
    assert_string_equal(json_string_value(json_object_get(vm, "documentationUrl")),
                        "https://istio.io/latest/docs/reference/config/analysis/ist0101/");
    vm = json_array_get(json_object_get(st, "validationMessages"), 1);
    assert_string_equal(json_string_value(json_object_get(vm, "level")), "WARNING");
    /* the condition carries the text of every finding */
    assert_int_equal(json_array_size(json_object_get(st, "conditions")), 1);
    cond = json_array_get(json_object_get(st, "conditions"), 0);
    assert_string_equal(json_string_value(json_object_get(cond, "type")), "Valid");
    assert_string_equal(json_string_value(json_object_get(cond, "status")), "False");
    assert_string_equal(json_string_value(json_object_get(cond, "reason")), "ValidationErrors");
    assert_int_equal(json_integer_value(json_object_get(cond, "observedGeneration")), 7);
    msg = json_string_value(json_object_get(cond, "message"));
    assert_non_null(strstr(msg, "Error [IST0101] spec.http[0].route[0].destination.subset: "
                                "Referenced host+subset in destinationrule not found: "
                                "\"reviews+v3\"; Error [IST0101] spec.http[0].route[1]"));
    assert_non_null(strstr(msg, "Warning [ConflictingPeerAuthentication] spec: ignored"));
    json_decref(st);

    /* warnings only */
    json_array_remove(fs, 0);
    json_array_remove(fs, 0);
    st = op_analysis_status(fs, 7, NULL, "2026-11-28T05:00:00Z");
    cond = json_array_get(json_object_get(st, "conditions"), 0);
    assert_string_equal(json_string_value(json_object_get(cond, "reason")), "ValidationWarnings");
    json_decref(st);

    /* no findings: nothing of ours but the generation (an empty status cannot be applied) */
    json_array_clear(fs);
    st = op_analysis_status(fs, 7, NULL, "2026-11-28T05:00:00Z");
    assert_int_equal(json_object_size(st), 1);
    assert_int_equal(json_integer_value(json_object_get(st, "observedGeneration")), 7);
    json_decref(st);
    st = op_analysis_status(NULL, 7, NULL, "2026-11-28T05:00:00Z");
    assert_int_equal(json_object_size(st), 1);
    json_decref(st);
    json_decref(fs);
}

/* What we write, read back from the object, compares equal to what we would write again
 * (otherwise every pass would rewrite it), also with another writer's condition next to ours;
 * a changed finding, generation or a removed message compares different. */
static void test_roundtrip(void **state)
{
    json_t *fs = json_array(), *st, *live, *owned, *again, *cmp;

    (void)state;
    json_array_append_new(fs, finding("Warning", "WeightsNot100", "IST0133", "SchemaWarning",
                                      "spec.http[0].route", "destination weights sum to 90"));
    st = op_analysis_status(fs, 3, NULL, "2026-11-28T05:00:00Z");
    live = json_deep_copy(st);
    json_array_insert_new(json_object_get(live, "conditions"), 0,
                          json_pack("{s:s,s:s}", "type", "Reconciled", "status", "True"));
    owned = op_analysis_owned(live);
    /* later pass, later clock: the transition time is kept from the live condition */
    again = op_analysis_status(fs, 3, live, "2026-11-28T06:00:00Z");
    assert_string_equal(json_string_value(json_object_get(
                                json_array_get(json_object_get(again, "conditions"), 0),
                                "lastTransitionTime")),
                        "2026-11-28T05:00:00Z");
    cmp = json_deep_copy(again);
    json_object_del(json_array_get(json_object_get(cmp, "conditions"), 0), "lastTransitionTime");
    assert_true(json_equal(cmp, owned));
    json_decref(cmp);
    json_decref(again);

    /* a new generation differs */
    again = op_analysis_status(fs, 4, live, "2026-11-28T06:00:00Z");
    json_object_del(json_array_get(json_object_get(again, "conditions"), 0), "lastTransitionTime");
    assert_false(json_equal(again, owned));
    json_decref(again);

    /* fixed: the empty wanted status differs from what the object still carries */
    again = op_analysis_status(NULL, 4, live, "2026-11-28T06:00:00Z");
    assert_false(json_equal(again, owned));
    json_decref(again);
    json_decref(owned);

    /* after the clear is applied the object has just observedGeneration: owns nothing */
    again = op_analysis_status(NULL, 4, live, "2026-11-28T06:00:00Z");
    owned = op_analysis_owned(again);
    assert_int_equal(json_object_size(owned), 0);
    json_decref(owned);
    json_decref(again);

    /* an object without anything of ours owns nothing */
    json_object_del(live, "validationMessages");
    json_array_remove(json_object_get(live, "conditions"), 1);
    owned = op_analysis_owned(live);
    assert_int_equal(json_object_size(owned), 0);
    json_decref(owned);
    owned = op_analysis_owned(NULL);
    assert_int_equal(json_object_size(owned), 0);
    json_decref(owned);
    json_decref(live);
    json_decref(st);
    json_decref(fs);
}

/* Many findings: the condition message stays bounded and says how many it left out. */
static void test_bounded_message(void **state)
{
    json_t *fs = json_array(), *st;
    const char *msg;
    char path[64];

    (void)state;
    for (int i = 0; i < 200; i++) {
        snprintf(path, sizeof(path), "spec.http[%d].route", i);
        json_array_append_new(fs, finding("Warning", "WeightsNot100", "IST0133", "SchemaWarning",
                                          path, "destination weights sum to 90, not 100"));
    }
    st = op_analysis_status(fs, 1, NULL, "2026-11-28T05:00:00Z");
    msg = json_string_value(
            json_object_get(json_array_get(json_object_get(st, "conditions"), 0), "message"));
    assert_true(strlen(msg) < 2048);
    assert_non_null(strstr(msg, "more)"));
    assert_int_equal(json_array_size(json_object_get(st, "validationMessages")), 1);
    json_decref(st);
    json_decref(fs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_status_shape),
            cmocka_unit_test(test_roundtrip),
            cmocka_unit_test(test_bounded_message),
    };

    return cmocka_run_group_tests_name("analysis", tests, NULL, NULL);
}
