/*
 * agent.c — build the context, start workers and servers, adopt pods declared in the config
 * file, and handle SIGTERM (stop accepting, drain, exit) and SIGHUP (reload the config file).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "agent.h"
#include "enrol.h"
#include "hbone.h"
#include "identity.h"
#include "kube_release.h"
#include "log.h"
#include "nft.h"
#include "opclient.h"
#include "pod.h"
#include "servers.h"
#include "telemetry.h"
#include "view.h"
#include "worker.h"
#include "yaml.h"

void na_options_defaults(struct na_options *o)
{
    memset(o, 0, sizeof(*o));
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    o->workers = n > 0 ? (unsigned)n : 1;
    o->run_dir = "/var/run/ambit";
    o->drain_ms = 30000;
    o->metrics_addr = "0.0.0.0:15020";
    o->ready_addr = "0.0.0.0:15021";
    o->admin_addr = "127.0.0.1:15000";
    o->cert_ttl_s = 86400;
    o->mark = NA_MARK;
    o->port_outbound = NA_PORT_OUTBOUND;
    o->port_inbound = NA_PORT_INBOUND;
    o->port_hbone = NA_PORT_HBONE;
    o->connect_timeout_ms = 10000;
    const char *v;
    if ((v = getenv("NODE_NAME")) && *v)
        o->node_name = v;
    if ((v = getenv("AMBIT_CONFIG")) && *v)
        o->config_path = v;
    if ((v = getenv("AMBIT_RUN_DIR")) && *v)
        o->run_dir = v;
    if ((v = getenv("AMBIT_WORKERS")) && atoi(v) > 0 && atoi(v) <= 256)
        o->workers = (unsigned)atoi(v);
    if ((v = getenv("AMBIT_DRAIN_MS")) && atoi(v) >= 0)
        o->drain_ms = (unsigned)atoi(v);
    if ((v = getenv("AMBIT_CA_CERT")) && *v)
        o->ca_cert = v;
    if ((v = getenv("AMBIT_CA_KEY")) && *v)
        o->ca_key = v;
    if ((v = getenv("AMBIT_OPERATOR")) && *v)
        o->operator_url = v;
    if ((v = getenv("AMBIT_OPERATOR_TOKEN")) && *v)
        o->operator_token = v;
    if ((v = getenv("AMBIT_OPERATOR_CA")) && *v)
        o->operator_ca = v;
}

static void opclient_cfg(const struct na_agent *a, struct na_opclient_config *c)
{
    c->url = a->opt.operator_url;
    c->token_file = a->opt.operator_token;
    c->ca_file = a->opt.operator_ca;
    c->node = a->opt.node_name;
}

int na_agent_new(const struct na_options *opt, struct na_agent **ret_agent)
{
    struct na_agent *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->opt = *opt;
    if (!a->opt.node_name) {
        static char host[256];
        if (gethostname(host, sizeof(host) - 1) < 0)
            snprintf(host, sizeof(host), "node");
        a->opt.node_name = host;
    }
    pthread_mutex_init(&a->pods_mu, NULL);
    pthread_rwlock_init(&a->mesh_mu, NULL);
    dp_list_init(&a->pods);
    int ret = na_telemetry_new(&a->tel);
    if (ret < 0)
        goto fail;
    if (a->opt.ca_cert && a->opt.ca_key) {
        ret = na_identity_file_ca_new(a->opt.ca_cert, a->opt.ca_key, a->opt.cert_ttl_s,
                                      &a->identity);
        if (ret < 0) {
            dp_error("node", "cannot load the file CA", DP_LS("cert", a->opt.ca_cert),
                     DP_LS("key", a->opt.ca_key), DP_LERR(ret));
            goto fail;
        }
    } else if (a->opt.operator_url) {
        struct na_opclient_config oc;
        opclient_cfg(a, &oc);
        ret = na_identity_operator_new(&oc, a->opt.cert_ttl_s, &a->identity);
        if (ret < 0)
            goto fail;
    } else {
        dp_warn("node", "no identity provider configured (--ca-cert/--ca-key or --operator): "
                        "HBONE disabled");
    }
    a->nworkers = a->opt.workers ? a->opt.workers : 1;
    ret = na_workers_new(a, a->nworkers, &a->workers);
    if (ret < 0)
        goto fail;
    struct dp_hbone_limits lim;
    dp_hbone_limits_default(&lim);
    lim.connect_timeout_ms = a->opt.connect_timeout_ms;
    for (unsigned i = 0; i < a->nworkers; i++) {
        ret = dp_hbone_pool_new(a->workers[i].loop, &lim, &a->workers[i].pool);
        if (ret < 0) {
            /* fail closed per connection: outbound to mesh targets is refused without a pool */
            dp_error("node", "cannot create the HBONE client pool: mesh outbound disabled",
                     DP_LU("worker", i), DP_LERR(ret));
            a->workers[i].pool = NULL;
        }
    }
    *ret_agent = a;
    return 0;
fail:
    na_agent_free(a);
    return ret;
}

/* pods declared in the config file: {"pods": [{"uid", "netns", "ips": [...], "namespace",
 * "name"}]} (the same shape as the CNI adopt request) */
static int adopt_config_pods(struct na_agent *a)
{
    if (!a->opt.config_path)
        return 0;
    json_t *docs = NULL;
    char err[256];
    int ret = dp_yaml_parse_file(a->opt.config_path, &docs, err, sizeof(err));
    if (ret < 0) {
        dp_error("node", "cannot parse config", DP_LS("path", a->opt.config_path),
                 DP_LS("reason", err));
        return ret;
    }
    size_t di;
    json_t *doc;
    json_array_foreach(docs, di, doc)
    {
        json_t *pods = json_object_get(doc, "pods");
        size_t i;
        json_t *jp;
        json_array_foreach(pods, i, jp)
        {
            struct na_pod_spec spec = {
                    .uid = json_string_value(json_object_get(jp, "uid")),
                    .netns = json_string_value(json_object_get(jp, "netns")),
                    .ns = json_string_value(json_object_get(jp, "namespace")),
                    .name = json_string_value(json_object_get(jp, "name")),
            };
            json_t *ips = json_object_get(jp, "ips");
            size_t k;
            json_t *ip;
            json_array_foreach(ips, k, ip)
            {
                if (spec.nips < NA_POD_MAX_IPS && json_is_string(ip))
                    spec.ips[spec.nips++] = json_string_value(ip);
            }
            ret = na_pod_adopt(a, &spec);
            if (ret < 0) {
                dp_error("node", "cannot adopt pod from config",
                         DP_LS("path", a->opt.config_path), DP_LU("index", i),
                         DP_LS("uid", spec.uid ? spec.uid : ""), DP_LERR(ret));
                json_decref(docs);
                return ret;
            }
        }
    }
    json_decref(docs);
    return 0;
}

/* ------------------------------------------------------------------ drain */

static struct dp_timer drain_timer;
static uint64_t drain_deadline;

static unsigned live_conns(struct na_agent *a)
{
    unsigned n = 0;
    for (unsigned i = 0; i < a->nworkers; i++)
        n += atomic_load(&a->workers[i].conns);
    return n;
}

static void on_drain_tick(struct dp_loop *loop, void *arg)
{
    struct na_agent *a = arg;
    unsigned n = live_conns(a);
    if (n == 0 || dp_now_ms() >= drain_deadline) {
        dp_info("node", "drain finished", DP_LU("open_connections", n),
                DP_LB("deadline_hit", n != 0));
        for (unsigned i = 0; i < a->nworkers; i++)
            dp_loop_stop(a->workers[i].loop);
        return;
    }
    dp_timer_arm(loop, &drain_timer, 50);
}

static void on_signal(struct dp_loop *loop, int signo, void *arg)
{
    struct na_agent *a = arg;
    if (signo == SIGHUP) {
        char err[256] = "";
        if (a->opclient) {
            dp_warn("node", "SIGHUP ignored: config comes from the operator stream");
        } else if (a->opt.config_path) {
            int ret = na_view_load_file(a, a->opt.config_path, err, sizeof(err));
            if (ret < 0)
                dp_error("node", "config reload failed, keeping the last good config",
                         DP_LS("reason", err), DP_LERR(ret));
            else
                dp_info("node", "config reloaded", DP_LS("path", a->opt.config_path));
        }
        return;
    }
    if (atomic_exchange(&a->draining, true)) {
        dp_warn("node", "second termination signal: exiting now");
        for (unsigned i = 0; i < a->nworkers; i++)
            dp_loop_stop(a->workers[i].loop);
        return;
    }
    atomic_store(&a->ready, false);
    dp_info("node", "termination signal: draining", DP_LI("signal", signo),
            DP_LU("deadline_ms", a->opt.drain_ms), DP_LU("open_connections", live_conns(a)));
    na_servers_stop_cni(a);
    /* helm uninstall (our DaemonSet gone) vs rolling update: on uninstall pods go back to plain
     * networking now, instead of keeping rules that point at listeners about to vanish */
    const char *why = NULL;
    if (dp_kube_daemonset_removed(NULL, 3000, &why) == 1) {
        dp_info("node", "uninstall: in-pod redirection removed", DP_LS("reason", why),
                DP_LI("pods", na_pods_remove_redirection(a)));
        if (a->enrol && getenv("AMBIT_PROBE_SNAT") && !strcmp(getenv("AMBIT_PROBE_SNAT"), "on"))
            (void)dp_nft_host_remove(); /* the probe SNAT table goes with us */
    }
    na_pods_stop_listening(a);
    drain_deadline = dp_now_ms() + a->opt.drain_ms;
    dp_timer_init(&drain_timer, on_drain_tick, a);
    on_drain_tick(loop, a);
}

int na_agent_start(struct na_agent *a)
{
    struct dp_loop *l0 = a->workers[0].loop;
    signal(SIGPIPE, SIG_IGN);
    int ret;
    if ((ret = dp_loop_add_signal(l0, SIGTERM, on_signal, a)) < 0 ||
        (ret = dp_loop_add_signal(l0, SIGINT, on_signal, a)) < 0 ||
        (ret = dp_loop_add_signal(l0, SIGHUP, on_signal, a)) < 0)
        return ret;
    if (a->opt.config_path) {
        char err[256] = "";
        ret = na_view_load_file(a, a->opt.config_path, err, sizeof(err));
        if (ret < 0) {
            dp_error("node", "cannot load config", DP_LS("path", a->opt.config_path),
                     DP_LS("reason", err), DP_LERR(ret));
            return ret;
        }
    }
    if (a->opt.operator_url) {
        struct na_opclient_config oc;
        opclient_cfg(a, &oc);
        ret = na_opclient_start(a, &oc, &a->opclient);
        if (ret < 0)
            return ret;
    }
    ret = na_workers_start(a->workers, a->nworkers);
    if (ret < 0)
        return ret;
    ret = na_servers_start(a);
    if (ret < 0)
        return ret;
    ret = adopt_config_pods(a);
    if (ret < 0)
        return ret;
    na_pods_restore(a);
    ret = na_enrol_new(a, &a->enrol);
    if (ret < 0)
        return ret;
    atomic_store(&a->ready, true);
    dp_info("node", "ambit-node ready", DP_LS("node", a->opt.node_name),
            DP_LU("workers", a->nworkers), DP_LS("run_dir", a->opt.run_dir));
    return 0;
}

int na_agent_run(struct na_agent *a)
{
    int ret = dp_loop_run(a->workers[0].loop);
    na_workers_stop(a->workers, a->nworkers);
    return ret;
}

struct na_worker *na_agent_pick_worker(struct na_agent *a)
{
    return &a->workers[0];
}

void na_agent_free(struct na_agent *a)
{
    if (!a)
        return;
    na_opclient_stop(a->opclient);
    if (a->workers) {
        na_workers_stop(a->workers, a->nworkers);
        na_enrol_free(a->enrol);
        na_servers_free(a);
        na_pods_release_all(a);
        /* the loops stopped mid-flight: an inbound HBONE connection that closed in the last
         * round deferred its release (hb_srv, pod ref), and dp_loop_free drops pending
         * defers. Run a few more rounds (threads are joined) so that work completes. */
        for (unsigned i = 0; i < a->nworkers; i++)
            for (int round = 0; round < 16; round++)
                if (dp_loop_run_once(a->workers[i].loop, 0) <= 0)
                    break;
        for (unsigned i = 0; i < a->nworkers; i++)
            dp_hbone_pool_free(a->workers[i].pool);
        na_workers_free(a->workers, a->nworkers);
    }
    na_view_free_all(a);
    na_identity_free(a->identity);
    na_telemetry_free(a->tel);
    pthread_mutex_destroy(&a->pods_mu);
    pthread_rwlock_destroy(&a->mesh_mu);
    free(a);
}
