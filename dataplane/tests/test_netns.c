/* test_netns.c — netns helpers. The root cases create a throw-away netns with unshare(2)
 * (no name, nothing to clean up: it dies with its last fd) and skip when not permitted. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "netns.h"

/* New anonymous netns; the calling thread is back in its own netns on return. */
static int new_netns(void)
{
    int self, fd = -1;
    assert_int_equal(dp_netns_open_current(&self), 0);
    if (unshare(CLONE_NEWNET) < 0) {
        close(self);
        return -1;
    }
    assert_int_equal(dp_netns_open_current(&fd), 0);
    assert_int_equal(setns(self, CLONE_NEWNET), 0);
    close(self);
    return fd;
}

static void test_open_errors(void **state)
{
    (void)state;
    int fd = -1;
    assert_int_equal(dp_netns_open_path("/nonexistent/amb-netns", &fd), -ENOENT);
    assert_int_equal(dp_netns_open_path("", &fd), -EINVAL);
    assert_int_equal(dp_netns_open_path(NULL, &fd), -EINVAL);
    assert_int_equal(dp_netns_open_path("/proc/self/status", &fd), -EINVAL); /* not nsfs */
    assert_int_equal(dp_netns_open_path("/proc/self/ns/uts", &fd), -EINVAL); /* not a netns */
    char longp[DP_NETNS_PATH_MAX + 10];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = 0;
    assert_int_equal(dp_netns_open_path(longp, &fd), -EINVAL);
    assert_int_equal(dp_netns_open_pid(0, &fd), -EINVAL);
    assert_int_equal(fd, -1); /* untouched on failure */
}

static void test_open_self(void **state)
{
    (void)state;
    int a, b;
    uint64_t ia, ib;
    assert_int_equal(dp_netns_open_current(&a), 0);
    assert_int_equal(dp_netns_open_pid(getpid(), &b), 0);
    assert_int_equal(dp_netns_check_fd(a), 0);
    assert_int_equal(dp_netns_same(a, b), 1);
    assert_int_equal(dp_netns_inode(a, &ia), 0);
    assert_int_equal(dp_netns_inode(b, &ib), 0);
    assert_true(ia == ib);
    int notns = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    assert_true(notns >= 0);
    assert_int_equal(dp_netns_check_fd(notns), -EINVAL);
    close(notns);
    close(a);
    close(b);
}

static void test_fd_passing(void **state)
{
    (void)state;
    int sv[2], ns, got = -1;
    char buf[16];
    size_t n = 0;
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(dp_netns_open_current(&ns), 0);

    assert_int_equal(dp_netns_send_fd(sv[0], ns, "hello", 5), 0);
    assert_int_equal(dp_netns_recv_fd(sv[1], buf, sizeof(buf), &n, &got), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "hello", 5);
    assert_true(got >= 0 && got != ns);
    assert_int_equal(dp_netns_check_fd(got), 0);
    assert_int_equal(dp_netns_same(ns, got), 1);
    assert_true(fcntl(got, F_GETFD) & FD_CLOEXEC);
    close(got);

    /* empty payload still carries the fd (one NUL byte) */
    assert_int_equal(dp_netns_send_fd(sv[0], ns, NULL, 0), 0);
    assert_int_equal(dp_netns_recv_fd(sv[1], buf, sizeof(buf), &n, &got), 0);
    assert_int_equal(n, 1);
    close(got);

    /* plain message without fd */
    assert_int_equal(send(sv[0], "x", 1, 0), 1);
    assert_int_equal(dp_netns_recv_fd(sv[1], buf, sizeof(buf), &n, &got), 0);
    assert_int_equal(got, -1);

    /* truncated datagram is refused and its fd not leaked */
    assert_int_equal(dp_netns_send_fd(sv[0], ns, "0123456789", 10), 0);
    got = -7;
    assert_int_equal(dp_netns_recv_fd(sv[1], buf, 4, &n, &got), -EMSGSIZE);
    assert_int_equal(got, -7);

    assert_int_equal(dp_netns_send_fd(sv[0], -1, "x", 1), -EBADF);

    /* peer closed */
    close(sv[0]);
    assert_int_equal(dp_netns_recv_fd(sv[1], buf, sizeof(buf), &n, &got), -ECONNRESET);
    close(sv[1]);
    close(ns);
}

struct probe {
    int expect_ns;
    int same;
};

static int check_inside(void *arg)
{
    struct probe *p = arg;
    int cur;
    if (dp_netns_open_current(&cur) < 0)
        return -EIO;
    p->same = dp_netns_same(cur, p->expect_ns);
    close(cur);
    return 42;
}

static int fail_inside(void *arg)
{
    (void)arg;
    return -EPROTO;
}

static void test_run_inside_root(void **state)
{
    (void)state;
    int ns = new_netns();
    if (ns < 0)
        skip();
    int self;
    assert_int_equal(dp_netns_open_current(&self), 0);
    assert_int_equal(dp_netns_same(self, ns), 0);

    struct probe p = {.expect_ns = ns, .same = -1};
    assert_int_equal(dp_netns_run(ns, check_inside, &p), 42);
    assert_int_equal(p.same, 1);
    /* back home on the success path ... */
    int now;
    assert_int_equal(dp_netns_open_current(&now), 0);
    assert_int_equal(dp_netns_same(now, self), 1);
    close(now);
    /* ... and on the error path */
    assert_int_equal(dp_netns_run(ns, fail_inside, NULL), -EPROTO);
    assert_int_equal(dp_netns_open_current(&now), 0);
    assert_int_equal(dp_netns_same(now, self), 1);
    close(now);
    /* entering something that is not a netns fails without calling fn */
    int notns = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    p.same = -1;
    assert_true(dp_netns_run(notns, check_inside, &p) < 0);
    assert_int_equal(p.same, -1);
    close(notns);
    close(self);
    close(ns);
}

static void test_socket_in_other_netns_root(void **state)
{
    (void)state;
    int ns = new_netns();
    if (ns < 0)
        skip();
    /* SIOCGSKNS hands back the netns a socket lives in. */
    int in_ns = -1, here, sns;
    assert_int_equal(dp_netns_socket(ns, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0, &in_ns), 0);
    assert_true(fcntl(in_ns, F_GETFD) & FD_CLOEXEC);
    assert_true(fcntl(in_ns, F_GETFL) & O_NONBLOCK);
    sns = ioctl(in_ns, SIOCGSKNS);
    assert_true(sns >= 0);
    assert_int_equal(dp_netns_same(sns, ns), 1);
    close(sns);
    here = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sns = ioctl(here, SIOCGSKNS);
    assert_true(sns >= 0);
    assert_int_equal(dp_netns_same(sns, ns), 0);
    close(sns);
    close(here);
    close(in_ns);

    int bad = -1;
    assert_true(dp_netns_socket(ns, 12345, SOCK_STREAM, 0, &bad) < 0);
    assert_int_equal(bad, -1);
    close(ns);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_open_errors),
            cmocka_unit_test(test_open_self),
            cmocka_unit_test(test_fd_passing),
            cmocka_unit_test(test_run_inside_root),
            cmocka_unit_test(test_socket_in_other_netns_root),
    };
    return cmocka_run_group_tests_name("netns", tests, NULL, NULL);
}
