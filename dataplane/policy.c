/*
 * policy.c — L4 authorization evaluator (ztunnel semantics) and the AuthorizationPolicy /
 * PeerAuthentication compilers.
 *
 * The evaluator allocates nothing: it walks the snapshot's per-namespace and global policy
 * lists plus the workload's explicit policy keys in place, twice (DENY pass, then ALLOW pass).
 *
 * The compilers produce the JSON form of mesh policy objects (docs/mesh-objects.md) because
 * that is what the operator streams; each result is round-tripped through the mesh decoder so
 * the operator can never publish something the node agent would reject.
 */
#include "policy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "json.h"

/* ================================================================== evaluator */

struct peer {
    const char *principal; /* without spiffe://, NULL if none */
    size_t principal_len;
    const char *ns, *sa; /* substrings of principal, NULL if it is not td/ns/x/sa/y */
    size_t ns_len, sa_len;
};

static void peer_parse(const char *identity, struct peer *p)
{
    const char *s, *ns, *sa;
    memset(p, 0, sizeof(*p));
    if (!identity || !identity[0])
        return;
    s = strncmp(identity, "spiffe://", 9) == 0 ? identity + 9 : identity;
    if (!s[0])
        return;
    p->principal = s;
    p->principal_len = strlen(s);
    /* "<td>/ns/<ns>/sa/<sa>" */
    ns = strstr(s, "/ns/");
    if (!ns)
        return;
    ns += 4;
    sa = strstr(ns, "/sa/");
    if (!sa || sa == ns || !sa[4] || strchr(sa + 4, '/'))
        return;
    p->ns = ns;
    p->ns_len = (size_t)(sa - ns);
    p->sa = sa + 4;
    p->sa_len = strlen(sa + 4);
}

static bool str_match(const struct dp_mesh_strmatch *m, const char *s, size_t n)
{
    size_t vl;
    switch (m->kind) {
    case DP_MESH_PRESENCE:
        return n > 0;
    case DP_MESH_EXACT:
        return strlen(m->value) == n && memcmp(m->value, s, n) == 0;
    case DP_MESH_PREFIX:
        vl = strlen(m->value);
        return vl <= n && memcmp(m->value, s, vl) == 0;
    case DP_MESH_SUFFIX:
        vl = strlen(m->value);
        return vl <= n && memcmp(m->value, s + n - vl, vl) == 0;
    }
    return false;
}

static bool any_str(const struct dp_mesh_strmatch *v, size_t n, const char *s, size_t len)
{
    if (!s)
        return false;
    for (size_t i = 0; i < n; i++)
        if (str_match(&v[i], s, len))
            return true;
    return false;
}

static bool any_sa(const struct dp_mesh_sa_match *v, size_t n, const struct peer *p)
{
    if (!p->ns)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strlen(v[i].namespace) == p->ns_len && memcmp(v[i].namespace, p->ns, p->ns_len) == 0 &&
            strlen(v[i].service_account) == p->sa_len &&
            memcmp(v[i].service_account, p->sa, p->sa_len) == 0)
            return true;
    return false;
}

static bool any_cidr(const struct dp_mesh_cidr *v, size_t n, const struct dp_mesh_ip *ip)
{
    for (size_t i = 0; i < n; i++)
        if (dp_mesh_cidr_contains(&v[i], ip))
            return true;
    return false;
}

static bool any_port(const uint16_t *v, size_t n, uint16_t port)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == port)
            return true;
    return false;
}

static bool match_empty(const struct dp_mesh_match *m)
{
    return !(m->n_principals || m->n_not_principals || m->n_namespaces || m->n_not_namespaces ||
             m->n_service_accounts || m->n_not_service_accounts || m->n_source_ips ||
             m->n_not_source_ips || m->n_destination_ips || m->n_not_destination_ips ||
             m->n_destination_ports || m->n_not_destination_ports);
}

static bool match_peer(const struct dp_mesh_match *m, const struct peer *p,
                       const struct dp_policy_conn *c)
{
    if (match_empty(m))
        return false;
    if (m->n_principals && !any_str(m->principals, m->n_principals, p->principal, p->principal_len))
        return false;
    if (any_str(m->not_principals, m->n_not_principals, p->principal, p->principal_len))
        return false;
    if (m->n_namespaces && !any_str(m->namespaces, m->n_namespaces, p->ns, p->ns_len))
        return false;
    if (any_str(m->not_namespaces, m->n_not_namespaces, p->ns, p->ns_len))
        return false;
    if (m->n_service_accounts && !any_sa(m->service_accounts, m->n_service_accounts, p))
        return false;
    if (any_sa(m->not_service_accounts, m->n_not_service_accounts, p))
        return false;
    if (m->n_source_ips && !any_cidr(m->source_ips, m->n_source_ips, &c->src_ip))
        return false;
    if (any_cidr(m->not_source_ips, m->n_not_source_ips, &c->src_ip))
        return false;
    if (m->n_destination_ips && !any_cidr(m->destination_ips, m->n_destination_ips, &c->dst_ip))
        return false;
    if (any_cidr(m->not_destination_ips, m->n_not_destination_ips, &c->dst_ip))
        return false;
    if (m->n_destination_ports &&
        !any_port(m->destination_ports, m->n_destination_ports, c->dst_port))
        return false;
    if (any_port(m->not_destination_ports, m->n_not_destination_ports, c->dst_port))
        return false;
    return true;
}

static bool policy_peer(const struct dp_mesh_policy *pol, const struct peer *p,
                        const struct dp_policy_conn *c)
{
    for (size_t g = 0; g < pol->n_groups; g++) {
        const struct dp_mesh_group *grp = &pol->groups[g];
        bool all = true;
        for (size_t cl = 0; all && cl < grp->n_clauses; cl++) {
            const struct dp_mesh_clause *clause = &grp->clauses[cl];
            bool any = false;
            for (size_t m = 0; !any && m < clause->n_matches; m++)
                any = match_peer(&clause->matches[m], p, c);
            all = any;
        }
        if (all)
            return true;
    }
    return false;
}

bool dp_policy_match_matches(const struct dp_mesh_match *m, const struct dp_policy_conn *c)
{
    struct peer p;
    peer_parse(c->identity, &p);
    return match_peer(m, &p, c);
}

bool dp_policy_matches(const struct dp_mesh_policy *pol, const struct dp_policy_conn *c)
{
    struct peer p;
    peer_parse(c->identity, &p);
    return policy_peer(pol, &p, c);
}

/* Iterates the policies of a decision without allocating: up to three sources. */
struct pol_iter {
    const struct dp_mesh_policy *const *list[2];
    size_t n[2];
    const struct dp_mesh_snapshot *s; /* for keys */
    char *const *keys;
    size_t n_keys;
    unsigned stage;
    size_t i;
};

static const struct dp_mesh_policy *pol_next(struct pol_iter *it)
{
    while (it->stage < 3) {
        if (it->stage < 2) {
            if (it->i < it->n[it->stage])
                return it->list[it->stage][it->i++];
        } else {
            while (it->i < it->n_keys) {
                const struct dp_mesh_policy *p = dp_mesh_policy_by_key(it->s, it->keys[it->i++]);
                if (p)
                    return p;
            }
        }
        it->stage++;
        it->i = 0;
    }
    return NULL;
}

static void pol_rewind(struct pol_iter *it)
{
    it->stage = 0;
    it->i = 0;
}

/* The ztunnel decision, over enforced policies only or over all (with dry-run ones). */
static bool decide(struct pol_iter *it, const struct peer *p, const struct dp_policy_conn *c,
                   bool with_dry_run, const struct dp_mesh_policy **ret_policy, int *ret_why)
{
    const struct dp_mesh_policy *pol;
    bool have_allow = false;

    pol_rewind(it);
    while ((pol = pol_next(it))) {
        if (pol->dry_run && !with_dry_run)
            continue;
        if (pol->action == DP_MESH_DENY && policy_peer(pol, p, c)) {
            *ret_policy = pol;
            *ret_why = 0;
            return false;
        }
        if (pol->action == DP_MESH_ALLOW)
            have_allow = true;
    }
    if (!have_allow) {
        *ret_policy = NULL;
        *ret_why = 1;
        return true;
    }
    pol_rewind(it);
    while ((pol = pol_next(it))) {
        if (pol->dry_run && !with_dry_run)
            continue;
        if (pol->action == DP_MESH_ALLOW && policy_peer(pol, p, c)) {
            *ret_policy = pol;
            *ret_why = 2;
            return true;
        }
    }
    *ret_policy = NULL;
    *ret_why = 3;
    return false;
}

static int run(struct pol_iter *it, const struct dp_policy_conn *c, struct dp_policy_result *res)
{
    const struct dp_mesh_policy *pol, *dpol;
    struct peer p;
    int why, dwhy;
    bool allowed, dallowed;

    peer_parse(c->identity, &p);
    allowed = decide(it, &p, c, false, &pol, &why);
    memset(res, 0, sizeof(*res));
    res->allowed = allowed;
    res->policy = pol;
    switch (why) {
    case 0:
        snprintf(res->reason, sizeof(res->reason), "explicitly denied by: %s", pol->key);
        break;
    case 1:
        snprintf(res->reason, sizeof(res->reason), "no allow policies");
        break;
    case 2:
        snprintf(res->reason, sizeof(res->reason), "allowed by: %s", pol->key);
        break;
    default:
        snprintf(res->reason, sizeof(res->reason), "allow policies exist, but none allowed");
        break;
    }
    dallowed = decide(it, &p, c, true, &dpol, &dwhy);
    res->dry_run_allowed = dallowed;
    if (dpol && dpol->dry_run) {
        res->dry_run_policy = dpol;
    } else if (dallowed != allowed) {
        /* a dry-run ALLOW turned "no allow policies" into "none allowed" */
        const struct dp_mesh_policy *q;
        pol_rewind(it);
        while ((q = pol_next(it)))
            if (q->dry_run && q->action == DP_MESH_ALLOW) {
                res->dry_run_policy = q;
                break;
            }
    }
    return 0;
}

int dp_policy_evaluate(const struct dp_mesh_policy *const *policies, size_t n,
                       const struct dp_policy_conn *c, struct dp_policy_result *ret_result)
{
    struct pol_iter it;
    memset(&it, 0, sizeof(it));
    it.list[0] = policies;
    it.n[0] = n;
    return run(&it, c, ret_result);
}

int dp_policy_check(const struct dp_mesh_snapshot *s, const struct dp_mesh_workload *dst,
                    const struct dp_policy_conn *c, struct dp_policy_result *ret_result)
{
    struct pol_iter it;
    if (!dst) {
        /* fail closed: nothing is known about the destination */
        memset(ret_result, 0, sizeof(*ret_result));
        snprintf(ret_result->reason, sizeof(ret_result->reason), "unknown destination workload");
        return 0;
    }
    memset(&it, 0, sizeof(it));
    it.n[0] = dp_mesh_namespace_policies(s, dst->namespace, &it.list[0]);
    it.n[1] = dp_mesh_global_policies(s, &it.list[1]);
    it.s = s;
    it.keys = dst->authorization_policies;
    it.n_keys = dst->n_policies;
    return run(&it, c, ret_result);
}

/* ================================================================== diagnostics */

static void diag(struct dp_policy_diags *d, bool error, const struct dp_jpath *p, const char *key,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void diag(struct dp_policy_diags *d, bool error, const struct dp_jpath *p, const char *key,
                 const char *fmt, ...)
{
    struct dp_jpath tmp;
    char msg[DP_POLICY_DIAG_LEN];
    va_list ap;

    if (!d)
        return;
    if (error)
        d->n_errors++;
    else
        d->n_warnings++;
    if (d->n >= DP_POLICY_MAX_DIAGS) {
        d->dropped++;
        return;
    }
    tmp = *p;
    if (key)
        dp_jpath_push_key(&tmp, key);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    d->items[d->n].error = error;
    /* truncation of an over-long diagnostic is acceptable */
    if (snprintf(d->items[d->n].text, sizeof(d->items[d->n].text), "%s: %s", dp_jpath_str(&tmp),
                 msg) < 0)
        d->items[d->n].text[0] = '\0';
    d->n++;
}

/* ================================================================== AuthorizationPolicy */

struct cctx {
    struct dp_jpath p;
    struct dp_policy_diags *d;
    bool deny;
};

/* JSON string match object from Istio's string form. NEW ref. */
static json_t *istio_strmatch(const char *s, bool principal)
{
    size_t n;
    if (principal && strncmp(s, "spiffe://", 9) == 0)
        s += 9;
    n = strlen(s);
    if (strcmp(s, "*") == 0)
        return json_pack("{sb}", "presence", 1);
    if (n > 1 && s[n - 1] == '*')
        return json_pack("{ss%}", "prefix", s, n - 1);
    if (n > 1 && s[0] == '*')
        return json_pack("{ss}", "suffix", s + 1);
    return json_pack("{ss}", "exact", s);
}

enum vkind { V_STR, V_PRINCIPAL, V_SA, V_CIDR, V_PORT };

/* Convert an array of Istio strings (ports may also be integers) into mesh match values.
 * Returns a NEW array (possibly empty), or NULL with an error diag / ENOMEM (*err set). */
static json_t *convert_values(struct cctx *c, const json_t *arr, const char *key, enum vkind k,
                              int *err)
{
    json_t *out = json_array(), *el;
    size_t i;
    if (!out) {
        *err = -ENOMEM;
        return NULL;
    }
    if (!json_is_array(arr)) {
        diag(c->d, true, &c->p, key, "expected array, got %s", dp_json_type_str(arr));
        goto err;
    }
    if (json_array_size(arr) > DP_MESH_MAX_VALUES) {
        diag(c->d, true, &c->p, key, "too many values (%zu, at most %d)", json_array_size(arr),
             DP_MESH_MAX_VALUES);
        goto err;
    }
    dp_jpath_push_key(&c->p, key);
    json_array_foreach(arr, i, el) {
        const char *s = json_string_value(el);
        json_t *v = NULL;
        char buf[32];
        dp_jpath_push_index(&c->p, i);
        if (k == V_PORT && json_is_integer(el)) {
            snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(el));
            s = buf;
        }
        if (!s) {
            diag(c->d, true, &c->p, NULL, "expected string, got %s", dp_json_type_str(el));
            goto err_pop;
        }
        if (s[0] == '\0' || strlen(s) > DP_MESH_MAX_STR) {
            diag(c->d, true, &c->p, NULL, "empty or too long value");
            goto err_pop;
        }
        switch (k) {
        case V_STR:
        case V_PRINCIPAL:
            v = istio_strmatch(s, k == V_PRINCIPAL);
            break;
        case V_SA: {
            const char *slash = strchr(s, '/');
            if (!slash || slash == s || !slash[1] || strchr(slash + 1, '/')) {
                diag(c->d, true, &c->p, NULL, "service account must be \"<namespace>/<name>\"");
                goto err_pop;
            }
            v = json_pack("{ss%ss}", "namespace", s, (size_t)(slash - s), "serviceAccount",
                          slash + 1);
            break;
        }
        case V_CIDR: {
            struct dp_mesh_cidr cidr;
            char ipb[DP_MESH_IP_STRLEN], out_s[DP_MESH_IP_STRLEN + 8];
            bool host_bits = false;
            if (dp_mesh_cidr_parse_masked(s, &cidr, &host_bits) < 0) {
                diag(c->d, true, &c->p, NULL, "not an IP address or CIDR block");
                goto err_pop;
            }
            if (host_bits)
                diag(c->d, false, &c->p, NULL, "host bits set; treated as %s/%u",
                     dp_mesh_ip_format(&cidr.ip, ipb, sizeof(ipb)), cidr.prefix);
            snprintf(out_s, sizeof(out_s), "%s/%u", dp_mesh_ip_format(&cidr.ip, ipb, sizeof(ipb)),
                     cidr.prefix);
            v = json_string(out_s);
            break;
        }
        case V_PORT: {
            char *end;
            long port = strtol(s, &end, 10);
            if (*end || port < 1 || port > 65535 || s[0] < '0' || s[0] > '9') {
                diag(c->d, true, &c->p, NULL, "not a port number 1..65535");
                goto err_pop;
            }
            v = json_integer(port);
            break;
        }
        }
        if (json_array_append_new(out, v)) {
            *err = -ENOMEM;
            dp_jpath_pop(&c->p);
            dp_jpath_pop(&c->p);
            json_decref(out);
            return NULL;
        }
        dp_jpath_pop(&c->p);
    }
    dp_jpath_pop(&c->p);
    return out;
err_pop:
    dp_jpath_pop(&c->p);
    dp_jpath_pop(&c->p);
err:
    *err = -EINVAL;
    json_decref(out);
    return NULL;
}

/* field maps: Istio field -> mesh match field */
struct fmap {
    const char *istio;
    const char *mesh;
    enum vkind kind;
};

static const struct fmap source_fields[] = {
        {"principals", "principals", V_PRINCIPAL},
        {"notPrincipals", "notPrincipals", V_PRINCIPAL},
        {"namespaces", "namespaces", V_STR},
        {"notNamespaces", "notNamespaces", V_STR},
        {"serviceAccounts", "serviceAccounts", V_SA},
        {"notServiceAccounts", "notServiceAccounts", V_SA},
        {"ipBlocks", "sourceIps", V_CIDR},
        {"notIpBlocks", "notSourceIps", V_CIDR},
        {NULL, NULL, V_STR},
};
static const char *const source_l7[] = {"requestPrincipals", "notRequestPrincipals",
                                        "remoteIpBlocks", "notRemoteIpBlocks", NULL};
static const struct fmap op_fields[] = {
        {"ports", "destinationPorts", V_PORT},
        {"notPorts", "notDestinationPorts", V_PORT},
        {NULL, NULL, V_STR},
};
static const char *const op_l7[] = {"hosts", "notHosts", "methods", "notMethods",
                                    "paths", "notPaths", NULL};
/* L4 `when` keys: positive field, negative field, kind */
static const struct {
    const char *key, *pos, *neg;
    enum vkind kind;
} when_keys[] = {
        {"source.ip", "sourceIps", "notSourceIps", V_CIDR},
        {"source.namespace", "namespaces", "notNamespaces", V_STR},
        {"source.principal", "principals", "notPrincipals", V_PRINCIPAL},
        {"destination.ip", "destinationIps", "notDestinationIps", V_CIDR},
        {"destination.port", "destinationPorts", "notDestinationPorts", V_PORT},
};

static bool listed(const char *k, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(k, list[i]) == 0)
            return true;
    return false;
}

static bool nonempty_value(const json_t *v)
{
    if (json_is_array(v))
        return json_array_size(v) > 0;
    return v && !json_is_null(v);
}

/* rule outcome */
enum { RULE_OK = 0, RULE_DROP = 1 };

/*
 * Convert one `from[j].source` or `to[j].operation` object into a match. L7-only fields:
 * ALLOW -> RULE_DROP; DENY -> stripped (warned). *ret_match is NULL when the stripped match is
 * empty, which the caller treats as "this side matches everything".
 */
static int convert_side(struct cctx *c, const json_t *obj, const struct fmap *fields,
                        const char *const *l7, json_t **ret_match)
{
    json_t *m = json_object(), *v;
    const char *k;
    int err = 0;

    if (!m)
        return -ENOMEM;
    json_object_foreach((json_t *)obj, k, v) {
        const struct fmap *f = NULL;
        for (size_t i = 0; fields[i].istio; i++)
            if (strcmp(fields[i].istio, k) == 0)
                f = &fields[i];
        if (f) {
            json_t *vals = convert_values(c, v, k, f->kind, &err);
            if (!vals)
                goto err;
            if (json_array_size(vals) == 0) {
                json_decref(vals);
                continue;
            }
            if (json_object_set_new(m, f->mesh, vals)) {
                err = -ENOMEM;
                goto err;
            }
        } else if (listed(k, l7)) {
            if (!nonempty_value(v))
                continue;
            if (!c->deny) {
                diag(c->d, false, &c->p, k,
                     "ztunnel does not support HTTP attributes; rule dropped from ALLOW policy "
                     "(enforce it with a waypoint)");
                json_decref(m);
                return RULE_DROP;
            }
            diag(c->d, false, &c->p, k,
                 "ztunnel does not support HTTP attributes; ignored in DENY rule, which then "
                 "applies to every connection the rest of the rule matches");
        } else {
            diag(c->d, false, &c->p, k, "unknown field ignored");
        }
    }
    *ret_match = json_object_size(m) ? m : NULL;
    if (!json_object_size(m))
        json_decref(m);
    return RULE_OK;
err:
    json_decref(m);
    return err;
}

/* One entry list (`from` or `to`) -> one clause, or NULL when it matches everything. */
static int convert_clause(struct cctx *c, const json_t *rule, const char *list_key,
                          const char *item_key, const struct fmap *fields, const char *const *l7,
                          json_t **ret_clause)
{
    json_t *arr = json_object_get(rule, list_key), *el, *clause = NULL;
    bool match_all = false;
    size_t i;
    int r = RULE_OK;

    *ret_clause = NULL;
    if (!arr || json_is_null(arr) || (json_is_array(arr) && json_array_size(arr) == 0))
        return RULE_OK;
    if (!json_is_array(arr)) {
        diag(c->d, true, &c->p, list_key, "expected array, got %s", dp_json_type_str(arr));
        return -EINVAL;
    }
    if (json_array_size(arr) > DP_MESH_MAX_MATCHES) {
        diag(c->d, true, &c->p, list_key, "too many entries (%zu, at most %d)",
             json_array_size(arr), DP_MESH_MAX_MATCHES);
        return -EINVAL;
    }
    clause = json_array();
    if (!clause)
        return -ENOMEM;
    dp_jpath_push_key(&c->p, list_key);
    json_array_foreach(arr, i, el) {
        json_t *side, *m = NULL;
        dp_jpath_push_index(&c->p, i);
        side = json_is_object(el) ? json_object_get(el, item_key) : NULL;
        if (!json_is_object(side)) {
            diag(c->d, true, &c->p, item_key, "required object is missing");
            r = -EINVAL;
        } else if (json_object_size(side) == 0) {
            dp_jpath_push_key(&c->p, item_key);
            diag(c->d, true, &c->p, NULL, "must set at least one field");
            dp_jpath_pop(&c->p);
            r = -EINVAL;
        } else {
            dp_jpath_push_key(&c->p, item_key);
            r = convert_side(c, side, fields, l7, &m);
            dp_jpath_pop(&c->p);
        }
        dp_jpath_pop(&c->p);
        if (r != RULE_OK)
            break;
        if (!m)
            match_all = true; /* DENY side reduced to nothing: matches everything */
        else if (json_array_append_new(clause, m)) {
            r = -ENOMEM;
            break;
        }
    }
    dp_jpath_pop(&c->p);
    if (r != RULE_OK || match_all) {
        json_decref(clause);
        return r;
    }
    *ret_clause = clause;
    return RULE_OK;
}

static int convert_when(struct cctx *c, const json_t *rule, json_t *group)
{
    json_t *arr = json_object_get(rule, "when"), *el;
    size_t i;
    int err = 0;

    if (!arr || json_is_null(arr))
        return RULE_OK;
    if (!json_is_array(arr)) {
        diag(c->d, true, &c->p, "when", "expected array, got %s", dp_json_type_str(arr));
        return -EINVAL;
    }
    if (json_array_size(arr) > DP_MESH_MAX_CLAUSES) {
        diag(c->d, true, &c->p, "when", "too many conditions");
        return -EINVAL;
    }
    dp_jpath_push_key(&c->p, "when");
    json_array_foreach(arr, i, el) {
        const char *key = json_string_value(json_object_get(el, "key"));
        json_t *vals = json_object_get(el, "values"), *nvals = json_object_get(el, "notValues");
        json_t *m, *pv = NULL, *nv = NULL;
        size_t w;

        dp_jpath_push_index(&c->p, i);
        if (!key) {
            diag(c->d, true, &c->p, "key", "required string is missing");
            err = -EINVAL;
            goto out_pop;
        }
        for (w = 0; w < DP_ARRAY_SIZE(when_keys); w++)
            if (strcmp(when_keys[w].key, key) == 0)
                break;
        if (w == DP_ARRAY_SIZE(when_keys)) {
            if (!c->deny) {
                diag(c->d, false, &c->p, "key",
                     "\"%.100s\" is not an L4 attribute ztunnel can enforce; rule dropped from "
                     "ALLOW policy",
                     key);
                dp_jpath_pop(&c->p);
                dp_jpath_pop(&c->p);
                return RULE_DROP;
            }
            diag(c->d, false, &c->p, "key",
                 "\"%.100s\" is not an L4 attribute ztunnel can enforce; condition ignored in "
                 "DENY rule",
                 key);
            dp_jpath_pop(&c->p);
            continue;
        }
        if (!nonempty_value(vals) && !nonempty_value(nvals)) {
            diag(c->d, true, &c->p, NULL, "needs values or notValues");
            err = -EINVAL;
            goto out_pop;
        }
        if (nonempty_value(vals) &&
            !(pv = convert_values(c, vals, "values", when_keys[w].kind, &err)))
            goto out_pop;
        if (nonempty_value(nvals) &&
            !(nv = convert_values(c, nvals, "notValues", when_keys[w].kind, &err))) {
            json_decref(pv);
            goto out_pop;
        }
        m = json_object();
        if (!m || (pv && json_object_set_new(m, when_keys[w].pos, pv)) ||
            (nv && json_object_set_new(m, when_keys[w].neg, nv)) ||
            json_array_append_new(group, json_pack("[o]", m))) {
            err = -ENOMEM;
            goto out_pop;
        }
        dp_jpath_pop(&c->p);
    }
    dp_jpath_pop(&c->p);
    return RULE_OK;
out_pop:
    dp_jpath_pop(&c->p);
    dp_jpath_pop(&c->p);
    return err;
}

static int convert_rule(struct cctx *c, const json_t *rule, json_t **ret_group)
{
    static const char *const allowed[] = {"from", "to", "when", NULL};
    json_t *group = json_array(), *from = NULL, *to = NULL, *v;
    const char *k;
    int r;

    if (!group)
        return -ENOMEM;
    if (!json_is_object(rule)) {
        diag(c->d, true, &c->p, NULL, "expected object, got %s", dp_json_type_str(rule));
        r = -EINVAL;
        goto out;
    }
    json_object_foreach((json_t *)rule, k, v)
        if (!listed(k, allowed))
            diag(c->d, false, &c->p, k, "unknown field ignored");
    if ((r = convert_clause(c, rule, "from", "source", source_fields, source_l7, &from)) != RULE_OK)
        goto out;
    if ((r = convert_clause(c, rule, "to", "operation", op_fields, op_l7, &to)) != RULE_OK)
        goto out;
    /* clause order as istiod emits it: to, from, when */
    if ((to && json_array_append(group, to)) || (from && json_array_append(group, from))) {
        r = -ENOMEM;
        goto out;
    }
    if ((r = convert_when(c, rule, group)) != RULE_OK)
        goto out;
    *ret_group = group;
    group = NULL;
out:
    json_decref(from);
    json_decref(to);
    json_decref(group);
    return r;
}

static int check_output(json_t *pol, struct dp_policy_diags *d)
{
    char err[512];
    void *obj = NULL;
    int r = dp_mesh_object_decode(DP_MESH_POLICY, pol, NULL, "output", &obj, err, sizeof(err));
    if (r < 0) {
        struct dp_jpath p;
        dp_jpath_init(&p, "");
        diag(d, true, &p, NULL, "compiled policy rejected by the mesh decoder: %s", err);
        return r;
    }
    dp_mesh_object_unref(DP_MESH_POLICY, obj);
    return 0;
}

/* record an error the json helpers already formatted as "<path>: <msg>" */
static void jerr_diag(struct dp_policy_diags *diags, const struct dp_jerr *je)
{
    if (!diags)
        return;
    diags->n_errors++;
    if (diags->n >= DP_POLICY_MAX_DIAGS) {
        diags->dropped++;
        return;
    }
    diags->items[diags->n].error = true;
    if (snprintf(diags->items[diags->n].text, DP_POLICY_DIAG_LEN, "%s", je->msg) < 0)
        diags->items[diags->n].text[0] = '\0';
    diags->n++;
}

int dp_policy_compile_authz(const json_t *cr, const char *root_ns, json_t **ret_policies,
                            struct dp_policy_diags *diags)
{
    struct cctx c = {.d = diags};
    const char *name = NULL, *ns = NULL, *action = "ALLOW", *dry = NULL;
    json_t *md = NULL, *spec = NULL, *ann = NULL, *sel = NULL, *rules = NULL, *rule;
    json_t *groups = NULL, *pol = NULL, *out = NULL;
    struct dp_jerr je;
    enum dp_mesh_scope scope;
    size_t i;
    int r;

    dp_jpath_init(&c.p, "");
    if ((r = dp_json_get_obj(cr, "metadata", true, &md, &c.p, &je)) < 0)
        goto jerr;
    dp_jpath_push_key(&c.p, "metadata");
    if ((r = dp_json_get_str(md, "name", true, &name, &c.p, &je)) < 0 ||
        (r = dp_json_get_str(md, "namespace", true, &ns, &c.p, &je)) < 0 ||
        (r = dp_json_get_obj(md, "annotations", false, &ann, &c.p, &je)) < 0)
        goto jerr;
    if (!name[0] || !ns[0] || strlen(name) > 253 || strlen(ns) > 253) {
        diag(diags, true, &c.p, NULL, "name and namespace must be 1..253 characters");
        return -EINVAL;
    }
    if (ann)
        dry = json_string_value(json_object_get(ann, "istio.io/dry-run"));
    dp_jpath_pop(&c.p);
    if ((r = dp_json_get_obj(cr, "spec", false, &spec, &c.p, &je)) < 0)
        goto jerr;
    out = json_array();
    if (!out)
        return -ENOMEM;
    /* no spec (or `spec: {}`): an ALLOW policy without rules = allow nothing */
    dp_jpath_push_key(&c.p, "spec");
    if (spec && (nonempty_value(json_object_get(spec, "targetRefs")) ||
                 nonempty_value(json_object_get(spec, "targetRef")))) {
        diag(diags, false, &c.p, json_object_get(spec, "targetRefs") ? "targetRefs" : "targetRef",
             "policy targets a waypoint or gateway; not sent to node agents");
        goto done;
    }
    if (spec && (r = dp_json_get_str(spec, "action", false, &action, &c.p, &je)) < 0)
        goto jerr;
    if (strcmp(action, "AUDIT") == 0 || strcmp(action, "CUSTOM") == 0) {
        diag(diags, false, &c.p, "action", "%s policies are not enforced by ztunnel; skipped",
             action);
        goto done;
    }
    if (strcmp(action, "ALLOW") != 0 && strcmp(action, "DENY") != 0) {
        diag(diags, true, &c.p, "action", "unknown action \"%.32s\"", action);
        r = -EINVAL;
        goto fail;
    }
    c.deny = strcmp(action, "DENY") == 0;
    if (spec && (r = dp_json_get_obj(spec, "selector", false, &sel, &c.p, &je)) < 0)
        goto jerr;
    if (sel && nonempty_value(json_object_get(sel, "matchLabels")))
        scope = DP_MESH_SCOPE_WORKLOAD;
    else if (root_ns && strcmp(ns, root_ns) == 0)
        scope = DP_MESH_SCOPE_GLOBAL;
    else
        scope = DP_MESH_SCOPE_NAMESPACE;
    groups = json_array();
    if (!groups)
        goto enomem;
    if (spec && dp_json_get_arr(spec, "rules", false, DP_MESH_MAX_GROUPS, &rules, &c.p, &je) < 0) {
        /* unusable rules: fail closed (ALLOW: allow nothing; DENY: deny everything) */
        jerr_diag(diags, &je);
        rules = NULL;
        if (c.deny && json_array_append_new(groups, json_array()))
            goto enomem;
    }
    if (rules) {
        dp_jpath_push_key(&c.p, "rules");
        json_array_foreach(rules, i, rule) {
            json_t *g = NULL;
            dp_jpath_push_index(&c.p, i);
            r = convert_rule(&c, rule, &g);
            dp_jpath_pop(&c.p);
            if (r == -ENOMEM)
                goto enomem;
            if (r < 0) {
                /* fail closed, as istiod does: an ALLOW rule in error is ignored (allows
                 * nothing), a DENY rule in error denies everything */
                if (!c.deny)
                    continue;
                g = json_array();
                if (!g)
                    goto enomem;
            } else if (r == RULE_DROP) {
                continue;
            }
            if (json_array_append_new(groups, g))
                goto enomem;
        }
        dp_jpath_pop(&c.p);
    }
    pol = json_pack("{ss ss ss ss sb sO}", "name", name, "namespace", ns, "scope",
                    dp_mesh_scope_str(scope), "action", c.deny ? "Deny" : "Allow", "dryRun",
                    dry && strcmp(dry, "true") == 0, "rules", groups);
    if (!pol)
        goto enomem;
    if ((r = check_output(pol, diags)) < 0)
        goto fail;
    if (json_array_append_new(out, pol)) {
        pol = NULL;
        goto enomem;
    }
    pol = NULL;
done:
    json_decref(groups);
    *ret_policies = out;
    return 0;
jerr:
    jerr_diag(diags, &je);
    r = -EINVAL;
    goto fail;
enomem:
    r = -ENOMEM;
fail:
    json_decref(pol);
    json_decref(groups);
    json_decref(out);
    return r;
}

/* ================================================================== selectors */

static bool labels_match(const json_t *match_labels, const json_t *labels)
{
    const char *k;
    json_t *v;
    if (!json_is_object(match_labels) || json_object_size(match_labels) == 0)
        return false;
    json_object_foreach((json_t *)match_labels, k, v) {
        json_t *have = json_is_object(labels) ? json_object_get(labels, k) : NULL;
        if (!json_is_string(v) || !json_is_string(have) ||
            strcmp(json_string_value(v), json_string_value(have)) != 0)
            return false;
    }
    return true;
}

static const json_t *cr_match_labels(const json_t *cr)
{
    json_t *ml = json_object_get(json_object_get(json_object_get(cr, "spec"), "selector"),
                                 "matchLabels");
    return json_is_object(ml) && json_object_size(ml) ? ml : NULL;
}

bool dp_policy_cr_selects(const json_t *cr, const char *root_ns, const char *ns,
                          const json_t *labels)
{
    const char *cr_ns =
            json_string_value(json_object_get(json_object_get(cr, "metadata"), "namespace"));
    const char *kind = json_string_value(json_object_get(cr, "kind"));
    const json_t *ml = cr_match_labels(cr);
    bool pa = kind && strcmp(kind, "PeerAuthentication") == 0;

    if (!ml || !cr_ns || !ns)
        return false;
    if (strcmp(cr_ns, ns) != 0) {
        if (pa || !root_ns || strcmp(cr_ns, root_ns) != 0)
            return false;
    } else if (pa && root_ns && strcmp(cr_ns, root_ns) == 0) {
        return false; /* root-namespace selector PeerAuthentications are ignored */
    }
    return labels_match(ml, labels);
}

/* ================================================================== PeerAuthentication */

enum pa_mode { PA_UNSET = 0, PA_DISABLE, PA_PERMISSIVE, PA_STRICT };

#define PA_MAX_PORTS 256

struct pa {
    const json_t *cr;
    const char *name, *ns, *created; /* created may be "" */
    const json_t *match_labels;      /* NULL = namespace / mesh wide */
    enum pa_mode mode;
    size_t n_ports;
    struct {
        uint16_t port;
        enum pa_mode mode;
    } ports[PA_MAX_PORTS];
};

static int parse_mode(const json_t *v, enum pa_mode *out)
{
    const char *s;
    if (!v || json_is_null(v)) {
        *out = PA_UNSET;
        return 0;
    }
    s = json_string_value(v);
    if (!s)
        return -EINVAL;
    if (strcmp(s, "UNSET") == 0)
        *out = PA_UNSET;
    else if (strcmp(s, "DISABLE") == 0)
        *out = PA_DISABLE;
    else if (strcmp(s, "PERMISSIVE") == 0)
        *out = PA_PERMISSIVE;
    else if (strcmp(s, "STRICT") == 0)
        *out = PA_STRICT;
    else
        return -EINVAL;
    return 0;
}

static int parse_pa(const json_t *cr, size_t idx, struct pa *pa, struct dp_policy_diags *d)
{
    struct dp_jpath p;
    json_t *md, *spec, *mtls, *plm, *v;
    const char *k;

    memset(pa, 0, sizeof(*pa));
    dp_jpath_init(&p, "");
    dp_jpath_push_index(&p, idx);
    pa->cr = cr;
    md = json_object_get(cr, "metadata");
    pa->name = json_string_value(json_object_get(md, "name"));
    pa->ns = json_string_value(json_object_get(md, "namespace"));
    pa->created = json_string_value(json_object_get(md, "creationTimestamp"));
    if (!pa->created)
        pa->created = "";
    if (!pa->name || !pa->ns || !pa->name[0] || !pa->ns[0] || strlen(pa->name) > 253 ||
        strlen(pa->ns) > 253) {
        diag(d, true, &p, "metadata", "name and namespace are required (1..253 characters)");
        return -EINVAL;
    }
    spec = json_object_get(cr, "spec");
    if (spec && !json_is_object(spec)) {
        diag(d, true, &p, "spec", "expected object, got %s", dp_json_type_str(spec));
        return -EINVAL;
    }
    dp_jpath_push_key(&p, "spec");
    pa->match_labels = cr_match_labels(cr);
    mtls = json_object_get(spec, "mtls");
    if (mtls && !json_is_null(mtls) && !json_is_object(mtls)) {
        diag(d, true, &p, "mtls", "expected object, got %s", dp_json_type_str(mtls));
        return -EINVAL;
    }
    if (parse_mode(json_object_get(mtls, "mode"), &pa->mode) < 0) {
        dp_jpath_push_key(&p, "mtls");
        diag(d, true, &p, "mode", "expected UNSET, DISABLE, PERMISSIVE or STRICT");
        return -EINVAL;
    }
    plm = json_object_get(spec, "portLevelMtls");
    if (!plm || json_is_null(plm))
        return 0;
    if (!json_is_object(plm)) {
        diag(d, true, &p, "portLevelMtls", "expected object, got %s", dp_json_type_str(plm));
        return -EINVAL;
    }
    if (json_object_size(plm) > PA_MAX_PORTS) {
        diag(d, true, &p, "portLevelMtls", "too many ports (at most %d)", PA_MAX_PORTS);
        return -EINVAL;
    }
    if (json_object_size(plm) && !pa->match_labels) {
        diag(d, false, &p, "portLevelMtls", "requires a selector; ignored");
        return 0;
    }
    dp_jpath_push_key(&p, "portLevelMtls");
    json_object_foreach(plm, k, v) {
        char *end;
        long port = strtol(k, &end, 10);
        if (*end || k[0] < '0' || k[0] > '9' || port < 1 || port > 65535) {
            diag(d, true, &p, k, "not a port number 1..65535");
            return -EINVAL;
        }
        if (!json_is_object(v) ||
            parse_mode(json_object_get(v, "mode"), &pa->ports[pa->n_ports].mode) < 0) {
            diag(d, true, &p, k, "expected {\"mode\": UNSET|DISABLE|PERMISSIVE|STRICT}");
            return -EINVAL;
        }
        pa->ports[pa->n_ports++].port = (uint16_t)port;
    }
    return 0;
}

/* Istio picks the oldest policy when several apply at one level (then by name). */
static bool older(const struct pa *a, const struct pa *b)
{
    int c = strcmp(a->created, b->created);
    if (c)
        return c < 0;
    c = strcmp(a->ns, b->ns);
    return c ? c < 0 : strcmp(a->name, b->name) < 0;
}

struct pa_set {
    size_t n;
    struct pa *v;
};

static int pa_set_load(const json_t *pas, struct pa_set *set, struct dp_policy_diags *d)
{
    const json_t *el;
    size_t i;
    struct dp_jpath p;

    set->n = 0;
    set->v = NULL;
    if (!json_is_array(pas)) {
        dp_jpath_init(&p, "");
        diag(d, true, &p, NULL, "expected an array of PeerAuthentication objects");
        return -EINVAL;
    }
    if (json_array_size(pas) > DP_MESH_MAX_OBJECTS)
        return -E2BIG;
    if (json_array_size(pas) == 0)
        return 0;
    set->v = calloc(json_array_size(pas), sizeof(*set->v));
    if (!set->v)
        return -ENOMEM;
    json_array_foreach((json_t *)pas, i, el) {
        /* A malformed PA is skipped (error diag), as istiod ignores invalid config: failing
         * the whole set would drop the static strict policy for every workload. */
        if (parse_pa(el, i, &set->v[set->n], d) < 0)
            continue;
        set->n++;
    }
    return 0;
}

/* the oldest namespace-wide PA in ns (NULL if none) */
static const struct pa *pa_ns_wide(const struct pa_set *set, const char *ns)
{
    const struct pa *best = NULL;
    for (size_t i = 0; i < set->n; i++)
        if (!set->v[i].match_labels && strcmp(set->v[i].ns, ns) == 0 &&
            (!best || older(&set->v[i], best)))
            best = &set->v[i];
    return best;
}

static enum pa_mode eff(enum pa_mode m)
{
    return m == PA_DISABLE ? PA_PERMISSIVE : m;
}

/* workload-level mode after inheritance: own > namespace > root > PERMISSIVE */
static enum pa_mode inherited_mode(const struct pa_set *set, const struct pa *own, const char *ns,
                                   const char *root_ns)
{
    const struct pa *nsp = pa_ns_wide(set, ns);
    const struct pa *root = root_ns ? pa_ns_wide(set, root_ns) : NULL;
    if (own && own->mode != PA_UNSET)
        return eff(own->mode);
    if (nsp && nsp->mode != PA_UNSET)
        return eff(nsp->mode);
    if (root && root->mode != PA_UNSET)
        return eff(root->mode);
    return PA_PERMISSIVE;
}

/* Does a selector PA need its own converted policy? Fills ports lists. */
static bool pa_converted(const struct pa_set *set, const struct pa *pa, const char *root_ns,
                         bool *ret_strict, json_t *ports)
{
    enum pa_mode mode;
    if (!pa->match_labels || pa->n_ports == 0 || (root_ns && strcmp(pa->ns, root_ns) == 0))
        return false;
    mode = inherited_mode(set, pa, pa->ns, root_ns);
    *ret_strict = mode == PA_STRICT;
    for (size_t i = 0; i < pa->n_ports; i++) {
        enum pa_mode pm = pa->ports[i].mode;
        if (pm == PA_UNSET)
            continue;
        pm = eff(pm);
        if ((mode == PA_STRICT && pm == PA_PERMISSIVE) || (mode != PA_STRICT && pm == PA_STRICT))
            if (ports)
                json_array_append_new(ports, json_integer(pa->ports[i].port));
    }
    if (mode == PA_STRICT)
        return true;
    for (size_t i = 0; i < pa->n_ports; i++)
        if (pa->ports[i].mode == PA_STRICT)
            return true;
    return false;
}

static int cmp_json_int(const void *a, const void *b)
{
    json_int_t x = json_integer_value(*(json_t *const *)a);
    json_int_t y = json_integer_value(*(json_t *const *)b);
    return x < y ? -1 : x > y;
}

static json_t *sorted_ports(json_t *ports)
{
    size_t n = json_array_size(ports);
    json_t **v = n ? calloc(n, sizeof(*v)) : NULL, *out = json_array();
    if ((n && !v) || !out) {
        free(v);
        json_decref(out);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = json_array_get(ports, i);
    if (n)
        qsort(v, n, sizeof(*v), cmp_json_int);
    for (size_t i = 0; i < n; i++)
        if (i == 0 || json_integer_value(v[i]) != json_integer_value(v[i - 1]))
            json_array_append(out, v[i]);
    free(v);
    return out;
}

int dp_policy_compile_peerauthn(const json_t *pas, const char *root_ns, json_t **ret_policies,
                                struct dp_policy_diags *diags)
{
    struct pa_set set;
    json_t *out = NULL, *pol;
    int r;

    if (!root_ns || !root_ns[0])
        return -EINVAL;
    if ((r = pa_set_load(pas, &set, diags)) < 0)
        return r;
    out = json_array();
    if (!out)
        goto enomem;
    if (set.n == 0)
        goto done;
    pol = json_pack("{ss ss ss ss sb s[[[{s[{sb}]}]]]}", "name", DP_POLICY_STATIC_STRICT_NAME,
                    "namespace", root_ns, "scope", "WorkloadSelector", "action", "Deny", "dryRun",
                    0, "rules", "notPrincipals", "presence", 1);
    if (!pol || json_array_append_new(out, pol))
        goto enomem;
    for (size_t i = 0; i < set.n; i++) {
        const struct pa *pa = &set.v[i];
        json_t *ports = json_array(), *sp, *match;
        bool strict = false;
        char name[300];
        if (!ports)
            goto enomem;
        if (!pa_converted(&set, pa, root_ns, &strict, ports)) {
            json_decref(ports);
            continue;
        }
        sp = sorted_ports(ports);
        json_decref(ports);
        if (!sp)
            goto enomem;
        match = json_pack("{s[{sb}]}", "notPrincipals", "presence", 1);
        if (!match ||
            (json_array_size(sp) &&
             json_object_set(match, strict ? "notDestinationPorts" : "destinationPorts", sp))) {
            json_decref(sp);
            json_decref(match);
            goto enomem;
        }
        json_decref(sp);
        snprintf(name, sizeof(name), "%s%s", DP_POLICY_PA_PREFIX, pa->name);
        pol = json_pack("{ss ss ss ss sb s[[[o]]]}", "name", name, "namespace", pa->ns, "scope",
                        "WorkloadSelector", "action", "Deny", "dryRun", 0, "rules", match);
        if (!pol || json_array_append_new(out, pol))
            goto enomem;
        if ((r = check_output(pol, diags)) < 0)
            goto fail;
    }
done:
    free(set.v);
    *ret_policies = out;
    return 0;
enomem:
    r = -ENOMEM;
fail:
    free(set.v);
    json_decref(out);
    return r;
}

int dp_policy_peerauthn_keys(const json_t *pas, const char *root_ns, const char *ns,
                             const json_t *labels, json_t **ret_keys, struct dp_policy_diags *diags)
{
    struct pa_set set;
    const struct pa *own = NULL;
    json_t *out;
    char key[600];
    bool strict;
    int r;

    if (!root_ns || !root_ns[0] || !ns)
        return -EINVAL;
    if ((r = pa_set_load(pas, &set, diags)) < 0)
        return r;
    out = json_array();
    if (!out) {
        free(set.v);
        return -ENOMEM;
    }
    for (size_t i = 0; i < set.n; i++) {
        const struct pa *pa = &set.v[i];
        if (!pa->match_labels || strcmp(pa->ns, ns) != 0 || strcmp(pa->ns, root_ns) == 0)
            continue;
        if (!labels_match(pa->match_labels, labels))
            continue;
        if (!own || older(pa, own))
            own = pa;
    }
    if (own && pa_converted(&set, own, root_ns, &strict, NULL)) {
        snprintf(key, sizeof(key), "%s/%s%s", own->ns, DP_POLICY_PA_PREFIX, own->name);
        r = json_array_append_new(out, json_string(key));
    } else if (set.n && inherited_mode(&set, own, ns, root_ns) == PA_STRICT) {
        snprintf(key, sizeof(key), "%s/%s", root_ns, DP_POLICY_STATIC_STRICT_NAME);
        r = json_array_append_new(out, json_string(key));
    }
    free(set.v);
    if (r < 0) {
        json_decref(out);
        return -ENOMEM;
    }
    *ret_keys = out;
    return 0;
}
