/*
 * mesh_snapshot.c — immutable, reference-counted snapshots with indexes, built from config
 * documents and from the operator's event stream; outbound destination selection.
 *
 * Why the data layout looks like this:
 *   - Objects are immutable and individually reference-counted, so a new snapshot after a
 *     delta shares every unchanged object with the old one; building it costs a pointer copy
 *     and a sort per kind plus index rebuilds (O(N log N) in pointers, no re-decoding), cheap
 *     enough for 10k workloads per `synced` batch.
 *   - Lookups by key use binary search over the sorted per-kind arrays (no per-kind hash);
 *     the hot-path lookups (workload and service by IP) use an open-addressing hash.
 *   - Reference counts are atomic because snapshots are built on one loop and read on others.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "json.h"
#include "mesh.h"
#include "mesh_internal.h"
#include "yaml.h"

/* ================================================================== hash map */

/* Open addressing, linear probing, backward-shift deletion. Keys are borrowed: strings owned
 * by the objects stored as values, or IPs. */
struct hent {
    const void *key; /* NULL = empty */
    void *val;
    uint64_t h;
};

struct hmap {
    struct hent *e;
    size_t mask; /* capacity - 1 */
    size_t n;
    bool ip; /* keys are struct dp_mesh_ip * instead of char * */
};

static uint64_t fnv(const void *data, size_t n)
{
    const uint8_t *p = data;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static uint64_t hkey(const struct hmap *m, const void *key)
{
    if (m->ip) {
        const struct dp_mesh_ip *ip = key;
        uint8_t b[17];
        b[0] = ip->family;
        memcpy(b + 1, ip->a, 16);
        return fnv(b, ip->family == 4 ? 5 : 17);
    }
    return fnv(key, strlen(key));
}

static bool hkey_eq(const struct hmap *m, const void *a, const void *b)
{
    return m->ip ? dp_mesh_ip_equal(a, b) : strcmp(a, b) == 0;
}

static int hmap_init(struct hmap *m, size_t expected, bool ip)
{
    size_t cap = 8;
    while (cap < expected * 2 + 1)
        cap <<= 1;
    m->e = calloc(cap, sizeof(*m->e));
    if (!m->e)
        return -ENOMEM;
    m->mask = cap - 1;
    m->n = 0;
    m->ip = ip;
    return 0;
}

static void hmap_done(struct hmap *m)
{
    free(m->e);
    m->e = NULL;
    m->n = 0;
}

static struct hent *hmap_find(const struct hmap *m, const void *key, uint64_t h)
{
    if (!m->e)
        return NULL;
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        struct hent *e = &m->e[i];
        if (!e->key)
            return NULL;
        if (e->h == h && hkey_eq(m, e->key, key))
            return e;
    }
}

static void *hmap_get(const struct hmap *m, const void *key)
{
    struct hent *e = hmap_find(m, key, hkey(m, key));
    return e ? e->val : NULL;
}

static int hmap_grow(struct hmap *m)
{
    struct hmap n;
    int r = hmap_init(&n, (m->mask + 1), m->ip);
    if (r < 0)
        return r;
    for (size_t i = 0; i <= m->mask; i++) {
        struct hent *e = &m->e[i];
        if (!e->key)
            continue;
        size_t j = e->h & n.mask;
        while (n.e[j].key)
            j = (j + 1) & n.mask;
        n.e[j] = *e;
        n.n++;
    }
    free(m->e);
    *m = n;
    return 0;
}

/* Insert or replace. *ret_old = previous value (or NULL). */
static int hmap_put(struct hmap *m, const void *key, void *val, void **ret_old)
{
    uint64_t h = hkey(m, key);
    struct hent *e = hmap_find(m, key, h);
    if (e) {
        if (ret_old)
            *ret_old = e->val;
        e->key = key;
        e->val = val;
        return 0;
    }
    if ((m->n + 1) * 2 > m->mask + 1) {
        int r = hmap_grow(m);
        if (r < 0)
            return r;
    }
    size_t i = h & m->mask;
    while (m->e[i].key)
        i = (i + 1) & m->mask;
    m->e[i].key = key;
    m->e[i].val = val;
    m->e[i].h = h;
    m->n++;
    if (ret_old)
        *ret_old = NULL;
    return 0;
}

/* Put only if absent (first writer wins). Returns 1 if inserted, 0 if present. */
static int hmap_put_first(struct hmap *m, const void *key, void *val)
{
    if (hmap_find(m, key, hkey(m, key)))
        return 0;
    int r = hmap_put(m, key, val, NULL);
    return r < 0 ? r : 1;
}

static void *hmap_del(struct hmap *m, const void *key)
{
    uint64_t h = hkey(m, key);
    struct hent *e = hmap_find(m, key, h);
    void *val;
    size_t i, j;
    if (!e)
        return NULL;
    val = e->val;
    i = (size_t)(e - m->e);
    /* backward shift: move later entries of the cluster into the hole if their home slot
     * is not strictly after the hole */
    for (j = (i + 1) & m->mask; m->e[j].key; j = (j + 1) & m->mask) {
        size_t home = m->e[j].h & m->mask;
        bool movable = (j > i) ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) {
            m->e[i] = m->e[j];
            i = j;
        }
    }
    m->e[i].key = NULL;
    m->e[i].val = NULL;
    m->n--;
    return val;
}

/* ================================================================== snapshots */

struct range {
    const char *key; /* borrowed */
    size_t off, n;
};

struct dp_mesh_snapshot {
    unsigned refs;
    uint64_t version;
    size_t n[DP_MESH_KIND_COUNT];
    void **objs[DP_MESH_KIND_COUNT]; /* sorted by key, each holds a ref */
    struct hmap wl_by_ip, wl_by_pod_uid, svc_by_vip;
    /* endpoints: (service key, workload) pairs sorted by service key then workload key */
    const struct dp_mesh_workload **ep_list;
    struct range *ep_ranges;
    size_t n_ep_ranges;
    /* namespace-scope policies grouped by namespace, and global policies */
    const struct dp_mesh_policy **ns_pols;
    struct range *ns_ranges;
    size_t n_ns_ranges;
    const struct dp_mesh_policy **global_pols;
    size_t n_global;
};

/* all object structs have the same prefix {unsigned refs; char *key;} */
struct objhdr {
    unsigned refs;
    char *key;
};

static int cmp_obj_key(const void *a, const void *b)
{
    return strcmp((*(struct objhdr *const *)a)->key, (*(struct objhdr *const *)b)->key);
}

static void snapshot_free(struct dp_mesh_snapshot *s)
{
    for (unsigned k = 0; k < DP_MESH_KIND_COUNT; k++) {
        for (size_t i = 0; s->objs[k] && i < s->n[k]; i++)
            dp_mesh_object_unref((enum dp_mesh_kind)k, s->objs[k][i]);
        free(s->objs[k]);
    }
    hmap_done(&s->wl_by_ip);
    hmap_done(&s->wl_by_pod_uid);
    hmap_done(&s->svc_by_vip);
    free(s->ep_list);
    free(s->ep_ranges);
    free(s->ns_pols);
    free(s->ns_ranges);
    free(s->global_pols);
    free(s);
}

struct dp_mesh_snapshot *dp_mesh_snapshot_ref(struct dp_mesh_snapshot *s)
{
    if (s)
        __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
    return s;
}

void dp_mesh_snapshot_unref(struct dp_mesh_snapshot *s)
{
    if (s && __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0)
        snapshot_free(s);
}

struct ep_pair {
    const char *svc;
    const struct dp_mesh_workload *w;
};

static int cmp_ep_pair(const void *a, const void *b)
{
    const struct ep_pair *x = a, *y = b;
    int c = strcmp(x->svc, y->svc);
    return c ? c : strcmp(x->w->key, y->w->key);
}

static int cmp_ns_pol(const void *a, const void *b)
{
    const struct dp_mesh_policy *x = *(const struct dp_mesh_policy *const *)a;
    const struct dp_mesh_policy *y = *(const struct dp_mesh_policy *const *)b;
    int c = strcmp(x->namespace, y->namespace);
    return c ? c : strcmp(x->key, y->key);
}

static int build_indexes(struct dp_mesh_snapshot *s)
{
    struct dp_mesh_workload **wl = (struct dp_mesh_workload **)s->objs[DP_MESH_WORKLOAD];
    struct dp_mesh_service **svc = (struct dp_mesh_service **)s->objs[DP_MESH_SERVICE];
    struct dp_mesh_policy **pol = (struct dp_mesh_policy **)s->objs[DP_MESH_POLICY];
    size_t nwl = s->n[DP_MESH_WORKLOAD], nsvc = s->n[DP_MESH_SERVICE];
    size_t npol = s->n[DP_MESH_POLICY];
    size_t n_ips = 0, n_pairs = 0, n_vips = 0, n_ns = 0;
    struct ep_pair *pairs = NULL;
    int r;

    for (size_t i = 0; i < nwl; i++) {
        n_ips += wl[i]->n_addresses;
        n_pairs += wl[i]->n_services;
    }
    for (size_t i = 0; i < nsvc; i++)
        n_vips += svc[i]->n_vips;

    if ((r = hmap_init(&s->wl_by_ip, n_ips, true)) < 0 ||
        (r = hmap_init(&s->wl_by_pod_uid, nwl, false)) < 0 ||
        (r = hmap_init(&s->svc_by_vip, n_vips, true)) < 0)
        return r;
    /* workloads are sorted by key, so "first writer wins" = smallest key wins */
    for (size_t i = 0; i < nwl; i++) {
        for (size_t j = 0; j < wl[i]->n_addresses; j++)
            if ((r = hmap_put_first(&s->wl_by_ip, &wl[i]->addresses[j], wl[i])) < 0)
                return r;
        if (wl[i]->pod_uid && (r = hmap_put_first(&s->wl_by_pod_uid, wl[i]->pod_uid, wl[i])) < 0)
            return r;
    }
    for (size_t i = 0; i < nsvc; i++)
        for (size_t j = 0; j < svc[i]->n_vips; j++)
            if ((r = hmap_put_first(&s->svc_by_vip, &svc[i]->vips[j], svc[i])) < 0)
                return r;

    /* endpoints */
    if (n_pairs) {
        size_t k = 0, nr = 0;
        pairs = malloc(n_pairs * sizeof(*pairs));
        s->ep_list = malloc(n_pairs * sizeof(*s->ep_list));
        s->ep_ranges = malloc(n_pairs * sizeof(*s->ep_ranges));
        if (!pairs || !s->ep_list || !s->ep_ranges) {
            free(pairs);
            return -ENOMEM;
        }
        for (size_t i = 0; i < nwl; i++)
            for (size_t j = 0; j < wl[i]->n_services; j++)
                pairs[k++] = (struct ep_pair){wl[i]->services[j].key, wl[i]};
        qsort(pairs, n_pairs, sizeof(*pairs), cmp_ep_pair);
        for (size_t i = 0; i < n_pairs; i++) {
            s->ep_list[i] = pairs[i].w;
            if (nr == 0 || strcmp(s->ep_ranges[nr - 1].key, pairs[i].svc) != 0)
                s->ep_ranges[nr++] = (struct range){pairs[i].svc, i, 0};
            s->ep_ranges[nr - 1].n++;
        }
        s->n_ep_ranges = nr;
        free(pairs);
    }

    /* policies */
    for (size_t i = 0; i < npol; i++) {
        if (pol[i]->scope == DP_MESH_SCOPE_NAMESPACE)
            n_ns++;
        else if (pol[i]->scope == DP_MESH_SCOPE_GLOBAL)
            s->n_global++;
    }
    if (n_ns) {
        size_t k = 0, nr = 0;
        s->ns_pols = malloc(n_ns * sizeof(*s->ns_pols));
        s->ns_ranges = malloc(n_ns * sizeof(*s->ns_ranges));
        if (!s->ns_pols || !s->ns_ranges)
            return -ENOMEM;
        for (size_t i = 0; i < npol; i++)
            if (pol[i]->scope == DP_MESH_SCOPE_NAMESPACE)
                s->ns_pols[k++] = pol[i];
        qsort(s->ns_pols, n_ns, sizeof(*s->ns_pols), cmp_ns_pol);
        for (size_t i = 0; i < n_ns; i++) {
            if (nr == 0 || strcmp(s->ns_ranges[nr - 1].key, s->ns_pols[i]->namespace) != 0)
                s->ns_ranges[nr++] = (struct range){s->ns_pols[i]->namespace, i, 0};
            s->ns_ranges[nr - 1].n++;
        }
        s->n_ns_ranges = nr;
    }
    if (s->n_global) {
        size_t k = 0;
        s->global_pols = malloc(s->n_global * sizeof(*s->global_pols));
        if (!s->global_pols)
            return -ENOMEM;
        for (size_t i = 0; i < npol; i++)
            if (pol[i]->scope == DP_MESH_SCOPE_GLOBAL)
                s->global_pols[k++] = pol[i];
    }
    return 0;
}

/* Build a snapshot that takes one new reference on every object in objs[kind][0..n). The
 * arrays are copied and sorted; duplicates must have been excluded by the caller. */
static int snapshot_build(void *const *objs[DP_MESH_KIND_COUNT], const size_t n[DP_MESH_KIND_COUNT],
                          uint64_t version, struct dp_mesh_snapshot **ret)
{
    struct dp_mesh_snapshot *s = calloc(1, sizeof(*s));
    int r;
    if (!s)
        return -ENOMEM;
    s->refs = 1;
    s->version = version;
    for (unsigned k = 0; k < DP_MESH_KIND_COUNT; k++) {
        if (n[k] == 0)
            continue;
        s->objs[k] = malloc(n[k] * sizeof(void *));
        if (!s->objs[k]) {
            snapshot_free(s);
            return -ENOMEM;
        }
        memcpy(s->objs[k], objs[k], n[k] * sizeof(void *));
        for (size_t i = 0; i < n[k]; i++)
            dp_mesh_object_ref((enum dp_mesh_kind)k, objs[k][i]);
        s->n[k] = n[k];
        qsort(s->objs[k], n[k], sizeof(void *), cmp_obj_key);
    }
    if ((r = build_indexes(s)) < 0) {
        snapshot_free(s);
        return r;
    }
    *ret = s;
    return 0;
}

struct dp_mesh_snapshot *dp_mesh_snapshot_new_empty(void)
{
    void *const *objs[DP_MESH_KIND_COUNT] = {0};
    size_t n[DP_MESH_KIND_COUNT] = {0};
    struct dp_mesh_snapshot *s = NULL;
    if (snapshot_build(objs, n, 0, &s) < 0)
        return NULL;
    return s;
}

uint64_t dp_mesh_snapshot_version(const struct dp_mesh_snapshot *s)
{
    return s->version;
}

/* ------------------------------------------------------------------ pending state */

/* A mutable key -> object map per kind (each value holds one reference). Used for file
 * loading, snapshot_apply and the stream consumer. */
struct pending {
    struct hmap m[DP_MESH_KIND_COUNT];
    uint64_t version;
};

static void pending_clear(struct pending *p)
{
    for (unsigned k = 0; k < DP_MESH_KIND_COUNT; k++) {
        for (size_t i = 0; p->m[k].e && i <= p->m[k].mask; i++)
            if (p->m[k].e[i].key)
                dp_mesh_object_unref((enum dp_mesh_kind)k, p->m[k].e[i].val);
        if (p->m[k].e)
            memset(p->m[k].e, 0, (p->m[k].mask + 1) * sizeof(*p->m[k].e));
        p->m[k].n = 0;
    }
}

static void pending_done(struct pending *p)
{
    pending_clear(p);
    for (unsigned k = 0; k < DP_MESH_KIND_COUNT; k++)
        hmap_done(&p->m[k]);
}

/* add every object of `base` (maps must be initialised; entries with equal keys replaced) */
static int pending_add_all(struct pending *p, const struct dp_mesh_snapshot *base)
{
    int r;
    for (unsigned k = 0; base && k < DP_MESH_KIND_COUNT; k++) {
        for (size_t i = 0; i < base->n[k]; i++) {
            void *o = base->objs[k][i], *old = NULL;
            if ((r = hmap_put(&p->m[k], dp_mesh_object_key((enum dp_mesh_kind)k, o), o, &old)) < 0)
                return r;
            dp_mesh_object_ref((enum dp_mesh_kind)k, o);
            dp_mesh_object_unref((enum dp_mesh_kind)k, old);
        }
    }
    return 0;
}

static int pending_init(struct pending *p, const struct dp_mesh_snapshot *base)
{
    int r;
    memset(p, 0, sizeof(*p));
    for (unsigned k = 0; k < DP_MESH_KIND_COUNT; k++)
        if ((r = hmap_init(&p->m[k], base ? base->n[k] : 0, false)) < 0)
            goto err;
    if ((r = pending_add_all(p, base)) < 0)
        goto err;
    p->version = base ? base->version : 0;
    return 0;
err:
    pending_done(p);
    return r;
}

/* steals obj */
static int pending_upsert(struct pending *p, enum dp_mesh_kind kind, void *obj)
{
    void *old = NULL;
    int r = hmap_put(&p->m[kind], dp_mesh_object_key(kind, obj), obj, &old);
    if (r < 0) {
        dp_mesh_object_unref(kind, obj);
        return r;
    }
    dp_mesh_object_unref(kind, old);
    return 0;
}

static void pending_delete(struct pending *p, enum dp_mesh_kind kind, const char *key)
{
    dp_mesh_object_unref(kind, hmap_del(&p->m[kind], key));
}

static int pending_commit(const struct pending *p, struct dp_mesh_snapshot **ret)
{
    void **objs[DP_MESH_KIND_COUNT] = {0};
    size_t n[DP_MESH_KIND_COUNT] = {0};
    int r = 0;
    for (unsigned k = 0; k < DP_MESH_KIND_COUNT; k++) {
        if (p->m[k].n == 0)
            continue;
        objs[k] = malloc(p->m[k].n * sizeof(void *));
        if (!objs[k]) {
            r = -ENOMEM;
            goto out;
        }
        for (size_t i = 0; i <= p->m[k].mask; i++)
            if (p->m[k].e[i].key)
                objs[k][n[k]++] = p->m[k].e[i].val;
    }
    r = snapshot_build((void *const **)objs, n, p->version, ret);
out:
    for (unsigned k = 0; k < DP_MESH_KIND_COUNT; k++)
        free(objs[k]);
    return r;
}

/* ------------------------------------------------------------------ config document */

static const char *const file_members[DP_MESH_KIND_COUNT] = {"workloads", "services", "policies",
                                                             "waypoints"};

int dp_mesh_snapshot_from_json(const json_t *config, struct dp_mesh_snapshot **ret_snap,
                               char *errbuf, size_t errsz)
{
    static const char *const allowed[] = {"workloads", "services", "policies", "waypoints", NULL};
    struct pending p;
    struct dp_mesh_dctx c;
    int r;

    memset(&c.e, 0, sizeof(c.e));
    dp_jpath_init(&c.p, "");
    if ((r = dp_json_check_keys(config, allowed, &c.p, &c.e)) < 0) {
        dp_mesh_set_err(errbuf, errsz, "%s", c.e.msg);
        return r;
    }
    if ((r = pending_init(&p, NULL)) < 0)
        return r;
    for (unsigned k = 0; k < DP_MESH_KIND_COUNT; k++) {
        json_t *arr, *el;
        size_t i;
        r = dp_json_get_arr(config, file_members[k], false, DP_MESH_MAX_OBJECTS, &arr, &c.p, &c.e);
        if (r < 0)
            goto err_msg;
        if (r == 0)
            continue;
        PUSHK(&c, file_members[k]);
        json_array_foreach(arr, i, el) {
            void *obj = NULL;
            PUSHI(&c, i);
            r = dp_mesh_decode_any(&c, (enum dp_mesh_kind)k, el, NULL, &obj);
            if (r < 0)
                goto err_msg;
            if (hmap_get(&p.m[k], dp_mesh_object_key((enum dp_mesh_kind)k, obj))) {
                r = dp_mesh_fail(&c, NULL, "duplicate %s key \"%.300s\"",
                                 dp_mesh_kind_str((enum dp_mesh_kind)k),
                                 dp_mesh_object_key((enum dp_mesh_kind)k, obj));
                dp_mesh_object_unref((enum dp_mesh_kind)k, obj);
                goto err_msg;
            }
            if ((r = pending_upsert(&p, (enum dp_mesh_kind)k, obj)) < 0)
                goto err_msg;
            POP(&c);
        }
        POP(&c);
    }
    r = pending_commit(&p, ret_snap);
    pending_done(&p);
    if (r < 0)
        dp_mesh_set_err(errbuf, errsz, "out of memory");
    return r;
err_msg:
    if (r == -ENOMEM)
        dp_mesh_set_err(errbuf, errsz, "out of memory");
    else
        dp_mesh_set_err(errbuf, errsz, "%s", c.e.msg);
    pending_done(&p);
    return r;
}

int dp_mesh_snapshot_load_file(const char *path, struct dp_mesh_snapshot **ret_snap, char *errbuf,
                               size_t errsz)
{
    char err[512] = "";
    json_t *docs = NULL;
    int r = dp_yaml_parse_file(path, &docs, err, sizeof(err));
    if (r < 0) {
        /* dp_yaml errors already carry "path:line:col:" */
        dp_mesh_set_err(errbuf, errsz, "%s", err[0] ? err : strerror(-r));
        return r;
    }
    if (json_array_size(docs) != 1) {
        dp_mesh_set_err(errbuf, errsz, "%s: expected exactly one document, found %zu", path,
                        json_array_size(docs));
        json_decref(docs);
        return -EINVAL;
    }
    r = dp_mesh_snapshot_from_json(json_array_get(docs, 0), ret_snap, err, sizeof(err));
    if (r < 0)
        dp_mesh_set_err(errbuf, errsz, "%s: %s", path, err);
    json_decref(docs);
    return r;
}

json_t *dp_mesh_snapshot_to_json(const struct dp_mesh_snapshot *s)
{
    json_t *doc = json_object();
    if (!doc)
        return NULL;
    for (unsigned k = 0; k < DP_MESH_KIND_COUNT; k++) {
        json_t *arr = json_array();
        if (!arr || json_object_set_new(doc, file_members[k], arr))
            goto err;
        for (size_t i = 0; i < s->n[k]; i++)
            if (json_array_append_new(arr,
                                      dp_mesh_object_encode((enum dp_mesh_kind)k, s->objs[k][i])))
                goto err;
    }
    return doc;
err:
    json_decref(doc);
    return NULL;
}

/* ------------------------------------------------------------------ events */

enum ev_result { EV_NONE = 0, EV_SYNCED, EV_RESET };

/* Apply one event to pending state. On failure the pending state is unchanged. */
static int apply_event(struct pending *p, const json_t *ev, enum ev_result *res, char *errbuf,
                       size_t errsz)
{
    static const char *const allowed[] = {"type", "version", "kind", "key", "object", NULL};
    const char *type = NULL, *kind_s = NULL, *key = NULL;
    long long version = -1;
    enum dp_mesh_kind kind;
    struct dp_mesh_dctx c;
    json_t *obj = NULL;
    void *o = NULL;
    int r;

    *res = EV_NONE;
    memset(&c.e, 0, sizeof(c.e));
    dp_jpath_init(&c.p, "event");
    if ((r = dp_json_check_keys(ev, allowed, &c.p, &c.e)) < 0 ||
        (r = dp_json_get_str(ev, "type", true, &type, &c.p, &c.e)) < 0 ||
        (r = dp_json_get_int(ev, "version", false, 0, INT64_MAX, &version, &c.p, &c.e)) < 0)
        goto err;
    if (strcmp(type, "ping") == 0)
        return 0;
    if (strcmp(type, "reset") == 0) {
        pending_clear(p);
        *res = EV_RESET;
        if (version >= 0)
            p->version = (uint64_t)version;
        return 0;
    }
    if (strcmp(type, "synced") == 0) {
        if (version >= 0 && (uint64_t)version > p->version)
            p->version = (uint64_t)version;
        *res = EV_SYNCED;
        return 0;
    }
    if (strcmp(type, "upsert") != 0 && strcmp(type, "delete") != 0) {
        r = dp_mesh_fail(&c, "type", "unknown event type \"%.64s\"", type);
        goto err;
    }
    if ((r = dp_json_get_str(ev, "kind", true, &kind_s, &c.p, &c.e)) < 0 ||
        (r = dp_json_get_str(ev, "key", true, &key, &c.p, &c.e)) < 0)
        goto err;
    if (dp_mesh_kind_parse(kind_s, &kind) < 0) {
        r = dp_mesh_fail(&c, "kind", "unknown kind \"%.64s\"", kind_s);
        goto err;
    }
    if (strlen(key) == 0 || strlen(key) > DP_MESH_MAX_STR) {
        r = dp_mesh_fail(&c, "key", "empty or too long");
        goto err;
    }
    if (strcmp(type, "delete") == 0) {
        pending_delete(p, kind, key);
    } else {
        if ((r = dp_json_get_obj(ev, "object", true, &obj, &c.p, &c.e)) < 0)
            goto err;
        dp_jpath_init(&c.p, "");
        if ((r = dp_mesh_decode_any(&c, kind, obj, key, &o)) < 0) {
            if (r == -ENOMEM)
                goto err;
            dp_mesh_set_err(errbuf, errsz, "event[%s %s %.200s]: object.%s", type, kind_s, key,
                            c.e.msg);
            return r;
        }
        if ((r = pending_upsert(p, kind, o)) < 0)
            goto err;
    }
    if (version >= 0 && (uint64_t)version > p->version)
        p->version = (uint64_t)version;
    return 0;
err:
    if (r == -ENOMEM)
        dp_mesh_set_err(errbuf, errsz, "out of memory");
    else
        dp_mesh_set_err(errbuf, errsz, "%s", c.e.msg);
    return r;
}

int dp_mesh_snapshot_apply(const struct dp_mesh_snapshot *base, const json_t *events,
                           struct dp_mesh_snapshot **ret_snap, char *errbuf, size_t errsz)
{
    struct pending p;
    json_t *ev;
    size_t i;
    int r;

    if (!json_is_array(events)) {
        dp_mesh_set_err(errbuf, errsz, "events: expected array");
        return -EINVAL;
    }
    if ((r = pending_init(&p, base)) < 0)
        return r;
    json_array_foreach(events, i, ev) {
        enum ev_result res;
        char err[512];
        if ((r = apply_event(&p, ev, &res, err, sizeof(err))) < 0) {
            dp_mesh_set_err(errbuf, errsz, "events[%zu]: %s", i, err);
            goto out;
        }
    }
    r = pending_commit(&p, ret_snap);
out:
    pending_done(&p);
    return r;
}

/* ------------------------------------------------------------------ stream consumer */

struct dp_mesh_stream {
    struct pending p;
    uint64_t seen_version;
    struct dp_mesh_snapshot *base; /* reference; what `reset` returns to (NULL = empty) */
};

int dp_mesh_stream_new(const struct dp_mesh_snapshot *base, struct dp_mesh_stream **ret_stream)
{
    struct dp_mesh_stream *st = calloc(1, sizeof(*st));
    int r;
    if (!st)
        return -ENOMEM;
    if ((r = pending_init(&st->p, base)) < 0) {
        free(st);
        return r;
    }
    /* the refcount is the one mutable part of a published snapshot */
    st->base = dp_mesh_snapshot_ref((struct dp_mesh_snapshot *)base);
    st->seen_version = st->p.version;
    *ret_stream = st;
    return 0;
}

void dp_mesh_stream_free(struct dp_mesh_stream *st)
{
    if (!st)
        return;
    pending_done(&st->p);
    dp_mesh_snapshot_unref(st->base);
    free(st);
}

int dp_mesh_stream_feed(struct dp_mesh_stream *st, const json_t *event,
                        struct dp_mesh_snapshot **ret_snap, char *errbuf, size_t errsz)
{
    enum ev_result res;
    int r = apply_event(&st->p, event, &res, errbuf, errsz);
    if (r < 0)
        return r;
    if (res == EV_RESET) {
        /* back to the base layer (the node agent's file config); versions restart with the
         * server's new epoch */
        if ((r = pending_add_all(&st->p, st->base)) < 0) {
            dp_mesh_set_err(errbuf, errsz, "out of memory");
            return r;
        }
        st->seen_version = st->p.version;
    }
    if (st->p.version > st->seen_version)
        st->seen_version = st->p.version;
    if (res != EV_SYNCED)
        return DP_MESH_FEED_OK;
    if ((r = pending_commit(&st->p, ret_snap)) < 0) {
        dp_mesh_set_err(errbuf, errsz, "out of memory");
        return r;
    }
    return DP_MESH_FEED_PUBLISHED;
}

int dp_mesh_stream_feed_line(struct dp_mesh_stream *st, const char *line, size_t len,
                             struct dp_mesh_snapshot **ret_snap, char *errbuf, size_t errsz)
{
    json_t *ev = NULL;
    int r = dp_json_parse(line, len, DP_MESH_MAX_EVENT_LINE, "event", &ev, errbuf, errsz);
    if (r < 0)
        return r;
    r = dp_mesh_stream_feed(st, ev, ret_snap, errbuf, errsz);
    json_decref(ev);
    return r;
}

uint64_t dp_mesh_stream_version(const struct dp_mesh_stream *st)
{
    return st->seen_version;
}

int dp_mesh_stream_publish(struct dp_mesh_stream *st, struct dp_mesh_snapshot **ret_snap)
{
    return pending_commit(&st->p, ret_snap);
}

/* ------------------------------------------------------------------ lookups */

static void *find_by_key(const struct dp_mesh_snapshot *s, enum dp_mesh_kind k, const char *key)
{
    struct objhdr h = {.key = (char *)key};
    const struct objhdr *hp = &h;
    void **f;
    if (!key || s->n[k] == 0)
        return NULL;
    f = bsearch(&hp, s->objs[k], s->n[k], sizeof(void *), cmp_obj_key);
    return f ? *f : NULL;
}

const struct dp_mesh_workload *dp_mesh_workload_by_key(const struct dp_mesh_snapshot *s,
                                                       const char *key)
{
    return find_by_key(s, DP_MESH_WORKLOAD, key);
}

const struct dp_mesh_workload *dp_mesh_workload_by_pod_uid(const struct dp_mesh_snapshot *s,
                                                           const char *pod_uid)
{
    return pod_uid ? hmap_get(&s->wl_by_pod_uid, pod_uid) : NULL;
}

const struct dp_mesh_workload *dp_mesh_workload_by_ip(const struct dp_mesh_snapshot *s,
                                                      const struct dp_mesh_ip *ip)
{
    struct dp_mesh_ip n = *ip;
    dp_mesh_ip_normalise(&n);
    return hmap_get(&s->wl_by_ip, &n);
}

const struct dp_mesh_service *dp_mesh_service_by_key(const struct dp_mesh_snapshot *s,
                                                     const char *key)
{
    return find_by_key(s, DP_MESH_SERVICE, key);
}

const struct dp_mesh_service *dp_mesh_service_by_vip(const struct dp_mesh_snapshot *s,
                                                     const struct dp_mesh_ip *vip)
{
    struct dp_mesh_ip n = *vip;
    dp_mesh_ip_normalise(&n);
    return hmap_get(&s->svc_by_vip, &n);
}

const struct dp_mesh_policy *dp_mesh_policy_by_key(const struct dp_mesh_snapshot *s,
                                                   const char *key)
{
    return find_by_key(s, DP_MESH_POLICY, key);
}

const struct dp_mesh_waypoint *dp_mesh_waypoint_by_key(const struct dp_mesh_snapshot *s,
                                                       const char *key)
{
    return find_by_key(s, DP_MESH_WAYPOINT, key);
}

static int cmp_range(const void *a, const void *b)
{
    return strcmp(((const struct range *)a)->key, ((const struct range *)b)->key);
}

static const struct range *find_range(const struct range *r, size_t n, const char *key)
{
    struct range k = {.key = key};
    if (!n || !key)
        return NULL;
    return bsearch(&k, r, n, sizeof(k), cmp_range);
}

size_t dp_mesh_service_endpoints(const struct dp_mesh_snapshot *s, const char *svc_key,
                                 const struct dp_mesh_workload *const **ret_list)
{
    const struct range *r = find_range(s->ep_ranges, s->n_ep_ranges, svc_key);
    *ret_list = r ? s->ep_list + r->off : NULL;
    return r ? r->n : 0;
}

#define LIST_FN(fn, kind, type)                                                                    \
    size_t fn(const struct dp_mesh_snapshot *s, const type *const **ret_list)                      \
    {                                                                                              \
        *ret_list = (const type *const *)s->objs[kind];                                            \
        return s->n[kind];                                                                         \
    }
LIST_FN(dp_mesh_snapshot_workloads, DP_MESH_WORKLOAD, struct dp_mesh_workload)
LIST_FN(dp_mesh_snapshot_services, DP_MESH_SERVICE, struct dp_mesh_service)
LIST_FN(dp_mesh_snapshot_policies, DP_MESH_POLICY, struct dp_mesh_policy)
LIST_FN(dp_mesh_snapshot_waypoints, DP_MESH_WAYPOINT, struct dp_mesh_waypoint)
#undef LIST_FN

size_t dp_mesh_namespace_policies(const struct dp_mesh_snapshot *s, const char *ns,
                                  const struct dp_mesh_policy *const **ret_list)
{
    const struct range *r = find_range(s->ns_ranges, s->n_ns_ranges, ns);
    *ret_list = r ? s->ns_pols + r->off : NULL;
    return r ? r->n : 0;
}

size_t dp_mesh_global_policies(const struct dp_mesh_snapshot *s,
                               const struct dp_mesh_policy *const **ret_list)
{
    *ret_list = s->global_pols;
    return s->n_global;
}

/* ================================================================== destination selection */

static __thread uint64_t rng_state;

static uint64_t default_rng(void *arg)
{
    (void)arg;
    if (rng_state == 0) {
        uint64_t seed = 0;
        if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed)) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uintptr_t)&seed;
        }
        rng_state = seed | 1;
    }
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

int dp_mesh_pick_endpoint(const struct dp_mesh_workload *const *list, size_t n,
                          bool allow_unhealthy, dp_mesh_rng_fn *rng, void *rng_arg)
{
    uint64_t total = 0, pick;
    if (!rng)
        rng = default_rng;
    for (size_t i = 0; i < n; i++)
        if (allow_unhealthy || list[i]->status == DP_MESH_HEALTHY)
            total += list[i]->capacity;
    if (total == 0)
        return -EHOSTUNREACH;
    pick = rng(rng_arg) % total;
    for (size_t i = 0; i < n; i++) {
        if (!allow_unhealthy && list[i]->status != DP_MESH_HEALTHY)
            continue;
        if (pick < list[i]->capacity)
            return (int)i;
        pick -= list[i]->capacity;
    }
    return -EHOSTUNREACH; /* unreachable */
}

/* first address of the workload in the family of `like` (else the first one) */
static const struct dp_mesh_ip *wl_addr(const struct dp_mesh_workload *w,
                                        const struct dp_mesh_ip *like)
{
    for (size_t i = 0; like && i < w->n_addresses; i++)
        if (w->addresses[i].family == like->family)
            return &w->addresses[i];
    return w->n_addresses ? &w->addresses[0] : NULL;
}

static bool source_is_gateway(const struct dp_mesh_snapshot *s, const struct dp_mesh_workload *src,
                              const struct dp_mesh_gateway *g)
{
    const struct dp_mesh_ip *addrs = g->addresses;
    size_t n = g->n_addresses;
    if (!src)
        return false;
    if (n == 0 && g->key) {
        /* a reference by key only: the waypoint object has the addresses */
        const struct dp_mesh_waypoint *wp = dp_mesh_waypoint_by_key(s, g->key);
        if (wp) {
            addrs = wp->addresses;
            n = wp->n_addresses;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const struct dp_mesh_service *gs;
        for (size_t j = 0; j < src->n_addresses; j++)
            if (dp_mesh_ip_equal(&src->addresses[j], &addrs[i]))
                return true;
        gs = dp_mesh_service_by_vip(s, &addrs[i]);
        if (gs && dp_mesh_workload_svc_ref(src, gs->key))
            return true;
    }
    return false;
}

/* Resolve a waypoint reference to the pod to connect to. */
static int resolve_waypoint(const struct dp_mesh_snapshot *s, const struct dp_mesh_gateway *g,
                            const struct dp_mesh_ip *dst, uint16_t port, dp_mesh_rng_fn *rng,
                            void *rng_arg, struct dp_mesh_dest *d)
{
    const struct dp_mesh_waypoint *wp = g->key ? dp_mesh_waypoint_by_key(s, g->key) : NULL;
    const struct dp_mesh_ip *addrs = g->addresses;
    size_t n = g->n_addresses;
    uint16_t hport = g->port ? g->port : DP_MESH_HBONE_PORT;

    if (n == 0 && wp) {
        addrs = wp->addresses;
        n = wp->n_addresses;
        hport = wp->port;
    }
    d->kind = DP_MESH_DEST_WAYPOINT;
    d->hbone = true;
    d->waypoint = wp;
    d->authority_ip = *dst;
    d->authority_port = port;
    d->connect_port = hport;
    for (size_t i = 0; i < n; i++) {
        const struct dp_mesh_service *ws = dp_mesh_service_by_vip(s, &addrs[i]);
        const struct dp_mesh_workload *w;
        if (ws) {
            const struct dp_mesh_workload *const *eps;
            size_t ne = dp_mesh_service_endpoints(s, ws->key, &eps);
            int idx = dp_mesh_pick_endpoint(eps, ne, ws->health_policy == DP_MESH_ALLOW_ALL, rng,
                                            rng_arg);
            if (idx < 0 || !wl_addr(eps[idx], &addrs[i]))
                continue;
            d->workload = eps[idx];
            d->connect_ip = *wl_addr(eps[idx], &addrs[i]);
            return 0;
        }
        w = dp_mesh_workload_by_ip(s, &addrs[i]);
        d->workload = w;
        d->connect_ip = addrs[i];
        return 0;
    }
    return -EHOSTUNREACH;
}

static void dest_to_workload(const struct dp_mesh_workload *w, const struct dp_mesh_ip *ip,
                             uint16_t target, struct dp_mesh_dest *d)
{
    d->kind = DP_MESH_DEST_WORKLOAD;
    d->workload = w;
    if (w->protocol == DP_MESH_PROTO_HBONE) {
        d->hbone = true;
        d->connect_ip = *ip;
        d->connect_port = DP_MESH_HBONE_PORT;
        d->authority_ip = *ip;
        d->authority_port = target;
    } else {
        d->hbone = false;
        d->connect_ip = *ip;
        d->connect_port = target;
    }
}

int dp_mesh_select_destination(const struct dp_mesh_snapshot *s,
                               const struct dp_mesh_workload *source, const struct dp_mesh_ip *dst,
                               uint16_t port, dp_mesh_rng_fn *rng, void *rng_arg,
                               struct dp_mesh_dest *ret_dest)
{
    struct dp_mesh_dest d;
    struct dp_mesh_ip ip = *dst;
    const struct dp_mesh_service *svc;
    const struct dp_mesh_workload *w;
    int r;

    memset(&d, 0, sizeof(d));
    dp_mesh_ip_normalise(&ip);
    svc = dp_mesh_service_by_vip(s, &ip);
    if (svc) {
        const struct dp_mesh_service_port *sp = NULL;
        const struct dp_mesh_workload *const *eps;
        const struct dp_mesh_svc_ref *ref;
        const struct dp_mesh_ip *eip;
        uint16_t target;
        size_t ne;
        int idx;

        d.service = svc;
        if (svc->waypoint && !source_is_gateway(s, source, svc->waypoint)) {
            if ((r = resolve_waypoint(s, svc->waypoint, &ip, port, rng, rng_arg, &d)) < 0)
                return r;
            *ret_dest = d;
            return 0;
        }
        for (size_t i = 0; i < svc->n_ports; i++)
            if (svc->ports[i].port == port)
                sp = &svc->ports[i];
        if (!sp && svc->lb_mode != DP_MESH_LB_PASSTHROUGH)
            return -EHOSTUNREACH;
        ne = dp_mesh_service_endpoints(s, svc->key, &eps);
        idx = dp_mesh_pick_endpoint(eps, ne, svc->health_policy == DP_MESH_ALLOW_ALL, rng, rng_arg);
        if (idx < 0 || !sp) {
            if (svc->lb_mode != DP_MESH_LB_PASSTHROUGH)
                return -EHOSTUNREACH;
            d.kind = DP_MESH_DEST_PASSTHROUGH;
            d.connect_ip = ip;
            d.connect_port = port;
            *ret_dest = d;
            return 0;
        }
        w = eps[idx];
        eip = wl_addr(w, &ip);
        if (!eip)
            return -EHOSTUNREACH;
        target = sp->target_port ? sp->target_port : port;
        ref = dp_mesh_workload_svc_ref(w, svc->key);
        for (size_t i = 0; ref && i < ref->n_ports; i++)
            if (ref->ports[i].port == port && ref->ports[i].target_port)
                target = ref->ports[i].target_port;
        dest_to_workload(w, eip, target, &d);
        d.service = svc;
        *ret_dest = d;
        return 0;
    }
    w = dp_mesh_workload_by_ip(s, &ip);
    if (w) {
        if (w->waypoint && !source_is_gateway(s, source, w->waypoint)) {
            if ((r = resolve_waypoint(s, w->waypoint, &ip, port, rng, rng_arg, &d)) < 0)
                return r;
            *ret_dest = d;
            return 0;
        }
        dest_to_workload(w, &ip, port, &d);
        *ret_dest = d;
        return 0;
    }
    d.kind = DP_MESH_DEST_PASSTHROUGH;
    d.connect_ip = ip;
    d.connect_port = port;
    *ret_dest = d;
    return 0;
}

bool dp_mesh_is_waypoint_for(const struct dp_mesh_snapshot *s, const struct dp_mesh_workload *w,
                             const struct dp_mesh_ip *dst)
{
    struct dp_mesh_ip ip = *dst;
    const struct dp_mesh_service *svc;
    const struct dp_mesh_workload *target;

    if (!w)
        return false;
    dp_mesh_ip_normalise(&ip);
    svc = dp_mesh_service_by_vip(s, &ip);
    if (svc)
        return svc->waypoint && source_is_gateway(s, w, svc->waypoint);
    target = dp_mesh_workload_by_ip(s, &ip);
    return target && target->waypoint && source_is_gateway(s, w, target->waypoint);
}
