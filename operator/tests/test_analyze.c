/* Analyzer rules (operator/analyze.c), one good and one bad object per rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "operator/analyze.h"
#include "yaml.h"

static const char OBJECTS[] =
        "- {kind: Service, metadata: {name: reviews, namespace: bookinfo}, spec: {selector: {app: reviews}}}\n"
        "- {kind: Service, metadata: {name: ratings, namespace: bookinfo}, spec: {selector: {app: ratings}}}\n"
        "- {kind: Pod, metadata: {name: r1, namespace: bookinfo, labels: {app: reviews, version: v1}}}\n"
        "- {kind: Pod, metadata: {name: r2, namespace: bookinfo, labels: {app: reviews, version: v2}}}\n"
        "- {kind: ServiceEntry, metadata: {name: ext, namespace: bookinfo}, spec: {hosts: [httpbin.org]}}\n"
        "- kind: DestinationRule\n"
        "  metadata: {name: reviews, namespace: bookinfo}\n"
        "  spec: {host: reviews.bookinfo.svc.cluster.local, subsets: [{name: v1, labels: {version: v1}},\n"
        "         {name: v2, labels: {version: v2}}, {name: v9, labels: {version: v9}}]}\n"
        "- kind: VirtualService\n"
        "  metadata: {name: good, namespace: bookinfo}\n"
        "  spec:\n"
        "    hosts: [reviews]\n"
        "    http:\n"
        "    - match: [{uri: {regex: '^/api/v[0-9]+'}}]\n"
        "      route: [{destination: {host: reviews, subset: v1}, weight: 80},\n"
        "              {destination: {host: reviews.bookinfo, subset: v2}, weight: 20}]\n"
        "    - route: [{destination: {host: httpbin.org}}]\n"
        "- kind: VirtualService\n"
        "  metadata: {name: bad, namespace: bookinfo}\n"
        "  spec:\n"
        "    hosts: [reviews]\n"
        "    http:\n"
        "    - match: [{headers: {x-user: {regex: '(unclosed'}}}]\n"
        "      route: [{destination: {host: reviews, subset: v3}, weight: 70},\n"
        "              {destination: {host: nosuch, subset: v1}, weight: 20}]\n"
        "- kind: AuthorizationPolicy\n"
        "  metadata: {name: both, namespace: bookinfo}\n"
        "  spec: {selector: {matchLabels: {app: x}}, targetRefs: [{kind: Service, name: x}]}\n";

static void test_rules(void **state)
{
    json_t *docs = NULL, *arr, *o, *f, *findings = NULL;
    json_t *maps[6];
    struct op_analyze_inputs in = {.dns_domain = "cluster.local"};
    const char *kinds[] = {"VirtualService", "DestinationRule", "ServiceEntry",
                           "Service",        "Pod",             "AuthorizationPolicy"};
    char err[256], *text;
    size_t i;

    (void)state;
    assert_int_equal(dp_yaml_parse(OBJECTS, sizeof(OBJECTS) - 1, "objects", &docs, err,
                                   sizeof(err)),
                     0);
    arr = json_array_get(docs, 0);
    for (i = 0; i < 6; i++)
        maps[i] = json_object();
    json_array_foreach(arr, i, o) {
        char key[256];

        snprintf(key, sizeof(key), "%s/%s",
                 json_string_value(json_object_get(json_object_get(o, "metadata"), "namespace")),
                 json_string_value(json_object_get(json_object_get(o, "metadata"), "name")));
        for (size_t k = 0; k < 6; k++)
            if (!strcmp(json_string_value(json_object_get(o, "kind")), kinds[k]))
                json_object_set(maps[k], key, o);
    }
    in.virtual_services = maps[0];
    in.destination_rules = maps[1];
    in.service_entries = maps[2];
    in.services = maps[3];
    in.pods = maps[4];
    in.authorization_policies = maps[5];
    assert_int_equal(op_analyze(&in, &findings), 0);
    text = json_dumps(findings, JSON_COMPACT);
    /* the good VirtualService produces nothing */
    assert_null(strstr(text, "VirtualService bookinfo/good"));
    assert_non_null(strstr(text, "\"code\":\"WeightsNot100\",\"resource\":\"VirtualService bookinfo/bad\",\"path\":\"spec.http[0].route\""));
    assert_non_null(strstr(text, "\"code\":\"SubsetNotDefined\",\"resource\":\"VirtualService bookinfo/bad\",\"path\":\"spec.http[0].route[0].destination.subset\""));
    assert_non_null(strstr(text, "\"code\":\"UnknownHost\",\"resource\":\"VirtualService bookinfo/bad\",\"path\":\"spec.http[0].route[1].destination.host\""));
    assert_non_null(strstr(text, "\"code\":\"InvalidRegex\",\"resource\":\"VirtualService bookinfo/bad\",\"path\":\"spec.http[0].match[0].headers[x-user]\""));
    assert_non_null(strstr(text, "\"code\":\"SubsetSelectsNothing\",\"resource\":\"DestinationRule bookinfo/reviews\",\"path\":\"spec.subsets[2]\""));
    assert_non_null(strstr(text, "\"code\":\"SelectorAndTargetRefs\",\"resource\":\"AuthorizationPolicy bookinfo/both\""));
    /* "nosuch" has no DestinationRule either */
    assert_non_null(strstr(text, "\"path\":\"spec.http[0].route[1].destination.subset\""));
    if (json_array_size(findings) != 7)
        fprintf(stderr, "%s\n", text);
    /* exactly those seven */
    assert_int_equal(json_array_size(findings), 7);
    json_array_foreach(findings, i, f)
        assert_non_null(json_string_value(json_object_get(f, "message")));
    free(text);
    json_decref(findings);
    for (i = 0; i < 6; i++)
        json_decref(maps[i]);
    json_decref(docs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_rules),
    };

    return cmocka_run_group_tests_name("analyze", tests, NULL, NULL);
}
