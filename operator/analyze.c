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
    const struct op_analyze_inputs *in;
    json_t *out;
    char resource[300];
    int err;
};

static void finding(struct ctx *c, const char *level, const char *code, const char *path,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void finding(struct ctx *c, const char *level, const char *code, const char *path,
                    const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (json_array_append_new(c->out, json_pack("{s:s,s:s,s:s,s:s,s:s}", "level", level, "code",
                                                 code, "resource", c->resource, "path", path,
                                                 "message", msg)) < 0)
        c->err = -ENOMEM;
}

/* Resolve a destination host of an object in namespace ns to a Service key "<ns>/<name>" (into
 * key) if it names one. Returns true when it is a known Service or ServiceEntry host. */
static bool resolve_host(const struct op_analyze_inputs *in, const char *host, const char *ns,
                         char *key, size_t keysz)
{
    char name[256], hns[256], rest[256] = "";
    const char *k;
    json_t *se;

    key[0] = '\0';
    if (strchr(host, '*') != NULL)
        return true; /* wildcards are not checked */
    if (strchr(host, '.') == NULL) {
        snprintf(key, keysz, "%s/%s", ns, host);
    } else if (sscanf(host, "%255[^.].%255[^.].%255s", name, hns, rest) >= 2) {
        char full[600];

        snprintf(full, sizeof(full), "svc.%s", in->dns_domain ? in->dns_domain : "cluster.local");
        if (rest[0] == '\0' || strcmp(rest, "svc") == 0 || strcmp(rest, full) == 0)
            snprintf(key, keysz, "%s/%s", hns, name);
    }
    if (key[0] && json_object_get(in->services, key) != NULL)
        return true;
    json_object_foreach((json_t *)in->service_entries, k, se) {
        json_t *hosts = json_object_get(json_object_get(se, "spec"), "hosts"), *h;
        size_t i;

        json_array_foreach(hosts, i, h) {
            if (json_is_string(h) && strcmp(json_string_value(h), host) == 0)
                return true;
        }
    }
    return false;
}

/* DestinationRules (any namespace) whose host resolves to the same Service key / host. */
static bool subset_defined(const struct op_analyze_inputs *in, const char *host, const char *ns,
                           const char *subset)
{
    char want[600], got[600];
    const char *k;
    json_t *dr;

    resolve_host(in, host, ns, want, sizeof(want));
    json_object_foreach((json_t *)in->destination_rules, k, dr) {
        json_t *spec = json_object_get(dr, "spec"), *sub;
        const char *h = json_string_value(json_object_get(spec, "host"));
        const char *drns = dp_kube_meta_str(dr, "namespace");
        size_t i;

        if (h == NULL || drns == NULL)
            continue;
        resolve_host(in, h, drns, got, sizeof(got));
        if (!(want[0] && got[0] ? strcmp(want, got) == 0 : strcmp(h, host) == 0))
            continue;
        json_array_foreach(json_object_get(spec, "subsets"), i, sub) {
            const char *n = json_string_value(json_object_get(sub, "name"));

            if (n != NULL && strcmp(n, subset) == 0)
                return true;
        }
    }
    return false;
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
        finding(c, "Error", "InvalidRegex", path, "regex \"%.200s\" does not compile: %s", re, why);
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
    const char *ns = dp_kube_meta_str(vs, "namespace");
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
            if (!resolve_host(c->in, host, ns ? ns : "default", key, sizeof(key)))
                finding(c, "Warning", "UnknownHost", path,
                        "host \"%.200s\" is not a known Service or ServiceEntry host", host);
            if (subset != NULL && subset[0] &&
                !subset_defined(c->in, host, ns ? ns : "default", subset)) {
                snprintf(path, sizeof(path), "spec.%s[%zu].route[%zu].destination.subset",
                         section, i, j);
                finding(c, "Error", "SubsetNotDefined", path,
                        "subset \"%.100s\" of host \"%.200s\" is not defined by any "
                        "DestinationRule",
                        subset, host);
            }
        }
        if (json_array_size(dests) > 1 && any_weight && sum != 100) {
            snprintf(path, sizeof(path), "spec.%s[%zu].route", section, i);
            finding(c, "Warning", "WeightsNot100", path,
                    "destination weights sum to %lld, not 100", (long long)sum);
        }
    }
}

static void check_subsets_select(struct ctx *c, const json_t *dr)
{
    json_t *spec = json_object_get(dr, "spec"), *sub;
    const char *host = json_string_value(json_object_get(spec, "host"));
    const char *ns = dp_kube_meta_str(dr, "namespace");
    const json_t *svc;
    char key[600], path[256];
    size_t i;

    if (host == NULL || ns == NULL || !resolve_host(c->in, host, ns, key, sizeof(key)) ||
        (svc = json_object_get(c->in->services, key)) == NULL)
        return;
    json_array_foreach(json_object_get(spec, "subsets"), i, sub) {
        json_t *sel = json_object_get(json_object_get(svc, "spec"), "selector");
        json_t *labels = json_object_get(sub, "labels"), *pod;
        const char *svcns = dp_kube_meta_str(svc, "namespace"), *k;
        bool found = false;

        if (json_object_size(sel) == 0)
            return; /* selector-less Service: endpoints are not pods we can check */
        json_object_foreach((json_t *)c->in->pods, k, pod) {
            json_t *pl = json_object_get(json_object_get(pod, "metadata"), "labels");
            json_t *want = json_pack("{s:O}", "matchLabels", sel);
            const char *lk;
            json_t *lv;
            bool ok;

            if (strcmp(dp_kube_meta_str(pod, "namespace") ?: "", svcns ?: "") != 0) {
                json_decref(want);
                continue;
            }
            ok = dp_kube_label_selector_matches(want, pl) == 1;
            json_decref(want);
            json_object_foreach(labels, lk, lv) {
                const char *have = json_string_value(json_object_get(pl, lk));

                if (have == NULL || !json_is_string(lv) || strcmp(have, json_string_value(lv)))
                    ok = false;
            }
            if (ok) {
                found = true;
                break;
            }
        }
        if (!found) {
            snprintf(path, sizeof(path), "spec.subsets[%zu]", i);
            finding(c, "Warning", "SubsetSelectsNothing", path,
                    "subset \"%.100s\" selects no pod of service %.200s",
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
            snprintf(c->resource, sizeof(c->resource), "%s %s", kind, k);
            finding(c, "Error", "SelectorAndTargetRefs", "spec",
                    "selector and targetRef(s) cannot be used together");
        }
    }
}

int op_analyze(const struct op_analyze_inputs *in, json_t **ret_findings)
{
    struct ctx c = {.in = in, .out = json_array()};
    const char *k;
    json_t *o;

    if (c.out == NULL)
        return -ENOMEM;
    json_object_foreach((json_t *)in->virtual_services, k, o) {
        snprintf(c.resource, sizeof(c.resource), "VirtualService %s", k);
        check_routes(&c, o, "http");
        check_routes(&c, o, "tcp");
        check_routes(&c, o, "tls");
    }
    json_object_foreach((json_t *)in->destination_rules, k, o) {
        snprintf(c.resource, sizeof(c.resource), "DestinationRule %s", k);
        check_subsets_select(&c, o);
    }
    check_selector_targetrefs(&c, in->authorization_policies, "AuthorizationPolicy");
    check_selector_targetrefs(&c, in->request_authentications, "RequestAuthentication");
    check_selector_targetrefs(&c, in->telemetries, "Telemetry");
    if (c.err < 0) {
        json_decref(c.out);
        return c.err;
    }
    *ret_findings = c.out;
    return 0;
}
