/* test_view.c — the proxy's view of a mesh snapshot: destination kinds, hop vs authority,
 * workload metadata for telemetry, and policy verdicts for HBONE and plaintext peers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <cmocka.h>
#include <jansson.h>
#include <netinet/in.h>

#include "mesh.h"
#include "node-agent/agent.h"
#include "node-agent/telemetry.h"
#include "node-agent/view.h"

static const char *CONFIG =
        "{\"workloads\": ["
        " {\"uid\": \"w-client\", \"name\": \"client-1\", \"namespace\": \"l4\", \"addresses\": [\"10.0.0.1\"],"
        "  \"serviceAccount\": \"client\", \"protocol\": \"HBONE\", \"workloadName\": \"client\","
        "  \"labels\": {\"app\": \"client-app\", \"version\": \"v9\"}},"
        " {\"uid\": \"w-server\", \"name\": \"server-1\", \"namespace\": \"l4\", \"addresses\": [\"10.0.0.2\"],"
        "  \"serviceAccount\": \"server\", \"protocol\": \"HBONE\", \"canonicalName\": \"server\","
        "  \"services\": {\"l4/server.l4.svc.cluster.local\": {\"80\": 8080}},"
        "  \"authorizationPolicies\": [\"istio-system/istio_converted_static_strict\"]},"
        " {\"uid\": \"w-plain\", \"name\": \"plain-1\", \"namespace\": \"l4\", \"addresses\": [\"10.0.0.3\"],"
        "  \"protocol\": \"TCP\"}],"
        " \"services\": ["
        " {\"name\": \"server\", \"namespace\": \"l4\", \"hostname\": \"server.l4.svc.cluster.local\","
        "  \"vips\": [\"10.96.0.10\"], \"ports\": [{\"port\": 80, \"targetPort\": 8080}]},"
        " {\"name\": \"empty\", \"namespace\": \"l4\", \"hostname\": \"empty.l4.svc.cluster.local\","
        "  \"vips\": [\"10.96.0.11\"], \"ports\": [{\"port\": 80, \"targetPort\": 8080}]}],"
        " \"policies\": ["
        " {\"name\": \"istio_converted_static_strict\", \"namespace\": \"istio-system\","
        "  \"scope\": \"WorkloadSelector\", \"action\": \"Deny\","
        "  \"rules\": [[[{\"notPrincipals\": [{\"presence\": true}]}]]]}]}";

static struct na_agent agent;

static int setup(void **state)
{
    (void)state;
    memset(&agent, 0, sizeof(agent));
    pthread_rwlock_init(&agent.mesh_mu, NULL);
    json_error_t jerr;
    json_t *j = json_loads(CONFIG, 0, &jerr);
    if (!j)
        return -1;
    struct dp_mesh_snapshot *s = NULL;
    char err[256];
    int r = dp_mesh_snapshot_from_json(j, &s, err, sizeof(err));
    json_decref(j);
    if (r < 0) {
        fprintf(stderr, "config: %s\n", err);
        return -1;
    }
    na_view_set(&agent, s);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    na_view_free_all(&agent);
    pthread_rwlock_destroy(&agent.mesh_mu);
    return 0;
}

static struct sockaddr_storage sa(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    inet_pton(AF_INET, ip, &s4->sin_addr);
    return ss;
}

static const char *str(const struct sockaddr_storage *ss, char *buf)
{
    return na_addr_str((const struct sockaddr *)ss, buf, 64);
}

static void test_vip_to_hbone(void **state)
{
    (void)state;
    struct na_view *v = na_view_get(&agent);
    struct na_wl src;
    struct sockaddr_storage cl = sa("10.0.0.1", 40000), vip = sa("10.96.0.10", 80);
    assert_int_equal(na_view_workload_by_ip(v, (struct sockaddr *)&cl, &src), 0);
    assert_string_equal(src.spiffe, "spiffe://cluster.local/ns/l4/sa/client");
    assert_string_equal(src.workload_name, "client");
    assert_string_equal(src.app, "client-app");
    assert_string_equal(src.version, "v9");
    struct na_dst d;
    na_view_resolve(v, &src, (struct sockaddr *)&vip, &d);
    assert_int_equal(d.kind, NA_DST_HBONE);
    char b[64];
    assert_string_equal(str(&d.hop, b), "10.0.0.2:15008");
    assert_string_equal(str(&d.addr, b), "10.0.0.2:8080");
    assert_true(d.has_svc);
    assert_string_equal(d.svc.hostname, "server.l4.svc.cluster.local");
    assert_true(d.has_wl);
    assert_string_equal(d.wl.spiffe, "spiffe://cluster.local/ns/l4/sa/server");
    assert_string_equal(d.wl.canonical_name, "server");
    na_view_put(v);
}

static void test_kinds(void **state)
{
    (void)state;
    struct na_view *v = na_view_get(&agent);
    struct na_dst d;
    char b[64];
    struct sockaddr_storage x = sa("192.0.2.9", 443);
    na_view_resolve(v, NULL, (struct sockaddr *)&x, &d);
    assert_int_equal(d.kind, NA_DST_PASSTHROUGH);
    assert_string_equal(str(&d.hop, b), "192.0.2.9:443");
    x = sa("10.0.0.3", 9000);
    na_view_resolve(v, NULL, (struct sockaddr *)&x, &d);
    assert_int_equal(d.kind, NA_DST_TCP);
    assert_string_equal(str(&d.hop, b), "10.0.0.3:9000");
    x = sa("10.96.0.11", 80);
    na_view_resolve(v, NULL, (struct sockaddr *)&x, &d);
    assert_int_equal(d.kind, NA_DST_NO_ENDPOINTS);
    assert_true(d.has_svc);
    assert_string_equal(d.svc.name, "empty");
    x = sa("10.0.0.2", 8080);
    na_view_resolve(v, NULL, (struct sockaddr *)&x, &d);
    assert_int_equal(d.kind, NA_DST_HBONE);
    assert_string_equal(str(&d.hop, b), "10.0.0.2:15008");
    assert_false(d.has_svc);
    na_view_put(v);
}

static void test_strict_policy(void **state)
{
    (void)state;
    struct na_view *v = na_view_get(&agent);
    struct na_wl dst;
    struct sockaddr_storage srv = sa("10.0.0.2", 8080), cl = sa("10.0.0.9", 1234);
    assert_int_equal(na_view_workload_by_ip(v, (struct sockaddr *)&srv, &dst), 0);
    const char *why = NULL;
    assert_int_equal(na_view_authorize(v, &dst, "spiffe://cluster.local/ns/l4/sa/client",
                                       (struct sockaddr *)&cl, (struct sockaddr *)&srv, &why),
                     0);
    assert_int_equal(na_view_authorize(v, &dst, NULL, (struct sockaddr *)&cl,
                                       (struct sockaddr *)&srv, &why),
                     -EACCES);
    assert_non_null(strstr(why, "istio-system/istio_converted_static_strict"));
    /* a workload without policies allows plaintext (PERMISSIVE) */
    struct na_wl plain;
    struct sockaddr_storage p = sa("10.0.0.3", 9000);
    assert_int_equal(na_view_workload_by_ip(v, (struct sockaddr *)&p, &plain), 0);
    assert_int_equal(na_view_authorize(v, &plain, NULL, (struct sockaddr *)&cl,
                                       (struct sockaddr *)&p, &why),
                     0);
    struct na_wl none;
    struct sockaddr_storage unknown = sa("10.9.9.9", 1);
    assert_int_equal(na_view_workload_by_ip(v, (struct sockaddr *)&unknown, &none), -ENOENT);
    na_view_put(v);
}

static void test_view_survives_swap(void **state)
{
    (void)state;
    struct na_view *old = na_view_get(&agent);
    struct na_wl w;
    struct sockaddr_storage srv = sa("10.0.0.2", 8080);
    assert_int_equal(na_view_workload_by_ip(old, (struct sockaddr *)&srv, &w), 0);
    /* publish an empty snapshot: the old view and the strings it handed out stay valid */
    na_view_set(&agent, dp_mesh_snapshot_new_empty());
    assert_string_equal(w.name, "server-1");
    struct na_view *cur = na_view_get(&agent);
    assert_int_equal(na_view_workload_by_ip(cur, (struct sockaddr *)&srv, &w), -ENOENT);
    na_view_put(cur);
    na_view_put(old);
    teardown(NULL);
    setup(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_vip_to_hbone),
            cmocka_unit_test(test_kinds),
            cmocka_unit_test(test_strict_policy),
            cmocka_unit_test(test_view_survives_swap),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
