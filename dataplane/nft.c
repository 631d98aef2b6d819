/*
 * nft.c — see nft.h. Three parts: expression/rule builders that append netlink messages to a
 * dp_buf, a renderer that decodes such a buffer back into text (tests), and the kernel side
 * (send a batch, rtnetlink rule/route).
 *
 * Why one table with chains of several types instead of Istio's three tables: one table is one
 * object to replace or delete atomically; the hooks and priorities (and therefore the order
 * packets meet the rules) are the same as Istio's nat/mangle/raw split.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fib_rules.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>

#include "common.h"
#include "netns.h"
#include "nft.h"

/* room reserved per message; our largest (a rule with ~12 expressions) is well under 1 KiB */
#define MSG_ROOM 4096

#define PRIO_RAW    (-300)
#define PRIO_MANGLE (-150)
#define PRIO_DSTNAT (-100)
#define PRIO_SRCNAT 100

/* ------------------------------------------------------------------ batch writer */

struct batch {
    struct dp_buf *b;
    uint32_t seq;
    int err; /* first error; later calls become no-ops */
};

static int batch_init(struct batch *bt, uint32_t seq)
{
    int r = dp_buf_new(MSG_ROOM, DP_NFT_BATCH_MAX, &bt->b);
    if (r < 0)
        return r;
    bt->seq = seq;
    bt->err = 0;
    return 0;
}

/* Start a message at the tail; returns NULL (and records the error) when out of room. */
static char *batch_room(struct batch *bt)
{
    if (bt->err)
        return NULL;
    int r = dp_buf_reserve(&bt->b, MSG_ROOM);
    if (r < 0) {
        bt->err = r;
        return NULL;
    }
    memset(dp_buf_tail(bt->b), 0, MSG_ROOM);
    return dp_buf_tail(bt->b);
}

static void batch_commit(struct batch *bt, struct nlmsghdr *nlh)
{
    DP_BUG_ON(nlh->nlmsg_len > MSG_ROOM);
    dp_buf_commit(bt->b, NLMSG_ALIGN(nlh->nlmsg_len));
}

static void batch_begin(struct batch *bt)
{
    char *p = batch_room(bt);
    if (p)
        batch_commit(bt, nftnl_batch_begin(p, bt->seq++));
}

static int batch_finish(struct batch *bt, struct dp_buf **ret)
{
    char *p = batch_room(bt);
    if (p)
        batch_commit(bt, nftnl_batch_end(p, bt->seq++));
    if (bt->err) {
        dp_buf_free(bt->b);
        bt->b = NULL;
        return bt->err;
    }
    *ret = bt->b;
    bt->b = NULL;
    return 0;
}

static struct nlmsghdr *msg_hdr(struct batch *bt, uint16_t type, uint16_t family, uint16_t flags)
{
    char *p = batch_room(bt);
    if (p == NULL)
        return NULL;
    return nftnl_nlmsg_build_hdr(p, type, family, flags | NLM_F_ACK, bt->seq++);
}

/* table: NEW with NLM_F_CREATE only = "add" (exists is fine); DEL = "delete" */
static void put_table(struct batch *bt, uint16_t type, uint16_t flags, int family, const char *name)
{
    struct nftnl_table *t = nftnl_table_alloc();
    struct nlmsghdr *nlh;
    if (t == NULL) {
        bt->err = bt->err ? bt->err : -ENOMEM;
        return;
    }
    nftnl_table_set_str(t, NFTNL_TABLE_NAME, name);
    nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, (uint32_t)family);
    nlh = msg_hdr(bt, type, (uint16_t)family, flags);
    if (nlh) {
        nftnl_table_nlmsg_build_payload(nlh, t);
        batch_commit(bt, nlh);
    }
    nftnl_table_free(t);
}

static void put_chain(struct batch *bt, int family, const char *table, const char *name,
                      const char *type, uint32_t hook, int32_t prio)
{
    struct nftnl_chain *c = nftnl_chain_alloc();
    struct nlmsghdr *nlh;
    if (c == NULL) {
        bt->err = bt->err ? bt->err : -ENOMEM;
        return;
    }
    nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, table);
    nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name);
    nftnl_chain_set_u32(c, NFTNL_CHAIN_FAMILY, (uint32_t)family);
    nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, type);
    nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, hook);
    nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, prio);
    nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
    nlh = msg_hdr(bt, NFT_MSG_NEWCHAIN, (uint16_t)family, NLM_F_CREATE);
    if (nlh) {
        nftnl_chain_nlmsg_build_payload(nlh, c);
        batch_commit(bt, nlh);
    }
    nftnl_chain_free(c);
}

/* DELRULE without a handle: every rule of `chain`, or of the whole table when chain is NULL */
static void put_flush(struct batch *bt, int family, const char *table, const char *chain)
{
    struct nftnl_rule *r = nftnl_rule_alloc();
    struct nlmsghdr *nlh;
    if (r == NULL) {
        bt->err = bt->err ? bt->err : -ENOMEM;
        return;
    }
    nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table);
    if (chain)
        nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
    nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, (uint32_t)family);
    nlh = msg_hdr(bt, NFT_MSG_DELRULE, (uint16_t)family, 0);
    if (nlh) {
        nftnl_rule_nlmsg_build_payload(nlh, r);
        batch_commit(bt, nlh);
    }
    nftnl_rule_free(r);
}

/* ------------------------------------------------------------------ rule builder */

struct rb {
    struct nftnl_rule *r;
    int err;
};

static void rb_start(struct rb *rb, int family, const char *table, const char *chain)
{
    rb->err = 0;
    rb->r = nftnl_rule_alloc();
    if (rb->r == NULL) {
        rb->err = -ENOMEM;
        return;
    }
    nftnl_rule_set_str(rb->r, NFTNL_RULE_TABLE, table);
    nftnl_rule_set_str(rb->r, NFTNL_RULE_CHAIN, chain);
    nftnl_rule_set_u32(rb->r, NFTNL_RULE_FAMILY, (uint32_t)family);
}

static struct nftnl_expr *rb_expr(struct rb *rb, const char *name)
{
    if (rb->err)
        return NULL;
    struct nftnl_expr *e = nftnl_expr_alloc(name);
    if (e == NULL) {
        rb->err = -ENOMEM;
        return NULL;
    }
    nftnl_rule_add_expr(rb->r, e); /* the rule owns it from here */
    return e;
}

static void e_meta_load(struct rb *rb, uint32_t key)
{
    struct nftnl_expr *e = rb_expr(rb, "meta");
    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
        nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
    }
}

static void e_meta_set(struct rb *rb, uint32_t key)
{
    struct nftnl_expr *e = rb_expr(rb, "meta");
    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
        nftnl_expr_set_u32(e, NFTNL_EXPR_META_SREG, NFT_REG_1);
    }
}

static void e_ct_load(struct rb *rb, uint32_t key)
{
    struct nftnl_expr *e = rb_expr(rb, "ct");
    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, key);
        nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
    }
}

static void e_ct_set(struct rb *rb, uint32_t key)
{
    struct nftnl_expr *e = rb_expr(rb, "ct");
    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, key);
        nftnl_expr_set_u32(e, NFTNL_EXPR_CT_SREG, NFT_REG_1);
    }
}

static void e_cmp(struct rb *rb, uint32_t op, const void *data, uint32_t len)
{
    struct nftnl_expr *e = rb_expr(rb, "cmp");
    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
        nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
    }
}

/* reg1 = (reg1 & mask) ^ xor, 32 bits */
static void e_bitwise32(struct rb *rb, uint32_t mask, uint32_t xor)
{
    struct nftnl_expr *e = rb_expr(rb, "bitwise");
    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, sizeof(uint32_t));
        nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, &mask, sizeof(mask));
        nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, &xor, sizeof(xor));
    }
}

static void e_payload(struct rb *rb, uint32_t base, uint32_t off, uint32_t len)
{
    struct nftnl_expr *e = rb_expr(rb, "payload");
    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, off);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
    }
}

static void e_imm_data(struct rb *rb, const void *data, uint32_t len)
{
    struct nftnl_expr *e = rb_expr(rb, "immediate");
    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_1);
        nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, data, len);
    }
}

static void v_accept(struct rb *rb)
{
    struct nftnl_expr *e = rb_expr(rb, "immediate");
    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, NF_ACCEPT);
    }
}

static void v_redirect(struct rb *rb, uint16_t port)
{
    uint16_t p = htons(port);
    e_imm_data(rb, &p, sizeof(p));
    struct nftnl_expr *e = rb_expr(rb, "redir");
    if (e)
        nftnl_expr_set_u32(e, NFTNL_EXPR_REDIR_REG_PROTO_MIN, NFT_REG_1);
}

static void v_snat(struct rb *rb, int family, const void *addr, uint32_t len)
{
    e_imm_data(rb, addr, len);
    struct nftnl_expr *e = rb_expr(rb, "nat");
    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_TYPE, NFT_NAT_SNAT);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FAMILY, (uint32_t)family);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN, NFT_REG_1);
    }
}

/* --- matchers, each the same expression sequence `nft` itself generates */

static void m_u8(struct rb *rb, uint32_t key, uint8_t v)
{
    e_meta_load(rb, key);
    e_cmp(rb, NFT_CMP_EQ, &v, 1);
}

static void m_nfproto(struct rb *rb, int nfproto)
{
    m_u8(rb, NFT_META_NFPROTO, (uint8_t)nfproto);
}

static void m_l4proto(struct rb *rb, int proto)
{
    m_u8(rb, NFT_META_L4PROTO, (uint8_t)proto);
}

static void m_mark(struct rb *rb, uint32_t op, uint32_t value)
{
    e_meta_load(rb, NFT_META_MARK);
    e_bitwise32(rb, DP_MARK_MASK, 0);
    e_cmp(rb, op, &value, sizeof(value));
}

/* saddr/daddr of `nfproto` (the caller already matched nfproto) */
static void m_addr(struct rb *rb, int nfproto, bool dst, uint32_t op, const void *addr)
{
    if (nfproto == NFPROTO_IPV4) {
        e_payload(rb, NFT_PAYLOAD_NETWORK_HEADER, dst ? 16 : 12, 4);
        e_cmp(rb, op, addr, 4);
    } else {
        e_payload(rb, NFT_PAYLOAD_NETWORK_HEADER, dst ? 24 : 8, 16);
        e_cmp(rb, op, addr, 16);
    }
}

static void m_not_loopback(struct rb *rb, int nfproto)
{
    struct in_addr lo4 = {.s_addr = htonl(INADDR_LOOPBACK)};
    if (nfproto == NFPROTO_IPV4)
        m_addr(rb, nfproto, true, NFT_CMP_NEQ, &lo4);
    else
        m_addr(rb, nfproto, true, NFT_CMP_NEQ, &in6addr_loopback);
}

static void m_port(struct rb *rb, bool dst, uint32_t op, uint16_t port)
{
    uint16_t p = htons(port);
    e_payload(rb, NFT_PAYLOAD_TRANSPORT_HEADER, dst ? 2 : 0, 2);
    e_cmp(rb, op, &p, sizeof(p));
}

static void m_oifname(struct rb *rb, uint32_t op, const char *name)
{
    char n[IFNAMSIZ] = {0};
    snprintf(n, sizeof(n), "%s", name);
    e_meta_load(rb, NFT_META_OIFNAME);
    e_cmp(rb, op, n, sizeof(n));
}

static void rb_end(struct batch *bt, struct rb *rb)
{
    if (rb->err == 0 && bt->err == 0) {
        struct nlmsghdr *nlh = msg_hdr(bt, NFT_MSG_NEWRULE,
                                       (uint16_t)nftnl_rule_get_u32(rb->r, NFTNL_RULE_FAMILY),
                                       NLM_F_CREATE | NLM_F_APPEND);
        if (nlh) {
            nftnl_rule_nlmsg_build_payload(nlh, rb->r);
            batch_commit(bt, nlh);
        }
    } else if (bt->err == 0) {
        bt->err = rb->err;
    }
    nftnl_rule_free(rb->r);
    rb->r = NULL;
}

/* ------------------------------------------------------------------ pod rules */

void dp_nft_pod_opts_init(struct dp_nft_pod_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->ipv4 = true;
    o->ipv6 = true;
    o->port_outbound = DP_PORT_OUTBOUND;
    o->port_inbound = DP_PORT_INBOUND;
    o->port_hbone = DP_PORT_HBONE;
    o->port_dns = DP_PORT_DNS;
    inet_pton(AF_INET, DP_PROBE_SNAT_V4, &o->probe4);
    inet_pton(AF_INET6, DP_PROBE_SNAT_V6, &o->probe6);
}

#define T DP_NFT_POD_TABLE

static int families(bool v4, bool v6, int out[2])
{
    int n = 0;
    if (v4)
        out[n++] = NFPROTO_IPV4;
    if (v6)
        out[n++] = NFPROTO_IPV6;
    return n;
}

static const void *probe_addr(const struct dp_nft_pod_opts *o, int nfproto)
{
    return nfproto == NFPROTO_IPV4 ? (const void *)&o->probe4 : (const void *)&o->probe6;
}

/* The DNS chains stay (empty) if DNS capture is later switched off on a re-apply; removing
 * them would cost the deletion penalty described in dp_nft_pod_batch on every apply. */
static void pod_chains(struct batch *bt, const struct dp_nft_pod_opts *o)
{
    const int F = NFPROTO_INET;
    put_chain(bt, F, T, "prerouting-mangle", "filter", NF_INET_PRE_ROUTING, PRIO_MANGLE);
    put_chain(bt, F, T, "output-mangle", "route", NF_INET_LOCAL_OUT, PRIO_MANGLE);
    put_chain(bt, F, T, "prerouting-nat", "nat", NF_INET_PRE_ROUTING, PRIO_DSTNAT);
    put_chain(bt, F, T, "output-nat", "nat", NF_INET_LOCAL_OUT, PRIO_DSTNAT);
    if (o->dns_capture) {
        put_chain(bt, F, T, "prerouting-raw", "filter", NF_INET_PRE_ROUTING, PRIO_RAW);
        put_chain(bt, F, T, "output-raw", "filter", NF_INET_LOCAL_OUT, PRIO_RAW);
    }
}

static void pod_rules(struct batch *bt, const struct dp_nft_pod_opts *o)
{
    const int F = NFPROTO_INET;
    int fam[2], nf = families(o->ipv4, o->ipv6, fam);
    struct rb rb;

    /* inbound from the agent's own sockets: remember the connection (connmark 0x111) */
    rb_start(&rb, F, T, "prerouting-mangle");
    m_mark(&rb, NFT_CMP_EQ, DP_MARK_PROXY);
    e_ct_load(&rb, NFT_CT_MARK);
    e_bitwise32(&rb, ~DP_MARK_MASK, DP_MARK_CONN);
    e_ct_set(&rb, NFT_CT_MARK);
    rb_end(bt, &rb);

    /* replies of those connections get the packet mark back (-> table 100 -> lo) */
    rb_start(&rb, F, T, "output-mangle");
    e_ct_load(&rb, NFT_CT_MARK);
    e_bitwise32(&rb, DP_MARK_MASK, 0);
    e_cmp(&rb, NFT_CMP_EQ, &(uint32_t){DP_MARK_CONN}, sizeof(uint32_t));
    e_ct_load(&rb, NFT_CT_MARK);
    e_meta_set(&rb, NFT_META_MARK);
    rb_end(bt, &rb);

    /* prerouting-nat: kubelet probes bypass, then everything inbound but HBONE -> 15006 */
    for (int i = 0; i < nf; i++) {
        rb_start(&rb, F, T, "prerouting-nat");
        m_nfproto(&rb, fam[i]);
        m_addr(&rb, fam[i], false, NFT_CMP_EQ, probe_addr(o, fam[i]));
        m_l4proto(&rb, IPPROTO_TCP);
        v_accept(&rb);
        rb_end(bt, &rb);
    }
    for (int i = 0; i < nf && !o->bypass_inbound; i++) {
        rb_start(&rb, F, T, "prerouting-nat");
        m_nfproto(&rb, fam[i]);
        m_not_loopback(&rb, fam[i]);
        m_l4proto(&rb, IPPROTO_TCP);
        m_port(&rb, true, NFT_CMP_NEQ, o->port_hbone);
        m_mark(&rb, NFT_CMP_NEQ, DP_MARK_PROXY);
        v_redirect(&rb, o->port_inbound);
        rb_end(bt, &rb);
    }

    /* output-nat */
    for (int i = 0; i < nf; i++) {
        rb_start(&rb, F, T, "output-nat");
        m_nfproto(&rb, fam[i]);
        m_addr(&rb, fam[i], true, NFT_CMP_EQ, probe_addr(o, fam[i]));
        m_l4proto(&rb, IPPROTO_TCP);
        v_accept(&rb);
        rb_end(bt, &rb);
    }
    if (o->dns_capture) {
        rb_start(&rb, F, T, "output-nat");
        m_oifname(&rb, NFT_CMP_NEQ, "lo");
        m_l4proto(&rb, IPPROTO_UDP);
        m_port(&rb, true, NFT_CMP_EQ, 53);
        m_mark(&rb, NFT_CMP_NEQ, DP_MARK_PROXY);
        v_redirect(&rb, o->port_dns);
        rb_end(bt, &rb);
        for (int i = 0; i < nf; i++) {
            rb_start(&rb, F, T, "output-nat");
            m_nfproto(&rb, fam[i]);
            m_not_loopback(&rb, fam[i]);
            m_l4proto(&rb, IPPROTO_TCP);
            m_port(&rb, true, NFT_CMP_EQ, 53);
            m_mark(&rb, NFT_CMP_NEQ, DP_MARK_PROXY);
            v_redirect(&rb, o->port_dns);
            rb_end(bt, &rb);
        }
    }
    rb_start(&rb, F, T, "output-nat");
    m_l4proto(&rb, IPPROTO_TCP);
    m_mark(&rb, NFT_CMP_EQ, DP_MARK_CONN);
    v_accept(&rb);
    rb_end(bt, &rb);
    for (int i = 0; i < nf; i++) { /* app -> its own pod address travels over lo */
        rb_start(&rb, F, T, "output-nat");
        m_nfproto(&rb, fam[i]);
        m_not_loopback(&rb, fam[i]);
        m_oifname(&rb, NFT_CMP_EQ, "lo");
        v_accept(&rb);
        rb_end(bt, &rb);
    }
    for (int i = 0; i < nf; i++) {
        rb_start(&rb, F, T, "output-nat");
        m_nfproto(&rb, fam[i]);
        m_not_loopback(&rb, fam[i]);
        m_l4proto(&rb, IPPROTO_TCP);
        m_mark(&rb, NFT_CMP_NEQ, DP_MARK_PROXY);
        v_redirect(&rb, o->port_outbound);
        rb_end(bt, &rb);
    }

    if (o->dns_capture) { /* separate conntrack zone so DNS port reuse cannot clash */
        uint16_t zone = 1;
        rb_start(&rb, F, T, "output-raw");
        m_l4proto(&rb, IPPROTO_UDP);
        m_mark(&rb, NFT_CMP_EQ, DP_MARK_PROXY);
        m_port(&rb, true, NFT_CMP_EQ, 53);
        e_imm_data(&rb, &zone, sizeof(zone));
        e_ct_set(&rb, NFT_CT_ZONE);
        rb_end(bt, &rb);
        rb_start(&rb, F, T, "prerouting-raw");
        m_l4proto(&rb, IPPROTO_UDP);
        m_mark(&rb, NFT_CMP_NEQ, DP_MARK_PROXY);
        m_port(&rb, false, NFT_CMP_EQ, 53);
        e_imm_data(&rb, &zone, sizeof(zone));
        e_ct_set(&rb, NFT_CT_ZONE);
        rb_end(bt, &rb);
    }
}

int dp_nft_pod_batch(const struct dp_nft_pod_opts *o, enum dp_nft_op op, uint32_t seq,
                     struct dp_buf **ret_batch)
{
    struct batch bt;
    int r;

    if (!o->ipv4 && !o->ipv6)
        return -EINVAL;
    if (!o->port_outbound || !o->port_inbound || !o->port_hbone || !o->port_dns)
        return -EINVAL;
    r = batch_init(&bt, seq);
    if (r < 0)
        return r;
    batch_begin(&bt);
    /* add without EXCL: a no-op when the table is there */
    put_table(&bt, NFT_MSG_NEWTABLE, NLM_F_CREATE, NFPROTO_INET, T);
    if (op == DP_NFT_REMOVE) {
        /* ...so the delete always finds it: the table is gone afterwards either way */
        put_table(&bt, NFT_MSG_DELTABLE, 0, NFPROTO_INET, T);
    } else {
        /* Chains are added (no-op if present), the table's rules flushed and rewritten.
         * Not "delete table + add table": any deletion makes the kernel flush its destroy
         * work (an RCU grace period, milliseconds on a busy node) when our netlink socket
         * closes, and a fresh pod has nothing to delete. */
        pod_chains(&bt, o);
        put_flush(&bt, NFPROTO_INET, T, NULL);
        pod_rules(&bt, o);
    }
    return batch_finish(&bt, ret_batch);
}

#undef T

/* ------------------------------------------------------------------ host probe SNAT */

void dp_nft_host_opts_init(struct dp_nft_host_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->ipv4 = true;
    o->ipv6 = true;
    o->probe_uid = -1;
    inet_pton(AF_INET, DP_PROBE_SNAT_V4, &o->probe4);
    inet_pton(AF_INET6, DP_PROBE_SNAT_V6, &o->probe6);
}

int dp_nft_addr_parse(const char *s, struct dp_nft_addr *ret)
{
    char tmp[INET6_ADDRSTRLEN + 8];
    struct dp_nft_addr a;
    size_t n;

    if (s == NULL)
        return -EINVAL;
    n = strcspn(s, "/");
    if (n == 0 || n >= INET6_ADDRSTRLEN)
        return -EINVAL;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    memset(&a, 0, sizeof(a));
    if (inet_pton(AF_INET, tmp, &a.a.v4) == 1)
        a.family = AF_INET;
    else if (inet_pton(AF_INET6, tmp, &a.a.v6) == 1)
        a.family = AF_INET6;
    else
        return -EINVAL;
    *ret = a;
    return 0;
}

static void put_set(struct batch *bt, const char *name, uint32_t keytype, uint32_t keylen,
                    uint32_t id)
{
    struct nftnl_set *s = nftnl_set_alloc();
    struct nlmsghdr *nlh;
    if (s == NULL) {
        bt->err = bt->err ? bt->err : -ENOMEM;
        return;
    }
    nftnl_set_set_str(s, NFTNL_SET_TABLE, DP_NFT_HOST_TABLE);
    nftnl_set_set_str(s, NFTNL_SET_NAME, name);
    nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_INET);
    nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, keytype);
    nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, keylen);
    nftnl_set_set_u32(s, NFTNL_SET_ID, id);
    nlh = msg_hdr(bt, NFT_MSG_NEWSET, NFPROTO_INET, NLM_F_CREATE);
    if (nlh) {
        nftnl_set_nlmsg_build_payload(nlh, s);
        batch_commit(bt, nlh);
    }
    nftnl_set_free(s);
}

/* nft's datatype ids for set keys */
#define TYPE_IPADDR  7
#define TYPE_IP6ADDR 8

int dp_nft_host_batch(const struct dp_nft_host_opts *o, enum dp_nft_op op, uint32_t seq,
                      struct dp_buf **ret_batch)
{
    const int F = NFPROTO_INET;
    const char *T = DP_NFT_HOST_TABLE, *C = "postrouting";
    struct batch bt;
    int r;

    if (!o->ipv4 && !o->ipv6)
        return -EINVAL;
    if (o->probe_uid < -1 || o->probe_uid > UINT32_MAX - 1)
        return -EINVAL;
    r = batch_init(&bt, seq);
    if (r < 0)
        return r;
    batch_begin(&bt);
    put_table(&bt, NFT_MSG_NEWTABLE, NLM_F_CREATE, F, T);
    if (op == DP_NFT_REMOVE) {
        put_table(&bt, NFT_MSG_DELTABLE, 0, F, T);
        return batch_finish(&bt, ret_batch);
    }
    /* sets are always both present so membership updates need not know the options */
    put_set(&bt, DP_NFT_PROBES_V4, TYPE_IPADDR, 4, 1);
    put_set(&bt, DP_NFT_PROBES_V6, TYPE_IP6ADDR, 16, 2);
    put_chain(&bt, F, T, C, "nat", NF_INET_POST_ROUTING, PRIO_SRCNAT);
    /* flush the chain (keeps the sets' members), then write the rules */
    put_flush(&bt, F, T, C);
    int fam[2], nf = families(o->ipv4, o->ipv6, fam);
    for (int i = 0; i < nf; i++) {
        struct rb rb;
        bool v4 = fam[i] == NFPROTO_IPV4;
        rb_start(&rb, F, T, C);
        m_nfproto(&rb, fam[i]);
        m_l4proto(&rb, IPPROTO_TCP);
        /* meta skuid only evaluates for packets with a local full socket: forwarded traffic
         * (kube-proxy, other nodes) never matches, like iptables' --socket-exists */
        e_meta_load(&rb, NFT_META_SKUID);
        if (o->probe_uid < 0)
            e_cmp(&rb, NFT_CMP_GTE, &(uint32_t){0}, sizeof(uint32_t));
        else
            e_cmp(&rb, NFT_CMP_EQ, &(uint32_t){(uint32_t)o->probe_uid}, sizeof(uint32_t));
        e_payload(&rb, NFT_PAYLOAD_NETWORK_HEADER, v4 ? 16 : 24, v4 ? 4 : 16);
        struct nftnl_expr *e = rb_expr(&rb, "lookup");
        if (e) {
            nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
            nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, v4 ? DP_NFT_PROBES_V4 : DP_NFT_PROBES_V6);
            nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, v4 ? 1 : 2);
        }
        if (v4)
            v_snat(&rb, fam[i], &o->probe4, 4);
        else
            v_snat(&rb, fam[i], &o->probe6, 16);
        rb_end(&bt, &rb);
    }
    return batch_finish(&bt, ret_batch);
}

static void put_elems(struct batch *bt, uint16_t type, uint16_t flags, const char *set,
                      const struct dp_nft_addr *addrs, size_t n, int family)
{
    struct nftnl_set *s;
    struct nlmsghdr *nlh;
    size_t count = 0;

    for (size_t i = 0; i < n; i++)
        count += addrs[i].family == family;
    if (count == 0 || bt->err)
        return;
    s = nftnl_set_alloc();
    if (s == NULL) {
        bt->err = -ENOMEM;
        return;
    }
    nftnl_set_set_str(s, NFTNL_SET_TABLE, DP_NFT_HOST_TABLE);
    nftnl_set_set_str(s, NFTNL_SET_NAME, set);
    nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_INET);
    for (size_t i = 0; i < n; i++) {
        if (addrs[i].family != family)
            continue;
        struct nftnl_set_elem *e = nftnl_set_elem_alloc();
        if (e == NULL) {
            bt->err = -ENOMEM;
            goto out;
        }
        nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, &addrs[i].a, family == AF_INET ? 4 : 16);
        nftnl_set_elem_add(s, e);
    }
    nlh = msg_hdr(bt, type, NFPROTO_INET, flags);
    if (nlh) {
        nftnl_set_elems_nlmsg_build_payload(nlh, s);
        batch_commit(bt, nlh);
    }
out:
    nftnl_set_free(s);
}

int dp_nft_host_members_batch(const struct dp_nft_addr *addrs, size_t n, enum dp_nft_op op,
                              uint32_t seq, struct dp_buf **ret_batch)
{
    struct batch bt;
    int r;

    if (n == 0)
        return -EINVAL;
    if (n > DP_NFT_MAX_ADDRS)
        return -E2BIG;
    for (size_t i = 0; i < n; i++)
        if (addrs[i].family != AF_INET && addrs[i].family != AF_INET6)
            return -EINVAL;
    r = batch_init(&bt, seq);
    if (r < 0)
        return r;
    batch_begin(&bt);
    /* add without EXCL is a no-op for present members; add + delete removes idempotently */
    put_elems(&bt, NFT_MSG_NEWSETELEM, NLM_F_CREATE, DP_NFT_PROBES_V4, addrs, n, AF_INET);
    put_elems(&bt, NFT_MSG_NEWSETELEM, NLM_F_CREATE, DP_NFT_PROBES_V6, addrs, n, AF_INET6);
    if (op == DP_NFT_REMOVE) {
        put_elems(&bt, NFT_MSG_DELSETELEM, 0, DP_NFT_PROBES_V4, addrs, n, AF_INET);
        put_elems(&bt, NFT_MSG_DELSETELEM, 0, DP_NFT_PROBES_V6, addrs, n, AF_INET6);
    }
    return batch_finish(&bt, ret_batch);
}

/* ------------------------------------------------------------------ rendering (tests) */

static const char *family_str(int f)
{
    switch (f) {
    case NFPROTO_INET:
        return "inet";
    case NFPROTO_IPV4:
        return "ip";
    case NFPROTO_IPV6:
        return "ip6";
    default:
        return "?";
    }
}

static const char *hook_str(uint32_t h)
{
    static const char *names[] = {"prerouting", "input", "forward", "output", "postrouting"};
    return h < DP_ARRAY_SIZE(names) ? names[h] : "?";
}

static const char *verb(uint16_t flags, bool del)
{
    if (del)
        return "delete";
    return (flags & NLM_F_EXCL) ? "create" : "add";
}

/* libnftnl 1.2.4's rule parser trusts the expression list (an element without a name reaches a
 * strcmp on NULL): check the shape ourselves before handing a message over. */
static bool rule_msg_ok(const struct nlmsghdr *nlh)
{
    const struct nlattr *a, *e, *x;
    mnl_attr_for_each(a, nlh, sizeof(struct nfgenmsg))
    {
        if (mnl_attr_validate(a, MNL_TYPE_UNSPEC) < 0)
            return false;
        if ((mnl_attr_get_type(a) & NLA_TYPE_MASK) != NFTA_RULE_EXPRESSIONS)
            continue;
        mnl_attr_for_each_nested(e, a)
        {
            bool named = false;
            if ((mnl_attr_get_type(e) & NLA_TYPE_MASK) != NFTA_LIST_ELEM ||
                mnl_attr_validate(e, MNL_TYPE_NESTED) < 0)
                return false;
            mnl_attr_for_each_nested(x, e)
            {
                if ((mnl_attr_get_type(x) & NLA_TYPE_MASK) != NFTA_EXPR_NAME)
                    continue;
                if (mnl_attr_validate(x, MNL_TYPE_NUL_STRING) < 0)
                    return false;
                named = true;
            }
            if (!named)
                return false;
        }
    }
    return true;
}

static int render_rule(struct dp_buf **out, const struct nlmsghdr *nlh, bool del)
{
    struct nftnl_rule *r = nftnl_rule_alloc();
    struct nftnl_expr_iter *it = NULL;
    int ret = -ENOMEM;
    char eb[512];

    if (r == NULL)
        return -ENOMEM;
    if (!rule_msg_ok(nlh) || nftnl_rule_nlmsg_parse(nlh, r) < 0) {
        ret = -EINVAL;
        goto out;
    }
    const char *table = nftnl_rule_get_str(r, NFTNL_RULE_TABLE);
    const char *chain = nftnl_rule_get_str(r, NFTNL_RULE_CHAIN);
    if (del && chain == NULL) {
        ret = dp_buf_appendf(out, "flush table %s %s\n",
                             family_str((int)nftnl_rule_get_u32(r, NFTNL_RULE_FAMILY)),
                             table ? table : "?");
        goto out;
    }
    if (del) {
        ret = dp_buf_appendf(out, "flush chain %s %s %s\n",
                             family_str((int)nftnl_rule_get_u32(r, NFTNL_RULE_FAMILY)),
                             table ? table : "?", chain);
        goto out;
    }
    ret = dp_buf_appendf(out, "add rule %s %s %s\n",
                         family_str((int)nftnl_rule_get_u32(r, NFTNL_RULE_FAMILY)),
                         table ? table : "?", chain ? chain : "?");
    if (ret < 0)
        goto out;
    it = nftnl_expr_iter_create(r);
    if (it == NULL) {
        ret = -ENOMEM;
        goto out;
    }
    for (struct nftnl_expr *e = nftnl_expr_iter_next(it); e; e = nftnl_expr_iter_next(it)) {
        nftnl_expr_snprintf(eb, sizeof(eb), e, NFTNL_OUTPUT_DEFAULT, 0);
        /* trim trailing blanks libnftnl leaves behind */
        size_t l = strlen(eb);
        while (l && eb[l - 1] == ' ')
            eb[--l] = 0;
        ret = dp_buf_appendf(out, "  [ %s %s ]\n", nftnl_expr_get_str(e, NFTNL_EXPR_NAME), eb);
        if (ret < 0)
            goto out;
    }
out:
    nftnl_expr_iter_destroy(it);
    nftnl_rule_free(r);
    return ret;
}

/* Decoded by hand: libnftnl numbers the nested list entries 1, 2, 3... when building (the kernel
 * ignores the type) but its own parser only accepts type 1, so it cannot read back 2+ elements. */
static int render_elems(struct dp_buf **out, const struct nlmsghdr *nlh, bool del)
{
    const struct nfgenmsg *g = mnl_nlmsg_get_payload(nlh);
    const char *tn = "?", *sn = "?";
    const struct nlattr *a, *list = NULL;
    char ab[INET6_ADDRSTRLEN];
    int ret;

    mnl_attr_for_each(a, nlh, sizeof(*g))
    {
        if (mnl_attr_validate(a, MNL_TYPE_UNSPEC) < 0)
            return -EINVAL;
        switch (mnl_attr_get_type(a)) {
        case NFTA_SET_ELEM_LIST_TABLE:
            if (mnl_attr_validate(a, MNL_TYPE_NUL_STRING) < 0)
                return -EINVAL;
            tn = mnl_attr_get_str(a);
            break;
        case NFTA_SET_ELEM_LIST_SET:
            if (mnl_attr_validate(a, MNL_TYPE_NUL_STRING) < 0)
                return -EINVAL;
            sn = mnl_attr_get_str(a);
            break;
        case NFTA_SET_ELEM_LIST_ELEMENTS:
            list = a;
            break;
        }
    }
    ret = dp_buf_appendf(out, "%s element %s %s %s {", del ? "delete" : "add",
                         family_str(g->nfgen_family), tn, sn);
    if (ret < 0 || list == NULL)
        return ret < 0 ? ret : -EINVAL;
    const struct nlattr *el, *k, *v;
    mnl_attr_for_each_nested(el, list)
    {
        const void *key = NULL;
        uint16_t kl = 0;
        if (mnl_attr_validate(el, MNL_TYPE_NESTED) < 0)
            return -EINVAL;
        mnl_attr_for_each_nested(k, el)
        {
            if (mnl_attr_get_type(k) != NFTA_SET_ELEM_KEY ||
                mnl_attr_validate(k, MNL_TYPE_NESTED) < 0)
                continue;
            mnl_attr_for_each_nested(v, k)
            {
                if (mnl_attr_get_type(v) == NFTA_DATA_VALUE) {
                    key = mnl_attr_get_payload(v);
                    kl = mnl_attr_get_payload_len(v);
                }
            }
        }
        if (key && (kl == 4 || kl == 16))
            inet_ntop(kl == 4 ? AF_INET : AF_INET6, key, ab, sizeof(ab));
        else
            snprintf(ab, sizeof(ab), "?len%u", kl);
        ret = dp_buf_appendf(out, " %s", ab);
        if (ret < 0)
            return ret;
    }
    return dp_buf_append_str(out, " }\n");
}

static int render_one(struct dp_buf **out, const struct nlmsghdr *nlh)
{
    uint16_t type = nlh->nlmsg_type;
    int ret = 0;

    if (type == NFNL_MSG_BATCH_BEGIN)
        return dp_buf_append_str(out, "batch begin\n");
    if (type == NFNL_MSG_BATCH_END)
        return dp_buf_append_str(out, "batch end\n");
    if ((type >> 8) != NFNL_SUBSYS_NFTABLES)
        return -EINVAL;
    if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(struct nfgenmsg)))
        return -EINVAL;

    switch (type & 0xff) {
    case NFT_MSG_NEWTABLE:
    case NFT_MSG_DELTABLE: {
        struct nftnl_table *t = nftnl_table_alloc();
        if (t == NULL)
            return -ENOMEM;
        if (nftnl_table_nlmsg_parse(nlh, t) < 0) {
            ret = -EINVAL;
        } else {
            const char *n = nftnl_table_get_str(t, NFTNL_TABLE_NAME);
            ret = dp_buf_appendf(out, "%s table %s %s\n",
                                 verb(nlh->nlmsg_flags, (type & 0xff) == NFT_MSG_DELTABLE),
                                 family_str((int)nftnl_table_get_u32(t, NFTNL_TABLE_FAMILY)),
                                 n ? n : "?");
        }
        nftnl_table_free(t);
        return ret;
    }
    case NFT_MSG_NEWCHAIN: {
        struct nftnl_chain *c = nftnl_chain_alloc();
        if (c == NULL)
            return -ENOMEM;
        if (nftnl_chain_nlmsg_parse(nlh, c) < 0) {
            ret = -EINVAL;
        } else {
            const char *tn = nftnl_chain_get_str(c, NFTNL_CHAIN_TABLE);
            const char *cn = nftnl_chain_get_str(c, NFTNL_CHAIN_NAME);
            const char *ty = nftnl_chain_get_str(c, NFTNL_CHAIN_TYPE);
            ret = dp_buf_appendf(
                    out, "%s chain %s %s %s { type %s hook %s priority %d policy %s }\n",
                    verb(nlh->nlmsg_flags, false),
                    family_str((int)nftnl_chain_get_u32(c, NFTNL_CHAIN_FAMILY)), tn ? tn : "?",
                    cn ? cn : "?", ty ? ty : "?",
                    hook_str(nftnl_chain_get_u32(c, NFTNL_CHAIN_HOOKNUM)),
                    nftnl_chain_get_s32(c, NFTNL_CHAIN_PRIO),
                    nftnl_chain_get_u32(c, NFTNL_CHAIN_POLICY) == NF_ACCEPT ? "accept" : "drop");
        }
        nftnl_chain_free(c);
        return ret;
    }
    case NFT_MSG_NEWRULE:
    case NFT_MSG_DELRULE:
        return render_rule(out, nlh, (type & 0xff) == NFT_MSG_DELRULE);
    case NFT_MSG_NEWSET: {
        struct nftnl_set *s = nftnl_set_alloc();
        if (s == NULL)
            return -ENOMEM;
        if (nftnl_set_nlmsg_parse(nlh, s) < 0) {
            ret = -EINVAL;
        } else {
            const char *tn = nftnl_set_get_str(s, NFTNL_SET_TABLE);
            const char *sn = nftnl_set_get_str(s, NFTNL_SET_NAME);
            uint32_t kt = nftnl_set_get_u32(s, NFTNL_SET_KEY_TYPE);
            ret = dp_buf_appendf(out, "%s set %s %s %s { type %s }\n",
                                 verb(nlh->nlmsg_flags, false),
                                 family_str((int)nftnl_set_get_u32(s, NFTNL_SET_FAMILY)),
                                 tn ? tn : "?", sn ? sn : "?",
                                 kt == TYPE_IPADDR    ? "ipv4_addr"
                                 : kt == TYPE_IP6ADDR ? "ipv6_addr"
                                                      : "?");
        }
        nftnl_set_free(s);
        return ret;
    }
    case NFT_MSG_NEWSETELEM:
    case NFT_MSG_DELSETELEM:
        return render_elems(out, nlh, (type & 0xff) == NFT_MSG_DELSETELEM);
    default:
        return -EINVAL;
    }
}

int dp_nft_batch_render(const void *batch, size_t len, struct dp_buf **ret_text)
{
    struct dp_buf *out = NULL;
    const char *p = batch;
    int r = dp_buf_new(4096, DP_NFT_BATCH_MAX * 4, &out);
    if (r < 0)
        return r;
    while (len > 0) {
        const struct nlmsghdr *nlh = (const void *)p;
        if (len < sizeof(*nlh) || nlh->nlmsg_len < sizeof(*nlh) || nlh->nlmsg_len > len) {
            r = -EINVAL;
            goto fail;
        }
        r = render_one(&out, nlh);
        if (r < 0)
            goto fail;
        size_t step = NLMSG_ALIGN(nlh->nlmsg_len);
        if (step > len)
            step = len;
        p += step;
        len -= step;
    }
    r = dp_buf_reserve(&out, 1);
    if (r < 0)
        goto fail;
    *dp_buf_tail(out) = 0;
    *ret_text = out;
    return 0;
fail:
    dp_buf_free(out);
    return r;
}

/* ------------------------------------------------------------------ kernel side */

/* Read every pending answer; return the first error the kernel reported. The kernel processes
 * a netlink request synchronously inside sendmsg(), so everything it has to say is queued by
 * the time we read (nftables' own mnl_batch_talk relies on the same). */
static int drain_acks(struct mnl_socket *nl, uint32_t portid)
{
    char buf[16384]; /* MNL_SOCKET_BUFFER_SIZE is a sysconf() call (VLA) */
    int first = 0;
    for (;;) {
        ssize_t n = recv(mnl_socket_get_fd(nl), buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return first;
            return first ? first : -errno;
        }
        if (n == 0)
            return first;
        int r = mnl_cb_run(buf, (size_t)n, 0, portid, NULL, NULL);
        if (r < 0 && first == 0)
            first = -errno ? -errno : -EIO;
    }
}

static int nl_open(int bus, struct mnl_socket **ret)
{
    struct mnl_socket *nl = mnl_socket_open2(bus, SOCK_CLOEXEC);
    if (nl == NULL)
        return -errno;
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        int r = -errno;
        mnl_socket_close(nl);
        return r;
    }
    int one = 1;
    mnl_socket_setsockopt(nl, NETLINK_CAP_ACK, &one, sizeof(one));
    *ret = nl;
    return 0;
}

int dp_nft_batch_send(const void *batch, size_t len)
{
    struct mnl_socket *nl;
    int r = nl_open(NETLINK_NETFILTER, &nl);
    if (r < 0)
        return r;
    if (mnl_socket_sendto(nl, batch, len) < 0)
        r = -errno;
    else
        r = drain_acks(nl, mnl_socket_get_portid(nl));
    mnl_socket_close(nl);
    return r;
}

/* one request, blocking wait for its answer(s); cb may see data messages */
static int nl_talk(int bus, struct nlmsghdr *nlh, mnl_cb_t cb, void *data)
{
    struct mnl_socket *nl;
    char buf[16384]; /* MNL_SOCKET_BUFFER_SIZE is a sysconf() call (VLA) */
    int r = nl_open(bus, &nl);
    if (r < 0)
        return r;
    uint32_t portid = mnl_socket_get_portid(nl);
    nlh->nlmsg_seq = (uint32_t)time(NULL);
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
        r = mnl_cb_run(buf, (size_t)n, nlh->nlmsg_seq, portid, cb, data);
        if (r < 0) {
            r = -errno;
            break;
        }
        if (r == MNL_CB_STOP) {
            r = 0;
            break;
        }
    }
out:
    mnl_socket_close(nl);
    return r;
}

int dp_nft_table_exists(int family, const char *name)
{
    char buf[MSG_ROOM];
    struct nftnl_table *t = nftnl_table_alloc();
    if (t == NULL)
        return -ENOMEM;
    nftnl_table_set_str(t, NFTNL_TABLE_NAME, name);
    nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, (uint32_t)family);
    struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETTABLE, (uint16_t)family,
                                                 NLM_F_ACK, 0);
    nftnl_table_nlmsg_build_payload(nlh, t);
    nftnl_table_free(t);
    int r = nl_talk(NETLINK_NETFILTER, nlh, NULL, NULL);
    if (r == -ENOENT)
        return 0;
    return r < 0 ? r : 1;
}

static bool ipv6_on_lo(void)
{
    char c = '1';
    int fd = open("/proc/sys/net/ipv6/conf/lo/disable_ipv6", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    if (read(fd, &c, 1) != 1)
        c = '1';
    close(fd);
    return c == '0';
}

static int route_rule(int family, bool add)
{
    char buf[MSG_ROOM];
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = add ? RTM_NEWRULE : RTM_DELRULE;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0);
    struct fib_rule_hdr *h = mnl_nlmsg_put_extra_header(nlh, sizeof(*h));
    h->family = (uint8_t)family;
    h->action = FR_ACT_TO_TBL;
    h->table = DP_ROUTE_TABLE;
    mnl_attr_put_u32(nlh, FRA_FWMARK, DP_MARK_CONN);
    mnl_attr_put_u32(nlh, FRA_FWMASK, DP_MARK_MASK);
    mnl_attr_put_u32(nlh, FRA_PRIORITY, DP_RULE_PREF);
    mnl_attr_put_u32(nlh, FRA_TABLE, DP_ROUTE_TABLE);
    int r = nl_talk(NETLINK_ROUTE, nlh, NULL, NULL);
    if (add && r == -EEXIST)
        r = 0;
    if (!add && (r == -ENOENT || r == -ESRCH))
        r = 0;
    return r;
}

static int route_local(int family, bool add)
{
    char buf[MSG_ROOM];
    unsigned lo = if_nametoindex("lo");
    if (lo == 0)
        return -ENODEV;
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = add ? RTM_NEWROUTE : RTM_DELROUTE;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0);
    struct rtmsg *rt = mnl_nlmsg_put_extra_header(nlh, sizeof(*rt));
    rt->rtm_family = (uint8_t)family;
    rt->rtm_table = DP_ROUTE_TABLE;
    rt->rtm_protocol = RTPROT_BOOT;
    rt->rtm_scope = RT_SCOPE_HOST;
    rt->rtm_type = RTN_LOCAL;
    mnl_attr_put_u32(nlh, RTA_TABLE, DP_ROUTE_TABLE);
    mnl_attr_put_u32(nlh, RTA_OIF, lo);
    int r = nl_talk(NETLINK_ROUTE, nlh, NULL, NULL);
    if (add && r == -EEXIST)
        r = 0;
    if (!add && (r == -ENOENT || r == -ESRCH))
        r = 0;
    return r;
}

int dp_nft_pod_routing(const struct dp_nft_pod_opts *o, enum dp_nft_op op)
{
    bool add = op == DP_NFT_APPLY;
    int r, first = 0;
    int fam[2], nf = families(o->ipv4, o->ipv6 && ipv6_on_lo(), fam);

    for (int i = 0; i < nf; i++) {
        int af = fam[i] == NFPROTO_IPV4 ? AF_INET : AF_INET6;
        r = route_rule(af, add);
        if (r < 0 && add)
            return r;
        first = first ? first : r;
        r = route_local(af, add);
        if (r < 0 && add)
            return r;
        first = first ? first : r;
    }
    return first;
}

struct find_ctx {
    bool found;
};

static int on_rule(const struct nlmsghdr *nlh, void *data)
{
    struct find_ctx *f = data;
    const struct fib_rule_hdr *h = mnl_nlmsg_get_payload(nlh);
    uint32_t mark = 0, mask = 0, table = h->table;
    struct nlattr *a;
    mnl_attr_for_each(a, nlh, sizeof(*h))
    {
        if (mnl_attr_get_type(a) == FRA_FWMARK && mnl_attr_get_payload_len(a) == 4)
            mark = mnl_attr_get_u32(a);
        else if (mnl_attr_get_type(a) == FRA_FWMASK && mnl_attr_get_payload_len(a) == 4)
            mask = mnl_attr_get_u32(a);
        else if (mnl_attr_get_type(a) == FRA_TABLE && mnl_attr_get_payload_len(a) == 4)
            table = mnl_attr_get_u32(a);
    }
    if (mark == DP_MARK_CONN && mask == DP_MARK_MASK && table == DP_ROUTE_TABLE)
        f->found = true;
    return MNL_CB_OK;
}

static int on_route(const struct nlmsghdr *nlh, void *data)
{
    struct find_ctx *f = data;
    const struct rtmsg *rt = mnl_nlmsg_get_payload(nlh);
    uint32_t table = rt->rtm_table;
    struct nlattr *a;
    mnl_attr_for_each(a, nlh, sizeof(*rt))
    {
        if (mnl_attr_get_type(a) == RTA_TABLE && mnl_attr_get_payload_len(a) == 4)
            table = mnl_attr_get_u32(a);
    }
    if (table == DP_ROUTE_TABLE && rt->rtm_type == RTN_LOCAL && rt->rtm_dst_len == 0)
        f->found = true;
    return MNL_CB_OK;
}

int dp_nft_pod_routing_present(void)
{
    char buf[MSG_ROOM];
    struct find_ctx rule = {false}, route = {false};
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_GETRULE;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    struct fib_rule_hdr *h = mnl_nlmsg_put_extra_header(nlh, sizeof(*h));
    h->family = AF_INET;
    int r = nl_talk(NETLINK_ROUTE, nlh, on_rule, &rule);
    if (r < 0)
        return r;
    nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_GETROUTE;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    struct rtmsg *rt = mnl_nlmsg_put_extra_header(nlh, sizeof(*rt));
    rt->rtm_family = AF_INET;
    rt->rtm_table = RT_TABLE_UNSPEC;
    r = nl_talk(NETLINK_ROUTE, nlh, on_route, &route);
    if (r < 0)
        return r;
    return rule.found && route.found;
}

/* send a freshly built batch and free it (b is stolen; NULL after a failed build) */
static int send_built(int built, struct dp_buf *b)
{
    int r = built < 0 ? built : dp_nft_batch_send(dp_buf_head(b), b->len);
    dp_buf_free(b);
    return r;
}

int dp_nft_pod_apply(const struct dp_nft_pod_opts *o)
{
    struct dp_buf *b = NULL;
    int r = dp_nft_pod_batch(o, DP_NFT_APPLY, 1, &b);
    r = send_built(r, b);
    if (r < 0)
        return r;
    r = dp_nft_pod_routing(o, DP_NFT_APPLY);
    if (r < 0) /* never leave half of it behind */
        dp_nft_pod_remove(o);
    return r;
}

int dp_nft_pod_remove(const struct dp_nft_pod_opts *o)
{
    struct dp_buf *b = NULL;
    int r1 = dp_nft_pod_routing(o, DP_NFT_REMOVE);
    int r2 = dp_nft_pod_batch(o, DP_NFT_REMOVE, 1, &b);
    r2 = send_built(r2, b);
    return r2 < 0 ? r2 : r1;
}

int dp_nft_pod_present(void)
{
    int r = dp_nft_table_exists(NFPROTO_INET, DP_NFT_POD_TABLE);
    if (r <= 0)
        return r;
    return dp_nft_pod_routing_present();
}

static int run_apply(void *arg)
{
    return dp_nft_pod_apply(arg);
}

static int run_remove(void *arg)
{
    return dp_nft_pod_remove(arg);
}

static int run_present(void *arg)
{
    (void)arg;
    return dp_nft_pod_present();
}

int dp_nft_pod_apply_in(int nsfd, const struct dp_nft_pod_opts *o)
{
    return dp_netns_run(nsfd, run_apply, (void *)o);
}

int dp_nft_pod_remove_in(int nsfd, const struct dp_nft_pod_opts *o)
{
    return dp_netns_run(nsfd, run_remove, (void *)o);
}

int dp_nft_pod_present_in(int nsfd)
{
    return dp_netns_run(nsfd, run_present, NULL);
}

int dp_nft_host_apply(const struct dp_nft_host_opts *o)
{
    struct dp_buf *b = NULL;
    int r = dp_nft_host_batch(o, DP_NFT_APPLY, 1, &b);
    return send_built(r, b);
}

int dp_nft_host_present(void)
{
    return dp_nft_table_exists(NFPROTO_INET, DP_NFT_HOST_TABLE);
}

int dp_nft_host_remove(void)
{
    struct dp_buf *b = NULL;
    struct dp_nft_host_opts o;
    dp_nft_host_opts_init(&o);
    int r = dp_nft_host_batch(&o, DP_NFT_REMOVE, 1, &b);
    return send_built(r, b);
}

int dp_nft_host_members(const struct dp_nft_addr *addrs, size_t n, enum dp_nft_op op)
{
    struct dp_buf *b = NULL;
    int r = dp_nft_host_members_batch(addrs, n, op, 1, &b);
    return send_built(r, b);
}
