/*
 * ambit-operator — the control plane. main() only parses flags, builds the context and runs
 * the loop; see operator.h.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "loop.h"
#include "operator/operator.h"

#define SCOPE "operator"

struct main_ctx {
    struct dp_loop *loop;
    FILE *events_out;
    struct op_sub sub;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: ambit-operator [options]\n"
               "  --kubeconfig PATH     kubeconfig (default: $KUBECONFIG, in-cluster, ~/.kube/config)\n"
               "  --namespace NS        operator namespace (default istio-system)\n"
               "  --trust-domain TD     SPIFFE trust domain (default cluster.local)\n"
               "  --cluster-id ID       cluster id in workload uids (default Kubernetes)\n"
               "  --root-namespace NS   mesh root namespace (default istio-system)\n"
               "  --no-root-configmaps  do not publish istio-ca-root-cert ConfigMaps\n"
               "  --events-out PATH     append every pushed event as one JSON line (debugging, tests)\n"
               "  --debounce-ms N       snapshot debounce (default 100)\n");
}

static void on_signal(struct dp_loop *loop, int signo, void *arg)
{
    (void)arg;
    dp_info(SCOPE, "signal received, stopping", DP_LI("signal", signo));
    dp_loop_stop(loop);
}

static void on_push(struct op_ctx *op, const json_t *events, void *arg)
{
    struct main_ctx *m = arg;
    json_t *e;
    size_t i;

    json_array_foreach(events, i, e) {
        char *line = json_dumps(e, JSON_COMPACT);

        if (line != NULL) {
            fprintf(m->events_out, "%s\n", line);
            free(line);
        }
    }
    fprintf(m->events_out, "{\"type\":\"synced\",\"version\":%llu}\n",
            (unsigned long long)op_version(op));
    fflush(m->events_out);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
            {"kubeconfig", required_argument, NULL, 'k'},
            {"namespace", required_argument, NULL, 'n'},
            {"trust-domain", required_argument, NULL, 't'},
            {"cluster-id", required_argument, NULL, 'c'},
            {"root-namespace", required_argument, NULL, 'r'},
            {"no-root-configmaps", no_argument, NULL, 'R'},
            {"events-out", required_argument, NULL, 'e'},
            {"debounce-ms", required_argument, NULL, 'd'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
    };
    struct main_ctx m = {0};
    struct op_options opts;
    struct op_ctx *op = NULL;
    int c, r;

    op_options_defaults(&opts);
    if (dp_log_init_from_env() < 0)
        fprintf(stderr, "ambit-operator: bad LOG_LEVEL/LOG_FORMAT, using defaults\n");
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'k':
            opts.kubeconfig = optarg;
            break;
        case 'n':
            opts.namespace = optarg;
            break;
        case 't':
            opts.mesh.trust_domain = optarg;
            break;
        case 'c':
            opts.mesh.cluster_id = optarg;
            break;
        case 'r':
            opts.mesh.root_ns = optarg;
            break;
        case 'R':
            opts.publish_roots = false;
            break;
        case 'e':
            m.events_out = fopen(optarg, "a");
            if (m.events_out == NULL) {
                fprintf(stderr, "ambit-operator: %s: %s\n", optarg, strerror(errno));
                return 2;
            }
            break;
        case 'd':
            opts.debounce_ms = strtoull(optarg, NULL, 10);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    r = dp_loop_new(&m.loop);
    if (r < 0) {
        dp_error(SCOPE, "cannot create the event loop", DP_LERR(r));
        return 1;
    }
    dp_loop_add_signal(m.loop, SIGTERM, on_signal, NULL);
    dp_loop_add_signal(m.loop, SIGINT, on_signal, NULL);
    r = op_new(m.loop, &opts, &op);
    if (r < 0)
        goto out;
    if (m.events_out != NULL)
        op_subscribe(op, &m.sub, on_push, &m);
    r = op_start(op);
    if (r < 0) {
        dp_error(SCOPE, "cannot start informers", DP_LERR(r));
        goto out;
    }
    dp_info(SCOPE, "running", DP_LS("namespace", opts.namespace),
            DP_LS("trust_domain", opts.mesh.trust_domain));
    r = dp_loop_run(m.loop);
out:
    op_free(op);
    dp_loop_free(m.loop);
    if (m.events_out != NULL)
        fclose(m.events_out);
    return r < 0 ? 1 : 0;
}
