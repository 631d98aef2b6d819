/* Unit tests for the watch-stream splitter (kube_watch.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kube_watch.h"

struct rec {
    int n;
    enum dp_kube_event_type types[16];
    char names[16][64];
    long codes[16];
    int fail_at; /* callback returns -ECANCELED at this index (0 = never) */
};

static int on_event(enum dp_kube_event_type type, json_t *obj, void *arg)
{
    struct rec *r = arg;
    const char *name = json_string_value(
            json_object_get(json_object_get(obj, "metadata"), "name"));
    const char *rv = json_string_value(
            json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));

    if (r->fail_at && r->n + 1 == r->fail_at)
        return -ECANCELED;
    assert_true(r->n < 16);
    r->types[r->n] = type;
    snprintf(r->names[r->n], sizeof(r->names[0]), "%s",
             type == DP_KUBE_EV_BOOKMARK ? (rv ? rv : "") : (name ? name : ""));
    r->codes[r->n] = json_integer_value(json_object_get(obj, "code"));
    r->n++;
    return 0;
}

static const char STREAM[] =
        "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Pod\",\"metadata\":{\"name\":\"a\","
        "\"resourceVersion\":\"10\"}}}\n"
        "{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"Pod\",\"metadata\":{\"name\":\"b\\u00e9\","
        "\"resourceVersion\":\"11\"}}}\r\n"
        "\n"
        "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Pod\",\"metadata\":{"
        "\"resourceVersion\":\"12\"}}}\n"
        "{\"type\":\"DELETED\",\"object\":{\"kind\":\"Pod\",\"metadata\":{\"name\":\"c\"}}}\n"
        "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":"
        "\"Failure\",\"message\":\"too old resource version: 5 (12)\",\"reason\":\"Expired\","
        "\"code\":410}}\n";

static void check_stream(const struct rec *r)
{
    assert_int_equal(r->n, 5);
    assert_int_equal(r->types[0], DP_KUBE_EV_ADDED);
    assert_string_equal(r->names[0], "a");
    assert_int_equal(r->types[1], DP_KUBE_EV_MODIFIED);
    assert_string_equal(r->names[1], "b\xc3\xa9");
    assert_int_equal(r->types[2], DP_KUBE_EV_BOOKMARK);
    assert_string_equal(r->names[2], "12");
    assert_int_equal(r->types[3], DP_KUBE_EV_DELETED);
    assert_int_equal(r->types[4], DP_KUBE_EV_ERROR);
    assert_int_equal(r->codes[4], 410);
}

static void test_whole(void **state)
{
    struct dp_kube_splitter s;
    struct rec r = {0};

    (void)state;
    dp_kube_splitter_init(&s, 0);
    assert_int_equal(dp_kube_splitter_feed(&s, STREAM, strlen(STREAM), on_event, &r), 0);
    assert_int_equal(dp_kube_splitter_finish(&s), 0);
    check_stream(&r);
    dp_kube_splitter_done(&s);
}

/* every split point, two chunks */
static void test_split_everywhere(void **state)
{
    size_t n = strlen(STREAM), i;

    (void)state;
    for (i = 0; i <= n; i++) {
        struct dp_kube_splitter s;
        struct rec r = {0};

        dp_kube_splitter_init(&s, 0);
        assert_int_equal(dp_kube_splitter_feed(&s, STREAM, i, on_event, &r), 0);
        assert_int_equal(dp_kube_splitter_feed(&s, STREAM + i, n - i, on_event, &r), 0);
        assert_int_equal(dp_kube_splitter_finish(&s), 0);
        check_stream(&r);
        dp_kube_splitter_done(&s);
    }
}

/* one byte at a time, and three-way splits at a stride */
static void test_bytewise_and_three_way(void **state)
{
    size_t n = strlen(STREAM), i, j;
    struct dp_kube_splitter s;
    struct rec r = {0};

    (void)state;
    dp_kube_splitter_init(&s, 0);
    for (i = 0; i < n; i++)
        assert_int_equal(dp_kube_splitter_feed(&s, STREAM + i, 1, on_event, &r), 0);
    assert_int_equal(dp_kube_splitter_finish(&s), 0);
    check_stream(&r);
    dp_kube_splitter_done(&s);

    for (i = 0; i <= n; i += 7) {
        for (j = i; j <= n; j += 11) {
            struct rec r2 = {0};

            dp_kube_splitter_init(&s, 0);
            assert_int_equal(dp_kube_splitter_feed(&s, STREAM, i, on_event, &r2), 0);
            assert_int_equal(dp_kube_splitter_feed(&s, STREAM + i, j - i, on_event, &r2), 0);
            assert_int_equal(dp_kube_splitter_feed(&s, STREAM + j, n - j, on_event, &r2), 0);
            assert_int_equal(dp_kube_splitter_finish(&s), 0);
            check_stream(&r2);
            dp_kube_splitter_done(&s);
        }
    }
}

static void test_cut_mid_line(void **state)
{
    struct dp_kube_splitter s;
    struct rec r = {0};
    const char *first_nl = strchr(STREAM, '\n');
    size_t cut = (size_t)(first_nl - STREAM) + 20;

    (void)state;
    dp_kube_splitter_init(&s, 0);
    assert_int_equal(dp_kube_splitter_feed(&s, STREAM, cut, on_event, &r), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(dp_kube_splitter_finish(&s), -EPIPE);
    assert_non_null(strstr(s.errmsg, "mid-line"));
    /* after finish the splitter is reusable (a new watch) */
    dp_kube_splitter_reset(&s);
    assert_int_equal(dp_kube_splitter_feed(&s, STREAM, strlen(STREAM), on_event, &r), 0);
    assert_int_equal(r.n, 6);
    dp_kube_splitter_done(&s);
}

static void test_line_limit(void **state)
{
    struct dp_kube_splitter s;
    struct rec r = {0};
    char big[300];

    (void)state;
    memset(big, 'x', sizeof(big));
    dp_kube_splitter_init(&s, 256);
    /* a line that fits */
    assert_int_equal(dp_kube_splitter_feed(&s, STREAM, (size_t)(strchr(STREAM, '\n') - STREAM) + 1,
                                           on_event, &r),
                     0);
    /* then one that never ends, fed in small pieces: bounded */
    assert_int_equal(dp_kube_splitter_feed(&s, big, 200, on_event, &r), 0);
    assert_int_equal(dp_kube_splitter_feed(&s, big, 100, on_event, &r), -EMSGSIZE);
    assert_true(s.cap <= 256);
    /* sticky */
    assert_int_equal(dp_kube_splitter_feed(&s, "\n", 1, on_event, &r), -EMSGSIZE);
    assert_int_equal(dp_kube_splitter_finish(&s), -EMSGSIZE);
    dp_kube_splitter_done(&s);

    /* a too-long complete line in one chunk (fast path) */
    dp_kube_splitter_init(&s, 256);
    big[299] = '\n';
    assert_int_equal(dp_kube_splitter_feed(&s, big, 300, on_event, &r), -EMSGSIZE);
    dp_kube_splitter_done(&s);
}

static void test_bad_lines(void **state)
{
    static const char *bad[] = {
            "not json\n",
            "[1,2]\n",
            "{\"object\":{}}\n",
            "{\"type\":\"ADDED\"}\n",
            "{\"type\":\"ADDED\",\"object\":\"str\"}\n",
            "{\"type\":\"RENAMED\",\"object\":{}}\n",
            "{\"type\":\"ADDED\",\"type\":\"DELETED\",\"object\":{}}\n",
            "{\"type\":\"ADDED\",\"object\":{}} trailing\n",
            "{\"type\":\"ADDED\",\"object\":{\"a\":\"\\ud800\"}}\n",
            "{\"type\":\"ADDED\",\"object\":{\"a\":\"\xff\"}}\n",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct dp_kube_splitter s;
        struct rec r = {0};

        dp_kube_splitter_init(&s, 0);
        assert_int_equal(dp_kube_splitter_feed(&s, bad[i], strlen(bad[i]), on_event, &r),
                         -EBADMSG);
        assert_int_equal(r.n, 0);
        assert_non_null(strstr(s.errmsg, "watch line 1"));
        dp_kube_splitter_done(&s);
    }
}

static void test_callback_error_stops(void **state)
{
    struct dp_kube_splitter s;
    struct rec r = {.fail_at = 2};

    (void)state;
    dp_kube_splitter_init(&s, 0);
    assert_int_equal(dp_kube_splitter_feed(&s, STREAM, strlen(STREAM), on_event, &r), -ECANCELED);
    assert_int_equal(r.n, 1);
    dp_kube_splitter_done(&s);
}

static void test_nul_bytes(void **state)
{
    struct dp_kube_splitter s;
    struct rec r = {0};
    static const char line[] = "{\"type\":\"ADDED\",\"object\":{}}\0garbage\n";

    (void)state;
    dp_kube_splitter_init(&s, 0);
    assert_int_equal(dp_kube_splitter_feed(&s, line, sizeof(line) - 1, on_event, &r), -EBADMSG);
    dp_kube_splitter_done(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_whole),
            cmocka_unit_test(test_split_everywhere),
            cmocka_unit_test(test_bytewise_and_three_way),
            cmocka_unit_test(test_cut_mid_line),
            cmocka_unit_test(test_line_limit),
            cmocka_unit_test(test_bad_lines),
            cmocka_unit_test(test_callback_error_stops),
            cmocka_unit_test(test_nul_bytes),
    };

    return cmocka_run_group_tests_name("kube_watch", tests, NULL, NULL);
}
