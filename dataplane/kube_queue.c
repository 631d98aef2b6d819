/*
 * kube_queue.c — rate-limited work queue. See kube_queue.h.
 */
#include <errno.h>
#include <string.h>

#include "kube_queue.h"

struct entry {
    struct dp_list link;
    bool queued, processing, dirty;
    uint64_t due_ms, dirty_due_ms;
    unsigned failures;
    char key[];
};

void dp_kube_queue_init(struct dp_kube_queue *q, uint64_t base_ms, uint64_t max_ms, double qps,
                        double burst, size_t max_keys)
{
    memset(q, 0, sizeof(*q));
    dp_list_init(&q->entries);
    q->base_ms = base_ms ? base_ms : 100;
    q->max_ms = max_ms ? max_ms : 300000;
    q->qps = qps > 0 ? qps : 10;
    q->burst = burst >= 1 ? burst : 100;
    q->tokens = q->burst;
    q->max_keys = max_keys ? max_keys : 100000;
}

void dp_kube_queue_done(struct dp_kube_queue *q)
{
    struct dp_list *p, *t;

    dp_list_for_each_safe(p, t, &q->entries) {
        dp_list_del(p);
        free(dp_container_of(p, struct entry, link));
    }
    q->n = 0;
}

static struct entry *find(const struct dp_kube_queue *q, const char *key)
{
    struct dp_list *p;

    dp_list_for_each(p, &q->entries) {
        struct entry *e = dp_container_of(p, struct entry, link);

        if (strcmp(e->key, key) == 0)
            return e;
    }
    return NULL;
}

static int get_or_new(struct dp_kube_queue *q, const char *key, struct entry **ret)
{
    size_t n = strlen(key);
    struct entry *e;

    if (n == 0 || n > DP_KUBE_QUEUE_MAX_KEY)
        return -EINVAL;
    e = find(q, key);
    if (e == NULL) {
        if (q->n >= q->max_keys)
            return -ENOSPC;
        e = calloc(1, sizeof(*e) + n + 1);
        if (e == NULL)
            return -ENOMEM;
        memcpy(e->key, key, n + 1);
        dp_list_add_tail(&q->entries, &e->link);
        q->n++;
    }
    *ret = e;
    return 0;
}

/* Drop entries that carry no state any more. */
static void maybe_gc(struct dp_kube_queue *q, struct entry *e)
{
    if (!e->queued && !e->processing && !e->dirty && e->failures == 0) {
        dp_list_del(&e->link);
        free(e);
        q->n--;
    }
}

int dp_kube_queue_add(struct dp_kube_queue *q, const char *key, uint64_t now_ms,
                      uint64_t delay_ms)
{
    uint64_t due = now_ms + delay_ms;
    struct entry *e;
    int r;

    r = get_or_new(q, key, &e);
    if (r < 0)
        return r;
    if (e->processing) {
        if (!e->dirty || due < e->dirty_due_ms)
            e->dirty_due_ms = due;
        e->dirty = true;
        return 0;
    }
    if (!e->queued || due < e->due_ms)
        e->due_ms = due;
    e->queued = true;
    return 0;
}

int64_t dp_kube_queue_retry(struct dp_kube_queue *q, const char *key, uint64_t now_ms)
{
    uint64_t backoff, bucket = 0;
    struct entry *e;
    int r;

    r = get_or_new(q, key, &e);
    if (r < 0)
        return r;
    backoff = q->base_ms;
    for (unsigned i = 0; i < e->failures && backoff < q->max_ms; i++)
        backoff *= 2;
    if (backoff > q->max_ms)
        backoff = q->max_ms;
    if (e->failures < 64)
        e->failures++;
    /* token bucket: refill, then take one token (possibly going negative = wait) */
    q->tokens += (double)(now_ms - q->tokens_ms) * q->qps / 1000.0;
    if (q->tokens > q->burst)
        q->tokens = q->burst;
    q->tokens_ms = now_ms;
    q->tokens -= 1;
    if (q->tokens < 0)
        bucket = (uint64_t)(-q->tokens * 1000.0 / q->qps);
    if (bucket > backoff)
        backoff = bucket;
    r = dp_kube_queue_add(q, key, now_ms, backoff);
    if (r < 0)
        return r;
    return (int64_t)backoff;
}

void dp_kube_queue_forget(struct dp_kube_queue *q, const char *key)
{
    struct entry *e = find(q, key);

    if (e == NULL)
        return;
    e->failures = 0;
    maybe_gc(q, e);
}

unsigned dp_kube_queue_failures(const struct dp_kube_queue *q, const char *key)
{
    struct entry *e = find(q, key);

    return e ? e->failures : 0;
}

int dp_kube_queue_pop(struct dp_kube_queue *q, uint64_t now_ms, const char **ret_key)
{
    struct entry *best = NULL;
    struct dp_list *p;

    dp_list_for_each(p, &q->entries) {
        struct entry *e = dp_container_of(p, struct entry, link);

        if (e->queued && e->due_ms <= now_ms && (best == NULL || e->due_ms < best->due_ms))
            best = e;
    }
    if (best == NULL)
        return -EAGAIN;
    best->queued = false;
    best->processing = true;
    *ret_key = best->key;
    return 0;
}

void dp_kube_queue_finish(struct dp_kube_queue *q, const char *key, uint64_t now_ms)
{
    struct entry *e = find(q, key);

    (void)now_ms;
    if (e == NULL)
        return;
    e->processing = false;
    if (e->dirty) {
        e->dirty = false;
        if (!e->queued || e->dirty_due_ms < e->due_ms)
            e->due_ms = e->dirty_due_ms;
        e->queued = true;
    }
    maybe_gc(q, e);
}

int64_t dp_kube_queue_next_due(const struct dp_kube_queue *q, uint64_t now_ms)
{
    int64_t best = -1;
    struct dp_list *p;

    dp_list_for_each(p, &q->entries) {
        const struct entry *e = dp_container_of(p, struct entry, link);
        int64_t d;

        if (!e->queued)
            continue;
        d = e->due_ms <= now_ms ? 0 : (int64_t)(e->due_ms - now_ms);
        if (best < 0 || d < best)
            best = d;
    }
    return best;
}

size_t dp_kube_queue_len(const struct dp_kube_queue *q)
{
    const struct dp_list *p;
    size_t n = 0;

    dp_list_for_each(p, &q->entries) {
        if (dp_container_of(p, const struct entry, link)->queued)
            n++;
    }
    return n;
}
