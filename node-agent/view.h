/*
 * view.h — the node agent's read-only view of the mesh snapshot: the few questions the proxy
 * paths ask (who is at this IP, where does this original destination go, is this peer
 * allowed). The only file that knows dataplane/mesh.h and dataplane/policy.h, so the proxy
 * code stays independent of the object schema.
 *
 * A struct na_view holds one reference on an immutable snapshot; every string it hands out is
 * borrowed and valid while the view is held. Views may be taken on any thread.
 */
#ifndef NA_VIEW_H
#define NA_VIEW_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "tls.h"

struct na_agent;
struct na_view;

/** Workload metadata for telemetry and policy (borrowed strings, "" when unknown). */
struct na_wl {
    const char *uid, *name, *ns, *sa, *td, *node;
    const char *workload_name, *canonical_name, *canonical_revision, *app, *version, *cluster;
    bool hbone;                  /* protocol HBONE (in the mesh) */
    const void *obj;             /* the mesh object (struct dp_mesh_workload), borrowed */
    char spiffe[DP_SPIFFE_MAX];  /* spiffe://td/ns/ns/sa/sa */
};

struct na_svc {
    const char *hostname, *name, *ns;
};

enum na_dst_kind {
    NA_DST_PASSTHROUGH = 0, /* unknown address: plain TCP to the original destination */
    NA_DST_HBONE,           /* in-mesh workload: HBONE to addr:15008, authority = addr */
    NA_DST_TCP,             /* known workload outside the mesh: plain TCP to addr */
    NA_DST_NO_ENDPOINTS,    /* service without usable endpoints: fail fast */
};

struct na_dst {
    enum na_dst_kind kind;
    struct sockaddr_storage addr; /* target: endpoint ip:targetPort, the original dst, or (via a
                                     waypoint) the original VIP:port; HBONE :authority */
    struct sockaddr_storage hop;  /* where to connect: addr for plain TCP, <pod ip>:15008 */
    bool has_wl, has_svc;
    struct na_wl wl;
    struct na_svc svc;
};

/** Current view (new reference). Never fails: an empty snapshot when no config was loaded. */
struct na_view *na_view_get(struct na_agent *a);
void na_view_put(struct na_view *v);

/** Workload owning `addr` (port ignored). 0 or -ENOENT. */
int na_view_workload_by_ip(struct na_view *v, const struct sockaddr *addr, struct na_wl *ret_wl);
/** Destination selection for an outbound connection to `orig` (reference §2.4). Always
 *  fills ret (passthrough for unknown addresses). */
void na_view_resolve(struct na_view *v, const struct na_wl *src, const struct sockaddr *orig,
                     struct na_dst *ret);

/** L4 authorization for a connection to local workload `dst` (reference §2.6). `src_principal`
 *  is the peer's SPIFFE ID or NULL for an identity-less (plaintext) peer. Returns 0 = allow or
 *  -EACCES with a static/borrowed reason in *ret_reason ("explicitly denied by: ns/name",
 *  "allow policies exist, but none allowed"). */
int na_view_authorize(struct na_view *v, const struct na_wl *dst, const char *src_principal,
                      const struct sockaddr *src, const struct sockaddr *dst_addr,
                      const char **ret_reason);

/** Publish `snap` as the agent's current snapshot (steals the reference; any thread).
 *  Connections keep the view they started with. */
struct dp_mesh_snapshot;
void na_view_set(struct na_agent *a, struct dp_mesh_snapshot *snap);

/** Drop the agent's current snapshot (shutdown). */
void na_view_free_all(struct na_agent *a);

/** Install a new snapshot from a config file. 0 or -errno (the old snapshot stays). */
int na_view_load_file(struct na_agent *a, const char *path, char *errbuf, size_t errsz);

#endif
