/*
 * waypoints.h — the resources behind a waypoint Gateway (reference §4): for every Gateway of
 * class istio-waypoint the operator applies (server-side apply, field manager "ambit",
 * owner-referenced to the Gateway so that deleting it removes them):
 *   - ServiceAccount <name> (the waypoint's identity),
 *   - Service <name>: ClusterIP, port 15008 "mesh" (appProtocol hbone), no selector,
 *   - EndpointSlice <name>-ambit: the InternalIP of every node the waypoint is placed on
 *     (op_waypoint_place), port 15008 — node agents host the waypoint process,
 *   - Gateway status: Accepted, Programmed (or AddressNotAssigned until the Service has a
 *     ClusterIP and the waypoint has a node), addresses = hostname + ClusterIP;
 * and GatewayClass istio-waypoint (controllerName istio.io/mesh-controller) once.
 * Work goes through a rate-limited queue keyed by Gateway; the queue is fed from the
 * snapshot's waypoint events, so placement or address changes re-apply.
 */
#ifndef OP_WAYPOINTS_H
#define OP_WAYPOINTS_H

#include "operator.h"

struct op_waypoints;

int op_waypoints_new(struct op_ctx *op, struct op_waypoints **ret_w);
void op_waypoints_free(struct op_waypoints *w);
/** Pause/resume writes (leader election). Resuming re-queues every waypoint. */
void op_waypoints_set_active(struct op_waypoints *w, bool active);

/** The objects to apply for Gateway gw placed as waypoint object wp (NEW array of 3 objects:
 *  ServiceAccount, Service, EndpointSlice) and its status patch (NEW). Exposed for tests. */
json_t *op_waypoint_resources(const json_t *gw, const json_t *wp, const json_t *nodes);
json_t *op_waypoint_status(const json_t *gw, const json_t *wp, const json_t *svc,
                           const char *dns_domain, const char *now_rfc3339);

#endif
