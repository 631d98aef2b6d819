/* test_relay.c — byte relay over socketpairs: both directions, half-close, reset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop.h"
#include "node-agent/relay.h"

struct result {
    bool done;
    int err;
    uint64_t ab, ba;
};

static void on_done(struct na_relay *r, int err, uint64_t ab, uint64_t ba, void *arg)
{
    struct result *res = arg;
    (void)r;
    res->done = true;
    res->err = err;
    res->ab = ab;
    res->ba = ba;
}

static void pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
}

static void nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void run_until(struct dp_loop *l, bool *flag)
{
    for (int i = 0; i < 2000 && !*flag; i++)
        dp_loop_run_once(l, 10);
}

static void test_both_ways_and_half_close(void **state)
{
    (void)state;
    struct dp_loop *l = NULL;
    assert_int_equal(dp_loop_new(&l), 0);
    int client[2], upstream[2];
    pair(client);   /* client[0] = app client, client[1] = relay side a */
    pair(upstream); /* upstream[0] = relay side b, upstream[1] = app server */
    nonblock(client[1]);
    nonblock(upstream[0]);
    struct result res = {0};
    struct na_relay *r = NULL;
    assert_int_equal(na_relay_new(l, client[1], upstream[0], on_done, &res, &r), 0);

    /* 1 MB client -> server while the server answers */
    static char big[1 << 20];
    memset(big, 'q', sizeof(big));
    nonblock(client[0]);
    nonblock(upstream[1]);
    size_t sent = 0, got = 0;
    char buf[65536];
    while (got < sizeof(big)) {
        if (sent < sizeof(big)) {
            ssize_t n = write(client[0], big + sent, sizeof(big) - sent);
            if (n > 0)
                sent += (size_t)n;
        }
        dp_loop_run_once(l, 1);
        ssize_t n = read(upstream[1], buf, sizeof(buf));
        if (n > 0)
            got += (size_t)n;
    }
    assert_int_equal(got, sizeof(big));
    /* half-close from the client: the server sees EOF but can still answer */
    shutdown(client[0], SHUT_WR);
    for (int i = 0; i < 50; i++)
        dp_loop_run_once(l, 1);
    assert_int_equal(read(upstream[1], buf, sizeof(buf)), 0);
    assert_int_equal(write(upstream[1], "answer", 6), 6);
    close(upstream[1]);
    run_until(l, &res.done);
    assert_true(res.done);
    assert_int_equal(res.err, 0);
    assert_int_equal(res.ab, sizeof(big));
    assert_int_equal(res.ba, 6);
    ssize_t n = 0;
    for (int i = 0; i < 100 && n <= 0; i++)
        n = read(client[0], buf, sizeof(buf));
    assert_int_equal(n, 6);
    assert_memory_equal(buf, "answer", 6);
    na_relay_free(r);
    close(client[0]);
    dp_loop_free(l);
}

static void test_free_before_done(void **state)
{
    (void)state;
    struct dp_loop *l = NULL;
    assert_int_equal(dp_loop_new(&l), 0);
    int a[2], b[2];
    pair(a);
    pair(b);
    nonblock(a[1]);
    nonblock(b[0]);
    struct result res = {0};
    struct na_relay *r = NULL;
    assert_int_equal(na_relay_new(l, a[1], b[0], on_done, &res, &r), 0);
    na_relay_free(r);
    /* peers see the close */
    char c;
    assert_true(read(a[0], &c, 1) <= 0);
    dp_loop_run_once(l, 0);
    assert_false(res.done);
    close(a[0]);
    close(b[1]);
    dp_loop_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_both_ways_and_half_close),
            cmocka_unit_test(test_free_before_done),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
