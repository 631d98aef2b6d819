/*
 * netns.c — see netns.h.
 *
 * Why /proc/thread-self: setns() is per thread, so "where am I" must be asked of the thread,
 * not of the process (/proc/self is the thread group leader).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <libmnl/libmnl.h>

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

/* ------------------------------------------------------------------ pod lookup */

struct addr_query {
    int family;
    unsigned char addr[16];
    int found;
};

static int on_addr(const struct nlmsghdr *nlh, void *data)
{
    struct addr_query *q = data;
    const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
    const struct nlattr *a;
    size_t alen = q->family == AF_INET ? 4 : 16;

    if (ifa->ifa_family != q->family)
        return MNL_CB_OK;
    mnl_attr_for_each(a, nlh, sizeof(*ifa))
    {
        uint16_t t = mnl_attr_get_type(a);
        if ((t == IFA_ADDRESS || t == IFA_LOCAL) && mnl_attr_get_payload_len(a) == alen &&
            memcmp(mnl_attr_get_payload(a), q->addr, alen) == 0)
            q->found = 1;
    }
    return MNL_CB_OK;
}

static int addr_dump(void *arg)
{
    struct addr_query *q = arg;
    char buf[16384]; /* MNL_SOCKET_BUFFER_SIZE is a sysconf() call */
    struct mnl_socket *nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    int r = 0;

    if (nl == NULL)
        return -errno;
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        r = -errno;
        goto out;
    }
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_GETADDR;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    nlh->nlmsg_seq = 1;
    struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
    ifa->ifa_family = (unsigned char)q->family;
    uint32_t portid = mnl_socket_get_portid(nl);
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
        r = -errno;
        goto out;
    }
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            break;
        }
        int cr = mnl_cb_run(buf, (size_t)n, 1, portid, on_addr, q);
        if (cr < 0) {
            r = -errno;
            break;
        }
        if (cr == MNL_CB_STOP)
            break;
    }
out:
    mnl_socket_close(nl);
    return r;
}

static int parse_ip(const char *ip, struct addr_query *q)
{
    char tmp[INET6_ADDRSTRLEN];
    size_t n = ip ? strcspn(ip, "/") : 0;
    if (n == 0 || n >= sizeof(tmp))
        return -EINVAL;
    memcpy(tmp, ip, n);
    tmp[n] = 0;
    memset(q, 0, sizeof(*q));
    if (inet_pton(AF_INET, tmp, q->addr) == 1)
        q->family = AF_INET;
    else if (inet_pton(AF_INET6, tmp, q->addr) == 1)
        q->family = AF_INET6;
    else
        return -EINVAL;
    return 0;
}

int dp_netns_has_addr(int nsfd, const char *ip)
{
    struct addr_query q;
    int r = parse_ip(ip, &q);
    if (r < 0)
        return r;
    r = dp_netns_run(nsfd, addr_dump, &q);
    return r < 0 ? r : q.found;
}

/* "pod<uid>" delimited by punctuation (or line end) somewhere in the text */
static bool cgroup_mentions(const char *text, const char *needle)
{
    size_t nl = strlen(needle);
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle)) {
        char before = p == text ? '/' : p[-1];
        char after = p[nl];
        if (ispunct((unsigned char)before) &&
            (after == '\0' || after == '\n' || ispunct((unsigned char)after)))
            return true;
    }
    return false;
}

static bool valid_uid(const char *uid)
{
    size_t n = strnlen(uid, DP_NETNS_UID_MAX + 1);
    if (n == 0 || n > DP_NETNS_UID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)uid[i]) && uid[i] != '-' && uid[i] != '_')
            return false;
    return true;
}

int dp_netns_find_pod(const char *proc_root, const char *pod_uid, const char *const *ips,
                      size_t n_ips, int *ret_fd)
{
    char want[2][DP_NETNS_UID_MAX + 4], path[512], text[4097];
    struct addr_query q[8];
    uint64_t seen[64], self_ino = 0;
    size_t n_seen = 0, nq = 0;
    int self = -1, found = -1, r = -ENOENT;
    DIR *d = NULL;

    if (pod_uid == NULL || !valid_uid(pod_uid) || ips == NULL || n_ips == 0)
        return -EINVAL;
    for (size_t i = 0; i < n_ips && nq < DP_ARRAY_SIZE(q); i++)
        if (parse_ip(ips[i], &q[nq]) == 0)
            nq++;
    if (nq == 0)
        return -EINVAL;
    snprintf(want[0], sizeof(want[0]), "pod%s", pod_uid);
    snprintf(want[1], sizeof(want[1]), "pod%s", pod_uid);
    for (char *p = want[1]; *p; p++) /* systemd cgroup driver: '-' -> '_' */
        if (*p == '-')
            *p = '_';
    proc_root = proc_root ? proc_root : "/proc";

    int rr = dp_netns_open_current(&self);
    if (rr < 0)
        return rr;
    if (dp_netns_inode(self, &self_ino) < 0)
        self_ino = 0;
    d = opendir(proc_root);
    if (d == NULL) {
        r = -errno;
        goto out;
    }
    for (struct dirent *de = readdir(d); de; de = readdir(d)) {
        const char *pid = de->d_name;
        if (!isdigit((unsigned char)pid[0]))
            continue;
        snprintf(path, sizeof(path), "%s/%s/cgroup", proc_root, pid);
        int cfd = open(path, O_RDONLY | O_CLOEXEC);
        if (cfd < 0)
            continue; /* the process went away: normal while scanning */
        ssize_t n = read(cfd, text, sizeof(text) - 1);
        close(cfd);
        if (n <= 0)
            continue;
        text[n] = 0;
        if (!cgroup_mentions(text, want[0]) && !cgroup_mentions(text, want[1]))
            continue;
        snprintf(path, sizeof(path), "%s/%s/ns/net", proc_root, pid);
        int nfd;
        uint64_t ino = 0;
        if (dp_netns_open_path(path, &nfd) < 0)
            continue;
        if (dp_netns_inode(nfd, &ino) < 0 || ino == self_ino) {
            close(nfd);
            continue;
        }
        bool dup = false;
        for (size_t i = 0; i < n_seen; i++)
            dup |= seen[i] == ino;
        if (dup || (found >= 0 && dp_netns_same(found, nfd) == 1)) {
            close(nfd);
            continue;
        }
        if (n_seen < DP_ARRAY_SIZE(seen))
            seen[n_seen++] = ino;
        bool holds = false;
        for (size_t i = 0; i < nq && !holds; i++) {
            struct addr_query t = q[i];
            holds = dp_netns_run(nfd, addr_dump, &t) == 0 && t.found;
        }
        if (!holds) {
            close(nfd);
            continue;
        }
        if (found >= 0) { /* two different netns claim the pod's address */
            close(nfd);
            r = -ENOTUNIQ;
            goto out;
        }
        found = nfd;
    }
    if (found >= 0) {
        *ret_fd = found;
        found = -1;
        r = 0;
    }
out:
    if (found >= 0)
        close(found);
    if (d)
        closedir(d);
    close(self);
    return r;
}
