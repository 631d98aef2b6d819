/*
 * analysis.c — analyzer findings in the status of the analyzed objects. See analysis.h.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analysis.h"
#include "analyze.h"
#include "kube.h"
#include "log.h"

#define SCOPE          "operator"
#define COND_TYPE      "Valid"
#define DEBOUNCE_MS    250
#define DEBOUNCE_MAX   2000
#define MAX_INFLIGHT   32
#define MAX_COND_MSG   2048
#define RETRY_MS       10000

struct write_req {
    struct dp_list link;
    struct op_analysis *a;
    struct dp_kube_req *req;
    char key[700];
};

struct op_analysis {
    struct op_ctx *op;
    struct op_sub push_sub, config_sub;
    struct dp_timer timer;
    uint64_t dirty_since_ms; /* 0 = clean */
    bool active;
    json_t *memo; /* "<Kind>/<ns>/<name>" -> {"want": status, "rv": rv after our write | null,
                     "before": rv we wrote over, "inflight": bool, "retryAt": ms} */
    struct dp_list reqs;
    unsigned inflight;
    struct op_analysis_stats stats;
};

static const struct {
    const char *kind;
    const struct dp_kube_resource *res;
    const json_t *(*objs)(const struct op_ctx *op);
} KINDS[] = {
        {"VirtualService", &DP_KUBE_RES_VIRTUALSERVICES, op_virtual_services},
        {"DestinationRule", &DP_KUBE_RES_DESTINATIONRULES, op_destination_rules},
        {"ServiceEntry", &DP_KUBE_RES_SERVICEENTRIES, op_service_entries},
        {"PeerAuthentication", &DP_KUBE_RES_PEERAUTHENTICATIONS, op_peer_authentications},
};

/* ------------------------------------------------------------------ status content */

static const char *istio_level(const char *level)
{
    if (level && strcmp(level, "Error") == 0)
        return "ERROR";
    if (level && strcmp(level, "Warning") == 0)
        return "WARNING";
    if (level && strcmp(level, "Info") == 0)
        return "INFO";
    return "UNKNOWN";
}

static bool contains(const json_t *arr, const json_t *v)
{
    size_t i;
    json_t *e;

    json_array_foreach(arr, i, e) {
        if (json_equal(e, v))
            return true;
    }
    return false;
}

static const json_t *live_condition(const json_t *live_status)
{
    size_t i;
    json_t *c;

    json_array_foreach(json_object_get(live_status, "conditions"), i, c) {
        const char *t = json_string_value(json_object_get(c, "type"));

        if (t && strcmp(t, COND_TYPE) == 0)
            return c;
    }
    return NULL;
}

json_t *op_analysis_status(const json_t *findings, json_int_t gen, const json_t *live_status,
                           const char *now)
{
    json_t *st = json_object(), *vms = json_array(), *f, *cond;
    char msg[MAX_COND_MSG];
    size_t off = 0, i, shown = 0;
    bool errors = false;
    const json_t *old;
    const char *ltt = now;

    if (st == NULL || vms == NULL || json_object_set_new(st, "observedGeneration",
                                                         json_integer(gen)) < 0)
        goto fail;
    if (json_array_size(findings) == 0) {
        /* server-side apply of just this drops the messages and condition we own (an empty
         * status is rejected: it arrives as null) */
        json_decref(vms);
        return st;
    }
    msg[0] = '\0';
    json_array_foreach(findings, i, f) {
        const char *code = json_string_value(json_object_get(f, "istioCode"));
        const char *level = json_string_value(json_object_get(f, "level"));

        if (level && strcmp(level, "Error") == 0)
            errors = true;
        if (code != NULL) {
            char url[128], lower[16];
            size_t j;
            json_t *vm;

            for (j = 0; code[j] && j < sizeof(lower) - 1; j++)
                lower[j] = (char)tolower((unsigned char)code[j]);
            lower[j] = '\0';
            snprintf(url, sizeof(url),
                     "https://istio.io/latest/docs/reference/config/analysis/%s/", lower);
            vm = json_pack("{s:{s:s,s:s},s:s,s:s}", "type", "code", code, "name",
                           json_string_value(json_object_get(f, "istioName")) ?: "", "level",
                           istio_level(level), "documentationUrl", url);
            if (vm == NULL)
                goto fail;
            if (!contains(vms, vm))
                json_array_append(vms, vm);
            json_decref(vm);
        }
        if (off < sizeof(msg) - 200) {
            int n = snprintf(msg + off, sizeof(msg) - off, "%s%s [%s] %s: %s", off ? "; " : "",
                             level ?: "?", code ?: json_string_value(json_object_get(f, "code")) ?: "?",
                             json_string_value(json_object_get(f, "path")) ?: "",
                             json_string_value(json_object_get(f, "message")) ?: "");

            off = n < 0 ? off : off + (size_t)n;
            if (off >= sizeof(msg))
                off = sizeof(msg) - 1;
            shown++;
        }
    }
    if (shown < json_array_size(findings))
        snprintf(msg + off, sizeof(msg) - off, " (and %zu more)",
                 json_array_size(findings) - shown);
    /* the transition time stays while the condition keeps its status */
    old = live_condition(live_status);
    if (old && json_string_value(json_object_get(old, "status")) &&
        strcmp(json_string_value(json_object_get(old, "status")), "False") == 0 &&
        json_string_value(json_object_get(old, "lastTransitionTime")))
        ltt = json_string_value(json_object_get(old, "lastTransitionTime"));
    cond = json_pack("[{s:s,s:s,s:s,s:s,s:I,s:s}]", "type", COND_TYPE, "status", "False",
                     "reason", errors ? "ValidationErrors" : "ValidationWarnings", "message",
                     msg, "observedGeneration", gen, "lastTransitionTime", ltt);
    if (cond == NULL)
        goto fail;
    if (json_array_size(vms) > 0)
        json_object_set(st, "validationMessages", vms);
    json_object_set_new(st, "conditions", cond);
    json_decref(vms);
    return st;
fail:
    json_decref(st);
    json_decref(vms);
    return NULL;
}

json_t *op_analysis_owned(const json_t *live)
{
    json_t *o = json_object(), *vms = json_object_get(live, "validationMessages");
    const json_t *c = live_condition(live);

    if (o == NULL)
        return NULL;
    if (json_array_size(vms) > 0)
        json_object_set_new(o, "validationMessages", json_deep_copy(vms));
    if (c != NULL) {
        json_t *copy = json_deep_copy(c);

        json_object_del(copy, "lastTransitionTime");
        json_object_set_new(o, "conditions", json_pack("[o]", copy));
    }
    if (json_object_size(o) > 0 && json_object_get(live, "observedGeneration"))
        json_object_set(o, "observedGeneration", json_object_get(live, "observedGeneration"));
    return o;
}

static json_t *without_ltt(const json_t *status)
{
    json_t *c = json_deep_copy(status), *cond;
    size_t i;

    json_array_foreach(json_object_get(c, "conditions"), i, cond) {
        json_object_del(cond, "lastTransitionTime");
    }
    return c;
}

static bool same_str(const json_t *v, const char *s)
{
    return s != NULL && json_is_string(v) && strcmp(json_string_value(v), s) == 0;
}

/* Did field manager ambit write this object's status (managedFields absent: assume so)? */
static bool ours(const json_t *obj)
{
    json_t *mf = json_object_get(json_object_get(obj, "metadata"), "managedFields"), *e;
    size_t i;

    if (!json_is_array(mf))
        return true;
    json_array_foreach(mf, i, e) {
        const char *m = json_string_value(json_object_get(e, "manager"));
        const char *sub = json_string_value(json_object_get(e, "subresource"));

        if (m && strcmp(m, DP_KUBE_FIELD_MANAGER) == 0 && sub && strcmp(sub, "status") == 0)
            return true;
    }
    return false;
}

/* ------------------------------------------------------------------ writes */

static void arm(struct op_analysis *a);

static void on_written(int r, long http, json_t *body, const char *errmsg, void *arg)
{
    struct write_req *w = arg;
    struct op_analysis *a = w->a;
    json_t *m = json_object_get(a->memo, w->key);

    (void)http;
    dp_list_del(&w->link);
    a->inflight--;
    if (r == -ENOENT) {
        json_object_del(a->memo, w->key); /* deleted meanwhile */
    } else if (r < 0) {
        /* retried by a pass after RETRY_MS, not by every pass in between: no hot loop */
        a->stats.write_errors++;
        dp_warn(SCOPE, "analysis status write failed", DP_LS("object", w->key),
                DP_LS("detail", errmsg), DP_LERR(r));
        if (m != NULL) {
            json_object_set_new(m, "inflight", json_false());
            json_object_del(m, "before"); /* unchanged object: try again after RETRY_MS */
            json_object_set_new(m, "retryAt",
                                json_integer((json_int_t)(dp_loop_now(op_loop(a->op)) + RETRY_MS)));
        }
        if (!dp_timer_armed(&a->timer))
            dp_timer_arm(op_loop(a->op), &a->timer, RETRY_MS);
    } else if (m != NULL) {
        const char *rv = dp_kube_meta_str(body, "resourceVersion");

        json_object_set_new(m, "inflight", json_false());
        json_object_set_new(m, "rv", rv ? json_string(rv) : json_null());
    }
    free(w);
}

static int write_status(struct op_analysis *a, const struct dp_kube_resource *res,
                        const char *key, const char *ns, const char *name, json_t *status)
{
    char *path = NULL, *full = NULL, api_version[128];
    struct write_req *w = NULL;
    json_t *obj = NULL;
    int r;

    snprintf(api_version, sizeof(api_version), "%s/%s", res->group, res->version);
    obj = json_pack("{s:s,s:s,s:{s:s,s:s},s:O}", "apiVersion", api_version, "kind", res->kind,
                    "metadata", "name", name, "namespace", ns, "status", status);
    w = calloc(1, sizeof(*w));
    r = -ENOMEM;
    if (obj == NULL || w == NULL)
        goto out;
    r = dp_kube_path(res, ns, name, "status", NULL, &path);
    if (r < 0)
        goto out;
    if (asprintf(&full, "%s?fieldManager=%s&force=true", path, DP_KUBE_FIELD_MANAGER) < 0) {
        full = NULL;
        r = -ENOMEM;
        goto out;
    }
    w->a = a;
    snprintf(w->key, sizeof(w->key), "%s", key);
    r = dp_kube_multi_request(op_multi(a->op), "PATCH", full, "application/apply-patch+yaml",
                              obj, on_written, w, &w->req);
    if (r < 0)
        goto out;
    dp_list_add_tail(&a->reqs, &w->link);
    a->inflight++;
    a->stats.writes++;
    w = NULL;
out:
    free(w);
    free(path);
    free(full);
    json_decref(obj);
    return r;
}

static void now_str(char *buf, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* One object: write its status if what we want differs from what it has. */
static void reconcile(struct op_analysis *a, const struct dp_kube_resource *res, const char *kind,
                      const json_t *obj, const json_t *by_key, const char *now)
{
    const char *ns = dp_kube_meta_str(obj, "namespace"), *name = dp_kube_meta_str(obj, "name");
    const char *rv = dp_kube_meta_str(obj, "resourceVersion");
    json_t *live = json_object_get(obj, "status"), *owned, *want = NULL, *cmp = NULL, *m;
    const json_t *fs;
    char key[700];

    if (ns == NULL || name == NULL || !op_may_write(a->op, ns, NULL))
        return;
    snprintf(key, sizeof(key), "%s/%s/%s", kind, ns, name);
    fs = json_object_get(by_key, key);
    owned = op_analysis_owned(live);
    if (owned == NULL)
        return;
    if (fs == NULL && (json_object_size(owned) == 0 || !ours(obj))) {
        json_object_del(a->memo, key); /* nothing of ours to show or to remove */
        goto out;
    }
    want = op_analysis_status(fs, json_integer_value(json_object_get(
                                          json_object_get(obj, "metadata"), "generation")),
                              live, now);
    cmp = want ? without_ltt(want) : NULL;
    if (cmp == NULL || json_equal(cmp, owned))
        goto out;
    m = json_object_get(a->memo, key);
    /* being written; or written, and the object is still the one we wrote over (its watch
     * event not here yet) or the one our write produced (the server keeps it different from
     * what we want: writing again would loop) */
    if (m != NULL && (json_is_true(json_object_get(m, "inflight")) ||
                      (json_equal(json_object_get(m, "want"), cmp) &&
                       (same_str(json_object_get(m, "rv"), rv) ||
                        same_str(json_object_get(m, "before"), rv)))))
        goto out;
    if (m != NULL && json_integer_value(json_object_get(m, "retryAt")) >
                             (json_int_t)dp_loop_now(op_loop(a->op)))
        goto out; /* failed a moment ago */
    if (a->inflight >= MAX_INFLIGHT) {
        arm(a); /* the rest next time */
        goto out;
    }
    if (write_status(a, res, key, ns, name, want) == 0) {
        json_object_set_new(a->memo, key,
                            json_pack("{s:O,s:n,s:s?,s:b}", "want", cmp, "rv", "before", rv,
                                      "inflight", 1));
        if (fs != NULL)
            dp_info(SCOPE, "analysis findings written to status", DP_LS("object", key),
                    DP_LU("findings", json_array_size(fs)));
        else
            dp_info(SCOPE, "analysis findings cleared from status", DP_LS("object", key));
    }
out:
    json_decref(owned);
    json_decref(want);
    json_decref(cmp);
}

static void run(struct op_analysis *a)
{
    struct op_ctx *op = a->op;
    struct dp_analyze_inputs in = {
            .virtual_services = op_virtual_services(op),
            .destination_rules = op_destination_rules(op),
            .service_entries = op_service_entries(op),
            .services = op_services(op),
            .pods = op_pods(op),
            .peer_authentications = op_peer_authentications(op),
            .dns_domain = op_opts(op)->mesh.dns_domain,
            .root_ns = op_opts(op)->mesh.root_ns,
    };
    json_t *findings = NULL, *by_key = json_object(), *f;
    char now[32];
    size_t i;
    int r;

    if (by_key == NULL)
        return;
    r = dp_analyze(&in, &findings);
    if (r < 0) {
        dp_error(SCOPE, "analysis failed", DP_LERR(r));
        json_decref(by_key);
        return;
    }
    a->stats.passes++;
    a->stats.findings = json_array_size(findings);
    json_array_foreach(findings, i, f) {
        char key[700];
        json_t *arr;

        snprintf(key, sizeof(key), "%s/%s/%s", json_string_value(json_object_get(f, "kind")),
                 json_string_value(json_object_get(f, "namespace")),
                 json_string_value(json_object_get(f, "name")));
        arr = json_object_get(by_key, key);
        if (arr == NULL) {
            arr = json_array();
            json_object_set_new(by_key, key, arr);
        }
        json_array_append(arr, f);
    }
    now_str(now, sizeof(now));
    for (i = 0; i < sizeof(KINDS) / sizeof(KINDS[0]); i++) {
        const char *k;
        json_t *o;

        json_object_foreach((json_t *)KINDS[i].objs(op), k, o) {
            reconcile(a, KINDS[i].res, KINDS[i].kind, o, by_key, now);
        }
    }
    dp_debug(SCOPE, "analysis pass", DP_LU("findings", json_array_size(findings)),
             DP_LU("writes_inflight", a->inflight));
    json_decref(findings);
    json_decref(by_key);
}

/* ------------------------------------------------------------------ scheduling */

static void on_timer(struct dp_loop *loop, void *arg)
{
    struct op_analysis *a = arg;

    (void)loop;
    a->dirty_since_ms = 0;
    /* not ready yet: the first snapshot push / the informers' sync notify us again */
    if (!a->active || !op_ready(a->op) || !op_config_synced(a->op))
        return;
    run(a);
}

static void arm(struct op_analysis *a)
{
    struct dp_loop *loop = op_loop(a->op);
    uint64_t now = dp_loop_now(loop), delay = DEBOUNCE_MS;

    if (a->dirty_since_ms == 0)
        a->dirty_since_ms = now;
    if (now + delay > a->dirty_since_ms + DEBOUNCE_MAX)
        delay = a->dirty_since_ms + DEBOUNCE_MAX > now ? a->dirty_since_ms + DEBOUNCE_MAX - now
                                                       : 0;
    dp_timer_arm(loop, &a->timer, delay);
}

static void on_change(struct op_ctx *op, const json_t *events, void *arg)
{
    (void)op;
    (void)events;
    arm(arg);
}

int op_analysis_new(struct op_ctx *op, struct op_analysis **ret_a)
{
    struct op_analysis *a = calloc(1, sizeof(*a));

    if (a == NULL || (a->memo = json_object()) == NULL) {
        free(a);
        return -ENOMEM;
    }
    a->op = op;
    a->active = true;
    dp_list_init(&a->reqs);
    dp_timer_init(&a->timer, on_timer, a);
    op_subscribe(op, &a->push_sub, on_change, a);
    op_subscribe_config(op, &a->config_sub, on_change, a);
    *ret_a = a;
    return 0;
}

void op_analysis_free(struct op_analysis *a)
{
    struct dp_list *p, *t;

    if (a == NULL)
        return;
    op_unsubscribe(&a->push_sub);
    op_unsubscribe(&a->config_sub);
    dp_timer_cancel(&a->timer);
    dp_list_for_each_safe(p, t, &a->reqs) {
        struct write_req *w = dp_container_of(p, struct write_req, link);

        dp_kube_req_cancel(w->req);
        free(w);
    }
    json_decref(a->memo);
    free(a);
}

void op_analysis_set_active(struct op_analysis *a, bool active)
{
    a->active = active;
    if (active) {
        json_object_clear(a->memo);
        arm(a);
    }
}

const struct op_analysis_stats *op_analysis_stats(const struct op_analysis *a)
{
    return &a->stats;
}
