/*
 * snapshot_bench.c — microbenchmark of the operator's snapshot pipeline at the scale of issue #6:
 * 10 000 pods over 100 nodes, 2 000 selector Services with EndpointSlices, 500
 * AuthorizationPolicies, PeerAuthentications, 100 namespaces — generated in memory, no API
 * server. Times the full build (op_snapshot_build), the incremental update after one pod /
 * Service / policy / Namespace change (op_snapshot_update), op_snapshot_diff, op_snapshot_full
 * and the serialisation of a full push (what one agent is sent on connect) and of a batch.
 *
 * Usage: snapshot_bench [--pods N] [--services N] [--policies N] [--nodes N] [--rounds N]
 * Prints one line per measurement: "name  min_ms  median_ms" (CPU time of the process, so that
 * other load on a shared machine matters less) and a JSON summary at the end.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "operator/push.h"
#include "operator/snapshot.h"

static unsigned n_pods = 10000, n_svcs = 2000, n_aps = 500, n_nodes = 100, n_ns = 100;
static unsigned rounds = 5;

/* CPU time of this (single-threaded) process: the machine is shared, wall time is noisy */
static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static json_t *summary;

static void report(const char *name, double *t, unsigned n)
{
    qsort(t, n, sizeof(*t), cmp_d);
    printf("%-34s min %9.2f ms   median %9.2f ms\n", name, t[0], t[n / 2]);
    json_object_set_new(summary, name, json_pack("{s:f,s:f}", "min_ms", t[0], "median_ms",
                                                 t[n / 2]));
}

static void put(json_t *bucket, json_t *obj)
{
    json_t *md = json_object_get(obj, "metadata");
    const char *ns = json_string_value(json_object_get(md, "namespace"));
    const char *name = json_string_value(json_object_get(md, "name"));
    char key[512];

    if (ns)
        snprintf(key, sizeof(key), "%s/%s", ns, name);
    else
        snprintf(key, sizeof(key), "%s", name);
    json_object_set_new(bucket, key, obj);
}

static json_t *make_pod(unsigned i, unsigned gen)
{
    unsigned ns = i % n_ns, app = (i / n_ns) % (n_svcs / n_ns ? n_svcs / n_ns : 1);
    char name[128], nsn[32], appn[32], node[32], ip[32], rs[64];

    snprintf(nsn, sizeof(nsn), "ns-%u", ns);
    snprintf(appn, sizeof(appn), "app-%u", app);
    snprintf(rs, sizeof(rs), "%s-7d9c5", appn);
    snprintf(name, sizeof(name), "%s-%u", rs, i);
    snprintf(node, sizeof(node), "node-%u", i % n_nodes);
    snprintf(ip, sizeof(ip), "10.%u.%u.%u", 64 + i / 65536, (i / 256) % 256, i % 256);
    return json_pack(
            "{s:s,s:s,s:{s:s,s:s,s:s,s:{s:s,s:s,s:s,s:s},s:{s:s},s:[{s:s,s:s,s:s,s:b}]},"
            "s:{s:s,s:s,s:[{s:s,s:[{s:s,s:i}]}]},s:{s:s,s:s,s:[{s:s}],s:[{s:s,s:s}]}}",
            "apiVersion", "v1", "kind", "Pod", "metadata", "name", name, "namespace", nsn, "uid",
            name, "labels", "app", appn, "version", gen ? "v2" : "v1", "pod-template-hash",
            "7d9c5", "team", ns % 2 ? "a" : "b", "annotations", "ambient.istio.io/redirection",
            "enabled", "ownerReferences", "apiVersion", "apps/v1", "kind", "ReplicaSet", "name",
            rs, "controller", 1, "spec", "nodeName", node, "serviceAccountName", appn,
            "containers", "name", "main", "ports", "name", "http", "containerPort", 8080,
            "status", "phase", "Running", "podIP", ip, "podIPs", "ip", ip, "conditions", "type",
            "Ready", "status", "True");
}

static json_t *make_svc(unsigned s)
{
    unsigned per_ns = n_svcs / n_ns ? n_svcs / n_ns : 1;
    char name[32], nsn[32], appn[32], vip[32];

    snprintf(nsn, sizeof(nsn), "ns-%u", s / per_ns % n_ns);
    snprintf(appn, sizeof(appn), "app-%u", s % per_ns);
    snprintf(name, sizeof(name), "svc-%u", s % per_ns);
    snprintf(vip, sizeof(vip), "10.96.%u.%u", s / 256, s % 256);
    return json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:s,s:[s],s:{s:s},s:[{s:s,s:i,s:s,s:s},"
                     "{s:s,s:i,s:i,s:s}]}}",
                     "apiVersion", "v1", "kind", "Service", "metadata", "name", name, "namespace",
                     nsn, "spec", "clusterIP", vip, "clusterIPs", vip, "selector", "app", appn,
                     "ports", "name", "http", "port", 80, "targetPort", "http", "protocol", "TCP",
                     "name", "grpc", "port", 9090, "targetPort", 9090, "protocol", "TCP");
}

/* the EndpointSlice of Service s: one endpoint per pod it selects (pods of its namespace and app
 * are i = ns + n_ns * (app + per_ns * k), see make_pod) */
static json_t *make_slice(unsigned s, const json_t *pods)
{
    unsigned per_ns = n_svcs / n_ns ? n_svcs / n_ns : 1;
    unsigned ns = s / per_ns % n_ns, app = s % per_ns;
    json_t *eps = json_array(), *out;
    char name[64], sname[32], nsn[32];

    snprintf(nsn, sizeof(nsn), "ns-%u", ns);
    snprintf(sname, sizeof(sname), "svc-%u", app);
    for (unsigned i = ns + n_ns * app; i < n_pods; i += n_ns * per_ns) {
        json_t *pod, *md;
        char pname[128], key[200];

        snprintf(pname, sizeof(pname), "app-%u-7d9c5-%u", app, i);
        snprintf(key, sizeof(key), "%s/%s", nsn, pname);
        pod = json_object_get(pods, key);
        if (pod == NULL)
            continue;
        md = json_object_get(pod, "metadata");
        json_array_append_new(
                eps, json_pack("{s:[O],s:{s:s,s:s,s:O}}", "addresses",
                               json_object_get(json_object_get(pod, "status"), "podIP"),
                               "targetRef", "kind", "Pod", "name", pname, "namespace",
                               json_object_get(md, "namespace")));
    }
    snprintf(name, sizeof(name), "%s-abcde", sname);
    out = json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s}},s:s,s:o,s:[{s:s,s:i,s:s},{s:s,s:i,s:s}]}",
                    "apiVersion", "discovery.k8s.io/v1", "kind", "EndpointSlice", "metadata",
                    "name", name, "namespace", nsn, "labels", "kubernetes.io/service-name", sname,
                    "addressType", "IPv4", "endpoints", eps, "ports", "name", "http", "port",
                    8080, "protocol", "TCP", "name", "grpc", "port", 9090, "protocol", "TCP");
    return out;
}

static json_t *make_ap(unsigned a, const char *root_ns)
{
    unsigned per_ns = n_aps / n_ns ? n_aps / n_ns : 1;
    unsigned per_svc_ns = n_svcs / n_ns ? n_svcs / n_ns : 1;
    char name[32], nsn[32], appn[32], principal[128];

    if (a == 0) /* one mesh-wide policy in the root namespace */
        return json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:s,s:[{s:[{s:{s:[s]}}]}]}}", "apiVersion",
                         "security.istio.io/v1", "kind", "AuthorizationPolicy", "metadata",
                         "name", "deny-blocked", "namespace", root_ns, "spec", "action", "DENY",
                         "rules", "from", "source", "namespaces", "blocked");
    snprintf(nsn, sizeof(nsn), "ns-%u", a / per_ns % n_ns);
    snprintf(name, sizeof(name), "ap-%u", a % per_ns);
    snprintf(appn, sizeof(appn), "app-%u", a % per_svc_ns);
    snprintf(principal, sizeof(principal), "cluster.local/ns/ns-%u/sa/app-%u", (a + 1) % n_ns,
             a % per_svc_ns);
    if (a % per_ns == per_ns - 1) /* one namespace-wide policy per namespace */
        return json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:s,s:[{s:[{s:{s:[s]}}]}]}}", "apiVersion",
                         "security.istio.io/v1", "kind", "AuthorizationPolicy", "metadata",
                         "name", name, "namespace", nsn, "spec", "action", "ALLOW", "rules",
                         "from", "source", "principals", principal);
    return json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:{s:{s:s}},s:s,s:[{s:[{s:{s:[s]}}],s:[{s:{s:[s]}}]}]}}",
                     "apiVersion", "security.istio.io/v1", "kind", "AuthorizationPolicy",
                     "metadata", "name", name, "namespace", nsn, "spec", "selector",
                     "matchLabels", "app", appn, "action", "ALLOW", "rules", "from", "source",
                     "principals", principal, "to", "operation", "ports", "8080");
}

struct world {
    json_t *namespaces, *pods, *services, *slices, *nodes, *gateways, *aps, *pas;
    struct op_inputs in;
    struct op_mesh_config cfg;
};

static void world_init(struct world *w)
{
    char name[64];

    op_mesh_config_defaults(&w->cfg);
    w->namespaces = json_object();
    w->pods = json_object();
    w->services = json_object();
    w->slices = json_object();
    w->nodes = json_object();
    w->gateways = json_object();
    w->aps = json_object();
    w->pas = json_object();
    for (unsigned i = 0; i < n_ns; i++) {
        snprintf(name, sizeof(name), "ns-%u", i);
        put(w->namespaces, json_pack("{s:s,s:s,s:{s:s,s:{s:s}}}", "apiVersion", "v1", "kind",
                                     "Namespace", "metadata", "name", name, "labels",
                                     "istio.io/dataplane-mode", "ambient"));
    }
    put(w->namespaces, json_pack("{s:s,s:s,s:{s:s}}", "apiVersion", "v1", "kind", "Namespace",
                                 "metadata", "name", w->cfg.root_ns));
    for (unsigned i = 0; i < n_nodes; i++) {
        snprintf(name, sizeof(name), "node-%u", i);
        put(w->nodes, json_pack("{s:s,s:s,s:{s:s},s:{s:[{s:s,s:s}],s:[{s:s,s:s}]}}",
                                "apiVersion", "v1", "kind", "Node", "metadata", "name", name,
                                "status", "conditions", "type", "Ready", "status", "True",
                                "addresses", "type", "InternalIP", "address", "192.168.0.1"));
    }
    for (unsigned i = 0; i < n_pods; i++)
        put(w->pods, make_pod(i, 0));
    for (unsigned s = 0; s < n_svcs; s++) {
        put(w->services, make_svc(s));
        put(w->slices, make_slice(s, w->pods));
    }
    for (unsigned a = 0; a < n_aps; a++)
        put(w->aps, make_ap(a, w->cfg.root_ns));
    /* mesh-wide STRICT plus a PERMISSIVE namespace every 10 */
    put(w->pas, json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:{s:s}}}", "apiVersion",
                          "security.istio.io/v1", "kind", "PeerAuthentication", "metadata", "name",
                          "default", "namespace", w->cfg.root_ns, "spec", "mtls", "mode",
                          "STRICT"));
    for (unsigned i = 0; i < n_ns; i += 10) {
        snprintf(name, sizeof(name), "ns-%u", i);
        put(w->pas, json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:{s:s}}}", "apiVersion",
                              "security.istio.io/v1", "kind", "PeerAuthentication", "metadata",
                              "name", "default", "namespace", name, "spec", "mtls", "mode",
                              "PERMISSIVE"));
    }
    w->in = (struct op_inputs){.namespaces = w->namespaces, .pods = w->pods,
                               .services = w->services, .endpointslices = w->slices,
                               .nodes = w->nodes, .gateways = w->gateways,
                               .authorization_policies = w->aps,
                               .peer_authentications = w->pas};
}

static void world_done(struct world *w)
{
    json_decref(w->namespaces);
    json_decref(w->pods);
    json_decref(w->services);
    json_decref(w->slices);
    json_decref(w->nodes);
    json_decref(w->gateways);
    json_decref(w->aps);
    json_decref(w->pas);
}

/* serialise events as the stream does: one compact JSON line each */
static size_t serialise(const json_t *events)
{
    size_t total = 0, i;
    json_t *e;

    json_array_foreach(events, i, e) {
        char *line = json_dumps(e, JSON_COMPACT);

        total += strlen(line) + 1;
        free(line);
    }
    return total;
}

static void die(const char *what, int r)
{
    fprintf(stderr, "snapshot_bench: %s failed: %s\n", what, strerror(-r));
    exit(1);
}

int main(int argc, char **argv)
{
    struct world w;
    struct op_snapshot_diags diags = {0};
    json_t *snap = NULL, *snap2 = NULL, *events = NULL;
    double *t;
    size_t bytes = 0;
    int r;

    for (int i = 1; i + 1 < argc; i += 2) {
        unsigned v = (unsigned)strtoul(argv[i + 1], NULL, 10);

        if (!strcmp(argv[i], "--pods"))
            n_pods = v;
        else if (!strcmp(argv[i], "--services"))
            n_svcs = v;
        else if (!strcmp(argv[i], "--policies"))
            n_aps = v;
        else if (!strcmp(argv[i], "--nodes"))
            n_nodes = v;
        else if (!strcmp(argv[i], "--rounds"))
            rounds = v;
        else {
            fprintf(stderr, "usage: %s [--pods N] [--services N] [--policies N] [--nodes N] "
                            "[--rounds N]\n", argv[0]);
            return 2;
        }
    }
    if (rounds == 0 || n_nodes == 0)
        return 2;
    t = calloc(rounds, sizeof(*t));
    summary = json_object();
    world_init(&w);
    printf("inputs: %u pods, %u nodes, %u services (+%u EndpointSlices), %u "
           "AuthorizationPolicies, %zu PeerAuthentications, %u namespaces; %u rounds\n",
           n_pods, n_nodes, n_svcs, n_svcs, n_aps, json_object_size(w.pas), n_ns, rounds);

    for (unsigned i = 0; i < rounds; i++) {
        double t0 = now_ms();

        json_decref(snap);
        snap = NULL;
        if ((r = op_snapshot_build(&w.in, &w.cfg, &snap, &diags)) < 0)
            die("op_snapshot_build", r);
        t[i] = now_ms() - t0;
    }
    report("op_snapshot_build (full)", t, rounds);
    if (diags.n)
        printf("  (diagnostics: %zu, first: %s)\n", diags.n, diags.items[0]);
    printf("  snapshot: %zu workloads, %zu services, %zu policies, %zu waypoints\n",
           json_object_size(json_object_get(snap, "workload")),
           json_object_size(json_object_get(snap, "service")),
           json_object_size(json_object_get(snap, "policy")),
           json_object_size(json_object_get(snap, "waypoint")));

    for (unsigned i = 0; i < rounds; i++) {
        double t0 = now_ms();

        json_decref(events);
        if ((r = op_snapshot_full(snap, 1, &events)) < 0)
            die("op_snapshot_full", r);
        t[i] = now_ms() - t0;
    }
    report("op_snapshot_full", t, rounds);
    for (unsigned i = 0; i < rounds; i++) {
        double t0 = now_ms();

        bytes = serialise(events);
        t[i] = now_ms() - t0;
    }
    report("serialise full push (1 agent)", t, rounds);
    printf("  full push: %zu events, %zu bytes\n", json_array_size(events), bytes);
    json_object_set_new(summary, "full_push_bytes", json_integer((json_int_t)bytes));
    json_decref(events);
    events = NULL;

    /* one pod relabelled: full rebuild + diff (what the operator does today per batch) */
    put(w.pods, make_pod(4242 % n_pods, 1));
    for (unsigned i = 0; i < rounds; i++) {
        double t0 = now_ms();

        json_decref(snap2);
        snap2 = NULL;
        if ((r = op_snapshot_build(&w.in, &w.cfg, &snap2, NULL)) < 0)
            die("op_snapshot_build", r);
        t[i] = now_ms() - t0;
    }
    report("rebuild after 1 pod change", t, rounds);
    for (unsigned i = 0; i < rounds; i++) {
        double t0 = now_ms();

        json_decref(events);
        if ((r = op_snapshot_diff(snap, snap2, 1, &events)) < 0)
            die("op_snapshot_diff", r);
        t[i] = now_ms() - t0;
    }
    report("op_snapshot_diff (full compare)", t, rounds);
    printf("  batch: %zu events\n", json_array_size(events));
    json_decref(events);
    events = NULL;

    /* incremental updates (op_snapshot_update + op_snapshot_diff_keys) after typical changes */
    {
        static const char *const what[] = {"pod", "service", "policy", "namespace",
                                           "root policy"};

        for (size_t c = 0; c < sizeof(what) / sizeof(what[0]); c++) {
            char name[64];

            for (unsigned i = 0; i < rounds; i++) {
                struct op_changes ch = {0};
                json_t *next = NULL, *touched = NULL;
                char key[128];
                double t0;

                if (c == 0) { /* a pod flips between v1 and v2 */
                    put(w.pods, make_pod(4242 % n_pods, (i + 1) % 2));
                    snprintf(key, sizeof(key), "ns-%u/app-%u-7d9c5-%u", 4242 % n_pods % n_ns,
                             (4242 % n_pods / n_ns) % (n_svcs / n_ns), 4242 % n_pods);
                    op_changes_add(&ch, OP_IN_POD, key);
                } else if (c == 1) { /* a Service gets another port */
                    json_t *svc = make_svc(7);

                    json_array_append_new(json_object_get(json_object_get(svc, "spec"), "ports"),
                                          json_pack("{s:s,s:i,s:i}", "name", "x", "port",
                                                    (int)(1000 + i), "targetPort", 1000));
                    put(w.services, svc);
                    op_changes_add(&ch, OP_IN_SERVICE, "ns-0/svc-7");
                } else if (c == 2 || c == 4) { /* a policy's rule changes */
                    json_t *ap = make_ap(c == 2 ? 17 : 0, w.cfg.root_ns);
                    json_t *md = json_object_get(ap, "metadata");
                    char k2[128];

                    json_object_set_new(md, "generation", json_integer(i));
                    json_object_set_new(json_object_get(ap, "spec"), "rules",
                                        json_pack("[{s:[{s:{s:[s]}}]}]", "from", "source",
                                                  "namespaces", i % 2 ? "x" : "y"));
                    snprintf(k2, sizeof(k2), "%s/%s",
                             json_string_value(json_object_get(md, "namespace")),
                             json_string_value(json_object_get(md, "name")));
                    put(w.aps, ap);
                    op_changes_add(&ch, OP_IN_AUTHZ, k2);
                } else { /* a namespace label */
                    put(w.namespaces,
                        json_pack("{s:s,s:s,s:{s:s,s:{s:s,s:s}}}", "apiVersion", "v1", "kind",
                                  "Namespace", "metadata", "name", "ns-3", "labels",
                                  "istio.io/dataplane-mode", "ambient", "gen", i % 2 ? "a" : "b"));
                    op_changes_add(&ch, OP_IN_NAMESPACE, "ns-3");
                }
                t0 = now_ms();
                if ((r = op_snapshot_update(snap2, &w.in, &w.cfg, &ch, &next, &touched,
                                            NULL)) < 0 ||
                    (r = op_snapshot_diff_keys(snap2, next, touched, 1, &events)) < 0)
                    die("op_snapshot_update", r);
                t[i] = now_ms() - t0;
                json_decref(snap2);
                snap2 = next;
                json_decref(touched);
                json_decref(events);
                events = NULL;
                op_changes_clear(&ch);
            }
            snprintf(name, sizeof(name), "incremental: 1 %s changed", what[c]);
            report(name, t, rounds);
        }
    }
    /* the config stream's content for 100 agents (operator/push.h): full push on connect, then
     * one pod change published to every stream */
    {
        unsigned agents = n_nodes;
        struct op_push *push = NULL;
        struct op_push_stream **ps = calloc(agents, sizeof(*ps));
        uint64_t version = 1000;
        size_t total = 0;

        if (ps == NULL || (r = op_push_new(&push)) < 0)
            die("op_push_new", -ENOMEM);
        for (unsigned i = 0; i < rounds; i++) {
            double t0 = now_ms();

            total = 0;
            for (unsigned a = 0; a < agents; a++) {
                char node[32];
                size_t n;

                snprintf(node, sizeof(node), "node-%u", a);
                if ((r = op_push_stream_open(push, snap2, version + i, NULL, false, node, &ps[a],
                                             &n)) < 0)
                    die("op_push_stream_open", r);
                total += op_push_queued(ps[a]);
            }
            t[i] = now_ms() - t0;
            if (i + 1 < rounds)
                for (unsigned a = 0; a < agents; a++)
                    op_push_stream_close(ps[a]);
        }
        report("full push, 100 agents (push.h)", t, rounds);
        printf("  %zu bytes queued for %u agents (shared chunks)\n", total, agents);
        for (unsigned i = 0; i < rounds; i++) {
            struct op_changes ch = {0};
            json_t *next = NULL, *touched = NULL;
            char key[128];
            double t0;

            put(w.pods, make_pod(777 % n_pods, i % 2));
            snprintf(key, sizeof(key), "ns-%u/app-%u-7d9c5-%u", 777 % n_pods % n_ns,
                     (777 % n_pods / n_ns) % (n_svcs / n_ns), 777 % n_pods);
            op_changes_add(&ch, OP_IN_POD, key);
            t0 = now_ms();
            if ((r = op_snapshot_update(snap2, &w.in, &w.cfg, &ch, &next, &touched, NULL)) < 0 ||
                (r = op_snapshot_diff_keys(snap2, next, touched, version + 100 + i, &events)) < 0)
                die("op_snapshot_update", r);
            version += 100;
            if ((r = op_push_publish(push, next, version + 100 + i, events)) < 0)
                die("op_push_publish", r);
            t[i] = now_ms() - t0;
            json_decref(snap2);
            snap2 = next;
            json_decref(touched);
            json_decref(events);
            events = NULL;
            op_changes_clear(&ch);
        }
        report("pod change -> queued for 100 agents", t, rounds);
        for (unsigned i = 0; i < rounds; i++) {
            struct op_changes ch = {0};
            json_t *next = NULL, *touched = NULL, *ap = make_ap(17, w.cfg.root_ns);
            double t0;

            json_object_set_new(json_object_get(ap, "spec"), "rules",
                                json_pack("[{s:[{s:{s:[s]}}]}]", "from", "source", "namespaces",
                                          i % 2 ? "p" : "q"));
            put(w.aps, ap);
            op_changes_add(&ch, OP_IN_AUTHZ, "ns-3/ap-2");
            t0 = now_ms();
            if ((r = op_snapshot_update(snap2, &w.in, &w.cfg, &ch, &next, &touched, NULL)) < 0 ||
                (r = op_snapshot_diff_keys(snap2, next, touched, version + 1, &events)) < 0)
                die("op_snapshot_update", r);
            version += 100;
            if ((r = op_push_publish(push, next, version, events)) < 0)
                die("op_push_publish", r);
            t[i] = now_ms() - t0;
            json_decref(snap2);
            snap2 = next;
            json_decref(touched);
            json_decref(events);
            events = NULL;
            op_changes_clear(&ch);
        }
        report("policy change -> queued for 100", t, rounds);
        for (unsigned a = 0; a < agents; a++)
            op_push_stream_close(ps[a]);
        op_push_free(push);
        free(ps);
    }
    json_decref(snap);
    json_decref(snap2);
    world_done(&w);
    free(t);
    {
        char *s = json_dumps(summary, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(6));

        printf("%s\n", s);
        free(s);
    }
    json_decref(summary);
    return 0;
}
