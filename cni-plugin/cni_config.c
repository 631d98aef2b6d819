/*
 * cni_config.c — see cni_config.h.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cni_config.h"
#include "json.h"

const char *cni_command_str(enum cni_command c)
{
    switch (c) {
    case CNI_CMD_ADD:
        return "ADD";
    case CNI_CMD_DEL:
        return "DEL";
    case CNI_CMD_CHECK:
        return "CHECK";
    case CNI_CMD_VERSION:
        return "VERSION";
    case CNI_CMD_STATUS:
        return "STATUS";
    case CNI_CMD_GC:
        return "GC";
    }
    return "?";
}

/* copy bounded; 0 or -1 when it does not fit */
static int copy(char *dst, size_t cap, const char *src, size_t n)
{
    if (n >= cap)
        return -1;
    memcpy(dst, src, n);
    dst[n] = 0;
    return 0;
}

static bool printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

int cni_args_parse(const char *args, struct cni_env *env, struct cni_error *e)
{
    if (args == NULL || args[0] == '\0')
        return 0;
    size_t total = strnlen(args, CNI_ARGS_MAX + 1);
    if (total > CNI_ARGS_MAX)
        return cni_fail(e, CNI_ERR_INVALID_ENV, NULL, "CNI_ARGS longer than %u bytes",
                        CNI_ARGS_MAX);
    const char *p = args, *end = args + total;
    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *stop = semi ? semi : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        if (stop == p) { /* empty pair: tolerate "a=b;" */
            p = stop + 1;
            continue;
        }
        if (eq == NULL || eq == p)
            return cni_fail(e, CNI_ERR_INVALID_ENV, NULL,
                            "CNI_ARGS: malformed pair at offset %zu (want KEY=VALUE)",
                            (size_t)(p - args));
        size_t kl = (size_t)(eq - p), vl = (size_t)(stop - eq - 1);
        const char *v = eq + 1;
        char *dst = NULL;
        size_t cap = 0;
        if (kl == 17 && memcmp(p, "K8S_POD_NAMESPACE", kl) == 0) {
            dst = env->pod_namespace;
            cap = sizeof(env->pod_namespace);
        } else if (kl == 12 && memcmp(p, "K8S_POD_NAME", kl) == 0) {
            dst = env->pod_name;
            cap = sizeof(env->pod_name);
        } else if (kl == 11 && memcmp(p, "K8S_POD_UID", kl) == 0) {
            dst = env->pod_uid;
            cap = sizeof(env->pod_uid);
        } else if (kl == 26 && memcmp(p, "K8S_POD_INFRA_CONTAINER_ID", kl) == 0) {
            dst = env->infra_container_id;
            cap = sizeof(env->infra_container_id);
        }
        if (dst) {
            if (!printable(v, vl) || memchr(v, '/', vl))
                return cni_fail(e, CNI_ERR_INVALID_ENV, NULL,
                                "CNI_ARGS: %.*s has an invalid character", (int)kl, p);
            if (copy(dst, cap, v, vl) < 0)
                return cni_fail(e, CNI_ERR_INVALID_ENV, NULL, "CNI_ARGS: %.*s is too long",
                                (int)kl, p);
        }
        p = stop + 1;
    }
    return 0;
}

int cni_env_parse(const char *(*get)(const char *name), struct cni_env *ret, struct cni_error *e)
{
    struct cni_env env;
    const char *cmd = get("CNI_COMMAND");

    memset(&env, 0, sizeof(env));
    if (cmd == NULL || cmd[0] == '\0')
        return cni_fail(e, CNI_ERR_INVALID_ENV, NULL, "CNI_COMMAND is not set");
    if (strcmp(cmd, "ADD") == 0)
        env.command = CNI_CMD_ADD;
    else if (strcmp(cmd, "DEL") == 0)
        env.command = CNI_CMD_DEL;
    else if (strcmp(cmd, "CHECK") == 0)
        env.command = CNI_CMD_CHECK;
    else if (strcmp(cmd, "VERSION") == 0)
        env.command = CNI_CMD_VERSION;
    else if (strcmp(cmd, "STATUS") == 0)
        env.command = CNI_CMD_STATUS;
    else if (strcmp(cmd, "GC") == 0)
        env.command = CNI_CMD_GC;
    else
        return cni_fail(e, CNI_ERR_INVALID_ENV, NULL, "CNI_COMMAND \"%.32s\" is not supported",
                        cmd);

    env.container_id = get("CNI_CONTAINERID");
    env.netns = get("CNI_NETNS");
    env.ifname = get("CNI_IFNAME");
    env.path = get("CNI_PATH");
    if (env.netns && env.netns[0] == '\0')
        env.netns = NULL;

    bool per_container = env.command == CNI_CMD_ADD || env.command == CNI_CMD_DEL ||
                         env.command == CNI_CMD_CHECK;
    if (per_container) {
        if (env.container_id == NULL || env.container_id[0] == '\0')
            return cni_fail(e, CNI_ERR_INVALID_ENV, NULL, "CNI_CONTAINERID is not set");
        size_t n = strnlen(env.container_id, 256);
        if (n >= 256 || !printable(env.container_id, n) || strchr(env.container_id, '/') ||
            strcmp(env.container_id, ".") == 0 || strcmp(env.container_id, "..") == 0)
            return cni_fail(e, CNI_ERR_INVALID_ENV, NULL,
                            "CNI_CONTAINERID is not a valid container id");
        if (env.ifname == NULL || env.ifname[0] == '\0')
            return cni_fail(e, CNI_ERR_INVALID_ENV, NULL, "CNI_IFNAME is not set");
        if (env.command != CNI_CMD_DEL && env.netns == NULL)
            return cni_fail(e, CNI_ERR_INVALID_ENV, NULL, "CNI_NETNS is not set");
        if (env.netns && strnlen(env.netns, DP_NETNS_PATH_MAX) >= DP_NETNS_PATH_MAX)
            return cni_fail(e, CNI_ERR_INVALID_ENV, NULL, "CNI_NETNS is too long");
    }
    if (cni_args_parse(get("CNI_ARGS"), &env, e) < 0)
        return -1;
    *ret = env;
    return 0;
}

/* ------------------------------------------------------------------ stdin config */

static int get_strbuf(const json_t *o, const char *key, bool required, char *dst, size_t cap,
                      const struct dp_jpath *p, struct dp_jerr *je)
{
    const char *s = NULL;
    int r = dp_json_get_str(o, key, required, &s, p, je);
    if (r <= 0)
        return r;
    size_t n = strlen(s);
    if (n >= cap)
        return dp_jerr_set(je, p, key, "longer than %zu bytes", cap - 1);
    if (!printable(s, n))
        return dp_jerr_set(je, p, key, "contains control characters");
    memcpy(dst, s, n + 1);
    return 1;
}

static int parse_prev_result(json_t *pr, struct cni_conf *c, struct dp_jerr *je)
{
    struct dp_jpath p;
    json_t *ips = NULL, *ifs = NULL, *v;
    size_t i;
    int r;

    dp_jpath_init(&p, "prevResult");
    if (!json_is_object(pr))
        return dp_jerr_set(je, &p, NULL, "expected object, got %s", dp_json_type_str(pr));
    const char *ver = NULL;
    r = dp_json_get_str(pr, "cniVersion", false, &ver, &p, je);
    if (r < 0)
        return r;
    r = dp_json_get_arr(pr, "interfaces", false, 64, &ifs, &p, je);
    if (r < 0)
        return r;
    if (ifs) {
        dp_jpath_push_key(&p, "interfaces");
        json_array_foreach(ifs, i, v)
        {
            dp_jpath_push_index(&p, i);
            const char *name = NULL;
            if (!json_is_object(v))
                return dp_jerr_set(je, &p, NULL, "expected object, got %s",
                                   dp_json_type_str(v));
            if (dp_json_get_str(v, "name", true, &name, &p, je) < 0)
                return -EINVAL;
            dp_jpath_pop(&p);
        }
        dp_jpath_pop(&p);
    }
    r = dp_json_get_arr(pr, "ips", false, CNI_MAX_IPS, &ips, &p, je);
    if (r < 0)
        return r;
    if (ips == NULL)
        return 0;
    dp_jpath_push_key(&p, "ips");
    json_array_foreach(ips, i, v)
    {
        const char *addr = NULL;
        long long ifidx = -1;
        dp_jpath_push_index(&p, i);
        if (!json_is_object(v))
            return dp_jerr_set(je, &p, NULL, "expected object, got %s", dp_json_type_str(v));
        if (dp_json_get_str(v, "address", true, &addr, &p, je) < 0)
            return -EINVAL;
        if (dp_nft_addr_parse(addr, &c->ips[c->n_ips]) < 0)
            return dp_jerr_set(je, &p, "address", "not an IP address: \"%.64s\"", addr);
        if (dp_json_get_int(v, "interface", false, 0, ifs ? (long long)json_array_size(ifs) - 1 : 0,
                            &ifidx, &p, je) < 0)
            return -EINVAL;
        if (json_object_get(v, "interface") && ifs == NULL)
            return dp_jerr_set(je, &p, "interface", "refers to interfaces, which are absent");
        size_t n = strcspn(addr, "/");
        memcpy(c->ip_str[c->n_ips], addr, n); /* parse succeeded: n < INET6_ADDRSTRLEN */
        c->ip_str[c->n_ips][n] = 0;
        c->n_ips++;
        dp_jpath_pop(&p);
    }
    return 0;
}

int cni_conf_parse(const char *data, size_t len, struct cni_conf *conf, struct cni_error *e)
{
    struct cni_conf c;
    struct dp_jpath p;
    struct dp_jerr je;
    char perr[256];
    json_t *root = NULL, *pr = NULL, *ex = NULL;
    long long ms;
    int r;

    memset(&c, 0, sizeof(c));
    snprintf(c.agent_socket, sizeof(c.agent_socket), "%s", CNI_DEFAULT_AGENT_SOCKET);
    snprintf(c.run_dir, sizeof(c.run_dir), "%s", CNI_DEFAULT_RUN_DIR);
    snprintf(c.kubeconfig, sizeof(c.kubeconfig), "%s", CNI_DEFAULT_KUBECONFIG);
    snprintf(c.mesh_namespace, sizeof(c.mesh_namespace), "%s", CNI_DEFAULT_MESH_NS);
    snprintf(c.exclude_ns[0], sizeof(c.exclude_ns[0]), "kube-system");
    c.n_exclude_ns = 1;
    c.kube_timeout_ms = 3000;
    c.agent_timeout_ms = 5000;
    c.ipv6 = true;

    if (len == 0)
        return cni_fail(e, CNI_ERR_DECODE, NULL, "no network configuration on stdin");
    r = dp_json_parse(data, len, CNI_STDIN_MAX, "stdin", &root, perr, sizeof(perr));
    if (r < 0)
        return cni_fail(e, CNI_ERR_DECODE, perr, "network configuration is not valid JSON");
    dp_jpath_init(&p, "");
    if (!json_is_object(root)) {
        cni_fail(e, CNI_ERR_DECODE, NULL, "network configuration must be a JSON object, got %s",
                 dp_json_type_str(root));
        goto fail;
    }
    if (get_strbuf(root, "cniVersion", true, c.cni_version, sizeof(c.cni_version), &p, &je) < 0)
        goto bad;
    if (!cni_version_supported(c.cni_version)) {
        cni_fail(e, CNI_ERR_INCOMPATIBLE_VERSION, "supported: 0.3.0 0.3.1 0.4.0 1.0.0 1.1.0",
                 "cniVersion \"%s\" is not supported", c.cni_version);
        goto fail;
    }
    if (get_strbuf(root, "name", false, c.name, sizeof(c.name), &p, &je) < 0 ||
        get_strbuf(root, "type", false, c.type, sizeof(c.type), &p, &je) < 0 ||
        get_strbuf(root, "agent_socket", false, c.agent_socket, sizeof(c.agent_socket), &p,
                   &je) < 0 ||
        get_strbuf(root, "run_dir", false, c.run_dir, sizeof(c.run_dir), &p, &je) < 0 ||
        get_strbuf(root, "kubeconfig", false, c.kubeconfig, sizeof(c.kubeconfig), &p, &je) < 0 ||
        get_strbuf(root, "mesh_namespace", false, c.mesh_namespace, sizeof(c.mesh_namespace), &p,
                   &je) < 0 ||
        get_strbuf(root, "log_level", false, c.log_level, sizeof(c.log_level), &p, &je) < 0 ||
        dp_json_get_bool(root, "dns_capture", false, &c.dns_capture, &p, &je) < 0 ||
        dp_json_get_bool(root, "ipv6", false, &c.ipv6, &p, &je) < 0)
        goto bad;
    ms = c.kube_timeout_ms;
    if (dp_json_get_int(root, "kube_timeout_ms", false, 100, 60000, &ms, &p, &je) < 0)
        goto bad;
    c.kube_timeout_ms = (unsigned)ms;
    ms = c.agent_timeout_ms;
    if (dp_json_get_int(root, "agent_timeout_ms", false, 100, 120000, &ms, &p, &je) < 0)
        goto bad;
    c.agent_timeout_ms = (unsigned)ms;
    if (dp_json_get_arr(root, "exclude_namespaces", false, CNI_MAX_EXCLUDE_NS, &ex, &p, &je) < 0)
        goto bad;
    if (ex) {
        size_t i;
        json_t *v;
        c.n_exclude_ns = 0;
        dp_jpath_push_key(&p, "exclude_namespaces");
        json_array_foreach(ex, i, v)
        {
            dp_jpath_push_index(&p, i);
            if (!json_is_string(v) || json_string_length(v) == 0 ||
                json_string_length(v) >= sizeof(c.exclude_ns[0])) {
                dp_jerr_set(&je, &p, NULL, "expected a namespace name");
                goto bad;
            }
            snprintf(c.exclude_ns[c.n_exclude_ns++], sizeof(c.exclude_ns[0]), "%s",
                     json_string_value(v));
            dp_jpath_pop(&p);
        }
        dp_jpath_pop(&p);
    }
    if (c.agent_socket[0] != '/') {
        dp_jerr_set(&je, &p, "agent_socket", "must be an absolute path");
        goto bad;
    }
    if (c.run_dir[0] != '/') {
        dp_jerr_set(&je, &p, "run_dir", "must be an absolute path");
        goto bad;
    }

    pr = json_object_get(root, "prevResult");
    if (pr && !json_is_null(pr)) {
        if (parse_prev_result(pr, &c, &je) < 0)
            goto bad;
        c.prev_result = json_incref(pr);
    }
    json_decref(root);
    *conf = c;
    return 0;
bad:
    cni_fail(e, CNI_ERR_INVALID_CONFIG, NULL, "%s", je.msg);
fail:
    json_decref(root);
    return -1;
}

void cni_conf_done(struct cni_conf *conf)
{
    if (conf == NULL)
        return;
    json_decref(conf->prev_result);
    conf->prev_result = NULL;
}

int cni_conf_ns_excluded(const struct cni_conf *conf, const char *ns)
{
    for (size_t i = 0; i < conf->n_exclude_ns; i++)
        if (strcmp(conf->exclude_ns[i], ns) == 0)
            return 1;
    return 0;
}
