/*
 * kube_lease.h — leader election with a coordination.k8s.io/v1 Lease, driven by a dp_loop
 * (client-go's leaderelection semantics):
 *   - every retry period the elector reads the Lease; a free, expired or own Lease is taken /
 *     renewed with an update carrying the read resourceVersion (optimistic concurrency: of two
 *     candidates exactly one wins, the other gets 409 Conflict);
 *   - "expired" is judged on the LOCAL monotonic clock: the time since this elector last saw the
 *     Lease's holder/renewTime change exceeds leaseDurationSeconds, so clock skew between
 *     replicas cannot make two leaders;
 *   - a leader that could not renew for renew_deadline stops leading (on_stop) before the
 *     Lease can expire for the others (renew_deadline < lease duration);
 *   - dp_kube_lease_free() of a leader releases the Lease (holderIdentity cleared) so a
 *     successor takes over at once.
 * Callbacks run on the loop; never free the elector from inside them (defer).
 */
#ifndef DP_KUBE_LEASE_H
#define DP_KUBE_LEASE_H

#include <stdbool.h>
#include <stdint.h>

#include "kube_informer.h"

struct dp_kube_lease;

struct dp_kube_lease_config {
    const char *namespace, *name; /* the Lease object */
    const char *identity;         /* this candidate, e.g. the pod name */
    uint64_t lease_duration_ms;   /* 15000 */
    uint64_t renew_deadline_ms;   /* 10000 */
    uint64_t retry_period_ms;     /* 2000 */
    void (*on_start)(void *arg);  /* became leader */
    void (*on_stop)(void *arg);   /* lost or gave up leadership */
    void *arg;
};

/** New elector (strings copied). Starts trying at once. 0 or -errno. */
int dp_kube_lease_new(struct dp_kube_multi *m, struct dp_loop *loop,
                      const struct dp_kube_lease_config *cfg, struct dp_kube_lease **ret_l);
/** Stop; a leader releases the Lease (best effort, fire and forget). Accepts NULL. */
void dp_kube_lease_free(struct dp_kube_lease *l);
/**
 * metadata.ownerReferences written with the Lease from now on (copied; NULL or an empty array =
 * keep whatever the Lease has). Every renew is a full update, so an existing Lease gets them
 * within one retry period; e.g. the operator makes its Mesh object the owner, so that deleting
 * the Mesh garbage-collects the Lease.
 */
int dp_kube_lease_set_owner_refs(struct dp_kube_lease *l, const json_t *refs);
bool dp_kube_lease_is_leader(const struct dp_kube_lease *l);
/** Current holder as last observed ("" if none). Borrowed. */
const char *dp_kube_lease_holder(const struct dp_kube_lease *l);

/** RFC 3339 MicroTime of unix microseconds into buf (>= 32 bytes). */
void dp_kube_microtime(uint64_t unix_us, char *buf, size_t bufsz);

#endif
