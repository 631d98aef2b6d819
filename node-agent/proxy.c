/*
 * proxy.c — outbound capture, inbound HBONE and inbound plaintext. One `struct conn` per
 * application connection holds the pod reference, the snapshot view its borrowed strings come
 * from, and the telemetry record; it is freed when the relay or the HBONE stream is done.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"
#include "hbone.h"
#include "identity.h"
#include "log.h"
#include "pod.h"
#include "proxy.h"
#include "relay.h"
#include "telemetry.h"
#include "view.h"
#include "worker.h"

struct conn {
    struct na_pod *pod;
    struct na_view *view;
    struct na_relay *relay;
    struct na_conn_tel tel;
    struct dp_defer release;
};

static struct conn *conn_new(struct na_pod *pod, bool outbound)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->pod = pod;
    na_pod_ref(pod);
    c->view = na_view_get(pod->agent);
    c->tel.outbound = outbound;
    c->tel.start_ms = dp_now_ms();
    atomic_fetch_add(&pod->w->conns, 1);
    return c;
}

static void conn_free(struct conn *c)
{
    if (!c)
        return;
    atomic_fetch_sub(&c->pod->w->conns, 1);
    na_relay_free(c->relay);
    na_view_put(c->view);
    na_pod_unref(c->pod);
    free(c);
}

static void conn_finish(struct conn *c, uint64_t rx, uint64_t tx, const char *flags,
                        const char *error)
{
    na_tel_close(c->pod->agent->tel, &c->tel, rx, tx, flags, error);
    conn_free(c);
}

static int original_dst(int fd, struct sockaddr_storage *ret)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(struct sockaddr_in);
    memset(&ss, 0, sizeof(ss));
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &ss, &len) < 0)
        return -errno;
    *ret = ss;
    return 0;
}

static socklen_t sa_len(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

static uint16_t sa_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

static bool is_agent_port(const struct na_agent *a, uint16_t port)
{
    return port == a->opt.port_outbound || port == a->opt.port_inbound ||
           port == a->opt.port_hbone;
}

/* ------------------------------------------------------------------ plain relays */

static void on_relay_done(struct na_relay *r, int err, uint64_t a_to_b, uint64_t b_to_a,
                          void *arg)
{
    struct conn *c = arg;
    (void)r;
    char ebuf[96] = "";
    if (err < 0 && err != -ECONNRESET && err != -EPIPE)
        snprintf(ebuf, sizeof(ebuf), "io error: %s", strerror(-err));
    else if (err < 0 && a_to_b == 0 && b_to_a == 0)
        snprintf(ebuf, sizeof(ebuf), "connection failed: %s", strerror(-err));
    /* a = client side, b = upstream side */
    conn_finish(c, a_to_b, b_to_a, ebuf[0] ? "CONNECT" : "-", ebuf);
}

/* start relaying client fd <-> a new upstream socket from inside the pod netns (inbound: from
 * the client's own address when the pod allows it) */
static void plain_forward(struct conn *c, int cfd, const struct sockaddr_storage *to)
{
    int ufd = c->tel.outbound
                      ? na_pod_connect(c->pod, (const struct sockaddr *)to, sa_len(to))
                      : na_pod_connect_from(c->pod, (const struct sockaddr *)&c->tel.src,
                                            (const struct sockaddr *)to, sa_len(to));
    if (ufd < 0) {
        na_close_rst(cfd);
        conn_finish(c, 0, 0, "CONNECT", "upstream connect failed");
        return;
    }
    na_tel_open(c->pod->agent->tel, &c->tel);
    int ret = na_relay_new(c->pod->w->loop, cfd, ufd, on_relay_done, c, &c->relay);
    if (ret < 0) {
        na_close_rst(cfd);
        na_close_rst(ufd);
        conn_finish(c, 0, 0, "CONNECT", "relay setup failed");
    }
}

/* ------------------------------------------------------------------ outbound */

static int open_in_pod(void *arg, const struct sockaddr *dst, socklen_t dst_len)
{
    return na_pod_connect(arg, dst, dst_len);
}

static void on_out_response(struct hbs *s, int status, const char *error, void *arg)
{
    struct conn *c = arg;
    (void)s;
    if (status == 200)
        na_tel_open(c->pod->agent->tel, &c->tel);
    else
        dp_debug("node", "hbone connect refused", DP_LI("status", status),
                 DP_LS("error", error ? error : ""));
}

static void on_out_done(struct hbs *s, const struct dp_hbs_stats *st, void *arg)
{
    struct conn *c = arg;
    (void)s;
    const char *flags = st->response_flags ? st->response_flags : "-";
    char err[224];
    err[0] = '\0';
    if (st->error[0])
        snprintf(err, sizeof(err), "%s", st->error);
    else if (st->status && st->status != 200)
        snprintf(err, sizeof(err), "http status: %d", st->status);
    if (st->status == 401 && strcmp(flags, "-") == 0)
        flags = "DENY";
    conn_finish(c, st->bytes_in, st->bytes_out, flags, err);
}

void na_outbound_accept(struct na_pod *pod, int fd)
{
    struct na_agent *a = pod->agent;
    struct conn *c = conn_new(pod, true);
    if (!c) {
        na_close_rst(fd);
        return;
    }
    socklen_t sl = sizeof(c->tel.src);
    (void)getpeername(fd, (struct sockaddr *)&c->tel.src, &sl);
    struct sockaddr_storage orig;
    int ret = original_dst(fd, &orig);
    if (ret < 0) {
        na_close_rst(fd);
        conn_finish(c, 0, 0, "-", "no original destination (not redirected?)");
        return;
    }
    c->tel.dst = orig;
    if (na_view_workload_by_ip(c->view, (struct sockaddr *)&c->tel.src, &c->tel.src_wl) == 0)
        c->tel.has_src_wl = true;
    if (is_agent_port(a, sa_port(&orig)) && na_pod_has_ip(pod, (struct sockaddr *)&orig)) {
        na_close_rst(fd);
        conn_finish(c, 0, 0, "-", "refusing self-call to an agent port");
        return;
    }

    struct na_dst d;
    na_view_resolve(c->view, c->tel.has_src_wl ? &c->tel.src_wl : NULL, (struct sockaddr *)&orig,
                    &d);
    if (d.has_svc) {
        c->tel.has_svc = true;
        c->tel.svc = d.svc;
    }
    if (d.has_wl) {
        c->tel.has_dst_wl = true;
        c->tel.dst_wl = d.wl;
    }
    switch (d.kind) {
    case NA_DST_NO_ENDPOINTS:
        na_close_rst(fd);
        conn_finish(c, 0, 0, "-", "no healthy upstream");
        return;
    case NA_DST_PASSTHROUGH:
    case NA_DST_TCP:
        c->tel.dst = d.addr;
        plain_forward(c, fd, &d.addr);
        return;
    case NA_DST_HBONE:
        break;
    }

    /* HBONE: source identity, next hop <pod ip>:15008, authority <pod ip>:<target port> */
    if (!c->tel.has_src_wl || !c->tel.src_wl.spiffe[0]) {
        na_close_rst(fd);
        conn_finish(c, 0, 0, "IDENTITY_ERROR", "source workload unknown: no identity");
        return;
    }
    if (!pod->w->pool) {
        na_close_rst(fd);
        conn_finish(c, 0, 0, "CONNECT", "no HBONE client pool");
        return;
    }
    struct dp_identity *id = NULL;
    ret = a->identity ? na_identity_get(a->identity, c->tel.src_wl.spiffe, &id) : -ENOKEY;
    if (ret < 0) {
        na_close_rst(fd);
        conn_finish(c, 0, 0, "IDENTITY_ERROR", "no certificate for source identity");
        return;
    }
    snprintf(c->tel.src_identity, sizeof(c->tel.src_identity), "%s", c->tel.src_wl.spiffe);
    snprintf(c->tel.dst_identity, sizeof(c->tel.dst_identity), "%s", d.wl.spiffe);
    c->tel.mtls = true;
    c->tel.hbone_target = d.addr;
    struct sockaddr_storage hop = d.hop;
    c->tel.dst = hop;

    char authority[64], fwd[96], baggage[512];
    na_addr_str((struct sockaddr *)&d.addr, authority, sizeof(authority));
    char src[64];
    na_addr_str((struct sockaddr *)&c->tel.src, src, sizeof(src));
    snprintf(fwd, sizeof(fwd), "for=\"%s\"", src);
    const struct na_wl *sw = &c->tel.src_wl;
    snprintf(baggage, sizeof(baggage),
             "k8s.cluster.name=%s,k8s.namespace.name=%s,k8s.deployment.name=%s,"
             "service.name=%s,service.version=%s",
             *sw->cluster ? sw->cluster : "Kubernetes", sw->ns, sw->workload_name,
             sw->canonical_name, sw->canonical_revision);
    const char *sans[1] = {d.wl.spiffe};
    struct dp_hbone_target t = {
            .src_id = id,
            .dst = (struct sockaddr *)&hop,
            .dst_len = sa_len(&hop),
            .sans = sans,
            .n_sans = 1,
            .scope = pod->netns_ino,
            .open_socket = open_in_pod,
            .open_arg = pod,
    };
    struct dp_hbone_connect req = {
            .authority = authority,
            .baggage = baggage,
            .forwarded = fwd,
            .traceparent = NULL,
    };
    ret = dp_hbone_open(pod->w->pool, &t, &req, fd, on_out_response, on_out_done, c, NULL);
    dp_identity_unref(id);
    if (ret < 0) {
        /* hbone stole fd and closed it */
        conn_finish(c, 0, 0, "CONNECT", "hbone open failed");
    }
}

/* ------------------------------------------------------------------ inbound HBONE */

struct hb_srv {
    struct na_pod *pod;
    struct na_view *view;
    struct na_wl self;     /* the pod's workload */
    struct dp_list link;   /* pod->hbcs (pod's worker only) */
    struct hbc *hbc;       /* borrowed, valid until on_conn_done */
    bool done;
    struct dp_defer release;
};

static void hb_srv_release(struct dp_loop *loop, void *arg)
{
    struct hb_srv *s = arg;
    (void)loop;
    na_view_put(s->view);
    na_pod_unref(s->pod);
    free(s);
}

void na_pod_drain_hbone(struct na_pod *pod)
{
    struct dp_list *it, *tmp;
    dp_list_for_each_safe(it, tmp, &pod->hbcs)
    {
        struct hb_srv *s = dp_container_of(it, struct hb_srv, link);
        if (s->hbc && !s->done)
            dp_hbc_drain(s->hbc); /* GOAWAY: peers stop opening streams here */
    }
}

static int srv_check_authority(void *arg, struct dp_hbone_request *req)
{
    struct hb_srv *s = arg;
    struct na_pod *pod = s->pod;
    struct conn *c = conn_new(pod, false);
    if (!c)
        return -ENOMEM;
    req->user = c;
    c->tel.mtls = true;
    memcpy(&c->tel.src, req->peer_addr,
           req->peer_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                 : sizeof(struct sockaddr_in));
    memcpy(&c->tel.dst, req->local_addr,
           req->local_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                  : sizeof(struct sockaddr_in));
    memcpy(&c->tel.hbone_target, &req->target, req->target_len);
    snprintf(c->tel.src_identity, sizeof(c->tel.src_identity), "%s", req->peer_id);
    if (na_view_workload_by_ip(c->view, req->peer_addr, &c->tel.src_wl) == 0)
        c->tel.has_src_wl = true;
    if (na_view_workload_by_ip(c->view, (struct sockaddr *)&req->target, &c->tel.dst_wl) == 0) {
        c->tel.has_dst_wl = true;
        snprintf(c->tel.dst_identity, sizeof(c->tel.dst_identity), "%s", c->tel.dst_wl.spiffe);
    }
    if (!na_pod_has_ip(pod, (struct sockaddr *)&req->target))
        return -EADDRNOTAVAIL;
    if (is_agent_port(pod->agent, sa_port(&req->target)))
        return -EADDRNOTAVAIL;
    return 0;
}

static int srv_authorize(void *arg, struct dp_hbone_request *req)
{
    struct conn *c = req->user;
    (void)arg;
    if (!c || !c->tel.has_dst_wl)
        return -EACCES;
    const char *reason = NULL;
    int ret = na_view_authorize(c->view, &c->tel.dst_wl, req->peer_id, req->peer_addr,
                                (struct sockaddr *)&req->target, &reason);
    if (ret < 0)
        dp_debug("node", "inbound hbone denied", DP_LS("peer", req->peer_id),
                 DP_LS("reason", reason ? reason : ""));
    return ret;
}

static int srv_connect(void *arg, struct dp_hbone_request *req)
{
    struct hb_srv *s = arg;
    struct conn *c = req->user;
    int fd = na_pod_connect_from(s->pod, req->peer_addr, (struct sockaddr *)&req->target,
                                 req->target_len);
    if (fd >= 0 && c)
        na_tel_open(s->pod->agent->tel, &c->tel);
    return fd;
}

static void srv_stream_done(void *arg, struct dp_hbone_request *req, const struct dp_hbs_stats *st)
{
    struct conn *c = req->user;
    (void)arg;
    if (!c)
        return;
    req->user = NULL;
    const char *flags = st->response_flags ? st->response_flags : "-";
    char err[224];
    err[0] = '\0';
    if (st->error[0])
        snprintf(err, sizeof(err), "%s", st->error);
    else if (st->status && st->status != 200)
        snprintf(err, sizeof(err), "http status: %d", st->status);
    if (st->status == 401) {
        flags = "DENY";
        snprintf(err, sizeof(err), "connection closed due to policy rejection");
    }
    /* inbound: bytes_out = tunnel -> app (client -> server), bytes_in = app -> tunnel */
    conn_finish(c, st->bytes_out, st->bytes_in, flags, err);
}

static void srv_conn_done(void *arg, const char *peer_id, const char *error)
{
    struct hb_srv *s = arg;
    if (error && *error)
        dp_info("node", "inbound hbone connection closed", DP_LS("pod", s->pod->uid),
                DP_LS("peer", peer_id ? peer_id : ""), DP_LS("reason", error));
    s->done = true;
    s->hbc = NULL;
    dp_list_del(&s->link);
    /* freed after this round: na_inbound_hbone_accept may still look at s */
    dp_loop_defer(s->pod->w->loop, &s->release);
}

static const struct dp_hbone_server_ops srv_ops = {
        .check_authority = srv_check_authority,
        .authorize = srv_authorize,
        .connect = srv_connect,
        .on_stream_done = srv_stream_done,
        .on_conn_done = srv_conn_done,
};

void na_inbound_hbone_accept(struct na_pod *pod, int fd)
{
    struct na_agent *a = pod->agent;
    struct hb_srv *s = calloc(1, sizeof(*s));
    if (!s) {
        na_close_rst(fd);
        return;
    }
    s->pod = pod;
    s->view = na_view_get(a);
    int ret = -ENOENT;
    if (pod->nips > 0)
        ret = na_view_workload_by_ip(s->view, (struct sockaddr *)&pod->ips[0], &s->self);
    struct dp_identity *id = NULL;
    if (ret == 0 && s->self.spiffe[0] && a->identity)
        ret = na_identity_get(a->identity, s->self.spiffe, &id);
    else if (ret == 0)
        ret = -ENOKEY;
    if (ret < 0) {
        dp_warn("node", "inbound hbone: pod has no workload identity", DP_LS("pod", pod->uid),
                DP_LERR(ret));
        na_view_put(s->view);
        free(s);
        na_close_rst(fd);
        return;
    }
    na_pod_ref(pod);
    dp_defer_init(&s->release, hb_srv_release, s);
    dp_list_add_tail(&pod->hbcs, &s->link);
    struct hbc *hbc = NULL;
    ret = dp_hbone_accept(pod->w->loop, fd, id, NULL, &srv_ops, s, &hbc);
    dp_identity_unref(id);
    if (ret < 0) {
        /* fd stolen and closed; on_conn_done does not run */
        dp_list_del(&s->link);
        na_view_put(s->view);
        na_pod_unref(pod);
        free(s);
        return;
    }
    if (!s->done)
        s->hbc = hbc;
}

/* ------------------------------------------------------------------ inbound plaintext */

void na_inbound_plain_accept(struct na_pod *pod, int fd)
{
    struct conn *c = conn_new(pod, false);
    if (!c) {
        na_close_rst(fd);
        return;
    }
    socklen_t sl = sizeof(c->tel.src);
    (void)getpeername(fd, (struct sockaddr *)&c->tel.src, &sl);
    struct sockaddr_storage orig;
    if (original_dst(fd, &orig) < 0) {
        na_close_rst(fd);
        conn_finish(c, 0, 0, "-", "no original destination (not redirected?)");
        return;
    }
    c->tel.dst = orig;
    if (na_view_workload_by_ip(c->view, (struct sockaddr *)&c->tel.src, &c->tel.src_wl) == 0)
        c->tel.has_src_wl = true;
    if (na_view_workload_by_ip(c->view, (struct sockaddr *)&orig, &c->tel.dst_wl) == 0) {
        c->tel.has_dst_wl = true;
        snprintf(c->tel.dst_identity, sizeof(c->tel.dst_identity), "%s", c->tel.dst_wl.spiffe);
    }
    if (!na_pod_has_ip(pod, (struct sockaddr *)&orig) ||
        is_agent_port(pod->agent, sa_port(&orig))) {
        na_close_rst(fd);
        conn_finish(c, 0, 0, "-", "inbound plaintext to a non-local address");
        return;
    }
    const char *reason = NULL;
    int ret = -EACCES;
    if (c->tel.has_dst_wl)
        ret = na_view_authorize(c->view, &c->tel.dst_wl, NULL, (struct sockaddr *)&c->tel.src,
                                (struct sockaddr *)&orig, &reason);
    else
        reason = "unknown local workload";
    if (ret < 0) {
        char err[256];
        snprintf(err, sizeof(err), "connection closed due to policy rejection: %s",
                 reason ? reason : "denied");
        na_close_rst_after_data(pod->w->loop, fd, 2000);
        conn_finish(c, 0, 0, "DENY", err);
        return;
    }
    plain_forward(c, fd, &orig);
}
