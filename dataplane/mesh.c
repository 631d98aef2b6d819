/*
 * mesh.c — mesh objects: addresses, enums, and the canonical JSON encoding.
 *
 * The module is split by concern (all behind mesh.h):
 *   mesh.c           addresses, enum names, encoders
 *   mesh_decode.c    JSON -> objects (strict, bounded, errors with JSON paths), refcounts,
 *                    per-workload helpers
 *   mesh_snapshot.c  snapshots and their indexes, config documents, the event stream,
 *                    destination selection
 * mesh_internal.h holds the few helpers they share.
 */
#include "mesh.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "mesh_internal.h"

/* ================================================================== addresses */

void dp_mesh_ip_normalise(struct dp_mesh_ip *ip)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (ip->family == 6 && memcmp(ip->a, mapped, 12) == 0) {
        memmove(ip->a, ip->a + 12, 4);
        memset(ip->a + 4, 0, 12);
        ip->family = 4;
    }
}

int dp_mesh_ip_parse(const char *s, struct dp_mesh_ip *ret_ip)
{
    struct dp_mesh_ip ip;
    memset(&ip, 0, sizeof(ip));
    if (!s || strlen(s) >= DP_MESH_IP_STRLEN)
        return -EINVAL;
    if (inet_pton(AF_INET, s, ip.a) == 1) {
        ip.family = 4;
    } else if (inet_pton(AF_INET6, s, ip.a) == 1) {
        ip.family = 6;
        dp_mesh_ip_normalise(&ip);
    } else {
        return -EINVAL;
    }
    *ret_ip = ip;
    return 0;
}

static int cidr_parse(const char *s, bool mask_host_bits, struct dp_mesh_cidr *ret_cidr,
                      bool *ret_host_bits);

int dp_mesh_cidr_parse(const char *s, struct dp_mesh_cidr *ret_cidr)
{
    return cidr_parse(s, false, ret_cidr, NULL);
}

int dp_mesh_cidr_parse_masked(const char *s, struct dp_mesh_cidr *ret_cidr, bool *ret_host_bits)
{
    return cidr_parse(s, true, ret_cidr, ret_host_bits);
}

static int cidr_parse(const char *s, bool mask_host_bits, struct dp_mesh_cidr *ret_cidr,
                      bool *ret_host_bits)
{
    bool host_bits = false;
    char buf[DP_MESH_IP_STRLEN + 8];
    struct dp_mesh_cidr c;
    const char *slash;
    unsigned long plen;
    char *end;

    if (!s || strlen(s) >= sizeof(buf))
        return -EINVAL;
    memset(&c, 0, sizeof(c));
    slash = strchr(s, '/');
    if (!slash) {
        if (dp_mesh_ip_parse(s, &c.ip) < 0)
            return -EINVAL;
        c.prefix = c.ip.family == 4 ? 32 : 128;
        *ret_cidr = c;
        if (ret_host_bits)
            *ret_host_bits = false;
        return 0;
    }
    memcpy(buf, s, (size_t)(slash - s));
    buf[slash - s] = '\0';
    if (slash[1] < '0' || slash[1] > '9')
        return -EINVAL;
    errno = 0;
    plen = strtoul(slash + 1, &end, 10);
    if (*end != '\0' || errno || strlen(slash + 1) > 3)
        return -EINVAL;
    /* parse the address without the v4-mapped normalisation so "::ffff:0:0/96" keeps v6 */
    if (inet_pton(AF_INET, buf, c.ip.a) == 1)
        c.ip.family = 4;
    else if (inet_pton(AF_INET6, buf, c.ip.a) == 1)
        c.ip.family = 6;
    else
        return -EINVAL;
    if (plen > (c.ip.family == 4 ? 32u : 128u))
        return -EINVAL;
    c.prefix = (uint8_t)plen;
    /* host bits must be clear */
    unsigned bytes = c.ip.family == 4 ? 4 : 16;
    for (unsigned i = 0; i < bytes; i++) {
        unsigned bit0 = i * 8;
        uint8_t mask;
        if (bit0 + 8 <= c.prefix)
            mask = 0xff;
        else if (bit0 >= c.prefix)
            mask = 0;
        else
            mask = (uint8_t)(0xff << (8 - (c.prefix - bit0)));
        if (c.ip.a[i] & (uint8_t)~mask) {
            if (!mask_host_bits)
                return -EINVAL;
            host_bits = true;
            c.ip.a[i] &= mask;
        }
    }
    if (c.ip.family == 6 && c.prefix >= 96) {
        /* a v4-mapped block is matched against normalised v4 addresses */
        struct dp_mesh_ip t = c.ip;
        dp_mesh_ip_normalise(&t);
        if (t.family == 4) {
            c.ip = t;
            c.prefix = (uint8_t)(c.prefix - 96);
        }
    }
    *ret_cidr = c;
    if (ret_host_bits)
        *ret_host_bits = host_bits;
    return 0;
}

const char *dp_mesh_ip_format(const struct dp_mesh_ip *ip, char *buf, size_t bufsz)
{
    if (bufsz == 0)
        return buf;
    buf[0] = '\0';
    if (ip->family == 4)
        inet_ntop(AF_INET, ip->a, buf, (socklen_t)bufsz);
    else if (ip->family == 6)
        inet_ntop(AF_INET6, ip->a, buf, (socklen_t)bufsz);
    return buf;
}

int dp_mesh_ip_from_sockaddr(const struct sockaddr *sa, struct dp_mesh_ip *ret_ip,
                             uint16_t *ret_port)
{
    struct dp_mesh_ip ip;
    uint16_t port;
    memset(&ip, 0, sizeof(ip));
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        ip.family = 4;
        memcpy(ip.a, &in->sin_addr, 4);
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        ip.family = 6;
        memcpy(ip.a, &in6->sin6_addr, 16);
        dp_mesh_ip_normalise(&ip);
        port = ntohs(in6->sin6_port);
    } else {
        return -EAFNOSUPPORT;
    }
    *ret_ip = ip;
    if (ret_port)
        *ret_port = port;
    return 0;
}

bool dp_mesh_ip_equal(const struct dp_mesh_ip *a, const struct dp_mesh_ip *b)
{
    if (a->family != b->family)
        return false;
    return memcmp(a->a, b->a, a->family == 4 ? 4 : 16) == 0;
}

bool dp_mesh_cidr_contains(const struct dp_mesh_cidr *c, const struct dp_mesh_ip *ip)
{
    unsigned full, rem;
    if (c->ip.family != ip->family || c->ip.family == 0)
        return false;
    full = c->prefix / 8;
    rem = c->prefix % 8;
    if (memcmp(c->ip.a, ip->a, full) != 0)
        return false;
    if (rem) {
        uint8_t mask = (uint8_t)(0xff << (8 - rem));
        if ((c->ip.a[full] & mask) != (ip->a[full] & mask))
            return false;
    }
    return true;
}

/* ================================================================== enums */

static const char *const kind_names[DP_MESH_KIND_COUNT] = {"workload", "service", "policy",
                                                           "waypoint"};

const char *dp_mesh_kind_str(enum dp_mesh_kind kind)
{
    return (unsigned)kind < DP_MESH_KIND_COUNT ? kind_names[kind] : "unknown";
}

int dp_mesh_kind_parse(const char *s, enum dp_mesh_kind *ret_kind)
{
    for (unsigned i = 0; s && i < DP_MESH_KIND_COUNT; i++) {
        if (strcmp(s, kind_names[i]) == 0) {
            *ret_kind = (enum dp_mesh_kind)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *dp_mesh_scope_str(enum dp_mesh_scope s)
{
    switch (s) {
    case DP_MESH_SCOPE_GLOBAL:
        return "Global";
    case DP_MESH_SCOPE_NAMESPACE:
        return "Namespace";
    case DP_MESH_SCOPE_WORKLOAD:
        return "WorkloadSelector";
    }
    return "unknown";
}

const char *dp_mesh_action_str(enum dp_mesh_action a)
{
    return a == DP_MESH_DENY ? "Deny" : "Allow";
}

static const char *wp_for_str(enum dp_mesh_waypoint_for f)
{
    switch (f) {
    case DP_MESH_WP_SERVICE:
        return "service";
    case DP_MESH_WP_WORKLOAD:
        return "workload";
    case DP_MESH_WP_ALL:
        return "all";
    case DP_MESH_WP_NONE:
        return "none";
    }
    return "unknown";
}

/* ================================================================== encoders */

static int jset(json_t *o, const char *k, json_t *v)
{
    return v ? json_object_set_new(o, k, v) : -1;
}

static int jset_opt_str(json_t *o, const char *k, const char *s)
{
    return s ? jset(o, k, json_string(s)) : 0;
}

static json_t *enc_ipv(const struct dp_mesh_ip *v, size_t n)
{
    json_t *a = json_array();
    char buf[DP_MESH_IP_STRLEN];
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_string(dp_mesh_ip_format(&v[i], buf, sizeof(buf)))))
            goto err;
    return a;
err:
    json_decref(a);
    return NULL;
}

static json_t *enc_strv(char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_string(v[i]))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static json_t *enc_gateway(const struct dp_mesh_gateway *g)
{
    json_t *o;
    if (!g)
        return json_null();
    o = json_object();
    if (!o || jset_opt_str(o, "key", g->key) ||
        jset(o, "addresses", enc_ipv(g->addresses, g->n_addresses)) ||
        jset(o, "port", json_integer(g->port))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *enc_workload(const struct dp_mesh_workload *w)
{
    json_t *o = json_object(), *labels = json_object(), *svcs = json_object();
    int bad = !o || !labels || !svcs;
    for (size_t i = 0; !bad && i < w->n_labels; i++)
        bad |= json_object_set_new(labels, w->labels[i].key, json_string(w->labels[i].value));
    for (size_t i = 0; !bad && i < w->n_services; i++) {
        json_t *pm = json_object();
        char pk[8];
        bad |= !pm;
        for (size_t j = 0; !bad && j < w->services[i].n_ports; j++) {
            snprintf(pk, sizeof(pk), "%u", w->services[i].ports[j].port);
            bad |= json_object_set_new(pm, pk, json_integer(w->services[i].ports[j].target_port));
        }
        bad |= json_object_set_new(svcs, w->services[i].key, pm);
    }
    if (bad)
        goto err;
    bad |= jset(o, "uid", json_string(w->uid));
    bad |= jset_opt_str(o, "podUid", w->pod_uid);
    bad |= jset(o, "name", json_string(w->name));
    bad |= jset(o, "namespace", json_string(w->namespace));
    bad |= jset_opt_str(o, "node", w->node);
    bad |= jset(o, "addresses", enc_ipv(w->addresses, w->n_addresses));
    bad |= jset(o, "serviceAccount", json_string(w->service_account));
    bad |= jset(o, "trustDomain", json_string(w->trust_domain));
    bad |= jset_opt_str(o, "network", w->network);
    bad |= jset(o, "protocol", json_string(w->protocol == DP_MESH_PROTO_HBONE ? "HBONE" : "TCP"));
    bad |= jset(o, "status", json_string(w->status == DP_MESH_HEALTHY ? "Healthy" : "Unhealthy"));
    bad |= jset_opt_str(o, "canonicalName", w->canonical_name);
    bad |= jset_opt_str(o, "canonicalRevision", w->canonical_revision);
    bad |= jset_opt_str(o, "workloadName", w->workload_name);
    bad |= jset_opt_str(o, "workloadType", w->workload_type);
    bad |= json_object_set(o, "labels", labels);
    bad |= json_object_set(o, "services", svcs);
    bad |= jset(o, "waypoint", enc_gateway(w->waypoint));
    bad |= jset(o, "authorizationPolicies", enc_strv(w->authorization_policies, w->n_policies));
    bad |= jset(o, "capacity", json_integer(w->capacity));
    if (bad)
        goto err;
    json_decref(labels);
    json_decref(svcs);
    return o;
err:
    json_decref(o);
    json_decref(labels);
    json_decref(svcs);
    return NULL;
}

static json_t *enc_service(const struct dp_mesh_service *s)
{
    json_t *o = json_object(), *ports = json_array(), *lb = json_object();
    int bad = !o || !ports || !lb;
    for (size_t i = 0; !bad && i < s->n_ports; i++) {
        json_t *p = json_object();
        bad |= !p;
        bad |= jset(p, "port", json_integer(s->ports[i].port));
        bad |= jset(p, "targetPort", json_integer(s->ports[i].target_port));
        if (s->ports[i].app_protocol)
            bad |= jset(p, "appProtocol", json_string(s->ports[i].app_protocol));
        bad |= json_array_append_new(ports, p);
    }
    bad |= jset(lb, "healthPolicy",
                json_string(s->health_policy == DP_MESH_ALLOW_ALL ? "AllowAll" : "OnlyHealthy"));
    bad |= jset(lb, "mode",
                json_string(s->lb_mode == DP_MESH_LB_PASSTHROUGH ? "Passthrough" : "Standard"));
    bad |= jset(o, "name", json_string(s->name));
    bad |= jset(o, "namespace", json_string(s->namespace));
    bad |= jset(o, "hostname", json_string(s->hostname));
    bad |= jset(o, "vips", enc_ipv(s->vips, s->n_vips));
    bad |= json_object_set(o, "ports", ports);
    bad |= jset(o, "waypoint", enc_gateway(s->waypoint));
    bad |= jset(o, "subjectAltNames", enc_strv(s->subject_alt_names, s->n_sans));
    bad |= json_object_set(o, "loadBalancing", lb);
    json_decref(ports);
    json_decref(lb);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *enc_strmatches(const struct dp_mesh_strmatch *v, size_t n)
{
    static const char *const names[] = {"exact", "prefix", "suffix", "presence"};
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        json_t *m = v[i].kind == DP_MESH_PRESENCE ? json_pack("{sb}", "presence", 1)
                                                  : json_pack("{ss}", names[v[i].kind], v[i].value);
        if (json_array_append_new(a, m)) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *enc_sas(const struct dp_mesh_sa_match *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_pack("{ssss}", "namespace", v[i].namespace,
                                               "serviceAccount", v[i].service_account))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static json_t *enc_cidrs(const struct dp_mesh_cidr *v, size_t n)
{
    json_t *a = json_array();
    char buf[DP_MESH_IP_STRLEN], out[DP_MESH_IP_STRLEN + 8];
    for (size_t i = 0; a && i < n; i++) {
        snprintf(out, sizeof(out), "%s/%u", dp_mesh_ip_format(&v[i].ip, buf, sizeof(buf)),
                 v[i].prefix);
        if (json_array_append_new(a, json_string(out))) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *enc_ports(const uint16_t *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_integer(v[i]))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static json_t *enc_match(const struct dp_mesh_match *m)
{
    json_t *o = json_object();
    int bad = !o;
#define F(key, field, enc)                                                                         \
    if (!bad && m->n_##field)                                                                      \
        bad |= jset(o, key, enc(m->field, m->n_##field));
    F("principals", principals, enc_strmatches)
    F("notPrincipals", not_principals, enc_strmatches)
    F("namespaces", namespaces, enc_strmatches)
    F("notNamespaces", not_namespaces, enc_strmatches)
    F("serviceAccounts", service_accounts, enc_sas)
    F("notServiceAccounts", not_service_accounts, enc_sas)
    F("sourceIps", source_ips, enc_cidrs)
    F("notSourceIps", not_source_ips, enc_cidrs)
    F("destinationIps", destination_ips, enc_cidrs)
    F("notDestinationIps", not_destination_ips, enc_cidrs)
    F("destinationPorts", destination_ports, enc_ports)
    F("notDestinationPorts", not_destination_ports, enc_ports)
#undef F
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *enc_policy(const struct dp_mesh_policy *p)
{
    json_t *o = json_object(), *rules = json_array();
    int bad = !o || !rules;
    for (size_t g = 0; !bad && g < p->n_groups; g++) {
        json_t *ga = json_array();
        bad |= !ga;
        for (size_t c = 0; !bad && c < p->groups[g].n_clauses; c++) {
            const struct dp_mesh_clause *cl = &p->groups[g].clauses[c];
            json_t *ca = json_array();
            bad |= !ca;
            for (size_t m = 0; !bad && m < cl->n_matches; m++)
                bad |= json_array_append_new(ca, enc_match(&cl->matches[m]));
            bad |= json_array_append_new(ga, ca);
        }
        bad |= json_array_append_new(rules, ga);
    }
    bad |= jset(o, "name", json_string(p->name));
    bad |= jset(o, "namespace", json_string(p->namespace));
    bad |= jset(o, "scope", json_string(dp_mesh_scope_str(p->scope)));
    bad |= jset(o, "action", json_string(dp_mesh_action_str(p->action)));
    bad |= jset(o, "dryRun", json_boolean(p->dry_run));
    bad |= json_object_set(o, "rules", rules);
    json_decref(rules);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *enc_waypoint(const struct dp_mesh_waypoint *w)
{
    json_t *o = json_object();
    int bad = !o;
    bad |= jset(o, "name", json_string(w->name));
    bad |= jset(o, "namespace", json_string(w->namespace));
    bad |= jset(o, "for", json_string(wp_for_str(w->traffic_for)));
    bad |= jset(o, "serviceAccount", json_string(w->service_account));
    bad |= jset(o, "trustDomain", json_string(w->trust_domain));
    bad |= jset(o, "nodes", enc_strv(w->nodes, w->n_nodes));
    bad |= jset(o, "addresses", enc_ipv(w->addresses, w->n_addresses));
    bad |= jset(o, "port", json_integer(w->port));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *dp_mesh_object_encode(enum dp_mesh_kind kind, const void *obj)
{
    switch (kind) {
    case DP_MESH_WORKLOAD:
        return enc_workload(obj);
    case DP_MESH_SERVICE:
        return enc_service(obj);
    case DP_MESH_POLICY:
        return enc_policy(obj);
    case DP_MESH_WAYPOINT:
        return enc_waypoint(obj);
    default:
        return NULL;
    }
}
