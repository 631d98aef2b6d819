/* libFuzzer target: arbitrary bytes from a client through the whole dp_httpd state machine
 * (parser, routing, keep-alive, pipelining, held and streaming responses, error answers,
 * lingering close) over a real unix socket. The first input byte picks how the bytes are split
 * into writes; the client half-closes after sending, and the server must then finish every
 * answer and close: no crash, no leak, no connection left behind. */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "httpd.h"
#include "loop.h"
#include "sock.h"

static struct dp_loop *loop;
static struct dp_httpd *srv;
static char path[64];

/* held / streaming responses are completed from a timer, i.e. from outside the handler */
static struct dp_httpd_resp *pending;
static bool pending_stream;
static struct dp_timer tick;

static void on_abort(struct dp_httpd_resp *resp, void *arg)
{
    (void)arg;
    if (resp == pending)
        pending = NULL;
}

static void on_tick(struct dp_loop *l, void *arg)
{
    (void)l;
    (void)arg;
    struct dp_httpd_resp *r = pending;
    if (r == NULL)
        return;
    pending = NULL;
    if (pending_stream) {
        if (dp_httpd_resp_stream_write(r, "{\"x\":1}\n", 8) == -EPIPE)
            return;
        dp_httpd_resp_stream_end(r);
    } else {
        dp_httpd_resp_text(r, 202, "later\n");
    }
}

static void on_hello(struct dp_httpd_resp *resp, const struct dp_http_request *req, void *arg)
{
    (void)arg;
    dp_httpd_resp_printf(resp, "%s %s %zu\n", req->method_str, req->path, req->body_len);
}

static void on_hold(struct dp_httpd_resp *resp, const struct dp_http_request *req, void *arg)
{
    (void)req;
    (void)arg;
    if (pending != NULL) {
        dp_httpd_resp_text(resp, 503, "busy\n");
        return;
    }
    pending = resp;
    pending_stream = false;
    dp_httpd_resp_hold(resp, on_abort, NULL);
    dp_timer_arm(loop, &tick, 0);
}

static void on_stream(struct dp_httpd_resp *resp, const struct dp_http_request *req, void *arg)
{
    (void)req;
    (void)arg;
    if (pending != NULL) {
        dp_httpd_resp_text(resp, 503, "busy\n");
        return;
    }
    pending = resp;
    pending_stream = true;
    dp_httpd_resp_stream_start(resp, NULL, on_abort, NULL);
    dp_httpd_resp_stream_write(resp, "{\"hello\":1}\n", 12);
    dp_timer_arm(loop, &tick, 0);
}

static void setup(void)
{
    struct dp_httpd_config cfg = {
            .name = "fuzz",
            .limits = {.max_request_line = 512,
                       .max_header_bytes = 2048,
                       .max_headers = 16,
                       .max_body = 4096},
    };
    signal(SIGPIPE, SIG_IGN);
    if (dp_loop_new(&loop) < 0 || dp_httpd_new(loop, &cfg, &srv) < 0)
        abort();
    snprintf(path, sizeof(path), "@amb-fuzz-httpd-%d", getpid());
    if (dp_httpd_listen_unix(srv, path, 0) < 0)
        abort();
    dp_timer_init(&tick, on_tick, NULL);
    unsigned get = DP_HTTP_MBIT(DP_HTTP_M_GET);
    dp_httpd_route(srv, get | DP_HTTP_MBIT(DP_HTTP_M_POST), "/hello", 0, on_hello, NULL);
    dp_httpd_route(srv, get, "/p/", DP_HTTPD_PREFIX, on_hello, NULL);
    dp_httpd_route(srv, 0, "/hold", 0, on_hold, NULL);
    dp_httpd_route(srv, get, "/stream", 0, on_stream, NULL);
}

static void drain(int fd)
{
    char buf[8192];
    while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
        ;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (loop == NULL)
        setup();
    if (size == 0 || size > 16384)
        return 0;
    size_t step = (size_t)(data[0] % 64) + 1;
    data++;
    size--;

    int fd;
    if (dp_sock_connect_unix(path, 0, &fd) < 0)
        abort();
    for (int i = 0; i < 100 && dp_httpd_conn_count(srv) == 0; i++)
        dp_loop_run_once(loop, 1); /* accepted */
    for (size_t off = 0; off < size;) {
        size_t n = size - off < step ? size - off : step;
        ssize_t w = send(fd, data + off, n, MSG_NOSIGNAL);
        if (w > 0)
            off += (size_t)w;
        else if (w < 0 && errno != EAGAIN)
            break; /* the server closed after an error answer */
        dp_loop_run_once(loop, 0);
        drain(fd);
    }
    shutdown(fd, SHUT_WR);
    /* the server answers what it got and closes; a bounded number of rounds */
    for (int i = 0; i < 200 && dp_httpd_conn_count(srv) > 0; i++) {
        dp_loop_run_once(loop, 1);
        drain(fd);
    }
    close(fd);
    for (int i = 0; i < 50 && dp_httpd_conn_count(srv) > 0; i++)
        dp_loop_run_once(loop, 1);
    dp_loop_run_once(loop, 0); /* deferred frees */
    if (dp_httpd_conn_count(srv) != 0 || pending != NULL)
        __builtin_trap();
    return 0;
}
