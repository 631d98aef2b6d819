/*
 * operator.h — the control plane's core: informers on the Kubernetes kinds the mesh is built
 * from, the debounced snapshot (snapshot.h) with a versioned event log for node-agent streams,
 * the CA (ca_store.h) and the publication of its root in ConfigMap istio-ca-root-cert in every
 * namespace (through a rate-limited work queue with server-side apply).
 *
 * Runs on one dp_loop. The serving side (config stream, certificates, metrics) registers as a
 * subscriber and reads the snapshot and the log through the functions below.
 */
#ifndef OP_OPERATOR_H
#define OP_OPERATOR_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "ca_store.h"
#include "kube.h"
#include "kube_informer.h"
#include "loop.h"
#include "meshconfig.h"
#include "snapshot.h"

struct op_options {
    const char *kubeconfig;      /* NULL = default search */
    const char *namespace;       /* operator namespace, "istio-system" */
    struct op_mesh_config mesh;
    const char *const *trusted_accounts; /* node agent service accounts "ns/sa" */
    uint64_t debounce_ms;        /* 100 */
    uint64_t debounce_max_ms;    /* 1000 */
    uint64_t debounce_settle_ms; /* 10: an isolated change (after debounce_ms of quiet) is
                                    pushed this soon; >= debounce_ms = always wait */
    int64_t cert_ttl_s;          /* 86400 */
    bool publish_roots;          /* write istio-ca-root-cert ConfigMaps (default true) */
    const char *write_selector;  /* label selector: only write into namespaces (and Mesh
                                    objects) whose labels match; NULL = everywhere. For
                                    tests sharing a cluster with a real operator. */
};

void op_options_defaults(struct op_options *o);

struct op_ctx;

/** Called after each published batch with the new events (borrowed array). */
typedef void op_push_cb(struct op_ctx *op, const json_t *events, void *arg);

struct op_sub {
    struct dp_list link;
    op_push_cb *cb;
    void *arg;
};

/** Build the context: kube config, CA bootstrap (blocking), informers (not started).
 *  0 or -errno (logged). */
int op_new(struct dp_loop *loop, const struct op_options *opts, struct op_ctx **ret_op);
void op_free(struct op_ctx *op);
/** Start the informers. */
int op_start(struct op_ctx *op);

/** The current snapshot (borrowed, replaced on every rebuild — incref to keep) and version. */
const json_t *op_snapshot(const struct op_ctx *op);
uint64_t op_version(const struct op_ctx *op);
/** True once every required informer listed once and the first snapshot is built. */
bool op_ready(const struct op_ctx *op);
/** Events after `since` if the log still has them (NEW array), else NULL (send a full
 *  snapshot). */
json_t *op_events_since(const struct op_ctx *op, uint64_t since);

/** Leader election: only the leader writes (root ConfigMaps here, waypoints in waypoints.c).
 *  Becoming leader re-queues every namespace. Default: leader (no election). */
void op_set_leader(struct op_ctx *op, bool leader);
bool op_is_leader(const struct op_ctx *op);
/** May the operator write objects in namespace ns (NULL = a cluster-scoped object with
 *  `labels`)? Leader and write_selector checks. */
bool op_may_write(const struct op_ctx *op, const char *ns, const json_t *labels);

/** Subscribe to pushes (sub is caller-owned, embedded). */
void op_subscribe(struct op_ctx *op, struct op_sub *sub, op_push_cb *cb, void *arg);
/** Subscribe to changes of the kinds only the analyzer reads (VirtualService,
 *  DestinationRule, ServiceEntry): cb runs with events == NULL from the informer callback,
 *  once per change (debounce in cb). */
void op_subscribe_config(struct op_ctx *op, struct op_sub *sub, op_push_cb *cb, void *arg);
void op_unsubscribe(struct op_sub *sub);

/** The current CA (borrowed: valid until the next loop round; it is replaced when Secret
 *  `cacerts` changes) and a counter bumped on every replacement. */
const struct op_ca *op_ca(const struct op_ctx *op);
unsigned op_ca_generation(const struct op_ctx *op);
const struct op_options *op_opts(const struct op_ctx *op);
struct dp_kube_multi *op_multi(struct op_ctx *op);
struct dp_loop *op_loop(struct op_ctx *op);
/** Informer caches ("<ns>/<name>" -> object, borrowed; may be empty). */
const json_t *op_pods(const struct op_ctx *op);
const json_t *op_gateways(const struct op_ctx *op);
const json_t *op_nodes(const struct op_ctx *op);
const json_t *op_services(const struct op_ctx *op);
const json_t *op_authorization_policies(const struct op_ctx *op);
const json_t *op_meshes(const struct op_ctx *op);
const json_t *op_peer_authentications(const struct op_ctx *op);
const json_t *op_virtual_services(const struct op_ctx *op);
const json_t *op_destination_rules(const struct op_ctx *op);
const json_t *op_service_entries(const struct op_ctx *op);
/** The VirtualService, DestinationRule and ServiceEntry informers each listed once (false
 *  while those CRDs are not installed). */
bool op_config_synced(const struct op_ctx *op);

/**
 * Mesh config (ConfigMap `istio`, key `mesh`, in the operator namespace; meshconfig.h), watched:
 * a valid change replaces the config in effect (trust domain and root namespace feed the next
 * snapshot and the CSR checks at once), an invalid one keeps the last good config. Until the
 * ConfigMap is seen (and after it is deleted) the values from op_options apply.
 */
/** The config in effect (borrowed: valid until the next ConfigMap event). */
const struct op_meshconfig *op_meshconfig(const struct op_ctx *op);
/** What the Mesh status shows (NEW): the config in effect plus "source" ("ConfigMap
 *  <ns>/istio" or "defaults"), "resourceVersion" (of the ConfigMap in effect, "" for the
 *  defaults) and "observedResourceVersion" (the newest one seen, valid or not). */
json_t *op_meshconfig_status(const struct op_ctx *op);
/** Why the newest ConfigMap content was rejected (borrowed), or NULL when it is in effect. */
const char *op_meshconfig_error(const struct op_ctx *op);

/**
 * Owner references for what the operator creates in its namespace that should go when the
 * mesh is uninstalled: the Mesh object `default` (cluster-scoped, deleted by the control-plane
 * release) once seen, remembered after its deletion so that objects re-created during an
 * uninstall are still collected. Empty array while unknown (and for a Mesh outside
 * --write-selector). NEW.
 */
json_t *op_mesh_owner_refs(const struct op_ctx *op);
/** The leader-election Lease (borrowed; NULL to detach before freeing it): the operator keeps
 *  its owner reference (op_mesh_owner_refs) up to date. */
struct dp_kube_lease;
void op_set_lease(struct op_ctx *op, struct dp_kube_lease *lease);

/** Counters for metrics. */
struct op_stats {
    uint64_t rebuilds, events, roots_published, root_publish_errors;
    double last_rebuild_ms;
};
const struct op_stats *op_stats(const struct op_ctx *op);
/** Sum of the informers' watch restarts and relists. */
uint64_t op_watch_restarts(const struct op_ctx *op);

#endif
