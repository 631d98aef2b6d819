/*
 * mesh_decode.c — JSON -> mesh objects: strict (unknown fields are errors), bounded (every
 * array and string has a limit from mesh.h), with errors naming the JSON path. Also the
 * object reference counts and small per-workload lookups.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json.h"
#include "mesh.h"
#include "mesh_internal.h"

/* ================================================================== decode helpers */

int dp_mesh_fail(struct dp_mesh_dctx *c, const char *key, const char *fmt, ...)
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
static int get_str(struct dp_mesh_dctx *c, const json_t *o, const char *key, bool required,
                   bool nonempty, char **out)
{
    const char *s = NULL;
    int r = dp_json_get_str(o, key, required, &s, &c->p, &c->e);
    if (r <= 0)
        return r;
    if (strlen(s) > DP_MESH_MAX_STR)
        return dp_mesh_fail(c, key, "string too long (%zu bytes, at most %d)", strlen(s),
                            DP_MESH_MAX_STR);
    if (nonempty && s[0] == '\0')
        return dp_mesh_fail(c, key, "must not be empty");
    if (dup_str(s, out) < 0)
        return -ENOMEM;
    return 1;
}

static int get_u32(struct dp_mesh_dctx *c, const json_t *o, const char *key, long long min,
                   long long max, uint32_t *out)
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

static int get_strv(struct dp_mesh_dctx *c, const json_t *o, const char *key, size_t max,
                    char ***out, size_t *n_out)
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
            r = dp_mesh_fail(c, NULL, "expected string, got %s", dp_json_type_str(el));
            goto err;
        }
        if (strlen(s) > DP_MESH_MAX_STR || s[0] == '\0' || strlen(s) != json_string_length(el)) {
            PUSHI(c, i);
            r = dp_mesh_fail(c, NULL, "empty, too long or NUL-containing string");
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

static int get_ipv(struct dp_mesh_dctx *c, const json_t *o, const char *key, bool allow_net,
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
            r = dp_mesh_fail(c, NULL, "expected string, got %s", dp_json_type_str(el));
        else if ((allow_net ? parse_addr_maybe_net(s, &v[i]) : dp_mesh_ip_parse(s, &v[i])) < 0)
            r = dp_mesh_fail(c, NULL, "not an IP address");
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

static int decode_gateway(struct dp_mesh_dctx *c, const json_t *o, const char *key,
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
        r = dp_mesh_fail(c, NULL, "needs a key or addresses");
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

static int decode_labels(struct dp_mesh_dctx *c, const json_t *o, struct dp_mesh_workload *w)
{
    json_t *v, *val;
    const char *k;
    size_t i = 0;
    int r = dp_json_get_obj(o, "labels", false, &v, &c->p, &c->e);
    if (r <= 0)
        return r;
    if (json_object_size(v) > DP_MESH_MAX_LABELS)
        return dp_mesh_fail(c, "labels", "too many labels (%zu, at most %d)", json_object_size(v),
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
            r = dp_mesh_fail(c, k, json_is_string(val) ? "too long" : "expected string");
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

static int decode_svc_refs(struct dp_mesh_dctx *c, const json_t *o, struct dp_mesh_workload *w)
{
    json_t *v, *ports, *tp;
    const char *k, *pk;
    size_t i = 0;
    int r = dp_json_get_obj(o, "services", false, &v, &c->p, &c->e);
    if (r <= 0)
        return r;
    if (json_object_size(v) > DP_MESH_MAX_SVC_REFS)
        return dp_mesh_fail(c, "services", "too many services (%zu, at most %d)",
                            json_object_size(v), DP_MESH_MAX_SVC_REFS);
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
            r = dp_mesh_fail(c, k, "service key must be \"<namespace>/<hostname>\"");
            goto err;
        }
        w->n_services = ++i;
        if (dup_str(k, &ref->key) < 0) {
            r = -ENOMEM;
            goto err;
        }
        if (!json_is_object(ports)) {
            r = dp_mesh_fail(c, k, "expected object {\"<service port>\": <target port>}, got %s",
                             dp_json_type_str(ports));
            goto err;
        }
        if (json_object_size(ports) > DP_MESH_MAX_PORTS) {
            r = dp_mesh_fail(c, k, "too many ports");
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
                r = dp_mesh_fail(c, pk, "service port must be a decimal 1..65535");
                POP(c);
                goto err;
            }
            if (!json_is_integer(tp) || json_integer_value(tp) < 0 ||
                json_integer_value(tp) > 65535) {
                r = dp_mesh_fail(c, pk, "target port must be an integer 0..65535");
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

static int decode_enum(struct dp_mesh_dctx *c, const json_t *o, const char *key,
                       const char *const *names, const int *values, int *out)
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
    return dp_mesh_fail(c, key, "unknown value (expected one of %s)", list);
}

static int make_key2(const char *a, const char *b, char **out)
{
    if (asprintf(out, "%s/%s", a, b) < 0)
        return -ENOMEM;
    return 0;
}

static int check_key(struct dp_mesh_dctx *c, const char *want, const char *derived)
{
    if (want && strcmp(want, derived) != 0)
        return dp_mesh_fail(c, NULL,
                            "event key \"%.200s\" does not match the object's key \"%.200s\"", want,
                            derived);
    return 0;
}

static int decode_workload(struct dp_mesh_dctx *c, const json_t *o, const char *key,
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

static int decode_service_ports(struct dp_mesh_dctx *c, const json_t *o, struct dp_mesh_service *s)
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
            return dp_mesh_fail(c, "ports", "too many ports");
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
                r = dp_mesh_fail(c, k, "expected \"<port>\": <target port 0..65535>");
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
        return dp_mesh_fail(c, "ports", "expected array, got %s", dp_json_type_str(v));
    if (json_array_size(v) > DP_MESH_MAX_PORTS)
        return dp_mesh_fail(c, "ports", "too many items (%zu, at most %d)", json_array_size(v),
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

static int decode_service(struct dp_mesh_dctx *c, const json_t *o, const char *key,
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

static int decode_strmatch(struct dp_mesh_dctx *c, const json_t *el, bool principal,
                           struct dp_mesh_strmatch *m)
{
    static const char *const allowed[] = {"exact", "prefix", "suffix", "presence", NULL};
    const char *k, *s;
    json_t *v;
    int r;

    if (json_is_string(el)) {
        s = json_string_value(el);
        if (s[0] == '\0' || strlen(s) > DP_MESH_MAX_STR || strlen(s) != json_string_length(el))
            return dp_mesh_fail(c, NULL, "empty, too long or NUL-containing string");
        return strmatch_from_istio(principal ? strip_spiffe(s) : s, m);
    }
    if (!json_is_object(el))
        return dp_mesh_fail(c, NULL,
                            "expected string or {\"exact\"|\"prefix\"|\"suffix\"|\"presence\"}, "
                            "got %s",
                            dp_json_type_str(el));
    if ((r = dp_json_check_keys(el, allowed, &c->p, &c->e)) < 0)
        return r;
    if (json_object_size(el) != 1)
        return dp_mesh_fail(c, NULL, "exactly one of exact, prefix, suffix, presence");
    json_object_foreach((json_t *)el, k, v) {
        if (strcmp(k, "presence") == 0) {
            if (!json_is_true(v) && !(json_is_object(v) && json_object_size(v) == 0))
                return dp_mesh_fail(c, k, "must be true");
            m->kind = DP_MESH_PRESENCE;
            return dup_str("", &m->value);
        }
        if (!json_is_string(v))
            return dp_mesh_fail(c, k, "expected string, got %s", dp_json_type_str(v));
        s = json_string_value(v);
        if (strlen(s) > DP_MESH_MAX_STR || strlen(s) != json_string_length(v))
            return dp_mesh_fail(c, k, "too long or NUL-containing string");
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
typedef int decode_el_fn(struct dp_mesh_dctx *c, const json_t *el, bool flag, void *out);

static int decode_list(struct dp_mesh_dctx *c, const json_t *o, const char *key, size_t elsz,
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

static int el_strmatch(struct dp_mesh_dctx *c, const json_t *el, bool principal, void *out)
{
    return decode_strmatch(c, el, principal, out);
}

static int el_samatch(struct dp_mesh_dctx *c, const json_t *el, bool flag, void *out)
{
    static const char *const allowed[] = {"namespace", "serviceAccount", NULL};
    struct dp_mesh_sa_match *m = out;
    int r;
    (void)flag;
    if (json_is_string(el)) {
        const char *s = json_string_value(el), *slash = strchr(s, '/');
        if (!slash || slash == s || !slash[1] || strchr(slash + 1, '/') ||
            strlen(s) > DP_MESH_MAX_STR)
            return dp_mesh_fail(c, NULL, "service account must be \"<namespace>/<name>\"");
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

static int el_cidr(struct dp_mesh_dctx *c, const json_t *el, bool flag, void *out)
{
    (void)flag;
    if (!json_is_string(el))
        return dp_mesh_fail(c, NULL, "expected CIDR string, got %s", dp_json_type_str(el));
    if (dp_mesh_cidr_parse(json_string_value(el), out) < 0)
        return dp_mesh_fail(c, NULL, "not a CIDR (\"10.0.0.0/8\", \"fd00::/64\" or an address)");
    return 0;
}

static int el_port(struct dp_mesh_dctx *c, const json_t *el, bool flag, void *out)
{
    (void)flag;
    if (json_is_string(el)) {
        if (parse_port_str(json_string_value(el), out) < 0)
            return dp_mesh_fail(c, NULL, "not a port 1..65535");
        return 0;
    }
    if (!json_is_integer(el) || json_integer_value(el) < 1 || json_integer_value(el) > 65535)
        return dp_mesh_fail(c, NULL, "expected port 1..65535, got %s",
                            json_is_integer(el) ? "out of range" : dp_json_type_str(el));
    *(uint16_t *)out = (uint16_t)json_integer_value(el);
    return 0;
}

#define LIST(key, field, fn, flag)                                                                 \
    decode_list(c, o, key, sizeof(*m->field), fn, flag, (void **)&m->field, &m->n_##field)

static int decode_match(struct dp_mesh_dctx *c, const json_t *o, struct dp_mesh_match *m)
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

static int decode_rules(struct dp_mesh_dctx *c, const json_t *o, struct dp_mesh_policy *p)
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
            r = dp_mesh_fail(c, NULL, "expected array of clauses, got %s", dp_json_type_str(grp));
            goto err2;
        }
        if (json_array_size(grp) > DP_MESH_MAX_CLAUSES) {
            r = dp_mesh_fail(c, NULL, "too many clauses (%zu, at most %d)", json_array_size(grp),
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
                r = dp_mesh_fail(c, NULL, "expected array of matches, got %s",
                                 dp_json_type_str(cl));
                goto err3;
            }
            if (json_array_size(cl) > DP_MESH_MAX_MATCHES) {
                r = dp_mesh_fail(c, NULL, "too many matches (%zu, at most %d)", json_array_size(cl),
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

static int decode_policy(struct dp_mesh_dctx *c, const json_t *o, const char *key,
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

static int decode_waypoint(struct dp_mesh_dctx *c, const json_t *o, const char *key,
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

int dp_mesh_decode_any(struct dp_mesh_dctx *c, enum dp_mesh_kind kind, const json_t *json,
                       const char *key, void **ret_obj)
{
    if (!json_is_object(json))
        return dp_mesh_fail(c, NULL, "expected object, got %s",
                            json ? dp_json_type_str(json) : "nothing");
    if (key && (strlen(key) == 0 || strlen(key) > DP_MESH_MAX_STR))
        return dp_mesh_fail(c, NULL, "bad key");
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
        return dp_mesh_fail(c, NULL, "unknown kind");
    }
}

void dp_mesh_set_err(char *errbuf, size_t errsz, const char *fmt, ...)
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
    struct dp_mesh_dctx c;
    void *obj = NULL;
    int r;
    memset(&c.e, 0, sizeof(c.e));
    dp_jpath_init(&c.p, path ? path : "");
    r = dp_mesh_decode_any(&c, kind, json, key, &obj);
    if (r < 0) {
        if (r == -ENOMEM)
            dp_mesh_set_err(errbuf, errsz, "out of memory");
        else
            dp_mesh_set_err(errbuf, errsz, "%s", c.e.msg);
        return r;
    }
    *ret_obj = obj;
    return 0;
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
