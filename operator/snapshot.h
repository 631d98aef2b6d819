/*
 * snapshot.h — Kubernetes objects in, mesh objects out (docs: PROTOCOLS.md §1,
 * dataplane/mesh.h). A pure function of the informer caches, so it is table-tested without an
 * API server; the operator calls it (debounced) whenever a cache changes and streams the
 * difference to node agents (op_snapshot_diff).
 *
 * Output: a JSON object {"workload": {key: object}, "service": {...}, "policy": {...},
 * "waypoint": {...}} — every object in the wire form of the config stream.
 *
 * What is derived from what (reference §3.5, §4):
 *   workload  <- Pod with an IP, not Succeeded/Failed. uid "<cluster>//Pod/<ns>/<name>";
 *                protocol HBONE if annotation ambient.istio.io/redirection=enabled or label
 *                networking.istio.io/tunnel=http; status Unhealthy unless Ready and not
 *                terminating; canonical name/revision from the usual label chain; workload
 *                name/type from ownerReferences (ReplicaSet -> deployment, Job -> job/cronjob);
 *                services = selector Services that select it (ports -> resolved target ports,
 *                named ports through the pod's container ports) plus selector-less Services whose
 *                EndpointSlices point at it; waypoint from istio.io/use-waypoint on the pod or
 *                its namespace (for workload|all waypoints; "none" opts out);
 *                authorizationPolicies = selector AuthorizationPolicies that select it plus
 *                PeerAuthentication-derived keys (dataplane/policy.h).
 *   service   <- Service (not ExternalName): VIPs = clusterIPs, ports, waypoint from
 *                istio.io/use-waypoint on the Service or its namespace (service|all waypoints).
 *   policy    <- AuthorizationPolicy / PeerAuthentication compiled by dataplane/policy.h.
 *   waypoint  <- Gateway (gateway.networking.k8s.io) of class istio-waypoint: nodes from
 *                op_waypoint_place(), addresses = the ClusterIP of the Service of the same name.
 */
#ifndef OP_SNAPSHOT_H
#define OP_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/** The informer caches, each a JSON object "<ns>/<name>" -> object (borrowed; NULL = empty). */
struct op_inputs {
    const json_t *namespaces, *pods, *services, *endpointslices, *nodes, *gateways;
    const json_t *authorization_policies, *peer_authentications;
};

struct op_mesh_config {
    const char *cluster_id;   /* "Kubernetes" */
    const char *trust_domain; /* "cluster.local" */
    const char *dns_domain;   /* "cluster.local" */
    const char *root_ns;      /* "istio-system" */
    const char *waypoint_class; /* "istio-waypoint" */
};

void op_mesh_config_defaults(struct op_mesh_config *cfg);

#define OP_SNAPSHOT_MAX_DIAGS 64

/** Problems found while building (bad objects are skipped, never fatal). */
struct op_snapshot_diags {
    size_t n, dropped;
    char items[OP_SNAPSHOT_MAX_DIAGS][256];
};

/**
 * Build the mesh objects. Returns 0 and a NEW reference, or -ENOMEM. Objects that cannot be
 * converted are skipped with a diagnostic ("Pod ns/name: ...").
 */
int op_snapshot_build(const struct op_inputs *in, const struct op_mesh_config *cfg,
                      json_t **ret_snap, struct op_snapshot_diags *diags);

/** Kinds of informer input, for op_changes. */
enum op_input_kind {
    OP_IN_NAMESPACE,
    OP_IN_POD,
    OP_IN_SERVICE,
    OP_IN_ENDPOINTSLICE,
    OP_IN_NODE,
    OP_IN_GATEWAY,
    OP_IN_AUTHZ,
    OP_IN_PEERAUTHN,
    OP_IN_COUNT,
};

/** Which inputs changed since a snapshot was built: informer keys ("<ns>/<name>", "<name>")
 *  per kind, or `all` (first build, mesh config change, relist). Zero-initialise; owns its
 *  sets. */
struct op_changes {
    json_t *keys[OP_IN_COUNT]; /* key -> true; NULL = none */
    bool all;
};

/** Record a changed object (added, updated or deleted). 0 or -ENOMEM (then `all` is set, so
 *  nothing is lost). */
int op_changes_add(struct op_changes *ch, enum op_input_kind kind, const char *key);
bool op_changes_empty(const struct op_changes *ch);
/** Forget everything (after a rebuild). */
void op_changes_clear(struct op_changes *ch);

/**
 * Incremental build: the snapshot for `in`, given `prev` (built from the inputs as they were
 * before `ch`) — equal to op_snapshot_build(in) but only the objects the changes can affect are
 * recomputed:
 *   Pod                      -> its workload
 *   Service, EndpointSlice   -> the service + the workloads of its namespace
 *   Namespace                -> its services and workloads (waypoint labels)
 *   AuthorizationPolicy, PA  -> every policy (compiled again, cheap) + the workloads of its
 *                               namespace, or all workloads for the root namespace; for an
 *                               AuthorizationPolicy only if it has a selector or a workload
 *                               of prev lists it (workloads list selector policies only)
 *   Node, Gateway, Service   -> waypoints (recomputed every time: few); a waypoint that
 *                               appears, vanishes or changes address/`for` rebuilds everything
 * `prev` stays untouched (immutable): the new snapshot shares every unchanged object with it by
 * reference (a recomputed object equal to its previous version is the previous one).
 * @param ret_snap    NEW reference
 * @param ret_touched NEW reference {kind: {key: true}}: the only keys that may differ from
 *                    prev (for op_snapshot_diff_keys); NULL when everything was rebuilt.
 * @return 0 or -ENOMEM.
 */
int op_snapshot_update(const json_t *prev, const struct op_inputs *in,
                       const struct op_mesh_config *cfg, const struct op_changes *ch,
                       json_t **ret_snap, json_t **ret_touched, struct op_snapshot_diags *diags);

/**
 * Events turning `old` (NULL = empty) into `new`: upserts for new/changed objects and deletes
 * for vanished ones, in kind order waypoint, service, policy, workload for upserts (so a
 * referenced object exists first) and the reverse for deletes; versions start at
 * first_version and increase by one per event. Returns 0 and a NEW array (possibly empty).
 */
int op_snapshot_diff(const json_t *old_snap, const json_t *new_snap,
                     unsigned long long first_version,
                     json_t **ret_events);

/** op_snapshot_diff() looking only at the keys in `touched` ({kind: {key: true}}, as from
 *  op_snapshot_update; NULL = every key). */
int op_snapshot_diff_keys(const json_t *old_snap, const json_t *new_snap, const json_t *touched,
                          unsigned long long first_version, json_t **ret_events);

/** All objects of a snapshot as upsert events (a full push). NEW array. */
int op_snapshot_full(const json_t *snap, unsigned long long version, json_t **ret_events);

/**
 * Nodes hosting waypoint `gw` (a Gateway): `replicas` Ready nodes (annotation
 * ambit.dev/waypoint-replicas, default 1) chosen by a stable hash of the Gateway's key so that
 * waypoints spread and do not move while their nodes stay Ready. NEW array of names.
 */
json_t *op_waypoint_place(const json_t *gw, const json_t *nodes);

#endif
