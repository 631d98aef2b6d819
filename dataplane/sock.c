/*
 * sock.c — socket helpers; see sock.h.
 *
 * Every socket is created with SOCK_NONBLOCK | SOCK_CLOEXEC in the same syscall, so no fd
 * leaks into a child (the node agent spawns waypoints) between socket() and fcntl().
 */
#include "sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common.h"

/* From <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h>; those headers clash
 * with the libc ones, and the values are kernel ABI. */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

/* ------------------------------------------------------------------ addresses */

static int parse_port(const char *s, uint16_t *ret_port)
{
    unsigned v = 0;
    size_t i;

    if (*s == '\0')
        return -EINVAL;
    for (i = 0; s[i] != '\0'; i++) {
        if (s[i] < '0' || s[i] > '9' || i >= 5)
            return -EINVAL;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return -EINVAL;
    *ret_port = (uint16_t)v;
    return 0;
}

/* host is a NUL-terminated IP literal, never bracketed here */
static int fill_ip(const char *host, bool want_v6, uint16_t port, struct sockaddr_storage *ss,
                   socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    if (!want_v6) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
            return -EINVAL;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        *len = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            return -EINVAL;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        *len = sizeof(*sin6);
    }
    return 0;
}

int dp_sock_parse_addr(const char *s, struct sockaddr_storage *ret_ss, socklen_t *ret_len)
{
    char host[INET6_ADDRSTRLEN + 1];
    struct sockaddr_storage ss;
    const char *colon, *hs;
    size_t hl;
    uint16_t port;
    bool v6;
    socklen_t len;
    int r;

    if (s == NULL)
        return -EINVAL;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (rb == NULL || rb[1] != ':')
            return -EINVAL;
        hs = s + 1;
        hl = (size_t)(rb - hs);
        colon = rb + 1;
        v6 = true;
    } else {
        colon = strchr(s, ':');
        if (colon == NULL || strchr(colon + 1, ':') != NULL)
            return -EINVAL; /* bare IPv6 needs brackets */
        hs = s;
        hl = (size_t)(colon - s);
        v6 = false;
    }
    if (hl == 0 || hl >= sizeof(host))
        return -EINVAL;
    memcpy(host, hs, hl);
    host[hl] = '\0';
    r = parse_port(colon + 1, &port);
    if (r < 0)
        return r;
    r = fill_ip(host, v6, port, &ss, &len);
    if (r < 0)
        return r;
    *ret_ss = ss;
    *ret_len = len;
    return 0;
}

int dp_sock_parse_ip(const char *s, uint16_t port, struct sockaddr_storage *ret_ss,
                     socklen_t *ret_len)
{
    char host[INET6_ADDRSTRLEN + 1];
    struct sockaddr_storage ss;
    size_t n;
    socklen_t len;
    int r;

    if (s == NULL)
        return -EINVAL;
    n = strlen(s);
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
        s++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof(host))
        return -EINVAL;
    memcpy(host, s, n);
    host[n] = '\0';
    r = fill_ip(host, memchr(host, ':', n) != NULL, port, &ss, &len);
    if (r < 0)
        return r;
    *ret_ss = ss;
    *ret_len = len;
    return 0;
}

const char *dp_sock_format_addr(const struct sockaddr *sa, socklen_t len, char *out, size_t outsz)
{
    char ip[INET6_ADDRSTRLEN];

    if (outsz == 0)
        return out;
    if (sa == NULL) {
        snprintf(out, outsz, "?");
        return out;
    }
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
        snprintf(out, outsz, "%s:%u", ip, ntohs(sin->sin_port));
    } else if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
        snprintf(out, outsz, "[%s]:%u", ip, ntohs(sin6->sin6_port));
    } else if (sa->sa_family == AF_UNIX &&
               len >= (socklen_t)offsetof(struct sockaddr_un, sun_path)) {
        const struct sockaddr_un *sun = (const struct sockaddr_un *)sa;
        size_t n = (size_t)len - offsetof(struct sockaddr_un, sun_path);
        if (n > sizeof(sun->sun_path))
            n = sizeof(sun->sun_path);
        if (n == 0) {
            snprintf(out, outsz, "unix:");
        } else if (sun->sun_path[0] == '\0') {
            /* abstract: bytes up to len, shown with '@'; stop at an embedded NUL */
            snprintf(out, outsz, "unix:@%.*s", (int)strnlen(sun->sun_path + 1, n - 1),
                     sun->sun_path + 1);
        } else {
            snprintf(out, outsz, "unix:%.*s", (int)strnlen(sun->sun_path, n), sun->sun_path);
        }
    } else {
        snprintf(out, outsz, "?");
    }
    return out;
}

uint16_t dp_sock_addr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

int dp_sock_addr_set_port(struct sockaddr *sa, uint16_t port)
{
    if (sa->sa_family == AF_INET)
        ((struct sockaddr_in *)sa)->sin_port = htons(port);
    else if (sa->sa_family == AF_INET6)
        ((struct sockaddr_in6 *)sa)->sin6_port = htons(port);
    else
        return -EAFNOSUPPORT;
    return 0;
}

bool dp_sock_addr_equal(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family)
        return false;
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->sa_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return false;
}

/* ------------------------------------------------------------------ TCP */

static int setopt_int(int fd, int level, int name, int v)
{
    if (setsockopt(fd, level, name, &v, sizeof(v)) < 0)
        return -errno;
    return 0;
}

static int apply_opts(int fd, int family, const struct dp_sock_opts *o)
{
    int r = 0;

    if (o == NULL)
        return 0;
    if (o->mark != 0 && (r = setopt_int(fd, SOL_SOCKET, SO_MARK, (int)o->mark)) < 0)
        return r;
    if (o->transparent) {
        r = family == AF_INET6 ? setopt_int(fd, SOL_IPV6, IPV6_TRANSPARENT, 1)
                               : setopt_int(fd, SOL_IP, IP_TRANSPARENT, 1);
        if (r < 0)
            return r;
    }
    if (o->freebind) {
        r = family == AF_INET6 ? setopt_int(fd, SOL_IPV6, IPV6_FREEBIND, 1)
                               : setopt_int(fd, SOL_IP, IP_FREEBIND, 1);
        if (r < 0)
            return r;
    }
    if (family == AF_INET6 && (r = setopt_int(fd, SOL_IPV6, IPV6_V6ONLY, o->v6only)) < 0)
        return r;
    if (o->nodelay && (r = setopt_int(fd, IPPROTO_TCP, TCP_NODELAY, 1)) < 0)
        return r;
    return 0;
}

static int check_inet(const struct sockaddr *sa, socklen_t len)
{
    if (sa == NULL)
        return -EINVAL;
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in))
        return 0;
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6))
        return 0;
    return -EAFNOSUPPORT;
}

int dp_sock_listen_tcp(const struct sockaddr *sa, socklen_t len, const struct dp_sock_opts *opts,
                       int *ret_fd)
{
    int fd, r;

    r = check_inet(sa, len);
    if (r < 0)
        return r;
    fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0)
        return -errno;
    r = setopt_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (r < 0)
        goto fail;
    if (opts != NULL && opts->reuseport) {
        r = setopt_int(fd, SOL_SOCKET, SO_REUSEPORT, 1);
        if (r < 0)
            goto fail;
    }
    r = apply_opts(fd, sa->sa_family, opts);
    if (r < 0)
        goto fail;
    if (bind(fd, sa, len) < 0 ||
        listen(fd, opts != NULL && opts->backlog > 0 ? opts->backlog : SOMAXCONN) < 0) {
        r = -errno;
        goto fail;
    }
    *ret_fd = fd;
    return 0;
fail:
    close(fd);
    return r;
}

int dp_sock_connect_tcp(const struct sockaddr *sa, socklen_t len, const struct dp_sock_opts *opts,
                        int *ret_fd)
{
    int fd, r;

    r = check_inet(sa, len);
    if (r < 0)
        return r;
    fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0)
        return -errno;
    r = apply_opts(fd, sa->sa_family, opts);
    if (r < 0)
        goto fail;
    if (opts != NULL && opts->bind_addr != NULL) {
        if (opts->bind_addr->sa_family != sa->sa_family) {
            r = -EAFNOSUPPORT;
            goto fail;
        }
        if (dp_sock_addr_port(opts->bind_addr) == 0) {
            /* don't reserve a port per source address at bind(); pick it at connect() */
            r = setopt_int(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1);
            if (r < 0)
                goto fail;
        }
        if (bind(fd, opts->bind_addr, opts->bind_len) < 0) {
            r = -errno;
            goto fail;
        }
    }
    for (;;) {
        if (connect(fd, sa, len) == 0) {
            r = 0;
            break;
        }
        if (errno == EINTR)
            continue; /* the connect goes on in the background: treat like EINPROGRESS */
        if (errno == EINPROGRESS) {
            r = 1;
            break;
        }
        r = -errno;
        goto fail;
    }
    *ret_fd = fd;
    return r;
fail:
    close(fd);
    return r;
}

int dp_sock_connect_result(int fd)
{
    int err = 0;
    socklen_t l = sizeof(err);

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
        return -errno;
    return err == 0 ? 0 : -err;
}

int dp_sock_accept(int lfd, struct sockaddr_storage *ret_peer, socklen_t *ret_len, int *ret_fd)
{
    struct sockaddr_storage ss;
    socklen_t l = sizeof(ss);
    int fd;

    do {
        fd = accept4(lfd, (struct sockaddr *)&ss, &l, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    if (ret_peer != NULL)
        *ret_peer = ss;
    if (ret_len != NULL)
        *ret_len = l;
    *ret_fd = fd;
    return 0;
}

int dp_sock_set_nodelay(int fd, bool on)
{
    return setopt_int(fd, IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0);
}

int dp_sock_set_keepalive(int fd, unsigned idle_s, unsigned intvl_s, unsigned cnt)
{
    int r;

    if (idle_s == 0)
        return setopt_int(fd, SOL_SOCKET, SO_KEEPALIVE, 0);
    if (idle_s > INT32_MAX || intvl_s == 0 || intvl_s > INT32_MAX || cnt == 0 || cnt > 127)
        return -EINVAL;
    if ((r = setopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, (int)idle_s)) < 0 ||
        (r = setopt_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, (int)intvl_s)) < 0 ||
        (r = setopt_int(fd, IPPROTO_TCP, TCP_KEEPCNT, (int)cnt)) < 0)
        return r;
    return setopt_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
}

int dp_sock_close_reset(int fd)
{
    /* linger on with a zero timeout: close() discards unsent data and sends RST */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    int r = 0;

    if (fd < 0)
        return -EBADF;
    if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0)
        r = -errno;
    close(fd);
    return r;
}

int dp_sock_local_addr(int fd, struct sockaddr_storage *ret_ss, socklen_t *ret_len)
{
    struct sockaddr_storage ss;
    socklen_t l = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &l) < 0)
        return -errno;
    *ret_ss = ss;
    *ret_len = l;
    return 0;
}

int dp_sock_peer_addr(int fd, struct sockaddr_storage *ret_ss, socklen_t *ret_len)
{
    struct sockaddr_storage ss;
    socklen_t l = sizeof(ss);

    if (getpeername(fd, (struct sockaddr *)&ss, &l) < 0)
        return -errno;
    *ret_ss = ss;
    *ret_len = l;
    return 0;
}

int dp_sock_original_dst(int fd, struct sockaddr_storage *ret_ss, socklen_t *ret_len)
{
    struct sockaddr_storage local = {0}, ss;
    socklen_t l;
    int r;

    r = dp_sock_local_addr(fd, &local, &l);
    if (r < 0)
        return r;
    memset(&ss, 0, sizeof(ss));
    if (local.ss_family == AF_INET ||
        (local.ss_family == AF_INET6 &&
         IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&local)->sin6_addr))) {
        /* a v4-mapped connection on a dual-stack socket is tracked as IPv4 */
        l = sizeof(struct sockaddr_in);
        if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &ss, &l) < 0)
            return -errno;
        if (ss.ss_family != AF_INET)
            return -EAFNOSUPPORT;
    } else if (local.ss_family == AF_INET6) {
        l = sizeof(struct sockaddr_in6);
        if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &ss, &l) < 0)
            return -errno;
        if (ss.ss_family != AF_INET6)
            return -EAFNOSUPPORT;
    } else {
        return -EAFNOSUPPORT;
    }
    *ret_ss = ss;
    *ret_len = l;
    return 0;
}

/* ------------------------------------------------------------------ unix sockets */

static int unix_addr(const char *path, struct sockaddr_un *sun, socklen_t *len)
{
    size_t n;

    if (path == NULL || path[0] == '\0')
        return -EINVAL;
    n = strlen(path);
    if (n >= sizeof(sun->sun_path))
        return -ENAMETOOLONG;
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, n);
    if (path[0] == '@') {
        /* abstract: leading NUL, length exactly the name (no trailing NULs) */
        sun->sun_path[0] = '\0';
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    return 0;
}

int dp_sock_listen_unix(const char *path, unsigned mode, int backlog, unsigned flags, int *ret_fd)
{
    struct sockaddr_un sun;
    socklen_t len;
    struct stat st;
    int fd, r, type = SOCK_STREAM | SOCK_CLOEXEC;

    r = unix_addr(path, &sun, &len);
    if (r < 0)
        return r;
    if (path[0] != '@' && lstat(path, &st) == 0) {
        /* only ever remove a socket: a typo'd path must not delete a user's file */
        if (!S_ISSOCK(st.st_mode))
            return -EEXIST;
        if (unlink(path) < 0 && errno != ENOENT)
            return -errno;
    }
    if (!(flags & DP_SOCK_BLOCKING))
        type |= SOCK_NONBLOCK;
    fd = socket(AF_UNIX, type, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&sun, len) < 0) {
        r = -errno;
        goto fail;
    }
    if (mode != 0 && path[0] != '@' && chmod(path, (mode_t)mode) < 0) {
        r = -errno;
        goto fail_unlink;
    }
    if (listen(fd, backlog > 0 ? backlog : SOMAXCONN) < 0) {
        r = -errno;
        goto fail_unlink;
    }
    *ret_fd = fd;
    return 0;
fail_unlink:
    if (path[0] != '@')
        unlink(path);
fail:
    close(fd);
    return r;
}

int dp_sock_connect_unix(const char *path, unsigned flags, int *ret_fd)
{
    struct sockaddr_un sun;
    socklen_t len;
    int fd, r, type = SOCK_STREAM | SOCK_CLOEXEC;

    r = unix_addr(path, &sun, &len);
    if (r < 0)
        return r;
    if (!(flags & DP_SOCK_BLOCKING))
        type |= SOCK_NONBLOCK;
    fd = socket(AF_UNIX, type, 0);
    if (fd < 0)
        return -errno;
    while (connect(fd, (struct sockaddr *)&sun, len) < 0) {
        if (errno == EINTR)
            continue;
        r = errno == EWOULDBLOCK ? -EAGAIN : -errno;
        close(fd);
        return r;
    }
    *ret_fd = fd;
    return 0;
}

int dp_sock_peer_cred(int fd, pid_t *ret_pid, uid_t *ret_uid, gid_t *ret_gid)
{
    struct ucred uc;
    socklen_t l = sizeof(uc);

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &l) < 0)
        return -errno;
    if (ret_pid != NULL)
        *ret_pid = uc.pid;
    if (ret_uid != NULL)
        *ret_uid = uc.uid;
    if (ret_gid != NULL)
        *ret_gid = uc.gid;
    return 0;
}

ssize_t dp_sock_send_fd(int sock, int fd, const void *data, size_t len)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    struct cmsghdr *c;
    ssize_t n;

    /* the kernel drops ancillary data sent with zero bytes on a stream socket */
    if (len == 0 || data == NULL || fd < 0)
        return -EINVAL;
    memset(&ctl, 0, sizeof(ctl));
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof(ctl.buf);
    c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    do {
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return n;
}

ssize_t dp_sock_recv_fd(int sock, void *data, size_t len, int *ret_fd)
{
    /* room for a few fds, so a peer sending several is seen (and closed) rather than
     * silently truncated; anything beyond is MSG_CTRUNC, which we reject as well */
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * 8)];
    } ctl;
    struct iovec iov = {.iov_base = data, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    struct cmsghdr *c;
    int got = -1, nfds = 0;
    bool bad = false;
    ssize_t n;

    memset(&ctl, 0, sizeof(ctl));
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof(ctl.buf);
    do {
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    if (msg.msg_flags & MSG_CTRUNC)
        bad = true;
    for (c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        size_t i, k;
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
            bad = true;
            continue;
        }
        k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (i = 0; i < k; i++) {
            int f;
            memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (nfds++ == 0) {
                got = f;
            } else {
                close(f);
                bad = true;
            }
        }
    }
    if (bad) {
        if (got >= 0)
            close(got);
        return -EBADMSG;
    }
    *ret_fd = got;
    return n;
}
