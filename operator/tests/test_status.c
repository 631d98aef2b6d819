/* AuthorizationPolicy status conditions (operator/status.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "operator/status.h"

static const char *cond(json_t *conds, const char *field)
{
    return json_string_value(json_object_get(json_array_get(conds, 0), field));
}

static void test_authz_conditions(void **state)
{
    json_t *ap, *c;

    (void)state;
    ap = json_loads("{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\"},\"spec\":{\"action\":"
                    "\"DENY\",\"rules\":[{\"from\":[{\"source\":{\"namespaces\":[\"x\"]}}]}]}}",
                    0, NULL);
    c = op_authz_conditions(ap, "istio-system", 2, "T");
    assert_string_equal(cond(c, "type"), "ZtunnelAccepted");
    assert_string_equal(cond(c, "status"), "True");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(c, 0), "observedGeneration")), 2);
    json_decref(c);
    json_decref(ap);

    ap = json_loads("{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\"},\"spec\":{\"rules\":"
                    "[{\"to\":[{\"operation\":{\"paths\":[\"/x\"]}}]}]}}",
                    0, NULL);
    c = op_authz_conditions(ap, "istio-system", 1, "T");
    assert_string_equal(cond(c, "status"), "False");
    assert_string_equal(cond(c, "reason"), "UnsupportedValue");
    assert_non_null(strstr(cond(c, "message"), "paths"));
    json_decref(c);
    json_decref(ap);

    ap = json_loads("{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\"},\"spec\":{\"targetRefs\":"
                    "[{\"kind\":\"Gateway\",\"name\":\"w\"}]}}",
                    0, NULL);
    c = op_authz_conditions(ap, "istio-system", 1, "T");
    assert_string_equal(cond(c, "type"), "WaypointAccepted");
    json_decref(c);
    json_decref(ap);

    /* selector with targetRefs: invalid (the webhook would have rejected it) */
    ap = json_loads("{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\"},\"spec\":{\"targetRefs\":"
                    "[{\"kind\":\"Gateway\",\"name\":\"w\"}],\"selector\":{\"matchLabels\":{\"a\":\"b\"}}}}",
                    0, NULL);
    c = op_authz_conditions(ap, "istio-system", 1, "T");
    assert_string_equal(cond(c, "type"), "WaypointAccepted");
    assert_string_equal(cond(c, "status"), "False");
    assert_string_equal(cond(c, "reason"), "Invalid");
    assert_non_null(strstr(cond(c, "message"), "selector and targetRef"));
    json_decref(c);
    json_decref(ap);

    ap = json_loads("{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\"},\"spec\":{\"rules\":"
                    "[{\"from\":[{\"source\":{\"ipBlocks\":[\"not-a-cidr\"]}}]}]}}",
                    0, NULL);
    c = op_authz_conditions(ap, "istio-system", 1, "T");
    assert_string_equal(cond(c, "status"), "False");
    assert_string_equal(cond(c, "reason"), "Invalid");
    json_decref(c);
    json_decref(ap);
}

/* ------------------------------------------------------------------ Mesh components, conditions */

static json_t *cluster(const char *nodes_csv, const char *pods_spec)
{
    /* nodes_csv "a,b"; pods_spec "app@node:ready,..." (ready 1/0) -> {"nodes":{}, "pods":{}} */
    json_t *c = json_pack("{s:{},s:{}}", "nodes", "pods");
    char buf[256], *save = NULL, *tok;
    int n = 0;

    snprintf(buf, sizeof(buf), "%s", nodes_csv);
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        json_object_set_new(json_object_get(c, "nodes"), tok,
                            json_pack("{s:{s:s}}", "metadata", "name", tok));
    snprintf(buf, sizeof(buf), "%s", pods_spec);
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char app[64], node[64], key[160];
        int ready;

        assert_int_equal(sscanf(tok, "%63[^@]@%63[^:]:%d", app, node, &ready), 3);
        snprintf(key, sizeof(key), "istio-system/%s-%d", app, n++);
        json_object_set_new(
                json_object_get(c, "pods"), key,
                json_pack("{s:{s:s,s:s,s:{s:s}},s:{s:s},s:{s:[{s:s,s:s}]}}", "metadata", "name",
                          key, "namespace", "istio-system", "labels", "app", app, "spec",
                          "nodeName", node, "status", "conditions", "type", "Ready", "status",
                          ready ? "True" : "False"));
    }
    return c;
}

struct comp_case {
    const char *name, *nodes, *pods;
    bool ready;
    int desired, available;
    const char *message; /* NULL = none */
};

static const struct comp_case COMP[] = {
        {"all ready", "n1,n2", "ambit-node@n1:1,ambit-node@n2:1", true, 2, 2, NULL},
        {"one not ready", "n1,n2", "ambit-node@n1:1,ambit-node@n2:0", false, 2, 1,
         "not ready on n2"},
        {"missing pods, names sorted", "n3,n1,n2", "ambit-node@n2:1", false, 3, 1,
         "not ready on n1, n3"},
        {"two pods on one node count once (surge)", "n1,n2", "ambit-node@n1:1,ambit-node@n1:1",
         false, 2, 1, "not ready on n2"},
        {"other apps do not count", "n1", "ambit-cni-node@n1:1", false, 1, 0, "not ready on n1"},
        {"no nodes", "", "", false, 0, 0, NULL},
        {"many nodes: five named", "a,b,c,d,e,f,g", "", false, 7, 0,
         "not ready on a, b, c, d, e and 2 more"},
};

static void test_mesh_node_component(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(COMP) / sizeof(COMP[0]); i++) {
        const struct comp_case *c = &COMP[i];
        json_t *cl = cluster(c->nodes, c->pods), *comp;
        const char *msg;

        comp = op_mesh_node_component(json_object_get(cl, "nodes"), json_object_get(cl, "pods"),
                                      "istio-system", "nodeAgent", "ambit-node");
        assert_non_null(comp);
        if (json_is_true(json_object_get(comp, "ready")) != c->ready ||
            json_integer_value(json_object_get(comp, "desired")) != c->desired ||
            json_integer_value(json_object_get(comp, "available")) != c->available)
            fail_msg("%s: %s", c->name, json_dumps(comp, JSON_COMPACT));
        msg = json_string_value(json_object_get(comp, "message"));
        if (c->message == NULL ? msg != NULL : (msg == NULL || strcmp(msg, c->message) != 0))
            fail_msg("%s: message '%s', want '%s'", c->name, msg ? msg : "(none)",
                     c->message ? c->message : "(none)");
        /* the same pods in another namespace are not ours */
        json_decref(comp);
        comp = op_mesh_node_component(json_object_get(cl, "nodes"), json_object_get(cl, "pods"),
                                      "other", "nodeAgent", "ambit-node");
        assert_int_equal(json_integer_value(json_object_get(comp, "available")), 0);
        json_decref(comp);
        json_decref(cl);
    }
}

static const json_t *cond_of(const json_t *conds, const char *type)
{
    json_t *c;
    size_t i;

    json_array_foreach(conds, i, c) {
        if (strcmp(json_string_value(json_object_get(c, "type")), type) == 0)
            return c;
    }
    return NULL;
}

#define S(c, f) json_string_value(json_object_get((c), (f)))

struct cond_case {
    const char *name;
    bool synced;
    const char *meshcfg_error, *components; /* components as JSON */
    const char *ready, *degraded, *reason, *message;
};

static const struct cond_case CONDS[] = {
        {"healthy", true, NULL,
         "[{\"name\":\"operator\",\"ready\":true},{\"name\":\"nodeAgent\",\"desired\":2,"
         "\"available\":2},{\"name\":\"cni\",\"desired\":2,\"available\":2}]",
         "True", "False", "AsExpected", "mesh config valid; every component ready"},
        {"no nodes is not degraded", true, NULL,
         "[{\"name\":\"nodeAgent\",\"desired\":0,\"available\":0}]", "True", "False", "AsExpected",
         NULL},
        {"node agent missing on one node", true, NULL,
         "[{\"name\":\"nodeAgent\",\"desired\":2,\"available\":1,\"message\":\"not ready on "
         "amb-node2\"},{\"name\":\"cni\",\"desired\":2,\"available\":2}]",
         "True", "True", "NodeAgentsNotReady", "1 of 2 node agents ready; not ready on amb-node2"},
        {"cni missing", true, NULL,
         "[{\"name\":\"nodeAgent\",\"desired\":1,\"available\":1},{\"name\":\"cni\",\"desired\":1,"
         "\"available\":0,\"message\":\"not ready on n1\"}]",
         "True", "True", "CNINotReady", "0 of 1 CNI node agents ready; not ready on n1"},
        {"invalid mesh config comes first, every problem in the message", true,
         "ConfigMap istio-system/istio key mesh: accessLogEncoding: must be TEXT or JSON, got 'XML'",
         "[{\"name\":\"cni\",\"desired\":2,\"available\":1,\"message\":\"not ready on b\"},"
         "{\"name\":\"nodeAgent\",\"desired\":2,\"available\":0}]",
         "True", "True", "MeshConfigInvalid",
         "ConfigMap istio-system/istio key mesh: accessLogEncoding: must be TEXT or JSON, got "
         "'XML'; 0 of 2 node agents ready; 1 of 2 CNI node agents ready; not ready on b"},
        {"not synced", false, NULL, "[]", "False", "False", "AsExpected", NULL},
};

static void test_mesh_conditions(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(CONDS) / sizeof(CONDS[0]); i++) {
        const struct cond_case *c = &CONDS[i];
        json_t *comps = json_loads(c->components, 0, NULL), *conds;
        const json_t *ready, *deg;

        assert_non_null(comps);
        conds = op_mesh_conditions(c->synced, c->meshcfg_error, comps, NULL, 3, "NOW");
        ready = cond_of(conds, "Ready");
        deg = cond_of(conds, "Degraded");
        assert_non_null(ready);
        assert_non_null(deg);
        if (strcmp(S(ready, "status"), c->ready) != 0 || strcmp(S(deg, "status"), c->degraded) ||
            strcmp(S(deg, "reason"), c->reason) != 0 ||
            (c->message && strcmp(S(deg, "message"), c->message) != 0))
            fail_msg("%s: %s", c->name, json_dumps(conds, JSON_COMPACT));
        assert_int_equal(json_integer_value(json_object_get(deg, "observedGeneration")), 3);
        json_decref(conds);
        json_decref(comps);
    }
}

static void test_mesh_conditions_transition_time(void **state)
{
    json_t *old = json_loads("[{\"type\":\"Ready\",\"status\":\"True\",\"lastTransitionTime\":"
                             "\"T0\"},{\"type\":\"Degraded\",\"status\":\"False\","
                             "\"lastTransitionTime\":\"T0\"}]",
                             0, NULL);
    json_t *conds;

    (void)state;
    /* unchanged status keeps the old time, a flip takes now */
    conds = op_mesh_conditions(true, "bad", NULL, old, 1, "T1");
    assert_string_equal(S(cond_of(conds, "Ready"), "lastTransitionTime"), "T0");
    assert_string_equal(S(cond_of(conds, "Degraded"), "lastTransitionTime"), "T1");
    json_decref(conds);
    conds = op_mesh_conditions(true, NULL, NULL, old, 1, "T1");
    assert_string_equal(S(cond_of(conds, "Degraded"), "lastTransitionTime"), "T0");
    json_decref(conds);
    json_decref(old);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_authz_conditions),
            cmocka_unit_test(test_mesh_node_component),
            cmocka_unit_test(test_mesh_conditions),
            cmocka_unit_test(test_mesh_conditions_transition_time),
    };

    return cmocka_run_group_tests_name("status", tests, NULL, NULL);
}
