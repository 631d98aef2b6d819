/*
 * hbone.h — HBONE: HTTP/2 CONNECT tunnels over mTLS (TLS 1.3, ALPN h2), nghttp2 driven by
 * our loop through mem_recv/mem_send-style pumps. Layering (HAProxy's c/s naming):
 *
 *   struct hbc  one mTLS HTTP/2 connection (client or server side)
 *   struct hbs  one CONNECT stream on an hbc = one application TCP connection
 *
 * Client side: a per-loop pool hands out streams on pooled connections keyed by
 * (source identity, destination address, expected SANs, scope), at most
 * limits.max_streams streams per connection, idle connections closed after
 * limits.idle_timeout_ms. Every stream is spliced to an application fd after the 200.
 *
 * Server side: dp_hbone_accept() takes an accepted TCP fd, runs the TLS handshake with the
 * given identity (client cert required, SPIFFE SAN in our trust domain), then checks every
 * request strictly:
 *   method != CONNECT, missing/unparsable :authority (not ip:port) -> 400
 *   ops->check_authority() refuses                                 -> 400
 *   ops->authorize() refuses                                       -> 401
 *   ops->connect() fails / upstream connect fails or times out    -> 503
 *   otherwise                                                      -> 200 + byte splice
 *
 * Splice semantics (both sides): bytes flow both ways with back-pressure (the fd is not
 * read while the stream's send buffer is full; HTTP/2 window is only returned to the peer
 * once bytes were written to the fd). END_STREAM from the peer -> shutdown(fd, SHUT_WR)
 * once buffered bytes are written; EOF on the fd -> END_STREAM. RST_STREAM from the peer
 * -> the fd is closed with RST (SO_LINGER 0); an fd error -> RST_STREAM(CONNECT_ERROR).
 *
 * Threads: every object here belongs to the loop it was created on.
 * Callbacks may call any function here but never free the object they are called for;
 * the stream/connection is released by hbone itself after its done callback returns.
 */
#ifndef DP_HBONE_H
#define DP_HBONE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "loop.h"
#include "tls.h"

struct hbc;
struct hbs;
struct dp_hbone_pool;

/* ------------------------------------------------------------------ limits */

struct dp_hbone_limits {
    uint32_t stream_window;      /* initial stream window we grant: 4 MiB */
    uint32_t conn_window;        /* connection window we grant: 16 MiB */
    uint32_t max_frame;          /* SETTINGS_MAX_FRAME_SIZE we accept: 1 MiB */
    uint32_t max_streams;        /* concurrent streams per connection (both sides): 100 */
    uint32_t max_header_list;    /* SETTINGS_MAX_HEADER_LIST_SIZE / request header bytes: 16 KiB */
    uint32_t max_settings;       /* entries per SETTINGS frame: 32 */
    uint32_t max_settings_per_s; /* SETTINGS frames per second before GOAWAY: 100 */
    uint32_t max_rst_per_s;      /* RST_STREAM received per second before GOAWAY: 200 */
    uint32_t splice_buf;         /* per-direction fd read buffer per stream: 256 KiB */
    uint64_t idle_timeout_ms;    /* pooled client connection idle close: 5 min (server
                                    side closes connections idle for twice that) */
    uint64_t handshake_timeout_ms; /* TCP connect + TLS + h2 preface: 10 s */
    uint64_t connect_timeout_ms;   /* server side upstream connect: 10 s */
};

/** Fill with the defaults above (ztunnel's values where it has them). */
void dp_hbone_limits_default(struct dp_hbone_limits *lim);

/* ------------------------------------------------------------------ stats */

/**
 * Outcome of one stream, handed to the done callbacks. Directions are relative to the
 * tunnel: `bytes_in` = read from the local fd and sent into the tunnel, `bytes_out` =
 * received from the tunnel and written to the local fd.
 */
struct dp_hbs_stats {
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t start_ms; /* dp_now_ms() when the stream was created */
    uint64_t end_ms;
    int status;                 /* HTTP status sent/received; 0 if none */
    const char *response_flags; /* Istio's: "-", "DENY", "CONNECT", "TLS_FAILURE",
                                   "H2_HANDSHAKE_FAILURE" (static string) */
    const char *peer_id;        /* verified peer SPIFFE ID or "" (borrowed, valid in the cb) */
    char error[192];            /* "" when clean; else e.g. "SAN mismatch: got X want Y",
                                   "upstream connect: Connection refused", "stream reset" */
};

/* ------------------------------------------------------------------ server side */

/** One inbound CONNECT request, as seen by the server callbacks (valid until on_stream_done). */
struct dp_hbone_request {
    uint32_t stream_id;
    const char *peer_id;               /* verified client SPIFFE ID */
    const struct sockaddr *peer_addr;  /* TCP peer of the HBONE connection (getpeername) */
    const struct sockaddr *local_addr; /* local address of the HBONE connection (getsockname) */
    const char *authority;             /* raw :authority */
    struct sockaddr_storage target;    /* parsed :authority (AF_INET / AF_INET6 + port) */
    socklen_t target_len;
    const char *baggage; /* NULL when absent */
    const char *forwarded;
    const char *traceparent;
    void *user;                   /* free for the callbacks; read back in on_stream_done */
    const char *response_baggage; /* optional, set by a callback: sent as `baggage` on the
                                     200 (Istio ENABLE_RESPONSE_BAGGAGE). Must stay valid
                                     until on_stream_done (e.g. point into *user); values
                                     with CR/LF are dropped */
};

struct dp_hbone_server_ops {
    /** Is req->target acceptable on this connection (e.g. a local pod address)? 0 = yes,
     *  anything else answers 400. NULL = accept. */
    int (*check_authority)(void *arg, struct dp_hbone_request *req);
    /** Policy. 0 = allow, anything else answers 401. NULL = allow. */
    int (*authorize)(void *arg, struct dp_hbone_request *req);
    /** Start the upstream connection: return a non-blocking socket with connect() started
     *  (EINPROGRESS is fine; hbone owns the fd from here), or -errno -> 503. Required. */
    int (*connect)(void *arg, struct dp_hbone_request *req);
    /** Every request ends here exactly once (also for 400/401/503). Optional. */
    void (*on_stream_done)(void *arg, struct dp_hbone_request *req, const struct dp_hbs_stats *st);
    /** The connection is gone (after its last on_stream_done); `error` is "" or the reason
     *  (TLS failure, protocol error, flood). `arg` is not used by hbone afterwards. Optional. */
    void (*on_conn_done)(void *arg, const char *peer_id, const char *error);
};

/**
 * Serve HBONE on an accepted TCP socket. Steals `fd` (closed on every path, also on error).
 * `id` is the identity presented (reference taken). `lim` NULL = defaults (copied).
 * `ops` must outlive the connection; `arg` is passed to every op. Returns 0 (and, if
 * ret_hbc != NULL, a borrowed pointer valid until on_conn_done) or -errno.
 */
int dp_hbone_accept(struct dp_loop *loop, int fd, struct dp_identity *id,
                    const struct dp_hbone_limits *lim, const struct dp_hbone_server_ops *ops,
                    void *arg, struct hbc **ret_hbc);

/**
 * Same without TLS (h2c prior knowledge, peer_id given by the caller). For tests and the
 * fuzzer only — never expose on a listener.
 */
int dp_hbone_accept_insecure(struct dp_loop *loop, int fd, const char *peer_id,
                             const struct dp_hbone_limits *lim,
                             const struct dp_hbone_server_ops *ops, void *arg,
                             struct hbc **ret_hbc);

/* ------------------------------------------------------------------ client side */

/** Open a non-blocking TCP socket to dst with connect() started (e.g. inside the source pod
 *  netns, SO_MARK set). Returns the fd or -errno. */
typedef int dp_hbone_socket_fn(void *arg, const struct sockaddr *dst, socklen_t dst_len);

/** Where a tunnel goes and as whom. Everything is borrowed for the duration of the call. */
struct dp_hbone_target {
    struct dp_identity *src_id; /* client certificate (the SOURCE workload's identity) */
    const struct sockaddr *dst; /* next hop, normally <pod ip>:15008 */
    socklen_t dst_len;
    const char *const *sans; /* acceptable server identities (1..DP_TLS_MAX_SANS) */
    unsigned n_sans;
    uint64_t scope;                  /* extra pool key, e.g. the source pod's netns cookie */
    dp_hbone_socket_fn *open_socket; /* NULL = socket()+connect() in the current netns */
    void *open_arg;                  /* must stay valid while pooled connections may dial */
};

/** The CONNECT request. Header values are copied; NULL = header omitted (traceparent: a
 *  random one is generated). Values with CR/LF/NUL are refused with -EINVAL. */
struct dp_hbone_connect {
    const char *authority; /* "ip:port" / "[v6]:port" of the final target; required */
    const char *baggage;
    const char *forwarded;
    const char *traceparent;
};

/** The response: status 200 means the splice runs; otherwise status is the peer's (400,
 *  401, 503...) or 0 for a connection-level failure, and `error` says why. Called at most
 *  once, before on_done. */
typedef void dp_hbs_response_cb(struct hbs *s, int status, const char *error, void *arg);
/** Called exactly once per successful dp_hbone_open(); `s` is invalid afterwards. */
typedef void dp_hbs_done_cb(struct hbs *s, const struct dp_hbs_stats *st, void *arg);

/** Per-loop pool of client connections. */
int dp_hbone_pool_new(struct dp_loop *loop, const struct dp_hbone_limits *lim,
                      struct dp_hbone_pool **ret_pool);
/** Abort all connections (done callbacks run with error "pool closed") and free. NULL ok. */
void dp_hbone_pool_free(struct dp_hbone_pool *pool);
/** Stop reusing current connections (GOAWAY after their streams end); new opens dial. */
void dp_hbone_pool_drain(struct dp_hbone_pool *pool);
/** Current connections and open streams, for metrics/tests. */
void dp_hbone_pool_counts(const struct dp_hbone_pool *pool, unsigned *ret_conns,
                          unsigned *ret_streams);

/**
 * Open a tunnel: pick (or dial) a pooled connection for `t`, send CONNECT `req`, and once
 * the 200 arrives splice `app_fd` (stolen: always closed by hbone, also on error) with the
 * stream. on_response (optional) and on_done (required) run later, from the loop — never
 * from inside this call. Returns 0 and a borrowed stream pointer (valid until on_done
 * returns), or -EINVAL/-ENOMEM (no callback will run).
 */
int dp_hbone_open(struct dp_hbone_pool *pool, const struct dp_hbone_target *t,
                  const struct dp_hbone_connect *req, int app_fd, dp_hbs_response_cb *on_response,
                  dp_hbs_done_cb *on_done, void *arg, struct hbs **ret_hbs);

/** Abort a stream (RST_STREAM CANCEL, fd closed with RST); on_done still runs (later). */
void dp_hbs_abort(struct hbs *s, const char *reason);

/** Gracefully stop a connection: GOAWAY, finish open streams, then close. */
void dp_hbc_drain(struct hbc *c);
/** Close a connection now (e.g. drain deadline): every open stream ends with `reason`
 *  (done callbacks run later, from the loop). Must not be called from hbone callbacks of
 *  the same connection. */
void dp_hbc_abort(struct hbc *c, const char *reason);

/* ------------------------------------------------------------------ helpers */

/**
 * Parse an authority "a.b.c.d:port" or "[v6]:port" (port 1..65535, no hostnames, no
 * zone ids). 0 and the address, or -EINVAL with *ret_err (static string) if non-NULL.
 */
int dp_hbone_parse_authority(const char *s, size_t len, struct sockaddr_storage *ret_addr,
                             socklen_t *ret_len, const char **ret_err);
/** Format a W3C traceparent "00-<32 hex>-<16 hex>-00" with random ids into out[56]. */
void dp_hbone_traceparent(char out[56]);

#endif
