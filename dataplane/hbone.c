/*
 * hbone.c — HBONE client and server (hbone.h): struct hbc = one mTLS HTTP/2 connection,
 * struct hbs = one CONNECT stream spliced to a TCP fd.
 *
 * Data path and copies. Receive: SSL_read (decrypt) into a stack buffer -> nghttp2
 * mem_recv -> on_data_chunk_recv writes straight to the stream's fd; only what the fd does
 * not take is copied into the stream's to_fd buffer. Send: read(2) from the fd into the
 * stream's to_h2 buffer -> DATA frames use NGHTTP2_DATA_FLAG_NO_COPY, and send_data copies
 * frame header + payload once into the connection's out buffer, which is written with few,
 * large SSL_write calls so TLS records are full (16 KiB). So: one memcpy per direction
 * besides the kernel copies and the cipher itself.
 *
 * Windows: automatic WINDOW_UPDATE is off. The stream window is returned only after bytes
 * reached the fd (that is the back-pressure towards the sender). The connection window is
 * returned at once while the connection's total buffered bytes stay under conn_window, so
 * one slow reader does not stall its siblings, yet a peer cannot make us buffer without
 * bound.
 *
 * Lifetimes. An hbs lives until (a) its done callback ran (from its dp_defer) and (b)
 * nghttp2 is finished with the stream (on_stream_close, or the session is gone). An hbc
 * lives until it is closed and its last hbs is freed; then on_conn_done runs from its
 * defer. Nothing is freed inside a callback that still uses it.
 *
 * Size: this file is above STYLE.md's ~1,500-line mark on purpose. Client and server share
 * the nghttp2 callbacks, the pump and ~20 small hbc/hbs helpers; splitting would turn those
 * into exported symbols of the library. Sections are in order: helpers, stream lifecycle,
 * connection pump, nghttp2 callbacks (server request checks, client response), connection
 * lifecycle, server entry points, client pool.
 */
#include "hbone.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "buf.h"
#include "log.h"

#define OUT_HIGH      (256u * 1024)  /* stop generating frames above this many queued bytes */
#define OUT_LIMIT     (4096u * 1024) /* hard cap of the out buffer */
#define READ_CHUNK    (64u * 1024)
#define READ_BUDGET   (4u * 1024 * 1024) /* bytes decrypted per io event before yielding */
#define MAX_DATA_SEND (64u * 1024) /* largest DATA payload per frame (see on_h2_data_length) */
#define HDR_VAL_MAX   4096

enum hbc_state { HBC_CONNECTING, HBC_HANDSHAKE, HBC_READY, HBC_CLOSED };

enum hbs_state {
    HBS_REQUEST,    /* server: headers arriving / client: waiting for the response */
    HBS_UPSTREAM,   /* server: connecting to the upstream */
    HBS_RESPONDING, /* server: error response queued, waiting for the stream to end */
    HBS_SPLICE,
    HBS_DONE,
};

static const char *hbc_state_str(enum hbc_state st)
{
    static const char *const names[] = {"connecting", "handshake", "ready", "closed"};
    return names[st];
}

struct hbc {
    struct dp_loop *loop;
    enum hbc_state st;
    bool server;
    bool insecure;
    bool reusable;    /* client: may take new streams */
    bool goaway_recv; /* peer said GOAWAY */
    bool draining;    /* drain requested */
    bool read_wants_write;
    bool write_wants_read;
    bool fatal;     /* set inside nghttp2 callbacks: close after the current pump */
    bool read_more; /* read budget hit: TLS may hold records the fd will not announce */
    int fd;
    struct dp_io io;
    struct dp_tls *tls;
    struct dp_identity *id;
    nghttp2_session *h2;
    struct dp_buf *out;
    struct dp_timer timer;       /* connect/handshake timeout, then idle timeout */
    struct dp_defer flush_defer; /* coalesced flush */
    struct dp_defer free_defer;
    struct dp_hbone_limits lim;
    struct dp_list streams; /* every live hbs */
    unsigned n_live;        /* hbs not yet freed */
    unsigned n_open;        /* hbs whose h2 stream is open */
    uint64_t buffered;      /* bytes received and not yet written to fds */
    uint64_t conn_owed;     /* connection window not yet returned */
    uint64_t flood_win_ms;
    unsigned settings_in_win;
    unsigned rst_in_win;
    char peer_id[DP_SPIFFE_MAX];
    char error[192];
    /* server */
    const struct dp_hbone_server_ops *ops;
    void *arg;
    struct sockaddr_storage peer_addr, local_addr;
    /* client */
    struct dp_hbone_pool *pool;
    struct dp_list pool_link; /* in pool->conns while reusable */
    struct dp_list all_link;  /* in pool->all until freed */
    char *key;
    struct sockaddr_storage dst;
    socklen_t dst_len;
};

/* Client: what is needed to send the CONNECT again on another connection when the peer
 * refused the stream unprocessed (REFUSED_STREAM, or beyond a GOAWAY's last stream id).
 * Kept only until the response arrives. */
struct hbs_req {
    struct dp_hbone_pool *pool;
    struct dp_identity *src_id;
    struct sockaddr_storage dst;
    socklen_t dst_len;
    char *sans[DP_TLS_MAX_SANS];
    unsigned n_sans;
    uint64_t scope;
    dp_hbone_socket_fn *open_socket;
    void *open_arg;
    char *authority;
    char *baggage;
    char *forwarded;
    char traceparent[56];
    unsigned retries;
};

struct hbs {
    struct hbc *c;
    struct hbs_req *creq; /* client, until the response */
    bool retry_pending;
    struct dp_list link;
    enum hbs_state st;
    int32_t id;
    int fd;
    struct dp_io io;
    struct dp_timer timer;
    struct dp_defer defer;
    struct dp_buf *to_h2; /* read from fd, to send as DATA */
    struct dp_buf *to_fd; /* received DATA, to write to fd */
    bool fd_eof;          /* read side of fd saw EOF */
    bool es_sent;         /* END_STREAM sent */
    bool es_recv;         /* END_STREAM received */
    bool wr_shut;         /* shutdown(SHUT_WR) done */
    bool data_deferred;   /* data provider returned DEFERRED */
    bool h2_gone;         /* nghttp2 no longer knows the stream */
    bool finished;        /* finish() ran */
    bool done_called;
    bool rst_fd; /* close fd with RST */
    uint32_t hdr_bytes;
    bool hdr_too_big;
    struct dp_hbs_stats stats;
    /* client */
    dp_hbs_response_cb *on_response;
    dp_hbs_done_cb *on_done;
    void *arg;
    /* server request */
    struct dp_hbone_request req;
    char *method;
    char *authority;
    char *baggage;
    char *forwarded;
    char *traceparent;
    bool has_protocol;
};

struct dp_hbone_pool {
    struct dp_loop *loop;
    struct dp_hbone_limits lim;
    struct dp_list conns; /* reusable connections */
    struct dp_list all;   /* every connection not yet freed */
};

static void hbc_close(struct hbc *c, const char *error);
static void hbc_schedule_flush(struct hbc *c);
static void hbc_update_io(struct hbc *c);
static void hbs_finish(struct hbs *s, const char *error);
static void hbs_update_io(struct hbs *s);
static void hbs_start_splice(struct hbs *s);
static void hbs_try_complete(struct hbs *s);

void dp_hbone_limits_default(struct dp_hbone_limits *lim)
{
    *lim = (struct dp_hbone_limits){
            .stream_window = 4u << 20,
            .conn_window = 16u << 20,
            .max_frame = 1u << 20,
            .max_streams = 100,
            .max_header_list = 16u << 10,
            .max_settings = 32,
            .max_settings_per_s = 100,
            .max_rst_per_s = 200,
            .splice_buf = 256u << 10,
            .idle_timeout_ms = 5u * 60 * 1000,
            .handshake_timeout_ms = 10u * 1000,
            .connect_timeout_ms = 10u * 1000,
    };
}

/* ------------------------------------------------------------------ helpers */

int dp_hbone_parse_authority(const char *s, size_t len, struct sockaddr_storage *ret_addr,
                             socklen_t *ret_len, const char **ret_err)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port_s, *err;
    struct sockaddr_storage ss;
    size_t hlen;
    unsigned long port = 0;

    memset(&ss, 0, sizeof(ss));
    if (s == NULL || len == 0) {
        err = "empty authority";
        goto fail;
    }
    if (len > 64) {
        err = "authority too long";
        goto fail;
    }
    if (s[0] == '[') {
        const char *rb = memchr(s, ']', len);
        if (rb == NULL || rb + 1 >= s + len || rb[1] != ':') {
            err = "bad [v6]:port authority";
            goto fail;
        }
        hlen = (size_t)(rb - s - 1);
        port_s = rb + 2;
        if (hlen == 0 || hlen >= sizeof(host)) {
            err = "bad IPv6 address";
            goto fail;
        }
        memcpy(host, s + 1, hlen);
    } else {
        const char *colon = memrchr(s, ':', len);
        if (colon == NULL) {
            err = "authority has no port";
            goto fail;
        }
        hlen = (size_t)(colon - s);
        port_s = colon + 1;
        if (hlen == 0 || hlen >= sizeof(host)) {
            err = "bad IPv4 address";
            goto fail;
        }
        memcpy(host, s, hlen);
    }
    host[hlen] = '\0';
    if (port_s >= s + len || (size_t)(s + len - port_s) > 5) {
        err = "bad port";
        goto fail;
    }
    for (const char *p = port_s; p < s + len; p++) {
        if (*p < '0' || *p > '9') {
            err = "bad port";
            goto fail;
        }
        port = port * 10 + (unsigned long)(*p - '0');
    }
    if (port == 0 || port > 65535 || (port_s[0] == '0')) {
        err = "port out of range";
        goto fail;
    }
    if (s[0] == '[') {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1) {
            err = "bad IPv6 address";
            goto fail;
        }
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *ret_len = sizeof(*a6);
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        if (strchr(host, ':') != NULL || inet_pton(AF_INET, host, &a4->sin_addr) != 1) {
            err = "authority is not an IP address";
            goto fail;
        }
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *ret_len = sizeof(*a4);
    }
    *ret_addr = ss;
    return 0;
fail:
    if (ret_err != NULL)
        *ret_err = err;
    return -EINVAL;
}

void dp_hbone_traceparent(char out[56])
{
    unsigned char rnd[24];
    static const char hex[] = "0123456789abcdef";
    char *p = out;

    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        uint64_t t = dp_now_us();
        for (size_t i = 0; i < sizeof(rnd); i++)
            rnd[i] = (unsigned char)(t >> ((i % 8) * 8)) ^ (unsigned char)(i * 131);
    }
    rnd[0] |= 1; /* all-zero ids are invalid */
    rnd[16] |= 1;
    memcpy(p, "00-", 3);
    p += 3;
    for (int i = 0; i < 16; i++) {
        *p++ = hex[rnd[i] >> 4];
        *p++ = hex[rnd[i] & 15];
    }
    *p++ = '-';
    for (int i = 16; i < 24; i++) {
        *p++ = hex[rnd[i] >> 4];
        *p++ = hex[rnd[i] & 15];
    }
    memcpy(p, "-00", 4);
}

static bool header_value_ok(const char *v)
{
    size_t n = strlen(v);
    if (n > HDR_VAL_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (v[i] == '\r' || v[i] == '\n')
            return false;
    return true;
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK))
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void close_fd(int fd, bool rst)
{
    if (fd < 0)
        return;
    if (rst) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(fd);
}

/* ------------------------------------------------------------------ stream lifecycle */

static struct hbs *hbs_new(struct hbc *c)
{
    struct hbs *s = dp_xmalloc(sizeof(*s));

    s->c = c;
    s->fd = -1;
    s->id = -1;
    dp_io_init(&s->io, -1, NULL, s);
    dp_timer_init(&s->timer, NULL, s);
    dp_list_init(&s->link);
    dp_list_add_tail(&c->streams, &s->link);
    c->n_live++;
    s->stats.start_ms = dp_now_ms();
    s->stats.response_flags = "-";
    /* the hbc outlives its streams, so its peer_id can be lent out */
    s->stats.peer_id = c->peer_id;
    s->req.peer_id = c->peer_id;
    return s;
}

static void hbs_req_free(struct hbs_req *q)
{
    if (q == NULL)
        return;
    dp_identity_unref(q->src_id);
    for (unsigned i = 0; i < q->n_sans; i++)
        free(q->sans[i]);
    free(q->authority);
    free(q->baggage);
    free(q->forwarded);
    free(q);
}

static void hbs_free(struct hbs *s)
{
    struct hbc *c = s->c;

    dp_defer_cancel(&s->defer);
    dp_timer_cancel(&s->timer);
    if (s->io.registered)
        dp_loop_del_io(c->loop, &s->io);
    close_fd(s->fd, s->rst_fd);
    if (s->to_fd != NULL) {
        c->buffered -= s->to_fd->len;
        dp_buf_free(s->to_fd);
        if (c->h2 != NULL && c->conn_owed > 0 && c->buffered < c->lim.conn_window) {
            nghttp2_session_consume_connection(c->h2, c->conn_owed);
            c->conn_owed = 0;
            hbc_schedule_flush(c);
        }
    }
    dp_buf_free(s->to_h2);
    hbs_req_free(s->creq);
    free(s->method);
    free(s->authority);
    free(s->baggage);
    free(s->forwarded);
    free(s->traceparent);
    dp_list_del(&s->link);
    c->n_live--;
    free(s);
    if (c->st == HBC_CLOSED && c->n_live == 0)
        dp_loop_defer(c->loop, &c->free_defer);
}

/* Runs after dispatch: call the done callback once, free when nghttp2 is done with us. */
static void hbs_retry(struct hbs *s);

static void on_hbs_defer(struct dp_loop *loop, void *arg)
{
    struct hbs *s = arg;
    struct hbc *c = s->c;
    (void)loop;

    if (s->retry_pending && !s->finished) {
        s->retry_pending = false;
        hbs_retry(s);
        return;
    }
    if (s->finished && !s->done_called) {
        s->done_called = true;
        s->stats.end_ms = dp_now_ms();
        if (c->server) {
            if (c->ops->on_stream_done != NULL)
                c->ops->on_stream_done(c->arg, &s->req, &s->stats);
        } else if (s->on_done != NULL) {
            s->on_done(s, &s->stats, s->arg);
        }
    }
    if (s->done_called && s->h2_gone)
        hbs_free(s);
}

static void hbs_set_error(struct hbs *s, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void hbs_set_error(struct hbs *s, const char *fmt, ...)
{
    va_list ap;
    if (s->stats.error[0] != '\0')
        return;
    va_start(ap, fmt);
    vsnprintf(s->stats.error, sizeof(s->stats.error), fmt, ap);
    va_end(ap);
}

/* Mark the h2 side gone (stream closed or session destroyed). */
static void hbs_h2_gone(struct hbs *s)
{
    if (s->h2_gone)
        return;
    s->h2_gone = true;
    if (s->id > 0 && s->c->n_open > 0)
        s->c->n_open--;
    if (s->finished)
        dp_loop_defer(s->c->loop, &s->defer);
}

/* Terminal: stop fd io, close the fd, RST the h2 stream if still open, schedule done. */
static void hbs_finish(struct hbs *s, const char *error)
{
    struct hbc *c = s->c;

    if (s->finished)
        return;
    if (error != NULL && error[0] != '\0')
        hbs_set_error(s, "%s", error);
    s->finished = true;
    s->st = HBS_DONE;
    dp_timer_cancel(&s->timer);
    if (s->io.registered)
        dp_loop_del_io(c->loop, &s->io);
    close_fd(s->fd, s->rst_fd);
    s->fd = -1;
    if (!s->h2_gone && c->h2 != NULL && s->id > 0) {
        nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, s->id,
                                  s->rst_fd ? NGHTTP2_CONNECT_ERROR : NGHTTP2_CANCEL);
        hbc_schedule_flush(c);
    } else if (c->h2 == NULL) {
        s->h2_gone = true;
    }
    dp_loop_defer(c->loop, &s->defer);
}

/* Return stream-level window for n bytes delivered to the fd, and connection-level window
 * owed while the connection is under its buffering budget. */
static void hbs_delivered(struct hbs *s, size_t n, bool was_buffered)
{
    struct hbc *c = s->c;

    s->stats.bytes_out += n;
    if (was_buffered)
        c->buffered -= n;
    if (c->h2 == NULL)
        return;
    if (!s->h2_gone && s->id > 0)
        nghttp2_session_consume_stream(c->h2, s->id, n);
    if (c->conn_owed > 0 && c->buffered < c->lim.conn_window) {
        nghttp2_session_consume_connection(c->h2, c->conn_owed);
        c->conn_owed = 0;
    }
    hbc_schedule_flush(c);
}

/* Both directions finished cleanly? */
static void hbs_try_complete(struct hbs *s)
{
    if (s->finished)
        return;
    if (s->es_recv && (s->to_fd == NULL || s->to_fd->len == 0) && !s->wr_shut && s->fd >= 0 &&
        s->st == HBS_SPLICE) {
        shutdown(s->fd, SHUT_WR);
        s->wr_shut = true;
    }
    if (s->h2_gone && s->wr_shut && s->es_sent)
        hbs_finish(s, NULL);
}

static void hbs_update_io(struct hbs *s)
{
    unsigned ev = 0;

    if (s->finished || s->fd < 0)
        return;
    if (s->st == HBS_UPSTREAM) {
        ev = DP_EV_WRITE;
    } else if (s->st == HBS_SPLICE) {
        if (!s->fd_eof && (s->to_h2 == NULL || s->to_h2->len < s->to_h2->limit))
            ev |= DP_EV_READ;
        if (s->to_fd != NULL && s->to_fd->len > 0)
            ev |= DP_EV_WRITE;
    }
    if (!s->io.registered)
        dp_loop_add_io(s->c->loop, &s->io, ev);
    else if (s->io.events != ev)
        dp_loop_mod_io(s->c->loop, &s->io, ev);
}

static void hbs_resume_data(struct hbs *s)
{
    struct hbc *c = s->c;
    if (s->data_deferred && !s->h2_gone && c->h2 != NULL) {
        s->data_deferred = false;
        nghttp2_session_resume_data(c->h2, s->id);
    }
    hbc_schedule_flush(c);
}

static void hbs_fd_read(struct hbs *s)
{
    struct hbc *c = s->c;
    ssize_t n;
    int r;

    if (s->to_h2 == NULL) {
        r = dp_buf_new(DP_MIN(64u * 1024, c->lim.splice_buf), c->lim.splice_buf, &s->to_h2);
        if (r < 0) {
            hbs_finish(s, "out of memory");
            return;
        }
    }
    while (s->to_h2->len < s->to_h2->limit) {
        n = dp_buf_read_fd(&s->to_h2, s->fd, s->to_h2->limit - s->to_h2->len);
        if (n == -EAGAIN || n == -EMSGSIZE)
            break;
        if (n == 0) {
            s->fd_eof = true;
            break;
        }
        if (n < 0) {
            s->rst_fd = true;
            hbs_set_error(s, "read from local socket: %s", strerror((int)-n));
            hbs_finish(s, NULL);
            return;
        }
        /* one read of a partial buffer usually means the socket is drained */
        if ((size_t)n < 16u * 1024)
            break;
    }
    hbs_resume_data(s);
    hbs_update_io(s);
}

static void hbs_fd_write(struct hbs *s)
{
    while (s->to_fd != NULL && s->to_fd->len > 0) {
        ssize_t n = dp_buf_write_fd(s->to_fd, s->fd);
        if (n == -EAGAIN)
            break;
        if (n < 0) {
            s->rst_fd = true;
            hbs_set_error(s, "write to local socket: %s", strerror((int)-n));
            hbs_finish(s, NULL);
            return;
        }
        hbs_delivered(s, (size_t)n, true);
    }
    if (s->to_fd != NULL && s->to_fd->len == 0) {
        dp_buf_free(s->to_fd);
        s->to_fd = NULL;
    }
    hbs_try_complete(s);
    hbs_update_io(s);
}

static int submit_status(struct hbs *s, int status);

static void on_upstream_connected(struct hbs *s)
{
    int err = 0;
    socklen_t el = sizeof(err);

    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
        err = errno;
    if (err != 0) {
        hbs_set_error(s, "upstream connect: %s", strerror(err));
        s->stats.response_flags = "CONNECT";
        submit_status(s, 503);
        return;
    }
    dp_timer_cancel(&s->timer);
    submit_status(s, 200);
}

static void on_hbs_io(struct dp_loop *loop, int fd, unsigned events, void *arg)
{
    struct hbs *s = arg;
    (void)loop;
    (void)fd;

    if (s->finished)
        return;
    if (s->st == HBS_UPSTREAM) {
        on_upstream_connected(s);
        return;
    }
    if (events & (DP_EV_WRITE | DP_EV_ERROR))
        hbs_fd_write(s);
    if (!s->finished && (events & (DP_EV_READ | DP_EV_ERROR)) && !s->fd_eof)
        hbs_fd_read(s);
}

static void on_hbs_timer(struct dp_loop *loop, void *arg)
{
    struct hbs *s = arg;
    (void)loop;

    if (s->st == HBS_UPSTREAM) {
        hbs_set_error(s, "upstream connect: timed out");
        s->stats.response_flags = "CONNECT";
        submit_status(s, 503);
    } else if (!s->c->server && s->st == HBS_REQUEST && !s->finished) {
        hbs_set_error(s, "no response to CONNECT in time");
        s->stats.response_flags = "CONNECT";
        if (s->on_response != NULL)
            s->on_response(s, 0, s->stats.error, s->arg);
        s->rst_fd = true;
        hbs_finish(s, NULL);
    }
}

static void hbs_start_splice(struct hbs *s)
{
    s->st = HBS_SPLICE;
    if (!s->io.registered)
        dp_io_init(&s->io, s->fd, on_hbs_io, s);
    /* data that arrived before the splice started (buffered in to_fd) goes out now */
    hbs_update_io(s);
    hbs_try_complete(s);
}

/* ------------------------------------------------------------------ connection pump */

static ssize_t transport_read(struct hbc *c, void *buf, size_t len)
{
    if (c->tls != NULL)
        return dp_tls_read(c->tls, buf, len);
    for (;;) {
        ssize_t n = read(c->fd, buf, len);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        return -errno;
    }
}

static ssize_t transport_write(struct hbc *c, const void *buf, size_t len)
{
    if (c->tls != NULL)
        return dp_tls_write(c->tls, buf, len);
    for (;;) {
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        return -errno;
    }
}

static size_t out_len(const struct hbc *c)
{
    return c->out != NULL ? c->out->len : 0;
}

/* The frame buffer exists only while frames are queued (idle connections stay small). */
static int out_ensure(struct hbc *c)
{
    if (c->out != NULL)
        return 0;
    return dp_buf_new(32u * 1024, OUT_LIMIT, &c->out);
}

static void hbc_update_io(struct hbc *c)
{
    unsigned ev = 0;

    if (c->st == HBC_CLOSED)
        return;
    switch (c->st) {
    case HBC_CONNECTING:
        ev = DP_EV_WRITE;
        break;
    case HBC_HANDSHAKE:
        ev = c->tls ? dp_tls_want(c->tls) : DP_EV_READ;
        if (ev == 0)
            ev = DP_EV_READ;
        break;
    default:
        ev = DP_EV_READ;
        if ((c->out != NULL && c->out->len > 0) || c->read_wants_write ||
            (c->tls != NULL && dp_tls_wpending(c->tls)))
            ev |= DP_EV_WRITE;
        break;
    }
    if (!c->io.registered) {
        if (dp_loop_add_io(c->loop, &c->io, ev) < 0)
            hbc_close(c, "cannot register socket");
    } else if (c->io.events != ev) {
        dp_loop_mod_io(c->loop, &c->io, ev);
    }
}

static void hbc_arm_idle(struct hbc *c)
{
    if (c->st != HBC_READY)
        return;
    /* the server waits twice as long as clients pool, so it rarely races a client's reuse */
    if (c->n_open == 0)
        dp_timer_arm(c->loop, &c->timer,
                     c->server ? 2 * c->lim.idle_timeout_ms : c->lim.idle_timeout_ms);
    else
        dp_timer_cancel(&c->timer);
}

/* Generate frames into out and write out to the transport until blocked or idle. */
static int hbc_flush(struct hbc *c)
{
    if (c->st != HBC_READY || c->h2 == NULL)
        return 0;
    if (c->tls != NULL && dp_tls_wpending(c->tls)) {
        int r = dp_tls_flush(c->tls);
        if (r < 0 && r != -EAGAIN) {
            snprintf(c->error, sizeof(c->error), "write: %s", strerror(-r));
            return r;
        }
    }
    for (;;) {
        if (out_len(c) < OUT_HIGH) {
            int rv = nghttp2_session_send(c->h2);
            if (rv != 0) {
                snprintf(c->error, sizeof(c->error), "h2 send: %s", nghttp2_strerror(rv));
                return -EPROTO;
            }
        }
        if (out_len(c) == 0)
            break;
        ssize_t n = transport_write(c, dp_buf_head(c->out), c->out->len);
        if (n == -EAGAIN) {
            c->write_wants_read = c->tls && dp_tls_want(c->tls) == DP_EV_READ;
            break;
        }
        if (n < 0) {
            snprintf(c->error, sizeof(c->error), "write: %s",
                     c->tls && dp_tls_error(c->tls)[0] ? dp_tls_error(c->tls) : strerror((int)-n));
            return (int)n;
        }
        c->write_wants_read = false;
        dp_buf_consume(c->out, (size_t)n);
    }
    if (c->out != NULL && c->out->len == 0) {
        /* idle connections keep no frame buffer */
        dp_buf_free(c->out);
        c->out = NULL;
    }
    if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2) &&
        out_len(c) == 0 && (c->tls == NULL || !dp_tls_wpending(c->tls))) {
        hbc_close(c, c->error[0] ? c->error : NULL);
        return -ECONNRESET;
    }
    hbc_arm_idle(c);
    hbc_update_io(c);
    return 0;
}

static int hbc_pump_read(struct hbc *c);

static void on_flush_defer(struct dp_loop *loop, void *arg)
{
    struct hbc *c = arg;
    (void)loop;
    if (c->st == HBC_READY && c->read_more) {
        c->read_more = false;
        if (hbc_pump_read(c) < 0) {
            hbc_flush(c);
            hbc_close(c, c->error);
            return;
        }
    }
    if (c->st == HBC_READY && hbc_flush(c) < 0)
        hbc_close(c, c->error);
}

static void hbc_schedule_flush(struct hbc *c)
{
    if (c->st == HBC_READY)
        dp_loop_defer(c->loop, &c->flush_defer);
}

static int hbc_feed(struct hbc *c, const uint8_t *buf, size_t n)
{
    ssize_t rv = nghttp2_session_mem_recv(c->h2, buf, n);
    if (c->fatal)
        return -EPROTO;
    if (rv < 0) {
        if (c->error[0] == '\0')
            snprintf(c->error, sizeof(c->error), "h2: %s", nghttp2_strerror((int)rv));
        return -EPROTO;
    }
    return 0;
}

static int hbc_pump_read(struct hbc *c)
{
    uint8_t buf[READ_CHUNK];
    size_t total = 0;

    while (total < READ_BUDGET && c->st == HBC_READY) {
        size_t fill = 0;
        ssize_t n = 0;
        /* gather several records first: one mem_recv, and fewer, larger writes to the fds */
        while (fill < sizeof(buf)) {
            n = transport_read(c, buf + fill, sizeof(buf) - fill);
            if (n <= 0)
                break;
            fill += (size_t)n;
        }
        if (fill > 0) {
            int r;
            total += fill;
            r = hbc_feed(c, buf, fill);
            if (r < 0)
                return r;
        }
        if (n == -EAGAIN) {
            c->read_wants_write = c->tls && dp_tls_want(c->tls) == DP_EV_WRITE;
            return 0;
        }
        c->read_wants_write = false;
        if (n == 0) {
            snprintf(c->error, sizeof(c->error), "%s", "connection closed by peer");
            return -ECONNRESET;
        }
        if (n < 0) {
            snprintf(c->error, sizeof(c->error), "read: %s",
                     c->tls && dp_tls_error(c->tls)[0] ? dp_tls_error(c->tls) : strerror((int)-n));
            return (int)n;
        }
    }
    if (total >= READ_BUDGET) {
        /* fairness: yield, continue from the defer stage (read-ahead data sits inside
         * OpenSSL, so epoll would not tell us about it) */
        c->read_more = true;
        hbc_schedule_flush(c);
    }
    return 0;
}

static void on_hbc_timer(struct dp_loop *loop, void *arg)
{
    struct hbc *c = arg;
    (void)loop;

    if (c->st == HBC_CONNECTING || c->st == HBC_HANDSHAKE) {
        if (c->error[0] == '\0')
            snprintf(c->error, sizeof(c->error), "%s",
                     c->st == HBC_CONNECTING ? "connect timed out" : "handshake timed out");
        hbc_close(c, c->error);
        return;
    }
    if (c->n_open == 0 && c->h2 != NULL) {
        /* idle: say goodbye, close once flushed */
        c->reusable = false;
        dp_list_del(&c->pool_link);
        nghttp2_session_terminate_session(c->h2, NGHTTP2_NO_ERROR);
        if (hbc_flush(c) < 0)
            return;
        hbc_close(c, NULL);
    }
}

static void hbc_became_ready(struct hbc *c)
{
    c->st = HBC_READY;
    dp_timer_cancel(&c->timer);
    if (c->tls != NULL)
        snprintf(c->peer_id, sizeof(c->peer_id), "%s", dp_tls_peer_id(c->tls));
}

static void on_hbc_io(struct dp_loop *loop, int fd, unsigned events, void *arg)
{
    struct hbc *c = arg;
    int r;
    (void)loop;
    (void)fd;

    if (c->st == HBC_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
            err = errno;
        if (err != 0) {
            snprintf(c->error, sizeof(c->error), "connect: %s", strerror(err));
            hbc_close(c, c->error);
            return;
        }
        c->st = HBC_HANDSHAKE;
    }
    if (c->st == HBC_HANDSHAKE) {
        r = c->tls ? dp_tls_handshake(c->tls) : 0;
        if (r == -EAGAIN) {
            hbc_update_io(c);
            return;
        }
        if (r < 0) {
            snprintf(c->error, sizeof(c->error), "%s",
                     dp_tls_error(c->tls)[0] ? dp_tls_error(c->tls) : strerror(-r));
            hbc_close(c, c->error);
            return;
        }
        hbc_became_ready(c);
        events |= DP_EV_READ; /* TLS may already hold application data */
    }
    if ((events & (DP_EV_READ | DP_EV_ERROR)) || c->read_wants_write || c->write_wants_read ||
        (c->tls && dp_tls_pending(c->tls))) {
        if (hbc_pump_read(c) < 0) {
            /* try to get a GOAWAY out, then close */
            if (c->h2 != NULL && c->st == HBC_READY)
                hbc_flush(c);
            hbc_close(c, c->error);
            return;
        }
    }
    if (c->st == HBC_READY && hbc_flush(c) < 0)
        hbc_close(c, c->error);
}

/* ------------------------------------------------------------------ nghttp2 callbacks */

static struct hbs *stream_of(struct hbc *c, int32_t id)
{
    return c->h2 ? nghttp2_session_get_stream_user_data(c->h2, id) : NULL;
}

static ssize_t on_h2_send(nghttp2_session *h2, const uint8_t *data, size_t len, int flags,
                          void *user)
{
    struct hbc *c = user;
    size_t room;
    (void)h2;
    (void)flags;

    if (out_len(c) >= OUT_HIGH)
        return NGHTTP2_ERR_WOULDBLOCK;
    if (out_ensure(c) < 0)
        return NGHTTP2_ERR_WOULDBLOCK;
    room = OUT_LIMIT - c->out->len;
    if (len > room)
        len = room;
    if (dp_buf_append(&c->out, data, len) < 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return (ssize_t)len;
}

static int on_h2_send_data(nghttp2_session *h2, nghttp2_frame *frame, const uint8_t *framehd,
                           size_t length, nghttp2_data_source *source, void *user)
{
    struct hbc *c = user;
    struct hbs *s = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
    (void)source;

    if (s == NULL || s->to_h2 == NULL || s->to_h2->len < length)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (out_len(c) >= OUT_HIGH)
        return NGHTTP2_ERR_WOULDBLOCK;
    if (out_ensure(c) < 0 || dp_buf_reserve(&c->out, 9 + length) < 0)
        return NGHTTP2_ERR_WOULDBLOCK;
    memcpy(dp_buf_tail(c->out), framehd, 9);
    memcpy(dp_buf_tail(c->out) + 9, dp_buf_head(s->to_h2), length);
    dp_buf_commit(c->out, 9 + length);
    dp_buf_consume(s->to_h2, length);
    s->stats.bytes_in += length;
    if (s->to_h2->len == 0 && !s->fd_eof) {
        dp_buf_free(s->to_h2);
        s->to_h2 = NULL;
    }
    hbs_update_io(s); /* room again: resume reading the fd */
    return 0;
}

static ssize_t on_h2_data_read(nghttp2_session *h2, int32_t stream_id, uint8_t *buf, size_t length,
                               uint32_t *data_flags, nghttp2_data_source *source, void *user)
{
    struct hbs *s = nghttp2_session_get_stream_user_data(h2, stream_id);
    size_t avail;
    (void)buf;
    (void)source;
    (void)user;

    if (s == NULL || s->finished)
        return NGHTTP2_ERR_DEFERRED;
    if (s->st != HBS_SPLICE) {
        s->data_deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    avail = s->to_h2 ? s->to_h2->len : 0;
    if (avail == 0) {
        if (s->fd_eof) {
            *data_flags |= NGHTTP2_DATA_FLAG_EOF;
            return 0;
        }
        s->data_deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    if (avail > length)
        avail = length;
    *data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (s->fd_eof && avail == s->to_h2->len)
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)avail;
}

static ssize_t on_h2_data_length(nghttp2_session *h2, uint8_t frame_type, int32_t stream_id,
                                 int32_t session_remote_window_size,
                                 int32_t stream_remote_window_size, uint32_t remote_max_frame_size,
                                 void *user)
{
    struct hbs *s = nghttp2_session_get_stream_user_data(h2, stream_id);
    size_t avail = s != NULL && s->to_h2 != NULL ? s->to_h2->len : 0;
    ssize_t n = DP_MIN(session_remote_window_size, stream_remote_window_size);
    (void)frame_type;
    (void)user;
    if ((uint32_t)n > remote_max_frame_size)
        n = (ssize_t)remote_max_frame_size;
    /* nghttp2 grows its frame buffer to the largest length we ever return and keeps it,
     * although our payload bypasses it (NO_COPY): stay at the default 16 KiB unless there
     * is more data queued, and never above MAX_DATA_SEND */
    if ((size_t)n > DP_MAX(avail, (size_t)16384))
        n = (ssize_t)DP_MAX(avail, (size_t)16384);
    if (n > (ssize_t)MAX_DATA_SEND)
        n = (ssize_t)MAX_DATA_SEND;
    return n > 0 ? n : 1;
}

static bool flood_check(struct hbc *c, unsigned *counter, unsigned limit, const char *what)
{
    uint64_t now = dp_loop_now(c->loop);

    if (now - c->flood_win_ms >= 1000) {
        c->flood_win_ms = now;
        c->settings_in_win = 0;
        c->rst_in_win = 0;
    }
    if (++*counter > limit) {
        snprintf(c->error, sizeof(c->error), "%s flood (more than %u per second)", what, limit);
        nghttp2_session_terminate_session(c->h2, NGHTTP2_ENHANCE_YOUR_CALM);
        c->fatal = true;
        return false;
    }
    return true;
}

static int on_h2_begin_headers(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
    struct hbc *c = user;
    struct hbs *s;

    if (!c->server || frame->hd.type != NGHTTP2_HEADERS ||
        frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (c->n_open >= c->lim.max_streams) {
        nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    s = hbs_new(c);
    dp_defer_init(&s->defer, on_hbs_defer, s);
    s->id = frame->hd.stream_id;
    s->req.stream_id = (uint32_t)s->id;
    s->req.peer_addr = (const struct sockaddr *)&c->peer_addr;
    s->req.local_addr = (const struct sockaddr *)&c->local_addr;
    c->n_open++;
    nghttp2_session_set_stream_user_data(h2, s->id, s);
    return 0;
}

static int store_header(char **slot, const uint8_t *v, size_t vlen)
{
    if (*slot != NULL)
        return -EEXIST; /* duplicates are refused */
    *slot = strndup((const char *)v, vlen);
    return *slot ? 0 : -ENOMEM;
}

static int on_h2_header(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
                        size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *user)
{
    struct hbc *c = user;
    struct hbs *s = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
    char **slot = NULL;
    (void)flags;

    if (s == NULL || frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (!c->server) {
        if (namelen == 7 && memcmp(name, ":status", 7) == 0 && valuelen == 3) {
            int st = 0;
            for (size_t i = 0; i < 3; i++)
                st = st * 10 + (value[i] >= '0' && value[i] <= '9' ? value[i] - '0' : 0);
            s->stats.status = st;
        }
        return 0;
    }
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* trailers: ignored */
    s->hdr_bytes += (uint32_t)(namelen + valuelen + 32);
    if (s->hdr_bytes > c->lim.max_header_list) {
        s->hdr_too_big = true;
        return 0;
    }
    if (namelen == 7 && memcmp(name, ":method", 7) == 0)
        slot = &s->method;
    else if (namelen == 10 && memcmp(name, ":authority", 10) == 0)
        slot = &s->authority;
    else if (namelen == 9 && memcmp(name, ":protocol", 9) == 0)
        s->has_protocol = true;
    else if (namelen == 7 && memcmp(name, "baggage", 7) == 0)
        slot = &s->baggage;
    else if (namelen == 9 && memcmp(name, "forwarded", 9) == 0)
        slot = &s->forwarded;
    else if (namelen == 11 && memcmp(name, "traceparent", 11) == 0)
        slot = &s->traceparent;
    if (slot != NULL && store_header(slot, value, valuelen) == -ENOMEM)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

/* Queue a response. 200 starts the splice; anything else ends the stream. */
static int submit_status(struct hbs *s, int status)
{
    struct hbc *c = s->c;
    char st[4];
    nghttp2_nv nv[] = {{(uint8_t *)":status", (uint8_t *)st, 7, 3, NGHTTP2_NV_FLAG_NONE},
                       {(uint8_t *)"baggage", NULL, 7, 0, NGHTTP2_NV_FLAG_NONE}};
    size_t nnv = 1;
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = on_h2_data_read};
    int rv;

    snprintf(st, sizeof(st), "%03d", status);
    s->stats.status = status;
    dp_timer_cancel(&s->timer);
    if (c->h2 == NULL || s->h2_gone) {
        hbs_finish(s, "connection gone");
        return -ECONNRESET;
    }
    if (status == 200) {
        const char *bg = s->req.response_baggage;
        if (bg != NULL && bg[0] != '\0' && header_value_ok(bg)) {
            nv[1].value = (uint8_t *)bg;
            nv[1].valuelen = strlen(bg);
            nnv = 2;
        }
        rv = nghttp2_submit_response(c->h2, s->id, nv, nnv, &prd);
        if (rv == 0) {
            hbs_start_splice(s);
            hbc_schedule_flush(c);
            return 0;
        }
    } else {
        if (s->io.registered)
            dp_loop_del_io(c->loop, &s->io);
        close_fd(s->fd, false);
        s->fd = -1;
        s->st = HBS_RESPONDING;
        if (strcmp(s->stats.response_flags, "-") == 0)
            s->stats.response_flags = status == 401 ? "DENY" : "CONNECT";
        rv = nghttp2_submit_response(c->h2, s->id, nv, 1, NULL);
        if (rv == 0) {
            hbc_schedule_flush(c);
            return 0;
        }
    }
    hbs_set_error(s, "h2 submit: %s", nghttp2_strerror(rv));
    hbs_finish(s, NULL);
    return -EPROTO;
}

static int server_reject(struct hbs *s, int status, const char *why, const char *detail)
{
    if (detail != NULL)
        hbs_set_error(s, "%s: %s", why, detail);
    else
        hbs_set_error(s, "%s", why);
    return submit_status(s, status);
}

static int server_handle_request(struct hbc *c, struct hbs *s)
{
    const char *err = NULL;
    int fd;

    s->req.authority = s->authority;
    s->req.baggage = s->baggage;
    s->req.forwarded = s->forwarded;
    s->req.traceparent = s->traceparent;
    if (s->hdr_too_big)
        return server_reject(s, 400, "request header block too large", NULL);
    if (s->method == NULL || strcmp(s->method, "CONNECT") != 0)
        return server_reject(s, 400, "method must be CONNECT, got", s->method ? s->method : "none");
    if (s->has_protocol)
        return server_reject(s, 400, "extended CONNECT (:protocol) not supported", NULL);
    if (s->authority == NULL)
        return server_reject(s, 400, "CONNECT without :authority", NULL);
    if (dp_hbone_parse_authority(s->authority, strlen(s->authority), &s->req.target,
                                 &s->req.target_len, &err) < 0)
        return server_reject(s, 400, "bad :authority", err);
    if (c->ops->check_authority != NULL && c->ops->check_authority(c->arg, &s->req) != 0)
        return server_reject(s, 400, "authority not served here", s->authority);
    if (c->ops->authorize != NULL && c->ops->authorize(c->arg, &s->req) != 0) {
        s->stats.response_flags = "DENY";
        return server_reject(s, 401, "connection rejected by policy", NULL);
    }
    fd = c->ops->connect(c->arg, &s->req);
    if (fd < 0) {
        s->stats.response_flags = "CONNECT";
        return server_reject(s, 503, "upstream connect", strerror(-fd));
    }
    set_nonblock(fd);
    s->fd = fd;
    s->st = HBS_UPSTREAM;
    dp_io_init(&s->io, fd, on_hbs_io, s);
    dp_timer_init(&s->timer, on_hbs_timer, s);
    dp_timer_arm(c->loop, &s->timer, c->lim.connect_timeout_ms);
    hbs_update_io(s);
    return 0;
}

static void client_handle_response(struct hbc *c, struct hbs *s)
{
    int status = s->stats.status;
    char err[96];
    (void)c;

    if (s->st != HBS_REQUEST)
        return;
    dp_timer_cancel(&s->timer);
    hbs_req_free(s->creq); /* answered: no retry any more */
    s->creq = NULL;
    if (status == 200) {
        if (s->on_response != NULL)
            s->on_response(s, 200, "", s->arg);
        if (!s->finished)
            hbs_start_splice(s);
        hbs_resume_data(s);
        return;
    }
    snprintf(err, sizeof(err), "peer answered %d", status);
    hbs_set_error(s, "%s", err);
    s->stats.response_flags = status == 401 ? "DENY" : "CONNECT";
    if (s->on_response != NULL)
        s->on_response(s, status, s->stats.error, s->arg);
    s->rst_fd = true;
    hbs_finish(s, NULL);
}

static int on_h2_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
    struct hbc *c = user;
    struct hbs *s;
    (void)h2;

    switch (frame->hd.type) {
    case NGHTTP2_SETTINGS:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) &&
            !flood_check(c, &c->settings_in_win, c->lim.max_settings_per_s, "SETTINGS"))
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        return 0;
    case NGHTTP2_RST_STREAM:
        if (!flood_check(c, &c->rst_in_win, c->lim.max_rst_per_s, "RST_STREAM"))
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        return 0;
    case NGHTTP2_GOAWAY:
        c->goaway_recv = true;
        c->reusable = false;
        dp_list_del(&c->pool_link);
        return 0;
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
        break;
    default:
        return 0;
    }
    s = stream_of(c, frame->hd.stream_id);
    if (s == NULL)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && (frame->hd.flags & NGHTTP2_FLAG_END_HEADERS)) {
        if (c->server && frame->headers.cat == NGHTTP2_HCAT_REQUEST && s->st == HBS_REQUEST)
            server_handle_request(c, s);
        else if (!c->server && frame->headers.cat == NGHTTP2_HCAT_RESPONSE)
            client_handle_response(c, s);
    }
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        s->es_recv = true;
        hbs_try_complete(s);
    }
    return 0;
}

static int on_h2_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t stream_id,
                            const uint8_t *data, size_t len, void *user)
{
    struct hbc *c = user;
    struct hbs *s = nghttp2_session_get_stream_user_data(h2, stream_id);
    size_t off = 0;
    (void)flags;

    if (s == NULL || s->finished || s->st == HBS_RESPONDING) {
        /* nobody will read it: give the window back right away */
        nghttp2_session_consume(h2, stream_id, len);
        return 0;
    }
    if (s->st == HBS_SPLICE && (s->to_fd == NULL || s->to_fd->len == 0) && s->fd >= 0) {
        while (off < len) {
            ssize_t n = send(s->fd, data + off, len - off, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            if (n < 0) {
                s->rst_fd = true;
                hbs_set_error(s, "write to local socket: %s", strerror(errno));
                hbs_finish(s, NULL);
                nghttp2_session_consume_connection(h2, len);
                return 0;
            }
            off += (size_t)n;
        }
        if (off > 0) {
            s->stats.bytes_out += off;
            nghttp2_session_consume(h2, stream_id, off);
        }
    }
    if (off < len) {
        size_t rest = len - off;
        if (s->to_fd == NULL &&
            dp_buf_new(DP_MIN(rest, 64u * 1024), (size_t)c->lim.stream_window + c->lim.max_frame,
                       &s->to_fd) < 0)
            goto overflow;
        if (dp_buf_append(&s->to_fd, data + off, rest) < 0)
            goto overflow;
        c->buffered += rest;
        if (c->buffered < c->lim.conn_window) {
            nghttp2_session_consume_connection(h2, rest + c->conn_owed);
            c->conn_owed = 0;
        } else {
            c->conn_owed += rest;
        }
        hbs_update_io(s);
    }
    return 0;
overflow:
    /* the peer sent beyond the window we granted */
    hbs_set_error(s, "%s", "peer exceeded the stream window");
    nghttp2_session_consume(h2, stream_id, len - off);
    s->rst_fd = true;
    hbs_finish(s, NULL);
    return 0;
}

static int on_h2_frame_send(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
    struct hbc *c = user;
    struct hbs *s;

    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    s = stream_of(c, frame->hd.stream_id);
    if (s == NULL)
        return 0;
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        s->es_sent = true;
        if (s->st == HBS_RESPONDING && !s->es_recv)
            /* error answered: we do not want the request body */
            nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
        hbs_try_complete(s);
    }
    return 0;
}

static int on_h2_stream_close(nghttp2_session *h2, int32_t stream_id, uint32_t error_code,
                              void *user)
{
    struct hbc *c = user;
    struct hbs *s = nghttp2_session_get_stream_user_data(h2, stream_id);

    if (s == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(h2, stream_id, NULL);
    if (s->st == HBS_RESPONDING) {
        hbs_h2_gone(s);
        hbs_finish(s, NULL);
    } else if (error_code == NGHTTP2_REFUSED_STREAM && !c->server && s->st == HBS_REQUEST &&
               !s->finished && s->creq != NULL && s->creq->retries < 2) {
        /* not processed by the peer: safe to send again, from the defer stage */
        s->creq->retries++;
        s->retry_pending = true;
        hbs_h2_gone(s);
        dp_loop_defer(c->loop, &s->defer);
    } else if (error_code != NGHTTP2_NO_ERROR && !s->finished) {
        if (s->st == HBS_REQUEST && !c->server)
            s->stats.response_flags = "CONNECT";
        hbs_set_error(s, "stream reset by peer: %s", nghttp2_http2_strerror(error_code));
        if (!c->server && s->st == HBS_REQUEST && s->on_response != NULL)
            s->on_response(s, 0, s->stats.error, s->arg);
        s->rst_fd = true;
        hbs_h2_gone(s);
        hbs_finish(s, NULL);
    } else if (s->st != HBS_SPLICE && !s->finished) {
        hbs_h2_gone(s);
        hbs_finish(s, c->server ? "stream closed before the request completed"
                                : "stream closed before the response");
        if (!c->server && s->on_response != NULL)
            s->on_response(s, 0, s->stats.error, s->arg);
    } else {
        hbs_h2_gone(s);
        s->es_sent = true;
        s->es_recv = true;
        hbs_try_complete(s);
    }
    hbc_arm_idle(c);
    return 0;
}

static int on_h2_invalid_frame(nghttp2_session *h2, const nghttp2_frame *frame, int lib_error,
                               void *user)
{
    struct hbc *c = user;
    struct hbs *s = frame->hd.stream_id ? stream_of(c, frame->hd.stream_id) : NULL;
    (void)h2;
    if (s != NULL)
        hbs_set_error(s, "invalid frame: %s", nghttp2_strerror(lib_error));
    return 0;
}

static int on_h2_frame_not_send(nghttp2_session *h2, const nghttp2_frame *frame, int lib_error,
                                void *user)
{
    struct hbc *c = user;
    struct dp_list *pos;
    (void)h2;

    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    /* a request that never left: nghttp2 will not report a stream close for it */
    dp_list_for_each(pos, &c->streams) {
        struct hbs *s = dp_container_of(pos, struct hbs, link);
        if (s->id != frame->hd.stream_id || s->h2_gone)
            continue;
        hbs_set_error(s, "request not sent: %s", nghttp2_strerror(lib_error));
        if (!s->finished && !c->server && s->st == HBS_REQUEST && s->on_response != NULL)
            s->on_response(s, 0, s->stats.error, s->arg);
        s->rst_fd = true;
        hbs_h2_gone(s);
        hbs_finish(s, NULL);
        break;
    }
    return 0;
}

static nghttp2_session_callbacks *make_callbacks(void)
{
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        return NULL;
    nghttp2_session_callbacks_set_send_callback(cbs, on_h2_send);
    nghttp2_session_callbacks_set_send_data_callback(cbs, on_h2_send_data);
    nghttp2_session_callbacks_set_data_source_read_length_callback(cbs, on_h2_data_length);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_h2_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_h2_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_h2_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_h2_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_h2_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_h2_stream_close);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, on_h2_invalid_frame);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, on_h2_frame_not_send);
    return cbs;
}

/* ------------------------------------------------------------------ connection lifecycle */

static void on_hbc_free_defer(struct dp_loop *loop, void *arg)
{
    struct hbc *c = arg;
    (void)loop;

    if (c->st != HBC_CLOSED || c->n_live > 0)
        return;
    if (c->server && c->ops->on_conn_done != NULL)
        c->ops->on_conn_done(c->arg, c->peer_id, c->error);
    dp_defer_cancel(&c->flush_defer);
    dp_defer_cancel(&c->free_defer);
    dp_timer_cancel(&c->timer);
    dp_list_del(&c->pool_link);
    dp_list_del(&c->all_link);
    dp_buf_free(c->out);
    dp_identity_unref(c->id);
    free(c->key);
    free(c);
}

static int hbc_new(struct dp_loop *loop, int fd, bool server, struct dp_identity *id,
                   const struct dp_hbone_limits *lim, struct hbc **ret_c)
{
    struct hbc *c = dp_xmalloc(sizeof(*c));
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    int r = -ENOMEM;

    c->loop = loop;
    c->fd = fd;
    c->server = server;
    c->id = dp_identity_ref(id);
    if (lim != NULL)
        c->lim = *lim;
    else
        dp_hbone_limits_default(&c->lim);
    if (c->lim.max_frame < 16384)
        c->lim.max_frame = 16384;
    if (c->lim.max_frame > 16777215)
        c->lim.max_frame = 16777215;
    if (c->lim.stream_window > INT32_MAX)
        c->lim.stream_window = INT32_MAX;
    if (c->lim.conn_window > INT32_MAX)
        c->lim.conn_window = INT32_MAX;
    dp_list_init(&c->streams);
    dp_list_init(&c->pool_link);
    dp_list_init(&c->all_link);
    dp_io_init(&c->io, fd, on_hbc_io, c);
    dp_timer_init(&c->timer, on_hbc_timer, c);
    dp_defer_init(&c->flush_defer, on_flush_defer, c);
    dp_defer_init(&c->free_defer, on_hbc_free_defer, c);
    c->flood_win_ms = dp_now_ms();
    cbs = make_callbacks();
    if (cbs == NULL || nghttp2_option_new(&opt) != 0)
        goto fail;
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_settings(opt, c->lim.max_settings);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_option_set_peer_max_concurrent_streams(opt, c->lim.max_streams);
    r = server ? nghttp2_session_server_new2(&c->h2, cbs, c, opt)
               : nghttp2_session_client_new2(&c->h2, cbs, c, opt);
    if (r != 0) {
        r = -ENOMEM;
        goto fail;
    }
    nghttp2_settings_entry iv[] = {
            {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, c->lim.max_streams},
            {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, c->lim.stream_window},
            {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, c->lim.max_frame},
            {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, c->lim.max_header_list},
            {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, server ? 4 : 5) != 0 ||
        nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0,
                                              (int32_t)c->lim.conn_window) != 0) {
        r = -ENOMEM;
        goto fail;
    }
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    *ret_c = c;
    return 0;
fail:
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    if (c->h2 != NULL)
        nghttp2_session_del(c->h2);
    dp_buf_free(c->out);
    dp_identity_unref(c->id);
    free(c);
    return r;
}

/* Close the transport and the h2 session; fail every live stream. The hbc itself is freed
 * from its defer once the last stream is gone. Safe outside nghttp2 callbacks only. */
static void hbc_close(struct hbc *c, const char *error)
{
    struct dp_list *pos, *tmp;
    const char *flags;

    if (c->st == HBC_CLOSED)
        return;
    if (error != NULL && error[0] != '\0' && error != c->error)
        snprintf(c->error, sizeof(c->error), "%s", error);
    /* flags for streams that never got an answer */
    if (c->st == HBC_HANDSHAKE)
        flags = c->tls != NULL ? "TLS_FAILURE" : "H2_HANDSHAKE_FAILURE";
    else if (c->st == HBC_READY && c->tls != NULL && dp_tls_error(c->tls)[0] != '\0')
        flags = "TLS_FAILURE"; /* TLS 1.3: the server refused our certificate after Finished */
    else
        flags = "CONNECT";
    dp_log(DP_LOG_DEBUG, "hbone", "connection closed", DP_LS("state", hbc_state_str(c->st)),
           DP_LS("peer", c->peer_id), DP_LS("error", c->error));
    c->st = HBC_CLOSED;
    c->reusable = false;
    dp_list_del(&c->pool_link);
    dp_timer_cancel(&c->timer);
    dp_defer_cancel(&c->flush_defer);
    if (c->io.registered)
        dp_loop_del_io(c->loop, &c->io);
    if (c->h2 != NULL) {
        nghttp2_session_del(c->h2);
        c->h2 = NULL;
    }
    dp_tls_free(c->tls);
    c->tls = NULL;
    close_fd(c->fd, false);
    c->fd = -1;
    dp_list_for_each_safe(pos, tmp, &c->streams) {
        struct hbs *s = dp_container_of(pos, struct hbs, link);
        bool was_request = s->st == HBS_REQUEST;
        s->h2_gone = true;
        if (s->finished) {
            dp_loop_defer(c->loop, &s->defer);
            continue;
        }
        if (strcmp(s->stats.response_flags, "-") == 0 && was_request)
            s->stats.response_flags = flags;
        hbs_set_error(s, "%s", c->error[0] ? c->error : "connection closed");
        s->rst_fd = true;
        if (!c->server && was_request && s->on_response != NULL)
            s->on_response(s, 0, s->stats.error, s->arg);
        hbs_finish(s, NULL);
    }
    c->n_open = 0;
    dp_loop_defer(c->loop, &c->free_defer);
}

/* ------------------------------------------------------------------ server entry points */

static int accept_common(struct dp_loop *loop, int fd, struct dp_identity *id, const char *peer_id,
                         const struct dp_hbone_limits *lim, const struct dp_hbone_server_ops *ops,
                         void *arg, struct hbc **ret_hbc)
{
    struct hbc *c = NULL;
    socklen_t sl;
    int r;

    if (loop == NULL || fd < 0 || ops == NULL || ops->connect == NULL) {
        close_fd(fd, false);
        return -EINVAL;
    }
    set_nonblock(fd);
    r = hbc_new(loop, fd, true, id, lim, &c);
    if (r < 0) {
        close_fd(fd, false);
        return r;
    }
    c->ops = ops;
    c->arg = arg;
    sl = sizeof(c->peer_addr);
    getpeername(fd, (struct sockaddr *)&c->peer_addr, &sl);
    sl = sizeof(c->local_addr);
    getsockname(fd, (struct sockaddr *)&c->local_addr, &sl);
    if (id != NULL) {
        r = dp_tls_new(id, DP_TLS_SERVER, fd, NULL, 0, &c->tls);
        if (r < 0)
            goto fail;
        c->st = HBC_HANDSHAKE;
        dp_timer_arm(loop, &c->timer, c->lim.handshake_timeout_ms);
    } else {
        c->insecure = true;
        snprintf(c->peer_id, sizeof(c->peer_id), "%s", peer_id ? peer_id : "");
        c->st = HBC_READY;
    }
    hbc_update_io(c);
    if (c->st == HBC_READY)
        hbc_schedule_flush(c);
    if (ret_hbc != NULL)
        *ret_hbc = c;
    return 0;
fail:
    nghttp2_session_del(c->h2);
    close_fd(fd, false);
    dp_buf_free(c->out);
    dp_identity_unref(c->id);
    free(c);
    return r;
}

int dp_hbone_accept(struct dp_loop *loop, int fd, struct dp_identity *id,
                    const struct dp_hbone_limits *lim, const struct dp_hbone_server_ops *ops,
                    void *arg, struct hbc **ret_hbc)
{
    if (id == NULL) {
        close_fd(fd, false);
        return -EINVAL;
    }
    return accept_common(loop, fd, id, NULL, lim, ops, arg, ret_hbc);
}

int dp_hbone_accept_insecure(struct dp_loop *loop, int fd, const char *peer_id,
                             const struct dp_hbone_limits *lim,
                             const struct dp_hbone_server_ops *ops, void *arg, struct hbc **ret_hbc)
{
    return accept_common(loop, fd, NULL, peer_id, lim, ops, arg, ret_hbc);
}

void dp_hbc_drain(struct hbc *c)
{
    if (c == NULL || c->st == HBC_CLOSED || c->draining)
        return;
    c->draining = true;
    c->reusable = false;
    dp_list_del(&c->pool_link);
    if (c->h2 == NULL)
        return;
    /* GOAWAY without terminating: open streams finish, then want_read() turns false */
    nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
                          c->server ? nghttp2_session_get_last_proc_stream_id(c->h2) : 0,
                          NGHTTP2_NO_ERROR, NULL, 0);
    hbc_schedule_flush(c);
}

void dp_hbc_abort(struct hbc *c, const char *reason)
{
    if (c == NULL)
        return;
    hbc_close(c, reason ? reason : "aborted");
}

/* ------------------------------------------------------------------ client side */

int dp_hbone_pool_new(struct dp_loop *loop, const struct dp_hbone_limits *lim,
                      struct dp_hbone_pool **ret_pool)
{
    struct dp_hbone_pool *p;

    if (loop == NULL)
        return -EINVAL;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    p->loop = loop;
    if (lim != NULL)
        p->lim = *lim;
    else
        dp_hbone_limits_default(&p->lim);
    dp_list_init(&p->conns);
    dp_list_init(&p->all);
    *ret_pool = p;
    return 0;
}

void dp_hbone_pool_free(struct dp_hbone_pool *pool)
{
    struct dp_list *pos, *tmp;

    if (pool == NULL)
        return;
    dp_list_for_each_safe(pos, tmp, &pool->all) {
        struct hbc *c = dp_container_of(pos, struct hbc, all_link);
        struct dp_list *sp, *st;
        c->pool = NULL;
        hbc_close(c, "pool closed");
        /* run the done callbacks now: the loop may be freed right after us */
        dp_list_for_each_safe(sp, st, &c->streams) {
            struct hbs *s = dp_container_of(sp, struct hbs, link);
            on_hbs_defer(c->loop, s);
        }
        on_hbc_free_defer(c->loop, c);
    }
    free(pool);
}

void dp_hbone_pool_drain(struct dp_hbone_pool *pool)
{
    struct dp_list *pos, *tmp;

    if (pool == NULL)
        return;
    dp_list_for_each_safe(pos, tmp, &pool->conns) {
        struct hbc *c = dp_container_of(pos, struct hbc, pool_link);
        dp_hbc_drain(c);
        dp_list_init(&c->pool_link);
    }
}

void dp_hbone_pool_counts(const struct dp_hbone_pool *pool, unsigned *ret_conns,
                          unsigned *ret_streams)
{
    unsigned nc = 0, ns = 0;
    const struct dp_list *pos;

    dp_list_for_each(pos, &pool->conns) {
        const struct hbc *c = dp_container_of(pos, struct hbc, pool_link);
        nc++;
        ns += c->n_open;
    }
    if (ret_conns != NULL)
        *ret_conns = nc;
    if (ret_streams != NULL)
        *ret_streams = ns;
}

static char *make_key(const struct dp_hbone_target *t)
{
    char addr[INET6_ADDRSTRLEN + 8] = "?";
    size_t len = 0;
    char *k, *p;

    if (t->dst->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)t->dst;
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        snprintf(addr, sizeof(addr), "%s:%u", ip, ntohs(a->sin_port));
    } else if (t->dst->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)t->dst;
        char ip[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        snprintf(addr, sizeof(addr), "[%s]:%u", ip, ntohs(a->sin6_port));
    }
    len = strlen(dp_identity_name(t->src_id)) + strlen(addr) + 48;
    for (unsigned i = 0; i < t->n_sans; i++)
        len += strlen(t->sans[i]) + 1;
    k = malloc(len);
    if (k == NULL)
        return NULL;
    p = k + sprintf(k, "%s|%s|%016" PRIx64 "|", dp_identity_name(t->src_id), addr, t->scope);
    for (unsigned i = 0; i < t->n_sans; i++)
        p += sprintf(p, "%s,", t->sans[i]);
    return k;
}

static int default_open_socket(const struct sockaddr *dst, socklen_t len)
{
    int fd = socket(dst->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;

    if (fd < 0)
        return -errno;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, dst, len) < 0 && errno != EINPROGRESS) {
        int r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

/* Dial a new pooled connection. Failures are reported through the streams later. */
static int hbc_dial(struct dp_hbone_pool *pool, const struct dp_hbone_target *t, char *key,
                    struct hbc **ret_c)
{
    struct hbc *c = NULL;
    int fd, r;

    fd = t->open_socket ? t->open_socket(t->open_arg, t->dst, t->dst_len)
                        : default_open_socket(t->dst, t->dst_len);
    if (fd < 0) {
        /* keep the error for the stream: make a closed hbc that fails it */
        r = hbc_new(pool->loop, -1, false, t->src_id, &pool->lim, &c);
        if (r < 0)
            return r;
        snprintf(c->error, sizeof(c->error), "connect: %s", strerror(-fd));
        c->key = key;
        c->pool = pool;
        dp_list_add_tail(&pool->all, &c->all_link);
        *ret_c = c;
        return 1; /* caller closes it after attaching the stream */
    }
    set_nonblock(fd);
    r = hbc_new(pool->loop, fd, false, t->src_id, &pool->lim, &c);
    if (r < 0) {
        close(fd);
        return r;
    }
    r = dp_tls_new(t->src_id, DP_TLS_CLIENT, fd, t->sans, t->n_sans, &c->tls);
    if (r < 0) {
        nghttp2_session_del(c->h2);
        c->h2 = NULL;
        close(fd);
        dp_buf_free(c->out);
        dp_identity_unref(c->id);
        free(c);
        return r;
    }
    c->key = key;
    c->pool = pool;
    c->reusable = true;
    c->st = HBC_CONNECTING;
    memcpy(&c->dst, t->dst, DP_MIN((size_t)t->dst_len, sizeof(c->dst)));
    c->dst_len = t->dst_len;
    dp_list_add_tail(&pool->conns, &c->pool_link);
    dp_list_add_tail(&pool->all, &c->all_link);
    dp_timer_arm(pool->loop, &c->timer, c->lim.handshake_timeout_ms);
    hbc_update_io(c);
    *ret_c = c;
    return 0;
}

static struct hbc *pool_find(struct dp_hbone_pool *pool, const struct dp_hbone_target *t,
                             const char *key)
{
    struct dp_list *pos;

    dp_list_for_each(pos, &pool->conns) {
        struct hbc *c = dp_container_of(pos, struct hbc, pool_link);
        if (!c->reusable || c->st == HBC_CLOSED || c->id != t->src_id || strcmp(c->key, key) != 0)
            continue;
        if (c->n_open >= c->lim.max_streams)
            continue;
        if (c->h2 != NULL && c->st == HBC_READY &&
            c->n_open >= nghttp2_session_get_remote_settings(
                                 c->h2, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS))
            continue;
        return c;
    }
    return NULL;
}

static struct hbs_req *hbs_req_new(struct dp_hbone_pool *pool, const struct dp_hbone_target *t,
                                   const struct dp_hbone_connect *req)
{
    struct hbs_req *q = calloc(1, sizeof(*q));

    if (q == NULL)
        return NULL;
    q->pool = pool;
    q->src_id = dp_identity_ref(t->src_id);
    memcpy(&q->dst, t->dst, DP_MIN((size_t)t->dst_len, sizeof(q->dst)));
    q->dst_len = t->dst_len;
    q->scope = t->scope;
    q->open_socket = t->open_socket;
    q->open_arg = t->open_arg;
    for (unsigned i = 0; i < t->n_sans; i++) {
        q->sans[i] = strdup(t->sans[i]);
        if (q->sans[i] == NULL)
            goto fail;
        q->n_sans = i + 1;
    }
    q->authority = strdup(req->authority);
    q->baggage = req->baggage ? strdup(req->baggage) : NULL;
    q->forwarded = req->forwarded ? strdup(req->forwarded) : NULL;
    if (q->authority == NULL || (req->baggage && !q->baggage) || (req->forwarded && !q->forwarded))
        goto fail;
    if (req->traceparent != NULL)
        snprintf(q->traceparent, sizeof(q->traceparent), "%s", req->traceparent);
    else
        dp_hbone_traceparent(q->traceparent);
    return q;
fail:
    hbs_req_free(q);
    return NULL;
}

static void hbs_target(const struct hbs_req *q, struct dp_hbone_target *t)
{
    *t = (struct dp_hbone_target){
            .src_id = q->src_id,
            .dst = (const struct sockaddr *)&q->dst,
            .dst_len = q->dst_len,
            .sans = (const char *const *)q->sans,
            .n_sans = q->n_sans,
            .scope = q->scope,
            .open_socket = q->open_socket,
            .open_arg = q->open_arg,
    };
}

/* Pick or dial a connection for s->creq, attach s to it, submit the CONNECT. Failures end
 * the stream from the loop (never synchronously through callbacks). Returns 0, or -ENOMEM
 * before anything was attached. */
static int hbs_attach_submit(struct hbs *s)
{
    struct hbs_req *q = s->creq;
    struct dp_hbone_pool *pool = q->pool;
    struct dp_hbone_target t;
    nghttp2_nv nv[5];
    size_t nnv = 0;
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = on_h2_data_read};
    struct hbc *c;
    char *key;
    int r, dial = 0;

    hbs_target(q, &t);
    key = make_key(&t);
    if (key == NULL)
        return -ENOMEM;
    c = pool_find(pool, &t, key);
    if (c != NULL) {
        free(key);
    } else {
        dial = hbc_dial(pool, &t, key, &c);
        if (dial < 0) {
            free(key);
            return dial;
        }
    }
    s->c = c;
    s->stats.peer_id = c->peer_id; /* the new connection's, if this is a retry */
    dp_list_add_tail(&c->streams, &s->link);
    c->n_live++;
    s->h2_gone = false;
    s->id = -1;
    if (dial == 1) {
        /* the socket could not even be opened: fail from the loop, not from inside this call */
        s->stats.response_flags = "CONNECT";
        s->id = 0;
        s->h2_gone = true;
        dp_timer_arm(c->loop, &c->timer, 0);
        return 0;
    }
#define NV(n, v)                                                                                   \
    nv[nnv++] = (nghttp2_nv){(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v),                 \
                             NGHTTP2_NV_FLAG_NO_COPY_NAME}
    NV(":method", "CONNECT");
    NV(":authority", q->authority);
    if (q->baggage != NULL)
        NV("baggage", q->baggage);
    if (q->forwarded != NULL)
        NV("forwarded", q->forwarded);
    NV("traceparent", q->traceparent);
#undef NV
    r = nghttp2_submit_request(c->h2, NULL, nv, nnv, &prd, s);
    if (r < 0) {
        s->h2_gone = true;
        hbs_set_error(s, "h2 submit: %s", nghttp2_strerror(r));
        s->stats.response_flags = "CONNECT";
        s->rst_fd = true;
        hbs_finish(s, NULL);
        return 0;
    }
    s->id = r;
    c->n_open++;
    dp_timer_cancel(&c->timer);
    if (c->st == HBC_CONNECTING || c->st == HBC_HANDSHAKE)
        dp_timer_arm(c->loop, &c->timer, c->lim.handshake_timeout_ms);
    hbc_schedule_flush(c);
    return 0;
}

/* The peer refused the stream unprocessed: move it to another (or a new) connection. */
static void hbs_retry(struct hbs *s)
{
    struct hbc *old = s->c;

    dp_list_del(&s->link);
    old->n_live--;
    if (old->st == HBC_CLOSED && old->n_live == 0)
        dp_loop_defer(old->loop, &old->free_defer);
    /* the refusing connection takes no new streams (the peer is at its limit or leaving) */
    if (old->reusable && !old->server) {
        old->reusable = false;
        dp_list_del(&old->pool_link);
    }
    if (hbs_attach_submit(s) < 0) {
        /* keep s attached somewhere so its lifecycle completes: back on the old hbc */
        dp_list_add_tail(&old->streams, &s->link);
        old->n_live++;
        s->c = old;
        s->stats.peer_id = old->peer_id;
        s->h2_gone = true;
        s->rst_fd = true;
        hbs_finish(s, "retry after REFUSED_STREAM: out of memory");
    }
}

int dp_hbone_open(struct dp_hbone_pool *pool, const struct dp_hbone_target *t,
                  const struct dp_hbone_connect *req, int app_fd, dp_hbs_response_cb *on_response,
                  dp_hbs_done_cb *on_done, void *arg, struct hbs **ret_hbs)
{
    struct hbs *s;
    int r;

    if (pool == NULL || t == NULL || t->src_id == NULL || t->dst == NULL || t->n_sans == 0 ||
        t->n_sans > DP_TLS_MAX_SANS || t->sans == NULL || req == NULL || req->authority == NULL ||
        on_done == NULL || app_fd < 0)
        goto einval;
    for (unsigned i = 0; i < t->n_sans; i++)
        if (t->sans[i] == NULL)
            goto einval;
    if (!header_value_ok(req->authority) || (req->baggage && !header_value_ok(req->baggage)) ||
        (req->forwarded && !header_value_ok(req->forwarded)) ||
        (req->traceparent && !header_value_ok(req->traceparent)))
        goto einval;
    s = dp_xmalloc(sizeof(*s));
    s->fd = -1;
    s->id = -1;
    dp_io_init(&s->io, -1, NULL, s);
    dp_list_init(&s->link);
    dp_defer_init(&s->defer, on_hbs_defer, s);
    dp_timer_init(&s->timer, on_hbs_timer, s);
    s->stats.start_ms = dp_now_ms();
    s->stats.response_flags = "-";
    s->creq = hbs_req_new(pool, t, req);
    if (s->creq == NULL) {
        free(s);
        close_fd(app_fd, true);
        return -ENOMEM;
    }
    r = hbs_attach_submit(s);
    if (r < 0) {
        hbs_req_free(s->creq);
        free(s);
        close_fd(app_fd, true);
        return r;
    }
    /* the peer gets its own upstream connect timeout, plus our dial and handshake */
    dp_timer_arm(pool->loop, &s->timer,
                 pool->lim.handshake_timeout_ms + pool->lim.connect_timeout_ms);
    set_nonblock(app_fd);
    s->fd = app_fd;
    s->on_response = on_response;
    s->on_done = on_done;
    s->arg = arg;
    if (ret_hbs != NULL)
        *ret_hbs = s;
    return 0;
einval:
    if (app_fd >= 0)
        close_fd(app_fd, true);
    return -EINVAL;
}

void dp_hbs_abort(struct hbs *s, const char *reason)
{
    if (s == NULL || s->finished)
        return;
    hbs_set_error(s, "%s", reason ? reason : "aborted");
    s->rst_fd = true;
    if (!s->c->server && s->st == HBS_REQUEST && s->on_response != NULL) {
        dp_hbs_response_cb *cb = s->on_response;
        s->on_response = NULL;
        (void)cb; /* aborted by the caller: no response callback */
    }
    hbs_finish(s, NULL);
}
