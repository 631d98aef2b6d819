/*
 * cni_cmd.c — see cni_cmd.h. Logging happens here (the place where decisions are made), into
 * the log file main.c opened; messages returned to the runtime go through cni_result.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cni_agent.h"
#include "cni_cmd.h"
#include "cni_kube.h"
#include "common.h"
#include "json.h"
#include "log.h"
#include "netns.h"
#include "nft.h"

#define SCOPE "cni"

/* ------------------------------------------------------------------ per-pod state file */

static int state_path(const struct cni_conf *c, const char *cid, char *buf, size_t sz)
{
    int n = snprintf(buf, sz, "%s/%s/%s.json", c->run_dir, CNI_STATE_SUBDIR, cid);
    return n < 0 || (size_t)n >= sz ? -ENAMETOOLONG : 0;
}

static int mkdir_p(const char *dir)
{
    char tmp[512];
    int n = snprintf(tmp, sizeof(tmp), "%s", dir);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -ENAMETOOLONG;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int state_write(const struct cni_conf *c, const char *cid, const json_t *st)
{
    char path[512], tmp[530], dir[300];
    int r;

    snprintf(dir, sizeof(dir), "%s/%s", c->run_dir, CNI_STATE_SUBDIR);
    r = mkdir_p(dir);
    if (r < 0)
        return r;
    r = state_path(c, cid, path, sizeof(path));
    if (r < 0)
        return r;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (json_dump_file(st, tmp, JSON_COMPACT) < 0)
        return -EIO;
    if (rename(tmp, path) < 0) {
        r = -errno;
        unlink(tmp);
        return r;
    }
    return 0;
}

/* 0 + new ref, -ENOENT when not recorded */
static int state_read(const struct cni_conf *c, const char *cid, json_t **ret)
{
    char path[512], *data = NULL;
    struct stat st;
    int r, fd;

    r = state_path(c, cid, path, sizeof(path));
    if (r < 0)
        return r;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size > 65536) {
        close(fd);
        return -EINVAL;
    }
    data = malloc((size_t)st.st_size);
    if (data == NULL) {
        close(fd);
        return -ENOMEM;
    }
    ssize_t n = read(fd, data, (size_t)st.st_size);
    close(fd);
    if (n != st.st_size) {
        free(data);
        return -EIO;
    }
    char perr[128];
    r = dp_json_parse(data, (size_t)n, 65536, path, ret, perr, sizeof(perr));
    free(data);
    return r;
}

static void state_remove(const struct cni_conf *c, const char *cid)
{
    char path[512];
    if (state_path(c, cid, path, sizeof(path)) == 0)
        unlink(path);
}

/* ------------------------------------------------------------------ helpers */

static void pod_opts(const struct cni_conf *c, struct dp_nft_pod_opts *o)
{
    dp_nft_pod_opts_init(o);
    o->dns_capture = c->dns_capture;
    o->ipv6 = c->ipv6;
}

static int print_json(FILE *out, const json_t *j)
{
    if (json_dumpf(j, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER) < 0)
        return -EIO;
    fputc('\n', out);
    return fflush(out) == 0 ? 0 : -EIO;
}

static int open_netns(const struct cni_env *env, int *ret_fd, struct cni_error *e)
{
    int r = dp_netns_open_path(env->netns, ret_fd);
    if (r < 0)
        return cni_fail_errno(e, CNI_STAGE_NETNS, r, "cannot open netns \"%.200s\"", env->netns);
    return 0;
}

/* Kubelet probes to the pod are SNATed on the host (probe set in the agent's host table). The
 * agent owns that table; when it is not there (yet) there is nothing to update. Asking first
 * is much cheaper than letting a batch fail: the kernel's abort path costs milliseconds. */
static void host_probe_set(const struct dp_nft_addr *addrs, size_t n, enum dp_nft_op op)
{
    if (n == 0 || dp_nft_host_present() <= 0)
        return;
    int r = dp_nft_host_members(addrs, n, op);
    if (r < 0)
        dp_warn(SCOPE, "probe SNAT set not updated", DP_LERR(r));
}

/* ------------------------------------------------------------------ ADD */

static int cmd_add(const struct cni_env *env, struct cni_conf *c, FILE *out, struct cni_error *e)
{
    char err[512] = "";
    json_t *pod = NULL, *nso = NULL, *st = NULL;
    const char *reason = "not a Kubernetes pod";
    int nsfd = -1, r, ret = -1;
    bool adopted = false, rules = false;
    struct dp_nft_pod_opts o;
    struct cni_pod p = {0};
    const char *ips[CNI_MAX_IPS];
    uint64_t t0 = dp_now_us(), t_kube = 0, t_adopt = 0, t_rules = 0, t;

    pod_opts(c, &o);

    if (c->prev_result == NULL)
        return cni_fail(e, CNI_ERR_INVALID_CONFIG, NULL,
                        "prevResult is required: ambit-cni must be chained after the plugin "
                        "that sets up the interface");
    if (open_netns(env, &nsfd, e) < 0)
        return -1;

    bool k8s = env->pod_name[0] && env->pod_namespace[0];
    bool ambient = false;
    if (k8s && cni_conf_ns_excluded(c, env->pod_namespace)) {
        reason = "namespace excluded";
    } else if (k8s && cni_installer_pod(c, env->pod_namespace, env->pod_name)) {
        reason = "the installer's own pod (decided without the API server)";
    } else if (k8s) {
        t = dp_now_us();
        r = cni_kube_lookup(c, env->pod_namespace, env->pod_name, &pod, &nso, err, sizeof(err));
        t_kube = dp_now_us() - t;
        if (r < 0) {
            dp_error(SCOPE, "API server lookup failed", DP_LS("pod", env->pod_name),
                     DP_LS("namespace", env->pod_namespace), DP_LS("detail", err), DP_LERR(r));
            cni_fail_errno(e, CNI_STAGE_KUBE, r, "cannot look up pod %s/%s: %s",
                           env->pod_namespace, env->pod_name, err);
            goto out;
        }
        ambient = cni_enrol_decide(c, pod, nso, &reason);
    }
    if (!ambient) {
        dp_info(SCOPE, "pod not captured", DP_LS("container", env->container_id),
                DP_LS("pod", env->pod_name), DP_LS("namespace", env->pod_namespace),
                DP_LS("reason", reason));
        ret = print_json(out, c->prev_result) < 0
                      ? cni_fail(e, CNI_ERR_IO, NULL, "cannot write the result to stdout")
                      : 0;
        goto out;
    }

    const char *uid = json_string_value(
            json_object_get(json_object_get(pod, "metadata"), "uid"));
    if (uid == NULL || uid[0] == '\0')
        uid = env->pod_uid[0] ? env->pod_uid : env->container_id;
    for (size_t i = 0; i < c->n_ips; i++)
        ips[i] = c->ip_str[i];
    p = (struct cni_pod){.uid = uid,
                         .namespace = env->pod_namespace,
                         .name = env->pod_name,
                         .container_id = env->container_id,
                         .netns = env->netns,
                         .ips = ips,
                         .n_ips = c->n_ips};

    t = dp_now_us();
    r = cni_agent_adopt(c, &p, err, sizeof(err));
    t_adopt = dp_now_us() - t;
    if (r < 0) {
        dp_error(SCOPE, "node agent did not adopt the pod; ADD fails so the runtime retries",
                 DP_LS("pod", env->pod_name), DP_LS("namespace", env->pod_namespace),
                 DP_LS("detail", err), DP_LERR(r));
        cni_fail_errno(e, CNI_STAGE_AGENT, r, "ambient pod %s/%s not adopted: %s",
                       env->pod_namespace, env->pod_name, err);
        goto out;
    }
    adopted = true;

    cni_pod_redirect_opts(c, pod, &o); /* config defaults + the pod's annotations */
    t = dp_now_us();
    r = dp_nft_pod_apply_in(nsfd, &o);
    t_rules = dp_now_us() - t;
    if (r < 0) {
        dp_error(SCOPE, "installing the redirection failed", DP_LS("pod", env->pod_name),
                 DP_LS("namespace", env->pod_namespace), DP_LERR(r));
        cni_fail_errno(e, CNI_STAGE_RULES, r, "cannot install traffic redirection in %.200s",
                       env->netns);
        goto out;
    }
    rules = true;

    host_probe_set(c->ips, c->n_ips, DP_NFT_APPLY);

    st = cni_agent_adopt_body(&p);
    if (st == NULL) {
        cni_fail(e, CNI_ERR_INTERNAL, NULL, "out of memory");
        goto out;
    }
    json_object_set_new(st, "dnsCapture", json_boolean(o.dns_capture));
    json_object_set_new(st, "bypassInbound", json_boolean(o.bypass_inbound));
    json_object_set_new(st, "ipv6", json_boolean(c->ipv6));
    r = state_write(c, env->container_id, st);
    if (r < 0) {
        dp_error(SCOPE, "cannot record pod state", DP_LS("run_dir", c->run_dir), DP_LERR(r));
        cni_fail_errno(e, CNI_STAGE_IO, r, "cannot record pod state under %s", c->run_dir);
        goto out;
    }
    if (print_json(out, c->prev_result) < 0) {
        cni_fail(e, CNI_ERR_IO, NULL, "cannot write the result to stdout");
        state_remove(c, env->container_id);
        goto out;
    }
    dp_info(SCOPE, "pod captured", DP_LS("container", env->container_id),
            DP_LS("pod", env->pod_name), DP_LS("namespace", env->pod_namespace),
            DP_LS("uid", uid), DP_LS("reason", reason), DP_LB("dns_capture", o.dns_capture),
            DP_LB("bypass_inbound", o.bypass_inbound), DP_LU("kube_us", t_kube),
            DP_LU("adopt_us", t_adopt), DP_LU("rules_us", t_rules),
            DP_LU("total_us", dp_now_us() - t0));
    ret = 0;
out:
    if (ret < 0 && rules) {
        r = dp_nft_pod_remove_in(nsfd, &o);
        if (r < 0)
            dp_error(SCOPE, "rollback: removing rules failed", DP_LERR(r));
    }
    if (ret < 0 && adopted) {
        char e2[256];
        r = cni_agent_release(c, p.uid, e2, sizeof(e2));
        if (r < 0)
            dp_warn(SCOPE, "rollback: agent release failed", DP_LS("detail", e2), DP_LERR(r));
    }
    json_decref(st);
    json_decref(pod);
    json_decref(nso);
    if (nsfd >= 0)
        close(nsfd);
    return ret;
}

/* ------------------------------------------------------------------ DEL */

static int cmd_del(const struct cni_env *env, struct cni_conf *c, struct cni_error *e)
{
    json_t *st = NULL;
    char err[512];
    int r = state_read(c, env->container_id, &st);
    (void)e;
    if (r == -ENOENT) {
        dp_debug(SCOPE, "DEL: pod was not captured", DP_LS("container", env->container_id));
        return 0;
    }
    if (r < 0) { /* unreadable state: drop it, DEL must not wedge the runtime */
        dp_warn(SCOPE, "DEL: unreadable pod state, removing it",
                DP_LS("container", env->container_id), DP_LERR(r));
        state_remove(c, env->container_id);
        return 0;
    }
    int nsfd = -1;
    if (env->netns && dp_netns_open_path(env->netns, &nsfd) == 0) {
        struct dp_nft_pod_opts o;
        pod_opts(c, &o);
        o.ipv6 = true; /* remove whatever any earlier config put there */
        r = dp_nft_pod_remove_in(nsfd, &o);
        if (r < 0)
            dp_warn(SCOPE, "DEL: removing rules failed", DP_LERR(r));
        close(nsfd);
    }
    const char *uid = json_string_value(json_object_get(st, "uid"));
    if (uid) {
        r = cni_agent_release(c, uid, err, sizeof(err));
        if (r < 0)
            dp_warn(SCOPE, "DEL: node agent not told (it reconciles from its pod watch)",
                    DP_LS("uid", uid), DP_LS("detail", err), DP_LERR(r));
    }
    json_t *ips = json_object_get(st, "ips"), *v;
    struct dp_nft_addr addrs[CNI_MAX_IPS];
    size_t i, n = 0;
    json_array_foreach(ips, i, v)
    {
        if (n < CNI_MAX_IPS && json_is_string(v) &&
            dp_nft_addr_parse(json_string_value(v), &addrs[n]) == 0)
            n++;
    }
    host_probe_set(addrs, n, DP_NFT_REMOVE);
    state_remove(c, env->container_id);
    dp_info(SCOPE, "pod released", DP_LS("container", env->container_id),
            DP_LS("uid", uid ? uid : ""));
    json_decref(st);
    return 0;
}

/* ------------------------------------------------------------------ CHECK */

static int cmd_check(const struct cni_env *env, struct cni_conf *c, struct cni_error *e)
{
    json_t *st = NULL;
    int nsfd = -1, r;

    if (cni_version_cmp(c->cni_version, "0.4.0") < 0)
        return cni_fail(e, CNI_ERR_INCOMPATIBLE_VERSION, NULL,
                        "CHECK needs cniVersion 0.4.0 or later, config has %s", c->cni_version);
    if (c->prev_result == NULL)
        return cni_fail(e, CNI_ERR_INVALID_CONFIG, NULL, "prevResult is required for CHECK");
    if (open_netns(env, &nsfd, e) < 0)
        return -1;
    r = state_read(c, env->container_id, &st);
    if (r == -ENOENT) {
        close(nsfd);
        return 0; /* not captured: nothing of ours to check */
    }
    json_decref(st);
    if (r < 0) {
        close(nsfd);
        return cni_fail_errno(e, CNI_STAGE_IO, r, "cannot read pod state of %s",
                              env->container_id);
    }
    r = dp_nft_pod_present_in(nsfd);
    close(nsfd);
    if (r < 0)
        return cni_fail_errno(e, CNI_STAGE_RULES, r, "cannot inspect redirection in %.200s",
                              env->netns);
    if (r == 0) {
        dp_error(SCOPE, "CHECK: redirection missing", DP_LS("container", env->container_id));
        return cni_fail(e, CNI_ERR_REDIRECT, NULL,
                        "traffic redirection of captured pod is missing in %.200s", env->netns);
    }
    return 0;
}

/* ------------------------------------------------------------------ dispatch */

static void open_log(const struct cni_conf *c)
{
    char path[300];
    if (mkdir_p(c->run_dir) < 0)
        return;
    snprintf(path, sizeof(path), "%s/%s", c->run_dir, CNI_LOG_FILE);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd >= 0)
        dp_log_set_fd(fd); /* lives until exit */
    if (c->log_level[0])
        dp_log_set_level_spec(c->log_level);
}

static int version_cmd(const char *in, size_t len, FILE *out, struct cni_error *e)
{
    json_t *j = NULL;
    char perr[128];
    const char *v = "1.1.0";
    if (len && dp_json_parse(in, len, CNI_STDIN_MAX, "stdin", &j, perr, sizeof(perr)) == 0) {
        const char *cv = json_string_value(json_object_get(j, "cniVersion"));
        if (cv && cni_version_supported(cv))
            v = cv;
    }
    json_t *o = cni_version_json(v);
    json_decref(j);
    int r = o ? print_json(out, o) : -ENOMEM;
    json_decref(o);
    return r < 0 ? cni_fail(e, CNI_ERR_IO, NULL, "cannot write the version result") : 0;
}

int cni_cmd_run(const struct cni_env *env, const char *in, size_t len, FILE *out,
                struct cni_error *e, char *ret_version, size_t version_sz)
{
    struct cni_conf c;
    int r;

    if (env->command == CNI_CMD_VERSION)
        return version_cmd(in, len, out, e);
    if (cni_conf_parse(in, len, &c, e) < 0)
        return -1;
    if (ret_version)
        snprintf(ret_version, version_sz, "%s", c.cni_version);
    open_log(&c);
    dp_debug(SCOPE, "command", DP_LS("command", cni_command_str(env->command)),
             DP_LS("container", env->container_id ? env->container_id : ""));
    switch (env->command) {
    case CNI_CMD_ADD:
        r = cmd_add(env, &c, out, e);
        break;
    case CNI_CMD_DEL:
        r = cmd_del(env, &c, e);
        break;
    case CNI_CMD_CHECK:
        r = cmd_check(env, &c, e);
        break;
    case CNI_CMD_STATUS:
    case CNI_CMD_GC:
        /* The plugin can always serve ADD for pods outside the mesh; ambient pods whose agent
         * is down fail their own ADD (and are retried), so STATUS does not fail the network. */
        if (cni_version_cmp(c.cni_version, "1.1.0") < 0)
            r = cni_fail(e, CNI_ERR_INCOMPATIBLE_VERSION, NULL,
                         "%s needs cniVersion 1.1.0, config has %s",
                         cni_command_str(env->command), c.cni_version);
        else
            r = 0;
        break;
    default:
        r = cni_fail(e, CNI_ERR_INVALID_ENV, NULL, "unsupported command");
        break;
    }
    if (r < 0)
        dp_warn(SCOPE, "command failed", DP_LS("command", cni_command_str(env->command)),
                DP_LU("code", (unsigned)e->code), DP_LS("msg", e->msg));
    cni_conf_done(&c);
    return r;
}
