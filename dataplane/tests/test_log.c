/* test_log.c — unit tests for dataplane/log.c */
/* cmocka.h needs setjmp.h, stdarg.h and stddef.h first */
/* clang-format off */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <cmocka.h>
/* clang-format on */

#include "common.h"
#include "log.h"

#define TS_US 1772366400123456ull /* 2026-03-01T12:00:00.123456Z */

/* ------------------------------------------------------------------ a strict logfmt reader */

struct kv {
    char key[80];
    char val[8192];
    size_t vlen;
    bool quoted;
};

static size_t put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    out[0] = (char)(0xe0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
}

/* Parse one logfmt line (must end with exactly one '\n'). Returns the number of pairs, or -1
 * if the line is malformed. Quoted values are unescaped. */
static int parse_logfmt(const char *line, struct kv *kv, int max)
{
    const char *p = line;
    int n = 0;

    if (strchr(line, '\n') != line + strlen(line) - 1)
        return -1;
    while (*p != '\n') {
        struct kv *e = &kv[n];
        size_t kl = 0;

        if (n == max)
            return -1;
        if (n > 0) {
            if (*p != ' ')
                return -1;
            p++;
        }
        while (*p != '=' && *p != ' ' && *p != '\n' && *p != '"') {
            if (kl + 1 >= sizeof(e->key))
                return -1;
            e->key[kl++] = *p++;
        }
        e->key[kl] = '\0';
        if (kl == 0 || *p != '=')
            return -1;
        p++;
        e->vlen = 0;
        e->quoted = *p == '"';
        if (!e->quoted) {
            while (*p != ' ' && *p != '\n') {
                if (*p == '"' || *p == '=' || (unsigned char)*p < 0x20)
                    return -1;
                e->val[e->vlen++] = *p++;
            }
        } else {
            p++;
            while (*p != '"') {
                if (*p == '\n' || *p == '\0' || (unsigned char)*p < 0x20)
                    return -1;
                if (*p == '\\') {
                    unsigned v;
                    p++;
                    switch (*p) {
                    case '"':
                    case '\\':
                        e->val[e->vlen++] = *p++;
                        break;
                    case 'n':
                        e->val[e->vlen++] = '\n', p++;
                        break;
                    case 'r':
                        e->val[e->vlen++] = '\r', p++;
                        break;
                    case 't':
                        e->val[e->vlen++] = '\t', p++;
                        break;
                    case 'x':
                        if (sscanf(p + 1, "%2x", &v) != 1)
                            return -1;
                        e->val[e->vlen++] = (char)v;
                        p += 3;
                        break;
                    case 'u':
                        if (sscanf(p + 1, "%4x", &v) != 1)
                            return -1;
                        e->vlen += put_utf8(e->val + e->vlen, v);
                        p += 5;
                        break;
                    default:
                        return -1;
                    }
                } else {
                    e->val[e->vlen++] = *p++;
                }
                if (e->vlen > sizeof(e->val) - 4)
                    return -1;
            }
            p++;
        }
        e->val[e->vlen] = '\0';
        n++;
    }
    return n;
}

static const struct kv *find(const struct kv *kv, int n, const char *key)
{
    int i;

    for (i = 0; i < n; i++) {
        if (strcmp(kv[i].key, key) == 0)
            return &kv[i];
    }
    return NULL;
}

static struct kv kvs[64];
static char line[16384];

/* ------------------------------------------------------------------ formatting */

static void test_logfmt_basic(void **state)
{
    (void)state;
    const struct dp_log_field f[] = {
            DP_LS("src.addr", "10.0.0.1:1234"),
            DP_LU("bytes_sent", 18446744073709551615ull),
            DP_LI("delta", -5),
            DP_LB("ok", 1),
            DP_LF("ratio", 0.25),
            DP_LERR(-ECONNREFUSED),
            DP_LS("empty", ""),
            DP_LS("nil", NULL),
    };
    unsigned len = dp_log_format_line(line, sizeof(line), DP_LOG_LOGFMT, TS_US, DP_LOG_INFO,
                                      "hbone", "connection complete", f, DP_ARRAY_SIZE(f));

    assert_int_equal(len, strlen(line));
    assert_string_equal(line, "ts=2026-03-01T12:00:00.123456Z level=info scope=hbone "
                              "msg=\"connection complete\" src.addr=10.0.0.1:1234 "
                              "bytes_sent=18446744073709551615 delta=-5 ok=true ratio=0.25 "
                              "error=\"Connection refused\" empty=\"\" nil=null\n");
    assert_int_equal(parse_logfmt(line, kvs, 64), 4 + (int)DP_ARRAY_SIZE(f));
}

static void test_json_basic(void **state)
{
    (void)state;
    const struct dp_log_field f[] = {
            DP_LS("src.addr", "10.0.0.1:1234"),
            DP_LU("bytes", 42),
            DP_LI("d", -1),
            DP_LB("ok", 0),
            DP_LF("nan", 0.0 / 0.0),
            DP_LERR(ENOENT),
            DP_LS("nil", NULL),
    };
    json_error_t err;
    json_t *o;

    dp_log_format_line(line, sizeof(line), DP_LOG_JSON, TS_US, DP_LOG_WARN, "kube", "watch", f,
                       DP_ARRAY_SIZE(f));
    assert_int_equal(line[strlen(line) - 1], '\n');
    o = json_loads(line, 0, &err);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "ts")), "2026-03-01T12:00:00.123456Z");
    assert_string_equal(json_string_value(json_object_get(o, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(o, "scope")), "kube");
    assert_string_equal(json_string_value(json_object_get(o, "msg")), "watch");
    assert_string_equal(json_string_value(json_object_get(o, "src.addr")), "10.0.0.1:1234");
    assert_int_equal(json_integer_value(json_object_get(o, "bytes")), 42);
    assert_int_equal(json_integer_value(json_object_get(o, "d")), -1);
    assert_true(json_is_false(json_object_get(o, "ok")));
    assert_true(json_is_null(json_object_get(o, "nan")));
    assert_true(json_is_null(json_object_get(o, "nil")));
    assert_string_equal(json_string_value(json_object_get(o, "error")),
                        "No such file or directory");
    assert_int_equal(json_object_size(o), 11);
    json_decref(o);
}

static const char *const hostile[] = {
        "two\nlines level=error msg=forged",
        "quote\" injected=\"yes",
        "a=b",
        "back\\slash\\",
        "\r\t\x01\x1b[31mred\x7f",
        "bad utf8 \xff\xfe \xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82",
        "unicode é ✓ 😀 and separators \xe2\x80\xa8 \xe2\x80\xa9 \xc2\x85",
        " leading and trailing ",
        "}{\"json\":\"forge\"}",
        "",
};

/* logfmt: one line, exactly the expected keys, and the value decodes back to the input. */
static void test_logfmt_hostile(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < DP_ARRAY_SIZE(hostile); i++) {
        const struct dp_log_field f[] = {DP_LS("v", hostile[i]), DP_LS("after", "x")};
        int n;

        dp_log_format_line(line, sizeof(line), DP_LOG_LOGFMT, TS_US, DP_LOG_INFO, hostile[i],
                           hostile[i], f, 2);
        n = parse_logfmt(line, kvs, 64);
        if (n != 6)
            fail_msg("value %zu: bad line (%d pairs): %s", i, n, line);
        assert_string_equal(kvs[0].key, "ts");
        assert_string_equal(kvs[1].key, "level");
        assert_string_equal(kvs[2].key, "scope");
        assert_string_equal(kvs[3].key, "msg");
        assert_string_equal(kvs[4].key, "v");
        assert_string_equal(kvs[5].key, "after");
        assert_string_equal(kvs[5].val, "x");
        assert_int_equal(kvs[4].vlen, strlen(hostile[i]));
        assert_memory_equal(kvs[4].val, hostile[i], kvs[4].vlen);
        assert_memory_equal(kvs[3].val, hostile[i], kvs[4].vlen);
        assert_memory_equal(kvs[2].val, hostile[i], kvs[4].vlen);
        /* no raw control bytes or line separators survive */
        assert_null(strstr(line, "\xe2\x80\xa8"));
        assert_null(strstr(line, "\xc2\x85"));
        assert_null(strchr(line, '\r'));
        assert_null(strchr(line, '\x1b'));
    }
}

static bool valid_utf8(const unsigned char *s, size_t n)
{
    json_t *j = json_stringn((const char *)s, n);
    bool ok = j != NULL;
    json_decref(j);
    return ok;
}

static void test_json_hostile(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < DP_ARRAY_SIZE(hostile); i++) {
        const struct dp_log_field f[] = {DP_LS("v", hostile[i]), DP_LS("after", "x")};
        json_error_t err;
        json_t *o;
        const char *v;

        dp_log_format_line(line, sizeof(line), DP_LOG_JSON, TS_US, DP_LOG_INFO, hostile[i],
                           hostile[i], f, 2);
        assert_ptr_equal(strchr(line, '\n'), line + strlen(line) - 1);
        o = json_loads(line, 0, &err);
        if (o == NULL)
            fail_msg("value %zu: invalid JSON (%s): %s", i, err.text, line);
        assert_int_equal(json_object_size(o), 6);
        v = json_string_value(json_object_get(o, "v"));
        assert_non_null(v);
        if (valid_utf8((const unsigned char *)hostile[i], strlen(hostile[i])))
            assert_string_equal(v, hostile[i]);
        else
            assert_non_null(strstr(v, "\xef\xbf\xbd")); /* U+FFFD */
        assert_string_equal(json_string_value(json_object_get(o, "msg")), v);
        assert_string_equal(json_string_value(json_object_get(o, "scope")), v);
        assert_string_equal(json_string_value(json_object_get(o, "after")), "x");
        assert_null(strstr(line, "\xe2\x80\xa8"));
        json_decref(o);
    }
}

/* Random bytes in both formats: always one well-formed line; logfmt round-trips exactly. */
static void test_random_values(void **state)
{
    unsigned seed = 99, i, j;
    char v[96];

    (void)state;
    for (i = 0; i < 5000; i++) {
        size_t n = 1 + (seed >> 16) % (sizeof(v) - 1);
        json_error_t err;
        json_t *o;

        for (j = 0; j < n; j++) {
            seed = seed * 1103515245u + 12345u;
            v[j] = (char)((seed >> 16) & 0xff);
            if (v[j] == 0)
                v[j] = 1;
        }
        v[n] = '\0';
        const struct dp_log_field f[] = {DP_LS("v", v)};
        dp_log_format_line(line, sizeof(line), DP_LOG_LOGFMT, TS_US, DP_LOG_INFO, "s", "m", f, 1);
        assert_int_equal(parse_logfmt(line, kvs, 64), 5);
        assert_int_equal(kvs[4].vlen, n);
        assert_memory_equal(kvs[4].val, v, n);
        dp_log_format_line(line, sizeof(line), DP_LOG_JSON, TS_US, DP_LOG_INFO, "s", "m", f, 1);
        o = json_loads(line, 0, &err);
        if (o == NULL)
            fail_msg("invalid JSON (%s): %s", err.text, line);
        json_decref(o);
    }
}

static void test_redaction_and_keys(void **state)
{
    (void)state;
    const struct dp_log_field f[] = {
            DP_LS("api_key", "s3cr3t-1"),
            DP_LS("Authorization", "Bearer s3cr3t-2"),
            DP_LS("token", "s3cr3t-3"),
            DP_LU("private_key_bits", 31337),
            DP_LS("client.Password", "s3cr3t-4"),
            DP_LS("msg", "not the message"),
            DP_LS("a b=\"c\n", "v"),
            DP_LS("", "empty key"),
    };
    int n, fmt;

    for (fmt = 0; fmt < 2; fmt++) {
        dp_log_format_line(line, sizeof(line), (enum dp_log_format)fmt, TS_US, DP_LOG_INFO, "tls",
                           "loaded", f, DP_ARRAY_SIZE(f));
        assert_null(strstr(line, "s3cr3t"));
        assert_null(strstr(line, "31337"));
        assert_non_null(strstr(line, "[redacted]"));
        if (fmt == DP_LOG_LOGFMT) {
            n = parse_logfmt(line, kvs, 64);
            assert_int_equal(n, 12);
            assert_string_equal(find(kvs, n, "api_key")->val, "[redacted]");
            assert_string_equal(find(kvs, n, "msg")->val, "loaded");
            assert_string_equal(find(kvs, n, "field.msg")->val, "not the message");
            assert_non_null(find(kvs, n, "a_b__c_"));
            assert_non_null(find(kvs, n, "_"));
        } else {
            json_error_t err;
            json_t *o = json_loads(line, 0, &err);
            assert_non_null(o);
            assert_string_equal(json_string_value(json_object_get(o, "Authorization")),
                                "[redacted]");
            assert_string_equal(json_string_value(json_object_get(o, "msg")), "loaded");
            assert_string_equal(json_string_value(json_object_get(o, "field.msg")),
                                "not the message");
            json_decref(o);
        }
    }
}

static void test_truncation(void **state)
{
    char big[20000];
    struct dp_log_field f[200];
    unsigned i, len;
    int fmt;

    (void)state;
    memset(big, '"', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    for (i = 0; i < DP_ARRAY_SIZE(f); i++)
        f[i] = DP_LS("field", "0123456789");
    for (fmt = 0; fmt < 2; fmt++) {
        const struct dp_log_field one[] = {DP_LS("before", "x"), DP_LS("big", big),
                                           DP_LS("after", "y")};
        char small[1024];

        /* one huge value: cut with "...", still one well-formed line */
        len = dp_log_format_line(small, sizeof(small), (enum dp_log_format)fmt, TS_US, DP_LOG_INFO,
                                 "s", "m", one, 3);
        assert_true(len < sizeof(small));
        assert_int_equal(small[len - 1], '\n');
        assert_non_null(strstr(small, "truncated"));
        if (fmt == DP_LOG_JSON) {
            json_t *o = json_loads(small, 0, NULL);
            assert_non_null(o);
            assert_true(json_is_true(json_object_get(o, "truncated")));
            json_decref(o);
        } else {
            int n = parse_logfmt(small, kvs, 64);
            assert_true(n >= 6);
            assert_string_equal(find(kvs, n, "truncated")->val, "true");
        }
        /* many fields: cut at a field boundary */
        len = dp_log_format_line(small, sizeof(small), (enum dp_log_format)fmt, TS_US, DP_LOG_INFO,
                                 "s", "m", f, DP_ARRAY_SIZE(f));
        assert_true(len < sizeof(small));
        if (fmt == DP_LOG_JSON) {
            json_t *o = json_loads(small, 0, NULL);
            assert_non_null(o);
            assert_true(json_is_true(json_object_get(o, "truncated")));
            json_decref(o);
        } else {
            int n = parse_logfmt(small, kvs, 64);
            assert_true(n > 10);
            assert_string_equal(kvs[n - 1].key, "truncated");
            assert_string_equal(kvs[n - 2].val, "0123456789");
        }
        /* tiny buffers: never overflow, always NUL-terminated */
        for (i = 0; i < 100; i++) {
            char tiny[100];
            memset(tiny, 'Z', sizeof(tiny));
            len = dp_log_format_line(tiny, i, (enum dp_log_format)fmt, TS_US, DP_LOG_INFO, "scope",
                                     big, one, 3);
            if (i > 0) {
                assert_true(len < i);
                assert_int_equal(tiny[len], '\0');
            }
            if (i < sizeof(tiny))
                assert_int_equal(tiny[i], 'Z');
        }
    }
}

/* Every buffer size from the smallest well-formed one up: the line is always one valid
 * logfmt line / JSON object, whichever value or fixed field the cut lands in. */
static void test_truncation_sweep(void **state)
{
    static const char *const vals[] = {"",
                                       "plain",
                                       "two words",
                                       "K\xc4"
                                       "D\xc4\xf9\xf9",
                                       "\"\"\"\"\"\"\"\"\"\"\"\"",
                                       "\n\n\n\n\n\n\n\n\n"};
    char buf[700];
    unsigned sz, v, len;
    int fmt;

    (void)state;
    for (v = 0; v < DP_ARRAY_SIZE(vals); v++) {
        const struct dp_log_field f[] = {DP_LS("v", vals[v]), DP_LS("", "k"),
                                         DP_LS("token", vals[v]), DP_LU("n", 5),
                                         DP_LS("w", vals[v])};
        for (fmt = 0; fmt < 2; fmt++) {
            for (sz = 97; sz <= sizeof(buf); sz++) {
                len = dp_log_format_line(buf, sz, (enum dp_log_format)fmt, TS_US, DP_LOG_WARN,
                                         vals[v], vals[v], f, DP_ARRAY_SIZE(f));
                assert_true(len < sz);
                if (fmt == DP_LOG_JSON) {
                    json_error_t err;
                    json_t *o = json_loadb(buf, len, 0, &err);
                    if (o == NULL)
                        fail_msg("size %u value %u: %s: %s", sz, v, err.text, buf);
                    json_decref(o);
                } else if (parse_logfmt(buf, kvs, 64) < 4) {
                    fail_msg("size %u value %u: bad logfmt: %s", sz, v, buf);
                }
            }
        }
    }
}

/* ------------------------------------------------------------------ levels */

static int evaluated;
static const char *side_effect(void)
{
    evaluated++;
    return "x";
}

static void test_level_spec(void **state)
{
    (void)state;
    assert_int_equal(dp_log_set_level_spec("warn, hbone=debug,kube.watch=TRACE,noisy=off"), 0);
    assert_true(dp_log_enabled(DP_LOG_WARN, "other"));
    assert_false(dp_log_enabled(DP_LOG_INFO, "other"));
    assert_true(dp_log_enabled(DP_LOG_DEBUG, "hbone"));
    assert_true(dp_log_enabled(DP_LOG_DEBUG, "hbone.pool"));
    assert_true(dp_log_enabled(DP_LOG_DEBUG, "hbone::pool"));
    assert_false(dp_log_enabled(DP_LOG_DEBUG, "hbonex"));
    assert_false(dp_log_enabled(DP_LOG_TRACE, "hbone"));
    assert_true(dp_log_enabled(DP_LOG_TRACE, "kube.watch"));
    assert_false(dp_log_enabled(DP_LOG_DEBUG, "kube"));
    assert_false(dp_log_enabled(DP_LOG_ERROR, "noisy"));
    /* bad specs change nothing */
    assert_int_equal(dp_log_set_level_spec("info,hbone=loud"), -EINVAL);
    assert_int_equal(dp_log_set_level_spec("verbose"), -EINVAL);
    assert_int_equal(dp_log_set_level_spec("a b=info"), -EINVAL);
    assert_int_equal(dp_log_set_level_spec("=info"), -EINVAL);
    assert_true(dp_log_enabled(DP_LOG_DEBUG, "hbone"));
    assert_false(dp_log_enabled(DP_LOG_INFO, "other"));
    /* the macro does not evaluate arguments when disabled */
    evaluated = 0;
    dp_debug("other", "m", DP_LS("x", side_effect()));
    assert_int_equal(evaluated, 0);
    assert_int_equal(dp_log_set_level_spec("error"), 0);
    assert_string_equal(dp_log_level_str(DP_LOG_TRACE), "trace");
    assert_int_equal(dp_log_set_level_spec("info"), 0);
}

static void test_init_from_env(void **state)
{
    int p[2];
    char out[4096];
    ssize_t n;

    (void)state;
    assert_int_equal(pipe2(p, O_NONBLOCK), 0);
    dp_log_set_fd(p[1]);
    unsetenv("LOG_LEVEL");
    setenv("RUST_LOG", "error,ztunnel::proxy=debug", 1);
    setenv("LOG_FORMAT", "json", 1);
    assert_int_equal(dp_log_init_from_env(), 0);
    assert_true(dp_log_enabled(DP_LOG_DEBUG, "ztunnel::proxy"));
    assert_false(dp_log_enabled(DP_LOG_WARN, "x"));
    setenv("LOG_LEVEL", "debug", 1); /* LOG_LEVEL wins over RUST_LOG */
    assert_int_equal(dp_log_init_from_env(), 0);
    assert_true(dp_log_enabled(DP_LOG_DEBUG, "x"));
    dp_info("env", "hello", DP_LS("k", "v"));
    n = read(p[0], out, sizeof(out) - 1);
    assert_true(n > 0);
    out[n] = '\0';
    assert_int_equal(out[0], '{');
    setenv("LOG_FORMAT", "xml", 1);
    assert_int_equal(dp_log_init_from_env(), -EINVAL);
    unsetenv("LOG_FORMAT");
    unsetenv("LOG_LEVEL");
    unsetenv("RUST_LOG");
    dp_log_set_format(DP_LOG_LOGFMT);
    assert_int_equal(dp_log_set_level_spec("info"), 0);
    dp_log_set_fd(2);
    close(p[0]);
    close(p[1]);
}

/* ------------------------------------------------------------------ threads */

#define EMIT_THREADS 4
#define EMIT_LINES   500

static void *emitter(void *arg)
{
    int id = (int)(intptr_t)arg, i;
    char pad[300];

    memset(pad, 'a' + id, sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    for (i = 0; i < EMIT_LINES; i++)
        dp_info("thr", "line", DP_LI("t", id), DP_LI("i", i), DP_LS("pad", pad));
    return NULL;
}

struct reader {
    int fd;
    char *buf;
    size_t len, cap;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    ssize_t n;

    while ((n = read(r->fd, r->buf + r->len, r->cap - r->len)) > 0)
        r->len += (size_t)n;
    return NULL;
}

/* Each line goes out in one write(2): lines from concurrent threads never interleave. */
static void test_threads_whole_lines(void **state)
{
    struct reader rd = {0};
    pthread_t th[EMIT_THREADS], rt;
    int p[2], i, seen[EMIT_THREADS] = {0};
    char *line_start, *nl;

    (void)state;
    assert_int_equal(pipe(p), 0);
    rd.fd = p[0];
    rd.cap = 4u << 20;
    rd.buf = malloc(rd.cap);
    assert_non_null(rd.buf);
    assert_int_equal(pthread_create(&rt, NULL, reader_main, &rd), 0);
    dp_log_set_fd(p[1]);
    for (i = 0; i < EMIT_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, emitter, (void *)(intptr_t)i), 0);
    for (i = 0; i < EMIT_THREADS; i++)
        pthread_join(th[i], NULL);
    dp_log_set_fd(2);
    close(p[1]);
    pthread_join(rt, NULL);
    close(p[0]);
    for (line_start = rd.buf; (size_t)(line_start - rd.buf) < rd.len; line_start = nl + 1) {
        const struct kv *t, *ix, *pad;
        int n, id;

        nl = memchr(line_start, '\n', rd.len - (size_t)(line_start - rd.buf));
        assert_non_null(nl);
        memcpy(line, line_start, (size_t)(nl - line_start) + 1);
        line[nl - line_start + 1] = '\0';
        n = parse_logfmt(line, kvs, 64);
        assert_int_equal(n, 7);
        t = find(kvs, n, "t");
        ix = find(kvs, n, "i");
        pad = find(kvs, n, "pad");
        assert_non_null(t);
        assert_non_null(ix);
        assert_non_null(pad);
        id = atoi(t->val);
        assert_true(id >= 0 && id < EMIT_THREADS);
        assert_int_equal(atoi(ix->val), seen[id]); /* in order per thread, none lost */
        assert_int_equal(pad->vlen, 299);
        assert_int_equal(pad->val[0], 'a' + id);
        assert_int_equal(pad->val[298], 'a' + id);
        seen[id]++;
    }
    for (i = 0; i < EMIT_THREADS; i++)
        assert_int_equal(seen[i], EMIT_LINES);
    free(rd.buf);
}

/* ------------------------------------------------------------------ rate limiting */

static uint64_t rl_now;
static uint64_t rl_clock_fn(void)
{
    return rl_now;
}

static int count_lines(int fd, const char *needle, unsigned long long *ret_supp)
{
    static char all[1 << 16];
    ssize_t n = read(fd, all, sizeof(all) - 1);
    int lines = 0;
    char *p, *s;

    if (n <= 0)
        return 0;
    all[n] = '\0';
    for (p = all; (s = strchr(p, '\n')) != NULL; p = s + 1) {
        *s = '\0';
        if (strstr(p, needle) != NULL) {
            char *q = strstr(p, "suppressed=");
            lines++;
            if (q != NULL && ret_supp != NULL)
                *ret_supp = strtoull(q + 11, NULL, 10);
        }
    }
    return lines;
}

static void test_ratelimit(void **state)
{
    unsigned long long supp = 0;
    int p[2], i;

    (void)state;
    assert_int_equal(pipe2(p, O_NONBLOCK), 0);
    dp_log_set_fd(p[1]);
    rl_now = 5000000;
    dp_log_set_ratelimit_clock(rl_clock_fn);
    for (i = 0; i < 25; i++)
        dp_warn("rl", "same warning", DP_LI("i", i));
    dp_warn("rl", "other warning");
    dp_info("rl", "same warning"); /* info is never rate-limited */
    assert_int_equal(count_lines(p[0], "same warning", &supp), 11);
    assert_int_equal(supp, 0);
    rl_now += 999;
    dp_warn("rl", "same warning");
    assert_int_equal(count_lines(p[0], "same warning", NULL), 0);
    rl_now += 1;
    dp_warn("rl", "same warning");
    assert_int_equal(count_lines(p[0], "same warning", &supp), 1);
    assert_int_equal(supp, 16);
    /* a burst whose tail is never followed by another line: flushed explicitly */
    for (i = 0; i < 14; i++)
        dp_warn("rl", "same warning");
    supp = 0;
    assert_int_equal(count_lines(p[0], "same warning", &supp), 9);
    assert_int_equal(supp, 0);
    dp_log_flush_suppressed();
    assert_int_equal(count_lines(p[0], "same warning", &supp), 1);
    assert_int_equal(supp, 5);
    dp_log_flush_suppressed();
    assert_int_equal(count_lines(p[0], "same warning", NULL), 0);
    dp_log_set_ratelimit_clock(NULL);
    dp_log_set_fd(2);
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_logfmt_basic),        cmocka_unit_test(test_json_basic),
            cmocka_unit_test(test_logfmt_hostile),      cmocka_unit_test(test_json_hostile),
            cmocka_unit_test(test_random_values),       cmocka_unit_test(test_redaction_and_keys),
            cmocka_unit_test(test_truncation),          cmocka_unit_test(test_truncation_sweep),
            cmocka_unit_test(test_level_spec),          cmocka_unit_test(test_init_from_env),
            cmocka_unit_test(test_threads_whole_lines), cmocka_unit_test(test_ratelimit),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
