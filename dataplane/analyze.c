/*
 * analyze.c — configuration analyzer. See analyze.h.
 */
#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "analyze.h"
#include "kube.h"

struct ctx {
    const struct dp_analyze_inputs *in;
    json_t *out;
    json_t *pods_by_ns; /* "<ns>" -> [pod, ...] (borrowed pods), built on first use */
    json_t *se_hosts;   /* ServiceEntry host -> true, built on first use */
    json_t *dr_index;   /* see subset_defined */
    const char *kind, *ns, *name;
    char nsbuf[256];
    int err;
};

static const struct {
    const char *code, *level, *istio_code, *istio_name;
} CODES[] = {
        {"WeightsNot100", "Warning", "IST0133", "SchemaWarning"},
        {"SubsetNotDefined", "Error", "IST0101", "ReferencedResourceNotFound"},
        {"SubsetSelectsNothing", "Error", "IST0173", "DestinationRuleSubsetNotSelectPods"},
        {"InvalidRegex", "Error", "IST0122", "InvalidRegexp"},
        {"UnknownHost", "Error", "IST0101", "ReferencedResourceNotFound"},
        {"SelectorAndTargetRefs", "Error", "IST0106", "SchemaValidationError"},
        {"ConflictingPeerAuthentication", "Warning", NULL, NULL},
        {"ConflictingVirtualServiceHosts", "Error", "IST0109",
         "ConflictingMeshGatewayVirtualServiceHosts"},
};

bool dp_analyze_rejects(const char *code)
{
    return code != NULL &&
           (strcmp(code, "InvalidRegex") == 0 || strcmp(code, "SelectorAndTargetRefs") == 0);
}

static void finding(struct ctx *c, const char *code, const char *path, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void finding(struct ctx *c, const char *code, const char *path, const char *fmt, ...)
{
    char msg[600], resource[600];
    size_t i;
    json_t *f;
    va_list ap;

    for (i = 0; i < sizeof(CODES) / sizeof(CODES[0]); i++)
        if (strcmp(CODES[i].code, code) == 0)
            break;
    if (i == sizeof(CODES) / sizeof(CODES[0])) {
        c->err = -EINVAL; /* a rule with an unlisted code: a bug, caught by the unit tests */
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(resource, sizeof(resource), "%s %s/%s", c->kind, c->ns, c->name);
    f = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "level", CODES[i].level, "code", code,
                  "kind", c->kind, "namespace", c->ns, "name", c->name, "resource", resource,
                  "path", path, "message", msg);
    if (f != NULL && CODES[i].istio_code != NULL &&
        (json_object_set_new(f, "istioCode", json_string(CODES[i].istio_code)) < 0 ||
         json_object_set_new(f, "istioName", json_string(CODES[i].istio_name)) < 0)) {
        json_decref(f);
        f = NULL;
    }
    if (f == NULL || json_array_append_new(c->out, f) < 0)
        c->err = -ENOMEM;
}

/* Select the object o (key "<ns>/<name>") as the subject of the next findings. */
static void subject(struct ctx *c, const char *kind, const char *key, const json_t *o)
{
    c->kind = kind;
    c->ns = dp_kube_meta_str(o, "namespace");
    c->name = dp_kube_meta_str(o, "name");
    if (c->ns == NULL || c->name == NULL) { /* decoded by hand: fall back to the map key */
        const char *slash = strchr(key, '/');

        snprintf(c->nsbuf, sizeof(c->nsbuf), "%.*s", slash ? (int)(slash - key) : 0, key);
        c->ns = c->ns ?: c->nsbuf[0] ? c->nsbuf : "default";
        c->name = c->name ?: (slash ? slash + 1 : key);
    }
}

static const char *dns_domain(const struct dp_analyze_inputs *in)
{
    return in->dns_domain ? in->dns_domain : "cluster.local";
}

/* Every key of want (string values) has the same value in have. */
static bool labels_match(const json_t *want, const json_t *have)
{
    const char *k;
    json_t *v;

    json_object_foreach((json_t *)want, k, v) {
        const char *h = json_string_value(json_object_get(have, k));

        if (h == NULL || !json_is_string(v) || strcmp(h, json_string_value(v)) != 0)
            return false;
    }
    return true;
}

static const json_t *pod_labels(const json_t *pod)
{
    return json_object_get(json_object_get(pod, "metadata"), "labels");
}

/* The pods of namespace ns (borrowed array, possibly NULL). */
static const json_t *pods_in(struct ctx *c, const char *ns)
{
    if (c->pods_by_ns == NULL) {
        const char *k;
        json_t *pod;

        c->pods_by_ns = json_object();
        if (c->pods_by_ns == NULL) {
            c->err = -ENOMEM;
            return NULL;
        }
        json_object_foreach((json_t *)c->in->pods, k, pod) {
            const char *pns = dp_kube_meta_str(pod, "namespace");
            json_t *arr;

            if (pns == NULL)
                continue;
            arr = json_object_get(c->pods_by_ns, pns);
            if (arr == NULL) {
                arr = json_array();
                if (json_object_set_new(c->pods_by_ns, pns, arr) < 0) {
                    c->err = -ENOMEM;
                    return NULL;
                }
            }
            if (json_array_append(arr, pod) < 0)
                c->err = -ENOMEM;
        }
    }
    return json_object_get(c->pods_by_ns, ns);
}

/* Resolve a destination host of an object in namespace ns to a Service key "<ns>/<name>" (into
 * key) if it names one. Returns true when it is a known Service or ServiceEntry host. */
static bool resolve_host(struct ctx *c, const char *host, const char *ns, char *key,
                         size_t keysz)
{
    const struct dp_analyze_inputs *in = c->in;
    char name[256], hns[256], rest[256] = "";

    key[0] = '\0';
    if (strchr(host, '*') != NULL)
        return true; /* wildcards are not checked */
    if (strchr(host, '.') == NULL) {
        snprintf(key, keysz, "%s/%s", ns, host);
    } else if (sscanf(host, "%255[^.].%255[^.].%255s", name, hns, rest) >= 2) {
        char full[600];

        snprintf(full, sizeof(full), "svc.%s", dns_domain(in));
        if (rest[0] == '\0' || strcmp(rest, "svc") == 0 || strcmp(rest, full) == 0)
            snprintf(key, keysz, "%s/%s", hns, name);
    }
    if (key[0] && json_object_get(in->services, key) != NULL)
        return true;
    if (c->se_hosts == NULL) { /* every ServiceEntry host, once per run */
        const char *k;
        json_t *se;

        c->se_hosts = json_object();
        if (c->se_hosts == NULL) {
            c->err = -ENOMEM;
            return false;
        }
        json_object_foreach((json_t *)in->service_entries, k, se) {
            json_t *h;
            size_t i;

            json_array_foreach(json_object_get(json_object_get(se, "spec"), "hosts"), i, h) {
                if (json_is_string(h) &&
                    json_object_set_new(c->se_hosts, json_string_value(h), json_true()) < 0)
                    c->err = -ENOMEM;
            }
        }
    }
    return json_object_get(c->se_hosts, host) != NULL;
}

static void index_subsets(struct ctx *c, const char *prefix, const char *id, const json_t *subs)
{
    char key[700];
    json_t *set, *sub;
    size_t i;

    snprintf(key, sizeof(key), "%s%s", prefix, id);
    set = json_object_get(c->dr_index, key);
    if (set == NULL && json_object_set_new(c->dr_index, key, set = json_object()) < 0) {
        c->err = -ENOMEM;
        return;
    }
    json_array_foreach(subs, i, sub) {
        const char *n = json_string_value(json_object_get(sub, "name"));

        if (n != NULL && json_object_set_new(set, n, json_true()) < 0)
            c->err = -ENOMEM;
    }
}

/*
 * Is subset defined by a DestinationRule (any namespace) of the same host? Hosts that resolve
 * to Service keys compare by key, others by their text. Index, built once per run:
 * "k:<svc key>" (resolving DRs), "e:<host>" (non-resolving DRs), "h:<host>" (all DRs) ->
 * {subset: true}.
 */
static bool subset_defined(struct ctx *c, const char *host, const char *ns, const char *subset)
{
    char want[600], key[700];

    if (c->dr_index == NULL) {
        const char *k;
        json_t *dr;

        c->dr_index = json_object();
        if (c->dr_index == NULL) {
            c->err = -ENOMEM;
            return false;
        }
        json_object_foreach((json_t *)c->in->destination_rules, k, dr) {
            json_t *spec = json_object_get(dr, "spec"), *subs = json_object_get(spec, "subsets");
            const char *h = json_string_value(json_object_get(spec, "host"));
            const char *drns = dp_kube_meta_str(dr, "namespace");
            char got[600];

            if (h == NULL || drns == NULL)
                continue;
            resolve_host(c, h, drns, got, sizeof(got));
            index_subsets(c, got[0] ? "k:" : "e:", got[0] ? got : h, subs);
            index_subsets(c, "h:", h, subs);
        }
    }
    resolve_host(c, host, ns, want, sizeof(want));
    if (want[0] == '\0') {
        snprintf(key, sizeof(key), "h:%s", host);
        return json_object_get(json_object_get(c->dr_index, key), subset) != NULL;
    }
    snprintf(key, sizeof(key), "k:%s", want);
    if (json_object_get(json_object_get(c->dr_index, key), subset) != NULL)
        return true;
    snprintf(key, sizeof(key), "e:%s", host);
    return json_object_get(json_object_get(c->dr_index, key), subset) != NULL;
}

static void check_regex(struct ctx *c, const json_t *sm, const char *path)
{
    const char *re = json_string_value(json_object_get(sm, "regex"));
    regex_t rx;
    int r;

    if (re == NULL)
        return;
    r = regcomp(&rx, re, REG_EXTENDED | REG_NOSUB);
    if (r != 0) {
        char why[128];

        regerror(r, &rx, why, sizeof(why));
        finding(c, "InvalidRegex", path, "regex \"%.200s\" does not compile: %s", re, why);
        return;
    }
    regfree(&rx);
}

static void check_match(struct ctx *c, const json_t *m, const char *base)
{
    static const char *const fields[] = {"uri", "scheme", "method", "authority"};
    static const char *const maps[] = {"headers", "withoutHeaders", "queryParams"};
    char path[1024];

    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof(path), "%s.%s", base, fields[i]);
        check_regex(c, json_object_get(m, fields[i]), path);
    }
    for (size_t i = 0; i < 3; i++) {
        const char *k;
        json_t *v;

        json_object_foreach(json_object_get(m, maps[i]), k, v) {
            snprintf(path, sizeof(path), "%s.%s[%s]", base, maps[i], k);
            check_regex(c, v, path);
        }
    }
}

static void check_routes(struct ctx *c, const json_t *vs, const char *section)
{
    const char *ns = c->ns;
    json_t *routes = json_object_get(json_object_get(vs, "spec"), section), *r;
    size_t i, j;

    json_array_foreach(routes, i, r) {
        json_t *dests = json_object_get(r, "route"), *d, *m;
        json_int_t sum = 0;
        bool any_weight = false;
        char path[512];

        json_array_foreach(json_object_get(r, "match"), j, m) {
            snprintf(path, sizeof(path), "spec.%s[%zu].match[%zu]", section, i, j);
            check_match(c, m, path);
        }
        json_array_foreach(dests, j, d) {
            json_t *dest = json_object_get(d, "destination");
            const char *host = json_string_value(json_object_get(dest, "host"));
            const char *subset = json_string_value(json_object_get(dest, "subset"));
            char key[600];

            if (json_is_integer(json_object_get(d, "weight"))) {
                any_weight = true;
                sum += json_integer_value(json_object_get(d, "weight"));
            }
            if (host == NULL)
                continue;
            snprintf(path, sizeof(path), "spec.%s[%zu].route[%zu].destination.host", section, i,
                     j);
            if (!resolve_host(c, host, ns, key, sizeof(key)))
                finding(c, "UnknownHost", path, "Referenced host not found: \"%.200s\"", host);
            if (subset != NULL && subset[0] && !subset_defined(c, host, ns, subset)) {
                snprintf(path, sizeof(path), "spec.%s[%zu].route[%zu].destination.subset",
                         section, i, j);
                finding(c, "SubsetNotDefined", path,
                        "Referenced host+subset in destinationrule not found: \"%.200s+%.100s\"",
                        host, subset);
            }
        }
        if (json_array_size(dests) > 1 && any_weight && sum != 100) {
            snprintf(path, sizeof(path), "spec.%s[%zu].route", section, i);
            finding(c, "WeightsNot100", path,
                    "destination weights sum to %lld, not 100: traffic is split in proportion "
                    "to the weights",
                    (long long)sum);
        }
    }
}

static void check_subsets_select(struct ctx *c, const json_t *dr)
{
    json_t *spec = json_object_get(dr, "spec"), *sub;
    const char *host = json_string_value(json_object_get(spec, "host"));
    const json_t *svc, *sel, *pods;
    const char *svcns;
    char key[600], path[256];
    size_t i;

    if (c->in->pods == NULL)
        return; /* pods unknown (files without any): not a finding */
    if (host == NULL || !resolve_host(c, host, c->ns, key, sizeof(key)) ||
        (svc = json_object_get(c->in->services, key)) == NULL)
        return;
    sel = json_object_get(json_object_get(svc, "spec"), "selector");
    if (json_object_size(sel) == 0)
        return; /* selector-less Service: endpoints are not pods we can check */
    svcns = dp_kube_meta_str(svc, "namespace");
    pods = pods_in(c, svcns ? svcns : c->ns);
    json_array_foreach(json_object_get(spec, "subsets"), i, sub) {
        json_t *labels = json_object_get(sub, "labels"), *pod;
        bool found = false;
        size_t j;

        json_array_foreach(pods, j, pod) {
            if (labels_match(sel, pod_labels(pod)) && labels_match(labels, pod_labels(pod))) {
                found = true;
                break;
            }
        }
        if (!found) {
            snprintf(path, sizeof(path), "spec.subsets[%zu]", i);
            finding(c, "SubsetSelectsNothing", path,
                    "subset \"%.100s\" selects no pod of service %.200s: requests routed to it "
                    "fail (503, no healthy upstream)",
                    json_string_value(json_object_get(sub, "name")) ?: "", key);
        }
    }
}

static void check_selector_targetrefs(struct ctx *c, const json_t *objs, const char *kind)
{
    const char *k;
    json_t *o;

    json_object_foreach((json_t *)objs, k, o) {
        json_t *spec = json_object_get(o, "spec");

        if (json_object_get(spec, "selector") != NULL &&
            (json_object_get(spec, "targetRef") != NULL ||
             json_object_get(spec, "targetRefs") != NULL)) {
            subject(c, kind, k, o);
            finding(c, "SelectorAndTargetRefs", "spec",
                    "selector and targetRef(s) cannot be used together");
        }
    }
}

/* ------------------------------------------------------------------ VirtualService hosts */

/* Bound to the mesh (sidecars, waypoints): no gateways, or "mesh" among them. */
static bool for_mesh(const json_t *vs)
{
    json_t *gws = json_object_get(json_object_get(vs, "spec"), "gateways"), *g;
    size_t i;

    if (json_array_size(gws) == 0)
        return true;
    json_array_foreach(gws, i, g) {
        if (json_is_string(g) && strcmp(json_string_value(g), "mesh") == 0)
            return true;
    }
    return false;
}

static bool exported_everywhere(const json_t *vs)
{
    json_t *e = json_object_get(json_object_get(vs, "spec"), "exportTo"), *v;
    size_t i;

    if (json_array_size(e) == 0)
        return true;
    json_array_foreach(e, i, v) {
        if (json_is_string(v) && strcmp(json_string_value(v), "*") == 0)
            return true;
    }
    return false;
}

/* The identity of a VirtualService host: its Service key, else its text (NULL: wildcard). */
static const char *host_id(struct ctx *c, const char *host, const char *ns, char *buf,
                           size_t sz)
{
    if (strchr(host, '*') != NULL)
        return NULL;
    resolve_host(c, host, ns, buf, sz);
    return buf[0] ? buf : host;
}

/*
 * Two mesh VirtualServices for one host (both visible to the same clients: same namespace, or
 * both exported everywhere): only one of them applies.
 */
static void check_vs_hosts(struct ctx *c)
{
    const json_t *vss = c->in->virtual_services;
    json_t *idx = json_object(), *vs, *h;
    const char *k;
    char buf[600];
    size_t i;

    if (idx == NULL) {
        c->err = -ENOMEM;
        return;
    }
    json_object_foreach((json_t *)vss, k, vs) { /* host id -> [VS key, ...] */
        if (!for_mesh(vs))
            continue;
        subject(c, "VirtualService", k, vs);
        json_array_foreach(json_object_get(json_object_get(vs, "spec"), "hosts"), i, h) {
            const char *id = json_is_string(h) ? host_id(c, json_string_value(h), c->ns, buf,
                                                         sizeof(buf))
                                               : NULL;
            json_t *arr, *last;

            if (id == NULL)
                continue;
            arr = json_object_get(idx, id);
            if (arr == NULL && json_object_set_new(idx, id, arr = json_array()) < 0) {
                c->err = -ENOMEM;
                break;
            }
            last = json_array_get(arr, json_array_size(arr) - 1);
            if (!(last && strcmp(json_string_value(last), k) == 0)) /* listed twice */
                json_array_append_new(arr, json_string(k));
        }
    }
    json_object_foreach((json_t *)vss, k, vs) {
        bool everywhere = exported_everywhere(vs);

        if (!for_mesh(vs))
            continue;
        json_array_foreach(json_object_get(json_object_get(vs, "spec"), "hosts"), i, h) {
            const char *id, *ns;
            char others[400] = "", path[64];
            size_t off = 0, j, n = 0;
            json_t *other;

            subject(c, "VirtualService", k, vs);
            ns = c->ns;
            id = json_is_string(h) ? host_id(c, json_string_value(h), ns, buf, sizeof(buf))
                                   : NULL;
            if (id == NULL)
                continue;
            json_array_foreach(json_object_get(idx, id), j, other) {
                const char *ok = json_string_value(other);
                const json_t *ovs = json_object_get(vss, ok);

                if (strcmp(ok, k) == 0)
                    continue;
                subject(c, "VirtualService", ok, ovs);
                if (strcmp(c->ns, ns) != 0 && !(everywhere && exported_everywhere(ovs)))
                    continue;
                n++;
                if (off < sizeof(others) - 1)
                    off += (size_t)snprintf(others + off, sizeof(others) - off, "%s%s",
                                            off ? ", " : "", ok);
                if (off >= sizeof(others))
                    off = sizeof(others) - 1;
            }
            if (n == 0)
                continue;
            subject(c, "VirtualService", k, vs);
            snprintf(path, sizeof(path), "spec.hosts[%zu]", i);
            finding(c, "ConflictingVirtualServiceHosts", path,
                    "VirtualService %.300s also defines host \"%.200s\" for the mesh: only one "
                    "of them applies; merge them into one",
                    others, json_string_value(h));
        }
    }
    json_decref(idx);
}

/* ------------------------------------------------------------------ PeerAuthentication */

/* Istio's precedence among policies of one scope: older first, then by name. */
static bool older(const json_t *a, const json_t *b)
{
    const char *ta = dp_kube_meta_str(a, "creationTimestamp") ?: "";
    const char *tb = dp_kube_meta_str(b, "creationTimestamp") ?: "";
    int r = strcmp(ta, tb); /* RFC 3339 UTC timestamps of one format sort as strings */

    if (r != 0)
        return r < 0;
    return strcmp(dp_kube_meta_str(a, "name") ?: "", dp_kube_meta_str(b, "name") ?: "") < 0;
}

static const json_t *pa_match_labels(const json_t *pa)
{
    return json_object_get(json_object_get(json_object_get(pa, "spec"), "selector"),
                           "matchLabels");
}

static void check_peer_authentications(struct ctx *c)
{
    const char *root = c->in->root_ns ? c->in->root_ns : "istio-system";
    const json_t *pas = c->in->peer_authentications;
    const char *k, *k2;
    json_t *pa, *other;

    json_object_foreach((json_t *)pas, k, pa) {
        const char *ns = dp_kube_meta_str(pa, "namespace");
        const json_t *winner = NULL, *sel = pa_match_labels(pa);
        const char *winner_key = NULL;
        size_t j;

        if (ns == NULL)
            continue;
        if (json_object_size(sel) == 0) {
            /* namespace-wide: the oldest one of the namespace applies */
            json_object_foreach((json_t *)pas, k2, other) {
                const char *ons = dp_kube_meta_str(other, "namespace");

                if (other != pa && ons && strcmp(ons, ns) == 0 &&
                    json_object_size(pa_match_labels(other)) == 0 && older(other, pa) &&
                    (winner == NULL || older(other, winner))) {
                    winner = other;
                    winner_key = k2;
                }
            }
            if (winner != NULL) {
                subject(c, "PeerAuthentication", k, pa);
                finding(c, "ConflictingPeerAuthentication", "spec",
                        "ignored: PeerAuthentication %.300s is the older %s policy", winner_key,
                        strcmp(ns, root) == 0 ? "mesh-wide" : "namespace-wide");
            }
            continue;
        }
        /* selector policy: a pod it selects that an older selector policy selects too */
        json_array_foreach(pods_in(c, ns), j, other) {
            const json_t *pl = pod_labels(other);
            const char *k3;
            json_t *pa2;

            if (!labels_match(sel, pl))
                continue;
            json_object_foreach((json_t *)pas, k3, pa2) {
                const char *ns2 = dp_kube_meta_str(pa2, "namespace");
                const json_t *sel2 = pa_match_labels(pa2);

                if (pa2 != pa && ns2 && strcmp(ns2, ns) == 0 && json_object_size(sel2) > 0 &&
                    labels_match(sel2, pl) && older(pa2, pa)) {
                    subject(c, "PeerAuthentication", k, pa);
                    finding(c, "ConflictingPeerAuthentication", "spec.selector",
                            "ignored for pod %.200s: the older PeerAuthentication %.300s "
                            "selects it too",
                            dp_kube_meta_str(other, "name") ?: "", k3);
                    goto next_pa; /* one finding per policy */
                }
            }
        }
    next_pa:;
    }
}

/* ------------------------------------------------------------------ entry points */

int dp_analyze(const struct dp_analyze_inputs *in, json_t **ret_findings)
{
    struct ctx c = {.in = in, .out = json_array()};
    const char *k;
    json_t *o;

    if (c.out == NULL)
        return -ENOMEM;
    json_object_foreach((json_t *)in->virtual_services, k, o) {
        subject(&c, "VirtualService", k, o);
        check_routes(&c, o, "http");
        check_routes(&c, o, "tcp");
        check_routes(&c, o, "tls");
    }
    json_object_foreach((json_t *)in->destination_rules, k, o) {
        subject(&c, "DestinationRule", k, o);
        check_subsets_select(&c, o);
    }
    check_vs_hosts(&c);
    check_selector_targetrefs(&c, in->authorization_policies, "AuthorizationPolicy");
    check_selector_targetrefs(&c, in->request_authentications, "RequestAuthentication");
    check_selector_targetrefs(&c, in->telemetries, "Telemetry");
    check_peer_authentications(&c);
    json_decref(c.pods_by_ns);
    json_decref(c.se_hosts);
    json_decref(c.dr_index);
    if (c.err < 0) {
        json_decref(c.out);
        return c.err;
    }
    *ret_findings = c.out;
    return 0;
}

int dp_analyze_format(const json_t *f, char *buf, size_t sz)
{
    const char *code = json_string_value(json_object_get(f, "istioCode"));

    return snprintf(buf, sz, "%s [%s] (%s) %s", json_string_value(json_object_get(f, "level")) ?: "?",
                    code ? code : json_string_value(json_object_get(f, "code")) ?: "?",
                    json_string_value(json_object_get(f, "resource")) ?: "?",
                    json_string_value(json_object_get(f, "message")) ?: "");
}
