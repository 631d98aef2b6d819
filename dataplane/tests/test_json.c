/* Unit tests for dataplane/json: path-tracking getters and their error messages. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "json.h"

static json_t *load(const char *s)
{
    json_error_t je;
    json_t *v = json_loads(s, 0, &je);
    if (!v)
        fail_msg("bad fixture: %s", je.text);
    return v;
}

/* A miniature VirtualService decoder, the way operator code uses the helpers. */
static int decode_vs(json_t *vs, struct dp_jerr *e)
{
    struct dp_jpath p;
    json_t *spec, *http, *route, *rt;
    size_t i, j;
    int r;

    dp_jpath_init(&p, "");
    if ((r = dp_json_get_obj(vs, "spec", true, &spec, &p, e)) < 0)
        return r;
    dp_jpath_push_key(&p, "spec");
    if ((r = dp_json_get_arr(spec, "http", false, 100, &http, &p, e)) <= 0)
        return r;
    dp_jpath_push_key(&p, "http");
    json_array_foreach(http, i, rt)
    {
        dp_jpath_push_index(&p, i);
        if ((r = dp_json_get_arr(rt, "route", true, 50, &route, &p, e)) < 0)
            return r;
        dp_jpath_push_key(&p, "route");
        json_t *dst;
        json_array_foreach(route, j, dst)
        {
            long long w = 100;
            const char *host;
            dp_jpath_push_index(&p, j);
            if ((r = dp_json_get_int(dst, "weight", false, 0, 100, &w, &p, e)) < 0)
                return r;
            json_t *d;
            if ((r = dp_json_get_obj(dst, "destination", true, &d, &p, e)) < 0)
                return r;
            dp_jpath_push_key(&p, "destination");
            if ((r = dp_json_get_str(d, "host", true, &host, &p, e)) < 0)
                return r;
            dp_jpath_pop(&p);
            dp_jpath_pop(&p);
        }
        dp_jpath_pop(&p);
        dp_jpath_pop(&p);
    }
    return 0;
}

static void test_error_paths(void **state)
{
    (void)state;
    struct dp_jerr e;
    json_t *vs = load("{\"spec\":{\"http\":[{\"route\":[{\"destination\":{\"host\":\"a\"}}]},"
                      "{\"route\":[{\"destination\":{\"host\":\"b\"}}]},"
                      "{\"route\":[{\"destination\":{\"host\":\"c\"},\"weight\":\"50\"}]}]}}");
    assert_int_equal(decode_vs(vs, &e), -EINVAL);
    assert_string_equal(e.msg, "spec.http[2].route[0].weight: expected integer, got string");
    json_decref(vs);

    vs = load("{\"spec\":{\"http\":[{\"route\":[{\"destination\":{}}]}]}}");
    assert_int_equal(decode_vs(vs, &e), -EINVAL);
    assert_string_equal(e.msg, "spec.http[0].route[0].destination.host: required field is missing");
    json_decref(vs);

    vs = load("{\"spec\":{\"http\":[{\"route\":[{\"destination\":{\"host\":\"x\"},"
              "\"weight\":101}]}]}}");
    assert_int_equal(decode_vs(vs, &e), -EINVAL);
    assert_string_equal(e.msg, "spec.http[0].route[0].weight: 101 out of range [0, 100]");
    json_decref(vs);

    vs = load("{\"spec\":{\"http\":[{\"route\":[{\"destination\":{\"host\":\"x\"},"
              "\"weight\":40}]}]}}");
    assert_int_equal(decode_vs(vs, &e), 0);
    json_decref(vs);

    vs = load("{\"spec\":[]}");
    assert_int_equal(decode_vs(vs, &e), -EINVAL);
    assert_string_equal(e.msg, "spec: expected object, got array");
    json_decref(vs);
}

static void test_odd_keys_and_limits(void **state)
{
    (void)state;
    struct dp_jpath p;
    struct dp_jerr e;
    dp_jpath_init(&p, "metadata");
    dp_jpath_push_key(&p, "labels");
    dp_jpath_push_key(&p, "istio.io/dataplane-mode");
    assert_string_equal(dp_jpath_str(&p), "metadata.labels[\"istio.io/dataplane-mode\"]");
    dp_jpath_pop(&p);
    dp_jpath_push_key(&p, "evil\"\n");
    assert_string_equal(dp_jpath_str(&p), "metadata.labels[\"evil\\\"\\u000a\"]");
    dp_jpath_pop(&p);
    dp_jpath_pop(&p);
    assert_string_equal(dp_jpath_str(&p), "metadata");

    /* deep pushes beyond the stack and long keys never overflow; pops stay balanced */
    char longkey[600];
    memset(longkey, 'k', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    for (int i = 0; i < 100; i++)
        dp_jpath_push_key(&p, longkey);
    assert_true(strlen(dp_jpath_str(&p)) < DP_JPATH_MAX);
    for (int i = 0; i < 100; i++)
        dp_jpath_pop(&p);
    assert_string_equal(dp_jpath_str(&p), "metadata");

    json_t *o = load("{\"items\":[1,2,3,4],\"s\":\"x\",\"b\":1,\"n\":1.5,\"z\":null}");
    json_t *arr;
    dp_jpath_init(&p, "");
    assert_int_equal(dp_json_get_arr(o, "items", true, 3, &arr, &p, &e), -EINVAL);
    assert_string_equal(e.msg, "items: too many items (4, at most 3)");
    bool b;
    assert_int_equal(dp_json_get_bool(o, "b", true, &b, &p, &e), -EINVAL);
    assert_string_equal(e.msg, "b: expected boolean, got integer");
    double d = 0;
    assert_int_equal(dp_json_get_num(o, "n", true, 0, 2, &d, &p, &e), 1);
    assert_true(d == 1.5);
    const char *s = "default";
    assert_int_equal(dp_json_get_str(o, "z", false, &s, &p, &e), 0); /* null = absent */
    assert_string_equal(s, "default");
    assert_int_equal(dp_json_get_str(o, "missing", false, &s, &p, &e), 0);
    static const char *const allowed[] = {"items", "s", "b", "n", NULL};
    assert_int_equal(dp_json_check_keys(o, allowed, &p, &e), -EINVAL);
    assert_string_equal(e.msg, "z: unknown field");
    json_decref(o);
}

static void test_pointer(void **state)
{
    (void)state;
    json_t *o = load("{\"spec\":{\"http\":[{\"a/b\":1,\"m~n\":2},{\"x\":3}]}}");
    assert_int_equal(json_integer_value(dp_json_pointer_get(o, "/spec/http/0/a~1b")), 1);
    assert_int_equal(json_integer_value(dp_json_pointer_get(o, "/spec/http/0/m~0n")), 2);
    assert_int_equal(json_integer_value(dp_json_pointer_get(o, "/spec/http/1/x")), 3);
    assert_null(dp_json_pointer_get(o, "/spec/http/01/x"));
    assert_null(dp_json_pointer_get(o, "/spec/http/2"));
    assert_null(dp_json_pointer_get(o, "/spec/http/-1"));
    assert_null(dp_json_pointer_get(o, "spec"));
    assert_null(dp_json_pointer_get(o, "/spec/http/0/bad~2escape"));
    assert_ptr_equal(dp_json_pointer_get(o, ""), o);
    json_decref(o);
}

static void test_parse_limits(void **state)
{
    (void)state;
    char err[256];
    json_t *v = NULL;
    assert_int_equal(dp_json_parse("{\"a\":1}", 7, 4, "body", &v, err, sizeof(err)), -EMSGSIZE);
    assert_null(v);
    assert_int_equal(dp_json_parse("{\"a\":1,\"a\":2}", 13, 100, "body", &v, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "body:1:"));
    assert_int_equal(dp_json_parse("{\n\"a\": [1,\n", 11, 100, "body", &v, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "body:"));
    assert_int_equal(dp_json_parse("[1,2]", 5, 100, "body", &v, err, sizeof(err)), 0);
    assert_int_equal(json_array_size(v), 2);
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_error_paths),
            cmocka_unit_test(test_odd_keys_and_limits),
            cmocka_unit_test(test_pointer),
            cmocka_unit_test(test_parse_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
