/*
 * tls.h — mTLS for HBONE: SPIFFE identities, per-identity key material with ready-made
 * OpenSSL contexts, an identity store with atomic replacement on renewal, and a
 * non-blocking TLS transport over a socket fd.
 *
 * Wire profile (ztunnel's): TLS 1.3 only, suites TLS_AES_256_GCM_SHA384 and
 * TLS_AES_128_GCM_SHA256, ALPN "h2" (required), no SNI, no session tickets/resumption,
 * both sides present a certificate.
 *
 * Peer verification replaces OpenSSL's hostname logic: the peer chain must verify against
 * the identity's trust roots (expiry included), and then
 *   - client side: some URI SAN of the leaf equals one of the expected identities;
 *   - server side: the leaf carries a URI SAN spiffe://<our trust domain>/... .
 * DNS SANs are ignored. Failures carry a readable reason (dp_tls_error()):
 *   "peer certificate expired", "peer certificate not yet valid", "unknown CA",
 *   "SAN mismatch: got <uri> want <uri>", "peer did not present a certificate",
 *   "no SPIFFE SAN in trust domain <td>", "no ALPN h2", "tls alert: <desc>" (peer refused us).
 *
 * Threads: dp_identity and dp_idstore may be shared between loops (atomic refcount, store
 * guarded by a mutex); a struct dp_tls belongs to one loop.
 */
#ifndef DP_TLS_H
#define DP_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

/* ------------------------------------------------------------------ SPIFFE IDs */

#define DP_SPIFFE_MAX 512 /* bytes of a formatted SPIFFE ID including NUL */

/** spiffe://<td>/ns/<ns>/sa/<sa>. Components are non-empty and have no '/'. */
struct dp_spiffe_id {
    char td[256];
    char ns[128];
    char sa[128];
};

/**
 * Parse `uri` (len bytes, need not be NUL-terminated). Only the Kubernetes workload form
 * spiffe://td/ns/NS/sa/SA is accepted; components: 1..limit bytes of [A-Za-z0-9._-] (td
 * also allows ':'; no '%' escapes). 0 and *ret_id, or -EINVAL with *ret_err (static string)
 * set when ret_err != NULL.
 */
int dp_spiffe_parse(const char *uri, size_t len, struct dp_spiffe_id *ret_id, const char **ret_err);
/** Format into out (outsz >= DP_SPIFFE_MAX suffices). Returns length or -ENOSPC. */
int dp_spiffe_format(const struct dp_spiffe_id *id, char *out, size_t outsz);
/** True when uri starts with "spiffe://<td>/" (td compared exactly). */
bool dp_spiffe_in_trust_domain(const char *uri, size_t len, const char *td);

/* ------------------------------------------------------------------ identities */

/**
 * Key material for one SPIFFE identity: private key, certificate chain (leaf first), trust
 * roots, the leaf's URI SAN, validity, and a client and server SSL_CTX built from them.
 * Immutable after creation, reference-counted (atomic); renewal creates a new one.
 */
struct dp_identity;

/**
 * Build an identity. `key`, `chain` (leaf first, at least one cert) and `roots` are
 * borrowed: the identity takes its own references. The leaf must match the key and carry a
 * SPIFFE URI SAN, which becomes the identity's name. Returns 0 and a new reference, or
 * -EINVAL (with a static reason in *ret_err if non-NULL) / -ENOMEM.
 */
int dp_identity_new(EVP_PKEY *key, STACK_OF(X509) * chain, STACK_OF(X509) * roots,
                    struct dp_identity **ret_id, const char **ret_err);
/** Same from PEM text: key, chain (leaf first, root may be included), roots. */
int dp_identity_from_pem(const char *key_pem, size_t key_len, const char *chain_pem,
                         size_t chain_len, const char *roots_pem, size_t roots_len,
                         struct dp_identity **ret_id, const char **ret_err);
/** Same from files (each at most 1 MiB). */
int dp_identity_load_files(const char *key_path, const char *chain_path, const char *roots_path,
                           struct dp_identity **ret_id, const char **ret_err);

struct dp_identity *dp_identity_ref(struct dp_identity *id);
/** Drop a reference; accepts NULL. */
void dp_identity_unref(struct dp_identity *id);

/** The SPIFFE ID (borrowed, valid while the reference is held). */
const char *dp_identity_name(const struct dp_identity *id);
/** Trust domain of the identity (borrowed). */
const char *dp_identity_trust_domain(const struct dp_identity *id);
/** Leaf validity in unix seconds. */
int64_t dp_identity_not_before(const struct dp_identity *id);
int64_t dp_identity_not_after(const struct dp_identity *id);
/** True if now (unix seconds) is outside [not_before, not_after]. */
bool dp_identity_expired(const struct dp_identity *id, int64_t now);
/** Leaf serial number as upper-case hex (borrowed). */
const char *dp_identity_serial(const struct dp_identity *id);
/** PEM of the chain / of the roots (borrowed) — for config dumps; never the key. */
const char *dp_identity_chain_pem(const struct dp_identity *id);
const char *dp_identity_roots_pem(const struct dp_identity *id);

/* ------------------------------------------------------------------ identity store */

/**
 * SPIFFE ID -> current identity. Thread-safe. dp_idstore_put replaces atomically: readers
 * holding the old reference keep using it; new lookups see the new one.
 */
struct dp_idstore;

int dp_idstore_new(struct dp_idstore **ret_store);
/** Free; accepts NULL. Drops the store's references. */
void dp_idstore_free(struct dp_idstore *store);
/** Insert or replace (by dp_identity_name). Takes its own reference. 0 or -ENOMEM. */
int dp_idstore_put(struct dp_idstore *store, struct dp_identity *id);
/** New reference to the current identity for `spiffe`, or -ENOENT. */
int dp_idstore_get(struct dp_idstore *store, const char *spiffe, struct dp_identity **ret_id);
/** Remove (e.g. no more workloads with this identity on the node). 0 or -ENOENT. */
int dp_idstore_remove(struct dp_idstore *store, const char *spiffe);
typedef void dp_idstore_cb(struct dp_identity *id, void *arg);
/** Call cb for each identity (under the lock: cb must not call back into the store). */
void dp_idstore_foreach(struct dp_idstore *store, dp_idstore_cb *cb, void *arg);

/* ------------------------------------------------------------------ TLS transport */

enum dp_tls_role { DP_TLS_CLIENT, DP_TLS_SERVER };

/** One TLS connection over a connected non-blocking socket. Belongs to one loop. */
struct dp_tls;

#define DP_TLS_MAX_SANS 16

/**
 * New TLS connection on `fd` (borrowed: the caller keeps owning and closing it) as `role`
 * with identity `id` (a reference is taken). Client side: `expected_sans` (n_sans >= 1, at
 * most DP_TLS_MAX_SANS, copied) are the acceptable server identities. Server side: pass
 * NULL/0; any SPIFFE SAN in the identity's trust domain is accepted.
 * 0 and a new object, or -EINVAL/-ENOMEM.
 */
int dp_tls_new(struct dp_identity *id, enum dp_tls_role role, int fd,
               const char *const *expected_sans, unsigned n_sans, struct dp_tls **ret_tls);
/** Free (no close_notify is sent; call dp_tls_shutdown first for that). Accepts NULL. */
void dp_tls_free(struct dp_tls *tls);

/**
 * Drive the handshake. 0 = done (peer verified), -EAGAIN = call again when dp_tls_want()
 * events fire, -ECONNREFUSED = verification or protocol failure (see dp_tls_error()),
 * -ECONNRESET/-EPIPE = the transport died, other -errno.
 */
int dp_tls_handshake(struct dp_tls *tls);
/**
 * Read application data. Returns bytes (> 0), 0 on orderly end (close_notify or TCP EOF),
 * -EAGAIN (see dp_tls_want()), or -errno / -EPROTO.
 */
ssize_t dp_tls_read(struct dp_tls *tls, void *buf, size_t len);
/**
 * Write application data; returns bytes written (partial writes enabled), -EAGAIN, or -errno.
 * After -EAGAIN the same buffer (same pointer allowed to move) must be retried: moving
 * write buffers are enabled.
 */
ssize_t dp_tls_write(struct dp_tls *tls, const void *buf, size_t len);
/**
 * Ciphertext is buffered inside the dp_tls (up to ~256 KiB) and sent in large chunks; every
 * call above already tries to send it. When dp_tls_wpending() is true after a call, watch
 * the fd for writability and call dp_tls_flush() (or any write). 0 = all sent, -EAGAIN =
 * still pending (want WRITE), -errno = transport error.
 */
int dp_tls_flush(struct dp_tls *tls);
bool dp_tls_wpending(const struct dp_tls *tls);
/** Send close_notify (best effort, non-blocking). 0, -EAGAIN or -errno. */
int dp_tls_shutdown(struct dp_tls *tls);
/** DP_EV_READ / DP_EV_WRITE the last -EAGAIN was waiting for. */
unsigned dp_tls_want(const struct dp_tls *tls);
/** True when the TLS layer holds decrypted bytes not yet returned by dp_tls_read(). */
bool dp_tls_pending(const struct dp_tls *tls);
/** Human-readable reason of the last failure ("" if none). Borrowed. */
const char *dp_tls_error(const struct dp_tls *tls);
/** Verified peer SPIFFE ID after the handshake ("" before). Borrowed. */
const char *dp_tls_peer_id(const struct dp_tls *tls);
/** The identity this side presents (borrowed). */
struct dp_identity *dp_tls_identity(const struct dp_tls *tls);
/** The underlying SSL (borrowed) for diagnostics/tests. */
SSL *dp_tls_ssl(const struct dp_tls *tls);

#endif
