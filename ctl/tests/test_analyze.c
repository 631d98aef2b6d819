/* ambitctl analyze (ctl/analyze.c): objects from YAML documents (List expanded, default
 * namespace, later documents replacing earlier ones, kinds of other groups ignored) and the
 * istioctl-style output with its Error count. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctl/ctl.h"
#include "yaml.h"

static const char DOCS[] =
        "apiVersion: v1\n"
        "kind: List\n"
        "items:\n"
        "- {apiVersion: v1, kind: Service, metadata: {name: reviews}, spec: {selector: {app: "
        "reviews}}}\n"
        "- {apiVersion: v1, kind: Pod, metadata: {name: r1, labels: {app: reviews, version: "
        "v1}}}\n"
        "---\n"
        "apiVersion: networking.istio.io/v1\n"
        "kind: VirtualService\n"
        "metadata: {name: reviews}\n"
        "spec:\n"
        "  http:\n"
        "  - route: [{destination: {host: reviews, subset: v2}}]\n"
        "---\n"
        "# a Gateway API Gateway is not an Istio one; a ConfigMap is not analyzed\n"
        "apiVersion: gateway.networking.k8s.io/v1\n"
        "kind: Gateway\n"
        "metadata: {name: g}\n"
        "---\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata: {name: c}\n"
        "---\n"
        "apiVersion: networking.istio.io/v1\n"
        "kind: DestinationRule\n"
        "metadata: {name: reviews}\n"
        "spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: "
        "{version: v2}}]}\n"
        "---\n";

static json_t *load(const char *extra)
{
    json_t *docs = NULL;
    char err[256], *text = NULL;

    assert_true(asprintf(&text, "%s%s", DOCS, extra) > 0);
    assert_int_equal(dp_yaml_parse(text, strlen(text), "docs", &docs, err, sizeof(err)), 0);
    free(text);
    return docs;
}

static char *print(const json_t *findings, enum ctl_output fmt, int *ret_errors)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    assert_non_null(f);
    *ret_errors = ctl_analyze_print(f, findings, fmt);
    fclose(f);
    return buf;
}

static void test_files(void **state)
{
    json_t *docs = load(""), *findings = NULL;
    int errors;
    char *out;

    (void)state;
    assert_int_equal(ctl_analyze(docs, "shop", "istio-system", &findings), 0);
    out = print(findings, CTL_OUT_TABLE, &errors);
    /* subset v2 exists but selects no pod; the default namespace applies to every object */
    assert_string_equal(out, "Error [IST0173] (DestinationRule shop/reviews) subset \"v2\" "
                             "selects no pod of service shop/reviews: requests routed to it "
                             "fail (503, no healthy upstream)\n");
    assert_int_equal(errors, 1);
    free(out);
    json_decref(findings);
    json_decref(docs);

    /* a later document replaces the DestinationRule: now v2 is undefined */
    docs = load("apiVersion: networking.istio.io/v1\n"
                "kind: DestinationRule\n"
                "metadata: {name: reviews, namespace: shop}\n"
                "spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}\n");
    assert_int_equal(ctl_analyze(docs, "shop", NULL, &findings), 0);
    out = print(findings, CTL_OUT_TABLE, &errors);
    assert_string_equal(out, "Error [IST0101] (VirtualService shop/reviews) Referenced "
                             "host+subset in destinationrule not found: \"reviews+v2\"\n");
    free(out);
    out = print(findings, CTL_OUT_JSON, &errors);
    assert_int_equal(errors, 1);
    assert_non_null(strstr(out, "\"istioCode\": \"IST0101\""));
    free(out);
    out = print(findings, CTL_OUT_YAML, &errors);
    assert_non_null(strstr(out, "istioName: ReferencedResourceNotFound"));
    free(out);
    json_decref(findings);
    json_decref(docs);
}

static void test_clean(void **state)
{
    json_t *empty = json_array(), *findings = NULL;
    int errors;
    char *out;

    (void)state;
    assert_int_equal(ctl_analyze(empty, NULL, NULL, &findings), 0);
    out = print(findings, CTL_OUT_TABLE, &errors);
    assert_string_equal(out, "\u2714 No validation issues found.\n");
    assert_int_equal(errors, 0);
    free(out);
    json_decref(findings);
    json_decref(empty);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_files),
            cmocka_unit_test(test_clean),
    };

    return cmocka_run_group_tests_name("ctl-analyze", tests, NULL, NULL);
}
