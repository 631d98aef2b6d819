/* test_buf.c — unit tests for dataplane/buf.c */
/* cmocka.h needs setjmp.h, stdarg.h and stddef.h first */
/* clang-format off */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
/* clang-format on */

#include "buf.h"

/* ---- allocation torture (curl-style): fail the Nth allocation made by libambit code.
 * test_buf.ldflags wraps malloc/realloc at link time; cmocka's own allocations (in its shared
 * library) are not affected. */
void *__real_malloc(size_t n);
void *__real_realloc(void *p, size_t n);
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

void *__wrap_realloc(void *p, size_t n)
{
    return alloc_should_fail() ? NULL : __real_realloc(p, n);
}

static void test_new_limits(void **state)
{
    struct dp_buf *b = NULL;

    (void)state;
    assert_int_equal(dp_buf_new(10, 5, &b), -EINVAL);
    assert_null(b);
    assert_int_equal(dp_buf_new(0, 0, &b), 0);
    assert_int_equal(dp_buf_append(&b, "x", 1), -EMSGSIZE);
    assert_int_equal(dp_buf_append(&b, "", 0), 0);
    dp_buf_free(b);
    dp_buf_free(NULL);
}

static void test_append_grow_and_limit(void **state)
{
    struct dp_buf *b;
    char chunk[100];
    size_t i;

    (void)state;
    memset(chunk, 'a', sizeof(chunk));
    assert_int_equal(dp_buf_new(4, 1000, &b), 0);
    for (i = 0; i < 10; i++)
        assert_int_equal(dp_buf_append(&b, chunk, sizeof(chunk)), 0);
    assert_int_equal(b->len, 1000);
    assert_true(b->cap <= b->limit);
    /* exactly at the limit: one more byte is refused and nothing changes */
    assert_int_equal(dp_buf_append(&b, "z", 1), -EMSGSIZE);
    assert_int_equal(b->len, 1000);
    assert_int_equal(dp_buf_reserve(&b, 1), -EMSGSIZE);
    assert_int_equal(dp_buf_reserve(&b, SIZE_MAX), -EMSGSIZE);
    /* consuming frees room again, reclaimed by compaction without growing past the limit */
    dp_buf_consume(b, 300);
    assert_int_equal(b->len, 700);
    assert_memory_equal(dp_buf_head(b), chunk, 100);
    for (i = 0; i < 3; i++)
        assert_int_equal(dp_buf_append(&b, chunk, sizeof(chunk)), 0);
    assert_int_equal(b->len, 1000);
    assert_int_equal(b->off, 0);
    assert_true(b->cap <= b->limit);
    dp_buf_reset(b);
    assert_int_equal(b->len, 0);
    dp_buf_free(b);
}

static void test_reserve_commit_content(void **state)
{
    struct dp_buf *b;
    size_t i;

    (void)state;
    assert_int_equal(dp_buf_new(0, 1 << 20, &b), 0);
    for (i = 0; i < 5000; i++) {
        unsigned char v = (unsigned char)i;
        assert_int_equal(dp_buf_reserve(&b, 1), 0);
        assert_true(dp_buf_room(b) >= 1);
        *dp_buf_tail(b) = (char)v;
        dp_buf_commit(b, 1);
        if (i % 7 == 6)
            dp_buf_consume(b, 3);
    }
    /* the data left is the tail of the sequence, in order */
    for (i = 0; i < b->len; i++) {
        size_t seq = 5000 - b->len + i;
        assert_int_equal((unsigned char)dp_buf_head(b)[i], (unsigned char)seq);
    }
    dp_buf_free(b);
}

static void test_appendf(void **state)
{
    struct dp_buf *b;

    (void)state;
    assert_int_equal(dp_buf_new(2, 12, &b), 0);
    assert_int_equal(dp_buf_appendf(&b, "%s-%d", "ab", 42), 0);
    assert_int_equal(dp_buf_append_str(&b, "|"), 0);
    assert_int_equal(b->len, 6);
    assert_memory_equal(dp_buf_head(b), "ab-42|", 6);
    /* fills exactly to the limit (the NUL vsnprintf needs must not count) */
    assert_int_equal(dp_buf_appendf(&b, "%06d", 123), 0);
    assert_int_equal(b->len, 12);
    assert_memory_equal(dp_buf_head(b), "ab-42|000123", 12);
    assert_int_equal(dp_buf_appendf(&b, "%d", 1), -EMSGSIZE);
    assert_int_equal(b->len, 12);
    dp_buf_consume(b, 12);
    assert_int_equal(dp_buf_appendf(&b, "%s", "0123456789abc"), -EMSGSIZE);
    assert_int_equal(b->len, 0);
    dp_buf_free(b);
}

static void test_fd_io(void **state)
{
    struct dp_buf *in, *out;
    int sv[2];
    ssize_t n;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    assert_int_equal(dp_buf_new(0, 64, &in), 0);
    assert_int_equal(dp_buf_new(0, 1024, &out), 0);
    assert_int_equal(dp_buf_read_fd(&in, sv[0], 100), -EAGAIN);
    static const char msg[] = "hello world, this is more than sixty-four bytes of data for the "
                              "limited reader";
    assert_int_equal(dp_buf_append_str(&out, msg), 0);
    n = dp_buf_write_fd(out, sv[1]);
    assert_int_equal(n, sizeof(msg) - 1);
    assert_int_equal(out->len, 0);
    n = dp_buf_read_fd(&in, sv[0], 10);
    assert_int_equal(n, 10);
    n = dp_buf_read_fd(&in, sv[0], 1000);
    assert_int_equal(n, 54); /* bounded by the limit */
    assert_int_equal(in->len, 64);
    assert_int_equal(dp_buf_read_fd(&in, sv[0], 1000), -EMSGSIZE);
    assert_memory_equal(dp_buf_head(in), "hello world", 11);
    dp_buf_consume(in, 64);
    assert_int_equal(dp_buf_read_fd(&in, sv[0], 1000), sizeof(msg) - 1 - 64);
    close(sv[1]);
    assert_int_equal(dp_buf_read_fd(&in, sv[0], 1000), 0); /* EOF */
    /* writing to a closed peer is an error, not SIGPIPE */
    assert_int_equal(dp_buf_append_str(&out, "x"), 0);
    assert_int_equal(dp_buf_write_fd(out, sv[0]), -EPIPE);
    close(sv[0]);
    /* non-socket fds work too */
    int p[2];
    assert_int_equal(pipe2(p, O_NONBLOCK), 0);
    assert_int_equal(dp_buf_write_fd(out, p[1]), 1);
    dp_buf_reset(in);
    assert_int_equal(dp_buf_read_fd(&in, p[0], 8), 1);
    close(p[0]);
    close(p[1]);
    dp_buf_free(in);
    dp_buf_free(out);
}

/* A scripted sequence of operations, run with allocation N failing for every N: each call
 * either succeeds or returns -ENOMEM, and a failed call leaves the buffer exactly as it was. */
static void test_alloc_torture(void **state)
{
    long n;
    int failures = 0;

    (void)state;
    for (n = 0;; n++) {
        struct dp_buf *b = NULL;
        char model[4096];
        size_t mlen = 0;
        int i, r;

        alloc_count = 0;
        alloc_fail_at = n;
        r = dp_buf_new(1, sizeof(model), &b);
        if (r < 0) {
            assert_int_equal(r, -ENOMEM);
            assert_null(b);
            failures++;
            continue;
        }
        for (i = 0; i < 40; i++) {
            char chunk[64];
            size_t len = 1 + (size_t)(i * 7) % sizeof(chunk);

            memset(chunk, 'a' + i % 26, len);
            if (i % 3 == 2) {
                r = dp_buf_appendf(&b, "%.*s", (int)len, chunk);
            } else {
                r = dp_buf_append(&b, chunk, len);
            }
            if (r < 0) {
                assert_int_equal(r, -ENOMEM);
                failures++;
            } else {
                memcpy(model + mlen, chunk, len);
                mlen += len;
            }
            assert_int_equal(b->len, mlen);
            assert_memory_equal(dp_buf_head(b), model, mlen);
            if (i % 5 == 4 && mlen > 10) {
                dp_buf_consume(b, 10);
                memmove(model, model + 10, mlen - 10);
                mlen -= 10;
            }
        }
        dp_buf_free(b);
        if (alloc_count <= n) /* the script ran without reaching allocation n: done */
            break;
    }
    alloc_fail_at = -1;
    print_message("allocation torture: %ld allocation points, %d -ENOMEM seen\n", n, failures);
    assert_true(n > 5);
    assert_true(failures >= n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_new_limits),
            cmocka_unit_test(test_append_grow_and_limit),
            cmocka_unit_test(test_reserve_commit_content),
            cmocka_unit_test(test_appendf),
            cmocka_unit_test(test_fd_io),
            cmocka_unit_test(test_alloc_torture),
    };
    return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
