/*
 * kube_informer.h — asynchronous Kubernetes API access driven by a dp_loop: libcurl's
 * multi-socket API (CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION) registers curl's
 * sockets and its single timeout with the loop, so any number of watches share one thread and
 * no thread is started per watch.
 *
 *  - dp_kube_multi: one curl multi handle bound to a loop and a config (connections are reused,
 *    HTTP/2 multiplexed when the server offers it).
 *  - dp_kube_multi_request: one async request with a buffered JSON response.
 *  - dp_kube_informer: list (paginated) + watch (resourceVersion, allowWatchBookmarks, server
 *    timeout 5-10 min) of one resource, with a cache (kube_store.h). 410 Gone -> relist with a
 *    diff against the cache (nothing lost, deletes reported). Disconnects and errors -> re-watch
 *    from the last resourceVersion after a jittered exponential backoff (0.5 s .. 30 s), reset
 *    after a healthy watch.
 *
 * Callbacks (handlers, done callbacks) run on the loop thread. Never free a multi, request or
 * informer from inside one of its own callbacks: defer it (dp_defer).
 * Nothing here logs above debug; counters are exposed for the program's metrics.
 */
#ifndef DP_KUBE_INFORMER_H
#define DP_KUBE_INFORMER_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "kube.h"
#include "kube_store.h"
#include "kube_watch.h"
#include "loop.h"

struct dp_kube_multi;
struct dp_kube_req;
struct dp_kube_informer;

/** New multi bound to loop; cfg is borrowed and must outlive it. 0 or -ENOMEM. */
int dp_kube_multi_new(struct dp_loop *loop, struct dp_kube_config *cfg,
                      struct dp_kube_multi **ret_m);
/** Cancel every request (their callbacks are not called) and free; accepts NULL. Informers
 *  built on m must be freed first. */
void dp_kube_multi_free(struct dp_kube_multi *m);

/**
 * Completion of a buffered request: r = 0 on 2xx or -errno (dp_kube_http_errno / transport),
 * http = status (0 if no response), body = decoded JSON (borrowed; may be NULL), errmsg a
 * short description when r < 0 (borrowed).
 */
typedef void dp_kube_done_cb(int r, long http, json_t *body, const char *errmsg, void *arg);

/**
 * Start a request (see dp_kube_request for method/path/body). The request frees itself after
 * calling on_done; *ret_req (optional) is only valid until then, for dp_kube_req_cancel.
 */
int dp_kube_multi_request(struct dp_kube_multi *m, const char *method, const char *path,
                          const char *content_type, const json_t *body, dp_kube_done_cb *on_done,
                          void *arg, struct dp_kube_req **ret_req);
/** Cancel a pending request without calling its callback. */
void dp_kube_req_cancel(struct dp_kube_req *req);

struct dp_kube_informer_ops {
    void (*on_add)(json_t *obj, void *arg);
    void (*on_update)(json_t *old_obj, json_t *new_obj, void *arg);
    void (*on_delete)(json_t *obj, void *arg);
    /** After the first complete list (and after each relist). */
    void (*on_synced)(struct dp_kube_informer *inf, void *arg);
};

struct dp_kube_informer_stats {
    uint64_t lists;       /* list passes completed */
    uint64_t relists_410; /* lists caused by 410 Gone */
    uint64_t watches;     /* watch requests started */
    uint64_t restarts;    /* watches that ended with an error */
    uint64_t events;
    int last_error;       /* -errno of the last failure, 0 if none */
    char last_errmsg[256];
};

/**
 * New informer for res in ns (NULL = all namespaces) filtered by sel (label/field selectors
 * only; may be NULL; strings copied). ops/arg are borrowed. Call dp_kube_informer_start().
 */
int dp_kube_informer_new(struct dp_kube_multi *m, const struct dp_kube_resource *res,
                         const char *ns, const struct dp_kube_list_opts *sel,
                         const struct dp_kube_informer_ops *ops, void *arg,
                         struct dp_kube_informer **ret_inf);
/** Start listing. 0 or -errno. */
int dp_kube_informer_start(struct dp_kube_informer *inf);
/** Stop (cancel requests and timers) and free; accepts NULL. */
void dp_kube_informer_free(struct dp_kube_informer *inf);

/** True once the first list completed. */
bool dp_kube_informer_synced(const struct dp_kube_informer *inf);
/** The cache (borrowed; read-only for the caller). */
const struct dp_kube_store *dp_kube_informer_store(const struct dp_kube_informer *inf);
/** Borrowed object by "<ns>/<name>" key, or NULL. */
json_t *dp_kube_informer_get(const struct dp_kube_informer *inf, const char *key);
const struct dp_kube_informer_stats *dp_kube_informer_stats(const struct dp_kube_informer *inf);
const struct dp_kube_resource *dp_kube_informer_resource(const struct dp_kube_informer *inf);

/**
 * Drop metadata.managedFields from every object before it is stored (call before start). They
 * are a large share of a typical object's memory (a JSON object per field path) and only
 * server-side-apply bookkeeping: set it for caches whose users never read them.
 */
void dp_kube_informer_drop_managed_fields(struct dp_kube_informer *inf, bool drop);

/**
 * Called with every object before it is stored (listed and watched, after managedFields were
 * dropped): may delete fields its users never read, to save memory. Must keep metadata.name,
 * namespace and resourceVersion. NULL = none. Call before start.
 */
typedef void dp_kube_prune_fn(json_t *obj);
void dp_kube_informer_set_prune(struct dp_kube_informer *inf, dp_kube_prune_fn *prune);

/** Backoff bounds in ms (tests shorten them). Defaults 500 and 30000. */
void dp_kube_informer_set_backoff(struct dp_kube_informer *inf, uint64_t min_ms, uint64_t max_ms);

/** Jittered exponential backoff: min * 2^attempt capped at max, scaled by [0.5, 1.0). */
uint64_t dp_kube_backoff_ms(unsigned attempt, uint64_t min_ms, uint64_t max_ms, uint32_t rnd);

#endif
