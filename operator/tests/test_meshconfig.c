/* MeshConfig parsing (operator/meshconfig.c): a table of inputs with the expected effective
 * settings or the expected error. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "operator/meshconfig.h"

#define SRC "ConfigMap istio-system/istio key mesh"

struct ok_case {
    const char *name, *yaml;
    const char *td, *root, *log_file, *encoding;
    bool tracing;
    size_t n_providers;
    const char *unknown; /* comma-joined unknown fields */
};

static const struct ok_case OK[] = {
        {"empty input: every default", "", "cluster.local", "istio-system", "", "TEXT", false, 0,
         ""},
        {"null document", "~\n", "cluster.local", "istio-system", "", "TEXT", false, 0, ""},
        {"comments only", "# nothing\n", "cluster.local", "istio-system", "", "TEXT", false, 0,
         ""},
        {"the chart's rendering",
         "accessLogEncoding: JSON\naccessLogFile: /dev/stdout\ndefaultConfig:\n"
         "  discoveryAddress: istiod.istio-system.svc:15012\ndefaultProviders: {}\n"
         "enableTracing: true\nextensionProviders: []\nrootNamespace: mesh-root\n"
         "trustDomain: example.org\n",
         "example.org", "mesh-root", "/dev/stdout", "JSON", true, 0, ""},
        {"JSON is YAML too", "{\"trustDomain\": \"td.example\", \"accessLogEncoding\": \"TEXT\"}",
         "td.example", "istio-system", "", "TEXT", false, 0, ""},
        {"null fields keep the defaults", "trustDomain:\nrootNamespace: null\naccessLogEncoding: ~\n",
         "cluster.local", "istio-system", "", "TEXT", false, 0, ""},
        {"empty rootNamespace is the default (as in Istio)", "rootNamespace: \"\"\n",
         "cluster.local", "istio-system", "", "TEXT", false, 0, ""},
        {"providers carried",
         "extensionProviders:\n- name: otel\n  opentelemetry: {service: otel.obs.svc, port: 4317}\n"
         "- name: log\n  envoyFileAccessLog: {path: /dev/stdout}\n"
         "defaultProviders: {tracing: [otel], accessLogging: [log], metrics: [prometheus]}\n",
         "cluster.local", "istio-system", "", "TEXT", false, 2, ""},
        {"unknown fields are reported, not errors",
         "trustDomain: a.b\noutboundTrafficPolicy: {mode: REGISTRY_ONLY}\nenablePrometheusMerge: true\n"
         "defaultProviders: {logging: [x]}\n",
         "a.b", "istio-system", "", "TEXT", false, 0,
         "outboundTrafficPolicy,enablePrometheusMerge,defaultProviders.logging"},
};

struct bad_case {
    const char *name, *yaml, *error; /* error: expected substring after SRC */
};

static const struct bad_case BAD[] = {
        {"not YAML", "trustDomain: [a\n", SRC ":"},
        {"not a mapping", "- a\n- b\n", SRC ": must be a mapping"},
        {"two documents", "trustDomain: a\n---\ntrustDomain: b\n", SRC ": 2 YAML documents"},
        {"bad accessLogEncoding", "accessLogEncoding: XML\n",
         SRC ": accessLogEncoding: must be TEXT or JSON, got 'XML'"},
        {"lower-case accessLogEncoding", "accessLogEncoding: json\n",
         SRC ": accessLogEncoding: must be TEXT or JSON, got 'json'"},
        {"numeric accessLogEncoding", "accessLogEncoding: 1\n",
         SRC ": accessLogEncoding: must be TEXT or JSON, got a number"},
        {"empty trustDomain", "trustDomain: \"\"\n", SRC ": trustDomain: must not be empty"},
        {"trustDomain with a slash", "trustDomain: a/b\n", SRC ": trustDomain: 'a/b' has a character"},
        {"trustDomain not a string", "trustDomain: [a]\n", SRC ": trustDomain: must be a string"},
        {"rootNamespace upper case", "rootNamespace: Mesh\n", SRC ": rootNamespace: 'Mesh' is not"},
        {"rootNamespace trailing dash", "rootNamespace: mesh-\n", SRC ": rootNamespace:"},
        {"enableTracing a string", "enableTracing: \"yes\"\n",
         SRC ": enableTracing: must be true or false"},
        {"extensionProviders a mapping", "extensionProviders: {name: a}\n",
         SRC ": extensionProviders: must be a list"},
        {"provider without a name", "extensionProviders: [{name: a}, {zipkin: {}}]\n",
         SRC ": extensionProviders[1].name: must be a non-empty string"},
        {"provider a string", "extensionProviders: [a]\n",
         SRC ": extensionProviders[0]: must be a mapping"},
        {"duplicate provider", "extensionProviders: [{name: a}, {name: a}]\n",
         SRC ": extensionProviders[1].name: 'a' is already the name of extensionProviders[0]"},
        {"defaultProviders a list", "defaultProviders: [a]\n",
         SRC ": defaultProviders: must be a mapping"},
        {"defaultProviders.tracing a string", "defaultProviders: {tracing: otel}\n",
         SRC ": defaultProviders.tracing: must be a list"},
        {"defaultProviders.metrics item", "defaultProviders: {metrics: [a, 3]}\n",
         SRC ": defaultProviders.metrics[1]: must be a non-empty string"},
        {"accessLogFile a number", "accessLogFile: 5\n", SRC ": accessLogFile: must be a string"},
        {"defaultConfig a string", "defaultConfig: x\n", SRC ": defaultConfig: must be a mapping"},
};

static char *joined(const json_t *arr)
{
    static char buf[512];
    size_t off = 0, i;
    json_t *v;

    buf[0] = '\0';
    json_array_foreach(arr, i, v) {
        off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%s", i ? "," : "",
                                json_string_value(v));
    }
    return buf;
}

static void test_valid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(OK) / sizeof(OK[0]); i++) {
        const struct ok_case *c = &OK[i];
        struct op_meshconfig *cfg = NULL;
        json_t *unknown = NULL;
        char err[512] = "";
        int r;

        r = op_meshconfig_parse(c->yaml, strlen(c->yaml), SRC, "cluster.local", "istio-system",
                                &cfg, &unknown, err, sizeof(err));
        if (r != 0)
            fail_msg("%s: %d %s", c->name, r, err);
        assert_string_equal(cfg->trust_domain, c->td);
        assert_string_equal(cfg->root_ns, c->root);
        assert_string_equal(cfg->access_log_file, c->log_file);
        assert_string_equal(op_access_log_encoding_str(cfg->access_log_encoding), c->encoding);
        assert_int_equal(cfg->enable_tracing, c->tracing);
        assert_int_equal(json_array_size(cfg->extension_providers), c->n_providers);
        assert_string_equal(joined(unknown), c->unknown);
        json_decref(unknown);
        op_meshconfig_free(cfg);
    }
}

static void test_invalid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(BAD) / sizeof(BAD[0]); i++) {
        const struct bad_case *c = &BAD[i];
        struct op_meshconfig *cfg = (struct op_meshconfig *)0x1;
        char err[512] = "";
        int r;

        r = op_meshconfig_parse(c->yaml, strlen(c->yaml), SRC, "cluster.local", "istio-system",
                                &cfg, NULL, err, sizeof(err));
        if (r != -EINVAL)
            fail_msg("%s: want -EINVAL, got %d (%s)", c->name, r, err);
        if (strncmp(err, c->error, strlen(c->error)) != 0)
            fail_msg("%s: error '%s' does not start with '%s'", c->name, err, c->error);
        assert_ptr_equal(cfg, (struct op_meshconfig *)0x1); /* untouched on error */
    }
}

static void test_limits_and_defaults(void **state)
{
    struct op_meshconfig *a = NULL, *b = NULL;
    static char big[OP_MESHCONFIG_MAX_BYTES + 2];
    char err[256];
    json_t *j;

    (void)state;
    memset(big, '#', sizeof(big) - 1);
    assert_int_equal(op_meshconfig_parse(big, sizeof(big) - 1, SRC, "cluster.local",
                                         "istio-system", &a, NULL, err, sizeof(err)),
                     -EFBIG);
    assert_non_null(strstr(err, SRC));
    /* the flag defaults must be valid themselves */
    assert_int_equal(op_meshconfig_defaults("", "istio-system", &a), -EINVAL);
    assert_int_equal(op_meshconfig_defaults("cluster.local", "Bad_NS", &a), -EINVAL);
    assert_int_equal(op_meshconfig_defaults("cluster.local", "istio-system", &a), 0);
    assert_int_equal(op_meshconfig_parse("trustDomain: cluster.local\n", 27, SRC, "cluster.local",
                                         "istio-system", &b, NULL, err, sizeof(err)),
                     0);
    assert_true(op_meshconfig_equal(a, b));
    op_meshconfig_free(b);
    assert_int_equal(op_meshconfig_parse("accessLogEncoding: JSON\n", 24, SRC, "cluster.local",
                                         "istio-system", &b, NULL, err, sizeof(err)),
                     0);
    assert_false(op_meshconfig_equal(a, b));
    j = op_meshconfig_to_json(b);
    assert_string_equal(json_string_value(json_object_get(j, "accessLogEncoding")), "JSON");
    assert_string_equal(json_string_value(json_object_get(j, "rootNamespace")), "istio-system");
    assert_true(json_is_array(json_object_get(j, "extensionProviders")));
    json_decref(j);
    op_meshconfig_free(a);
    op_meshconfig_free(b);
    op_meshconfig_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_valid),
            cmocka_unit_test(test_invalid),
            cmocka_unit_test(test_limits_and_defaults),
    };

    return cmocka_run_group_tests_name("meshconfig", tests, NULL, NULL);
}
