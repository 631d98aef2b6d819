/*
 * Incremental snapshot updates (op_snapshot_update) must equal the reference full build
 * (op_snapshot_build) after every change, the events of the touched keys must equal a full
 * diff, and the previous snapshot must stay untouched (snapshots are immutable).
 *
 * Sequences: operator/tests/snapshot_update/steps.yaml (scripted updates and deletes of every
 * kind), and every case of operator/tests/snapshot/ built up one object at a time and torn
 * down again.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "operator/snapshot.h"
#include "yaml.h"

static const char *const KINDS[OP_IN_COUNT] = {
        [OP_IN_NAMESPACE] = "Namespace",    [OP_IN_POD] = "Pod",
        [OP_IN_SERVICE] = "Service",        [OP_IN_ENDPOINTSLICE] = "EndpointSlice",
        [OP_IN_NODE] = "Node",              [OP_IN_GATEWAY] = "Gateway",
        [OP_IN_AUTHZ] = "AuthorizationPolicy", [OP_IN_PEERAUTHN] = "PeerAuthentication",
};

struct world {
    json_t *b[OP_IN_COUNT];
    struct op_inputs in;
    struct op_mesh_config cfg;
    struct op_changes ch;
    json_t *snap; /* last incremental snapshot */
    int failures, steps;
};

static void world_init(struct world *w)
{
    memset(w, 0, sizeof(*w));
    for (int i = 0; i < OP_IN_COUNT; i++)
        w->b[i] = json_object();
    op_mesh_config_defaults(&w->cfg);
    w->in = (struct op_inputs){.namespaces = w->b[OP_IN_NAMESPACE], .pods = w->b[OP_IN_POD],
                               .services = w->b[OP_IN_SERVICE],
                               .endpointslices = w->b[OP_IN_ENDPOINTSLICE],
                               .nodes = w->b[OP_IN_NODE], .gateways = w->b[OP_IN_GATEWAY],
                               .authorization_policies = w->b[OP_IN_AUTHZ],
                               .peer_authentications = w->b[OP_IN_PEERAUTHN]};
}

static void world_done(struct world *w)
{
    for (int i = 0; i < OP_IN_COUNT; i++)
        json_decref(w->b[i]);
    op_changes_clear(&w->ch);
    json_decref(w->snap);
}

static int kind_of(const char *kind)
{
    for (int i = 0; i < OP_IN_COUNT; i++)
        if (strcmp(KINDS[i], kind) == 0)
            return i;
    fail_msg("unknown kind %s", kind);
    return -1;
}

static void obj_key(const json_t *o, char *key, size_t keysz)
{
    json_t *md = json_object_get(o, "metadata");
    const char *ns = json_string_value(json_object_get(md, "namespace"));
    const char *name = json_string_value(json_object_get(md, "name"));

    assert_non_null(name);
    if (ns != NULL)
        snprintf(key, keysz, "%s/%s", ns, name);
    else
        snprintf(key, keysz, "%s", name);
}

static void put(struct world *w, const json_t *o)
{
    int k = kind_of(json_string_value(json_object_get(o, "kind")));
    char key[512];

    obj_key(o, key, sizeof(key));
    /* a new object each time, as informers replace theirs */
    json_object_set_new(w->b[k], key, json_deep_copy(o));
    assert_int_equal(op_changes_add(&w->ch, (enum op_input_kind)k, key), 0);
}

static void del(struct world *w, const char *kind, const char *key)
{
    int k = kind_of(kind);

    json_object_del(w->b[k], key);
    assert_int_equal(op_changes_add(&w->ch, (enum op_input_kind)k, key), 0);
}

static void report_diff(const char *step, const json_t *inc, const json_t *full)
{
    static const char *const kinds[] = {"workload", "service", "policy", "waypoint"};

    for (size_t i = 0; i < 4; i++) {
        const json_t *a = json_object_get(inc, kinds[i]), *b = json_object_get(full, kinds[i]);
        const char *k;
        json_t *v;

        json_object_foreach((json_t *)b, k, v) {
            json_t *x = json_object_get(a, k);

            if (x == NULL || !json_equal(x, v)) {
                char *xs = x ? json_dumps(x, JSON_COMPACT | JSON_SORT_KEYS) : strdup("(missing)");
                char *vs = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);

                fprintf(stderr, "%s: %s %s\n  incremental %s\n  full        %s\n", step,
                        kinds[i], k, xs, vs);
                free(xs);
                free(vs);
            }
        }
        json_object_foreach((json_t *)a, k, v) {
            if (json_object_get(b, k) == NULL)
                fprintf(stderr, "%s: %s %s only in the incremental snapshot\n", step, kinds[i],
                        k);
        }
    }
}

/* Update incrementally and compare with the full build. */
static void check_step(struct world *w, const char *step)
{
    json_t *snap = NULL, *touched = NULL, *full = NULL, *ev_inc = NULL, *ev_full = NULL;
    json_t *prev_copy = w->snap ? json_deep_copy(w->snap) : NULL;

    w->steps++;
    assert_int_equal(op_snapshot_update(w->snap, &w->in, &w->cfg, &w->ch, &snap, &touched, NULL),
                     0);
    assert_int_equal(op_snapshot_build(&w->in, &w->cfg, &full, NULL), 0);
    if (!json_equal(snap, full)) {
        report_diff(step, snap, full);
        w->failures++;
    }
    assert_int_equal(op_snapshot_diff_keys(w->snap, snap, touched, 7, &ev_inc), 0);
    assert_int_equal(op_snapshot_diff(w->snap, full, 7, &ev_full), 0);
    if (!json_equal(ev_inc, ev_full)) {
        char *a = json_dumps(ev_inc, JSON_COMPACT), *b = json_dumps(ev_full, JSON_COMPACT);

        fprintf(stderr, "%s: events differ\n  incremental %s\n  full        %s\n", step, a, b);
        free(a);
        free(b);
        w->failures++;
    }
    if (prev_copy != NULL && !json_equal(prev_copy, w->snap)) {
        fprintf(stderr, "%s: the previous snapshot was modified\n", step);
        w->failures++;
    }
    json_decref(prev_copy);
    json_decref(ev_inc);
    json_decref(ev_full);
    json_decref(full);
    json_decref(touched);
    json_decref(w->snap);
    w->snap = snap;
    op_changes_clear(&w->ch);
}

static json_t *load(const char *rel)
{
    const char *src = getenv("AMBIT_SRCDIR") ? getenv("AMBIT_SRCDIR") : ".";
    char path[1024], err[256];
    json_t *docs = NULL;

    snprintf(path, sizeof(path), "%s/%s", src, rel);
    if (dp_yaml_parse_file(path, &docs, err, sizeof(err)) < 0)
        fail_msg("%s", err);
    return docs;
}

static void test_scripted_steps(void **state)
{
    json_t *docs = load("operator/tests/snapshot_update/steps.yaml"), *steps, *st, *d;
    struct world w;
    size_t i, j;

    (void)state;
    world_init(&w);
    json_array_foreach(docs, i, d) {
        if (i > 0)
            put(&w, d);
    }
    check_step(&w, "initial objects");
    /* nothing changed: nothing touched, no events */
    {
        json_t *snap = NULL, *touched = NULL, *ev = NULL;

        assert_int_equal(op_snapshot_update(w.snap, &w.in, &w.cfg, &w.ch, &snap, &touched,
                                            NULL), 0);
        assert_non_null(touched);
        assert_int_equal(op_snapshot_diff_keys(w.snap, snap, touched, 1, &ev), 0);
        assert_int_equal(json_array_size(ev), 0);
        /* unchanged objects are shared, not copied */
        assert_ptr_equal(json_object_get(json_object_get(snap, "workload"),
                                         "Kubernetes//Pod/shop/cart-1"),
                         json_object_get(json_object_get(w.snap, "workload"),
                                         "Kubernetes//Pod/shop/cart-1"));
        json_decref(ev);
        json_decref(touched);
        json_decref(snap);
    }
    steps = json_object_get(json_array_get(docs, 0), "steps");
    assert_true(json_array_size(steps) >= 20);
    json_array_foreach(steps, i, st) {
        const char *name = json_string_value(json_object_get(st, "name"));

        json_array_foreach(json_object_get(st, "put"), j, d) {
            put(&w, d);
        }
        json_array_foreach(json_object_get(st, "delete"), j, d) {
            del(&w, json_string_value(json_object_get(d, "kind")),
                json_string_value(json_object_get(d, "key")));
        }
        check_step(&w, name);
    }
    assert_int_equal(w.failures, 0);
    world_done(&w);
    json_decref(docs);
}

/* every table case: add its objects one by one, then delete them one by one */
static void test_cases_one_by_one(void **state)
{
    const char *src = getenv("AMBIT_SRCDIR") ? getenv("AMBIT_SRCDIR") : ".";
    char dir[512];
    struct dirent *de;
    int failures = 0, ncases = 0;
    DIR *dh;

    (void)state;
    snprintf(dir, sizeof(dir), "%s/operator/tests/snapshot", src);
    dh = opendir(dir);
    assert_non_null(dh);
    while ((de = readdir(dh)) != NULL) {
        char rel[600], step[1400], key[512];
        struct world w;
        json_t *docs, *d;
        size_t i;

        if (strstr(de->d_name, ".yaml") == NULL)
            continue;
        snprintf(rel, sizeof(rel), "operator/tests/snapshot/%s", de->d_name);
        docs = load(rel);
        world_init(&w);
        check_step(&w, "empty");
        json_array_foreach(docs, i, d) {
            if (i == 0)
                continue; /* expectations */
            put(&w, d);
            obj_key(d, key, sizeof(key));
            snprintf(step, sizeof(step), "%s: add %s %s", de->d_name,
                     json_string_value(json_object_get(d, "kind")), key);
            check_step(&w, step);
        }
        json_array_foreach(docs, i, d) {
            if (i == 0)
                continue;
            obj_key(d, key, sizeof(key));
            del(&w, json_string_value(json_object_get(d, "kind")), key);
            snprintf(step, sizeof(step), "%s: delete %s %s", de->d_name,
                     json_string_value(json_object_get(d, "kind")), key);
            check_step(&w, step);
        }
        assert_int_equal(json_object_size(json_object_get(w.snap, "workload")), 0);
        failures += w.failures;
        ncases++;
        world_done(&w);
        json_decref(docs);
    }
    closedir(dh);
    assert_true(ncases >= 3);
    assert_int_equal(failures, 0);
}

static void test_changes(void **state)
{
    struct op_changes ch = {0};

    (void)state;
    assert_true(op_changes_empty(&ch));
    assert_int_equal(op_changes_add(&ch, OP_IN_POD, "a/b"), 0);
    assert_false(op_changes_empty(&ch));
    op_changes_clear(&ch);
    assert_true(op_changes_empty(&ch));
    ch.all = true;
    assert_false(op_changes_empty(&ch));
    op_changes_clear(&ch);
    assert_false(ch.all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_changes),
            cmocka_unit_test(test_scripted_steps),
            cmocka_unit_test(test_cases_one_by_one),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
