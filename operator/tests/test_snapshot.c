/*
 * Table-driven tests of the snapshot builder: each file in operator/tests/snapshot/ holds an
 * `expect` document followed by Kubernetes objects; expectations name a mesh object by kind and
 * key and give a subset of its fields (compared exactly) or `absent: true`.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mesh.h"
#include "operator/snapshot.h"
#include "yaml.h"

struct buckets {
    json_t *namespaces, *pods, *services, *slices, *nodes, *gateways, *aps, *pas;
};

static void buckets_free(struct buckets *b)
{
    json_decref(b->namespaces);
    json_decref(b->pods);
    json_decref(b->services);
    json_decref(b->slices);
    json_decref(b->nodes);
    json_decref(b->gateways);
    json_decref(b->aps);
    json_decref(b->pas);
}

static void bucket_objects(json_t *docs, size_t from, struct buckets *b, struct op_inputs *in)
{
    json_t *d;
    size_t i;

    b->namespaces = json_object();
    b->pods = json_object();
    b->services = json_object();
    b->slices = json_object();
    b->nodes = json_object();
    b->gateways = json_object();
    b->aps = json_object();
    b->pas = json_object();
    json_array_foreach(docs, i, d) {
        const char *kind = json_string_value(json_object_get(d, "kind"));
        const char *ns = json_string_value(
                json_object_get(json_object_get(d, "metadata"), "namespace"));
        const char *name = json_string_value(json_object_get(json_object_get(d, "metadata"), "name"));
        json_t *dst = NULL;
        char key[512];

        if (i < from)
            continue;
        assert_non_null(kind);
        assert_non_null(name);
        if (ns)
            snprintf(key, sizeof(key), "%s/%s", ns, name);
        else
            snprintf(key, sizeof(key), "%s", name);
        if (!strcmp(kind, "Namespace"))
            dst = b->namespaces;
        else if (!strcmp(kind, "Pod"))
            dst = b->pods;
        else if (!strcmp(kind, "Service"))
            dst = b->services;
        else if (!strcmp(kind, "EndpointSlice"))
            dst = b->slices;
        else if (!strcmp(kind, "Node"))
            dst = b->nodes;
        else if (!strcmp(kind, "Gateway"))
            dst = b->gateways;
        else if (!strcmp(kind, "AuthorizationPolicy"))
            dst = b->aps;
        else if (!strcmp(kind, "PeerAuthentication"))
            dst = b->pas;
        else
            fail_msg("unknown kind %s", kind);
        json_object_set(dst, key, d);
    }
    in->namespaces = b->namespaces;
    in->pods = b->pods;
    in->services = b->services;
    in->endpointslices = b->slices;
    in->nodes = b->nodes;
    in->gateways = b->gateways;
    in->authorization_policies = b->aps;
    in->peer_authentications = b->pas;
}

static int check_expectations(const char *file, json_t *snap, json_t *expect)
{
    json_t *e;
    size_t i;
    int failures = 0;

    json_array_foreach(expect, i, e) {
        const char *kind = json_string_value(json_object_get(e, "kind"));
        const char *key = json_string_value(json_object_get(e, "key"));
        json_t *got = json_object_get(json_object_get(snap, kind), key), *want, *v;
        const char *f;

        if (json_is_true(json_object_get(e, "absent"))) {
            if (got != NULL) {
                fprintf(stderr, "%s: %s %s should be absent\n", file, kind, key);
                failures++;
            }
            continue;
        }
        if (got == NULL) {
            fprintf(stderr, "%s: %s %s missing\n", file, kind, key);
            failures++;
            continue;
        }
        want = json_object_get(e, "object");
        json_object_foreach(want, f, v) {
            json_t *g = json_object_get(got, f);

            if (g == NULL || !json_equal(g, v)) {
                char *gs = g ? json_dumps(g, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY)
                             : strdup("(missing)");
                char *ws = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);

                fprintf(stderr, "%s: %s %s .%s: got %s want %s\n", file, kind, key, f, gs, ws);
                free(gs);
                free(ws);
                failures++;
            }
        }
    }
    return failures;
}

/* Every produced object must decode with the node agent's decoder (dataplane/mesh.h), which is
 * strict: a field it does not know is an error there. */
static int check_decodes(const char *file, json_t *snap)
{
    static const char *const kinds[] = {"workload", "service", "policy", "waypoint"};
    int failures = 0;

    for (size_t k = 0; k < 4; k++) {
        enum dp_mesh_kind mk;
        const char *key;
        json_t *o;

        assert_int_equal(dp_mesh_kind_parse(kinds[k], &mk), 0);
        json_object_foreach(json_object_get(snap, kinds[k]), key, o) {
            void *obj = NULL;
            char err[512];

            if (dp_mesh_object_decode(mk, o, key, kinds[k], &obj, err, sizeof(err)) < 0) {
                fprintf(stderr, "%s: %s %s does not decode: %s\n", file, kinds[k], key, err);
                failures++;
                continue;
            }
            dp_mesh_object_unref(mk, obj);
        }
    }
    return failures;
}

static json_t *load_case(const char *path, struct buckets *b, struct op_inputs *in)
{
    char err[256];
    json_t *docs = NULL, *expect;

    if (dp_yaml_parse_file(path, &docs, err, sizeof(err)) < 0)
        fail_msg("%s", err);
    expect = json_incref(json_object_get(json_array_get(docs, 0), "expect"));
    assert_non_null(expect);
    bucket_objects(docs, 1, b, in);
    json_decref(docs);
    return expect;
}

static void test_cases(void **state)
{
    const char *src = getenv("AMBIT_SRCDIR") ? getenv("AMBIT_SRCDIR") : ".";
    char dir[512];
    struct dirent *de;
    struct op_mesh_config cfg;
    int failures = 0, ncases = 0;
    DIR *d;

    (void)state;
    op_mesh_config_defaults(&cfg);
    snprintf(dir, sizeof(dir), "%s/operator/tests/snapshot", src);
    d = opendir(dir);
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        struct buckets b = {0};
        struct op_inputs in = {0};
        struct op_snapshot_diags diags = {0};
        json_t *expect, *snap = NULL;
        char path[1024];

        if (strstr(de->d_name, ".yaml") == NULL)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        expect = load_case(path, &b, &in);
        assert_int_equal(op_snapshot_build(&in, &cfg, &snap, &diags), 0);
        failures += check_expectations(de->d_name, snap, expect);
        failures += check_decodes(de->d_name, snap);
        ncases++;
        json_decref(snap);
        json_decref(expect);
        buckets_free(&b);
    }
    closedir(d);
    assert_true(ncases >= 3);
    assert_int_equal(failures, 0);
}

static void test_diff(void **state)
{
    const char *src = getenv("AMBIT_SRCDIR") ? getenv("AMBIT_SRCDIR") : ".";
    struct buckets b = {0};
    struct op_inputs in = {0};
    struct op_mesh_config cfg;
    json_t *expect, *s1 = NULL, *s2 = NULL, *ev = NULL, *full = NULL, *svc;
    char path[512];
    char *text;

    (void)state;
    op_mesh_config_defaults(&cfg);
    snprintf(path, sizeof(path), "%s/operator/tests/snapshot/01-basic-workload-service.yaml", src);
    expect = load_case(path, &b, &in);
    assert_int_equal(op_snapshot_build(&in, &cfg, &s1, NULL), 0);

    /* no change -> no events */
    assert_int_equal(op_snapshot_build(&in, &cfg, &s2, NULL), 0);
    assert_int_equal(op_snapshot_diff(s1, s2, 100, &ev), 0);
    assert_int_equal(json_array_size(ev), 0);
    json_decref(ev);
    json_decref(s2);

    /* delete the unready pod, change the service VIP */
    json_object_del(b.pods, "bookinfo/reviews-v2-x");
    svc = json_object_get(json_object_get(b.services, "bookinfo/reviews"), "spec");
    json_object_set_new(svc, "clusterIPs", json_pack("[s]", "10.96.0.99"));
    assert_int_equal(op_snapshot_build(&in, &cfg, &s2, NULL), 0);
    assert_int_equal(op_snapshot_diff(s1, s2, 100, &ev), 0);
    text = json_dumps(ev, JSON_COMPACT);
    assert_int_equal(json_array_size(ev), 2);
    assert_non_null(strstr(text, "{\"type\":\"upsert\",\"version\":100,\"kind\":\"service\","
                                 "\"key\":\"bookinfo/reviews.bookinfo.svc.cluster.local\""));
    assert_non_null(strstr(text, "\"10.96.0.99\""));
    assert_non_null(strstr(text, "{\"type\":\"delete\",\"version\":101,\"kind\":\"workload\","
                                 "\"key\":\"Kubernetes//Pod/bookinfo/reviews-v2-x\"}"));
    free(text);
    json_decref(ev);

    /* a full push lists waypoints/services before workloads */
    assert_int_equal(op_snapshot_full(s2, 1, &full), 0);
    assert_string_equal(json_string_value(json_object_get(json_array_get(full, 0), "kind")),
                        "service");
    assert_string_equal(json_string_value(json_object_get(
                                json_array_get(full, json_array_size(full) - 1), "kind")),
                        "workload");
    json_decref(full);
    json_decref(s1);
    json_decref(s2);
    json_decref(expect);
    buckets_free(&b);
}

static void test_waypoint_placement(void **state)
{
    json_t *nodes = json_object(), *gw, *placed, *again;
    char name[16];

    (void)state;
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof(name), "n%d", i);
        json_object_set_new(nodes, name,
                            json_pack("{s:{s:[{s:s,s:s}]}}", "status", "conditions", "type",
                                      "Ready", "status", i == 2 ? "False" : "True"));
    }
    gw = json_pack("{s:{s:s,s:s,s:{s:s}}}", "metadata", "name", "wp", "namespace", "ns",
                   "annotations", "ambit.dev/waypoint-replicas", "3");
    placed = op_waypoint_place(gw, nodes);
    assert_int_equal(json_array_size(placed), 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_not_equal(json_string_value(json_array_get(placed, i)), "n2");
    again = op_waypoint_place(gw, nodes);
    assert_true(json_equal(placed, again)); /* stable */
    json_decref(again);
    json_decref(placed);
    json_object_set_new(json_object_get(gw, "metadata"), "annotations",
                        json_pack("{s:s}", "ambit.dev/waypoint-replicas", "99"));
    placed = op_waypoint_place(gw, nodes);
    assert_int_equal(json_array_size(placed), 4); /* capped at the Ready nodes */
    json_decref(placed);
    json_object_clear(nodes);
    placed = op_waypoint_place(gw, nodes);
    assert_int_equal(json_array_size(placed), 0);
    json_decref(placed);
    json_decref(gw);
    json_decref(nodes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_cases),
            cmocka_unit_test(test_diff),
            cmocka_unit_test(test_waypoint_placement),
    };

    return cmocka_run_group_tests_name("snapshot", tests, NULL, NULL);
}
