/*
 * analysis.h — the analyzer (analyze.h) run against the live caches, its findings written to
 * the status of the analyzed objects (leader only), the way istiod does with analysis on:
 *
 *   status:
 *     observedGeneration: 3
 *     validationMessages:            # Istio's AnalysisMessageBase, one per distinct type
 *     - type: {code: IST0101, name: ReferencedResourceNotFound}
 *       level: ERROR                 # ERROR | WARNING | INFO
 *       documentationUrl: https://istio.io/latest/docs/reference/config/analysis/ist0101/
 *     conditions:                    # ambit: the findings' text (Istio's messages carry none)
 *     - type: Valid
 *       status: "False"
 *       reason: ValidationErrors     # or ValidationWarnings
 *       message: 'Error [IST0101] spec.http[0].route[0].destination.subset: Referenced ...'
 *       observedGeneration: 3
 *       lastTransitionTime: ...
 *
 * Objects: VirtualService, DestinationRule, ServiceEntry, PeerAuthentication. An object
 * without findings gets no status from us; when its findings go away the messages and the
 * condition we wrote are removed (server-side apply of just observedGeneration, field manager
 * "ambit"; only if managedFields say ambit wrote them). A write happens only
 * when the wanted status differs from the object's current one (compared without
 * lastTransitionTime, which is kept while the condition's status stays), and not again while
 * the object still carries the resourceVersion our last write produced: no write loops.
 *
 * Runs 250 ms after the last change of an analyzed kind, a snapshot push (pods, Services,
 * PeerAuthentications), at most 2 s after the first one; only once the snapshot is ready and
 * the VirtualService / DestinationRule / ServiceEntry informers listed.
 */
#ifndef OP_ANALYSIS_H
#define OP_ANALYSIS_H

#include <stdbool.h>

#include <jansson.h>

#include "operator.h"

struct op_analysis;

int op_analysis_new(struct op_ctx *op, struct op_analysis **ret_a);
void op_analysis_free(struct op_analysis *a);
/** Leader: write status. A new leader re-checks every object. */
void op_analysis_set_active(struct op_analysis *a, bool active);

/** Counters for metrics and tests. */
struct op_analysis_stats {
    uint64_t passes, findings, writes, write_errors;
};
const struct op_analysis_stats *op_analysis_stats(const struct op_analysis *a);

/**
 * The status ambit wants on one object (NEW object; only observedGeneration when findings is
 * empty): findings are
 * those of this object (analyze.h), live_status its current status (borrowed, may be NULL:
 * lastTransitionTime is kept from it when the condition status is unchanged). Exposed for
 * tests.
 */
json_t *op_analysis_status(const json_t *findings, json_int_t generation,
                           const json_t *live_status, const char *now_rfc3339);

/** The part of a live status ambit owns (same shape as op_analysis_status, without
 *  lastTransitionTime), for the comparison. NEW object. Exposed for tests. */
json_t *op_analysis_owned(const json_t *live_status);

#endif
