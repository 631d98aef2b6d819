/*
 * kube_store.h — the per-kind object cache behind an informer, and the bookkeeping of a
 * list+watch (the "reflector" state machine) without any I/O, so that it can be tested
 * with recorded event sequences.
 *
 * Objects are keyed "<namespace>/<name>" ("<name>" when cluster-scoped). The store keeps the
 * last resourceVersion it saw (from the list, every event and bookmarks), which is where a
 * watch resumes. Handlers are called synchronously from replace()/apply(); the objects passed
 * to them are borrowed for the duration of the call (json_incref to keep them). Handlers must
 * not modify the store.
 */
#ifndef DP_KUBE_STORE_H
#define DP_KUBE_STORE_H

#include <stdint.h>

#include <jansson.h>

#include "kube_watch.h"

struct dp_kube_store_ops {
    void (*on_add)(json_t *obj, void *arg);
    void (*on_update)(json_t *old_obj, json_t *new_obj, void *arg);
    void (*on_delete)(json_t *obj, void *arg);
};

struct dp_kube_store {
    json_t *objs;                        /* key -> object (owned) */
    char *rv;                            /* resume point, NULL before the first list */
    const struct dp_kube_store_ops *ops; /* may be NULL */
    void *arg;
    uint64_t changes;                    /* adds + updates + deletes applied */
    char errmsg[200];                    /* last ERROR event, for the caller's log */
};

/** 0 or -ENOMEM. */
int dp_kube_store_init(struct dp_kube_store *s, const struct dp_kube_store_ops *ops, void *arg);
/** Accepts an initialised or zeroed store. */
void dp_kube_store_done(struct dp_kube_store *s);

/**
 * A (re)list result: `items` (array, borrowed) becomes the content. Objects that are new are
 * reported as adds, changed ones (different resourceVersion) as updates, vanished ones as
 * deletes — so a relist after 410 Gone or a long disconnect loses nothing. `rv` is the list's
 * resourceVersion. Items without metadata.name are skipped. 0 or -ENOMEM.
 */
int dp_kube_store_replace(struct dp_kube_store *s, json_t *items, const char *rv);

/**
 * One watch event. Returns 0, -ESTALE for an ERROR event with code 410 (caller relists),
 * -EPROTO for other ERROR events (caller re-watches after a backoff; errmsg says why),
 * -EBADMSG for an object without a name, -ENOMEM.
 */
int dp_kube_store_apply(struct dp_kube_store *s, enum dp_kube_event_type type, json_t *obj);

/** Borrowed object for key, or NULL. */
json_t *dp_kube_store_get(const struct dp_kube_store *s, const char *key);
/** Number of cached objects. */
size_t dp_kube_store_size(const struct dp_kube_store *s);

#endif
