/*
 * cni_install.c — see cni_install.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cni_config.h"
#include "cni_install.h"
#include "json.h"

#define CONF_MAX (1u << 20)

json_t *cni_install_plugin_entry(const char *agent_socket, const char *run_dir,
                                 const char *kubeconfig, const char *exclude_csv,
                                 bool dns_capture)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "type", json_string(CNI_PLUGIN_TYPE));
    if (agent_socket)
        json_object_set_new(o, "agent_socket", json_string(agent_socket));
    if (run_dir)
        json_object_set_new(o, "run_dir", json_string(run_dir));
    if (kubeconfig)
        json_object_set_new(o, "kubeconfig", json_string(kubeconfig));
    if (exclude_csv) {
        json_t *a = json_array();
        const char *p = exclude_csv;
        while (a && *p) {
            size_t n = strcspn(p, ",");
            if (n)
                json_array_append_new(a, json_stringn(p, n));
            p += n;
            if (*p == ',')
                p++;
        }
        json_object_set_new(o, "exclude_namespaces", a);
    }
    if (dns_capture)
        json_object_set_new(o, "dns_capture", json_true());
    return o;
}

static bool is_ours(const json_t *plugin)
{
    const char *t = json_string_value(json_object_get(plugin, "type"));
    return t && strcmp(t, CNI_PLUGIN_TYPE) == 0;
}

int cni_install_merge(const json_t *primary, const json_t *ours, json_t **ret_conflist,
                      bool *ret_changed, char *errbuf, size_t errsz)
{
    json_t *out = NULL, *plugins = NULL, *v;
    size_t i;

    if (!json_is_object(primary)) {
        snprintf(errbuf, errsz, "primary config is not a JSON object");
        return -EINVAL;
    }
    json_t *list = json_object_get(primary, "plugins");
    if (list) {
        if (!json_is_array(list) || json_array_size(list) == 0) {
            snprintf(errbuf, errsz, "primary conflist: \"plugins\" must be a non-empty array");
            return -EINVAL;
        }
        out = json_deep_copy(primary);
        plugins = json_array();
        if (out == NULL || plugins == NULL)
            goto nomem;
        json_array_foreach(list, i, v)
        {
            if (!json_is_object(v)) {
                snprintf(errbuf, errsz, "primary conflist: plugins[%zu] is not an object", i);
                json_decref(out);
                json_decref(plugins);
                return -EINVAL;
            }
            if (!is_ours(v) && json_array_append(plugins, v) < 0)
                goto nomem;
        }
        if (json_array_size(plugins) == 0) {
            snprintf(errbuf, errsz, "primary conflist holds only ambit-cni; no primary plugin");
            json_decref(out);
            json_decref(plugins);
            return -EINVAL;
        }
    } else {
        if (!json_is_string(json_object_get(primary, "type"))) {
            snprintf(errbuf, errsz, "primary config has neither \"plugins\" nor \"type\"");
            return -EINVAL;
        }
        if (is_ours(primary)) {
            snprintf(errbuf, errsz, "primary config is ambit-cni itself");
            return -EINVAL;
        }
        out = json_object();
        plugins = json_array();
        json_t *first = json_deep_copy(primary);
        if (out == NULL || plugins == NULL || first == NULL) {
            json_decref(first);
            goto nomem;
        }
        /* cniVersion and name move up to the list (libcni hands them down again) */
        json_t *ver = json_object_get(primary, "cniVersion");
        json_t *name = json_object_get(primary, "name");
        json_object_set_new(out, "cniVersion", ver ? json_incref(ver) : json_string("0.3.1"));
        json_object_set_new(out, "name", name ? json_incref(name) : json_string("k8s-pod-network"));
        json_object_del(first, "cniVersion");
        json_object_del(first, "name");
        json_array_append_new(plugins, first);
    }
    if (json_array_append_new(plugins, json_deep_copy(ours)) < 0)
        goto nomem;
    json_object_set_new(out, "plugins", plugins);
    *ret_changed = !json_equal(out, primary);
    *ret_conflist = out;
    return 0;
nomem:
    json_decref(out);
    json_decref(plugins);
    snprintf(errbuf, errsz, "out of memory");
    return -ENOMEM;
}

int cni_install_strip(const json_t *conflist, json_t **ret_conflist, bool *ret_changed)
{
    json_t *list = json_object_get(conflist, "plugins"), *v;
    size_t i;
    if (!json_is_array(list))
        return -EINVAL;
    json_t *out = json_deep_copy(conflist), *plugins = json_array();
    if (out == NULL || plugins == NULL) {
        json_decref(out);
        json_decref(plugins);
        return -ENOMEM;
    }
    json_array_foreach(list, i, v)
    {
        if (!is_ours(v))
            json_array_append(plugins, v);
    }
    json_object_set_new(out, "plugins", plugins);
    *ret_changed = !json_equal(out, conflist);
    *ret_conflist = out;
    return 0;
}

static bool has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n > m && strcmp(s + n - m, suf) == 0;
}

int cni_install_find_primary(const char *dir, char *ret_path, size_t sz)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort), r = -ENOENT;
    if (n < 0)
        return -errno;
    for (int i = 0; i < n; i++) {
        const char *f = names[i]->d_name;
        if (r == -ENOENT && f[0] != '.' &&
            (has_suffix(f, ".conf") || has_suffix(f, ".conflist") || has_suffix(f, ".json"))) {
            int w = snprintf(ret_path, sz, "%s/%s", dir, f);
            r = (w < 0 || (size_t)w >= sz) ? -ENAMETOOLONG : 0;
        }
        free(names[i]);
    }
    free(names);
    return r;
}

static int write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
    char tmp[4200];
    int r = 0;
    if (snprintf(tmp, sizeof(tmp), "%s.ambit-tmp", path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    const char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            break;
        }
        p += w;
        len -= (size_t)w;
    }
    if (r == 0 && (fchmod(fd, mode) < 0 || fsync(fd) < 0))
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0)
        unlink(tmp);
    return r;
}

static int read_file(const char *path, size_t max, char **ret, size_t *ret_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    if ((size_t)st.st_size > max) {
        close(fd);
        return -EFBIG;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    if (buf == NULL) {
        close(fd);
        return -ENOMEM;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = 0;
    *ret = buf;
    *ret_len = got;
    return 0;
}

static int copy_binary(const struct cni_install_opts *o, char *errbuf, size_t errsz)
{
    char dst[4096], *data = NULL;
    size_t len = 0;
    const char *src = o->self ? o->self : "/proc/self/exe";
    int r = read_file(src, 256u << 20, &data, &len);
    if (r < 0) {
        snprintf(errbuf, errsz, "read %s: %s", src, strerror(-r));
        return r;
    }
    snprintf(dst, sizeof(dst), "%s/%s", o->bin_dir, CNI_PLUGIN_TYPE);
    r = write_atomic(dst, data, len, 0755);
    free(data);
    if (r < 0)
        snprintf(errbuf, errsz, "write %s: %s", dst, strerror(-r));
    return r;
}

static int write_json(const char *path, const json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s == NULL)
        return -ENOMEM;
    size_t n = strlen(s);
    s[n] = '\n'; /* json_dumps NUL-terminates; write the newline in its place */
    int r = write_atomic(path, s, n + 1, 0644);
    free(s);
    return r;
}

int cni_install(const struct cni_install_opts *o, char *errbuf, size_t errsz)
{
    char path[4096], perr[256];
    char *data = NULL;
    size_t len;
    json_t *primary = NULL, *merged = NULL;
    bool changed = false;
    int r;

    r = copy_binary(o, errbuf, errsz);
    if (r < 0)
        return r;
    r = cni_install_find_primary(o->conf_dir, path, sizeof(path));
    if (r < 0) {
        snprintf(errbuf, errsz, "no primary CNI config in %s yet (%s)", o->conf_dir,
                 strerror(-r));
        return r;
    }
    r = read_file(path, CONF_MAX, &data, &len);
    if (r < 0) {
        snprintf(errbuf, errsz, "read %s: %s", path, strerror(-r));
        return r;
    }
    r = dp_json_parse(data, len, CONF_MAX, path, &primary, perr, sizeof(perr));
    free(data);
    if (r < 0) {
        snprintf(errbuf, errsz, "%s", perr);
        return r;
    }
    r = cni_install_merge(primary, o->plugin, &merged, &changed, errbuf, errsz);
    if (r < 0)
        goto out;
    bool single = json_object_get(primary, "plugins") == NULL;
    if (single) { /* foo.conf -> foo.conflist, then drop foo.conf */
        char list[4096];
        size_t n = strlen(path);
        const char *dot = strrchr(path, '.');
        n = dot ? (size_t)(dot - path) : n;
        snprintf(list, sizeof(list), "%.*s.conflist", (int)n, path);
        r = write_json(list, merged);
        if (r == 0 && unlink(path) < 0)
            r = -errno;
        if (r < 0)
            snprintf(errbuf, errsz, "convert %s to %s: %s", path, list, strerror(-r));
    } else if (changed) {
        r = write_json(path, merged);
        if (r < 0)
            snprintf(errbuf, errsz, "write %s: %s", path, strerror(-r));
    }
out:
    json_decref(primary);
    json_decref(merged);
    return r;
}

int cni_uninstall(const struct cni_install_opts *o, char *errbuf, size_t errsz)
{
    char path[4096], perr[256], bin[4096];
    char *data = NULL;
    size_t len;
    json_t *conf = NULL, *stripped = NULL;
    bool changed = false;
    int r;

    snprintf(bin, sizeof(bin), "%s/%s", o->bin_dir, CNI_PLUGIN_TYPE);
    if (unlink(bin) < 0 && errno != ENOENT) {
        r = -errno;
        snprintf(errbuf, errsz, "remove %s: %s", bin, strerror(errno));
        return r;
    }
    r = cni_install_find_primary(o->conf_dir, path, sizeof(path));
    if (r == -ENOENT)
        return 0;
    if (r < 0) {
        snprintf(errbuf, errsz, "%s: %s", o->conf_dir, strerror(-r));
        return r;
    }
    r = read_file(path, CONF_MAX, &data, &len);
    if (r < 0) {
        snprintf(errbuf, errsz, "read %s: %s", path, strerror(-r));
        return r;
    }
    r = dp_json_parse(data, len, CONF_MAX, path, &conf, perr, sizeof(perr));
    free(data);
    if (r < 0) {
        snprintf(errbuf, errsz, "%s", perr);
        return r;
    }
    if (json_object_get(conf, "plugins") == NULL) { /* a single conf: never ours to touch */
        json_decref(conf);
        return 0;
    }
    r = cni_install_strip(conf, &stripped, &changed);
    if (r == 0 && changed) {
        r = write_json(path, stripped);
        if (r < 0)
            snprintf(errbuf, errsz, "write %s: %s", path, strerror(-r));
    }
    json_decref(conf);
    json_decref(stripped);
    return r;
}

int cni_install_write_kubeconfig(const char *path, const char *sa_dir, const char *host,
                                 const char *port, char *errbuf, size_t errsz)
{
    char p[4096], *ca = NULL, *token = NULL, *b64 = NULL, *text = NULL, *old = NULL;
    size_t ca_len, token_len, old_len;
    json_t *kc = NULL;
    int r;

    if (host == NULL || host[0] == '\0' || port == NULL || port[0] == '\0') {
        snprintf(errbuf, errsz, "KUBERNETES_SERVICE_HOST/PORT not set (not running in a pod?)");
        return -ENOENT;
    }
    snprintf(p, sizeof(p), "%s/ca.crt", sa_dir);
    r = read_file(p, 1u << 20, &ca, &ca_len);
    if (r < 0) {
        snprintf(errbuf, errsz, "read %s: %s", p, strerror(-r));
        goto out;
    }
    snprintf(p, sizeof(p), "%s/token", sa_dir);
    r = read_file(p, 1u << 20, &token, &token_len);
    if (r < 0) {
        snprintf(errbuf, errsz, "read %s: %s", p, strerror(-r));
        goto out;
    }
    while (token_len && (token[token_len - 1] == '\n' || token[token_len - 1] == '\r'))
        token[--token_len] = 0;
    b64 = malloc(4 * ((ca_len + 2) / 3) + 1);
    if (b64 == NULL) {
        r = -ENOMEM;
        goto out;
    }
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)ca, (int)ca_len);
    char server[512];
    snprintf(server, sizeof(server), strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
             port);
    kc = json_pack("{s:s, s:s, s:[{s:s, s:{s:s, s:s}}], s:[{s:s, s:{s:s}}],"
                   " s:[{s:s, s:{s:s, s:s}}], s:s}",
                   "apiVersion", "v1", "kind", "Config", "clusters", "name", "local", "cluster",
                   "server", server, "certificate-authority-data", b64, "users", "name", "ambit-cni",
                   "user", "token", token, "contexts", "name", "ambit-cni", "context", "cluster",
                   "local", "user", "ambit-cni", "current-context", "ambit-cni");
    text = kc ? json_dumps(kc, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    if (text == NULL) {
        snprintf(errbuf, errsz, "cannot build the kubeconfig (token not UTF-8?)");
        r = -EINVAL;
        goto out;
    }
    if (read_file(path, 1u << 20, &old, &old_len) == 0 && old_len == strlen(text) &&
        memcmp(old, text, old_len) == 0) {
        r = 0;
        goto out;
    }
    r = write_atomic(path, text, strlen(text), 0600);
    if (r < 0)
        snprintf(errbuf, errsz, "write %s: %s", path, strerror(-r));
    else
        r = 1;
out:
    if (token) /* do not leave the token in freed memory */
        memset(token, 0, token_len);
    free(token);
    free(ca);
    free(b64);
    if (text)
        memset(text, 0, strlen(text));
    free(text);
    free(old);
    json_decref(kc);
    return r;
}
