/* test_loop.c — unit tests for dataplane/loop.c */
/* cmocka.h needs setjmp.h, stdarg.h and stddef.h first */
/* clang-format off */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
/* clang-format on */

#include "loop.h"

/* ---- allocation torture: test_loop.ldflags wraps malloc/calloc at link time */
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
static long alloc_fail_at = -1; /* -1: never */
static long alloc_count;

static bool alloc_should_fail(void)
{
    return alloc_fail_at >= 0 && alloc_count++ == alloc_fail_at;
}

void *__wrap_malloc(size_t n)
{
    return alloc_should_fail() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t m)
{
    return alloc_should_fail() ? NULL : __real_calloc(n, m);
}

/* ------------------------------------------------------------------ fake clock */

static uint64_t fake_now;

static uint64_t fake_clock(void *arg)
{
    (void)arg;
    return fake_now;
}

static int setup_fake(void **state)
{
    struct dp_loop *loop;

    assert_int_equal(dp_loop_new(&loop), 0);
    fake_now = 1000000;
    dp_loop_set_clock(loop, fake_clock, NULL);
    *state = loop;
    return 0;
}

static int setup_real(void **state)
{
    struct dp_loop *loop;

    assert_int_equal(dp_loop_new(&loop), 0);
    *state = loop;
    return 0;
}

static int teardown(void **state)
{
    dp_loop_free(*state);
    return 0;
}

/* ------------------------------------------------------------------ timer basics */

struct rec {
    int order[64];
    int n;
};

struct tagged {
    struct dp_timer t;
    struct rec *rec;
    int id;
};

static void on_tagged(struct dp_loop *loop, void *arg)
{
    struct tagged *x = arg;
    (void)loop;
    assert_false(dp_timer_armed(&x->t));
    x->rec->order[x->rec->n++] = x->id;
}

static void test_timer_order_basic(void **state)
{
    struct dp_loop *loop = *state;
    struct rec rec = {0};
    struct tagged t[5];
    const uint64_t delays[5] = {50, 10, 10, 4096 + 10, 0};
    int i;

    for (i = 0; i < 5; i++) {
        t[i].rec = &rec;
        t[i].id = i;
        dp_timer_init(&t[i].t, on_tagged, &t[i]);
        assert_false(dp_timer_armed(&t[i].t));
        dp_timer_arm(loop, &t[i].t, delays[i]);
        assert_true(dp_timer_armed(&t[i].t));
    }
    /* delay 0 from outside a callback fires in the next round */
    fake_now += 1;
    assert_int_equal(dp_loop_run_once(loop, 0), 1);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.order[0], 4);
    fake_now += 8;
    assert_int_equal(dp_loop_run_once(loop, 0), 0);
    fake_now += 1; /* now = start + 10 */
    assert_int_equal(dp_loop_run_once(loop, 0), 2);
    assert_int_equal(rec.order[1], 1);
    assert_int_equal(rec.order[2], 2);
    /* a jump over a full revolution: 50 fires, 4096+10 shares the slot of 10 but not the turn */
    fake_now += 4000;
    assert_int_equal(dp_loop_run_once(loop, 0), 1);
    assert_int_equal(rec.order[3], 0);
    assert_true(dp_timer_armed(&t[3].t));
    fake_now += 95; /* start + 4105 */
    assert_int_equal(dp_loop_run_once(loop, 0), 0);
    fake_now += 1;
    assert_int_equal(dp_loop_run_once(loop, 0), 1);
    assert_int_equal(rec.order[4], 3);
    assert_int_equal(rec.n, 5);
}

static void test_timer_cancel_and_rearm(void **state)
{
    struct dp_loop *loop = *state;
    struct rec rec = {0};
    struct tagged a = {.rec = &rec, .id = 1}, b = {.rec = &rec, .id = 2};

    dp_timer_init(&a.t, on_tagged, &a);
    dp_timer_init(&b.t, on_tagged, &b);
    dp_timer_cancel(&a.t); /* not armed: harmless */
    dp_timer_arm(loop, &a.t, 5);
    dp_timer_arm(loop, &b.t, 5);
    dp_timer_cancel(&a.t);
    dp_timer_cancel(&a.t);
    assert_false(dp_timer_armed(&a.t));
    dp_timer_arm(loop, &b.t, 20); /* re-arm moves it */
    fake_now += 5;
    assert_int_equal(dp_loop_run_once(loop, 0), 0);
    fake_now += 15;
    assert_int_equal(dp_loop_run_once(loop, 0), 1);
    assert_int_equal(rec.order[0], 2);
    /* zeroed (never initialised) timers are not armed and cancel is harmless */
    struct dp_timer z;
    memset(&z, 0, sizeof(z));
    assert_false(dp_timer_armed(&z));
    dp_timer_cancel(&z);
}

static void test_timer_arm_at(void **state)
{
    struct dp_loop *loop = *state;
    struct rec rec = {0};
    struct tagged a = {.rec = &rec, .id = 1}, b = {.rec = &rec, .id = 2};
    uint64_t start = dp_loop_now(loop);

    dp_timer_init(&a.t, on_tagged, &a);
    dp_timer_init(&b.t, on_tagged, &b);
    dp_timer_arm_at(loop, &a.t, start + 7000);
    dp_timer_arm_at(loop, &b.t, start - 500); /* in the past: next round */
    assert_int_equal(a.t.expire_ms, start + 7000);
    fake_now += 1;
    assert_int_equal(dp_loop_run_once(loop, 0), 1);
    assert_int_equal(rec.order[0], 2);
    fake_now = start + 6999;
    assert_int_equal(dp_loop_run_once(loop, 0), 0);
    fake_now = start + 7000;
    assert_int_equal(dp_loop_run_once(loop, 0), 1);
    assert_int_equal(rec.order[1], 1);
    dp_timer_arm_at(loop, &a.t, UINT64_MAX); /* clamped, no overflow */
    assert_true(a.t.expire_ms > dp_loop_now(loop));
    dp_timer_cancel(&a.t);
}

static void test_timer_huge_delay(void **state)
{
    struct dp_loop *loop = *state;
    struct rec rec = {0};
    struct tagged a = {.rec = &rec, .id = 1};

    dp_timer_init(&a.t, on_tagged, &a);
    dp_timer_arm(loop, &a.t, UINT64_MAX);
    assert_true(a.t.expire_ms > dp_loop_now(loop));
    fake_now += 100000000; /* a day */
    assert_int_equal(dp_loop_run_once(loop, 0), 0);
    dp_timer_cancel(&a.t);
}

/* ------------------------------------------------------------------ timer churn vs model */

#define CHURN_N 2000

struct ct {
    struct dp_timer t;
    int id;
    bool armed;
    uint64_t expire;
    uint64_t seq;
};

static struct churn {
    struct dp_loop *loop;
    struct ct timers[CHURN_N];
    uint64_t seq;
    unsigned long fired, armed_ops, cancel_ops;
    uint64_t last_expire, last_seq;
    unsigned rng;
} ch;

static unsigned rnd(void)
{
    ch.rng = ch.rng * 1103515245u + 12345u;
    return (ch.rng >> 8) & 0xffffff;
}

static uint64_t rnd_delay(void)
{
    switch (rnd() % 4) {
    case 0:
        return 1 + rnd() % 8;
    case 1:
        return 1 + rnd() % 200;
    case 2:
        return 1 + rnd() % 5000;
    default:
        return 1 + rnd() % 20000; /* several wheel revolutions */
    }
}

static void model_arm(struct ct *c, uint64_t delay)
{
    dp_timer_arm(ch.loop, &c->t, delay);
    c->armed = true;
    c->expire = dp_loop_now(ch.loop) + delay;
    c->seq = ++ch.seq;
    assert_int_equal(c->t.expire_ms, c->expire);
    ch.armed_ops++;
}

static void model_cancel(struct ct *c)
{
    dp_timer_cancel(&c->t);
    c->armed = false;
    ch.cancel_ops++;
}

static void on_churn(struct dp_loop *loop, void *arg)
{
    struct ct *c = arg;
    int i;

    assert_true(c->armed);
    assert_true(c->expire <= dp_loop_now(loop));
    /* fire order: (expiry, arm order) never goes backwards within a round ... */
    assert_true(c->expire > ch.last_expire ||
                (c->expire == ch.last_expire && c->seq > ch.last_seq));
    ch.last_expire = c->expire;
    ch.last_seq = c->seq;
    /* ... and no armed timer is ahead of this one */
    for (i = 0; i < CHURN_N; i++) {
        const struct ct *o = &ch.timers[i];
        if (o->armed && o != c)
            assert_true(o->expire > c->expire || (o->expire == c->expire && o->seq > c->seq));
    }
    c->armed = false;
    ch.fired++;
    /* churn from inside callbacks too */
    switch (rnd() % 6) {
    case 0:
        model_arm(c, rnd_delay());
        break;
    case 1: {
        struct ct *o = &ch.timers[rnd() % CHURN_N];
        if (o->armed)
            model_cancel(o);
        break;
    }
    case 2: {
        struct ct *o = &ch.timers[rnd() % CHURN_N];
        model_arm(o, rnd_delay());
        break;
    }
    default:
        break;
    }
}

static void test_timer_churn(void **state)
{
    int i, step;

    memset(&ch, 0, sizeof(ch));
    ch.loop = *state;
    ch.rng = 12345;
    for (i = 0; i < CHURN_N; i++) {
        ch.timers[i].id = i;
        dp_timer_init(&ch.timers[i].t, on_churn, &ch.timers[i]);
    }
    for (step = 0; step < 200000; step++) {
        unsigned op = rnd() % 100;
        struct ct *c = &ch.timers[rnd() % CHURN_N];

        if (op < 45) {
            model_arm(c, rnd_delay());
        } else if (op < 70) {
            if (c->armed || rnd() % 2)
                model_cancel(c);
        } else {
            uint64_t adv = op < 98 ? rnd() % 20 : 3000 + rnd() % 15000;
            fake_now += adv;
            ch.last_expire = 0;
            ch.last_seq = 0;
            assert_true(dp_loop_run_once(ch.loop, 0) >= 0);
            /* everything due has fired */
            for (i = 0; i < CHURN_N; i++) {
                assert_int_equal(dp_timer_armed(&ch.timers[i].t), ch.timers[i].armed);
                if (ch.timers[i].armed)
                    assert_true(ch.timers[i].expire > dp_loop_now(ch.loop));
            }
        }
    }
    /* drain */
    fake_now += 30000;
    ch.last_expire = 0;
    ch.last_seq = 0;
    assert_true(dp_loop_run_once(ch.loop, 0) >= 0);
    for (i = 0; i < CHURN_N; i++)
        assert_false(ch.timers[i].armed);
    print_message("churn: %lu arms, %lu cancels, %lu fired\n", ch.armed_ops, ch.cancel_ops,
                  ch.fired);
    assert_true(ch.fired > 10000);
    assert_true(ch.cancel_ops > 10000);
}

/* A timer callback that re-arms itself with delay 0 must not spin within one round. */
static void on_self_rearm(struct dp_loop *loop, void *arg)
{
    struct tagged *x = arg;

    x->rec->n++;
    dp_timer_arm(loop, &x->t, 0);
}

static void test_timer_self_rearm_zero(void **state)
{
    struct dp_loop *loop = *state;
    struct rec rec = {0};
    struct tagged a = {.rec = &rec};

    dp_timer_init(&a.t, on_self_rearm, &a);
    dp_timer_arm(loop, &a.t, 1);
    fake_now += 1;
    assert_int_equal(dp_loop_run_once(loop, 0), 1);
    assert_int_equal(dp_loop_run_once(loop, 0), 0); /* same ms: not again */
    fake_now += 1;
    assert_int_equal(dp_loop_run_once(loop, 0), 1);
    assert_int_equal(rec.n, 2);
    dp_timer_cancel(&a.t);
}

/* Real clock: the loop sleeps until the timer and not much longer. */
static void test_timer_real_wait(void **state)
{
    struct dp_loop *loop = *state;
    struct rec rec = {0};
    struct tagged a = {.rec = &rec, .id = 7};
    uint64_t t0 = dp_now_ms(), dt;

    dp_timer_init(&a.t, on_tagged, &a);
    dp_timer_arm(loop, &a.t, 30);
    while (rec.n == 0)
        assert_true(dp_loop_run_once(loop, -1) >= 0);
    dt = dp_now_ms() - t0;
    assert_true(dt >= 29);
    assert_true(dt < 1000);
    /* caller's timeout caps the wait when nothing is armed */
    t0 = dp_now_ms();
    assert_int_equal(dp_loop_run_once(loop, 20), 0);
    dt = dp_now_ms() - t0;
    assert_true(dt >= 19 && dt < 1000);
}

/* Time spent in callbacks after the round began does not delay the next timer. */
static void test_timer_wait_uses_fresh_clock(void **state)
{
    struct dp_loop *loop = *state;
    struct rec rec = {0};
    struct tagged a = {.rec = &rec, .id = 1};
    uint64_t t0, dt;

    assert_true(dp_loop_run_once(loop, 0) >= 0); /* refresh the cached time */
    t0 = dp_now_ms();
    dp_timer_init(&a.t, on_tagged, &a);
    dp_timer_arm(loop, &a.t, 100);
    usleep(80000); /* a slow callback */
    while (rec.n == 0)
        assert_true(dp_loop_run_once(loop, -1) >= 0);
    dt = dp_now_ms() - t0;
    assert_true(dt >= 99);
    assert_true(dt < 160); /* with a stale base it would be ~180 */
}

/* Set-up code that takes a while before arming: delays still count from the arm. */
static void test_timer_arm_outside_round_fresh(void **state)
{
    struct dp_loop *loop = *state;
    struct rec rec = {0};
    struct tagged a = {.rec = &rec, .id = 1};
    uint64_t t0;

    usleep(120000); /* the loop's cached time is now 120 ms old */
    t0 = dp_now_ms();
    dp_timer_init(&a.t, on_tagged, &a);
    dp_timer_arm(loop, &a.t, 100);
    assert_true(a.t.expire_ms >= t0 + 100);
    assert_int_equal(dp_loop_run_once(loop, 0), 0); /* would fire here with a stale base */
    while (rec.n == 0)
        assert_true(dp_loop_run_once(loop, -1) >= 0);
    assert_true(dp_now_ms() - t0 >= 99);
    /* explicit refresh */
    usleep(20000);
    t0 = dp_now_ms();
    dp_loop_update_time(loop);
    assert_true(dp_loop_now(loop) >= t0);
}

/* ------------------------------------------------------------------ io + deferred close */

struct conn {
    struct dp_io io;
    struct dp_defer free_me;
    struct dp_timer idle;
    int *freed;
    int *closed_in_cb;
    char buf[16];
};

static void on_conn_free(struct dp_loop *loop, void *arg)
{
    struct conn *c = arg;
    (void)loop;
    assert_false(c->io.registered);
    dp_timer_cancel(&c->idle);
    (*c->freed)++;
    free(c);
}

static void on_conn_idle(struct dp_loop *loop, void *arg)
{
    (void)loop;
    (void)arg;
    fail_msg("idle timer fired for a closed connection");
}

static void on_conn_read(struct dp_loop *loop, int fd, unsigned events, void *arg)
{
    struct conn *c = arg;
    ssize_t n;

    assert_true(events & DP_EV_READ);
    n = read(fd, c->buf, sizeof(c->buf));
    if (n == 0) {
        /* closed in its own callback; freed only from the deferred stage */
        dp_loop_del_io(loop, &c->io);
        close(fd);
        (*c->closed_in_cb)++;
        dp_loop_defer(loop, &c->free_me);
        dp_loop_defer(loop, &c->free_me); /* idempotent while pending */
        /* still valid after scheduling */
        c->buf[0] = 'x';
    }
}

static void test_deferred_close(void **state)
{
    struct dp_loop *loop = *state;
    int sv[2], freed = 0, closed = 0, rounds = 0;
    struct conn *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    c->freed = &freed;
    c->closed_in_cb = &closed;
    dp_io_init(&c->io, sv[0], on_conn_read, c);
    dp_defer_init(&c->free_me, on_conn_free, c);
    dp_timer_init(&c->idle, on_conn_idle, c);
    assert_int_equal(dp_loop_add_io(loop, &c->io, DP_EV_READ), 0);
    assert_int_equal(dp_loop_add_io(loop, &c->io, DP_EV_READ), -EEXIST);
    dp_timer_arm(loop, &c->idle, 10000);
    assert_int_equal(write(sv[1], "hi", 2), 2);
    close(sv[1]);
    while (freed == 0 && rounds++ < 10)
        assert_true(dp_loop_run_once(loop, 1000) >= 0);
    assert_int_equal(closed, 1);
    assert_int_equal(freed, 1);
}

/* Two readable fds: whichever callback runs first removes and frees the other at once
 * (not deferred) — its already harvested event must be discarded, not dispatched. */
struct peer {
    struct dp_io io;
    struct peer **other;
    int *calls;
    int fd_peer;
};

static void on_peer(struct dp_loop *loop, int fd, unsigned events, void *arg)
{
    struct peer *self = arg;
    struct peer *o = *self->other;
    char b[8];

    (void)events;
    (*self->calls)++;
    assert_true(read(fd, b, sizeof(b)) > 0);
    if (o != NULL) {
        dp_loop_del_io(loop, &o->io);
        close(o->io.fd);
        close(o->fd_peer);
        free(o);
        *self->other = NULL;
    }
}

static void test_io_removed_mid_dispatch(void **state)
{
    struct dp_loop *loop = *state;
    struct peer *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    struct peer *survivor;
    int s1[2], s2[2], calls = 0;

    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, s1), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, s2), 0);
    struct peer *pa = b, *pb = a; /* a's "other" is b and vice versa */
    a->other = &pa;
    b->other = &pb;
    a->calls = b->calls = &calls;
    a->fd_peer = s1[1];
    b->fd_peer = s2[1];
    dp_io_init(&a->io, s1[0], on_peer, a);
    dp_io_init(&b->io, s2[0], on_peer, b);
    assert_int_equal(dp_loop_add_io(loop, &a->io, DP_EV_READ), 0);
    assert_int_equal(dp_loop_add_io(loop, &b->io, DP_EV_READ), 0);
    assert_int_equal(write(s1[1], "a", 1), 1);
    assert_int_equal(write(s2[1], "b", 1), 1);
    assert_int_equal(dp_loop_run_once(loop, 1000), 1);
    assert_int_equal(calls, 1);
    survivor = pa == NULL ? a : b;
    assert_true((pa == NULL) != (pb == NULL));
    dp_loop_del_io(loop, &survivor->io);
    dp_loop_del_io(loop, &survivor->io); /* harmless twice */
    close(survivor->io.fd);
    close(survivor->fd_peer);
    free(survivor);
}

/* An io asking for no events stays quiet even when the peer hung up (no spin). */
static int quiet_calls;
static void on_quiet(struct dp_loop *loop, int fd, unsigned events, void *arg)
{
    (void)loop;
    (void)fd;
    (void)arg;
    (void)events;
    quiet_calls++;
}

static void test_io_mod_quiet_and_error(void **state)
{
    struct dp_loop *loop = *state;
    struct dp_io io;
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    dp_io_init(&io, sv[0], on_quiet, NULL);
    assert_int_equal(dp_loop_mod_io(loop, &io, DP_EV_READ), -ENOENT);
    assert_int_equal(dp_loop_add_io(loop, &io, DP_EV_WRITE), 0);
    quiet_calls = 0;
    assert_int_equal(dp_loop_run_once(loop, 100), 1); /* writable */
    assert_int_equal(dp_loop_mod_io(loop, &io, 0), 0);
    close(sv[1]);
    assert_int_equal(dp_loop_run_once(loop, 20), 0);
    assert_int_equal(quiet_calls, 1);
    assert_int_equal(dp_loop_mod_io(loop, &io, DP_EV_READ), 0);
    assert_int_equal(dp_loop_run_once(loop, 100), 1); /* EOF readable + hang-up */
    assert_int_equal(quiet_calls, 2);
    dp_loop_del_io(loop, &io);
    close(sv[0]);
}

/* ------------------------------------------------------------------ deferred stage order */

static int stage_log[16], stage_n;

static void on_defer_second(struct dp_loop *loop, void *arg)
{
    (void)loop;
    (void)arg;
    stage_log[stage_n++] = 3;
}

static struct dp_defer second;

static void on_defer_first(struct dp_loop *loop, void *arg)
{
    (void)arg;
    stage_log[stage_n++] = 2;
    dp_loop_defer(loop, &second); /* runs next round, with no wait */
}

static void on_stage_timer(struct dp_loop *loop, void *arg)
{
    (void)loop;
    (void)arg;
    stage_log[stage_n++] = 1;
}

static void test_defer_after_timers(void **state)
{
    struct dp_loop *loop = *state;
    struct dp_defer first, cancelled;
    struct dp_timer t;
    uint64_t t0;

    stage_n = 0;
    dp_defer_init(&first, on_defer_first, NULL);
    dp_defer_init(&second, on_defer_second, NULL);
    dp_defer_init(&cancelled, on_defer_second, NULL);
    dp_timer_init(&t, on_stage_timer, NULL);
    dp_loop_defer(loop, &first);
    dp_loop_defer(loop, &cancelled);
    dp_defer_cancel(&cancelled);
    dp_timer_arm(loop, &t, 0);
    fake_now += 1;
    assert_int_equal(dp_loop_run_once(loop, 0), 2);
    assert_int_equal(stage_n, 2);
    assert_int_equal(stage_log[0], 1);
    assert_int_equal(stage_log[1], 2);
    /* a pending defer makes the next wait zero even with a long timeout */
    t0 = dp_now_ms();
    assert_int_equal(dp_loop_run_once(loop, 5000), 1);
    assert_true(dp_now_ms() - t0 < 1000);
    assert_int_equal(stage_log[2], 3);
}

/* ------------------------------------------------------------------ cross-thread */

#define POST_THREADS 4
#define POSTS_EACH   2000

static struct {
    int count;
    int last[POST_THREADS];
    bool order_ok;
    pthread_t loop_thread;
    bool thread_ok;
} posts;

struct post_arg {
    struct dp_loop *loop;
    int tid;
};

static void on_post(struct dp_loop *loop, void *arg)
{
    uintptr_t v = (uintptr_t)arg;
    int tid = (int)(v >> 20), seq = (int)(v & 0xfffff);

    if (!pthread_equal(pthread_self(), posts.loop_thread))
        posts.thread_ok = false;
    if (seq != posts.last[tid] + 1)
        posts.order_ok = false;
    posts.last[tid] = seq;
    if (++posts.count == POST_THREADS * POSTS_EACH)
        dp_loop_stop(loop);
}

static void *poster(void *arg)
{
    struct post_arg *pa = arg;
    int i;

    for (i = 1; i <= POSTS_EACH; i++) {
        uintptr_t v = ((uintptr_t)pa->tid << 20) | (uintptr_t)i;
        while (dp_loop_post(pa->loop, on_post, (void *)v) < 0)
            ;
        if (i % 97 == 0)
            dp_loop_wake(pa->loop);
    }
    return NULL;
}

static void test_post_from_threads(void **state)
{
    struct dp_loop *loop = *state;
    pthread_t th[POST_THREADS];
    struct post_arg pa[POST_THREADS];
    int i;

    memset(&posts, 0, sizeof(posts));
    posts.order_ok = posts.thread_ok = true;
    posts.loop_thread = pthread_self();
    for (i = 0; i < POST_THREADS; i++) {
        pa[i].loop = loop;
        pa[i].tid = i;
        assert_int_equal(pthread_create(&th[i], NULL, poster, &pa[i]), 0);
    }
    assert_int_equal(dp_loop_run(loop), 0);
    for (i = 0; i < POST_THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(posts.count, POST_THREADS * POSTS_EACH);
    assert_true(posts.order_ok);
    assert_true(posts.thread_ok);
}

static int posted_runs;
static void on_count(struct dp_loop *loop, void *arg)
{
    (void)loop;
    (void)arg;
    posted_runs++;
}

/* run_once counts the posted callbacks it ran; a bare wake-up runs nothing. */
static void test_post_counts(void **state)
{
    struct dp_loop *loop = *state;

    posted_runs = 0;
    assert_int_equal(dp_loop_post(loop, on_count, NULL), 0);
    assert_int_equal(dp_loop_post(loop, on_count, NULL), 0);
    assert_int_equal(dp_loop_post(loop, on_count, NULL), 0);
    assert_int_equal(dp_loop_run_once(loop, 1000), 3);
    assert_int_equal(posted_runs, 3);
    dp_loop_wake(loop);
    assert_int_equal(dp_loop_run_once(loop, 1000), 0);
    /* posts still queued when the loop is freed are dropped without running (no leak) */
    assert_int_equal(dp_loop_post(loop, on_count, NULL), 0);
}

static void *waker(void *arg)
{
    usleep(50000);
    dp_loop_wake(arg);
    return NULL;
}

static void *stopper(void *arg)
{
    usleep(50000);
    dp_loop_stop(arg);
    return NULL;
}

static void test_wake_and_stop(void **state)
{
    struct dp_loop *loop = *state;
    pthread_t th;
    uint64_t t0 = dp_now_ms();

    /* nothing armed: -1 would block forever without the wake-up */
    assert_int_equal(pthread_create(&th, NULL, waker, loop), 0);
    assert_true(dp_loop_run_once(loop, -1) >= 0);
    pthread_join(th, NULL);
    assert_true(dp_now_ms() - t0 < 5000);

    assert_int_equal(pthread_create(&th, NULL, stopper, loop), 0);
    assert_int_equal(dp_loop_run(loop), 0);
    pthread_join(th, NULL);
    /* the stop was consumed: a later stop from the loop thread ends the next run at once */
    dp_loop_stop(loop);
    assert_int_equal(dp_loop_run(loop), 0);
}

/* ------------------------------------------------------------------ signals */

static int sig_seen[3];

static void on_sig(struct dp_loop *loop, int signo, void *arg)
{
    (void)loop;
    (void)arg;
    if (signo == SIGUSR1)
        sig_seen[0]++;
    else if (signo == SIGUSR2)
        sig_seen[1]++;
    else
        sig_seen[2]++;
}

static void test_signals(void **state)
{
    struct dp_loop *loop = *state;
    int rounds = 0;

    memset(sig_seen, 0, sizeof(sig_seen));
    assert_int_equal(dp_loop_add_signal(loop, SIGKILL, on_sig, NULL), -EINVAL);
    assert_int_equal(dp_loop_add_signal(loop, 0, on_sig, NULL), -EINVAL);
    assert_int_equal(dp_loop_add_signal(loop, SIGUSR1, on_sig, NULL), 0);
    assert_int_equal(dp_loop_add_signal(loop, SIGUSR2, on_sig, NULL), 0);
    assert_int_equal(raise(SIGUSR1), 0); /* blocked: queued for the signalfd, not fatal */
    assert_int_equal(raise(SIGUSR2), 0);
    while ((sig_seen[0] == 0 || sig_seen[1] == 0) && rounds++ < 20)
        assert_true(dp_loop_run_once(loop, 100) >= 0);
    assert_int_equal(sig_seen[0], 1);
    assert_int_equal(sig_seen[1], 1);
    assert_int_equal(sig_seen[2], 0);
}

static int torture_runs;
static void on_torture_post(struct dp_loop *loop, void *arg)
{
    (void)loop;
    (void)arg;
    torture_runs++;
}

/* dp_loop_new and dp_loop_post fail cleanly with -ENOMEM and nothing leaks (ASan/valgrind). */
static void test_alloc_torture(void **state)
{
    struct dp_loop *loop = NULL;
    long n;
    int i, ok;

    (void)state;
    alloc_count = 0;
    alloc_fail_at = 0;
    assert_int_equal(dp_loop_new(&loop), -ENOMEM);
    assert_null(loop);
    alloc_fail_at = -1;
    assert_int_equal(dp_loop_new(&loop), 0);
    for (n = 0; n < 5; n++) {
        alloc_count = 0;
        alloc_fail_at = n;
        torture_runs = 0;
        ok = 0;
        for (i = 0; i < 5; i++)
            ok += dp_loop_post(loop, on_torture_post, NULL) == 0;
        alloc_fail_at = -1;
        assert_int_equal(ok, 4);
        assert_int_equal(dp_loop_run_once(loop, 1000), 4);
        assert_int_equal(torture_runs, 4);
    }
    dp_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_timer_order_basic, setup_fake, teardown),
            cmocka_unit_test_setup_teardown(test_timer_cancel_and_rearm, setup_fake, teardown),
            cmocka_unit_test_setup_teardown(test_timer_huge_delay, setup_fake, teardown),
            cmocka_unit_test_setup_teardown(test_timer_arm_at, setup_fake, teardown),
            cmocka_unit_test_setup_teardown(test_timer_churn, setup_fake, teardown),
            cmocka_unit_test_setup_teardown(test_timer_self_rearm_zero, setup_fake, teardown),
            cmocka_unit_test_setup_teardown(test_timer_real_wait, setup_real, teardown),
            cmocka_unit_test_setup_teardown(test_timer_wait_uses_fresh_clock, setup_real, teardown),
            cmocka_unit_test_setup_teardown(test_timer_arm_outside_round_fresh, setup_real,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_deferred_close, setup_real, teardown),
            cmocka_unit_test_setup_teardown(test_io_removed_mid_dispatch, setup_real, teardown),
            cmocka_unit_test_setup_teardown(test_io_mod_quiet_and_error, setup_real, teardown),
            cmocka_unit_test_setup_teardown(test_defer_after_timers, setup_fake, teardown),
            cmocka_unit_test_setup_teardown(test_post_from_threads, setup_real, teardown),
            cmocka_unit_test_setup_teardown(test_post_counts, setup_real, teardown),
            cmocka_unit_test_setup_teardown(test_wake_and_stop, setup_real, teardown),
            cmocka_unit_test_setup_teardown(test_signals, setup_real, teardown),
            cmocka_unit_test(test_alloc_torture),
    };
    return cmocka_run_group_tests_name("loop", tests, NULL, NULL);
}
