/*
 * serving_cert.h — the TLS certificate the operator's own endpoints present (15012 for node
 * agents, 15017 for the API server's admission calls).
 *
 * A fresh P-256 key and a leaf signed by the operator's signing CA (op_ca), with the DNS names
 * clients dial: istiod.<ns>.svc (the name the API server verifies for a webhook Service
 * `istiod` in <ns>), istiod.<ns>.svc.cluster.local, istiod.<ns>, istiod, the same four for
 * ambit-operator (our own name), plus localhost and 127.0.0.1 (tests, port-forward). The chain
 * up to (not including) the root is sent, so a client holding the mesh root (agents:
 * root-cert.pem; the API server: the webhook's caBundle) verifies it.
 *
 * Lifetime: `ttl_s` (default OP_SERVING_TTL_S), cut to the CA's own notAfter (a leaf never
 * outlives its issuer); the owner replaces it at `renew_at` = two thirds of the lifetime, so a
 * handshake never sees a certificate with less than a third of its life left. The owner also
 * replaces it when the CA changes (op_ca_generation).
 */
#ifndef OP_SERVING_CERT_H
#define OP_SERVING_CERT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "ca_store.h"

#define OP_SERVING_TTL_S (30 * 86400)

struct op_serving_times {
    int64_t not_before; /* now - 60 s (clock skew) */
    int64_t not_after;  /* now + ttl, at most the CA's notAfter */
    int64_t renew_at;   /* now + 2/3 of the lifetime (not_after - now) */
};

/**
 * Pure: validity of a certificate issued at `now` (unix seconds) for ttl_s, under a CA that
 * expires at ca_not_after. 0, or -EINVAL when ttl_s < 3 or the CA has less than 3 s left
 * (nothing sensible can be issued).
 */
int op_serving_times(int64_t now, int64_t ttl_s, int64_t ca_not_after,
                     struct op_serving_times *ret_times);

/** The subjectAltName value for namespace ns ("DNS:istiod.<ns>.svc,..."). 0 or -ENAMETOOLONG. */
int op_serving_sans(const char *ns, char *buf, size_t bufsz);

/**
 * Issue a serving certificate from `ca` at `now` and wrap it in a new server SSL_CTX (TLS 1.2+,
 * partial writes, chain without the root). *ret_ctx is new (SSL_CTX_free); *ret_renew_at
 * (optional) receives the renewal time. 0, -EINVAL (see op_serving_times), -ENOMEM, -EIO.
 */
int op_serving_ctx_new(const struct op_ca *ca, const char *ns, int64_t ttl_s, int64_t now,
                       SSL_CTX **ret_ctx, int64_t *ret_renew_at);

#endif
