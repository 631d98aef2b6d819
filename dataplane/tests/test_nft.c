/* test_nft.c — the rule builder's batches, decoded without a kernel and compared with the
 * expected rules; plus (root only, skipped otherwise) apply/present/remove in a throw-away netns.
 *
 * The expected text below was checked rule by rule against `nft list ruleset` of the applied
 * batch (see test/netns/cni_*.sh for the kernel-side checks) and against the reference §1.7. */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <linux/netlink.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include "netns.h"
#include "nft.h"

static const char expect_pod_apply[] =
        "batch begin\n"
        "add table inet ambit\n"
        "add chain inet ambit prerouting-mangle { type filter hook prerouting priority -150 policy accept }\n"
        "add chain inet ambit output-mangle { type route hook output priority -150 policy accept }\n"
        "add chain inet ambit prerouting-nat { type nat hook prerouting priority -100 policy accept }\n"
        "add chain inet ambit output-nat { type nat hook output priority -100 policy accept }\n"
        "flush table inet ambit\n"
        "add rule inet ambit prerouting-mangle\n"
        "  [ meta load mark => reg 1 ]\n"
        "  [ bitwise reg 1 = ( reg 1 & 0x00000fff ) ^ 0x00000000 ]\n"
        "  [ cmp eq reg 1 0x00000539 ]\n"
        "  [ ct load mark => reg 1 ]\n"
        "  [ bitwise reg 1 = ( reg 1 & 0xfffff000 ) ^ 0x00000111 ]\n"
        "  [ ct set mark with reg 1 ]\n"
        "add rule inet ambit output-mangle\n"
        "  [ ct load mark => reg 1 ]\n"
        "  [ bitwise reg 1 = ( reg 1 & 0x00000fff ) ^ 0x00000000 ]\n"
        "  [ cmp eq reg 1 0x00000111 ]\n"
        "  [ ct load mark => reg 1 ]\n"
        "  [ meta set mark with reg 1 ]\n"
        "add rule inet ambit prerouting-nat\n"
        "  [ meta load nfproto => reg 1 ]\n"
        "  [ cmp eq reg 1 0x00000002 ]\n"
        "  [ payload load 4b @ network header + 12 => reg 1 ]\n"
        "  [ cmp eq reg 1 0x7f07fea9 ]\n"
        "  [ meta load l4proto => reg 1 ]\n"
        "  [ cmp eq reg 1 0x00000006 ]\n"
        "  [ immediate reg 0 accept ]\n"
        "add rule inet ambit prerouting-nat\n"
        "  [ meta load nfproto => reg 1 ]\n"
        "  [ cmp eq reg 1 0x0000000a ]\n"
        "  [ payload load 16b @ network header + 8 => reg 1 ]\n"
        "  [ cmp eq reg 1 0x549216fd 0x37132771 0xffffffff 0xffffffff ]\n"
        "  [ meta load l4proto => reg 1 ]\n"
        "  [ cmp eq reg 1 0x00000006 ]\n"
        "  [ immediate reg 0 accept ]\n"
        "add rule inet ambit prerouting-nat\n"
        "  [ meta load nfproto => reg 1 ]\n"
        "  [ cmp eq reg 1 0x00000002 ]\n"
        "  [ payload load 4b @ network header + 16 => reg 1 ]\n"
        "  [ cmp neq reg 1 0x0100007f ]\n"
        "  [ meta load l4proto => reg 1 ]\n"
        "  [ cmp eq reg 1 0x00000006 ]\n"
        "  [ payload load 2b @ transport header + 2 => reg 1 ]\n"
        "  [ cmp neq reg 1 0x0000a03a ]\n"
        "  [ meta load mark => reg 1 ]\n"
        "  [ bitwise reg 1 = ( reg 1 & 0x00000fff ) ^ 0x00000000 ]\n"
        "  [ cmp neq reg 1 0x00000539 ]\n"
        "  [ immediate reg 1 0x00009e3a ]\n"
        "  [ redir proto_min reg 1 ]\n"
        "add rule inet ambit prerouting-nat\n"
        "  [ meta load nfproto => reg 1 ]\n"
        "  [ cmp eq reg 1 0x0000000a ]\n"
        "  [ payload load 16b @ network header + 24 => reg 1 ]\n"
        "  [ cmp neq reg 1 0x00000000 0x00000000 0x00000000 0x01000000 ]\n"
        "  [ meta load l4proto => reg 1 ]\n"
        "  [ cmp eq reg 1 0x00000006 ]\n"
        "  [ payload load 2b @ transport header + 2 => reg 1 ]\n"
        "  [ cmp neq reg 1 0x0000a03a ]\n"
        "  [ meta load mark => reg 1 ]\n"
        "  [ bitwise reg 1 = ( reg 1 & 0x00000fff ) ^ 0x00000000 ]\n"
        "  [ cmp neq reg 1 0x00000539 ]\n"
        "  [ immediate reg 1 0x00009e3a ]\n"
        "  [ redir proto_min reg 1 ]\n"
        "add rule inet ambit output-nat\n"
        "  [ meta load nfproto => reg 1 ]\n"
        "  [ cmp eq reg 1 0x00000002 ]\n"
        "  [ payload load 4b @ network header + 16 => reg 1 ]\n"
        "  [ cmp eq reg 1 0x7f07fea9 ]\n"
        "  [ meta load l4proto => reg 1 ]\n"
        "  [ cmp eq reg 1 0x00000006 ]\n"
        "  [ immediate reg 0 accept ]\n"
        "add rule inet ambit output-nat\n"
        "  [ meta load nfproto => reg 1 ]\n"
        "  [ cmp eq reg 1 0x0000000a ]\n"
        "  [ payload load 16b @ network header + 24 => reg 1 ]\n"
        "  [ cmp eq reg 1 0x549216fd 0x37132771 0xffffffff 0xffffffff ]\n"
        "  [ meta load l4proto => reg 1 ]\n"
        "  [ cmp eq reg 1 0x00000006 ]\n"
        "  [ immediate reg 0 accept ]\n"
        "add rule inet ambit output-nat\n"
        "  [ meta load l4proto => reg 1 ]\n"
        "  [ cmp eq reg 1 0x00000006 ]\n"
        "  [ meta load mark => reg 1 ]\n"
        "  [ bitwise reg 1 = ( reg 1 & 0x00000fff ) ^ 0x00000000 ]\n"
        "  [ cmp eq reg 1 0x00000111 ]\n"
        "  [ immediate reg 0 accept ]\n"
        "add rule inet ambit output-nat\n"
        "  [ meta load nfproto => reg 1 ]\n"
        "  [ cmp eq reg 1 0x00000002 ]\n"
        "  [ payload load 4b @ network header + 16 => reg 1 ]\n"
        "  [ cmp neq reg 1 0x0100007f ]\n"
        "  [ meta load oifname => reg 1 ]\n"
        "  [ cmp eq reg 1 0x00006f6c 0x00000000 0x00000000 0x00000000 ]\n"
        "  [ immediate reg 0 accept ]\n"
        "add rule inet ambit output-nat\n"
        "  [ meta load nfproto => reg 1 ]\n"
        "  [ cmp eq reg 1 0x0000000a ]\n"
        "  [ payload load 16b @ network header + 24 => reg 1 ]\n"
        "  [ cmp neq reg 1 0x00000000 0x00000000 0x00000000 0x01000000 ]\n"
        "  [ meta load oifname => reg 1 ]\n"
        "  [ cmp eq reg 1 0x00006f6c 0x00000000 0x00000000 0x00000000 ]\n"
        "  [ immediate reg 0 accept ]\n"
        "add rule inet ambit output-nat\n"
        "  [ meta load nfproto => reg 1 ]\n"
        "  [ cmp eq reg 1 0x00000002 ]\n"
        "  [ payload load 4b @ network header + 16 => reg 1 ]\n"
        "  [ cmp neq reg 1 0x0100007f ]\n"
        "  [ meta load l4proto => reg 1 ]\n"
        "  [ cmp eq reg 1 0x00000006 ]\n"
        "  [ meta load mark => reg 1 ]\n"
        "  [ bitwise reg 1 = ( reg 1 & 0x00000fff ) ^ 0x00000000 ]\n"
        "  [ cmp neq reg 1 0x00000539 ]\n"
        "  [ immediate reg 1 0x0000993a ]\n"
        "  [ redir proto_min reg 1 ]\n"
        "add rule inet ambit output-nat\n"
        "  [ meta load nfproto => reg 1 ]\n"
        "  [ cmp eq reg 1 0x0000000a ]\n"
        "  [ payload load 16b @ network header + 24 => reg 1 ]\n"
        "  [ cmp neq reg 1 0x00000000 0x00000000 0x00000000 0x01000000 ]\n"
        "  [ meta load l4proto => reg 1 ]\n"
        "  [ cmp eq reg 1 0x00000006 ]\n"
        "  [ meta load mark => reg 1 ]\n"
        "  [ bitwise reg 1 = ( reg 1 & 0x00000fff ) ^ 0x00000000 ]\n"
        "  [ cmp neq reg 1 0x00000539 ]\n"
        "  [ immediate reg 1 0x0000993a ]\n"
        "  [ redir proto_min reg 1 ]\n"
        "batch end\n";

static const char expect_host_apply[] =
        "batch begin\n"
        "add table inet ambit-host\n"
        "add set inet ambit-host probes-v4 { type ipv4_addr }\n"
        "add set inet ambit-host probes-v6 { type ipv6_addr }\n"
        "add chain inet ambit-host postrouting { type nat hook postrouting priority 100 policy accept }\n"
        "flush chain inet ambit-host postrouting\n"
        "add rule inet ambit-host postrouting\n"
        "  [ meta load nfproto => reg 1 ]\n"
        "  [ cmp eq reg 1 0x00000002 ]\n"
        "  [ meta load l4proto => reg 1 ]\n"
        "  [ cmp eq reg 1 0x00000006 ]\n"
        "  [ meta load skuid => reg 1 ]\n"
        "  [ cmp gte reg 1 0x00000000 ]\n"
        "  [ payload load 4b @ network header + 16 => reg 1 ]\n"
        "  [ lookup reg 1 set probes-v4 ]\n"
        "  [ immediate reg 1 0x7f07fea9 ]\n"
        "  [ nat snat ip addr_min reg 1 ]\n"
        "add rule inet ambit-host postrouting\n"
        "  [ meta load nfproto => reg 1 ]\n"
        "  [ cmp eq reg 1 0x0000000a ]\n"
        "  [ meta load l4proto => reg 1 ]\n"
        "  [ cmp eq reg 1 0x00000006 ]\n"
        "  [ meta load skuid => reg 1 ]\n"
        "  [ cmp gte reg 1 0x00000000 ]\n"
        "  [ payload load 16b @ network header + 24 => reg 1 ]\n"
        "  [ lookup reg 1 set probes-v6 ]\n"
        "  [ immediate reg 1 0x549216fd 0x37132771 0xffffffff 0xffffffff ]\n"
        "  [ nat snat ip6 addr_min reg 1 ]\n"
        "batch end\n";

static char *render(struct dp_buf *b)
{
    struct dp_buf *t = NULL;
    assert_int_equal(dp_nft_batch_render(dp_buf_head(b), b->len, &t), 0);
    char *s = strdup(dp_buf_head(t));
    dp_buf_free(t);
    dp_buf_free(b);
    return s;
}

static char *pod_text(const struct dp_nft_pod_opts *o, enum dp_nft_op op)
{
    struct dp_buf *b = NULL;
    assert_int_equal(dp_nft_pod_batch(o, op, 1, &b), 0);
    return render(b);
}

static unsigned count(const char *hay, const char *needle)
{
    unsigned n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void test_pod_apply_default(void **state)
{
    (void)state;
    struct dp_nft_pod_opts o;
    dp_nft_pod_opts_init(&o);
    char *s = pod_text(&o, DP_NFT_APPLY);
    assert_string_equal(s, expect_pod_apply);
    free(s);
}

static void test_pod_remove(void **state)
{
    (void)state;
    struct dp_nft_pod_opts o;
    dp_nft_pod_opts_init(&o);
    char *s = pod_text(&o, DP_NFT_REMOVE);
    /* add + delete: succeeds whether or not the table exists, touches nothing else */
    assert_string_equal(s, "batch begin\n"
                           "add table inet ambit\n"
                           "delete table inet ambit\n"
                           "batch end\n");
    free(s);
}

static void test_pod_dns_capture(void **state)
{
    (void)state;
    struct dp_nft_pod_opts o;
    dp_nft_pod_opts_init(&o);
    o.dns_capture = true;
    char *s = pod_text(&o, DP_NFT_APPLY);
    assert_non_null(strstr(s, "add chain inet ambit prerouting-raw { type filter hook prerouting "
                              "priority -300 policy accept }\n"));
    assert_non_null(strstr(s, "add chain inet ambit output-raw { type filter hook output "
                              "priority -300 policy accept }\n"));
    /* udp/53 (one, family-neutral) + tcp/53 per family -> 15053 (0x3acd big-endian) */
    assert_int_equal(count(s, "[ immediate reg 1 0x0000cd3a ]"), 3);
    assert_int_equal(count(s, "[ ct set zone with reg 1 ]"), 2);
    assert_int_equal(count(s, "[ cmp eq reg 1 0x00003500 ]"), 5); /* port 53 */
    free(s);
}

static void test_pod_variants(void **state)
{
    (void)state;
    struct dp_nft_pod_opts o;
    char *s;

    dp_nft_pod_opts_init(&o);
    o.bypass_inbound = true; /* ingress mode: no redirect to 15006 (0x3a9e) */
    s = pod_text(&o, DP_NFT_APPLY);
    assert_null(strstr(s, "0x00009e3a"));
    assert_int_equal(count(s, "[ immediate reg 1 0x0000993a ]"), 2); /* 15001 still there */
    free(s);

    dp_nft_pod_opts_init(&o);
    o.ipv6 = false;
    s = pod_text(&o, DP_NFT_APPLY);
    assert_null(strstr(s, "cmp eq reg 1 0x0000000a")); /* no nfproto ipv6 match */
    assert_int_equal(count(s, "[ redir proto_min reg 1 ]"), 2);
    free(s);

    dp_nft_pod_opts_init(&o);
    o.ipv4 = false;
    s = pod_text(&o, DP_NFT_APPLY);
    assert_null(strstr(s, "cmp eq reg 1 0x00000002 ]")); /* no nfproto ipv4 match */
    free(s);

    dp_nft_pod_opts_init(&o);
    o.port_outbound = 16001;
    s = pod_text(&o, DP_NFT_APPLY);
    assert_int_equal(count(s, "[ immediate reg 1 0x0000813e ]"), 2);
    free(s);
}

static void test_pod_bad_opts(void **state)
{
    (void)state;
    struct dp_nft_pod_opts o;
    struct dp_buf *b = (void *)0x1;
    dp_nft_pod_opts_init(&o);
    o.ipv4 = o.ipv6 = false;
    assert_int_equal(dp_nft_pod_batch(&o, DP_NFT_APPLY, 1, &b), -EINVAL);
    dp_nft_pod_opts_init(&o);
    o.port_inbound = 0;
    assert_int_equal(dp_nft_pod_batch(&o, DP_NFT_APPLY, 1, &b), -EINVAL);
    assert_ptr_equal(b, (void *)0x1);
}

static void test_sequence_numbers(void **state)
{
    (void)state;
    struct dp_nft_pod_opts o;
    struct dp_buf *b = NULL;
    dp_nft_pod_opts_init(&o);
    assert_int_equal(dp_nft_pod_batch(&o, DP_NFT_REMOVE, 100, &b), 0);
    const struct nlmsghdr *n = (const void *)dp_buf_head(b);
    uint32_t expect = 100;
    size_t left = b->len, msgs = 0;
    while (left) {
        assert_true(n->nlmsg_len >= sizeof(*n) && NLMSG_ALIGN(n->nlmsg_len) <= left);
        assert_int_equal(n->nlmsg_seq, expect++);
        left -= NLMSG_ALIGN(n->nlmsg_len);
        n = (const void *)((const char *)n + NLMSG_ALIGN(n->nlmsg_len));
        msgs++;
    }
    assert_int_equal(msgs, 4);
    dp_buf_free(b);
}

static void test_host_apply_remove(void **state)
{
    (void)state;
    struct dp_nft_host_opts o;
    struct dp_buf *b = NULL;
    char *s;
    dp_nft_host_opts_init(&o);
    assert_int_equal(dp_nft_host_batch(&o, DP_NFT_APPLY, 1, &b), 0);
    s = render(b);
    assert_string_equal(s, expect_host_apply);
    free(s);

    o.probe_uid = 1234; /* only the kubelet's uid */
    assert_int_equal(dp_nft_host_batch(&o, DP_NFT_APPLY, 1, &b), 0);
    s = render(b);
    assert_int_equal(count(s, "[ cmp eq reg 1 0x000004d2 ]"), 2);
    assert_null(strstr(s, "cmp gte"));
    free(s);

    o.probe_uid = -2;
    assert_int_equal(dp_nft_host_batch(&o, DP_NFT_APPLY, 1, &b), -EINVAL);
    o.probe_uid = -1;

    assert_int_equal(dp_nft_host_batch(&o, DP_NFT_REMOVE, 1, &b), 0);
    s = render(b);
    assert_string_equal(s, "batch begin\n"
                           "add table inet ambit-host\n"
                           "delete table inet ambit-host\n"
                           "batch end\n");
    free(s);
}

static void test_host_members(void **state)
{
    (void)state;
    struct dp_nft_addr a[3];
    struct dp_buf *b = NULL;
    char *s;
    assert_int_equal(dp_nft_addr_parse("10.244.1.5", &a[0]), 0);
    assert_int_equal(dp_nft_addr_parse("fd00::5/64", &a[1]), 0);
    assert_int_equal(dp_nft_addr_parse("10.244.1.6/24", &a[2]), 0);
    assert_int_equal(a[1].family, AF_INET6);

    assert_int_equal(dp_nft_host_members_batch(a, 3, DP_NFT_APPLY, 1, &b), 0);
    s = render(b);
    assert_string_equal(s, "batch begin\n"
                           "add element inet ambit-host probes-v4 { 10.244.1.5 10.244.1.6 }\n"
                           "add element inet ambit-host probes-v6 { fd00::5 }\n"
                           "batch end\n");
    free(s);

    assert_int_equal(dp_nft_host_members_batch(a, 1, DP_NFT_REMOVE, 1, &b), 0);
    s = render(b);
    assert_string_equal(s, "batch begin\n"
                           "add element inet ambit-host probes-v4 { 10.244.1.5 }\n"
                           "delete element inet ambit-host probes-v4 { 10.244.1.5 }\n"
                           "batch end\n");
    free(s);

    struct dp_nft_addr many[DP_NFT_MAX_ADDRS + 1];
    for (size_t i = 0; i < sizeof(many) / sizeof(many[0]); i++)
        many[i] = a[0];
    assert_int_equal(dp_nft_host_members_batch(many, DP_NFT_MAX_ADDRS + 1, DP_NFT_APPLY, 1, &b),
                     -E2BIG);
    assert_int_equal(dp_nft_host_members_batch(a, 0, DP_NFT_APPLY, 1, &b), -EINVAL);
    struct dp_nft_addr bad = {.family = 99};
    assert_int_equal(dp_nft_host_members_batch(&bad, 1, DP_NFT_APPLY, 1, &b), -EINVAL);
}

static void test_addr_parse(void **state)
{
    (void)state;
    struct dp_nft_addr a = {.family = 77};
    assert_int_equal(dp_nft_addr_parse("", &a), -EINVAL);
    assert_int_equal(dp_nft_addr_parse("/24", &a), -EINVAL);
    assert_int_equal(dp_nft_addr_parse("10.0.0.256", &a), -EINVAL);
    assert_int_equal(dp_nft_addr_parse("hello", &a), -EINVAL);
    assert_int_equal(dp_nft_addr_parse(NULL, &a), -EINVAL);
    assert_int_equal(dp_nft_addr_parse("1111:2222:3333:4444:5555:6666:7777:8888:9999", &a),
                     -EINVAL);
    assert_int_equal(a.family, 77);
    assert_int_equal(dp_nft_addr_parse("::1", &a), 0);
    assert_int_equal(a.family, AF_INET6);
}

static void test_render_malformed(void **state)
{
    (void)state;
    struct dp_nft_pod_opts o;
    struct dp_buf *b = NULL, *t = NULL;
    dp_nft_pod_opts_init(&o);
    assert_int_equal(dp_nft_pod_batch(&o, DP_NFT_APPLY, 1, &b), 0);
    /* every truncation point either renders a prefix cleanly or is refused; never crashes */
    for (size_t cut = 1; cut < b->len; cut += 7) {
        int r = dp_nft_batch_render(dp_buf_head(b), cut, &t);
        if (r == 0)
            dp_buf_free(t);
        else
            assert_int_equal(r, -EINVAL);
    }
    /* a rule whose expression has no name: libnftnl would strcmp(NULL); refused instead */
    char m[256] = {0};
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(m);
    nlh->nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE;
    struct nfgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
    g->nfgen_family = NFPROTO_INET;
    mnl_attr_put_strz(nlh, NFTA_RULE_TABLE, "ambit");
    mnl_attr_put_strz(nlh, NFTA_RULE_CHAIN, "c");
    struct nlattr *list = mnl_attr_nest_start(nlh, NFTA_RULE_EXPRESSIONS);
    struct nlattr *el = mnl_attr_nest_start(nlh, NFTA_LIST_ELEM);
    mnl_attr_put_u32(nlh, NFTA_EXPR_DATA, 0);
    mnl_attr_nest_end(nlh, el);
    mnl_attr_nest_end(nlh, list);
    assert_int_equal(dp_nft_batch_render(m, nlh->nlmsg_len, &t), -EINVAL);

    char junk[64];
    memset(junk, 0xff, sizeof(junk));
    assert_int_equal(dp_nft_batch_render(junk, sizeof(junk), &t), -EINVAL);
    assert_int_equal(dp_nft_batch_render(junk, 3, &t), -EINVAL);
    dp_buf_free(b);
}

/* ---- root: apply in a throw-away netns */

static int new_netns(void)
{
    int self, fd = -1;
    if (geteuid() != 0)
        return -1;
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

static int lo_up(void *arg)
{
    (void)arg;
    struct ifreq ifr = {0};
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), r = 0;
    if (fd < 0)
        return -errno;
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0 || (ifr.ifr_flags |= IFF_UP, ioctl(fd, SIOCSIFFLAGS, &ifr)) < 0)
        r = -errno;
    close(fd);
    return r;
}

static void test_pod_kernel_root(void **state)
{
    (void)state;
    int ns = new_netns();
    if (ns < 0)
        skip();
    struct dp_nft_pod_opts o;
    dp_nft_pod_opts_init(&o);
    assert_int_equal(dp_nft_pod_present_in(ns), 0);
    /* the local route in table 100 needs lo up (runtimes bring it up before any plugin) */
    assert_int_equal(dp_netns_run(ns, lo_up, NULL), 0);
    assert_int_equal(dp_nft_pod_apply_in(ns, &o), 0);
    assert_int_equal(dp_nft_pod_present_in(ns), 1);
    assert_int_equal(dp_nft_pod_apply_in(ns, &o), 0); /* twice: no-op */
    assert_int_equal(dp_nft_pod_present_in(ns), 1);
    assert_int_equal(dp_nft_pod_remove_in(ns, &o), 0);
    assert_int_equal(dp_nft_pod_present_in(ns), 0);
    assert_int_equal(dp_nft_pod_remove_in(ns, &o), 0); /* twice: fine */
    o.dns_capture = true;
    assert_int_equal(dp_nft_pod_apply_in(ns, &o), 0);
    assert_int_equal(dp_nft_pod_present_in(ns), 1);
    close(ns);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_pod_apply_default),
            cmocka_unit_test(test_pod_remove),
            cmocka_unit_test(test_pod_dns_capture),
            cmocka_unit_test(test_pod_variants),
            cmocka_unit_test(test_pod_bad_opts),
            cmocka_unit_test(test_sequence_numbers),
            cmocka_unit_test(test_host_apply_remove),
            cmocka_unit_test(test_host_members),
            cmocka_unit_test(test_addr_parse),
            cmocka_unit_test(test_render_malformed),
            cmocka_unit_test(test_pod_kernel_root),
    };
    return cmocka_run_group_tests_name("nft", tests, NULL, NULL);
}
