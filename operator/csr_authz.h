/*
 * csr_authz.h — may this caller get a certificate for that identity? (reference §2.11)
 *
 * The caller is a node agent, authenticated by a TokenReview of its projected service-account
 * token. The decision, in order:
 *   1. the token is authenticated (else 401);
 *   2. the token's service account is one of the trusted node-agent accounts (else 403);
 *   3. the caller's node is known: from the token's node-name claim, else from its bound pod
 *      (pod-name [+ pod-uid] claims) looked up in the pod cache, which must exist, match the uid
 *      and run under the same service account (else 403);
 *   4. the identity is spiffe://<trust domain>/ns/<ns>/sa/<sa> of our trust domain (else 400);
 *   5. a pod with that namespace and service account (default "default") runs on the caller's
 *      node and is not terminated (phase Succeeded/Failed or deletion in progress), or the
 *      identity is a waypoint (namespace/name = ns/sa) placed on that node (else 403).
 * Pure: works on the informer caches, no I/O.
 */
#ifndef OP_CSR_AUTHZ_H
#define OP_CSR_AUTHZ_H

#include <stddef.h>

#include <jansson.h>

#include "kube.h"

struct op_csr_policy {
    const char *trust_domain;             /* "cluster.local" */
    const char *const *trusted_accounts;  /* NULL-terminated "ns/sa" list */
};

/**
 * Returns 0 (allowed), -EACCES (401: not authenticated), -EPERM (403: not allowed; `why` says
 * which rule refused), -EINVAL (400: malformed identity). `why` is always written.
 * pods: "<ns>/<name>" -> Pod; waypoints: mesh waypoint objects by key (may be NULL).
 */
int op_csr_authorize(const struct op_csr_policy *pol, const struct dp_kube_token_info *caller,
                     const char *identity, const json_t *pods, const json_t *waypoints,
                     char *why, size_t whysz);

/** Parse "spiffe://td/ns/<ns>/sa/<sa>" into its parts (copied into the buffers, each 254 bytes).
 *  0 or -EINVAL. */
int op_spiffe_parse(const char *id, char td[254], char ns[254], char sa[254]);

#endif
