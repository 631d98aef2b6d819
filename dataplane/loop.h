/*
 * loop.h — the event loop: epoll + an intrusive timer wheel + deferred stage + cross-thread
 * posts + signals. One loop per thread; nothing here is thread-safe except dp_loop_post(),
 * dp_loop_wake() and dp_loop_stop().
 *
 * All registrations are intrusive: the caller embeds `struct dp_io`, `struct dp_timer`,
 * `struct dp_defer` in its own object, so the loop never allocates per fd or per timer. The
 * caller owns those objects; it must unregister (dp_loop_del_io / dp_timer_cancel) before
 * freeing them. Objects are never freed inside their own callback: mark them and free them
 * from a dp_defer callback, which runs after the current dispatch round.
 *
 * Removing an io from inside any callback is safe: events already harvested for it in the
 * current round are discarded.
 */
#ifndef DP_LOOP_H
#define DP_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"

struct dp_loop;

#define DP_EV_READ  (1u << 0)
#define DP_EV_WRITE (1u << 1)
/** Reported (never requested): error or hang-up on the fd. Readers should read to find out. */
#define DP_EV_ERROR (1u << 2)

typedef void dp_io_cb(struct dp_loop *loop, int fd, unsigned events, void *arg);
typedef void dp_timer_cb(struct dp_loop *loop, void *arg);
typedef void dp_defer_cb(struct dp_loop *loop, void *arg);
typedef void dp_post_cb(struct dp_loop *loop, void *arg);
typedef void dp_signal_cb(struct dp_loop *loop, int signo, void *arg);

struct dp_io {
    int fd;
    unsigned events; /* currently requested DP_EV_READ|DP_EV_WRITE */
    bool registered;
    dp_io_cb *cb;
    void *arg;
};

struct dp_timer {
    struct dp_list link; /* wheel slot membership; self-linked when not armed */
    uint64_t expire_ms;  /* absolute, dp_now_ms() clock */
    dp_timer_cb *cb;
    void *arg;
};

struct dp_defer {
    struct dp_list link;
    dp_defer_cb *cb;
    void *arg;
};

/** Create a loop. Returns 0 and a new loop, or -errno. */
int dp_loop_new(struct dp_loop **ret_loop);
/** Free a loop; accepts NULL. Registered ios/timers are simply forgotten (not called). */
void dp_loop_free(struct dp_loop *loop);

/** Run until dp_loop_stop(). Returns 0, or -errno if epoll_wait fails hard. */
int dp_loop_run(struct dp_loop *loop);
/** One round: wait up to timeout_ms (-1 = until an event or the next timer), dispatch io, then
 *  expired timers, then deferred callbacks. Returns the number of callbacks run, or -errno. */
int dp_loop_run_once(struct dp_loop *loop, int timeout_ms);
/** Ask dp_loop_run() to return after the current round. Thread-safe. */
void dp_loop_stop(struct dp_loop *loop);
/** Cached time of the current round (dp_now_ms() clock). */
uint64_t dp_loop_now(const struct dp_loop *loop);
/** Refresh the cached time, e.g. in a callback that ran long before arming timers. Arming a
 *  timer outside a round (set-up code before dp_loop_run) refreshes it automatically. */
void dp_loop_update_time(struct dp_loop *loop);
/** Replace the loop's millisecond clock (default dp_now_ms) — for tests that drive timers with
 *  a fake clock. NULL restores the default. Call before arming any timer; the cached time is
 *  reloaded at once and after that never goes backwards. */
void dp_loop_set_clock(struct dp_loop *loop, uint64_t (*clock)(void *arg), void *arg);

/* ---- file descriptors */
void dp_io_init(struct dp_io *io, int fd, dp_io_cb *cb, void *arg);
/** Start watching io->fd for `events`. -EEXIST if already registered, -errno from epoll. */
int dp_loop_add_io(struct dp_loop *loop, struct dp_io *io, unsigned events);
/** Change the watched events (0 = keep registered but quiet). */
int dp_loop_mod_io(struct dp_loop *loop, struct dp_io *io, unsigned events);
/** Stop watching; harmless when not registered. Must be called before closing the fd. */
void dp_loop_del_io(struct dp_loop *loop, struct dp_io *io);

/* ---- timers (millisecond resolution, O(1) arm and cancel) */
void dp_timer_init(struct dp_timer *t, dp_timer_cb *cb, void *arg);
/** Arm (or re-arm) t to fire once, delay_ms from the loop's cached time (dp_loop_now();
 *  refreshed first when called outside a round).
 *  Timers fire in order of expiry, ties in arm order. A timer never fires in the same round
 *  pass that armed it: delay 0 from inside a timer callback (or when the round's millisecond
 *  was already processed) fires in the first round at a later millisecond. Delays are clamped
 *  to 2^40 ms. The callback runs with t already disarmed, so it may re-arm or free-by-defer. */
void dp_timer_arm(struct dp_loop *loop, struct dp_timer *t, uint64_t delay_ms);
/** Arm (or re-arm) t to fire at absolute time at_ms (dp_loop_now() clock); a time in the
 *  past fires in the next round, like delay 0. */
void dp_timer_arm_at(struct dp_loop *loop, struct dp_timer *t, uint64_t at_ms);
/** Disarm; harmless when not armed. */
void dp_timer_cancel(struct dp_timer *t);
static inline bool dp_timer_armed(const struct dp_timer *t)
{
    return dp_list_linked(&t->link);
}

/* ---- deferred stage: callbacks run once, after io and timers of the current round.
 * For "as soon as possible" work use a defer, not a 0 ms timer (which may wait up to 1 ms). */
void dp_defer_init(struct dp_defer *d, dp_defer_cb *cb, void *arg);
/** Schedule d (idempotent while pending). */
void dp_loop_defer(struct dp_loop *loop, struct dp_defer *d);
void dp_defer_cancel(struct dp_defer *d);

/* ---- cross-thread */
/** Run cb(loop, arg) on the loop's thread, soon. Thread-safe. 0 or -ENOMEM. */
int dp_loop_post(struct dp_loop *loop, dp_post_cb *cb, void *arg);
/** Wake the loop from another thread without running anything. Thread-safe. */
void dp_loop_wake(struct dp_loop *loop);

/* ---- signals (signalfd; the signal is blocked in the calling thread) */
/** Deliver signo to cb on this loop. Call before starting other threads so they inherit the
 *  blocked mask. 0 or -errno. */
int dp_loop_add_signal(struct dp_loop *loop, int signo, dp_signal_cb *cb, void *arg);

#endif
