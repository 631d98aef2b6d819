/* Tests for dataplane/httpd and dataplane/admin over real loopback and unix sockets, with the
 * dp_loop driven from the test thread: 404/405/413/501, HEAD, keep-alive, pipelining, chunked
 * uploads with 100-continue, slow-loris and idle timeouts, the connection limit, held and
 * streaming responses with abort, and the admin endpoints (checked with promtool). */
/* cmocka.h needs setjmp.h, stdarg.h and stddef.h first */
/* clang-format off */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
/* clang-format on */

#include "admin.h"
#include "buf.h"
#include "common.h"
#include "httpd.h"
#include "loop.h"
#include "metrics.h"
#include "sock.h"

struct fx {
    struct dp_loop *loop;
    struct dp_httpd *srv;
    uint16_t port;
    /* handler bookkeeping */
    struct dp_httpd_resp *held;
    int aborted;
    int calls;
    char last_body[256];
};

static void on_hello(struct dp_httpd_resp *resp, const struct dp_http_request *req, void *arg)
{
    struct fx *f = arg;
    f->calls++;
    dp_httpd_resp_header(resp, "X-Path", req->path);
    dp_httpd_resp_printf(resp, "hello %s q=%s\n", req->path, req->query);
}

static void on_echo(struct dp_httpd_resp *resp, const struct dp_http_request *req, void *arg)
{
    struct fx *f = arg;
    f->calls++;
    snprintf(f->last_body, sizeof(f->last_body), "%s", req->body);
    dp_httpd_resp_status(resp, 201);
    dp_httpd_resp_header(resp, "Content-Type", "application/octet-stream");
    dp_httpd_resp_body(resp, req->body, req->body_len);
}

static void on_prefix(struct dp_httpd_resp *resp, const struct dp_http_request *req, void *arg)
{
    (void)arg;
    dp_httpd_resp_printf(resp, "prefix %s\n", req->path);
}

static void on_abort(struct dp_httpd_resp *resp, void *arg)
{
    struct fx *f = arg;
    assert_ptr_equal(resp, f->held);
    f->aborted++;
    f->held = NULL;
}

static void on_hold(struct dp_httpd_resp *resp, const struct dp_http_request *req, void *arg)
{
    struct fx *f = arg;
    (void)req;
    f->held = resp;
    dp_httpd_resp_hold(resp, on_abort, f);
}

static void on_stream(struct dp_httpd_resp *resp, const struct dp_http_request *req, void *arg)
{
    struct fx *f = arg;
    (void)req;
    f->held = resp;
    dp_httpd_resp_printf(resp, "{\"type\":\"hello\"}\n");
    assert_int_equal(dp_httpd_resp_stream_start(resp, NULL, on_abort, f), 0);
}

static void on_bad_header(struct dp_httpd_resp *resp, const struct dp_http_request *req, void *arg)
{
    (void)req;
    (void)arg;
    int a = dp_httpd_resp_header(resp, "X", "a\r\nInjected: 1");
    int b = dp_httpd_resp_header(resp, "Content-Length", "5");
    int c = dp_httpd_resp_header(resp, "Connection", "close");
    dp_httpd_resp_printf(resp, "%d %d %d\n", a, b, c);
}

static int setup_cfg(void **state, const struct dp_httpd_config *cfg)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_int_equal(dp_loop_new(&f->loop), 0);
    assert_int_equal(dp_httpd_new(f->loop, cfg, &f->srv), 0);
    assert_int_equal(dp_httpd_listen_tcp(f->srv, "127.0.0.1:0", NULL, &f->port), 0);
    assert_true(f->port > 0);
    unsigned get = DP_HTTP_MBIT(DP_HTTP_M_GET);
    unsigned post = DP_HTTP_MBIT(DP_HTTP_M_POST) | DP_HTTP_MBIT(DP_HTTP_M_PUT);
    assert_int_equal(dp_httpd_route(f->srv, get, "/hello", 0, on_hello, f), 0);
    assert_int_equal(dp_httpd_route(f->srv, post, "/echo", 0, on_echo, f), 0);
    assert_int_equal(dp_httpd_route(f->srv, get, "/p/", DP_HTTPD_PREFIX, on_prefix, f), 0);
    assert_int_equal(dp_httpd_route(f->srv, get, "/p/exact", 0, on_hello, f), 0);
    assert_int_equal(dp_httpd_route(f->srv, 0, "/hold", 0, on_hold, f), 0);
    assert_int_equal(dp_httpd_route(f->srv, get, "/stream", 0, on_stream, f), 0);
    assert_int_equal(dp_httpd_route(f->srv, get, "/badheader", 0, on_bad_header, f), 0);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    struct dp_httpd_config cfg = {.name = "test",
                                  .limits = {.max_request_line = 1024,
                                             .max_header_bytes = 4096,
                                             .max_headers = 32,
                                             .max_body = 1000},
                                  .request_timeout_ms = 300,
                                  .idle_timeout_ms = 400,
                                  .max_conns = 3};
    return setup_cfg(state, &cfg);
}

static int setup_slow_writes(void **state)
{
    struct dp_httpd_config cfg = {
            .name = "slow", .write_timeout_ms = 200, .max_stream_pending = 256 * 1024};
    return setup_cfg(state, &cfg);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    dp_httpd_free(f->srv);
    dp_loop_free(f->loop);
    free(f);
    return 0;
}

static int cli_connect(struct fx *f)
{
    struct sockaddr_storage ss;
    socklen_t len;
    char a[64];
    int fd;
    snprintf(a, sizeof(a), "127.0.0.1:%u", f->port);
    assert_int_equal(dp_sock_parse_addr(a, &ss, &len), 0);
    int r = dp_sock_connect_tcp((struct sockaddr *)&ss, len, NULL, &fd);
    assert_true(r == 0 || r == 1);
    return fd;
}

static void cli_send(struct fx *f, int fd, const char *s, size_t len)
{
    size_t off = 0;
    for (int i = 0; off < len && i < 1000; i++) {
        ssize_t n = send(fd, s + off, len - off, MSG_NOSIGNAL);
        if (n > 0)
            off += (size_t)n;
        else if (n < 0 && errno != EAGAIN)
            fail_msg("send: %s", strerror(errno));
        dp_loop_run_once(f->loop, 1);
    }
    assert_int_equal(off, len);
}

static void cli_sends(struct fx *f, int fd, const char *s)
{
    cli_send(f, fd, s, strlen(s));
}

/* Run the loop and collect what the client receives until `done(buf)` says so, EOF, or
 * max_ms. Returns bytes received; *eof tells whether the server closed. */
struct rx {
    char buf[65536];
    size_t len;
    bool eof;
};

static bool one_response(const char *b, size_t len, size_t *ret_end);

static void cli_recv_until(struct fx *f, int fd, struct rx *rx, unsigned want_responses,
                           bool want_eof, unsigned max_ms)
{
    uint64_t start = dp_now_ms();
    while (dp_now_ms() - start < max_ms) {
        dp_loop_run_once(f->loop, 5);
        if (fd < 0)
            continue; /* just run the server for a while */
        for (;;) {
            ssize_t n = recv(fd, rx->buf + rx->len, sizeof(rx->buf) - 1 - rx->len, MSG_DONTWAIT);
            if (n > 0) {
                rx->len += (size_t)n;
                continue;
            }
            if (n == 0)
                rx->eof = true;
            break;
        }
        rx->buf[rx->len] = '\0';
        if (rx->eof)
            return;
        if (!want_eof && want_responses > 0) {
            size_t off = 0, end;
            unsigned got = 0;
            while (got < want_responses && one_response(rx->buf + off, rx->len - off, &end)) {
                off += end;
                got++;
            }
            if (got == want_responses)
                return;
        }
    }
}

/* Is there a complete (Content-Length framed) response at b? */
static bool one_response(const char *b, size_t len, size_t *ret_end)
{
    const char *e = memmem(b, len, "\r\n\r\n", 4);
    if (e == NULL)
        return false;
    size_t head = (size_t)(e - b) + 4;
    const char *cl = memmem(b, head, "Content-Length: ", 16);
    size_t body = cl ? strtoul(cl + 16, NULL, 10) : 0;
    if (strncmp(b, "HTTP/1.1 100 ", 13) == 0)
        body = 0;
    /* responses to HEAD carry a Content-Length without a body: tests mark them with X-Head */
    if (memmem(b, head, "X-Head-Test", 11) != NULL)
        body = 0;
    if (len < head + body)
        return false;
    *ret_end = head + body;
    return true;
}

static void exchange(struct fx *f, int fd, const char *req, struct rx *rx, unsigned n_resp)
{
    memset(rx, 0, sizeof(*rx));
    cli_send(f, fd, req, strlen(req));
    cli_recv_until(f, fd, rx, n_resp, false, 3000);
}

/* Send a request that must not be answered (yet): run the server briefly and return what came. */
static void send_no_answer(struct fx *f, int fd, const char *req, struct rx *rx)
{
    memset(rx, 0, sizeof(*rx));
    cli_sends(f, fd, req);
    cli_recv_until(f, fd, rx, 0, false, 100);
}

static void test_get_keepalive(void **state)
{
    struct fx *f = *state;
    struct rx rx;
    int fd = cli_connect(f);
    exchange(f, fd, "GET /hello?x=1 HTTP/1.1\r\nHost: t\r\n\r\n", &rx, 1);
    assert_non_null(strstr(rx.buf, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(rx.buf, "X-Path: /hello\r\n"));
    assert_non_null(strstr(rx.buf, "Content-Type: text/plain; charset=utf-8\r\n"));
    assert_non_null(strstr(rx.buf, "Content-Length: 19\r\n\r\nhello /hello q=x=1\n"));
    assert_null(strstr(rx.buf, "Connection: close"));
    assert_false(rx.eof);
    /* same connection again */
    exchange(f, fd, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", &rx, 1);
    assert_non_null(strstr(rx.buf, "hello /hello q=\n"));
    assert_int_equal(f->calls, 2);
    assert_int_equal(dp_httpd_conn_count(f->srv), 1);
    /* Connection: close is honoured */
    exchange(f, fd, "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &rx, 1);
    cli_recv_until(f, fd, &rx, 0, true, 3000);
    assert_non_null(strstr(rx.buf, "Connection: close\r\n"));
    assert_true(rx.eof);
    close(fd);
    cli_recv_until(f, -1, &rx, 0, false, 20);
    assert_int_equal(dp_httpd_conn_count(f->srv), 0);
}

static void test_http10(void **state)
{
    struct fx *f = *state;
    struct rx rx;
    int fd = cli_connect(f);
    exchange(f, fd, "GET /hello HTTP/1.0\r\n\r\n", &rx, 1);
    cli_recv_until(f, fd, &rx, 0, true, 3000);
    assert_non_null(strstr(rx.buf, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(rx.buf, "Connection: close\r\n"));
    assert_true(rx.eof);
    close(fd);
    fd = cli_connect(f);
    exchange(f, fd, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &rx, 1);
    assert_non_null(strstr(rx.buf, "Connection: keep-alive\r\n"));
    assert_false(rx.eof);
    close(fd);
}

static void test_404_405_501_head(void **state)
{
    struct fx *f = *state;
    struct rx rx;
    int fd = cli_connect(f);
    exchange(f, fd, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", &rx, 1);
    assert_int_equal(strncmp(rx.buf, "HTTP/1.1 404 Not Found\r\n", 24), 0);
    exchange(f, fd, "DELETE /hello HTTP/1.1\r\nHost: t\r\n\r\n", &rx, 1);
    assert_int_equal(strncmp(rx.buf, "HTTP/1.1 405 Method Not Allowed\r\n", 33), 0);
    assert_non_null(strstr(rx.buf, "Allow: GET, HEAD\r\n"));
    exchange(f, fd, "GET /echo HTTP/1.1\r\nHost: t\r\n\r\n", &rx, 1);
    assert_non_null(strstr(rx.buf, "Allow: POST, PUT\r\n"));
    exchange(f, fd, "BREW /hello HTTP/1.1\r\nHost: t\r\n\r\n", &rx, 1);
    assert_int_equal(strncmp(rx.buf, "HTTP/1.1 501 Not Implemented\r\n", 30), 0);
    /* unknown method on an any-method route is served */
    f->held = NULL;
    /* prefix vs exact: exact wins, longest prefix otherwise */
    exchange(f, fd, "GET /p/exact HTTP/1.1\r\nHost: t\r\n\r\n", &rx, 1);
    assert_non_null(strstr(rx.buf, "hello /p/exact"));
    exchange(f, fd, "GET /p/other/x HTTP/1.1\r\nHost: t\r\n\r\n", &rx, 1);
    assert_non_null(strstr(rx.buf, "prefix /p/other/x"));
    exchange(f, fd, "GET /p HTTP/1.1\r\nHost: t\r\n\r\n", &rx, 1);
    assert_int_equal(strncmp(rx.buf, "HTTP/1.1 404", 12), 0);
    /* HEAD: length of the GET body, no body; the next response follows immediately */
    memset(&rx, 0, sizeof(rx));
    const char *two =
            "HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\n";
    cli_send(f, fd, two, strlen(two));
    cli_recv_until(f, fd, &rx, 0, false, 300);
    assert_int_equal(strncmp(rx.buf, "HTTP/1.1 200 OK\r\n", 17), 0);
    char *second = strstr(rx.buf, "\r\n\r\nHTTP/1.1 404");
    assert_non_null(second);
    assert_non_null(memmem(rx.buf, (size_t)(second - rx.buf), "Content-Length: 16", 18));
    /* framing fields and injection are refused to handlers */
    exchange(f, fd, "GET /badheader HTTP/1.1\r\nHost: t\r\n\r\n", &rx, 1);
    assert_non_null(strstr(rx.buf, "\r\n\r\n-22 -22 -22\n"));
    assert_null(strstr(rx.buf, "Injected"));
    assert_false(rx.eof);
    close(fd);
}

static void test_413_and_400_close(void **state)
{
    struct fx *f = *state;
    struct rx rx;
    int fd = cli_connect(f);
    exchange(f, fd, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n", &rx, 1);
    cli_recv_until(f, fd, &rx, 0, true, 3000);
    assert_int_equal(strncmp(rx.buf, "HTTP/1.1 413 Content Too Large\r\n", 32), 0);
    assert_non_null(strstr(rx.buf, "Connection: close\r\n"));
    assert_non_null(strstr(rx.buf, "Content-Length above the body limit"));
    assert_true(rx.eof);
    assert_int_equal(f->calls, 0);
    close(fd);

    /* 413 even though the client keeps sending the body: lingering close, no reset */
    fd = cli_connect(f);
    char big[3000];
    int h = snprintf(big, sizeof(big),
                     "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n");
    memset(big + h, 'x', 2000);
    memset(&rx, 0, sizeof(rx));
    cli_send(f, fd, big, (size_t)h + 2000);
    cli_recv_until(f, fd, &rx, 0, true, 3000);
    assert_int_equal(strncmp(rx.buf, "HTTP/1.1 413", 12), 0);
    close(fd);

    fd = cli_connect(f);
    static const char garbage[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n";
    memset(&rx, 0, sizeof(rx));
    cli_send(f, fd, garbage, sizeof(garbage) - 1);
    cli_recv_until(f, fd, &rx, 0, true, 3000);
    assert_int_equal(strncmp(rx.buf, "HTTP/1.1 400 Bad Request\r\n", 26), 0);
    assert_true(rx.eof);
    close(fd);

    fd = cli_connect(f);
    char longline[2000];
    snprintf(longline, sizeof(longline), "GET /%01500d HTTP/1.1\r\n", 0);
    exchange(f, fd, longline, &rx, 1);
    assert_int_equal(strncmp(rx.buf, "HTTP/1.1 414 URI Too Long\r\n", 27), 0);
    close(fd);

    fd = cli_connect(f);
    char hdrs[6000];
    int o = snprintf(hdrs, sizeof(hdrs), "GET /hello HTTP/1.1\r\nHost: t\r\n");
    for (int i = 0; i < 40; i++)
        o += snprintf(hdrs + o, sizeof(hdrs) - (size_t)o, "X-%d: v\r\n", i);
    snprintf(hdrs + o, sizeof(hdrs) - (size_t)o, "\r\n");
    exchange(f, fd, hdrs, &rx, 1);
    assert_int_equal(strncmp(rx.buf, "HTTP/1.1 431", 12), 0);
    close(fd);
}

static void test_post_bodies(void **state)
{
    struct fx *f = *state;
    struct rx rx;
    int fd = cli_connect(f);
    exchange(f, fd, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nabcde", &rx, 1);
    assert_int_equal(strncmp(rx.buf, "HTTP/1.1 201 Created\r\n", 22), 0);
    assert_non_null(strstr(rx.buf, "\r\n\r\nabcde"));
    /* chunked upload with Expect: 100-continue — the 100 comes before the body is sent */
    exchange(f, fd,
             "PUT /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
             "Expect: 100-continue\r\n\r\n",
             &rx, 1);
    assert_int_equal(strncmp(rx.buf, "HTTP/1.1 100 Continue\r\n\r\n", 25), 0);
    exchange(f, fd, "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n", &rx, 1);
    assert_int_equal(strncmp(rx.buf, "HTTP/1.1 201 Created\r\n", 22), 0);
    assert_non_null(strstr(rx.buf, "Content-Length: 7\r\n\r\nabcdefg"));
    assert_string_equal(f->last_body, "abcdefg");
    close(fd);
}

static void test_pipelining(void **state)
{
    struct fx *f = *state;
    struct rx rx;
    int fd = cli_connect(f);
    exchange(f, fd,
             "GET /hello?n=1 HTTP/1.1\r\nHost: t\r\n\r\n"
             "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyz"
             "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"
             "GET /hello?n=4 HTTP/1.1\r\nHost: t\r\n\r\n",
             &rx, 4);
    char *a = strstr(rx.buf, "hello /hello q=n=1");
    char *b = strstr(rx.buf, "\r\n\r\nxyz");
    char *c = strstr(rx.buf, "404 Not Found");
    char *d = strstr(rx.buf, "hello /hello q=n=4");
    assert_true(a && b && c && d);
    assert_true(a < b && b < c && c < d);
    assert_false(rx.eof);
    close(fd);
}

static void test_slowloris_and_idle(void **state)
{
    struct fx *f = *state;
    struct rx rx;
    /* a request that never completes: 408 and close after request_timeout (300 ms), even
     * though the client keeps trickling bytes */
    int fd = cli_connect(f);
    memset(&rx, 0, sizeof(rx));
    cli_send(f, fd, "GET /hello HTTP/1.1\r\n", 21);
    uint64_t t0 = dp_now_ms();
    for (int i = 0; i < 10 && !rx.eof; i++) {
        send(fd, "X", 1, MSG_NOSIGNAL);
        cli_recv_until(f, fd, &rx, 0, true, 50);
    }
    cli_recv_until(f, fd, &rx, 0, true, 3000);
    assert_true(rx.eof);
    assert_int_equal(strncmp(rx.buf, "HTTP/1.1 408 Request Timeout\r\n", 30), 0);
    assert_true(dp_now_ms() - t0 >= 250);
    close(fd);

    /* an idle connection is closed without an answer after idle_timeout (400 ms) */
    fd = cli_connect(f);
    memset(&rx, 0, sizeof(rx));
    cli_recv_until(f, fd, &rx, 0, true, 3000);
    assert_true(rx.eof);
    assert_int_equal(rx.len, 0);
    close(fd);
    cli_recv_until(f, -1, &rx, 0, false, 20);
    assert_int_equal(dp_httpd_conn_count(f->srv), 0);
}

static void test_conn_limit(void **state)
{
    struct fx *f = *state;
    struct rx rx;
    int fds[4];
    for (int i = 0; i < 4; i++)
        fds[i] = cli_connect(f);
    cli_recv_until(f, -1, &rx, 0, false, 50);
    assert_int_equal(dp_httpd_conn_count(f->srv), 3);
    /* the fourth waits in the backlog; it is served once another closes */
    memset(&rx, 0, sizeof(rx));
    cli_sends(f, fds[3], "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_recv_until(f, fds[3], &rx, 1, false, 100);
    assert_int_equal(rx.len, 0);
    close(fds[0]);
    cli_recv_until(f, fds[3], &rx, 1, false, 3000);
    assert_int_equal(strncmp(rx.buf, "HTTP/1.1 200 OK", 15), 0);
    for (int i = 1; i < 4; i++)
        close(fds[i]);
}

static void test_held_response(void **state)
{
    struct fx *f = *state;
    struct rx rx;
    int fd = cli_connect(f);
    send_no_answer(f, fd, "POST /hold HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi", &rx);
    assert_int_equal(rx.len, 0);
    assert_non_null(f->held);
    /* a pipelined request waits behind the held one */
    send_no_answer(f, fd, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", &rx);
    assert_int_equal(rx.len, 0);
    struct dp_httpd_resp *r = f->held;
    assert_string_equal(dp_httpd_resp_request(r)->body, "hi");
    assert_non_null(strstr(dp_httpd_resp_peer(r), "127.0.0.1:"));
    dp_httpd_resp_status(r, 202);
    dp_httpd_resp_printf(r, "later\n");
    f->held = NULL;
    dp_httpd_resp_finish(r);
    cli_recv_until(f, fd, &rx, 2, false, 3000);
    char *a = strstr(rx.buf, "HTTP/1.1 202 Accepted");
    char *b = strstr(rx.buf, "hello /hello");
    assert_true(a && b && a < b);
    assert_int_equal(f->aborted, 0);

    /* held, then the peer goes away: on_abort runs from the loop */
    send_no_answer(f, fd, "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n", &rx);
    assert_non_null(f->held);
    close(fd);
    cli_recv_until(f, -1, &rx, 0, false, 100);
    assert_int_equal(f->aborted, 1);
    assert_null(f->held);
}

/* Decode a chunked body (after the head) into out; returns true when the last chunk arrived. */
static bool dechunk(const char *b, size_t len, char *out, size_t outsz)
{
    const char *e = memmem(b, len, "\r\n\r\n", 4);
    size_t o = 0;
    if (e == NULL)
        return false;
    const char *p = e + 4, *end = b + len;
    out[0] = '\0';
    while (p < end) {
        char *nl;
        unsigned long n = strtoul(p, &nl, 16);
        if (nl + 2 > end || nl[0] != '\r')
            return false;
        p = nl + 2;
        if (n == 0)
            return true;
        if (p + n + 2 > end)
            return false;
        memcpy(out + o, p, n);
        o += n;
        out[o] = '\0';
        p += n + 2;
    }
    (void)outsz;
    return false;
}

static void test_streaming(void **state)
{
    struct fx *f = *state;
    struct rx rx;
    char body[4096];
    int fd = cli_connect(f);
    memset(&rx, 0, sizeof(rx));
    cli_sends(f, fd, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_recv_until(f, fd, &rx, 0, false, 100);
    assert_non_null(f->held);
    assert_non_null(strstr(rx.buf, "Transfer-Encoding: chunked\r\n"));
    assert_non_null(strstr(rx.buf, "Content-Type: application/x-ndjson\r\n"));
    assert_false(dechunk(rx.buf, rx.len, body, sizeof(body)));
    assert_string_equal(body, "{\"type\":\"hello\"}\n");
    for (int i = 0; i < 3; i++) {
        char line[64];
        int n = snprintf(line, sizeof(line), "{\"seq\":%d}\n", i);
        assert_int_equal(dp_httpd_resp_stream_write(f->held, line, (size_t)n), 0);
    }
    cli_recv_until(f, fd, &rx, 0, false, 100);
    dechunk(rx.buf, rx.len, body, sizeof(body));
    assert_string_equal(body, "{\"type\":\"hello\"}\n{\"seq\":0}\n{\"seq\":1}\n{\"seq\":2}\n");
    /* slow consumer: the pending cap is enforced */
    assert_int_equal(dp_httpd_resp_pending(f->held), 0);
    char *huge = calloc(1, 2u << 20);
    assert_int_equal(dp_httpd_resp_stream_write(f->held, huge, 2u << 20), -ENOBUFS);
    free(huge);
    struct dp_httpd_resp *r = f->held;
    f->held = NULL;
    dp_httpd_resp_stream_end(r);
    cli_recv_until(f, fd, &rx, 0, false, 100);
    assert_true(dechunk(rx.buf, rx.len, body, sizeof(body)));
    /* keep-alive after a stream */
    exchange(f, fd, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", &rx, 1);
    if (strstr(rx.buf, "hello /hello") == NULL)
        fail_msg("after stream: got %zu bytes eof=%d: %s", rx.len, rx.eof, rx.buf);

    /* peer disconnects mid-stream: on_abort runs from the loop */
    memset(&rx, 0, sizeof(rx));
    cli_sends(f, fd, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_recv_until(f, fd, &rx, 0, false, 100);
    assert_non_null(f->held);
    close(fd);
    cli_recv_until(f, -1, &rx, 0, false, 100);
    assert_null(f->held);
    assert_int_equal(f->aborted, 1);

    /* the owner writes into a connection the peer has reset, before the loop noticed:
     * -EPIPE ends the stream, and on_abort is not called after that */
    fd = cli_connect(f);
    memset(&rx, 0, sizeof(rx));
    cli_sends(f, fd, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_recv_until(f, fd, &rx, 0, false, 100);
    assert_non_null(f->held);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd); /* RST */
    int wr = 0;
    for (int i = 0; i < 100 && wr == 0; i++)
        wr = dp_httpd_resp_stream_write(f->held, "x\n", 2);
    assert_int_equal(wr, -EPIPE);
    f->held = NULL;
    cli_recv_until(f, -1, &rx, 0, false, 50);
    assert_int_equal(f->aborted, 1);
    assert_int_equal(dp_httpd_conn_count(f->srv), 0);
}

/* A peer that never reads: queued output stops draining, the write timeout closes the
 * connection and the stream owner is told. */
static void test_write_timeout(void **state)
{
    struct fx *f = *state;
    struct rx rx;
    int fd = cli_connect(f);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    memset(&rx, 0, sizeof(rx));
    cli_sends(f, fd, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    for (int i = 0; i < 20 && f->held == NULL; i++)
        cli_recv_until(f, -1, &rx, 0, false, 5);
    assert_non_null(f->held);
    char *chunk = calloc(1, 32768);
    int r = 0, writes = 0;
    while (r == 0 && writes < 10000) {
        r = dp_httpd_resp_stream_write(f->held, chunk, 32768);
        writes++;
        dp_loop_run_once(f->loop, 0);
    }
    free(chunk);
    assert_int_equal(r, -ENOBUFS);
    assert_true(dp_httpd_resp_pending(f->held) > 0);
    uint64_t t0 = dp_now_ms();
    while (f->held != NULL && dp_now_ms() - t0 < 3000)
        dp_loop_run_once(f->loop, 10);
    assert_null(f->held);
    assert_int_equal(f->aborted, 1);
    assert_int_equal(dp_httpd_conn_count(f->srv), 0);
    close(fd);
}

static void test_server_free_aborts(void **state)
{
    struct fx *f = *state;
    struct rx rx;
    int fd = cli_connect(f);
    memset(&rx, 0, sizeof(rx));
    cli_sends(f, fd, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_recv_until(f, fd, &rx, 0, false, 100);
    assert_non_null(f->held);
    dp_httpd_free(f->srv);
    f->srv = NULL;
    assert_int_equal(f->aborted, 1);
    close(fd);
}

static void test_unix_and_fd_listener(void **state)
{
    struct fx *f = *state;
    char path[64];
    snprintf(path, sizeof(path), "/tmp/amb-httpd-%d.sock", getpid());
    assert_int_equal(dp_httpd_listen_unix(f->srv, path, 0600), 0);
    int fd;
    assert_int_equal(dp_sock_connect_unix(path, 0, &fd), 0);
    struct rx rx;
    exchange(f, fd, "GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n", &rx, 1);
    assert_non_null(strstr(rx.buf, "hello /hello"));
    close(fd);

    /* an fd the caller created; a non-listening socket is refused */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(dp_httpd_add_listener(f->srv, sv[0]), -EINVAL);
    close(sv[0]);
    close(sv[1]);
    struct sockaddr_storage ss;
    socklen_t len;
    int lfd;
    assert_int_equal(dp_sock_parse_addr("127.0.0.1:0", &ss, &len), 0);
    assert_int_equal(dp_sock_listen_tcp((struct sockaddr *)&ss, len, NULL, &lfd), 0);
    assert_int_equal(dp_sock_local_addr(lfd, &ss, &len), 0);
    int fl = fcntl(lfd, F_GETFL);
    fcntl(lfd, F_SETFL, fl & ~O_NONBLOCK);
    assert_int_equal(dp_httpd_add_listener(f->srv, lfd), 0);
    assert_true(fcntl(lfd, F_GETFL) & O_NONBLOCK);
    f->port = dp_sock_addr_port((struct sockaddr *)&ss);
    fd = cli_connect(f);
    exchange(f, fd, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", &rx, 1);
    assert_non_null(strstr(rx.buf, "hello /hello"));
    close(fd);

    /* stop listening: the socket file goes away, new connections are refused */
    dp_httpd_stop_listening(f->srv);
    assert_int_not_equal(access(path, F_OK), 0);
    assert_int_not_equal(dp_sock_connect_unix(path, 0, &fd), 0);
}

/* Random pipelines of good requests, optionally ending in a bad one, sent in random pieces:
 * every good request is answered in order, a bad one gets a 4xx/5xx and the close. */
static uint64_t rnd_state = 0x2545f4914f6cdd1dull;
static unsigned rnd(unsigned n)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return (unsigned)(rnd_state % n);
}

static void test_random_pipelines(void **state)
{
    struct fx *f = *state;
    static const char *const bad[] = {
            "GET / HTTP/1.1\nHost: t\n\n",
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n",
            "GET /hello HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n",
            "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
            "\x01\x02\x03\r\n\r\n",
            "GET /hello HTTP/3.0\r\nHost: t\r\n\r\n",
    };
    char *stream = malloc(65536);
    struct rx *rx = malloc(sizeof(*rx));
    for (int iter = 0; iter < 80; iter++) {
        size_t len = 0;
        unsigned k = 1 + rnd(6);
        bool with_bad = rnd(3) == 0;
        for (unsigned i = 0; i < k; i++) {
            switch (rnd(3)) {
            case 0:
                len += (size_t)sprintf(stream + len, "GET /hello?i=%u HTTP/1.1\r\nHost: t\r\n\r\n",
                                       i);
                break;
            case 1:
                len += (size_t)sprintf(
                        stream + len,
                        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nb%03u", i);
                break;
            default:
                len += (size_t)sprintf(
                        stream + len,
                        "PUT /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "2\r\nc%u\r\n0\r\n\r\n",
                        i % 10);
                break;
            }
        }
        if (with_bad)
            len += (size_t)sprintf(stream + len, "%s", bad[rnd(DP_ARRAY_SIZE(bad))]);
        int fd = cli_connect(f);
        memset(rx, 0, sizeof(*rx));
        for (size_t off = 0; off < len;) {
            size_t n = 1 + rnd(64);
            if (n > len - off)
                n = len - off;
            cli_send(f, fd, stream + off, n);
            off += n;
        }
        cli_recv_until(f, fd, rx, with_bad ? 0 : k, with_bad, 3000);
        unsigned ok = 0;
        for (const char *p = rx->buf; (p = strstr(p, "HTTP/1.1 20")) != NULL; p++)
            ok++;
        if (ok != k)
            fail_msg("iter %d: %u good requests, %u answered:\n%s", iter, k, ok, rx->buf);
        if (with_bad) {
            assert_true(rx->eof);
            const char *last = rx->buf, *p = rx->buf;
            while ((p = strstr(p + 1, "HTTP/1.1 ")) != NULL)
                last = p;
            assert_true(last[9] == '4' || last[9] == '5');
            assert_non_null(strstr(last, "Connection: close\r\n"));
        }
        close(fd);
    }
    cli_recv_until(f, -1, rx, 0, false, 20);
    assert_int_equal(dp_httpd_conn_count(f->srv), 0);
    free(rx);
    free(stream);
}

/* ---------------------------------------------------------------- transport seam */

struct fake_transport {
    int accepts, closes, reads, writes, shutdowns;
    int ctx_token;
};

static int ft_accept(void *targ, int fd, void **ret_ctx)
{
    struct fake_transport *ft = targ;
    (void)fd;
    ft->accepts++;
    *ret_ctx = ft;
    return 0;
}

static ssize_t ft_read(void *ctx, int fd, void *buf, size_t len, unsigned *want)
{
    struct fake_transport *ft = ctx;
    (void)want;
    ft->reads++;
    ssize_t n = read(fd, buf, len);
    return n < 0 ? -errno : n;
}

static ssize_t ft_write(void *ctx, int fd, const void *buf, size_t len, unsigned *want)
{
    struct fake_transport *ft = ctx;
    (void)want;
    ft->writes++;
    ssize_t n = write(fd, buf, len);
    return n < 0 ? -errno : n;
}

static void ft_shutdown(void *ctx, int fd)
{
    struct fake_transport *ft = ctx;
    ft->shutdowns++;
    shutdown(fd, SHUT_WR);
}

static void ft_close(void *ctx)
{
    struct fake_transport *ft = ctx;
    if (ft != NULL)
        ft->closes++;
}

static struct fake_transport the_ft;
static const struct dp_httpd_transport ft_vtable = {
        .on_accept = ft_accept,
        .read = ft_read,
        .write = ft_write,
        .shutdown = ft_shutdown,
        .close = ft_close,
};

static void on_ctx(struct dp_httpd_resp *resp, const struct dp_http_request *req, void *arg)
{
    (void)req;
    (void)arg;
    dp_httpd_resp_printf(resp, "ctx=%s\n", dp_httpd_resp_transport(resp) == &the_ft ? "ft" : "?");
}

static int setup_transport(void **state)
{
    memset(&the_ft, 0, sizeof(the_ft));
    struct dp_httpd_config cfg = {.name = "ft", .transport = &ft_vtable, .transport_arg = &the_ft};
    int r = setup_cfg(state, &cfg);
    struct fx *f = *state;
    assert_int_equal(dp_httpd_route(f->srv, 0, "/ctx", 0, on_ctx, f), 0);
    return r;
}

static void test_transport_seam(void **state)
{
    struct fx *f = *state;
    struct rx rx;
    int fd = cli_connect(f);
    exchange(f, fd, "GET /ctx HTTP/1.1\r\nHost: t\r\n\r\n", &rx, 1);
    assert_non_null(strstr(rx.buf, "\r\n\r\nctx=ft\n"));
    exchange(f, fd, "GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &rx, 1);
    cli_recv_until(f, fd, &rx, 0, true, 3000);
    assert_true(rx.eof);
    close(fd);
    cli_recv_until(f, -1, &rx, 0, false, 20);
    assert_int_equal(the_ft.accepts, 1);
    assert_int_equal(the_ft.closes, 1);
    assert_int_equal(the_ft.shutdowns, 1);
    assert_true(the_ft.reads >= 2);
    assert_true(the_ft.writes >= 2);
}

static void test_route_rules(void **state)
{
    struct fx *f = *state;
    unsigned get = DP_HTTP_MBIT(DP_HTTP_M_GET);
    assert_int_equal(dp_httpd_route(f->srv, get, "/hello", 0, on_hello, f), -EEXIST);
    assert_int_equal(dp_httpd_route(f->srv, 0, "/hello", 0, on_hello, f), -EEXIST);
    assert_int_equal(dp_httpd_route(f->srv, DP_HTTP_MBIT(DP_HTTP_M_POST), "/hello", 0, on_hello, f),
                     0);
    assert_int_equal(dp_httpd_route(f->srv, get, "/hello", DP_HTTPD_PREFIX, on_hello, f), 0);
    assert_int_equal(dp_httpd_route(f->srv, get, "nope", 0, on_hello, f), -EINVAL);
    assert_int_equal(dp_httpd_route(f->srv, get, "/x", 0, NULL, f), -EINVAL);
    assert_int_equal(dp_httpd_listen_tcp(f->srv, "localhost:80", NULL, NULL), -EINVAL);
    struct dp_httpd *s2;
    struct dp_httpd_config bad = {.limits = {.max_request_line = 1u << 30}};
    assert_int_equal(dp_httpd_new(f->loop, &bad, &s2), -EINVAL);
    struct dp_httpd_config partial = {.limits = {.max_body = 5}};
    assert_int_equal(dp_httpd_new(f->loop, &partial, &s2), 0);
    dp_httpd_free(s2);
    dp_httpd_free(NULL);
}

/* ---------------------------------------------------------------- admin */

static bool ready_flag;
static bool on_ready_check(void *arg, char *reason, size_t sz)
{
    (void)arg;
    if (!ready_flag)
        snprintf(reason, sz, "waiting for config");
    return ready_flag;
}

static void test_admin(void **state)
{
    struct fx *f = *state;
    struct dp_metrics *m;
    struct dp_metric *c;
    struct dp_metric_series *s;
    struct dp_admin_ready *rd;
    const char *keys[] = {"source_workload"};
    assert_int_equal(dp_metrics_new(&m), 0);
    assert_int_equal(
            dp_metrics_counter(m, "istio_tcp_connections_opened_total", "Opened.", keys, 1, &c), 0);
    const char *v[] = {"evil\"\n\\"};
    assert_int_equal(dp_metric_series(c, v, 1, &s), 0);
    dp_counter_add(s, 7);
    assert_int_equal(dp_admin_add_metrics(f->srv, m), 0);
    assert_int_equal(dp_admin_add_metrics(f->srv, m), -EEXIST);
    assert_int_equal(dp_admin_add_ready(f->srv, on_ready_check, NULL, &rd), 0);

    struct rx rx;
    int fd = cli_connect(f);
    exchange(f, fd, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", &rx, 1);
    assert_int_equal(strncmp(rx.buf, "HTTP/1.1 200 OK\r\n", 17), 0);
    assert_non_null(strstr(rx.buf, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    char *body = strstr(rx.buf, "\r\n\r\n") + 4;
    assert_non_null(strstr(
            body, "istio_tcp_connections_opened_total{source_workload=\"evil\\\"\\n\\\\\"} 7\n"));
    /* what the server sent passes promtool */
    char tmp[] = "/tmp/amb-httpd-metrics-XXXXXX";
    int tfd = mkstemp(tmp);
    assert_true(tfd >= 0);
    assert_int_equal(write(tfd, body, strlen(body)), (ssize_t)strlen(body));
    close(tfd);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "/usr/bin/promtool check metrics < %s >/dev/null 2>&1", tmp);
    int st = system(cmd);
    unlink(tmp);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    exchange(f, fd, "GET /stats/prometheus HTTP/1.1\r\nHost: t\r\n\r\n", &rx, 1);
    assert_non_null(strstr(rx.buf, "# TYPE istio_tcp_connections_opened_total counter\n"));
    ready_flag = false;
    exchange(f, fd, "GET /healthz/ready HTTP/1.1\r\nHost: t\r\n\r\n", &rx, 1);
    assert_int_equal(strncmp(rx.buf, "HTTP/1.1 503 Service Unavailable\r\n", 34), 0);
    assert_non_null(strstr(rx.buf, "not ready: waiting for config\n"));
    ready_flag = true;
    exchange(f, fd, "GET /healthz/ready HTTP/1.1\r\nHost: t\r\n\r\n", &rx, 1);
    assert_int_equal(strncmp(rx.buf, "HTTP/1.1 200 OK\r\n", 17), 0);
    assert_non_null(strstr(rx.buf, "\r\n\r\nready\n"));
    exchange(f, fd, "POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", &rx, 1);
    assert_int_equal(strncmp(rx.buf, "HTTP/1.1 405", 12), 0);
    close(fd);
    dp_httpd_free(f->srv);
    f->srv = NULL;
    dp_admin_ready_free(rd);
    dp_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_get_keepalive, setup, teardown),
            cmocka_unit_test_setup_teardown(test_http10, setup, teardown),
            cmocka_unit_test_setup_teardown(test_404_405_501_head, setup, teardown),
            cmocka_unit_test_setup_teardown(test_413_and_400_close, setup, teardown),
            cmocka_unit_test_setup_teardown(test_post_bodies, setup, teardown),
            cmocka_unit_test_setup_teardown(test_pipelining, setup, teardown),
            cmocka_unit_test_setup_teardown(test_slowloris_and_idle, setup, teardown),
            cmocka_unit_test_setup_teardown(test_conn_limit, setup, teardown),
            cmocka_unit_test_setup_teardown(test_held_response, setup, teardown),
            cmocka_unit_test_setup_teardown(test_streaming, setup, teardown),
            cmocka_unit_test_setup_teardown(test_random_pipelines, setup, teardown),
            cmocka_unit_test_setup_teardown(test_write_timeout, setup_slow_writes, teardown),
            cmocka_unit_test_setup_teardown(test_server_free_aborts, setup, teardown),
            cmocka_unit_test_setup_teardown(test_unix_and_fd_listener, setup, teardown),
            cmocka_unit_test_setup_teardown(test_transport_seam, setup_transport, teardown),
            cmocka_unit_test_setup_teardown(test_route_rules, setup, teardown),
            cmocka_unit_test_setup_teardown(test_admin, setup, teardown),
    };
    return cmocka_run_group_tests_name("httpd", tests, NULL, NULL);
}
