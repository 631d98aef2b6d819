/*
 * servers.c — the agent's local HTTP/1.1 endpoints on worker 0's loop. One request per
 * connection (Connection: close): these are control/scrape endpoints, not a data path. The
 * request parser is dataplane/http (hard limits on head and body).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "agent.h"
#include "buf.h"
#include "http.h"
#include "log.h"
#include "mesh.h"
#include "opclient.h"
#include "pod.h"
#include "servers.h"
#include "telemetry.h"
#include "tls.h"
#include "identity.h"
#include "view.h"
#include "worker.h"

#define REQ_TIMEOUT_MS 10000
#define OUT_LIMIT      (64u << 20)

struct srv;
struct resp {
    int status;
    const char *ctype;
    struct dp_buf *body;
};
typedef void handler_fn(struct srv *s, const struct dp_http_request *req, struct resp *r);

struct srv {
    const char *name;
    int fd;
    struct dp_io io;
    handler_fn *handler;
    struct na_agent *a;
    char path[256]; /* unix socket path to unlink, or "" */
};

struct hconn {
    int fd;
    struct dp_io io;
    struct srv *srv;
    struct dp_http_parser p;
    struct dp_buf *out;
    struct dp_timer timeout;
    struct dp_defer release;
    bool closing;
};

static void hconn_free_cb(struct dp_loop *loop, void *arg)
{
    struct hconn *c = arg;
    (void)loop;
    dp_http_parser_done(&c->p);
    dp_buf_free(c->out);
    free(c);
}

static void hconn_close(struct hconn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    struct dp_loop *l = c->srv->a->workers[0].loop;
    dp_timer_cancel(&c->timeout);
    dp_loop_del_io(l, &c->io);
    close(c->fd);
    dp_loop_defer(l, &c->release);
}

static void flush_out(struct hconn *c)
{
    while (c->out && c->out->len > 0) {
        ssize_t n = dp_buf_write_fd(c->out, c->fd);
        if (n == -EAGAIN) {
            dp_loop_mod_io(c->srv->a->workers[0].loop, &c->io, DP_EV_WRITE);
            return;
        }
        if (n < 0)
            break;
    }
    hconn_close(c);
}

static void respond(struct hconn *c, int status, const char *ctype, const void *body, size_t len,
                    bool head)
{
    if (dp_buf_new(len + 256, OUT_LIMIT, &c->out) < 0 ||
        dp_http_append_response(&c->out, status, ctype, body, len, true, head) < 0) {
        hconn_close(c);
        return;
    }
    flush_out(c);
}

static void on_hconn_io(struct dp_loop *loop, int fd, unsigned events, void *arg)
{
    struct hconn *c = arg;
    (void)loop;
    (void)events;
    if (c->out) {
        flush_out(c);
        return;
    }
    char buf[16384];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EAGAIN)
        return;
    if (n <= 0) {
        hconn_close(c);
        return;
    }
    const char *err = NULL;
    int r = dp_http_parser_feed(&c->p, buf, (size_t)n, NULL, &err);
    if (r == DP_HTTP_AGAIN)
        return;
    if (r < 0) {
        char msg[160];
        int len = snprintf(msg, sizeof(msg), "{\"error\": \"%s\"}\n", err ? err : "bad request");
        respond(c, dp_http_error_status(r), "application/json", msg, (size_t)len, false);
        return;
    }
    struct resp resp = {.status = 500, .ctype = "text/plain"};
    if (dp_buf_new(4096, OUT_LIMIT, &resp.body) < 0) {
        hconn_close(c);
        return;
    }
    c->srv->handler(c->srv, &c->p.req, &resp);
    respond(c, resp.status, resp.ctype, dp_buf_head(resp.body), resp.body->len,
            c->p.req.method == DP_HTTP_M_HEAD);
    dp_buf_free(resp.body);
}

static void on_hconn_timeout(struct dp_loop *loop, void *arg)
{
    (void)loop;
    hconn_close(arg);
}

static void on_srv_accept(struct dp_loop *loop, int fd, unsigned events, void *arg)
{
    struct srv *s = arg;
    (void)events;
    for (int i = 0; i < 32; i++) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0)
            return;
        struct hconn *c = calloc(1, sizeof(*c));
        if (!c || dp_http_parser_init(&c->p, NULL) < 0) {
            free(c);
            close(cfd);
            continue;
        }
        c->fd = cfd;
        c->srv = s;
        dp_io_init(&c->io, cfd, on_hconn_io, c);
        dp_timer_init(&c->timeout, on_hconn_timeout, c);
        dp_defer_init(&c->release, hconn_free_cb, c);
        if (dp_loop_add_io(loop, &c->io, DP_EV_READ) < 0) {
            dp_http_parser_done(&c->p);
            free(c);
            close(cfd);
            continue;
        }
        dp_timer_arm(loop, &c->timeout, REQ_TIMEOUT_MS);
    }
}

/* ------------------------------------------------------------------ handlers */

static void text(struct resp *r, int status, const char *s)
{
    r->status = status;
    r->ctype = "text/plain; charset=utf-8";
    dp_buf_append_str(&r->body, s);
}

static void json_resp(struct resp *r, int status, json_t *j)
{
    r->status = status;
    r->ctype = "application/json";
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (s) {
        dp_buf_append_str(&r->body, s);
        dp_buf_append_str(&r->body, "\n");
        free(s);
    }
    json_decref(j);
}

static bool is_get(const struct dp_http_request *req)
{
    return req->method == DP_HTTP_M_GET || req->method == DP_HTTP_M_HEAD;
}

static void h_ready(struct srv *s, const struct dp_http_request *req, struct resp *r)
{
    if (!is_get(req) || strcmp(req->path, "/healthz/ready") != 0) {
        text(r, 404, "not found\n");
        return;
    }
    if (s->a->opclient && na_opclient_version(s->a->opclient) == 0)
        text(r, 503, "waiting for the operator config\n");
    else if (atomic_load(&s->a->ready) && !atomic_load(&s->a->draining))
        text(r, 200, "ready\n");
    else
        text(r, 503, atomic_load(&s->a->draining) ? "draining\n" : "not ready\n");
}

static void h_admin(struct srv *s, const struct dp_http_request *req, struct resp *r);

static void h_metrics(struct srv *s, const struct dp_http_request *req, struct resp *r)
{
    /* the metrics port also serves the (key-free) config dump read-only, so `ambitctl
     * ztunnel-config` can read it through the API server's pod proxy: the admin port is
     * loopback-only and the API server cannot reach a node's loopback */
    if (is_get(req) && strcmp(req->path, "/config_dump") == 0) {
        h_admin(s, req, r);
        return;
    }
    if (!is_get(req) ||
        (strcmp(req->path, "/metrics") != 0 && strcmp(req->path, "/stats/prometheus") != 0)) {
        text(r, 404, "not found\n");
        return;
    }
    struct na_agent *a = s->a;
    if (na_telemetry_render(a->tel, &r->body) < 0) {
        text(r, 500, "exposition failed\n");
        return;
    }
    unsigned pods = 0, conns = 0;
    pthread_mutex_lock(&a->pods_mu);
    struct dp_list *it;
    dp_list_for_each(it, &a->pods) pods++;
    pthread_mutex_unlock(&a->pods_mu);
    for (unsigned i = 0; i < a->nworkers; i++)
        conns += atomic_load(&a->workers[i].conns);
    dp_buf_appendf(&r->body,
                   "# HELP ambit_active_pods Pods the node agent is proxying.\n"
                   "# TYPE ambit_active_pods gauge\n"
                   "ambit_active_pods %u\n"
                   "# HELP istio_tcp_sockets_open Open proxied TCP connections.\n"
                   "# TYPE istio_tcp_sockets_open gauge\n"
                   "istio_tcp_sockets_open %u\n",
                   pods, conns);
    r->status = 200;
    r->ctype = "text/plain; version=0.0.4; charset=utf-8";
}

static char *iso8601(int64_t t, char *buf, size_t sz)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, sz, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

static void add_cert(struct dp_identity *id, void *arg)
{
    json_t *arr = arg;
    char nb[32], na[32];
    int64_t now = (int64_t)time(NULL);
    /* public material only: the chain and roots PEM, serial, validity — never the key */
    json_array_append_new(
            arr, json_pack("{s:s, s:s, s:[{s:s, s:s, s:s, s:s}], s:s}", "identity",
                           dp_identity_name(id), "state",
                           dp_identity_expired(id, now) ? "Expired" : "Available", "certChain",
                           "pem", dp_identity_chain_pem(id), "serialNumber",
                           dp_identity_serial(id), "validFrom",
                           iso8601(dp_identity_not_before(id), nb, sizeof(nb)), "expirationTime",
                           iso8601(dp_identity_not_after(id), na, sizeof(na)), "rootCert",
                           dp_identity_roots_pem(id)));
}

static void h_admin(struct srv *s, const struct dp_http_request *req, struct resp *r)
{
    struct na_agent *a = s->a;
    if (!is_get(req)) {
        text(r, 405, "method not allowed\n");
        return;
    }
    if (strcmp(req->path, "/") == 0) {
        text(r, 200, "ambit-node admin\n  /config_dump\n  /healthz/ready (15021)\n"
                     "  /metrics (15020)\n");
        return;
    }
    if (strcmp(req->path, "/config_dump") != 0) {
        text(r, 404, "not found\n");
        return;
    }
    struct na_view *v = na_view_get(a);
    json_t *dump = dp_mesh_snapshot_to_json((const struct dp_mesh_snapshot *)v);
    na_view_put(v);
    if (!dump)
        dump = json_object();
    json_t *certs = json_array();
    if (a->identity)
        dp_idstore_foreach(a->identity->store, add_cert, certs);
    json_object_set_new(dump, "certificates", certs);
    json_t *state = json_object();
    pthread_mutex_lock(&a->pods_mu);
    struct dp_list *it;
    dp_list_for_each(it, &a->pods)
    {
        struct na_pod *p = dp_container_of(it, struct na_pod, link);
        json_t *ips = json_array();
        for (unsigned i = 0; i < p->nips; i++) {
            char buf[64];
            na_addr_str((struct sockaddr *)&p->ips[i], buf, sizeof(buf));
            char *colon = strrchr(buf, ':');
            if (colon)
                *colon = '\0';
            json_array_append_new(ips, json_string(buf));
        }
        json_object_set_new(state, p->uid,
                            json_pack("{s:s, s:{s:s, s:s, s:o}, s:s, s:I}", "state", "Up",
                                      "info", "namespace", p->ns, "name", p->name, "ips", ips,
                                      "netns", p->netns_path, "worker",
                                      (json_int_t)p->w->index));
    }
    pthread_mutex_unlock(&a->pods_mu);
    json_object_set_new(dump, "workloadState", state);
    json_object_set_new(dump, "config",
                        json_pack("{s:s, s:s?, s:i, s:i, s:s, s:s?, s:I}", "node",
                                  a->opt.node_name, "configFile", a->opt.config_path, "workers",
                                  (int)a->nworkers, "drainMs", (int)a->opt.drain_ms,
                                  "identityProvider",
                                  a->identity ? a->identity->ops->name : "none", "operator",
                                  a->opt.operator_url,
                                  "configVersion", (json_int_t)na_opclient_version(a->opclient)));
    json_resp(r, 200, dump);
}

static void h_cni(struct srv *s, const struct dp_http_request *req, struct resp *r)
{
    struct na_agent *a = s->a;
    if (req->method == DP_HTTP_M_POST && strcmp(req->path, "/v1/pods") == 0) {
        json_error_t jerr;
        json_t *j = json_loadb(req->body, req->body_len, 0, &jerr);
        if (!json_is_object(j)) {
            json_decref(j);
            json_resp(r, 400, json_pack("{s:s}", "error", "body: expected a JSON object"));
            return;
        }
        struct na_pod_spec spec = {
                .uid = json_string_value(json_object_get(j, "uid")),
                .netns = json_string_value(json_object_get(j, "netns")),
                .ns = json_string_value(json_object_get(j, "namespace")),
                .name = json_string_value(json_object_get(j, "name")),
        };
        json_t *ips = json_object_get(j, "ips");
        size_t i;
        json_t *ip;
        json_array_foreach(ips, i, ip)
        {
            if (spec.nips < NA_POD_MAX_IPS && json_is_string(ip))
                spec.ips[spec.nips++] = json_string_value(ip);
        }
        if (!spec.uid || !spec.netns) {
            json_decref(j);
            json_resp(r, 400, json_pack("{s:s}", "error", "body: uid and netns are required"));
            return;
        }
        int ret = na_pod_adopt(a, &spec);
        if (ret < 0) {
            char msg[256];
            snprintf(msg, sizeof(msg), "cannot adopt pod %s (netns %s): %s", spec.uid,
                     spec.netns, strerror(-ret));
            dp_warn("node", "cni adopt failed", DP_LS("uid", spec.uid), DP_LERR(ret));
            json_resp(r, ret == -EBADMSG ? 400 : 503, json_pack("{s:s}", "error", msg));
        } else {
            json_resp(r, 200, json_pack("{s:b}", "adopted", 1));
        }
        json_decref(j);
        return;
    }
    if (req->method == DP_HTTP_M_DELETE && strncmp(req->path, "/v1/pods/", 9) == 0 &&
        req->path[9]) {
        na_pod_release(a, req->path + 9);
        json_resp(r, 200, json_pack("{s:b}", "released", 1));
        return;
    }
    json_resp(r, 404, json_pack("{s:s}", "error", "not found"));
}

/* ------------------------------------------------------------------ listeners */

static int parse_hostport(const char *s, struct sockaddr_in *ret)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof(host))
        return -EINVAL;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port <= 0 || port > 65535)
        return -EINVAL;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
        return -EINVAL;
    *ret = sin;
    return 0;
}

static int srv_start(struct na_agent *a, struct srv *s, const char *name, const char *addr,
                     bool unix_sock, handler_fn *h)
{
    s->name = name;
    s->a = a;
    s->handler = h;
    s->fd = -1;
    int fd, ret;
    if (unix_sock) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        if (strlen(addr) >= sizeof(sun.sun_path))
            return -ENAMETOOLONG;
        strcpy(sun.sun_path, addr);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        unlink(addr);
        if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
            goto fail_errno;
        chmod(addr, 0600);
        snprintf(s->path, sizeof(s->path), "%s", addr);
    } else {
        struct sockaddr_in sin;
        ret = parse_hostport(addr, &sin);
        if (ret < 0)
            return ret;
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
            goto fail_errno;
    }
    if (listen(fd, 128) < 0)
        goto fail_errno;
    s->fd = fd;
    dp_io_init(&s->io, fd, on_srv_accept, s);
    ret = dp_loop_add_io(a->workers[0].loop, &s->io, DP_EV_READ);
    if (ret < 0) {
        close(fd);
        s->fd = -1;
        return ret;
    }
    return 0;
fail_errno:
    ret = -errno;
    close(fd);
    return ret;
}

static void srv_stop(struct na_agent *a, struct srv *s)
{
    if (!s || s->fd < 0)
        return;
    dp_loop_del_io(a->workers[0].loop, &s->io);
    close(s->fd);
    s->fd = -1;
    if (s->path[0])
        unlink(s->path);
}

struct servers {
    struct srv cni, metrics, ready, admin;
};

int na_servers_start(struct na_agent *a)
{
    struct servers *ss = calloc(1, sizeof(*ss));
    if (!ss)
        return -ENOMEM;
    ss->cni.fd = ss->metrics.fd = ss->ready.fd = ss->admin.fd = -1;
    a->cni_server = ss;
    char path[512];
    mkdir(a->opt.run_dir, 0755);
    snprintf(path, sizeof(path), "%s/cni.sock", a->opt.run_dir);
    struct {
        struct srv *s;
        const char *name, *addr;
        bool unix_sock;
        handler_fn *h;
    } list[] = {
            {&ss->cni, "cni", path, true, h_cni},
            {&ss->metrics, "metrics", a->opt.metrics_addr, false, h_metrics},
            {&ss->ready, "readiness", a->opt.ready_addr, false, h_ready},
            {&ss->admin, "admin", a->opt.admin_addr, false, h_admin},
    };
    for (size_t i = 0; i < DP_ARRAY_SIZE(list); i++) {
        int ret = srv_start(a, list[i].s, list[i].name, list[i].addr, list[i].unix_sock,
                            list[i].h);
        if (ret < 0) {
            dp_error("node", "cannot listen", DP_LS("server", list[i].name),
                     DP_LS("addr", list[i].addr), DP_LERR(ret));
            return ret;
        }
    }
    return 0;
}

void na_servers_stop_cni(struct na_agent *a)
{
    struct servers *ss = a->cni_server;
    if (ss)
        srv_stop(a, &ss->cni);
}

void na_servers_free(struct na_agent *a)
{
    struct servers *ss = a->cni_server;
    if (!ss)
        return;
    srv_stop(a, &ss->cni);
    srv_stop(a, &ss->metrics);
    srv_stop(a, &ss->ready);
    srv_stop(a, &ss->admin);
    free(ss);
    a->cni_server = NULL;
}
