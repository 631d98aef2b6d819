/*
 * loop.c — epoll event loop with a hashed timer wheel, a deferred stage, cross-thread posts
 * and signalfd. See loop.h for the contract and docs/internals/LOOP.md for the design.
 *
 * One round (dp_loop_run_once):
 *   1. compute the wait: 0 if deferred work or a stop is pending, else until the next
 *      possibly-occupied timer slot, capped by the caller's timeout;
 *   2. epoll_wait, then refresh the cached time;
 *   3. dispatch the harvested events in order. dp_loop_del_io() scrubs the not-yet-dispatched
 *      events of the io it removes, so an io (and the object embedding it) may be removed and
 *      even freed by another object's callback in the same round without a dangling pointer;
 *   4. run the timers that are due, in (expiry, arm order);
 *   5. run the deferred callbacks that were pending when the stage began.
 *
 * Timer wheel: WHEEL_SLOTS one-millisecond slots, hashed by expiry (expire_ms & mask). A slot
 * holds every timer whose expiry maps to it, whatever the revolution; a visit fires only the
 * ones that are due, so arm and cancel are O(1) list operations and a timer far in the future
 * is merely looked at once per revolution (4 s). `cur` is the first millisecond not processed
 * yet: every timer with expire_ms < cur has fired. Arming never places a timer before `cur`, so
 * visiting the slots in time order fires timers in expiry order. A bitmap marks slots that may
 * be occupied; dp_timer_cancel() cannot clear it (it has no loop pointer), so bits are cleared
 * lazily when a visit finds the slot empty. The scan therefore skips idle stretches in 64 ms
 * words instead of stepping millisecond by millisecond.
 */
#include "loop.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define WHEEL_BITS  12
#define WHEEL_SLOTS (1u << WHEEL_BITS)
#define WHEEL_MASK  (WHEEL_SLOTS - 1)
#define WHEEL_WORDS (WHEEL_SLOTS / 64)
/* Longest delay honoured (~34 years); longer ones are clamped so expire_ms cannot overflow. */
#define MAX_DELAY_MS (1ull << 40)
#define MAX_EVENTS   256
#define NSIG_MAX     65

struct post {
    struct post *next;
    dp_post_cb *cb;
    void *arg;
};

struct sig_handler {
    dp_signal_cb *cb;
    void *arg;
};

struct dp_loop {
    int epfd;
    uint64_t now;
    uint64_t (*clock)(void *arg);
    void *clock_arg;
    atomic_bool stop;

    /* io dispatch state of the current round */
    struct epoll_event events[MAX_EVENTS];
    int nevents;
    int dispatch_idx; /* index being dispatched; -1 outside dispatch */
    int ran;          /* callbacks run by the internal ios (posts, signals) this round */
    bool in_round;    /* inside dp_loop_run_once's dispatch: the cached time is current */

    /* timers */
    uint64_t cur;
    struct dp_list slots[WHEEL_SLOTS];
    uint64_t occupied[WHEEL_WORDS];

    /* deferred stage */
    struct dp_list defers;

    /* cross-thread posts */
    int evfd;
    struct dp_io ev_io;
    pthread_mutex_t post_lock;
    struct post *post_head, **post_tail;

    /* signals */
    int sigfd;
    sigset_t sigmask;
    struct dp_io sig_io;
    struct sig_handler sig[NSIG_MAX];
};

/* ------------------------------------------------------------------ time */

static uint64_t default_clock(void *arg)
{
    (void)arg;
    return dp_now_ms();
}

static uint64_t read_clock(struct dp_loop *loop)
{
    uint64_t t = loop->clock(loop->clock_arg);
    /* the cached time never goes backwards, even with a test clock */
    return t > loop->now ? t : loop->now;
}

uint64_t dp_loop_now(const struct dp_loop *loop)
{
    return loop->now;
}

void dp_loop_update_time(struct dp_loop *loop)
{
    loop->now = read_clock(loop);
}

void dp_loop_set_clock(struct dp_loop *loop, uint64_t (*clock)(void *arg), void *arg)
{
    loop->clock = clock != NULL ? clock : default_clock;
    loop->clock_arg = clock != NULL ? arg : NULL;
    loop->now = loop->clock(loop->clock_arg);
    loop->cur = loop->now;
}

/* ------------------------------------------------------------------ lifecycle */

static void on_eventfd(struct dp_loop *loop, int fd, unsigned events, void *arg);
static void on_signalfd(struct dp_loop *loop, int fd, unsigned events, void *arg);

int dp_loop_new(struct dp_loop **ret_loop)
{
    struct dp_loop *loop;
    unsigned i;
    int r;

    loop = calloc(1, sizeof(*loop));
    if (loop == NULL)
        return -ENOMEM;
    loop->epfd = loop->evfd = loop->sigfd = -1;
    loop->clock = default_clock;
    loop->now = dp_now_ms();
    loop->cur = loop->now;
    loop->dispatch_idx = -1;
    atomic_init(&loop->stop, false);
    for (i = 0; i < WHEEL_SLOTS; i++)
        dp_list_init(&loop->slots[i]);
    dp_list_init(&loop->defers);
    sigemptyset(&loop->sigmask);
    loop->post_tail = &loop->post_head;
    r = pthread_mutex_init(&loop->post_lock, NULL);
    if (r != 0) {
        free(loop);
        return -r;
    }

    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        r = -errno;
        goto fail;
    }
    loop->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->evfd < 0) {
        r = -errno;
        goto fail;
    }
    dp_io_init(&loop->ev_io, loop->evfd, on_eventfd, NULL);
    r = dp_loop_add_io(loop, &loop->ev_io, DP_EV_READ);
    if (r < 0)
        goto fail;
    *ret_loop = loop;
    return 0;
fail:
    dp_loop_free(loop);
    return r;
}

void dp_loop_free(struct dp_loop *loop)
{
    struct post *p, *next;
    unsigned i;

    if (loop == NULL)
        return;
    /* unlink what is still armed/pending so later dp_timer_cancel/dp_defer_cancel on the
     * callers' objects do not touch freed list heads */
    for (i = 0; i < WHEEL_SLOTS; i++) {
        while (!dp_list_empty(&loop->slots[i]))
            dp_list_del(loop->slots[i].next);
    }
    while (!dp_list_empty(&loop->defers))
        dp_list_del(loop->defers.next);
    for (p = loop->post_head; p != NULL; p = next) {
        next = p->next;
        free(p);
    }
    if (loop->sigfd >= 0)
        close(loop->sigfd);
    if (loop->evfd >= 0)
        close(loop->evfd);
    if (loop->epfd >= 0)
        close(loop->epfd);
    pthread_mutex_destroy(&loop->post_lock);
    free(loop);
}

/* ------------------------------------------------------------------ io */

void dp_io_init(struct dp_io *io, int fd, dp_io_cb *cb, void *arg)
{
    io->fd = fd;
    io->events = 0;
    io->registered = false;
    io->cb = cb;
    io->arg = arg;
}

static uint32_t to_epoll(unsigned events)
{
    uint32_t e = 0;

    if (events & DP_EV_READ)
        e |= EPOLLIN;
    if (events & DP_EV_WRITE)
        e |= EPOLLOUT;
    return e;
}

/* An io that asks for no events is kept out of epoll altogether: epoll reports EPOLLERR and
 * EPOLLHUP even with an empty mask, and level-triggered that would spin the loop. */
static int epoll_apply(struct dp_loop *loop, struct dp_io *io, unsigned old, unsigned events)
{
    struct epoll_event ev = {.events = to_epoll(events), .data.ptr = io};
    int op;

    if (old == 0 && events == 0)
        return 0;
    if (old == 0)
        op = EPOLL_CTL_ADD;
    else if (events == 0)
        op = EPOLL_CTL_DEL;
    else
        op = EPOLL_CTL_MOD;
    if (epoll_ctl(loop->epfd, op, io->fd, &ev) < 0)
        return -errno;
    return 0;
}

/* Drop the events harvested for io that have not been dispatched yet in this round. */
static void scrub_pending(struct dp_loop *loop, struct dp_io *io)
{
    int i;

    if (loop->dispatch_idx < 0)
        return;
    for (i = loop->dispatch_idx + 1; i < loop->nevents; i++) {
        if (loop->events[i].data.ptr == io)
            loop->events[i].data.ptr = NULL;
    }
}

int dp_loop_add_io(struct dp_loop *loop, struct dp_io *io, unsigned events)
{
    int r;

    if (io->registered)
        return -EEXIST;
    if (io->fd < 0 || (events & ~(DP_EV_READ | DP_EV_WRITE)) != 0)
        return -EINVAL;
    r = epoll_apply(loop, io, 0, events);
    if (r < 0)
        return r;
    io->events = events;
    io->registered = true;
    return 0;
}

int dp_loop_mod_io(struct dp_loop *loop, struct dp_io *io, unsigned events)
{
    int r;

    if (!io->registered)
        return -ENOENT;
    if ((events & ~(DP_EV_READ | DP_EV_WRITE)) != 0)
        return -EINVAL;
    if (events == io->events)
        return 0;
    r = epoll_apply(loop, io, io->events, events);
    if (r < 0)
        return r;
    io->events = events;
    /* readiness harvested for the old mask may no longer be wanted; the next round reports
     * the current state again (level-triggered), so dropping it loses nothing */
    if (events == 0)
        scrub_pending(loop, io);
    return 0;
}

void dp_loop_del_io(struct dp_loop *loop, struct dp_io *io)
{
    if (!io->registered)
        return;
    /* failure (e.g. the fd was already closed) leaves nothing registered we could remove */
    (void)epoll_apply(loop, io, io->events, 0);
    io->registered = false;
    io->events = 0;
    scrub_pending(loop, io);
}

static int dispatch_io(struct dp_loop *loop)
{
    int i, ran = 0;

    for (i = 0; i < loop->nevents; i++) {
        struct dp_io *io = loop->events[i].data.ptr;
        uint32_t e = loop->events[i].events;
        unsigned ev = 0;

        if (io == NULL)
            continue;
        loop->dispatch_idx = i;
        if (e & EPOLLIN)
            ev |= DP_EV_READ;
        if (e & EPOLLOUT)
            ev |= DP_EV_WRITE;
        if (e & (EPOLLERR | EPOLLHUP))
            ev |= DP_EV_ERROR;
        /* only report what is still asked for; errors always */
        ev &= io->events | DP_EV_ERROR;
        if (ev == 0 || !io->registered)
            continue;
        io->cb(loop, io->fd, ev, io->arg);
        /* the internal eventfd/signalfd ios count the callbacks they run, not themselves */
        if (io != &loop->ev_io && io != &loop->sig_io)
            ran++;
    }
    loop->dispatch_idx = -1;
    loop->nevents = 0;
    return ran;
}

/* ------------------------------------------------------------------ timers */

void dp_timer_init(struct dp_timer *t, dp_timer_cb *cb, void *arg)
{
    dp_list_init(&t->link);
    t->expire_ms = 0;
    t->cb = cb;
    t->arg = arg;
}

static void slot_mark(struct dp_loop *loop, unsigned slot)
{
    loop->occupied[slot / 64] |= 1ull << (slot % 64);
}

void dp_timer_arm(struct dp_loop *loop, struct dp_timer *t, uint64_t delay_ms)
{
    if (!loop->in_round)
        loop->now = read_clock(loop);
    if (delay_ms > MAX_DELAY_MS)
        delay_ms = MAX_DELAY_MS;
    dp_timer_arm_at(loop, t, loop->now + delay_ms);
}

void dp_timer_arm_at(struct dp_loop *loop, struct dp_timer *t, uint64_t expire)
{
    unsigned slot;

    /* between rounds (set-up code before dp_loop_run, a caller driving run_once by hand)
     * the cached time can be arbitrarily old: refresh it so delays count from now */
    if (!loop->in_round)
        loop->now = read_clock(loop);
    if (expire > loop->now + MAX_DELAY_MS)
        expire = loop->now + MAX_DELAY_MS;
    /* never before the first unprocessed millisecond, or the visit order would skip it */
    if (expire < loop->cur)
        expire = loop->cur;
    dp_list_del(&t->link);
    t->expire_ms = expire;
    slot = (unsigned)(expire & WHEEL_MASK);
    dp_list_add_tail(&loop->slots[slot], &t->link);
    slot_mark(loop, slot);
}

void dp_timer_cancel(struct dp_timer *t)
{
    dp_list_del(&t->link);
}

/*
 * Distance (in ms, < WHEEL_SLOTS) from `from` to the next slot whose bit is set, looking at
 * most `span` slots ahead (span <= WHEEL_SLOTS). Returns -1 if none.
 */
static int64_t next_marked(const struct dp_loop *loop, uint64_t from, uint64_t span)
{
    uint64_t dist = 0;

    while (dist < span) {
        unsigned slot = (unsigned)((from + dist) & WHEEL_MASK);
        unsigned bit = slot % 64;
        uint64_t word = loop->occupied[slot / 64] >> bit;

        if (word != 0) {
            uint64_t d = dist + (uint64_t)__builtin_ctzll(word);
            return d < span ? (int64_t)d : -1;
        }
        dist += 64 - bit;
    }
    return -1;
}

static int run_timers(struct dp_loop *loop)
{
    uint64_t now = loop->now;
    int ran = 0;

    while (loop->cur <= now) {
        uint64_t span = DP_MIN(now - loop->cur + 1, (uint64_t)WHEEL_SLOTS);
        int64_t d = next_marked(loop, loop->cur, span);
        struct dp_list due, *pos, *tmp;
        uint64_t at;
        unsigned slot;

        if (d < 0) {
            /* nothing marked in the window; a full revolution without a mark means the
             * wheel is empty (marks are a superset of occupied slots) */
            loop->cur = span == WHEEL_SLOTS ? now + 1 : loop->cur + span;
            continue;
        }
        at = loop->cur + (uint64_t)d;
        slot = (unsigned)(at & WHEEL_MASK);
        loop->occupied[slot / 64] &= ~(1ull << (slot % 64));
        /* separate the due timers before running any callback, so re-arms during the
         * callbacks cannot interleave with the ones that stay */
        dp_list_init(&due);
        dp_list_for_each_safe(pos, tmp, &loop->slots[slot]) {
            struct dp_timer *t = dp_container_of(pos, struct dp_timer, link);
            if (t->expire_ms <= at) {
                dp_list_del(pos);
                dp_list_add_tail(&due, pos);
            }
        }
        if (!dp_list_empty(&loop->slots[slot]))
            slot_mark(loop, slot);
        /* arms from the callbacks below land at `at + 1` or later */
        loop->cur = at + 1;
        while (!dp_list_empty(&due)) {
            struct dp_timer *t = dp_container_of(due.next, struct dp_timer, link);
            dp_list_del(&t->link);
            t->cb(loop, t->arg);
            ran++;
        }
    }
    return ran;
}

/* Milliseconds until the next slot that may hold a timer, or -1 if there is none. An early
 * answer (slot occupied by a timer of a later revolution) only costs an empty wake-up. The
 * wait is measured from a fresh clock reading, not the round's cached time, so callbacks that
 * ran long do not make timers late. */
static int64_t timer_wait(struct dp_loop *loop)
{
    uint64_t t = read_clock(loop);

    for (;;) {
        int64_t d = next_marked(loop, loop->cur, WHEEL_SLOTS);
        uint64_t at;
        unsigned slot;

        if (d < 0)
            return -1;
        at = loop->cur + (uint64_t)d;
        slot = (unsigned)(at & WHEEL_MASK);
        if (dp_list_empty(&loop->slots[slot])) {
            loop->occupied[slot / 64] &= ~(1ull << (slot % 64));
            continue;
        }
        return at > t ? (int64_t)(at - t) : 0;
    }
}

/* ------------------------------------------------------------------ deferred stage */

void dp_defer_init(struct dp_defer *d, dp_defer_cb *cb, void *arg)
{
    dp_list_init(&d->link);
    d->cb = cb;
    d->arg = arg;
}

void dp_loop_defer(struct dp_loop *loop, struct dp_defer *d)
{
    if (dp_list_linked(&d->link))
        return;
    dp_list_add_tail(&loop->defers, &d->link);
}

void dp_defer_cancel(struct dp_defer *d)
{
    dp_list_del(&d->link);
}

static int run_defers(struct dp_loop *loop)
{
    struct dp_list batch;
    int ran = 0;

    if (dp_list_empty(&loop->defers))
        return 0;
    /* only what was pending when the stage began: a defer scheduled from a defer callback
     * runs next round (with a zero wait), so a self-rescheduling callback cannot starve io */
    batch = loop->defers;
    batch.next->prev = &batch;
    batch.prev->next = &batch;
    dp_list_init(&loop->defers);
    while (!dp_list_empty(&batch)) {
        struct dp_defer *d = dp_container_of(batch.next, struct dp_defer, link);
        dp_list_del(&d->link);
        d->cb(loop, d->arg);
        ran++;
    }
    return ran;
}

/* ------------------------------------------------------------------ cross-thread */

void dp_loop_wake(struct dp_loop *loop)
{
    uint64_t one = 1;
    ssize_t n;

    /* EAGAIN means the counter is saturated: the loop is already due to wake */
    do {
        n = write(loop->evfd, &one, sizeof(one));
    } while (n < 0 && errno == EINTR);
}

int dp_loop_post(struct dp_loop *loop, dp_post_cb *cb, void *arg)
{
    struct post *p = malloc(sizeof(*p));

    if (p == NULL)
        return -ENOMEM;
    p->next = NULL;
    p->cb = cb;
    p->arg = arg;
    pthread_mutex_lock(&loop->post_lock);
    *loop->post_tail = p;
    loop->post_tail = &p->next;
    pthread_mutex_unlock(&loop->post_lock);
    dp_loop_wake(loop);
    return 0;
}

void dp_loop_stop(struct dp_loop *loop)
{
    atomic_store(&loop->stop, true);
    dp_loop_wake(loop);
}

static void on_eventfd(struct dp_loop *loop, int fd, unsigned events, void *arg)
{
    struct post *p, *next;
    uint64_t cnt;
    ssize_t n;

    (void)events;
    (void)arg;
    do {
        n = read(fd, &cnt, sizeof(cnt));
    } while (n < 0 && errno == EINTR);
    /* take the whole queue at once; posts made by these callbacks wait for the next round */
    pthread_mutex_lock(&loop->post_lock);
    p = loop->post_head;
    loop->post_head = NULL;
    loop->post_tail = &loop->post_head;
    pthread_mutex_unlock(&loop->post_lock);
    for (; p != NULL; p = next) {
        next = p->next;
        p->cb(loop, p->arg);
        free(p);
        loop->ran++;
    }
}

/* ------------------------------------------------------------------ signals */

int dp_loop_add_signal(struct dp_loop *loop, int signo, dp_signal_cb *cb, void *arg)
{
    sigset_t block;
    int fd, r;

    if (signo <= 0 || signo >= NSIG_MAX || signo == SIGKILL || signo == SIGSTOP || cb == NULL)
        return -EINVAL;
    sigemptyset(&block);
    sigaddset(&block, signo);
    r = pthread_sigmask(SIG_BLOCK, &block, NULL);
    if (r != 0)
        return -r;
    sigaddset(&loop->sigmask, signo);
    fd = signalfd(loop->sigfd, &loop->sigmask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) {
        r = -errno;
        sigdelset(&loop->sigmask, signo);
        return r;
    }
    if (loop->sigfd < 0) {
        loop->sigfd = fd;
        dp_io_init(&loop->sig_io, fd, on_signalfd, NULL);
        r = dp_loop_add_io(loop, &loop->sig_io, DP_EV_READ);
        if (r < 0) {
            close(fd);
            loop->sigfd = -1;
            sigdelset(&loop->sigmask, signo);
            return r;
        }
    }
    loop->sig[signo].cb = cb;
    loop->sig[signo].arg = arg;
    return 0;
}

static void on_signalfd(struct dp_loop *loop, int fd, unsigned events, void *arg)
{
    struct signalfd_siginfo si[8];
    ssize_t n;
    size_t i;

    (void)events;
    (void)arg;
    for (;;) {
        n = read(fd, si, sizeof(si));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        for (i = 0; i < (size_t)n / sizeof(si[0]); i++) {
            unsigned signo = si[i].ssi_signo;
            if (signo < NSIG_MAX && loop->sig[signo].cb != NULL) {
                loop->sig[signo].cb(loop, (int)signo, loop->sig[signo].arg);
                loop->ran++;
            }
        }
    }
}

/* ------------------------------------------------------------------ running */

int dp_loop_run_once(struct dp_loop *loop, int timeout_ms)
{
    int64_t wait;
    int n, ran = 0;

    if (!dp_list_empty(&loop->defers) || atomic_load(&loop->stop)) {
        wait = 0;
    } else {
        wait = timer_wait(loop);
        if (timeout_ms >= 0 && (wait < 0 || wait > timeout_ms))
            wait = timeout_ms;
        if (wait > INT32_MAX)
            wait = INT32_MAX;
    }
    n = epoll_wait(loop->epfd, loop->events, MAX_EVENTS, (int)wait);
    if (n < 0) {
        if (errno != EINTR)
            return -errno;
        n = 0;
    }
    loop->now = read_clock(loop);
    loop->nevents = n;
    loop->ran = 0;
    loop->in_round = true;
    ran += dispatch_io(loop);
    ran += loop->ran;
    ran += run_timers(loop);
    ran += run_defers(loop);
    loop->in_round = false;
    return ran;
}

int dp_loop_run(struct dp_loop *loop)
{
    int r;

    while (!atomic_load(&loop->stop)) {
        r = dp_loop_run_once(loop, -1);
        if (r < 0) {
            atomic_store(&loop->stop, false);
            return r;
        }
    }
    atomic_store(&loop->stop, false);
    return 0;
}
