/*
 * buf.c — growable byte buffers with a hard limit.
 *
 * Growth is geometric (doubling, capped at the limit) so appends are amortised O(1). Before
 * growing we compact: if the bytes already consumed at the front make enough room, a memmove
 * is cheaper than a realloc and keeps memory flat for streaming use (read, parse, consume).
 */
#include "buf.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

/* Chunk that dp_buf_read_fd grows by when the buffer is full (bounded by `max` and `limit`). */
#define READ_CHUNK 16384u

int dp_buf_new(size_t initial, size_t limit, struct dp_buf **ret_b)
{
    struct dp_buf *b;

    if (initial > limit || initial > SIZE_MAX - sizeof(*b))
        return -EINVAL;
    b = malloc(sizeof(*b) + initial);
    if (b == NULL)
        return -ENOMEM;
    b->off = 0;
    b->len = 0;
    b->cap = initial;
    b->limit = limit;
    *ret_b = b;
    return 0;
}

void dp_buf_free(struct dp_buf *b)
{
    free(b);
}

int dp_buf_reserve(struct dp_buf **bp, size_t min)
{
    struct dp_buf *b = *bp, *nb;
    size_t need, ncap;

    if (b->cap - b->off - b->len >= min)
        return 0;
    if (min > b->limit || b->len > b->limit - min)
        return -EMSGSIZE;
    need = b->len + min;
    if (need <= b->cap) {
        /* enough space once the consumed front is reclaimed */
        memmove(b->data, b->data + b->off, b->len);
        b->off = 0;
        return 0;
    }
    ncap = b->cap < 64 ? 64 : b->cap;
    while (ncap < need && ncap <= b->limit / 2)
        ncap *= 2;
    if (ncap < need || ncap > b->limit)
        ncap = DP_MAX(need, DP_MIN(ncap, b->limit));
    /* compact first so realloc copies only live bytes' prefix */
    if (b->off > 0) {
        memmove(b->data, b->data + b->off, b->len);
        b->off = 0;
    }
    if (ncap > SIZE_MAX - sizeof(*b))
        return -ENOMEM;
    nb = realloc(b, sizeof(*b) + ncap);
    if (nb == NULL)
        return -ENOMEM;
    nb->cap = ncap;
    *bp = nb;
    return 0;
}

void dp_buf_commit(struct dp_buf *b, size_t n)
{
    DP_BUG_ON(n > b->cap - b->off - b->len);
    b->len += n;
}

int dp_buf_append(struct dp_buf **bp, const void *p, size_t n)
{
    int r;

    if (n == 0)
        return 0;
    r = dp_buf_reserve(bp, n);
    if (r < 0)
        return r;
    memcpy(dp_buf_tail(*bp), p, n);
    (*bp)->len += n;
    return 0;
}

int dp_buf_append_str(struct dp_buf **bp, const char *s)
{
    return dp_buf_append(bp, s, strlen(s));
}

int dp_buf_vappendf(struct dp_buf **bp, const char *fmt, va_list ap)
{
    struct dp_buf *b = *bp;
    va_list aq;
    char *tmp;
    int n, r;

    va_copy(aq, ap);
    n = vsnprintf(dp_buf_tail(b), dp_buf_room(b), fmt, aq);
    va_end(aq);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n < dp_buf_room(b)) {
        b->len += (size_t)n;
        return 0;
    }
    /* vsnprintf needs room for the NUL, which must not count against the limit */
    if (b->len <= b->limit && (size_t)n < b->limit - b->len) {
        r = dp_buf_reserve(bp, (size_t)n + 1);
        if (r < 0)
            return r;
        b = *bp;
        va_copy(aq, ap);
        vsnprintf(dp_buf_tail(b), (size_t)n + 1, fmt, aq);
        va_end(aq);
        b->len += (size_t)n;
        return 0;
    }
    if (b->len > b->limit || (size_t)n > b->limit - b->len)
        return -EMSGSIZE;
    /* exactly fills the buffer to its limit: format aside */
    tmp = malloc((size_t)n + 1);
    if (tmp == NULL)
        return -ENOMEM;
    va_copy(aq, ap);
    vsnprintf(tmp, (size_t)n + 1, fmt, aq);
    va_end(aq);
    r = dp_buf_append(bp, tmp, (size_t)n);
    free(tmp);
    return r;
}

int dp_buf_appendf(struct dp_buf **bp, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = dp_buf_vappendf(bp, fmt, ap);
    va_end(ap);
    return r;
}

void dp_buf_consume(struct dp_buf *b, size_t n)
{
    DP_BUG_ON(n > b->len);
    b->len -= n;
    b->off = b->len == 0 ? 0 : b->off + n;
}

void dp_buf_reset(struct dp_buf *b)
{
    b->off = 0;
    b->len = 0;
}

ssize_t dp_buf_read_fd(struct dp_buf **bp, int fd, size_t max)
{
    struct dp_buf *b = *bp;
    size_t want, room;
    ssize_t n;
    int r;

    if (b->len >= b->limit)
        return -EMSGSIZE;
    want = DP_MIN(max, b->limit - b->len);
    if (want == 0)
        return -EINVAL;
    room = dp_buf_room(b);
    if (room == 0 || (room < want && room < READ_CHUNK)) {
        r = dp_buf_reserve(bp, DP_MIN(want, DP_MAX((size_t)READ_CHUNK, b->cap)));
        if (r < 0)
            return r;
        b = *bp;
        room = dp_buf_room(b);
    }
    do {
        n = read(fd, dp_buf_tail(b), DP_MIN(room, want));
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    b->len += (size_t)n;
    return n;
}

ssize_t dp_buf_write_fd(struct dp_buf *b, int fd)
{
    ssize_t n;

    if (b->len == 0)
        return 0;
    /* send() with MSG_NOSIGNAL so a reset peer is -EPIPE, not SIGPIPE; write() for non-sockets */
    do {
        n = send(fd, dp_buf_head(b), b->len, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno == ENOTSOCK) {
        do {
            n = write(fd, dp_buf_head(b), b->len);
        } while (n < 0 && errno == EINTR);
    }
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    dp_buf_consume(b, (size_t)n);
    return n;
}
