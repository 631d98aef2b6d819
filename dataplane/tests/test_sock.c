/* test_sock.c — unit tests for dataplane/sock.c (loopback, socketpairs, a private netns) */
/* cmocka.h needs setjmp.h, stdarg.h and stddef.h first */
/* clang-format off */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
/* clang-format on */

#include "common.h"
#include "sock.h"

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the DIR's own fd */
}

/* ------------------------------------------------------------------ parse / format */

static void test_parse_format(void **state)
{
    static const struct {
        const char *in, *out;
        int family;
        uint16_t port;
    } good[] = {
            {"1.2.3.4:80", "1.2.3.4:80", AF_INET, 80},
            {"0.0.0.0:0", "0.0.0.0:0", AF_INET, 0},
            {"255.255.255.255:65535", "255.255.255.255:65535", AF_INET, 65535},
            {"[::1]:8080", "[::1]:8080", AF_INET6, 8080},
            {"[2001:DB8::1]:15008", "[2001:db8::1]:15008", AF_INET6, 15008},
            {"[::ffff:10.0.0.1]:9", "[::ffff:10.0.0.1]:9", AF_INET6, 9},
            {"[::]:00015", "[::]:15", AF_INET6, 15},
    };
    static const char *const bad[] = {
            "",
            "1.2.3.4",
            "1.2.3.4:",
            "1.2.3.4:65536",
            "1.2.3.4:-1",
            "1.2.3.4:+1",
            "::1:80",
            "[::1]80",
            "[::1]",
            "[::1]:",
            "host:80",
            "1.2.3.4:80 ",
            " 1.2.3.4:80",
            "01.2.3.4:80",
            "[1.2.3.4]:80",
            "1.2.3.4:000080",
            "[::1%lo]:80",
            "1.2.3:80",
            "1.2.3.4.5:80",
            "[]:80",
            "1.2.3.4:8x",
            "[::1]:80]",
            "[[::1]]:80",
            "1.2.3.4:99999999999999999999",
            "[0:0:0:0:0:0:0:0:0]:1",
    };
    struct sockaddr_storage ss;
    socklen_t len;
    char out[DP_SOCK_ADDRSTRLEN];
    char longs[300];
    size_t i;

    (void)state;
    for (i = 0; i < DP_ARRAY_SIZE(good); i++) {
        if (dp_sock_parse_addr(good[i].in, &ss, &len) != 0)
            fail_msg("rejected %s", good[i].in);
        assert_int_equal(ss.ss_family, good[i].family);
        assert_int_equal(dp_sock_addr_port((struct sockaddr *)&ss), good[i].port);
        assert_string_equal(dp_sock_format_addr((struct sockaddr *)&ss, len, out, sizeof(out)),
                            good[i].out);
    }
    for (i = 0; i < DP_ARRAY_SIZE(bad); i++) {
        ss.ss_family = 12345;
        if (dp_sock_parse_addr(bad[i], &ss, &len) != -EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(ss.ss_family, 12345); /* untouched on error */
    }
    assert_int_equal(dp_sock_parse_addr(NULL, &ss, &len), -EINVAL);
    memset(longs, '1', sizeof(longs) - 1);
    longs[sizeof(longs) - 1] = '\0';
    assert_int_equal(dp_sock_parse_addr(longs, &ss, &len), -EINVAL);
    longs[0] = '[';
    assert_int_equal(dp_sock_parse_addr(longs, &ss, &len), -EINVAL);

    /* without a port */
    assert_int_equal(dp_sock_parse_ip("10.1.2.3", 15008, &ss, &len), 0);
    assert_string_equal(dp_sock_format_addr((struct sockaddr *)&ss, len, out, sizeof(out)),
                        "10.1.2.3:15008");
    assert_int_equal(dp_sock_parse_ip("fd00::5", 1, &ss, &len), 0);
    assert_string_equal(dp_sock_format_addr((struct sockaddr *)&ss, len, out, sizeof(out)),
                        "[fd00::5]:1");
    assert_int_equal(dp_sock_parse_ip("[fd00::5]", 2, &ss, &len), 0);
    assert_int_equal(dp_sock_parse_ip("10.1.2.3:80", 2, &ss, &len), -EINVAL);
    assert_int_equal(dp_sock_parse_ip("", 2, &ss, &len), -EINVAL);
    assert_int_equal(dp_sock_parse_ip("[]", 2, &ss, &len), -EINVAL);

    /* port setters, equality, small output buffers, unix and unknown families */
    struct sockaddr_storage a, b;
    socklen_t la, lb;
    assert_int_equal(dp_sock_parse_addr("[::1]:1", &a, &la), 0);
    assert_int_equal(dp_sock_parse_addr("[::1]:2", &b, &lb), 0);
    assert_false(dp_sock_addr_equal((struct sockaddr *)&a, (struct sockaddr *)&b));
    assert_int_equal(dp_sock_addr_set_port((struct sockaddr *)&a, 2), 0);
    assert_true(dp_sock_addr_equal((struct sockaddr *)&a, (struct sockaddr *)&b));
    dp_sock_format_addr((struct sockaddr *)&a, la, out, 5);
    assert_string_equal(out, "[::1");
    struct sockaddr_un sun = {.sun_family = AF_UNIX, .sun_path = "/run/x.sock"};
    dp_sock_format_addr((struct sockaddr *)&sun, sizeof(sun), out, sizeof(out));
    assert_string_equal(out, "unix:/run/x.sock");
    sun.sun_path[0] = '\0';
    dp_sock_format_addr((struct sockaddr *)&sun, offsetof(struct sockaddr_un, sun_path) + 4, out,
                        sizeof(out));
    assert_string_equal(out, "unix:@run");
    a.ss_family = AF_PACKET;
    assert_string_equal(dp_sock_format_addr((struct sockaddr *)&a, la, out, sizeof(out)), "?");
    assert_int_equal(dp_sock_addr_set_port((struct sockaddr *)&a, 2), -EAFNOSUPPORT);
    /* a short length is not trusted */
    assert_int_equal(dp_sock_parse_addr("1.2.3.4:5", &a, &la), 0);
    assert_string_equal(dp_sock_format_addr((struct sockaddr *)&a, 4, out, sizeof(out)), "?");
}

/* ------------------------------------------------------------------ TCP */

static void wait_fd(int fd, short ev)
{
    struct pollfd p = {.fd = fd, .events = ev};
    assert_int_equal(poll(&p, 1, 2000), 1);
}

static void connect_and_accept(int lfd, const struct sockaddr *dst, socklen_t dlen,
                               const struct dp_sock_opts *opts, int *ret_c, int *ret_s,
                               struct sockaddr_storage *ret_peer)
{
    socklen_t plen;
    int c, s, r;

    r = dp_sock_connect_tcp(dst, dlen, opts, &c);
    assert_true(r == 0 || r == 1);
    if (r == 1) {
        wait_fd(c, POLLOUT);
        assert_int_equal(dp_sock_connect_result(c), 0);
    }
    wait_fd(lfd, POLLIN);
    assert_int_equal(dp_sock_accept(lfd, ret_peer, &plen, &s), 0);
    assert_true(fcntl(s, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(s, F_GETFD) & FD_CLOEXEC);
    *ret_c = c;
    *ret_s = s;
}

static void tcp_roundtrip(const char *listen_at)
{
    struct sockaddr_storage la, peer, local;
    socklen_t ll, pl;
    struct dp_sock_opts lo = {.reuseport = true, .nodelay = true, .backlog = 16};
    int l1, l2, c, s, v;
    socklen_t vl = sizeof(v);
    char buf[8];

    assert_int_equal(dp_sock_parse_addr(listen_at, &la, &ll), 0);
    assert_int_equal(dp_sock_listen_tcp((struct sockaddr *)&la, ll, &lo, &l1), 0);
    assert_true(fcntl(l1, F_GETFL) & O_NONBLOCK);
    assert_int_equal(dp_sock_local_addr(l1, &la, &ll), 0);
    assert_true(dp_sock_addr_port((struct sockaddr *)&la) != 0);
    /* SO_REUSEPORT: a second listener on the same port (one per loop thread) */
    assert_int_equal(dp_sock_listen_tcp((struct sockaddr *)&la, ll, &lo, &l2), 0);
    close(l2);
    /* without it, the port is taken */
    assert_int_equal(dp_sock_listen_tcp((struct sockaddr *)&la, ll, NULL, &l2), -EADDRINUSE);
    assert_int_equal(dp_sock_accept(l1, NULL, NULL, &s), -EAGAIN);

    connect_and_accept(l1, (struct sockaddr *)&la, ll, NULL, &c, &s, &peer);
    assert_int_equal(dp_sock_local_addr(c, &local, &pl), 0);
    assert_true(dp_sock_addr_equal((struct sockaddr *)&local, (struct sockaddr *)&peer));
    assert_int_equal(dp_sock_peer_addr(c, &peer, &pl), 0);
    assert_true(dp_sock_addr_equal((struct sockaddr *)&la, (struct sockaddr *)&peer));
    /* accepted sockets inherit TCP_NODELAY from the listener */
    assert_int_equal(getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, &vl), 0);
    assert_true(v != 0);
    assert_int_equal(dp_sock_set_nodelay(s, false), 0);
    assert_int_equal(getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, &vl), 0);
    assert_int_equal(v, 0);
    assert_int_equal(write(c, "ping", 4), 4);
    wait_fd(s, POLLIN);
    assert_int_equal(read(s, buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "ping", 4);
    /* not redirected: no original destination */
    int r = dp_sock_original_dst(s, &peer, &pl);
    assert_true(r == -ENOENT || r == -ENOPROTOOPT);
    close(c);
    close(s);
    close(l1);
}

static void test_tcp_v4(void **state)
{
    (void)state;
    tcp_roundtrip("127.0.0.1:0");
}

static void test_tcp_v6(void **state)
{
    (void)state;
    tcp_roundtrip("[::1]:0");
}

static void test_tcp_refused_and_bad_args(void **state)
{
    struct sockaddr_storage a;
    socklen_t al;
    int l, fd, r, fds = count_fds();

    (void)state;
    /* find a free port: listen then close */
    assert_int_equal(dp_sock_parse_addr("127.0.0.1:0", &a, &al), 0);
    assert_int_equal(dp_sock_listen_tcp((struct sockaddr *)&a, al, NULL, &l), 0);
    assert_int_equal(dp_sock_local_addr(l, &a, &al), 0);
    close(l);
    r = dp_sock_connect_tcp((struct sockaddr *)&a, al, NULL, &fd);
    if (r == 1) {
        wait_fd(fd, POLLOUT);
        assert_int_equal(dp_sock_connect_result(fd), -ECONNREFUSED);
        close(fd);
    } else {
        assert_int_equal(r, -ECONNREFUSED);
    }
    /* bad arguments fail cleanly and leak nothing */
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    assert_int_equal(dp_sock_connect_tcp((struct sockaddr *)&sun, sizeof(sun), NULL, &fd),
                     -EAFNOSUPPORT);
    assert_int_equal(dp_sock_listen_tcp((struct sockaddr *)&a, 3, NULL, &fd), -EAFNOSUPPORT);
    struct sockaddr_storage src6;
    socklen_t sl6;
    assert_int_equal(dp_sock_parse_addr("[::1]:0", &src6, &sl6), 0);
    struct dp_sock_opts o = {.bind_addr = (struct sockaddr *)&src6, .bind_len = sl6};
    assert_int_equal(dp_sock_connect_tcp((struct sockaddr *)&a, al, &o, &fd), -EAFNOSUPPORT);
    /* a source address that is not local */
    assert_int_equal(dp_sock_parse_addr("192.0.2.1:0", &src6, &sl6), 0);
    assert_int_equal(dp_sock_connect_tcp((struct sockaddr *)&a, al, &o, &fd), -EADDRNOTAVAIL);
    assert_int_equal(count_fds(), fds);
}

/* Reset instead of FIN; keepalive settings. */
static void test_tcp_reset_keepalive(void **state)
{
    struct sockaddr_storage la, peer;
    socklen_t ll;
    int l, c, s, v, n;
    socklen_t vl = sizeof(v);
    char buf[8];

    (void)state;
    assert_int_equal(dp_sock_parse_addr("127.0.0.1:0", &la, &ll), 0);
    assert_int_equal(dp_sock_listen_tcp((struct sockaddr *)&la, ll, NULL, &l), 0);
    assert_int_equal(dp_sock_local_addr(l, &la, &ll), 0);
    connect_and_accept(l, (struct sockaddr *)&la, ll, NULL, &c, &s, &peer);

    assert_int_equal(dp_sock_set_keepalive(c, 30, 5, 3), 0);
    assert_int_equal(getsockopt(c, SOL_SOCKET, SO_KEEPALIVE, &v, &vl), 0);
    assert_int_equal(v, 1);
    assert_int_equal(getsockopt(c, IPPROTO_TCP, TCP_KEEPIDLE, &v, &vl), 0);
    assert_int_equal(v, 30);
    assert_int_equal(getsockopt(c, IPPROTO_TCP, TCP_KEEPINTVL, &v, &vl), 0);
    assert_int_equal(v, 5);
    assert_int_equal(getsockopt(c, IPPROTO_TCP, TCP_KEEPCNT, &v, &vl), 0);
    assert_int_equal(v, 3);
    assert_int_equal(dp_sock_set_keepalive(c, 30, 0, 3), -EINVAL);
    assert_int_equal(dp_sock_set_keepalive(c, 0, 0, 0), 0);
    assert_int_equal(getsockopt(c, SOL_SOCKET, SO_KEEPALIVE, &v, &vl), 0);
    assert_int_equal(v, 0);

    /* the peer of a reset close reads ECONNRESET, not EOF */
    assert_int_equal(dp_sock_close_reset(c), 0);
    wait_fd(s, POLLIN);
    n = (int)read(s, buf, sizeof(buf));
    assert_int_equal(n, -1);
    assert_int_equal(errno, ECONNRESET);
    close(s);
    assert_int_equal(dp_sock_close_reset(-1), -EBADF);
    close(l);
}

/* Source binding, SO_MARK, IP_TRANSPARENT and IP_FREEBIND need CAP_NET_ADMIN. */
static void test_tcp_source_mark_transparent(void **state)
{
    struct sockaddr_storage la, src, peer;
    socklen_t ll, sl;
    struct dp_sock_opts lo = {.mark = 0x539, .transparent = true};
    struct dp_sock_opts co = {
            .mark = 0x539, .transparent = true, .freebind = true, .nodelay = true};
    char out[DP_SOCK_ADDRSTRLEN];
    int l, c, s, v, r;
    socklen_t vl = sizeof(v);

    (void)state;
    assert_int_equal(dp_sock_parse_addr("127.0.0.1:0", &la, &ll), 0);
    r = dp_sock_listen_tcp((struct sockaddr *)&la, ll, &lo, &l);
    if (r == -EPERM) {
        print_message("not root: skipping mark/transparent checks\n");
        skip();
    }
    assert_int_equal(r, 0);
    assert_int_equal(getsockopt(l, SOL_SOCKET, SO_MARK, &v, &vl), 0);
    assert_int_equal(v, 0x539);
    assert_int_equal(getsockopt(l, SOL_IP, IP_TRANSPARENT, &v, &vl), 0);
    assert_int_equal(v, 1);
    assert_int_equal(dp_sock_local_addr(l, &la, &ll), 0);
    /* connect from 127.0.0.2 (any port), as the agent does from a pod's IP */
    assert_int_equal(dp_sock_parse_addr("127.0.0.2:0", &src, &sl), 0);
    co.bind_addr = (struct sockaddr *)&src;
    co.bind_len = sl;
    connect_and_accept(l, (struct sockaddr *)&la, ll, &co, &c, &s, &peer);
    dp_sock_format_addr((struct sockaddr *)&peer, sizeof(peer), out, sizeof(out));
    assert_int_equal(strncmp(out, "127.0.0.2:", 10), 0);
    assert_int_equal(getsockopt(c, SOL_SOCKET, SO_MARK, &v, &vl), 0);
    assert_int_equal(v, 0x539);
    assert_int_equal(getsockopt(c, SOL_IP, IP_FREEBIND, &v, &vl), 0);
    assert_int_equal(v, 1);
    assert_int_equal(getsockopt(c, IPPROTO_TCP, TCP_NODELAY, &v, &vl), 0);
    assert_true(v != 0);
    close(c);
    close(s);
    /* freebind: a listener on an address this host does not have */
    struct sockaddr_storage nl;
    socklen_t nll;
    struct dp_sock_opts fo = {.freebind = true};
    assert_int_equal(dp_sock_parse_addr("192.0.2.77:0", &nl, &nll), 0);
    assert_int_equal(dp_sock_listen_tcp((struct sockaddr *)&nl, nll, NULL, &c), -EADDRNOTAVAIL);
    assert_int_equal(dp_sock_listen_tcp((struct sockaddr *)&nl, nll, &fo, &c), 0);
    close(c);
    close(l);
}

/*
 * SO_ORIGINAL_DST for real: in a child process with its own network namespace, an nftables
 * redirect sends connections for port 9999 to our listener; the accepted socket must report
 * 9999 as its original destination, for IPv4 and IPv6. Returns a line number on failure.
 */
static int original_dst_child(void)
{
    static const char *const addrs[][2] = {{"127.0.0.1:15001", "127.0.0.1:9999"},
                                           {"[::1]:15001", "[::1]:9999"}};
    size_t i;

    if (unshare(CLONE_NEWNET) < 0)
        return __LINE__;
    if (system("ip link set lo up") != 0)
        return __LINE__;
    if (system("nft -f - <<'EOF'\n"
               "table inet amb-test {\n"
               "  chain out { type nat hook output priority -100;\n"
               "    tcp dport 9999 redirect to :15001\n  }\n"
               "}\n"
               "EOF\n") != 0)
        return __LINE__;
    for (i = 0; i < DP_ARRAY_SIZE(addrs); i++) {
        struct sockaddr_storage la, da, od, peer;
        socklen_t ll, dl, ol, pl;
        char out[DP_SOCK_ADDRSTRLEN];
        struct pollfd p;
        int l, c, s, r;

        if (dp_sock_parse_addr(addrs[i][0], &la, &ll) < 0 ||
            dp_sock_parse_addr(addrs[i][1], &da, &dl) < 0)
            return __LINE__;
        if (dp_sock_listen_tcp((struct sockaddr *)&la, ll, NULL, &l) < 0)
            return __LINE__;
        r = dp_sock_connect_tcp((struct sockaddr *)&da, dl, NULL, &c);
        if (r < 0)
            return __LINE__;
        p = (struct pollfd){.fd = l, .events = POLLIN};
        if (poll(&p, 1, 2000) != 1 || dp_sock_accept(l, &peer, &pl, &s) < 0)
            return __LINE__;
        if (dp_sock_original_dst(s, &od, &ol) < 0)
            return __LINE__;
        dp_sock_format_addr((struct sockaddr *)&od, ol, out, sizeof(out));
        if (strcmp(out, addrs[i][1]) != 0) {
            fprintf(stderr, "original dst %s, want %s\n", out, addrs[i][1]);
            return __LINE__;
        }
        close(c);
        close(s);
        close(l);
    }
    return 0;
}

static void test_original_dst_netns(void **state)
{
    int status;
    pid_t pid;

    (void)state;
    if (geteuid() != 0 || access("/usr/sbin/nft", X_OK) != 0) {
        print_message("needs root and nft: skipped\n");
        skip();
    }
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(original_dst_child());
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != 0)
        fail_msg("child failed at test_sock.c line ~%d (exit status is line & 0xff)",
                 WEXITSTATUS(status));
}

/* ------------------------------------------------------------------ unix sockets */

static char tmpdir[64];

static int unix_setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/amb-sock.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int unix_teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd);
}

static void unix_pair_via(const char *path)
{
    int l, c, s;
    pid_t pid;
    uid_t uid;
    gid_t gid;
    char buf[4];

    assert_int_equal(dp_sock_listen_unix(path, 0600, 0, 0, &l), 0);
    assert_true(fcntl(l, F_GETFL) & O_NONBLOCK);
    assert_int_equal(dp_sock_connect_unix(path, 0, &c), 0);
    assert_int_equal(dp_sock_accept(l, NULL, NULL, &s), 0);
    assert_int_equal(dp_sock_peer_cred(s, &pid, &uid, &gid), 0);
    assert_int_equal(pid, getpid());
    assert_int_equal(uid, geteuid());
    assert_int_equal(gid, getegid());
    assert_int_equal(write(c, "abc", 3), 3);
    assert_int_equal(read(s, buf, sizeof(buf)), 3);
    close(c);
    close(s);
    close(l);
}

static void test_unix(void **state)
{
    char path[128], abs[64];
    struct stat st;
    int fd, l, c;
    char longp[200];

    (void)state;
    snprintf(path, sizeof(path), "%s/cni.sock", tmpdir);
    unix_pair_via(path);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* the stale socket file left behind is replaced */
    unix_pair_via(path);
    /* a regular file is never removed */
    snprintf(path, sizeof(path), "%s/file", tmpdir);
    fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(dp_sock_listen_unix(path, 0, 0, 0, &l), -EEXIST);
    assert_int_equal(access(path, F_OK), 0);
    /* abstract */
    snprintf(abs, sizeof(abs), "@amb-test-%d", (int)getpid());
    unix_pair_via(abs);
    /* errors */
    memset(longp, 'a', sizeof(longp) - 1);
    longp[0] = '/';
    longp[sizeof(longp) - 1] = '\0';
    assert_int_equal(dp_sock_listen_unix(longp, 0, 0, 0, &l), -ENAMETOOLONG);
    assert_int_equal(dp_sock_connect_unix(longp, 0, &c), -ENAMETOOLONG);
    assert_int_equal(dp_sock_connect_unix("", 0, &c), -EINVAL);
    snprintf(path, sizeof(path), "%s/nobody.sock", tmpdir);
    assert_int_equal(dp_sock_connect_unix(path, DP_SOCK_BLOCKING, &c), -ENOENT);
    snprintf(path, sizeof(path), "%s/blocking.sock", tmpdir);
    assert_int_equal(dp_sock_listen_unix(path, 0, 1, DP_SOCK_BLOCKING, &l), 0);
    assert_false(fcntl(l, F_GETFL) & O_NONBLOCK);
    assert_int_equal(dp_sock_connect_unix(path, DP_SOCK_BLOCKING, &c), 0);
    assert_false(fcntl(c, F_GETFL) & O_NONBLOCK);
    close(c);
    close(l);
}

/* ------------------------------------------------------------------ SCM_RIGHTS */

static void test_fd_passing(void **state)
{
    int sv[2], p[2], got, fds;
    char buf[16];
    ssize_t n;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    assert_int_equal(pipe(p), 0);
    fds = count_fds();
    assert_int_equal(dp_sock_send_fd(sv[0], p[1], "netns", 5), 5);
    got = -2;
    n = dp_sock_recv_fd(sv[1], buf, sizeof(buf), &got);
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "netns", 5);
    assert_true(got >= 0);
    assert_int_not_equal(got, p[1]);
    assert_true(fcntl(got, F_GETFD) & FD_CLOEXEC);
    /* the received fd is the pipe's write end */
    assert_int_equal(write(got, "via", 3), 3);
    assert_int_equal(read(p[0], buf, sizeof(buf)), 3);
    close(got);
    assert_int_equal(count_fds(), fds);

    /* data without an fd */
    assert_int_equal(write(sv[0], "x", 1), 1);
    got = -2;
    assert_int_equal(dp_sock_recv_fd(sv[1], buf, sizeof(buf), &got), 1);
    assert_int_equal(got, -1);
    /* nothing pending, then EOF */
    assert_int_equal(dp_sock_recv_fd(sv[1], buf, sizeof(buf), &got), -EAGAIN);
    assert_int_equal(dp_sock_send_fd(sv[0], p[1], "", 0), -EINVAL);
    assert_int_equal(dp_sock_send_fd(sv[0], -1, "x", 1), -EINVAL);
    assert_int_equal(dp_sock_send_fd(sv[0], 987654, "x", 1), -EBADF);
    close(sv[0]);
    assert_int_equal(dp_sock_recv_fd(sv[1], buf, sizeof(buf), &got), 0);
    close(sv[1]);
    close(p[0]);
    close(p[1]);
}

/* A hostile peer sending several fds (or more than fit): rejected, nothing leaks. */
static void send_raw_fds(int sock, const int *fds, size_t n)
{
    char ctl[CMSG_SPACE(sizeof(int) * 64)];
    struct iovec iov = {.iov_base = "h", .iov_len = 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl};
    struct cmsghdr *c;

    memset(ctl, 0, sizeof(ctl));
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * n);
    c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
    assert_int_equal(sendmsg(sock, &msg, 0), 1);
}

static void test_fd_passing_hostile(void **state)
{
    int sv[2], many[40], got = -2, fds;
    size_t i;
    char buf[4];

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    for (i = 0; i < DP_ARRAY_SIZE(many); i++)
        many[i] = sv[0];
    fds = count_fds();
    send_raw_fds(sv[0], many, 2);
    assert_int_equal(dp_sock_recv_fd(sv[1], buf, sizeof(buf), &got), -EBADMSG);
    assert_int_equal(got, -2);
    assert_int_equal(count_fds(), fds);
    /* more than our control buffer holds: MSG_CTRUNC */
    send_raw_fds(sv[0], many, DP_ARRAY_SIZE(many));
    assert_int_equal(dp_sock_recv_fd(sv[1], buf, sizeof(buf), &got), -EBADMSG);
    assert_int_equal(count_fds(), fds);
    /* the stream goes on normally afterwards */
    send_raw_fds(sv[0], many, 1);
    assert_int_equal(dp_sock_recv_fd(sv[1], buf, sizeof(buf), &got), 1);
    assert_true(got >= 0);
    close(got);
    assert_int_equal(count_fds(), fds);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_parse_format),
            cmocka_unit_test(test_tcp_v4),
            cmocka_unit_test(test_tcp_v6),
            cmocka_unit_test(test_tcp_refused_and_bad_args),
            cmocka_unit_test(test_tcp_reset_keepalive),
            cmocka_unit_test(test_tcp_source_mark_transparent),
            cmocka_unit_test(test_original_dst_netns),
            cmocka_unit_test_setup_teardown(test_unix, unix_setup, unix_teardown),
            cmocka_unit_test(test_fd_passing),
            cmocka_unit_test(test_fd_passing_hostile),
    };
    return cmocka_run_group_tests_name("sock", tests, NULL, NULL);
}
