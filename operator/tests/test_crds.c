/*
 * Static checks of the files in crds/ (no API server needed): every file parses with our YAML loader,
 * declares the expected group/kind/versions/short names, has exactly one storage version, a
 * status subresource and printer columns, and every schema node is structural (typed, unless
 * it preserves unknown fields or is int-or-string; properties only on objects, items only on
 * arrays, never both properties and additionalProperties; no $ref). The cluster layer checks
 * that a real API server accepts them and rejects violating objects.
 */
#include <errno.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "yaml.h"

struct expect {
    const char *file, *group, *kind, *plural, *scope, *shortname;
    const char *versions[4];
    const char *storage;
};

static const struct expect CRDS[] = {
        {"networking.istio.io_virtualservices.yaml", "networking.istio.io", "VirtualService",
         "virtualservices", "Namespaced", "vs", {"v1", "v1beta1", "v1alpha3"}, "v1"},
        {"networking.istio.io_destinationrules.yaml", "networking.istio.io", "DestinationRule",
         "destinationrules", "Namespaced", "dr", {"v1", "v1beta1", "v1alpha3"}, "v1"},
        {"networking.istio.io_gateways.yaml", "networking.istio.io", "Gateway", "gateways",
         "Namespaced", "gw", {"v1", "v1beta1", "v1alpha3"}, "v1"},
        {"networking.istio.io_serviceentries.yaml", "networking.istio.io", "ServiceEntry",
         "serviceentries", "Namespaced", "se", {"v1", "v1beta1", "v1alpha3"}, "v1"},
        {"security.istio.io_peerauthentications.yaml", "security.istio.io", "PeerAuthentication",
         "peerauthentications", "Namespaced", "pa", {"v1", "v1beta1"}, "v1"},
        {"security.istio.io_authorizationpolicies.yaml", "security.istio.io",
         "AuthorizationPolicy", "authorizationpolicies", "Namespaced", "ap", {"v1", "v1beta1"},
         "v1"},
        {"security.istio.io_requestauthentications.yaml", "security.istio.io",
         "RequestAuthentication", "requestauthentications", "Namespaced", "ra", {"v1", "v1beta1"},
         "v1"},
        {"telemetry.istio.io_telemetries.yaml", "telemetry.istio.io", "Telemetry", "telemetries",
         "Namespaced", "telemetry", {"v1", "v1alpha1"}, "v1alpha1"},
        {"install.ambit.dev_meshes.yaml", "install.ambit.dev", "Mesh", "meshes", "Cluster", NULL,
         {"v1alpha1"}, "v1alpha1"},
};

static const char *srcdir(void)
{
    const char *d = getenv("AMBIT_SRCDIR");

    return d ? d : ".";
}

static json_t *load(const char *rel)
{
    char path[512], err[256];
    json_t *docs = NULL, *doc;

    snprintf(path, sizeof(path), "%s/%s", srcdir(), rel);
    if (dp_yaml_parse_file(path, &docs, err, sizeof(err)) < 0)
        fail_msg("%s", err);
    assert_int_equal(json_array_size(docs), 1);
    doc = json_incref(json_array_get(docs, 0));
    json_decref(docs);
    return doc;
}

/* Returns NULL if structural, else the path of the first offending node. */
static const char *check_structural(const json_t *s, char *path, size_t pathsz)
{
    const char *type = json_string_value(json_object_get(s, "type"));
    bool preserve = json_is_true(json_object_get(s, "x-kubernetes-preserve-unknown-fields"));
    bool intstr = json_is_true(json_object_get(s, "x-kubernetes-int-or-string"));
    json_t *props = json_object_get(s, "properties"), *items = json_object_get(s, "items");
    json_t *addl = json_object_get(s, "additionalProperties"), *v;
    size_t plen = strlen(path);
    const char *k, *bad;

    if (!json_is_object(s))
        return path;
    if (json_object_get(s, "$ref") != NULL)
        return path;
    if (type == NULL && !preserve && !intstr)
        return path;
    if (props != NULL && (type == NULL || strcmp(type, "object") != 0))
        return path;
    if (items != NULL && (type == NULL || strcmp(type, "array") != 0))
        return path;
    if (type != NULL && strcmp(type, "array") == 0 && items == NULL)
        return path;
    if (props != NULL && addl != NULL)
        return path;
    json_object_foreach(props, k, v) {
        snprintf(path + plen, pathsz - plen, ".%s", k);
        if ((bad = check_structural(v, path, pathsz)) != NULL)
            return bad;
    }
    if (items != NULL) {
        snprintf(path + plen, pathsz - plen, "[]");
        if ((bad = check_structural(items, path, pathsz)) != NULL)
            return bad;
    }
    if (json_is_object(addl)) {
        snprintf(path + plen, pathsz - plen, "{}");
        if ((bad = check_structural(addl, path, pathsz)) != NULL)
            return bad;
    }
    path[plen] = '\0';
    return NULL;
}

static void test_crd_files(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(CRDS) / sizeof(CRDS[0]); i++) {
        const struct expect *e = &CRDS[i];
        char rel[256], name[256], path[1024];
        json_t *crd, *spec, *names, *versions, *v;
        size_t j, nstorage = 0;

        snprintf(rel, sizeof(rel), "crds/%s", e->file);
        crd = load(rel);
        assert_string_equal(json_string_value(json_object_get(crd, "apiVersion")),
                            "apiextensions.k8s.io/v1");
        assert_string_equal(json_string_value(json_object_get(crd, "kind")),
                            "CustomResourceDefinition");
        snprintf(name, sizeof(name), "%s.%s", e->plural, e->group);
        assert_string_equal(json_string_value(json_object_get(json_object_get(crd, "metadata"),
                                                              "name")),
                            name);
        spec = json_object_get(crd, "spec");
        assert_string_equal(json_string_value(json_object_get(spec, "group")), e->group);
        assert_string_equal(json_string_value(json_object_get(spec, "scope")), e->scope);
        names = json_object_get(spec, "names");
        assert_string_equal(json_string_value(json_object_get(names, "kind")), e->kind);
        assert_string_equal(json_string_value(json_object_get(names, "plural")), e->plural);
        if (e->shortname != NULL)
            assert_string_equal(
                    json_string_value(json_array_get(json_object_get(names, "shortNames"), 0)),
                    e->shortname);
        versions = json_object_get(spec, "versions");
        for (j = 0; j < 4 && e->versions[j]; j++)
            ;
        assert_int_equal(json_array_size(versions), j);
        json_array_foreach(versions, j, v) {
            const char *vn = json_string_value(json_object_get(v, "name"));
            json_t *schema = json_object_get(json_object_get(v, "schema"), "openAPIV3Schema");
            const char *bad;
            bool listed = false;

            for (size_t k = 0; k < 4 && e->versions[k]; k++)
                listed |= strcmp(e->versions[k], vn) == 0;
            if (!listed)
                fail_msg("%s: unexpected version %s", e->file, vn);
            assert_true(json_is_true(json_object_get(v, "served")));
            if (json_is_true(json_object_get(v, "storage"))) {
                nstorage++;
                assert_string_equal(vn, e->storage);
            }
            assert_non_null(json_object_get(json_object_get(v, "subresources"), "status"));
            assert_true(json_array_size(json_object_get(v, "additionalPrinterColumns")) >= 1);
            {
                static const char *const col_keys[] = {"name",     "type",     "jsonPath",
                                                       "description", "format", "priority"};
                json_t *col, *cv;
                const char *ck;
                size_t ci;

                json_array_foreach(json_object_get(v, "additionalPrinterColumns"), ci, col) {
                    json_object_foreach(col, ck, cv) {
                        bool known = false;

                        for (size_t x = 0; x < sizeof(col_keys) / sizeof(col_keys[0]); x++)
                            known |= strcmp(ck, col_keys[x]) == 0;
                        /* priority is an integer (1 = only with -o wide), the rest strings */
                        if (!known || (strcmp(ck, "priority") == 0 ? !json_is_integer(cv)
                                                                    : !json_is_string(cv)))
                            fail_msg("%s %s: printer column key \"%s\"", e->file, vn, ck);
                    }
                }
            }
            assert_string_equal(json_string_value(json_object_get(schema, "type")), "object");
            assert_non_null(json_object_get(json_object_get(schema, "properties"), "spec"));
            assert_non_null(json_object_get(json_object_get(schema, "properties"), "status"));
            snprintf(path, sizeof(path), "%s %s: ", e->file, vn);
            bad = check_structural(schema, path, sizeof(path));
            if (bad != NULL)
                fail_msg("not structural at %s", bad);
        }
        assert_int_equal(nstorage, 1);
        json_decref(crd);
    }
}

/* The checker itself must be able to fail. */
static void test_structural_checker(void **state)
{
    static const char *bad[] = {
            "{\"type\":\"object\",\"properties\":{\"a\":{}}}",
            "{\"type\":\"string\",\"properties\":{\"a\":{\"type\":\"string\"}}}",
            "{\"type\":\"array\"}",
            "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}},"
            "\"additionalProperties\":{\"type\":\"string\"}}",
            "{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/x\",\"type\":\"object\"}}}",
    };
    char path[256];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *s = json_loads(bad[i], 0, NULL);

        path[0] = '\0';
        assert_non_null(s);
        assert_non_null(check_structural(s, path, sizeof(path)));
        json_decref(s);
    }
}

/* Sample objects used by the cluster layer parse and carry the kinds the CRDs define. */
static void test_samples_parse(void **state)
{
    static const char *files[] = {"crds/tests/valid.yaml", "crds/tests/invalid.yaml"};

    (void)state;
    for (size_t i = 0; i < 2; i++) {
        char path[512], err[256];
        json_t *docs = NULL, *d;
        size_t j;

        snprintf(path, sizeof(path), "%s/%s", srcdir(), files[i]);
        if (dp_yaml_parse_file(path, &docs, err, sizeof(err)) < 0)
            fail_msg("%s", err);
        assert_true(json_array_size(docs) >= 5);
        json_array_foreach(docs, j, d) {
            assert_non_null(json_string_value(json_object_get(d, "kind")));
            assert_non_null(json_string_value(json_object_get(d, "apiVersion")));
        }
        json_decref(docs);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_crd_files),
            cmocka_unit_test(test_structural_checker),
            cmocka_unit_test(test_samples_parse),
    };

    return cmocka_run_group_tests_name("crds", tests, NULL, NULL);
}
