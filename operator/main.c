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
#include <unistd.h>

#include "admin.h"
#include "httpd.h"
#include "kube_lease.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "operator/analysis.h"
#include "operator/operator.h"
#include "operator/server.h"
#include "operator/status.h"
#include "operator/waypoints.h"
#include "operator/webhook_config.h"

#define SCOPE "operator"

struct main_ctx {
    struct op_waypoints *wps;
    struct op_status *status;
    struct op_webhook_config *wcfg;
    struct op_analysis *analysis;
    struct dp_loop *loop;
    FILE *events_out;
    struct op_sub sub;
    struct op_ctx *op;
    struct dp_metrics *metrics;
    struct dp_httpd *mhttpd;
    struct dp_admin_ready *ready;
    struct dp_timer stats_timer;
    struct dp_metric_series *m_restarts, *m_rebuilds, *m_events, *m_roots, *m_root_errors,
            *m_rebuild_ms, *m_version, *m_findings, *m_an_writes, *m_an_errors;
};

static void on_lead(void *arg)
{
    struct main_ctx *m = arg;

    op_set_leader(m->op, true);
    op_waypoints_set_active(m->wps, true);
    op_status_set_active(m->status, true);
    op_webhook_config_kick(m->wcfg);
    op_analysis_set_active(m->analysis, true);
}

static void on_unlead(void *arg)
{
    struct main_ctx *m = arg;

    op_set_leader(m->op, false);
    op_waypoints_set_active(m->wps, false);
    op_status_set_active(m->status, false);
    op_analysis_set_active(m->analysis, false);
}

static bool on_ready_check(void *arg, char *reason, size_t reason_sz)
{
    struct main_ctx *m = arg;

    if (op_ready(m->op))
        return true;
    snprintf(reason, reason_sz, "informers not synced");
    return false;
}

/* Operator-level gauges are sampled every few seconds (cheap, no locking needed). */
static void on_stats(struct dp_loop *loop, void *arg)
{
    struct main_ctx *m = arg;
    const struct op_stats *st = op_stats(m->op);

    dp_gauge_set(m->m_restarts, (double)op_watch_restarts(m->op));
    dp_gauge_set(m->m_rebuilds, (double)st->rebuilds);
    dp_gauge_set(m->m_events, (double)st->events);
    dp_gauge_set(m->m_roots, (double)st->roots_published);
    dp_gauge_set(m->m_root_errors, (double)st->root_publish_errors);
    dp_gauge_set(m->m_rebuild_ms, st->last_rebuild_ms / 1000.0);
    dp_gauge_set(m->m_version, (double)op_version(m->op));
    if (m->analysis != NULL) {
        const struct op_analysis_stats *as = op_analysis_stats(m->analysis);

        dp_gauge_set(m->m_findings, (double)as->findings);
        dp_gauge_set(m->m_an_writes, (double)as->writes);
        dp_gauge_set(m->m_an_errors, (double)as->write_errors);
    }
    dp_timer_arm(loop, &m->stats_timer, 2000);
}

static int gauge(struct dp_metrics *reg, const char *name, const char *help,
                 struct dp_metric_series **ret)
{
    struct dp_metric *f;
    int r = dp_metrics_gauge(reg, name, help, NULL, 0, &f);

    return r < 0 ? r : dp_metric_series(f, NULL, 0, ret);
}

static int setup_metrics(struct main_ctx *m, const char *listen)
{
    int r;

    if ((r = gauge(m->metrics, "ambit_operator_watch_restarts",
                   "Kubernetes watches restarted after errors or 410 Gone", &m->m_restarts)) < 0 ||
        (r = gauge(m->metrics, "ambit_operator_snapshot_rebuilds", "Snapshot rebuilds",
                   &m->m_rebuilds)) < 0 ||
        (r = gauge(m->metrics, "ambit_operator_snapshot_events", "Mesh object events produced",
                   &m->m_events)) < 0 ||
        (r = gauge(m->metrics, "ambit_operator_root_configmaps_written",
                   "istio-ca-root-cert ConfigMaps written", &m->m_roots)) < 0 ||
        (r = gauge(m->metrics, "ambit_operator_root_configmap_errors",
                   "Failed istio-ca-root-cert ConfigMap writes", &m->m_root_errors)) < 0 ||
        (r = gauge(m->metrics, "ambit_operator_snapshot_build_seconds",
                   "Duration of the last snapshot rebuild", &m->m_rebuild_ms)) < 0 ||
        (r = gauge(m->metrics, "ambit_operator_config_version", "Current config stream version",
                   &m->m_version)) < 0 ||
        (r = gauge(m->metrics, "ambit_operator_analysis_findings",
                   "Analyzer findings in the last analysis pass", &m->m_findings)) < 0 ||
        (r = gauge(m->metrics, "ambit_operator_analysis_status_writes",
                   "Status writes of analyzer findings", &m->m_an_writes)) < 0 ||
        (r = gauge(m->metrics, "ambit_operator_analysis_status_write_errors",
                   "Failed status writes of analyzer findings", &m->m_an_errors)) < 0)
        return r;
    r = dp_httpd_new(m->loop, &(struct dp_httpd_config){.name = "metrics"}, &m->mhttpd);
    if (r < 0)
        return r;
    if ((r = dp_admin_add_metrics(m->mhttpd, m->metrics)) < 0 ||
        (r = dp_admin_add_ready(m->mhttpd, on_ready_check, m, &m->ready)) < 0)
        return r;
    r = dp_httpd_listen_tcp(m->mhttpd, listen, NULL, NULL);
    if (r < 0)
        dp_error(SCOPE, "cannot listen for metrics", DP_LS("address", listen), DP_LERR(r));
    return r;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: ambit-operator [options]\n"
               "  --kubeconfig PATH     kubeconfig (default: $KUBECONFIG, in-cluster, ~/.kube/config)\n"
               "  --namespace NS        operator namespace (default istio-system)\n"
               "  --trust-domain TD     SPIFFE trust domain until ConfigMap istio says (default cluster.local)\n"
               "  --cluster-id ID       cluster id in workload uids (default Kubernetes)\n"
               "  --root-namespace NS   mesh root namespace until ConfigMap istio says (default: --namespace)\n"
               "  --no-root-configmaps  do not publish istio-ca-root-cert ConfigMaps\n"
               "  --events-out PATH     append every pushed event as one JSON line (debugging, tests)\n"
               "  --debounce-ms N       snapshot debounce for bursts of changes (default 100)\n"
               "  --debounce-settle-ms N  an isolated change (after --debounce-ms of quiet) is\n"
               "                        pushed this soon (default 10; >= --debounce-ms: always wait)\n"
               "  --debounce-max-ms N   a burst is pushed at most this long after its first change (default 1000)\n"
               "  --listen ADDR         node agent endpoint (default 0.0.0.0:15012)\n"
               "  --plaintext           serve --listen without TLS (tests, debugging)\n"
               "  --metrics-listen ADDR metrics + /healthz/ready (default 0.0.0.0:15014)\n"
               "  --token-audience AUD  audience of node agent tokens (default istio-ca; '' = any)\n"
               "  --no-leader-elect     write without a Lease (single replica, tests)\n"
               "  --webhook-listen ADDR validating admission webhook (default 0.0.0.0:15017; '' = off)\n"
               "  --webhook-config NAME ValidatingWebhookConfiguration whose caBundle (and\n"
               "                        failurePolicy) the leader maintains (default\n"
               "                        $WEBHOOK_CONFIG_NAME; '' = leave it alone)\n"
               "  --webhook-failure-policy Fail|Ignore  Fail (default, $WEBHOOK_FAILURE_POLICY):\n"
               "                        set Fail once a dry run proved the webhook serves;\n"
               "                        Ignore: keep every entry fail-open\n"
               "  --serving-cert-ttl SECONDS  lifetime of the 15012/15017 certificate (default\n"
               "                        30 days; renewed after two thirds)\n"
               "  --write-selector SEL  only write into namespaces/Mesh objects matching SEL\n"
               "  --node-agent-account NS/SA  trusted node agent service account (repeatable;\n"
               "                        default <namespace>/ztunnel and <namespace>/ambit-node)\n");
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
            {"debounce-settle-ms", required_argument, NULL, 'S'},
            {"debounce-max-ms", required_argument, NULL, 'X'},
            {"listen", required_argument, NULL, 'l'},
            {"plaintext", no_argument, NULL, 'P'},
            {"metrics-listen", required_argument, NULL, 'm'},
            {"token-audience", required_argument, NULL, 'a'},
            {"node-agent-account", required_argument, NULL, 'A'},
            {"no-leader-elect", no_argument, NULL, 'L'},
            {"write-selector", required_argument, NULL, 'W'},
            {"webhook-listen", required_argument, NULL, 'V'},
            {"webhook-config", required_argument, NULL, 'C'},
            {"webhook-failure-policy", required_argument, NULL, 'F'},
            {"serving-cert-ttl", required_argument, NULL, 'T'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
    };
    struct main_ctx m = {0};
    struct op_options opts;
    struct op_server_config scfg;
    struct op_server *srv = NULL, *webhook = NULL;
    const char *webhook_listen = "0.0.0.0:15017";
    const char *webhook_config = getenv("WEBHOOK_CONFIG_NAME");
    const char *webhook_policy = getenv("WEBHOOK_FAILURE_POLICY");
    struct op_waypoints *wps = NULL;
    const char *metrics_listen = "0.0.0.0:15014";
    struct op_ctx *op = NULL;
    uint16_t port = 0;
    const char *accounts[17] = {0};
    char def_accounts[2][300];
    unsigned n_accounts = 0;
    bool leader_elect = true, root_ns_set = false;
    struct dp_kube_lease *lease = NULL;
    char identity[300];
    int c, r;

    op_options_defaults(&opts);
    op_server_config_defaults(&scfg);
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
            root_ns_set = true;
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
        case 'S':
            opts.debounce_settle_ms = strtoull(optarg, NULL, 10);
            break;
        case 'X':
            opts.debounce_max_ms = strtoull(optarg, NULL, 10);
            break;
        case 'l':
            scfg.listen = optarg;
            break;
        case 'P':
            scfg.plaintext = true;
            break;
        case 'm':
            metrics_listen = optarg;
            break;
        case 'a':
            scfg.token_audience = optarg;
            break;
        case 'L':
            leader_elect = false;
            break;
        case 'V':
            webhook_listen = optarg;
            break;
        case 'C':
            webhook_config = optarg;
            break;
        case 'F':
            webhook_policy = optarg;
            break;
        case 'T': {
            char *end;

            scfg.serving_ttl_s = strtoll(optarg, &end, 10);
            if (*end != '\0' || scfg.serving_ttl_s < 3) {
                fprintf(stderr, "ambit-operator: --serving-cert-ttl: want seconds >= 3, got '%s'\n",
                        optarg);
                if (m.events_out != NULL)
                    fclose(m.events_out);
                return 2;
            }
            break;
        }
        case 'W':
            if (dp_kube_selector_matches(optarg, NULL) < 0) {
                fprintf(stderr, "ambit-operator: --write-selector: bad selector\n");
                if (m.events_out != NULL)
                    fclose(m.events_out);
                return 2;
            }
            opts.write_selector = optarg;
            break;
        case 'A':
            if (n_accounts >= 16 || strchr(optarg, '/') == NULL) {
                fprintf(stderr, "ambit-operator: --node-agent-account wants NS/SA (at most 16)\n");
                if (m.events_out != NULL)
                    fclose(m.events_out);
                return 2;
            }
            accounts[n_accounts++] = optarg;
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
    if (webhook_policy != NULL && webhook_policy[0] != '\0' &&
        strcmp(webhook_policy, "Fail") != 0 && strcmp(webhook_policy, "Ignore") != 0) {
        fprintf(stderr, "ambit-operator: --webhook-failure-policy (WEBHOOK_FAILURE_POLICY): want "
                        "Fail or Ignore, got '%s'\n", webhook_policy);
        if (m.events_out != NULL)
            fclose(m.events_out);
        return 2;
    }
    if (!root_ns_set)
        opts.mesh.root_ns = opts.namespace; /* Istio's default: the control plane's namespace */
    if (n_accounts == 0) {
        snprintf(def_accounts[0], sizeof(def_accounts[0]), "%s/ztunnel", opts.namespace);
        snprintf(def_accounts[1], sizeof(def_accounts[1]), "%s/ambit-node", opts.namespace);
        accounts[0] = def_accounts[0];
        accounts[1] = def_accounts[1];
    }
    opts.trusted_accounts = accounts;
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
    m.op = op;
    if (m.events_out != NULL)
        op_subscribe(op, &m.sub, on_push, &m);
    r = op_waypoints_new(op, &wps);
    if (r < 0)
        goto out;
    m.wps = wps;
    r = op_status_new(op, &m.status);
    if (r < 0)
        goto out;
    r = op_analysis_new(op, &m.analysis);
    if (r < 0)
        goto out;
    if (leader_elect) {
        const char *pod = getenv("POD_NAME");
        char host[256] = "";
        struct dp_kube_lease_config lc = {.namespace = opts.namespace,
                                          .name = "ambit-operator",
                                          .identity = identity,
                                          .on_start = on_lead,
                                          .on_stop = on_unlead,
                                          .arg = &m};

        gethostname(host, sizeof(host) - 1);
        if (pod != NULL && pod[0])
            snprintf(identity, sizeof(identity), "%s", pod);
        else
            snprintf(identity, sizeof(identity), "%s_%d", host, (int)getpid());
        on_unlead(&m); /* followers serve but do not write until they hold the Lease */
        r = dp_kube_lease_new(op_multi(op), m.loop, &lc, &lease);
        if (r < 0) {
            dp_error(SCOPE, "cannot start leader election", DP_LERR(r));
            goto out;
        }
        op_set_lease(op, lease); /* the Lease gets the Mesh object as owner */
    }
    r = dp_metrics_new(&m.metrics);
    if (r < 0)
        goto out;
    r = setup_metrics(&m, metrics_listen);
    if (r < 0)
        goto out;
    dp_timer_init(&m.stats_timer, on_stats, &m);
    dp_timer_arm(m.loop, &m.stats_timer, 0);
    r = op_server_new(op, &scfg, m.metrics, &srv, &port);
    if (r < 0) {
        dp_error(SCOPE, "cannot serve node agents", DP_LS("address", scfg.listen), DP_LERR(r));
        goto out;
    }
    dp_info(SCOPE, "serving node agents", DP_LS("address", scfg.listen), DP_LU("port", port),
            DP_LB("tls", !scfg.plaintext));
    if (webhook_listen[0] != '\0') {
        struct op_server_config wcfg = scfg;

        wcfg.listen = webhook_listen;
        wcfg.webhook = true;
        wcfg.plaintext = false; /* the API server only calls webhooks over TLS */
        r = op_server_new(op, &wcfg, NULL, &webhook, &port);
        if (r < 0) {
            /* config and certificates matter more than validation: keep running */
            dp_error(SCOPE, "cannot serve the admission webhook, continuing without it",
                     DP_LS("address", webhook_listen), DP_LERR(r));
            webhook = NULL;
            r = 0;
        } else {
            dp_info(SCOPE, "serving the admission webhook", DP_LS("address", webhook_listen),
                    DP_LU("port", port));
        }
    }
    if (webhook != NULL && webhook_config != NULL && webhook_config[0] != '\0') {
        bool fail_closed = webhook_policy == NULL || strcmp(webhook_policy, "Ignore") != 0;

        r = op_webhook_config_new(op, webhook_config, fail_closed, 0, &m.wcfg);
        if (r < 0) {
            dp_error(SCOPE, "cannot manage the webhook configuration",
                     DP_LS("name", webhook_config), DP_LERR(r));
            goto out;
        }
        op_server_set_ca_gate(webhook, op_webhook_config_trusts_ca, m.wcfg);
        dp_info(SCOPE, "managing the webhook configuration", DP_LS("name", webhook_config),
                DP_LS("failure_policy", fail_closed ? "Fail once verified" : "Ignore"));
    }
    r = op_start(op);
    if (r < 0) {
        dp_error(SCOPE, "cannot start informers", DP_LERR(r));
        goto out;
    }
    dp_info(SCOPE, "running", DP_LS("namespace", opts.namespace),
            DP_LS("trust_domain", opts.mesh.trust_domain));
    r = dp_loop_run(m.loop);
out:
    if (op != NULL)
        op_set_lease(op, NULL);
    dp_kube_lease_free(lease);
    if (lease != NULL) {
        /* give the Lease release a moment to reach the API server */
        uint64_t until = dp_now_ms() + 500;

        while (dp_now_ms() < until && dp_loop_run_once(m.loop, 50) >= 0)
            ;
    }
    op_webhook_config_free(m.wcfg);
    op_server_free(webhook);
    op_server_free(srv);
    op_waypoints_free(wps);
    op_status_free(m.status);
    op_analysis_free(m.analysis);
    dp_httpd_free(m.mhttpd);
    dp_admin_ready_free(m.ready);
    dp_timer_cancel(&m.stats_timer);
    op_free(op);
    dp_metrics_free(m.metrics);
    dp_loop_free(m.loop);
    if (m.events_out != NULL)
        fclose(m.events_out);
    return r < 0 ? 1 : 0;
}
