/*
 * kube.c — resource paths, error mapping, the blocking client and object helpers. See kube.h.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "common.h"
#include "curlx.h"
#include "kube.h"

#define RES(sym, g, v, r, k, nsd)                                                                  \
    const struct dp_kube_resource sym = {.group = g, .version = v, .resource = r, .kind = k,       \
                                         .namespaced = nsd}
RES(DP_KUBE_RES_NAMESPACES, "", "v1", "namespaces", "Namespace", false);
RES(DP_KUBE_RES_PODS, "", "v1", "pods", "Pod", true);
RES(DP_KUBE_RES_SERVICES, "", "v1", "services", "Service", true);
RES(DP_KUBE_RES_ENDPOINTSLICES, "discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", true);
RES(DP_KUBE_RES_NODES, "", "v1", "nodes", "Node", false);
RES(DP_KUBE_RES_SERVICEACCOUNTS, "", "v1", "serviceaccounts", "ServiceAccount", true);
RES(DP_KUBE_RES_SECRETS, "", "v1", "secrets", "Secret", true);
RES(DP_KUBE_RES_CONFIGMAPS, "", "v1", "configmaps", "ConfigMap", true);
RES(DP_KUBE_RES_LEASES, "coordination.k8s.io", "v1", "leases", "Lease", true);
RES(DP_KUBE_RES_EVENTS, "events.k8s.io", "v1", "events", "Event", true);
RES(DP_KUBE_RES_TOKENREVIEWS, "authentication.k8s.io", "v1", "tokenreviews", "TokenReview", false);
RES(DP_KUBE_RES_CRDS, "apiextensions.k8s.io", "v1", "customresourcedefinitions",
    "CustomResourceDefinition", false);
RES(DP_KUBE_RES_GATEWAYS, "gateway.networking.k8s.io", "v1", "gateways", "Gateway", true);
RES(DP_KUBE_RES_GATEWAYCLASSES, "gateway.networking.k8s.io", "v1", "gatewayclasses",
    "GatewayClass", false);
RES(DP_KUBE_RES_HTTPROUTES, "gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", true);
RES(DP_KUBE_RES_VIRTUALSERVICES, "networking.istio.io", "v1", "virtualservices", "VirtualService",
    true);
RES(DP_KUBE_RES_DESTINATIONRULES, "networking.istio.io", "v1", "destinationrules",
    "DestinationRule", true);
RES(DP_KUBE_RES_ISTIO_GATEWAYS, "networking.istio.io", "v1", "gateways", "Gateway", true);
RES(DP_KUBE_RES_SERVICEENTRIES, "networking.istio.io", "v1", "serviceentries", "ServiceEntry",
    true);
RES(DP_KUBE_RES_PEERAUTHENTICATIONS, "security.istio.io", "v1", "peerauthentications",
    "PeerAuthentication", true);
RES(DP_KUBE_RES_AUTHORIZATIONPOLICIES, "security.istio.io", "v1", "authorizationpolicies",
    "AuthorizationPolicy", true);
RES(DP_KUBE_RES_REQUESTAUTHENTICATIONS, "security.istio.io", "v1", "requestauthentications",
    "RequestAuthentication", true);
RES(DP_KUBE_RES_TELEMETRIES, "telemetry.istio.io", "v1", "telemetries", "Telemetry", true);
RES(DP_KUBE_RES_MESHES, "install.ambit.dev", "v1alpha1", "meshes", "Mesh", false);
RES(DP_KUBE_RES_VALIDATING_WEBHOOK_CONFIGS, "admissionregistration.k8s.io", "v1",
    "validatingwebhookconfigurations", "ValidatingWebhookConfiguration", false);

/* ------------------------------------------------------------------ paths */

char *dp_kube_urlencode(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s), o = 0;
    char *out = malloc(n * 3 + 1);

    if (out == NULL)
        return NULL;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return out;
}

static bool segment_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 253 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (c <= 0x20 || c >= 0x7f || c == '/' || c == '?' || c == '#' || c == '%')
            return false;
    }
    return true;
}

static int add_query(FILE *f, bool *first, const char *key, const char *val)
{
    char *enc = dp_kube_urlencode(val);

    if (enc == NULL)
        return -ENOMEM;
    fprintf(f, "%c%s=%s", *first ? '?' : '&', key, enc);
    *first = false;
    free(enc);
    return 0;
}

int dp_kube_path(const struct dp_kube_resource *res, const char *ns, const char *name,
                 const char *sub, const struct dp_kube_list_opts *opts, char **ret_path)
{
    char *out = NULL;
    size_t outlen = 0;
    bool first = true;
    FILE *f;
    int r = 0;

    if ((ns != NULL && res->namespaced && !segment_ok(ns)) || (name != NULL && !segment_ok(name)) ||
        (sub != NULL && (!segment_ok(sub) || name == NULL)))
        return -EINVAL;
    f = open_memstream(&out, &outlen);
    if (f == NULL)
        return -ENOMEM;
    if (res->group[0] == '\0')
        fprintf(f, "/api/%s", res->version);
    else
        fprintf(f, "/apis/%s/%s", res->group, res->version);
    if (res->namespaced && ns != NULL)
        fprintf(f, "/namespaces/%s", ns);
    fprintf(f, "/%s", res->resource);
    if (name != NULL)
        fprintf(f, "/%s", name);
    if (sub != NULL)
        fprintf(f, "/%s", sub);
    if (opts != NULL) {
        char num[32];

        if (opts->label_selector != NULL && opts->label_selector[0] != '\0')
            r = r ?: add_query(f, &first, "labelSelector", opts->label_selector);
        if (opts->field_selector != NULL && opts->field_selector[0] != '\0')
            r = r ?: add_query(f, &first, "fieldSelector", opts->field_selector);
        if (opts->limit > 0) {
            snprintf(num, sizeof(num), "%u", opts->limit);
            r = r ?: add_query(f, &first, "limit", num);
        }
        if (opts->continue_token != NULL && opts->continue_token[0] != '\0')
            r = r ?: add_query(f, &first, "continue", opts->continue_token);
        if (opts->resource_version != NULL && opts->resource_version[0] != '\0')
            r = r ?: add_query(f, &first, "resourceVersion", opts->resource_version);
        if (opts->watch)
            r = r ?: add_query(f, &first, "watch", "true");
        if (opts->watch && opts->allow_bookmarks)
            r = r ?: add_query(f, &first, "allowWatchBookmarks", "true");
        if (opts->timeout_seconds > 0) {
            snprintf(num, sizeof(num), "%u", opts->timeout_seconds);
            r = r ?: add_query(f, &first, "timeoutSeconds", num);
        }
    }
    if (fclose(f) != 0 && r == 0)
        r = -ENOMEM;
    if (r < 0) {
        free(out);
        return r;
    }
    *ret_path = out;
    return 0;
}

int dp_kube_http_errno(long http, const char *reason)
{
    if (http >= 200 && http < 300)
        return 0;
    switch (http) {
    case 400:
    case 422:
        return -EINVAL;
    case 401:
        return -EACCES;
    case 403:
        return -EPERM;
    case 404:
        return -ENOENT;
    case 409:
        return reason != NULL && strcmp(reason, "AlreadyExists") == 0 ? -EEXIST : -EBUSY;
    case 410:
        return -ESTALE;
    case 413:
        return -EMSGSIZE;
    case 429:
        return -EAGAIN;
    default:
        return http >= 500 ? -EIO : -EPROTO;
    }
}

void dp_kube_format_error(long http, const json_t *body, char *buf, size_t bufsz)
{
    const char *reason = json_string_value(json_object_get(body, "reason"));
    const char *msg = json_string_value(json_object_get(body, "message"));

    snprintf(buf, bufsz, "%ld %s: %s", http, reason ? reason : "Error",
             msg ? msg : "(no message)");
}

/* ------------------------------------------------------------------ blocking client */

struct dp_kube_client {
    struct dp_kube_config *cfg;
    CURL *easy;
    unsigned timeout_ms;
    char last_error[512];
};

int dp_kube_client_new(struct dp_kube_config *cfg, struct dp_kube_client **ret_client)
{
    struct dp_kube_client *c;

    if (cfg == NULL || cfg->server == NULL)
        return -EINVAL;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->easy = curl_easy_init();
    if (c->easy == NULL) {
        free(c);
        return -ENOMEM;
    }
    c->cfg = cfg;
    c->timeout_ms = 30000;
    *ret_client = c;
    return 0;
}

void dp_kube_client_free(struct dp_kube_client *c)
{
    if (c == NULL)
        return;
    curl_easy_cleanup(c->easy);
    free(c);
}

void dp_kube_client_set_timeout(struct dp_kube_client *c, unsigned timeout_ms)
{
    c->timeout_ms = timeout_ms;
}

const char *dp_kube_client_last_error(const struct dp_kube_client *c)
{
    return c->last_error;
}

struct dp_kube_config *dp_kube_client_config(struct dp_kube_client *c)
{
    return c->cfg;
}

int dp_kube_easy_prepare(struct dp_kube_config *cfg, void *curl_easy, const char *method,
                         const char *path, const char *content_type, const char *body,
                         size_t body_len, bool force_token, struct curl_slist **ret_headers)
{
    CURL *e = curl_easy;
    struct curl_slist *h = NULL, *t;
    const char *token;
    char *url = NULL, *hdr = NULL;
    int r = -ENOMEM;

    if (asprintf(&url, "%s%s", cfg->server, path) < 0) {
        url = NULL;
        goto out;
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    if (cfg->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    } else if (cfg->ca_pem != NULL) {
        struct curl_blob blob = {.data = cfg->ca_pem, .len = cfg->ca_pem_len,
                                 .flags = CURL_BLOB_COPY};

        curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &blob);
    } else if (cfg->ca_file != NULL) {
        curl_easy_setopt(e, CURLOPT_CAINFO, cfg->ca_file);
    }
    if (cfg->cert_pem != NULL) {
        struct curl_blob blob = {.data = cfg->cert_pem, .len = cfg->cert_pem_len,
                                 .flags = CURL_BLOB_COPY};

        curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &blob);
        curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
    } else if (cfg->cert_file != NULL) {
        curl_easy_setopt(e, CURLOPT_SSLCERT, cfg->cert_file);
    }
    if (cfg->key_pem != NULL) {
        struct curl_blob blob = {.data = cfg->key_pem, .len = cfg->key_pem_len,
                                 .flags = CURL_BLOB_COPY};

        curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &blob);
        curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
    } else if (cfg->key_file != NULL) {
        curl_easy_setopt(e, CURLOPT_SSLKEY, cfg->key_file);
    }

    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
        if (body != NULL) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
            curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body);
        } else if (strcmp(method, "DELETE") != 0) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
            curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, "");
        }
    }
    token = dp_kube_config_token(cfg, dp_now_ms(), 60000, force_token);
    if (token != NULL) {
        if (asprintf(&hdr, "Authorization: Bearer %s", token) < 0) {
            hdr = NULL;
            goto out;
        }
        if ((t = curl_slist_append(h, hdr)) == NULL)
            goto out;
        h = t;
    }
    if ((t = curl_slist_append(h, "Accept: application/json")) == NULL)
        goto out;
    h = t;
    if ((t = curl_slist_append(h, "User-Agent: ambit/0.1")) == NULL)
        goto out;
    h = t;
    if (content_type != NULL) {
        char ct[128];

        snprintf(ct, sizeof(ct), "Content-Type: %s", content_type);
        if ((t = curl_slist_append(h, ct)) == NULL)
            goto out;
        h = t;
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    *ret_headers = h;
    h = NULL;
    r = 0;
out:
    if (hdr != NULL) {
        explicit_bzero(hdr, strlen(hdr));
        free(hdr);
    }
    curl_slist_free_all(h);
    free(url);
    return r;
}

int dp_kube_request(struct dp_kube_client *c, const char *method, const char *path,
                    const char *content_type, const json_t *body, long *ret_http,
                    json_t **ret_body)
{
    struct dp_curl_sink sink = {0};
    struct curl_slist *headers = NULL;
    char *text = NULL;
    json_t *resp = NULL;
    long http = 0;
    bool retried = false;
    CURLcode cc;
    int r;

    c->last_error[0] = '\0';
    if (body != NULL) {
        text = json_dumps(body, JSON_COMPACT);
        if (text == NULL)
            return -ENOMEM;
    }
    r = dp_buf_new(16384, DP_KUBE_MAX_BODY, &sink.buf);
    if (r < 0)
        goto out;
again:
    curl_easy_reset(c->easy);
    r = dp_kube_easy_prepare(c->cfg, c->easy, method, path, content_type, text,
                             text ? strlen(text) : 0, retried, &headers);
    if (r < 0)
        goto out;
    curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, dp_curl_sink_write);
    curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
    curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    cc = curl_easy_perform(c->easy);
    curl_slist_free_all(headers);
    headers = NULL;
    if (cc != CURLE_OK) {
        r = sink.err ? sink.err : dp_curl_errno(cc);
        snprintf(c->last_error, sizeof(c->last_error), "%s %s: %s", method, path,
                 sink.err == -EMSGSIZE ? "response too large" : curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &http);
    if (http == 401 && !retried && c->cfg->token_file != NULL) {
        /* the token may have rotated under us: re-read it once */
        retried = true;
        dp_buf_reset(sink.buf);
        goto again;
    }
    if (sink.buf->len > 0) {
        json_error_t jerr;

        resp = json_loadb(dp_buf_head(sink.buf), sink.buf->len, JSON_DECODE_ANY, &jerr);
        if (resp == NULL && http >= 200 && http < 300) {
            snprintf(c->last_error, sizeof(c->last_error), "%s %s: bad JSON at %d:%d: %s",
                     method, path, jerr.line, jerr.column, jerr.text);
            r = -EBADMSG;
            goto out;
        }
    }
    r = dp_kube_http_errno(http, json_string_value(json_object_get(resp, "reason")));
    if (r < 0) {
        dp_kube_format_error(http, resp, c->last_error, sizeof(c->last_error));
        goto out;
    }
    if (ret_body != NULL) {
        *ret_body = resp ? resp : json_null();
        resp = NULL;
    }
out:
    if (ret_http != NULL)
        *ret_http = http;
    json_decref(resp);
    dp_buf_free(sink.buf);
    free(text);
    return r;
}

int dp_kube_get(struct dp_kube_client *c, const struct dp_kube_resource *res, const char *ns,
                const char *name, json_t **ret_obj)
{
    char *path = NULL;
    int r;

    r = dp_kube_path(res, ns, name, NULL, NULL, &path);
    if (r < 0)
        return r;
    r = dp_kube_request(c, "GET", path, NULL, NULL, NULL, ret_obj);
    free(path);
    return r;
}

static int fill_type_meta(const struct dp_kube_resource *res, json_t *item)
{
    char av[128];

    if (json_object_get(item, "kind") == NULL &&
        json_object_set_new(item, "kind", json_string(res->kind)) < 0)
        return -ENOMEM;
    if (res->group[0] != '\0')
        snprintf(av, sizeof(av), "%s/%s", res->group, res->version);
    else
        snprintf(av, sizeof(av), "%s", res->version);
    if (json_object_get(item, "apiVersion") == NULL &&
        json_object_set_new(item, "apiVersion", json_string(av)) < 0)
        return -ENOMEM;
    return 0;
}

int dp_kube_list(struct dp_kube_client *c, const struct dp_kube_resource *res, const char *ns,
                 const struct dp_kube_list_opts *opts, json_t **ret_items, char **ret_rv)
{
    struct dp_kube_list_opts o = {0};
    json_t *items = NULL, *page = NULL;
    char *cont = NULL, *rv = NULL, *path = NULL;
    bool restarted = false;
    int r;

    if (opts != NULL)
        o = *opts;
    o.watch = false;
    o.allow_bookmarks = false;
    if (o.limit == 0)
        o.limit = 500;
restart:
    json_decref(items);
    items = json_array();
    if (items == NULL)
        return -ENOMEM;
    free(cont);
    cont = NULL;
    for (;;) {
        json_t *arr, *it, *meta;
        size_t i;
        const char *s;

        o.continue_token = cont;
        free(path);
        path = NULL;
        r = dp_kube_path(res, ns, NULL, NULL, &o, &path);
        if (r < 0)
            goto out;
        json_decref(page);
        page = NULL;
        r = dp_kube_request(c, "GET", path, NULL, NULL, NULL, &page);
        if (r == -ESTALE && cont != NULL && !restarted) {
            restarted = true; /* continue token expired: start over once */
            goto restart;
        }
        if (r < 0)
            goto out;
        arr = json_object_get(page, "items");
        if (!json_is_array(arr) && !json_is_null(arr) && arr != NULL) {
            snprintf(c->last_error, sizeof(c->last_error), "list %s: items is not an array",
                     res->resource);
            r = -EBADMSG;
            goto out;
        }
        json_array_foreach(arr, i, it) {
            if (!json_is_object(it))
                continue;
            r = fill_type_meta(res, it);
            if (r < 0)
                goto out;
            if (json_array_append(items, it) < 0) {
                r = -ENOMEM;
                goto out;
            }
        }
        meta = json_object_get(page, "metadata");
        s = json_string_value(json_object_get(meta, "resourceVersion"));
        free(rv);
        rv = s ? strdup(s) : NULL;
        s = json_string_value(json_object_get(meta, "continue"));
        free(cont);
        cont = NULL;
        if (s == NULL || s[0] == '\0')
            break;
        if ((cont = strdup(s)) == NULL) {
            r = -ENOMEM;
            goto out;
        }
    }
    *ret_items = items;
    items = NULL;
    if (ret_rv != NULL) {
        *ret_rv = rv;
        rv = NULL;
    }
    r = 0;
out:
    json_decref(items);
    json_decref(page);
    free(cont);
    free(rv);
    free(path);
    return r;
}

static const char *obj_ns(const struct dp_kube_resource *res, const char *ns, const json_t *obj)
{
    if (!res->namespaced)
        return NULL;
    return ns ? ns : dp_kube_meta_str(obj, "namespace");
}

int dp_kube_create(struct dp_kube_client *c, const struct dp_kube_resource *res, const char *ns,
                   const json_t *obj, json_t **ret_obj)
{
    char *path = NULL;
    int r;

    r = dp_kube_path(res, obj_ns(res, ns, obj), NULL, NULL, NULL, &path);
    if (r < 0)
        return r;
    r = dp_kube_request(c, "POST", path, "application/json", obj, NULL, ret_obj);
    free(path);
    return r;
}

int dp_kube_update(struct dp_kube_client *c, const struct dp_kube_resource *res, const char *ns,
                   const json_t *obj, const char *sub, json_t **ret_obj)
{
    const char *name = dp_kube_meta_str(obj, "name");
    char *path = NULL;
    int r;

    if (name == NULL)
        return -EINVAL;
    r = dp_kube_path(res, obj_ns(res, ns, obj), name, sub, NULL, &path);
    if (r < 0)
        return r;
    r = dp_kube_request(c, "PUT", path, "application/json", obj, NULL, ret_obj);
    free(path);
    return r;
}

int dp_kube_delete(struct dp_kube_client *c, const struct dp_kube_resource *res, const char *ns,
                   const char *name)
{
    char *path = NULL;
    int r;

    r = dp_kube_path(res, ns, name, NULL, NULL, &path);
    if (r < 0)
        return r;
    r = dp_kube_request(c, "DELETE", path, NULL, NULL, NULL, NULL);
    free(path);
    return r;
}

int dp_kube_merge_patch(struct dp_kube_client *c, const struct dp_kube_resource *res,
                        const char *ns, const char *name, const char *sub, const json_t *patch,
                        json_t **ret_obj)
{
    char *path = NULL;
    int r;

    r = dp_kube_path(res, ns, name, sub, NULL, &path);
    if (r < 0)
        return r;
    r = dp_kube_request(c, "PATCH", path, "application/merge-patch+json", patch, NULL, ret_obj);
    free(path);
    return r;
}

int dp_kube_apply(struct dp_kube_client *c, const struct dp_kube_resource *res, const char *ns,
                  const json_t *obj, const char *sub, bool force, json_t **ret_obj)
{
    const char *name = dp_kube_meta_str(obj, "name");
    char *path = NULL, *full = NULL;
    int r;

    if (name == NULL || json_object_get(obj, "apiVersion") == NULL ||
        json_object_get(obj, "kind") == NULL)
        return -EINVAL;
    r = dp_kube_path(res, obj_ns(res, ns, obj), name, sub, NULL, &path);
    if (r < 0)
        return r;
    if (asprintf(&full, "%s?fieldManager=%s%s", path, DP_KUBE_FIELD_MANAGER,
                 force ? "&force=true" : "") < 0) {
        full = NULL;
        r = -ENOMEM;
        goto out;
    }
    /* JSON is YAML: the apply-patch+yaml content type accepts a JSON body */
    r = dp_kube_request(c, "PATCH", full, "application/apply-patch+yaml", obj, NULL, ret_obj);
out:
    free(path);
    free(full);
    return r;
}

/* ------------------------------------------------------------------ TokenReview */

void dp_kube_token_info_done(struct dp_kube_token_info *ti)
{
    if (ti == NULL)
        return;
    free(ti->username);
    free(ti->uid);
    free(ti->sa_namespace);
    free(ti->sa_name);
    free(ti->pod_name);
    free(ti->pod_uid);
    free(ti->node_name);
    free(ti->error);
    memset(ti, 0, sizeof(*ti));
}

json_t *dp_kube_token_review_body(const char *token, const char *audience)
{
    json_t *spec = json_pack("{s:s}", "token", token);

    if (spec == NULL)
        return NULL;
    if (audience != NULL && json_object_set_new(spec, "audiences", json_pack("[s]", audience)) < 0) {
        json_decref(spec);
        return NULL;
    }
    return json_pack("{s:s,s:s,s:o}", "apiVersion", "authentication.k8s.io/v1", "kind",
                     "TokenReview", "spec", spec);
}

static char *dup_first(const json_t *extra, const char *key)
{
    json_t *v = json_object_get(extra, key);
    const char *s;

    if (json_is_array(v))
        v = json_array_get(v, 0);
    s = json_string_value(v);
    return s ? strdup(s) : NULL;
}

int dp_kube_token_review_parse(const json_t *resp, struct dp_kube_token_info *ret_info)
{
    struct dp_kube_token_info ti = {0};
    json_t *status = json_object_get(resp, "status"), *user, *extra;
    const char *s;

    if (!json_is_object(status))
        return -EINVAL;
    ti.authenticated = json_is_true(json_object_get(status, "authenticated"));
    s = json_string_value(json_object_get(status, "error"));
    if (s != NULL)
        ti.error = strdup(s);
    user = json_object_get(status, "user");
    s = json_string_value(json_object_get(user, "username"));
    if (s != NULL) {
        static const char pfx[] = "system:serviceaccount:";

        ti.username = strdup(s);
        if (strncmp(s, pfx, sizeof(pfx) - 1) == 0) {
            const char *nsp = s + sizeof(pfx) - 1, *colon = strchr(nsp, ':');

            if (colon != NULL && colon != nsp && colon[1] != '\0' && strchr(colon + 1, ':') == NULL) {
                ti.sa_namespace = strndup(nsp, (size_t)(colon - nsp));
                ti.sa_name = strdup(colon + 1);
            }
        }
    }
    s = json_string_value(json_object_get(user, "uid"));
    if (s != NULL)
        ti.uid = strdup(s);
    extra = json_object_get(user, "extra");
    ti.pod_name = dup_first(extra, "authentication.kubernetes.io/pod-name");
    ti.pod_uid = dup_first(extra, "authentication.kubernetes.io/pod-uid");
    ti.node_name = dup_first(extra, "authentication.kubernetes.io/node-name");
    if (!ti.authenticated && ti.username == NULL && ti.error == NULL && ti.uid == NULL) {
        /* nothing to say: still a valid "not authenticated" answer */
    }
    *ret_info = ti;
    return 0;
}

int dp_kube_token_review(struct dp_kube_client *c, const char *token, const char *audience,
                         struct dp_kube_token_info *ret_info)
{
    json_t *body, *resp = NULL;
    char *path = NULL;
    int r;

    body = dp_kube_token_review_body(token, audience);
    if (body == NULL)
        return -ENOMEM;
    r = dp_kube_path(&DP_KUBE_RES_TOKENREVIEWS, NULL, NULL, NULL, NULL, &path);
    if (r < 0)
        goto out;
    r = dp_kube_request(c, "POST", path, "application/json", body, NULL, &resp);
    if (r < 0)
        goto out;
    r = dp_kube_token_review_parse(resp, ret_info);
out:
    json_decref(body);
    json_decref(resp);
    free(path);
    return r;
}

/* ------------------------------------------------------------------ object helpers */

const char *dp_kube_meta_str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(json_object_get(obj, "metadata"), key));
}

const char *dp_kube_label(const json_t *obj, const char *key)
{
    return json_string_value(
            json_object_get(json_object_get(json_object_get(obj, "metadata"), "labels"), key));
}

const char *dp_kube_annotation(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(
            json_object_get(json_object_get(obj, "metadata"), "annotations"), key));
}

int dp_kube_obj_key(const json_t *obj, char *buf, size_t bufsz)
{
    const char *ns = dp_kube_meta_str(obj, "namespace");
    const char *name = dp_kube_meta_str(obj, "name");
    int n;

    if (name == NULL || name[0] == '\0')
        return -EINVAL;
    if (ns != NULL && ns[0] != '\0')
        n = snprintf(buf, bufsz, "%s/%s", ns, name);
    else
        n = snprintf(buf, bufsz, "%s", name);
    if (n < 0 || (size_t)n >= bufsz)
        return -ENAMETOOLONG;
    return 0;
}

long dp_kube_status_code(const json_t *status)
{
    json_t *code = json_object_get(status, "code");

    return json_is_integer(code) ? (long)json_integer_value(code) : 0;
}

/* ------------------------------------------------------------------ label selectors */

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static bool key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == '/';
}

/* Read a key/value token into buf. Returns the end or NULL. Empty values are allowed. */
static const char *read_tok(const char *p, char *buf, size_t bufsz)
{
    size_t n = 0;

    while (key_char(*p)) {
        if (n + 1 >= bufsz)
            return NULL;
        buf[n++] = *p++;
    }
    buf[n] = '\0';
    return p;
}

int dp_kube_selector_matches(const char *sel, const json_t *labels)
{
    const char *p = sel;
    int result = 1;

    if (sel == NULL)
        return 1;
    for (;;) {
        char key[320], val[320];
        const char *have;
        bool neg = false;

        p = skip_ws(p);
        if (*p == '\0')
            break;
        if (*p == '!') {
            neg = true;
            p = skip_ws(p + 1);
        }
        p = read_tok(p, key, sizeof(key));
        if (p == NULL || key[0] == '\0')
            return -EINVAL;
        have = json_string_value(json_object_get(labels, key));
        p = skip_ws(p);
        if (neg) {
            if (have != NULL)
                result = 0;
        } else if (*p == '=' || (*p == '!' && p[1] == '=')) {
            bool ne = *p == '!';

            p += (ne || p[1] == '=') ? 2 : 1;
            p = read_tok(skip_ws(p), val, sizeof(val));
            if (p == NULL)
                return -EINVAL;
            if (ne ? (have != NULL && strcmp(have, val) == 0)
                   : (have == NULL || strcmp(have, val) != 0))
                result = 0;
        } else if (strncmp(p, "in", 2) == 0 || strncmp(p, "notin", 5) == 0) {
            bool notin = p[0] == 'n';
            bool found = false;

            p = skip_ws(p + (notin ? 5 : 2));
            if (*p != '(')
                return -EINVAL;
            p++;
            for (;;) {
                p = read_tok(skip_ws(p), val, sizeof(val));
                if (p == NULL)
                    return -EINVAL;
                if (have != NULL && strcmp(have, val) == 0)
                    found = true;
                p = skip_ws(p);
                if (*p == ',') {
                    p++;
                    continue;
                }
                if (*p == ')') {
                    p++;
                    break;
                }
                return -EINVAL;
            }
            if (notin ? found : !found)
                result = 0;
        } else if (*p != ',' && *p != '\0') {
            return -EINVAL;
        } else if (have == NULL) {
            result = 0; /* bare key: exists */
        }
        p = skip_ws(p);
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p != '\0')
            return -EINVAL;
    }
    return result;
}

int dp_kube_label_selector_matches(const json_t *selector, const json_t *labels)
{
    json_t *ml, *me, *v, *e;
    const char *k;
    size_t i;

    if (selector == NULL || json_is_null(selector))
        return 1;
    if (!json_is_object(selector))
        return -EINVAL;
    ml = json_object_get(selector, "matchLabels");
    if (ml != NULL && !json_is_object(ml))
        return -EINVAL;
    json_object_foreach(ml, k, v) {
        const char *have = json_string_value(json_object_get(labels, k));

        if (!json_is_string(v))
            return -EINVAL;
        if (have == NULL || strcmp(have, json_string_value(v)) != 0)
            return 0;
    }
    me = json_object_get(selector, "matchExpressions");
    if (me != NULL && !json_is_array(me))
        return -EINVAL;
    json_array_foreach(me, i, e) {
        const char *key = json_string_value(json_object_get(e, "key"));
        const char *op = json_string_value(json_object_get(e, "operator"));
        json_t *vals = json_object_get(e, "values"), *x;
        const char *have;
        bool found = false;
        size_t j;

        if (key == NULL || op == NULL)
            return -EINVAL;
        have = json_string_value(json_object_get(labels, key));
        json_array_foreach(vals, j, x) {
            if (have != NULL && json_is_string(x) && strcmp(have, json_string_value(x)) == 0)
                found = true;
        }
        if (strcmp(op, "In") == 0) {
            if (!found)
                return 0;
        } else if (strcmp(op, "NotIn") == 0) {
            if (found)
                return 0;
        } else if (strcmp(op, "Exists") == 0) {
            if (have == NULL)
                return 0;
        } else if (strcmp(op, "DoesNotExist") == 0) {
            if (have != NULL)
                return 0;
        } else {
            return -EINVAL;
        }
    }
    return 1;
}
