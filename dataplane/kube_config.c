/*
 * kube_config.c — kubeconfig and in-cluster configuration. See kube_config.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "kube_config.h"
#include "yaml.h"

static void errf(char *errbuf, size_t errsz, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void errf(char *errbuf, size_t errsz, const char *fmt, ...)
{
    va_list ap;

    if (errbuf == NULL || errsz == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(errbuf, errsz, fmt, ap);
    va_end(ap);
}

static void wipe_free(char *p, size_t n)
{
    if (p == NULL)
        return;
    explicit_bzero(p, n);
    free(p);
}

static void wipe_free_str(char *p)
{
    if (p != NULL)
        wipe_free(p, strlen(p));
}

void dp_kube_config_free(struct dp_kube_config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->server);
    free(cfg->ca_file);
    free(cfg->ca_pem);
    free(cfg->cert_file);
    free(cfg->cert_pem);
    free(cfg->key_file);
    wipe_free(cfg->key_pem, cfg->key_pem_len);
    wipe_free_str(cfg->token);
    free(cfg->token_file);
    wipe_free_str(cfg->token_cache);
    free(cfg->namespace);
    free(cfg->context);
    free(cfg);
}

/* ------------------------------------------------------------------ base64 */

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

int dp_kube_base64_decode(const char *in, size_t in_len, char **ret_out, size_t *ret_len)
{
    char *out;
    size_t o = 0, i;
    unsigned acc = 0, bits = 0, pad = 0;

    out = malloc(in_len / 4 * 3 + 4);
    if (out == NULL)
        return -ENOMEM;
    for (i = 0; i < in_len; i++) {
        unsigned char c = (unsigned char)in[i];
        int v;

        if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        if (pad > 0)
            goto bad; /* data after padding */
        v = b64val(c);
        if (v < 0)
            goto bad;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    if (pad > 2 || bits >= 6)
        goto bad;
    out[o] = '\0';
    *ret_out = out;
    *ret_len = o;
    return 0;
bad:
    free(out);
    return -EINVAL;
}

/* ------------------------------------------------------------------ files */

/* Read a whole (small) file. New NUL-terminated buffer. */
static int read_small_file(const char *path, size_t limit, char **ret_data, size_t *ret_len)
{
    struct stat st;
    char *data = NULL;
    size_t len = 0;
    int fd, r;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        goto out;
    }
    if ((size_t)st.st_size > limit) {
        r = -EFBIG;
        goto out;
    }
    data = malloc((size_t)st.st_size + 1);
    if (data == NULL) {
        r = -ENOMEM;
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, data + len, (size_t)st.st_size - len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            goto out;
        }
        if (n == 0 || (len += (size_t)n) == (size_t)st.st_size)
            break;
    }
    data[len] = '\0';
    *ret_data = data;
    data = NULL;
    if (ret_len != NULL)
        *ret_len = len;
    r = 0;
out:
    free(data);
    close(fd);
    return r;
}

static char *trim_dup(const char *s)
{
    size_t n = strlen(s);

    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    while (n > 0 && (*s == ' ' || *s == '\t' || *s == '\n')) {
        s++;
        n--;
    }
    return strndup(s, n);
}

int dp_kube_read_token_file(const char *path, char **ret_token)
{
    char *data = NULL, *tok;
    int r;

    if (path == NULL)
        return -EINVAL;
    r = read_small_file(path, DP_KUBE_MAX_SECRET_FILE, &data, NULL);
    if (r < 0)
        return r;
    tok = trim_dup(data);
    wipe_free_str(data);
    if (tok == NULL)
        return -ENOMEM;
    if (tok[0] == '\0') {
        free(tok);
        return -ENODATA;
    }
    *ret_token = tok;
    return 0;
}

const char *dp_kube_config_token(struct dp_kube_config *cfg, uint64_t now_ms, uint64_t max_age_ms,
                                 bool force)
{
    if (cfg->token_file != NULL) {
        if (cfg->token_cache == NULL || force || now_ms - cfg->token_read_ms >= max_age_ms) {
            char *tok;

            if (dp_kube_read_token_file(cfg->token_file, &tok) == 0) {
                wipe_free_str(cfg->token_cache);
                cfg->token_cache = tok;
                cfg->token_read_ms = now_ms;
            }
        }
        if (cfg->token_cache != NULL)
            return cfg->token_cache;
    }
    return cfg->token;
}

/* ------------------------------------------------------------------ kubeconfig */

static json_t *find_named(json_t *arr, const char *name, const char *inner)
{
    size_t i;
    json_t *e;

    if (!json_is_array(arr))
        return NULL;
    json_array_foreach(arr, i, e) {
        const char *n = json_string_value(json_object_get(e, "name"));

        if (n != NULL && strcmp(n, name) == 0)
            return json_object_get(e, inner);
    }
    return NULL;
}

/* Optional string member; -EINVAL if present with another type. */
static int opt_str(json_t *obj, const char *key, const char **ret, const char *where,
                   char *errbuf, size_t errsz)
{
    json_t *v = json_object_get(obj, key);

    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        errf(errbuf, errsz, "%s.%s: expected string", where, key);
        return -EINVAL;
    }
    *ret = json_string_value(v);
    return 1;
}

static int resolve_path(const char *dir, const char *p, char **ret)
{
    char *s;

    if (dir == NULL || p[0] == '/' || dir[0] == '\0') {
        s = strdup(p);
    } else if (asprintf(&s, "%s/%s", dir, p) < 0) {
        s = NULL;
    }
    if (s == NULL)
        return -ENOMEM;
    *ret = s;
    return 0;
}

static int decode_data(const char *b64, char **ret, size_t *ret_len, const char *where,
                       char *errbuf, size_t errsz)
{
    int r = dp_kube_base64_decode(b64, strlen(b64), ret, ret_len);

    if (r == -EINVAL)
        errf(errbuf, errsz, "%s: invalid base64", where);
    return r;
}

int dp_kube_config_parse_kubeconfig(const char *data, size_t len, const char *source,
                                    const char *dir, const char *context,
                                    struct dp_kube_config **ret_cfg, char *errbuf, size_t errsz)
{
    struct dp_kube_config *cfg = NULL;
    json_t *docs = NULL, *root, *ctx, *cluster, *user;
    const char *ctx_name = context, *cluster_name = NULL, *user_name = NULL, *ns = NULL;
    const char *s;
    char yerr[256], where[160];
    int r;

    r = dp_yaml_parse(data, len, source, &docs, yerr, sizeof(yerr));
    if (r < 0) {
        errf(errbuf, errsz, "%s", yerr);
        return r;
    }
    root = json_array_get(docs, 0);
    if (!json_is_object(root)) {
        errf(errbuf, errsz, "%s: not a kubeconfig (expected a mapping)", source);
        r = -EINVAL;
        goto out;
    }
    if (ctx_name == NULL) {
        ctx_name = json_string_value(json_object_get(root, "current-context"));
        if (ctx_name == NULL || ctx_name[0] == '\0') {
            errf(errbuf, errsz, "%s: no current-context and no context given", source);
            r = -ENOENT;
            goto out;
        }
    }
    ctx = find_named(json_object_get(root, "contexts"), ctx_name, "context");
    if (!json_is_object(ctx)) {
        errf(errbuf, errsz, "%s: context \"%s\" not found", source, ctx_name);
        r = -ENOENT;
        goto out;
    }
    snprintf(where, sizeof(where), "%s: contexts[%s].context", source, ctx_name);
    if ((r = opt_str(ctx, "cluster", &cluster_name, where, errbuf, errsz)) < 0 ||
        (r = opt_str(ctx, "user", &user_name, where, errbuf, errsz)) < 0 ||
        (r = opt_str(ctx, "namespace", &ns, where, errbuf, errsz)) < 0)
        goto out;
    if (cluster_name == NULL) {
        errf(errbuf, errsz, "%s.cluster: missing", where);
        r = -EINVAL;
        goto out;
    }
    cluster = find_named(json_object_get(root, "clusters"), cluster_name, "cluster");
    if (!json_is_object(cluster)) {
        errf(errbuf, errsz, "%s: cluster \"%s\" not found", source, cluster_name);
        r = -ENOENT;
        goto out;
    }
    user = user_name != NULL ? find_named(json_object_get(root, "users"), user_name, "user") : NULL;
    if (user_name != NULL && !json_is_object(user)) {
        errf(errbuf, errsz, "%s: user \"%s\" not found", source, user_name);
        r = -ENOENT;
        goto out;
    }

    cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL) {
        r = -ENOMEM;
        goto out;
    }
    r = -ENOMEM;
    if ((cfg->context = strdup(ctx_name)) == NULL)
        goto out;
    if (ns != NULL && ns[0] != '\0' && (cfg->namespace = strdup(ns)) == NULL)
        goto out;

    snprintf(where, sizeof(where), "%s: clusters[%s].cluster", source, cluster_name);
    s = NULL;
    if ((r = opt_str(cluster, "server", &s, where, errbuf, errsz)) < 0)
        goto out;
    if (s == NULL || (strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0)) {
        errf(errbuf, errsz, "%s.server: missing or not an http(s) URL", where);
        r = -EINVAL;
        goto out;
    }
    if ((cfg->server = strdup(s)) == NULL) {
        r = -ENOMEM;
        goto out;
    }
    while (strlen(cfg->server) > 8 && cfg->server[strlen(cfg->server) - 1] == '/')
        cfg->server[strlen(cfg->server) - 1] = '\0';
    {
        json_t *v = json_object_get(cluster, "insecure-skip-tls-verify");

        if (v != NULL && !json_is_boolean(v)) {
            errf(errbuf, errsz, "%s.insecure-skip-tls-verify: expected boolean", where);
            r = -EINVAL;
            goto out;
        }
        cfg->insecure = json_is_true(v);
    }
    s = NULL;
    if ((r = opt_str(cluster, "certificate-authority-data", &s, where, errbuf, errsz)) < 0)
        goto out;
    if (s != NULL && (r = decode_data(s, &cfg->ca_pem, &cfg->ca_pem_len,
                                      "certificate-authority-data", errbuf, errsz)) < 0)
        goto out;
    s = NULL;
    if ((r = opt_str(cluster, "certificate-authority", &s, where, errbuf, errsz)) < 0)
        goto out;
    if (s != NULL && cfg->ca_pem == NULL && (r = resolve_path(dir, s, &cfg->ca_file)) < 0)
        goto out;

    if (user != NULL) {
        snprintf(where, sizeof(where), "%s: users[%s].user", source, user_name);
        s = NULL;
        if ((r = opt_str(user, "client-certificate-data", &s, where, errbuf, errsz)) < 0)
            goto out;
        if (s != NULL && (r = decode_data(s, &cfg->cert_pem, &cfg->cert_pem_len,
                                          "client-certificate-data", errbuf, errsz)) < 0)
            goto out;
        s = NULL;
        if ((r = opt_str(user, "client-certificate", &s, where, errbuf, errsz)) < 0)
            goto out;
        if (s != NULL && cfg->cert_pem == NULL && (r = resolve_path(dir, s, &cfg->cert_file)) < 0)
            goto out;
        s = NULL;
        if ((r = opt_str(user, "client-key-data", &s, where, errbuf, errsz)) < 0)
            goto out;
        if (s != NULL && (r = decode_data(s, &cfg->key_pem, &cfg->key_pem_len, "client-key-data",
                                          errbuf, errsz)) < 0)
            goto out;
        s = NULL;
        if ((r = opt_str(user, "client-key", &s, where, errbuf, errsz)) < 0)
            goto out;
        if (s != NULL && cfg->key_pem == NULL && (r = resolve_path(dir, s, &cfg->key_file)) < 0)
            goto out;
        s = NULL;
        if ((r = opt_str(user, "token", &s, where, errbuf, errsz)) < 0)
            goto out;
        if (s != NULL && (cfg->token = strdup(s)) == NULL) {
            r = -ENOMEM;
            goto out;
        }
        s = NULL;
        if ((r = opt_str(user, "tokenFile", &s, where, errbuf, errsz)) < 0)
            goto out;
        if (s != NULL && (r = resolve_path(dir, s, &cfg->token_file)) < 0)
            goto out;
        if ((cfg->cert_pem != NULL || cfg->cert_file != NULL) !=
            (cfg->key_pem != NULL || cfg->key_file != NULL)) {
            errf(errbuf, errsz, "%s: client certificate and key must be given together", where);
            r = -EINVAL;
            goto out;
        }
    }
    *ret_cfg = cfg;
    cfg = NULL;
    r = 0;
out:
    dp_kube_config_free(cfg);
    json_decref(docs);
    return r;
}

int dp_kube_config_load_kubeconfig(const char *path, const char *context,
                                   struct dp_kube_config **ret_cfg, char *errbuf, size_t errsz)
{
    char *data = NULL, *dir = NULL, *slash;
    size_t len = 0;
    int r;

    r = read_small_file(path, 16u << 20, &data, &len);
    if (r < 0) {
        errf(errbuf, errsz, "kubeconfig %s: %s", path, strerror(-r));
        return r;
    }
    dir = strdup(path);
    if (dir == NULL) {
        r = -ENOMEM;
        goto out;
    }
    slash = strrchr(dir, '/');
    if (slash != NULL)
        *slash = '\0';
    else
        dir[0] = '\0';
    r = dp_kube_config_parse_kubeconfig(data, len, path, dir, context, ret_cfg, errbuf, errsz);
out:
    wipe_free(data, len);
    free(dir);
    return r;
}

int dp_kube_config_in_cluster(const char *sa_dir, struct dp_kube_config **ret_cfg, char *errbuf,
                              size_t errsz)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    struct dp_kube_config *cfg = NULL;
    char *ns = NULL;
    int r;

    if (sa_dir == NULL)
        sa_dir = DP_KUBE_SA_DIR;
    if (host == NULL || host[0] == '\0' || port == NULL || port[0] == '\0') {
        errf(errbuf, errsz, "not in a cluster: KUBERNETES_SERVICE_HOST/PORT unset");
        return -ENOENT;
    }
    cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL)
        return -ENOMEM;
    r = -ENOMEM;
    /* IPv6 hosts need brackets in a URL */
    if (asprintf(&cfg->server, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
                 port) < 0) {
        cfg->server = NULL;
        goto out;
    }
    if (asprintf(&cfg->token_file, "%s/token", sa_dir) < 0) {
        cfg->token_file = NULL;
        goto out;
    }
    if (asprintf(&cfg->ca_file, "%s/ca.crt", sa_dir) < 0) {
        cfg->ca_file = NULL;
        goto out;
    }
    if (access(cfg->token_file, R_OK) < 0) {
        r = -errno;
        errf(errbuf, errsz, "in-cluster token %s: %s", cfg->token_file, strerror(errno));
        goto out;
    }
    {
        char *path = NULL;

        if (asprintf(&path, "%s/namespace", sa_dir) < 0)
            goto out;
        if (read_small_file(path, 4096, &ns, NULL) == 0) {
            cfg->namespace = trim_dup(ns);
            free(ns);
        }
        free(path);
    }
    *ret_cfg = cfg;
    cfg = NULL;
    r = 0;
out:
    dp_kube_config_free(cfg);
    return r;
}

int dp_kube_config_default(const char *explicit_path, struct dp_kube_config **ret_cfg,
                           char *errbuf, size_t errsz)
{
    const char *env = getenv("KUBECONFIG");
    const char *home = getenv("HOME");
    char *path = NULL;
    int r;

    if (explicit_path != NULL && explicit_path[0] != '\0')
        return dp_kube_config_load_kubeconfig(explicit_path, NULL, ret_cfg, errbuf, errsz);
    if (env != NULL && env[0] != '\0') {
        const char *colon = strchr(env, ':');

        path = colon ? strndup(env, (size_t)(colon - env)) : strdup(env);
        if (path == NULL)
            return -ENOMEM;
        r = dp_kube_config_load_kubeconfig(path, NULL, ret_cfg, errbuf, errsz);
        free(path);
        return r;
    }
    r = dp_kube_config_in_cluster(NULL, ret_cfg, errbuf, errsz);
    if (r != -ENOENT)
        return r;
    if (home == NULL)
        return -ENOENT;
    if (asprintf(&path, "%s/.kube/config", home) < 0)
        return -ENOMEM;
    r = dp_kube_config_load_kubeconfig(path, NULL, ret_cfg, errbuf, errsz);
    free(path);
    return r;
}
