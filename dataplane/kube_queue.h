/*
 * kube_queue.h — a rate-limited work queue of keys for reconcilers (client-go's workqueue
 * semantics, without threads or I/O: the caller passes the time and arms one dp_timer for
 * dp_kube_queue_next_due()).
 *
 *  - A key is queued at most once; adding it again keeps the earlier due time.
 *  - A popped key is "processing": adding it meanwhile marks it dirty, and it is queued again
 *    when the caller calls dp_kube_queue_finish() — so one key is never worked on twice at once
 *    and no change is lost.
 *  - dp_kube_queue_retry() re-adds after a failure with per-key exponential backoff
 *    (base * 2^failures, capped) and an overall token bucket (qps, burst): the larger delay wins.
 *    dp_kube_queue_forget() resets a key's failures after a success.
 *
 * Sizes: at most `max_keys` distinct keys (-ENOSPC beyond), keys at most 512 bytes. Pop is O(n)
 * in the number of queued keys, fine for the operator's status/reconcile queues (hundreds).
 */
#ifndef DP_KUBE_QUEUE_H
#define DP_KUBE_QUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"

#define DP_KUBE_QUEUE_MAX_KEY 512

struct dp_kube_queue {
    struct dp_list entries; /* all known keys (queued, processing or with failures) */
    size_t n, max_keys;
    uint64_t base_ms, max_ms;
    double qps, burst, tokens;
    uint64_t tokens_ms; /* when tokens was computed */
};

void dp_kube_queue_init(struct dp_kube_queue *q, uint64_t base_ms, uint64_t max_ms, double qps,
                        double burst, size_t max_keys);
void dp_kube_queue_done(struct dp_kube_queue *q);

/** Queue key to be due at now + delay_ms. 0, -ENOSPC, -EINVAL (key too long/empty), -ENOMEM. */
int dp_kube_queue_add(struct dp_kube_queue *q, const char *key, uint64_t now_ms,
                      uint64_t delay_ms);
/** Re-queue after a failure; returns the delay chosen (ms, >= 0) or -errno. */
int64_t dp_kube_queue_retry(struct dp_kube_queue *q, const char *key, uint64_t now_ms);
/** Reset the failure count of key (after success). */
void dp_kube_queue_forget(struct dp_kube_queue *q, const char *key);
/** Failures recorded for key. */
unsigned dp_kube_queue_failures(const struct dp_kube_queue *q, const char *key);

/**
 * Take the due key with the earliest due time. Returns 0 and writes a borrowed key (valid until
 * dp_kube_queue_finish(key)), or -EAGAIN when nothing is due.
 */
int dp_kube_queue_pop(struct dp_kube_queue *q, uint64_t now_ms, const char **ret_key);
/** Processing of key ended (success or not). If it was added meanwhile it becomes queued. */
void dp_kube_queue_finish(struct dp_kube_queue *q, const char *key, uint64_t now_ms);

/** Milliseconds until the next key is due (0 = now), or -1 if nothing is queued. */
int64_t dp_kube_queue_next_due(const struct dp_kube_queue *q, uint64_t now_ms);
/** Number of queued (not processing) keys. */
size_t dp_kube_queue_len(const struct dp_kube_queue *q);

#endif
