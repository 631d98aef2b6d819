/*
 * httpd.h — a small HTTP/1.1 server on the dp_loop, for admin, metrics, health and unix-socket
 * control endpoints (node agent 15000/15020/15021 and cni.sock, operator 15014).
 *
 * One server belongs to one loop and is used only from that loop's thread. It listens on any
 * number of TCP addresses, unix socket paths or already-bound listening fds, keeps connections
 * alive, serves pipelined requests in order (one at a time: the next request is parsed only
 * after the previous response is complete), and routes by method + exact path or path prefix
 * (exact routes win, then the longest prefix). It answers on its own:
 *   404 no route for the path, 405 (+ Allow) route exists for another method, 501 unknown
 *   method token, and the parser's 400/413/414/431/501/505 (then it closes the connection);
 *   HEAD is served by GET routes (the body is computed but not sent).
 * Request bodies are read in full (bounded by limits.max_body) before the handler runs;
 * "Expect: 100-continue" is answered with 100 Continue when the body is awaited.
 *
 * Timeouts (per connection, one dp_timer): a request must arrive completely within
 * request_timeout_ms of its first byte (slow-loris); an idle keep-alive connection is closed
 * after idle_timeout_ms; a connection whose pending output makes no progress for
 * write_timeout_ms is closed. Held and streaming responses have no timeout of their own.
 * At max_conns open connections the listeners are paused (the kernel backlog holds new
 * connections) until one closes. Closing after an error answer is graceful: write side shut
 * down, input drained for up to 2 s, so the peer reads the answer instead of a reset.
 *
 * Responses: a handler gets a struct dp_httpd_resp and fills status, fields and body. When the
 * handler returns, the response is sent with a Content-Length — unless the handler
 *   - held it (dp_httpd_resp_hold): it answers later with dp_httpd_resp_finish(), or
 *   - started a stream (dp_httpd_resp_stream_start): the head goes out at once with
 *     Transfer-Encoding: chunked (HTTP/1.0: close-delimited) and each dp_httpd_resp_stream_write
 *     is one chunk — newline-delimited JSON for the operator's config stream, say — until
 *     dp_httpd_resp_stream_end().
 * A held/streaming resp handle stays valid until the owner calls finish/stream_end, gets -EPIPE
 * from stream_write, or until on_abort(resp, arg) has been called (peer gone, write
 * failure/timeout, server freed). on_abort is called at most once, from the loop (deferred stage or
 * dp_httpd_free), never from inside a dp_httpd_resp_* call; the response is over by then, so it
 * must not call dp_httpd_resp_* on resp.
 * After finish/stream_end it is never called.
 *
 * Never frees a connection inside its own callback: connections are released from a dp_defer.
 *
 * Transport seam (server-side TLS is added by the tls owner, not here): struct
 * dp_httpd_transport replaces read(2)/write(2) on accepted fds. With dataplane/tls.h it maps as
 *   on_accept -> dp_tls_new(id, DP_TLS_SERVER, fd, NULL, 0, &ctx)
 *   read/write -> dp_tls_handshake() until it returns 0, then dp_tls_read()/dp_tls_write();
 *                 on -EAGAIN set *want = dp_tls_want(ctx)
 *   pending   -> dp_tls_pending(ctx) (decrypted bytes epoll cannot see: the server keeps
 *                 reading while it returns true)
 *   shutdown  -> dp_tls_shutdown(ctx) (instead of shutdown(SHUT_WR) before a lingering close)
 *   close     -> dp_tls_free(ctx)
 * and a handler reaches the peer identity through dp_httpd_resp_transport(resp) +
 * dp_tls_peer_id(). The server retries both directions on any event, so a read that needs a
 * writable socket (renegotiation, handshake) makes progress.
 */
#ifndef DP_HTTPD_H
#define DP_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "http.h"

struct dp_loop;
struct dp_buf;
struct dp_sock_opts;
struct dp_httpd;
struct dp_httpd_resp;

struct dp_httpd_transport {
    /** New connection on fd (borrowed). 0 and a context (may be NULL) in *ret_ctx, or -errno:
     *  the connection is dropped. */
    int (*on_accept)(void *targ, int fd, void **ret_ctx);
    /** read(2)-like: bytes (> 0), 0 on EOF, -EAGAIN (set *want if the transport needs an event
     *  other than DP_EV_READ to progress), or -errno. */
    ssize_t (*read)(void *ctx, int fd, void *buf, size_t len, unsigned *want);
    /** write(2)-like: bytes written, -EAGAIN (set *want if not DP_EV_WRITE), or -errno. */
    ssize_t (*write)(void *ctx, int fd, const void *buf, size_t len, unsigned *want);
    /** Optional: true when the transport holds input that epoll will not report. */
    bool (*pending)(void *ctx);
    /** Optional: start an orderly close of the write side (default shutdown(SHUT_WR)). */
    void (*shutdown)(void *ctx, int fd);
    /** Free ctx (accepts NULL). The server closes the fd afterwards. */
    void (*close)(void *ctx);
};

struct dp_httpd_config {
    const char *name;             /* for traces, e.g. "admin"; borrowed, NULL = "httpd" */
    struct dp_http_limits limits; /* each zero field: its dp_http_default_limits value */
    unsigned max_conns;           /* 0 = 128 */
    uint64_t request_timeout_ms;  /* 0 = 10000 */
    uint64_t idle_timeout_ms;     /* 0 = 60000 */
    uint64_t write_timeout_ms;    /* 0 = 10000 */
    size_t max_response;          /* buffered response body limit; 0 = 16 MiB */
    size_t max_stream_pending;    /* streaming: queued bytes before -ENOBUFS; 0 = 1 MiB */
    const struct dp_httpd_transport *transport; /* NULL = plain read/write; borrowed */
    void *transport_arg;
};

/** Handler for one request. req (and everything it points to) is borrowed until the response
 *  is complete (returned, finished, stream ended or aborted). */
typedef void dp_httpd_handler_cb(struct dp_httpd_resp *resp, const struct dp_http_request *req,
                                 void *arg);
/** A held or streaming response was abandoned; resp is invalid after this returns. */
typedef void dp_httpd_abort_cb(struct dp_httpd_resp *resp, void *arg);

/** New server on loop (borrowed; must outlive it). cfg may be NULL (all defaults) and is
 *  copied. 0, -EINVAL (bad limits) or -ENOMEM. */
int dp_httpd_new(struct dp_loop *loop, const struct dp_httpd_config *cfg,
                 struct dp_httpd **ret_srv);
/** Close listeners and connections (aborting held/streaming responses: their on_abort runs
 *  here) and free. Accepts NULL. Must not be called from inside one of its handlers; defer it. */
void dp_httpd_free(struct dp_httpd *srv);

/** Listen on "ip:port" / "[v6]:port" (port 0 picks one). opts may be NULL (SO_REUSEADDR
 *  only). *ret_port (may be NULL) receives the bound port. 0 or -errno (-EINVAL bad address). */
int dp_httpd_listen_tcp(struct dp_httpd *srv, const char *addr, const struct dp_sock_opts *opts,
                        uint16_t *ret_port);
/** Listen on a unix stream socket path ('@' = abstract); a stale socket file is replaced;
 *  mode != 0 is chmod()ed. 0 or -errno. */
int dp_httpd_listen_unix(struct dp_httpd *srv, const char *path, unsigned mode);
/** Serve on an already bound and listening socket (the node agent creates its sockets inside
 *  pod network namespaces). Steals fd on success (made non-blocking); on error the caller
 *  still owns it. 0 or -errno. */
int dp_httpd_add_listener(struct dp_httpd *srv, int fd);
/** Stop accepting (close the listeners); open connections keep being served. For drain. */
void dp_httpd_stop_listening(struct dp_httpd *srv);
/** Open connections right now. */
unsigned dp_httpd_conn_count(const struct dp_httpd *srv);

#define DP_HTTPD_PREFIX (1u << 0) /* path is a prefix ("/debug/" matches "/debug/x") */

/**
 * Route requests whose method is in `methods` (a DP_HTTP_MBIT() mask; 0 = any method) and
 * whose path equals `path` (or starts with it, with DP_HTTPD_PREFIX) to cb(resp, req, arg).
 * path is copied and must start with '/'. Paths are compared raw (no percent-decoding, no
 * dot-segment removal), so "/a/../b" does not reach "/b". -EINVAL, -EEXIST (same path, flags
 * and an overlapping method), -ENOMEM.
 */
int dp_httpd_route(struct dp_httpd *srv, unsigned methods, const char *path, unsigned flags,
                   dp_httpd_handler_cb *cb, void *arg);

/* ---------------------------------------------------------------- responses */

/** Set the status (default 200). */
void dp_httpd_resp_status(struct dp_httpd_resp *resp, int status);
/** Add a response field. Framing fields (Content-Length, Transfer-Encoding, Connection) are
 *  the server's: -EINVAL, as is anything dp_http_header_ok() refuses. -EMSGSIZE when the
 *  fields exceed 8 KiB. If no Content-Type is set and there is a body, text/plain is sent. */
int dp_httpd_resp_header(struct dp_httpd_resp *resp, const char *name, const char *value);
/** Append to the (buffered) body. -EMSGSIZE beyond max_response, -ENOMEM. */
int dp_httpd_resp_body(struct dp_httpd_resp *resp, const void *data, size_t len);
int dp_httpd_resp_printf(struct dp_httpd_resp *resp, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
/** The body buffer itself, for producers that append to a dp_buf (dp_metrics_expose). Borrowed
 *  until the response is sent; its limit is max_response. */
struct dp_buf **dp_httpd_resp_body_buf(struct dp_httpd_resp *resp);
/** Shortcut: status + text/plain body + send (for handlers and for finish). */
int dp_httpd_resp_text(struct dp_httpd_resp *resp, int status, const char *text);
/** Close the connection after this response. */
void dp_httpd_resp_close(struct dp_httpd_resp *resp);
/** The request this response answers (borrowed, see dp_httpd_handler_cb). */
const struct dp_http_request *dp_httpd_resp_request(const struct dp_httpd_resp *resp);
/** Peer address of the connection as text ("1.2.3.4:5678", "unix:..."); borrowed. */
const char *dp_httpd_resp_peer(const struct dp_httpd_resp *resp);
/** Accepted fd of the connection (e.g. for SO_PEERCRED on cni.sock). Borrowed; don't close. */
int dp_httpd_resp_fd(const struct dp_httpd_resp *resp);

/** The transport context of the connection (NULL for plain sockets). Borrowed. */
void *dp_httpd_resp_transport(const struct dp_httpd_resp *resp);

/** From a handler: answer later. on_abort (may be NULL) as described above. */
void dp_httpd_resp_hold(struct dp_httpd_resp *resp, dp_httpd_abort_cb *on_abort, void *arg);
/** Send a held response as it is now (status, fields, body). resp is invalid afterwards.
 *  Also allowed from the handler itself (same as returning). */
void dp_httpd_resp_finish(struct dp_httpd_resp *resp);

/**
 * From a handler (or for a held response): send the head now and stream the body.
 * content_type may be NULL (application/x-ndjson). Anything already in the body buffer is
 * sent as the first chunk. 0, or -EINVAL (bad content type; nothing sent).
 */
int dp_httpd_resp_stream_start(struct dp_httpd_resp *resp, const char *content_type,
                               dp_httpd_abort_cb *on_abort, void *arg);
/** Queue len bytes as one chunk and start writing. Returns 0; -ENOBUFS when more than
 *  max_stream_pending bytes would be queued (slow peer: nothing queued, the stream goes on —
 *  call dp_httpd_resp_stream_end to drop it); or -EPIPE when the connection is broken: that
 *  ends the stream like stream_end — resp is invalid and on_abort will not be called. */
int dp_httpd_resp_stream_write(struct dp_httpd_resp *resp, const void *data, size_t len);
/** Bytes queued and not yet written. */
size_t dp_httpd_resp_pending(const struct dp_httpd_resp *resp);
/** End the stream (last chunk, or close for HTTP/1.0). resp is invalid afterwards. */
void dp_httpd_resp_stream_end(struct dp_httpd_resp *resp);

#endif
