/* Unit tests for dataplane/mesh: object decoding (good and hostile input), snapshots, the event
 * stream (upsert/delete/reset/synced, copy-on-write) and outbound destination selection. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mesh.h"

static json_t *load(const char *s)
{
    json_error_t je;
    json_t *v = json_loads(s, 0, &je);
    if (!v)
        fail_msg("bad fixture: %s: %s", je.text, s);
    return v;
}

static struct dp_mesh_ip ip(const char *s)
{
    struct dp_mesh_ip a;
    assert_int_equal(dp_mesh_ip_parse(s, &a), 0);
    return a;
}

static const char *CONFIG =
        "{\"workloads\": ["
        " {\"uid\": \"Kubernetes//Pod/bookinfo/reviews-v1\", \"podUid\": \"u-1\","
        "  \"name\": \"reviews-v1\", \"namespace\": \"bookinfo\", \"node\": \"node-1\","
        "  \"addresses\": [\"10.244.1.5\"], \"serviceAccount\": \"bookinfo-reviews\","
        "  \"protocol\": \"HBONE\", \"labels\": {\"app\": \"reviews\", \"version\": \"v1\"},"
        "  \"services\": {\"bookinfo/reviews.bookinfo.svc.cluster.local\": {\"9080\": 9080}},"
        "  \"authorizationPolicies\": [\"bookinfo/reviews-allow\"], \"capacity\": 1},"
        " {\"uid\": \"Kubernetes//Pod/bookinfo/reviews-v2\", \"name\": \"reviews-v2\","
        "  \"namespace\": \"bookinfo\", \"addresses\": [\"10.244.2.6\", \"fd00::6\"],"
        "  \"protocol\": \"TCP\", \"capacity\": 3,"
        "  \"services\": {\"bookinfo/reviews.bookinfo.svc.cluster.local\": {\"9080\": 9090}}},"
        " {\"uid\": \"Kubernetes//Pod/bookinfo/reviews-v3\", \"name\": \"reviews-v3\","
        "  \"namespace\": \"bookinfo\", \"addresses\": [\"10.244.2.7\"], \"status\": \"Unhealthy\","
        "  \"protocol\": \"HBONE\","
        "  \"services\": {\"bookinfo/reviews.bookinfo.svc.cluster.local\": {\"9080\": 0}}}"
        "],"
        "\"services\": ["
        " {\"name\": \"reviews\", \"namespace\": \"bookinfo\","
        "  \"hostname\": \"reviews.bookinfo.svc.cluster.local\", \"vips\": [\"10.96.0.12\"],"
        "  \"ports\": [{\"port\": 9080, \"targetPort\": 9081, \"appProtocol\": \"http\"}]},"
        " {\"name\": \"empty\", \"namespace\": \"bookinfo\","
        "  \"hostname\": \"empty.bookinfo.svc.cluster.local\", \"vips\": [\"/10.96.0.13\"],"
        "  \"ports\": {\"80\": 8080}}"
        "],"
        "\"policies\": ["
        " {\"name\": \"reviews-allow\", \"namespace\": \"bookinfo\", \"scope\": "
        "\"WorkloadSelector\","
        "  \"action\": \"Allow\", \"rules\": [[[{\"principals\": [{\"exact\": "
        "\"cluster.local/ns/istio-ingress/sa/gw\"}]}]]]},"
        " {\"name\": \"ns-deny\", \"namespace\": \"bookinfo\", \"scope\": \"Namespace\","
        "  \"action\": \"Deny\", \"rules\": [[[{\"sourceIps\": [\"192.0.2.0/24\"]}]]]},"
        " {\"name\": \"mesh\", \"namespace\": \"istio-system\", \"scope\": \"Global\","
        "  \"action\": \"Deny\"}"
        "],"
        "\"waypoints\": [{\"name\": \"waypoint\", \"namespace\": \"bookinfo\", \"nodes\": "
        "[\"node-1\"],"
        "  \"addresses\": [\"10.96.0.50\"]}]}";

static struct dp_mesh_snapshot *snap_from(const char *json)
{
    char err[512] = "";
    struct dp_mesh_snapshot *s = NULL;
    json_t *doc = load(json);
    int r = dp_mesh_snapshot_from_json(doc, &s, err, sizeof(err));
    json_decref(doc);
    if (r < 0)
        fail_msg("snapshot: %d %s", r, err);
    return s;
}

/* ------------------------------------------------------------------ addresses */

static void test_ip_parse(void **state)
{
    struct dp_mesh_ip a, b;
    struct dp_mesh_cidr c;
    char buf[DP_MESH_IP_STRLEN];
    (void)state;

    assert_int_equal(dp_mesh_ip_parse("10.0.0.1", &a), 0);
    assert_int_equal(a.family, 4);
    assert_int_equal(dp_mesh_ip_parse("::ffff:10.0.0.1", &b), 0);
    assert_int_equal(b.family, 4);
    assert_true(dp_mesh_ip_equal(&a, &b));
    assert_int_equal(dp_mesh_ip_parse("fd00::1", &a), 0);
    assert_int_equal(a.family, 6);
    assert_string_equal(dp_mesh_ip_format(&a, buf, sizeof(buf)), "fd00::1");
    assert_int_equal(dp_mesh_ip_parse("10.0.0.256", &a), -EINVAL);
    assert_int_equal(dp_mesh_ip_parse("10.0.0.1:80", &a), -EINVAL);
    assert_int_equal(dp_mesh_ip_parse("", &a), -EINVAL);

    assert_int_equal(dp_mesh_cidr_parse("10.0.0.0/8", &c), 0);
    assert_true(dp_mesh_cidr_contains(&c, &(struct dp_mesh_ip){4, {10, 200, 3, 4}}));
    assert_false(dp_mesh_cidr_contains(&c, &(struct dp_mesh_ip){4, {11, 0, 0, 1}}));
    assert_int_equal(dp_mesh_cidr_parse("10.0.0.1/8", &c), -EINVAL); /* host bits */
    bool hb = false;
    assert_int_equal(dp_mesh_cidr_parse_masked("10.1.2.3/8", &c, &hb), 0);
    assert_true(hb);
    assert_string_equal(dp_mesh_ip_format(&c.ip, buf, sizeof(buf)), "10.0.0.0");
    assert_int_equal(dp_mesh_cidr_parse_masked("fd00::1/120", &c, &hb), 0);
    assert_true(hb);
    assert_int_equal(c.ip.a[15], 0);
    assert_int_equal(dp_mesh_cidr_parse_masked("10.0.0.0/8", &c, &hb), 0);
    assert_false(hb);
    assert_int_equal(dp_mesh_cidr_parse_masked("10.0.0.0/8", &c, NULL), 0);
    assert_int_equal(dp_mesh_cidr_parse("10.0.0.0/33", &c), -EINVAL);
    assert_int_equal(dp_mesh_cidr_parse("10.0.0.0/", &c), -EINVAL);
    assert_int_equal(dp_mesh_cidr_parse("10.0.0.0/-1", &c), -EINVAL);
    assert_int_equal(dp_mesh_cidr_parse("fd00::/64", &c), 0);
    a = ip("fd00::1234");
    assert_true(dp_mesh_cidr_contains(&c, &a));
    a = ip("fd01::1");
    assert_false(dp_mesh_cidr_contains(&c, &a));
    a = ip("10.0.0.1");
    assert_false(dp_mesh_cidr_contains(&c, &a)); /* family mismatch */
    assert_int_equal(dp_mesh_cidr_parse("0.0.0.0/0", &c), 0);
    assert_true(dp_mesh_cidr_contains(&c, &a));
    assert_int_equal(dp_mesh_cidr_parse("10.1.2.3", &c), 0);
    assert_int_equal(c.prefix, 32);
    assert_int_equal(dp_mesh_cidr_parse("::ffff:10.0.0.0/104", &c), 0);
    assert_int_equal(c.ip.family, 4);
    assert_int_equal(c.prefix, 8);
    assert_true(dp_mesh_cidr_contains(&c, &a));
    assert_int_equal(dp_mesh_cidr_parse("10.1.0.0/17", &c), 0);
    a = ip("10.1.127.255");
    assert_true(dp_mesh_cidr_contains(&c, &a));
    a = ip("10.1.128.0");
    assert_false(dp_mesh_cidr_contains(&c, &a));
}

static void test_ip_sockaddr(void **state)
{
    struct sockaddr_in6 in6;
    struct dp_mesh_ip a;
    uint16_t port = 0;
    (void)state;
    memset(&in6, 0, sizeof(in6));
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(15001);
    in6.sin6_addr.s6_addr[10] = 0xff;
    in6.sin6_addr.s6_addr[11] = 0xff;
    in6.sin6_addr.s6_addr[12] = 10;
    in6.sin6_addr.s6_addr[15] = 7;
    assert_int_equal(dp_mesh_ip_from_sockaddr((struct sockaddr *)&in6, &a, &port), 0);
    assert_int_equal(a.family, 4);
    assert_int_equal(port, 15001);
    assert_true(dp_mesh_ip_equal(&a, &(struct dp_mesh_ip){4, {10, 0, 0, 7}}));
}

/* ------------------------------------------------------------------ decoding */

static void test_decode_config(void **state)
{
    struct dp_mesh_snapshot *s = snap_from(CONFIG);
    const struct dp_mesh_workload *w;
    const struct dp_mesh_service *svc;
    const struct dp_mesh_policy *p;
    const struct dp_mesh_waypoint *wp;
    const struct dp_mesh_workload *const *eps;
    struct dp_mesh_ip a;
    char id[256];
    (void)state;

    a = ip("10.244.1.5");
    w = dp_mesh_workload_by_ip(s, &a);
    assert_non_null(w);
    assert_string_equal(w->key, "Kubernetes//Pod/bookinfo/reviews-v1");
    assert_string_equal(w->service_account, "bookinfo-reviews");
    assert_string_equal(w->trust_domain, "cluster.local"); /* default */
    assert_int_equal(w->protocol, DP_MESH_PROTO_HBONE);
    assert_int_equal(w->status, DP_MESH_HEALTHY);
    assert_string_equal(dp_mesh_workload_label(w, "version"), "v1");
    assert_null(dp_mesh_workload_label(w, "nope"));
    assert_int_equal(dp_mesh_workload_identity(w, id, sizeof(id)),
                     (int)strlen("cluster.local/ns/bookinfo/sa/bookinfo-reviews"));
    assert_string_equal(id, "cluster.local/ns/bookinfo/sa/bookinfo-reviews");
    assert_ptr_equal(dp_mesh_workload_by_pod_uid(s, "u-1"), w);
    assert_ptr_equal(dp_mesh_workload_by_key(s, "Kubernetes//Pod/bookinfo/reviews-v1"), w);

    a = ip("fd00::6");
    w = dp_mesh_workload_by_ip(s, &a);
    assert_non_null(w);
    assert_string_equal(w->name, "reviews-v2");
    assert_string_equal(w->service_account, "default");
    assert_int_equal(w->capacity, 3);

    a = ip("::ffff:10.96.0.12");
    svc = dp_mesh_service_by_vip(s, &a);
    assert_non_null(svc);
    assert_string_equal(svc->key, "bookinfo/reviews.bookinfo.svc.cluster.local");
    assert_int_equal(svc->ports[0].target_port, 9081);
    assert_string_equal(svc->ports[0].app_protocol, "http");
    assert_int_equal(dp_mesh_service_endpoints(s, svc->key, &eps), 3);
    assert_string_equal(eps[0]->name, "reviews-v1");
    assert_string_equal(eps[2]->name, "reviews-v3");
    a = ip("10.96.0.13"); /* "/10.96.0.13" network form */
    svc = dp_mesh_service_by_vip(s, &a);
    assert_non_null(svc);
    assert_int_equal(svc->ports[0].port, 80);
    assert_int_equal(svc->ports[0].target_port, 8080);
    assert_int_equal(dp_mesh_service_endpoints(s, svc->key, &eps), 0);
    assert_null(eps);

    p = dp_mesh_policy_by_key(s, "bookinfo/reviews-allow");
    assert_non_null(p);
    assert_int_equal(p->scope, DP_MESH_SCOPE_WORKLOAD);
    assert_int_equal(p->n_groups, 1);
    assert_string_equal(p->groups[0].clauses[0].matches[0].principals[0].value,
                        "cluster.local/ns/istio-ingress/sa/gw");
    const struct dp_mesh_policy *const *pl;
    assert_int_equal(dp_mesh_namespace_policies(s, "bookinfo", &pl), 1);
    assert_string_equal(pl[0]->name, "ns-deny");
    assert_int_equal(dp_mesh_namespace_policies(s, "other", &pl), 0);
    assert_int_equal(dp_mesh_global_policies(s, &pl), 1);
    assert_string_equal(pl[0]->key, "istio-system/mesh");
    assert_int_equal(pl[0]->n_groups, 0);

    wp = dp_mesh_waypoint_by_key(s, "bookinfo/waypoint");
    assert_non_null(wp);
    assert_int_equal(wp->port, 15008);
    assert_string_equal(wp->service_account, "waypoint");
    assert_int_equal(wp->traffic_for, DP_MESH_WP_SERVICE);
    dp_mesh_snapshot_unref(s);
}

static void test_encode_roundtrip(void **state)
{
    struct dp_mesh_snapshot *s = snap_from(CONFIG), *s2;
    json_t *doc, *doc2;
    char err[512];
    (void)state;
    doc = dp_mesh_snapshot_to_json(s);
    assert_non_null(doc);
    assert_int_equal(dp_mesh_snapshot_from_json(doc, &s2, err, sizeof(err)), 0);
    doc2 = dp_mesh_snapshot_to_json(s2);
    assert_true(json_equal(doc, doc2));
    json_decref(doc);
    json_decref(doc2);
    dp_mesh_snapshot_unref(s);
    dp_mesh_snapshot_unref(s2);
}

struct bad_case {
    enum dp_mesh_kind kind;
    const char *json;
    const char *err; /* expected error message */
};

static const struct bad_case bad_cases[] = {
        {DP_MESH_WORKLOAD, "[]", "w: expected object, got array"},
        {DP_MESH_WORKLOAD, "{\"name\": \"a\", \"namespace\": \"b\"}",
         "w.uid: required field is missing"},
        {DP_MESH_WORKLOAD, "{\"uid\": \"u\", \"name\": 1, \"namespace\": \"b\"}",
         "w.name: expected string, got integer"},
        {DP_MESH_WORKLOAD, "{\"uid\": \"u\", \"name\": \"\", \"namespace\": \"b\"}",
         "w.name: must not be empty"},
        {DP_MESH_WORKLOAD,
         "{\"uid\": \"u\", \"name\": \"a\", \"namespace\": \"b\", \"addresses\": [\"1.2.3.4\", "
         "\"nope\"]}",
         "w.addresses[1]: not an IP address"},
        {DP_MESH_WORKLOAD,
         "{\"uid\": \"u\", \"name\": \"a\", \"namespace\": \"b\", \"addresses\": [5]}",
         "w.addresses[0]: expected string, got integer"},
        {DP_MESH_WORKLOAD,
         "{\"uid\": \"u\", \"name\": \"a\", \"namespace\": \"b\", \"protocol\": \"UDP\"}",
         "w.protocol: unknown value (expected one of TCP, HBONE, NONE)"},
        {DP_MESH_WORKLOAD,
         "{\"uid\": \"u\", \"name\": \"a\", \"namespace\": \"b\", \"capacity\": -1}",
         "w.capacity: -1 out of range [0, 4294967295]"},
        {DP_MESH_WORKLOAD,
         "{\"uid\": \"u\", \"name\": \"a\", \"namespace\": \"b\", \"services\": {\"x/y\": "
         "{\"0\": 80}}}",
         "w.services[\"x/y\"].0: service port must be a decimal 1..65535"},
        {DP_MESH_WORKLOAD,
         "{\"uid\": \"u\", \"name\": \"a\", \"namespace\": \"b\", \"services\": {\"xy\": {}}}",
         "w.services.xy: service key must be \"<namespace>/<hostname>\""},
        {DP_MESH_WORKLOAD,
         "{\"uid\": \"u\", \"name\": \"a\", \"namespace\": \"b\", \"labels\": {\"a\": 1}}",
         "w.labels.a: expected string"},
        {DP_MESH_WORKLOAD,
         "{\"uid\": \"u\", \"name\": \"a\", \"namespace\": \"b\", \"waypoint\": {}}",
         "w.waypoint: needs a key or addresses"},
        {DP_MESH_WORKLOAD,
         "{\"uid\": \"u\", \"name\": \"a\", \"namespace\": \"b\", \"serviceaccount\": \"x\"}",
         "w.serviceaccount: unknown field"},
        {DP_MESH_SERVICE, "{\"name\": \"a\", \"namespace\": \"b\"}",
         "w.hostname: required field is missing"},
        {DP_MESH_SERVICE,
         "{\"name\": \"a\", \"namespace\": \"b\", \"hostname\": \"h\", \"ports\": [{\"port\": 0}]}",
         "w.ports[0].port: 0 out of range [1, 65535]"},
        {DP_MESH_SERVICE,
         "{\"name\": \"a\", \"namespace\": \"b\", \"hostname\": \"h\", \"ports\": \"80\"}",
         "w.ports: expected array, got string"},
        {DP_MESH_SERVICE,
         "{\"name\": \"a\", \"namespace\": \"b\", \"hostname\": \"h\", \"loadBalancing\": "
         "{\"healthPolicy\": \"Sometimes\"}}",
         "w.loadBalancing.healthPolicy: unknown value (expected one of OnlyHealthy, AllowAll)"},
        {DP_MESH_POLICY, "{\"name\": \"a\", \"namespace\": \"b\", \"action\": \"Audit\"}",
         "w.action: unknown value (expected one of Allow, Deny)"},
        {DP_MESH_POLICY, "{\"name\": \"a\", \"namespace\": \"b\", \"rules\": [{}]}",
         "w.rules[0]: expected array of clauses, got object"},
        {DP_MESH_POLICY, "{\"name\": \"a\", \"namespace\": \"b\", \"rules\": [[{}]]}",
         "w.rules[0][0]: expected array of matches, got object"},
        {DP_MESH_POLICY,
         "{\"name\": \"a\", \"namespace\": \"b\", \"rules\": [[[{\"sourceIps\": "
         "[\"10.0.0.0/33\"]}]]]}",
         "w.rules[0][0][0].sourceIps[0]: not a CIDR (\"10.0.0.0/8\", \"fd00::/64\" or an address)"},
        {DP_MESH_POLICY,
         "{\"name\": \"a\", \"namespace\": \"b\", \"rules\": [[[{\"destinationPorts\": "
         "[70000]}]]]}",
         "w.rules[0][0][0].destinationPorts[0]: expected port 1..65535, got out of range"},
        {DP_MESH_POLICY,
         "{\"name\": \"a\", \"namespace\": \"b\", \"rules\": [[[{\"principals\": "
         "[{\"exact\": \"a\", \"prefix\": \"b\"}]}]]]}",
         "w.rules[0][0][0].principals[0]: exactly one of exact, prefix, suffix, presence"},
        {DP_MESH_POLICY,
         "{\"name\": \"a\", \"namespace\": \"b\", \"rules\": [[[{\"principals\": "
         "[{\"regex\": \"a\"}]}]]]}",
         "w.rules[0][0][0].principals[0].regex: unknown field"},
        {DP_MESH_POLICY,
         "{\"name\": \"a\", \"namespace\": \"b\", \"rules\": [[[{\"serviceAccounts\": "
         "[\"nons\"]}]]]}",
         "w.rules[0][0][0].serviceAccounts[0]: service account must be \"<namespace>/<name>\""},
        {DP_MESH_POLICY,
         "{\"name\": \"a\", \"namespace\": \"b\", \"rules\": [[[{\"principal\": [\"x\"]}]]]}",
         "w.rules[0][0][0].principal: unknown field"},
        {DP_MESH_WAYPOINT, "{\"name\": \"a\", \"namespace\": \"b\", \"port\": 70000}",
         "w.port: 70000 out of range [1, 65535]"},
        {DP_MESH_WAYPOINT, "{\"name\": \"a\", \"namespace\": \"b\", \"for\": \"pods\"}",
         "w.for: unknown value (expected one of service, workload, all, none)"},
};

static void test_decode_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        char err[512] = "";
        void *obj = NULL;
        json_t *j = load(bad_cases[i].json);
        int r = dp_mesh_object_decode(bad_cases[i].kind, j, NULL, "w", &obj, err, sizeof(err));
        json_decref(j);
        if (r != -EINVAL || strncmp(err, bad_cases[i].err, strlen(bad_cases[i].err)) != 0)
            fail_msg("case %zu: r=%d err=\"%s\", want \"%s\"", i, r, err, bad_cases[i].err);
        assert_null(obj);
    }
}

static void test_decode_bounds(void **state)
{
    json_t *w = load("{\"uid\": \"u\", \"name\": \"a\", \"namespace\": \"b\"}");
    json_t *arr = json_array();
    char err[512], *big;
    void *obj = NULL;
    (void)state;

    for (int i = 0; i < DP_MESH_MAX_ADDRESSES + 1; i++)
        json_array_append_new(arr, json_string("10.0.0.1"));
    json_object_set_new(w, "addresses", arr);
    assert_int_equal(dp_mesh_object_decode(DP_MESH_WORKLOAD, w, NULL, NULL, &obj, err, sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "addresses: too many items (17, at most 16)");
    json_object_del(w, "addresses");

    big = malloc(DP_MESH_MAX_STR + 2);
    memset(big, 'a', DP_MESH_MAX_STR + 1);
    big[DP_MESH_MAX_STR + 1] = '\0';
    json_object_set_new(w, "name", json_string(big));
    free(big);
    assert_int_equal(dp_mesh_object_decode(DP_MESH_WORKLOAD, w, NULL, NULL, &obj, err, sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "name: string too long (1025 bytes, at most 1024)");
    json_decref(w);

    /* too many groups */
    json_t *p = load("{\"name\": \"a\", \"namespace\": \"b\"}");
    arr = json_array();
    for (int i = 0; i < DP_MESH_MAX_GROUPS + 1; i++)
        json_array_append_new(arr, json_array());
    json_object_set_new(p, "rules", arr);
    assert_int_equal(dp_mesh_object_decode(DP_MESH_POLICY, p, NULL, NULL, &obj, err, sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "rules: too many items (1025, at most 1024)");
    json_decref(p);
    assert_null(obj);
}

static void test_decode_key(void **state)
{
    char err[512];
    void *obj = NULL;
    json_t *w = load("{\"name\": \"a\", \"namespace\": \"b\"}");
    json_t *p = load("{\"name\": \"a\", \"namespace\": \"b\"}");
    (void)state;
    /* a workload without uid takes the event key */
    assert_int_equal(
            dp_mesh_object_decode(DP_MESH_WORKLOAD, w, "c//Pod/b/a", NULL, &obj, err, sizeof(err)),
            0);
    assert_string_equal(((struct dp_mesh_workload *)obj)->uid, "c//Pod/b/a");
    dp_mesh_object_unref(DP_MESH_WORKLOAD, obj);
    assert_int_equal(dp_mesh_object_decode(DP_MESH_POLICY, p, "b/a", NULL, &obj, err, sizeof(err)),
                     0);
    dp_mesh_object_unref(DP_MESH_POLICY, obj);
    obj = NULL;
    assert_int_equal(dp_mesh_object_decode(DP_MESH_POLICY, p, "b/x", NULL, &obj, err, sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "<root>: event key \"b/x\" does not match the object's key \"b/a\"");
    assert_null(obj);
    json_decref(w);
    json_decref(p);
}

static void test_config_errors(void **state)
{
    static const struct {
        const char *json, *err;
    } cases[] = {
            {"{\"workload\": []}", "workload: unknown field"},
            {"{\"workloads\": {}}", "workloads: expected array, got object"},
            {"{\"workloads\": [{\"uid\": \"u\", \"name\": \"a\", \"namespace\": \"b\"}, {\"uid\": "
             "\"u\", \"name\": \"a\", \"namespace\": \"c\"}]}",
             "workloads[1]: duplicate workload key \"u\""},
            {"{\"policies\": [{\"name\": \"p\", \"namespace\": \"n\", \"rules\": "
             "[[[{\"sourceIps\": "
             "[\"1.2.3.4/40\"]}]]]}]}",
             "policies[0].rules[0][0][0].sourceIps[0]: not a CIDR"},
            {"[]", "<root>: expected object, got array"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[512] = "";
        struct dp_mesh_snapshot *s = NULL;
        json_t *j = load(cases[i].json);
        int r = dp_mesh_snapshot_from_json(j, &s, err, sizeof(err));
        json_decref(j);
        if (r != -EINVAL || strncmp(err, cases[i].err, strlen(cases[i].err)) != 0)
            fail_msg("case %zu: r=%d err=\"%s\" want \"%s\"", i, r, err, cases[i].err);
        assert_null(s);
    }
}

static void test_load_file_yaml(void **state)
{
    char path[] = "/tmp/amb-mesh-test-XXXXXX";
    const char *yaml = "workloads:\n"
                       "  - uid: Kubernetes//Pod/default/a\n"
                       "    name: a\n"
                       "    namespace: default\n"
                       "    addresses: [10.1.0.1]\n"
                       "    protocol: HBONE\n"
                       "policies:\n"
                       "  - name: deny-plain\n"
                       "    namespace: default\n"
                       "    action: Deny\n"
                       "    rules: [[[{notPrincipals: ['*']}]]]\n";
    struct dp_mesh_snapshot *s = NULL;
    char err[512] = "";
    struct dp_mesh_ip a = ip("10.1.0.1");
    int fd = mkstemp(path);
    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    assert_int_equal(dp_mesh_snapshot_load_file(path, &s, err, sizeof(err)), 0);
    assert_non_null(dp_mesh_workload_by_ip(s, &a));
    const struct dp_mesh_policy *p = dp_mesh_policy_by_key(s, "default/deny-plain");
    assert_non_null(p);
    assert_int_equal(p->scope, DP_MESH_SCOPE_NAMESPACE); /* default */
    assert_int_equal(p->groups[0].clauses[0].matches[0].not_principals[0].kind, DP_MESH_PRESENCE);
    dp_mesh_snapshot_unref(s);

    /* a bad file names the file and the JSON path */
    const char *bad = "workloads:\n  - uid: u\n    name: a\n    namespace: b\n    addresses: [x]\n";
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, bad, strlen(bad)), (ssize_t)strlen(bad));
    close(fd);
    s = NULL;
    assert_int_equal(dp_mesh_snapshot_load_file(path, &s, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "workloads[0].addresses[0]: not an IP address"));
    assert_non_null(strstr(err, path));
    unlink(path);
    assert_int_equal(dp_mesh_snapshot_load_file(path, &s, err, sizeof(err)), -ENOENT);
}

/* ------------------------------------------------------------------ deltas and the stream */

static void test_apply_delta(void **state)
{
    struct dp_mesh_snapshot *base = snap_from(CONFIG), *next = NULL;
    const struct dp_mesh_workload *w1, *w1b;
    const struct dp_mesh_workload *const *eps;
    struct dp_mesh_ip a = ip("10.244.1.5"), nw = ip("10.244.3.9");
    char err[512] = "";
    json_t *ev = load(
            "[{\"type\": \"upsert\", \"version\": 5, \"kind\": \"workload\", \"key\": "
            "\"Kubernetes//Pod/bookinfo/new\", \"object\": {\"name\": \"new\", \"namespace\": "
            "\"bookinfo\", \"addresses\": [\"10.244.3.9\"], \"services\": "
            "{\"bookinfo/reviews.bookinfo.svc.cluster.local\": {}}}},"
            " {\"type\": \"delete\", \"version\": 6, \"kind\": \"workload\", \"key\": "
            "\"Kubernetes//Pod/bookinfo/reviews-v2\"},"
            " {\"type\": \"delete\", \"version\": 7, \"kind\": \"policy\", \"key\": \"no/such\"},"
            " {\"type\": \"ping\"},"
            " {\"type\": \"synced\", \"version\": 7}]");
    (void)state;

    w1 = dp_mesh_workload_by_ip(base, &a);
    assert_int_equal(dp_mesh_snapshot_apply(base, ev, &next, err, sizeof(err)), 0);
    json_decref(ev);
    assert_int_equal(dp_mesh_snapshot_version(next), 7);
    /* old snapshot unchanged */
    assert_int_equal(dp_mesh_snapshot_version(base), 0);
    assert_null(dp_mesh_workload_by_ip(base, &nw));
    assert_non_null(dp_mesh_workload_by_key(base, "Kubernetes//Pod/bookinfo/reviews-v2"));
    assert_int_equal(
            dp_mesh_service_endpoints(base, "bookinfo/reviews.bookinfo.svc.cluster.local", &eps),
            3);
    /* new snapshot has the change, and shares unchanged objects */
    assert_non_null(dp_mesh_workload_by_ip(next, &nw));
    assert_null(dp_mesh_workload_by_key(next, "Kubernetes//Pod/bookinfo/reviews-v2"));
    w1b = dp_mesh_workload_by_ip(next, &a);
    assert_ptr_equal(w1, w1b);
    assert_int_equal(
            dp_mesh_service_endpoints(next, "bookinfo/reviews.bookinfo.svc.cluster.local", &eps),
            3);
    assert_string_equal(eps[0]->name, "new");
    /* the old snapshot outlives nothing: drop base first, next still valid */
    dp_mesh_snapshot_unref(base);
    assert_string_equal(w1b->name, "reviews-v1");
    dp_mesh_snapshot_unref(next);
}

static void test_apply_bad_event(void **state)
{
    struct dp_mesh_snapshot *base = snap_from(CONFIG), *next = NULL;
    char err[512] = "";
    static const struct {
        const char *ev, *err;
    } cases[] = {
            {"[{\"type\": \"upsert\", \"kind\": \"workload\", \"key\": \"k\", \"object\": "
             "{\"name\": \"a\", \"namespace\": \"b\", \"addresses\": [\"1.2.3\"]}}]",
             "events[0]: event[upsert workload k]: object.addresses[0]: not an IP address"},
            {"[{\"type\": \"upsert\", \"kind\": \"gadget\", \"key\": \"k\", \"object\": {}}]",
             "events[0]: event.kind: unknown kind \"gadget\""},
            {"[{\"type\": \"frobnicate\"}]", "events[0]: event.type: unknown event type"},
            {"[{\"type\": \"upsert\", \"kind\": \"policy\", \"key\": \"a/b\"}]",
             "events[0]: event.object: required field is missing"},
            {"[{\"type\": \"delete\", \"kind\": \"policy\"}]",
             "events[0]: event.key: required field is missing"},
            {"[{\"type\": \"ping\"}, 3]", "events[1]: event: expected object, got integer"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *ev = load(cases[i].ev);
        int r = dp_mesh_snapshot_apply(base, ev, &next, err, sizeof(err));
        json_decref(ev);
        if (r != -EINVAL || strncmp(err, cases[i].err, strlen(cases[i].err)) != 0)
            fail_msg("case %zu: r=%d err=\"%s\" want \"%s\"", i, r, err, cases[i].err);
        assert_null(next);
    }
    dp_mesh_snapshot_unref(base);
}

static int feed(struct dp_mesh_stream *st, const char *line, struct dp_mesh_snapshot **snap)
{
    char err[512] = "";
    int r = dp_mesh_stream_feed_line(st, line, strlen(line), snap, err, sizeof(err));
    if (r < 0)
        print_message("feed error: %s\n", err);
    return r;
}

static void test_stream(void **state)
{
    struct dp_mesh_stream *st = NULL;
    struct dp_mesh_snapshot *s1 = NULL, *s2 = NULL, *s3 = NULL, *s4 = NULL;
    struct dp_mesh_ip a = ip("10.0.0.1"), b = ip("10.0.0.2");
    (void)state;

    assert_int_equal(dp_mesh_stream_new(NULL, &st), 0);
    assert_int_equal(
            feed(st,
                 "{\"type\":\"upsert\",\"version\":1,\"kind\":\"workload\",\"key\":\"w/a\","
                 "\"object\":{\"name\":\"a\",\"namespace\":\"ns\",\"addresses\":[\"10.0.0."
                 "1\"]}}",
                 &s1),
            DP_MESH_FEED_OK);
    assert_null(s1);
    assert_int_equal(feed(st, "{\"type\":\"synced\",\"version\":1}", &s1), DP_MESH_FEED_PUBLISHED);
    assert_non_null(dp_mesh_workload_by_ip(s1, &a));
    assert_int_equal(dp_mesh_stream_version(st), 1);

    /* a bad event is rejected and leaves the pending state as it was */
    assert_int_equal(
            feed(st,
                 "{\"type\":\"upsert\",\"version\":2,\"kind\":\"workload\",\"key\":\"w/a\","
                 "\"object\":{\"name\":\"a\",\"namespace\":\"ns\",\"addresses\":[\"bad\"]}"
                 "}",
                 &s2),
            -EINVAL);
    assert_int_equal(feed(st, "not json", &s2), -EINVAL);
    assert_int_equal(feed(st, "{\"type\":\"synced\",\"version\":2}", &s2), DP_MESH_FEED_PUBLISHED);
    assert_non_null(dp_mesh_workload_by_ip(s2, &a));

    /* reset: state cleared, published only at the next synced */
    assert_int_equal(feed(st, "{\"type\":\"reset\",\"version\":10}", &s3), DP_MESH_FEED_OK);
    assert_int_equal(feed(st,
                          "{\"type\":\"upsert\",\"version\":11,\"kind\":\"workload\",\"key\":\"w/"
                          "b\",\"object\":{\"name\":\"b\",\"namespace\":\"ns\",\"addresses\":[\"10."
                          "0.0.2\"]}}",
                          &s3),
                     DP_MESH_FEED_OK);
    assert_null(s3);
    assert_int_equal(feed(st, "{\"type\":\"synced\",\"version\":11}", &s3), DP_MESH_FEED_PUBLISHED);
    assert_null(dp_mesh_workload_by_ip(s3, &a));
    assert_non_null(dp_mesh_workload_by_ip(s3, &b));
    assert_int_equal(dp_mesh_snapshot_version(s3), 11);
    /* earlier snapshots are untouched */
    assert_non_null(dp_mesh_workload_by_ip(s1, &a));
    assert_null(dp_mesh_workload_by_ip(s1, &b));

    assert_int_equal(feed(st,
                          "{\"type\":\"delete\",\"version\":12,\"kind\":\"workload\",\"key\":\"w/"
                          "b\"}",
                          &s4),
                     DP_MESH_FEED_OK);
    assert_int_equal(dp_mesh_stream_publish(st, &s4), 0);
    assert_null(dp_mesh_workload_by_ip(s4, &b));
    assert_int_equal(dp_mesh_stream_version(st), 12);

    dp_mesh_stream_free(st);
    dp_mesh_snapshot_unref(s1);
    dp_mesh_snapshot_unref(s2);
    dp_mesh_snapshot_unref(s3);
    dp_mesh_snapshot_unref(s4);
}

/* reset returns to the base (file config) layer and starts a new version epoch */
static void test_stream_reset_to_base(void **state)
{
    struct dp_mesh_snapshot *base = snap_from(CONFIG), *s1 = NULL, *s2 = NULL;
    struct dp_mesh_stream *st = NULL;
    struct dp_mesh_ip filewl = ip("10.244.1.5"), streamed = ip("10.9.9.9");
    (void)state;
    assert_int_equal(dp_mesh_stream_new(base, &st), 0);
    dp_mesh_snapshot_unref(base); /* the stream holds its own reference */
    assert_int_equal(feed(st,
                          "{\"type\":\"upsert\",\"version\":100,\"kind\":\"workload\",\"key\":"
                          "\"s/x\",\"object\":{\"name\":\"x\",\"namespace\":\"ns\",\"addresses\":"
                          "[\"10.9.9.9\"]}}",
                          &s1),
                     DP_MESH_FEED_OK);
    assert_int_equal(feed(st, "{\"type\":\"synced\",\"version\":100}", &s1),
                     DP_MESH_FEED_PUBLISHED);
    assert_non_null(dp_mesh_workload_by_ip(s1, &filewl));
    assert_non_null(dp_mesh_workload_by_ip(s1, &streamed));
    assert_int_equal(dp_mesh_stream_version(st), 100);
    /* operator restarted: new epoch with lower versions */
    assert_int_equal(feed(st, "{\"type\":\"reset\",\"version\":3}", &s2), DP_MESH_FEED_OK);
    assert_int_equal(dp_mesh_stream_version(st), 3);
    assert_int_equal(feed(st, "{\"type\":\"synced\",\"version\":4}", &s2), DP_MESH_FEED_PUBLISHED);
    assert_non_null(dp_mesh_workload_by_ip(s2, &filewl)); /* file layer kept */
    assert_null(dp_mesh_workload_by_ip(s2, &streamed));   /* streamed state forgotten */
    assert_int_equal(dp_mesh_stream_version(st), 4);
    assert_int_equal(dp_mesh_snapshot_version(s2), 4);
    dp_mesh_stream_free(st);
    dp_mesh_snapshot_unref(s1);
    dp_mesh_snapshot_unref(s2);
}

/* 10k workloads: a delta must not re-decode and must still be correct */
static void test_stream_scale(void **state)
{
    struct dp_mesh_stream *st = NULL;
    struct dp_mesh_snapshot *s = NULL, *s2 = NULL;
    char line[512];
    const struct dp_mesh_workload *const *eps;
    (void)state;
    assert_int_equal(dp_mesh_stream_new(NULL, &st), 0);
    for (int i = 0; i < 10000; i++) {
        snprintf(line, sizeof(line),
                 "{\"type\":\"upsert\",\"version\":%d,\"kind\":\"workload\",\"key\":\"c//Pod/ns/"
                 "p%d\",\"object\":{\"name\":\"p%d\",\"namespace\":\"ns\",\"addresses\":[\"10.%d.%"
                 "d.%d\"],\"services\":{\"ns/s%d.ns.svc.cluster.local\":{\"80\":8080}}}}",
                 i + 1, i, i, 1 + i / 65536, (i / 256) % 256, i % 256, i % 100);
        assert_int_equal(feed(st, line, &s), DP_MESH_FEED_OK);
    }
    assert_int_equal(feed(st, "{\"type\":\"synced\"}", &s), DP_MESH_FEED_PUBLISHED);
    assert_int_equal(dp_mesh_service_endpoints(s, "ns/s7.ns.svc.cluster.local", &eps), 100);
    assert_int_equal(
            feed(st, "{\"type\":\"delete\",\"kind\":\"workload\",\"key\":\"c//Pod/ns/p7\"}", &s2),
            DP_MESH_FEED_OK);
    assert_int_equal(feed(st, "{\"type\":\"synced\"}", &s2), DP_MESH_FEED_PUBLISHED);
    assert_int_equal(dp_mesh_service_endpoints(s2, "ns/s7.ns.svc.cluster.local", &eps), 99);
    assert_int_equal(dp_mesh_service_endpoints(s, "ns/s7.ns.svc.cluster.local", &eps), 100);
    const struct dp_mesh_workload *const *all;
    assert_int_equal(dp_mesh_snapshot_workloads(s2, &all), 9999);
    dp_mesh_snapshot_unref(s);
    dp_mesh_snapshot_unref(s2);
    dp_mesh_stream_free(st);
}

/* random upserts/deletes against a model: exercises the pending map's deletion heavily */
static void test_stream_random_model(void **state)
{
    enum { NKEYS = 700, OPS = 60000 };
    static bool model[NKEYS];
    struct dp_mesh_stream *st = NULL;
    uint64_t x = 12345;
    char line[400], key[64];
    (void)state;
    memset(model, 0, sizeof(model));
    assert_int_equal(dp_mesh_stream_new(NULL, &st), 0);
    for (int op = 0; op < OPS; op++) {
        struct dp_mesh_snapshot *s = NULL;
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        unsigned k = (unsigned)((x >> 33) % NKEYS);
        bool del = ((x >> 20) & 3) == 0;
        if (del) {
            snprintf(line, sizeof(line),
                     "{\"type\":\"delete\",\"kind\":\"workload\",\"key\":\"c//Pod/ns/w%u\"}", k);
            model[k] = false;
        } else {
            snprintf(line, sizeof(line),
                     "{\"type\":\"upsert\",\"kind\":\"workload\",\"key\":\"c//Pod/ns/w%u\","
                     "\"object\":{\"name\":\"w%u\",\"namespace\":\"ns\",\"addresses\":[\"10.0.%u.%"
                     "u\"]}}",
                     k, k, k / 256, k % 256);
            model[k] = true;
        }
        assert_int_equal(feed(st, line, &s), DP_MESH_FEED_OK);
        if (op % 500 == 499) {
            const struct dp_mesh_workload *const *all;
            size_t n = 0;
            assert_int_equal(dp_mesh_stream_publish(st, &s), 0);
            for (unsigned i = 0; i < NKEYS; i++) {
                struct dp_mesh_ip a = {4, {10, 0, (uint8_t)(i / 256), (uint8_t)(i % 256)}};
                snprintf(key, sizeof(key), "c//Pod/ns/w%u", i);
                if (model[i] != (dp_mesh_workload_by_key(s, key) != NULL))
                    fail_msg("op %d key %u: model %d", op, i, model[i]);
                assert_int_equal(model[i], dp_mesh_workload_by_ip(s, &a) != NULL);
                n += model[i];
            }
            assert_int_equal(dp_mesh_snapshot_workloads(s, &all), n);
            dp_mesh_snapshot_unref(s);
        }
    }
    dp_mesh_stream_free(st);
}

/* ------------------------------------------------------------------ destination selection */

struct lcg {
    uint64_t x;
};

static uint64_t lcg_next(void *arg)
{
    struct lcg *l = arg;
    l->x = l->x * 6364136223846793005ull + 1442695040888963407ull;
    return l->x >> 11;
}

static void test_select_service(void **state)
{
    struct dp_mesh_snapshot *s = snap_from(CONFIG);
    struct dp_mesh_ip vip = ip("10.96.0.12");
    struct dp_mesh_dest d;
    struct lcg rng = {42};
    int counts[3] = {0};
    char buf[DP_MESH_IP_STRLEN];
    (void)state;

    for (int i = 0; i < 4000; i++) {
        assert_int_equal(dp_mesh_select_destination(s, NULL, &vip, 9080, lcg_next, &rng, &d), 0);
        assert_int_equal(d.kind, DP_MESH_DEST_WORKLOAD);
        assert_non_null(d.service);
        if (strcmp(d.workload->name, "reviews-v1") == 0) {
            counts[0]++;
            /* HBONE: pod IP:15008, authority pod IP: service targetPort (own mapping 9080) */
            assert_true(d.hbone);
            assert_int_equal(d.connect_port, 15008);
            assert_string_equal(dp_mesh_ip_format(&d.connect_ip, buf, sizeof(buf)), "10.244.1.5");
            assert_int_equal(d.authority_port, 9080);
        } else if (strcmp(d.workload->name, "reviews-v2") == 0) {
            counts[1]++;
            /* TCP workload: plain connect to its own target port mapping (9090), v4 address */
            assert_false(d.hbone);
            assert_int_equal(d.connect_port, 9090);
            assert_string_equal(dp_mesh_ip_format(&d.connect_ip, buf, sizeof(buf)), "10.244.2.6");
        } else {
            counts[2]++;
        }
    }
    /* capacity 1 : 3, unhealthy never picked */
    assert_int_equal(counts[2], 0);
    assert_in_range(counts[0], 850, 1150);
    assert_in_range(counts[1], 2850, 3150);

    /* port the service does not declare */
    assert_int_equal(dp_mesh_select_destination(s, NULL, &vip, 1234, lcg_next, &rng, &d),
                     -EHOSTUNREACH);
    /* service without endpoints */
    vip = ip("10.96.0.13");
    assert_int_equal(dp_mesh_select_destination(s, NULL, &vip, 80, lcg_next, &rng, &d),
                     -EHOSTUNREACH);
    dp_mesh_snapshot_unref(s);
}

static void test_select_pod_and_unknown(void **state)
{
    struct dp_mesh_snapshot *s = snap_from(CONFIG);
    struct dp_mesh_ip a = ip("10.244.2.7"), u = ip("192.0.2.1");
    struct dp_mesh_dest d;
    (void)state;
    /* pod IP: the workload itself, even unhealthy, authority keeps the port */
    assert_int_equal(dp_mesh_select_destination(s, NULL, &a, 8080, NULL, NULL, &d), 0);
    assert_int_equal(d.kind, DP_MESH_DEST_WORKLOAD);
    assert_string_equal(d.workload->name, "reviews-v3");
    assert_true(d.hbone);
    assert_int_equal(d.connect_port, 15008);
    assert_int_equal(d.authority_port, 8080);
    assert_null(d.service);
    /* unknown: passthrough */
    assert_int_equal(dp_mesh_select_destination(s, NULL, &u, 443, NULL, NULL, &d), 0);
    assert_int_equal(d.kind, DP_MESH_DEST_PASSTHROUGH);
    assert_false(d.hbone);
    assert_true(dp_mesh_ip_equal(&d.connect_ip, &u));
    assert_int_equal(d.connect_port, 443);
    assert_null(d.workload);
    dp_mesh_snapshot_unref(s);
}

static void test_select_waypoint(void **state)
{
    static const char *cfg =
            "{\"workloads\": ["
            " {\"uid\": \"c//Pod/ns/app\", \"name\": \"app\", \"namespace\": \"ns\","
            "  \"addresses\": [\"10.1.0.1\"], \"protocol\": \"HBONE\","
            "  \"services\": {\"ns/app.ns.svc.cluster.local\": {}}},"
            " {\"uid\": \"c//Pod/ns/wp-0\", \"name\": \"wp-0\", \"namespace\": \"ns\","
            "  \"addresses\": [\"10.1.0.50\"], \"protocol\": \"TCP\", \"serviceAccount\": \"wp\","
            "  \"services\": {\"ns/wp.ns.svc.cluster.local\": {\"15008\": 15008}}},"
            " {\"uid\": \"c//Pod/ns/pinned\", \"name\": \"pinned\", \"namespace\": \"ns\","
            "  \"addresses\": [\"10.1.0.9\"], \"protocol\": \"HBONE\","
            "  \"waypoint\": {\"key\": \"ns/wp\"}}"
            "],"
            "\"services\": ["
            " {\"name\": \"app\", \"namespace\": \"ns\", \"hostname\": "
            "\"app.ns.svc.cluster.local\","
            "  \"vips\": [\"10.96.0.10\"], \"ports\": [{\"port\": 80, \"targetPort\": 8080}],"
            "  \"waypoint\": {\"key\": \"ns/wp\", \"addresses\": [\"10.96.0.50\"], \"port\": "
            "15008}},"
            " {\"name\": \"wp\", \"namespace\": \"ns\", \"hostname\": \"wp.ns.svc.cluster.local\","
            "  \"vips\": [\"10.96.0.50\"], \"ports\": [{\"port\": 15008}]}"
            "],"
            "\"waypoints\": [{\"name\": \"wp\", \"namespace\": \"ns\", \"addresses\": "
            "[\"10.96.0.50\"]}]}";
    struct dp_mesh_snapshot *s = snap_from(cfg);
    struct dp_mesh_ip vip = ip("10.96.0.10"), pinned = ip("10.1.0.9"), wpip = ip("10.1.0.50");
    const struct dp_mesh_workload *wp = dp_mesh_workload_by_ip(s, &wpip);
    struct dp_mesh_dest d;
    (void)state;

    /* client -> service with waypoint: HBONE to the waypoint pod, authority = VIP:port */
    assert_int_equal(dp_mesh_select_destination(s, NULL, &vip, 80, NULL, NULL, &d), 0);
    assert_int_equal(d.kind, DP_MESH_DEST_WAYPOINT);
    assert_true(d.hbone);
    assert_ptr_equal(d.workload, wp);
    assert_true(dp_mesh_ip_equal(&d.connect_ip, &wpip));
    assert_int_equal(d.connect_port, 15008);
    assert_true(dp_mesh_ip_equal(&d.authority_ip, &vip));
    assert_int_equal(d.authority_port, 80);
    assert_non_null(d.waypoint);
    assert_non_null(d.service);

    /* the waypoint itself -> service: goes to the endpoint */
    assert_int_equal(dp_mesh_select_destination(s, wp, &vip, 80, NULL, NULL, &d), 0);
    assert_int_equal(d.kind, DP_MESH_DEST_WORKLOAD);
    assert_string_equal(d.workload->name, "app");
    assert_int_equal(d.authority_port, 8080);

    /* pod with its own waypoint */
    assert_int_equal(dp_mesh_select_destination(s, NULL, &pinned, 7000, NULL, NULL, &d), 0);
    assert_int_equal(d.kind, DP_MESH_DEST_WAYPOINT);
    assert_ptr_equal(d.workload, wp);
    assert_true(dp_mesh_ip_equal(&d.authority_ip, &pinned));
    assert_int_equal(d.authority_port, 7000);
    /* inbound: the waypoint pod may accept the VIP and the pinned pod as authority */
    struct dp_mesh_ip appip = ip("10.1.0.1");
    const struct dp_mesh_workload *app = dp_mesh_workload_by_ip(s, &appip);
    assert_true(dp_mesh_is_waypoint_for(s, wp, &vip));
    assert_true(dp_mesh_is_waypoint_for(s, wp, &pinned));
    assert_false(dp_mesh_is_waypoint_for(s, wp, &appip)); /* app pod has no own waypoint */
    assert_false(dp_mesh_is_waypoint_for(s, app, &vip));
    assert_false(dp_mesh_is_waypoint_for(s, NULL, &vip));
    /* ... referenced by key only: the waypoint itself goes straight to the pod */
    assert_int_equal(dp_mesh_select_destination(s, wp, &pinned, 7000, NULL, NULL, &d), 0);
    assert_int_equal(d.kind, DP_MESH_DEST_WORKLOAD);
    assert_string_equal(d.workload->name, "pinned");
    dp_mesh_snapshot_unref(s);
}

static void test_pick_endpoint(void **state)
{
    struct dp_mesh_workload a = {.capacity = 0, .status = DP_MESH_HEALTHY};
    struct dp_mesh_workload b = {.capacity = 2, .status = DP_MESH_UNHEALTHY};
    const struct dp_mesh_workload *list[] = {&a, &b};
    struct lcg rng = {1};
    (void)state;
    assert_int_equal(dp_mesh_pick_endpoint(list, 2, false, lcg_next, &rng), -EHOSTUNREACH);
    assert_int_equal(dp_mesh_pick_endpoint(list, 2, true, lcg_next, &rng), 1);
    assert_int_equal(dp_mesh_pick_endpoint(list, 0, true, NULL, NULL), -EHOSTUNREACH);
    b.status = DP_MESH_HEALTHY;
    assert_int_equal(dp_mesh_pick_endpoint(list, 2, false, NULL, NULL), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_ip_parse),
            cmocka_unit_test(test_ip_sockaddr),
            cmocka_unit_test(test_decode_config),
            cmocka_unit_test(test_encode_roundtrip),
            cmocka_unit_test(test_decode_bad),
            cmocka_unit_test(test_decode_bounds),
            cmocka_unit_test(test_decode_key),
            cmocka_unit_test(test_config_errors),
            cmocka_unit_test(test_load_file_yaml),
            cmocka_unit_test(test_apply_delta),
            cmocka_unit_test(test_apply_bad_event),
            cmocka_unit_test(test_stream),
            cmocka_unit_test(test_stream_reset_to_base),
            cmocka_unit_test(test_stream_scale),
            cmocka_unit_test(test_stream_random_model),
            cmocka_unit_test(test_select_service),
            cmocka_unit_test(test_select_pod_and_unknown),
            cmocka_unit_test(test_select_waypoint),
            cmocka_unit_test(test_pick_endpoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
