/*
 * kube_store.c — informer cache and reflector bookkeeping. See kube_store.h.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kube.h"
#include "kube_store.h"

int dp_kube_store_init(struct dp_kube_store *s, const struct dp_kube_store_ops *ops, void *arg)
{
    memset(s, 0, sizeof(*s));
    s->objs = json_object();
    if (s->objs == NULL)
        return -ENOMEM;
    s->ops = ops;
    s->arg = arg;
    return 0;
}

void dp_kube_store_done(struct dp_kube_store *s)
{
    json_decref(s->objs);
    s->objs = NULL;
    free(s->rv);
    s->rv = NULL;
}

static int set_rv(struct dp_kube_store *s, const char *rv)
{
    char *c;

    if (rv == NULL || rv[0] == '\0')
        return 0;
    c = strdup(rv);
    if (c == NULL)
        return -ENOMEM;
    free(s->rv);
    s->rv = c;
    return 0;
}

static bool same_rv(const json_t *a, const json_t *b)
{
    const char *ra = dp_kube_meta_str(a, "resourceVersion");
    const char *rb = dp_kube_meta_str(b, "resourceVersion");

    return ra != NULL && rb != NULL && strcmp(ra, rb) == 0;
}

/* Insert or update; reports through ops. */
static int upsert(struct dp_kube_store *s, const char *key, json_t *obj)
{
    json_t *old = json_object_get(s->objs, key);

    if (old != NULL) {
        if (same_rv(old, obj))
            return 0;
        json_incref(old);
        if (json_object_set(s->objs, key, obj) < 0) {
            json_decref(old);
            return -ENOMEM;
        }
        s->changes++;
        if (s->ops && s->ops->on_update)
            s->ops->on_update(old, obj, s->arg);
        json_decref(old);
        return 0;
    }
    if (json_object_set(s->objs, key, obj) < 0)
        return -ENOMEM;
    s->changes++;
    if (s->ops && s->ops->on_add)
        s->ops->on_add(obj, s->arg);
    return 0;
}

static void remove_key(struct dp_kube_store *s, const char *key, json_t *last_state)
{
    json_t *old = json_object_get(s->objs, key);

    if (old == NULL)
        return;
    json_incref(old);
    json_object_del(s->objs, key);
    s->changes++;
    if (s->ops && s->ops->on_delete)
        s->ops->on_delete(last_state ? last_state : old, s->arg);
    json_decref(old);
}

int dp_kube_store_replace(struct dp_kube_store *s, json_t *items, const char *rv)
{
    json_t *seen, *it, *v;
    const char *key;
    void *tmp;
    size_t i;
    int r = 0;

    seen = json_object();
    if (seen == NULL)
        return -ENOMEM;
    json_array_foreach(items, i, it) {
        char k[512];

        if (dp_kube_obj_key(it, k, sizeof(k)) < 0)
            continue;
        if (json_object_set(seen, k, json_true()) < 0) {
            r = -ENOMEM;
            goto out;
        }
        r = upsert(s, k, it);
        if (r < 0)
            goto out;
    }
    json_object_foreach_safe(s->objs, tmp, key, v) {
        if (json_object_get(seen, key) == NULL)
            remove_key(s, key, NULL);
    }
    r = set_rv(s, rv);
out:
    json_decref(seen);
    return r;
}

int dp_kube_store_apply(struct dp_kube_store *s, enum dp_kube_event_type type, json_t *obj)
{
    char k[512];
    int r;

    switch (type) {
    case DP_KUBE_EV_BOOKMARK:
        return set_rv(s, dp_kube_meta_str(obj, "resourceVersion"));
    case DP_KUBE_EV_ERROR: {
        long code = dp_kube_status_code(obj);
        const char *msg = json_string_value(json_object_get(obj, "message"));

        snprintf(s->errmsg, sizeof(s->errmsg), "watch error %ld: %.150s", code,
                 msg ? msg : "(no message)");
        return code == 410 ? -ESTALE : -EPROTO;
    }
    case DP_KUBE_EV_ADDED:
    case DP_KUBE_EV_MODIFIED:
    case DP_KUBE_EV_DELETED:
        break;
    }
    if (dp_kube_obj_key(obj, k, sizeof(k)) < 0)
        return -EBADMSG;
    if (type == DP_KUBE_EV_DELETED)
        remove_key(s, k, obj);
    else if ((r = upsert(s, k, obj)) < 0)
        return r;
    return set_rv(s, dp_kube_meta_str(obj, "resourceVersion"));
}

json_t *dp_kube_store_get(const struct dp_kube_store *s, const char *key)
{
    return json_object_get(s->objs, key);
}

size_t dp_kube_store_size(const struct dp_kube_store *s)
{
    return json_object_size(s->objs);
}
