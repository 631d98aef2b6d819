/*
 * analyze.h — configuration analyzer (istioctl analyze's role): objects the schema accepts but
 * that make no sense. Library code shared by the operator (status of the analyzed objects,
 * validating webhook) and `ambitctl analyze`. Pure: works on maps of objects, no I/O, no logs.
 *
 * Findings (a JSON array) are objects
 *   {"level": "Error"|"Warning", "code": "<ambit code>", "istioCode": "IST0101",
 *    "istioName": "ReferencedResourceNotFound", "kind": "VirtualService",
 *    "namespace": "bookinfo", "name": "reviews", "resource": "VirtualService bookinfo/reviews",
 *    "path": "spec.http[0].route[1].destination.subset", "message": "..."}
 * istioCode/istioName are Istio's analysis message type for the same problem (absent when
 * Istio has none). Codes:
 *   WeightsNot100        route destinations' weights do not sum to 100 (Warning; IST0133
 *                        SchemaWarning: Istio accepts and normalizes such weights)
 *   SubsetNotDefined     destination subset not defined by any DestinationRule of the host
 *                        (Error; IST0101 ReferencedResourceNotFound, `host+subset`)
 *   SubsetSelectsNothing a DestinationRule subset whose labels match no pod of the host's
 *                        Service (Error; IST0173 DestinationRuleSubsetNotSelectPods)
 *   InvalidRegex         a regex StringMatch that does not compile (Error; IST0122
 *                        InvalidRegexp; checked with POSIX extended syntax, an approximation
 *                        of RE2)
 *   UnknownHost          a destination host that is neither a Service (short name resolved in
 *                        the VirtualService's namespace, or <name>.<ns>[.svc[.<domain>]]) nor a
 *                        ServiceEntry host (Error; IST0101 ReferencedResourceNotFound, `host`)
 *   SelectorAndTargetRefs  selector together with targetRef(s) (Error; IST0106
 *                        SchemaValidationError)
 *   ConflictingVirtualServiceHosts  two VirtualServices bound to the mesh (no gateways, or
 *                        "mesh") define one host (short or full name) and are visible to the
 *                        same clients (same namespace, or both exported everywhere): only one
 *                        applies (Error; IST0109 ConflictingMeshGatewayVirtualServiceHosts)
 *   ConflictingPeerAuthentication  a PeerAuthentication that never applies because an older
 *                        one covers the same scope: a second namespace-wide (mesh-wide in the
 *                        root namespace) policy, or a selector policy matching a pod another
 *                        older selector policy also matches (Warning; Istio has no code: it
 *                        silently uses the oldest, then by name)
 */
#ifndef DP_ANALYZE_H
#define DP_ANALYZE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/** Maps "<ns>/<name>" -> object (borrowed; NULL = none, except pods: NULL = unknown, so
 *  SubsetSelectsNothing is not checked — e.g. files without any Pod). */
struct dp_analyze_inputs {
    const json_t *virtual_services, *destination_rules, *service_entries;
    const json_t *services, *pods;
    const json_t *authorization_policies, *request_authentications, *telemetries;
    const json_t *peer_authentications;
    const char *dns_domain; /* NULL = "cluster.local" */
    const char *root_ns;    /* mesh-wide policies; NULL = "istio-system" */
};

/** Run every rule. Returns 0 and a NEW array of findings (possibly empty), or -ENOMEM. */
int dp_analyze(const struct dp_analyze_inputs *in, json_t **ret_findings);

/** True for codes that are wrong in the object itself whatever else exists in the cluster
 *  (the admission webhook rejects them); cross-object findings are only warned about, since
 *  the referenced object may be created a moment later. */
bool dp_analyze_rejects(const char *code);

/** One finding as istioctl prints it: `Error [IST0101] (VirtualService ns/name) message`
 *  (the ambit code when Istio has none). Truncates to sz; returns the untruncated length. */
int dp_analyze_format(const json_t *finding, char *buf, size_t sz);

#endif
