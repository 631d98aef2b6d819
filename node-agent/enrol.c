/*
 * enrol.c — the enrolment loop: informers on this node's Pods and all Namespaces feed a work
 * queue of pod keys; each key is reconciled (enrol / un-enrol / annotate) on worker 0's loop.
 * See enrol.h for the contract and the netns search order.
 *
 * A key stays "processing" in the queue until its annotation patch answered, so one pod is never
 * worked on twice at once; failures go back with per-key backoff (kube_queue.h).
 */
#include "enrol.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "json.h"
#include "kube.h"
#include "kube_informer.h"
#include "kube_queue.h"
#include "log.h"
#include "netns.h"
#include "nft.h"
#include "pod.h"
#include "worker.h"

#define SCOPE            "enrol"
#define CNI_STATE_SUBDIR "cni-pods" /* cni-plugin/cni_cmd.h */
#define STATE_MAX        65536
#define SCAN_MAX         4096 /* netns dir entries / state files looked at per search */

/* ------------------------------------------------------------------ decision (pure) */

const char *na_enrol_decision_str(enum na_enrol_decision d)
{
    switch (d) {
    case NA_ENROL_NO:
        return "no";
    case NA_ENROL_YES:
        return "yes";
    case NA_ENROL_WAIT:
        return "wait";
    }
    return "?";
}

static const char *jstr(const json_t *o, const char *a, const char *b)
{
    const json_t *v = json_object_get(o, a);
    if (b)
        v = json_object_get(v, b);
    return json_string_value(v);
}

size_t na_enrol_pod_ips(const json_t *pod, const char **ips, size_t max)
{
    const json_t *status = json_object_get(pod, "status");
    const json_t *arr = json_object_get(status, "podIPs");
    size_t n = 0, i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        const char *ip = json_string_value(json_object_get(v, "ip"));
        if (ip && *ip && n < max)
            ips[n++] = ip;
    }
    if (n == 0 && max > 0) {
        const char *ip = json_string_value(json_object_get(status, "podIP"));
        if (ip && *ip)
            ips[n++] = ip;
    }
    return n;
}

enum na_enrol_decision na_enrol_decide(const json_t *pod, const json_t *ns,
                                       const struct dp_ambient_policy *pol, const char **ret_reason)
{
    const char *reason = "pod deleted";
    enum na_enrol_decision d = NA_ENROL_NO;
    if (!pod || !dp_ambient_selected(pod, ns, pol, &reason))
        goto out;
    const char *phase = jstr(pod, "status", "phase");
    if (phase && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0)) {
        reason = "terminated";
        goto out;
    }
    const char *ip;
    if (!phase || strcmp(phase, "Running") != 0 || na_enrol_pod_ips(pod, &ip, 1) == 0) {
        d = NA_ENROL_WAIT;
        reason = "not running yet";
        goto out;
    }
    d = NA_ENROL_YES;
out:
    if (ret_reason)
        *ret_reason = reason;
    return d;
}

int na_enrol_policy_parse_exclude(struct dp_ambient_policy *pol, char *csv)
{
    pol->n_exclude = 0;
    char *save = NULL;
    for (char *t = strtok_r(csv, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        if (pol->n_exclude >= DP_AMBIENT_MAX_EXCLUDE)
            return -E2BIG;
        pol->exclude_ns[pol->n_exclude++] = t;
    }
    return 0;
}

/* ------------------------------------------------------------------ state */

struct enrolled {
    struct dp_list link;
    char key[DP_KUBE_QUEUE_MAX_KEY];
    char uid[NA_POD_UID_MAX];
    char netns[DP_NETNS_PATH_MAX];
    int nsfd; /* kept open while enrolled */
    char ips[NA_POD_MAX_IPS][64];
    unsigned nips;
    struct dp_nft_pod_opts base; /* defaults or the CNI plugin's record */
    struct dp_nft_pod_opts o;    /* base + the pod's annotations: what is installed */
};

struct patch_req {
    struct dp_list link;
    struct na_enrol *e;
    char key[DP_KUBE_QUEUE_MAX_KEY];
};

struct na_enrol {
    struct na_agent *a;
    struct dp_loop *loop;
    struct dp_kube_config *cfg;
    struct dp_kube_multi *multi;
    struct dp_kube_informer *pods, *nss;
    struct dp_kube_queue q;
    struct dp_timer timer;
    struct dp_defer kick;
    struct dp_list enrolled; /* struct enrolled */
    size_t n_enrolled;
    struct dp_list patches; /* struct patch_req in flight */
    struct dp_ambient_policy pol;
    char *exclude_csv;
    const char *netns_dir, *proc_root;
    char field_sel[300];
    bool synced_logged;
};

static struct enrolled *find_enrolled(struct na_enrol *e, const char *key)
{
    struct dp_list *it;
    dp_list_for_each(it, &e->enrolled) {
        struct enrolled *en = dp_container_of(it, struct enrolled, link);
        if (strcmp(en->key, key) == 0)
            return en;
    }
    return NULL;
}

size_t na_enrol_count(const struct na_enrol *e)
{
    return e ? e->n_enrolled : 0;
}

/* ------------------------------------------------------------------ finding the netns */

struct found {
    char path[DP_NETNS_PATH_MAX];
    int fd;
    const char *how;
    bool dns, bypass, ipv6;
};

static bool holds_ip(int fd, const char *const *ips, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (dp_netns_has_addr(fd, ips[i]) == 1)
            return true;
    return false;
}

/* open path, keep it only if it holds one of ips */
static int try_path(const char *path, const char *const *ips, size_t n, int *ret_fd)
{
    int fd = -1;
    int r = dp_netns_open_path(path, &fd);
    if (r < 0)
        return r;
    if (!holds_ip(fd, ips, n)) {
        close(fd);
        return -ENOENT;
    }
    *ret_fd = fd;
    return 0;
}

static int read_small(const char *path, json_t **ret)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size > STATE_MAX) {
        close(fd);
        return -EINVAL;
    }
    char *buf = malloc((size_t)st.st_size);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    ssize_t got = read(fd, buf, (size_t)st.st_size);
    close(fd);
    if (got != st.st_size) {
        free(buf);
        return -EIO;
    }
    char err[128];
    int r = dp_json_parse(buf, (size_t)got, STATE_MAX, path, ret, err, sizeof(err));
    free(buf);
    return r;
}

/* the CNI plugin's record of this uid (cni-plugin/cni_cmd.h) */
static int from_state(struct na_enrol *e, const char *uid, const char *const *ips, size_t n,
                      struct found *f)
{
    char dir[600];
    snprintf(dir, sizeof(dir), "%s/%s", e->a->opt.run_dir, CNI_STATE_SUBDIR);
    DIR *d = opendir(dir);
    if (!d)
        return -ENOENT;
    int ret = -ENOENT;
    struct dirent *de;
    for (unsigned k = 0; (de = readdir(d)) && k < SCAN_MAX; k++) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".json") != 0)
            continue;
        char path[1200];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        json_t *st = NULL;
        if (read_small(path, &st) < 0)
            continue;
        const char *suid = json_string_value(json_object_get(st, "uid"));
        const char *netns = json_string_value(json_object_get(st, "netns"));
        if (suid && netns && strcmp(suid, uid) == 0 && strlen(netns) < sizeof(f->path) &&
            try_path(netns, ips, n, &f->fd) == 0) {
            snprintf(f->path, sizeof(f->path), "%s", netns);
            f->dns = json_is_true(json_object_get(st, "dnsCapture"));
            f->bypass = json_is_true(json_object_get(st, "bypassInbound"));
            json_t *v6 = json_object_get(st, "ipv6");
            f->ipv6 = v6 ? json_is_true(v6) : true;
            f->how = strncmp(de->d_name, "enrol-", 6) == 0 ? "agent record" : "cni state";
            ret = 0;
        }
        json_decref(st);
        if (ret == 0)
            break;
    }
    closedir(d);
    return ret;
}

/* a pod the plugin already had the agent adopt through cni.sock */
static int from_adopted(struct na_enrol *e, const char *uid, const char *const *ips, size_t n,
                        struct found *f)
{
    char path[sizeof(f->path)] = "";
    struct na_agent *a = e->a;
    pthread_mutex_lock(&a->pods_mu);
    struct dp_list *it;
    dp_list_for_each(it, &a->pods) {
        struct na_pod *p = dp_container_of(it, struct na_pod, link);
        if (strcmp(p->uid, uid) == 0) {
            snprintf(path, sizeof(path), "%s", p->netns_path);
            break;
        }
    }
    pthread_mutex_unlock(&a->pods_mu);
    if (!path[0] || try_path(path, ips, n, &f->fd) < 0)
        return -ENOENT;
    snprintf(f->path, sizeof(f->path), "%s", path);
    f->how = "adopted";
    return 0;
}

/* a stable path for a netns found by fd: /proc/<pid>/ns/net of a process inside it */
static void path_for_fd(struct na_enrol *e, int fd, char *buf, size_t sz)
{
    uint64_t ino = 0;
    snprintf(buf, sz, "/proc/self/fd/%d", fd);
    if (dp_netns_inode(fd, &ino) < 0)
        return;
    DIR *d = opendir(e->proc_root);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] < '1' || de->d_name[0] > '9')
            continue;
        char p[600];
        struct stat st;
        snprintf(p, sizeof(p), "%s/%s/ns/net", e->proc_root, de->d_name);
        if (stat(p, &st) == 0 && (uint64_t)st.st_ino == ino) {
            snprintf(buf, sz, "%s", p);
            break;
        }
    }
    closedir(d);
}

static int from_proc(struct na_enrol *e, const char *uid, const char *const *ips, size_t n,
                     struct found *f)
{
    int r = dp_netns_find_pod(e->proc_root, uid, ips, n, &f->fd);
    if (r < 0)
        return r;
    path_for_fd(e, f->fd, f->path, sizeof(f->path));
    f->how = "proc scan";
    return 0;
}

/* every netns under netns_dir that holds one of the IPs; a name containing uid[0..8) wins */
static int from_netns_dir(struct na_enrol *e, const char *uid, const char *const *ips, size_t n,
                          struct found *f)
{
    DIR *d = opendir(e->netns_dir);
    if (!d)
        return -ENOENT;
    char uid8[9];
    snprintf(uid8, sizeof(uid8), "%s", uid);
    int best = -1, other = -1;
    uint64_t best_ino = 0, other_ino = 0;
    bool best_dup = false, other_dup = false;
    char best_path[sizeof(f->path)] = "", other_path[sizeof(f->path)] = "";
    struct dirent *de;
    for (unsigned k = 0; (de = readdir(d)) && k < SCAN_MAX; k++) {
        if (de->d_name[0] == '.')
            continue;
        char path[sizeof(f->path)];
        int l = snprintf(path, sizeof(path), "%s/%s", e->netns_dir, de->d_name);
        if (l < 0 || (size_t)l >= sizeof(path))
            continue;
        int fd = -1;
        uint64_t ino = 0;
        if (try_path(path, ips, n, &fd) < 0)
            continue;
        if (dp_netns_inode(fd, &ino) < 0) {
            close(fd);
            continue;
        }
        bool named = strlen(uid8) == 8 && strstr(de->d_name, uid8) != NULL;
        int *slot = named ? &best : &other;
        uint64_t *sino = named ? &best_ino : &other_ino;
        bool *dup = named ? &best_dup : &other_dup;
        char *spath = named ? best_path : other_path;
        if (*slot < 0) {
            *slot = fd;
            *sino = ino;
            snprintf(spath, sizeof(f->path), "%s", path);
        } else {
            if (*sino != ino)
                *dup = true;
            close(fd);
        }
    }
    closedir(d);
    int ret = 0;
    if (best >= 0 && !best_dup) {
        f->fd = best;
        best = -1;
        snprintf(f->path, sizeof(f->path), "%s", best_path);
    } else if (best < 0 && other >= 0 && !other_dup) {
        f->fd = other;
        other = -1;
        snprintf(f->path, sizeof(f->path), "%s", other_path);
    } else {
        ret = best >= 0 || other >= 0 ? -ENOTUNIQ : -ENOENT;
    }
    if (best >= 0)
        close(best);
    if (other >= 0)
        close(other);
    if (ret == 0)
        f->how = "netns dir";
    return ret;
}

static int find_netns(struct na_enrol *e, const char *uid, const char *const *ips, size_t n,
                      struct found *f)
{
    memset(f, 0, sizeof(*f));
    f->fd = -1;
    f->ipv6 = true;
    if (n == 0)
        return -EINVAL;
    if (from_state(e, uid, ips, n, f) == 0 || from_adopted(e, uid, ips, n, f) == 0 ||
        from_proc(e, uid, ips, n, f) == 0)
        return 0;
    return from_netns_dir(e, uid, ips, n, f);
}

/* ------------------------------------------------------------------ enrol / un-enrol */

static void probe_set(const char (*ips)[64], unsigned n, enum dp_nft_op op)
{
    struct dp_nft_addr addrs[NA_POD_MAX_IPS];
    size_t k = 0;
    for (unsigned i = 0; i < n; i++)
        if (dp_nft_addr_parse(ips[i], &addrs[k]) == 0)
            k++;
    if (k == 0 || dp_nft_host_present() <= 0)
        return;
    int r = dp_nft_host_members(addrs, k, op);
    if (r < 0)
        dp_warn(SCOPE, "probe SNAT set not updated", DP_LERR(r));
}

/* Our own record beside the plugin's (<run-dir>/cni-pods/enrol-<uid>.json, same shape), so a
 * restarted agent finds the netns of pods it enrolled without a scan. Best effort: the scans
 * remain the fallback. */
static int record_path(struct na_enrol *e, const char *uid, char *buf, size_t sz)
{
    for (const char *c = uid; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-'))
            return -EINVAL;
    int n = snprintf(buf, sz, "%s/%s/enrol-%s.json", e->a->opt.run_dir, CNI_STATE_SUBDIR, uid);
    return n < 0 || (size_t)n >= sz ? -ENAMETOOLONG : 0;
}

static void record_write(struct na_enrol *e, const struct enrolled *en, const json_t *pod)
{
    char path[1200], tmp[1210], dir[700];
    if (record_path(e, en->uid, path, sizeof(path)) < 0)
        return;
    snprintf(dir, sizeof(dir), "%s/%s", e->a->opt.run_dir, CNI_STATE_SUBDIR);
    (void)mkdir(dir, 0755);
    json_t *ips = json_array();
    for (unsigned i = 0; ips && i < en->nips; i++)
        json_array_append_new(ips, json_string(en->ips[i]));
    const char *ns = dp_kube_meta_str(pod, "namespace"), *name = dp_kube_meta_str(pod, "name");
    json_t *st = json_pack("{s:s,s:s,s:s,s:s,s:o,s:b,s:b,s:b}", "uid", en->uid, "namespace",
                           ns ? ns : "", "name", name ? name : "", "netns", en->netns, "ips",
                           ips ? ips : json_array(), "dnsCapture", en->base.dns_capture,
                           "bypassInbound", en->base.bypass_inbound, "ipv6", en->base.ipv6);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (!st || json_dump_file(st, tmp, JSON_COMPACT) < 0 || rename(tmp, path) < 0) {
        dp_warn(SCOPE, "cannot record the enrolment (a restart will scan for the netns)",
                DP_LS("path", path));
        unlink(tmp);
    }
    json_decref(st);
}

static void record_remove(struct na_enrol *e, const char *uid)
{
    char path[1200];
    if (record_path(e, uid, path, sizeof(path)) == 0)
        (void)unlink(path);
}

static void enrolled_free(struct enrolled *en)
{
    if (!en)
        return;
    if (en->nsfd >= 0)
        close(en->nsfd);
    free(en);
}

enum adopted { ADOPTED_NOT, ADOPTED_HERE, ADOPTED_ELSEWHERE };

/* Is uid adopted, and in the netns behind en's fd? (CNI DEL + ADD of a new sandbox replace the
 * adoption behind our back.) */
static enum adopted adopted_state(struct na_enrol *e, const struct enrolled *en)
{
    struct na_agent *a = e->a;
    enum adopted st = ADOPTED_NOT;
    uint64_t ino = 0;
    (void)dp_netns_inode(en->nsfd, &ino);
    pthread_mutex_lock(&a->pods_mu);
    struct dp_list *it;
    dp_list_for_each(it, &a->pods) {
        struct na_pod *p = dp_container_of(it, struct na_pod, link);
        if (strcmp(p->uid, en->uid) == 0) {
            st = p->netns_ino == ino ? ADOPTED_HERE : ADOPTED_ELSEWHERE;
            break;
        }
    }
    pthread_mutex_unlock(&a->pods_mu);
    return st;
}

/* release listeners, remove rules; the entry is unlinked and freed. An adoption of the same uid
 * in another netns (a new sandbox the plugin set up) is left alone. */
static void unenrol(struct na_enrol *e, struct enrolled *en, const char *why)
{
    bool elsewhere = adopted_state(e, en) == ADOPTED_ELSEWHERE;
    if (!elsewhere)
        na_pod_release(e->a, en->uid);
    int r = dp_nft_pod_remove_in(en->nsfd, &en->o);
    if (!elsewhere)
        probe_set((const char(*)[64])en->ips, en->nips, DP_NFT_REMOVE);
    if (r < 0)
        dp_warn(SCOPE, "cannot remove the redirection", DP_LS("pod", en->key),
                DP_LS("netns", en->netns), DP_LERR(r));
    dp_info(SCOPE, "pod un-enrolled", DP_LS("pod", en->key), DP_LS("uid", en->uid),
            DP_LS("reason", why));
    record_remove(e, en->uid);
    dp_list_del(&en->link);
    e->n_enrolled--;
    enrolled_free(en);
}

static int enrol(struct na_enrol *e, const char *key, const json_t *pod, const char *uid,
                 const char *const *ips, size_t n, const char *why)
{
    struct found f;
    int r = find_netns(e, uid, ips, n, &f);
    if (r < 0) {
        dp_warn(SCOPE, "cannot find the pod's network namespace", DP_LS("pod", key),
                DP_LS("uid", uid), DP_LS("ip", ips[0]), DP_LERR(r));
        return r;
    }
    struct enrolled *en = calloc(1, sizeof(*en));
    if (!en) {
        close(f.fd);
        return -ENOMEM;
    }
    en->nsfd = f.fd;
    snprintf(en->key, sizeof(en->key), "%s", key);
    snprintf(en->uid, sizeof(en->uid), "%s", uid);
    snprintf(en->netns, sizeof(en->netns), "%s", f.path);
    for (size_t i = 0; i < n && i < NA_POD_MAX_IPS; i++)
        snprintf(en->ips[en->nips++], sizeof(en->ips[0]), "%s", ips[i]);
    dp_nft_pod_opts_init(&en->base);
    en->base.dns_capture = f.dns;
    en->base.bypass_inbound = f.bypass;
    en->base.ipv6 = f.ipv6;
    dp_ambient_redirect_opts(pod, &en->base, &en->o);

    r = dp_nft_pod_apply_in(en->nsfd, &en->o);
    if (r < 0) {
        dp_warn(SCOPE, "cannot install the redirection", DP_LS("pod", key),
                DP_LS("netns", en->netns), DP_LERR(r));
        goto fail;
    }
    struct na_pod_spec spec = {
            .uid = uid,
            .netns = en->netns,
            .ns = dp_kube_meta_str(pod, "namespace"),
            .name = dp_kube_meta_str(pod, "name"),
    };
    for (unsigned i = 0; i < en->nips; i++)
        spec.ips[spec.nips++] = en->ips[i];
    r = na_pod_adopt(e->a, &spec);
    if (r < 0) {
        /* rules without listeners would black-hole the pod: take them out again */
        dp_warn(SCOPE, "cannot adopt the pod; redirection removed again", DP_LS("pod", key),
                DP_LS("netns", en->netns), DP_LERR(r));
        (void)dp_nft_pod_remove_in(en->nsfd, &en->o);
        goto fail;
    }
    probe_set((const char(*)[64])en->ips, en->nips, DP_NFT_APPLY);
    record_write(e, en, pod);
    dp_list_add_tail(&e->enrolled, &en->link);
    e->n_enrolled++;
    dp_info(SCOPE, "pod enrolled", DP_LS("pod", key), DP_LS("uid", uid), DP_LS("ip", ips[0]),
            DP_LS("netns", en->netns), DP_LS("found_by", f.how), DP_LS("reason", why),
            DP_LB("dns_capture", en->o.dns_capture), DP_LB("bypass_inbound", en->o.bypass_inbound));
    return 0;
fail:
    enrolled_free(en);
    return r;
}

static bool same_ips(const struct enrolled *en, const char *const *ips, size_t n)
{
    if (n != en->nips)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(en->ips[i], ips[i]) != 0)
            return false;
    return true;
}

static bool is_adopted_uid(struct na_enrol *e, const char *uid)
{
    bool found = false;
    pthread_mutex_lock(&e->a->pods_mu);
    struct dp_list *it;
    dp_list_for_each(it, &e->a->pods) {
        if (strcmp(dp_container_of(it, struct na_pod, link)->uid, uid) == 0) {
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&e->a->pods_mu);
    return found;
}

/* ------------------------------------------------------------------ annotation */

static void kick(struct na_enrol *e);

static void on_patched(int r, long http, json_t *body, const char *errmsg, void *arg)
{
    struct patch_req *p = arg;
    struct na_enrol *e = p->e;
    uint64_t now = dp_loop_now(e->loop);
    (void)http;
    (void)body;
    if (r < 0 && r != -ENOENT) {
        int64_t delay = dp_kube_queue_retry(&e->q, p->key, now);
        dp_warn(SCOPE, "cannot update the pod annotation", DP_LS("pod", p->key),
                DP_LS("detail", errmsg ? errmsg : ""), DP_LI("retry_ms", delay), DP_LERR(r));
    } else {
        dp_kube_queue_forget(&e->q, p->key);
    }
    dp_kube_queue_finish(&e->q, p->key, now);
    dp_list_del(&p->link);
    free(p);
    kick(e);
}

/* 1 = a patch is in flight (the key finishes in on_patched), 0 = nothing to do, -errno */
static int annotate(struct na_enrol *e, const char *key, const json_t *pod, bool enabled)
{
    const char *cur = dp_kube_annotation(pod, NA_ENROL_ANNOTATION);
    if (enabled ? (cur && strcmp(cur, "enabled") == 0) : cur == NULL)
        return 0;
    char *path = NULL;
    int r = dp_kube_path(&DP_KUBE_RES_PODS, dp_kube_meta_str(pod, "namespace"),
                         dp_kube_meta_str(pod, "name"), "status", NULL, &path);
    if (r < 0)
        return r;
    json_t *patch = json_pack("{s:{s:{s:o}}}", "metadata", "annotations", NA_ENROL_ANNOTATION,
                              enabled ? json_string("enabled") : json_null());
    struct patch_req *p = calloc(1, sizeof(*p));
    if (!patch || !p) {
        r = -ENOMEM;
        goto out;
    }
    p->e = e;
    snprintf(p->key, sizeof(p->key), "%s", key);
    r = dp_kube_multi_request(e->multi, "PATCH", path, "application/merge-patch+json", patch,
                              on_patched, p, NULL);
    if (r < 0)
        goto out;
    dp_list_add_tail(&e->patches, &p->link);
    p = NULL;
    r = 1;
out:
    free(p);
    json_decref(patch);
    free(path);
    return r;
}

/* ------------------------------------------------------------------ reconcile */

/* 1 = finishes asynchronously, 0 = done, -errno = retry */
static int reconcile(struct na_enrol *e, const char *key)
{
    json_t *pod = dp_kube_informer_get(e->pods, key);
    json_t *nso = NULL;
    if (pod) {
        const char *ns = dp_kube_meta_str(pod, "namespace");
        nso = ns ? dp_kube_informer_get(e->nss, ns) : NULL;
    }
    const char *why = NULL;
    enum na_enrol_decision d = na_enrol_decide(pod, nso, &e->pol, &why);
    const char *uid = pod ? dp_kube_meta_str(pod, "uid") : NULL;
    const char *ips[NA_POD_MAX_IPS];
    size_t nips = pod ? na_enrol_pod_ips(pod, ips, NA_POD_MAX_IPS) : 0;
    struct enrolled *en = find_enrolled(e, key);

    if (en && (!uid || strcmp(uid, en->uid) != 0)) {
        unenrol(e, en, pod ? "pod re-created" : why);
        en = NULL;
    }
    if (d == NA_ENROL_WAIT)
        return 0;
    if (d == NA_ENROL_YES) {
        if (!uid || strlen(uid) >= NA_POD_UID_MAX)
            return 0; /* not a pod we can name; nothing to retry */
        if (en && (!same_ips(en, ips, nips) || adopted_state(e, en) != ADOPTED_HERE)) {
            unenrol(e, en, "sandbox changed");
            en = NULL;
        }
        if (!en) {
            int r = enrol(e, key, pod, uid, ips, nips, why);
            if (r < 0)
                return r;
        } else {
            /* an annotation of §1.11 changed: rewrite the rules in place (one atomic batch) */
            struct dp_nft_pod_opts o;
            dp_ambient_redirect_opts(pod, &en->base, &o);
            if (o.dns_capture != en->o.dns_capture || o.bypass_inbound != en->o.bypass_inbound) {
                int r = dp_nft_pod_apply_in(en->nsfd, &o);
                if (r < 0)
                    return r;
                en->o = o;
                dp_info(SCOPE, "pod redirection updated", DP_LS("pod", key),
                        DP_LB("dns_capture", o.dns_capture),
                        DP_LB("bypass_inbound", o.bypass_inbound));
            }
        }
        return annotate(e, key, pod, true);
    }
    /* NA_ENROL_NO */
    if (en) {
        unenrol(e, en, why);
    } else if (pod && uid && nips > 0 &&
               (dp_kube_annotation(pod, NA_ENROL_ANNOTATION) || is_adopted_uid(e, uid))) {
        /* enrolled before we started (or by the plugin): find it to take the rules out */
        struct found f;
        int found = find_netns(e, uid, ips, nips, &f); /* before the release and the record go */
        na_pod_release(e->a, uid);
        record_remove(e, uid);
        if (found == 0) {
            struct dp_nft_pod_opts o;
            dp_nft_pod_opts_init(&o);
            int r = dp_nft_pod_remove_in(f.fd, &o);
            close(f.fd);
            if (r < 0)
                dp_warn(SCOPE, "cannot remove the redirection", DP_LS("pod", key),
                        DP_LS("netns", f.path), DP_LERR(r));
        }
        dp_info(SCOPE, "pod un-enrolled", DP_LS("pod", key), DP_LS("uid", uid),
                DP_LS("reason", why));
    }
    return pod ? annotate(e, key, pod, false) : 0;
}

/* ------------------------------------------------------------------ queue */

static bool synced(const struct na_enrol *e)
{
    return dp_kube_informer_synced(e->pods) && dp_kube_informer_synced(e->nss);
}

static void run_queue(struct na_enrol *e)
{
    if (!synced(e) || atomic_load(&e->a->draining))
        return;
    uint64_t now = dp_loop_now(e->loop);
    const char *k;
    while (dp_kube_queue_pop(&e->q, now, &k) == 0) {
        char key[DP_KUBE_QUEUE_MAX_KEY];
        snprintf(key, sizeof(key), "%s", k);
        int r = reconcile(e, key);
        if (r == 1)
            continue; /* finished by on_patched */
        if (r < 0)
            (void)dp_kube_queue_retry(&e->q, key, now);
        else
            dp_kube_queue_forget(&e->q, key);
        dp_kube_queue_finish(&e->q, key, now);
        now = dp_loop_now(e->loop);
    }
    int64_t due = dp_kube_queue_next_due(&e->q, now);
    if (due >= 0)
        dp_timer_arm(e->loop, &e->timer, (uint64_t)due);
}

static void on_timer(struct dp_loop *loop, void *arg)
{
    (void)loop;
    run_queue(arg);
}

static void on_kick(struct dp_loop *loop, void *arg)
{
    (void)loop;
    run_queue(arg);
}

static void kick(struct na_enrol *e)
{
    dp_loop_defer(e->loop, &e->kick);
}

static void enqueue(struct na_enrol *e, const json_t *pod)
{
    char key[DP_KUBE_QUEUE_MAX_KEY];
    if (dp_kube_obj_key(pod, key, sizeof(key)) < 0)
        return;
    int r = dp_kube_queue_add(&e->q, key, dp_loop_now(e->loop), 0);
    if (r < 0)
        dp_warn(SCOPE, "cannot queue pod", DP_LS("pod", key), DP_LERR(r));
    kick(e);
}

static void on_pod_add(json_t *obj, void *arg)
{
    enqueue(arg, obj);
}

static void on_pod_update(json_t *old_obj, json_t *new_obj, void *arg)
{
    (void)old_obj;
    enqueue(arg, new_obj);
}

static void on_pod_delete(json_t *obj, void *arg)
{
    enqueue(arg, obj);
}

/* a namespace changed: every pod of it on this node may flip */
static void ns_changed(struct na_enrol *e, const json_t *nso)
{
    const char *name = dp_kube_meta_str(nso, "name");
    if (!name)
        return;
    const struct dp_kube_store *s = dp_kube_informer_store(e->pods);
    const char *k;
    json_t *pod;
    json_object_foreach(s->objs, k, pod) {
        const char *pns = dp_kube_meta_str(pod, "namespace");
        if (pns && strcmp(pns, name) == 0)
            enqueue(e, pod);
    }
}

static void on_ns_add(json_t *obj, void *arg)
{
    ns_changed(arg, obj);
}

static void on_ns_update(json_t *old_obj, json_t *new_obj, void *arg)
{
    const char *a = dp_kube_label(old_obj, DP_AMBIENT_LABEL);
    const char *b = dp_kube_label(new_obj, DP_AMBIENT_LABEL);
    if ((a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0))
        ns_changed(arg, new_obj);
}

static void on_ns_delete(json_t *obj, void *arg)
{
    ns_changed(arg, obj);
}

/* after a restart: drop our records of pods that no longer exist on this node */
static void records_gc(struct na_enrol *e)
{
    char dir[700];
    snprintf(dir, sizeof(dir), "%s/%s", e->a->opt.run_dir, CNI_STATE_SUBDIR);
    DIR *d = opendir(dir);
    if (!d)
        return;
    json_t *uids = json_object();
    const struct dp_kube_store *s = dp_kube_informer_store(e->pods);
    const char *k;
    json_t *pod;
    json_object_foreach(s->objs, k, pod) {
        const char *uid = dp_kube_meta_str(pod, "uid");
        if (uids && uid)
            json_object_set_new(uids, uid, json_true());
    }
    struct dirent *de;
    for (unsigned n = 0; uids && (de = readdir(d)) && n < SCAN_MAX; n++) {
        size_t l = strlen(de->d_name);
        if (strncmp(de->d_name, "enrol-", 6) != 0 || l < 12 ||
            strcmp(de->d_name + l - 5, ".json") != 0)
            continue;
        char uid[NA_POD_UID_MAX];
        snprintf(uid, sizeof(uid), "%.*s", (int)(l - 11), de->d_name + 6);
        if (!json_object_get(uids, uid))
            record_remove(e, uid);
    }
    json_decref(uids);
    closedir(d);
}

static void on_synced(struct dp_kube_informer *inf, void *arg)
{
    struct na_enrol *e = arg;
    (void)inf;
    if (synced(e) && !e->synced_logged) {
        e->synced_logged = true;
        records_gc(e); /* before the log line: tests wait for it */
        dp_info(SCOPE, "pods and namespaces synced: reconciling",
                DP_LU("pods", dp_kube_store_size(dp_kube_informer_store(e->pods))),
                DP_LU("namespaces", dp_kube_store_size(dp_kube_informer_store(e->nss))));
    }
    kick(e);
}

static const struct dp_kube_informer_ops POD_OPS = {
        .on_add = on_pod_add,
        .on_update = on_pod_update,
        .on_delete = on_pod_delete,
        .on_synced = on_synced,
};

static const struct dp_kube_informer_ops NS_OPS = {
        .on_add = on_ns_add,
        .on_update = on_ns_update,
        .on_delete = on_ns_delete,
        .on_synced = on_synced,
};

/* ------------------------------------------------------------------ life cycle */

static int load_config(struct na_agent *a, struct dp_kube_config **ret_cfg)
{
    char err[512] = "";
    int r;
    const char *mode = getenv("AMBIT_ENROL");
    if (!mode || !*mode)
        mode = "auto";
    if (a->opt.kubeconfig) {
        r = dp_kube_config_load_kubeconfig(a->opt.kubeconfig, NULL, ret_cfg, err, sizeof(err));
        if (r < 0)
            dp_error(SCOPE, "cannot load the kubeconfig", DP_LS("path", a->opt.kubeconfig),
                     DP_LS("detail", err), DP_LERR(r));
        return r;
    }
    if (strcmp(mode, "off") == 0)
        return 0;
    if (strcmp(mode, "on") == 0) {
        r = dp_kube_config_default(NULL, ret_cfg, err, sizeof(err));
        if (r < 0)
            dp_error(SCOPE, "AMBIT_ENROL=on but no API access", DP_LS("detail", err), DP_LERR(r));
        return r;
    }
    if (strcmp(mode, "auto") != 0) {
        dp_error(SCOPE, "AMBIT_ENROL must be auto, on or off", DP_LS("value", mode));
        return -EINVAL;
    }
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *node = getenv("NODE_NAME");
    if (!host || !*host || !node || !*node)
        return 0;
    r = dp_kube_config_in_cluster(NULL, ret_cfg, err, sizeof(err));
    if (r < 0) {
        dp_warn(SCOPE, "in a cluster but without API credentials: enrolment loop off",
                DP_LS("detail", err), DP_LERR(r));
        return 0;
    }
    return 0;
}

int na_enrol_new(struct na_agent *a, struct na_enrol **ret_e)
{
    struct dp_kube_config *cfg = NULL;
    int r = load_config(a, &cfg);
    if (r < 0)
        return r;
    if (!cfg) {
        *ret_e = NULL;
        return 0;
    }
    /* host side of enrolment (reference §1.10): the probe SNAT table in this (the node's)
     * netns, so kubelet probes to enrolled pods arrive from 169.254.7.127 and bypass capture;
     * the plugin and this loop add each enrolled pod's IPs to its sets.
     * Only with AMBIT_PROBE_SNAT=on (the node-agent chart sets it): a dev run on a laptop or in a
     * test must not leave a table in the machine's own netns. */
    const char *snat = getenv("AMBIT_PROBE_SNAT");
    if (snat && strcmp(snat, "on") == 0) {
        struct dp_nft_host_opts hopts;
        dp_nft_host_opts_init(&hopts);
        r = dp_nft_host_apply(&hopts);
        if (r < 0)
            dp_warn(SCOPE, "cannot install the host probe SNAT table; probes to STRICT pods may "
                           "fail",
                    DP_LERR(r));
        else
            dp_info(SCOPE, "host probe SNAT table in place", DP_LS("table", DP_NFT_HOST_TABLE));
    }
    struct na_enrol *e = calloc(1, sizeof(*e));
    if (!e) {
        dp_kube_config_free(cfg);
        return -ENOMEM;
    }
    e->a = a;
    e->cfg = cfg;
    e->loop = a->workers[0].loop;
    dp_list_init(&e->enrolled);
    dp_list_init(&e->patches);
    /* Istio: 5 ms .. 5 s per key, 10 qps bucket */
    dp_kube_queue_init(&e->q, 5, 5000, 10, 100, 0);
    dp_timer_init(&e->timer, on_timer, e);
    dp_defer_init(&e->kick, on_kick, e);

    const char *v = getenv("AMBIT_EXCLUDE_NAMESPACES");
    e->exclude_csv = strdup(v ? v : "kube-system");
    if (!e->exclude_csv) {
        r = -ENOMEM;
        goto fail;
    }
    r = na_enrol_policy_parse_exclude(&e->pol, e->exclude_csv);
    if (r < 0) {
        dp_error(SCOPE, "too many excluded namespaces", DP_LU("max", DP_AMBIENT_MAX_EXCLUDE));
        goto fail;
    }
    e->pol.self_ns = getenv("POD_NAMESPACE");
    e->pol.self_name = getenv("POD_NAME");
    e->pol.mesh_ns = e->pol.self_ns && *e->pol.self_ns ? e->pol.self_ns : "istio-system";
    e->netns_dir = (v = getenv("AMBIT_NETNS_DIR")) && *v ? v : "/var/run/netns";
    e->proc_root = (v = getenv("AMBIT_PROC_ROOT")) && *v ? v : "/proc";

    r = dp_kube_multi_new(e->loop, e->cfg, &e->multi);
    if (r < 0)
        goto fail;
    snprintf(e->field_sel, sizeof(e->field_sel), "spec.nodeName=%s", a->opt.node_name);
    struct dp_kube_list_opts sel = {.field_selector = e->field_sel};
    r = dp_kube_informer_new(e->multi, &DP_KUBE_RES_PODS, NULL, &sel, &POD_OPS, e, &e->pods);
    if (r < 0)
        goto fail;
    r = dp_kube_informer_new(e->multi, &DP_KUBE_RES_NAMESPACES, NULL, NULL, &NS_OPS, e, &e->nss);
    if (r < 0)
        goto fail;
    if ((r = dp_kube_informer_start(e->nss)) < 0 || (r = dp_kube_informer_start(e->pods)) < 0)
        goto fail;
    dp_info(SCOPE, "enrolment loop started", DP_LS("server", cfg->server),
            DP_LS("node", a->opt.node_name), DP_LU("excluded_namespaces", e->pol.n_exclude),
            DP_LS("netns_dir", e->netns_dir));
    *ret_e = e;
    return 0;
fail:
    dp_error(SCOPE, "cannot start the enrolment loop", DP_LERR(r));
    na_enrol_free(e);
    return r;
}

void na_enrol_free(struct na_enrol *e)
{
    if (!e)
        return;
    dp_timer_cancel(&e->timer);
    dp_defer_cancel(&e->kick);
    dp_kube_informer_free(e->pods);
    dp_kube_informer_free(e->nss);
    dp_kube_multi_free(e->multi); /* cancels patches without calling on_patched */
    while (!dp_list_empty(&e->patches)) {
        struct patch_req *p = dp_container_of(e->patches.next, struct patch_req, link);
        dp_list_del(&p->link);
        free(p);
    }
    /* pods stay adopted and captured: only our bookkeeping goes */
    while (!dp_list_empty(&e->enrolled)) {
        struct enrolled *en = dp_container_of(e->enrolled.next, struct enrolled, link);
        dp_list_del(&en->link);
        enrolled_free(en);
    }
    dp_kube_queue_done(&e->q);
    dp_kube_config_free(e->cfg);
    free(e->exclude_csv);
    free(e);
}
