/*
 * server.c — config stream, certificate signing and roots for node agents. See server.h.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "buf.h"
#include "analyze.h"
#include "csr_authz.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "push.h"
#include "server.h"
#include "serving_cert.h"

#define SCOPE            "operator"
#define MAX_CSR          (64u << 10)
#define MAX_TTL_S        (90 * 86400)
#define PUMP_WINDOW      (64u << 10) /* bytes a stream keeps in its connection's buffer */
#define PUMP_MS          2            /* retry period while a stream's connection drains */

struct stream;

struct op_server {
    struct op_ctx *op;
    struct op_server_config cfg;
    struct dp_httpd *httpd;
    SSL_CTX *ssl_ctx;
    unsigned ssl_ca_generation; /* CA generation the serving certificate was issued from */
    int64_t ssl_renew_at;       /* unix time: issue a new serving certificate after this */
    op_server_ca_gate_cb *ca_gate; /* may the certificate move to a new CA yet? */
    void *ca_gate_arg;
    unsigned gate_generation;   /* CA generation the gate is holding back */
    int64_t gate_until;         /* unix time: stop holding it back */
    struct dp_httpd_transport transport;
    struct dp_list streams;
    unsigned n_streams;
    struct op_push *push; /* serialised stream content shared by the streams */
    struct op_sub sub;
    bool subscribed;
    struct dp_metric_series *m_pushes, *m_push_events, *m_signed, *m_denied, *m_agents,
            *m_dropped, *m_push_lat;
};

void op_server_config_defaults(struct op_server_config *c)
{
    memset(c, 0, sizeof(*c));
    c->listen = "0.0.0.0:15012";
    c->token_audience = "istio-ca";
    c->ping_ms = 15000;
    c->max_stream_pending = 4u << 20;
    c->serving_ttl_s = OP_SERVING_TTL_S;
}

/* ------------------------------------------------------------------ TLS transport */

static int make_ssl_ctx(struct op_server *srv);

static int tls_on_accept(void *targ, int fd, void **ret_ctx)
{
    struct op_server *srv = targ;
    unsigned gen = op_ca_generation(srv->op);
    int64_t now = (int64_t)time(NULL);
    SSL *ssl;

    if (srv->ssl_ca_generation != gen && srv->ca_gate != NULL) {
        if (srv->gate_generation != gen) {
            srv->gate_generation = gen;
            srv->gate_until = now + OP_SERVER_CA_GATE_MAX_S;
        }
        if (now < srv->gate_until && !srv->ca_gate(srv->ca_gate_arg))
            goto accept; /* clients do not trust the new CA yet: keep the old certificate */
    }
    if (srv->ssl_ca_generation != gen || now >= srv->ssl_renew_at) {
        /* the CA changed (cacerts) or the certificate is two thirds through its life: issue a
         * new one; connections keep a reference to the context they were accepted with */
        SSL_CTX *old = srv->ssl_ctx;
        int r;

        srv->ssl_ctx = NULL;
        r = make_ssl_ctx(srv);
        if (r == 0) {
            SSL_CTX_free(old);
            dp_info(SCOPE, "serving certificate issued", DP_LS("server", srv->cfg.listen),
                    DP_LI("renew_at", srv->ssl_renew_at));
        } else {
            /* keep serving the old one; try again in a minute, not on every accept */
            srv->ssl_ctx = old;
            srv->ssl_ca_generation = op_ca_generation(srv->op);
            srv->ssl_renew_at = (int64_t)time(NULL) + 60;
            dp_error(SCOPE, "cannot issue a new serving certificate, keeping the old one",
                     DP_LS("server", srv->cfg.listen), DP_LERR(r));
        }
    }
accept:
    ssl = SSL_new(srv->ssl_ctx);
    if (ssl == NULL)
        return -ENOMEM;
    if (SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        return -EIO;
    }
    SSL_set_accept_state(ssl);
    *ret_ctx = ssl;
    return 0;
}

static ssize_t tls_result(SSL *ssl, int n, unsigned *want)
{
    switch (SSL_get_error(ssl, n)) {
    case SSL_ERROR_WANT_READ:
        *want = DP_EV_READ;
        return -EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        *want = DP_EV_WRITE;
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        return n == 0 ? 0 : -ECONNRESET;
    default:
        ERR_clear_error();
        return -EPROTO;
    }
}

static ssize_t tls_read(void *ctx, int fd, void *buf, size_t len, unsigned *want)
{
    int n;

    (void)fd;
    n = SSL_read(ctx, buf, (int)DP_MIN(len, (size_t)1 << 30));
    return n > 0 ? n : tls_result(ctx, n, want);
}

static ssize_t tls_write(void *ctx, int fd, const void *buf, size_t len, unsigned *want)
{
    int n;

    (void)fd;
    n = SSL_write(ctx, buf, (int)DP_MIN(len, (size_t)1 << 30));
    return n > 0 ? n : tls_result(ctx, n, want);
}

static void tls_close(void *ctx)
{
    if (ctx != NULL) {
        SSL_shutdown(ctx); /* best effort close_notify */
        SSL_free(ctx);
    }
}

/* A serving certificate for this server, issued from the operator's current CA. */
static int make_ssl_ctx(struct op_server *srv)
{
    int r = op_serving_ctx_new(op_ca(srv->op), op_opts(srv->op)->namespace,
                               srv->cfg.serving_ttl_s, (int64_t)time(NULL), &srv->ssl_ctx,
                               &srv->ssl_renew_at);

    if (r == 0)
        srv->ssl_ca_generation = op_ca_generation(srv->op);
    return r;
}

/* ------------------------------------------------------------------ helpers */

static const char *header(const struct dp_http_request *req, const char *name)
{
    for (unsigned i = 0; i < req->n_headers; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

/* value of query parameter `key` into buf (no percent-decoding: names are DNS labels) */
static bool query_param(const struct dp_http_request *req, const char *key, char *buf, size_t bufsz)
{
    const char *q = req->query;
    size_t klen = strlen(key);

    while (q != NULL && *q) {
        const char *amp = strchr(q, '&');
        size_t n = amp ? (size_t)(amp - q) : strlen(q);

        if (n > klen && strncmp(q, key, klen) == 0 && q[klen] == '=') {
            size_t vlen = n - klen - 1;

            if (vlen >= bufsz)
                return false;
            memcpy(buf, q + klen + 1, vlen);
            buf[vlen] = '\0';
            return true;
        }
        q = amp ? amp + 1 : NULL;
    }
    return false;
}

static void send_json(struct dp_httpd_resp *resp, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);

    dp_httpd_resp_status(resp, status);
    dp_httpd_resp_header(resp, "Content-Type", "application/json");
    if (text != NULL) {
        dp_httpd_resp_body(resp, text, strlen(text));
        dp_httpd_resp_body(resp, "\n", 1);
    }
    free(text);
    json_decref(body);
}

static void send_error(struct dp_httpd_resp *resp, int status, const char *msg)
{
    send_json(resp, status, json_pack("{s:s}", "error", msg));
}

/* ------------------------------------------------------------------ authentication */

struct auth_req;
typedef void auth_done_cb(struct auth_req *a, int r, const struct dp_kube_token_info *ti);

/* A held request waiting for its TokenReview. */
struct auth_req {
    struct op_server *srv;
    struct dp_httpd_resp *resp;
    struct dp_kube_req *kreq;
    auth_done_cb *done;
    bool aborted;
    char node[256];
    uint64_t since;
    bool has_since;
    char *csr, *identity; /* certificate requests */
    int64_t ttl_s;
};

static void auth_free(struct auth_req *a)
{
    if (a == NULL)
        return;
    free(a->csr);
    free(a->identity);
    free(a);
}

static void on_auth_abort(struct dp_httpd_resp *resp, void *arg)
{
    struct auth_req *a = arg;

    (void)resp;
    /* the agent went away while we asked the API server: cancel and forget */
    dp_kube_req_cancel(a->kreq);
    auth_free(a);
}

static void on_review_done(int r, long http, json_t *body, const char *errmsg, void *arg)
{
    struct auth_req *a = arg;
    struct dp_kube_token_info ti = {0};

    (void)http;
    a->kreq = NULL;
    if (r < 0) {
        dp_warn(SCOPE, "TokenReview failed", DP_LS("detail", errmsg), DP_LERR(r));
        send_error(a->resp, 503, "cannot verify the token now");
        dp_httpd_resp_finish(a->resp);
        auth_free(a);
        return;
    }
    r = dp_kube_token_review_parse(body, &ti);
    a->done(a, r, &ti);
    dp_kube_token_info_done(&ti);
}

/* Hold resp and start a TokenReview for its bearer token. */
static void authenticate(struct op_server *srv, struct dp_httpd_resp *resp,
                         const struct dp_http_request *req, auth_done_cb *done,
                         struct auth_req *a)
{
    const char *authz = header(req, "Authorization");
    const char *aud = srv->cfg.token_audience && srv->cfg.token_audience[0]
                              ? srv->cfg.token_audience
                              : NULL;
    json_t *body;
    char *path = NULL;
    int r;

    if (authz == NULL || strncasecmp(authz, "Bearer ", 7) != 0 || authz[7] == '\0') {
        dp_counter_add(srv->m_denied, 1);
        send_error(resp, 401, "missing bearer token");
        auth_free(a);
        return;
    }
    a->srv = srv;
    a->resp = resp;
    a->done = done;
    body = dp_kube_token_review_body(authz + 7, aud);
    r = body ? dp_kube_path(&DP_KUBE_RES_TOKENREVIEWS, NULL, NULL, NULL, NULL, &path) : -ENOMEM;
    if (r == 0)
        r = dp_kube_multi_request(op_multi(srv->op), "POST", path, "application/json", body,
                                  on_review_done, a, &a->kreq);
    json_decref(body);
    free(path);
    if (r < 0) {
        send_error(resp, 503, "cannot verify the token now");
        auth_free(a);
        return;
    }
    dp_httpd_resp_hold(resp, on_auth_abort, a);
}

/* ------------------------------------------------------------------ certificates */

static void on_csr_authenticated(struct auth_req *a, int r, const struct dp_kube_token_info *ti)
{
    struct auth_req *c = a;
    struct op_server *srv = a->srv;
    const struct op_options *o = op_opts(srv->op);
    const struct op_csr_policy pol = {.trust_domain = o->mesh.trust_domain,
                                      .trusted_accounts = o->trusted_accounts};
    json_t *chain = NULL;
    char why[300] = "";
    char *uri = NULL;

    if (r < 0) {
        send_error(a->resp, 502, "malformed TokenReview answer");
        goto out;
    }
    r = op_csr_authorize(&pol, ti, c->identity, op_pods(srv->op),
                         json_object_get(op_snapshot(srv->op), "waypoint"), why, sizeof(why));
    if (r < 0) {
        dp_counter_add(srv->m_denied, 1);
        dp_warn(SCOPE, "certificate denied", DP_LS("identity", c->identity),
                DP_LS("caller", ti->username ? ti->username : ""), DP_LS("reason", why));
        send_error(a->resp, r == -EACCES ? 401 : r == -EINVAL ? 400 : 403, why);
        goto out;
    }
    r = op_ca_sign(op_ca(srv->op), c->csr, strlen(c->csr), c->ttl_s, &chain, &uri);
    if (r < 0) {
        dp_counter_add(srv->m_denied, 1);
        send_error(a->resp, 400, "malformed CSR");
        goto out;
    }
    if (strcmp(uri, c->identity) != 0) {
        dp_counter_add(srv->m_denied, 1);
        dp_warn(SCOPE, "certificate denied", DP_LS("identity", c->identity),
                DP_LS("reason", "CSR SAN differs from the requested identity"));
        send_error(a->resp, 400, "CSR URI SAN does not match identity");
        json_decref(chain);
        goto out;
    }
    dp_counter_add(srv->m_signed, 1);
    dp_info(SCOPE, "certificate signed", DP_LS("identity", c->identity),
            DP_LS("caller", ti->username ? ti->username : ""), DP_LS("why", why));
    send_json(a->resp, 200, json_pack("{s:o}", "certChain", chain));
out:
    free(uri);
    dp_httpd_resp_finish(a->resp);
    auth_free(a);
}

static void on_certificates(struct dp_httpd_resp *resp, const struct dp_http_request *req,
                            void *arg)
{
    struct op_server *srv = arg;
    const struct op_options *o = op_opts(srv->op);
    struct auth_req *c;
    json_error_t jerr;
    json_t *body;
    const char *csr, *id;
    json_int_t ttl = 0;

    if (req->body_len > MAX_CSR + 4096) {
        send_error(resp, 413, "request too large");
        return;
    }
    body = json_loadb(req->body, req->body_len, 0, &jerr);
    csr = json_string_value(json_object_get(body, "csr"));
    id = json_string_value(json_object_get(body, "identity"));
    if (json_is_integer(json_object_get(body, "ttlSeconds")))
        ttl = json_integer_value(json_object_get(body, "ttlSeconds"));
    if (csr == NULL || id == NULL || ttl < 0) {
        json_decref(body);
        send_error(resp, 400, "body must be {\"csr\": PEM, \"identity\": spiffe id, \"ttlSeconds\"}");
        return;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL || (c->csr = strdup(csr)) == NULL || (c->identity = strdup(id)) == NULL) {
        auth_free(c);
        json_decref(body);
        send_error(resp, 500, "out of memory");
        return;
    }
    c->ttl_s = ttl == 0 ? o->cert_ttl_s : ttl > MAX_TTL_S ? MAX_TTL_S : ttl;
    json_decref(body);
    authenticate(srv, resp, req, on_csr_authenticated, c);
}

/* ------------------------------------------------------------------ config stream */

struct stream {
    struct dp_list link;
    struct op_server *srv;
    struct dp_httpd_resp *resp;
    struct op_push_stream *ps; /* what is queued for this agent (push.h) */
    struct dp_timer ping;
    struct dp_timer pump; /* moves queued bytes into the connection while it drains */
    size_t limit;         /* queued bytes beyond which the agent is too slow */
    char node[256];
    bool dead;
};

static void stream_close(struct stream *s, bool end)
{
    struct op_server *srv = s->srv;

    if (s->dead)
        return;
    s->dead = true;
    op_push_stream_close(s->ps);
    dp_list_del(&s->link);
    dp_timer_cancel(&s->ping);
    dp_timer_cancel(&s->pump);
    srv->n_streams--;
    dp_gauge_set(srv->m_agents, srv->n_streams);
    if (end)
        dp_httpd_resp_stream_end(s->resp);
    free(s);
}

static void stream_drop(struct stream *s, int r)
{
    if (r != -EPIPE) {
        dp_counter_add(s->srv->m_dropped, 1);
        dp_warn(SCOPE, "dropping a config stream that cannot keep up", DP_LS("node", s->node),
                DP_LU("queued", op_push_queued(s->ps)), DP_LERR(r));
    }
    /* -EPIPE has already ended the response */
    stream_close(s, r != -EPIPE);
}

/*
 * Hand queued bytes to the connection, keeping at most PUMP_WINDOW in its buffer: the rest
 * stays in shared chunks (one copy for every agent). Returns false if the stream was dropped.
 */
static bool stream_pump(struct stream *s)
{
    size_t pending = dp_httpd_resp_pending(s->resp), len;
    const char *data;

    while (pending < PUMP_WINDOW && (data = op_push_peek(s->ps, &len)) != NULL) {
        size_t n = DP_MIN(len, PUMP_WINDOW - pending);
        int r = dp_httpd_resp_stream_write(s->resp, data, n);

        if (r < 0) {
            stream_drop(s, r);
            return false;
        }
        op_push_advance(s->ps, n);
        pending += n;
    }
    if (op_push_queued(s->ps) > 0)
        dp_timer_arm(op_loop(s->srv->op), &s->pump, PUMP_MS);
    else
        dp_timer_arm(op_loop(s->srv->op), &s->ping, s->srv->cfg.ping_ms);
    return true;
}

static void on_pump(struct dp_loop *loop, void *arg)
{
    (void)loop;
    stream_pump(arg);
}

/* A published batch: queue it on every stream (serialised once, push.h), then pump. */
static void on_push(struct op_ctx *op, const json_t *events, void *arg)
{
    struct op_server *srv = arg;
    struct dp_list *p, *t;
    uint64_t t0 = dp_now_us();
    int r;

    if (json_array_size(events) == 0)
        return; /* a rebuild that changed nothing */
    r = op_push_publish(srv->push, op_snapshot(op), op_version(op), events);
    dp_list_for_each_safe(p, t, &srv->streams) {
        struct stream *s = dp_container_of(p, struct stream, link);

        if (r < 0 || op_push_queued(s->ps) > s->limit) {
            stream_drop(s, r < 0 ? r : -ENOBUFS);
            continue;
        }
        if (stream_pump(s)) {
            dp_counter_add(srv->m_pushes, 1);
            dp_counter_add(srv->m_push_events, json_array_size(events));
        }
    }
    if (srv->n_streams > 0)
        dp_histogram_observe(srv->m_push_lat,
                             (double)(dp_now_us() - t0) / 1e6 / (double)srv->n_streams);
}

static void on_ping(struct dp_loop *loop, void *arg)
{
    struct stream *s = arg;
    static const char ping[] = "{\"type\":\"ping\"}\n";
    int r;

    if (op_push_queued(s->ps) > 0) /* data is flowing */
        return;
    r = dp_httpd_resp_stream_write(s->resp, ping, sizeof(ping) - 1);
    if (r < 0) {
        /* -ENOBUFS leaves the stream open: end it, or its on_abort would later run on the
         * freed stream. -EPIPE has already ended it. */
        stream_drop(s, r);
        return;
    }
    dp_timer_arm(loop, &s->ping, s->srv->cfg.ping_ms);
}

static void on_stream_abort(struct dp_httpd_resp *resp, void *arg)
{
    struct stream *s = arg;

    (void)resp;
    dp_info(SCOPE, "config stream closed", DP_LS("node", s->node));
    stream_close(s, false);
}

static void on_config_authenticated(struct auth_req *a, int r, const struct dp_kube_token_info *ti)
{
    struct op_server *srv = a->srv;
    const struct op_options *o = op_opts(srv->op);
    char acct[512];
    bool trusted = false;
    struct stream *s;
    json_t *since_events;
    size_t n_events = 0;
    bool reset = false;

    if (r < 0 || !ti->authenticated) {
        send_error(a->resp, 401, ti->error ? ti->error : "token not authenticated");
        goto fail;
    }
    snprintf(acct, sizeof(acct), "%s/%s", ti->sa_namespace ? ti->sa_namespace : "",
             ti->sa_name ? ti->sa_name : "");
    for (const char *const *t = o->trusted_accounts; t && *t; t++)
        trusted |= strcmp(*t, acct) == 0;
    if (!trusted) {
        dp_warn(SCOPE, "config stream denied", DP_LS("caller", ti->username ? ti->username : ""),
                DP_LS("reason", "not a node agent account"));
        send_error(a->resp, 403, "not a node agent service account");
        goto fail;
    }
    /* a token bound to a node (pod-bound projected tokens) only gets that node's scope */
    if (ti->node_name != NULL && ti->node_name[0] && strcmp(ti->node_name, a->node) != 0) {
        dp_warn(SCOPE, "config stream denied", DP_LS("caller", ti->username ? ti->username : ""),
                DP_LS("node", a->node), DP_LS("token_node", ti->node_name));
        send_error(a->resp, 403, "node does not match the token's node");
        goto fail;
    }
    if (!op_ready(srv->op)) {
        send_error(a->resp, 503, "operator not synced yet");
        goto fail;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        send_error(a->resp, 500, "out of memory");
        goto fail;
    }
    s->srv = srv;
    s->resp = a->resp;
    snprintf(s->node, sizeof(s->node), "%s", a->node);
    dp_timer_init(&s->ping, on_ping, s);
    dp_timer_init(&s->pump, on_pump, s);
    since_events = a->has_since ? op_events_since(srv->op, a->since) : NULL;
    reset = a->has_since && since_events == NULL;
    r = op_push_stream_open(srv->push, op_snapshot(srv->op), op_version(srv->op), since_events,
                            reset, s->node, &s->ps, &n_events);
    json_decref(since_events);
    if (r < 0) {
        free(s);
        send_error(a->resp, 500, "out of memory");
        goto fail;
    }
    /* the initial content (a full snapshot may be several MiB, shared between agents) does
     * not count against the limit for slow agents */
    s->limit = srv->cfg.max_stream_pending + op_push_queued(s->ps);
    if (dp_httpd_resp_stream_start(a->resp, "application/x-ndjson", on_stream_abort, s) < 0) {
        op_push_stream_close(s->ps);
        free(s);
        send_error(a->resp, 500, "cannot stream");
        goto fail;
    }
    dp_list_add_tail(&srv->streams, &s->link);
    srv->n_streams++;
    dp_gauge_set(srv->m_agents, srv->n_streams);
    dp_info(SCOPE, "config stream opened", DP_LS("node", s->node),
            DP_LS("caller", ti->username ? ti->username : ""), DP_LU("events", n_events),
            DP_LU("bytes", op_push_queued(s->ps)), DP_LB("reset", reset));
    stream_pump(s);
    auth_free(a);
    return;
fail:
    dp_httpd_resp_finish(a->resp);
    auth_free(a);
}

static void on_config(struct dp_httpd_resp *resp, const struct dp_http_request *req, void *arg)
{
    struct op_server *srv = arg;
    struct auth_req *a = calloc(1, sizeof(*a));
    char since[32];

    if (a == NULL) {
        send_error(resp, 500, "out of memory");
        return;
    }
    if (!query_param(req, "node", a->node, sizeof(a->node)) || a->node[0] == '\0') {
        free(a);
        send_error(resp, 400, "node=<name> is required");
        return;
    }
    if (query_param(req, "since", since, sizeof(since))) {
        char *end;

        a->since = strtoull(since, &end, 10);
        a->has_since = *end == '\0' && since[0] != '\0';
    }
    authenticate(srv, resp, req, on_config_authenticated, a);
}

/* ------------------------------------------------------------------ roots, ready */

static void on_roots(struct dp_httpd_resp *resp, const struct dp_http_request *req, void *arg)
{
    struct op_server *srv = arg;

    (void)req;
    dp_httpd_resp_header(resp, "Content-Type", "application/x-pem-file");
    dp_httpd_resp_body(resp, op_ca(srv->op)->root_pem, strlen(op_ca(srv->op)->root_pem));
}

static void on_ready(struct dp_httpd_resp *resp, const struct dp_http_request *req, void *arg)
{
    struct op_server *srv = arg;

    (void)req;
    if (op_ready(srv->op))
        dp_httpd_resp_text(resp, 200, "ready\n");
    else
        dp_httpd_resp_text(resp, 503, "not ready: informers not synced\n");
}

/* ------------------------------------------------------------------ admission webhook */

static void on_validate(struct dp_httpd_resp *resp, const struct dp_http_request *req, void *arg)
{
    struct op_server *srv = arg;
    json_t *review = json_loadb(req->body, req->body_len, 0, NULL);
    json_t *request = json_object_get(review, "request"), *obj, *findings = NULL, *f;
    json_t *single = json_object(), *warnings = json_array(), *out;
    const char *uid = json_string_value(json_object_get(request, "uid"));
    const char *kind = json_string_value(json_object_get(json_object_get(request, "kind"), "kind"));
    /* the live caches, the reviewed object replacing its stored version */
    struct dp_analyze_inputs in = {.services = op_services(srv->op), .pods = op_pods(srv->op),
                                   .virtual_services = op_virtual_services(srv->op),
                                   .destination_rules = op_destination_rules(srv->op),
                                   .service_entries = op_service_entries(srv->op),
                                   .dns_domain = op_opts(srv->op)->mesh.dns_domain,
                                   .root_ns = op_opts(srv->op)->mesh.root_ns};
    json_t *merged = NULL;
    char denial[1024] = "", key[600];
    size_t off = 0, i;

    obj = json_object_get(request, "object");
    if (uid == NULL || kind == NULL || single == NULL || warnings == NULL) {
        json_decref(review);
        json_decref(single);
        json_decref(warnings);
        send_error(resp, 400, "not an AdmissionReview");
        return;
    }
    snprintf(key, sizeof(key), "%s/%s",
             json_string_value(json_object_get(request, "namespace")) ?: "",
             dp_kube_meta_str(obj, "name") ?: json_string_value(json_object_get(request, "name")) ?: "");
    if (json_is_object(obj)) {
        /* the object being written, with its namespace filled in (it may be omitted) */
        json_t *copy = json_deep_copy(obj);

        if (dp_kube_meta_str(copy, "namespace") == NULL && json_object_get(copy, "metadata"))
            json_object_set_new(json_object_get(copy, "metadata"), "namespace",
                                json_string(json_string_value(json_object_get(request, "namespace")) ?: "default"));
        json_object_set_new(single, key, copy);
    }
    /* the reviewed object is the only subject of its kind; others are references */
    if (strcmp(kind, "VirtualService") == 0) {
        in.virtual_services = single;
    } else if (strcmp(kind, "DestinationRule") == 0) {
        in.virtual_services = NULL;
        in.destination_rules = single;
    } else {
        in.virtual_services = NULL;
        in.destination_rules = NULL;
        if (strcmp(kind, "AuthorizationPolicy") == 0)
            in.authorization_policies = single;
        else if (strcmp(kind, "RequestAuthentication") == 0)
            in.request_authentications = single;
        else if (strcmp(kind, "Telemetry") == 0)
            in.telemetries = single;
        else if (strcmp(kind, "PeerAuthentication") == 0 &&
                 (merged = json_deep_copy(op_peer_authentications(srv->op) ?: single)) != NULL &&
                 json_object_update(merged, single) == 0)
            in.peer_authentications = merged; /* conflicts are with the other policies */
    }
    if (dp_analyze(&in, &findings) == 0) {
        json_array_foreach(findings, i, f) {
            const char *code = json_string_value(json_object_get(f, "code"));
            char line[700], fkey[600];

            snprintf(fkey, sizeof(fkey), "%s/%s",
                     json_string_value(json_object_get(f, "namespace")) ?: "",
                     json_string_value(json_object_get(f, "name")) ?: "");
            if (strcmp(json_string_value(json_object_get(f, "kind")) ?: "", kind) != 0 ||
                strcmp(fkey, key) != 0)
                continue; /* about another object */
            snprintf(line, sizeof(line), "%s: %s",
                     json_string_value(json_object_get(f, "path")),
                     json_string_value(json_object_get(f, "message")));
            if (dp_analyze_rejects(code)) {
                if (off < sizeof(denial) - 1)
                    off += (size_t)snprintf(denial + off, sizeof(denial) - off, "%s%s",
                                            off ? "; " : "", line);
                if (off >= sizeof(denial))
                    off = sizeof(denial) - 1;
            } else {
                json_array_append_new(warnings, json_string(line));
            }
        }
    }
    out = json_pack("{s:s,s:s,s:{s:s,s:b,s:o}}", "apiVersion", "admission.k8s.io/v1", "kind",
                    "AdmissionReview", "response", "uid", uid, "allowed", off == 0, "warnings",
                    warnings);
    if (off > 0) {
        json_object_set_new(json_object_get(out, "response"), "status",
                            json_pack("{s:i,s:s,s:s}", "code", 400, "reason", "Invalid",
                                      "message", denial));
        dp_info(SCOPE, "admission denied", DP_LS("kind", kind), DP_LS("object", key),
                DP_LS("reason", denial));
    }
    send_json(resp, 200, out);
    json_decref(findings);
    json_decref(single);
    json_decref(merged);
    json_decref(review);
}

/* ------------------------------------------------------------------ lifecycle */

static int register_metrics(struct op_server *srv, struct dp_metrics *m)
{
    static const char *const result_key[] = {"result"};
    static const char *const signed_v[] = {"signed"}, *const denied_v[] = {"denied"};
    struct dp_metric *f;
    int r;

    if (m == NULL) {
        r = dp_metrics_new(&m); /* private registry, leaked only with the process */
        if (r < 0)
            return r;
    }
    if ((r = dp_metrics_counter(m, "ambit_operator_config_pushes_total",
                                "Batches pushed to node agent config streams", NULL, 0, &f)) < 0 ||
        (r = dp_metric_series(f, NULL, 0, &srv->m_pushes)) < 0)
        return r;
    if ((r = dp_metrics_counter(m, "ambit_operator_config_push_events_total",
                                "Mesh object events pushed to node agents", NULL, 0, &f)) < 0 ||
        (r = dp_metric_series(f, NULL, 0, &srv->m_push_events)) < 0)
        return r;
    if ((r = dp_metrics_counter(m, "ambit_operator_csr_total", "Certificate requests by result",
                                result_key, 1, &f)) < 0 ||
        (r = dp_metric_series(f, signed_v, 1, &srv->m_signed)) < 0 ||
        (r = dp_metric_series(f, denied_v, 1, &srv->m_denied)) < 0)
        return r;
    if ((r = dp_metrics_gauge(m, "ambit_operator_connected_agents",
                              "Open node agent config streams", NULL, 0, &f)) < 0 ||
        (r = dp_metric_series(f, NULL, 0, &srv->m_agents)) < 0)
        return r;
    if ((r = dp_metrics_counter(m, "ambit_operator_config_streams_dropped_total",
                                "Config streams dropped because the agent could not keep up",
                                NULL, 0, &f)) < 0 ||
        (r = dp_metric_series(f, NULL, 0, &srv->m_dropped)) < 0)
        return r;
    if ((r = dp_metrics_histogram(m, "ambit_operator_config_push_seconds",
                                  "Time to serialise and queue one batch for one agent", NULL, 0,
                                  dp_metrics_latency_bounds, dp_metrics_latency_bounds_n,
                                  &f)) < 0 ||
        (r = dp_metric_series(f, NULL, 0, &srv->m_push_lat)) < 0)
        return r;
    return 0;
}

int op_server_new(struct op_ctx *op, const struct op_server_config *cfg, struct dp_metrics *m,
                  struct op_server **ret_srv, uint16_t *ret_port)
{
    struct dp_httpd_config hc = {.name = "operator"};
    struct op_server *srv;
    int r;

    srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return -ENOMEM;
    srv->op = op;
    srv->cfg = *cfg;
    dp_list_init(&srv->streams);
    r = cfg->webhook ? 0 : register_metrics(srv, m);
    if (r < 0)
        goto fail;
    if (!cfg->webhook) {
        r = op_push_new(&srv->push);
        if (r < 0)
            goto fail;
        op_subscribe(op, &srv->sub, on_push, srv);
        srv->subscribed = true;
    }
    /* streams keep at most PUMP_WINDOW in the connection (push.h holds the rest) */
    hc.max_stream_pending = DP_MAX(cfg->max_stream_pending, (size_t)PUMP_WINDOW * 2);
    hc.max_conns = 4096;
    hc.idle_timeout_ms = 300000;
    if (!cfg->plaintext) {
        r = make_ssl_ctx(srv);
        if (r < 0)
            goto fail;
        srv->transport.on_accept = tls_on_accept;
        srv->transport.read = tls_read;
        srv->transport.write = tls_write;
        srv->transport.close = tls_close;
        hc.transport = &srv->transport;
        hc.transport_arg = srv;
    }
    r = dp_httpd_new(op_loop(op), &hc, &srv->httpd);
    if (r < 0)
        goto fail;
    if (cfg->webhook) {
        r = dp_httpd_route(srv->httpd, DP_HTTP_MBIT(DP_HTTP_M_POST), "/validate", 0, on_validate,
                           srv);
        if (r < 0)
            goto fail;
    } else if ((r = dp_httpd_route(srv->httpd, DP_HTTP_MBIT(DP_HTTP_M_GET), "/v1/config", 0,
                                   on_config, srv)) < 0 ||
        (r = dp_httpd_route(srv->httpd, DP_HTTP_MBIT(DP_HTTP_M_POST), "/v1/certificates", 0,
                            on_certificates, srv)) < 0 ||
        (r = dp_httpd_route(srv->httpd, DP_HTTP_MBIT(DP_HTTP_M_GET), "/v1/roots", 0, on_roots,
                            srv)) < 0 ||
        (r = dp_httpd_route(srv->httpd, DP_HTTP_MBIT(DP_HTTP_M_GET), "/ready", 0, on_ready,
                            srv)) < 0)
        goto fail;
    r = dp_httpd_listen_tcp(srv->httpd, cfg->listen, NULL, ret_port);
    if (r < 0)
        goto fail;
    *ret_srv = srv;
    return 0;
fail:
    op_server_free(srv);
    return r;
}

void op_server_free(struct op_server *srv)
{
    if (srv == NULL)
        return;
    /* aborts held/streaming responses: their on_abort frees streams and auth requests */
    dp_httpd_free(srv->httpd);
    if (srv->subscribed)
        op_unsubscribe(&srv->sub);
    op_push_free(srv->push);
    SSL_CTX_free(srv->ssl_ctx);
    free(srv);
}

void op_server_set_ca_gate(struct op_server *srv, op_server_ca_gate_cb *cb, void *arg)
{
    srv->ca_gate = cb;
    srv->ca_gate_arg = arg;
}

unsigned op_server_streams(const struct op_server *srv)
{
    return srv->n_streams;
}
