/*
 * mesh.c — mesh objects: decode/encode, snapshots with indexes, the stream consumer, and
 * outbound destination selection.
 *
 * Why the data layout looks like this:
 *   - Objects are immutable and individually reference-counted, so a new snapshot after a
 *     delta shares every unchanged object with the old one; building it costs a pointer copy
 *     and a sort per kind plus index rebuilds (O(N log N) in pointers, no re-decoding), cheap
 *     enough for 10k workloads per `synced` batch.
 *   - Lookups by key use binary search over the sorted per-kind arrays (no per-kind hash);
 *     the hot-path lookups (workload and service by IP) use an open-addressing hash.
 *   - Reference counts are atomic because snapshots are built on one loop and read on others.
 */
#include "mesh.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include "json.h"
#include "yaml.h"

/* ================================================================== addresses */

static void ip_normalise(struct dp_mesh_ip *ip)
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
        ip_normalise(&ip);
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
        ip_normalise(&t);
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
        ip_normalise(&ip);
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

/* ================================================================== decode helpers */

struct dctx {
    struct dp_jpath p;
    struct dp_jerr e;
};

#define PUSHK(c, k) dp_jpath_push_key(&(c)->p, (k))
#define PUSHI(c, i) dp_jpath_push_index(&(c)->p, (i))
#define POP(c)      dp_jpath_pop(&(c)->p)

static int fail(struct dctx *c, const char *key, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static int fail(struct dctx *c, const char *key, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return dp_jerr_set(&c->e, &c->p, key, "%s", msg);
}

static int dup_str(const char *s, char **out)
{
    char *d = strdup(s);
    if (!d)
        return -ENOMEM;
    *out = d;
    return 0;
}

/* string member, bounded, copied. Returns 1 present / 0 absent / -errno. */
static int get_str(struct dctx *c, const json_t *o, const char *key, bool required, bool nonempty,
                   char **out)
{
    const char *s = NULL;
    int r = dp_json_get_str(o, key, required, &s, &c->p, &c->e);
    if (r <= 0)
        return r;
    if (strlen(s) > DP_MESH_MAX_STR)
        return fail(c, key, "string too long (%zu bytes, at most %d)", strlen(s), DP_MESH_MAX_STR);
    if (nonempty && s[0] == '\0')
        return fail(c, key, "must not be empty");
    if (dup_str(s, out) < 0)
        return -ENOMEM;
    return 1;
}

static int get_u32(struct dctx *c, const json_t *o, const char *key, long long min, long long max,
                   uint32_t *out)
{
    long long v;
    int r = dp_json_get_int(o, key, false, min, max, &v, &c->p, &c->e);
    if (r == 1)
        *out = (uint32_t)v;
    return r;
}

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

static int get_strv(struct dctx *c, const json_t *o, const char *key, size_t max, char ***out,
                    size_t *n_out)
{
    json_t *arr, *el;
    size_t i;
    char **v;
    int r = dp_json_get_arr(o, key, false, max, &arr, &c->p, &c->e);
    if (r <= 0)
        return r;
    if (json_array_size(arr) == 0)
        return 0;
    v = calloc(json_array_size(arr), sizeof(*v));
    if (!v)
        return -ENOMEM;
    PUSHK(c, key);
    json_array_foreach(arr, i, el) {
        const char *s = json_string_value(el);
        if (!json_is_string(el)) {
            PUSHI(c, i);
            r = fail(c, NULL, "expected string, got %s", dp_json_type_str(el));
            goto err;
        }
        if (strlen(s) > DP_MESH_MAX_STR || s[0] == '\0' || strlen(s) != json_string_length(el)) {
            PUSHI(c, i);
            r = fail(c, NULL, "empty, too long or NUL-containing string");
            goto err;
        }
        if ((r = dup_str(s, &v[i])) < 0)
            goto err_nopop;
    }
    POP(c);
    *out = v;
    *n_out = json_array_size(arr);
    return 1;
err:
    POP(c);
err_nopop:
    POP(c);
    free_strv(v, json_array_size(arr));
    return r;
}

/* "10.0.0.1" or "<network>/10.0.0.1" (ztunnel's VIP notation; the network is ignored). */
static int parse_addr_maybe_net(const char *s, struct dp_mesh_ip *ip)
{
    const char *slash = strrchr(s, '/');
    if (slash && dp_mesh_ip_parse(slash + 1, ip) == 0)
        return 0;
    return dp_mesh_ip_parse(s, ip);
}

static int get_ipv(struct dctx *c, const json_t *o, const char *key, bool allow_net,
                   struct dp_mesh_ip **out, size_t *n_out)
{
    json_t *arr, *el;
    size_t i;
    struct dp_mesh_ip *v;
    int r = dp_json_get_arr(o, key, false, DP_MESH_MAX_ADDRESSES, &arr, &c->p, &c->e);
    if (r <= 0)
        return r;
    if (json_array_size(arr) == 0)
        return 0;
    v = calloc(json_array_size(arr), sizeof(*v));
    if (!v)
        return -ENOMEM;
    PUSHK(c, key);
    json_array_foreach(arr, i, el) {
        const char *s = json_string_value(el);
        PUSHI(c, i);
        if (!json_is_string(el))
            r = fail(c, NULL, "expected string, got %s", dp_json_type_str(el));
        else if ((allow_net ? parse_addr_maybe_net(s, &v[i]) : dp_mesh_ip_parse(s, &v[i])) < 0)
            r = fail(c, NULL, "not an IP address");
        if (r < 0) {
            POP(c);
            POP(c);
            free(v);
            return r;
        }
        POP(c);
    }
    POP(c);
    *out = v;
    *n_out = json_array_size(arr);
    return 1;
}

static int parse_port_str(const char *s, uint16_t *out)
{
    char *end;
    unsigned long v;
    if (!s || s[0] < '0' || s[0] > '9' || strlen(s) > 5)
        return -EINVAL;
    v = strtoul(s, &end, 10);
    if (*end || v == 0 || v > 65535)
        return -EINVAL;
    *out = (uint16_t)v;
    return 0;
}

static int cmp_kv(const void *a, const void *b)
{
    return strcmp(((const struct dp_mesh_kv *)a)->key, ((const struct dp_mesh_kv *)b)->key);
}

static int cmp_svcref(const void *a, const void *b)
{
    return strcmp(((const struct dp_mesh_svc_ref *)a)->key,
                  ((const struct dp_mesh_svc_ref *)b)->key);
}

static int cmp_portmap(const void *a, const void *b)
{
    const struct dp_mesh_port_map *x = a, *y = b;
    return (int)x->port - (int)y->port;
}

/* ================================================================== free */

static void gateway_free(struct dp_mesh_gateway *g)
{
    if (!g)
        return;
    free(g->key);
    free(g->addresses);
    free(g);
}

static void workload_free(struct dp_mesh_workload *w)
{
    if (!w)
        return;
    free(w->key);
    free(w->uid);
    free(w->pod_uid);
    free(w->name);
    free(w->namespace);
    free(w->node);
    free(w->service_account);
    free(w->trust_domain);
    free(w->network);
    free(w->canonical_name);
    free(w->canonical_revision);
    free(w->workload_name);
    free(w->workload_type);
    free(w->addresses);
    for (size_t i = 0; w->labels && i < w->n_labels; i++) {
        free(w->labels[i].key);
        free(w->labels[i].value);
    }
    free(w->labels);
    for (size_t i = 0; w->services && i < w->n_services; i++) {
        free(w->services[i].key);
        free(w->services[i].ports);
    }
    free(w->services);
    gateway_free(w->waypoint);
    free_strv(w->authorization_policies, w->n_policies);
    free(w);
}

static void service_free(struct dp_mesh_service *s)
{
    if (!s)
        return;
    free(s->key);
    free(s->name);
    free(s->namespace);
    free(s->hostname);
    free(s->vips);
    for (size_t i = 0; s->ports && i < s->n_ports; i++)
        free(s->ports[i].app_protocol);
    free(s->ports);
    gateway_free(s->waypoint);
    free_strv(s->subject_alt_names, s->n_sans);
    free(s);
}

static void strmatch_free(struct dp_mesh_strmatch *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i].value);
    free(v);
}

static void samatch_free(struct dp_mesh_sa_match *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        free(v[i].namespace);
        free(v[i].service_account);
    }
    free(v);
}

static void match_done(struct dp_mesh_match *m)
{
    strmatch_free(m->principals, m->n_principals);
    strmatch_free(m->not_principals, m->n_not_principals);
    strmatch_free(m->namespaces, m->n_namespaces);
    strmatch_free(m->not_namespaces, m->n_not_namespaces);
    samatch_free(m->service_accounts, m->n_service_accounts);
    samatch_free(m->not_service_accounts, m->n_not_service_accounts);
    free(m->source_ips);
    free(m->not_source_ips);
    free(m->destination_ips);
    free(m->not_destination_ips);
    free(m->destination_ports);
    free(m->not_destination_ports);
}

static void policy_free(struct dp_mesh_policy *p)
{
    if (!p)
        return;
    free(p->key);
    free(p->name);
    free(p->namespace);
    for (size_t g = 0; p->groups && g < p->n_groups; g++) {
        struct dp_mesh_group *grp = &p->groups[g];
        for (size_t cl = 0; grp->clauses && cl < grp->n_clauses; cl++) {
            struct dp_mesh_clause *c = &grp->clauses[cl];
            for (size_t m = 0; c->matches && m < c->n_matches; m++)
                match_done(&c->matches[m]);
            free(c->matches);
        }
        free(grp->clauses);
    }
    free(p->groups);
    free(p);
}

static void waypoint_free(struct dp_mesh_waypoint *w)
{
    if (!w)
        return;
    free(w->key);
    free(w->name);
    free(w->namespace);
    free(w->service_account);
    free(w->trust_domain);
    free_strv(w->nodes, w->n_nodes);
    free(w->addresses);
    free(w);
}

static void object_free(enum dp_mesh_kind kind, void *obj)
{
    switch (kind) {
    case DP_MESH_WORKLOAD:
        workload_free(obj);
        break;
    case DP_MESH_SERVICE:
        service_free(obj);
        break;
    case DP_MESH_POLICY:
        policy_free(obj);
        break;
    case DP_MESH_WAYPOINT:
        waypoint_free(obj);
        break;
    default:
        break;
    }
}

/* every object struct starts with `unsigned refs` and has `char *key` next */
static unsigned *obj_refs(const void *obj)
{
    return (unsigned *)obj;
}

void dp_mesh_object_ref(enum dp_mesh_kind kind, const void *obj)
{
    (void)kind;
    if (obj)
        __atomic_add_fetch(obj_refs(obj), 1, __ATOMIC_RELAXED);
}

void dp_mesh_object_unref(enum dp_mesh_kind kind, const void *obj)
{
    if (!obj)
        return;
    if (__atomic_sub_fetch(obj_refs(obj), 1, __ATOMIC_ACQ_REL) == 0)
        object_free(kind, (void *)obj);
}

const char *dp_mesh_object_key(enum dp_mesh_kind kind, const void *obj)
{
    if (!obj)
        return NULL;
    switch (kind) {
    case DP_MESH_WORKLOAD:
        return ((const struct dp_mesh_workload *)obj)->key;
    case DP_MESH_SERVICE:
        return ((const struct dp_mesh_service *)obj)->key;
    case DP_MESH_POLICY:
        return ((const struct dp_mesh_policy *)obj)->key;
    case DP_MESH_WAYPOINT:
        return ((const struct dp_mesh_waypoint *)obj)->key;
    default:
        return NULL;
    }
}

/* ================================================================== decoders */

static int decode_gateway(struct dctx *c, const json_t *o, const char *key,
                          struct dp_mesh_gateway **out)
{
    static const char *const allowed[] = {"key", "addresses", "port", NULL};
    struct dp_mesh_gateway *g;
    json_t *v;
    uint32_t port = DP_MESH_HBONE_PORT;
    int r = dp_json_get_obj(o, key, false, &v, &c->p, &c->e);
    if (r <= 0)
        return r;
    g = calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    PUSHK(c, key);
    if ((r = dp_json_check_keys(v, allowed, &c->p, &c->e)) < 0)
        goto err;
    if ((r = get_str(c, v, "key", false, true, &g->key)) < 0)
        goto err;
    if ((r = get_ipv(c, v, "addresses", true, &g->addresses, &g->n_addresses)) < 0)
        goto err;
    if ((r = get_u32(c, v, "port", 1, 65535, &port)) < 0)
        goto err;
    g->port = (uint16_t)port;
    if (!g->key && g->n_addresses == 0) {
        r = fail(c, NULL, "needs a key or addresses");
        goto err;
    }
    POP(c);
    *out = g;
    return 1;
err:
    POP(c);
    gateway_free(g);
    return r;
}

static int decode_labels(struct dctx *c, const json_t *o, struct dp_mesh_workload *w)
{
    json_t *v, *val;
    const char *k;
    size_t i = 0;
    int r = dp_json_get_obj(o, "labels", false, &v, &c->p, &c->e);
    if (r <= 0)
        return r;
    if (json_object_size(v) > DP_MESH_MAX_LABELS)
        return fail(c, "labels", "too many labels (%zu, at most %d)", json_object_size(v),
                    DP_MESH_MAX_LABELS);
    if (json_object_size(v) == 0)
        return 0;
    w->labels = calloc(json_object_size(v), sizeof(*w->labels));
    if (!w->labels)
        return -ENOMEM;
    PUSHK(c, "labels");
    json_object_foreach(v, k, val) {
        const char *s = json_string_value(val);
        if (!json_is_string(val) || strlen(s) > DP_MESH_MAX_STR || strlen(k) > DP_MESH_MAX_STR) {
            r = fail(c, k, json_is_string(val) ? "too long" : "expected string");
            POP(c);
            return r;
        }
        w->n_labels = i + 1;
        if (dup_str(k, &w->labels[i].key) < 0 || dup_str(s, &w->labels[i].value) < 0) {
            POP(c);
            return -ENOMEM;
        }
        i++;
    }
    POP(c);
    qsort(w->labels, w->n_labels, sizeof(*w->labels), cmp_kv);
    return 1;
}

static int decode_svc_refs(struct dctx *c, const json_t *o, struct dp_mesh_workload *w)
{
    json_t *v, *ports, *tp;
    const char *k, *pk;
    size_t i = 0;
    int r = dp_json_get_obj(o, "services", false, &v, &c->p, &c->e);
    if (r <= 0)
        return r;
    if (json_object_size(v) > DP_MESH_MAX_SVC_REFS)
        return fail(c, "services", "too many services (%zu, at most %d)", json_object_size(v),
                    DP_MESH_MAX_SVC_REFS);
    if (json_object_size(v) == 0)
        return 0;
    w->services = calloc(json_object_size(v), sizeof(*w->services));
    if (!w->services)
        return -ENOMEM;
    PUSHK(c, "services");
    json_object_foreach(v, k, ports) {
        struct dp_mesh_svc_ref *ref = &w->services[i];
        size_t j = 0;
        if (!strchr(k, '/') || strlen(k) > DP_MESH_MAX_STR) {
            r = fail(c, k, "service key must be \"<namespace>/<hostname>\"");
            goto err;
        }
        w->n_services = ++i;
        if (dup_str(k, &ref->key) < 0) {
            r = -ENOMEM;
            goto err;
        }
        if (!json_is_object(ports)) {
            r = fail(c, k, "expected object {\"<service port>\": <target port>}, got %s",
                     dp_json_type_str(ports));
            goto err;
        }
        if (json_object_size(ports) > DP_MESH_MAX_PORTS) {
            r = fail(c, k, "too many ports");
            goto err;
        }
        if (json_object_size(ports) == 0)
            continue;
        ref->ports = calloc(json_object_size(ports), sizeof(*ref->ports));
        if (!ref->ports) {
            r = -ENOMEM;
            goto err;
        }
        PUSHK(c, k);
        json_object_foreach(ports, pk, tp) {
            uint16_t port;
            if (parse_port_str(pk, &port) < 0) {
                r = fail(c, pk, "service port must be a decimal 1..65535");
                POP(c);
                goto err;
            }
            if (!json_is_integer(tp) || json_integer_value(tp) < 0 ||
                json_integer_value(tp) > 65535) {
                r = fail(c, pk, "target port must be an integer 0..65535");
                POP(c);
                goto err;
            }
            ref->ports[j].port = port;
            ref->ports[j].target_port = (uint16_t)json_integer_value(tp);
            ref->n_ports = ++j;
        }
        POP(c);
        qsort(ref->ports, ref->n_ports, sizeof(*ref->ports), cmp_portmap);
    }
    POP(c);
    qsort(w->services, w->n_services, sizeof(*w->services), cmp_svcref);
    return 1;
err:
    POP(c);
    return r;
}

static int decode_enum(struct dctx *c, const json_t *o, const char *key, const char *const *names,
                       const int *values, int *out)
{
    const char *s = NULL;
    int r = dp_json_get_str(o, key, false, &s, &c->p, &c->e);
    if (r <= 0)
        return r;
    for (size_t i = 0; names[i]; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = values[i];
            return 1;
        }
    }
    char list[256] = "";
    for (size_t i = 0; names[i]; i++) {
        if (i)
            strncat(list, ", ", sizeof(list) - strlen(list) - 1);
        strncat(list, names[i], sizeof(list) - strlen(list) - 1);
    }
    return fail(c, key, "unknown value (expected one of %s)", list);
}

static int make_key2(const char *a, const char *b, char **out)
{
    if (asprintf(out, "%s/%s", a, b) < 0)
        return -ENOMEM;
    return 0;
}

static int check_key(struct dctx *c, const char *want, const char *derived)
{
    if (want && strcmp(want, derived) != 0)
        return fail(c, NULL, "event key \"%.200s\" does not match the object's key \"%.200s\"",
                    want, derived);
    return 0;
}

static int decode_workload(struct dctx *c, const json_t *o, const char *key,
                           struct dp_mesh_workload **out)
{
    static const char *const allowed[] = {"uid", "podUid", "name", "namespace", "node", "addresses",
                                          "serviceAccount", "trustDomain", "network", "protocol",
                                          "status", "canonicalName", "canonicalRevision",
                                          "workloadName", "workloadType", "labels", "services",
                                          "waypoint", "authorizationPolicies", "capacity",
                                          /* accepted for ztunnel compatibility, not used */
                                          "hostname", "clusterId", "locality", "networkMode", NULL};
    static const char *const proto_names[] = {"TCP", "HBONE", "NONE", NULL};
    static const int proto_vals[] = {DP_MESH_PROTO_TCP, DP_MESH_PROTO_HBONE, DP_MESH_PROTO_TCP};
    static const char *const status_names[] = {"Healthy", "Unhealthy", NULL};
    static const int status_vals[] = {DP_MESH_HEALTHY, DP_MESH_UNHEALTHY};
    struct dp_mesh_workload *w;
    int r, e;

    if ((r = dp_json_check_keys(o, allowed, &c->p, &c->e)) < 0)
        return r;
    w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->refs = 1;
    w->capacity = 1;
    if ((r = get_str(c, o, "uid", key == NULL, true, &w->uid)) < 0)
        goto err;
    if (!w->uid && key && (r = dup_str(key, &w->uid)) < 0)
        goto err;
    if ((r = check_key(c, key, w->uid)) < 0)
        goto err;
    if ((r = dup_str(w->uid, &w->key)) < 0)
        goto err;
    if ((r = get_str(c, o, "podUid", false, true, &w->pod_uid)) < 0 ||
        (r = get_str(c, o, "name", true, true, &w->name)) < 0 ||
        (r = get_str(c, o, "namespace", true, true, &w->namespace)) < 0 ||
        (r = get_str(c, o, "node", false, false, &w->node)) < 0 ||
        (r = get_str(c, o, "serviceAccount", false, true, &w->service_account)) < 0 ||
        (r = get_str(c, o, "trustDomain", false, true, &w->trust_domain)) < 0 ||
        (r = get_str(c, o, "network", false, false, &w->network)) < 0 ||
        (r = get_str(c, o, "canonicalName", false, false, &w->canonical_name)) < 0 ||
        (r = get_str(c, o, "canonicalRevision", false, false, &w->canonical_revision)) < 0 ||
        (r = get_str(c, o, "workloadName", false, false, &w->workload_name)) < 0 ||
        (r = get_str(c, o, "workloadType", false, false, &w->workload_type)) < 0)
        goto err;
    if (!w->service_account && (r = dup_str(DP_MESH_DEFAULT_SA, &w->service_account)) < 0)
        goto err;
    if (!w->trust_domain && (r = dup_str(DP_MESH_DEFAULT_TRUST_DOMAIN, &w->trust_domain)) < 0)
        goto err;
    if ((r = get_ipv(c, o, "addresses", false, &w->addresses, &w->n_addresses)) < 0)
        goto err;
    e = (int)w->protocol;
    if ((r = decode_enum(c, o, "protocol", proto_names, proto_vals, &e)) < 0)
        goto err;
    w->protocol = (enum dp_mesh_protocol)e;
    e = (int)w->status;
    if ((r = decode_enum(c, o, "status", status_names, status_vals, &e)) < 0)
        goto err;
    w->status = (enum dp_mesh_health)e;
    if ((r = get_u32(c, o, "capacity", 0, UINT32_MAX, &w->capacity)) < 0)
        goto err;
    if ((r = decode_labels(c, o, w)) < 0 || (r = decode_svc_refs(c, o, w)) < 0 ||
        (r = decode_gateway(c, o, "waypoint", &w->waypoint)) < 0)
        goto err;
    if ((r = get_strv(c, o, "authorizationPolicies", DP_MESH_MAX_POLICY_REFS,
                      &w->authorization_policies, &w->n_policies)) < 0)
        goto err;
    *out = w;
    return 0;
err:
    workload_free(w);
    return r;
}

static int decode_service_ports(struct dctx *c, const json_t *o, struct dp_mesh_service *s)
{
    static const char *const allowed[] = {"port", "targetPort", "appProtocol", NULL};
    json_t *v = json_object_get(o, "ports"), *el;
    size_t i;
    int r;

    if (!v || json_is_null(v))
        return 0;
    if (json_is_object(v)) {
        /* ztunnel local-config form {"80": 8080} */
        const char *k;
        if (json_object_size(v) > DP_MESH_MAX_PORTS)
            return fail(c, "ports", "too many ports");
        if (json_object_size(v) == 0)
            return 0;
        s->ports = calloc(json_object_size(v), sizeof(*s->ports));
        if (!s->ports)
            return -ENOMEM;
        PUSHK(c, "ports");
        i = 0;
        json_object_foreach(v, k, el) {
            if (parse_port_str(k, &s->ports[i].port) < 0 || !json_is_integer(el) ||
                json_integer_value(el) < 0 || json_integer_value(el) > 65535) {
                r = fail(c, k, "expected \"<port>\": <target port 0..65535>");
                POP(c);
                return r;
            }
            s->ports[i].target_port = (uint16_t)json_integer_value(el);
            s->n_ports = ++i;
        }
        POP(c);
        return 1;
    }
    if (!json_is_array(v))
        return fail(c, "ports", "expected array, got %s", dp_json_type_str(v));
    if (json_array_size(v) > DP_MESH_MAX_PORTS)
        return fail(c, "ports", "too many items (%zu, at most %d)", json_array_size(v),
                    DP_MESH_MAX_PORTS);
    if (json_array_size(v) == 0)
        return 0;
    s->ports = calloc(json_array_size(v), sizeof(*s->ports));
    if (!s->ports)
        return -ENOMEM;
    PUSHK(c, "ports");
    json_array_foreach(v, i, el) {
        uint32_t port = 0, tp = 0;
        PUSHI(c, i);
        if ((r = dp_json_check_keys(el, allowed, &c->p, &c->e)) < 0)
            goto err;
        long long pv;
        if ((r = dp_json_get_int(el, "port", true, 1, 65535, &pv, &c->p, &c->e)) < 0)
            goto err;
        port = (uint32_t)pv;
        if ((r = get_u32(c, el, "targetPort", 0, 65535, &tp)) < 0)
            goto err;
        s->ports[i].port = (uint16_t)port;
        s->ports[i].target_port = (uint16_t)tp;
        s->n_ports = i + 1;
        if ((r = get_str(c, el, "appProtocol", false, false, &s->ports[i].app_protocol)) < 0)
            goto err;
        POP(c);
    }
    POP(c);
    return 1;
err:
    POP(c);
    POP(c);
    return r;
}

static int decode_service(struct dctx *c, const json_t *o, const char *key,
                          struct dp_mesh_service **out)
{
    static const char *const allowed[] = {
            "name",     "namespace",       "hostname",      "vips",       "ports",
            "waypoint", "subjectAltNames", "loadBalancing", "ipFamilies", NULL};
    static const char *const lb_allowed[] = {"healthPolicy", "mode", "routingPreference", NULL};
    static const char *const hp_names[] = {"OnlyHealthy", "AllowAll", NULL};
    static const int hp_vals[] = {DP_MESH_ONLY_HEALTHY, DP_MESH_ALLOW_ALL};
    static const char *const mode_names[] = {"Standard",    "Strict",      "Failover",
                                             "Passthrough", "Unspecified", NULL};
    static const int mode_vals[] = {DP_MESH_LB_STANDARD, DP_MESH_LB_STANDARD, DP_MESH_LB_STANDARD,
                                    DP_MESH_LB_PASSTHROUGH, DP_MESH_LB_STANDARD};
    struct dp_mesh_service *s;
    json_t *lb;
    int r, e;

    if ((r = dp_json_check_keys(o, allowed, &c->p, &c->e)) < 0)
        return r;
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->refs = 1;
    if ((r = get_str(c, o, "name", true, true, &s->name)) < 0 ||
        (r = get_str(c, o, "namespace", true, true, &s->namespace)) < 0 ||
        (r = get_str(c, o, "hostname", true, true, &s->hostname)) < 0)
        goto err;
    if ((r = make_key2(s->namespace, s->hostname, &s->key)) < 0)
        goto err;
    if ((r = check_key(c, key, s->key)) < 0)
        goto err;
    if ((r = get_ipv(c, o, "vips", true, &s->vips, &s->n_vips)) < 0 ||
        (r = decode_service_ports(c, o, s)) < 0 ||
        (r = decode_gateway(c, o, "waypoint", &s->waypoint)) < 0 ||
        (r = get_strv(c, o, "subjectAltNames", DP_MESH_MAX_SANS, &s->subject_alt_names,
                      &s->n_sans)) < 0)
        goto err;
    if ((r = dp_json_get_obj(o, "loadBalancing", false, &lb, &c->p, &c->e)) < 0)
        goto err;
    if (r == 1) {
        PUSHK(c, "loadBalancing");
        r = dp_json_check_keys(lb, lb_allowed, &c->p, &c->e);
        e = 0;
        if (r >= 0 && (r = decode_enum(c, lb, "healthPolicy", hp_names, hp_vals, &e)) >= 0)
            s->health_policy = (enum dp_mesh_health_policy)e;
        e = 0;
        if (r >= 0 && (r = decode_enum(c, lb, "mode", mode_names, mode_vals, &e)) >= 0)
            s->lb_mode = (enum dp_mesh_lb_mode)e;
        POP(c);
        if (r < 0)
            goto err;
    }
    *out = s;
    return 0;
err:
    service_free(s);
    return r;
}

/* Istio string form: "*" presence, "abc*" prefix, "*abc" suffix, else exact. */
static int strmatch_from_istio(const char *s, struct dp_mesh_strmatch *m)
{
    size_t n = strlen(s);
    if (strcmp(s, "*") == 0) {
        m->kind = DP_MESH_PRESENCE;
        return dup_str("", &m->value);
    }
    if (n > 1 && s[n - 1] == '*') {
        m->kind = DP_MESH_PREFIX;
        m->value = strndup(s, n - 1);
        return m->value ? 0 : -ENOMEM;
    }
    if (n > 1 && s[0] == '*') {
        m->kind = DP_MESH_SUFFIX;
        return dup_str(s + 1, &m->value);
    }
    m->kind = DP_MESH_EXACT;
    return dup_str(s, &m->value);
}

static const char *strip_spiffe(const char *s)
{
    return strncmp(s, "spiffe://", 9) == 0 ? s + 9 : s;
}

static int decode_strmatch(struct dctx *c, const json_t *el, bool principal,
                           struct dp_mesh_strmatch *m)
{
    static const char *const allowed[] = {"exact", "prefix", "suffix", "presence", NULL};
    const char *k, *s;
    json_t *v;
    int r;

    if (json_is_string(el)) {
        s = json_string_value(el);
        if (s[0] == '\0' || strlen(s) > DP_MESH_MAX_STR || strlen(s) != json_string_length(el))
            return fail(c, NULL, "empty, too long or NUL-containing string");
        return strmatch_from_istio(principal ? strip_spiffe(s) : s, m);
    }
    if (!json_is_object(el))
        return fail(c, NULL,
                    "expected string or {\"exact\"|\"prefix\"|\"suffix\"|\"presence\"}, "
                    "got %s",
                    dp_json_type_str(el));
    if ((r = dp_json_check_keys(el, allowed, &c->p, &c->e)) < 0)
        return r;
    if (json_object_size(el) != 1)
        return fail(c, NULL, "exactly one of exact, prefix, suffix, presence");
    json_object_foreach((json_t *)el, k, v) {
        if (strcmp(k, "presence") == 0) {
            if (!json_is_true(v) && !(json_is_object(v) && json_object_size(v) == 0))
                return fail(c, k, "must be true");
            m->kind = DP_MESH_PRESENCE;
            return dup_str("", &m->value);
        }
        if (!json_is_string(v))
            return fail(c, k, "expected string, got %s", dp_json_type_str(v));
        s = json_string_value(v);
        if (strlen(s) > DP_MESH_MAX_STR || strlen(s) != json_string_length(v))
            return fail(c, k, "too long or NUL-containing string");
        m->kind = strcmp(k, "exact") == 0    ? DP_MESH_EXACT
                  : strcmp(k, "prefix") == 0 ? DP_MESH_PREFIX
                                             : DP_MESH_SUFFIX;
        if (principal && m->kind != DP_MESH_SUFFIX)
            s = strip_spiffe(s);
        return dup_str(s, &m->value);
    }
    return -EINVAL; /* unreachable */
}

/* Decode an array member into a freshly allocated array of `elsz` elements using `fn`. */
typedef int decode_el_fn(struct dctx *c, const json_t *el, bool flag, void *out);

static int decode_list(struct dctx *c, const json_t *o, const char *key, size_t elsz,
                       decode_el_fn *fn, bool flag, void **out, size_t *n_out)
{
    json_t *arr, *el;
    size_t i;
    char *v;
    int r = dp_json_get_arr(o, key, false, DP_MESH_MAX_VALUES, &arr, &c->p, &c->e);
    if (r <= 0)
        return r;
    if (json_array_size(arr) == 0)
        return 0;
    v = calloc(json_array_size(arr), elsz);
    if (!v)
        return -ENOMEM;
    /* publish the array first so the caller's free path releases partial results */
    *out = v;
    PUSHK(c, key);
    json_array_foreach(arr, i, el) {
        PUSHI(c, i);
        r = fn(c, el, flag, v + i * elsz);
        POP(c);
        *n_out = i + 1;
        if (r < 0) {
            POP(c);
            return r;
        }
    }
    POP(c);
    return 1;
}

static int el_strmatch(struct dctx *c, const json_t *el, bool principal, void *out)
{
    return decode_strmatch(c, el, principal, out);
}

static int el_samatch(struct dctx *c, const json_t *el, bool flag, void *out)
{
    static const char *const allowed[] = {"namespace", "serviceAccount", NULL};
    struct dp_mesh_sa_match *m = out;
    int r;
    (void)flag;
    if (json_is_string(el)) {
        const char *s = json_string_value(el), *slash = strchr(s, '/');
        if (!slash || slash == s || !slash[1] || strchr(slash + 1, '/') ||
            strlen(s) > DP_MESH_MAX_STR)
            return fail(c, NULL, "service account must be \"<namespace>/<name>\"");
        m->namespace = strndup(s, (size_t)(slash - s));
        if (!m->namespace)
            return -ENOMEM;
        return dup_str(slash + 1, &m->service_account);
    }
    if ((r = dp_json_check_keys(el, allowed, &c->p, &c->e)) < 0)
        return r;
    if ((r = get_str(c, el, "namespace", true, true, &m->namespace)) < 0)
        return r;
    return get_str(c, el, "serviceAccount", true, true, &m->service_account);
}

static int el_cidr(struct dctx *c, const json_t *el, bool flag, void *out)
{
    (void)flag;
    if (!json_is_string(el))
        return fail(c, NULL, "expected CIDR string, got %s", dp_json_type_str(el));
    if (dp_mesh_cidr_parse(json_string_value(el), out) < 0)
        return fail(c, NULL, "not a CIDR (\"10.0.0.0/8\", \"fd00::/64\" or an address)");
    return 0;
}

static int el_port(struct dctx *c, const json_t *el, bool flag, void *out)
{
    (void)flag;
    if (json_is_string(el)) {
        if (parse_port_str(json_string_value(el), out) < 0)
            return fail(c, NULL, "not a port 1..65535");
        return 0;
    }
    if (!json_is_integer(el) || json_integer_value(el) < 1 || json_integer_value(el) > 65535)
        return fail(c, NULL, "expected port 1..65535, got %s",
                    json_is_integer(el) ? "out of range" : dp_json_type_str(el));
    *(uint16_t *)out = (uint16_t)json_integer_value(el);
    return 0;
}

#define LIST(key, field, fn, flag)                                                                 \
    decode_list(c, o, key, sizeof(*m->field), fn, flag, (void **)&m->field, &m->n_##field)

static int decode_match(struct dctx *c, const json_t *o, struct dp_mesh_match *m)
{
    static const char *const allowed[] = {"principals",
                                          "notPrincipals",
                                          "namespaces",
                                          "notNamespaces",
                                          "serviceAccounts",
                                          "notServiceAccounts",
                                          "sourceIps",
                                          "notSourceIps",
                                          "destinationIps",
                                          "notDestinationIps",
                                          "destinationPorts",
                                          "notDestinationPorts",
                                          NULL};
    int r;
    if ((r = dp_json_check_keys(o, allowed, &c->p, &c->e)) < 0)
        return r;
    if ((r = LIST("principals", principals, el_strmatch, true)) < 0 ||
        (r = LIST("notPrincipals", not_principals, el_strmatch, true)) < 0 ||
        (r = LIST("namespaces", namespaces, el_strmatch, false)) < 0 ||
        (r = LIST("notNamespaces", not_namespaces, el_strmatch, false)) < 0 ||
        (r = LIST("serviceAccounts", service_accounts, el_samatch, false)) < 0 ||
        (r = LIST("notServiceAccounts", not_service_accounts, el_samatch, false)) < 0 ||
        (r = LIST("sourceIps", source_ips, el_cidr, false)) < 0 ||
        (r = LIST("notSourceIps", not_source_ips, el_cidr, false)) < 0 ||
        (r = LIST("destinationIps", destination_ips, el_cidr, false)) < 0 ||
        (r = LIST("notDestinationIps", not_destination_ips, el_cidr, false)) < 0 ||
        (r = LIST("destinationPorts", destination_ports, el_port, false)) < 0 ||
        (r = LIST("notDestinationPorts", not_destination_ports, el_port, false)) < 0)
        return r;
    return 0;
}

#undef LIST

static int decode_rules(struct dctx *c, const json_t *o, struct dp_mesh_policy *p)
{
    json_t *rules, *grp, *cl, *m;
    size_t gi, ci, mi;
    int r = dp_json_get_arr(o, "rules", false, DP_MESH_MAX_GROUPS, &rules, &c->p, &c->e);
    if (r <= 0)
        return r;
    if (json_array_size(rules) == 0)
        return 0;
    p->groups = calloc(json_array_size(rules), sizeof(*p->groups));
    if (!p->groups)
        return -ENOMEM;
    PUSHK(c, "rules");
    json_array_foreach(rules, gi, grp) {
        struct dp_mesh_group *g = &p->groups[gi];
        p->n_groups = gi + 1;
        PUSHI(c, gi);
        if (!json_is_array(grp)) {
            r = fail(c, NULL, "expected array of clauses, got %s", dp_json_type_str(grp));
            goto err2;
        }
        if (json_array_size(grp) > DP_MESH_MAX_CLAUSES) {
            r = fail(c, NULL, "too many clauses (%zu, at most %d)", json_array_size(grp),
                     DP_MESH_MAX_CLAUSES);
            goto err2;
        }
        if (json_array_size(grp) &&
            !(g->clauses = calloc(json_array_size(grp), sizeof(*g->clauses)))) {
            r = -ENOMEM;
            goto err2;
        }
        json_array_foreach(grp, ci, cl) {
            struct dp_mesh_clause *clause = &g->clauses[ci];
            g->n_clauses = ci + 1;
            PUSHI(c, ci);
            if (!json_is_array(cl)) {
                r = fail(c, NULL, "expected array of matches, got %s", dp_json_type_str(cl));
                goto err3;
            }
            if (json_array_size(cl) > DP_MESH_MAX_MATCHES) {
                r = fail(c, NULL, "too many matches (%zu, at most %d)", json_array_size(cl),
                         DP_MESH_MAX_MATCHES);
                goto err3;
            }
            if (json_array_size(cl) &&
                !(clause->matches = calloc(json_array_size(cl), sizeof(*clause->matches)))) {
                r = -ENOMEM;
                goto err3;
            }
            json_array_foreach(cl, mi, m) {
                clause->n_matches = mi + 1;
                PUSHI(c, mi);
                r = decode_match(c, m, &clause->matches[mi]);
                POP(c);
                if (r < 0)
                    goto err3;
            }
            POP(c);
        }
        POP(c);
    }
    POP(c);
    return 1;
err3:
    POP(c);
err2:
    POP(c);
    POP(c);
    return r;
}

static int decode_policy(struct dctx *c, const json_t *o, const char *key,
                         struct dp_mesh_policy **out)
{
    static const char *const allowed[] = {"name",   "namespace", "scope", "action",
                                          "dryRun", "rules",     NULL};
    static const char *const scope_names[] = {"Global", "Namespace", "WorkloadSelector", NULL};
    static const int scope_vals[] = {DP_MESH_SCOPE_GLOBAL, DP_MESH_SCOPE_NAMESPACE,
                                     DP_MESH_SCOPE_WORKLOAD};
    static const char *const action_names[] = {"Allow", "Deny", NULL};
    static const int action_vals[] = {DP_MESH_ALLOW, DP_MESH_DENY};
    struct dp_mesh_policy *p;
    int r, e;

    if ((r = dp_json_check_keys(o, allowed, &c->p, &c->e)) < 0)
        return r;
    p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->refs = 1;
    p->scope = DP_MESH_SCOPE_NAMESPACE;
    if ((r = get_str(c, o, "name", true, true, &p->name)) < 0 ||
        (r = get_str(c, o, "namespace", true, true, &p->namespace)) < 0)
        goto err;
    if ((r = make_key2(p->namespace, p->name, &p->key)) < 0 || (r = check_key(c, key, p->key)) < 0)
        goto err;
    e = (int)p->scope;
    if ((r = decode_enum(c, o, "scope", scope_names, scope_vals, &e)) < 0)
        goto err;
    p->scope = (enum dp_mesh_scope)e;
    e = (int)p->action;
    if ((r = decode_enum(c, o, "action", action_names, action_vals, &e)) < 0)
        goto err;
    p->action = (enum dp_mesh_action)e;
    if ((r = dp_json_get_bool(o, "dryRun", false, &p->dry_run, &c->p, &c->e)) < 0)
        goto err;
    if ((r = decode_rules(c, o, p)) < 0)
        goto err;
    *out = p;
    return 0;
err:
    policy_free(p);
    return r;
}

static int decode_waypoint(struct dctx *c, const json_t *o, const char *key,
                           struct dp_mesh_waypoint **out)
{
    static const char *const allowed[] = {"name",           "namespace",   "for",
                                          "serviceAccount", "trustDomain", "nodes",
                                          "addresses",      "port",        NULL};
    static const char *const for_names[] = {"service", "workload", "all", "none", NULL};
    static const int for_vals[] = {DP_MESH_WP_SERVICE, DP_MESH_WP_WORKLOAD, DP_MESH_WP_ALL,
                                   DP_MESH_WP_NONE};
    struct dp_mesh_waypoint *w;
    uint32_t port = DP_MESH_HBONE_PORT;
    int r, e;

    if ((r = dp_json_check_keys(o, allowed, &c->p, &c->e)) < 0)
        return r;
    w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->refs = 1;
    if ((r = get_str(c, o, "name", true, true, &w->name)) < 0 ||
        (r = get_str(c, o, "namespace", true, true, &w->namespace)) < 0)
        goto err;
    if ((r = make_key2(w->namespace, w->name, &w->key)) < 0 || (r = check_key(c, key, w->key)) < 0)
        goto err;
    e = 0;
    if ((r = decode_enum(c, o, "for", for_names, for_vals, &e)) < 0)
        goto err;
    w->traffic_for = (enum dp_mesh_waypoint_for)e;
    if ((r = get_str(c, o, "serviceAccount", false, true, &w->service_account)) < 0 ||
        (r = get_str(c, o, "trustDomain", false, true, &w->trust_domain)) < 0)
        goto err;
    if (!w->service_account && (r = dup_str(w->name, &w->service_account)) < 0)
        goto err;
    if (!w->trust_domain && (r = dup_str(DP_MESH_DEFAULT_TRUST_DOMAIN, &w->trust_domain)) < 0)
        goto err;
    if ((r = get_strv(c, o, "nodes", DP_MESH_MAX_NODES, &w->nodes, &w->n_nodes)) < 0 ||
        (r = get_ipv(c, o, "addresses", true, &w->addresses, &w->n_addresses)) < 0 ||
        (r = get_u32(c, o, "port", 1, 65535, &port)) < 0)
        goto err;
    w->port = (uint16_t)port;
    *out = w;
    return 0;
err:
    waypoint_free(w);
    return r;
}

static int decode_any(struct dctx *c, enum dp_mesh_kind kind, const json_t *json, const char *key,
                      void **ret_obj)
{
    if (!json_is_object(json))
        return fail(c, NULL, "expected object, got %s", json ? dp_json_type_str(json) : "nothing");
    if (key && (strlen(key) == 0 || strlen(key) > DP_MESH_MAX_STR))
        return fail(c, NULL, "bad key");
    switch (kind) {
    case DP_MESH_WORKLOAD:
        return decode_workload(c, json, key, (struct dp_mesh_workload **)ret_obj);
    case DP_MESH_SERVICE:
        return decode_service(c, json, key, (struct dp_mesh_service **)ret_obj);
    case DP_MESH_POLICY:
        return decode_policy(c, json, key, (struct dp_mesh_policy **)ret_obj);
    case DP_MESH_WAYPOINT:
        return decode_waypoint(c, json, key, (struct dp_mesh_waypoint **)ret_obj);
    default:
        return fail(c, NULL, "unknown kind");
    }
}

static void set_err(char *errbuf, size_t errsz, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void set_err(char *errbuf, size_t errsz, const char *fmt, ...)
{
    va_list ap;
    if (!errbuf || !errsz)
        return;
    va_start(ap, fmt);
    vsnprintf(errbuf, errsz, fmt, ap);
    va_end(ap);
}

int dp_mesh_object_decode(enum dp_mesh_kind kind, const json_t *json, const char *key,
                          const char *path, void **ret_obj, char *errbuf, size_t errsz)
{
    struct dctx c;
    void *obj = NULL;
    int r;
    memset(&c.e, 0, sizeof(c.e));
    dp_jpath_init(&c.p, path ? path : "");
    r = decode_any(&c, kind, json, key, &obj);
    if (r < 0) {
        if (r == -ENOMEM)
            set_err(errbuf, errsz, "out of memory");
        else
            set_err(errbuf, errsz, "%s", c.e.msg);
        return r;
    }
    *ret_obj = obj;
    return 0;
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

/* ================================================================== workload helpers */

int dp_mesh_workload_identity(const struct dp_mesh_workload *w, char *buf, size_t bufsz)
{
    int n = snprintf(buf, bufsz, "%s/ns/%s/sa/%s", w->trust_domain, w->namespace,
                     w->service_account);
    if (n < 0 || (size_t)n >= bufsz)
        return -ENOSPC;
    return n;
}

const char *dp_mesh_workload_label(const struct dp_mesh_workload *w, const char *key)
{
    struct dp_mesh_kv k = {.key = (char *)key};
    const struct dp_mesh_kv *f;
    if (!w->n_labels)
        return NULL;
    f = bsearch(&k, w->labels, w->n_labels, sizeof(k), cmp_kv);
    return f ? f->value : NULL;
}

const struct dp_mesh_svc_ref *dp_mesh_workload_svc_ref(const struct dp_mesh_workload *w,
                                                       const char *svc_key)
{
    struct dp_mesh_svc_ref k = {.key = (char *)svc_key};
    if (!w->n_services)
        return NULL;
    return bsearch(&k, w->services, w->n_services, sizeof(k), cmp_svcref);
}

/* ================================================================== hash map */

/* Open addressing, linear probing, backward-shift deletion. Keys are borrowed: strings owned
 * by the objects stored as values, or IPs. */
struct hent {
    const void *key; /* NULL = empty */
    void *val;
    uint64_t h;
};

struct hmap {
    struct hent *e;
    size_t mask; /* capacity - 1 */
    size_t n;
    bool ip; /* keys are struct dp_mesh_ip * instead of char * */
};

static uint64_t fnv(const void *data, size_t n)
{
    const uint8_t *p = data;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static uint64_t hkey(const struct hmap *m, const void *key)
{
    if (m->ip) {
        const struct dp_mesh_ip *ip = key;
        uint8_t b[17];
        b[0] = ip->family;
        memcpy(b + 1, ip->a, 16);
        return fnv(b, ip->family == 4 ? 5 : 17);
    }
    return fnv(key, strlen(key));
}

static bool hkey_eq(const struct hmap *m, const void *a, const void *b)
{
    return m->ip ? dp_mesh_ip_equal(a, b) : strcmp(a, b) == 0;
}

static int hmap_init(struct hmap *m, size_t expected, bool ip)
{
    size_t cap = 8;
    while (cap < expected * 2 + 1)
        cap <<= 1;
    m->e = calloc(cap, sizeof(*m->e));
    if (!m->e)
        return -ENOMEM;
    m->mask = cap - 1;
    m->n = 0;
    m->ip = ip;
    return 0;
}

static void hmap_done(struct hmap *m)
{
    free(m->e);
    m->e = NULL;
    m->n = 0;
}

static struct hent *hmap_find(const struct hmap *m, const void *key, uint64_t h)
{
    if (!m->e)
        return NULL;
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        struct hent *e = &m->e[i];
        if (!e->key)
            return NULL;
        if (e->h == h && hkey_eq(m, e->key, key))
            return e;
    }
}

static void *hmap_get(const struct hmap *m, const void *key)
{
    struct hent *e = hmap_find(m, key, hkey(m, key));
    return e ? e->val : NULL;
}

static int hmap_grow(struct hmap *m)
{
    struct hmap n;
    int r = hmap_init(&n, (m->mask + 1), m->ip);
    if (r < 0)
        return r;
    for (size_t i = 0; i <= m->mask; i++) {
        struct hent *e = &m->e[i];
        if (!e->key)
            continue;
        size_t j = e->h & n.mask;
        while (n.e[j].key)
            j = (j + 1) & n.mask;
        n.e[j] = *e;
        n.n++;
    }
    free(m->e);
    *m = n;
    return 0;
}

/* Insert or replace. *ret_old = previous value (or NULL). */
static int hmap_put(struct hmap *m, const void *key, void *val, void **ret_old)
{
    uint64_t h = hkey(m, key);
    struct hent *e = hmap_find(m, key, h);
    if (e) {
        if (ret_old)
            *ret_old = e->val;
        e->key = key;
        e->val = val;
        return 0;
    }
    if ((m->n + 1) * 2 > m->mask + 1) {
        int r = hmap_grow(m);
        if (r < 0)
            return r;
    }
    size_t i = h & m->mask;
    while (m->e[i].key)
        i = (i + 1) & m->mask;
    m->e[i].key = key;
    m->e[i].val = val;
    m->e[i].h = h;
    m->n++;
    if (ret_old)
        *ret_old = NULL;
    return 0;
}

/* Put only if absent (first writer wins). Returns 1 if inserted, 0 if present. */
static int hmap_put_first(struct hmap *m, const void *key, void *val)
{
    if (hmap_find(m, key, hkey(m, key)))
        return 0;
    int r = hmap_put(m, key, val, NULL);
    return r < 0 ? r : 1;
}

static void *hmap_del(struct hmap *m, const void *key)
{
    uint64_t h = hkey(m, key);
    struct hent *e = hmap_find(m, key, h);
    void *val;
    size_t i, j;
    if (!e)
        return NULL;
    val = e->val;
    i = (size_t)(e - m->e);
    /* backward shift: move later entries of the cluster into the hole if their home slot
     * is not strictly after the hole */
    for (j = (i + 1) & m->mask; m->e[j].key; j = (j + 1) & m->mask) {
        size_t home = m->e[j].h & m->mask;
        bool movable = (j > i) ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) {
            m->e[i] = m->e[j];
            i = j;
        }
    }
    m->e[i].key = NULL;
    m->e[i].val = NULL;
    m->n--;
    return val;
}

/* ================================================================== snapshots */

struct range {
    const char *key; /* borrowed */
    size_t off, n;
};

struct dp_mesh_snapshot {
    unsigned refs;
    uint64_t version;
    size_t n[DP_MESH_KIND_COUNT];
    void **objs[DP_MESH_KIND_COUNT]; /* sorted by key, each holds a ref */
    struct hmap wl_by_ip, wl_by_pod_uid, svc_by_vip;
    /* endpoints: (service key, workload) pairs sorted by service key then workload key */
    const struct dp_mesh_workload **ep_list;
    struct range *ep_ranges;
    size_t n_ep_ranges;
    /* namespace-scope policies grouped by namespace, and global policies */
    const struct dp_mesh_policy **ns_pols;
    struct range *ns_ranges;
    size_t n_ns_ranges;
    const struct dp_mesh_policy **global_pols;
    size_t n_global;
};

/* all object structs have the same prefix {unsigned refs; char *key;} */
struct objhdr {
    unsigned refs;
    char *key;
};

static int cmp_obj_key(const void *a, const void *b)
{
    return strcmp((*(struct objhdr *const *)a)->key, (*(struct objhdr *const *)b)->key);
}

static void snapshot_free(struct dp_mesh_snapshot *s)
{
    for (unsigned k = 0; k < DP_MESH_KIND_COUNT; k++) {
        for (size_t i = 0; s->objs[k] && i < s->n[k]; i++)
            dp_mesh_object_unref((enum dp_mesh_kind)k, s->objs[k][i]);
        free(s->objs[k]);
    }
    hmap_done(&s->wl_by_ip);
    hmap_done(&s->wl_by_pod_uid);
    hmap_done(&s->svc_by_vip);
    free(s->ep_list);
    free(s->ep_ranges);
    free(s->ns_pols);
    free(s->ns_ranges);
    free(s->global_pols);
    free(s);
}

struct dp_mesh_snapshot *dp_mesh_snapshot_ref(struct dp_mesh_snapshot *s)
{
    if (s)
        __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
    return s;
}

void dp_mesh_snapshot_unref(struct dp_mesh_snapshot *s)
{
    if (s && __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0)
        snapshot_free(s);
}

struct ep_pair {
    const char *svc;
    const struct dp_mesh_workload *w;
};

static int cmp_ep_pair(const void *a, const void *b)
{
    const struct ep_pair *x = a, *y = b;
    int c = strcmp(x->svc, y->svc);
    return c ? c : strcmp(x->w->key, y->w->key);
}

static int cmp_ns_pol(const void *a, const void *b)
{
    const struct dp_mesh_policy *x = *(const struct dp_mesh_policy *const *)a;
    const struct dp_mesh_policy *y = *(const struct dp_mesh_policy *const *)b;
    int c = strcmp(x->namespace, y->namespace);
    return c ? c : strcmp(x->key, y->key);
}

static int build_indexes(struct dp_mesh_snapshot *s)
{
    struct dp_mesh_workload **wl = (struct dp_mesh_workload **)s->objs[DP_MESH_WORKLOAD];
    struct dp_mesh_service **svc = (struct dp_mesh_service **)s->objs[DP_MESH_SERVICE];
    struct dp_mesh_policy **pol = (struct dp_mesh_policy **)s->objs[DP_MESH_POLICY];
    size_t nwl = s->n[DP_MESH_WORKLOAD], nsvc = s->n[DP_MESH_SERVICE];
    size_t npol = s->n[DP_MESH_POLICY];
    size_t n_ips = 0, n_pairs = 0, n_vips = 0, n_ns = 0;
    struct ep_pair *pairs = NULL;
    int r;

    for (size_t i = 0; i < nwl; i++) {
        n_ips += wl[i]->n_addresses;
        n_pairs += wl[i]->n_services;
    }
    for (size_t i = 0; i < nsvc; i++)
        n_vips += svc[i]->n_vips;

    if ((r = hmap_init(&s->wl_by_ip, n_ips, true)) < 0 ||
        (r = hmap_init(&s->wl_by_pod_uid, nwl, false)) < 0 ||
        (r = hmap_init(&s->svc_by_vip, n_vips, true)) < 0)
        return r;
    /* workloads are sorted by key, so "first writer wins" = smallest key wins */
    for (size_t i = 0; i < nwl; i++) {
        for (size_t j = 0; j < wl[i]->n_addresses; j++)
            if ((r = hmap_put_first(&s->wl_by_ip, &wl[i]->addresses[j], wl[i])) < 0)
                return r;
        if (wl[i]->pod_uid && (r = hmap_put_first(&s->wl_by_pod_uid, wl[i]->pod_uid, wl[i])) < 0)
            return r;
    }
    for (size_t i = 0; i < nsvc; i++)
        for (size_t j = 0; j < svc[i]->n_vips; j++)
            if ((r = hmap_put_first(&s->svc_by_vip, &svc[i]->vips[j], svc[i])) < 0)
                return r;

    /* endpoints */
    if (n_pairs) {
        size_t k = 0, nr = 0;
        pairs = malloc(n_pairs * sizeof(*pairs));
        s->ep_list = malloc(n_pairs * sizeof(*s->ep_list));
        s->ep_ranges = malloc(n_pairs * sizeof(*s->ep_ranges));
        if (!pairs || !s->ep_list || !s->ep_ranges) {
            free(pairs);
            return -ENOMEM;
        }
        for (size_t i = 0; i < nwl; i++)
            for (size_t j = 0; j < wl[i]->n_services; j++)
                pairs[k++] = (struct ep_pair){wl[i]->services[j].key, wl[i]};
        qsort(pairs, n_pairs, sizeof(*pairs), cmp_ep_pair);
        for (size_t i = 0; i < n_pairs; i++) {
            s->ep_list[i] = pairs[i].w;
            if (nr == 0 || strcmp(s->ep_ranges[nr - 1].key, pairs[i].svc) != 0)
                s->ep_ranges[nr++] = (struct range){pairs[i].svc, i, 0};
            s->ep_ranges[nr - 1].n++;
        }
        s->n_ep_ranges = nr;
        free(pairs);
    }

    /* policies */
    for (size_t i = 0; i < npol; i++) {
        if (pol[i]->scope == DP_MESH_SCOPE_NAMESPACE)
            n_ns++;
        else if (pol[i]->scope == DP_MESH_SCOPE_GLOBAL)
            s->n_global++;
    }
    if (n_ns) {
        size_t k = 0, nr = 0;
        s->ns_pols = malloc(n_ns * sizeof(*s->ns_pols));
        s->ns_ranges = malloc(n_ns * sizeof(*s->ns_ranges));
        if (!s->ns_pols || !s->ns_ranges)
            return -ENOMEM;
        for (size_t i = 0; i < npol; i++)
            if (pol[i]->scope == DP_MESH_SCOPE_NAMESPACE)
                s->ns_pols[k++] = pol[i];
        qsort(s->ns_pols, n_ns, sizeof(*s->ns_pols), cmp_ns_pol);
        for (size_t i = 0; i < n_ns; i++) {
            if (nr == 0 || strcmp(s->ns_ranges[nr - 1].key, s->ns_pols[i]->namespace) != 0)
                s->ns_ranges[nr++] = (struct range){s->ns_pols[i]->namespace, i, 0};
            s->ns_ranges[nr - 1].n++;
        }
        s->n_ns_ranges = nr;
    }
    if (s->n_global) {
        size_t k = 0;
        s->global_pols = malloc(s->n_global * sizeof(*s->global_pols));
        if (!s->global_pols)
            return -ENOMEM;
        for (size_t i = 0; i < npol; i++)
            if (pol[i]->scope == DP_MESH_SCOPE_GLOBAL)
                s->global_pols[k++] = pol[i];
    }
    return 0;
}

/* Build a snapshot that takes one new reference on every object in objs[kind][0..n). The
 * arrays are copied and sorted; duplicates must have been excluded by the caller. */
static int snapshot_build(void *const *objs[DP_MESH_KIND_COUNT], const size_t n[DP_MESH_KIND_COUNT],
                          uint64_t version, struct dp_mesh_snapshot **ret)
{
    struct dp_mesh_snapshot *s = calloc(1, sizeof(*s));
    int r;
    if (!s)
        return -ENOMEM;
    s->refs = 1;
    s->version = version;
    for (unsigned k = 0; k < DP_MESH_KIND_COUNT; k++) {
        if (n[k] == 0)
            continue;
        s->objs[k] = malloc(n[k] * sizeof(void *));
        if (!s->objs[k]) {
            snapshot_free(s);
            return -ENOMEM;
        }
        memcpy(s->objs[k], objs[k], n[k] * sizeof(void *));
        for (size_t i = 0; i < n[k]; i++)
            dp_mesh_object_ref((enum dp_mesh_kind)k, objs[k][i]);
        s->n[k] = n[k];
        qsort(s->objs[k], n[k], sizeof(void *), cmp_obj_key);
    }
    if ((r = build_indexes(s)) < 0) {
        snapshot_free(s);
        return r;
    }
    *ret = s;
    return 0;
}

struct dp_mesh_snapshot *dp_mesh_snapshot_new_empty(void)
{
    void *const *objs[DP_MESH_KIND_COUNT] = {0};
    size_t n[DP_MESH_KIND_COUNT] = {0};
    struct dp_mesh_snapshot *s = NULL;
    if (snapshot_build(objs, n, 0, &s) < 0)
        return NULL;
    return s;
}

uint64_t dp_mesh_snapshot_version(const struct dp_mesh_snapshot *s)
{
    return s->version;
}

/* ------------------------------------------------------------------ pending state */

/* A mutable key -> object map per kind (each value holds one reference). Used for file
 * loading, snapshot_apply and the stream consumer. */
struct pending {
    struct hmap m[DP_MESH_KIND_COUNT];
    uint64_t version;
};

static void pending_clear(struct pending *p)
{
    for (unsigned k = 0; k < DP_MESH_KIND_COUNT; k++) {
        for (size_t i = 0; p->m[k].e && i <= p->m[k].mask; i++)
            if (p->m[k].e[i].key)
                dp_mesh_object_unref((enum dp_mesh_kind)k, p->m[k].e[i].val);
        if (p->m[k].e)
            memset(p->m[k].e, 0, (p->m[k].mask + 1) * sizeof(*p->m[k].e));
        p->m[k].n = 0;
    }
}

static void pending_done(struct pending *p)
{
    pending_clear(p);
    for (unsigned k = 0; k < DP_MESH_KIND_COUNT; k++)
        hmap_done(&p->m[k]);
}

static int pending_init(struct pending *p, const struct dp_mesh_snapshot *base)
{
    int r;
    memset(p, 0, sizeof(*p));
    for (unsigned k = 0; k < DP_MESH_KIND_COUNT; k++) {
        if ((r = hmap_init(&p->m[k], base ? base->n[k] : 0, false)) < 0)
            goto err;
        for (size_t i = 0; base && i < base->n[k]; i++) {
            void *o = base->objs[k][i];
            if ((r = hmap_put(&p->m[k], dp_mesh_object_key((enum dp_mesh_kind)k, o), o, NULL)) < 0)
                goto err;
            dp_mesh_object_ref((enum dp_mesh_kind)k, o);
        }
    }
    p->version = base ? base->version : 0;
    return 0;
err:
    pending_done(p);
    return r;
}

/* steals obj */
static int pending_upsert(struct pending *p, enum dp_mesh_kind kind, void *obj)
{
    void *old = NULL;
    int r = hmap_put(&p->m[kind], dp_mesh_object_key(kind, obj), obj, &old);
    if (r < 0) {
        dp_mesh_object_unref(kind, obj);
        return r;
    }
    dp_mesh_object_unref(kind, old);
    return 0;
}

static void pending_delete(struct pending *p, enum dp_mesh_kind kind, const char *key)
{
    dp_mesh_object_unref(kind, hmap_del(&p->m[kind], key));
}

static int pending_commit(const struct pending *p, struct dp_mesh_snapshot **ret)
{
    void **objs[DP_MESH_KIND_COUNT] = {0};
    size_t n[DP_MESH_KIND_COUNT] = {0};
    int r = 0;
    for (unsigned k = 0; k < DP_MESH_KIND_COUNT; k++) {
        if (p->m[k].n == 0)
            continue;
        objs[k] = malloc(p->m[k].n * sizeof(void *));
        if (!objs[k]) {
            r = -ENOMEM;
            goto out;
        }
        for (size_t i = 0; i <= p->m[k].mask; i++)
            if (p->m[k].e[i].key)
                objs[k][n[k]++] = p->m[k].e[i].val;
    }
    r = snapshot_build((void *const **)objs, n, p->version, ret);
out:
    for (unsigned k = 0; k < DP_MESH_KIND_COUNT; k++)
        free(objs[k]);
    return r;
}

/* ------------------------------------------------------------------ config document */

static const char *const file_members[DP_MESH_KIND_COUNT] = {"workloads", "services", "policies",
                                                             "waypoints"};

int dp_mesh_snapshot_from_json(const json_t *config, struct dp_mesh_snapshot **ret_snap,
                               char *errbuf, size_t errsz)
{
    static const char *const allowed[] = {"workloads", "services", "policies", "waypoints", NULL};
    struct pending p;
    struct dctx c;
    int r;

    memset(&c.e, 0, sizeof(c.e));
    dp_jpath_init(&c.p, "");
    if ((r = dp_json_check_keys(config, allowed, &c.p, &c.e)) < 0) {
        set_err(errbuf, errsz, "%s", c.e.msg);
        return r;
    }
    if ((r = pending_init(&p, NULL)) < 0)
        return r;
    for (unsigned k = 0; k < DP_MESH_KIND_COUNT; k++) {
        json_t *arr, *el;
        size_t i;
        r = dp_json_get_arr(config, file_members[k], false, DP_MESH_MAX_OBJECTS, &arr, &c.p, &c.e);
        if (r < 0)
            goto err_msg;
        if (r == 0)
            continue;
        PUSHK(&c, file_members[k]);
        json_array_foreach(arr, i, el) {
            void *obj = NULL;
            PUSHI(&c, i);
            r = decode_any(&c, (enum dp_mesh_kind)k, el, NULL, &obj);
            if (r < 0)
                goto err_msg;
            if (hmap_get(&p.m[k], dp_mesh_object_key((enum dp_mesh_kind)k, obj))) {
                r = fail(&c, NULL, "duplicate %s key \"%.300s\"", kind_names[k],
                         dp_mesh_object_key((enum dp_mesh_kind)k, obj));
                dp_mesh_object_unref((enum dp_mesh_kind)k, obj);
                goto err_msg;
            }
            if ((r = pending_upsert(&p, (enum dp_mesh_kind)k, obj)) < 0)
                goto err_msg;
            POP(&c);
        }
        POP(&c);
    }
    r = pending_commit(&p, ret_snap);
    pending_done(&p);
    if (r < 0)
        set_err(errbuf, errsz, "out of memory");
    return r;
err_msg:
    if (r == -ENOMEM)
        set_err(errbuf, errsz, "out of memory");
    else
        set_err(errbuf, errsz, "%s", c.e.msg);
    pending_done(&p);
    return r;
}

int dp_mesh_snapshot_load_file(const char *path, struct dp_mesh_snapshot **ret_snap, char *errbuf,
                               size_t errsz)
{
    char err[512] = "";
    json_t *docs = NULL;
    int r = dp_yaml_parse_file(path, &docs, err, sizeof(err));
    if (r < 0) {
        /* dp_yaml errors already carry "path:line:col:" */
        set_err(errbuf, errsz, "%s", err[0] ? err : strerror(-r));
        return r;
    }
    if (json_array_size(docs) != 1) {
        set_err(errbuf, errsz, "%s: expected exactly one document, found %zu", path,
                json_array_size(docs));
        json_decref(docs);
        return -EINVAL;
    }
    r = dp_mesh_snapshot_from_json(json_array_get(docs, 0), ret_snap, err, sizeof(err));
    if (r < 0)
        set_err(errbuf, errsz, "%s: %s", path, err);
    json_decref(docs);
    return r;
}

json_t *dp_mesh_snapshot_to_json(const struct dp_mesh_snapshot *s)
{
    json_t *doc = json_object();
    if (!doc)
        return NULL;
    for (unsigned k = 0; k < DP_MESH_KIND_COUNT; k++) {
        json_t *arr = json_array();
        if (!arr || json_object_set_new(doc, file_members[k], arr))
            goto err;
        for (size_t i = 0; i < s->n[k]; i++)
            if (json_array_append_new(arr,
                                      dp_mesh_object_encode((enum dp_mesh_kind)k, s->objs[k][i])))
                goto err;
    }
    return doc;
err:
    json_decref(doc);
    return NULL;
}

/* ------------------------------------------------------------------ events */

enum ev_result { EV_NONE = 0, EV_SYNCED, EV_RESET };

/* Apply one event to pending state. On failure the pending state is unchanged. */
static int apply_event(struct pending *p, const json_t *ev, enum ev_result *res, char *errbuf,
                       size_t errsz)
{
    static const char *const allowed[] = {"type", "version", "kind", "key", "object", NULL};
    const char *type = NULL, *kind_s = NULL, *key = NULL;
    long long version = -1;
    enum dp_mesh_kind kind;
    struct dctx c;
    json_t *obj = NULL;
    void *o = NULL;
    int r;

    *res = EV_NONE;
    memset(&c.e, 0, sizeof(c.e));
    dp_jpath_init(&c.p, "event");
    if ((r = dp_json_check_keys(ev, allowed, &c.p, &c.e)) < 0 ||
        (r = dp_json_get_str(ev, "type", true, &type, &c.p, &c.e)) < 0 ||
        (r = dp_json_get_int(ev, "version", false, 0, INT64_MAX, &version, &c.p, &c.e)) < 0)
        goto err;
    if (strcmp(type, "ping") == 0)
        return 0;
    if (strcmp(type, "reset") == 0) {
        pending_clear(p);
        *res = EV_RESET;
        if (version >= 0)
            p->version = (uint64_t)version;
        return 0;
    }
    if (strcmp(type, "synced") == 0) {
        if (version >= 0 && (uint64_t)version > p->version)
            p->version = (uint64_t)version;
        *res = EV_SYNCED;
        return 0;
    }
    if (strcmp(type, "upsert") != 0 && strcmp(type, "delete") != 0) {
        r = fail(&c, "type", "unknown event type \"%.64s\"", type);
        goto err;
    }
    if ((r = dp_json_get_str(ev, "kind", true, &kind_s, &c.p, &c.e)) < 0 ||
        (r = dp_json_get_str(ev, "key", true, &key, &c.p, &c.e)) < 0)
        goto err;
    if (dp_mesh_kind_parse(kind_s, &kind) < 0) {
        r = fail(&c, "kind", "unknown kind \"%.64s\"", kind_s);
        goto err;
    }
    if (strlen(key) == 0 || strlen(key) > DP_MESH_MAX_STR) {
        r = fail(&c, "key", "empty or too long");
        goto err;
    }
    if (strcmp(type, "delete") == 0) {
        pending_delete(p, kind, key);
    } else {
        if ((r = dp_json_get_obj(ev, "object", true, &obj, &c.p, &c.e)) < 0)
            goto err;
        dp_jpath_init(&c.p, "");
        if ((r = decode_any(&c, kind, obj, key, &o)) < 0) {
            if (r == -ENOMEM)
                goto err;
            set_err(errbuf, errsz, "event[%s %s %.200s]: object.%s", type, kind_s, key, c.e.msg);
            return r;
        }
        if ((r = pending_upsert(p, kind, o)) < 0)
            goto err;
    }
    if (version >= 0 && (uint64_t)version > p->version)
        p->version = (uint64_t)version;
    return 0;
err:
    if (r == -ENOMEM)
        set_err(errbuf, errsz, "out of memory");
    else
        set_err(errbuf, errsz, "%s", c.e.msg);
    return r;
}

int dp_mesh_snapshot_apply(const struct dp_mesh_snapshot *base, const json_t *events,
                           struct dp_mesh_snapshot **ret_snap, char *errbuf, size_t errsz)
{
    struct pending p;
    json_t *ev;
    size_t i;
    int r;

    if (!json_is_array(events)) {
        set_err(errbuf, errsz, "events: expected array");
        return -EINVAL;
    }
    if ((r = pending_init(&p, base)) < 0)
        return r;
    json_array_foreach(events, i, ev) {
        enum ev_result res;
        char err[512];
        if ((r = apply_event(&p, ev, &res, err, sizeof(err))) < 0) {
            set_err(errbuf, errsz, "events[%zu]: %s", i, err);
            goto out;
        }
    }
    r = pending_commit(&p, ret_snap);
out:
    pending_done(&p);
    return r;
}

/* ------------------------------------------------------------------ stream consumer */

struct dp_mesh_stream {
    struct pending p;
    uint64_t seen_version;
};

int dp_mesh_stream_new(const struct dp_mesh_snapshot *base, struct dp_mesh_stream **ret_stream)
{
    struct dp_mesh_stream *st = calloc(1, sizeof(*st));
    int r;
    if (!st)
        return -ENOMEM;
    if ((r = pending_init(&st->p, base)) < 0) {
        free(st);
        return r;
    }
    st->seen_version = st->p.version;
    *ret_stream = st;
    return 0;
}

void dp_mesh_stream_free(struct dp_mesh_stream *st)
{
    if (!st)
        return;
    pending_done(&st->p);
    free(st);
}

int dp_mesh_stream_feed(struct dp_mesh_stream *st, const json_t *event,
                        struct dp_mesh_snapshot **ret_snap, char *errbuf, size_t errsz)
{
    enum ev_result res;
    int r = apply_event(&st->p, event, &res, errbuf, errsz);
    if (r < 0)
        return r;
    if (st->p.version > st->seen_version)
        st->seen_version = st->p.version;
    if (res != EV_SYNCED)
        return DP_MESH_FEED_OK;
    if ((r = pending_commit(&st->p, ret_snap)) < 0) {
        set_err(errbuf, errsz, "out of memory");
        return r;
    }
    return DP_MESH_FEED_PUBLISHED;
}

int dp_mesh_stream_feed_line(struct dp_mesh_stream *st, const char *line, size_t len,
                             struct dp_mesh_snapshot **ret_snap, char *errbuf, size_t errsz)
{
    json_t *ev = NULL;
    int r = dp_json_parse(line, len, DP_MESH_MAX_EVENT_LINE, "event", &ev, errbuf, errsz);
    if (r < 0)
        return r;
    r = dp_mesh_stream_feed(st, ev, ret_snap, errbuf, errsz);
    json_decref(ev);
    return r;
}

uint64_t dp_mesh_stream_version(const struct dp_mesh_stream *st)
{
    return st->seen_version;
}

int dp_mesh_stream_publish(struct dp_mesh_stream *st, struct dp_mesh_snapshot **ret_snap)
{
    return pending_commit(&st->p, ret_snap);
}

/* ------------------------------------------------------------------ lookups */

static void *find_by_key(const struct dp_mesh_snapshot *s, enum dp_mesh_kind k, const char *key)
{
    struct objhdr h = {.key = (char *)key};
    const struct objhdr *hp = &h;
    void **f;
    if (!key || s->n[k] == 0)
        return NULL;
    f = bsearch(&hp, s->objs[k], s->n[k], sizeof(void *), cmp_obj_key);
    return f ? *f : NULL;
}

const struct dp_mesh_workload *dp_mesh_workload_by_key(const struct dp_mesh_snapshot *s,
                                                       const char *key)
{
    return find_by_key(s, DP_MESH_WORKLOAD, key);
}

const struct dp_mesh_workload *dp_mesh_workload_by_pod_uid(const struct dp_mesh_snapshot *s,
                                                           const char *pod_uid)
{
    return pod_uid ? hmap_get(&s->wl_by_pod_uid, pod_uid) : NULL;
}

const struct dp_mesh_workload *dp_mesh_workload_by_ip(const struct dp_mesh_snapshot *s,
                                                      const struct dp_mesh_ip *ip)
{
    struct dp_mesh_ip n = *ip;
    ip_normalise(&n);
    return hmap_get(&s->wl_by_ip, &n);
}

const struct dp_mesh_service *dp_mesh_service_by_key(const struct dp_mesh_snapshot *s,
                                                     const char *key)
{
    return find_by_key(s, DP_MESH_SERVICE, key);
}

const struct dp_mesh_service *dp_mesh_service_by_vip(const struct dp_mesh_snapshot *s,
                                                     const struct dp_mesh_ip *vip)
{
    struct dp_mesh_ip n = *vip;
    ip_normalise(&n);
    return hmap_get(&s->svc_by_vip, &n);
}

const struct dp_mesh_policy *dp_mesh_policy_by_key(const struct dp_mesh_snapshot *s,
                                                   const char *key)
{
    return find_by_key(s, DP_MESH_POLICY, key);
}

const struct dp_mesh_waypoint *dp_mesh_waypoint_by_key(const struct dp_mesh_snapshot *s,
                                                       const char *key)
{
    return find_by_key(s, DP_MESH_WAYPOINT, key);
}

static int cmp_range(const void *a, const void *b)
{
    return strcmp(((const struct range *)a)->key, ((const struct range *)b)->key);
}

static const struct range *find_range(const struct range *r, size_t n, const char *key)
{
    struct range k = {.key = key};
    if (!n || !key)
        return NULL;
    return bsearch(&k, r, n, sizeof(k), cmp_range);
}

size_t dp_mesh_service_endpoints(const struct dp_mesh_snapshot *s, const char *svc_key,
                                 const struct dp_mesh_workload *const **ret_list)
{
    const struct range *r = find_range(s->ep_ranges, s->n_ep_ranges, svc_key);
    *ret_list = r ? s->ep_list + r->off : NULL;
    return r ? r->n : 0;
}

#define LIST_FN(fn, kind, type)                                                                    \
    size_t fn(const struct dp_mesh_snapshot *s, const type *const **ret_list)                      \
    {                                                                                              \
        *ret_list = (const type *const *)s->objs[kind];                                            \
        return s->n[kind];                                                                         \
    }
LIST_FN(dp_mesh_snapshot_workloads, DP_MESH_WORKLOAD, struct dp_mesh_workload)
LIST_FN(dp_mesh_snapshot_services, DP_MESH_SERVICE, struct dp_mesh_service)
LIST_FN(dp_mesh_snapshot_policies, DP_MESH_POLICY, struct dp_mesh_policy)
LIST_FN(dp_mesh_snapshot_waypoints, DP_MESH_WAYPOINT, struct dp_mesh_waypoint)
#undef LIST_FN

size_t dp_mesh_namespace_policies(const struct dp_mesh_snapshot *s, const char *ns,
                                  const struct dp_mesh_policy *const **ret_list)
{
    const struct range *r = find_range(s->ns_ranges, s->n_ns_ranges, ns);
    *ret_list = r ? s->ns_pols + r->off : NULL;
    return r ? r->n : 0;
}

size_t dp_mesh_global_policies(const struct dp_mesh_snapshot *s,
                               const struct dp_mesh_policy *const **ret_list)
{
    *ret_list = s->global_pols;
    return s->n_global;
}

/* ================================================================== destination selection */

static __thread uint64_t rng_state;

static uint64_t default_rng(void *arg)
{
    (void)arg;
    if (rng_state == 0) {
        uint64_t seed = 0;
        if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed)) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uintptr_t)&seed;
        }
        rng_state = seed | 1;
    }
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

int dp_mesh_pick_endpoint(const struct dp_mesh_workload *const *list, size_t n,
                          bool allow_unhealthy, dp_mesh_rng_fn *rng, void *rng_arg)
{
    uint64_t total = 0, pick;
    if (!rng)
        rng = default_rng;
    for (size_t i = 0; i < n; i++)
        if (allow_unhealthy || list[i]->status == DP_MESH_HEALTHY)
            total += list[i]->capacity;
    if (total == 0)
        return -EHOSTUNREACH;
    pick = rng(rng_arg) % total;
    for (size_t i = 0; i < n; i++) {
        if (!allow_unhealthy && list[i]->status != DP_MESH_HEALTHY)
            continue;
        if (pick < list[i]->capacity)
            return (int)i;
        pick -= list[i]->capacity;
    }
    return -EHOSTUNREACH; /* unreachable */
}

/* first address of the workload in the family of `like` (else the first one) */
static const struct dp_mesh_ip *wl_addr(const struct dp_mesh_workload *w,
                                        const struct dp_mesh_ip *like)
{
    for (size_t i = 0; like && i < w->n_addresses; i++)
        if (w->addresses[i].family == like->family)
            return &w->addresses[i];
    return w->n_addresses ? &w->addresses[0] : NULL;
}

static bool source_is_gateway(const struct dp_mesh_snapshot *s, const struct dp_mesh_workload *src,
                              const struct dp_mesh_gateway *g)
{
    const struct dp_mesh_ip *addrs = g->addresses;
    size_t n = g->n_addresses;
    if (!src)
        return false;
    if (n == 0 && g->key) {
        /* a reference by key only: the waypoint object has the addresses */
        const struct dp_mesh_waypoint *wp = dp_mesh_waypoint_by_key(s, g->key);
        if (wp) {
            addrs = wp->addresses;
            n = wp->n_addresses;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const struct dp_mesh_service *gs;
        for (size_t j = 0; j < src->n_addresses; j++)
            if (dp_mesh_ip_equal(&src->addresses[j], &addrs[i]))
                return true;
        gs = dp_mesh_service_by_vip(s, &addrs[i]);
        if (gs && dp_mesh_workload_svc_ref(src, gs->key))
            return true;
    }
    return false;
}

/* Resolve a waypoint reference to the pod to connect to. */
static int resolve_waypoint(const struct dp_mesh_snapshot *s, const struct dp_mesh_gateway *g,
                            const struct dp_mesh_ip *dst, uint16_t port, dp_mesh_rng_fn *rng,
                            void *rng_arg, struct dp_mesh_dest *d)
{
    const struct dp_mesh_waypoint *wp = g->key ? dp_mesh_waypoint_by_key(s, g->key) : NULL;
    const struct dp_mesh_ip *addrs = g->addresses;
    size_t n = g->n_addresses;
    uint16_t hport = g->port ? g->port : DP_MESH_HBONE_PORT;

    if (n == 0 && wp) {
        addrs = wp->addresses;
        n = wp->n_addresses;
        hport = wp->port;
    }
    d->kind = DP_MESH_DEST_WAYPOINT;
    d->hbone = true;
    d->waypoint = wp;
    d->authority_ip = *dst;
    d->authority_port = port;
    d->connect_port = hport;
    for (size_t i = 0; i < n; i++) {
        const struct dp_mesh_service *ws = dp_mesh_service_by_vip(s, &addrs[i]);
        const struct dp_mesh_workload *w;
        if (ws) {
            const struct dp_mesh_workload *const *eps;
            size_t ne = dp_mesh_service_endpoints(s, ws->key, &eps);
            int idx = dp_mesh_pick_endpoint(eps, ne, ws->health_policy == DP_MESH_ALLOW_ALL, rng,
                                            rng_arg);
            if (idx < 0 || !wl_addr(eps[idx], &addrs[i]))
                continue;
            d->workload = eps[idx];
            d->connect_ip = *wl_addr(eps[idx], &addrs[i]);
            return 0;
        }
        w = dp_mesh_workload_by_ip(s, &addrs[i]);
        d->workload = w;
        d->connect_ip = addrs[i];
        return 0;
    }
    return -EHOSTUNREACH;
}

static void dest_to_workload(const struct dp_mesh_workload *w, const struct dp_mesh_ip *ip,
                             uint16_t target, struct dp_mesh_dest *d)
{
    d->kind = DP_MESH_DEST_WORKLOAD;
    d->workload = w;
    if (w->protocol == DP_MESH_PROTO_HBONE) {
        d->hbone = true;
        d->connect_ip = *ip;
        d->connect_port = DP_MESH_HBONE_PORT;
        d->authority_ip = *ip;
        d->authority_port = target;
    } else {
        d->hbone = false;
        d->connect_ip = *ip;
        d->connect_port = target;
    }
}

int dp_mesh_select_destination(const struct dp_mesh_snapshot *s,
                               const struct dp_mesh_workload *source, const struct dp_mesh_ip *dst,
                               uint16_t port, dp_mesh_rng_fn *rng, void *rng_arg,
                               struct dp_mesh_dest *ret_dest)
{
    struct dp_mesh_dest d;
    struct dp_mesh_ip ip = *dst;
    const struct dp_mesh_service *svc;
    const struct dp_mesh_workload *w;
    int r;

    memset(&d, 0, sizeof(d));
    ip_normalise(&ip);
    svc = dp_mesh_service_by_vip(s, &ip);
    if (svc) {
        const struct dp_mesh_service_port *sp = NULL;
        const struct dp_mesh_workload *const *eps;
        const struct dp_mesh_svc_ref *ref;
        const struct dp_mesh_ip *eip;
        uint16_t target;
        size_t ne;
        int idx;

        d.service = svc;
        if (svc->waypoint && !source_is_gateway(s, source, svc->waypoint)) {
            if ((r = resolve_waypoint(s, svc->waypoint, &ip, port, rng, rng_arg, &d)) < 0)
                return r;
            *ret_dest = d;
            return 0;
        }
        for (size_t i = 0; i < svc->n_ports; i++)
            if (svc->ports[i].port == port)
                sp = &svc->ports[i];
        if (!sp && svc->lb_mode != DP_MESH_LB_PASSTHROUGH)
            return -EHOSTUNREACH;
        ne = dp_mesh_service_endpoints(s, svc->key, &eps);
        idx = dp_mesh_pick_endpoint(eps, ne, svc->health_policy == DP_MESH_ALLOW_ALL, rng, rng_arg);
        if (idx < 0 || !sp) {
            if (svc->lb_mode != DP_MESH_LB_PASSTHROUGH)
                return -EHOSTUNREACH;
            d.kind = DP_MESH_DEST_PASSTHROUGH;
            d.connect_ip = ip;
            d.connect_port = port;
            *ret_dest = d;
            return 0;
        }
        w = eps[idx];
        eip = wl_addr(w, &ip);
        if (!eip)
            return -EHOSTUNREACH;
        target = sp->target_port ? sp->target_port : port;
        ref = dp_mesh_workload_svc_ref(w, svc->key);
        for (size_t i = 0; ref && i < ref->n_ports; i++)
            if (ref->ports[i].port == port && ref->ports[i].target_port)
                target = ref->ports[i].target_port;
        dest_to_workload(w, eip, target, &d);
        d.service = svc;
        *ret_dest = d;
        return 0;
    }
    w = dp_mesh_workload_by_ip(s, &ip);
    if (w) {
        if (w->waypoint && !source_is_gateway(s, source, w->waypoint)) {
            if ((r = resolve_waypoint(s, w->waypoint, &ip, port, rng, rng_arg, &d)) < 0)
                return r;
            *ret_dest = d;
            return 0;
        }
        dest_to_workload(w, &ip, port, &d);
        *ret_dest = d;
        return 0;
    }
    d.kind = DP_MESH_DEST_PASSTHROUGH;
    d.connect_ip = ip;
    d.connect_port = port;
    *ret_dest = d;
    return 0;
}
