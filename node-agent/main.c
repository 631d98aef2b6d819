/*
 * ambit-node — the per-node data plane (ztunnel's role). main() only parses flags, builds the
 * agent and runs worker 0's loop; everything else lives in agent.c and friends.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "agent.h"
#include "log.h"
#include "subcmd.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ambit-node [options]\n"
            "       ambit-node redirect add|del <netns-path>   (install/remove in-pod rules)\n"
            "  --node NAME            node name (env NODE_NAME)\n"
            "  --config PATH          mesh objects + pods file, JSON or YAML (env AMBIT_CONFIG)\n"
            "  --run-dir DIR          runtime dir, cni.sock lives here (default /var/run/ambit)\n"
            "  --workers N            worker threads (default: cores)\n"
            "  --drain-ms MS          SIGTERM drain deadline (default 30000)\n"
            "  --ca-cert PATH --ca-key PATH   file CA issuing workload certificates\n"
            "  --cert-ttl S           workload certificate lifetime (default 86400)\n"
            "  --metrics ADDR --ready ADDR --admin ADDR   (0.0.0.0:15020, 0.0.0.0:15021, "
            "127.0.0.1:15000)\n"
            "  --connect-timeout-ms MS  upstream connect timeout (default 10000)\n"
            "  --operator URL         operator for config + certificates (env AMBIT_OPERATOR)\n"
            "  --operator-token PATH  bearer token file (env AMBIT_OPERATOR_TOKEN)\n"
            "  --operator-ca PATH     root verifying the operator (env AMBIT_OPERATOR_CA)\n"
            "  --kubeconfig PATH      enrol pods of ambient namespaces (also in-cluster; see "
            "docs/node-agent.md)\n");
}

static int parse_uint(const char *s, unsigned max, unsigned *ret)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *s == '\0' || *end != '\0' || v > max)
        return -EINVAL;
    *ret = (unsigned)v;
    return 0;
}

int main(int argc, char **argv)
{
    dp_log_init_from_env();
    if (argc > 1 && strcmp(argv[1], "redirect") == 0)
        return na_subcmd_redirect(argc - 1, argv + 1);

    struct na_options o;
    na_options_defaults(&o);
    static const struct option opts[] = {
            {"node", required_argument, NULL, 'n'},
            {"config", required_argument, NULL, 'c'},
            {"run-dir", required_argument, NULL, 'r'},
            {"workers", required_argument, NULL, 'w'},
            {"drain-ms", required_argument, NULL, 'd'},
            {"ca-cert", required_argument, NULL, 'C'},
            {"ca-key", required_argument, NULL, 'K'},
            {"cert-ttl", required_argument, NULL, 'T'},
            {"metrics", required_argument, NULL, 'm'},
            {"ready", required_argument, NULL, 'R'},
            {"admin", required_argument, NULL, 'a'},
            {"connect-timeout-ms", required_argument, NULL, 't'},
            {"operator", required_argument, NULL, 'O'},
            {"operator-token", required_argument, NULL, 'W'},
            {"operator-ca", required_argument, NULL, 'A'},
            {"kubeconfig", required_argument, NULL, 'k'},
            {"help", no_argument, NULL, 'h'},
            {0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'n': o.node_name = optarg; break;
        case 'c': o.config_path = optarg; break;
        case 'r': o.run_dir = optarg; break;
        case 'w': bad = parse_uint(optarg, 256, &o.workers) < 0 || o.workers == 0; break;
        case 'd': bad = parse_uint(optarg, 3600000, &o.drain_ms) < 0; break;
        case 'C': o.ca_cert = optarg; break;
        case 'K': o.ca_key = optarg; break;
        case 'T': bad = parse_uint(optarg, 90u * 86400u, &o.cert_ttl_s) < 0; break;
        case 'm': o.metrics_addr = optarg; break;
        case 'R': o.ready_addr = optarg; break;
        case 'a': o.admin_addr = optarg; break;
        case 't': bad = parse_uint(optarg, 600000, &o.connect_timeout_ms) < 0; break;
        case 'O': o.operator_url = optarg; break;
        case 'W': o.operator_token = optarg; break;
        case 'A': o.operator_ca = optarg; break;
        case 'k': o.kubeconfig = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (bad) {
            fprintf(stderr, "ambit-node: invalid option value: %s\n", optarg);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }

    curl_global_init(CURL_GLOBAL_DEFAULT); /* before any thread exists */
    struct na_agent *a = NULL;
    int ret = na_agent_new(&o, &a);
    if (ret < 0) {
        dp_error("node", "cannot create agent", DP_LERR(ret));
        return 1;
    }
    ret = na_agent_start(a);
    if (ret < 0) {
        dp_error("node", "cannot start agent", DP_LERR(ret));
        na_agent_free(a);
        return 1;
    }
    ret = na_agent_run(a);
    na_agent_free(a);
    return ret < 0 ? 1 : 0;
}
