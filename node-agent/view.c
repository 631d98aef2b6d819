/*
 * view.c — adapter between the proxy paths and dataplane/mesh + dataplane/policy.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "agent.h"
#include "mesh.h"
#include "policy.h"
#include "view.h"
#include "yaml.h"

/* a view IS a snapshot reference */
static struct dp_mesh_snapshot *snap(struct na_view *v)
{
    return (struct dp_mesh_snapshot *)v;
}

struct na_view *na_view_get(struct na_agent *a)
{
    pthread_rwlock_rdlock(&a->mesh_mu);
    struct dp_mesh_snapshot *s = a->mesh ? dp_mesh_snapshot_ref(a->mesh) : NULL;
    pthread_rwlock_unlock(&a->mesh_mu);
    if (!s) {
        s = dp_mesh_snapshot_new_empty();
        if (!s)
            abort(); /* tiny fixed allocation, as dp_xmalloc */
    }
    return (struct na_view *)s;
}

void na_view_put(struct na_view *v)
{
    dp_mesh_snapshot_unref(snap(v));
}

static void swap_in(struct na_agent *a, struct dp_mesh_snapshot *s)
{
    pthread_rwlock_wrlock(&a->mesh_mu);
    struct dp_mesh_snapshot *old = a->mesh;
    a->mesh = s;
    pthread_rwlock_unlock(&a->mesh_mu);
    dp_mesh_snapshot_unref(old);
}

void na_view_set(struct na_agent *a, struct dp_mesh_snapshot *snap)
{
    swap_in(a, snap);
}

void na_view_free_all(struct na_agent *a)
{
    swap_in(a, NULL);
}

int na_view_load_file(struct na_agent *a, const char *path, char *errbuf, size_t errsz)
{
    json_t *docs = NULL;
    struct dp_mesh_snapshot *s = NULL;
    int ret = dp_yaml_parse_file(path, &docs, errbuf, errsz);
    if (ret < 0)
        return ret;
    if (json_array_size(docs) != 1) {
        snprintf(errbuf, errsz, "%s: expected exactly one document", path);
        json_decref(docs);
        return -EINVAL;
    }
    json_t *doc = json_array_get(docs, 0);
    if (!json_is_object(doc)) {
        snprintf(errbuf, errsz, "%s: top level must be an object", path);
        json_decref(docs);
        return -EINVAL;
    }
    /* "pods" is the node agent's own section (adopted at start), not a mesh object kind */
    json_object_del(doc, "pods");
    char inner[512] = "";
    ret = dp_mesh_snapshot_from_json(doc, &s, inner, sizeof(inner));
    json_decref(docs);
    if (ret < 0) {
        snprintf(errbuf, errsz, "%s: %s", path, inner);
        return ret;
    }
    swap_in(a, s);
    return 0;
}

static void fill_wl(const struct dp_mesh_workload *w, struct na_wl *out)
{
    memset(out, 0, sizeof(*out));
#define S(x) ((x) ? (x) : "")
    out->obj = w;
    out->uid = S(w->uid);
    out->name = S(w->name);
    out->ns = S(w->namespace);
    out->sa = S(w->service_account);
    out->td = S(w->trust_domain);
    out->node = S(w->node);
    const char *app = dp_mesh_workload_label(w, "app");
    const char *ver = dp_mesh_workload_label(w, "version");
    out->canonical_name = w->canonical_name ? w->canonical_name : S(app);
    out->canonical_revision = w->canonical_revision ? w->canonical_revision : S(ver);
    out->workload_name = w->workload_name ? w->workload_name : S(w->name);
    out->app = app ? app : out->canonical_name;
    out->version = ver ? ver : out->canonical_revision;
    out->cluster = "Kubernetes";
#undef S
    out->hbone = w->protocol == DP_MESH_PROTO_HBONE;
    char id[DP_SPIFFE_MAX - 16];
    if (dp_mesh_workload_identity(w, id, sizeof(id)) >= 0)
        snprintf(out->spiffe, sizeof(out->spiffe), "spiffe://%s", id);
}

int na_view_workload_by_ip(struct na_view *v, const struct sockaddr *addr, struct na_wl *ret_wl)
{
    struct dp_mesh_ip ip;
    if (dp_mesh_ip_from_sockaddr(addr, &ip, NULL) < 0)
        return -ENOENT;
    const struct dp_mesh_workload *w = dp_mesh_workload_by_ip(snap(v), &ip);
    if (!w)
        return -ENOENT;
    fill_wl(w, ret_wl);
    return 0;
}

static void to_sockaddr(const struct dp_mesh_ip *ip, uint16_t port, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    if (ip->family == 6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;
        s6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, ip->a, 16);
        s6->sin6_port = htons(port);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)out;
        s4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, ip->a, 4);
        s4->sin_port = htons(port);
    }
}

void na_view_resolve(struct na_view *v, const struct na_wl *src, const struct sockaddr *orig,
                     struct na_dst *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->kind = NA_DST_PASSTHROUGH;
    size_t olen = orig->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                               : sizeof(struct sockaddr_in);
    memcpy(&ret->addr, orig, olen);
    memcpy(&ret->hop, orig, olen);
    struct dp_mesh_ip ip;
    uint16_t port = 0;
    if (dp_mesh_ip_from_sockaddr(orig, &ip, &port) < 0)
        return;
    struct dp_mesh_dest d;
    const struct dp_mesh_workload *sw = src ? src->obj : NULL;
    int r = dp_mesh_select_destination(snap(v), sw, &ip, port, NULL, NULL, &d);
    if (r < 0) {
        ret->kind = NA_DST_NO_ENDPOINTS;
        const struct dp_mesh_service *svc = dp_mesh_service_by_vip(snap(v), &ip);
        if (svc) {
            ret->has_svc = true;
            ret->svc.hostname = svc->hostname ? svc->hostname : "";
            ret->svc.name = svc->name ? svc->name : "";
            ret->svc.ns = svc->namespace ? svc->namespace : "";
        }
        return;
    }
    if (d.service) {
        ret->has_svc = true;
        ret->svc.hostname = d.service->hostname ? d.service->hostname : "";
        ret->svc.name = d.service->name ? d.service->name : "";
        ret->svc.ns = d.service->namespace ? d.service->namespace : "";
    }
    if (d.workload) {
        ret->has_wl = true;
        fill_wl(d.workload, &ret->wl);
    }
    if (d.kind == DP_MESH_DEST_PASSTHROUGH)
        return;
    to_sockaddr(&d.connect_ip, d.connect_port, &ret->hop);
    if (d.hbone) {
        ret->kind = NA_DST_HBONE;
        to_sockaddr(&d.authority_ip, d.authority_port, &ret->addr);
    } else {
        ret->kind = NA_DST_TCP;
        ret->addr = ret->hop;
    }
}

int na_view_authorize(struct na_view *v, const struct na_wl *dst, const char *src_principal,
                      const struct sockaddr *src, const struct sockaddr *dst_addr,
                      const char **ret_reason)
{
    static __thread char reason[DP_POLICY_REASON_MAX];
    struct dp_policy_conn c;
    memset(&c, 0, sizeof(c));
    c.identity = src_principal;
    (void)dp_mesh_ip_from_sockaddr(src, &c.src_ip, NULL);
    (void)dp_mesh_ip_from_sockaddr(dst_addr, &c.dst_ip, &c.dst_port);
    struct dp_policy_result res;
    dp_policy_check(snap(v), dst->obj, &c, &res);
    if (res.allowed)
        return 0;
    snprintf(reason, sizeof(reason), "%s", res.reason);
    if (ret_reason)
        *ret_reason = reason;
    return -EACCES;
}
