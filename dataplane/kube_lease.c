/*
 * kube_lease.c — Lease-based leader election. See kube_lease.h.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "kube_lease.h"
#include "log.h"

struct dp_kube_lease {
    struct dp_kube_multi *m;
    struct dp_loop *loop;
    struct dp_kube_lease_config cfg;
    char *ns, *name, *identity;
    struct dp_timer timer;
    struct dp_kube_req *req;
    bool leader;
    uint64_t last_renew_ms;    /* local time of our last successful renew */
    char observed[512];        /* holder + renewTime last seen */
    uint64_t observed_ms;      /* local time it last changed */
    char holder[256];
    json_t *owner_refs; /* NULL: keep the Lease's own */
};

void dp_kube_microtime(uint64_t unix_us, char *buf, size_t bufsz)
{
    time_t s = (time_t)(unix_us / 1000000);
    struct tm tm;
    char base[24];

    gmtime_r(&s, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, bufsz, "%s.%06uZ", base, (unsigned)(unix_us % 1000000));
}

static uint64_t unix_us(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000000 + (uint64_t)tv.tv_usec;
}

static void set_leader(struct dp_kube_lease *l, bool leader)
{
    if (l->leader == leader)
        return;
    l->leader = leader;
    if (leader && l->cfg.on_start)
        l->cfg.on_start(l->cfg.arg);
    if (!leader && l->cfg.on_stop)
        l->cfg.on_stop(l->cfg.arg);
}

static void schedule(struct dp_kube_lease *l)
{
    dp_timer_arm(l->loop, &l->timer, l->cfg.retry_period_ms);
}

static void check_deadline(struct dp_kube_lease *l)
{
    if (l->leader && dp_now_ms() - l->last_renew_ms > l->cfg.renew_deadline_ms) {
        dp_debug("kube", "lease renew deadline passed", DP_LS("lease", l->name));
        set_leader(l, false);
    }
}

static void on_written(int r, long http, json_t *body, const char *errmsg, void *arg)
{
    struct dp_kube_lease *l = arg;

    (void)http;
    (void)body;
    (void)errmsg;
    l->req = NULL;
    if (r == 0) {
        l->last_renew_ms = dp_now_ms();
        snprintf(l->holder, sizeof(l->holder), "%s", l->identity);
        set_leader(l, true);
    } else {
        /* 409: someone else wrote first; they lead */
        check_deadline(l);
        if (r == -EBUSY || r == -EEXIST)
            set_leader(l, false);
    }
    schedule(l);
}

static json_t *lease_spec(const struct dp_kube_lease *l, const json_t *old_spec, bool takeover)
{
    char now[40];
    json_int_t transitions = json_integer_value(json_object_get(old_spec, "leaseTransitions"));
    const char *acquire = json_string_value(json_object_get(old_spec, "acquireTime"));

    dp_kube_microtime(unix_us(), now, sizeof(now));
    if (takeover)
        transitions++;
    return json_pack("{s:s,s:I,s:s,s:s,s:I}", "holderIdentity", l->identity,
                     "leaseDurationSeconds", (json_int_t)((l->cfg.lease_duration_ms + 999) / 1000),
                     "acquireTime", takeover || acquire == NULL ? now : acquire, "renewTime", now,
                     "leaseTransitions", transitions);
}

static void write_lease(struct dp_kube_lease *l, json_t *current, bool create, bool takeover)
{
    json_t *obj;
    char *path = NULL;
    int r;

    obj = json_pack("{s:s,s:s,s:{s:s,s:s},s:o}", "apiVersion", "coordination.k8s.io/v1", "kind",
                    "Lease", "metadata", "name", l->name, "namespace", l->ns, "spec",
                    lease_spec(l, json_object_get(current, "spec"), takeover));
    if (obj == NULL) {
        schedule(l);
        return;
    }
    {
        /* a full update replaces ownerReferences: write ours, else keep the current ones */
        json_t *refs = l->owner_refs ? l->owner_refs
                                     : json_object_get(json_object_get(current, "metadata"),
                                                       "ownerReferences");

        if (json_array_size(refs) > 0)
            json_object_set(json_object_get(obj, "metadata"), "ownerReferences", refs);
    }
    if (!create) {
        const char *rv = dp_kube_meta_str(current, "resourceVersion");

        json_object_set_new(json_object_get(obj, "metadata"), "resourceVersion",
                            json_string(rv ? rv : ""));
    }
    r = dp_kube_path(&DP_KUBE_RES_LEASES, l->ns, create ? NULL : l->name, NULL, NULL, &path);
    if (r == 0)
        r = dp_kube_multi_request(l->m, create ? "POST" : "PUT", path, "application/json", obj,
                                  on_written, l, &l->req);
    free(path);
    json_decref(obj);
    if (r < 0)
        schedule(l);
}

static void on_read(int r, long http, json_t *body, const char *errmsg, void *arg)
{
    struct dp_kube_lease *l = arg;
    json_t *spec = json_object_get(body, "spec");
    const char *holder, *renew;
    char obs[512];

    (void)http;
    (void)errmsg;
    l->req = NULL;
    if (r == -ENOENT) {
        write_lease(l, NULL, true, true);
        return;
    }
    if (r < 0) {
        check_deadline(l);
        schedule(l);
        return;
    }
    holder = json_string_value(json_object_get(spec, "holderIdentity"));
    renew = json_string_value(json_object_get(spec, "renewTime"));
    snprintf(l->holder, sizeof(l->holder), "%s", holder ? holder : "");
    snprintf(obs, sizeof(obs), "%s|%s", holder ? holder : "", renew ? renew : "");
    if (strcmp(obs, l->observed) != 0) {
        snprintf(l->observed, sizeof(l->observed), "%s", obs);
        l->observed_ms = dp_now_ms();
    }
    if (holder != NULL && strcmp(holder, l->identity) == 0) {
        write_lease(l, body, false, false); /* renew */
        return;
    }
    if (l->leader)
        set_leader(l, false); /* someone else holds it now */
    {
        json_int_t secs = json_integer_value(json_object_get(spec, "leaseDurationSeconds"));
        uint64_t dur = secs > 0 ? (uint64_t)secs * 1000 : l->cfg.lease_duration_ms;

        if (holder == NULL || holder[0] == '\0' || dp_now_ms() - l->observed_ms > dur) {
            write_lease(l, body, false, true); /* free or expired: take over */
            return;
        }
    }
    schedule(l);
}

static void on_timer(struct dp_loop *loop, void *arg)
{
    struct dp_kube_lease *l = arg;
    char *path = NULL;
    int r;

    (void)loop;
    check_deadline(l);
    r = dp_kube_path(&DP_KUBE_RES_LEASES, l->ns, l->name, NULL, NULL, &path);
    if (r == 0)
        r = dp_kube_multi_request(l->m, "GET", path, NULL, NULL, on_read, l, &l->req);
    free(path);
    if (r < 0)
        schedule(l);
}

int dp_kube_lease_new(struct dp_kube_multi *m, struct dp_loop *loop,
                      const struct dp_kube_lease_config *cfg, struct dp_kube_lease **ret_l)
{
    struct dp_kube_lease *l;

    if (cfg->namespace == NULL || cfg->name == NULL || cfg->identity == NULL ||
        cfg->identity[0] == '\0')
        return -EINVAL;
    l = calloc(1, sizeof(*l));
    if (l == NULL)
        return -ENOMEM;
    l->m = m;
    l->loop = loop;
    l->cfg = *cfg;
    if (l->cfg.lease_duration_ms == 0)
        l->cfg.lease_duration_ms = 15000;
    if (l->cfg.renew_deadline_ms == 0 || l->cfg.renew_deadline_ms >= l->cfg.lease_duration_ms)
        l->cfg.renew_deadline_ms = l->cfg.lease_duration_ms * 2 / 3;
    if (l->cfg.retry_period_ms == 0)
        l->cfg.retry_period_ms = 2000;
    l->ns = strdup(cfg->namespace);
    l->name = strdup(cfg->name);
    l->identity = strdup(cfg->identity);
    if (l->ns == NULL || l->name == NULL || l->identity == NULL) {
        dp_kube_lease_free(l);
        return -ENOMEM;
    }
    l->observed_ms = dp_now_ms();
    dp_timer_init(&l->timer, on_timer, l);
    dp_timer_arm(loop, &l->timer, 0);
    *ret_l = l;
    return 0;
}

static void on_released(int r, long http, json_t *body, const char *errmsg, void *arg)
{
    (void)r;
    (void)http;
    (void)body;
    (void)errmsg;
    (void)arg;
}

void dp_kube_lease_free(struct dp_kube_lease *l)
{
    if (l == NULL)
        return;
    dp_timer_cancel(&l->timer);
    dp_kube_req_cancel(l->req);
    if (l->leader) {
        /* release: a merge patch clearing the holder lets a successor take over at once */
        json_t *patch = json_pack("{s:{s:n}}", "spec", "holderIdentity");
        char *path = NULL;

        if (patch != NULL &&
            dp_kube_path(&DP_KUBE_RES_LEASES, l->ns, l->name, NULL, NULL, &path) == 0)
            dp_kube_multi_request(l->m, "PATCH", path, "application/merge-patch+json", patch,
                                  on_released, NULL, NULL);
        free(path);
        json_decref(patch);
    }
    free(l->ns);
    free(l->name);
    free(l->identity);
    json_decref(l->owner_refs);
    free(l);
}

int dp_kube_lease_set_owner_refs(struct dp_kube_lease *l, const json_t *refs)
{
    json_t *copy = NULL;

    if (json_array_size(refs) > 0 && (copy = json_deep_copy(refs)) == NULL)
        return -ENOMEM;
    json_decref(l->owner_refs);
    l->owner_refs = copy;
    return 0;
}

bool dp_kube_lease_is_leader(const struct dp_kube_lease *l)
{
    return l->leader;
}

const char *dp_kube_lease_holder(const struct dp_kube_lease *l)
{
    return l->holder;
}
