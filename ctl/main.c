/*
 * ambitctl — istioctl-like CLI for ambit.
 *
 *   ambitctl version
 *   ambitctl install-state [-o table|json|yaml]
 *   ambitctl ztunnel-config workloads|services|policies|certificates [--node N] [-o ...]
 *            [--file DUMP.json]  (render a saved config_dump instead of asking the agents)
 *   ambitctl x ca root --dir D [--days 3650] [--bits 4096]
 *   ambitctl x ca intermediate --root-dir D --out O [--cluster NAME] [--days 3650] [--bits 4096]
 *
 * Global flags: --kubeconfig PATH, --context NAME, -i/--istio-namespace NS (istio-system),
 * --admin-port N (15020: where node agents serve /config_dump to the API server's pod proxy).
 *
 * Node agents are reached through the API server (`pods/<agent>:<port>/proxy/config_dump`), so
 * no port-forward or node access is needed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "json.h"
#include "kube.h"
#include "yaml.h"

#ifndef AMBIT_VERSION
#define AMBIT_VERSION "0.1.0"
#endif

struct opts {
    const char *kubeconfig;
    const char *context;
    const char *istio_ns;
    const char *node;
    const char *file;
    const char *dir;
    const char *root_dir;
    const char *out_dir;
    const char *cluster;
    const char *files[64]; /* analyze */
    int n_files;
    const char *ns;
    bool all_ns;
    int use_kube; /* -1: default (the cluster when no file is given) */
    int admin_port;
    int days;
    int bits;
    enum ctl_output out;
};

static void usage(FILE *f)
{
    fputs("usage: ambitctl [global flags] <command>\n"
          "\n"
          "commands:\n"
          "  version                                   client and control-plane versions\n"
          "  install-state [-o table|json|yaml]        the Mesh install state (kubectl get mesh)\n"
          "  ztunnel-config workloads|services|policies|certificates\n"
          "                [--node N] [-o table|json|yaml] [--file DUMP.json]\n"
          "                                            what the node agents serve\n"
          "  analyze [FILE...] [-f FILE]... [-n NS | -A (default)] [--use-kube[=false]]\n"
          "          [-o table|json|yaml]          configuration problems (istioctl analyze):\n"
          "                                            files alone, the cluster when no file is\n"
          "                                            given, or files over the cluster with\n"
          "                                            --use-kube; exit 1 on Error findings\n"
          "  x ca root --dir D [--days 3650] [--bits 4096]\n"
          "  x ca intermediate --root-dir D --out O [--cluster NAME] [--days 3650] [--bits 4096]\n"
          "                                            a plug-in CA for the cacerts Secret\n"
          "\n"
          "global flags: --kubeconfig PATH  --context NAME  -i/--istio-namespace NS\n"
          "              --admin-port N (node agent config_dump port, default 15020)\n",
          f);
}

static int connect_cluster(const struct opts *o, struct dp_kube_config **ret_cfg,
                           struct dp_kube_client **ret_c)
{
    char err[512] = "";
    struct dp_kube_config *cfg = NULL;
    int r;
    if (o->context && !o->kubeconfig && getenv("KUBECONFIG"))
        r = dp_kube_config_load_kubeconfig(getenv("KUBECONFIG"), o->context, &cfg, err,
                                           sizeof(err));
    else if (o->context && o->kubeconfig)
        r = dp_kube_config_load_kubeconfig(o->kubeconfig, o->context, &cfg, err, sizeof(err));
    else
        r = dp_kube_config_default(o->kubeconfig, &cfg, err, sizeof(err));
    if (r < 0) {
        fprintf(stderr, "ambitctl: no usable Kubernetes configuration: %s\n",
                *err ? err : strerror(-r));
        return r;
    }
    struct dp_kube_client *c = NULL;
    r = dp_kube_client_new(cfg, &c);
    if (r < 0) {
        dp_kube_config_free(cfg);
        fprintf(stderr, "ambitctl: %s\n", strerror(-r));
        return r;
    }
    dp_kube_client_set_timeout(c, 10000);
    *ret_cfg = cfg;
    *ret_c = c;
    return 0;
}

static void api_error(struct dp_kube_client *c, const char *what, int r)
{
    const char *detail = dp_kube_client_last_error(c);
    if (r == -ECONNREFUSED || r == -ETIMEDOUT || r == -EPROTO)
        fprintf(stderr, "ambitctl: cannot reach the Kubernetes API server at %s: %s%s%s\n",
                dp_kube_client_config(c)->server, strerror(-r), *detail ? ": " : "", detail);
    else
        fprintf(stderr, "ambitctl: %s: %s%s%s\n", what, strerror(-r), *detail ? ": " : "",
                detail);
}

/* config dumps of every (selected) node agent; new reference to an array */
static int fetch_dumps(const struct opts *o, json_t **ret_dumps)
{
    struct dp_kube_config *cfg = NULL;
    struct dp_kube_client *c = NULL;
    json_t *pods = NULL, *dumps = NULL;
    char fsel[300];
    int r, failures = 0;

    r = connect_cluster(o, &cfg, &c);
    if (r < 0)
        return r;
    struct dp_kube_list_opts lo = {.label_selector = "app=ambit-node"};
    if (o->node) {
        snprintf(fsel, sizeof(fsel), "spec.nodeName=%s", o->node);
        lo.field_selector = fsel;
    }
    r = dp_kube_list(c, &DP_KUBE_RES_PODS, o->istio_ns, &lo, &pods, NULL);
    if (r < 0) {
        api_error(c, "listing node agents", r);
        goto out;
    }
    if (json_array_size(pods) == 0) {
        fprintf(stderr,
                "ambitctl: no ambit-node pods in namespace %s%s%s (is the node-agent chart "
                "installed?)\n",
                o->istio_ns, o->node ? " on node " : "", o->node ? o->node : "");
        r = -ENOENT;
        goto out;
    }
    dumps = json_array();
    size_t i;
    json_t *pod;
    json_array_foreach(pods, i, pod)
    {
        const char *name = json_string_value(json_object_get(json_object_get(pod, "metadata"),
                                                             "name"));
        const char *node = json_string_value(json_object_get(json_object_get(pod, "spec"),
                                                             "nodeName"));
        char path[600];
        json_t *dump = NULL;
        long http = 0;
        if (!name)
            continue;
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s:%d/proxy/config_dump",
                 o->istio_ns, name, o->admin_port);
        int rr = dp_kube_request(c, "GET", path, NULL, NULL, &http, &dump);
        if (rr < 0 || !json_is_object(dump)) {
            fprintf(stderr, "ambitctl: node agent %s on node %s did not answer (%s%s%s)\n", name,
                    node ? node : "?", rr < 0 ? strerror(-rr) : "not a config dump",
                    rr < 0 && *dp_kube_client_last_error(c) ? ": " : "",
                    rr < 0 ? dp_kube_client_last_error(c) : "");
            json_decref(dump);
            failures++;
            continue;
        }
        json_array_append_new(dumps, dump);
    }
    if (json_array_size(dumps) == 0) {
        r = -EHOSTUNREACH;
        goto out;
    }
    *ret_dumps = dumps;
    dumps = NULL;
    r = failures ? 1 : 0; /* partial answer: render what we have, exit non-zero */
out:
    json_decref(pods);
    json_decref(dumps);
    dp_kube_client_free(c);
    dp_kube_config_free(cfg);
    return r;
}

static int cmd_ztunnel_config(const struct opts *o, const char *what)
{
    enum ctl_view view;
    json_t *dumps = NULL;
    int r, partial = 0;

    if (!what || ctl_view_parse(what, &view) < 0) {
        fprintf(stderr, "ambitctl: ztunnel-config needs one of: workloads, services, policies, "
                        "certificates\n");
        return 2;
    }
    if (o->file) {
        char err[512];
        json_t *docs = NULL;
        r = dp_yaml_parse_file(o->file, &docs, err, sizeof(err)); /* JSON is YAML */
        if (r < 0) {
            fprintf(stderr, "ambitctl: %s\n", err);
            return 1;
        }
        dumps = json_array();
        size_t i;
        json_t *d;
        json_array_foreach(docs, i, d)
        {
            if (json_is_array(d))
                json_array_extend(dumps, d);
            else
                json_array_append(dumps, d);
        }
        json_decref(docs);
    } else {
        r = fetch_dumps(o, &dumps);
        if (r < 0)
            return 1;
        partial = r;
    }
    r = ctl_render(stdout, view, o->out, dumps, (long long)time(NULL));
    json_decref(dumps);
    if (r < 0) {
        fprintf(stderr, "ambitctl: rendering failed: %s\n", strerror(-r));
        return 1;
    }
    return partial ? 1 : 0;
}

static const char *cond_status(const json_t *status, const char *type)
{
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(status, "conditions"), i, c)
    {
        const char *t = json_string_value(json_object_get(c, "type"));
        if (t && !strcmp(t, type))
            return json_string_value(json_object_get(c, "status")) ?: "Unknown";
    }
    return "Unknown";
}

static int cmd_install_state(const struct opts *o)
{
    struct dp_kube_config *cfg = NULL;
    struct dp_kube_client *c = NULL;
    json_t *mesh = NULL;
    int r = connect_cluster(o, &cfg, &c);
    if (r < 0)
        return 1;
    r = dp_kube_get(c, &DP_KUBE_RES_MESHES, NULL, "default", &mesh);
    if (r == -ENOENT) {
        fprintf(stderr, "ambitctl: no Mesh \"default\": ambit is not installed (helm install the "
                        "base and control-plane charts)\n");
        r = 1;
        goto out;
    }
    if (r < 0) {
        api_error(c, "reading Mesh default", r);
        r = 1;
        goto out;
    }
    json_t *spec = json_object_get(mesh, "spec"), *status = json_object_get(mesh, "status");
    if (o->out == CTL_OUT_JSON) {
        json_dumpf(mesh, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
    } else if (o->out == CTL_OUT_YAML) {
        dp_yaml_dump(mesh, stdout);
    } else {
        json_t *rows = json_array(), *row = json_array();
        const char *hdr[] = {"NAME", "PROFILE", "TRUST DOMAIN", "READY", "DEGRADED", "VERSION"};
        for (size_t i = 0; i < 6; i++)
            json_array_append_new(row, json_string(hdr[i]));
        json_array_append_new(rows, row);
        row = json_array();
        const char *cells[] = {"default",
                               json_string_value(json_object_get(spec, "profile")) ?: "",
                               json_string_value(json_object_get(spec, "trustDomain")) ?: "",
                               cond_status(status, "Ready"),
                               cond_status(status, "Degraded"),
                               json_string_value(json_object_get(status, "version")) ?: ""};
        for (size_t i = 0; i < 6; i++)
            json_array_append_new(row, json_string(cells[i]));
        json_array_append_new(rows, row);
        ctl_table_print(stdout, rows);
        json_decref(rows);

        json_t *comps = json_object_get(status, "components");
        if (json_array_size(comps) || json_object_size(comps)) {
            printf("\n");
            rows = json_array();
            row = json_array();
            const char *h2[] = {"COMPONENT", "VERSION", "DESIRED", "AVAILABLE", "READY", "MESSAGE"};
            for (size_t i = 0; i < 6; i++)
                json_array_append_new(row, json_string(h2[i]));
            json_array_append_new(rows, row);
            const char *k;
            json_t *comp;
            size_t idx;
            json_t *list = json_is_array(comps) ? json_incref(comps) : json_array();
            if (json_is_object(comps)) {
                json_object_foreach(comps, k, comp)
                {
                    json_t *cc = json_deep_copy(comp);
                    if (!json_object_get(cc, "name"))
                        json_object_set_new(cc, "name", json_string(k));
                    json_array_append_new(list, cc);
                }
            }
            json_array_foreach(list, idx, comp)
            {
                char d[32], rd[32];
                snprintf(d, sizeof(d), "%lld",
                         json_integer_value(json_object_get(comp, "desired")));
                snprintf(rd, sizeof(rd), "%lld",
                         json_integer_value(json_object_get(comp, "available")));
                const char *c2[] = {json_string_value(json_object_get(comp, "name")) ?: "",
                                    json_string_value(json_object_get(comp, "version")) ?: "",
                                    d, rd,
                                    json_is_true(json_object_get(comp, "ready")) ? "true" : "false",
                                    json_string_value(json_object_get(comp, "message")) ?: ""};
                row = json_array();
                for (size_t i = 0; i < 6; i++)
                    json_array_append_new(row, json_string(c2[i]));
                json_array_append_new(rows, row);
            }
            json_decref(list);
            ctl_table_print(stdout, rows);
            json_decref(rows);
        }
    }
    r = 0;
out:
    json_decref(mesh);
    dp_kube_client_free(c);
    dp_kube_config_free(cfg);
    return r;
}

static int cmd_version(const struct opts *o)
{
    struct dp_kube_config *cfg = NULL;
    struct dp_kube_client *c = NULL;
    json_t *mesh = NULL;
    printf("client version: %s\n", AMBIT_VERSION);
    if (connect_cluster(o, &cfg, &c) < 0)
        return 0;
    int r = dp_kube_get(c, &DP_KUBE_RES_MESHES, NULL, "default", &mesh);
    if (r == 0) {
        const char *v = json_string_value(json_object_get(json_object_get(mesh, "status"),
                                                          "version"));
        printf("control plane version: %s\n", v ? v : "unknown");
    } else if (r == -ENOENT) {
        printf("control plane version: not installed\n");
    } else {
        api_error(c, "reading Mesh default", r);
    }
    json_decref(mesh);
    dp_kube_client_free(c);
    dp_kube_config_free(cfg);
    return 0;
}

static int cmd_ca(const struct opts *o, const char *what)
{
    char err[512] = "";
    int r;
    if (what && !strcmp(what, "root")) {
        if (!o->dir) {
            fprintf(stderr, "ambitctl: x ca root needs --dir\n");
            return 2;
        }
        r = ctl_ca_root(o->dir, o->days, o->bits, err, sizeof(err));
        if (r == 0)
            printf("wrote %s/root-key.pem and %s/root-cert.pem\n", o->dir, o->dir);
    } else if (what && !strcmp(what, "intermediate")) {
        if (!o->root_dir || !o->out_dir) {
            fprintf(stderr, "ambitctl: x ca intermediate needs --root-dir and --out\n");
            return 2;
        }
        r = ctl_ca_intermediate(o->root_dir, o->out_dir, o->cluster, o->days, o->bits, err,
                                sizeof(err));
        if (r == 0)
            printf("wrote %s/{ca-key.pem,ca-cert.pem,cert-chain.pem,root-cert.pem}\n"
                   "create the Secret before installing the control plane:\n"
                   "  kubectl create secret generic cacerts -n istio-system "
                   "--from-file=%s/ca-cert.pem --from-file=%s/ca-key.pem "
                   "--from-file=%s/root-cert.pem --from-file=%s/cert-chain.pem\n",
                   o->out_dir, o->out_dir, o->out_dir, o->out_dir, o->out_dir);
    } else {
        fprintf(stderr, "ambitctl: x ca needs root or intermediate\n");
        return 2;
    }
    if (r < 0) {
        fprintf(stderr, "ambitctl: %s\n", *err ? err : strerror(-r));
        return 1;
    }
    return 0;
}

static int cmd_analyze(const struct opts *o)
{
    bool use_kube = o->use_kube < 0 ? o->n_files == 0 : o->use_kube;
    json_t *objects = json_array(), *findings = NULL, *shown = NULL, *f;
    char err[512] = "";
    size_t i;
    int r, rc = 2;

    if (objects == NULL)
        return 1;
    if (use_kube) {
        struct dp_kube_config *cfg = NULL;
        struct dp_kube_client *c = NULL;

        if (connect_cluster(o, &cfg, &c) < 0)
            goto out;
        /* every namespace: references cross namespaces; -n only filters what is reported */
        r = ctl_analyze_fetch(c, NULL, objects, err, sizeof(err));
        if (r < 0)
            api_error(c, err, r);
        dp_kube_client_free(c);
        dp_kube_config_free(cfg);
        if (r < 0)
            goto out;
    }
    for (int k = 0; k < o->n_files; k++) {
        json_t *docs = NULL, *d;

        r = dp_yaml_parse_file(o->files[k], &docs, err, sizeof(err));
        if (r < 0) {
            fprintf(stderr, "ambitctl: %s\n", *err ? err : strerror(-r));
            goto out;
        }
        json_array_foreach(docs, i, d) {
            if (json_is_object(d))
                json_array_append(objects, d);
        }
        json_decref(docs);
    }
    r = ctl_analyze(objects, o->ns ? o->ns : "default", o->istio_ns, &findings);
    if (r < 0) {
        fprintf(stderr, "ambitctl: analysis failed: %s\n", strerror(-r));
        goto out;
    }
    shown = json_array();
    json_array_foreach(findings, i, f) {
        const char *fns = json_string_value(json_object_get(f, "namespace"));

        if (o->all_ns || o->ns == NULL || (fns && strcmp(fns, o->ns) == 0))
            json_array_append(shown, f);
    }
    r = ctl_analyze_print(stdout, shown, o->out);
    rc = r < 0 ? 2 : r > 0 ? 1 : 0;
out:
    json_decref(shown);
    json_decref(findings);
    json_decref(objects);
    return rc;
}

/* "--flag value" or "--flag=value"; returns the value and advances *i, or NULL */
static const char *flag_value(int argc, char **argv, int *i, const char *name)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return NULL;
    if (a[n] == '=')
        return a + n + 1;
    if (a[n] == '\0' && *i + 1 < argc)
        return argv[++*i];
    return NULL;
}

static int parse_num(const char *flag, const char *v, long lo, long hi, int *ret)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (*v == '\0' || *end || x < lo || x > hi) {
        fprintf(stderr, "ambitctl: %s must be a number in [%ld, %ld] (got \"%s\")\n", flag, lo, hi,
                v);
        return -EINVAL;
    }
    *ret = (int)x;
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o = {.istio_ns = "istio-system", .admin_port = 15020, .days = 3650, .bits = 4096,
                     .cluster = "cluster1", .out = CTL_OUT_TABLE, .use_kube = -1};
    const char *words[4] = {0};
    int nwords = 0;

    /* flags may come before or after the command words */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if ((v = flag_value(argc, argv, &i, "--kubeconfig"))) {
            o.kubeconfig = v;
        } else if ((v = flag_value(argc, argv, &i, "--context"))) {
            o.context = v;
        } else if ((v = flag_value(argc, argv, &i, "--istio-namespace")) ||
                   (v = flag_value(argc, argv, &i, "-i"))) {
            o.istio_ns = v;
        } else if ((v = flag_value(argc, argv, &i, "--node"))) {
            o.node = v;
        } else if ((v = flag_value(argc, argv, &i, "--output")) ||
                   (v = flag_value(argc, argv, &i, "-o")) ||
                   (!strncmp(a, "-o", 2) && a[2] && (v = a + 2))) {
            if (ctl_output_parse(v, &o.out) < 0) {
                fprintf(stderr, "ambitctl: -o must be table, json or yaml (got \"%s\")\n", v);
                return 2;
            }
        } else if ((v = flag_value(argc, argv, &i, "--filename")) ||
                   (v = flag_value(argc, argv, &i, "-f"))) {
            if (o.n_files >= (int)(sizeof(o.files) / sizeof(o.files[0]))) {
                fprintf(stderr, "ambitctl: at most 64 files\n");
                return 2;
            }
            o.files[o.n_files++] = v;
        } else if ((v = flag_value(argc, argv, &i, "--file"))) {
            o.file = v;
        } else if ((v = flag_value(argc, argv, &i, "--namespace")) ||
                   (v = flag_value(argc, argv, &i, "-n"))) {
            o.ns = v;
        } else if (!strcmp(a, "-A") || !strcmp(a, "--all-namespaces")) {
            o.all_ns = true;
        } else if (!strcmp(a, "--use-kube") || !strcmp(a, "--use-kube=true")) {
            o.use_kube = 1;
        } else if (!strcmp(a, "--use-kube=false")) {
            o.use_kube = 0;
        } else if ((v = flag_value(argc, argv, &i, "--dir"))) {
            o.dir = v;
        } else if ((v = flag_value(argc, argv, &i, "--root-dir"))) {
            o.root_dir = v;
        } else if ((v = flag_value(argc, argv, &i, "--out"))) {
            o.out_dir = v;
        } else if ((v = flag_value(argc, argv, &i, "--cluster"))) {
            o.cluster = v;
        } else if ((v = flag_value(argc, argv, &i, "--days"))) {
            if (parse_num("--days", v, 1, 36500, &o.days) < 0)
                return 2;
        } else if ((v = flag_value(argc, argv, &i, "--bits"))) {
            if (parse_num("--bits", v, 2048, 8192, &o.bits) < 0)
                return 2;
        } else if ((v = flag_value(argc, argv, &i, "--admin-port"))) {
            if (parse_num("--admin-port", v, 1, 65535, &o.admin_port) < 0)
                return 2;
        } else if (a[0] == '-') {
            fprintf(stderr, "ambitctl: unknown or incomplete flag \"%s\"\n", a);
            usage(stderr);
            return 2;
        } else if (nwords >= 1 && !strcmp(words[0], "analyze")) {
            if (o.n_files >= (int)(sizeof(o.files) / sizeof(o.files[0]))) {
                fprintf(stderr, "ambitctl: at most 64 files\n");
                return 2;
            }
            o.files[o.n_files++] = a;
        } else if (nwords < 4) {
            words[nwords++] = a;
        } else {
            fprintf(stderr, "ambitctl: unexpected argument \"%s\"\n", a);
            return 2;
        }
    }
    if (nwords == 0) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(words[0], "version"))
        return cmd_version(&o);
    if (!strcmp(words[0], "analyze"))
        return cmd_analyze(&o);
    if (!strcmp(words[0], "install-state"))
        return cmd_install_state(&o);
    if (!strcmp(words[0], "ztunnel-config") || !strcmp(words[0], "zc"))
        return cmd_ztunnel_config(&o, words[1]);
    if (!strcmp(words[0], "x") && words[1] && !strcmp(words[1], "ca"))
        return cmd_ca(&o, words[2]);
    fprintf(stderr, "ambitctl: unknown command \"%s\"\n", words[0]);
    usage(stderr);
    return 2;
}
