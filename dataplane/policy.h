/*
 * policy.h — L4 authorization (ztunnel semantics, reference §2.6) and the compilers that turn
 * Istio AuthorizationPolicy / PeerAuthentication custom resources into mesh policy objects
 * (reference §2.6, §2.7). The evaluator is used by the node agent on every inbound connection;
 * the compilers by the operator when it builds the snapshot it streams.
 *
 * Evaluation order for a destination workload (dp_policy_check):
 *   policies considered = Namespace-scope policies of the workload's namespace
 *                       + every Global-scope policy (the operator only emits Global for the
 *                         root namespace)
 *                       + the workload's `authorizationPolicies` keys (unknown keys ignored)
 *   1. any matching DENY policy            -> deny  "explicitly denied by: <ns>/<name>"
 *   2. no ALLOW policy at all              -> allow
 *   3. any matching ALLOW policy           -> allow "allowed by: <ns>/<name>"
 *   4. otherwise                           -> deny  "allow policies exist, but none allowed"
 * Dry-run policies never change the verdict; what they would have done is reported in the
 * result (dry_run_*), for logging.
 *
 * Match model: policy matches if ANY group matches (zero groups: never); group if ALL clauses
 * match (zero clauses: always); clause if ANY match matches; a match if every populated field
 * matches (values within a field OR) and no not_* value matches; an empty match never matches.
 * principals are compared without "spiffe://"; namespaces / serviceAccounts are taken from the
 * peer identity "<td>/ns/<ns>/sa/<sa>"; a connection without identity (plaintext) matches no
 * positive principal/namespace/serviceAccount value and no not_* value of those fields.
 *
 * Pure functions: no allocation in the evaluator, no logging, thread-safe.
 */
#ifndef DP_POLICY_H
#define DP_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "mesh.h"

/* ------------------------------------------------------------------ evaluator */

/** The connection being authorized. */
struct dp_policy_conn {
    /** Peer SPIFFE identity, with or without "spiffe://"
     *  ("cluster.local/ns/default/sa/sleep"); NULL or "" for plaintext (15006). */
    const char *identity;
    struct dp_mesh_ip src_ip;
    struct dp_mesh_ip dst_ip; /* the destination pod IP */
    uint16_t dst_port;        /* the destination (target) port */
};

#define DP_POLICY_REASON_MAX 600

struct dp_policy_result {
    bool allowed;
    /** The policy that decided (matching DENY, or matching ALLOW), borrowed from the snapshot
     *  (or the caller's array); NULL when decided by default (no ALLOW policies / none matched). */
    const struct dp_mesh_policy *policy;
    /** ztunnel-style reason: "explicitly denied by: ns/name", "allowed by: ns/name",
     *  "no allow policies", "allow policies exist, but none allowed". */
    char reason[DP_POLICY_REASON_MAX];
    /** What the verdict would be if dry-run policies were enforced, and the dry-run policy
     *  responsible (NULL if dry-run policies made no difference). */
    bool dry_run_allowed;
    const struct dp_mesh_policy *dry_run_policy;
};

/** Does one match / one policy match the connection? (exported for tests and ambitctl) */
bool dp_policy_match_matches(const struct dp_mesh_match *m, const struct dp_policy_conn *c);
bool dp_policy_matches(const struct dp_mesh_policy *p, const struct dp_policy_conn *c);

/**
 * Evaluate an explicit list of policies (borrowed). Duplicates are harmless.
 * @return 0 (always succeeds; *ret_result written).
 */
int dp_policy_evaluate(const struct dp_mesh_policy *const *policies, size_t n,
                       const struct dp_policy_conn *c, struct dp_policy_result *ret_result);

/**
 * Select the policies for destination workload `dst` in snapshot `s` (see the header comment)
 * and evaluate them. Pointers in the result are borrowed from `s`. dst == NULL (a destination
 * not in the snapshot) is denied: "unknown destination workload".
 * @return 0.
 */
int dp_policy_check(const struct dp_mesh_snapshot *s, const struct dp_mesh_workload *dst,
                    const struct dp_policy_conn *c, struct dp_policy_result *ret_result);

/* ------------------------------------------------------------------ compiler diagnostics */

#define DP_POLICY_MAX_DIAGS 32
#define DP_POLICY_DIAG_LEN  384

/** Warnings and errors of a compiler run, each "<json path>: <message>", e.g.
 *  "spec.rules[1].to[0].operation.methods: ztunnel does not support HTTP attributes (rule
 *  dropped from ALLOW policy)". Keep it zero-initialised before the first use. Every compiler
 *  accepts diags == NULL (diagnostics discarded). */
struct dp_policy_diags {
    size_t n;       /* entries stored in items */
    size_t dropped; /* entries beyond DP_POLICY_MAX_DIAGS */
    size_t n_errors, n_warnings;
    struct {
        bool error;
        char text[DP_POLICY_DIAG_LEN];
    } items[DP_POLICY_MAX_DIAGS];
};

/* ------------------------------------------------------------------ AuthorizationPolicy */

/**
 * Compile one security.istio.io AuthorizationPolicy (the CR as JSON: apiVersion, kind,
 * metadata{name, namespace, annotations}, spec) into L4 policy objects (the JSON `object` of a
 * `policy` mesh object, key = "<namespace>/<name>").
 *   - spec.targetRef / targetRefs present -> nothing (waypoint policy), a warning.
 *   - action AUDIT / CUSTOM -> nothing, a warning.
 *   - scope: selector -> WorkloadSelector; none -> Namespace, or Global in `root_ns`.
 *   - dryRun from annotation istio.io/dry-run: "true".
 *   - ALLOW rules using HTTP-only attributes (hosts, methods, paths, requestPrincipals,
 *     remoteIpBlocks, non-L4 `when` keys) are dropped (more restrictive) with a warning;
 *     DENY rules have those parts removed (also more restrictive: the stripped part matches
 *     everything) with a warning.
 *   - `from` -> one clause (a match per source), `to` -> one clause (a match per operation),
 *     each `when` -> one clause; istio string forms "*", "abc*", "*abc" become presence /
 *     prefix / suffix; ports are strings "8080"; ipBlocks CIDRs.
 *   - ipBlocks with host bits set ("10.1.2.3/8") are masked, with a warning (Istio accepts them).
 * Errors inside spec.rules (wrong types, bad CIDR, bad port, empty source, `when` without
 * values) fail closed, as istiod does: an ALLOW rule in error is left out (allows nothing), a
 * DENY rule in error becomes a match-everything rule (denies everything); the policy is still
 * returned and each error is an error diagnostic (diags->n_errors > 0: surface it in status).
 * Errors that leave no policy to emit (CR not an object, missing metadata.name/namespace, spec
 * not an object, unknown action) -> -EINVAL, nothing returned.
 * @param ret_policies NEW reference to a JSON array of 0 or 1 policy objects.
 * @return 0 (check diags for warnings and rule errors), -EINVAL, -ENOMEM.
 */
int dp_policy_compile_authz(const json_t *cr, const char *root_ns, json_t **ret_policies,
                            struct dp_policy_diags *diags);

/**
 * Does an AuthorizationPolicy / PeerAuthentication CR with a spec.selector apply to a workload
 * in namespace `ns` with `labels` (JSON object of strings)? matchLabels must be a subset of the
 * labels. AuthorizationPolicy: the CR's namespace must equal `ns`, or be the root namespace
 * (root-namespace selector policies select in every namespace). PeerAuthentication: same
 * namespace only (root-namespace selector PAs are ignored, reference §2.7).
 * A CR without selector returns false (it is Namespace/Global scoped, not per workload).
 */
bool dp_policy_cr_selects(const json_t *cr, const char *root_ns, const char *ns,
                          const json_t *labels);

/* ------------------------------------------------------------------ PeerAuthentication */

#define DP_POLICY_STATIC_STRICT_NAME "istio_converted_static_strict"
#define DP_POLICY_PA_PREFIX          "converted_peer_authentication_"

/**
 * Compile the set of PeerAuthentication CRs (a JSON array of CRs) into policy objects:
 *   - if any PA exists: "<root_ns>/istio_converted_static_strict", WorkloadSelector scope,
 *     DENY when notPrincipals [presence] (no peer identity);
 *   - for every selector PA (outside the root ns) with portLevelMtls:
 *     "<ns>/converted_peer_authentication_<name>", WorkloadSelector scope, DENY without peer
 *     identity, either on all ports but the PERMISSIVE/DISABLE carve-outs (effective mode
 *     STRICT: notDestinationPorts) or only on the STRICT ports (effective mode permissive:
 *     destinationPorts). The effective mode of the PA is its own mtls.mode, else the oldest
 *     namespace-wide PA's, else the oldest root one's, else PERMISSIVE. DISABLE counts as
 *     PERMISSIVE (HBONE is always mTLS).
 * A malformed PA (bad mode, bad port, missing name) is skipped with an error diagnostic and the
 * others are still compiled (as istiod ignores invalid config; failing everything would drop
 * STRICT for every workload).
 * @param ret_policies NEW reference to a JSON array of policy objects.
 * @return 0 (check diags->n_errors), -EINVAL (`pas` is not an array), -ENOMEM.
 */
int dp_policy_compile_peerauthn(const json_t *pas, const char *root_ns, json_t **ret_policies,
                                struct dp_policy_diags *diags);

/**
 * The PeerAuthentication-derived policy keys a workload (namespace `ns`, `labels`) must list in
 * its `authorizationPolicies`: its selector PA with portLevelMtls (oldest matching one) ->
 * "<ns>/converted_peer_authentication_<name>"; else effective mode STRICT (workload >
 * namespace > root precedence) -> "<root_ns>/istio_converted_static_strict"; else none.
 * Malformed PAs are skipped as in dp_policy_compile_peerauthn.
 * @param ret_keys NEW reference to a JSON array of strings (possibly empty).
 */
int dp_policy_peerauthn_keys(const json_t *pas, const char *root_ns, const char *ns,
                             const json_t *labels, json_t **ret_keys,
                             struct dp_policy_diags *diags);

#endif
