/*
 * nft.h — the in-pod traffic redirection (and the host-side probe SNAT) that ambient mode needs,
 * built with libnftnl/libmnl as one atomic netfilter batch. Never runs the `nft` command.
 *
 * Pod side (inside the pod netns): ambit's own `inet` table DP_NFT_POD_TABLE, REDIRECT only,
 * matching Istio's in-pod rules (istio-ambient-internals.md §1.7/§1.9):
 *
 *   prerouting-mangle  filter/-150: mark&0xfff == 0x539  -> ct mark = ct mark&~0xfff | 0x111
 *   prerouting-nat     nat/-100:    tcp from the probe address -> accept
 *                                   tcp, daddr not loopback, dport != 15008, mark != 0x539
 *                                   -> redirect :15006            (omitted with bypass_inbound)
 *   output-mangle      route/-150:  ct mark&0xfff == 0x111 -> meta mark = ct mark
 *   output-nat         nat/-100:    tcp to the probe address -> accept
 *                                   [dns] udp/53 not via lo, tcp/53 not to loopback, mark != 0x539
 *                                   -> redirect :15053
 *                                   tcp with mark&0xfff == 0x111 -> accept
 *                                   not to loopback, out via lo -> accept (own pod address)
 *                                   tcp not to loopback, mark != 0x539 -> redirect :15001
 *   [dns] prerouting-raw/output-raw filter/-300: udp/53 ct zone 1 (as Istio's raw table)
 *
 * plus policy routing: `ip rule fwmark 0x111/0xfff pref 32764 lookup 100` and a local default
 * route on lo in table 100 (IPv4 and, when enabled, IPv6).
 *
 * Applying is "add table; add chains; flush table; add rules" in one batch ("add" = create if
 * missing): the result is the same whether the table existed or not (applying twice is a no-op,
 * drift in our table is repaired), and the kernel commits all or nothing. Removing is "add
 * table; delete table": exactly our table goes, and it succeeds when nothing is there.
 *
 * Host side (host netns): table DP_NFT_HOST_TABLE with sets probes-v4/probes-v6 of enrolled pod
 * IPs and a srcnat postrouting rule SNATing locally generated TCP (kubelet probes) to those IPs
 * to 169.254.7.127 / fd16:9254:7127:1337:ffff:ffff:ffff:ffff.
 *
 * Batches are built into a dp_buf so unit tests can decode them (dp_nft_batch_render) without a
 * kernel. Functions that talk to the kernel act on the calling thread's current netns; wrap them
 * in dp_netns_run() (or use the *_in() variants) for a pod. Nothing here logs.
 */
#ifndef DP_NFT_H
#define DP_NFT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define DP_NFT_POD_TABLE  "ambit"
#define DP_NFT_HOST_TABLE "ambit-host"
#define DP_NFT_PROBES_V4  "probes-v4"
#define DP_NFT_PROBES_V6  "probes-v6"

#define DP_MARK_PROXY      0x539u /* SO_MARK on every socket the node agent opens in a pod */
#define DP_MARK_CONN       0x111u /* connmark of connections the agent originated inbound */
#define DP_MARK_MASK       0xfffu
#define DP_ROUTE_TABLE     100u
#define DP_RULE_PREF       32764u
#define DP_PORT_OUTBOUND   15001
#define DP_PORT_INBOUND    15006
#define DP_PORT_HBONE      15008
#define DP_PORT_DNS        15053
#define DP_PROBE_SNAT_V4   "169.254.7.127"
#define DP_PROBE_SNAT_V6   "fd16:9254:7127:1337:ffff:ffff:ffff:ffff"

/** Largest batch we ever build (bounded: a fixed rule set, or a bounded list of addresses). */
#define DP_NFT_BATCH_MAX (256u * 1024u)
/** Most addresses one host-set update may carry. */
#define DP_NFT_MAX_ADDRS 64u

struct dp_nft_pod_opts {
    bool ipv4;           /* default true */
    bool ipv6;           /* default true */
    bool dns_capture;    /* default false: capture UDP/TCP 53 -> port_dns */
    bool bypass_inbound; /* default false: "ingress mode", no inbound 15006 redirect */
    uint16_t port_outbound, port_inbound, port_hbone, port_dns;
    struct in_addr probe4;
    struct in6_addr probe6;
};

/** Defaults above (both families, Istio's ports and probe addresses). */
void dp_nft_pod_opts_init(struct dp_nft_pod_opts *o);

enum dp_nft_op { DP_NFT_APPLY, DP_NFT_REMOVE };

/**
 * Build the pod batch (BATCH_BEGIN .. BATCH_END) for `op`, sequence numbers from `seq`.
 * Returns 0 and a new buffer in *ret_batch, -EINVAL (no family enabled, a zero port),
 * -ENOMEM.
 */
int dp_nft_pod_batch(const struct dp_nft_pod_opts *o, enum dp_nft_op op, uint32_t seq,
                     struct dp_buf **ret_batch);

/** Address of a pod, family AF_INET or AF_INET6. */
struct dp_nft_addr {
    int family;
    union {
        struct in_addr v4;
        struct in6_addr v6;
    } a;
};

/** Parse "10.1.2.3" or "fd00::5" (optionally with "/prefix", which is ignored). 0 or -EINVAL. */
int dp_nft_addr_parse(const char *s, struct dp_nft_addr *ret);

struct dp_nft_host_opts {
    bool ipv4, ipv6;   /* default true */
    int64_t probe_uid; /* -1 (default): any local socket, like iptables --socket-exists;
                          else only sockets of this uid (the kubelet's) */
    struct in_addr probe4;
    struct in6_addr probe6;
};

void dp_nft_host_opts_init(struct dp_nft_host_opts *o);

/**
 * Host table batch. DP_NFT_APPLY creates table/sets/chain if missing and (re)writes the SNAT
 * rules, keeping set members (idempotent); DP_NFT_REMOVE deletes the whole host table.
 */
int dp_nft_host_batch(const struct dp_nft_host_opts *o, enum dp_nft_op op, uint32_t seq,
                      struct dp_buf **ret_batch);

/**
 * Add (DP_NFT_APPLY) or remove (DP_NFT_REMOVE) pod addresses to/from the probe sets; both are
 * idempotent. Needs the host table to exist (else the kernel says -ENOENT). At most
 * DP_NFT_MAX_ADDRS addresses (-E2BIG), n > 0 (-EINVAL).
 */
int dp_nft_host_members_batch(const struct dp_nft_addr *addrs, size_t n, enum dp_nft_op op,
                              uint32_t seq, struct dp_buf **ret_batch);

/**
 * Decode a batch into text, one line per object, rules followed by one indented line per
 * expression in libnftnl's notation ("  [ meta load mark => reg 1 ]"). For tests and debugging
 * of batches built here: NOT for untrusted bytes. libnftnl's decoders trust kernel-format input
 * and exit() the process on some malformed attributes (found by fuzzing; message framing and
 * rule expression lists are checked here first, chain/set attributes are not).
 * Returns 0 and a new buffer (NUL-terminated text, length without NUL in ->len), -EINVAL on a
 * malformed batch, -ENOMEM.
 */
int dp_nft_batch_render(const void *batch, size_t len, struct dp_buf **ret_text);

/**
 * Send a batch to the kernel (current netns) and collect the answers. Returns 0 or the first
 * error the kernel reported (-errno; the batch then had no effect at all).
 */
int dp_nft_batch_send(const void *batch, size_t len);

/** 1 if table `name` of family `family` (NFPROTO_INET...) exists in the current netns, 0 if not,
 *  -errno. */
int dp_nft_table_exists(int family, const char *name);

/**
 * Policy routing in the current netns: fwmark rule + local route table, for the families
 * enabled in `o` (IPv6 is skipped when IPv6 is disabled on lo). DP_NFT_APPLY tolerates existing
 * entries, DP_NFT_REMOVE tolerates missing ones. 0 or -errno.
 */
int dp_nft_pod_routing(const struct dp_nft_pod_opts *o, enum dp_nft_op op);

/** 1 if the fwmark rule and the local route are present (IPv4), 0 if not, -errno. */
int dp_nft_pod_routing_present(void);

/**
 * Everything for a pod in the current netns: nft batch then routing (apply), or routing then
 * batch (remove). On an apply error, what was applied is removed again. 0 or -errno.
 */
int dp_nft_pod_apply(const struct dp_nft_pod_opts *o);
int dp_nft_pod_remove(const struct dp_nft_pod_opts *o);

/** 1 if ambit's pod table and routing are present in the current netns, 0 if not, -errno. */
int dp_nft_pod_present(void);

/** Same as above, inside the netns `nsfd` (borrowed). */
int dp_nft_pod_apply_in(int nsfd, const struct dp_nft_pod_opts *o);
int dp_nft_pod_remove_in(int nsfd, const struct dp_nft_pod_opts *o);
int dp_nft_pod_present_in(int nsfd);

/** 1 if the host table exists in the current netns, 0 if not, -errno. */
int dp_nft_host_present(void);

/** Host side in the current netns: table setup / teardown and probe set membership. */
int dp_nft_host_apply(const struct dp_nft_host_opts *o);
int dp_nft_host_remove(void);
int dp_nft_host_members(const struct dp_nft_addr *addrs, size_t n, enum dp_nft_op op);

#endif
