/* Waypoint resources and Gateway status (operator/waypoints.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "operator/waypoints.h"

static void test_resources_and_status(void **state)
{
    json_t *gw = json_pack("{s:{s:s,s:s,s:s,s:i}}", "metadata", "name", "waypoint", "namespace",
                           "shop", "uid", "gw-uid", "generation", 3);
    json_t *nodes = json_pack("{s:{s:{s:[{s:s,s:s},{s:s,s:s}]}},s:{s:{s:[]}}}", "node-a",
                              "status", "addresses", "type", "Hostname", "address", "node-a",
                              "type", "InternalIP", "address", "192.168.1.10", "node-b",
                              "status", "addresses");
    json_t *wp = json_pack("{s:[s,s]}", "nodes", "node-a", "node-b");
    json_t *svc = json_pack("{s:{s:s}}", "spec", "clusterIP", "10.96.5.5");
    json_t *objs, *st, *sl;
    char *text;

    (void)state;
    objs = op_waypoint_resources(gw, wp, nodes);
    assert_int_equal(json_array_size(objs), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(objs, 0), "kind")),
                        "ServiceAccount");
    text = json_dumps(json_array_get(objs, 1), JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(strstr(text, "\"appProtocol\":\"hbone\""));
    assert_non_null(strstr(text, "\"port\":15008"));
    assert_non_null(strstr(text, "\"uid\":\"gw-uid\""));
    assert_null(strstr(text, "\"selector\""));
    free(text);
    sl = json_array_get(objs, 2);
    assert_string_equal(json_string_value(json_object_get(sl, "kind")), "EndpointSlice");
    /* node-b has no InternalIP: only node-a is an endpoint */
    assert_int_equal(json_array_size(json_object_get(sl, "endpoints")), 1);
    text = json_dumps(sl, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(strstr(text, "\"addresses\":[\"192.168.1.10\"]"));
    assert_non_null(strstr(text, "\"kubernetes.io/service-name\":\"waypoint\""));
    free(text);
    json_decref(objs);

    st = op_waypoint_status(gw, wp, svc, "cluster.local", "2026-01-01T00:00:00Z");
    text = json_dumps(st, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(strstr(text, "{\"type\":\"Hostname\",\"value\":\"waypoint.shop.svc.cluster.local\"}"));
    assert_non_null(strstr(text, "{\"type\":\"IPAddress\",\"value\":\"10.96.5.5\"}"));
    assert_non_null(strstr(text, "\"reason\":\"Programmed\",\"status\":\"True\",\"type\":\"Programmed\""));
    assert_non_null(strstr(text, "\"observedGeneration\":3"));
    free(text);
    json_decref(st);

    /* no ClusterIP yet */
    st = op_waypoint_status(gw, wp, NULL, "cluster.local", "2026-01-01T00:00:00Z");
    text = json_dumps(st, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(strstr(text, "\"addresses\":[]"));
    assert_non_null(strstr(text, "\"reason\":\"AddressNotAssigned\",\"status\":\"False\""));
    free(text);
    json_decref(st);

    json_decref(gw);
    json_decref(nodes);
    json_decref(wp);
    json_decref(svc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_resources_and_status),
    };

    return cmocka_run_group_tests_name("waypoints", tests, NULL, NULL);
}
