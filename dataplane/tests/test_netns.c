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
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "netns.h"
#include "sock.h"

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

/* a netns fd handed over a unix socket (dp_sock's SCM_RIGHTS helpers) is still that netns */
static void test_fd_passing(void **state)
{
    (void)state;
    int sv[2], ns, got = -1;
    char buf[16];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(dp_netns_open_current(&ns), 0);

    assert_int_equal(dp_sock_send_fd(sv[0], ns, "hello", 5), 5);
    assert_int_equal(dp_sock_recv_fd(sv[1], buf, sizeof(buf), &got), 5);
    assert_memory_equal(buf, "hello", 5);
    assert_true(got >= 0 && got != ns);
    assert_int_equal(dp_netns_check_fd(got), 0);
    assert_int_equal(dp_netns_same(ns, got), 1);
    assert_true(fcntl(got, F_GETFD) & FD_CLOEXEC);
    close(got);
    close(sv[0]);
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

/* put 10.77.0.5/32 and fd00:77::5/128 on lo of the current netns (the child `ip` inherits the
 * calling thread's netns; the simplest honest way to configure it from a test) */
static int add_addrs(void *arg)
{
    (void)arg;
    if (system("ip link set lo up && ip addr add 10.77.0.5/32 dev lo && "
               "ip -6 addr add fd00:77::5/128 dev lo nodad 2>/dev/null || true") != 0)
        return -EIO;
    return 0;
}

static void test_has_addr_root(void **state)
{
    (void)state;
    int ns = new_netns();
    if (ns < 0)
        skip();
    assert_int_equal(dp_netns_run(ns, add_addrs, NULL), 0);
    assert_int_equal(dp_netns_has_addr(ns, "10.77.0.5"), 1);
    assert_int_equal(dp_netns_has_addr(ns, "10.77.0.5/24"), 1);
    assert_int_equal(dp_netns_has_addr(ns, "10.77.0.6"), 0);
    assert_int_equal(dp_netns_has_addr(ns, "127.0.0.1"), 1);
    assert_int_equal(dp_netns_has_addr(ns, "banana"), -EINVAL);
    assert_int_equal(dp_netns_has_addr(ns, ""), -EINVAL);
    close(ns);
}

static char fake_proc[64];

static void mk(const char *rel, const char *content, const char *link_to)
{
    char p[256], dir[256];
    snprintf(p, sizeof(p), "%s/%s", fake_proc, rel);
    snprintf(dir, sizeof(dir), "%s", p);
    for (char *s = dir + strlen(fake_proc) + 1; *s; s++) {
        if (*s == '/') {
            *s = 0;
            mkdir(dir, 0755);
            *s = '/';
        }
    }
    if (link_to) {
        assert_int_equal(symlink(link_to, p), 0);
    } else {
        FILE *f = fopen(p, "w");
        assert_non_null(f);
        fputs(content, f);
        fclose(f);
    }
}

static void test_find_pod_root(void **state)
{
    (void)state;
    int ns = new_netns();
    if (ns < 0)
        skip();
    int other = new_netns();
    assert_true(other >= 0);
    assert_int_equal(dp_netns_run(ns, add_addrs, NULL), 0);
    assert_int_equal(dp_netns_run(other, add_addrs, NULL), 0); /* same IP, other pod */

    snprintf(fake_proc, sizeof(fake_proc), "/tmp/amb-netns-proc.XXXXXX");
    assert_non_null(mkdtemp(fake_proc));
    char pod_ns[64], other_ns[64];
    snprintf(pod_ns, sizeof(pod_ns), "/proc/%d/fd/%d", (int)getpid(), ns);
    snprintf(other_ns, sizeof(other_ns), "/proc/%d/fd/%d", (int)getpid(), other);
    const char *uid = "5c1d2f3a-0b4e-4c6d-8e9f-0a1b2c3d4e5f";
    /* cgroupfs driver, pause container */
    mk("100/cgroup", "0::/kubepods/besteffort/pod5c1d2f3a-0b4e-4c6d-8e9f-0a1b2c3d4e5f/abc\n", NULL);
    mk("100/ns/net", NULL, pod_ns);
    /* systemd driver, app container of the same pod: same netns, deduped */
    mk("101/cgroup",
       "1:name=systemd:/kubepods.slice/kubepods-besteffort.slice/"
       "kubepods-besteffort-pod5c1d2f3a_0b4e_4c6d_8e9f_0a1b2c3d4e5f.slice/cri-containerd-1.scope\n",
       NULL);
    mk("101/ns/net", NULL, pod_ns);
    /* a host process under the same cgroup (e.g. a hostNetwork helper): host netns, skipped */
    mk("102/cgroup", "0::/kubepods/besteffort/pod5c1d2f3a-0b4e-4c6d-8e9f-0a1b2c3d4e5f/def\n", NULL);
    mk("102/ns/net", NULL, "/proc/self/ns/net");
    /* another pod with a longer uid that merely starts with ours: not a match */
    mk("103/cgroup", "0::/kubepods/pod5c1d2f3a-0b4e-4c6d-8e9f-0a1b2c3d4e5f00/x\n", NULL);
    mk("103/ns/net", NULL, other_ns);
    mk("self/cgroup", "0::/\n", NULL); /* non-numeric entries are ignored */
    mk("104/cgroup", "garbage", NULL);   /* no ns/net: skipped */

    const char *ips[] = {"10.77.0.5"};
    int fd = -1;
    assert_int_equal(dp_netns_find_pod(fake_proc, uid, ips, 1, &fd), 0);
    assert_int_equal(dp_netns_same(fd, ns), 1);
    close(fd);

    const char *wrong[] = {"10.77.9.9", "not-an-ip"};
    fd = -1;
    assert_int_equal(dp_netns_find_pod(fake_proc, uid, wrong, 2, &fd), -ENOENT);
    assert_int_equal(fd, -1);
    assert_int_equal(dp_netns_find_pod(fake_proc, "00000000-0000-0000-0000-000000000000", ips, 1,
                                       &fd),
                     -ENOENT);
    assert_int_equal(dp_netns_find_pod(fake_proc, "../etc", ips, 1, &fd), -EINVAL);
    assert_int_equal(dp_netns_find_pod(fake_proc, uid, ips, 0, &fd), -EINVAL);
    assert_int_equal(dp_netns_find_pod("/nonexistent-amb", uid, ips, 1, &fd), -ENOENT);

    /* a second, different netns claiming the same pod and IP: ambiguous, refuse */
    mk("105/cgroup", "0::/kubepods/pod5c1d2f3a-0b4e-4c6d-8e9f-0a1b2c3d4e5f/zzz\n", NULL);
    mk("105/ns/net", NULL, other_ns);
    assert_int_equal(dp_netns_find_pod(fake_proc, uid, ips, 1, &fd), -ENOTUNIQ);

    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", fake_proc);
    assert_int_equal(system(cmd), 0);
    close(other);
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
            cmocka_unit_test(test_has_addr_root),
            cmocka_unit_test(test_find_pod_root),
    };
    return cmocka_run_group_tests_name("netns", tests, NULL, NULL);
}
