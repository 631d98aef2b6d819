/*
 * opclient.h — the node agent's client of the operator (PROTOCOLS.md §2, port 15012):
 *
 *   config:       GET /v1/config?node=<name>[&since=<v>] — an NDJSON event stream folded into
 *                 mesh snapshots (dp_mesh_stream); every `synced` publishes a new snapshot to
 *                 the agent. On disconnect the agent keeps serving the last good snapshot and
 *                 reconnects with `since` and capped exponential backoff (0.5 s .. 30 s).
 *   certificates: an identity provider (identity.h) that generates an ECDSA P-256 key per
 *                 SPIFFE identity and POSTs a CSR to /v1/certificates.
 *
 * Both authenticate with `Authorization: Bearer <token>` (the token file is re-read for every
 * request, since projected tokens rotate) and verify the operator's certificate against the
 * root file; a plain http:// URL is accepted for tests.
 *
 * The config stream runs on its own thread with a blocking libcurl transfer (it is one long
 * request and never touches a worker loop); snapshots are published with na_view_set().
 * Certificate requests are blocking HTTP calls on the calling thread with a 5 s timeout
 * (identities are cached and only re-issued past half-life).
 */
#ifndef NA_OPCLIENT_H
#define NA_OPCLIENT_H

#include <stdint.h>

struct na_agent;
struct na_identity;
struct na_opclient;

struct na_opclient_config {
    const char *url;        /* "https://ambit-operator.istio-system.svc:15012" */
    const char *token_file; /* projected service-account token; NULL = none */
    const char *ca_file;    /* root that signed the operator's serving cert (and the mesh) */
    const char *node;       /* node name for ?node= */
};

/** Start the config stream thread. The agent must outlive the client. 0 or -errno. */
int na_opclient_start(struct na_agent *a, const struct na_opclient_config *cfg,
                      struct na_opclient **ret_c);
/** Stop the thread (aborts the transfer) and free; accepts NULL. */
void na_opclient_stop(struct na_opclient *c);
/** Highest config version applied (0 before the first `synced`). */
uint64_t na_opclient_version(const struct na_opclient *c);

/** Identity provider backed by POST /v1/certificates. The config is copied. 0 or -errno. */
int na_identity_operator_new(const struct na_opclient_config *cfg, unsigned ttl_s,
                             struct na_identity **ret_idp);

#endif
