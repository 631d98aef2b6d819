/*
 * server.h — the operator's endpoints for node agents on 15012 (PROTOCOLS.md §2):
 *
 *   GET  /v1/config?node=<name>[&since=<version>]  NDJSON stream of mesh object events: the
 *        full snapshot (or, with a `since` the event log still covers, only what changed,
 *        else `reset` + full snapshot), `synced`, then every later batch + `synced`, and a
 *        `ping` every 15 s when idle. A slow agent whose unsent output exceeds the stream
 *        limit is disconnected (it resumes with since=...), so it cannot stall others.
 *   POST /v1/certificates  {"csr": PEM, "identity": "spiffe://...", "ttlSeconds": N}
 *        -> 200 {"certChain": [leaf, ..., root]}; 401 bad token; 403 identity not allowed on
 *        the caller's node (body says why); 400 malformed.
 *   GET  /v1/roots  -> the trust root PEM.
 *   GET  /ready     -> 200 once the first snapshot is built, else 503.
 *
 * With `webhook`, the server instead answers POST /validate: a validating admission webhook
 * (AdmissionReview v1) for Istio kinds, analyzed (analyze.h) against the live caches. Findings
 * that make an object wrong on its own (dp_analyze_rejects: InvalidRegex, SelectorAndTargetRefs)
 * deny it with the findings as the message; its other findings are returned as admission
 * warnings. No bearer token: the API server calls it
 * (register it with a ValidatingWebhookConfiguration whose caBundle is the mesh root).
 *
 * Every request except /v1/roots and /ready carries `Authorization: Bearer <projected
 * service-account token>`; the operator checks it with a TokenReview (audience configurable,
 * default istio-ca) and requires a trusted node-agent service account (csr_authz.h).
 *
 * TLS: the listener serves TLS 1.2+ with a serving certificate issued by the operator's own CA
 * (serving_cert.h: SANs istiod.<ns>.svc, ambit-operator.<ns>.svc and their short forms, plus
 * localhost), so agents verify it against the published root and the API server against the
 * webhook's caBundle (webhook_config.h). A new certificate is issued at the first handshake
 * after the CA changed (once the CA gate, if set, agrees) or after two thirds of its lifetime;
 * `plaintext` serves HTTP (tests, debugging).
 */
#ifndef OP_SERVER_H
#define OP_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "operator.h"

struct op_server;
struct dp_metrics;

struct op_server_config {
    const char *listen;          /* "0.0.0.0:15012" */
    bool plaintext;
    const char *token_audience;  /* "istio-ca"; NULL or "" = the API server's default */
    uint64_t ping_ms;            /* 15000 */
    size_t max_stream_pending;   /* 4 MiB */
    bool webhook;                /* serve only POST /validate (the admission webhook, 15017) */
    int64_t serving_ttl_s;       /* serving certificate lifetime (serving_cert.h; 30 days) */
};

void op_server_config_defaults(struct op_server_config *c);

/** New server bound to cfg->listen; metrics (may be NULL) receives its counters.
 *  *ret_port (optional) = the bound port. 0 or -errno. */
int op_server_new(struct op_ctx *op, const struct op_server_config *cfg, struct dp_metrics *m,
                  struct op_server **ret_srv, uint16_t *ret_port);
void op_server_free(struct op_server *srv);
/**
 * After a CA change, hold the old serving certificate until cb(arg) says the clients trust the
 * new CA (the webhook: caBundle updated, webhook_config.h), at most OP_SERVER_CA_GATE_MAX_S;
 * renewal waits too. NULL = switch at the next handshake. cb runs on the loop, arg borrowed.
 */
#define OP_SERVER_CA_GATE_MAX_S 30
typedef bool op_server_ca_gate_cb(void *arg);
void op_server_set_ca_gate(struct op_server *srv, op_server_ca_gate_cb *cb, void *arg);
/** Connected config streams. */
unsigned op_server_streams(const struct op_server *srv);

#endif
