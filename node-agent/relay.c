/*
 * relay.c — two half-duplex pumps (a->b, b->a) sharing one struct. Level-triggered: a side
 * asks for READ while its outgoing buffer has room and it has not seen EOF, and for WRITE
 * while the buffer towards it holds bytes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "relay.h"

#define RELAY_BUF (64u * 1024u)

struct pump {
    char *buf; /* lazily allocated; freed when drained */
    size_t off, len;
    bool eof;     /* source side read EOF */
    bool shut;    /* destination side shut down for writing */
    uint64_t bytes;
};

struct side {
    int fd;
    struct dp_io io;
    struct na_relay *r;
};

struct na_relay {
    struct dp_loop *loop;
    struct side a, b;
    struct pump ab, ba;
    int err;
    bool done;
    struct dp_defer defer;
    na_relay_done_cb *cb;
    void *arg;
};

void na_close_rst(int fd)
{
    if (fd < 0)
        return;
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

struct late_rst {
    struct dp_io io;
    struct dp_timer timer;
    struct dp_defer free;
    struct dp_loop *loop;
};

static void late_rst_free(struct dp_loop *loop, void *arg)
{
    (void)loop;
    free(arg);
}

static void late_rst_fire(struct late_rst *l)
{
    if (l->io.fd < 0)
        return;
    dp_loop_del_io(l->loop, &l->io);
    dp_timer_cancel(&l->timer);
    na_close_rst(l->io.fd);
    l->io.fd = -1;
    dp_loop_defer(l->loop, &l->free); /* never free inside our own callback */
}

static void on_late_rst_io(struct dp_loop *loop, int fd, unsigned events, void *arg)
{
    (void)loop, (void)fd, (void)events;
    late_rst_fire(arg);
}

static void on_late_rst_timeout(struct dp_loop *loop, void *arg)
{
    (void)loop;
    late_rst_fire(arg);
}

void na_close_rst_after_data(struct dp_loop *loop, int fd, unsigned timeout_ms)
{
    struct late_rst *l = calloc(1, sizeof(*l));
    if (!l) {
        na_close_rst(fd);
        return;
    }
    l->loop = loop;
    dp_io_init(&l->io, fd, on_late_rst_io, l);
    dp_timer_init(&l->timer, on_late_rst_timeout, l);
    dp_defer_init(&l->free, late_rst_free, l);
    if (dp_loop_add_io(loop, &l->io, DP_EV_READ) < 0) {
        na_close_rst(fd);
        free(l);
        return;
    }
    dp_timer_arm(loop, &l->timer, timeout_ms);
}

static bool pump_finished(const struct pump *p)
{
    return p->eof && p->len == 0 && p->shut;
}

static void update(struct na_relay *r);

static void fail(struct na_relay *r, int err)
{
    if (r->done)
        return;
    r->err = err ? err : -EIO;
    r->done = true;
    dp_loop_del_io(r->loop, &r->a.io);
    dp_loop_del_io(r->loop, &r->b.io);
    na_close_rst(r->a.fd);
    na_close_rst(r->b.fd);
    r->a.fd = r->b.fd = -1;
    dp_loop_defer(r->loop, &r->defer);
}

/* Move bytes src -> dst through p. Returns 0 or -errno (fatal). */
static int pump_run(struct pump *p, int src, int dst)
{
    for (int round = 0; round < 4; round++) {
        bool progress = false;
        if (!p->eof && p->len == 0) {
            if (!p->buf) {
                p->buf = malloc(RELAY_BUF);
                if (!p->buf)
                    return -ENOMEM;
            }
            p->off = 0;
            ssize_t n = read(src, p->buf, RELAY_BUF);
            if (n > 0) {
                p->len = (size_t)n;
                progress = true;
            } else if (n == 0) {
                p->eof = true;
                progress = true;
            } else if (errno != EAGAIN && errno != EINTR) {
                return -errno;
            }
        }
        if (p->len > 0) {
            ssize_t n = send(dst, p->buf + p->off, p->len, MSG_NOSIGNAL);
            if (n > 0) {
                p->off += (size_t)n;
                p->len -= (size_t)n;
                p->bytes += (uint64_t)n;
                progress = true;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                return -errno;
            }
        }
        if (p->len == 0 && p->eof && !p->shut) {
            (void)shutdown(dst, SHUT_WR);
            p->shut = true;
        }
        if (p->len == 0 && p->buf) {
            free(p->buf);
            p->buf = NULL;
        }
        if (!progress || p->len > 0)
            break;
    }
    return 0;
}

static void on_io(struct dp_loop *loop, int fd, unsigned events, void *arg)
{
    struct side *s = arg;
    struct na_relay *r = s->r;
    (void)loop;
    (void)fd;
    (void)events;
    if (r->done)
        return;
    int ret = pump_run(&r->ab, r->a.fd, r->b.fd);
    if (ret == 0)
        ret = pump_run(&r->ba, r->b.fd, r->a.fd);
    if (ret < 0) {
        fail(r, ret);
        return;
    }
    update(r);
}

static void update(struct na_relay *r)
{
    if (pump_finished(&r->ab) && pump_finished(&r->ba)) {
        r->done = true;
        dp_loop_del_io(r->loop, &r->a.io);
        dp_loop_del_io(r->loop, &r->b.io);
        dp_loop_defer(r->loop, &r->defer);
        return;
    }
    unsigned ea = 0, eb = 0;
    if (!r->ab.eof && r->ab.len == 0)
        ea |= DP_EV_READ;
    if (!r->ba.eof && r->ba.len == 0)
        eb |= DP_EV_READ;
    if (r->ab.len > 0)
        eb |= DP_EV_WRITE;
    if (r->ba.len > 0)
        ea |= DP_EV_WRITE;
    int ret = dp_loop_mod_io(r->loop, &r->a.io, ea);
    if (ret == 0)
        ret = dp_loop_mod_io(r->loop, &r->b.io, eb);
    if (ret < 0)
        fail(r, ret);
}

static void on_done(struct dp_loop *loop, void *arg)
{
    struct na_relay *r = arg;
    (void)loop;
    r->cb(r, r->err, r->ab.bytes, r->ba.bytes, r->arg);
}

int na_relay_new(struct dp_loop *loop, int fd_a, int fd_b, na_relay_done_cb *cb, void *arg,
                 struct na_relay **ret_r)
{
    struct na_relay *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->loop = loop;
    r->cb = cb;
    r->arg = arg;
    r->a.fd = fd_a;
    r->b.fd = fd_b;
    r->a.r = r->b.r = r;
    dp_io_init(&r->a.io, fd_a, on_io, &r->a);
    dp_io_init(&r->b.io, fd_b, on_io, &r->b);
    dp_defer_init(&r->defer, on_done, r);
    int ret = dp_loop_add_io(loop, &r->a.io, DP_EV_READ);
    if (ret < 0)
        goto fail;
    ret = dp_loop_add_io(loop, &r->b.io, DP_EV_READ);
    if (ret < 0) {
        dp_loop_del_io(loop, &r->a.io);
        goto fail;
    }
    *ret_r = r;
    return 0;
fail:
    free(r);
    return ret;
}

void na_relay_bytes(const struct na_relay *r, uint64_t *ret_a_to_b, uint64_t *ret_b_to_a)
{
    *ret_a_to_b = r->ab.bytes;
    *ret_b_to_a = r->ba.bytes;
}

void na_relay_free(struct na_relay *r)
{
    if (!r)
        return;
    dp_defer_cancel(&r->defer);
    dp_loop_del_io(r->loop, &r->a.io);
    dp_loop_del_io(r->loop, &r->b.io);
    if (!r->done) {
        na_close_rst(r->a.fd);
        na_close_rst(r->b.fd);
    } else {
        if (r->a.fd >= 0)
            close(r->a.fd);
        if (r->b.fd >= 0)
            close(r->b.fd);
    }
    free(r->ab.buf);
    free(r->ba.buf);
    free(r);
}
