/*
 * status.h — status the operator writes (leader only), through server-side apply of the status
 * subresource with field manager "ambit", only when the content changes:
 *   - AuthorizationPolicy: condition ZtunnelAccepted (selector/namespace policies: True
 *     "Accepted", or False "UnsupportedValue" with the compiler's warnings, e.g. HTTP-only
 *     rules dropped) or WaypointAccepted (targetRefs policies, handled by waypoints; False
 *     "Invalid" when a selector is set too);
 *   - Mesh (install.ambit.dev, cluster-scoped): version, components (operator, nodeAgent, cni),
 *     the mesh config in effect (meshConfig, see op_meshconfig_status), conditions Ready and
 *     Degraded.
 * Fed by snapshot pushes (so at most once per debounced batch).
 */
#ifndef OP_STATUS_H
#define OP_STATUS_H

#include "operator.h"

struct op_status;

int op_status_new(struct op_ctx *op, struct op_status **ret_st);
void op_status_free(struct op_status *st);
void op_status_set_active(struct op_status *st, bool active);

/**
 * A per-node component of the Mesh status (the charts' DaemonSets, found by their `app` label in
 * namespace ns): {name, version, ready, desired (nodes), available (nodes with a Ready pod),
 * message ("not ready on a, b" — at most five names, sorted — when some are missing)}.
 * nodes/pods are informer caches (borrowed). NEW, NULL on allocation failure.
 */
json_t *op_mesh_node_component(const json_t *nodes, const json_t *pods, const char *ns,
                               const char *name, const char *app);

/**
 * The Mesh conditions (NEW array): Ready (True once the operator is synced and serving) and
 * Degraded — True with reason MeshConfigInvalid (meshcfg_error, the last good config stays in
 * effect), NodeAgentsNotReady or CNINotReady (from `components`, see above; the first problem
 * is the reason, the message lists all), else False/AsExpected. A condition whose status is
 * unchanged from `old` (the object's current conditions, may be NULL) keeps its
 * lastTransitionTime.
 */
json_t *op_mesh_conditions(bool synced, const char *meshcfg_error, const json_t *components,
                           const json_t *old, json_int_t generation, const char *now_rfc3339);

/** The status conditions for one AuthorizationPolicy CR (NEW array). Exposed for tests. */
json_t *op_authz_conditions(const json_t *ap, const char *root_ns, json_int_t generation,
                            const char *now_rfc3339);

#endif
