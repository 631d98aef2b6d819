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
 * correct thing for exactly one stream) and calls the owner's callback ON THAT THREAD, in stream
 * order; the owner hands results to its loops with thread-safe means (a rwlock-swapped
 * snapshot, dp_loop_post).
 */
#ifndef DP_OPCLIENT_H
#define DP_OPCLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

struct dp_opclient_cfg {
    const char *url;        /* "https://istiod.istio-system.svc:15012" (http:// for tests) */
    const char *connect_to; /* optional "ip:port" to dial instead of resolving the URL's host;
                               the certificate is still verified for the URL's host */
    const char *root_cert;  /* PEM file with the trusted root(s); NULL = system store */
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

/** One event of the stream (borrowed: valid during the callback), called on the stream's
 *  thread. `type` is "upsert", "delete", "synced", "reset"; pings are not delivered. A call with
 *  event == NULL reports that the stream ended: `http` is the status (0 = no answer) and `why`
 *  the transport's reason (it reconnects by itself). */
typedef void dp_opstream_cb(const json_t *event, long http, const char *why, void *arg);

struct dp_opstream;

/**
 * Start following GET /v1/config?node=<node> on a background thread; after a disconnect it
 * reconnects with jittered exponential backoff (500 ms .. 30 s, back to the minimum once a
 * stream made progress) and `since=<last version>`, so the operator can send only the
 * difference (or `reset` + a full snapshot; a reset also restarts the version count).
 * cfg's strings are copied. Returns 0 and the stream, or -errno.
 */
int dp_opstream_start(const struct dp_opclient_cfg *cfg, const char *node, dp_opstream_cb *cb,
                      void *arg, struct dp_opstream **ret_stream);

/** Abort the transfer, join the thread, free. No callback runs after it returns. Accepts NULL. */
void dp_opstream_stop(struct dp_opstream *s);

/** Highest version received so far (0 = none). Any thread. */
uint64_t dp_opstream_version(const struct dp_opstream *s);

#endif
