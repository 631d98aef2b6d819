/*
 * analyze.h — configuration analyzer (istioctl analyze's role): objects the schema accepts but
 * that make no sense. Library code: `ambitctl analyze` and (later) the operator's status
 * conditions and validating webhook use it. Pure: works on maps of objects, no I/O.
 *
 * Findings (a JSON array) are {"level": "Error"|"Warning", "code": "...", "resource":
 * "VirtualService bookinfo/reviews", "path": "spec.http[0].route[1].destination.subset",
 * "message": "..."}. Codes:
 *   WeightsNot100        route destinations' weights do not sum to 100 (Warning)
 *   SubsetNotDefined     destination subset not defined by any DestinationRule of the host (Error)
 *   SubsetSelectsNothing a DestinationRule subset whose labels match no pod of the host's
 *                        service (Warning)
 *   InvalidRegex         a regex StringMatch that does not compile (Error; checked with POSIX
 *                        extended syntax, an approximation of RE2)
 *   UnknownHost          a destination host that is neither a Service (short name resolved in
 *                        the VirtualService's namespace, or <name>.<ns>[.svc[.cluster.local]])
 *                        nor a ServiceEntry host (Warning)
 *   SelectorAndTargetRefs  selector together with targetRef(s) (Error)
 */
#ifndef OP_ANALYZE_H
#define OP_ANALYZE_H

#include <jansson.h>

/** Maps "<ns>/<name>" -> object (borrowed; NULL = none). */
struct op_analyze_inputs {
    const json_t *virtual_services, *destination_rules, *service_entries;
    const json_t *services, *pods;
    const json_t *authorization_policies, *request_authentications, *telemetries;
    const char *dns_domain; /* "cluster.local" */
};

/** Run every rule. Returns 0 and a NEW array of findings (possibly empty), or -ENOMEM. */
int op_analyze(const struct op_analyze_inputs *in, json_t **ret_findings);

#endif
