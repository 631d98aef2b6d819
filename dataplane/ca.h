/*
 * ca.h — a small X.509 certificate authority for workload identities: ECDSA P-256 keys,
 * CSRs carrying exactly one URI SAN (the SPIFFE ID, empty subject, as ztunnel sends them),
 * and signing them into leaf certificates. Used by unit tests, the `ca` test tool, the
 * file-based test CA of the node agent, and the operator's CA.
 *
 * All objects are OpenSSL types; "new" means the caller owns one reference and frees it
 * with the matching OpenSSL free (EVP_PKEY_free, X509_free, X509_REQ_free, OPENSSL_free).
 * Nothing here logs. Thread-safe (no shared state besides the dp_ca object, which is
 * read-only after creation).
 */
#ifndef DP_CA_H
#define DP_CA_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/** A signing CA: key + certificate (+ optional chain above it, leaf-most first). */
struct dp_ca {
    EVP_PKEY *key;
    X509 *cert;
    STACK_OF(X509) * chain; /* intermediates above cert up to and including the root; may be NULL */
};

/** Fresh ECDSA P-256 key. 0 and a new key, or -ENOMEM/-EIO. */
int dp_ca_key_new(EVP_PKEY **ret_key);

/**
 * New self-signed root CA (P-256, basicConstraints CA:TRUE, keyCertSign) with subject
 * O=<org>, valid from now-60s for `days`. Returns 0 and a new CA (free with dp_ca_free).
 */
int dp_ca_new_root(const char *org, unsigned days, struct dp_ca **ret_ca);

/**
 * New intermediate CA signed by `parent` (valid now-60s .. now+days). The new CA's chain is
 * parent's cert followed by parent's chain. 0 and a new CA, or -errno.
 */
int dp_ca_new_intermediate(const struct dp_ca *parent, const char *org, unsigned days,
                           struct dp_ca **ret_ca);

/** Load a CA from PEM files (key, cert, optional chain file or NULL). -ENOENT/-EINVAL. */
int dp_ca_load_files(const char *key_path, const char *cert_path, const char *chain_path,
                     struct dp_ca **ret_ca);

/** Free a CA; accepts NULL. */
void dp_ca_free(struct dp_ca *ca);

/** CSR for `key` with an empty subject and exactly one URI SAN `uri`. 0 and a new X509_REQ. */
int dp_ca_csr_new(EVP_PKEY *key, const char *uri, X509_REQ **ret_csr);

/**
 * The single URI SAN of a CSR, checked: the CSR signature verifies, it carries exactly one
 * SAN and it is a URI of at most 2048 bytes. Returns 0 and a new NUL-terminated string
 * (free()), or -EINVAL / -EBADMSG (bad signature) / -ENOMEM.
 */
int dp_ca_csr_uri(X509_REQ *csr, char **ret_uri);

/**
 * Sign `csr` into a leaf certificate: subject empty, the CSR's URI SAN copied (critical
 * extension, since the subject is empty), digitalSignature+keyEncipherment, serverAuth +
 * clientAuth, validity [not_before, not_after] in unix seconds (tests pass past values to
 * make expired certs). 0 and a new X509, or -EINVAL (CSR unusable) / -ENOMEM / -EIO.
 */
int dp_ca_sign_csr(const struct dp_ca *ca, X509_REQ *csr, int64_t not_before, int64_t not_after,
                   X509 **ret_cert);

/**
 * Convenience: new key + CSR for `uri` + sign it, valid [now-60s, now+ttl_s]. Writes a new
 * key and a new leaf.
 */
int dp_ca_issue(const struct dp_ca *ca, const char *uri, int64_t ttl_s, EVP_PKEY **ret_key,
                X509 **ret_cert);

/**
 * Operator entry point: sign a PEM CSR. Returns 0 and a new malloc'ed PEM string holding the
 * leaf followed by the CA cert and its chain (leaf first, root last — Istio's cert_chain
 * order); *ret_uri (optional, new) receives the CSR's URI SAN so the caller can authorize it.
 * -EINVAL on an unparsable CSR, -EMSGSIZE if csr_len > 64 KiB.
 */
int dp_ca_sign_csr_pem(const struct dp_ca *ca, const char *csr_pem, size_t csr_len, int64_t ttl_s,
                       char **ret_chain_pem, char **ret_uri);

/* ---- PEM helpers (all return 0 / -errno; *_to_pem write a new malloc'ed NUL-terminated string) */
int dp_pem_key_to_pem(EVP_PKEY *key, char **ret_pem);
int dp_pem_cert_to_pem(X509 *cert, char **ret_pem);
int dp_pem_csr_to_pem(X509_REQ *csr, char **ret_pem);
/** Write PEM text to path with mode (0600 for keys). */
int dp_pem_write_file(const char *path, const char *pem, unsigned mode);

#endif
