/*
 * opclient.c — HTTPS client for the operator: CSR signing and the config stream.
 */
#include "opclient.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "buf.h"
#include "curlx.h"
#include "kube_config.h"
#include "ca.h"
#include "log.h"

#define SCOPE             "opclient"
#define MAX_RESPONSE      (1u << 20)  /* a certificate chain answer */
#define MAX_LINE          (16u << 20) /* one config event */
#define BACKOFF_MIN_MS    500
#define BACKOFF_MAX_MS    30000

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ------------------------------------------------------------------ shared request setup */

/* Configure `h` for <url><path>; *ret_hdrs and *ret_connect_to must be freed after the transfer. */
static void setup(CURL *h, const struct dp_opclient_cfg *cfg, const char *path,
                  struct curl_slist **ret_hdrs, struct curl_slist **ret_connect_to)
{
    char url[2048], hdr[16500];
    struct curl_slist *hdrs = NULL, *ct = NULL;
    size_t ul = strlen(cfg->url);

    while (ul > 0 && cfg->url[ul - 1] == '/')
        ul--;
    snprintf(url, sizeof(url), "%.*s%s", (int)ul, cfg->url, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http"); /* http only for tests */
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (cfg->root_cert)
        curl_easy_setopt(h, CURLOPT_CAINFO, cfg->root_cert);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(cfg->timeout_ms ? cfg->timeout_ms : 10000));
    char *token = NULL;
    if (cfg->token_file && dp_kube_read_token_file(cfg->token_file, &token) == 0) {
        snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", token);
        hdrs = curl_slist_append(hdrs, hdr);
        explicit_bzero(hdr, sizeof(hdr));
        explicit_bzero(token, strlen(token));
        free(token);
    }
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    if (cfg->connect_to && *cfg->connect_to) {
        /* "host:port:connect-host:connect-port" keeps TLS verification on the service name */
        CURLU *u = curl_url();
        char *host = NULL, *port = NULL;
        if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
            char spec[600];
            snprintf(spec, sizeof(spec), "%s:%s:%s", host, port, cfg->connect_to);
            ct = curl_slist_append(NULL, spec);
            curl_easy_setopt(h, CURLOPT_CONNECT_TO, ct);
        }
        curl_free(host);
        curl_free(port);
        curl_url_cleanup(u);
    }
    *ret_hdrs = hdrs;
    *ret_connect_to = ct;
}

/* ------------------------------------------------------------------ certificates */

/* The leaf must carry exactly `identity` as a URI SAN and match `key`. */
static int check_leaf(const char *leaf_pem, EVP_PKEY *key, const char *identity, char *errbuf,
                      size_t errsz)
{
    BIO *b = BIO_new_mem_buf(leaf_pem, -1);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    int r = -EINVAL;
    BIO_free(b);
    if (!x) {
        snprintf(errbuf, errsz, "operator answer: leaf certificate does not parse");
        return -EINVAL;
    }
    if (X509_check_private_key(x, key) != 1) {
        snprintf(errbuf, errsz, "operator answer: leaf certificate is not for our key");
        goto out;
    }
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    bool found = false;
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        if (g->type != GEN_URI)
            continue;
        const unsigned char *u = ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
        int ul = ASN1_STRING_length(g->d.uniformResourceIdentifier);
        if ((size_t)ul == strlen(identity) && memcmp(u, identity, (size_t)ul) == 0)
            found = true;
    }
    GENERAL_NAMES_free(names);
    if (!found) {
        snprintf(errbuf, errsz, "operator answer: leaf certificate lacks URI SAN %s", identity);
        goto out;
    }
    r = 0;
out:
    X509_free(x);
    return r;
}

int dp_opclient_fetch_cert(const struct dp_opclient_cfg *cfg, const char *identity,
                           unsigned ttl_s, char **ret_key_pem, json_t **ret_chain, char *errbuf,
                           size_t errsz)
{
    EVP_PKEY *key = NULL;
    X509_REQ *csr = NULL;
    char *csr_pem = NULL, *key_pem = NULL, *body_s = NULL;
    struct curl_slist *hdrs = NULL, *ct = NULL;
    struct dp_curl_sink resp = {0};
    json_t *body = NULL, *answer = NULL;
    CURL *h = NULL;
    long http = 0;
    int r;

    pthread_once(&curl_once, curl_init_once);
    errbuf[0] = '\0';
    if ((r = dp_ca_key_new(&key)) < 0 || (r = dp_ca_csr_new(key, identity, &csr)) < 0 ||
        (r = dp_pem_csr_to_pem(csr, &csr_pem)) < 0) {
        snprintf(errbuf, errsz, "cannot build a CSR for %s: %s", identity, strerror(-r));
        goto out;
    }
    body = json_pack("{s:s,s:s,s:I}", "csr", csr_pem, "identity", identity, "ttlSeconds",
                     (json_int_t)ttl_s);
    body_s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    h = curl_easy_init();
    if (!body_s || !h || dp_buf_new(4096, MAX_RESPONSE, &resp.buf) < 0) {
        r = -ENOMEM;
        goto out;
    }
    setup(h, cfg, "/v1/certificates", &hdrs, &ct);
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body_s);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(cfg->timeout_ms ? cfg->timeout_ms : 10000));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, dp_curl_sink_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
    CURLcode cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        r = resp.err ? resp.err : dp_curl_errno(cc);
        snprintf(errbuf, errsz, "operator %s: %s", cfg->url, curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http);
    json_error_t je;
    answer = json_loadb(dp_buf_head(resp.buf), resp.buf->len, 0, &je);
    if (http != 200) {
        const char *why = json_string_value(json_object_get(answer, "error"));
        snprintf(errbuf, errsz, "operator refused the certificate for %s: HTTP %ld%s%s", identity,
                 http, why ? ": " : "", why ? why : "");
        r = http == 401 ? -EACCES : http == 403 ? -EPERM : http == 400 ? -EINVAL : -EIO;
        goto out;
    }
    json_t *chain = json_object_get(answer, "certChain");
    if (!json_is_array(chain) || json_array_size(chain) < 2 ||
        !json_is_string(json_array_get(chain, 0))) {
        snprintf(errbuf, errsz, "operator answer: certChain missing or shorter than leaf + root");
        r = -EINVAL;
        goto out;
    }
    r = check_leaf(json_string_value(json_array_get(chain, 0)), key, identity, errbuf, errsz);
    if (r < 0)
        goto out;
    if ((r = dp_pem_key_to_pem(key, &key_pem)) < 0)
        goto out;
    *ret_key_pem = key_pem;
    key_pem = NULL;
    *ret_chain = json_incref(chain);
out:
    if (key_pem) {
        explicit_bzero(key_pem, strlen(key_pem));
        free(key_pem);
    }
    dp_buf_free(resp.buf);
    free(body_s);
    free(csr_pem);
    json_decref(body);
    json_decref(answer);
    curl_slist_free_all(hdrs);
    curl_slist_free_all(ct);
    if (h)
        curl_easy_cleanup(h);
    X509_REQ_free(csr);
    EVP_PKEY_free(key);
    return r;
}

/* ------------------------------------------------------------------ config stream */

struct dp_opstream {
    pthread_t thread;
    atomic_bool stop;
    atomic_uint_fast64_t since; /* last version seen (0 after a reset) */
    dp_opstream_cb *cb;
    void *arg;
    char *url, *connect_to, *root_cert, *token_file, *node;
    unsigned timeout_ms;
    bool progress; /* this connection delivered an event */
    /* line assembly */
    char *line;
    size_t line_len, line_cap;
    bool overflow;
};

static void handle_line(struct dp_opstream *st, const char *line, size_t len)
{
    json_error_t je;
    if (len == 0)
        return;
    json_t *ev = json_loadb(line, len, 0, &je);
    const char *type = json_string_value(json_object_get(ev, "type"));
    if (!type) {
        dp_debug(SCOPE, "ignoring a malformed config event", DP_LS("reason", je.text));
        json_decref(ev);
        return;
    }
    if (strcmp(type, "ping") != 0) {
        json_t *v = json_object_get(ev, "version");
        if (!strcmp(type, "reset"))
            atomic_store(&st->since, 0);
        if (json_is_integer(v) && (uint64_t)json_integer_value(v) > atomic_load(&st->since))
            atomic_store(&st->since, (uint64_t)json_integer_value(v));
        st->progress = true;
        st->cb(ev, 0, NULL, st->arg);
    }
    json_decref(ev);
}

static size_t on_stream_body(char *p, size_t sz, size_t n, void *arg)
{
    struct dp_opstream *st = arg;
    size_t len = sz * n;
    if (atomic_load(&st->stop))
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\n') {
            if (st->overflow)
                dp_debug(SCOPE, "config event longer than the limit dropped",
                         DP_LU("limit", MAX_LINE));
            else
                handle_line(st, st->line, st->line_len);
            st->line_len = 0;
            st->overflow = false;
            continue;
        }
        if (st->overflow)
            continue;
        if (st->line_len + 1 >= st->line_cap) {
            size_t ncap = st->line_cap ? st->line_cap * 2 : 64 * 1024;
            if (ncap > MAX_LINE) {
                st->overflow = true;
                continue;
            }
            char *nl = realloc(st->line, ncap);
            if (!nl)
                return 0;
            st->line = nl;
            st->line_cap = ncap;
        }
        st->line[st->line_len++] = p[i];
    }
    return len;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    struct dp_opstream *st = arg;
    (void)dt, (void)dn, (void)ut, (void)un;
    return atomic_load(&st->stop) ? 1 : 0;
}

static void sleep_ms_interruptible(struct dp_opstream *st, unsigned ms)
{
    while (ms > 0 && !atomic_load(&st->stop)) {
        unsigned step = ms > 50 ? 50 : ms;
        usleep(step * 1000u);
        ms -= step;
    }
}

static void *stream_thread(void *arg)
{
    struct dp_opstream *st = arg;
    unsigned backoff = BACKOFF_MIN_MS;
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)st;
    struct dp_opclient_cfg cfg = {.url = st->url, .connect_to = st->connect_to,
                                  .root_cert = st->root_cert, .token_file = st->token_file,
                                  .timeout_ms = st->timeout_ms};

    while (!atomic_load(&st->stop)) {
        char path[512], why[CURL_ERROR_SIZE] = "";
        char *enc = curl_easy_escape(NULL, st->node, 0);
        uint64_t since = atomic_load(&st->since);
        if (since)
            snprintf(path, sizeof(path), "/v1/config?node=%s&since=%llu", enc ? enc : "",
                     (unsigned long long)since);
        else
            snprintf(path, sizeof(path), "/v1/config?node=%s", enc ? enc : "");
        curl_free(enc);

        CURL *h = curl_easy_init();
        struct curl_slist *hdrs = NULL, *ct = NULL;
        long http = 0;
        CURLcode cc = CURLE_OUT_OF_MEMORY;
        char cerr[CURL_ERROR_SIZE] = "";
        st->progress = false;
        if (h) {
            setup(h, &cfg, path, &hdrs, &ct);
            curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_stream_body);
            curl_easy_setopt(h, CURLOPT_WRITEDATA, st);
            curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
            curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
            curl_easy_setopt(h, CURLOPT_XFERINFODATA, st);
            curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
            curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
            /* the operator pings idle streams; 60 s of silence means the stream is dead */
            curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
            curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
            curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
            st->line_len = 0;
            st->overflow = false;
            cc = curl_easy_perform(h);
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http);
            curl_slist_free_all(hdrs);
            curl_slist_free_all(ct);
            curl_easy_cleanup(h);
        }
        if (atomic_load(&st->stop))
            break;
        if (st->progress)
            backoff = BACKOFF_MIN_MS; /* it worked for a while: reconnect quickly */
        snprintf(why, sizeof(why), "%s", cerr[0] ? cerr : curl_easy_strerror(cc));
        st->cb(NULL, http, why, st->arg);
        unsigned jitter = backoff / 2 + (unsigned)(rand_r(&seed) % (backoff / 2 + 1));
        sleep_ms_interruptible(st, jitter);
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    return NULL;
}

static void stream_free(struct dp_opstream *st)
{
    free(st->url);
    free(st->connect_to);
    free(st->root_cert);
    free(st->token_file);
    free(st->node);
    free(st->line);
    free(st);
}

static char *dupz(const char *s)
{
    return s ? strdup(s) : NULL;
}

int dp_opstream_start(const struct dp_opclient_cfg *cfg, const char *node, dp_opstream_cb *cb,
                      void *arg, struct dp_opstream **ret_stream)
{
    struct dp_opstream *st = calloc(1, sizeof(*st));
    int r;

    pthread_once(&curl_once, curl_init_once);
    if (!st)
        return -ENOMEM;
    st->cb = cb;
    st->arg = arg;
    st->timeout_ms = cfg->timeout_ms;
    st->url = dupz(cfg->url);
    st->connect_to = dupz(cfg->connect_to);
    st->root_cert = dupz(cfg->root_cert);
    st->token_file = dupz(cfg->token_file);
    st->node = dupz(node);
    if (!st->url || !st->node || (cfg->connect_to && !st->connect_to) ||
        (cfg->root_cert && !st->root_cert) || (cfg->token_file && !st->token_file)) {
        r = -ENOMEM;
        goto fail;
    }
    r = -pthread_create(&st->thread, NULL, stream_thread, st);
    if (r < 0)
        goto fail;
    *ret_stream = st;
    return 0;
fail:
    stream_free(st);
    return r;
}

void dp_opstream_stop(struct dp_opstream *s)
{
    if (!s)
        return;
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    stream_free(s);
}

uint64_t dp_opstream_version(const struct dp_opstream *s)
{
    return atomic_load(&s->since);
}
