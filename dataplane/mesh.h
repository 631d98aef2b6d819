/*
 * mesh.h — the mesh object model (workloads, services, L4 policies, waypoints) and immutable,
 * reference-counted config snapshots built from the node agent's config file or from the
 * operator's event stream. The JSON schema is documented in docs/mesh-objects.md; this header
 * is the C side of the same contract.
 *
 * Ownership model
 *   - Decoded objects (struct dp_mesh_workload, ...) are immutable once decoded and
 *     reference-counted; snapshots share unchanged objects (copy-on-write at object
 *     granularity). Callers only ever see `const` pointers BORROWED from a snapshot: they stay
 *     valid as long as the caller holds a reference on that snapshot.
 *   - A snapshot is immutable once published. dp_mesh_snapshot_ref/unref are atomic, so a
 *     snapshot built on one thread may be handed to other loops (swap at a loop boundary and
 *     unref the old one when no connection uses it).
 *   - Nothing here touches the event loop or logs; all functions are thread-safe on distinct
 *     objects, and read-only functions are thread-safe on a shared snapshot.
 *
 * Errors: decoders return -EINVAL and write "<json path>: <message>" into errbuf, e.g.
 * `workloads[3].addresses[0]: not an IP address`. Every array and string from input is bounded
 * (DP_MESH_MAX_*); exceeding a bound is -EINVAL (or -E2BIG for whole-snapshot object counts)
 * with the path of the offending value.
 */
#ifndef DP_MESH_H
#define DP_MESH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct sockaddr;

/* ------------------------------------------------------------------ limits (hostile input) */

#define DP_MESH_MAX_STR         1024       /* any string field, bytes */
#define DP_MESH_MAX_ADDRESSES   16         /* addresses / vips per object */
#define DP_MESH_MAX_PORTS       1024       /* ports of a service, port entries per service ref */
#define DP_MESH_MAX_SVC_REFS    1024       /* services a workload belongs to */
#define DP_MESH_MAX_LABELS      256        /* labels per workload */
#define DP_MESH_MAX_POLICY_REFS 1024       /* authorizationPolicies per workload */
#define DP_MESH_MAX_SANS        64         /* subjectAltNames per service */
#define DP_MESH_MAX_NODES       4096       /* waypoint nodes */
#define DP_MESH_MAX_GROUPS      1024       /* rules (groups) per policy */
#define DP_MESH_MAX_CLAUSES     64         /* clauses per group */
#define DP_MESH_MAX_MATCHES     256        /* matches per clause */
#define DP_MESH_MAX_VALUES      1024       /* values per match field */
#define DP_MESH_MAX_OBJECTS     (1u << 20) /* objects of one kind in a snapshot */

#define DP_MESH_HBONE_PORT           15008
#define DP_MESH_DEFAULT_TRUST_DOMAIN "cluster.local"
#define DP_MESH_DEFAULT_SA           "default"

/* ------------------------------------------------------------------ addresses */

/** An IP address. family is 4 or 6 (0 = unset). IPv4 lives in a[0..3]; IPv4-mapped IPv6
 *  (::ffff:a.b.c.d) is always normalised to family 4 by the parse/convert helpers. */
struct dp_mesh_ip {
    uint8_t family;
    uint8_t a[16];
};

/** A CIDR block (address with host bits cleared, prefix length 0..32 / 0..128). */
struct dp_mesh_cidr {
    struct dp_mesh_ip ip;
    uint8_t prefix;
};

#define DP_MESH_IP_STRLEN 46 /* INET6_ADDRSTRLEN */

/** Parse "10.0.0.1" / "fd00::1" (no brackets, no port). 0 or -EINVAL. */
int dp_mesh_ip_parse(const char *s, struct dp_mesh_ip *ret_ip);
/** Parse "10.0.0.0/8", "fd00::/64"; a bare address means /32 or /128. Host bits set -> -EINVAL
 *  (as Istio's ipBlocks validation). 0 or -EINVAL. */
int dp_mesh_cidr_parse(const char *s, struct dp_mesh_cidr *ret_cidr);
/** Like dp_mesh_cidr_parse but clears host bits ("10.0.0.1/8" -> 10.0.0.0/8), as Istio accepts
 *  them in ipBlocks; *ret_host_bits (may be NULL) says whether any were set. */
int dp_mesh_cidr_parse_masked(const char *s, struct dp_mesh_cidr *ret_cidr, bool *ret_host_bits);
/** Format into buf (at least DP_MESH_IP_STRLEN bytes). Returns buf. */
const char *dp_mesh_ip_format(const struct dp_mesh_ip *ip, char *buf, size_t bufsz);
/** sockaddr_in / sockaddr_in6 -> ip (+ port in host order if ret_port). 0 or -EAFNOSUPPORT. */
int dp_mesh_ip_from_sockaddr(const struct sockaddr *sa, struct dp_mesh_ip *ret_ip,
                             uint16_t *ret_port);
bool dp_mesh_ip_equal(const struct dp_mesh_ip *a, const struct dp_mesh_ip *b);
bool dp_mesh_cidr_contains(const struct dp_mesh_cidr *c, const struct dp_mesh_ip *ip);

/* ------------------------------------------------------------------ objects */

enum dp_mesh_kind {
    DP_MESH_WORKLOAD = 0,
    DP_MESH_SERVICE,
    DP_MESH_POLICY,
    DP_MESH_WAYPOINT,
    DP_MESH_KIND_COUNT,
};
/** "workload", "service", "policy", "waypoint". */
const char *dp_mesh_kind_str(enum dp_mesh_kind kind);
/** Inverse of dp_mesh_kind_str. 0 or -EINVAL. */
int dp_mesh_kind_parse(const char *s, enum dp_mesh_kind *ret_kind);

enum dp_mesh_protocol { DP_MESH_PROTO_TCP = 0, DP_MESH_PROTO_HBONE };
enum dp_mesh_health { DP_MESH_HEALTHY = 0, DP_MESH_UNHEALTHY };

struct dp_mesh_kv {
    char *key;
    char *value;
};

/** A service port -> target port pair (target 0 = "use the service's targetPort"). */
struct dp_mesh_port_map {
    uint16_t port;
    uint16_t target_port;
};

/** One entry of a workload's `services` map: it is an endpoint of service `key`. */
struct dp_mesh_svc_ref {
    char *key; /* "<ns>/<hostname>" */
    size_t n_ports;
    struct dp_mesh_port_map *ports;
};

/** A reference to a waypoint (on a service or a workload). */
struct dp_mesh_gateway {
    char *key; /* waypoint object key "<ns>/<name>", may be NULL */
    size_t n_addresses;
    struct dp_mesh_ip *addresses; /* waypoint Service VIP(s) or pod IP(s) */
    uint16_t port;                /* HBONE port, default 15008 */
};

struct dp_mesh_workload {
    unsigned refs; /* private */
    char *key;     /* == uid */
    char *uid;
    char *pod_uid; /* Kubernetes metadata.uid, may be NULL */
    char *name, *namespace, *node;
    char *service_account; /* default "default" */
    char *trust_domain;    /* default "cluster.local" */
    char *network;         /* may be NULL */
    char *canonical_name, *canonical_revision, *workload_name, *workload_type; /* may be NULL */
    enum dp_mesh_protocol protocol;                                            /* default TCP */
    enum dp_mesh_health status;                                                /* default Healthy */
    uint32_t capacity; /* default 1; 0 = never picked by load balancing */
    size_t n_addresses;
    struct dp_mesh_ip *addresses;
    size_t n_labels;
    struct dp_mesh_kv *labels; /* sorted by key */
    size_t n_services;
    struct dp_mesh_svc_ref *services; /* sorted by key */
    struct dp_mesh_gateway *waypoint; /* NULL if none */
    size_t n_policies;
    char **authorization_policies; /* policy keys "<ns>/<name>" */
};

struct dp_mesh_service_port {
    uint16_t port;
    uint16_t target_port; /* 0 = same as port */
    char *app_protocol;   /* may be NULL */
};

enum dp_mesh_health_policy { DP_MESH_ONLY_HEALTHY = 0, DP_MESH_ALLOW_ALL };
enum dp_mesh_lb_mode { DP_MESH_LB_STANDARD = 0, DP_MESH_LB_PASSTHROUGH };

struct dp_mesh_service {
    unsigned refs; /* private */
    char *key;     /* "<namespace>/<hostname>" */
    char *name, *namespace, *hostname;
    size_t n_vips;
    struct dp_mesh_ip *vips; /* empty for headless */
    size_t n_ports;
    struct dp_mesh_service_port *ports;
    struct dp_mesh_gateway *waypoint; /* NULL if none */
    size_t n_sans;
    char **subject_alt_names;
    enum dp_mesh_health_policy health_policy; /* default OnlyHealthy */
    enum dp_mesh_lb_mode lb_mode;             /* default Standard */
};

enum dp_mesh_scope { DP_MESH_SCOPE_GLOBAL = 0, DP_MESH_SCOPE_NAMESPACE, DP_MESH_SCOPE_WORKLOAD };
enum dp_mesh_action { DP_MESH_ALLOW = 0, DP_MESH_DENY };
enum dp_mesh_strmatch_kind { DP_MESH_EXACT = 0, DP_MESH_PREFIX, DP_MESH_SUFFIX, DP_MESH_PRESENCE };

struct dp_mesh_strmatch {
    enum dp_mesh_strmatch_kind kind;
    char *value; /* "" for presence */
};

struct dp_mesh_sa_match {
    char *namespace;
    char *service_account;
};

/** One Match: populated fields AND, values within a field OR, not_* must not match.
 *  A Match with every list empty matches nothing. */
struct dp_mesh_match {
    size_t n_principals, n_not_principals;
    struct dp_mesh_strmatch *principals, *not_principals; /* without "spiffe://" */
    size_t n_namespaces, n_not_namespaces;
    struct dp_mesh_strmatch *namespaces, *not_namespaces;
    size_t n_service_accounts, n_not_service_accounts;
    struct dp_mesh_sa_match *service_accounts, *not_service_accounts;
    size_t n_source_ips, n_not_source_ips;
    struct dp_mesh_cidr *source_ips, *not_source_ips;
    size_t n_destination_ips, n_not_destination_ips;
    struct dp_mesh_cidr *destination_ips, *not_destination_ips;
    size_t n_destination_ports, n_not_destination_ports;
    uint16_t *destination_ports, *not_destination_ports;
};

/** A clause matches if ANY of its matches does. */
struct dp_mesh_clause {
    size_t n_matches;
    struct dp_mesh_match *matches;
};

/** A group (ztunnel "rule") matches if ALL its clauses do; zero clauses = matches everything. */
struct dp_mesh_group {
    size_t n_clauses;
    struct dp_mesh_clause *clauses;
};

struct dp_mesh_policy {
    unsigned refs; /* private */
    char *key;     /* "<namespace>/<name>" */
    char *name, *namespace;
    enum dp_mesh_scope scope;   /* default Namespace */
    enum dp_mesh_action action; /* default Allow */
    bool dry_run;
    size_t n_groups; /* a policy with zero groups matches nothing */
    struct dp_mesh_group *groups;
};

enum dp_mesh_waypoint_for {
    DP_MESH_WP_SERVICE = 0, /* default, as Istio's istio.io/waypoint-for */
    DP_MESH_WP_WORKLOAD,
    DP_MESH_WP_ALL,
    DP_MESH_WP_NONE,
};

struct dp_mesh_waypoint {
    unsigned refs; /* private */
    char *key;     /* "<namespace>/<name>" */
    char *name, *namespace;
    enum dp_mesh_waypoint_for traffic_for;
    char *service_account; /* default = name */
    char *trust_domain;    /* default "cluster.local" */
    size_t n_nodes;
    char **nodes;
    size_t n_addresses;
    struct dp_mesh_ip *addresses;
    uint16_t port; /* default 15008 */
};

const char *dp_mesh_scope_str(enum dp_mesh_scope s);   /* "Global" "Namespace" "WorkloadSelector" */
const char *dp_mesh_action_str(enum dp_mesh_action a); /* "Allow" "Deny" */

/**
 * Decode one object of `kind` from its JSON form (the `object` of a stream event / one element
 * of the file's arrays). `key` is the stream event's key or NULL (file config): when given it
 * must equal the object's derived key (workload: uid; service: namespace/hostname; policy and
 * waypoint: namespace/name); a workload without `uid` takes `key` as its uid.
 * `path` prefixes error messages (e.g. "workloads[3]"), may be NULL.
 * @param ret_obj NEW reference (release with dp_mesh_object_unref(kind, obj)).
 * @return 0, -EINVAL (errbuf says where), -ENOMEM.
 */
int dp_mesh_object_decode(enum dp_mesh_kind kind, const json_t *json, const char *key,
                          const char *path, void **ret_obj, char *errbuf, size_t errsz);
/** Encode an object back to its canonical JSON form (defaults made explicit). NEW reference,
 *  NULL on ENOMEM. decode(encode(x)) == x. */
json_t *dp_mesh_object_encode(enum dp_mesh_kind kind, const void *obj);
void dp_mesh_object_ref(enum dp_mesh_kind kind, const void *obj);
void dp_mesh_object_unref(enum dp_mesh_kind kind, const void *obj); /* accepts NULL */
/** The object's key (borrowed). */
const char *dp_mesh_object_key(enum dp_mesh_kind kind, const void *obj);

/** The workload's SPIFFE identity without the scheme: "<td>/ns/<ns>/sa/<sa>" into buf.
 *  Returns the length or -ENOSPC. */
int dp_mesh_workload_identity(const struct dp_mesh_workload *w, char *buf, size_t bufsz);
/** The label value or NULL (borrowed). */
const char *dp_mesh_workload_label(const struct dp_mesh_workload *w, const char *key);
/** The workload's entry for service `svc_key`, or NULL. */
const struct dp_mesh_svc_ref *dp_mesh_workload_svc_ref(const struct dp_mesh_workload *w,
                                                       const char *svc_key);

/* ------------------------------------------------------------------ snapshots */

struct dp_mesh_snapshot;

/** A new, empty snapshot (version 0). NULL on ENOMEM. */
struct dp_mesh_snapshot *dp_mesh_snapshot_new_empty(void);
struct dp_mesh_snapshot *dp_mesh_snapshot_ref(struct dp_mesh_snapshot *s);
void dp_mesh_snapshot_unref(struct dp_mesh_snapshot *s); /* accepts NULL */

/**
 * Build a snapshot from a config document `{"workloads": [...], "services": [...],
 * "policies": [...], "waypoints": [...]}` (every member optional, unknown members are errors,
 * so typos do not silently drop config). Duplicate keys within a kind are errors.
 * @param ret_snap NEW reference, version 0.
 * @return 0, -EINVAL (errbuf has the JSON path), -E2BIG, -ENOMEM.
 */
int dp_mesh_snapshot_from_json(const json_t *config, struct dp_mesh_snapshot **ret_snap,
                               char *errbuf, size_t errsz);
/**
 * dp_mesh_snapshot_from_json() of a file, JSON or YAML (exactly one document). Errors are
 * prefixed with the path: "agent.yaml: workloads[0].uid: missing".
 */
int dp_mesh_snapshot_load_file(const char *path, struct dp_mesh_snapshot **ret_snap, char *errbuf,
                               size_t errsz);

/**
 * Apply a JSON array of stream events (PROTOCOLS §2: upsert / delete / reset / synced / ping)
 * to `base` (borrowed, unchanged) and return the resulting snapshot, whether or not the array
 * ends with `synced`. All-or-nothing: any bad event fails the whole call.
 * @param ret_snap NEW reference; its version is the highest event version seen (or base's).
 */
int dp_mesh_snapshot_apply(const struct dp_mesh_snapshot *base, const json_t *events,
                           struct dp_mesh_snapshot **ret_snap, char *errbuf, size_t errsz);

/** Serialise the snapshot as a config document (the file format; also /config_dump).
 *  NEW reference or NULL on ENOMEM. */
json_t *dp_mesh_snapshot_to_json(const struct dp_mesh_snapshot *s);

/** Stream version of the last event folded in (0 for file config). */
uint64_t dp_mesh_snapshot_version(const struct dp_mesh_snapshot *s);

/* lookups: every returned pointer is BORROWED from the snapshot; NULL if absent */
const struct dp_mesh_workload *dp_mesh_workload_by_key(const struct dp_mesh_snapshot *s,
                                                       const char *key);
/** By Kubernetes pod uid (`podUid`). */
const struct dp_mesh_workload *dp_mesh_workload_by_pod_uid(const struct dp_mesh_snapshot *s,
                                                           const char *pod_uid);
/** By address. If several workloads claim one IP (host-network pods), the smallest key wins. */
const struct dp_mesh_workload *dp_mesh_workload_by_ip(const struct dp_mesh_snapshot *s,
                                                      const struct dp_mesh_ip *ip);
const struct dp_mesh_service *dp_mesh_service_by_key(const struct dp_mesh_snapshot *s,
                                                     const char *key);
const struct dp_mesh_service *dp_mesh_service_by_vip(const struct dp_mesh_snapshot *s,
                                                     const struct dp_mesh_ip *vip);
const struct dp_mesh_policy *dp_mesh_policy_by_key(const struct dp_mesh_snapshot *s,
                                                   const char *key);
const struct dp_mesh_waypoint *dp_mesh_waypoint_by_key(const struct dp_mesh_snapshot *s,
                                                       const char *key);

/** Endpoints of a service: the workloads whose `services` map has `svc_key`, sorted by key
 *  (healthy or not). Returns the count; *ret_list is borrowed (NULL when 0). */
size_t dp_mesh_service_endpoints(const struct dp_mesh_snapshot *s, const char *svc_key,
                                 const struct dp_mesh_workload *const **ret_list);

/** All objects of a kind, sorted by key. Returns the count; *ret_list borrowed. */
size_t dp_mesh_snapshot_workloads(const struct dp_mesh_snapshot *s,
                                  const struct dp_mesh_workload *const **ret_list);
size_t dp_mesh_snapshot_services(const struct dp_mesh_snapshot *s,
                                 const struct dp_mesh_service *const **ret_list);
size_t dp_mesh_snapshot_policies(const struct dp_mesh_snapshot *s,
                                 const struct dp_mesh_policy *const **ret_list);
size_t dp_mesh_snapshot_waypoints(const struct dp_mesh_snapshot *s,
                                  const struct dp_mesh_waypoint *const **ret_list);

/** Policies with scope Namespace in namespace `ns` (sorted by key), and all Global ones. */
size_t dp_mesh_namespace_policies(const struct dp_mesh_snapshot *s, const char *ns,
                                  const struct dp_mesh_policy *const **ret_list);
size_t dp_mesh_global_policies(const struct dp_mesh_snapshot *s,
                               const struct dp_mesh_policy *const **ret_list);

/* ------------------------------------------------------------------ stream consumer */

/**
 * Folds the operator's config stream (one parsed JSON event at a time) into snapshots.
 * Events accumulate in a pending state; `synced` publishes it as a new snapshot. `reset`
 * returns the pending state to the stream's base (the file config given to
 * dp_mesh_stream_new, or empty) and starts a new version epoch; the last published snapshot
 * stays in force until the next `synced` (the agent keeps serving the last good config).
 * `ping` is ignored.
 * A bad event (malformed object, unknown kind/type) is rejected with -EINVAL and leaves the
 * pending state unchanged (the previous version of that object stays), like an xDS NACK.
 * Not thread-safe: one stream is fed from one loop.
 */
struct dp_mesh_stream;

enum {
    DP_MESH_FEED_OK = 0,        /* folded in, nothing to publish */
    DP_MESH_FEED_PUBLISHED = 1, /* *ret_snap holds a NEW snapshot to swap in */
};

/** @param base initial state and what `reset` returns to (may be NULL = empty), e.g. the file
 *  config; the stream takes its own reference. */
int dp_mesh_stream_new(const struct dp_mesh_snapshot *base, struct dp_mesh_stream **ret_stream);
void dp_mesh_stream_free(struct dp_mesh_stream *st); /* accepts NULL */
/**
 * @return DP_MESH_FEED_OK, DP_MESH_FEED_PUBLISHED (ret_snap = NEW reference), -EINVAL (event
 *         rejected, errbuf says why: "event[type=upsert kind=workload key=...]:
 * object.addresses[0]: ..."), -ENOMEM.
 */
int dp_mesh_stream_feed(struct dp_mesh_stream *st, const json_t *event,
                        struct dp_mesh_snapshot **ret_snap, char *errbuf, size_t errsz);
/** Same for one NDJSON line (bounded by DP_MESH_MAX_EVENT_LINE). */
#define DP_MESH_MAX_EVENT_LINE (16u << 20)
int dp_mesh_stream_feed_line(struct dp_mesh_stream *st, const char *line, size_t len,
                             struct dp_mesh_snapshot **ret_snap, char *errbuf, size_t errsz);
/** Highest version seen since the last `reset` (for `?since=` on reconnect). */
uint64_t dp_mesh_stream_version(const struct dp_mesh_stream *st);
/** Publish the pending state now (without waiting for `synced`). NEW reference. */
int dp_mesh_stream_publish(struct dp_mesh_stream *st, struct dp_mesh_snapshot **ret_snap);

/* ------------------------------------------------------------------ destination selection */

/** Random source for load balancing: returns uniformly distributed 64 bits. Tests inject a
 *  seeded one; NULL means an internal per-thread xorshift generator. */
typedef uint64_t dp_mesh_rng_fn(void *arg);

enum dp_mesh_dest_kind {
    DP_MESH_DEST_PASSTHROUGH = 0, /* unknown IP: plain TCP to the original destination */
    DP_MESH_DEST_WORKLOAD,        /* a selected workload (endpoint of a service, or pod IP) */
    DP_MESH_DEST_WAYPOINT,        /* the service's / workload's waypoint */
};

struct dp_mesh_dest {
    enum dp_mesh_dest_kind kind;
    bool hbone; /* true: connect to connect_ip:15008 (TLS+h2) and CONNECT `authority` */
    struct dp_mesh_ip connect_ip;
    uint16_t connect_port;
    struct dp_mesh_ip authority_ip; /* CONNECT :authority (hbone only) */
    uint16_t authority_port;
    const struct dp_mesh_service *service;   /* borrowed; set when VIP-addressed */
    const struct dp_mesh_workload *workload; /* borrowed; the workload connected to (endpoint,
                                                pod or waypoint pod); NULL for passthrough */
    const struct dp_mesh_waypoint *waypoint; /* borrowed; waypoint object if known */
};

/**
 * Outbound destination selection (reference §2.4) for a connection from `source` (borrowed,
 * may be NULL) to dst:port (the original destination).
 *   1. dst is a service VIP with a waypoint, and source is not that waypoint -> WAYPOINT:
 *      a waypoint pod (the waypoint address resolved through its service VIP, or taken as a pod
 *      IP), hbone to <pod>:port(15008), authority = the original VIP:port.
 *   2. dst is a service VIP -> endpoints filtered by health (unless healthPolicy AllowAll)
 *      -> weighted random by capacity -> port = the endpoint's own mapping for (service,
 *      port), else the service port's targetPort, else port. Port not declared by the service
 *      -> -EHOSTUNREACH. No usable endpoint -> -EHOSTUNREACH (unless loadBalancing mode
 *      Passthrough: PASSTHROUGH).
 *   3. dst is a pod IP -> that workload; with its own waypoint -> WAYPOINT.
 *   4. unknown IP -> PASSTHROUGH (connect_ip:connect_port = dst:port).
 * For a WORKLOAD with protocol HBONE: hbone, connect = <pod IP>:15008, authority = <pod IP>:
 * <target port>; protocol TCP: plain, connect = <pod IP>:<target port>.
 * @param ret_dest written on success only; pointers in it are borrowed from `s`.
 * @return 0, -EHOSTUNREACH (service without usable endpoints or waypoint unresolvable).
 */
int dp_mesh_select_destination(const struct dp_mesh_snapshot *s,
                               const struct dp_mesh_workload *source, const struct dp_mesh_ip *dst,
                               uint16_t port, dp_mesh_rng_fn *rng, void *rng_arg,
                               struct dp_mesh_dest *ret_dest);

/**
 * Is workload `w` (borrowed) the waypoint serving destination `dst`? True when `dst` is a
 * service VIP or a workload IP whose waypoint reference resolves to `w` (w owns one of the
 * waypoint addresses, or is an endpoint of the waypoint's service). The inbound HBONE check of
 * reference §2.5 uses it: a CONNECT authority that is not the pod's own IP is accepted only
 * when the pod is the waypoint for it.
 */
bool dp_mesh_is_waypoint_for(const struct dp_mesh_snapshot *s, const struct dp_mesh_workload *w,
                             const struct dp_mesh_ip *dst);

/** Weighted-random pick among `n` workloads by capacity (unhealthy ones skipped unless
 *  allow_unhealthy). Returns the index or -EHOSTUNREACH when nothing is pickable. */
int dp_mesh_pick_endpoint(const struct dp_mesh_workload *const *list, size_t n,
                          bool allow_unhealthy, dp_mesh_rng_fn *rng, void *rng_arg);

#endif
