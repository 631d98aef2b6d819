/*
 * status.h — status the operator writes (leader only), through server-side apply of the status
 * subresource with field manager "ambit", only when the content changes:
 *   - AuthorizationPolicy: condition ZtunnelAccepted (selector/namespace policies: True
 *     "Accepted", or False "UnsupportedValue" with the compiler's warnings, e.g. HTTP-only
 *     rules dropped) or WaypointAccepted (targetRefs policies, handled by waypoints; False
 *     "Invalid" when a selector is set too);
 *   - Mesh (install.ambit.dev, cluster-scoped): version, the operator component's readiness,
 *     condition Ready.
 * Fed by snapshot pushes (so at most once per debounced batch).
 */
#ifndef OP_STATUS_H
#define OP_STATUS_H

#include "operator.h"

struct op_status;

int op_status_new(struct op_ctx *op, struct op_status **ret_st);
void op_status_free(struct op_status *st);
void op_status_set_active(struct op_status *st, bool active);

/** The status conditions for one AuthorizationPolicy CR (NEW array). Exposed for tests. */
json_t *op_authz_conditions(const json_t *ap, const char *root_ns, json_int_t generation,
                            const char *now_rfc3339);

#endif
