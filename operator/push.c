/*
 * push.c — serialise-once config stream content with per-node policy scoping. See push.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "common.h"
#include "push.h"

#define BUF_LIMIT ((size_t)1 << 30)

enum { K_WAYPOINT, K_SERVICE, K_POLICY, K_WORKLOAD, K_COUNT };
static const char *const KIND[K_COUNT] = {"waypoint", "service", "policy", "workload"};

/* Bytes shared by the queues of many streams. */
struct chunk {
    unsigned refs;
    struct dp_buf *b;
};

struct qent {
    struct chunk *c;
    size_t off;
};

struct op_push_stream {
    struct dp_list link;
    struct op_push *p;
    char *node;
    json_t *sent; /* policy keys the agent holds: key -> true */
    struct qent *q;
    size_t qhead, qn, qcap;
    size_t queued;
};

struct op_push {
    const json_t *snap; /* the snapshot of the call in progress (borrowed) */
    uint64_t version;   /* and its version */
    struct dp_list streams;
    json_t *text[K_COUNT]; /* kind -> {key: [object, its compact JSON text]} */
    bool indexed;
    json_t *wl_node; /* workload key -> node name */
    json_t *by_node; /* node name -> {workload key: true} */
    bool full_valid;
    const json_t *full_snap; /* identity only: which snapshot full_a/b were built from */
    uint64_t full_version;
    struct chunk *full_a; /* waypoint + service upserts */
    struct chunk *full_b; /* workload upserts */
};

/* ------------------------------------------------------------------ chunks and queues */

static struct chunk *chunk_new(struct dp_buf *b) /* steals b */
{
    struct chunk *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        dp_buf_free(b);
        return NULL;
    }
    c->refs = 1;
    c->b = b;
    return c;
}

static void chunk_unref(struct chunk *c)
{
    if (c != NULL && --c->refs == 0) {
        dp_buf_free(c->b);
        free(c);
    }
}

static int buf_new(struct dp_buf **ret)
{
    return dp_buf_new(4096, BUF_LIMIT, ret);
}

/* queue a reference to c (nothing for an empty chunk) */
static int enqueue(struct op_push_stream *ps, struct chunk *c)
{
    if (c == NULL || c->b->len == 0)
        return 0;
    if (ps->qhead > 0 && ps->qhead == ps->qn) {
        ps->qhead = ps->qn = 0;
    }
    if (ps->qn == ps->qcap) {
        size_t live = ps->qn - ps->qhead;

        if (ps->qhead > 0) { /* compact first */
            memmove(ps->q, ps->q + ps->qhead, live * sizeof(*ps->q));
            ps->qhead = 0;
            ps->qn = live;
        }
        if (ps->qn == ps->qcap) {
            size_t cap = ps->qcap ? ps->qcap * 2 : 8;
            struct qent *q = realloc(ps->q, cap * sizeof(*q));

            if (q == NULL)
                return -ENOMEM;
            ps->q = q;
            ps->qcap = cap;
        }
    }
    c->refs++;
    ps->q[ps->qn++] = (struct qent){c, 0};
    ps->queued += c->b->len;
    return 0;
}

/* queue a stream-private buffer (steals b) */
static int enqueue_buf(struct op_push_stream *ps, struct dp_buf *b)
{
    struct chunk *c = chunk_new(b);
    int r;

    if (c == NULL)
        return -ENOMEM;
    r = enqueue(ps, c);
    chunk_unref(c);
    return r;
}

size_t op_push_queued(const struct op_push_stream *ps)
{
    return ps->queued;
}

const char *op_push_peek(const struct op_push_stream *ps, size_t *ret_len)
{
    const struct qent *e;

    if (ps->qhead == ps->qn) {
        *ret_len = 0;
        return NULL;
    }
    e = &ps->q[ps->qhead];
    *ret_len = e->c->b->len - e->off;
    return (const char *)dp_buf_head(e->c->b) + e->off;
}

void op_push_advance(struct op_push_stream *ps, size_t n)
{
    while (n > 0 && ps->qhead < ps->qn) {
        struct qent *e = &ps->q[ps->qhead];
        size_t left = e->c->b->len - e->off, take = n < left ? n : left;

        e->off += take;
        ps->queued -= take;
        n -= take;
        if (e->off == e->c->b->len) {
            chunk_unref(e->c);
            ps->qhead++;
        }
    }
}

/* ------------------------------------------------------------------ serialisation */

static int kind_idx(const char *kind)
{
    for (int i = 0; kind != NULL && i < K_COUNT; i++)
        if (strcmp(kind, KIND[i]) == 0)
            return i;
    return -1;
}

/* The compact JSON text of obj (kind/key), from the cache when it is the same object. */
static const char *obj_text(json_t *cache, const char *key, json_t *obj, size_t *ret_len)
{
    json_t *e = json_object_get(cache, key), *s;
    char *t;

    if (e != NULL && json_array_get(e, 0) == obj) {
        s = json_array_get(e, 1);
        *ret_len = json_string_length(s);
        return json_string_value(s);
    }
    t = json_dumps(obj, JSON_COMPACT);
    if (t == NULL)
        return NULL;
    s = json_stringn_nocheck(t, strlen(t));
    free(t);
    e = s ? json_pack("[O,o]", obj, s) : NULL;
    if (e == NULL || json_object_set_new(cache, key, e) < 0)
        return NULL;
    *ret_len = json_string_length(s);
    return json_string_value(s);
}

/* key as a JSON string: raw when it needs no escaping (Kubernetes names never do) */
static int put_key(struct dp_buf **b, const char *key)
{
    const unsigned char *c;
    json_t *s;
    char *t;
    int r;

    for (c = (const unsigned char *)key; *c; c++)
        if (*c < 0x20 || *c >= 0x7f || *c == '"' || *c == '\\')
            break;
    if (*c == '\0')
        return dp_buf_appendf(b, "\"%s\"", key);
    s = json_string(key);
    t = s ? json_dumps(s, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(s);
    if (t == NULL)
        return -ENOMEM;
    r = dp_buf_append_str(b, t);
    free(t);
    return r;
}

static int line_upsert(struct dp_buf **b, uint64_t version, int kind, const char *key,
                       const char *text, size_t len)
{
    int r = dp_buf_appendf(b, "{\"type\":\"upsert\",\"version\":%llu,\"kind\":\"%s\",\"key\":",
                           (unsigned long long)version, KIND[kind]);

    if (r == 0)
        r = put_key(b, key);
    if (r == 0)
        r = dp_buf_append_str(b, ",\"object\":");
    if (r == 0)
        r = dp_buf_append(b, text, len);
    if (r == 0)
        r = dp_buf_append_str(b, "}\n");
    return r;
}

static int line_delete(struct dp_buf **b, uint64_t version, int kind, const char *key)
{
    int r = dp_buf_appendf(b, "{\"type\":\"delete\",\"version\":%llu,\"kind\":\"%s\",\"key\":",
                           (unsigned long long)version, KIND[kind]);

    if (r == 0)
        r = put_key(b, key);
    if (r == 0)
        r = dp_buf_append_str(b, "}\n");
    return r;
}

static int line_synced(struct dp_buf **b, uint64_t version)
{
    return dp_buf_appendf(b, "{\"type\":\"synced\",\"version\":%llu}\n",
                          (unsigned long long)version);
}

/* upsert line of the current snapshot's object kind/key (cached text) */
static int line_current(struct op_push *p, struct dp_buf **b, uint64_t version, int kind,
                        const char *key)
{
    json_t *obj = json_object_get(json_object_get(p->snap, KIND[kind]), key);
    const char *text;
    size_t len;

    if (obj == NULL)
        return 0;
    text = obj_text(p->text[kind], key, obj, &len);
    return text ? line_upsert(b, version, kind, key, text, len) : -ENOMEM;
}

/* ------------------------------------------------------------------ node index and scope */

static const char *wl_node_of(const json_t *wl)
{
    return json_string_value(json_object_get(wl, "node"));
}

static int index_set(struct op_push *p, const char *key, const char *node)
{
    const char *old = json_string_value(json_object_get(p->wl_node, key));

    if (old != NULL && node != NULL && strcmp(old, node) == 0)
        return 0;
    if (old != NULL) {
        json_t *set = json_object_get(p->by_node, old);

        json_object_del(set, key);
        if (json_object_size(set) == 0)
            json_object_del(p->by_node, old);
        json_object_del(p->wl_node, key);
    }
    if (node != NULL) {
        json_t *set = json_object_get(p->by_node, node);

        if (set == NULL) {
            set = json_object();
            if (set == NULL || json_object_set_new(p->by_node, node, set) < 0)
                return -ENOMEM;
        }
        if (json_object_set_new(set, key, json_true()) < 0 ||
            json_object_set_new(p->wl_node, key, json_string(node)) < 0)
            return -ENOMEM;
    }
    return 0;
}

static int index_build(struct op_push *p)
{
    const char *k;
    json_t *wl;

    json_object_clear(p->wl_node);
    json_object_clear(p->by_node);
    json_object_foreach(json_object_get(p->snap, "workload"), k, wl) {
        int r = index_set(p, k, wl_node_of(wl));

        if (r < 0)
            return r;
    }
    p->indexed = true;
    return 0;
}

/* What decides a node's scope: the namespaces of its workloads and the policy keys they list
 * (NEW sets in *ret_nss, *ret_keys). */
static int node_summary(struct op_push *p, const char *node, json_t **ret_nss,
                        json_t **ret_keys)
{
    const json_t *wls = json_object_get(p->snap, "workload");
    json_t *nss = json_object(), *keys = json_object(), *v;
    const char *k;

    if (nss == NULL || keys == NULL || (!p->indexed && index_build(p) < 0)) {
        json_decref(nss);
        json_decref(keys);
        return -ENOMEM;
    }
    json_object_foreach(json_object_get(p->by_node, node), k, v) {
        const json_t *wl = json_object_get(wls, k);
        const char *ns = json_string_value(json_object_get(wl, "namespace"));
        size_t i;

        if (ns != NULL)
            json_object_set_new(nss, ns, json_true());
        json_array_foreach(json_object_get(wl, "authorizationPolicies"), i, v) {
            if (json_is_string(v))
                json_object_set_new(keys, json_string_value(v), json_true());
        }
    }
    *ret_nss = nss;
    *ret_keys = keys;
    return 0;
}

/* Is policy pol (key k) in the scope of a node with these namespaces and listed keys? */
static bool policy_in(const json_t *nss, const json_t *keys, const char *k, const json_t *pol)
{
    const char *scope = json_string_value(json_object_get(pol, "scope"));
    const char *ns = json_string_value(json_object_get(pol, "namespace"));

    if (pol == NULL)
        return false;
    if (scope != NULL && strcmp(scope, "Global") == 0)
        return true;
    if (scope != NULL && strcmp(scope, "Namespace") == 0)
        return ns != NULL && json_object_get(nss, ns) != NULL;
    return json_object_get(keys, k) != NULL;
}

static json_t *scope_of(struct op_push *p, const char *node)
{
    json_t *out = json_object(), *nss = NULL, *keys = NULL, *pol;
    const char *k;

    if (out == NULL || node_summary(p, node, &nss, &keys) < 0)
        goto fail;
    json_object_foreach(json_object_get(p->snap, "policy"), k, pol) {
        if (policy_in(nss, keys, k, pol) && json_object_set_new(out, k, json_true()) < 0)
            goto fail;
    }
    json_decref(nss);
    json_decref(keys);
    return out;
fail:
    json_decref(out);
    json_decref(nss);
    json_decref(keys);
    return NULL;
}

/* ------------------------------------------------------------------ full push */

/* Serialise every object of kind into b as upserts at version (cache pruned to the snapshot). */
static int full_kind(struct op_push *p, int kind, uint64_t version, struct dp_buf **b)
{
    json_t *objs = json_object_get(p->snap, KIND[kind]), *obj;
    json_t *cache = json_object();
    const char *k;
    int r = 0;

    if (cache == NULL)
        return -ENOMEM;
    json_object_foreach(objs, k, obj) {
        json_t *e = json_object_get(p->text[kind], k);
        const char *text;
        size_t len;

        if (e != NULL && json_array_get(e, 0) == obj)
            json_object_set(cache, k, e);
        text = obj_text(cache, k, obj, &len);
        if (text == NULL) {
            r = -ENOMEM;
            break;
        }
        if (b != NULL && (r = line_upsert(b, version, kind, k, text, len)) < 0)
            break;
    }
    if (r < 0) {
        json_decref(cache);
        return r;
    }
    json_decref(p->text[kind]);
    p->text[kind] = cache;
    return 0;
}

static int full_ensure(struct op_push *p)
{
    uint64_t v = p->version;
    struct dp_buf *a = NULL, *b = NULL;
    int r;

    if (p->full_valid && p->full_version == v && p->full_snap == p->snap)
        return 0;
    if ((r = buf_new(&a)) < 0 || (r = buf_new(&b)) < 0 ||
        (r = full_kind(p, K_WAYPOINT, v, &a)) < 0 || (r = full_kind(p, K_SERVICE, v, &a)) < 0 ||
        (r = full_kind(p, K_POLICY, v, NULL)) < 0 || (r = full_kind(p, K_WORKLOAD, v, &b)) < 0) {
        dp_buf_free(a);
        dp_buf_free(b);
        return r;
    }
    chunk_unref(p->full_a);
    chunk_unref(p->full_b);
    p->full_a = chunk_new(a);
    p->full_b = chunk_new(b);
    p->full_valid = p->full_a != NULL && p->full_b != NULL;
    p->full_version = v;
    p->full_snap = p->snap;
    return p->full_valid ? 0 : -ENOMEM;
}

/* ------------------------------------------------------------------ streams */

int op_push_new(struct op_push **ret_p)
{
    struct op_push *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return -ENOMEM;
    dp_list_init(&p->streams);
    for (int i = 0; i < K_COUNT; i++)
        p->text[i] = json_object();
    p->wl_node = json_object();
    p->by_node = json_object();
    for (int i = 0; i < K_COUNT; i++)
        if (p->text[i] == NULL)
            goto fail;
    if (p->wl_node == NULL || p->by_node == NULL)
        goto fail;
    *ret_p = p;
    return 0;
fail:
    op_push_free(p);
    return -ENOMEM;
}

void op_push_free(struct op_push *p)
{
    if (p == NULL)
        return;
    DP_BUG_ON(!dp_list_empty(&p->streams));
    for (int i = 0; i < K_COUNT; i++)
        json_decref(p->text[i]);
    json_decref(p->wl_node);
    json_decref(p->by_node);
    chunk_unref(p->full_a);
    chunk_unref(p->full_b);
    free(p);
}

void op_push_stream_close(struct op_push_stream *ps)
{
    if (ps == NULL)
        return;
    dp_list_del(&ps->link);
    for (size_t i = ps->qhead; i < ps->qn; i++)
        chunk_unref(ps->q[i].c);
    free(ps->q);
    json_decref(ps->sent);
    free(ps->node);
    free(ps);
}

/* policy upserts of the current snapshot for every key of scope (full push, resume) */
static int scope_upserts(struct op_push *p, const json_t *scope, const json_t *skip,
                         uint64_t version, struct dp_buf **b, size_t *n)
{
    const char *k;
    json_t *v;
    int r;

    json_object_foreach((json_t *)scope, k, v) {
        if (json_object_get(skip, k) != NULL)
            continue;
        if ((r = line_current(p, b, version, K_POLICY, k)) < 0)
            return r;
        (*n)++;
    }
    return 0;
}

/* Replay the log after `since` for one stream: scoped policy upserts, then the policies in scope
 * the replay did not carry. */
static int queue_replay(struct op_push_stream *ps, const json_t *events, const json_t *scope,
                        size_t *n)
{
    struct op_push *p = ps->p;
    struct dp_buf *b = NULL;
    json_t *upserted = json_object(), *e;
    size_t i;
    int r;

    if (upserted == NULL || (r = buf_new(&b)) < 0) {
        json_decref(upserted);
        return -ENOMEM;
    }
    json_array_foreach(events, i, e) {
        const char *type = json_string_value(json_object_get(e, "type"));
        const char *key = json_string_value(json_object_get(e, "key"));
        int kind = kind_idx(json_string_value(json_object_get(e, "kind")));
        uint64_t v = (uint64_t)json_integer_value(json_object_get(e, "version"));
        bool up = type != NULL && strcmp(type, "upsert") == 0;

        if (kind < 0 || key == NULL)
            continue;
        if (kind == K_POLICY && up && json_object_get(scope, key) == NULL)
            continue;
        if (up) {
            char *t = json_dumps(json_object_get(e, "object"), JSON_COMPACT);

            r = t ? line_upsert(&b, v, kind, key, t, strlen(t)) : -ENOMEM;
            free(t);
            if (r == 0 && kind == K_POLICY)
                json_object_set_new(upserted, key, json_true());
        } else {
            r = line_delete(&b, v, kind, key);
        }
        if (r < 0)
            goto out;
        (*n)++;
    }
    r = scope_upserts(p, scope, upserted, p->version, &b, n);
    if (r == 0)
        r = line_synced(&b, p->version);
    if (r == 0) {
        r = enqueue_buf(ps, b);
        b = NULL;
    }
out:
    dp_buf_free(b);
    json_decref(upserted);
    return r;
}

static int queue_full(struct op_push_stream *ps, bool reset, const json_t *scope, size_t *n)
{
    struct op_push *p = ps->p;
    const json_t *snap = p->snap;
    uint64_t v = p->version;
    struct dp_buf *mid = NULL, *end = NULL;
    int r;

    if ((r = full_ensure(p)) < 0)
        return r;
    if (reset) {
        struct dp_buf *b = NULL;

        if ((r = buf_new(&b)) < 0)
            return r;
        if ((r = dp_buf_append_str(&b, "{\"type\":\"reset\"}\n")) < 0) {
            dp_buf_free(b);
            return r;
        }
        if ((r = enqueue_buf(ps, b)) < 0)
            return r;
    }
    *n += json_object_size(json_object_get(snap, "waypoint")) +
          json_object_size(json_object_get(snap, "service")) +
          json_object_size(json_object_get(snap, "workload"));
    if ((r = buf_new(&mid)) < 0 || (r = buf_new(&end)) < 0 ||
        (r = scope_upserts(p, scope, NULL, v, &mid, n)) < 0 || (r = line_synced(&end, v)) < 0) {
        dp_buf_free(mid);
        dp_buf_free(end);
        return r;
    }
    r = enqueue(ps, p->full_a);
    if (r == 0) {
        r = enqueue_buf(ps, mid);
        mid = NULL;
    }
    if (r == 0)
        r = enqueue(ps, p->full_b);
    if (r == 0) {
        r = enqueue_buf(ps, end);
        end = NULL;
    }
    dp_buf_free(mid);
    dp_buf_free(end);
    return r;
}

int op_push_stream_open(struct op_push *p, const json_t *snap, uint64_t version,
                        const json_t *since_events, bool reset, const char *node,
                        struct op_push_stream **ret_ps, size_t *ret_events)
{
    struct op_push_stream *ps = calloc(1, sizeof(*ps));
    json_t *scope = NULL;
    size_t n = 0;
    int r = -ENOMEM;

    if (ps == NULL)
        return -ENOMEM;
    p->snap = snap;
    p->version = version;
    ps->p = p;
    dp_list_add_tail(&p->streams, &ps->link);
    ps->node = strdup(node);
    if (ps->node == NULL)
        goto fail;
    if (!p->indexed && (r = index_build(p)) < 0)
        goto fail;
    r = -ENOMEM;
    scope = scope_of(p, node);
    if (scope == NULL)
        goto fail;
    if (since_events != NULL)
        r = queue_replay(ps, since_events, scope, &n);
    else
        r = queue_full(ps, reset, scope, &n);
    if (r < 0)
        goto fail;
    ps->sent = scope;
    *ret_ps = ps;
    *ret_events = n;
    return 0;
fail:
    json_decref(scope);
    op_push_stream_close(ps);
    return r;
}

/* ------------------------------------------------------------------ batches */

struct batch {
    struct chunk *u1;   /* waypoint + service upserts */
    struct chunk *tail; /* workload upserts, workload/policy/service/waypoint deletes */
    struct dp_buf *pol; /* policy upsert lines */
    json_t *pol_at;     /* policy key -> [offset, length] in pol */
    json_t *pol_del;    /* deleted policy keys */
    json_t *affected;   /* nodes whose workloads changed */
    json_t *scopes;     /* node -> scope, computed once per batch */
    json_t *summaries;  /* node -> [namespaces, listed keys], computed once per batch */
    bool pol_changed;
    uint64_t last;
};

static void batch_done(struct batch *bt)
{
    chunk_unref(bt->u1);
    chunk_unref(bt->tail);
    dp_buf_free(bt->pol);
    json_decref(bt->pol_at);
    json_decref(bt->pol_del);
    json_decref(bt->affected);
    json_decref(bt->scopes);
    json_decref(bt->summaries);
}

static int batch_build(struct op_push *p, const json_t *events, struct batch *bt)
{
    struct dp_buf *u1 = NULL, *tail = NULL;
    json_t *e;
    size_t i;
    int r;

    memset(bt, 0, sizeof(*bt));
    bt->pol_at = json_object();
    bt->pol_del = json_object();
    bt->affected = json_object();
    bt->scopes = json_object();
    bt->summaries = json_object();
    if (bt->pol_at == NULL || bt->pol_del == NULL || bt->affected == NULL ||
        bt->scopes == NULL || bt->summaries == NULL || (r = buf_new(&u1)) < 0 || (r = buf_new(&tail)) < 0 ||
        (r = buf_new(&bt->pol)) < 0) {
        r = -ENOMEM;
        goto fail;
    }
    bt->last = p->version;
    json_array_foreach(events, i, e) {
        const char *type = json_string_value(json_object_get(e, "type"));
        const char *key = json_string_value(json_object_get(e, "key"));
        int kind = kind_idx(json_string_value(json_object_get(e, "kind")));
        uint64_t v = (uint64_t)json_integer_value(json_object_get(e, "version"));
        json_t *obj = json_object_get(e, "object");
        bool up = type != NULL && strcmp(type, "upsert") == 0;
        const char *text = NULL;
        size_t len = 0;

        if (kind < 0 || key == NULL)
            continue;
        if (up) {
            text = obj_text(p->text[kind], key, obj, &len);
            if (text == NULL) {
                r = -ENOMEM;
                goto fail;
            }
        } else {
            json_object_del(p->text[kind], key);
        }
        if (kind == K_WORKLOAD) {
            const char *old = json_string_value(json_object_get(p->wl_node, key));
            const char *node = up ? wl_node_of(obj) : NULL;

            if (old != NULL)
                json_object_set_new(bt->affected, old, json_true());
            if (node != NULL)
                json_object_set_new(bt->affected, node, json_true());
            if ((r = index_set(p, key, node)) < 0)
                goto fail;
        }
        if (kind == K_POLICY) {
            bt->pol_changed = true;
            if (up) {
                size_t at = bt->pol->len;

                if ((r = line_upsert(&bt->pol, v, kind, key, text, len)) < 0)
                    goto fail;
                json_object_set_new(bt->pol_at, key,
                                    json_pack("[I,I]", (json_int_t)at,
                                              (json_int_t)(bt->pol->len - at)));
                continue;
            }
            json_object_set_new(bt->pol_del, key, json_true());
        }
        if (up && kind != K_WORKLOAD)
            r = line_upsert(&u1, v, kind, key, text, len);
        else if (up)
            r = line_upsert(&tail, v, kind, key, text, len);
        else
            r = line_delete(&tail, v, kind, key);
        if (r < 0)
            goto fail;
    }
    bt->u1 = chunk_new(u1);
    u1 = NULL;
    bt->tail = chunk_new(tail);
    tail = NULL;
    if (bt->u1 == NULL || bt->tail == NULL) {
        r = -ENOMEM;
        goto fail;
    }
    return 0;
fail:
    dp_buf_free(u1);
    dp_buf_free(tail);
    batch_done(bt);
    return r;
}

/* One stream's share of a batch. */
static int batch_queue(struct op_push_stream *ps, struct batch *bt)
{
    struct op_push *p = ps->p;
    struct dp_buf *mid = NULL, *end = NULL;
    json_t *scope = NULL, *v;
    const char *k;
    int r;

    if ((r = buf_new(&end)) < 0)
        return r;
    if (bt->pol_changed && json_object_get(bt->affected, ps->node) == NULL) {
        /* the node's workloads did not change: only the changed policies can enter or leave
         * its scope */
        json_t *summ = json_object_get(bt->summaries, ps->node);

        if (summ == NULL) {
            json_t *nss = NULL, *keys = NULL;

            if (node_summary(p, ps->node, &nss, &keys) < 0)
                goto nomem;
            summ = json_pack("[o,o]", nss, keys);
            if (summ == NULL || json_object_set_new(bt->summaries, ps->node, summ) < 0)
                goto nomem;
        }
        if ((r = buf_new(&mid)) < 0)
            goto fail;
        json_object_foreach(bt->pol_at, k, v) {
            const json_t *pol = json_object_get(json_object_get(p->snap, "policy"), k);

            if (policy_in(json_array_get(summ, 0), json_array_get(summ, 1), k, pol)) {
                if ((r = dp_buf_append(&mid,
                                       (const char *)dp_buf_head(bt->pol) +
                                               json_integer_value(json_array_get(v, 0)),
                                       (size_t)json_integer_value(json_array_get(v, 1)))) < 0 ||
                    json_object_set_new(ps->sent, k, json_true()) < 0)
                    goto fail;
            } else if (json_object_get(ps->sent, k) != NULL) {
                if ((r = line_delete(&end, bt->last, K_POLICY, k)) < 0)
                    goto fail;
                json_object_del(ps->sent, k);
            }
        }
        json_object_foreach(bt->pol_del, k, v) {
            json_object_del(ps->sent, k);
        }
    } else if (bt->pol_changed || json_object_get(bt->affected, ps->node) != NULL) {
        scope = json_incref(json_object_get(bt->scopes, ps->node));
        if (scope == NULL) {
            scope = scope_of(p, ps->node);
            if (scope == NULL || json_object_set(bt->scopes, ps->node, scope) < 0)
                goto nomem;
        }
        if ((r = buf_new(&mid)) < 0)
            goto fail;
        /* this batch's policy upserts in scope, then policies newly in scope */
        json_object_foreach(bt->pol_at, k, v) {
            if (json_object_get(scope, k) != NULL &&
                (r = dp_buf_append(&mid,
                                   (const char *)dp_buf_head(bt->pol) +
                                           json_integer_value(json_array_get(v, 0)),
                                   (size_t)json_integer_value(json_array_get(v, 1)))) < 0)
                goto fail;
        }
        json_object_foreach(scope, k, v) {
            if (json_object_get(ps->sent, k) == NULL && json_object_get(bt->pol_at, k) == NULL &&
                (r = line_current(p, &mid, bt->last, K_POLICY, k)) < 0)
                goto fail;
        }
        /* policies that left the scope (deleted ones were sent to everyone) */
        json_object_foreach(ps->sent, k, v) {
            if (json_object_get(scope, k) == NULL && json_object_get(bt->pol_del, k) == NULL &&
                (r = line_delete(&end, bt->last, K_POLICY, k)) < 0)
                goto fail;
        }
        json_decref(ps->sent);
        ps->sent = json_copy(scope);
        if (ps->sent == NULL)
            goto nomem;
    }
    if ((r = line_synced(&end, bt->last)) < 0)
        goto fail;
    r = enqueue(ps, bt->u1);
    if (r == 0 && mid != NULL) {
        r = enqueue_buf(ps, mid);
        mid = NULL;
    }
    if (r == 0)
        r = enqueue(ps, bt->tail);
    if (r == 0) {
        r = enqueue_buf(ps, end);
        end = NULL;
    }
    json_decref(scope);
    return r;
nomem:
    r = -ENOMEM;
fail:
    dp_buf_free(mid);
    dp_buf_free(end);
    json_decref(scope);
    return r;
}

json_t *op_push_scope(struct op_push *p, const json_t *snap, const char *node)
{
    p->snap = snap;
    if (dp_list_empty(&p->streams))
        p->indexed = false; /* not maintained without streams */
    return scope_of(p, node);
}

int op_push_publish(struct op_push *p, const json_t *snap, uint64_t version,
                    const json_t *events)
{
    struct batch bt;
    struct dp_list *l;
    int r;

    p->snap = snap;
    p->version = version;
    if (dp_list_empty(&p->streams)) {
        json_t *e;
        size_t i;

        p->indexed = false; /* nobody to scope for: rebuilt when a stream opens */
        /* texts of deleted objects would otherwise stay until the next full push */
        json_array_foreach(events, i, e) {
            const char *type = json_string_value(json_object_get(e, "type"));
            const char *key = json_string_value(json_object_get(e, "key"));
            int kind = kind_idx(json_string_value(json_object_get(e, "kind")));

            if (kind >= 0 && key != NULL && type != NULL && strcmp(type, "delete") == 0)
                json_object_del(p->text[kind], key);
        }
        return 0;
    }
    if (!p->indexed && (r = index_build(p)) < 0)
        return r;
    r = batch_build(p, events, &bt);
    if (r < 0) {
        p->indexed = false;
        return r;
    }
    dp_list_for_each(l, &p->streams) {
        struct op_push_stream *ps = dp_container_of(l, struct op_push_stream, link);

        if ((r = batch_queue(ps, &bt)) < 0)
            break;
    }
    batch_done(&bt);
    return r;
}
