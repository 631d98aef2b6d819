/* test_enrol.c — who is enrolled (reference §1.2): a table of pod label × namespace label ×
 * hostNetwork × excluded namespace × own pod × sidecar × phase × IP, plus IP extraction and the
 * exclude list parser. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "node-agent/enrol.h"

struct row {
    const char *what;
    const char *pod_ns;
    const char *pod_label;  /* NULL = no label */
    const char *ns_label;   /* NULL = no label; "-" = namespace object unknown */
    bool host_network;
    const char *phase;      /* NULL = no status.phase */
    const char *ip;         /* NULL = no IP */
    const char *name;       /* default "p" */
    bool sidecar;
    enum na_enrol_decision want;
    const char *app; /* label app, NULL = none */
};

static const struct row ROWS[] = {
        {"pod label ambient", "app", "ambient", NULL, false, "Running", "10.0.0.5", NULL, false, NA_ENROL_YES, NULL},
        {"namespace label ambient", "app", NULL, "ambient", false, "Running", "10.0.0.5", NULL, false, NA_ENROL_YES, NULL},
        {"both ambient", "app", "ambient", "ambient", false, "Running", "10.0.0.5", NULL, false, NA_ENROL_YES, NULL},
        {"namespace ambient, pod opted out", "app", "none", "ambient", false, "Running", "10.0.0.5", NULL, false, NA_ENROL_NO, NULL},
        {"pod none, namespace unlabelled", "app", "none", NULL, false, "Running", "10.0.0.5", NULL, false, NA_ENROL_NO, NULL},
        {"namespace ambient, pod label other value", "app", "sidecar", "ambient", false, "Running", "10.0.0.5", NULL, false, NA_ENROL_YES, NULL},
        {"nothing labelled", "app", NULL, NULL, false, "Running", "10.0.0.5", NULL, false, NA_ENROL_NO, NULL},
        {"namespace label other value", "app", NULL, "sidecar", false, "Running", "10.0.0.5", NULL, false, NA_ENROL_NO, NULL},
        {"namespace unknown, pod ambient", "app", "ambient", "-", false, "Running", "10.0.0.5", NULL, false, NA_ENROL_YES, NULL},
        {"namespace unknown, pod unlabelled", "app", NULL, "-", false, "Running", "10.0.0.5", NULL, false, NA_ENROL_NO, NULL},
        {"hostNetwork, pod label", "app", "ambient", NULL, true, "Running", "10.0.0.5", NULL, false, NA_ENROL_NO, NULL},
        {"hostNetwork, namespace label", "app", NULL, "ambient", true, "Running", "10.0.0.5", NULL, false, NA_ENROL_NO, NULL},
        {"excluded namespace, pod label", "kube-system", "ambient", NULL, false, "Running", "10.0.0.5", NULL, false, NA_ENROL_NO, NULL},
        {"excluded namespace, namespace label", "kube-system", NULL, "ambient", false, "Running", "10.0.0.5", NULL, false, NA_ENROL_NO, NULL},
        {"second excluded namespace", "skip-me", NULL, "ambient", false, "Running", "10.0.0.5", NULL, false, NA_ENROL_NO, NULL},
        {"the agent's own pod", "istio-system", NULL, "ambient", false, "Running", "10.0.0.5", "ambit-node-x", false, NA_ENROL_NO, NULL},
        {"same name other namespace", "app", NULL, "ambient", false, "Running", "10.0.0.5", "ambit-node-x", false, NA_ENROL_YES, NULL},
        {"sidecar injected", "app", "ambient", "ambient", false, "Running", "10.0.0.5", NULL, true, NA_ENROL_NO, NULL},
        {"ambient, Pending", "app", "ambient", NULL, false, "Pending", NULL, NULL, false, NA_ENROL_WAIT, NULL},
        {"ambient, Pending with IP", "app", NULL, "ambient", false, "Pending", "10.0.0.5", NULL, false, NA_ENROL_WAIT, NULL},
        {"ambient, Running without IP", "app", NULL, "ambient", false, "Running", NULL, NULL, false, NA_ENROL_WAIT, NULL},
        {"ambient, no status", "app", NULL, "ambient", false, NULL, NULL, NULL, false, NA_ENROL_WAIT, NULL},
        {"ambient, Succeeded", "app", "ambient", NULL, false, "Succeeded", "10.0.0.5", NULL, false, NA_ENROL_NO, NULL},
        {"ambient, Failed", "app", NULL, "ambient", false, "Failed", "10.0.0.5", NULL, false, NA_ENROL_NO, NULL},
        {"not ambient, Pending", "app", NULL, NULL, false, "Pending", NULL, NULL, false, NA_ENROL_NO, NULL},
        {"hostNetwork Pending", "app", "ambient", NULL, true, "Pending", NULL, NULL, false, NA_ENROL_NO, NULL},
        {"excluded, Pending", "kube-system", "ambient", NULL, false, "Pending", NULL, NULL, false, NA_ENROL_NO, NULL},
        {"mesh namespace, app ztunnel", "istio-system", NULL, "ambient", false, "Running", "10.0.0.5", "zt", false, NA_ENROL_NO, "ztunnel"},
        {"mesh namespace, app ambit-cni", "istio-system", "ambient", NULL, false, "Running", "10.0.0.5", "c", false, NA_ENROL_NO, "ambit-cni"},
        {"mesh namespace, name ambit-node-*", "istio-system", NULL, "ambient", false, "Running", "10.0.0.5", "ambit-node-abc", false, NA_ENROL_NO, NULL},
        {"mesh namespace, other app", "istio-system", NULL, "ambient", false, "Running", "10.0.0.5", "web", false, NA_ENROL_YES, "web"},
        {"app ztunnel elsewhere", "app", NULL, "ambient", false, "Running", "10.0.0.5", "zt", false, NA_ENROL_YES, "ztunnel"},
};

static json_t *make_pod(const struct row *r)
{
    json_t *pod = json_pack("{s:{s:s,s:s,s:s,s:{},s:{}},s:{s:b},s:{}}", "metadata", "name",
                            r->name ? r->name : "p", "namespace", r->pod_ns, "uid",
                            "0b7d2c1e-1111-2222-3333-444455556666", "labels", "annotations",
                            "spec", "hostNetwork", r->host_network, "status");
    assert_non_null(pod);
    json_t *md = json_object_get(pod, "metadata");
    if (r->pod_label)
        json_object_set_new(json_object_get(md, "labels"), DP_AMBIENT_LABEL,
                            json_string(r->pod_label));
    if (r->app)
        json_object_set_new(json_object_get(md, "labels"), "app", json_string(r->app));
    if (r->sidecar)
        json_object_set_new(json_object_get(md, "annotations"), DP_AMBIENT_SIDECAR_ANN,
                            json_string("{}"));
    json_t *st = json_object_get(pod, "status");
    if (r->phase)
        json_object_set_new(st, "phase", json_string(r->phase));
    if (r->ip)
        json_object_set_new(st, "podIP", json_string(r->ip));
    return pod;
}

static json_t *make_ns(const struct row *r)
{
    if (r->ns_label && strcmp(r->ns_label, "-") == 0)
        return NULL;
    json_t *ns = json_pack("{s:{s:s,s:{}}}", "metadata", "name", r->pod_ns, "labels");
    if (r->ns_label)
        json_object_set_new(json_object_get(json_object_get(ns, "metadata"), "labels"),
                            DP_AMBIENT_LABEL, json_string(r->ns_label));
    return ns;
}

static void policy(struct dp_ambient_policy *pol, char *csv)
{
    memset(pol, 0, sizeof(*pol));
    assert_int_equal(na_enrol_policy_parse_exclude(pol, csv), 0);
    pol->self_ns = "istio-system";
    pol->self_name = "ambit-node-x";
    pol->mesh_ns = "istio-system";
}

static void test_decision_table(void **state)
{
    (void)state;
    char csv[] = "kube-system,skip-me";
    struct dp_ambient_policy pol;
    policy(&pol, csv);
    unsigned failed = 0;
    for (size_t i = 0; i < sizeof(ROWS) / sizeof(ROWS[0]); i++) {
        const struct row *r = &ROWS[i];
        json_t *pod = make_pod(r), *ns = make_ns(r);
        const char *why = NULL;
        enum na_enrol_decision d = na_enrol_decide(pod, ns, &pol, &why);
        if (d != r->want) {
            fprintf(stderr, "row %zu (%s): got %s (%s), want %s\n", i, r->what,
                    na_enrol_decision_str(d), why ? why : "-", na_enrol_decision_str(r->want));
            failed++;
        }
        assert_non_null(why);
        json_decref(pod);
        json_decref(ns);
    }
    assert_int_equal(failed, 0);
}

static void test_deleted_and_no_policy(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_int_equal(na_enrol_decide(NULL, NULL, NULL, &why), NA_ENROL_NO);
    assert_string_equal(why, "pod deleted");
    /* without a policy nothing is excluded, the label rules still apply */
    json_t *pod = make_pod(&ROWS[12]); /* kube-system, pod label ambient */
    assert_int_equal(na_enrol_decide(pod, NULL, NULL, NULL), NA_ENROL_YES);
    json_decref(pod);
    /* a label value that is not a string is not "ambient" */
    pod = make_pod(&ROWS[6]);
    json_object_set_new(json_object_get(json_object_get(pod, "metadata"), "labels"),
                        DP_AMBIENT_LABEL, json_integer(1));
    assert_int_equal(na_enrol_decide(pod, NULL, NULL, NULL), NA_ENROL_NO);
    json_decref(pod);
}

static void test_pod_ips(void **state)
{
    (void)state;
    const char *ips[4];
    json_t *pod = json_pack("{s:{s:s,s:[{s:s},{s:s},{s:i},{}]}}", "status", "podIP", "10.0.0.5",
                            "podIPs", "ip", "10.0.0.5", "ip", "fd00::5", "ip", 7);
    assert_int_equal(na_enrol_pod_ips(pod, ips, 4), 2);
    assert_string_equal(ips[0], "10.0.0.5");
    assert_string_equal(ips[1], "fd00::5");
    assert_int_equal(na_enrol_pod_ips(pod, ips, 1), 1);
    json_decref(pod);
    pod = json_pack("{s:{s:s}}", "status", "podIP", "10.0.0.6");
    assert_int_equal(na_enrol_pod_ips(pod, ips, 4), 1);
    assert_string_equal(ips[0], "10.0.0.6");
    assert_int_equal(na_enrol_pod_ips(pod, ips, 0), 0);
    json_decref(pod);
    pod = json_pack("{s:{s:s}}", "status", "podIP", "");
    assert_int_equal(na_enrol_pod_ips(pod, ips, 4), 0);
    json_decref(pod);
    assert_int_equal(na_enrol_pod_ips(NULL, ips, 4), 0);
}

static void test_exclude_parse(void **state)
{
    (void)state;
    struct dp_ambient_policy pol;
    char a[] = " kube-system, ,istio-system,";
    memset(&pol, 0, sizeof(pol));
    assert_int_equal(na_enrol_policy_parse_exclude(&pol, a), 0);
    assert_int_equal(pol.n_exclude, 2);
    assert_string_equal(pol.exclude_ns[0], "kube-system");
    assert_string_equal(pol.exclude_ns[1], "istio-system");
    char empty[] = "";
    assert_int_equal(na_enrol_policy_parse_exclude(&pol, empty), 0);
    assert_int_equal(pol.n_exclude, 0);
    char big[DP_AMBIENT_MAX_EXCLUDE * 3 + 8];
    size_t o = 0;
    for (int i = 0; i <= DP_AMBIENT_MAX_EXCLUDE; i++)
        o += (size_t)snprintf(big + o, sizeof(big) - o, "n%d,", i % 10);
    assert_int_equal(na_enrol_policy_parse_exclude(&pol, big), -E2BIG);
}

static void test_redirect_opts(void **state)
{
    (void)state;
    struct dp_nft_pod_opts base, o;
    dp_nft_pod_opts_init(&base);
    json_t *pod = json_pack("{s:{s:{}}}", "metadata", "annotations");
    json_t *ann = json_object_get(json_object_get(pod, "metadata"), "annotations");
    dp_ambient_redirect_opts(pod, &base, &o);
    assert_false(o.dns_capture);
    assert_false(o.bypass_inbound);
    assert_true(o.ipv6);
    json_object_set_new(ann, DP_AMBIENT_DNS_ANN, json_string("true"));
    json_object_set_new(ann, DP_AMBIENT_BYPASS_IN_ANN, json_string("true"));
    dp_ambient_redirect_opts(pod, &base, &o);
    assert_true(o.dns_capture);
    assert_true(o.bypass_inbound);
    /* the plugin recorded DNS capture; the annotation can turn it off, junk leaves it */
    base.dns_capture = true;
    base.ipv6 = false;
    json_object_set_new(ann, DP_AMBIENT_DNS_ANN, json_string("false"));
    json_object_set_new(ann, DP_AMBIENT_BYPASS_IN_ANN, json_string("yes"));
    dp_ambient_redirect_opts(pod, &base, &o);
    assert_false(o.dns_capture);
    assert_false(o.bypass_inbound);
    assert_false(o.ipv6);
    json_object_set_new(ann, DP_AMBIENT_DNS_ANN, json_string("TRUE"));
    dp_ambient_redirect_opts(pod, &base, &o);
    assert_true(o.dns_capture);
    assert_int_equal(o.port_outbound, 15001);
    dp_ambient_redirect_opts(NULL, &base, &o); /* no pod: the base */
    assert_true(o.dns_capture);
    json_decref(pod);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_decision_table),
            cmocka_unit_test(test_deleted_and_no_policy),
            cmocka_unit_test(test_pod_ips),
            cmocka_unit_test(test_exclude_parse),
            cmocka_unit_test(test_redirect_opts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
