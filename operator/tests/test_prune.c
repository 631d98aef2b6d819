/*
 * Pruned pods, nodes and EndpointSlices (operator/prune.h) build the same snapshot as the objects the API
 * server sent — over every table case of operator/tests/snapshot/ with the fields nothing reads
 * added to each pod and node — and the fields the other readers use survive.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "operator/prune.h"
#include "operator/snapshot.h"
#include "yaml.h"

/* what a real API server adds to a pod / node */
static void bloat(json_t *o, const char *kind)
{
    json_t *md = json_object_get(o, "metadata");

    if (json_object_get(md, "annotations") == NULL)
        json_object_set_new(md, "annotations", json_object());
    json_object_set_new(json_object_get(md, "annotations"),
                        "kubectl.kubernetes.io/last-applied-configuration",
                        json_string("{\"apiVersion\":\"v1\"}"));
    if (strcmp(kind, "Pod") == 0) {
        json_t *spec = json_object_get(o, "spec"), *status = json_object_get(o, "status"), *c;
        size_t i;

        if (spec == NULL)
            json_object_set_new(o, "spec", spec = json_object());
        if (status == NULL)
            json_object_set_new(o, "status", status = json_object());
        json_object_set_new(spec, "volumes", json_pack("[{s:s,s:{}}]", "name", "kube-api-access",
                                                       "projected"));
        json_object_set_new(spec, "tolerations", json_pack("[{s:s,s:s}]", "key", "x", "effect",
                                                           "NoExecute"));
        json_object_set_new(spec, "dnsPolicy", json_string("ClusterFirst"));
        json_array_foreach(json_object_get(spec, "containers"), i, c) {
            json_object_set_new(c, "image", json_string("example/app:1"));
            json_object_set_new(c, "env", json_pack("[{s:s,s:s}]", "name", "A", "value", "b"));
            json_object_set_new(c, "resources", json_object());
        }
        json_object_set_new(status, "containerStatuses",
                            json_pack("[{s:s,s:b}]", "name", "main", "ready", 1));
        json_object_set_new(status, "qosClass", json_string("BestEffort"));
        json_array_foreach(json_object_get(status, "conditions"), i, c) {
            json_object_set_new(c, "lastTransitionTime", json_string("2026-01-01T00:00:00Z"));
        }
    } else if (strcmp(kind, "EndpointSlice") == 0) {
        json_t *ep;
        size_t i;

        json_array_foreach(json_object_get(o, "endpoints"), i, ep) {
            json_object_set_new(ep, "nodeName", json_string("n1"));
            json_object_set_new(ep, "zone", json_string("z1"));
            json_object_set_new(json_object_get(ep, "targetRef"), "uid", json_string("u"));
        }
    } else {
        json_t *status = json_object_get(o, "status");

        if (status == NULL)
            json_object_set_new(o, "status", status = json_object());
        json_object_set_new(status, "images", json_pack("[{s:[s],s:i}]", "names", "a:1",
                                                        "sizeBytes", 1));
        json_object_set_new(status, "nodeInfo", json_pack("{s:s}", "kubeletVersion", "v1.31"));
    }
}

static json_t *bucket(json_t *docs, const char *kind, bool prune)
{
    json_t *out = json_object(), *d;
    size_t i;

    json_array_foreach(docs, i, d) {
        json_t *md = json_object_get(d, "metadata"), *o;
        const char *ns = json_string_value(json_object_get(md, "namespace"));
        char key[512];

        if (i == 0 || strcmp(json_string_value(json_object_get(d, "kind")), kind) != 0)
            continue;
        snprintf(key, sizeof(key), "%s%s%s", ns ? ns : "", ns ? "/" : "",
                 json_string_value(json_object_get(md, "name")));
        o = json_deep_copy(d);
        if (strcmp(kind, "Pod") == 0 || strcmp(kind, "Node") == 0 ||
            strcmp(kind, "EndpointSlice") == 0) {
            bloat(o, kind);
            if (prune && strcmp(kind, "Pod") == 0)
                op_prune_pod(o);
            if (prune && strcmp(kind, "Node") == 0)
                op_prune_node(o);
            if (prune && strcmp(kind, "EndpointSlice") == 0)
                op_prune_endpointslice(o);
        }
        json_object_set_new(out, key, o);
    }
    return out;
}

static json_t *build(json_t *docs, bool prune)
{
    static const char *const kinds[] = {"Namespace", "Pod", "Service", "EndpointSlice", "Node",
                                        "Gateway", "AuthorizationPolicy", "PeerAuthentication"};
    json_t *b[8], *snap = NULL;
    struct op_mesh_config cfg;
    struct op_inputs in;

    for (int i = 0; i < 8; i++)
        b[i] = bucket(docs, kinds[i], prune);
    in = (struct op_inputs){b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]};
    op_mesh_config_defaults(&cfg);
    assert_int_equal(op_snapshot_build(&in, &cfg, &snap, NULL), 0);
    for (int i = 0; i < 8; i++)
        json_decref(b[i]);
    return snap;
}

static void test_snapshot_unchanged(void **state)
{
    const char *src = getenv("AMBIT_SRCDIR") ? getenv("AMBIT_SRCDIR") : ".";
    char dir[512];
    struct dirent *de;
    int ncases = 0;
    DIR *dh;

    (void)state;
    snprintf(dir, sizeof(dir), "%s/operator/tests/snapshot", src);
    dh = opendir(dir);
    assert_non_null(dh);
    while ((de = readdir(dh)) != NULL) {
        char path[1024], err[256];
        json_t *docs = NULL, *a, *b;

        if (strstr(de->d_name, ".yaml") == NULL)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (dp_yaml_parse_file(path, &docs, err, sizeof(err)) < 0)
            fail_msg("%s", err);
        a = build(docs, false);
        b = build(docs, true);
        if (!json_equal(a, b))
            fail_msg("%s: pruning changed the snapshot", de->d_name);
        json_decref(a);
        json_decref(b);
        json_decref(docs);
        ncases++;
    }
    closedir(dh);
    assert_true(ncases >= 3);
}

static void test_fields_kept(void **state)
{
    json_t *pod = json_pack(
            "{s:{s:s,s:s,s:s,s:s,s:{s:s},s:{s:s,s:s},s:[{s:s,s:s}]},"
            "s:{s:s,s:s,s:[{s:s,s:[{s:i}],s:s}],s:[{}]},"
            "s:{s:s,s:s,s:[{s:s}],s:s,s:[{s:s,s:s,s:s,s:s}],s:[{}]}}",
            "metadata", "name", "p", "namespace", "ns", "uid", "u1", "deletionTimestamp", "t",
            "labels", "app", "a", "annotations", "ambient.istio.io/redirection", "enabled",
            "kubectl.kubernetes.io/last-applied-configuration", "{}", "ownerReferences", "kind",
            "ReplicaSet", "name", "rs", "spec", "nodeName", "n1", "serviceAccountName", "sa",
            "containers", "name", "c", "ports", "containerPort", 80, "image", "x", "volumes",
            "status", "phase", "Running", "podIP", "10.0.0.1", "podIPs", "ip", "10.0.0.1",
            "hostIP", "192.168.0.1", "conditions", "type", "Ready", "status", "True", "reason",
            "r", "lastProbeTime", "t", "containerStatuses");
    json_t *node = json_pack("{s:{s:s},s:{s:b},s:{s:[{s:s,s:s}],s:[{s:s,s:s}],s:[{}]}}",
                             "metadata", "name", "n1", "spec", "unschedulable", 0, "status",
                             "conditions", "type", "Ready", "status", "True", "addresses",
                             "type", "InternalIP", "address", "192.168.0.1", "images");
    json_t *want_pod = json_pack(
            "{s:{s:s,s:s,s:s,s:s,s:{s:s},s:{s:s},s:[{s:s,s:s}]},"
            "s:{s:s,s:s,s:[{s:s,s:[{s:i}]}]},"
            "s:{s:s,s:s,s:[{s:s}],s:s,s:[{s:s,s:s,s:s}]}}",
            "metadata", "name", "p", "namespace", "ns", "uid", "u1", "deletionTimestamp", "t",
            "labels", "app", "a", "annotations", "ambient.istio.io/redirection", "enabled",
            "ownerReferences", "kind", "ReplicaSet", "name", "rs", "spec", "nodeName", "n1",
            "serviceAccountName", "sa", "containers", "name", "c", "ports", "containerPort", 80,
            "status", "phase", "Running", "podIP", "10.0.0.1", "podIPs", "ip", "10.0.0.1",
            "hostIP", "192.168.0.1", "conditions", "type", "Ready", "status", "True", "reason",
            "r");
    json_t *want_node = json_pack("{s:{s:s},s:{s:b},s:{s:[{s:s,s:s}],s:[{s:s,s:s}]}}",
                                  "metadata", "name", "n1", "spec", "unschedulable", 0,
                                  "status", "conditions", "type", "Ready", "status", "True",
                                  "addresses", "type", "InternalIP", "address", "192.168.0.1");

    (void)state;
    assert_non_null(pod);
    assert_non_null(node);
    op_prune_pod(pod);
    op_prune_node(node);
    assert_true(json_equal(pod, want_pod));
    assert_true(json_equal(node, want_node));
    /* odd shapes are left alone, never a crash */
    {
        json_t *odd = json_pack("{s:s,s:i,s:[]}", "metadata", "x", "spec", 1, "status");

        op_prune_pod(odd);
        op_prune_node(odd);
        json_decref(odd);
    }
    json_decref(pod);
    json_decref(node);
    json_decref(want_pod);
    json_decref(want_node);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_fields_kept),
            cmocka_unit_test(test_snapshot_unchanged),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
