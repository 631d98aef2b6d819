/* Unit tests for dataplane/metrics: registration rules, series caps, atomics across threads,
 * exposition golden output (hostile label values included), and `promtool check metrics`. */
/* cmocka.h needs setjmp.h, stdarg.h and stddef.h first */
/* clang-format off */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
/* clang-format on */

#include "buf.h"
#include "common.h"
#include "metrics.h"

static char *expose(struct dp_metrics *m)
{
    struct dp_buf *b;
    assert_int_equal(dp_buf_new(1024, 1u << 20, &b), 0);
    assert_int_equal(dp_metrics_expose(m, &b), 0);
    char *s = strndup(dp_buf_head(b), b->len);
    dp_buf_free(b);
    return s;
}

static void assert_text_eq(const char *got, const char *want)
{
    if (strcmp(got, want) != 0)
        fail_msg("exposition mismatch\n--- got ---\n%s\n--- want ---\n%s", got, want);
}

static void test_register_rules(void **state)
{
    (void)state;
    struct dp_metrics *m;
    struct dp_metric *f;
    assert_int_equal(dp_metrics_new(&m), 0);
    const char *k2[] = {"a", "b"};
    const char *dup[] = {"a", "a"};
    const char *le[] = {"le"};
    const char *bad[] = {"__x"};
    const char *bad2[] = {"1x"};
    const char *bad3[] = {"a-b"};
    double b_ok[] = {1, 2};
    double b_bad[] = {2, 1};
    double b_inf[] = {1, INFINITY};

    assert_int_equal(dp_metrics_counter(m, "", "h", NULL, 0, &f), -EINVAL);
    assert_int_equal(dp_metrics_counter(m, "9abc", "h", NULL, 0, &f), -EINVAL);
    assert_int_equal(dp_metrics_counter(m, "a-b", "h", NULL, 0, &f), -EINVAL);
    assert_int_equal(dp_metrics_counter(m, "x_total", "h", dup, 2, &f), -EINVAL);
    assert_int_equal(dp_metrics_counter(m, "x_total", "h", bad, 1, &f), -EINVAL);
    assert_int_equal(dp_metrics_counter(m, "x_total", "h", bad2, 1, &f), -EINVAL);
    assert_int_equal(dp_metrics_counter(m, "x_total", "h", bad3, 1, &f), -EINVAL);
    assert_int_equal(dp_metrics_histogram(m, "h", "h", le, 1, b_ok, 2, &f), -EINVAL);
    assert_int_equal(dp_metrics_histogram(m, "h", "h", NULL, 0, b_bad, 2, &f), -EINVAL);
    assert_int_equal(dp_metrics_histogram(m, "h", "h", NULL, 0, b_inf, 2, &f), -EINVAL);
    assert_int_equal(dp_metrics_counter(m, "ns:x_total", "h", k2, 2, &f), 0);
    assert_int_equal(dp_metrics_gauge(m, "ns:x_total", "h", NULL, 0, &f), -EEXIST);
    /* le is fine on a counter */
    assert_int_equal(dp_metrics_counter(m, "y_total", "h", le, 1, &f), 0);

    struct dp_metric_series *s;
    const char *v1[] = {"1"};
    assert_int_equal(dp_metric_series(f, v1, 2, &s), -EINVAL);
    char *longv = malloc(DP_METRICS_MAX_VALUE_LEN + 2);
    memset(longv, 'x', DP_METRICS_MAX_VALUE_LEN + 1);
    longv[DP_METRICS_MAX_VALUE_LEN + 1] = '\0';
    const char *vl[] = {longv};
    assert_int_equal(dp_metric_series(f, vl, 1, &s), -EINVAL);
    longv[DP_METRICS_MAX_VALUE_LEN] = '\0';
    assert_int_equal(dp_metric_series(f, vl, 1, &s), 0);
    free(longv);
    dp_metrics_free(m);
    dp_metrics_free(NULL);
}

static void test_series_cap_and_identity(void **state)
{
    (void)state;
    struct dp_metrics *m;
    struct dp_metric *f;
    struct dp_metric_series *s, *s2;
    const char *keys[] = {"k", "j"};
    assert_int_equal(dp_metrics_new(&m), 0);
    assert_int_equal(
            dp_metrics_register(m, DP_METRIC_COUNTER, "c_total", "h", keys, 2, NULL, 0, 3, &f), 0);
    const char *a[] = {"ab", ""};
    const char *b[] = {"a", "b"};
    const char *c[] = {"a", NULL};
    assert_int_equal(dp_metric_series(f, a, 2, &s), 0);
    assert_int_equal(dp_metric_series(f, a, 2, &s2), 0);
    assert_ptr_equal(s, s2);
    assert_int_equal(dp_metric_series(f, b, 2, &s2), 0);
    assert_ptr_not_equal(s, s2);
    /* key/value form, any order, finds the same series */
    struct dp_label kv[] = {{"j", "b"}, {"k", "a"}};
    struct dp_metric_series *s3;
    assert_int_equal(dp_metric_series_kv(f, kv, 2, &s3), 0);
    assert_ptr_equal(s2, s3);
    struct dp_label kvbad[] = {{"j", "b"}, {"x", "a"}};
    assert_int_equal(dp_metric_series_kv(f, kvbad, 2, &s3), -EINVAL);
    struct dp_label kvdup[] = {{"j", "b"}, {"j", "a"}};
    assert_int_equal(dp_metric_series_kv(f, kvdup, 2, &s3), -EINVAL);
    assert_int_equal(dp_metric_series(f, c, 2, &s3), 0);
    /* cap of 3 reached: a new combination is refused, existing ones still found */
    const char *d[] = {"new", "one"};
    assert_int_equal(dp_metric_series(f, d, 2, &s3), -ENOSPC);
    assert_int_equal(dp_metric_series(f, a, 2, &s3), 0);
    assert_ptr_equal(s, s3);
    dp_metrics_free(m);
}

static const char *const hostile[] = {
        "back\\slash",           "dq\"uote",          "new\nline",
        "all\\\"\n\\n",          "tab\tcr\r",         "{}=,# HELP x",
        "\xff\xfe invalid utf8", "caf\xc3\xa9 ok",    "surrogate \xed\xa0\x80",
        "truncated \xe2\x82",    "overlong \xc0\xaf", "",
};

static void test_golden(void **state)
{
    (void)state;
    struct dp_metrics *m;
    struct dp_metric *c, *g, *h, *u, *e;
    struct dp_metric_series *s;
    const char *ck[] = {"reporter", "source_workload"};
    const char *hk[] = {"op"};
    double bounds[] = {0.005, 0.1, 1, 2.5};

    assert_int_equal(dp_metrics_new(&m), 0);
    assert_int_equal(dp_metrics_counter(m, "istio_tcp_connections_opened_total",
                                        "Connections opened.", ck, 2, &c),
                     0);
    assert_int_equal(dp_metrics_gauge(m, "ambit_connected_agents",
                                      "Help with \\ and\nnewline \"q\"", NULL, 0, &g),
                     0);
    assert_int_equal(dp_metrics_histogram(m, "ambit_push_duration_seconds", "Push latency.", hk, 1,
                                          bounds, 4, &h),
                     0);
    assert_int_equal(dp_metrics_counter(m, "ambit_unlabelled_total", "Never touched.", NULL, 0, &u),
                     0);
    assert_int_equal(dp_metrics_counter(m, "ambit_empty_total", "No series yet.", hk, 1, &e), 0);

    const char *v1[] = {"destination", "productpage-v1"};
    assert_int_equal(dp_metric_series(c, v1, 2, &s), 0);
    dp_counter_add(s, 41);
    dp_counter_inc(s);
    const char *v2[] = {"destination", hostile[3]};
    assert_int_equal(dp_metric_series(c, v2, 2, &s), 0);
    dp_counter_inc(s);

    assert_int_equal(dp_metric_series(g, NULL, 0, &s), 0);
    dp_gauge_set(s, 3);
    dp_gauge_add(s, -0.5);
    assert_true(dp_gauge_value(s) == 2.5);

    const char *hv[] = {"full"};
    assert_int_equal(dp_metric_series(h, hv, 1, &s), 0);
    dp_histogram_observe(s, 0.005); /* le is inclusive */
    dp_histogram_observe(s, 0.05);
    dp_histogram_observe(s, 0.2);
    dp_histogram_observe(s, 0.2);
    dp_histogram_observe(s, 100);
    assert_int_equal(dp_histogram_count(s), 5);
    assert_true(fabs(dp_histogram_sum(s) - 100.455) < 1e-9);

    char *out = expose(m);
    assert_text_eq(out, "# HELP istio_tcp_connections_opened_total Connections opened.\n"
                        "# TYPE istio_tcp_connections_opened_total counter\n"
                        "istio_tcp_connections_opened_total{reporter=\"destination\","
                        "source_workload=\"productpage-v1\"} 42\n"
                        "istio_tcp_connections_opened_total{reporter=\"destination\","
                        "source_workload=\"all\\\\\\\"\\n\\\\n\"} 1\n"
                        "# HELP ambit_connected_agents Help with \\\\ and\\nnewline \"q\"\n"
                        "# TYPE ambit_connected_agents gauge\n"
                        "ambit_connected_agents 2.5\n"
                        "# HELP ambit_push_duration_seconds Push latency.\n"
                        "# TYPE ambit_push_duration_seconds histogram\n"
                        "ambit_push_duration_seconds_bucket{op=\"full\",le=\"0.005\"} 1\n"
                        "ambit_push_duration_seconds_bucket{op=\"full\",le=\"0.1\"} 2\n"
                        "ambit_push_duration_seconds_bucket{op=\"full\",le=\"1\"} 4\n"
                        "ambit_push_duration_seconds_bucket{op=\"full\",le=\"2.5\"} 4\n"
                        "ambit_push_duration_seconds_bucket{op=\"full\",le=\"+Inf\"} 5\n"
                        "ambit_push_duration_seconds_sum{op=\"full\"} 100.455\n"
                        "ambit_push_duration_seconds_count{op=\"full\"} 5\n"
                        "# HELP ambit_unlabelled_total Never touched.\n"
                        "# TYPE ambit_unlabelled_total counter\n"
                        "ambit_unlabelled_total 0\n"
                        "# HELP ambit_empty_total No series yet.\n"
                        "# TYPE ambit_empty_total counter\n");
    free(out);
    dp_metrics_free(m);
}

static void test_escape(void **state)
{
    (void)state;
    static const struct {
        const char *in, *quoted, *help;
    } cases[] = {
            {"plain", "plain", "plain"},
            {"a\\b", "a\\\\b", "a\\\\b"},
            {"a\"b", "a\\\"b", "a\"b"},
            {"a\nb", "a\\nb", "a\\nb"},
            {"\\n", "\\\\n", "\\\\n"},
            {"tab\tcr\r", "tab\tcr\r", "tab\tcr\r"},
            {"\xff", "\xef\xbf\xbd", "\xef\xbf\xbd"},
            {"caf\xc3\xa9", "caf\xc3\xa9", "caf\xc3\xa9"},
            {"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"},
            {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
             "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
            {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd", "\xef\xbf\xbd\xef\xbf\xbd"},
            {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
             "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
            {"x\xe2\x82", "x\xef\xbf\xbd\xef\xbf\xbd", "x\xef\xbf\xbd\xef\xbf\xbd"},
    };
    for (size_t i = 0; i < DP_ARRAY_SIZE(cases); i++) {
        for (int q = 0; q < 2; q++) {
            struct dp_buf *b;
            assert_int_equal(dp_buf_new(16, 4096, &b), 0);
            assert_int_equal(dp_metrics_escape(&b, cases[i].in, q), 0);
            const char *want = q ? cases[i].quoted : cases[i].help;
            if (b->len != strlen(want) || memcmp(dp_buf_head(b), want, b->len) != 0)
                fail_msg("case %zu quote=%d: got '%.*s' want '%s'", i, q, (int)b->len,
                         dp_buf_head(b), want);
            dp_buf_free(b);
        }
    }
}

static void test_expose_limit(void **state)
{
    (void)state;
    struct dp_metrics *m;
    struct dp_metric *f;
    struct dp_buf *b;
    assert_int_equal(dp_metrics_new(&m), 0);
    assert_int_equal(dp_metrics_counter(m, "a_total", "some help text", NULL, 0, &f), 0);
    assert_int_equal(dp_buf_new(8, 16, &b), 0);
    assert_int_equal(dp_metrics_expose(m, &b), -EMSGSIZE);
    dp_buf_free(b);
    dp_metrics_free(m);
}

struct thr {
    struct dp_metric_series *c, *g, *h;
};

static void *hammer(void *arg)
{
    struct thr *t = arg;
    for (int i = 0; i < 100000; i++) {
        dp_counter_inc(t->c);
        dp_gauge_add(t->g, 1);
        dp_histogram_observe(t->h, (i % 4) * 0.5);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct dp_metrics *m;
    struct dp_metric *c, *g, *h;
    struct thr t;
    double bounds[] = {0.25, 0.75};
    assert_int_equal(dp_metrics_new(&m), 0);
    assert_int_equal(dp_metrics_counter(m, "c_total", "c", NULL, 0, &c), 0);
    assert_int_equal(dp_metrics_gauge(m, "g", "g", NULL, 0, &g), 0);
    assert_int_equal(dp_metrics_histogram(m, "h", "h", NULL, 0, bounds, 2, &h), 0);
    assert_int_equal(dp_metric_series(c, NULL, 0, &t.c), 0);
    assert_int_equal(dp_metric_series(g, NULL, 0, &t.g), 0);
    assert_int_equal(dp_metric_series(h, NULL, 0, &t.h), 0);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer, &t), 0);
    /* scrape while they run: must stay parseable */
    for (int i = 0; i < 20; i++)
        free(expose(m));
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(dp_counter_value(t.c), 400000);
    assert_true(dp_gauge_value(t.g) == 400000.0);
    assert_int_equal(dp_histogram_count(t.h), 400000);
    assert_true(dp_histogram_sum(t.h) == 4 * 25000 * (0.5 + 1.0 + 1.5));
    dp_metrics_free(m);
}

/* Run promtool check metrics on text; returns its exit status and fills out (combined output). */
static int promtool(const char *text, char *out, size_t outsz)
{
    char in_path[] = "/tmp/amb-metrics-XXXXXX";
    int fd = mkstemp(in_path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "/usr/bin/promtool check metrics < %s 2>&1", in_path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, outsz - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    unlink(in_path);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void build_hostile_registry(struct dp_metrics **ret_m)
{
    struct dp_metrics *m;
    struct dp_metric *c, *g, *h;
    struct dp_metric_series *s;
    const char *ck[] = {"source_workload", "destination_workload"};
    assert_int_equal(dp_metrics_new(&m), 0);
    assert_int_equal(dp_metrics_counter(m, "istio_tcp_sent_bytes_total",
                                        "Bytes sent \\ with \"hostile\"\nhelp \xff.", ck, 2, &c),
                     0);
    assert_int_equal(dp_metrics_gauge(m, "ambit_open_connections", "Open connections.", ck, 2, &g),
                     0);
    assert_int_equal(dp_metrics_histogram(m, "ambit_request_duration_seconds", "Latency.", ck, 2,
                                          dp_metrics_latency_bounds, dp_metrics_latency_bounds_n,
                                          &h),
                     0);
    for (size_t i = 0; i < DP_ARRAY_SIZE(hostile); i++) {
        const char *v[] = {hostile[i], hostile[(i + 1) % DP_ARRAY_SIZE(hostile)]};
        assert_int_equal(dp_metric_series(c, v, 2, &s), 0);
        dp_counter_add(s, i * 1000);
        assert_int_equal(dp_metric_series(g, v, 2, &s), 0);
        dp_gauge_set(s, i % 3 == 0 ? -1.5 : i % 3 == 1 ? NAN : 1e300);
        assert_int_equal(dp_metric_series(h, v, 2, &s), 0);
        dp_histogram_observe(s, (double)i / 7);
    }
    *ret_m = m;
}

static void test_promtool_accepts(void **state)
{
    (void)state;
    struct dp_metrics *m;
    char out[4096];
    build_hostile_registry(&m);
    char *text = expose(m);
    int rc = promtool(text, out, sizeof(out));
    if (rc != 0)
        fail_msg("promtool check metrics failed (%d): %s\n--- input ---\n%s", rc, out, text);
    free(text);
    dp_metrics_free(m);
}

/* The promtool test must be able to fail: undo our escaping on the same output and check that
 * promtool rejects it. */
static void test_promtool_rejects_unescaped(void **state)
{
    (void)state;
    char out[4096];
    const char *bad_quote = "# HELP a_total h\n# TYPE a_total counter\na_total{l=\"dq\"uote\"} 1\n";
    assert_int_not_equal(promtool(bad_quote, out, sizeof(out)), 0);
    const char *bad_nl = "# HELP a_total h\n# TYPE a_total counter\na_total{l=\"new\nline\"} 1\n";
    assert_int_not_equal(promtool(bad_nl, out, sizeof(out)), 0);
    const char *bad_utf8 = "# HELP a_total h\n# TYPE a_total counter\na_total{l=\"\xff\"} 1\n";
    assert_int_not_equal(promtool(bad_utf8, out, sizeof(out)), 0);

    struct dp_metrics *m;
    build_hostile_registry(&m);
    char *text = expose(m);
    /* strip one escaping backslash before a quote: the text must no longer pass */
    char *p = strstr(text, "dq\\\"uote");
    assert_non_null(p);
    memmove(p + 2, p + 3, strlen(p + 3) + 1);
    assert_int_not_equal(promtool(text, out, sizeof(out)), 0);
    free(text);
    dp_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_register_rules),
            cmocka_unit_test(test_series_cap_and_identity),
            cmocka_unit_test(test_golden),
            cmocka_unit_test(test_escape),
            cmocka_unit_test(test_expose_limit),
            cmocka_unit_test(test_threads),
            cmocka_unit_test(test_promtool_accepts),
            cmocka_unit_test(test_promtool_rejects_unescaped),
    };
    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
