/*
 * ca_store.h — where the operator's signing CA comes from (reference §7):
 *   1. Secret `cacerts` in the operator's namespace (plug-in CA): ca-cert.pem, ca-key.pem,
 *      root-cert.pem, cert-chain.pem (or the kubernetes.io/tls layout tls.crt, tls.key, ca.crt);
 *   2. else Secret `istio-ca-secret` (ca-cert.pem, ca-key.pem: our earlier self-signed root);
 *   3. else a new self-signed root (ECDSA P-256, 10 years) stored as `istio-ca-secret` (type
 *      istio.io/ca-root). If another replica wins the create race, its root is used.
 * Blocking (dp_kube_client): called at start-up and when `cacerts` changes.
 */
#ifndef OP_CA_STORE_H
#define OP_CA_STORE_H

#include <jansson.h>

#include "ca.h"
#include "kube.h"

struct op_ca {
    struct dp_ca *ca;   /* signing CA (key + cert + chain up to the root) */
    char *root_pem;     /* the trust root to publish (root-cert.pem) */
    char *chain_pem;    /* what follows the leaf in issued chains: ca cert + chain, root last */
    const char *source; /* "cacerts", "istio-ca-secret" or "self-signed" (static) */
};

void op_ca_free(struct op_ca *ca);

/** Load a CA from a Secret object (its base64 `data`). 0, -ENOENT (keys missing), -EINVAL. */
int op_ca_from_secret(const json_t *secret, struct op_ca **ret_ca, char *errbuf, size_t errsz);

/** The start-up sequence above. 0 and a new CA, or -errno (errbuf says what failed). */
int op_ca_bootstrap(struct dp_kube_client *c, const char *ns, struct op_ca **ret_ca,
                    char *errbuf, size_t errsz);

/** Sign a PEM CSR: leaf + chain (leaf first, root last) as a JSON array of PEM strings (NEW).
 *  *ret_uri (new, free()) receives the CSR's URI SAN. -EINVAL for a bad CSR. */
int op_ca_sign(const struct op_ca *ca, const char *csr_pem, size_t csr_len, int64_t ttl_s,
               json_t **ret_chain, char **ret_uri);

#endif
