/*
 * pod.c — pod adoption: open the pod netns, create the three listeners inside it on the pod's
 * worker, and tear them down on release.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "agent.h"
#include "log.h"
#include "netns.h"
#include "nft.h"
#include "pod.h"
#include "proxy.h"
#include "identity.h"
#include "tls.h"
#include "view.h"
#include "worker.h"

static int parse_ip(const char *s, struct sockaddr_storage *ret)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, s, &s4->sin_addr) == 1)
        s4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, s, &s6->sin6_addr) == 1)
        s6->sin6_family = AF_INET6;
    else
        return -EINVAL;
    *ret = ss;
    return 0;
}

bool na_pod_has_ip(const struct na_pod *p, const struct sockaddr *addr)
{
    for (unsigned i = 0; i < p->nips; i++) {
        const struct sockaddr *ip = (const struct sockaddr *)&p->ips[i];
        if (ip->sa_family != addr->sa_family)
            continue;
        if (addr->sa_family == AF_INET &&
            ((const struct sockaddr_in *)ip)->sin_addr.s_addr ==
                    ((const struct sockaddr_in *)addr)->sin_addr.s_addr)
            return true;
        if (addr->sa_family == AF_INET6 &&
            memcmp(&((const struct sockaddr_in6 *)ip)->sin6_addr,
                   &((const struct sockaddr_in6 *)addr)->sin6_addr, 16) == 0)
            return true;
    }
    return false;
}

static int set_mark(int fd, uint32_t mark)
{
    if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0)
        return -errno;
    return 0;
}

int na_pod_connect(struct na_pod *p, const struct sockaddr *dst, socklen_t dst_len)
{
    int fd = -1;
    int ret = dp_netns_socket(p->netns_fd, dst->sa_family, SOCK_STREAM | SOCK_NONBLOCK, 0, &fd);
    if (ret < 0)
        return ret;
    ret = set_mark(fd, p->agent->opt.mark);
    if (ret < 0)
        goto fail;
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof(one));
    if (connect(fd, dst, dst_len) < 0 && errno != EINPROGRESS) {
        ret = -errno;
        goto fail;
    }
    return fd;
fail:
    close(fd);
    return ret;
}

int na_pod_connect_from(struct na_pod *p, const struct sockaddr *src, const struct sockaddr *dst,
                        socklen_t dst_len)
{
    if (!p->orig_src || !src || src->sa_family != dst->sa_family || src->sa_family != AF_INET ||
        na_pod_has_ip(p, src))
        return na_pod_connect(p, dst, dst_len);
    int fd = -1;
    int ret = dp_netns_socket(p->netns_fd, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0, &fd);
    if (ret < 0)
        return ret;
    int one = 1;
    struct sockaddr_in from = *(const struct sockaddr_in *)src;
    from.sin_port = 0;
    if (set_mark(fd, p->agent->opt.mark) < 0 ||
        setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&from, sizeof(from)) < 0) {
        close(fd);
        return na_pod_connect(p, dst, dst_len);
    }
    (void)setsockopt(fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof(one));
    if (connect(fd, dst, dst_len) < 0 && errno != EINPROGRESS) {
        ret = -errno;
        close(fd);
        return ret;
    }
    return fd;
}

static void on_accept(struct dp_loop *loop, int fd, unsigned events, void *arg)
{
    struct na_listener *l = arg;
    (void)loop;
    (void)events;
    for (int i = 0; i < 64; i++) {
        int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                dp_warn("node", "accept failed", DP_LS("pod", l->pod->uid), DP_LERR(-errno));
            return;
        }
        int one = 1;
        (void)setsockopt(c, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof(one));
        switch (l->kind) {
        case NA_L_OUTBOUND: na_outbound_accept(l->pod, c); break;
        case NA_L_INBOUND: na_inbound_plain_accept(l->pod, c); break;
        case NA_L_HBONE: na_inbound_hbone_accept(l->pod, c); break;
        default: close(c); break;
        }
        /* the handler may have stopped this listener (drain) */
        if (l->fd < 0)
            return;
    }
}

static int open_listener(struct na_pod *p, struct na_listener *l, uint16_t port)
{
    int fd = -1;
    int ret = dp_netns_socket(p->netns_fd, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0, &fd);
    if (ret < 0)
        return ret;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
        ret = -errno;
        goto fail;
    }
    ret = set_mark(fd, p->agent->opt.mark);
    if (ret < 0)
        goto fail;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 1024) < 0) {
        ret = -errno;
        goto fail;
    }
    l->fd = fd;
    l->pod = p;
    dp_io_init(&l->io, fd, on_accept, l);
    ret = dp_loop_add_io(p->w->loop, &l->io, DP_EV_READ);
    if (ret < 0) {
        l->fd = -1;
        goto fail;
    }
    return 0;
fail:
    close(fd);
    return ret;
}

static void close_listeners(struct na_pod *p)
{
    for (int i = 0; i < NA_L_COUNT; i++) {
        if (p->l[i].fd >= 0) {
            dp_loop_del_io(p->w->loop, &p->l[i].io);
            close(p->l[i].fd);
            p->l[i].fd = -1;
        }
    }
}

/* Fetch the pod's certificate soon after adoption (on the pod's worker, after the adopt
 * answer went out), so the first connection does not wait for key generation or a CSR. */
static void on_prefetch(struct dp_loop *loop, void *arg)
{
    struct na_pod *p = arg;
    (void)loop;
    struct na_agent *a = p->agent;
    if (!p->released && a->identity && p->nips > 0) {
        struct na_view *v = na_view_get(a);
        struct na_wl wl;
        if (na_view_workload_by_ip(v, (struct sockaddr *)&p->ips[0], &wl) == 0 && wl.spiffe[0]) {
            struct dp_identity *id = NULL;
            int ret = na_identity_get(a->identity, wl.spiffe, &id);
            if (ret < 0)
                dp_warn("node", "certificate prefetch failed", DP_LS("pod", p->uid),
                        DP_LS("identity", wl.spiffe), DP_LERR(ret));
            dp_identity_unref(id);
        }
        na_view_put(v);
    }
    na_pod_unref(p);
}

static int do_open(struct na_worker *w, void *arg)
{
    struct na_pod *p = arg;
    (void)w;
    const uint16_t ports[NA_L_COUNT] = {p->agent->opt.port_outbound, p->agent->opt.port_inbound,
                                        p->agent->opt.port_hbone};
    for (int i = 0; i < NA_L_COUNT; i++) {
        int ret = open_listener(p, &p->l[i], ports[i]);
        if (ret < 0) {
            dp_warn("node", "cannot listen in pod netns", DP_LS("pod", p->uid),
                    DP_LU("port", ports[i]), DP_LERR(ret));
            close_listeners(p);
            return ret;
        }
    }
    na_pod_ref(p);
    if (dp_loop_post(p->w->loop, on_prefetch, p) < 0)
        na_pod_unref(p);
    return 0;
}

static void pod_free(struct na_pod *p)
{
    if (!p)
        return;
    if (p->netns_fd >= 0)
        close(p->netns_fd);
    free(p);
}

void na_pod_ref(struct na_pod *p)
{
    p->refs++;
}

void na_pod_unref(struct na_pod *p)
{
    if (--p->refs == 0)
        pod_free(p);
}

static int do_release(struct na_worker *w, void *arg)
{
    struct na_pod *p = arg;
    (void)w;
    close_listeners(p);
    na_pod_drain_hbone(p);
    p->released = true;
    na_pod_unref(p);
    return 0;
}

static int do_stop(struct na_worker *w, void *arg)
{
    (void)w;
    close_listeners(arg);
    na_pod_drain_hbone(arg);
    return 0;
}

/* ------------------------------------------------------------------ state file
 * <run_dir>/pods.json lists the adopted pods (the CNI adopt request's shape), so a restarted
 * agent (upgrade, crash) re-opens their listeners without waiting for the CNI plugin: an
 * enrolled pod's redirected traffic must find a listener again. Written atomically on every
 * adopt/release; not touched by shutdown. */

static void state_path(const struct na_agent *a, char *buf, size_t sz, const char *suffix)
{
    snprintf(buf, sz, "%s/pods.json%s", a->opt.run_dir, suffix);
}

static void save_state_locked(struct na_agent *a)
{
    json_t *pods = json_array();
    struct dp_list *it;
    dp_list_for_each(it, &a->pods)
    {
        struct na_pod *p = dp_container_of(it, struct na_pod, link);
        json_t *ips = json_array();
        for (unsigned i = 0; i < p->nips; i++) {
            char ip[INET6_ADDRSTRLEN] = "";
            const struct sockaddr *sa = (const struct sockaddr *)&p->ips[i];
            if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof(ip));
            else
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof(ip));
            json_array_append_new(ips, json_string(ip));
        }
        json_array_append_new(pods, json_pack("{s:s, s:s, s:s, s:s, s:o}", "uid", p->uid, "netns",
                                              p->netns_path, "namespace", p->ns, "name", p->name,
                                              "ips", ips));
    }
    json_t *doc = json_pack("{s:o}", "pods", pods);
    char tmp[1100], path[1100];
    state_path(a, tmp, sizeof(tmp), ".tmp");
    state_path(a, path, sizeof(path), "");
    if (!doc || json_dump_file(doc, tmp, JSON_INDENT(1)) < 0 || rename(tmp, path) < 0)
        dp_warn("node", "cannot write the pod state file", DP_LS("path", path));
    json_decref(doc);
}

int na_pods_restore(struct na_agent *a)
{
    char path[1100];
    state_path(a, path, sizeof(path), "");
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    if (!doc)
        return 0; /* first start */
    json_t *pods = json_object_get(doc, "pods");
    size_t i;
    json_t *jp;
    unsigned restored = 0, gone = 0;
    json_array_foreach(pods, i, jp)
    {
        struct na_pod_spec spec = {
                .uid = json_string_value(json_object_get(jp, "uid")),
                .netns = json_string_value(json_object_get(jp, "netns")),
                .ns = json_string_value(json_object_get(jp, "namespace")),
                .name = json_string_value(json_object_get(jp, "name")),
        };
        size_t k;
        json_t *ip;
        json_array_foreach(json_object_get(jp, "ips"), k, ip)
        {
            if (spec.nips < NA_POD_MAX_IPS && json_is_string(ip))
                spec.ips[spec.nips++] = json_string_value(ip);
        }
        int ret = na_pod_adopt(a, &spec);
        if (ret < 0) {
            gone++;
            dp_info("node", "pod from the state file not restored", DP_LS("uid", spec.uid ? spec.uid : ""),
                    DP_LS("netns", spec.netns ? spec.netns : ""), DP_LERR(ret));
        } else {
            restored++;
        }
    }
    json_decref(doc);
    pthread_mutex_lock(&a->pods_mu);
    save_state_locked(a); /* prune what is gone */
    pthread_mutex_unlock(&a->pods_mu);
    if (restored || gone)
        dp_info("node", "pods restored from the state file", DP_LU("restored", restored),
                DP_LU("gone", gone));
    return 0;
}

static struct na_pod *find_locked(struct na_agent *a, const char *uid)
{
    struct dp_list *it;
    dp_list_for_each(it, &a->pods)
    {
        struct na_pod *p = dp_container_of(it, struct na_pod, link);
        if (strcmp(p->uid, uid) == 0)
            return p;
    }
    return NULL;
}

int na_pod_adopt(struct na_agent *a, const struct na_pod_spec *spec)
{
    if (!spec->uid || !*spec->uid || strlen(spec->uid) >= NA_POD_UID_MAX || !spec->netns ||
        strlen(spec->netns) >= sizeof(((struct na_pod *)0)->netns_path) ||
        spec->nips > NA_POD_MAX_IPS)
        return -EBADMSG;
    if (atomic_load(&a->draining))
        return -ESHUTDOWN;

    struct na_pod *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->netns_fd = -1;
    for (int i = 0; i < NA_L_COUNT; i++) {
        p->l[i].fd = -1;
        p->l[i].kind = (enum na_listener_kind)i;
    }
    dp_list_init(&p->link);
    dp_list_init(&p->hbcs);
    snprintf(p->uid, sizeof(p->uid), "%s", spec->uid);
    snprintf(p->netns_path, sizeof(p->netns_path), "%s", spec->netns);
    snprintf(p->ns, sizeof(p->ns), "%s", spec->ns ? spec->ns : "");
    snprintf(p->name, sizeof(p->name), "%s", spec->name ? spec->name : "");
    int ret;
    for (unsigned i = 0; i < spec->nips; i++) {
        ret = parse_ip(spec->ips[i], &p->ips[p->nips]);
        if (ret < 0) {
            ret = -EBADMSG;
            goto fail;
        }
        p->nips++;
    }
    p->agent = a;
    ret = dp_netns_open_path(spec->netns, &p->netns_fd);
    if (ret < 0)
        goto fail;
    ret = dp_netns_inode(p->netns_fd, &p->netns_ino);
    if (ret < 0)
        goto fail;
    p->orig_src = dp_nft_pod_present_in(p->netns_fd) == 1;

    pthread_mutex_lock(&a->pods_mu);
    struct na_pod *old = find_locked(a, spec->uid);
    if (old) {
        bool same = old->netns_ino == p->netns_ino;
        pthread_mutex_unlock(&a->pods_mu);
        pod_free(p);
        if (same)
            return 0;
        /* same uid, new netns (sandbox recreated): replace */
        na_pod_release(a, spec->uid);
        return na_pod_adopt(a, spec);
    }
    p->w = &a->workers[a->next_worker++ % a->nworkers];
    p->refs = 1;
    ret = na_worker_call(p->w, do_open, p);
    if (ret < 0) {
        pthread_mutex_unlock(&a->pods_mu);
        goto fail;
    }
    dp_list_add_tail(&a->pods, &p->link);
    save_state_locked(a);
    pthread_mutex_unlock(&a->pods_mu);
    dp_info("node", "pod adopted", DP_LS("uid", p->uid), DP_LS("netns", p->netns_path),
            DP_LU("worker", p->w->index), DP_LB("original_source", p->orig_src));
    return 0;
fail:
    pod_free(p);
    return ret;
}

int na_pod_release(struct na_agent *a, const char *uid)
{
    pthread_mutex_lock(&a->pods_mu);
    struct na_pod *p = find_locked(a, uid);
    if (p) {
        dp_list_del(&p->link);
        save_state_locked(a);
    }
    pthread_mutex_unlock(&a->pods_mu);
    if (!p)
        return 0;
    dp_info("node", "pod released", DP_LS("uid", uid));
    return na_worker_call(p->w, do_release, p);
}

void na_pods_release_all(struct na_agent *a)
{
    for (;;) {
        pthread_mutex_lock(&a->pods_mu);
        struct na_pod *p = NULL;
        if (!dp_list_empty(&a->pods)) {
            p = dp_container_of(a->pods.next, struct na_pod, link);
            dp_list_del(&p->link);
        }
        pthread_mutex_unlock(&a->pods_mu);
        if (!p)
            return;
        na_worker_call(p->w, do_release, p);
    }
}

int na_pods_remove_redirection(struct na_agent *a)
{
    struct dp_nft_pod_opts o;
    int n = 0;
    dp_nft_pod_opts_init(&o);
    pthread_mutex_lock(&a->pods_mu);
    struct dp_list *it;
    dp_list_for_each(it, &a->pods)
    {
        struct na_pod *p = dp_container_of(it, struct na_pod, link);
        int ret = dp_nft_pod_remove_in(p->netns_fd, &o);
        if (ret < 0)
            dp_warn("node", "cannot remove the redirection", DP_LS("pod", p->uid),
                    DP_LS("netns", p->netns_path), DP_LERR(ret));
        else
            n++;
    }
    pthread_mutex_unlock(&a->pods_mu);
    return n;
}

void na_pods_stop_listening(struct na_agent *a)
{
    pthread_mutex_lock(&a->pods_mu);
    struct dp_list *it;
    dp_list_for_each(it, &a->pods)
    {
        struct na_pod *p = dp_container_of(it, struct na_pod, link);
        na_worker_call(p->w, do_stop, p);
    }
    pthread_mutex_unlock(&a->pods_mu);
}
