/*
 * worker.c — worker threads and synchronous cross-worker calls (used by pod adopt/release so
 * the CNI answer is only sent once the listeners exist on their worker's loop).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "worker.h"

int na_workers_new(struct na_agent *agent, unsigned n, struct na_worker **ret_workers)
{
    struct na_worker *w = calloc(n, sizeof(*w));
    if (!w)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        w[i].index = i;
        w[i].agent = agent;
        int ret = dp_loop_new(&w[i].loop);
        if (ret < 0) {
            na_workers_free(w, i);
            return ret;
        }
    }
    *ret_workers = w;
    return 0;
}

static void *thread_main(void *arg)
{
    struct na_worker *w = arg;
    int ret = dp_loop_run(w->loop);
    if (ret < 0)
        dp_error("node", "worker loop failed", DP_LU("worker", w->index), DP_LERR(ret));
    return NULL;
}

int na_workers_start(struct na_worker *w, unsigned n)
{
    for (unsigned i = 1; i < n; i++) {
        int ret = pthread_create(&w[i].thread, NULL, thread_main, &w[i]);
        if (ret != 0)
            return -ret;
        w[i].has_thread = true;
    }
    return 0;
}

void na_workers_stop(struct na_worker *w, unsigned n)
{
    if (!w)
        return;
    for (unsigned i = 0; i < n; i++)
        dp_loop_stop(w[i].loop);
    for (unsigned i = 1; i < n; i++) {
        if (w[i].has_thread) {
            pthread_join(w[i].thread, NULL);
            w[i].has_thread = false;
        }
    }
}

void na_workers_free(struct na_worker *w, unsigned n)
{
    if (!w)
        return;
    for (unsigned i = 0; i < n; i++)
        dp_loop_free(w[i].loop);
    free(w);
}

struct call {
    struct na_worker *w;
    int (*fn)(struct na_worker *w, void *arg);
    void *arg;
    int ret;
    bool done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static void on_call(struct dp_loop *loop, void *arg)
{
    struct call *c = arg;
    (void)loop;
    int ret = c->fn(c->w, c->arg);
    pthread_mutex_lock(&c->mu);
    c->ret = ret;
    c->done = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

int na_worker_call(struct na_worker *w, int (*fn)(struct na_worker *w, void *arg), void *arg)
{
    if (w->index == 0 || !w->has_thread || pthread_equal(w->thread, pthread_self()))
        return fn(w, arg);
    struct call c = {.w = w, .fn = fn, .arg = arg};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    int ret = dp_loop_post(w->loop, on_call, &c);
    if (ret < 0)
        goto out;
    pthread_mutex_lock(&c.mu);
    while (!c.done)
        pthread_cond_wait(&c.cv, &c.mu);
    pthread_mutex_unlock(&c.mu);
    ret = c.ret;
out:
    pthread_mutex_destroy(&c.mu);
    pthread_cond_destroy(&c.cv);
    return ret;
}
