/* Unit tests for dataplane/http: the request parser (table-driven: every case is also fed split
 * at every byte and byte by byte), limits, pipelining, garbage, and the response helpers. */
/* cmocka.h needs setjmp.h, stdarg.h and stddef.h first */
/* clang-format off */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
/* clang-format on */

#include "buf.h"
#include "common.h"
#include "http.h"

struct pcase {
    const char *name;
    const char *in;
    int want; /* DP_HTTP_DONE, DP_HTTP_AGAIN or an error code */
    enum dp_http_method method;
    const char *path, *query, *body;
    int minor;
    int keep_alive; /* -1 = don't check */
    unsigned n_headers;
};

#define GOOD(n, i, m, p, q, b, mi, ka, nh)                                                         \
    {                                                                                              \
        n, i, DP_HTTP_DONE, m, p, q, b, mi, ka, nh                                                 \
    }
#define BAD(n, i, e)                                                                               \
    {                                                                                              \
        n, i, e, 0, NULL, NULL, NULL, 0, -1, 0                                                     \
    }

static const struct pcase cases[] = {
        GOOD("simple get", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", DP_HTTP_M_GET, "/", "", "", 1, 1,
             1),
        GOOD("query", "GET /metrics?x=1&y HTTP/1.1\r\nHost: a\r\n\r\n", DP_HTTP_M_GET, "/metrics",
             "x=1&y", "", 1, 1, 1),
        GOOD("http/1.0 no host", "GET /a HTTP/1.0\r\n\r\n", DP_HTTP_M_GET, "/a", "", "", 0, 0, 0),
        GOOD("http/1.0 keep-alive", "GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
             DP_HTTP_M_GET, "/a", "", "", 0, 1, 1),
        GOOD("connection close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n",
             DP_HTTP_M_GET, "/", "", "", 1, 0, 2),
        GOOD("http/1.9 as 1.1", "HEAD /x HTTP/1.9\r\nhost: a\r\n\r\n", DP_HTTP_M_HEAD, "/x", "", "",
             1, 1, 1),
        GOOD("leading crlf", "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", DP_HTTP_M_GET, "/", "",
             "", 1, 1, 1),
        GOOD("content-length body",
             "POST /cni HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", DP_HTTP_M_POST,
             "/cni", "", "hello", 1, 1, 2),
        GOOD("content-length zero", "PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
             DP_HTTP_M_PUT, "/x", "", "", 1, 1, 2),
        GOOD("chunked body",
             "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
             "5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n",
             DP_HTTP_M_POST, "/c", "", "hello 0123456789", 1, 1, 2),
        GOOD("chunked uppercase",
             "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"
             "0\r\n\r\n",
             DP_HTTP_M_POST, "/c", "", "", 1, 1, 2),
        GOOD("ows trimmed", "GET / HTTP/1.1\r\nHost: \t a b \t\r\nX-Empty:\r\n\r\n", DP_HTTP_M_GET,
             "/", "", "", 1, 1, 2),
        GOOD("other method", "BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n", DP_HTTP_M_OTHER, "/pot", "",
             "", 1, 1, 1),
        GOOD("absolute form", "GET http://h:80/p/q?z HTTP/1.1\r\nHost: h\r\n\r\n", DP_HTTP_M_GET,
             "/p/q", "z", "", 1, 1, 1),
        GOOD("absolute form no path", "GET http://h?z HTTP/1.1\r\nHost: h\r\n\r\n", DP_HTTP_M_GET,
             "/", "z", "", 1, 1, 1),
        GOOD("asterisk", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", DP_HTTP_M_OPTIONS, "*", "", "", 1,
             1, 1),
        GOOD("authority form", "CONNECT 10.0.0.1:80 HTTP/1.1\r\nHost: h\r\n\r\n", DP_HTTP_M_CONNECT,
             "10.0.0.1:80", "", "", 1, 1, 1),
        GOOD("obs-text value", "GET / HTTP/1.1\r\nHost: a\r\nX: \xc3\xa9\xff\r\n\r\n",
             DP_HTTP_M_GET, "/", "", "", 1, 1, 2),

        BAD("bare lf", "GET / HTTP/1.1\nHost: a\n\n", DP_HTTP_E_SYNTAX),
        BAD("bare cr", "GET / HTTP/1.1\rHost: a\r\n\r\n", DP_HTTP_E_SYNTAX),
        BAD("no version", "GET /\r\n\r\n", DP_HTTP_E_SYNTAX),
        BAD("double space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", DP_HTTP_E_SYNTAX),
        BAD("trailing space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", DP_HTTP_E_SYNTAX),
        BAD("lowercase version", "GET / http/1.1\r\nHost: a\r\n\r\n", DP_HTTP_E_SYNTAX),
        BAD("http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", DP_HTTP_E_VERSION),
        BAD("method with slash", "G/T / HTTP/1.1\r\nHost: a\r\n\r\n", DP_HTTP_E_SYNTAX),
        BAD("tab in target", "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", DP_HTTP_E_SYNTAX),
        BAD("utf8 in target", "GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", DP_HTTP_E_SYNTAX),
        BAD("no host 1.1", "GET / HTTP/1.1\r\n\r\n", DP_HTTP_E_SYNTAX),
        BAD("two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", DP_HTTP_E_SYNTAX),
        BAD("space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", DP_HTTP_E_SYNTAX),
        BAD("obs fold", "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n", DP_HTTP_E_SYNTAX),
        BAD("no colon", "GET / HTTP/1.1\r\nHost: a\r\nXYZ\r\n\r\n", DP_HTTP_E_SYNTAX),
        BAD("empty name", "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", DP_HTTP_E_SYNTAX),
        BAD("ctl in value",
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01"
            "b\r\n\r\n",
            DP_HTTP_E_SYNTAX),
        BAD("del in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", DP_HTTP_E_SYNTAX),
        BAD("duplicate content-length",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
            DP_HTTP_E_SYNTAX),
        BAD("conflicting content-length",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy",
            DP_HTTP_E_SYNTAX),
        BAD("content-length list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1,1\r\n\r\nx",
            DP_HTTP_E_SYNTAX),
        BAD("negative content-length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            DP_HTTP_E_SYNTAX),
        BAD("plus content-length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx",
            DP_HTTP_E_SYNTAX),
        BAD("empty content-length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
            DP_HTTP_E_SYNTAX),
        BAD("huge content-length",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            DP_HTTP_E_BODY_TOO_LARGE),
        BAD("te and cl",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            "0\r\n\r\n",
            DP_HTTP_E_SYNTAX),
        BAD("te gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
            DP_HTTP_E_NOT_IMPLEMENTED),
        BAD("te gzip chunked",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            DP_HTTP_E_NOT_IMPLEMENTED),
        BAD("te twice",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
            "chunked\r\n\r\n",
            DP_HTTP_E_SYNTAX),
        BAD("te in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            DP_HTTP_E_SYNTAX),
        BAD("chunk size not hex",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            DP_HTTP_E_SYNTAX),
        BAD("chunk size negative",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
            DP_HTTP_E_SYNTAX),
        BAD("chunk size 0x",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x10\r\n",
            DP_HTTP_E_SYNTAX),
        BAD("chunk size empty",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
            DP_HTTP_E_SYNTAX),
        BAD("chunk size 17 digits",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            "10000000000000000\r\n",
            DP_HTTP_E_SYNTAX),
        BAD("chunk size over limit",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\n",
            DP_HTTP_E_BODY_TOO_LARGE),
        BAD("chunk data no crlf",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
            DP_HTTP_E_SYNTAX),
        BAD("chunk size bare lf",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\nab\r\n0\r\n\r\n",
            DP_HTTP_E_SYNTAX),
        BAD("chunk ext ctl",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2;\x01\r\nab\r\n",
            DP_HTTP_E_SYNTAX),
        BAD("trailer bare lf",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\n\r\n",
            DP_HTTP_E_SYNTAX),
        BAD("too many empty lines", "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            DP_HTTP_E_SYNTAX),
        BAD("nul in request line", "GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n", DP_HTTP_E_SYNTAX),
};

/* Feed in pieces of `step` bytes (0 = all at once). Returns the final result; on DONE,
 * *consumed is the total used. */
static int feed_steps(struct dp_http_parser *p, const char *in, size_t len, size_t step,
                      size_t *consumed)
{
    size_t off = 0;
    int r = DP_HTTP_AGAIN;
    if (step == 0)
        step = len ? len : 1;
    while (off < len) {
        size_t n = len - off < step ? len - off : step;
        size_t used = 0;
        const char *desc = NULL;
        r = dp_http_parser_feed(p, in + off, n, &used, &desc);
        if (r < 0) {
            assert_non_null(desc);
            return r;
        }
        off += used;
        if (r == DP_HTTP_DONE)
            break;
        assert_int_equal(used, n);
    }
    *consumed = off;
    return r;
}

static size_t case_len(const struct pcase *c)
{
    /* the "nul" case has an embedded NUL: measure up to the final CRLFCRLF */
    if (strcmp(c->name, "nul in request line") == 0)
        return sizeof("GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n") - 1;
    return strlen(c->in);
}

static void check_case(const struct pcase *c, size_t step)
{
    struct dp_http_parser p;
    size_t len = case_len(c), used = 0;
    assert_int_equal(dp_http_parser_init(&p, NULL), 0);
    int r = feed_steps(&p, c->in, len, step, &used);
    if (r != c->want)
        fail_msg("case '%s' step %zu: got %d (%s: %s), want %d", c->name, step, r,
                 dp_http_error_str(r), p.err_desc ? p.err_desc : "", c->want);
    if (r == DP_HTTP_DONE) {
        const struct dp_http_request *q = &p.req;
        assert_int_equal(used, len);
        assert_int_equal(q->method, c->method);
        assert_string_equal(q->path, c->path);
        assert_int_equal(strlen(q->path), q->path_len);
        assert_string_equal(q->query, c->query);
        assert_int_equal(q->body_len, strlen(c->body));
        assert_memory_equal(q->body, c->body, q->body_len);
        assert_int_equal(q->version_minor, c->minor);
        if (c->keep_alive >= 0)
            assert_int_equal(q->keep_alive, c->keep_alive);
        assert_int_equal(q->n_headers, c->n_headers);
    }
    dp_http_parser_done(&p);
}

static void test_table_whole(void **state)
{
    (void)state;
    for (size_t i = 0; i < DP_ARRAY_SIZE(cases); i++)
        check_case(&cases[i], 0);
}

static void test_table_byte_by_byte(void **state)
{
    (void)state;
    for (size_t i = 0; i < DP_ARRAY_SIZE(cases); i++) {
        check_case(&cases[i], 1);
        check_case(&cases[i], 3);
        check_case(&cases[i], 7);
    }
}

/* Every proper prefix of a good request is AGAIN (never DONE, never an error), and the rest
 * completes it. */
static void test_truncated_at_every_byte(void **state)
{
    (void)state;
    for (size_t i = 0; i < DP_ARRAY_SIZE(cases); i++) {
        const struct pcase *c = &cases[i];
        if (c->want != DP_HTTP_DONE)
            continue;
        size_t len = case_len(c);
        for (size_t cut = 0; cut < len; cut++) {
            struct dp_http_parser p;
            size_t used = 0;
            assert_int_equal(dp_http_parser_init(&p, NULL), 0);
            int r = dp_http_parser_feed(&p, c->in, cut, &used, NULL);
            if (r != DP_HTTP_AGAIN)
                fail_msg("case '%s' cut at %zu: got %d, want AGAIN", c->name, cut, r);
            assert_int_equal(used, cut);
            r = dp_http_parser_feed(&p, c->in + cut, len - cut, &used, NULL);
            if (r != DP_HTTP_DONE)
                fail_msg("case '%s' rest after %zu: got %d (%s)", c->name, cut, r,
                         p.err_desc ? p.err_desc : "");
            assert_int_equal(used, len - cut);
            assert_string_equal(p.req.path, c->path);
            dp_http_parser_done(&p);
        }
    }
}

static void test_fields(void **state)
{
    (void)state;
    struct dp_http_parser p;
    const char *in = "GET /p HTTP/1.1\r\nHost: example\r\nX-A:  v1 \r\nexpect: 100-Continue\r\n"
                     "Content-Length: 2\r\n\r\nab";
    size_t used;
    assert_int_equal(dp_http_parser_init(&p, NULL), 0);
    assert_int_equal(dp_http_parser_feed(&p, in, 60, &used, NULL), DP_HTTP_AGAIN);
    assert_int_equal(dp_http_parser_feed(&p, in + 60, strlen(in) - 60, &used, NULL), DP_HTTP_DONE);
    assert_string_equal(p.req.host, "example");
    assert_true(p.req.expect_continue);
    const struct dp_http_header *h = dp_http_request_header(&p.req, "x-a");
    assert_non_null(h);
    assert_string_equal(h->name, "X-A");
    assert_string_equal(h->value, "v1");
    assert_int_equal(h->value_len, 2);
    assert_null(dp_http_request_header(&p.req, "x-b"));
    assert_string_equal(p.req.method_str, "GET");
    assert_string_equal(p.req.target, "/p");
    assert_string_equal(p.req.body, "ab");
    /* DONE is sticky and consumes nothing more */
    assert_int_equal(dp_http_parser_feed(&p, "xyz", 3, &used, NULL), DP_HTTP_DONE);
    assert_int_equal(used, 0);
    dp_http_parser_done(&p);
}

static void test_head_done_before_body(void **state)
{
    (void)state;
    struct dp_http_parser p;
    const char *in =
            "POST /p HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
    size_t used;
    assert_int_equal(dp_http_parser_init(&p, NULL), 0);
    assert_false(dp_http_parser_head_done(&p));
    assert_int_equal(dp_http_parser_feed(&p, in, strlen(in), &used, NULL), DP_HTTP_AGAIN);
    assert_true(dp_http_parser_head_done(&p));
    assert_true(p.req.expect_continue);
    assert_int_equal(dp_http_parser_feed(&p, "body", 4, &used, NULL), DP_HTTP_DONE);
    assert_string_equal(p.req.body, "body");
    dp_http_parser_done(&p);
}

static void test_pipelining(void **state)
{
    (void)state;
    struct dp_http_parser p;
    const char *in = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
                     "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz"
                     "\r\nGET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    const char *paths[] = {"/a", "/b", "/c"};
    size_t off = 0, len = strlen(in);
    assert_int_equal(dp_http_parser_init(&p, NULL), 0);
    for (int i = 0; i < 3; i++) {
        size_t used = 0;
        assert_int_equal(dp_http_parser_feed(&p, in + off, len - off, &used, NULL), DP_HTTP_DONE);
        assert_string_equal(p.req.path, paths[i]);
        off += used;
        dp_http_parser_reset(&p);
    }
    assert_int_equal(off, len);
    dp_http_parser_done(&p);
}

static int parse_with(const struct dp_http_limits *lim, const char *in, size_t len)
{
    struct dp_http_parser p;
    size_t used;
    assert_int_equal(dp_http_parser_init(&p, lim), 0);
    int r = dp_http_parser_feed(&p, in, len, &used, NULL);
    /* the same verdict byte by byte */
    struct dp_http_parser q;
    assert_int_equal(dp_http_parser_init(&q, lim), 0);
    int r2 = feed_steps(&q, in, len, 1, &used);
    assert_int_equal(r, r2);
    dp_http_parser_done(&p);
    dp_http_parser_done(&q);
    return r;
}

static char *make_request(size_t target_len, unsigned n_hdrs, size_t hdr_value_len,
                          const char *tail)
{
    size_t cap = target_len + n_hdrs * (hdr_value_len + 32) + strlen(tail) + 128;
    char *s = malloc(cap);
    assert_non_null(s);
    size_t o = (size_t)snprintf(s, cap, "GET /");
    memset(s + o, 'a', target_len - 1);
    o += target_len - 1;
    o += (size_t)snprintf(s + o, cap - o, " HTTP/1.1\r\nHost: h\r\n");
    for (unsigned i = 1; i < n_hdrs; i++) {
        o += (size_t)snprintf(s + o, cap - o, "X-%u: ", i);
        memset(s + o, 'v', hdr_value_len);
        o += hdr_value_len;
        o += (size_t)snprintf(s + o, cap - o, "\r\n");
    }
    snprintf(s + o, cap - o, "%s", tail);
    return s;
}

static void test_limits(void **state)
{
    (void)state;
    struct dp_http_limits lim = {
            .max_request_line = 64, .max_header_bytes = 256, .max_headers = 8, .max_body = 10};
    /* request line: "GET /" + (n-1) + " HTTP/1.1" = n + 13 bytes */
    char *s = make_request(64 - 13, 1, 0, "\r\n");
    assert_int_equal(parse_with(&lim, s, strlen(s)), DP_HTTP_DONE);
    free(s);
    s = make_request(64 - 12, 1, 0, "\r\n");
    assert_int_equal(parse_with(&lim, s, strlen(s)), DP_HTTP_E_URI_TOO_LONG);
    free(s);
    /* an endless request line is refused once past the limit, not when the CRLF comes */
    s = make_request(4000, 1, 0, "\r\n");
    assert_int_equal(parse_with(&lim, s, 200), DP_HTTP_E_URI_TOO_LONG);
    free(s);

    /* header count: 8 ok, 9 too many */
    s = make_request(2, 8, 1, "\r\n");
    assert_int_equal(parse_with(&lim, s, strlen(s)), DP_HTTP_DONE);
    free(s);
    s = make_request(2, 9, 1, "\r\n");
    assert_int_equal(parse_with(&lim, s, strlen(s)), DP_HTTP_E_HEADER_TOO_LARGE);
    free(s);

    /* header bytes: "Host: h\r\n" = 9, "X-1: " + v + CRLF = 7 + v -> 9 + 7 + 240 = 256 */
    s = make_request(2, 2, 240, "\r\n");
    assert_int_equal(parse_with(&lim, s, strlen(s)), DP_HTTP_DONE);
    free(s);
    s = make_request(2, 2, 241, "\r\n");
    assert_int_equal(parse_with(&lim, s, strlen(s)), DP_HTTP_E_HEADER_TOO_LARGE);
    free(s);
    /* one endless header line */
    s = make_request(2, 2, 100000, "\r\n");
    assert_int_equal(parse_with(&lim, s, strlen(s)), DP_HTTP_E_HEADER_TOO_LARGE);
    free(s);

    /* body: 10 ok, 11 refused before the body arrives */
    const char *b10 = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789";
    assert_int_equal(parse_with(&lim, b10, strlen(b10)), DP_HTTP_DONE);
    const char *b11 = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n";
    assert_int_equal(parse_with(&lim, b11, strlen(b11)), DP_HTTP_E_BODY_TOO_LARGE);
    const char *c10 = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n";
    assert_int_equal(parse_with(&lim, c10, strlen(c10)), DP_HTTP_DONE);
    const char *c11 = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\n01234\r\n6\r\n";
    assert_int_equal(parse_with(&lim, c11, strlen(c11)), DP_HTTP_E_BODY_TOO_LARGE);
    /* trailers share the header budget */
    char *t = malloc(1000);
    int n = snprintf(t, 1000,
                     "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n");
    for (int i = 0; i < 12; i++)
        n += snprintf(t + n, (size_t)(1000 - n), "T%d: x\r\n", i);
    snprintf(t + n, (size_t)(1000 - n), "\r\n");
    assert_int_equal(parse_with(&lim, t, strlen(t)), DP_HTTP_E_HEADER_TOO_LARGE);
    free(t);

    struct dp_http_parser p;
    struct dp_http_limits zero = {0};
    assert_int_equal(dp_http_parser_init(&p, &zero), -EINVAL);
    dp_http_parser_done(NULL);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Binary garbage never crashes and never yields a request; requests with random bytes flipped
 * either parse or fail with a clean error. */
static void test_garbage(void **state)
{
    (void)state;
    char buf[512];
    for (int iter = 0; iter < 2000; iter++) {
        size_t len = next_rand() % sizeof(buf);
        for (size_t i = 0; i < len; i++)
            buf[i] = (char)next_rand();
        struct dp_http_parser p;
        size_t used;
        assert_int_equal(dp_http_parser_init(&p, NULL), 0);
        int r = dp_http_parser_feed(&p, buf, len, &used, NULL);
        assert_true(r == DP_HTTP_AGAIN || r < 0);
        if (r < 0) {
            assert_non_null(p.err_desc);
            int st = dp_http_error_status(r);
            assert_true(st >= 400 && st < 600);
        }
        dp_http_parser_done(&p);
    }
    for (int iter = 0; iter < 3000; iter++) {
        const struct pcase *c = &cases[next_rand() % DP_ARRAY_SIZE(cases)];
        size_t len = case_len(c);
        memcpy(buf, c->in, len);
        for (int k = 0; k < 3; k++)
            buf[next_rand() % len] = (char)next_rand();
        struct dp_http_parser p;
        size_t used;
        assert_int_equal(dp_http_parser_init(&p, NULL), 0);
        int r = feed_steps(&p, buf, len, 1 + next_rand() % 5, &used);
        if (r == DP_HTTP_DONE) {
            assert_non_null(p.req.path);
            assert_true(p.req.body_len <= p.lim.max_body);
        }
        dp_http_parser_done(&p);
    }
}

static void test_error_sticky_and_reset(void **state)
{
    (void)state;
    struct dp_http_parser p;
    size_t used = 99;
    const char *desc = NULL;
    assert_int_equal(dp_http_parser_init(&p, NULL), 0);
    assert_int_equal(dp_http_parser_feed(&p, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 36,
                                         &used, &desc),
                     DP_HTTP_E_SYNTAX);
    assert_string_equal(desc, "more than one Host header");
    assert_int_equal(used, 99); /* not written on error */
    assert_int_equal(dp_http_parser_feed(&p, "x", 1, &used, &desc), DP_HTTP_E_SYNTAX);
    dp_http_parser_reset(&p);
    assert_int_equal(dp_http_parser_feed(&p, "GET / HTTP/1.0\r\n\r\n", 18, &used, NULL),
                     DP_HTTP_DONE);
    dp_http_parser_done(&p);

    assert_int_equal(dp_http_error_status(DP_HTTP_E_SYNTAX), 400);
    assert_int_equal(dp_http_error_status(DP_HTTP_E_URI_TOO_LONG), 414);
    assert_int_equal(dp_http_error_status(DP_HTTP_E_HEADER_TOO_LARGE), 431);
    assert_int_equal(dp_http_error_status(DP_HTTP_E_BODY_TOO_LARGE), 413);
    assert_int_equal(dp_http_error_status(DP_HTTP_E_NOT_IMPLEMENTED), 501);
    assert_int_equal(dp_http_error_status(DP_HTTP_E_VERSION), 505);
}

static void test_large_body_shrinks(void **state)
{
    (void)state;
    struct dp_http_parser p;
    size_t used;
    size_t n = 200000;
    char *s = malloc(n + 100);
    int h = snprintf(s, 100, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %zu\r\n\r\n", n);
    memset(s + h, 'b', n);
    assert_int_equal(dp_http_parser_init(&p, NULL), 0);
    assert_int_equal(dp_http_parser_feed(&p, s, (size_t)h + n, &used, NULL), DP_HTTP_DONE);
    assert_int_equal(p.req.body_len, n);
    dp_http_parser_reset(&p);
    assert_null(p.body);
    dp_http_parser_done(&p);
    free(s);
}

static void test_response_helpers(void **state)
{
    (void)state;
    struct dp_buf *b;
    assert_int_equal(dp_buf_new(64, 4096, &b), 0);
    assert_int_equal(dp_http_append_response(&b, 404, "text/plain", "nope\n", 5, true, false), 0);
    const char *want = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
                       "Connection: close\r\n\r\nnope\n";
    assert_int_equal(b->len, strlen(want));
    assert_memory_equal(dp_buf_head(b), want, b->len);
    dp_buf_reset(b);

    assert_int_equal(dp_http_append_response(&b, 200, NULL, "abc", 3, false, true), 0);
    want = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";
    assert_int_equal(b->len, strlen(want));
    assert_memory_equal(dp_buf_head(b), want, b->len);
    dp_buf_reset(b);

    /* header injection is refused and appends nothing */
    struct dp_http_header bad = {.name = "X", .value = "a\r\nSet-Cookie: x"};
    assert_int_equal(dp_http_append_status(&b, 200, &bad, 1), -EINVAL);
    assert_int_equal(b->len, 0);
    assert_int_equal(dp_http_append_header(&b, "X Y", "v"), -EINVAL);
    assert_int_equal(dp_http_append_header(&b, "X", "v\n"), -EINVAL);
    assert_int_equal(dp_http_append_status(&b, 99, NULL, 0), -EINVAL);
    assert_int_equal(dp_http_append_response(&b, 200, "a\nb", "", 0, false, false), -EINVAL);
    assert_int_equal(b->len, 0);

    struct dp_http_header ok = {.name = "Allow", .value = "GET, HEAD"};
    assert_int_equal(dp_http_append_status(&b, 405, &ok, 1), 0);
    assert_int_equal(dp_http_append_head_end(&b), 0);
    assert_int_equal(dp_http_append_chunk(&b, "hello", 5), 0);
    assert_int_equal(dp_http_append_chunk(&b, "", 0), 0);
    assert_int_equal(dp_http_append_chunk(&b, "0123456789abcdefg", 17), 0);
    assert_int_equal(dp_http_append_last_chunk(&b), 0);
    want = "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\n\r\n5\r\nhello\r\n"
           "11\r\n0123456789abcdefg\r\n0\r\n\r\n";
    assert_int_equal(b->len, strlen(want));
    assert_memory_equal(dp_buf_head(b), want, b->len);

    /* the chunked output parses back with our own parser */
    dp_buf_free(b);
    assert_string_equal(dp_http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(dp_http_reason(799), "Unknown");
    assert_string_equal(dp_http_method_str(DP_HTTP_M_DELETE), "DELETE");
    assert_string_equal(dp_http_pstate_str(DP_HTTP_PS_CHUNK_SIZE), "chunk-size");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_table_whole),
            cmocka_unit_test(test_table_byte_by_byte),
            cmocka_unit_test(test_truncated_at_every_byte),
            cmocka_unit_test(test_fields),
            cmocka_unit_test(test_head_done_before_body),
            cmocka_unit_test(test_pipelining),
            cmocka_unit_test(test_limits),
            cmocka_unit_test(test_garbage),
            cmocka_unit_test(test_error_sticky_and_reset),
            cmocka_unit_test(test_large_body_shrinks),
            cmocka_unit_test(test_response_helpers),
    };
    return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
