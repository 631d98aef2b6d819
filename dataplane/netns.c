/*
 * netns.c — see netns.h.
 *
 * Why /proc/thread-self: setns() is per thread, so "where am I" must be asked of the thread,
 * not of the process (/proc/self is the thread group leader).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "common.h"
#include "netns.h"

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

int dp_netns_check_fd(int fd)
{
    struct statfs sfs;
    if (fstatfs(fd, &sfs) < 0)
        return -errno;
    if ((unsigned long)sfs.f_type != (unsigned long)NSFS_MAGIC)
        return -EINVAL;
    int t = ioctl(fd, NS_GET_NSTYPE);
    if (t < 0)
        return errno == ENOTTY ? -EINVAL : -errno;
    if (t != CLONE_NEWNET)
        return -EINVAL;
    return 0;
}

int dp_netns_open_path(const char *path, int *ret_fd)
{
    if (path == NULL || path[0] == '\0' || strnlen(path, DP_NETNS_PATH_MAX) >= DP_NETNS_PATH_MAX)
        return -EINVAL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    int r = dp_netns_check_fd(fd);
    if (r < 0) {
        close(fd);
        return r;
    }
    *ret_fd = fd;
    return 0;
}

int dp_netns_open_pid(pid_t pid, int *ret_fd)
{
    char path[64];
    if (pid <= 0)
        return -EINVAL;
    snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
    return dp_netns_open_path(path, ret_fd);
}

int dp_netns_open_current(int *ret_fd)
{
    return dp_netns_open_path("/proc/thread-self/ns/net", ret_fd);
}

int dp_netns_inode(int fd, uint64_t *ret_ino)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    *ret_ino = (uint64_t)st.st_ino;
    return 0;
}

int dp_netns_same(int fd_a, int fd_b)
{
    struct stat a, b;
    if (fstat(fd_a, &a) < 0 || fstat(fd_b, &b) < 0)
        return -errno;
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

int dp_netns_run(int nsfd, dp_netns_fn *fn, void *arg)
{
    int self, r;

    r = dp_netns_open_current(&self);
    if (r < 0)
        return r;
    if (setns(nsfd, CLONE_NEWNET) < 0) {
        r = -errno;
        close(self);
        return r;
    }
    r = fn(arg);
    /* The way back must work: staying in a pod netns would be a silent disaster. */
    if (setns(self, CLONE_NEWNET) < 0)
        dp_bug(__FILE__, __LINE__, "setns back to the original netns failed");
    close(self);
    return r;
}

struct socket_args {
    int domain, type, protocol;
    int fd;
};

static int make_socket(void *arg)
{
    struct socket_args *a = arg;
    a->fd = socket(a->domain, a->type | SOCK_CLOEXEC, a->protocol);
    return a->fd < 0 ? -errno : 0;
}

int dp_netns_socket(int nsfd, int domain, int type, int protocol, int *ret_fd)
{
    struct socket_args a = {.domain = domain, .type = type, .protocol = protocol, .fd = -1};
    int r = dp_netns_run(nsfd, make_socket, &a);
    if (r < 0)
        return r;
    *ret_fd = a.fd;
    return 0;
}

int dp_netns_send_fd(int sock, int fd, const void *data, size_t len)
{
    static const char nul = 0;
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct iovec iov = {.iov_base = (void *)(len ? data : &nul), .iov_len = len ? len : 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};

    if (fd < 0)
        return -EBADF;
    memset(&ctl, 0, sizeof(ctl));
    msg.msg_control = ctl.b;
    msg.msg_controllen = sizeof(ctl.b);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));

    for (;;) {
        ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
        if (n >= 0)
            return (size_t)n == iov.iov_len ? 0 : -EMSGSIZE;
        if (errno != EINTR)
            return -errno;
    }
}

int dp_netns_recv_fd(int sock, void *data, size_t cap, size_t *ret_len, int *ret_fd)
{
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(int) * 4)];
    } ctl;
    struct iovec iov = {.iov_base = data, .iov_len = cap};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    ssize_t n;
    int fd = -1, r = 0;

    msg.msg_control = ctl.b;
    msg.msg_controllen = sizeof(ctl.b);
    do
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;

    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < nfds; i++) {
            int got;
            memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (fd < 0)
                fd = got;
            else
                close(got); /* only one fd per message is part of the contract */
        }
    }
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
        r = -EMSGSIZE;
    else if (n == 0 && fd < 0)
        r = -ECONNRESET;
    if (r < 0) {
        if (fd >= 0)
            close(fd);
        return r;
    }
    *ret_len = (size_t)n;
    *ret_fd = fd;
    return 0;
}
