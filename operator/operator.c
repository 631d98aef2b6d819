/*
 * operator.c — informers, debounced snapshot + event log, CA root publication. See operator.h.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kube_lease.h"
#include "kube_queue.h"
#include "log.h"
#include "operator.h"
#include "prune.h"

#define SCOPE        "operator"
#define LOG_MAX      20000 /* events kept for resumable streams */
#define ROOT_CM      "istio-ca-root-cert"
#define MESH_NAME    "default"
#define MESH_CM      "istio"     /* Istio's MeshConfig ConfigMap, key "mesh" */
#define CA_SECRET    "istio-ca-secret"
#define MAX_INFLIGHT 16

enum inf_idx {
    INF_NAMESPACES,
    INF_PODS,
    INF_SERVICES,
    INF_SLICES,
    INF_NODES,
    INF_GATEWAYS,
    INF_AUTHZ,
    INF_PEERAUTHN,
    INF_MESHES,
    INF_CACERTS,
    INF_VIRTUALSERVICES, /* analysis only (analysis.h): not part of the snapshot */
    INF_DESTINATIONRULES,
    INF_SERVICEENTRIES,
    INF_MESHCM,
    INF_COUNT,
};

static const struct {
    const struct dp_kube_resource *res;
    bool required; /* snapshot waits for its first list */
} INFORMERS[INF_COUNT] = {
        [INF_NAMESPACES] = {&DP_KUBE_RES_NAMESPACES, true},
        [INF_PODS] = {&DP_KUBE_RES_PODS, true},
        [INF_SERVICES] = {&DP_KUBE_RES_SERVICES, true},
        [INF_SLICES] = {&DP_KUBE_RES_ENDPOINTSLICES, true},
        [INF_NODES] = {&DP_KUBE_RES_NODES, true},
        /* CRDs that may not be installed: never block readiness on them */
        [INF_GATEWAYS] = {&DP_KUBE_RES_GATEWAYS, false},
        [INF_AUTHZ] = {&DP_KUBE_RES_AUTHORIZATIONPOLICIES, false},
        [INF_PEERAUTHN] = {&DP_KUBE_RES_PEERAUTHENTICATIONS, false},
        [INF_MESHES] = {&DP_KUBE_RES_MESHES, false},
        /* the plug-in CA Secret (operator namespace, field selector): reloaded on change */
        [INF_CACERTS] = {&DP_KUBE_RES_SECRETS, false},
        /* routing config: analyzed (status, webhook), not streamed to node agents */
        [INF_VIRTUALSERVICES] = {&DP_KUBE_RES_VIRTUALSERVICES, false},
        [INF_DESTINATIONRULES] = {&DP_KUBE_RES_DESTINATIONRULES, false},
        [INF_SERVICEENTRIES] = {&DP_KUBE_RES_SERVICEENTRIES, false},
        /* the mesh config (operator namespace, field selector): the first snapshot waits for
         * it so that it is built with the configured trust domain and root namespace */
        [INF_MESHCM] = {&DP_KUBE_RES_CONFIGMAPS, true},
};

/* Kinds the snapshot does not read: a change notifies the config subscribers only. */
static bool analysis_only(const json_t *obj)
{
    const char *k = json_string_value(json_object_get(obj, "kind"));
    const char *av = json_string_value(json_object_get(obj, "apiVersion"));

    return k != NULL && av != NULL && strncmp(av, "networking.istio.io/", 20) == 0 &&
           (strcmp(k, "VirtualService") == 0 || strcmp(k, "DestinationRule") == 0 ||
            strcmp(k, "ServiceEntry") == 0);
}

struct op_ctx {
    struct dp_loop *loop;
    struct op_options opts;
    struct dp_kube_config *kcfg;
    struct dp_kube_client *client;
    struct dp_kube_multi *multi;
    struct dp_kube_informer *inf[INF_COUNT];
    struct op_ca *ca;

    json_t *snap;        /* current mesh objects (immutable: replaced, never modified) */
    struct op_changes changes; /* informer changes since snap was built */
    uint64_t version;    /* last event version */
    json_t *log;         /* recent events, oldest first */
    bool ready;
    struct dp_timer debounce;
    uint64_t dirty_since_ms; /* 0 = clean */
    uint64_t last_rebuild_ms; /* when the last debounced rebuild ran (0 = never) */
    bool dirty_quiet;        /* this dirty period began after a quiet spell: settle, not wait */
    struct dp_list subs;
    struct dp_list config_subs; /* notified of analysis-only changes */

    struct dp_kube_queue roots; /* namespaces whose root ConfigMap needs writing */
    struct dp_timer roots_timer;
    unsigned roots_inflight;

    bool leader;
    unsigned ca_generation;
    struct dp_defer ca_reload;
    struct op_stats stats;

    /* mesh config: in effect, where from, and the newest rejected content's error */
    struct op_meshconfig *meshcfg;
    const char *default_td, *default_root; /* op_options' values (borrowed) */
    bool meshcfg_from_cm;
    char meshcfg_rv[64], meshcfg_observed_rv[64];
    char *meshcfg_error;

    /* owner of istio-ca-secret and the Lease: the Mesh object (uid remembered) */
    char owner_uid[128];
    char ca_owner_uid[128]; /* owner_uid istio-ca-secret was last checked/fixed for */
    bool ca_owner_busy;
    struct dp_timer ca_owner_timer;
    struct dp_kube_lease *lease;
};

void op_options_defaults(struct op_options *o)
{
    static const char *const trusted[] = {"istio-system/ztunnel", "istio-system/ambit-node",
                                          NULL};

    memset(o, 0, sizeof(*o));
    o->namespace = "istio-system";
    op_mesh_config_defaults(&o->mesh);
    o->trusted_accounts = trusted;
    o->debounce_ms = 100;
    o->debounce_settle_ms = 10;
    o->debounce_max_ms = 1000;
    o->cert_ttl_s = 86400;
    o->publish_roots = true;
}

/* ------------------------------------------------------------------ snapshot */

static const json_t *cache(const struct op_ctx *op, enum inf_idx i)
{
    return op->inf[i] ? dp_kube_informer_store(op->inf[i])->objs : NULL;
}

static void rebuild(struct op_ctx *op)
{
    struct op_inputs in = {
            .namespaces = cache(op, INF_NAMESPACES),
            .pods = cache(op, INF_PODS),
            .services = cache(op, INF_SERVICES),
            .endpointslices = cache(op, INF_SLICES),
            .nodes = cache(op, INF_NODES),
            .gateways = cache(op, INF_GATEWAYS),
            .authorization_policies = cache(op, INF_AUTHZ),
            .peer_authentications = cache(op, INF_PEERAUTHN),
    };
    struct op_snapshot_diags diags = {0};
    json_t *snap = NULL, *events = NULL, *e;
    uint64_t t0 = dp_now_us();
    struct dp_list *p, *t;
    size_t i;
    int r;

    json_t *touched = NULL;
    bool full;

    /* the first snapshot is a full build; later ones recompute what the changes affect */
    if (!op->ready)
        op->changes.all = true;
    r = op_snapshot_update(op->snap, &in, &op->opts.mesh, &op->changes, &snap, &touched, &diags);
    if (r < 0) {
        dp_error(SCOPE, "snapshot build failed", DP_LERR(r));
        return; /* the changes stay recorded: the next rebuild retries them */
    }
    for (i = 0; i < diags.n; i++)
        dp_warn(SCOPE, "skipped object", DP_LS("reason", diags.items[i]));
    r = op_snapshot_diff_keys(op->snap, snap, touched, op->version + 1, &events);
    full = touched == NULL;
    json_decref(touched);
    if (r < 0) {
        json_decref(snap);
        dp_error(SCOPE, "snapshot diff failed", DP_LERR(r));
        return;
    }
    op_changes_clear(&op->changes);
    json_decref(op->snap);
    op->snap = snap;
    op->version += json_array_size(events);
    op->stats.rebuilds++;
    op->stats.events += json_array_size(events);
    op->stats.last_rebuild_ms = (double)(dp_now_us() - t0) / 1000.0;
    /* the first build is no resumable history: nobody can hold an earlier version of this
     * process (an agent of a previous one gets reset + full snapshot) */
    json_array_foreach(op->ready ? events : NULL, i, e) {
        json_array_append(op->log, e);
    }
    if (json_array_size(op->log) > LOG_MAX) {
        json_t *trimmed = json_array();
        size_t from = json_array_size(op->log) - LOG_MAX / 2;

        for (i = from; i < json_array_size(op->log); i++)
            json_array_append(trimmed, json_array_get(op->log, i));
        json_decref(op->log);
        op->log = trimmed;
    }
    if (!op->ready) {
        op->ready = true;
        dp_info(SCOPE, "first snapshot built", DP_LU("version", op->version),
                DP_LU("workloads", json_object_size(json_object_get(snap, "workload"))),
                DP_LU("services", json_object_size(json_object_get(snap, "service"))));
    } else {
        dp_debug(SCOPE, "snapshot rebuilt", DP_LU("version", op->version),
                 DP_LU("events", json_array_size(events)));
    }
    dp_list_for_each_safe(p, t, &op->subs) {
        struct op_sub *s = dp_container_of(p, struct op_sub, link);

        s->cb(op, events, s->arg);
    }
    json_decref(events);
    /* a full build (start, relist, mesh config) leaves a whole snapshot of garbage (and at
     * start the LIST pages): give the freed pages back rather than keep the peak */
    if (full)
        malloc_trim(0);
}

static bool required_synced(const struct op_ctx *op)
{
    for (int i = 0; i < INF_COUNT; i++)
        if (INFORMERS[i].required && !dp_kube_informer_synced(op->inf[i]))
            return false;
    return true;
}

static void on_debounce(struct dp_loop *loop, void *arg)
{
    struct op_ctx *op = arg;

    (void)loop;
    if (!required_synced(op)) {
        dp_timer_arm(op->loop, &op->debounce, op->opts.debounce_ms);
        return;
    }
    op->dirty_since_ms = 0;
    op->last_rebuild_ms = dp_loop_now(op->loop);
    rebuild(op);
}

/* Debounce. A change that arrives after a quiet spell (no rebuild for debounce_ms) is pushed
 * debounce_settle_ms after it, which is enough to gather the few watch events one API write
 * causes (a Pod and its EndpointSlices) — so an isolated change reaches the agents at once.
 * Changes that follow a rebuild closely are a burst: rebuild debounce_ms after the last of
 * them, but at most debounce_max_ms after the first unprocessed one, so a steady trickle of
 * changes cannot starve the stream. */
static void mark_dirty(struct op_ctx *op)
{
    uint64_t now = dp_loop_now(op->loop), delay = op->opts.debounce_ms;

    if (op->dirty_since_ms == 0) {
        op->dirty_since_ms = now;
        op->dirty_quiet = op->last_rebuild_ms == 0 ||
                          now - op->last_rebuild_ms >= op->opts.debounce_ms;
    }
    if (op->dirty_quiet && op->opts.debounce_settle_ms < op->opts.debounce_ms) {
        uint64_t due = op->dirty_since_ms + op->opts.debounce_settle_ms;

        dp_debug(SCOPE, "debounce: quiet change", DP_LU("delay_ms", due > now ? due - now : 0));
        dp_timer_arm(op->loop, &op->debounce, due > now ? due - now : 0);
        return;
    }
    if (now + delay > op->dirty_since_ms + op->opts.debounce_max_ms)
        delay = op->dirty_since_ms + op->opts.debounce_max_ms > now
                        ? op->dirty_since_ms + op->opts.debounce_max_ms - now
                        : 0;
    dp_timer_arm(op->loop, &op->debounce, delay);
}

/* ------------------------------------------------------------------ root ConfigMaps */

static void roots_kick(struct op_ctx *op);

struct root_req {
    struct op_ctx *op;
    char ns[256];
};

static void on_root_applied(int r, long http, json_t *body, const char *errmsg, void *arg)
{
    struct root_req *rr = arg;
    struct op_ctx *op = rr->op;
    uint64_t now = dp_loop_now(op->loop);

    (void)http;
    (void)body;
    op->roots_inflight--;
    dp_kube_queue_finish(&op->roots, rr->ns, now);
    if (r < 0 && r != -ENOENT) {
        int64_t d = dp_kube_queue_retry(&op->roots, rr->ns, now);

        op->stats.root_publish_errors++;
        dp_warn(SCOPE, "publishing the root certificate failed", DP_LS("namespace", rr->ns),
                DP_LS("detail", errmsg), DP_LI("retry_ms", d));
    } else {
        dp_kube_queue_forget(&op->roots, rr->ns);
        if (r == 0)
            op->stats.roots_published++;
    }
    free(rr);
    roots_kick(op);
}

/*
 * The Mesh object owns the root ConfigMaps it publishes into every namespace: deleting it
 * (helm uninstall of the control plane) garbage-collects them. Empty until the Mesh is seen;
 * its arrival re-publishes every root (on_obj_add).
 */
json_t *op_mesh_owner_refs(const struct op_ctx *op)
{
    if (op->owner_uid[0] == '\0')
        return json_array();
    return json_pack("[{s:s,s:s,s:s,s:s}]", "apiVersion", "install.ambit.dev/v1alpha1", "kind",
                     "Mesh", "name", MESH_NAME, "uid", op->owner_uid);
}

static void publish_root(struct op_ctx *op, const char *ns)
{
    struct root_req *rr = calloc(1, sizeof(*rr));
    char *path = NULL, *full = NULL;
    json_t *cm = NULL;
    int r = -ENOMEM;

    if (rr == NULL)
        goto fail;
    rr->op = op;
    snprintf(rr->ns, sizeof(rr->ns), "%s", ns);
    cm = json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s},s:o},s:{s:s}}", "apiVersion", "v1", "kind",
                   "ConfigMap", "metadata", "name", ROOT_CM, "namespace", ns, "labels",
                   "istio.io/config", "true", "ownerReferences", op_mesh_owner_refs(op), "data",
                   "root-cert.pem", op->ca->root_pem);
    if (cm == NULL)
        goto fail;
    r = dp_kube_path(&DP_KUBE_RES_CONFIGMAPS, ns, ROOT_CM, NULL, NULL, &path);
    if (r < 0)
        goto fail;
    if (asprintf(&full, "%s?fieldManager=%s&force=true", path, DP_KUBE_FIELD_MANAGER) < 0) {
        full = NULL;
        r = -ENOMEM;
        goto fail;
    }
    r = dp_kube_multi_request(op->multi, "PATCH", full, "application/apply-patch+yaml", cm,
                              on_root_applied, rr, NULL);
    if (r < 0)
        goto fail;
    op->roots_inflight++;
    json_decref(cm);
    free(path);
    free(full);
    return;
fail:
    dp_kube_queue_finish(&op->roots, ns, dp_loop_now(op->loop));
    dp_kube_queue_retry(&op->roots, ns, dp_loop_now(op->loop));
    free(rr);
    json_decref(cm);
    free(path);
    free(full);
}

static void roots_kick(struct op_ctx *op)
{
    uint64_t now = dp_loop_now(op->loop);
    const char *ns;
    int64_t due;

    if (!op->leader)
        return; /* keep the queue; the leader (maybe us, later) writes */
    while (op->roots_inflight < MAX_INFLIGHT && dp_kube_queue_pop(&op->roots, now, &ns) == 0) {
        char copy[256];

        snprintf(copy, sizeof(copy), "%s", ns);
        /* a namespace being deleted gets no ConfigMap */
        {
            char key[300];
            json_t *nso;
            const char *phase;

            snprintf(key, sizeof(key), "%s", copy);
            nso = dp_kube_informer_get(op->inf[INF_NAMESPACES], key);
            phase = json_string_value(json_object_get(json_object_get(nso, "status"), "phase"));
            if (nso == NULL || (phase && strcmp(phase, "Terminating") == 0)) {
                dp_kube_queue_finish(&op->roots, copy, now);
                dp_kube_queue_forget(&op->roots, copy);
                continue;
            }
        }
        publish_root(op, copy);
    }
    due = dp_kube_queue_next_due(&op->roots, now);
    if (due >= 0)
        dp_timer_arm(op->loop, &op->roots_timer, (uint64_t)due);
}

static void on_roots_timer(struct dp_loop *loop, void *arg)
{
    (void)loop;
    roots_kick(arg);
}

static void queue_root(struct op_ctx *op, const json_t *ns_obj)
{
    const char *name = dp_kube_meta_str(ns_obj, "name");

    if (!op->opts.publish_roots || name == NULL ||
        (op->opts.write_selector != NULL &&
         dp_kube_selector_matches(op->opts.write_selector,
                                  json_object_get(json_object_get(ns_obj, "metadata"),
                                                  "labels")) != 1))
        return;
    if (dp_kube_queue_add(&op->roots, name, dp_loop_now(op->loop), 0) == 0)
        roots_kick(op);
}

/* ------------------------------------------------------------------ mesh config */

static void set_meshcfg(struct op_ctx *op, struct op_meshconfig *cfg /* steals */)
{
    op_meshconfig_free(op->meshcfg);
    op->meshcfg = cfg;
    /* the snapshot, the CSR checks and the status read these */
    op->opts.mesh.trust_domain = cfg->trust_domain;
    op->opts.mesh.root_ns = cfg->root_ns;
}

/*
 * ConfigMap `istio` added, changed (cm) or deleted (NULL): parse it; a valid config replaces the
 * one in effect, an invalid one is logged once and kept for the status (Degraded) while the last
 * good config stays. Either way the snapshot is rebuilt soon (pushes, status).
 */
static void meshcfg_update(struct op_ctx *op, const json_t *cm)
{
    const char *rv = cm ? dp_kube_meta_str(cm, "resourceVersion") : NULL;
    const json_t *mesh = cm ? json_object_get(json_object_get(cm, "data"), "mesh") : NULL;
    const char *text = json_string_value(mesh);
    struct op_meshconfig *cfg = NULL;
    json_t *unknown = NULL;
    char source[320], err[1024] = "";
    int r;

    snprintf(op->meshcfg_observed_rv, sizeof(op->meshcfg_observed_rv), "%s", rv ? rv : "");
    snprintf(source, sizeof(source), "ConfigMap %s/%s key mesh", op->opts.namespace, MESH_CM);
    if (cm != NULL && text == NULL)
        dp_warn(SCOPE, "mesh config has no key mesh, using the defaults",
                DP_LS("configmap", source));
    if (cm == NULL)
        r = op_meshconfig_defaults(op->default_td, op->default_root, &cfg);
    else
        r = op_meshconfig_parse(text ? text : "", text ? strlen(text) : 0, source,
                                op->default_td, op->default_root, &cfg, &unknown, err,
                                sizeof(err));
    if (r < 0) {
        if (op->meshcfg_error == NULL || strcmp(op->meshcfg_error, err) != 0)
            dp_error(SCOPE, "mesh config rejected, keeping the last good one",
                     DP_LS("detail", err), DP_LS("resource_version", rv ? rv : ""));
        free(op->meshcfg_error);
        op->meshcfg_error = strdup(err[0] ? err : "mesh config rejected");
        mark_dirty(op); /* status: Degraded */
        return;
    }
    free(op->meshcfg_error);
    op->meshcfg_error = NULL;
    if (json_array_size(unknown) > 0) {
        char names[512] = "";
        size_t off = 0, i;
        json_t *v;

        json_array_foreach(unknown, i, v) {
            if (off < sizeof(names))
                off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s", i ? "," : "",
                                        json_string_value(v));
        }
        dp_warn(SCOPE, "mesh config: ignoring fields ambit does not use", DP_LS("fields", names),
                DP_LS("configmap", source));
    }
    json_decref(unknown);
    op->meshcfg_from_cm = cm != NULL;
    snprintf(op->meshcfg_rv, sizeof(op->meshcfg_rv), "%s", rv ? rv : "");
    if (op_meshconfig_equal(cfg, op->meshcfg)) {
        op_meshconfig_free(cfg);
    } else {
        dp_info(SCOPE, "mesh config applied", DP_LS("source", cm ? source : "defaults"),
                DP_LS("trust_domain", cfg->trust_domain), DP_LS("root_namespace", cfg->root_ns),
                DP_LS("access_log_encoding", op_access_log_encoding_str(cfg->access_log_encoding)),
                DP_LS("resource_version", rv ? rv : ""));
        set_meshcfg(op, cfg);
        op->changes.all = true; /* trust domain / root namespace touch every kind */
    }
    mark_dirty(op);
}

const struct op_meshconfig *op_meshconfig(const struct op_ctx *op)
{
    return op->meshcfg;
}

json_t *op_meshconfig_status(const struct op_ctx *op)
{
    json_t *j = op_meshconfig_to_json(op->meshcfg);
    char source[320];

    if (j == NULL)
        return NULL;
    snprintf(source, sizeof(source), "ConfigMap %s/%s", op->opts.namespace, MESH_CM);
    json_object_set_new(j, "source", json_string(op->meshcfg_from_cm ? source : "defaults"));
    json_object_set_new(j, "resourceVersion", json_string(op->meshcfg_rv));
    json_object_set_new(j, "observedResourceVersion", json_string(op->meshcfg_observed_rv));
    return j;
}

const char *op_meshconfig_error(const struct op_ctx *op)
{
    return op->meshcfg_error;
}

/* ------------------------------------------------------------------ owner references */

static void ca_owner_kick(struct op_ctx *op);

static bool has_owner(const json_t *obj, const char *uid)
{
    json_t *ref;
    size_t i;

    json_array_foreach(json_object_get(json_object_get(obj, "metadata"), "ownerReferences"), i,
                       ref) {
        const char *u = json_string_value(json_object_get(ref, "uid"));

        if (u != NULL && strcmp(u, uid) == 0)
            return true;
    }
    return false;
}

struct ca_owner_req {
    struct op_ctx *op;
    char uid[128];
};

/*
 * ok: the secret is owned by q->uid (or absent). errmsg: failed, retry in 5 s (as leader).
 * Neither: stale (the owner changed or we stopped leading): start over if still leader.
 */
static void ca_owner_done(struct ca_owner_req *q, bool ok, const char *errmsg)
{
    struct op_ctx *op = q->op;

    op->ca_owner_busy = false;
    if (ok)
        snprintf(op->ca_owner_uid, sizeof(op->ca_owner_uid), "%s", q->uid);
    free(q);
    if (!ok && errmsg != NULL) {
        if (op->leader) {
            dp_warn(SCOPE, "cannot set the owner of the CA secret, retrying",
                    DP_LS("secret", CA_SECRET), DP_LS("detail", errmsg));
            dp_timer_arm(op->loop, &op->ca_owner_timer, 5000);
        }
        return;
    }
    ca_owner_kick(op); /* no-op unless the owner changed meanwhile */
}

static void on_ca_owner_written(int r, long http, json_t *body, const char *errmsg, void *arg)
{
    struct ca_owner_req *q = arg;

    (void)http;
    (void)body;
    if (r == 0)
        dp_info(SCOPE, "CA secret owned by the Mesh object (deleted with it)",
                DP_LS("secret", CA_SECRET), DP_LS("owner_uid", q->uid));
    /* gone meanwhile: nothing to own; conflict: the retry reads it again */
    ca_owner_done(q, r == 0 || r == -ENOENT,
                  r == 0 || r == -ENOENT ? NULL : errmsg ? errmsg : "update failed");
}

static void on_ca_secret_read(int r, long http, json_t *body, const char *errmsg, void *arg)
{
    struct ca_owner_req *q = arg;
    struct op_ctx *op = q->op;
    json_t *obj = NULL, *refs, *ours = NULL;
    char *path = NULL;

    (void)http;
    if (r == -ENOENT || (r == 0 && has_owner(body, q->uid))) {
        ca_owner_done(q, true, NULL); /* none of ours (cacerts in use), or already owned */
        return;
    }
    if (r < 0) {
        ca_owner_done(q, false, errmsg ? errmsg : "read failed");
        return;
    }
    if (!op->leader || strcmp(q->uid, op->owner_uid) != 0) {
        ca_owner_done(q, false, NULL); /* stale */
        return;
    }
    /* a full update carrying the read resourceVersion: a concurrent change gets 409 */
    obj = json_deep_copy(body);
    refs = obj ? json_object_get(json_object_get(obj, "metadata"), "ownerReferences") : NULL;
    if (obj != NULL && refs == NULL) {
        refs = json_array();
        json_object_set_new(json_object_get(obj, "metadata"), "ownerReferences", refs);
    }
    ours = op_mesh_owner_refs(op);
    if (refs == NULL || ours == NULL || json_array_extend(refs, ours) < 0 ||
        dp_kube_path(&DP_KUBE_RES_SECRETS, op->opts.namespace, CA_SECRET, NULL, NULL, &path) < 0 ||
        dp_kube_multi_request(op->multi, "PUT", path, "application/json", obj,
                              on_ca_owner_written, q, NULL) < 0)
        ca_owner_done(q, false, "cannot start the update");
    free(path);
    json_decref(ours);
    json_decref(obj);
}

/*
 * istio-ca-secret (the self-signed CA the operator created, or an earlier one it found) gets the
 * Mesh object as owner, so that uninstalling the control plane removes it. cacerts (the user's)
 * is never touched. Leader only; after a Mesh uid change, a leadership change or a CA reload.
 */
static void ca_owner_kick(struct op_ctx *op)
{
    struct ca_owner_req *q;
    char *path = NULL;

    if (!op->leader || op->owner_uid[0] == '\0' || op->ca_owner_busy ||
        strcmp(op->ca_owner_uid, op->owner_uid) == 0)
        return;
    q = calloc(1, sizeof(*q));
    if (q == NULL)
        return;
    q->op = op;
    snprintf(q->uid, sizeof(q->uid), "%s", op->owner_uid);
    if (dp_kube_path(&DP_KUBE_RES_SECRETS, op->opts.namespace, CA_SECRET, NULL, NULL, &path) < 0 ||
        dp_kube_multi_request(op->multi, "GET", path, NULL, NULL, on_ca_secret_read, q, NULL) < 0) {
        free(path);
        free(q);
        dp_timer_arm(op->loop, &op->ca_owner_timer, 5000);
        return;
    }
    free(path);
    op->ca_owner_busy = true;
}

static void on_ca_owner_timer(struct dp_loop *loop, void *arg)
{
    (void)loop;
    ca_owner_kick(arg);
}

static void lease_owner_update(struct op_ctx *op)
{
    json_t *refs;

    if (op->lease == NULL || op->owner_uid[0] == '\0')
        return;
    refs = op_mesh_owner_refs(op);
    if (refs == NULL || dp_kube_lease_set_owner_refs(op->lease, refs) < 0)
        dp_warn(SCOPE, "cannot set the owner of the Lease");
    json_decref(refs);
}

void op_set_lease(struct op_ctx *op, struct dp_kube_lease *lease)
{
    op->lease = lease;
    lease_owner_update(op);
}

/* The Mesh object `default` (inside --write-selector) seen: remember its uid as the owner. */
static void mesh_seen(struct op_ctx *op, const json_t *mesh)
{
    const char *name = dp_kube_meta_str(mesh, "name"), *uid = dp_kube_meta_str(mesh, "uid");
    const char *k;
    json_t *ns_obj;

    if (name == NULL || uid == NULL || strcmp(name, MESH_NAME) != 0 ||
        strcmp(uid, op->owner_uid) == 0 ||
        (op->opts.write_selector != NULL && op->opts.write_selector[0] != '\0' &&
         dp_kube_selector_matches(op->opts.write_selector,
                                  json_object_get(json_object_get(mesh, "metadata"),
                                                  "labels")) != 1))
        return;
    snprintf(op->owner_uid, sizeof(op->owner_uid), "%s", uid);
    lease_owner_update(op);
    ca_owner_kick(op);
    json_object_foreach((json_t *)cache(op, INF_NAMESPACES), k, ns_obj) {
        queue_root(op, ns_obj); /* roots get their owner reference */
    }
}

/* ------------------------------------------------------------------ informer handlers */

static bool is_kind(const json_t *obj, const char *kind)
{
    const char *k = json_string_value(json_object_get(obj, "kind"));

    return k != NULL && strcmp(k, kind) == 0;
}

/* Which snapshot input an informer object is (-1: none). */
static int input_kind(const json_t *obj)
{
    static const char *const kinds[OP_IN_COUNT] = {
            [OP_IN_NAMESPACE] = "Namespace",        [OP_IN_POD] = "Pod",
            [OP_IN_SERVICE] = "Service",            [OP_IN_ENDPOINTSLICE] = "EndpointSlice",
            [OP_IN_NODE] = "Node",                  [OP_IN_GATEWAY] = "Gateway",
            [OP_IN_AUTHZ] = "AuthorizationPolicy",  [OP_IN_PEERAUTHN] = "PeerAuthentication",
    };
    const char *k = json_string_value(json_object_get(obj, "kind"));

    for (int i = 0; k != NULL && i < OP_IN_COUNT; i++)
        if (strcmp(k, kinds[i]) == 0)
            return i;
    return -1;
}

/* Remember what changed for the incremental rebuild, and schedule it. */
static void changed(struct op_ctx *op, const json_t *obj)
{
    int kind = input_kind(obj);
    char key[600];

    if (kind >= 0) {
        if (dp_kube_obj_key(obj, key, sizeof(key)) < 0)
            op->changes.all = true;
        else
            op_changes_add(&op->changes, (enum op_input_kind)kind, key);
    }
    mark_dirty(op);
}

static void config_changed(struct op_ctx *op)
{
    struct dp_list *p, *t;

    dp_list_for_each_safe(p, t, &op->config_subs) {
        struct op_sub *s = dp_container_of(p, struct op_sub, link);

        s->cb(op, NULL, s->arg);
    }
}

static void on_obj_add(json_t *obj, void *arg)
{
    struct op_ctx *op = arg;

    if (analysis_only(obj)) {
        config_changed(op);
        return;
    }
    if (is_kind(obj, "Secret")) {
        dp_loop_defer(op->loop, &op->ca_reload);
        return;
    }
    if (is_kind(obj, "ConfigMap")) {
        meshcfg_update(op, obj);
        return;
    }
    if (is_kind(obj, "Namespace"))
        queue_root(op, obj);
    if (is_kind(obj, "Mesh"))
        mesh_seen(op, obj);
    changed(op, obj);
}

/* An update that only touched the status of a kind whose spec changes bump
 * metadata.generation (custom resources and Gateways, whose status the operator writes itself:
 * policy conditions, waypoint addresses, Mesh install state). Nothing the snapshot reads
 * changed, so it must not cause a rebuild — else every status write comes back through the
 * watch as a rebuild and a push. */
static bool status_only(const json_t *old_obj, const json_t *new_obj)
{
    static const char *const kinds[] = {"AuthorizationPolicy", "PeerAuthentication", "Gateway",
                                        "Mesh"};
    static const char *const meta[] = {"generation", "labels", "annotations",
                                       "ownerReferences", "deletionTimestamp"};
    const char *k = json_string_value(json_object_get(new_obj, "kind"));
    const json_t *om = json_object_get(old_obj, "metadata"), *nm = json_object_get(new_obj, "metadata");
    bool known = false;

    for (size_t i = 0; k != NULL && i < sizeof(kinds) / sizeof(kinds[0]); i++)
        known |= strcmp(k, kinds[i]) == 0;
    if (!known || old_obj == NULL || !json_is_integer(json_object_get(nm, "generation")))
        return false;
    for (size_t i = 0; i < sizeof(meta) / sizeof(meta[0]); i++) {
        const json_t *a = json_object_get(om, meta[i]), *b = json_object_get(nm, meta[i]);

        if ((a == NULL) != (b == NULL) || (a != NULL && !json_equal(a, b)))
            return false;
    }
    return true;
}

static void on_obj_update(json_t *old_obj, json_t *new_obj, void *arg)
{
    struct op_ctx *op = arg;

    if (status_only(old_obj, new_obj)) {
        if (is_kind(new_obj, "Mesh"))
            mesh_seen(op, new_obj);
        return;
    }
    if (analysis_only(new_obj)) {
        config_changed(op);
        return;
    }
    if (is_kind(new_obj, "Secret")) {
        dp_loop_defer(op->loop, &op->ca_reload);
        return;
    }
    if (is_kind(new_obj, "ConfigMap")) {
        meshcfg_update(op, new_obj);
        return;
    }
    if (is_kind(new_obj, "Mesh"))
        mesh_seen(op, new_obj);
    if (json_is_string(json_object_get(new_obj, "kind")) &&
        strcmp(json_string_value(json_object_get(new_obj, "kind")), "Namespace") == 0 &&
        op->opts.write_selector != NULL)
        queue_root(op, new_obj);
    changed(op, new_obj);
}

static void on_obj_delete(json_t *obj, void *arg)
{
    struct op_ctx *op = arg;

    if (analysis_only(obj)) {
        config_changed(op);
        return;
    }
    if (is_kind(obj, "Secret")) {
        dp_loop_defer(op->loop, &op->ca_reload);
        return;
    }
    if (is_kind(obj, "ConfigMap")) {
        meshcfg_update(op, NULL); /* back to the defaults */
        return;
    }
    /* a deleted Mesh keeps owner_uid: objects re-created while the control plane goes away
     * still point at it, and the garbage collector removes them */
    changed(op, obj);
}

/*
 * `cacerts` appeared, changed or vanished: load the CA again (cacerts > istio-ca-secret >
 * self-signed, as at start). A broken new cacerts keeps the old CA in force (logged). Deferred so
 * that it runs once per batch of events, outside informer callbacks.
 */
static void on_ca_reload(struct dp_loop *loop, void *arg)
{
    struct op_ctx *op = arg;
    struct op_ca *ca = NULL;
    char err[512] = "";
    int r;

    (void)loop;
    if (!dp_kube_informer_synced(op->inf[INF_CACERTS]))
        return; /* the initial list: the CA was loaded at start */
    r = op_ca_bootstrap(op->client, op->opts.namespace, &ca, err, sizeof(err));
    if (r < 0) {
        dp_error(SCOPE, "CA reload failed, keeping the current CA", DP_LS("detail", err),
                 DP_LERR(r));
        return;
    }
    if (strcmp(ca->root_pem, op->ca->root_pem) == 0 &&
        strcmp(ca->chain_pem, op->ca->chain_pem) == 0) {
        op_ca_free(ca);
        return;
    }
    op_ca_free(op->ca);
    op->ca = ca;
    op->ca_generation++;
    op->ca_owner_uid[0] = '\0';
    ca_owner_kick(op);
    dp_info(SCOPE, "CA reloaded", DP_LS("source", ca->source));
    if (op->leader) {
        const char *k;
        json_t *v;

        json_object_foreach((json_t *)cache(op, INF_NAMESPACES), k, v) {
            queue_root(op, v);
        }
        roots_kick(op);
    }
}

static void on_synced(struct dp_kube_informer *inf, void *arg)
{
    struct op_ctx *op = arg;

    dp_info(SCOPE, "informer synced", DP_LS("resource", dp_kube_informer_resource(inf)->resource),
            DP_LU("objects", dp_kube_store_size(dp_kube_informer_store(inf))));
    if (inf == op->inf[INF_VIRTUALSERVICES] || inf == op->inf[INF_DESTINATIONRULES] ||
        inf == op->inf[INF_SERVICEENTRIES]) {
        config_changed(op);
        return;
    }
    op->changes.all = true; /* (re)listed: rebuild everything once */
    mark_dirty(op);
}

static const struct dp_kube_informer_ops INF_OPS = {on_obj_add, on_obj_update, on_obj_delete,
                                                    on_synced};

/* ------------------------------------------------------------------ lifecycle */

int op_new(struct dp_loop *loop, const struct op_options *opts, struct op_ctx **ret_op)
{
    struct op_ctx *op;
    char err[512] = "";
    int r;

    op = calloc(1, sizeof(*op));
    if (op == NULL)
        return -ENOMEM;
    op->loop = loop;
    op->opts = *opts;
    op->leader = true;
    dp_list_init(&op->subs);
    dp_list_init(&op->config_subs);
    dp_timer_init(&op->debounce, on_debounce, op);
    dp_timer_init(&op->roots_timer, on_roots_timer, op);
    dp_defer_init(&op->ca_reload, on_ca_reload, op);
    dp_timer_init(&op->ca_owner_timer, on_ca_owner_timer, op);
    dp_kube_queue_init(&op->roots, 200, 60000, 50, 200, 0);
    op->snap = json_pack("{s:{},s:{},s:{},s:{}}", "workload", "service", "policy", "waypoint");
    op->log = json_array();
    /* versions continue from the start time (ms x 1024): every version an agent holds from a
     * previous operator process is older than this one's log, so it gets reset + full snapshot
     * instead of a replay from a different history (< 2^53: exact in any JSON reader) */
    {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        op->version = ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000) << 10;
    }
    if (op->snap == NULL || op->log == NULL) {
        r = -ENOMEM;
        goto fail;
    }
    /* the flags' values until ConfigMap istio is seen */
    op->default_td = opts->mesh.trust_domain;
    op->default_root = opts->mesh.root_ns;
    r = op_meshconfig_defaults(opts->mesh.trust_domain, opts->mesh.root_ns, &op->meshcfg);
    if (r < 0) {
        dp_error(SCOPE, "bad mesh defaults (--trust-domain, --root-namespace)",
                 DP_LS("trust_domain", opts->mesh.trust_domain ? opts->mesh.trust_domain : ""),
                 DP_LS("root_namespace", opts->mesh.root_ns ? opts->mesh.root_ns : ""),
                 DP_LERR(r));
        goto fail;
    }
    op->opts.mesh.trust_domain = op->meshcfg->trust_domain;
    op->opts.mesh.root_ns = op->meshcfg->root_ns;
    r = dp_kube_config_default(opts->kubeconfig, &op->kcfg, err, sizeof(err));
    if (r < 0) {
        dp_error(SCOPE, "no Kubernetes configuration", DP_LS("detail", err), DP_LERR(r));
        goto fail;
    }
    r = dp_kube_client_new(op->kcfg, &op->client);
    if (r < 0)
        goto fail;
    r = op_ca_bootstrap(op->client, opts->namespace, &op->ca, err, sizeof(err));
    if (r < 0) {
        dp_error(SCOPE, "CA bootstrap failed", DP_LS("detail", err), DP_LERR(r));
        goto fail;
    }
    dp_info(SCOPE, "CA ready", DP_LS("source", op->ca->source));
    r = dp_kube_multi_new(loop, op->kcfg, &op->multi);
    if (r < 0)
        goto fail;
    for (int i = 0; i < INF_COUNT; i++) {
        struct dp_kube_list_opts sel = {.field_selector = i == INF_CACERTS
                                                                  ? "metadata.name=cacerts"
                                                                  : "metadata.name=" MESH_CM};
        bool own_ns = i == INF_CACERTS || i == INF_MESHCM;

        r = dp_kube_informer_new(op->multi, INFORMERS[i].res, own_ns ? opts->namespace : NULL,
                                 own_ns ? &sel : NULL, &INF_OPS, op, &op->inf[i]);
        if (r < 0)
            goto fail;
        /* optional CRDs may be installed any time: look again every few seconds */
        if (!INFORMERS[i].required)
            dp_kube_informer_set_backoff(op->inf[i], 500, 5000);
        /* the big caches: nothing here reads their server-side-apply bookkeeping (the analysis
         * status, which does, uses the other kinds) */
        if (i == INF_NAMESPACES || i == INF_PODS || i == INF_SERVICES || i == INF_SLICES ||
            i == INF_NODES || i == INF_GATEWAYS || i == INF_AUTHZ)
            dp_kube_informer_drop_managed_fields(op->inf[i], true);
        /* and of pods and nodes only what the operator reads (prune.h) */
        if (i == INF_PODS)
            dp_kube_informer_set_prune(op->inf[i], op_prune_pod);
        if (i == INF_NODES)
            dp_kube_informer_set_prune(op->inf[i], op_prune_node);
        if (i == INF_SLICES)
            dp_kube_informer_set_prune(op->inf[i], op_prune_endpointslice);
    }
    *ret_op = op;
    return 0;
fail:
    op_free(op);
    return r;
}

int op_start(struct op_ctx *op)
{
    for (int i = 0; i < INF_COUNT; i++) {
        int r = dp_kube_informer_start(op->inf[i]);

        if (r < 0)
            return r;
    }
    return 0;
}

void op_free(struct op_ctx *op)
{
    if (op == NULL)
        return;
    for (int i = 0; i < INF_COUNT; i++)
        dp_kube_informer_free(op->inf[i]);
    dp_kube_multi_free(op->multi);
    dp_timer_cancel(&op->debounce);
    dp_timer_cancel(&op->roots_timer);
    dp_defer_cancel(&op->ca_reload);
    dp_timer_cancel(&op->ca_owner_timer);
    dp_kube_queue_done(&op->roots);
    dp_kube_client_free(op->client);
    dp_kube_config_free(op->kcfg);
    op_ca_free(op->ca);
    json_decref(op->snap);
    json_decref(op->log);
    op_changes_clear(&op->changes);
    op_meshconfig_free(op->meshcfg);
    free(op->meshcfg_error);
    free(op);
}

const json_t *op_snapshot(const struct op_ctx *op)
{
    return op->snap;
}

uint64_t op_version(const struct op_ctx *op)
{
    return op->version;
}

bool op_ready(const struct op_ctx *op)
{
    return op->ready;
}

json_t *op_events_since(const struct op_ctx *op, uint64_t since)
{
    size_t n = json_array_size(op->log), i;
    json_t *first = json_array_get(op->log, 0), *out;
    uint64_t first_v = first ? (uint64_t)json_integer_value(json_object_get(first, "version"))
                             : op->version + 1;

    if (since > op->version || since + 1 < first_v)
        return NULL;
    out = json_array();
    if (out == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        json_t *e = json_array_get(op->log, i);

        if ((uint64_t)json_integer_value(json_object_get(e, "version")) > since)
            json_array_append(out, e);
    }
    return out;
}

void op_subscribe(struct op_ctx *op, struct op_sub *sub, op_push_cb *cb, void *arg)
{
    sub->cb = cb;
    sub->arg = arg;
    dp_list_add_tail(&op->subs, &sub->link);
}

void op_subscribe_config(struct op_ctx *op, struct op_sub *sub, op_push_cb *cb, void *arg)
{
    sub->cb = cb;
    sub->arg = arg;
    dp_list_add_tail(&op->config_subs, &sub->link);
}

void op_unsubscribe(struct op_sub *sub)
{
    dp_list_del(&sub->link);
}

void op_set_leader(struct op_ctx *op, bool leader)
{
    const char *k;
    json_t *v;

    if (op->leader == leader)
        return;
    op->leader = leader;
    dp_info(SCOPE, leader ? "became leader" : "stopped leading");
    if (leader) {
        json_object_foreach((json_t *)cache(op, INF_NAMESPACES), k, v) {
            queue_root(op, v);
        }
        roots_kick(op);
        ca_owner_kick(op);
    }
}

bool op_is_leader(const struct op_ctx *op)
{
    return op->leader;
}

bool op_may_write(const struct op_ctx *op, const char *ns, const json_t *labels)
{
    if (!op->leader)
        return false;
    if (op->opts.write_selector == NULL || op->opts.write_selector[0] == '\0')
        return true;
    if (ns != NULL) {
        const json_t *nso = dp_kube_informer_get(op->inf[INF_NAMESPACES], ns);

        labels = json_object_get(json_object_get(nso, "metadata"), "labels");
    }
    return dp_kube_selector_matches(op->opts.write_selector, labels) == 1;
}

unsigned op_ca_generation(const struct op_ctx *op)
{
    return op->ca_generation;
}

const struct op_ca *op_ca(const struct op_ctx *op)
{
    return op->ca;
}

const struct op_options *op_opts(const struct op_ctx *op)
{
    return &op->opts;
}

struct dp_kube_multi *op_multi(struct op_ctx *op)
{
    return op->multi;
}

struct dp_loop *op_loop(struct op_ctx *op)
{
    return op->loop;
}

const json_t *op_pods(const struct op_ctx *op)
{
    return cache(op, INF_PODS);
}

const json_t *op_gateways(const struct op_ctx *op)
{
    return cache(op, INF_GATEWAYS);
}

const json_t *op_authorization_policies(const struct op_ctx *op)
{
    return cache(op, INF_AUTHZ);
}

const json_t *op_peer_authentications(const struct op_ctx *op)
{
    return cache(op, INF_PEERAUTHN);
}

const json_t *op_virtual_services(const struct op_ctx *op)
{
    return cache(op, INF_VIRTUALSERVICES);
}

const json_t *op_destination_rules(const struct op_ctx *op)
{
    return cache(op, INF_DESTINATIONRULES);
}

const json_t *op_service_entries(const struct op_ctx *op)
{
    return cache(op, INF_SERVICEENTRIES);
}

bool op_config_synced(const struct op_ctx *op)
{
    return dp_kube_informer_synced(op->inf[INF_VIRTUALSERVICES]) &&
           dp_kube_informer_synced(op->inf[INF_DESTINATIONRULES]) &&
           dp_kube_informer_synced(op->inf[INF_SERVICEENTRIES]);
}

const json_t *op_meshes(const struct op_ctx *op)
{
    return cache(op, INF_MESHES);
}

const json_t *op_nodes(const struct op_ctx *op)
{
    return cache(op, INF_NODES);
}

const json_t *op_services(const struct op_ctx *op)
{
    return cache(op, INF_SERVICES);
}

const struct op_stats *op_stats(const struct op_ctx *op)
{
    return &op->stats;
}

uint64_t op_watch_restarts(const struct op_ctx *op)
{
    uint64_t n = 0;

    for (int i = 0; i < INF_COUNT; i++) {
        const struct dp_kube_informer_stats *st = dp_kube_informer_stats(op->inf[i]);

        n += st->restarts + st->relists_410;
    }
    return n;
}
