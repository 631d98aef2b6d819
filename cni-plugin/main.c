/*
 * ambit-cni — chained CNI plugin (see cni_cmd.h) and its installer (see cni_install.h).
 *
 *   CNI mode:     CNI_COMMAND=ADD|DEL|CHECK|VERSION|STATUS|GC ... ambit-cni < config
 *   install mode: ambit-cni install --bin-dir D --conf-dir C [--agent-socket S] [--run-dir R]
 *                            [--kubeconfig K] [--exclude-namespaces a,b] [--dns-capture]
 *                            [--write-kubeconfig] [--watch [--uninstall-on-exit]]
 *                 ambit-cni uninstall --bin-dir D --conf-dir C
 *
 * --watch is the cni DaemonSet's main process: it stays up, puts the plugin back whenever the
 * primary CNI rewrites its config (inotify on the conf dir, plus a periodic re-check that also
 * refreshes the kubeconfig's rotated token), and on SIGTERM leaves the plugin in place (so new
 * pods wait for the next agent rather than start uncaptured) unless --uninstall-on-exit.
 */
#include <errno.h>
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
               "         [--write-kubeconfig] [--watch [--uninstall-on-exit]]\n"
               "       (as a CNI plugin it is run by the container runtime with CNI_* set)\n");
    return 2;
}

#define WATCH_RECHECK_MS 60000

static int install_once(const struct cni_install_opts *o, const char *kc, bool write_kc)
{
    char err[512] = "";
    int r;
    if (write_kc) {
        const char *sa = getenv("AMBIT_SA_DIR");
        r = cni_install_write_kubeconfig(kc, sa ? sa : "/var/run/secrets/kubernetes.io/serviceaccount",
                                         getenv("KUBERNETES_SERVICE_HOST"),
                                         getenv("KUBERNETES_SERVICE_PORT"), err, sizeof(err));
        if (r < 0) {
            dp_error("cni-install", "cannot write the plugin's kubeconfig", DP_LS("detail", err),
                     DP_LERR(r));
            return r;
        }
        if (r > 0)
            dp_info("cni-install", "kubeconfig written", DP_LS("path", kc));
    }
    r = cni_install(o, err, sizeof(err));
    if (r < 0)
        dp_error("cni-install", "install failed", DP_LS("detail", err), DP_LERR(r));
    return r;
}

/* Stay up and keep the plugin chained. Returns the exit status. */
static int watch(const struct cni_install_opts *o, const char *kc, bool write_kc,
                 bool uninstall_on_exit)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC);
    int ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (sfd < 0 || ifd < 0 ||
        inotify_add_watch(ifd, o->conf_dir,
                          IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE) < 0) {
        dp_error("cni-install", "cannot watch the CNI conf dir", DP_LS("dir", o->conf_dir),
                 DP_LERR(-errno));
        return 1;
    }
    dp_info("cni-install", "watching", DP_LS("conf_dir", o->conf_dir));
    install_once(o, kc, write_kc);
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
        install_once(o, kc, write_kc); /* cheap and idempotent: unchanged files are not rewritten */
    }
    if (uninstall_on_exit) {
        char err[512] = "";
        int r = cni_uninstall(o, err, sizeof(err));
        if (r < 0) {
            dp_error("cni-install", "uninstall failed", DP_LS("detail", err), DP_LERR(r));
            return 1;
        }
        dp_info("cni-install", "uninstalled on exit");
    } else {
        dp_info("cni-install", "exiting, plugin left in place");
    }
    return 0;
}

static int install_main(int argc, char **argv)
{
    static const struct option opts[] = {
            {"bin-dir", required_argument, NULL, 'b'},
            {"conf-dir", required_argument, NULL, 'c'},
            {"agent-socket", required_argument, NULL, 's'},
            {"run-dir", required_argument, NULL, 'r'},
            {"kubeconfig", required_argument, NULL, 'k'},
            {"exclude-namespaces", required_argument, NULL, 'x'},
            {"dns-capture", no_argument, NULL, 'd'},
            {"write-kubeconfig", no_argument, NULL, 'W'},
            {"watch", no_argument, NULL, 'w'},
            {"uninstall-on-exit", no_argument, NULL, 'U'},
            {"help", no_argument, NULL, 'h'},
            {0},
    };
    const char *bin = NULL, *conf = NULL, *sock = NULL, *run = NULL, *kc = NULL, *ex = NULL;
    bool dns = false, install = strcmp(argv[1], "install") == 0;
    bool write_kc = false, watching = false, uninstall_on_exit = false;
    char err[512] = "";
    int c, r;

    optind = 2;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'b': bin = optarg; break;
        case 'c': conf = optarg; break;
        case 's': sock = optarg; break;
        case 'r': run = optarg; break;
        case 'k': kc = optarg; break;
        case 'x': ex = optarg; break;
        case 'd': dns = true; break;
        case 'W': write_kc = true; break;
        case 'w': watching = true; break;
        case 'U': uninstall_on_exit = true; break;
        case 'h': return usage(stdout) - 2;
        default: return usage(stderr);
        }
    }
    if (bin == NULL || conf == NULL || optind != argc)
        return usage(stderr);
    char kcbuf[4096];
    if (kc == NULL) { /* the agent writes it beside the CNI config */
        snprintf(kcbuf, sizeof(kcbuf), "%s/ambit-cni-kubeconfig", conf);
        kc = kcbuf;
    }
    struct cni_install_opts o = {.bin_dir = bin, .conf_dir = conf};
    o.plugin = cni_install_plugin_entry(sock, run, kc, ex, dns);
    if (o.plugin == NULL)
        return 1;
    if (install && watching) {
        r = watch(&o, kc, write_kc, uninstall_on_exit);
        json_decref(o.plugin);
        return r;
    }
    if (install)
        r = install_once(&o, kc, write_kc);
    else
        r = cni_uninstall(&o, err, sizeof(err));
    json_decref(o.plugin);
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
