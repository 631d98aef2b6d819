/*
 * ambit-cni — chained CNI plugin (see cni_cmd.h) and its installer (see cni_install.h).
 *
 *   CNI mode:     CNI_COMMAND=ADD|DEL|CHECK|VERSION|STATUS|GC ... ambit-cni < config
 *   install mode: ambit-cni install --bin-dir D --conf-dir C [--agent-socket S] [--run-dir R]
 *                            [--kubeconfig K] [--exclude-namespaces a,b] [--dns-capture]
 *                            [--host-conf-dir H] [--write-kubeconfig|--no-write-kubeconfig]
 *                            [--watch [--uninstall-on-exit]]
 *                 ambit-cni uninstall --bin-dir D --conf-dir C   (binary, conflist entry and the
 *                            kubeconfig beside it; also the manual cleanup of a node left with the
 *                            plugin, e.g. when the last installer pod was killed hard)
 *
 * --watch is the cni DaemonSet's main process: it stays up, puts the plugin back whenever the
 * primary CNI rewrites its config (inotify on the conf dir, plus a periodic re-check that also
 * refreshes the kubeconfig's rotated token), and on SIGTERM leaves the plugin in place (so new
 * pods wait for the next agent rather than start uncaptured) unless --uninstall-on-exit or the
 * release is being removed (its DaemonSet gone or deleting, or its ServiceAccount/RBAC gone):
 * then the plugin, its conflist entry and its kubeconfig are removed.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "cni_cmd.h"
#include "cni_config.h"
#include "cni_install.h"
#include "cni_result.h"
#include "common.h"
#include "kube_release.h"
#include "log.h"

static const char *env_get(const char *name)
{
    return getenv(name);
}

/* whole stdin, bounded */
static int read_stdin(char **ret, size_t *ret_len)
{
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL)
        return -ENOMEM;
    for (;;) {
        if (len == cap) {
            if (cap >= CNI_STDIN_MAX) {
                free(buf);
                return -EMSGSIZE;
            }
            cap = cap * 2 > CNI_STDIN_MAX ? CNI_STDIN_MAX : cap * 2;
            char *nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                return -ENOMEM;
            }
            buf = nb;
        }
        ssize_t n = read(STDIN_FILENO, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int r = -errno;
            free(buf);
            return r;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    *ret = buf;
    *ret_len = len;
    return 0;
}

static int usage(FILE *f)
{
    fprintf(f, "usage: ambit-cni install|uninstall --bin-dir DIR --conf-dir DIR\n"
               "         [--agent-socket PATH] [--run-dir DIR] [--kubeconfig PATH]\n"
               "         [--exclude-namespaces NS,NS] [--dns-capture]\n"
               "         [--host-conf-dir DIR] [--write-kubeconfig|--no-write-kubeconfig]\n"
               "         [--watch [--uninstall-on-exit]]\n"
               "       (as a CNI plugin it is run by the container runtime with CNI_* set)\n");
    return 2;
}

#define WATCH_RECHECK_MS 60000
#define WATCH_DECIDE_MS  15000
#define KUBECONFIG_NAME  "ambit-cni-kubeconfig"

struct inst {
    struct cni_install_opts o;
    const char *kc_write;   /* where to write the plugin's kubeconfig (our view); NULL: don't */
    const char *ready_file; /* <run-dir>/cni-ready while installed (watch mode), or NULL */
};

static void set_ready(const struct inst *in, bool ready)
{
    if (in->ready_file == NULL)
        return;
    if (!ready) {
        unlink(in->ready_file);
        return;
    }
    int fd = open(in->ready_file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0)
        close(fd);
}

static int install_once(const struct inst *in)
{
    char err[512] = "";
    int r;
    if (in->kc_write) {
        const char *sa = getenv("AMBIT_SA_DIR");
        r = cni_install_write_kubeconfig(in->kc_write,
                                         sa ? sa : "/var/run/secrets/kubernetes.io/serviceaccount",
                                         getenv("KUBERNETES_SERVICE_HOST"),
                                         getenv("KUBERNETES_SERVICE_PORT"), err, sizeof(err));
        if (r < 0) {
            dp_error("cni-install", "cannot write the plugin's kubeconfig", DP_LS("detail", err),
                     DP_LERR(r));
            set_ready(in, false);
            return r;
        }
        if (r > 0)
            dp_info("cni-install", "kubeconfig written", DP_LS("path", in->kc_write));
    }
    r = cni_install(&in->o, err, sizeof(err));
    if (r < 0)
        dp_error("cni-install", "install failed", DP_LS("detail", err), DP_LERR(r));
    set_ready(in, r == 0);
    return r;
}

/*
 * At SIGTERM: is the release being removed? An answer the API server could not give (slow or
 * briefly unreachable on a loaded node) is asked again until WATCH_DECIDE_MS: giving up at
 * once would leave the plugin, with a kubeconfig nobody refreshes, in the conflist of a node
 * whose release is gone. The chart's terminationGracePeriodSeconds leaves room for that.
 */
static bool release_removed(const char **ret_why)
{
    uint64_t deadline = dp_now_ms() + WATCH_DECIDE_MS;
    int tries = 0, r;
    for (;;) {
        r = dp_kube_daemonset_removed(getenv("AMBIT_SA_DIR"), 3000, ret_why);
        tries++;
        if (r >= 0 || getenv("POD_NAME") == NULL || dp_now_ms() + 500 >= deadline)
            break;
        usleep(500 * 1000);
    }
    if (r < 0)
        dp_warn("cni-install", "cannot tell an update from an uninstall", DP_LS("reason", *ret_why),
                DP_LU("tries", (unsigned)tries), DP_LERR(r));
    return r == 1;
}

/* Stay up and keep the plugin chained. Returns the exit status. */
static int watch(const struct inst *in, bool uninstall_on_exit)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC);
    int ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (sfd < 0 || ifd < 0 ||
        inotify_add_watch(ifd, in->o.conf_dir,
                          IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE) < 0) {
        dp_error("cni-install", "cannot watch the CNI conf dir", DP_LS("dir", in->o.conf_dir),
                 DP_LERR(-errno));
        return 1;
    }
    dp_info("cni-install", "watching", DP_LS("conf_dir", in->o.conf_dir));
    install_once(in);
    for (;;) {
        struct pollfd p[2] = {{.fd = sfd, .events = POLLIN}, {.fd = ifd, .events = POLLIN}};
        int n = poll(p, 2, WATCH_RECHECK_MS);
        if (n < 0 && errno == EINTR)
            continue;
        if (p[0].revents & POLLIN)
            break;
        if (p[1].revents & POLLIN) {
            char buf[4096];
            while (read(ifd, buf, sizeof(buf)) > 0) /* drain; our own writes land here too */
                ;
            usleep(100 * 1000); /* let a writer finish a burst of changes */
            while (read(ifd, buf, sizeof(buf)) > 0)
                ;
        }
        install_once(in); /* cheap and idempotent: unchanged files are not rewritten */
    }
    set_ready(in, false);
    const char *why = "--uninstall-on-exit";
    if (uninstall_on_exit || release_removed(&why)) {
        char err[512] = "";
        int r = cni_uninstall(&in->o, err, sizeof(err));
        if (r < 0) {
            dp_error("cni-install", "uninstall failed", DP_LS("detail", err), DP_LERR(r));
            return 1;
        }
        if (in->kc_write && unlink(in->kc_write) < 0 && errno != ENOENT)
            dp_warn("cni-install", "cannot remove the plugin's kubeconfig",
                    DP_LS("path", in->kc_write), DP_LERR(-errno));
        dp_info("cni-install", "uninstalled on exit", DP_LS("reason", why));
    } else {
        dp_info("cni-install", "exiting, plugin left in place", DP_LS("reason", why));
    }
    return 0;
}

static bool env_true(const char *name)
{
    const char *v = getenv(name);
    return v && (strcmp(v, "true") == 0 || strcmp(v, "1") == 0);
}

/*
 * Paths written into the conflist are read by the runtime on the host; the installer usually
 * runs in a container that sees the host's conf dir under /host. --host-conf-dir says where the
 * conf dir is on the host; by default a leading "/host" is dropped (the chart's mount layout).
 * Settings come from flags, else from the environment the cni chart's ConfigMap provides
 * (EXCLUDE_NAMESPACES, AMBIENT_DNS_CAPTURE, AMBIENT_IPV6, LOG_LEVEL). The kubeconfig is written
 * when --write-kubeconfig is given or when running in a pod (KUBERNETES_SERVICE_HOST set),
 * unless --no-write-kubeconfig.
 */
static int install_main(int argc, char **argv)
{
    static const struct option opts[] = {
            {"bin-dir", required_argument, NULL, 'b'},
            {"conf-dir", required_argument, NULL, 'c'},
            {"host-conf-dir", required_argument, NULL, 'H'},
            {"agent-socket", required_argument, NULL, 's'},
            {"run-dir", required_argument, NULL, 'r'},
            {"kubeconfig", required_argument, NULL, 'k'},
            {"exclude-namespaces", required_argument, NULL, 'x'},
            {"dns-capture", no_argument, NULL, 'd'},
            {"write-kubeconfig", no_argument, NULL, 'W'},
            {"no-write-kubeconfig", no_argument, NULL, 'N'},
            {"watch", no_argument, NULL, 'w'},
            {"uninstall-on-exit", no_argument, NULL, 'U'},
            {"help", no_argument, NULL, 'h'},
            {0},
    };
    const char *bin = NULL, *conf = NULL, *host_conf = NULL, *sock = NULL, *run = NULL;
    const char *kc = NULL, *ex = getenv("EXCLUDE_NAMESPACES");
    bool dns = env_true("AMBIENT_DNS_CAPTURE"), install = strcmp(argv[1], "install") == 0;
    bool write_kc = getenv("KUBERNETES_SERVICE_HOST") != NULL, watching = false;
    bool uninstall_on_exit = false;
    char err[512] = "", kcbuf[4096], kcw[4096], hc[2048], ready[4096];
    int c, r;

    optind = 2;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'b': bin = optarg; break;
        case 'c': conf = optarg; break;
        case 'H': host_conf = optarg; break;
        case 's': sock = optarg; break;
        case 'r': run = optarg; break;
        case 'k': kc = optarg; break;
        case 'x': ex = optarg; break;
        case 'd': dns = true; break;
        case 'W': write_kc = true; break;
        case 'N': write_kc = false; break;
        case 'w': watching = true; break;
        case 'U': uninstall_on_exit = true; break;
        case 'h': return usage(stdout) - 2;
        default: return usage(stderr);
        }
    }
    if (bin == NULL || conf == NULL || optind != argc || strlen(conf) >= 2000 ||
        (host_conf && strlen(host_conf) >= 2000))
        return usage(stderr);
    if (host_conf == NULL) {
        host_conf = strncmp(conf, "/host/", 6) == 0 ? conf + 5 : conf;
    }
    snprintf(hc, sizeof(hc), "%s", host_conf);
    if (kc == NULL) { /* the plugin reads it beside the CNI config */
        snprintf(kcbuf, sizeof(kcbuf), "%s/%s", hc, KUBECONFIG_NAME);
        kc = kcbuf;
    }
    snprintf(kcw, sizeof(kcw), "%s/%s", conf, KUBECONFIG_NAME);
    struct inst in = {.o = {.bin_dir = bin, .conf_dir = conf},
                      .kc_write = write_kc ? kcw : NULL};
    if (watching) {
        snprintf(ready, sizeof(ready), "%s/cni-ready", run ? run : CNI_DEFAULT_RUN_DIR);
        in.ready_file = ready;
    }
    in.o.plugin = cni_install_plugin_entry(sock, run, kc, ex && *ex ? ex : NULL, dns);
    if (in.o.plugin == NULL)
        return 1;
    /* the plugin recognises the installer's own pods by namespace without the API server */
    const char *pns = getenv("POD_NAMESPACE");
    if (pns && *pns && strlen(pns) <= 253)
        json_object_set_new(in.o.plugin, "mesh_namespace", json_string(pns));
    const char *v6 = getenv("AMBIENT_IPV6");
    if (v6 && (strcmp(v6, "false") == 0 || strcmp(v6, "0") == 0))
        json_object_set_new(in.o.plugin, "ipv6", json_false());
    const char *ll = getenv("LOG_LEVEL");
    if (ll && *ll)
        json_object_set_new(in.o.plugin, "log_level", json_string(ll));
    if (install && watching) {
        r = watch(&in, uninstall_on_exit);
        json_decref(in.o.plugin);
        return r;
    }
    if (install) {
        r = install_once(&in);
    } else {
        r = cni_uninstall(&in.o, err, sizeof(err));
        /* the kubeconfig holds a token: it goes with the plugin (also when cleaning up by hand) */
        if (r == 0 && unlink(kcw) < 0 && errno != ENOENT) {
            r = -errno;
            snprintf(err, sizeof(err), "remove %.400s: %s", kcw, strerror(errno));
        }
    }
    json_decref(in.o.plugin);
    if (r < 0) {
        if (!install)
            dp_error("cni-install", "uninstall failed", DP_LS("detail", err), DP_LERR(r));
        return 1;
    }
    dp_info("cni-install", install ? "installed" : "uninstalled", DP_LS("bin_dir", bin),
            DP_LS("conf_dir", conf));
    return 0;
}

int main(int argc, char **argv)
{
    struct cni_error e = {0};
    struct cni_env env;
    char version[16] = "";
    char *in = NULL;
    size_t len = 0;
    int r;

    dp_log_init_from_env();
    if (argc > 1 && (strcmp(argv[1], "install") == 0 || strcmp(argv[1], "uninstall") == 0))
        return install_main(argc, argv);
    if (argc > 1)
        return usage(stderr);

    /* no log file yet: anything before the config is read goes to stderr only */
    dp_log_set_fd(STDERR_FILENO);
    if (cni_env_parse(env_get, &env, &e) < 0)
        return cni_error_print(stdout, &e, NULL);
    r = read_stdin(&in, &len);
    if (r < 0) {
        cni_fail_errno(&e, r == -EMSGSIZE ? CNI_STAGE_DECODE : CNI_STAGE_IO, r,
                       "cannot read the network configuration from stdin");
        return cni_error_print(stdout, &e, NULL);
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    r = cni_cmd_run(&env, in, len, stdout, &e, version, sizeof(version));
    free(in);
    curl_global_cleanup();
    if (r < 0)
        return cni_error_print(stdout, &e, version[0] ? version : NULL);
    return 0;
}
