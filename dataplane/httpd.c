/*
 * httpd.c — the small HTTP/1.1 server. See httpd.h for the contract.
 *
 * A connection is a small state machine:
 *
 *   READ ──request──▶ HANDLER ──returns──▶ WRITE ──drained──▶ READ (keep-alive) / LINGER
 *                        │  └─hold──▶ HELD ──finish──▶ WRITE
 *                        └─stream_start──▶ STREAM ──stream_end──▶ WRITE
 *
 * Only READ feeds the parser, so pipelined requests wait in rbuf until the previous response
 * has been written. Completion of a response that is finished from outside our io callback
 * (finish/stream_end called by the owner) is noticed on the next writable event, so user code
 * is never re-entered from inside a dp_httpd_resp_* call. Connections die in two steps:
 * conn_kill() closes the fd at once and marks the connection dead; the dp_defer callback calls
 * on_abort for an unfinished held/streaming response and frees the memory.
 */
#include "httpd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "common.h"
#include "log.h"
#include "loop.h"
#include "sock.h"

#define RBUF_LIMIT       (64u * 1024)
#define READ_CHUNK       16384u
#define HDRS_LIMIT       8192u
#define LINGER_MS        2000u
#define LINGER_MAX_BYTES (1u << 20)
#define ACCEPT_BATCH     32
#define WBUF_SLACK       (64u * 1024)

enum conn_state {
    CS_READ = 0,
    CS_HANDLER,
    CS_HELD,
    CS_STREAM,
    CS_WRITE,
    CS_LINGER,
};

static const char *conn_state_str(enum conn_state s)
{
    switch (s) {
    case CS_READ:
        return "read";
    case CS_HANDLER:
        return "handler";
    case CS_HELD:
        return "held";
    case CS_STREAM:
        return "stream";
    case CS_WRITE:
        return "write";
    case CS_LINGER:
        return "linger";
    }
    return "?";
}

struct route {
    struct dp_list link;
    unsigned methods;
    unsigned flags;
    char *path;
    size_t len;
    dp_httpd_handler_cb *cb;
    void *arg;
};

struct listener {
    struct dp_list link;
    struct dp_httpd *srv;
    struct dp_io io;
    int fd;
    char *unlink_path; /* unix socket file we created */
};

struct conn;

struct dp_httpd_resp {
    struct conn *conn;
    int status;
    struct dp_buf *hdrs;
    struct dp_buf *body;
    bool has_ctype;
    bool close;
    bool head_only;
    bool held;
    bool streaming;
    bool chunked;
    bool done; /* sent / ended: the owner is finished with it */
    dp_httpd_abort_cb *on_abort;
    void *abort_arg;
};

struct conn {
    struct dp_list link;
    struct dp_httpd *srv;
    int fd;
    void *tctx;
    unsigned t_want;
    struct dp_io io;
    struct dp_timer timer;
    struct dp_defer defer;
    enum conn_state state;
    bool dead;
    bool in_request;
    bool sent_continue;
    bool close_after;
    bool read_eof;
    struct dp_http_parser parser;
    struct dp_buf *rbuf;
    struct dp_buf *wbuf;
    size_t lingered;
    struct dp_httpd_resp resp;
    char peer[DP_SOCK_ADDRSTRLEN];
};

struct dp_httpd {
    struct dp_loop *loop;
    struct dp_httpd_config cfg;
    struct dp_list listeners;
    struct dp_list conns;
    struct dp_list routes;
    unsigned n_conns;
    bool paused;
};

static void conn_kill(struct conn *c, const char *why);
static void conn_update(struct conn *c);
static void process_input(struct conn *c);
static void resp_send(struct dp_httpd_resp *resp);

/* ---------------------------------------------------------------- transport */

static ssize_t t_read(struct conn *c, void *buf, size_t len)
{
    const struct dp_httpd_transport *t = c->srv->cfg.transport;
    if (t != NULL) {
        unsigned want = 0;
        ssize_t n = t->read(c->tctx, c->fd, buf, len, &want);
        if (n == -EAGAIN)
            c->t_want |= want;
        return n;
    }
    for (;;) {
        ssize_t n = read(c->fd, buf, len);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

static ssize_t t_write(struct conn *c, const void *buf, size_t len)
{
    const struct dp_httpd_transport *t = c->srv->cfg.transport;
    if (t != NULL) {
        unsigned want = 0;
        ssize_t n = t->write(c->tctx, c->fd, buf, len, &want);
        if (n == -EAGAIN)
            c->t_want |= want;
        return n;
    }
    for (;;) {
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno == ENOTSOCK) { /* a pipe in tests */
            n = write(c->fd, buf, len);
            if (n >= 0)
                return n;
        }
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

/* ---------------------------------------------------------------- server */

int dp_httpd_new(struct dp_loop *loop, const struct dp_httpd_config *cfg, struct dp_httpd **ret_srv)
{
    struct dp_httpd *srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return -ENOMEM;
    if (cfg != NULL)
        srv->cfg = *cfg;
    struct dp_httpd_config *c = &srv->cfg;
    if (c->name == NULL)
        c->name = "httpd";
    /* each zero limit takes its default, so callers set only what they care about */
    if (c->limits.max_request_line == 0)
        c->limits.max_request_line = dp_http_default_limits.max_request_line;
    if (c->limits.max_header_bytes == 0)
        c->limits.max_header_bytes = dp_http_default_limits.max_header_bytes;
    if (c->limits.max_headers == 0)
        c->limits.max_headers = dp_http_default_limits.max_headers;
    if (c->limits.max_body == 0)
        c->limits.max_body = dp_http_default_limits.max_body;
    if (c->max_conns == 0)
        c->max_conns = 128;
    if (c->request_timeout_ms == 0)
        c->request_timeout_ms = 10000;
    if (c->idle_timeout_ms == 0)
        c->idle_timeout_ms = 60000;
    if (c->write_timeout_ms == 0)
        c->write_timeout_ms = 10000;
    if (c->max_response == 0)
        c->max_response = 16u << 20;
    if (c->max_stream_pending == 0)
        c->max_stream_pending = 1u << 20;
    /* validate the limits once, here, rather than failing every accept */
    struct dp_http_parser probe;
    int r = dp_http_parser_init(&probe, &c->limits);
    if (r < 0) {
        free(srv);
        return r;
    }
    dp_http_parser_done(&probe);
    srv->loop = loop;
    dp_list_init(&srv->listeners);
    dp_list_init(&srv->conns);
    dp_list_init(&srv->routes);
    *ret_srv = srv;
    return 0;
}

static void listener_free(struct listener *l)
{
    dp_loop_del_io(l->srv->loop, &l->io);
    close(l->fd);
    if (l->unlink_path != NULL) {
        unlink(l->unlink_path);
        free(l->unlink_path);
    }
    dp_list_del(&l->link);
    free(l);
}

static void conn_release(struct conn *c)
{
    struct dp_httpd_resp *resp = &c->resp;
    dp_defer_cancel(&c->defer);
    if ((resp->held || resp->streaming) && !resp->done && resp->on_abort != NULL) {
        dp_httpd_abort_cb *cb = resp->on_abort;
        resp->on_abort = NULL;
        resp->done = true;
        cb(resp, resp->abort_arg);
    }
    dp_list_del(&c->link);
    dp_http_parser_done(&c->parser);
    dp_buf_free(c->rbuf);
    dp_buf_free(c->wbuf);
    dp_buf_free(resp->hdrs);
    dp_buf_free(resp->body);
    free(c);
}

void dp_httpd_free(struct dp_httpd *srv)
{
    if (srv == NULL)
        return;
    struct dp_list *pos, *tmp;
    dp_list_for_each_safe(pos, tmp, &srv->listeners) {
        listener_free(dp_container_of(pos, struct listener, link));
    }
    dp_list_for_each_safe(pos, tmp, &srv->conns) {
        struct conn *c = dp_container_of(pos, struct conn, link);
        conn_kill(c, "server shutdown");
        conn_release(c);
    }
    dp_list_for_each_safe(pos, tmp, &srv->routes) {
        struct route *rt = dp_container_of(pos, struct route, link);
        dp_list_del(&rt->link);
        free(rt->path);
        free(rt);
    }
    free(srv);
}

unsigned dp_httpd_conn_count(const struct dp_httpd *srv)
{
    return srv->n_conns;
}

static void set_paused(struct dp_httpd *srv, bool paused)
{
    if (srv->paused == paused)
        return;
    srv->paused = paused;
    struct dp_list *pos;
    dp_list_for_each(pos, &srv->listeners) {
        struct listener *l = dp_container_of(pos, struct listener, link);
        dp_loop_mod_io(srv->loop, &l->io, paused ? 0 : DP_EV_READ);
    }
}

static void on_conn_io(struct dp_loop *loop, int fd, unsigned events, void *arg);
static void on_conn_timer(struct dp_loop *loop, void *arg);
static void on_conn_defer(struct dp_loop *loop, void *arg);

static int conn_new(struct dp_httpd *srv, int fd, const struct sockaddr_storage *peer,
                    socklen_t plen)
{
    struct conn *c = calloc(1, sizeof(*c));
    int r = -ENOMEM;
    if (c == NULL)
        return -ENOMEM;
    c->srv = srv;
    c->fd = fd;
    dp_list_init(&c->link);
    c->resp.conn = c;
    if (dp_buf_new(READ_CHUNK, RBUF_LIMIT, &c->rbuf) < 0 ||
        dp_buf_new(4096, srv->cfg.max_response + srv->cfg.max_stream_pending + WBUF_SLACK,
                   &c->wbuf) < 0 ||
        dp_buf_new(512, HDRS_LIMIT, &c->resp.hdrs) < 0 ||
        dp_buf_new(1024, srv->cfg.max_response, &c->resp.body) < 0)
        goto fail;
    r = dp_http_parser_init(&c->parser, &srv->cfg.limits);
    if (r < 0)
        goto fail;
    if (plen > 0)
        dp_sock_format_addr((const struct sockaddr *)peer, plen, c->peer, sizeof(c->peer));
    else
        snprintf(c->peer, sizeof(c->peer), "?");
    if (srv->cfg.transport != NULL) {
        r = srv->cfg.transport->on_accept(srv->cfg.transport_arg, fd, &c->tctx);
        if (r < 0)
            goto fail_parser;
    }
    dp_io_init(&c->io, fd, on_conn_io, c);
    dp_timer_init(&c->timer, on_conn_timer, c);
    dp_defer_init(&c->defer, on_conn_defer, c);
    r = dp_loop_add_io(srv->loop, &c->io, DP_EV_READ);
    if (r < 0)
        goto fail_transport;
    dp_timer_arm(srv->loop, &c->timer, srv->cfg.idle_timeout_ms);
    dp_list_add_tail(&srv->conns, &c->link);
    srv->n_conns++;
    return 0;

fail_transport:
    if (srv->cfg.transport != NULL)
        srv->cfg.transport->close(c->tctx);
fail_parser:
    dp_http_parser_done(&c->parser);
fail:
    dp_buf_free(c->rbuf);
    dp_buf_free(c->wbuf);
    dp_buf_free(c->resp.hdrs);
    dp_buf_free(c->resp.body);
    free(c);
    return r;
}

static void on_accept(struct dp_loop *loop, int fd, unsigned events, void *arg)
{
    struct listener *l = arg;
    struct dp_httpd *srv = l->srv;
    (void)loop;
    (void)events;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        if (srv->n_conns >= srv->cfg.max_conns) {
            set_paused(srv, true);
            return;
        }
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        int cfd;
        int r = dp_sock_accept(fd, &peer, &plen, &cfd);
        if (r == -EAGAIN)
            return;
        if (r < 0) {
            if (r == -EMFILE || r == -ENFILE || r == -ENOBUFS || r == -ENOMEM) {
                dp_debug("httpd", "accept failed", DP_LS("server", srv->cfg.name), DP_LERR(r));
                return;
            }
            continue; /* ECONNABORTED and friends: next one */
        }
        r = conn_new(srv, cfd, &peer, plen);
        if (r < 0) {
            dp_debug("httpd", "connection setup failed", DP_LS("server", srv->cfg.name),
                     DP_LERR(r));
            close(cfd);
        }
    }
}

static int add_listener(struct dp_httpd *srv, int fd, const char *unlink_path)
{
    struct listener *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return -ENOMEM;
    l->srv = srv;
    l->fd = fd;
    if (unlink_path != NULL) {
        l->unlink_path = strdup(unlink_path);
        if (l->unlink_path == NULL) {
            free(l);
            return -ENOMEM;
        }
    }
    dp_io_init(&l->io, fd, on_accept, l);
    int r = dp_loop_add_io(srv->loop, &l->io, srv->paused ? 0 : DP_EV_READ);
    if (r < 0) {
        free(l->unlink_path);
        free(l);
        return r;
    }
    dp_list_add_tail(&srv->listeners, &l->link);
    return 0;
}

int dp_httpd_listen_tcp(struct dp_httpd *srv, const char *addr, const struct dp_sock_opts *opts,
                        uint16_t *ret_port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd, r;

    r = dp_sock_parse_addr(addr, &ss, &len);
    if (r < 0)
        return r;
    r = dp_sock_listen_tcp((struct sockaddr *)&ss, len, opts, &fd);
    if (r < 0)
        return r;
    struct sockaddr_storage local;
    socklen_t llen;
    r = dp_sock_local_addr(fd, &local, &llen);
    if (r < 0)
        goto fail;
    r = add_listener(srv, fd, NULL);
    if (r < 0)
        goto fail;
    if (ret_port != NULL)
        *ret_port = dp_sock_addr_port((struct sockaddr *)&local);
    return 0;
fail:
    close(fd);
    return r;
}

int dp_httpd_listen_unix(struct dp_httpd *srv, const char *path, unsigned mode)
{
    int fd;
    int r = dp_sock_listen_unix(path, mode, 0, 0, &fd);
    if (r < 0)
        return r;
    r = add_listener(srv, fd, path[0] == '@' ? NULL : path);
    if (r < 0) {
        close(fd);
        if (path[0] != '@')
            unlink(path);
    }
    return r;
}

int dp_httpd_add_listener(struct dp_httpd *srv, int fd)
{
    int on = 0;
    socklen_t olen = sizeof(on);
    if (fd < 0)
        return -EBADF;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &olen) < 0)
        return -errno;
    if (!on)
        return -EINVAL;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return add_listener(srv, fd, NULL);
}

void dp_httpd_stop_listening(struct dp_httpd *srv)
{
    struct dp_list *pos, *tmp;
    dp_list_for_each_safe(pos, tmp, &srv->listeners) {
        listener_free(dp_container_of(pos, struct listener, link));
    }
}

int dp_httpd_route(struct dp_httpd *srv, unsigned methods, const char *path, unsigned flags,
                   dp_httpd_handler_cb *cb, void *arg)
{
    if (path == NULL || path[0] != '/' || cb == NULL || (flags & ~DP_HTTPD_PREFIX) != 0)
        return -EINVAL;
    struct dp_list *pos;
    dp_list_for_each(pos, &srv->routes) {
        struct route *o = dp_container_of(pos, struct route, link);
        if (o->flags == flags && strcmp(o->path, path) == 0 &&
            (o->methods == 0 || methods == 0 || (o->methods & methods) != 0))
            return -EEXIST;
    }
    struct route *rt = calloc(1, sizeof(*rt));
    if (rt == NULL)
        return -ENOMEM;
    rt->path = strdup(path);
    if (rt->path == NULL) {
        free(rt);
        return -ENOMEM;
    }
    rt->len = strlen(path);
    rt->methods = methods;
    rt->flags = flags;
    rt->cb = cb;
    rt->arg = arg;
    dp_list_add_tail(&srv->routes, &rt->link);
    return 0;
}

/* ---------------------------------------------------------------- connection machinery */

static void arm(struct conn *c, uint64_t ms)
{
    dp_timer_arm(c->srv->loop, &c->timer, ms);
}

static void conn_kill(struct conn *c, const char *why)
{
    if (c->dead)
        return;
    dp_trace("httpd", "connection closed", DP_LS("server", c->srv->cfg.name),
             DP_LS("peer", c->peer), DP_LS("state", conn_state_str(c->state)), DP_LS("why", why));
    c->dead = true;
    dp_loop_del_io(c->srv->loop, &c->io);
    dp_timer_cancel(&c->timer);
    if (c->srv->cfg.transport != NULL)
        c->srv->cfg.transport->close(c->tctx);
    c->tctx = NULL;
    close(c->fd);
    c->fd = -1;
    c->srv->n_conns--;
    if (c->srv->n_conns < c->srv->cfg.max_conns)
        set_paused(c->srv, false);
    dp_loop_defer(c->srv->loop, &c->defer);
}

static void on_conn_defer(struct dp_loop *loop, void *arg)
{
    struct conn *c = arg;
    (void)loop;
    conn_release(c);
}

/* Write as much of wbuf as the socket takes. Returns 0, or -errno after killing c. */
static int try_write(struct conn *c)
{
    bool progress = false;
    while (c->wbuf->len > 0) {
        ssize_t n = t_write(c, dp_buf_head(c->wbuf), c->wbuf->len);
        if (n == -EAGAIN)
            break;
        if (n <= 0) {
            conn_kill(c, "write failed");
            return n < 0 ? (int)n : -EPIPE;
        }
        dp_buf_consume(c->wbuf, (size_t)n);
        progress = true;
    }
    if (c->wbuf->len == 0)
        dp_buf_reset(c->wbuf);
    if (c->wbuf->len > 0 && (progress || !dp_timer_armed(&c->timer)))
        arm(c, c->srv->cfg.write_timeout_ms);
    else if (c->wbuf->len == 0 && (c->state == CS_STREAM || c->state == CS_HELD))
        dp_timer_cancel(&c->timer);
    return 0;
}

/* Recompute the epoll interest from the state. */
static void conn_update(struct conn *c)
{
    if (c->dead)
        return;
    unsigned ev = c->t_want;
    switch (c->state) {
    case CS_READ:
    case CS_LINGER:
        ev |= DP_EV_READ;
        break;
    case CS_HANDLER:
        break;
    case CS_HELD:
    case CS_STREAM:
    case CS_WRITE:
        /* keep reading (to notice a peer that went away) while there is room to buffer a
         * pipelined request; the output side needs WRITE while anything is queued, and WRITE
         * state always asks so that completion is noticed from the loop */
        if (!c->read_eof && c->rbuf->len < RBUF_LIMIT)
            ev |= DP_EV_READ;
        if (c->state == CS_WRITE)
            ev |= DP_EV_WRITE;
        break;
    }
    if (c->wbuf->len > 0 && c->state != CS_LINGER)
        ev |= DP_EV_WRITE;
    if (ev != c->io.events) {
        int r = dp_loop_mod_io(c->srv->loop, &c->io, ev);
        if (r < 0)
            conn_kill(c, "epoll");
    }
}

static void start_linger(struct conn *c)
{
    c->state = CS_LINGER;
    c->lingered = 0;
    if (c->read_eof) {
        conn_kill(c, "done");
        return;
    }
    /* FIN (or close_notify), then drain what the peer still sends so that our answer is not
     * destroyed by a reset */
    const struct dp_httpd_transport *t = c->srv->cfg.transport;
    if (t == NULL)
        shutdown(c->fd, SHUT_WR);
    else if (t->shutdown != NULL)
        t->shutdown(c->tctx, c->fd);
    arm(c, LINGER_MS);
}

static void resp_reset(struct dp_httpd_resp *resp)
{
    resp->status = 200;
    dp_buf_reset(resp->hdrs);
    dp_buf_reset(resp->body);
    resp->has_ctype = false;
    resp->close = false;
    resp->head_only = false;
    resp->held = false;
    resp->streaming = false;
    resp->chunked = false;
    resp->done = false;
    resp->on_abort = NULL;
    resp->abort_arg = NULL;
}

/* The response in WRITE state has been written completely. */
static void complete_response(struct conn *c)
{
    if (c->close_after) {
        start_linger(c);
        return;
    }
    dp_http_parser_reset(&c->parser);
    resp_reset(&c->resp);
    c->state = CS_READ;
    c->in_request = false;
    c->sent_continue = false;
    arm(c, c->srv->cfg.idle_timeout_ms);
}

/* Answer on behalf of the server (errors, 404/405/501); sets close for parser errors. */
static void send_simple(struct conn *c, int status, const char *detail, bool close,
                        const char *allow)
{
    struct dp_httpd_resp *resp = &c->resp;
    bool head_only = resp->head_only;
    resp_reset(resp);
    resp->head_only = head_only;
    resp->status = status;
    resp->close = close;
    if (allow != NULL)
        dp_httpd_resp_header(resp, "Allow", allow);
    if (detail != NULL)
        dp_httpd_resp_printf(resp, "%d %s: %s\n", status, dp_http_reason(status), detail);
    else
        dp_httpd_resp_printf(resp, "%d %s\n", status, dp_http_reason(status));
    resp_send(resp);
}

static bool path_matches(const struct route *rt, const char *path, size_t len)
{
    if (rt->flags & DP_HTTPD_PREFIX)
        return len >= rt->len && memcmp(path, rt->path, rt->len) == 0;
    return len == rt->len && memcmp(path, rt->path, len) == 0;
}

static bool method_allowed(const struct route *rt, enum dp_http_method m)
{
    if (rt->methods == 0)
        return true;
    if (rt->methods & DP_HTTP_MBIT(m))
        return true;
    return m == DP_HTTP_M_HEAD && (rt->methods & DP_HTTP_MBIT(DP_HTTP_M_GET));
}

static void dispatch(struct conn *c)
{
    struct dp_httpd *srv = c->srv;
    const struct dp_http_request *req = &c->parser.req;
    struct dp_httpd_resp *resp = &c->resp;
    const struct route *best = NULL;
    size_t best_score = 0;
    unsigned allow = 0;
    bool path_found = false;
    struct dp_list *pos;

    dp_timer_cancel(&c->timer); /* the request deadline is met; writes arm their own */
    resp_reset(resp);
    resp->head_only = req->method == DP_HTTP_M_HEAD;
    if (!req->keep_alive || c->read_eof)
        c->close_after = true;
    dp_list_for_each(pos, &srv->routes) {
        const struct route *rt = dp_container_of(pos, struct route, link);
        if (!path_matches(rt, req->path, req->path_len))
            continue;
        path_found = true;
        allow |= rt->methods == 0 ? ~0u : rt->methods;
        if (!method_allowed(rt, req->method))
            continue;
        size_t score = (rt->flags & DP_HTTPD_PREFIX) ? rt->len : SIZE_MAX;
        if (best == NULL || score > best_score) {
            best = rt;
            best_score = score;
        }
    }
    dp_trace("httpd", "request", DP_LS("server", srv->cfg.name), DP_LS("peer", c->peer),
             DP_LS("method", req->method_str), DP_LS("path", req->path));
    if (best == NULL) {
        if (!path_found) {
            send_simple(c, 404, NULL, false, NULL);
        } else if (req->method == DP_HTTP_M_OTHER) {
            send_simple(c, 501, "unknown method", false, NULL);
        } else {
            char list[128] = "";
            size_t o = 0;
            if (allow & DP_HTTP_MBIT(DP_HTTP_M_GET))
                allow |= DP_HTTP_MBIT(DP_HTTP_M_HEAD);
            for (unsigned m = 1; m < DP_HTTP_M__COUNT; m++)
                if (allow & DP_HTTP_MBIT(m))
                    o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s", o ? ", " : "",
                                          dp_http_method_str((enum dp_http_method)m));
            send_simple(c, 405, NULL, false, list);
        }
        return;
    }
    c->state = CS_HANDLER;
    best->cb(resp, req, best->arg);
    if (c->dead)
        return;
    if (c->state == CS_HANDLER) {
        if (resp->held)
            c->state = CS_HELD;
        else
            resp_send(resp);
    }
}

static void process_input(struct conn *c)
{
    for (;;) {
        if (c->dead)
            return;
        if (c->state == CS_WRITE && c->wbuf->len == 0) {
            complete_response(c);
            continue;
        }
        if (c->state != CS_READ)
            return;
        if (c->rbuf->len == 0) {
            if (c->read_eof) {
                conn_kill(c, c->in_request ? "eof inside a request" : "eof");
                return;
            }
            return;
        }
        if (!c->in_request) {
            c->in_request = true;
            arm(c, c->srv->cfg.request_timeout_ms); /* absolute: not re-armed per read */
        }
        size_t used = 0;
        const char *desc = NULL;
        int r = dp_http_parser_feed(&c->parser, dp_buf_head(c->rbuf), c->rbuf->len, &used, &desc);
        if (r < 0) {
            dp_debug("httpd", "bad request", DP_LS("server", c->srv->cfg.name),
                     DP_LS("peer", c->peer), DP_LS("error", desc));
            dp_buf_reset(c->rbuf);
            c->close_after = true;
            send_simple(c, dp_http_error_status(r), desc, true, NULL);
            continue;
        }
        dp_buf_consume(c->rbuf, used);
        if (r == DP_HTTP_AGAIN) {
            const struct dp_http_parser *p = &c->parser;
            if (dp_http_parser_head_done(p) && p->req.expect_continue && !c->sent_continue &&
                p->req.version_minor >= 1) {
                c->sent_continue = true;
                if (dp_buf_append_str(&c->wbuf, "HTTP/1.1 100 Continue\r\n\r\n") < 0 ||
                    try_write(c) < 0) {
                    conn_kill(c, "write failed");
                    return;
                }
            }
            if (c->read_eof) {
                conn_kill(c, "eof inside a request");
                return;
            }
            return;
        }
        dispatch(c);
    }
}

static bool read_once(struct conn *c);

static void do_read(struct conn *c)
{
    if (c->state == CS_LINGER) {
        char scratch[4096];
        for (int i = 0; i < 16; i++) {
            ssize_t n = t_read(c, scratch, sizeof(scratch));
            if (n == -EAGAIN)
                return;
            if (n <= 0 || (c->lingered += (size_t)n) > LINGER_MAX_BYTES) {
                conn_kill(c, "linger done");
                return;
            }
        }
        return;
    }
    const struct dp_httpd_transport *t = c->srv->cfg.transport;
    do {
        if (!read_once(c))
            return;
    } while (!c->dead && t != NULL && t->pending != NULL && t->pending(c->tctx) &&
             (c->state == CS_READ || c->rbuf->len < RBUF_LIMIT));
}

/* One read into rbuf (and parse in READ state). False when nothing more should be read now. */
static bool read_once(struct conn *c)
{
    if (c->read_eof || c->rbuf->len >= RBUF_LIMIT)
        return false;
    size_t want = RBUF_LIMIT - c->rbuf->len;
    if (want > READ_CHUNK)
        want = READ_CHUNK;
    if (dp_buf_reserve(&c->rbuf, want) < 0) {
        conn_kill(c, "no memory");
        return false;
    }
    ssize_t n = t_read(c, dp_buf_tail(c->rbuf), want);
    if (n == -EAGAIN)
        return false;
    if (n < 0) {
        conn_kill(c, "read failed");
        return false;
    }
    if (n == 0) {
        c->read_eof = true;
        switch (c->state) {
        case CS_HELD:
        case CS_STREAM:
            conn_kill(c, "peer closed");
            return false;
        case CS_WRITE:
            c->close_after = true;
            return false;
        default:
            break;
        }
    } else {
        dp_buf_commit(c->rbuf, (size_t)n);
    }
    if (c->state == CS_READ)
        process_input(c);
    return n > 0;
}

static void on_conn_io(struct dp_loop *loop, int fd, unsigned events, void *arg)
{
    struct conn *c = arg;
    (void)loop;
    (void)fd;
    if (c->dead)
        return;
    unsigned tw = c->t_want;
    c->t_want = 0;
    if ((events & (DP_EV_WRITE | DP_EV_ERROR)) || tw) {
        if (c->wbuf->len > 0 && try_write(c) < 0)
            return;
        if (c->state == CS_WRITE && c->wbuf->len == 0)
            process_input(c);
    }
    if (!c->dead && (events & (DP_EV_READ | DP_EV_ERROR)))
        do_read(c);
    /* input buffered inside the transport (TLS records) raises no epoll event */
    const struct dp_httpd_transport *t = c->srv->cfg.transport;
    if (!c->dead && c->state == CS_READ && t != NULL && t->pending != NULL && t->pending(c->tctx))
        do_read(c);
    conn_update(c);
}

static void on_conn_timer(struct dp_loop *loop, void *arg)
{
    struct conn *c = arg;
    (void)loop;
    if (c->dead)
        return;
    switch (c->state) {
    case CS_READ:
        if (c->in_request && c->wbuf->len == 0) {
            c->close_after = true;
            send_simple(c, 408, "request not received in time", true, NULL);
            process_input(c);
            conn_update(c);
        } else {
            conn_kill(c, c->in_request ? "request timeout" : "idle timeout");
        }
        return;
    case CS_LINGER:
        conn_kill(c, "linger timeout");
        return;
    default:
        if (c->wbuf->len > 0)
            conn_kill(c, "write timeout");
        return;
    }
}

/* ---------------------------------------------------------------- responses */

static void resp_send(struct dp_httpd_resp *resp)
{
    struct conn *c = resp->conn;
    struct dp_buf *body = resp->body;
    int r;

    resp->done = true;
    resp->on_abort = NULL;
    if (resp->close)
        c->close_after = true;
    bool v10 = c->parser.state == DP_HTTP_PS_DONE && c->parser.req.version_minor == 0;
    r = dp_http_append_status(&c->wbuf, resp->status, NULL, 0);
    if (r >= 0 && resp->hdrs->len > 0)
        r = dp_buf_append(&c->wbuf, dp_buf_head(resp->hdrs), resp->hdrs->len);
    if (r >= 0 && !resp->has_ctype && body->len > 0)
        r = dp_buf_append_str(&c->wbuf, "Content-Type: text/plain; charset=utf-8\r\n");
    if (r >= 0)
        r = dp_buf_appendf(&c->wbuf, "Content-Length: %zu\r\n", body->len);
    if (r >= 0 && c->close_after)
        r = dp_buf_append_str(&c->wbuf, "Connection: close\r\n");
    else if (r >= 0 && v10)
        r = dp_buf_append_str(&c->wbuf, "Connection: keep-alive\r\n");
    if (r >= 0)
        r = dp_http_append_head_end(&c->wbuf);
    if (r >= 0 && !resp->head_only && body->len > 0)
        r = dp_buf_append(&c->wbuf, dp_buf_head(body), body->len);
    if (r < 0) {
        conn_kill(c, "response too large");
        return;
    }
    c->state = CS_WRITE;
    try_write(c);
}

void dp_httpd_resp_status(struct dp_httpd_resp *resp, int status)
{
    resp->status = status;
}

int dp_httpd_resp_header(struct dp_httpd_resp *resp, const char *name, const char *value)
{
    if (name == NULL || strcasecmp(name, "content-length") == 0 ||
        strcasecmp(name, "transfer-encoding") == 0 || strcasecmp(name, "connection") == 0)
        return -EINVAL;
    int r = dp_http_append_header(&resp->hdrs, name, value);
    if (r >= 0 && strcasecmp(name, "content-type") == 0)
        resp->has_ctype = true;
    return r < 0 ? r : 0;
}

int dp_httpd_resp_body(struct dp_httpd_resp *resp, const void *data, size_t len)
{
    int r = dp_buf_append(&resp->body, data, len);
    return r < 0 ? r : 0;
}

int dp_httpd_resp_printf(struct dp_httpd_resp *resp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = dp_buf_vappendf(&resp->body, fmt, ap);
    va_end(ap);
    return r < 0 ? r : 0;
}

struct dp_buf **dp_httpd_resp_body_buf(struct dp_httpd_resp *resp)
{
    return &resp->body;
}

int dp_httpd_resp_text(struct dp_httpd_resp *resp, int status, const char *text)
{
    resp->status = status;
    dp_buf_reset(resp->body);
    int r = dp_httpd_resp_body(resp, text, strlen(text));
    if (r < 0)
        return r;
    if (resp->held)
        dp_httpd_resp_finish(resp);
    return 0;
}

void dp_httpd_resp_close(struct dp_httpd_resp *resp)
{
    resp->close = true;
}

const struct dp_http_request *dp_httpd_resp_request(const struct dp_httpd_resp *resp)
{
    return &resp->conn->parser.req;
}

const char *dp_httpd_resp_peer(const struct dp_httpd_resp *resp)
{
    return resp->conn->peer;
}

int dp_httpd_resp_fd(const struct dp_httpd_resp *resp)
{
    return resp->conn->fd;
}

void *dp_httpd_resp_transport(const struct dp_httpd_resp *resp)
{
    return resp->conn->tctx;
}

void dp_httpd_resp_hold(struct dp_httpd_resp *resp, dp_httpd_abort_cb *on_abort, void *arg)
{
    DP_BUG_ON(resp->conn->state != CS_HANDLER);
    resp->held = true;
    resp->on_abort = on_abort;
    resp->abort_arg = arg;
}

void dp_httpd_resp_finish(struct dp_httpd_resp *resp)
{
    struct conn *c = resp->conn;
    DP_BUG_ON(resp->done || resp->streaming);
    if (c->dead) {
        /* the connection died after the owner last looked: just forget the response */
        resp->done = true;
        resp->on_abort = NULL;
        return;
    }
    bool from_handler = c->state == CS_HANDLER;
    resp_send(resp);
    if (!from_handler)
        conn_update(c); /* completion is noticed on the next writable event */
}

int dp_httpd_resp_stream_start(struct dp_httpd_resp *resp, const char *content_type,
                               dp_httpd_abort_cb *on_abort, void *arg)
{
    struct conn *c = resp->conn;
    int r;

    DP_BUG_ON(resp->done || resp->streaming);
    DP_BUG_ON(c->state != CS_HANDLER && c->state != CS_HELD);
    if (content_type == NULL)
        content_type = "application/x-ndjson";
    if (!dp_http_header_ok("Content-Type", content_type))
        return -EINVAL;
    resp->streaming = true;
    resp->on_abort = on_abort;
    resp->abort_arg = arg;
    resp->chunked = c->parser.req.version_minor >= 1;
    if (!resp->chunked)
        c->close_after = true; /* HTTP/1.0: the body ends with the connection */
    if (resp->close)
        c->close_after = true;
    r = dp_http_append_status(&c->wbuf, resp->status, NULL, 0);
    if (r >= 0 && resp->hdrs->len > 0)
        r = dp_buf_append(&c->wbuf, dp_buf_head(resp->hdrs), resp->hdrs->len);
    if (r >= 0 && !resp->has_ctype)
        r = dp_buf_appendf(&c->wbuf, "Content-Type: %s\r\n", content_type);
    if (r >= 0 && resp->chunked)
        r = dp_buf_append_str(&c->wbuf, "Transfer-Encoding: chunked\r\n");
    if (r >= 0 && c->close_after)
        r = dp_buf_append_str(&c->wbuf, "Connection: close\r\n");
    if (r >= 0)
        r = dp_http_append_head_end(&c->wbuf);
    bool from_handler = c->state == CS_HANDLER;
    c->state = CS_STREAM;
    if (r < 0) {
        conn_kill(c, "response too large");
        return 0; /* on_abort follows */
    }
    if (resp->body->len > 0 && !resp->head_only) {
        r = resp->chunked ? dp_http_append_chunk(&c->wbuf, dp_buf_head(resp->body), resp->body->len)
                          : dp_buf_append(&c->wbuf, dp_buf_head(resp->body), resp->body->len);
        dp_buf_reset(resp->body);
        if (r < 0) {
            conn_kill(c, "response too large");
            return 0;
        }
    }
    try_write(c);
    if (!from_handler)
        conn_update(c);
    return 0;
}

int dp_httpd_resp_stream_write(struct dp_httpd_resp *resp, const void *data, size_t len)
{
    struct conn *c = resp->conn;
    int r = 0;

    DP_BUG_ON(!resp->streaming || resp->done);
    if (c->dead)
        goto broken;
    if (len == 0 || resp->head_only)
        return 0;
    if (c->wbuf->len + len > c->srv->cfg.max_stream_pending)
        return -ENOBUFS;
    r = resp->chunked ? dp_http_append_chunk(&c->wbuf, data, len)
                      : dp_buf_append(&c->wbuf, data, len);
    if (r < 0)
        return -ENOBUFS;
    if (try_write(c) < 0)
        goto broken;
    if (c->state != CS_HANDLER)
        conn_update(c);
    return 0;

broken:
    /* terminal: the owner learns it here, so on_abort must not tell it again */
    resp->done = true;
    resp->on_abort = NULL;
    return -EPIPE;
}

size_t dp_httpd_resp_pending(const struct dp_httpd_resp *resp)
{
    return resp->conn->dead ? 0 : resp->conn->wbuf->len;
}

void dp_httpd_resp_stream_end(struct dp_httpd_resp *resp)
{
    struct conn *c = resp->conn;
    DP_BUG_ON(!resp->streaming || resp->done);
    resp->done = true;
    resp->on_abort = NULL;
    if (c->dead)
        return;
    if (resp->chunked && !resp->head_only && dp_http_append_last_chunk(&c->wbuf) < 0) {
        conn_kill(c, "response too large");
        return;
    }
    c->state = CS_WRITE;
    if (try_write(c) < 0)
        return;
    conn_update(c);
}
