/*
 * netns.h — network namespace helpers: open a netns by path or pid, run a function inside it
 * and come back, create a socket that lives in another netns. To hand a netns fd to another
 * process over a unix socket (SCM_RIGHTS) use dp_sock_send_fd / dp_sock_recv_fd (sock.h).
 *
 * setns(2) switches the netns of the calling THREAD only. dp_netns_run() switches the calling
 * thread into the target netns, runs the function, and switches back on every path; if the way
 * back fails the thread would silently keep running in a pod's netns, so that aborts (a bug or a
 * kernel in distress — never input). Nothing here logs.
 *
 * Every fd returned is O_CLOEXEC and owned by the caller (close(2) it).
 */
#ifndef DP_NETNS_H
#define DP_NETNS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/** Longest path accepted by dp_netns_open_path (a CNI_NETNS value is peer input). */
#define DP_NETNS_PATH_MAX 1024

/**
 * Open the netns at `path` (e.g. /var/run/netns/foo, /proc/123/ns/net). Verifies it is a
 * network namespace (nsfs + CLONE_NEWNET). Returns 0 and a new fd in *ret_fd; -ENOENT when the
 * path does not exist, -EINVAL when it is not a netns (or the path is empty/too long), other -errno.
 */
int dp_netns_open_path(const char *path, int *ret_fd);

/** Open /proc/<pid>/ns/net. Same errors as dp_netns_open_path (-ESRCH-like cases show as -ENOENT). */
int dp_netns_open_pid(pid_t pid, int *ret_fd);

/** Open the calling thread's current netns (/proc/thread-self/ns/net). */
int dp_netns_open_current(int *ret_fd);

/** 0 if `fd` refers to a network namespace, -EINVAL if not, other -errno if fstat fails. */
int dp_netns_check_fd(int fd);

/** Inode number identifying the netns behind fd (stable for its lifetime; use to dedupe). */
int dp_netns_inode(int fd, uint64_t *ret_ino);

/** 1 if both fds refer to the same netns, 0 if not, -errno on error. */
int dp_netns_same(int fd_a, int fd_b);

typedef int dp_netns_fn(void *arg);

/**
 * Run fn(arg) with the calling thread inside the netns `nsfd` (borrowed), then switch back to
 * the thread's original netns. Returns fn's return value, or -errno if entering failed (fn not
 * called). Aborts if the switch back fails. fn must not itself call setns(CLONE_NEWNET) without
 * restoring.
 */
int dp_netns_run(int nsfd, dp_netns_fn *fn, void *arg);

/**
 * socket(2) inside the netns `nsfd` (borrowed). The socket stays bound to that netns for its
 * whole life (bind/listen/connect later from any netns act there). `type` may carry
 * SOCK_NONBLOCK; SOCK_CLOEXEC is always added. Returns 0 and a new fd in *ret_fd or -errno.
 */
int dp_netns_socket(int nsfd, int domain, int type, int protocol, int *ret_fd);

/**
 * 1 if the netns `nsfd` (borrowed) has address `ip` ("10.1.2.3", "fd00::5"; a "/len" suffix is
 * ignored) on any interface, 0 if not, -EINVAL for an unparsable address, other -errno.
 */
int dp_netns_has_addr(int nsfd, const char *ip);

/** Longest pod UID accepted by dp_netns_find_pod. */
#define DP_NETNS_UID_MAX 64

/**
 * Find the network namespace of a pod that is already running (no CNI event to tell us): scan
 * <proc_root>/<pid>/cgroup for the pod UID — "pod<uid>" as cgroupfs writes it, or with '_' for
 * '-' as the systemd driver does, delimited by punctuation — open <proc_root>/<pid>/ns/net,
 * skip the caller's own netns (host processes can share a pod's cgroup path prefix, never its
 * netns), dedupe by inode, and accept a candidate only if it holds one of `ips` (so a stale or
 * recycled pid cannot hand us the wrong pod). proc_root NULL means "/proc".
 *
 * Returns 0 and a new fd in *ret_fd; -ENOENT when no process of the pod is found or none of its
 * netns holds the IPs; -ENOTUNIQ when two different netns both qualify; -EINVAL for a malformed
 * UID or no IPs; other -errno. Reads at most 4 KiB of each cgroup file.
 */
int dp_netns_find_pod(const char *proc_root, const char *pod_uid, const char *const *ips,
                      size_t n_ips, int *ret_fd);

#endif
