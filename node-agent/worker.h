/*
 * worker.h — the node agent's threads: one dp_loop per worker thread. Worker 0 runs on the
 * main thread (it also serves cni.sock, admin, metrics and signals); workers 1..n-1 get their
 * own pthread. A pod's listeners and all its connections live on one worker (chosen when the
 * pod is adopted), so per-connection state is never shared between threads.
 */
#ifndef NA_WORKER_H
#define NA_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "loop.h"

struct na_agent;
struct dp_hbone_pool;

struct na_worker {
    unsigned index;
    struct dp_loop *loop;
    pthread_t thread;
    bool has_thread;
    struct na_agent *agent;
    struct dp_hbone_pool *pool; /* per-worker HBONE client pool (hbone.h), owned */
    atomic_uint conns;  /* live proxied connections on this worker (read by other threads) */
};

/** Create n workers (loops only; threads start with na_workers_start). 0 or -errno. */
int na_workers_new(struct na_agent *agent, unsigned n, struct na_worker **ret_workers);
/** Start threads for workers 1..n-1. 0 or -errno. */
int na_workers_start(struct na_worker *w, unsigned n);
/** Stop every loop, join threads. */
void na_workers_stop(struct na_worker *w, unsigned n);
/** Free loops; accepts NULL. Call after na_workers_stop. */
void na_workers_free(struct na_worker *w, unsigned n);

/** Run fn(arg) on worker w's loop and wait until it returned (from another thread or w's own
 *  thread, where it runs inline). Returns fn's return value, or -ENOMEM. */
int na_worker_call(struct na_worker *w, int (*fn)(struct na_worker *w, void *arg), void *arg);

#endif
