/*
 * kube_informer.c — curl multi-socket driver on dp_loop, async requests, informers.
 * See kube_informer.h.
 *
 * Flow of an informer:
 *
 *   start -> LIST page ... LIST page (continue tokens) -> store_replace -> on_synced
 *         -> WATCH ?resourceVersion=<rv>&allowWatchBookmarks=true&timeoutSeconds=300..600
 *              stream bytes -> splitter -> store_apply -> handlers
 *              ERROR 410 / HTTP 410   -> relist now
 *              other error / cut      -> backoff, re-watch from rv (relist if no rv)
 *              server timeout (clean) -> re-watch now
 *
 * Transfers are never removed from inside curl callbacks: a write callback that wants to stop
 * returns 0 (curl then finishes the transfer with CURLE_WRITE_ERROR) and records why.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include <curl/curl.h>

#include "curlx.h"
#include "kube_informer.h"
#include "log.h"

struct dp_kube_multi {
    struct dp_loop *loop;
    struct dp_kube_config *cfg;
    CURLM *multi;
    struct dp_timer timer;
    struct dp_list reqs;
    bool in_check; /* inside check_done(): re-entrancy guard */
};

struct sockinfo {
    struct dp_io io;
    struct dp_kube_multi *m;
    curl_socket_t fd;
};

/* stream callback: return 0 to continue, -errno to abort the transfer */
typedef int data_cb(const char *data, size_t len, void *arg);

struct dp_kube_req {
    struct dp_kube_multi *m;
    CURL *easy;
    struct curl_slist *headers;
    struct dp_list link;
    dp_kube_done_cb *on_done;
    data_cb *on_data; /* streaming requests (watches) */
    void *arg;
    char *buf;        /* buffered body (or the error body of a stream) */
    size_t len, cap, limit;
    int abort_err;    /* why a write callback stopped the transfer */
    bool stream_checked, stream_ok;
};

/* ------------------------------------------------------------------ multi-socket glue */

static void check_done(struct dp_kube_multi *m);

static void on_sock_io(struct dp_loop *loop, int fd, unsigned events, void *arg)
{
    struct sockinfo *si = arg;
    struct dp_kube_multi *m = si->m;
    int still = 0, mask = 0;

    (void)loop;
    if (events & DP_EV_READ)
        mask |= CURL_CSELECT_IN;
    if (events & DP_EV_WRITE)
        mask |= CURL_CSELECT_OUT;
    if (events & DP_EV_ERROR)
        mask |= CURL_CSELECT_ERR;
    /* si may be freed by the socket callback during this call: do not touch it afterwards */
    curl_multi_socket_action(m->multi, fd, mask, &still);
    check_done(m);
}

static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct dp_kube_multi *m = userp;
    struct sockinfo *si = socketp;
    unsigned ev = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (si != NULL) {
            dp_loop_del_io(m->loop, &si->io);
            curl_multi_assign(m->multi, s, NULL);
            free(si);
        }
        return 0;
    }
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        ev |= DP_EV_READ;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        ev |= DP_EV_WRITE;
    if (si == NULL) {
        si = calloc(1, sizeof(*si));
        if (si == NULL)
            return -1;
        si->m = m;
        si->fd = s;
        dp_io_init(&si->io, s, on_sock_io, si);
        if (dp_loop_add_io(m->loop, &si->io, ev) < 0) {
            free(si);
            return -1;
        }
        curl_multi_assign(m->multi, s, si);
        return 0;
    }
    return dp_loop_mod_io(m->loop, &si->io, ev) < 0 ? -1 : 0;
}

static void on_curl_timer_fire(struct dp_loop *loop, void *arg)
{
    struct dp_kube_multi *m = arg;
    int still = 0;

    (void)loop;
    curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &still);
    check_done(m);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct dp_kube_multi *m = userp;

    (void)multi;
    if (timeout_ms < 0)
        dp_timer_cancel(&m->timer);
    else
        dp_timer_arm(m->loop, &m->timer, (uint64_t)timeout_ms);
    return 0;
}

int dp_kube_multi_new(struct dp_loop *loop, struct dp_kube_config *cfg,
                      struct dp_kube_multi **ret_m)
{
    struct dp_kube_multi *m;

    if (cfg == NULL || cfg->server == NULL)
        return -EINVAL;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    m = calloc(1, sizeof(*m));
    if (m == NULL)
        return -ENOMEM;
    m->multi = curl_multi_init();
    if (m->multi == NULL) {
        free(m);
        return -ENOMEM;
    }
    m->loop = loop;
    m->cfg = cfg;
    dp_list_init(&m->reqs);
    dp_timer_init(&m->timer, on_curl_timer_fire, m);
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
    curl_multi_setopt(m->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    *ret_m = m;
    return 0;
}

static void req_free(struct dp_kube_req *req)
{
    if (req == NULL)
        return;
    dp_list_del(&req->link);
    if (req->easy != NULL) {
        curl_multi_remove_handle(req->m->multi, req->easy);
        curl_easy_cleanup(req->easy);
    }
    curl_slist_free_all(req->headers);
    free(req->buf);
    free(req);
}

void dp_kube_multi_free(struct dp_kube_multi *m)
{
    struct dp_list *p, *t;

    if (m == NULL)
        return;
    dp_list_for_each_safe(p, t, &m->reqs)
        req_free(dp_container_of(p, struct dp_kube_req, link));
    dp_timer_cancel(&m->timer);
    curl_multi_cleanup(m->multi);
    free(m);
}

/* ------------------------------------------------------------------ requests */

static int buf_append(struct dp_kube_req *req, const char *data, size_t n)
{
    if (req->len + n + 1 > req->limit)
        return -EMSGSIZE;
    if (req->len + n + 1 > req->cap) {
        size_t cap = req->cap ? req->cap : 16384;
        char *p;

        while (cap < req->len + n + 1)
            cap *= 2;
        p = realloc(req->buf, cap);
        if (p == NULL)
            return -ENOMEM;
        req->buf = p;
        req->cap = cap;
    }
    memcpy(req->buf + req->len, data, n);
    req->len += n;
    req->buf[req->len] = '\0';
    return 0;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct dp_kube_req *req = arg;
    size_t n = size * nmemb;
    int r;

    if (req->on_data != NULL && !req->stream_checked) {
        long http = 0;

        curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &http);
        req->stream_checked = true;
        req->stream_ok = http == 200;
    }
    if (req->on_data != NULL && req->stream_ok)
        r = req->on_data(ptr, n, req->arg);
    else
        r = buf_append(req, ptr, n);
    if (r < 0) {
        req->abort_err = r;
        return 0;
    }
    return n;
}

static void complete(struct dp_kube_req *req, CURLcode cc)
{
    json_t *body = NULL;
    long http = 0;
    char msg[300] = "";
    int r;

    curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &http);
    if (req->len > 0)
        body = json_loadb(req->buf, req->len, JSON_DECODE_ANY, NULL);
    if (cc != CURLE_OK) {
        r = req->abort_err < 0 ? req->abort_err : dp_curl_errno(cc);
        snprintf(msg, sizeof(msg), "%s", req->abort_err < 0 ? strerror(-req->abort_err)
                                                            : curl_easy_strerror(cc));
    } else {
        r = dp_kube_http_errno(http, json_string_value(json_object_get(body, "reason")));
        if (r < 0)
            dp_kube_format_error(http, body, msg, sizeof(msg));
        else if (req->on_data == NULL && req->len > 0 && body == NULL) {
            r = -EBADMSG;
            snprintf(msg, sizeof(msg), "response is not JSON");
        }
    }
    if (req->on_done != NULL)
        req->on_done(r, http, body, msg, req->arg);
    json_decref(body);
}

static void check_done(struct dp_kube_multi *m)
{
    CURLMsg *msg;
    int left;

    if (m->in_check)
        return;
    m->in_check = true;
    while ((msg = curl_multi_info_read(m->multi, &left)) != NULL) {
        struct dp_kube_req *req = NULL;

        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&req);
        if (req == NULL)
            continue;
        {
            CURLcode cc = msg->data.result; /* msg is invalid after remove_handle */

            curl_multi_remove_handle(m->multi, req->easy);
            dp_list_del(&req->link);
            complete(req, cc);
            req_free(req);
        }
    }
    m->in_check = false;
}

static int start_req(struct dp_kube_multi *m, const char *method, const char *path,
                     const char *content_type, const json_t *body, size_t limit,
                     dp_kube_done_cb *on_done, data_cb *on_data, void *arg,
                     struct dp_kube_req **ret_req)
{
    struct dp_kube_req *req;
    char *text = NULL;
    int r;

    req = calloc(1, sizeof(*req));
    if (req == NULL)
        return -ENOMEM;
    req->m = m;
    req->on_done = on_done;
    req->on_data = on_data;
    req->arg = arg;
    req->limit = limit;
    dp_list_init(&req->link);
    req->easy = curl_easy_init();
    if (req->easy == NULL) {
        r = -ENOMEM;
        goto fail;
    }
    if (body != NULL && (text = json_dumps(body, JSON_COMPACT)) == NULL) {
        r = -ENOMEM;
        goto fail;
    }
    r = dp_kube_easy_prepare(m->cfg, req->easy, method, path, content_type, text,
                             text ? strlen(text) : 0, false, &req->headers);
    if (r < 0)
        goto fail;
    curl_easy_setopt(req->easy, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(req->easy, CURLOPT_WRITEDATA, req);
    curl_easy_setopt(req->easy, CURLOPT_PRIVATE, req);
    curl_easy_setopt(req->easy, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    if (on_data == NULL) {
        curl_easy_setopt(req->easy, CURLOPT_TIMEOUT_MS, 60000L);
    } else {
        /* a watch: no overall timeout (the server ends it), but detect dead peers */
        curl_easy_setopt(req->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
        /* bookmarks arrive about every minute: three silent minutes means a dead peer */
        curl_easy_setopt(req->easy, CURLOPT_LOW_SPEED_TIME, 180L);
    }
    if (curl_multi_add_handle(m->multi, req->easy) != CURLM_OK) {
        r = -ENOMEM;
        goto fail;
    }
    dp_list_add_tail(&m->reqs, &req->link);
    free(text);
    if (ret_req != NULL)
        *ret_req = req;
    return 0;
fail:
    free(text);
    req_free(req);
    return r;
}

int dp_kube_multi_request(struct dp_kube_multi *m, const char *method, const char *path,
                          const char *content_type, const json_t *body, dp_kube_done_cb *on_done,
                          void *arg, struct dp_kube_req **ret_req)
{
    return start_req(m, method, path, content_type, body, DP_KUBE_MAX_BODY, on_done, NULL, arg,
                     ret_req);
}

void dp_kube_req_cancel(struct dp_kube_req *req)
{
    req_free(req);
}

/* ------------------------------------------------------------------ informer */

enum inf_state { INF_IDLE, INF_LISTING, INF_WATCHING, INF_BACKOFF };

struct dp_kube_informer {
    struct dp_kube_multi *m;
    const struct dp_kube_resource *res;
    char *ns, *label_sel, *field_sel;
    const struct dp_kube_informer_ops *ops;
    void *arg;
    struct dp_kube_store store;
    struct dp_kube_store_ops store_ops;
    struct dp_kube_splitter splitter;
    struct dp_kube_informer_stats stats;
    enum inf_state state;
    bool synced;
    bool relist_needed; /* set from the stream: the watch is stale */
    bool drop_managed;  /* strip metadata.managedFields before storing */
    dp_kube_prune_fn *prune;
    struct dp_kube_req *req;
    json_t *list_items; /* pages collected so far */
    struct dp_timer timer;
    unsigned attempt;
    uint64_t backoff_min, backoff_max;
    uint64_t watch_started_ms;
};

uint64_t dp_kube_backoff_ms(unsigned attempt, uint64_t min_ms, uint64_t max_ms, uint32_t rnd)
{
    uint64_t d = min_ms;

    while (attempt-- > 0 && d < max_ms)
        d *= 2;
    if (d > max_ms)
        d = max_ms;
    /* scale by [0.5, 1.0) so that many clients do not reconnect in lockstep */
    return d / 2 + (d / 2) * (rnd % 1024) / 1024;
}

static void inf_list(struct dp_kube_informer *inf, const char *cont);
static void inf_watch(struct dp_kube_informer *inf);

static void set_error(struct dp_kube_informer *inf, int r, const char *what, const char *msg)
{
    inf->stats.last_error = r;
    snprintf(inf->stats.last_errmsg, sizeof(inf->stats.last_errmsg), "%s %s: %s", what,
             inf->res->resource, msg ? msg : strerror(-r));
    dp_debug("kube", "informer error", DP_LS("resource", inf->res->resource),
             DP_LS("what", what), DP_LS("detail", inf->stats.last_errmsg));
}

static void schedule_retry(struct dp_kube_informer *inf)
{
    uint32_t rnd = 0;

    if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) < 0)
        rnd = (uint32_t)dp_now_us();
    inf->state = INF_BACKOFF;
    dp_timer_arm(inf->m->loop, &inf->timer,
                 dp_kube_backoff_ms(inf->attempt, inf->backoff_min, inf->backoff_max, rnd));
    if (inf->attempt < 16)
        inf->attempt++;
}

static void on_retry_timer(struct dp_loop *loop, void *arg)
{
    struct dp_kube_informer *inf = arg;

    (void)loop;
    if (inf->store.rv != NULL && !inf->relist_needed && inf->synced)
        inf_watch(inf);
    else
        inf_list(inf, NULL);
}

static void on_list_done(int r, long http, json_t *body, const char *errmsg, void *arg)
{
    struct dp_kube_informer *inf = arg;
    json_t *items, *it;
    const char *cont, *rv;
    size_t i;

    (void)http;
    inf->req = NULL;
    if (r < 0) {
        json_decref(inf->list_items);
        inf->list_items = NULL;
        set_error(inf, r, "list", errmsg);
        schedule_retry(inf);
        return;
    }
    items = json_object_get(body, "items");
    json_array_foreach(items, i, it) {
        char av[128];

        if (!json_is_object(it))
            continue;
        /* list items come without apiVersion/kind; watch events carry them */
        if (json_object_get(it, "kind") == NULL)
            json_object_set_new(it, "kind", json_string(inf->res->kind));
        if (inf->res->group[0] != '\0')
            snprintf(av, sizeof(av), "%s/%s", inf->res->group, inf->res->version);
        else
            snprintf(av, sizeof(av), "%s", inf->res->version);
        if (json_object_get(it, "apiVersion") == NULL)
            json_object_set_new(it, "apiVersion", json_string(av));
        if (inf->drop_managed)
            json_object_del(json_object_get(it, "metadata"), "managedFields");
        if (inf->prune != NULL)
            inf->prune(it);
        if (json_array_append(inf->list_items, it) < 0) {
            set_error(inf, -ENOMEM, "list", NULL);
            json_decref(inf->list_items);
            inf->list_items = NULL;
            schedule_retry(inf);
            return;
        }
    }
    cont = json_string_value(json_object_get(json_object_get(body, "metadata"), "continue"));
    if (cont != NULL && cont[0] != '\0') {
        inf_list(inf, cont);
        return;
    }
    rv = json_string_value(json_object_get(json_object_get(body, "metadata"), "resourceVersion"));
    r = dp_kube_store_replace(&inf->store, inf->list_items, rv);
    json_decref(inf->list_items);
    inf->list_items = NULL;
    if (r < 0) {
        set_error(inf, r, "list", NULL);
        schedule_retry(inf);
        return;
    }
    inf->stats.lists++;
    inf->relist_needed = false;
    inf->synced = true;
    if (inf->ops && inf->ops->on_synced)
        inf->ops->on_synced(inf, inf->arg);
    inf_watch(inf);
}

static void inf_list(struct dp_kube_informer *inf, const char *cont)
{
    struct dp_kube_list_opts o = {.label_selector = inf->label_sel,
                                  .field_selector = inf->field_sel,
                                  .limit = 500,
                                  .continue_token = cont};
    char *path = NULL;
    int r;

    if (cont == NULL) {
        json_decref(inf->list_items);
        inf->list_items = json_array();
        if (inf->list_items == NULL) {
            set_error(inf, -ENOMEM, "list", NULL);
            schedule_retry(inf);
            return;
        }
    }
    inf->state = INF_LISTING;
    r = dp_kube_path(inf->res, inf->ns, NULL, NULL, &o, &path);
    if (r == 0)
        r = start_req(inf->m, "GET", path, NULL, NULL, DP_KUBE_MAX_BODY, on_list_done, NULL, inf,
                      &inf->req);
    free(path);
    if (r < 0) {
        set_error(inf, r, "list", NULL);
        schedule_retry(inf);
    }
}

static int on_watch_event(enum dp_kube_event_type type, json_t *obj, void *arg)
{
    struct dp_kube_informer *inf = arg;
    int r;

    inf->stats.events++;
    if (inf->drop_managed)
        json_object_del(json_object_get(obj, "metadata"), "managedFields");
    if (inf->prune != NULL && (type == DP_KUBE_EV_ADDED || type == DP_KUBE_EV_MODIFIED ||
                               type == DP_KUBE_EV_DELETED))
        inf->prune(obj);
    r = dp_kube_store_apply(&inf->store, type, obj);
    if (r == -ESTALE) {
        inf->relist_needed = true;
        inf->stats.relists_410++;
    }
    if (r == -EBADMSG)
        return 0; /* a nameless object: skip it, keep the watch */
    return r;
}

static int on_watch_data(const char *data, size_t len, void *arg)
{
    struct dp_kube_informer *inf = arg;

    return dp_kube_splitter_feed(&inf->splitter, data, len, on_watch_event, inf);
}

static void on_watch_done(int r, long http, json_t *body, const char *errmsg, void *arg)
{
    struct dp_kube_informer *inf = arg;

    (void)body;
    inf->req = NULL;
    if (r == 0)
        r = dp_kube_splitter_finish(&inf->splitter);
    if (http == 410 || r == -ESTALE || inf->relist_needed) {
        if (http == 410)
            inf->stats.relists_410++;
        inf->relist_needed = true;
        inf->attempt = 0;
        inf_list(inf, NULL);
        return;
    }
    if (r < 0) {
        inf->stats.restarts++;
        set_error(inf, r, "watch",
                  inf->splitter.errmsg[0] ? inf->splitter.errmsg
                  : inf->store.errmsg[0]  ? inf->store.errmsg
                                          : errmsg);
        inf->store.errmsg[0] = '\0';
        schedule_retry(inf);
        return;
    }
    /* the server closed a healthy watch (timeoutSeconds): resume at once */
    if (dp_now_ms() - inf->watch_started_ms > 10000)
        inf->attempt = 0;
    inf_watch(inf);
}

static void inf_watch(struct dp_kube_informer *inf)
{
    uint32_t rnd = 0;
    struct dp_kube_list_opts o = {.label_selector = inf->label_sel,
                                  .field_selector = inf->field_sel,
                                  .resource_version = inf->store.rv,
                                  .watch = true,
                                  .allow_bookmarks = true};
    char *path = NULL;
    int r;

    if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) < 0)
        rnd = (uint32_t)dp_now_us();
    o.timeout_seconds = 300 + rnd % 300;
    dp_kube_splitter_reset(&inf->splitter);
    inf->state = INF_WATCHING;
    inf->watch_started_ms = dp_now_ms();
    inf->stats.watches++;
    r = dp_kube_path(inf->res, inf->ns, NULL, NULL, &o, &path);
    if (r == 0)
        r = start_req(inf->m, "GET", path, NULL, NULL, 1u << 20, on_watch_done, on_watch_data,
                      inf, &inf->req);
    free(path);
    if (r < 0) {
        set_error(inf, r, "watch", NULL);
        schedule_retry(inf);
    }
}

static void store_on_add(json_t *obj, void *arg)
{
    struct dp_kube_informer *inf = arg;

    if (inf->ops && inf->ops->on_add)
        inf->ops->on_add(obj, inf->arg);
}

static void store_on_update(json_t *old_obj, json_t *new_obj, void *arg)
{
    struct dp_kube_informer *inf = arg;

    if (inf->ops && inf->ops->on_update)
        inf->ops->on_update(old_obj, new_obj, inf->arg);
}

static void store_on_delete(json_t *obj, void *arg)
{
    struct dp_kube_informer *inf = arg;

    if (inf->ops && inf->ops->on_delete)
        inf->ops->on_delete(obj, inf->arg);
}

int dp_kube_informer_new(struct dp_kube_multi *m, const struct dp_kube_resource *res,
                         const char *ns, const struct dp_kube_list_opts *sel,
                         const struct dp_kube_informer_ops *ops, void *arg,
                         struct dp_kube_informer **ret_inf)
{
    struct dp_kube_informer *inf;
    int r;

    inf = calloc(1, sizeof(*inf));
    if (inf == NULL)
        return -ENOMEM;
    inf->m = m;
    inf->res = res;
    inf->ops = ops;
    inf->arg = arg;
    inf->backoff_min = 500;
    inf->backoff_max = 30000;
    inf->store_ops.on_add = store_on_add;
    inf->store_ops.on_update = store_on_update;
    inf->store_ops.on_delete = store_on_delete;
    dp_timer_init(&inf->timer, on_retry_timer, inf);
    dp_kube_splitter_init(&inf->splitter, 0);
    r = dp_kube_store_init(&inf->store, &inf->store_ops, inf);
    if (r < 0)
        goto fail;
    r = -ENOMEM;
    if (ns != NULL && (inf->ns = strdup(ns)) == NULL)
        goto fail;
    if (sel != NULL && sel->label_selector != NULL &&
        (inf->label_sel = strdup(sel->label_selector)) == NULL)
        goto fail;
    if (sel != NULL && sel->field_selector != NULL &&
        (inf->field_sel = strdup(sel->field_selector)) == NULL)
        goto fail;
    *ret_inf = inf;
    return 0;
fail:
    dp_kube_informer_free(inf);
    return r;
}

int dp_kube_informer_start(struct dp_kube_informer *inf)
{
    if (inf->state != INF_IDLE)
        return -EALREADY;
    inf_list(inf, NULL);
    return 0;
}

void dp_kube_informer_free(struct dp_kube_informer *inf)
{
    if (inf == NULL)
        return;
    req_free(inf->req);
    dp_timer_cancel(&inf->timer);
    dp_kube_splitter_done(&inf->splitter);
    dp_kube_store_done(&inf->store);
    json_decref(inf->list_items);
    free(inf->ns);
    free(inf->label_sel);
    free(inf->field_sel);
    free(inf);
}

bool dp_kube_informer_synced(const struct dp_kube_informer *inf)
{
    return inf->synced;
}

const struct dp_kube_store *dp_kube_informer_store(const struct dp_kube_informer *inf)
{
    return &inf->store;
}

json_t *dp_kube_informer_get(const struct dp_kube_informer *inf, const char *key)
{
    return dp_kube_store_get(&inf->store, key);
}

const struct dp_kube_informer_stats *dp_kube_informer_stats(const struct dp_kube_informer *inf)
{
    return &inf->stats;
}

const struct dp_kube_resource *dp_kube_informer_resource(const struct dp_kube_informer *inf)
{
    return inf->res;
}

void dp_kube_informer_drop_managed_fields(struct dp_kube_informer *inf, bool drop)
{
    inf->drop_managed = drop;
}

void dp_kube_informer_set_prune(struct dp_kube_informer *inf, dp_kube_prune_fn *prune)
{
    inf->prune = prune;
}

void dp_kube_informer_set_backoff(struct dp_kube_informer *inf, uint64_t min_ms, uint64_t max_ms)
{
    inf->backoff_min = min_ms ? min_ms : 1;
    inf->backoff_max = max_ms >= inf->backoff_min ? max_ms : inf->backoff_min;
}
