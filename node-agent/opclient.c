/*
 * opclient.c — operator config stream (own thread, blocking libcurl) and the CSR identity
 * provider.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "agent.h"
#include "ca.h"
#include "identity.h"
#include "log.h"
#include "mesh.h"
#include "opclient.h"
#include "tls.h"
#include "view.h"

#define TOKEN_MAX (64u * 1024u)
#define CERT_RESP_MAX (1u << 20)

static char *dupz(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Bearer header from the token file (re-read every time). NULL when no token is configured
 * or readable (the request then goes without one and the operator answers 401). */
static struct curl_slist *auth_headers(const char *token_file, struct curl_slist *h)
{
    if (!token_file)
        return h;
    FILE *f = fopen(token_file, "re");
    if (!f)
        return h;
    char *tok = malloc(TOKEN_MAX + 32);
    if (!tok) {
        fclose(f);
        return h;
    }
    size_t n = fread(tok + 22, 1, TOKEN_MAX, f);
    fclose(f);
    while (n > 0 && (tok[22 + n - 1] == '\n' || tok[22 + n - 1] == '\r' || tok[22 + n - 1] == ' '))
        n--;
    memcpy(tok, "Authorization: Bearer ", 22);
    tok[22 + n] = '\0';
    if (n > 0 && !memchr(tok + 22, '\n', n))
        h = curl_slist_append(h, tok);
    free(tok);
    return h;
}

static void common_opts(CURL *e, const struct na_opclient_config *cfg)
{
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    if (cfg->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, cfg->ca_file);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
}

/* ------------------------------------------------------------------ config stream */

struct na_opclient {
    struct na_agent *a;
    struct na_opclient_config cfg; /* strings owned */
    pthread_t thread;
    atomic_bool stop;
    atomic_uint_fast64_t version;
    struct dp_mesh_stream *stream;
    char *line;
    size_t line_len, line_cap;
    bool overflow;
    unsigned rejected;
};

static void feed_line(struct na_opclient *c, const char *line, size_t len)
{
    if (len == 0)
        return;
    struct dp_mesh_snapshot *snap = NULL;
    char err[512] = "";
    int r = dp_mesh_stream_feed_line(c->stream, line, len, &snap, err, sizeof(err));
    if (r == DP_MESH_FEED_PUBLISHED) {
        uint64_t v = dp_mesh_snapshot_version(snap);
        na_view_set(c->a, snap);
        if (atomic_exchange(&c->version, v) == 0)
            dp_info("node", "operator config synced", DP_LU("version", v));
        else
            dp_debug("node", "operator config updated", DP_LU("version", v));
    } else if (r < 0) {
        c->rejected++;
        dp_warn("node", "operator config event rejected, keeping the previous state",
                DP_LS("reason", err), DP_LERR(r));
    }
}

static size_t on_stream_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct na_opclient *c = arg;
    size_t n = size * nmemb;
    if (atomic_load(&c->stop))
        return 0; /* abort the transfer */
    for (size_t i = 0; i < n; i++) {
        char ch = ptr[i];
        if (ch == '\n') {
            if (!c->overflow)
                feed_line(c, c->line, c->line_len);
            else
                dp_warn("node", "operator config line too long, dropped",
                        DP_LU("limit", DP_MESH_MAX_EVENT_LINE));
            c->line_len = 0;
            c->overflow = false;
            continue;
        }
        if (c->overflow)
            continue;
        if (c->line_len + 1 > c->line_cap) {
            size_t cap = c->line_cap ? c->line_cap * 2 : 64 * 1024;
            if (cap > DP_MESH_MAX_EVENT_LINE) {
                c->overflow = true;
                continue;
            }
            char *nl = realloc(c->line, cap);
            if (!nl)
                return 0;
            c->line = nl;
            c->line_cap = cap;
        }
        c->line[c->line_len++] = ch;
    }
    return n;
}

static int on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t d, curl_off_t e)
{
    struct na_opclient *c = arg;
    (void)a;
    (void)b;
    (void)d;
    (void)e;
    return atomic_load(&c->stop) ? 1 : 0;
}

static void sleep_ms(struct na_opclient *c, unsigned ms)
{
    for (unsigned t = 0; t < ms && !atomic_load(&c->stop); t += 50) {
        struct timespec ts = {.tv_nsec = 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void *config_thread(void *arg)
{
    struct na_opclient *c = arg;
    unsigned backoff = 500;
    while (!atomic_load(&c->stop)) {
        CURL *e = curl_easy_init();
        if (!e) {
            sleep_ms(c, backoff);
            continue;
        }
        char *node = curl_easy_escape(e, c->cfg.node, 0);
        char url[2048];
        uint64_t since = dp_mesh_stream_version(c->stream);
        if (since)
            snprintf(url, sizeof(url), "%s/v1/config?node=%s&since=%llu", c->cfg.url,
                     node ? node : "", (unsigned long long)since);
        else
            snprintf(url, sizeof(url), "%s/v1/config?node=%s", c->cfg.url, node ? node : "");
        curl_free(node);
        struct curl_slist *h = auth_headers(c->cfg.token_file, NULL);
        common_opts(e, &c->cfg);
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_stream_data);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
        curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(e, CURLOPT_XFERINFODATA, c);
        curl_easy_setopt(e, CURLOPT_FAILONERROR, 1L);
        /* the operator pings every 15 s: 60 s without a byte means the stream is dead */
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 60L);
        char errbuf[CURL_ERROR_SIZE] = "";
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
        c->line_len = 0;
        c->overflow = false;
        uint64_t v0 = atomic_load(&c->version);
        CURLcode rc = curl_easy_perform(e);
        long status = 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        curl_slist_free_all(h);
        curl_easy_cleanup(e);
        if (atomic_load(&c->stop))
            break;
        if (atomic_load(&c->version) != v0)
            backoff = 500; /* the stream made progress: reconnect quickly */
        dp_warn("node", "operator config stream ended, keeping the last good config",
                DP_LS("url", c->cfg.url), DP_LI("status", status),
                DP_LS("reason", errbuf[0] ? errbuf : curl_easy_strerror(rc)),
                DP_LU("retry_ms", backoff));
        sleep_ms(c, backoff);
        backoff = backoff * 2 > 30000 ? 30000 : backoff * 2;
    }
    return NULL;
}

static void cfg_copy_free(struct na_opclient_config *c)
{
    free((char *)c->url);
    free((char *)c->token_file);
    free((char *)c->ca_file);
    free((char *)c->node);
}

static int cfg_copy(const struct na_opclient_config *in, struct na_opclient_config *out)
{
    out->url = dupz(in->url);
    out->token_file = dupz(in->token_file);
    out->ca_file = dupz(in->ca_file);
    out->node = dupz(in->node ? in->node : "");
    if (!out->url || !out->node || (in->token_file && !out->token_file) ||
        (in->ca_file && !out->ca_file)) {
        cfg_copy_free(out);
        return -ENOMEM;
    }
    /* no trailing slash, so paths join cleanly */
    size_t l = strlen(out->url);
    while (l > 0 && out->url[l - 1] == '/')
        ((char *)out->url)[--l] = '\0';
    return 0;
}

int na_opclient_start(struct na_agent *a, const struct na_opclient_config *cfg,
                      struct na_opclient **ret_c)
{
    struct na_opclient *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->a = a;
    int ret = cfg_copy(cfg, &c->cfg);
    if (ret < 0)
        goto fail;
    /* the file config (if any) is the base the stream's objects are folded onto */
    struct na_view *v = na_view_get(a);
    ret = dp_mesh_stream_new((const struct dp_mesh_snapshot *)v, &c->stream);
    na_view_put(v);
    if (ret < 0)
        goto fail_cfg;
    ret = -pthread_create(&c->thread, NULL, config_thread, c);
    if (ret < 0)
        goto fail_stream;
    *ret_c = c;
    return 0;
fail_stream:
    dp_mesh_stream_free(c->stream);
fail_cfg:
    cfg_copy_free(&c->cfg);
fail:
    free(c);
    return ret;
}

void na_opclient_stop(struct na_opclient *c)
{
    if (!c)
        return;
    atomic_store(&c->stop, true);
    pthread_join(c->thread, NULL);
    dp_mesh_stream_free(c->stream);
    free(c->line);
    cfg_copy_free(&c->cfg);
    free(c);
}

uint64_t na_opclient_version(const struct na_opclient *c)
{
    return c ? atomic_load(&c->version) : 0;
}

/* ------------------------------------------------------------------ CSR identity provider */

struct op_idp {
    struct na_opclient_config cfg;
    unsigned ttl_s;
};

struct membuf {
    char *p;
    size_t len;
    bool overflow;
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct membuf *m = arg;
    size_t n = size * nmemb;
    if (m->len + n > CERT_RESP_MAX) {
        m->overflow = true;
        return 0;
    }
    char *np = realloc(m->p, m->len + n + 1);
    if (!np)
        return 0;
    memcpy(np + m->len, ptr, n);
    m->p = np;
    m->len += n;
    m->p[m->len] = '\0';
    return n;
}

static int op_issue(struct na_identity *self, const char *spiffe, struct dp_identity **ret_id)
{
    struct op_idp *o = self->priv;
    EVP_PKEY *key = NULL;
    X509_REQ *csr = NULL;
    char *csr_pem = NULL, *key_pem = NULL, *body = NULL, *chain = NULL;
    struct membuf resp = {0};
    json_t *j = NULL;
    CURL *e = NULL;
    struct curl_slist *h = NULL;
    int ret = dp_ca_key_new(&key);
    if (ret < 0)
        goto out;
    if ((ret = dp_ca_csr_new(key, spiffe, &csr)) < 0 || (ret = dp_pem_csr_to_pem(csr, &csr_pem)) < 0 ||
        (ret = dp_pem_key_to_pem(key, &key_pem)) < 0)
        goto out;
    json_t *req = json_pack("{s:s, s:s, s:I}", "csr", csr_pem, "identity", spiffe, "ttlSeconds",
                            (json_int_t)o->ttl_s);
    body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    e = curl_easy_init();
    if (!body || !e) {
        ret = -ENOMEM;
        goto out;
    }
    char url[2048];
    snprintf(url, sizeof(url), "%s/v1/certificates", o->cfg.url);
    h = auth_headers(o->cfg.token_file, NULL);
    h = curl_slist_append(h, "Content-Type: application/json");
    common_opts(e, &o->cfg);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &resp);
    CURLcode rc = curl_easy_perform(e);
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK || status != 200) {
        dp_warn("node", "certificate request failed", DP_LS("identity", spiffe),
                DP_LI("status", status), DP_LS("reason", curl_easy_strerror(rc)),
                DP_LS("body", resp.p ? resp.p : ""));
        ret = rc != CURLE_OK ? -ECONNREFUSED : -EACCES;
        goto out;
    }
    json_error_t jerr;
    j = json_loadb(resp.p ? resp.p : "", resp.len, 0, &jerr);
    json_t *arr = json_object_get(j, "certChain");
    size_t n = json_array_size(arr);
    if (n == 0) {
        ret = -EBADMSG;
        goto out;
    }
    /* chain = every element (leaf first); roots = the last one */
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        if (!s) {
            ret = -EBADMSG;
            goto out;
        }
        total += strlen(s) + 1;
    }
    chain = malloc(total + 1);
    if (!chain) {
        ret = -ENOMEM;
        goto out;
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        size_t l = strlen(s);
        memcpy(chain + off, s, l);
        off += l;
        if (l == 0 || s[l - 1] != '\n')
            chain[off++] = '\n';
    }
    chain[off] = '\0';
    const char *root = json_string_value(json_array_get(arr, n - 1));
    const char *why = NULL;
    ret = dp_identity_from_pem(key_pem, strlen(key_pem), chain, off, root, strlen(root), ret_id,
                               &why);
    if (ret < 0)
        dp_warn("node", "certificate from the operator unusable", DP_LS("identity", spiffe),
                DP_LS("reason", why ? why : ""));
    else if (strcmp(dp_identity_name(*ret_id), spiffe) != 0) {
        dp_warn("node", "certificate from the operator has the wrong SAN",
                DP_LS("identity", spiffe), DP_LS("got", dp_identity_name(*ret_id)));
        dp_identity_unref(*ret_id);
        ret = -EBADMSG;
    }
out:
    json_decref(j);
    free(resp.p);
    free(chain);
    free(body);
    if (key_pem) {
        OPENSSL_cleanse(key_pem, strlen(key_pem));
        free(key_pem);
    }
    free(csr_pem);
    X509_REQ_free(csr);
    EVP_PKEY_free(key);
    curl_slist_free_all(h);
    if (e)
        curl_easy_cleanup(e);
    return ret;
}

static void op_free(struct na_identity *self)
{
    struct op_idp *o = self->priv;
    if (!o)
        return;
    cfg_copy_free(&o->cfg);
    free(o);
}

static const struct na_identity_ops op_ops = {
        .name = "operator",
        .issue = op_issue,
        .free = op_free,
};

int na_identity_operator_new(const struct na_opclient_config *cfg, unsigned ttl_s,
                             struct na_identity **ret_idp)
{
    struct na_identity *idp = calloc(1, sizeof(*idp));
    struct op_idp *o = calloc(1, sizeof(*o));
    int ret = -ENOMEM;
    if (!idp || !o)
        goto fail;
    ret = cfg_copy(cfg, &o->cfg);
    if (ret < 0)
        goto fail;
    ret = dp_idstore_new(&idp->store);
    if (ret < 0) {
        cfg_copy_free(&o->cfg);
        goto fail;
    }
    o->ttl_s = ttl_s ? ttl_s : 86400;
    pthread_mutex_init(&idp->issue_mu, NULL);
    idp->ops = &op_ops;
    idp->priv = o;
    *ret_idp = idp;
    return 0;
fail:
    free(o);
    free(idp);
    return ret;
}
