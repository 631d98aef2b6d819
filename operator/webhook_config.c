/*
 * webhook_config.c — fills in the admission webhook's caBundle and failurePolicy. See
 * webhook_config.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "kube_informer.h"
#include "log.h"
#include "webhook_config.h"

#define SCOPE        "operator"
#define PROBE_NAME   "ambit-webhook-probe"
#define RETRY_MIN_MS 500
#define RETRY_MAX_MS 30000
#define OVERLAP_MS   (10 * 60 * 1000) /* the previous root stays in caBundle after a CA change */

/* ------------------------------------------------------------------ pure parts */

char *op_webhook_ca_bundle(const char *pem, const char *extra_pem)
{
    size_t n = strlen(pem), m = extra_pem ? strlen(extra_pem) : 0;
    char *text, *out = NULL;
    bool nl = n > 0 && pem[n - 1] != '\n' && m > 0;

    if (n + m > (16u << 20))
        return NULL;
    text = malloc(n + m + 2);
    if (text == NULL)
        return NULL;
    memcpy(text, pem, n);
    if (nl)
        text[n++] = '\n';
    if (m > 0)
        memcpy(text + n, extra_pem, m);
    n += m;
    out = malloc(4 * ((n + 2) / 3) + 1);
    if (out != NULL)
        EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)text, (int)n);
    free(text);
    return out;
}

bool op_webhook_bundle_has(const json_t *vwc, const char *pem)
{
    const json_t *w;
    size_t i;

    json_array_foreach(json_object_get(vwc, "webhooks"), i, w) {
        const char *b = json_string_value(json_object_get(json_object_get(w, "clientConfig"),
                                                          "caBundle"));
        size_t len = b ? strlen(b) : 0;
        unsigned char *dec;
        bool found;
        int n;

        if (len == 0 || len % 4 != 0 || len > (16u << 20))
            return false;
        dec = malloc(len / 4 * 3 + 1);
        if (dec == NULL)
            return false;
        n = EVP_DecodeBlock(dec, (const unsigned char *)b, (int)len);
        found = n >= 0 && (dec[n] = '\0', strstr((char *)dec, pem) != NULL);
        free(dec);
        if (!found)
            return false;
    }
    return true;
}

static int add_op(json_t *patch, const char *op, size_t i, const char *field, const char *value)
{
    char path[128];

    snprintf(path, sizeof(path), "/webhooks/%zu%s", i, field);
    return json_array_append_new(patch, json_pack("{s:s,s:s,s:s}", "op", op, "path", path,
                                                  "value", value)) == 0
                   ? 0
                   : -ENOMEM;
}

int op_webhook_config_patch(const json_t *vwc, const char *ca_bundle, const char *policy,
                            json_t **ret_patch, char *errbuf, size_t errsz)
{
    const json_t *hooks = json_object_get(vwc, "webhooks"), *w;
    json_t *patch;
    size_t i;
    int r = 0;

    if (hooks == NULL || json_is_null(hooks)) {
        *ret_patch = NULL; /* no entries: nothing to point at us */
        return 0;
    }
    if (!json_is_array(hooks)) {
        snprintf(errbuf, errsz, "webhooks: not a list");
        return -EINVAL;
    }
    patch = json_array();
    if (patch == NULL)
        return -ENOMEM;
    json_array_foreach(hooks, i, w) {
        const char *name = json_string_value(json_object_get(w, "name"));
        const json_t *cc = json_object_get(w, "clientConfig");
        const char *have_bundle = json_string_value(json_object_get(cc, "caBundle"));
        const char *have_policy = json_string_value(json_object_get(w, "failurePolicy"));
        bool fix_bundle = have_bundle == NULL || strcmp(have_bundle, ca_bundle) != 0;
        bool fix_policy = policy != NULL && (have_policy == NULL || strcmp(have_policy, policy) != 0);

        if (name == NULL || name[0] == '\0') {
            snprintf(errbuf, errsz, "webhooks[%zu].name: missing", i);
            r = -EINVAL;
            goto fail;
        }
        if (!json_is_object(cc)) {
            snprintf(errbuf, errsz, "webhooks[%zu].clientConfig: missing or not an object", i);
            r = -EINVAL;
            goto fail;
        }
        if (!fix_bundle && !fix_policy)
            continue;
        /* the index must still be this entry when the API server applies the patch */
        if ((r = add_op(patch, "test", i, "/name", name)) < 0 ||
            (fix_bundle && (r = add_op(patch, "add", i, "/clientConfig/caBundle", ca_bundle)) < 0) ||
            (fix_policy && (r = add_op(patch, "add", i, "/failurePolicy", policy)) < 0))
            goto fail;
    }
    if (json_array_size(patch) == 0) {
        json_decref(patch);
        patch = NULL;
    }
    *ret_patch = patch;
    return 0;
fail:
    json_decref(patch);
    return r;
}

bool op_webhook_denied_by(const json_t *vwc, const char *message)
{
    const json_t *w;
    size_t i;

    if (message == NULL)
        return false;
    json_array_foreach(json_object_get(vwc, "webhooks"), i, w) {
        const char *name = json_string_value(json_object_get(w, "name"));
        char needle[400];

        if (name == NULL)
            continue;
        snprintf(needle, sizeof(needle), "admission webhook \"%s\" denied the request", name);
        if (strstr(message, needle) != NULL)
            return true;
    }
    return false;
}

/* ------------------------------------------------------------------ the controller */

struct op_webhook_config {
    struct op_ctx *op;
    const char *name;
    bool fail_closed;
    unsigned resync_ms;
    struct dp_kube_informer *inf;
    struct dp_defer reconcile;
    struct dp_timer resync, retry;
    struct dp_kube_req *patch_req, *probe_req;
    unsigned failures;       /* API calls failed in a row (backoff) */
    uint64_t next_try_ms;    /* no API call before this (after a failure) */
    bool missing_logged, probe_logged;
    char verified_uid[128];  /* uid of the object our webhook was proven to serve */
    char bad_rv[64];         /* resourceVersion last reported as malformed */
    char *bundle;            /* base64 of cur_root (+ prev_root during the overlap) */
    unsigned bundle_gen;     /* CA generation of cur_root */
    char *cur_root, *prev_root;
    uint64_t prev_until_ms;  /* drop prev_root from the bundle after this */
};

static void schedule(struct op_webhook_config *wc)
{
    dp_loop_defer(op_loop(wc->op), &wc->reconcile);
}

static void failed(struct op_webhook_config *wc)
{
    uint64_t d = dp_kube_backoff_ms(wc->failures++, RETRY_MIN_MS, RETRY_MAX_MS, (uint32_t)rand());

    wc->next_try_ms = dp_loop_now(op_loop(wc->op)) + d;
    dp_timer_arm(op_loop(wc->op), &wc->retry, d);
}

static void on_patch_done(int r, long http, json_t *body, const char *errmsg, void *arg)
{
    struct op_webhook_config *wc = arg;

    (void)http;
    (void)body;
    wc->patch_req = NULL;
    if (r < 0) {
        dp_warn(SCOPE, "cannot update the webhook configuration", DP_LS("name", wc->name),
                DP_LS("detail", errmsg), DP_LERR(r));
        failed(wc);
        return;
    }
    wc->failures = 0;
    dp_info(SCOPE, "webhook configuration updated", DP_LS("name", wc->name),
            DP_LS("failure_policy", json_string_value(json_object_get(
                                            json_array_get(json_object_get(body, "webhooks"), 0),
                                            "failurePolicy")) ?: ""));
    /* the watch event of our own write runs the next reconcile */
}

static void on_probe_done(int r, long http, json_t *body, const char *errmsg, void *arg)
{
    struct op_webhook_config *wc = arg;
    const json_t *vwc = dp_kube_informer_get(wc->inf, wc->name);
    const char *msg = json_string_value(json_object_get(body, "message"));
    const char *uid = dp_kube_meta_str(vwc, "uid");

    (void)http;
    wc->probe_req = NULL;
    if (r < 0 && uid != NULL && op_webhook_denied_by(vwc, msg ?: errmsg)) {
        snprintf(wc->verified_uid, sizeof(wc->verified_uid), "%s", uid);
        wc->failures = 0;
        dp_info(SCOPE, "admission webhook verified through the API server, failing closed",
                DP_LS("name", wc->name), DP_LS("failure_policy", "Fail"));
        schedule(wc);
        return;
    }
    /* admitted (the API server does not call us yet, or cannot verify us: Ignore let it
     * through), or no VirtualService kind, or not allowed: try again later */
    if (!wc->probe_logged && r == 0)
        dp_info(SCOPE, "admission webhook not verified yet, keeping failurePolicy",
                DP_LS("name", wc->name),
                DP_LS("detail", "an invalid VirtualService was admitted (dry run)"));
    else if (!wc->probe_logged)
        dp_info(SCOPE, "admission webhook not verified yet, keeping failurePolicy",
                DP_LS("name", wc->name), DP_LS("detail", msg ?: errmsg), DP_LERR(r));
    wc->probe_logged = true;
    failed(wc);
}

/* dry-run create of a VirtualService our analyzer denies (a regex that does not compile) */
static void probe(struct op_webhook_config *wc)
{
    const char *ns = op_opts(wc->op)->namespace;
    char *path = NULL, *full = NULL;
    json_t *vs;
    int r;

    vs = json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:[s],s:[{s:[{s:{s:s}}],s:[{s:{s:s}}]}]}}",
                   "apiVersion", "networking.istio.io/v1", "kind", "VirtualService", "metadata",
                   "name", PROBE_NAME, "namespace", ns, "spec", "hosts",
                   PROBE_NAME ".invalid", "http", "match", "uri", "regex", "(", "route",
                   "destination", "host", PROBE_NAME ".invalid");
    r = vs ? dp_kube_path(&DP_KUBE_RES_VIRTUALSERVICES, ns, NULL, NULL, NULL, &path) : -ENOMEM;
    if (r == 0 && asprintf(&full, "%s?dryRun=All", path) < 0) {
        full = NULL;
        r = -ENOMEM;
    }
    if (r == 0)
        r = dp_kube_multi_request(op_multi(wc->op), "POST", full, "application/json", vs,
                                  on_probe_done, wc, &wc->probe_req);
    if (r < 0) {
        dp_warn(SCOPE, "cannot start the webhook probe", DP_LERR(r));
        failed(wc);
    }
    json_decref(vs);
    free(path);
    free(full);
}

/*
 * The bundle follows the CA: after a change it holds the new root and, for OVERLAP_MS, the
 * previous one, so that a replica (or connection) still presenting a certificate of the old CA
 * keeps verifying while the change spreads.
 */
static int update_bundle(struct op_webhook_config *wc)
{
    const char *root = op_ca(wc->op)->root_pem;
    uint64_t now = dp_loop_now(op_loop(wc->op));
    bool drop_prev = wc->prev_root != NULL && now >= wc->prev_until_ms;
    char *b;

    if (wc->bundle != NULL && wc->bundle_gen == op_ca_generation(wc->op) && !drop_prev)
        return 0;
    if (wc->cur_root == NULL || strcmp(wc->cur_root, root) != 0) {
        char *copy = strdup(root);

        if (copy == NULL)
            return -ENOMEM;
        free(wc->prev_root);
        wc->prev_root = wc->cur_root; /* NULL at start: nothing to overlap with */
        wc->prev_until_ms = now + OVERLAP_MS;
        wc->cur_root = copy;
    } else if (drop_prev) {
        free(wc->prev_root);
        wc->prev_root = NULL;
    }
    b = op_webhook_ca_bundle(wc->cur_root, wc->prev_root);
    if (b == NULL)
        return -ENOMEM;
    free(wc->bundle);
    wc->bundle = b;
    wc->bundle_gen = op_ca_generation(wc->op);
    return 0;
}

static void on_reconcile(struct dp_loop *loop, void *arg)
{
    struct op_webhook_config *wc = arg;
    const json_t *vwc;
    const char *uid, *policy;
    json_t *patch = NULL;
    char err[256] = "", *path = NULL;
    int r;

    if (wc->patch_req != NULL || wc->probe_req != NULL || !dp_kube_informer_synced(wc->inf))
        return; /* the request's completion or the first list brings us back */
    vwc = dp_kube_informer_get(wc->inf, wc->name);
    if (vwc == NULL) {
        if (!wc->missing_logged)
            dp_info(SCOPE, "webhook configuration not found, watching for it",
                    DP_LS("name", wc->name));
        wc->missing_logged = true;
        return;
    }
    wc->missing_logged = false;
    if (!op_may_write(wc->op, NULL, json_object_get(json_object_get(vwc, "metadata"), "labels")))
        return;
    if (dp_loop_now(loop) < wc->next_try_ms)
        return; /* the retry timer brings us back */
    if (update_bundle(wc) < 0)
        return;
    uid = dp_kube_meta_str(vwc, "uid");
    if (!wc->fail_closed)
        policy = "Ignore";
    else
        policy = uid != NULL && strcmp(uid, wc->verified_uid) == 0 ? "Fail" : NULL;
    r = op_webhook_config_patch(vwc, wc->bundle, policy, &patch, err, sizeof(err));
    if (r < 0) {
        const char *rv = dp_kube_meta_str(vwc, "resourceVersion") ?: "";

        /* logged once per version of the object: a change re-runs us */
        if (strcmp(rv, wc->bad_rv) != 0)
            dp_warn(SCOPE, "cannot fill in the webhook configuration", DP_LS("name", wc->name),
                    DP_LS("detail", err), DP_LERR(r));
        snprintf(wc->bad_rv, sizeof(wc->bad_rv), "%s", rv);
        return;
    }
    if (patch == NULL) {
        if (wc->fail_closed && policy == NULL)
            probe(wc); /* caBundle in place: is the path through the API server working? */
        return;
    }
    r = dp_kube_path(&DP_KUBE_RES_VALIDATING_WEBHOOK_CONFIGS, NULL, wc->name, NULL, NULL, &path);
    if (r == 0)
        r = dp_kube_multi_request(op_multi(wc->op), "PATCH", path, "application/json-patch+json",
                                  patch, on_patch_done, wc, &wc->patch_req);
    if (r < 0) {
        dp_warn(SCOPE, "cannot update the webhook configuration", DP_LS("name", wc->name),
                DP_LERR(r));
        failed(wc);
    }
    json_decref(patch);
    free(path);
}

static void on_resync(struct dp_loop *loop, void *arg)
{
    struct op_webhook_config *wc = arg;

    schedule(wc); /* CA changes (op_ca_generation) are noticed here */
    dp_timer_arm(loop, &wc->resync, wc->resync_ms);
}

static void on_retry(struct dp_loop *loop, void *arg)
{
    (void)loop;
    schedule(arg);
}

static void on_add(json_t *obj, void *arg)
{
    (void)obj;
    schedule(arg);
}

static void on_update(json_t *old_obj, json_t *new_obj, void *arg)
{
    (void)old_obj;
    (void)new_obj;
    schedule(arg);
}

static void on_delete(json_t *obj, void *arg)
{
    struct op_webhook_config *wc = arg;

    (void)obj;
    dp_info(SCOPE, "webhook configuration deleted, watching for it", DP_LS("name", wc->name));
    wc->missing_logged = true;
}

static void on_synced(struct dp_kube_informer *inf, void *arg)
{
    (void)inf;
    schedule(arg);
}

static const struct dp_kube_informer_ops OPS = {on_add, on_update, on_delete, on_synced};

int op_webhook_config_new(struct op_ctx *op, const char *name, bool fail_closed,
                          unsigned resync_ms, struct op_webhook_config **ret_wc)
{
    struct op_webhook_config *wc;
    char sel_str[300];
    struct dp_kube_list_opts sel = {.field_selector = sel_str};
    int r;

    if (name == NULL || name[0] == '\0' || strlen(name) > 253 || strpbrk(name, ",=/ ") != NULL)
        return -EINVAL;
    wc = calloc(1, sizeof(*wc));
    if (wc == NULL)
        return -ENOMEM;
    wc->op = op;
    wc->name = name;
    wc->fail_closed = fail_closed;
    wc->resync_ms = resync_ms ? resync_ms : 1000;
    dp_defer_init(&wc->reconcile, on_reconcile, wc);
    dp_timer_init(&wc->resync, on_resync, wc);
    dp_timer_init(&wc->retry, on_retry, wc);
    snprintf(sel_str, sizeof(sel_str), "metadata.name=%s", name);
    r = dp_kube_informer_new(op_multi(op), &DP_KUBE_RES_VALIDATING_WEBHOOK_CONFIGS, NULL, &sel,
                             &OPS, wc, &wc->inf);
    if (r < 0)
        goto fail;
    r = dp_kube_informer_start(wc->inf);
    if (r < 0)
        goto fail;
    dp_timer_arm(op_loop(op), &wc->resync, wc->resync_ms);
    *ret_wc = wc;
    return 0;
fail:
    op_webhook_config_free(wc);
    return r;
}

void op_webhook_config_free(struct op_webhook_config *wc)
{
    if (wc == NULL)
        return;
    dp_kube_req_cancel(wc->patch_req);
    dp_kube_req_cancel(wc->probe_req);
    dp_kube_informer_free(wc->inf);
    dp_defer_cancel(&wc->reconcile);
    dp_timer_cancel(&wc->resync);
    dp_timer_cancel(&wc->retry);
    free(wc->bundle);
    free(wc->cur_root);
    free(wc->prev_root);
    free(wc);
}

bool op_webhook_config_trusts_ca(void *arg)
{
    const struct op_webhook_config *wc = arg;
    const json_t *vwc;

    if (wc == NULL || !dp_kube_informer_synced(wc->inf))
        return true;
    vwc = dp_kube_informer_get(wc->inf, wc->name);
    return vwc == NULL || op_webhook_bundle_has(vwc, op_ca(wc->op)->root_pem);
}

void op_webhook_config_kick(struct op_webhook_config *wc)
{
    if (wc != NULL)
        schedule(wc);
}
