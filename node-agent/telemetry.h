/*
 * telemetry.h — per-connection telemetry with Istio's L4 semantics: the four stable istio_tcp_*
 * counters with Istio's label set, and one access-log line per connection with ztunnel's field
 * names (scope "access", msg "connection complete"/"connection failed").
 *
 * Byte directions (both reporters): istio_tcp_received_bytes_total counts client -> server
 * bytes, istio_tcp_sent_bytes_total server -> client bytes (Envoy's request/response sense).
 * Access log: bytes_sent = client -> server, bytes_recv = server -> client.
 *
 * Thread-safe: counters live in one table behind a mutex (one lock per connection open and
 * close, not per byte).
 */
#ifndef NA_TELEMETRY_H
#define NA_TELEMETRY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "buf.h"
#include "view.h"

struct na_telemetry;

struct na_conn_tel {
    bool outbound;           /* reporter=source, direction=outbound; else destination/inbound */
    bool mtls;               /* HBONE: connection_security_policy=mutual_tls */
    bool opened;             /* counted in connections_opened */
    struct sockaddr_storage src;      /* client address */
    struct sockaddr_storage dst;      /* outbound: hbone next hop or passthrough target;
                                         inbound: the local address the peer connected to */
    struct sockaddr_storage hbone_target; /* inner :authority (ss_family 0 when none) */
    bool has_src_wl, has_dst_wl, has_svc;
    struct na_wl src_wl, dst_wl;      /* borrowed strings: hold `view` while in use */
    struct na_svc svc;
    char src_identity[DP_SPIFFE_MAX]; /* "" when none (plaintext) */
    char dst_identity[DP_SPIFFE_MAX];
    uint64_t start_ms;
    void *series;            /* private: the series counted at open (reused at a clean close) */
};

int na_telemetry_new(struct na_telemetry **ret_tel);
void na_telemetry_free(struct na_telemetry *tel);

/** Count a connection as opened (sets c->opened). */
void na_tel_open(struct na_telemetry *tel, struct na_conn_tel *c);
/** Count close + bytes (if opened; else istio_tcp_connections_failed_total when `error` is
 *  set) and write the access log line. `rx` = client->server,
 *  `tx` = server->client. `flags` = Istio response_flags ("-" when clean), `error` NULL/"" when
 *  clean. */
void na_tel_close(struct na_telemetry *tel, struct na_conn_tel *c, uint64_t rx, uint64_t tx,
                  const char *flags, const char *error);

/** Prometheus text exposition of everything counted so far (plus istio_build). */
int na_telemetry_render(struct na_telemetry *tel, struct dp_buf **out);

/** Format "ip:port" ("[v6]:port") into out; "" for AF_UNSPEC. Returns out. */
const char *na_addr_str(const struct sockaddr *sa, char *out, size_t outsz);

#endif
