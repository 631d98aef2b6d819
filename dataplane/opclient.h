/*
 * opclient.h — the node agent's client for the operator's endpoints on port 15012
 * (PROTOCOLS.md §2): certificate signing and the config stream.
 *
 * Transport: HTTPS (libcurl), the operator verified against the mesh root certificate
 * (`root-cert.pem` from ConfigMap istio-ca-root-cert), authenticated by the agent's projected
 * service-account token (`Authorization: Bearer`, re-read from its file for every request, so
 * token rotation just works).
 *
 * Threads: dp_opclient_fetch_cert() blocks (call it from a thread that may block, or at start).
 * The config stream runs on its own thread (one long-lived GET; blocking libcurl is the simplest
 * correct thing for exactly one stream) and hands every event to the owner's loop with
 * dp_loop_post(); callbacks therefore run on that loop's thread, in stream order.
 */
#ifndef DP_OPCLIENT_H
#define DP_OPCLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "loop.h"

struct dp_opclient_cfg {
    const char *address;    /* "istiod.istio-system.svc:15012" (host:port) */
    const char *connect_to; /* optional "ip:port" to dial instead of resolving address's host;
                               the certificate is still verified for address's host */
    const char *root_cert;  /* PEM file with the trusted root(s) */
    const char *token_file; /* bearer token file (projected SA token); NULL = none */
    unsigned timeout_ms;    /* connect + request timeout for one-shot calls (default 10 s) */
};

/**
 * Create a fresh ECDSA P-256 key and a CSR for `identity` (spiffe://...), POST it to
 * /v1/certificates with ttlSeconds, and check the answer: a chain whose leaf carries exactly
 * `identity` and matches the key.
 *
 * @param ret_key_pem  new string (PEM private key) — the caller must never log it
 * @param ret_chain    new reference: JSON array of PEM strings, leaf first, root last
 * @return 0, or -EACCES (401), -EPERM (403, errbuf has the operator's reason), -EINVAL (400 or a
 *         malformed answer), -ECONNREFUSED/-ETIMEDOUT/-EPROTO (transport), -ENOMEM.
 */
int dp_opclient_fetch_cert(const struct dp_opclient_cfg *cfg, const char *identity,
                           unsigned ttl_s, char **ret_key_pem, json_t **ret_chain, char *errbuf,
                           size_t errsz);

/** One event of the stream (borrowed: valid during the callback). `type` is "upsert",
 *  "delete", "synced", "reset"; pings are not delivered. A callback with event == NULL and
 *  `connected` == false reports that the stream dropped (it reconnects by itself). */
typedef void dp_opstream_cb(struct dp_loop *loop, const json_t *event, bool connected,
                            void *arg);

struct dp_opstream;

/**
 * Start following GET /v1/config?node=<node> on a background thread; after a disconnect it
 * reconnects with jittered exponential backoff (200 ms .. 30 s) and `since=<last version>`, so
 * the operator can send only the difference (or `reset` + a full snapshot).
 * cfg's strings are copied. Returns 0 and the stream, or -errno.
 */
int dp_opstream_start(struct dp_loop *loop, const struct dp_opclient_cfg *cfg, const char *node,
                      dp_opstream_cb *cb, void *arg, struct dp_opstream **ret_stream);

/** Stop the thread and wait for it; events still queued on the loop are dropped. Must be
 *  called on the loop's thread. Accepts NULL. */
void dp_opstream_stop(struct dp_opstream *s);

/** Highest version received so far (0 = none). Loop thread. */
uint64_t dp_opstream_version(const struct dp_opstream *s);

#endif
