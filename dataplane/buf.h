/*
 * buf.h — growable byte buffers with a hard size limit.
 *
 * A dp_buf is one heap block: header + data. Every buffer carries a `limit`; growing past it
 * fails with -EMSGSIZE, so a size a peer controls is always bounded (curl dynbuf "toobig").
 * Functions that may reallocate take `struct dp_buf **` so no stale pointer survives.
 *
 * Data lives in data[off .. off+len). Consuming from the front advances `off` (O(1)); the
 * buffer compacts lazily when it needs room at the tail.
 */
#ifndef DP_BUF_H
#define DP_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <sys/types.h>

struct dp_buf {
    size_t off;   /* start of unread data */
    size_t len;   /* bytes of unread data */
    size_t cap;   /* bytes allocated in data[] */
    size_t limit; /* hard maximum for len (and cap) */
    char data[];
};

/** New empty buffer with room for `initial` bytes that never grows past `limit`.
 *  Returns 0 and a new buffer in *ret_b, or -ENOMEM / -EINVAL (initial > limit). */
int dp_buf_new(size_t initial, size_t limit, struct dp_buf **ret_b);
/** Free a buffer; accepts NULL. */
void dp_buf_free(struct dp_buf *b);

static inline char *dp_buf_head(const struct dp_buf *b)
{
    return (char *)b->data + b->off;
}
static inline char *dp_buf_tail(const struct dp_buf *b)
{
    return (char *)b->data + b->off + b->len;
}
/** Bytes writable at the tail without reallocation or compaction. */
static inline size_t dp_buf_room(const struct dp_buf *b)
{
    return b->cap - b->off - b->len;
}

/** Make sure at least `min` bytes are writable at dp_buf_tail(). May compact or reallocate
 *  (*b may change). -EMSGSIZE if len + min would exceed the limit, -ENOMEM on allocation failure.
 */
int dp_buf_reserve(struct dp_buf **b, size_t min);
/** Mark n bytes written at the tail (after a reserve + write/read()). */
void dp_buf_commit(struct dp_buf *b, size_t n);
/** Append bytes / a NUL-free string / printf output. Same errors as dp_buf_reserve. */
int dp_buf_append(struct dp_buf **b, const void *p, size_t n);
int dp_buf_append_str(struct dp_buf **b, const char *s);
int dp_buf_appendf(struct dp_buf **b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int dp_buf_vappendf(struct dp_buf **b, const char *fmt, va_list ap)
        __attribute__((format(printf, 2, 0)));
/** Drop n bytes from the front (n > len is a bug). */
void dp_buf_consume(struct dp_buf *b, size_t n);
/** Drop all data. */
void dp_buf_reset(struct dp_buf *b);
/** read(2) up to `max` bytes into the tail. Returns bytes read (0 = EOF), -EAGAIN, -EMSGSIZE
 *  when the buffer is at its limit, or another -errno. */
ssize_t dp_buf_read_fd(struct dp_buf **b, int fd, size_t max);
/** write(2) from the head and consume what was written. Returns bytes written or -errno. */
ssize_t dp_buf_write_fd(struct dp_buf *b, int fd);

#endif
