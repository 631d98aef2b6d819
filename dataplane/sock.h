/*
 * sock.h — socket helpers: "ip:port" parsing/formatting, non-blocking TCP listen/connect with
 * the mesh's socket options (SO_REUSEPORT, SO_MARK, IP_TRANSPARENT, IP_FREEBIND), the
 * original destination of a redirected connection (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST),
 * unix stream sockets, and passing one fd over a unix socket (SCM_RIGHTS).
 *
 * Every fd returned is new (the caller closes it), close-on-exec, and non-blocking unless a
 * function says otherwise. Functions return >= 0 on success or -errno; ret_* outputs are
 * written only on success. Nothing here logs.
 */
#ifndef DP_SOCK_H
#define DP_SOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/** Enough for "[<full IPv6>]:65535" and "unix:" + a sun_path. */
#define DP_SOCK_ADDRSTRLEN 120

/* ---- addresses */

/**
 * Parse "a.b.c.d:port" or "[v6]:port" (port 0..65535, decimal, required). No host names, no
 * zone ids, no surrounding spaces. Returns 0, or -EINVAL naming nothing (the caller says where
 * the text came from).
 */
int dp_sock_parse_addr(const char *s, struct sockaddr_storage *ret_ss, socklen_t *ret_len);
/** Parse an address without a port: "a.b.c.d", "v6" or "[v6]", and set `port`. 0 or -EINVAL. */
int dp_sock_parse_ip(const char *s, uint16_t port, struct sockaddr_storage *ret_ss,
                     socklen_t *ret_len);
/**
 * Format sa as "a.b.c.d:port", "[v6]:port" or "unix:<path>" ("unix:@name" for abstract
 * sockets) into out (always NUL-terminated). Returns out, so it can be used inline in logs;
 * unknown families give "?".
 */
const char *dp_sock_format_addr(const struct sockaddr *sa, socklen_t len, char *out, size_t outsz);
/** Port of an AF_INET/AF_INET6 address (host order), 0 for other families. */
uint16_t dp_sock_addr_port(const struct sockaddr *sa);
/** Set the port of an AF_INET/AF_INET6 address. -EAFNOSUPPORT for other families. */
int dp_sock_addr_set_port(struct sockaddr *sa, uint16_t port);
/** True if both are AF_INET/AF_INET6 with the same address and port. */
bool dp_sock_addr_equal(const struct sockaddr *a, const struct sockaddr *b);

/* ---- TCP */

/** Options for dp_sock_listen_tcp / dp_sock_connect_tcp; a zeroed struct means "none". */
struct dp_sock_opts {
    uint32_t mark;    /* SO_MARK when non-zero (needs CAP_NET_ADMIN) */
    bool transparent; /* IP_TRANSPARENT / IPV6_TRANSPARENT (CAP_NET_ADMIN) */
    bool freebind;    /* IP_FREEBIND / IPV6_FREEBIND: bind to an address not (yet) local */
    bool reuseport;   /* listen: SO_REUSEPORT (one listener per loop thread) */
    bool v6only;      /* AF_INET6: IPV6_V6ONLY (default: dual-stack) */
    bool nodelay;     /* TCP_NODELAY (accepted sockets inherit it from the listener) */
    int backlog;      /* listen: backlog, 0 = SOMAXCONN */
    /* connect: bind to this source first (port 0 = any; IP_BIND_ADDRESS_NO_PORT is set so
     * the port is picked at connect time and not reserved per address) — borrowed */
    const struct sockaddr *bind_addr;
    socklen_t bind_len;
};

/** Non-blocking TCP listener on sa (SO_REUSEADDR always). opts may be NULL. Use
 *  dp_sock_local_addr() to learn the port when sa had port 0. */
int dp_sock_listen_tcp(const struct sockaddr *sa, socklen_t len, const struct dp_sock_opts *opts,
                       int *ret_fd);
/**
 * Start a non-blocking TCP connect to sa. Returns 0 (connected already) or 1 (in progress:
 * wait for DP_EV_WRITE, then call dp_sock_connect_result()), with the new fd in *ret_fd; or
 * -errno (e.g. -EADDRNOTAVAIL for a bad bind_addr, -EPERM for mark/transparent without
 * CAP_NET_ADMIN). opts may be NULL.
 */
int dp_sock_connect_tcp(const struct sockaddr *sa, socklen_t len, const struct dp_sock_opts *opts,
                        int *ret_fd);
/** After a connect in progress became writable: 0 if connected, else the -errno it failed
 *  with (SO_ERROR), e.g. -ECONNREFUSED. */
int dp_sock_connect_result(int fd);
/** accept4(), non-blocking and close-on-exec. ret_peer/ret_len may be NULL. -EAGAIN when no
 *  connection is pending. Transient per-connection errors (ECONNABORTED) come back as -errno
 *  too: callers just try again. */
int dp_sock_accept(int lfd, struct sockaddr_storage *ret_peer, socklen_t *ret_len, int *ret_fd);
int dp_sock_set_nodelay(int fd, bool on);
/** TCP keepalive: probe after idle_s of silence, every intvl_s, give up after cnt probes
 *  (the connection then fails with -ETIMEDOUT). idle_s == 0 turns keepalive off. */
int dp_sock_set_keepalive(int fd, unsigned idle_s, unsigned intvl_s, unsigned cnt);
/** Close fd so that the peer sees a reset (RST, ECONNRESET) instead of an orderly FIN: how a
 *  proxy passes on a reset or refuses a connection. Always closes fd; returns 0 or the -errno
 *  of setting SO_LINGER (the fd is closed either way). The caller must have removed fd from
 *  its loop first. */
int dp_sock_close_reset(int fd);
/** getsockname / getpeername into a sockaddr_storage. */
int dp_sock_local_addr(int fd, struct sockaddr_storage *ret_ss, socklen_t *ret_len);
int dp_sock_peer_addr(int fd, struct sockaddr_storage *ret_ss, socklen_t *ret_len);
/**
 * Original destination of a connection redirected by netfilter (nftables `redirect`/`dnat`)
 * — SO_ORIGINAL_DST for IPv4 (also for v4-mapped peers on a dual-stack socket, returned as
 * AF_INET), IP6T_SO_ORIGINAL_DST for IPv6. -ENOENT when the connection was not NATed (no
 * conntrack entry), -ENOPROTOOPT when conntrack is not available.
 */
int dp_sock_original_dst(int fd, struct sockaddr_storage *ret_ss, socklen_t *ret_len);

/* ---- unix stream sockets */

#define DP_SOCK_BLOCKING (1u << 0) /* leave the fd blocking (CNI plugin style one-shot use) */

/**
 * Listen on a unix stream socket. A path starting with '@' is abstract (Linux). A stale
 * socket file at path is replaced; any other existing file is -EEXIST. mode != 0 is applied
 * with chmod() after bind (e.g. 0660). backlog 0 = SOMAXCONN. -ENAMETOOLONG if the path does
 * not fit sun_path. The fd is non-blocking unless flags has DP_SOCK_BLOCKING.
 */
int dp_sock_listen_unix(const char *path, unsigned mode, int backlog, unsigned flags, int *ret_fd);
/** Connect to a unix stream socket (abstract with '@'). Non-blocking connects to a unix socket
 *  complete at once or fail (-EAGAIN: the listener's backlog is full; -ECONNREFUSED, -ENOENT). */
int dp_sock_connect_unix(const char *path, unsigned flags, int *ret_fd);
/** Credentials (pid, uid, gid) of the peer of a connected unix socket (SO_PEERCRED). */
int dp_sock_peer_cred(int fd, pid_t *ret_pid, uid_t *ret_uid, gid_t *ret_gid);

/**
 * Send `len` (>= 1) bytes of data with one fd attached (SCM_RIGHTS), MSG_NOSIGNAL. Returns the
 * bytes sent (the fd travels with the first byte; a short send still passed it), -EINVAL for
 * len 0 or a negative fd, or -errno (-EAGAIN on a full non-blocking socket).
 */
ssize_t dp_sock_send_fd(int sock, int fd, const void *data, size_t len);
/**
 * Receive up to `len` bytes and at most one fd. *ret_fd is the received fd (new, close-on-exec)
 * or -1 when the message carried none. Returns the bytes received (0 = EOF). Control data that
 * was truncated (MSG_CTRUNC), more than one fd, or any other control message is rejected with
 * -EBADMSG, and every fd that did arrive is closed — a peer cannot make us leak fds.
 */
ssize_t dp_sock_recv_fd(int sock, void *data, size_t len, int *ret_fd);

#endif
