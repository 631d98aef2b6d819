/* Analyzer rules (dataplane/analyze.c): a table of object sets and the exact findings each
 * produces ("<code> <resource> <path>" lines, in order), plus the message texts, the istioctl
 * format and which codes the webhook rejects. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "analyze.h"
#include "yaml.h"

#define BOOKINFO                                                                                   \
    "- {kind: Service, metadata: {name: reviews, namespace: bookinfo}, spec: {selector: {app: "   \
    "reviews}}}\n"                                                                                 \
    "- {kind: Service, metadata: {name: ratings, namespace: bookinfo}, spec: {selector: {app: "   \
    "ratings}}}\n"                                                                                 \
    "- {kind: Service, metadata: {name: ext, namespace: bookinfo}, spec: {}}\n"                   \
    "- {kind: Pod, metadata: {name: r1, namespace: bookinfo, labels: {app: reviews, version: "    \
    "v1}}}\n"                                                                                      \
    "- {kind: Pod, metadata: {name: r2, namespace: bookinfo, labels: {app: reviews, version: "    \
    "v2}}}\n"                                                                                      \
    "- {kind: Pod, metadata: {name: x3, namespace: other, labels: {app: reviews, version: "       \
    "v3}}}\n"                                                                                      \
    "- {kind: ServiceEntry, metadata: {name: ext, namespace: bookinfo}, spec: {hosts: "           \
    "[httpbin.org]}}\n"

static const struct {
    const char *name;
    const char *objects; /* YAML list, appended to BOOKINFO */
    const char *want;    /* expected findings, one "<code> <resource> <path>" per line */
} CASES[] = {
        {"no objects to analyze", "", ""},
        {"valid VirtualService: weights 80/20, defined subsets, regex, ServiceEntry host",
         "- kind: DestinationRule\n"
         "  metadata: {name: reviews, namespace: bookinfo}\n"
         "  spec: {host: reviews.bookinfo.svc.cluster.local, subsets: [{name: v1, labels: "
         "{version: v1}}, {name: v2, labels: {version: v2}}]}\n"
         "- kind: VirtualService\n"
         "  metadata: {name: good, namespace: bookinfo}\n"
         "  spec:\n"
         "    hosts: [reviews]\n"
         "    http:\n"
         "    - match: [{uri: {regex: '^/api/v[0-9]+'}, headers: {x-u: {exact: a}}}]\n"
         "      route: [{destination: {host: reviews, subset: v1}, weight: 80},\n"
         "              {destination: {host: reviews.bookinfo, subset: v2}, weight: 20}]\n"
         "    - route: [{destination: {host: httpbin.org}}]\n"
         "    - route: [{destination: {host: '*.example.com'}}]\n",
         ""},
        {"weights summing to 90 (http) and 110 (tcp); one destination with weight 50 is fine",
         "- kind: VirtualService\n"
         "  metadata: {name: w, namespace: bookinfo}\n"
         "  spec:\n"
         "    http:\n"
         "    - route: [{destination: {host: reviews}, weight: 70}, {destination: {host: "
         "ratings}, weight: 20}]\n"
         "    - route: [{destination: {host: reviews}, weight: 50}]\n"
         "    tcp:\n"
         "    - route: [{destination: {host: reviews}, weight: 60}, {destination: {host: "
         "ratings}, weight: 50}]\n",
         "WeightsNot100 VirtualService bookinfo/w spec.http[0].route\n"
         "WeightsNot100 VirtualService bookinfo/w spec.tcp[0].route\n"},
        {"subset with no DestinationRule at all, unknown host (also without subsets)",
         "- kind: VirtualService\n"
         "  metadata: {name: s, namespace: bookinfo}\n"
         "  spec:\n"
         "    http:\n"
         "    - route: [{destination: {host: reviews, subset: v3}}]\n"
         "    - route: [{destination: {host: nosuch, subset: v1}}]\n"
         "    - route: [{destination: {host: reviews.elsewhere.svc.cluster.local}}]\n",
         "SubsetNotDefined VirtualService bookinfo/s spec.http[0].route[0].destination.subset\n"
         "UnknownHost VirtualService bookinfo/s spec.http[1].route[0].destination.host\n"
         "SubsetNotDefined VirtualService bookinfo/s spec.http[1].route[0].destination.subset\n"
         "UnknownHost VirtualService bookinfo/s spec.http[2].route[0].destination.host\n"},
        {"subset defined by a DestinationRule of another host does not count; of the same host "
         "in another namespace does",
         "- kind: DestinationRule\n"
         "  metadata: {name: ratings, namespace: bookinfo}\n"
         "  spec: {host: ratings, subsets: [{name: v3, labels: {app: ratings}}]}\n"
         "- kind: DestinationRule\n"
         "  metadata: {name: rev, namespace: other}\n"
         "  spec: {host: reviews.bookinfo.svc.cluster.local, subsets: [{name: v2, labels: "
         "{version: v2}}]}\n"
         "- kind: VirtualService\n"
         "  metadata: {name: s, namespace: bookinfo}\n"
         "  spec:\n"
         "    http:\n"
         "    - route: [{destination: {host: reviews, subset: v3}, weight: 50}, {destination: "
         "{host: reviews, subset: v2}, weight: 50}]\n",
         "SubsetNotDefined VirtualService bookinfo/s spec.http[0].route[0].destination.subset\n"
         "SubsetSelectsNothing DestinationRule bookinfo/ratings spec.subsets[0]\n"},
        {"DestinationRule of a ServiceEntry host: subsets compared by host text",
         "- kind: DestinationRule\n"
         "  metadata: {name: ext, namespace: other}\n"
         "  spec: {host: httpbin.org, subsets: [{name: v1}]}\n"
         "- kind: VirtualService\n"
         "  metadata: {name: e, namespace: bookinfo}\n"
         "  spec:\n"
         "    http:\n"
         "    - route: [{destination: {host: httpbin.org, subset: v1}, weight: 50}, "
         "{destination: {host: httpbin.org, subset: v2}, weight: 50}]\n",
         "SubsetNotDefined VirtualService bookinfo/e spec.http[0].route[1].destination.subset\n"},
        {"subset selecting no pod: the service's selector and the subset labels both count; "
         "pods of other namespaces do not; selector-less services are not checked",
         "- kind: DestinationRule\n"
         "  metadata: {name: reviews, namespace: bookinfo}\n"
         "  spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v3, "
         "labels: {version: v3}}, {name: all}]}\n"
         "- kind: DestinationRule\n"
         "  metadata: {name: ext, namespace: bookinfo}\n"
         "  spec: {host: ext, subsets: [{name: v9, labels: {version: v9}}]}\n",
         "SubsetSelectsNothing DestinationRule bookinfo/reviews spec.subsets[1]\n"},
        {"invalid regexes in uri, header, queryParams; valid ones pass",
         "- kind: VirtualService\n"
         "  metadata: {name: r, namespace: bookinfo}\n"
         "  spec:\n"
         "    http:\n"
         "    - match: [{uri: {regex: '(unclosed'}}, {headers: {x-user: {regex: '[z-a]'}}, "
         "queryParams: {q: {regex: 'a{2,1}'}, ok: {regex: 'a|b'}}}]\n"
         "      route: [{destination: {host: reviews}}]\n",
         "InvalidRegex VirtualService bookinfo/r spec.http[0].match[0].uri\n"
         "InvalidRegex VirtualService bookinfo/r spec.http[0].match[1].headers[x-user]\n"
         "InvalidRegex VirtualService bookinfo/r spec.http[0].match[1].queryParams[q]\n"},
        {"two mesh VirtualServices for one host conflict (short and full name); not across "
         "namespaces unless both are exported everywhere; gateway-only, wildcard and a host "
         "listed twice do not",
         "- kind: VirtualService\n"
         "  metadata: {name: a, namespace: bookinfo}\n"
         "  spec: {hosts: [reviews, ratings, ratings]}\n"
         "- kind: VirtualService\n"
         "  metadata: {name: b, namespace: bookinfo}\n"
         "  spec: {hosts: [reviews.bookinfo.svc.cluster.local], gateways: [mesh, gw]}\n"
         "- kind: VirtualService\n"
         "  metadata: {name: c, namespace: other}\n"
         "  spec: {hosts: [reviews.bookinfo.svc.cluster.local], exportTo: [.]}\n"
         "- kind: VirtualService\n"
         "  metadata: {name: d, namespace: bookinfo}\n"
         "  spec: {hosts: [reviews], gateways: [istio-system/ingress]}\n"
         "- kind: VirtualService\n"
         "  metadata: {name: e, namespace: bookinfo}\n"
         "  spec: {hosts: ['*.bookinfo.svc.cluster.local']}\n"
         "- kind: VirtualService\n"
         "  metadata: {name: f, namespace: other}\n"
         "  spec: {hosts: [httpbin.org]}\n"
         "- kind: VirtualService\n"
         "  metadata: {name: g, namespace: bookinfo}\n"
         "  spec: {hosts: [httpbin.org], exportTo: ['*']}\n",
         "ConflictingVirtualServiceHosts VirtualService bookinfo/a spec.hosts[0]\n"
         "ConflictingVirtualServiceHosts VirtualService bookinfo/b spec.hosts[0]\n"
         "ConflictingVirtualServiceHosts VirtualService other/f spec.hosts[0]\n"
         "ConflictingVirtualServiceHosts VirtualService bookinfo/g spec.hosts[0]\n"},
        {"selector together with targetRef(s)",
         "- kind: AuthorizationPolicy\n"
         "  metadata: {name: both, namespace: bookinfo}\n"
         "  spec: {selector: {matchLabels: {app: x}}, targetRefs: [{kind: Service, name: x}]}\n"
         "- kind: AuthorizationPolicy\n"
         "  metadata: {name: one, namespace: bookinfo}\n"
         "  spec: {targetRefs: [{kind: Service, name: x}]}\n"
         "- kind: RequestAuthentication\n"
         "  metadata: {name: ra, namespace: bookinfo}\n"
         "  spec: {selector: {matchLabels: {app: x}}, targetRef: {kind: Gateway, name: w}}\n",
         "SelectorAndTargetRefs AuthorizationPolicy bookinfo/both spec\n"
         "SelectorAndTargetRefs RequestAuthentication bookinfo/ra spec\n"},
        {"PeerAuthentication: a second namespace-wide / mesh-wide policy and an overlapping "
         "selector policy are ignored (the older wins, then the name); disjoint ones are fine",
         "- kind: PeerAuthentication\n"
         "  metadata: {name: b, namespace: bookinfo, creationTimestamp: '2026-01-01T00:00:00Z'}\n"
         "  spec: {mtls: {mode: STRICT}}\n"
         "- kind: PeerAuthentication\n"
         "  metadata: {name: a, namespace: bookinfo, creationTimestamp: '2026-01-02T00:00:00Z'}\n"
         "  spec: {mtls: {mode: PERMISSIVE}}\n"
         "- kind: PeerAuthentication\n"
         "  metadata: {name: m2, namespace: istio-system, creationTimestamp: "
         "'2026-01-01T00:00:00Z'}\n"
         "  spec: {mtls: {mode: STRICT}}\n"
         "- kind: PeerAuthentication\n"
         "  metadata: {name: m1, namespace: istio-system, creationTimestamp: "
         "'2026-01-01T00:00:00Z'}\n"
         "  spec: {selector: {matchLabels: {}}, mtls: {mode: STRICT}}\n"
         "- kind: PeerAuthentication\n"
         "  metadata: {name: v1, namespace: bookinfo, creationTimestamp: "
         "'2026-01-01T00:00:00Z'}\n"
         "  spec: {selector: {matchLabels: {version: v1}}, mtls: {mode: STRICT}}\n"
         "- kind: PeerAuthentication\n"
         "  metadata: {name: app, namespace: bookinfo, creationTimestamp: "
         "'2026-01-03T00:00:00Z'}\n"
         "  spec: {selector: {matchLabels: {app: reviews}}, mtls: {mode: DISABLE}}\n"
         "- kind: PeerAuthentication\n"
         "  metadata: {name: v2, namespace: bookinfo, creationTimestamp: "
         "'2026-01-01T00:00:00Z'}\n"
         "  spec: {selector: {matchLabels: {version: v2}}, mtls: {mode: STRICT}}\n"
         "- kind: PeerAuthentication\n"
         "  metadata: {name: v3, namespace: bookinfo, creationTimestamp: "
         "'2026-01-05T00:00:00Z'}\n"
         "  spec: {selector: {matchLabels: {version: v3}}, mtls: {mode: STRICT}}\n",
         "ConflictingPeerAuthentication PeerAuthentication bookinfo/a spec\n"
         "ConflictingPeerAuthentication PeerAuthentication istio-system/m2 spec\n"
         "ConflictingPeerAuthentication PeerAuthentication bookinfo/app spec.selector\n"},
};

/* Build the inputs from a YAML list of objects (maps by kind) and run the analyzer. */
static json_t *analyze_yaml(const char *yaml)
{
    static const char *const kinds[] = {"VirtualService",        "DestinationRule",
                                        "ServiceEntry",          "Service",
                                        "Pod",                   "AuthorizationPolicy",
                                        "RequestAuthentication", "PeerAuthentication"};
    json_t *docs = NULL, *o, *findings = NULL, *maps[8];
    struct dp_analyze_inputs in = {0};
    char err[256];
    size_t i;

    assert_int_equal(dp_yaml_parse(yaml, strlen(yaml), "objects", &docs, err, sizeof(err)), 0);
    for (i = 0; i < 8; i++)
        maps[i] = json_object();
    json_array_foreach(json_array_get(docs, 0), i, o) {
        json_t *md = json_object_get(o, "metadata");
        char key[256];

        snprintf(key, sizeof(key), "%s/%s",
                 json_string_value(json_object_get(md, "namespace")),
                 json_string_value(json_object_get(md, "name")));
        for (size_t k = 0; k < 8; k++)
            if (!strcmp(json_string_value(json_object_get(o, "kind")), kinds[k]))
                json_object_set(maps[k], key, o);
    }
    in.virtual_services = maps[0];
    in.destination_rules = maps[1];
    in.service_entries = maps[2];
    in.services = maps[3];
    in.pods = maps[4];
    in.authorization_policies = maps[5];
    in.request_authentications = maps[6];
    in.peer_authentications = maps[7];
    assert_int_equal(dp_analyze(&in, &findings), 0);
    for (i = 0; i < 8; i++)
        json_decref(maps[i]);
    json_decref(docs);
    return findings;
}

static void test_table(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof(CASES) / sizeof(CASES[0]); c++) {
        char *yaml = NULL, got[4096] = "";
        size_t off = 0, i;
        json_t *findings, *f;

        assert_true(asprintf(&yaml, "%s%s", BOOKINFO, CASES[c].objects) > 0);
        findings = analyze_yaml(yaml);
        json_array_foreach(findings, i, f) {
            off += (size_t)snprintf(got + off, sizeof(got) - off, "%s %s %s\n",
                                    json_string_value(json_object_get(f, "code")),
                                    json_string_value(json_object_get(f, "resource")),
                                    json_string_value(json_object_get(f, "path")));
            /* every finding is complete */
            assert_non_null(json_string_value(json_object_get(f, "level")));
            assert_non_null(json_string_value(json_object_get(f, "kind")));
            assert_non_null(json_string_value(json_object_get(f, "namespace")));
            assert_non_null(json_string_value(json_object_get(f, "name")));
            assert_true(strlen(json_string_value(json_object_get(f, "message"))) > 10);
        }
        if (strcmp(got, CASES[c].want) != 0)
            fprintf(stderr, "case \"%s\":\n want:\n%s got:\n%s", CASES[c].name, CASES[c].want,
                    got);
        assert_string_equal(got, CASES[c].want);
        json_decref(findings);
        free(yaml);
    }
}

/* The Istio message types, levels and texts users see (istioctl's format). */
static void test_messages(void **state)
{
    static const char OBJS[] = BOOKINFO
            "- kind: VirtualService\n"
            "  metadata: {name: s, namespace: bookinfo}\n"
            "  spec:\n"
            "    http:\n"
            "    - route: [{destination: {host: reviews, subset: v3}, weight: 70}, "
            "{destination: {host: nosuch}, weight: 20}]\n"
            "- kind: DestinationRule\n"
            "  metadata: {name: reviews, namespace: bookinfo}\n"
            "  spec: {host: reviews, subsets: [{name: v9, labels: {version: v9}}]}\n";
    static const char *const want[] = {
            "Error [IST0101] (VirtualService bookinfo/s) Referenced host+subset in "
            "destinationrule not found: \"reviews+v3\"",
            "Error [IST0101] (VirtualService bookinfo/s) Referenced host not found: \"nosuch\"",
            "Warning [IST0133] (VirtualService bookinfo/s) destination weights sum to 90, not "
            "100: traffic is split in proportion to the weights",
            "Error [IST0173] (DestinationRule bookinfo/reviews) subset \"v9\" selects no pod of "
            "service bookinfo/reviews: requests routed to it fail (503, no healthy upstream)",
    };
    json_t *findings = analyze_yaml(OBJS), *f;
    char line[700];
    size_t i;

    (void)state;
    assert_int_equal(json_array_size(findings), 4);
    json_array_foreach(findings, i, f) {
        int n = dp_analyze_format(f, line, sizeof(line));

        assert_int_equal(n, (int)strlen(want[i]));
        assert_string_equal(line, want[i]);
    }
    f = json_array_get(findings, 3);
    assert_string_equal(json_string_value(json_object_get(f, "istioName")),
                        "DestinationRuleSubsetNotSelectPods");
    /* truncation reports the full length */
    assert_int_equal(dp_analyze_format(f, line, 10), (int)strlen(want[3]));
    assert_int_equal(strlen(line), 9);
    json_decref(findings);
}

static void test_conflict_message(void **state)
{
    json_t *findings = analyze_yaml(BOOKINFO
                                    "- kind: VirtualService\n"
                                    "  metadata: {name: a, namespace: bookinfo}\n"
                                    "  spec: {hosts: [reviews]}\n"
                                    "- kind: VirtualService\n"
                                    "  metadata: {name: b, namespace: bookinfo}\n"
                                    "  spec: {hosts: [reviews]}\n");
    char line[700];

    (void)state;
    assert_int_equal(json_array_size(findings), 2);
    dp_analyze_format(json_array_get(findings, 0), line, sizeof(line));
    assert_string_equal(line, "Error [IST0109] (VirtualService bookinfo/a) VirtualService "
                              "bookinfo/b also defines host \"reviews\" for the mesh: only one "
                              "of them applies; merge them into one");
    json_decref(findings);
}

static void test_rejects(void **state)
{
    (void)state;
    assert_true(dp_analyze_rejects("InvalidRegex"));
    assert_true(dp_analyze_rejects("SelectorAndTargetRefs"));
    /* cross-object findings and weights Istio normalizes are warnings at admission */
    assert_false(dp_analyze_rejects("WeightsNot100"));
    assert_false(dp_analyze_rejects("SubsetNotDefined"));
    assert_false(dp_analyze_rejects("UnknownHost"));
    assert_false(dp_analyze_rejects("SubsetSelectsNothing"));
    assert_false(dp_analyze_rejects(NULL));
}

/* Objects decoded by hand without namespace/name in metadata: named after their map key. */
static void test_key_fallback(void **state)
{
    json_t *vs = json_pack("{s:{s:[{s:[{s:{s:s,s:s}}]}]}}", "spec", "http", "route",
                           "destination", "host", "reviews", "subset", "v1");
    json_t *vss = json_pack("{s:o}", "bookinfo/nometa", vs), *findings = NULL, *f;
    struct dp_analyze_inputs in = {.virtual_services = vss};

    (void)state;
    assert_int_equal(dp_analyze(&in, &findings), 0);
    assert_int_equal(json_array_size(findings), 2); /* unknown host, undefined subset */
    f = json_array_get(findings, 0);
    assert_string_equal(json_string_value(json_object_get(f, "resource")),
                        "VirtualService bookinfo/nometa");
    json_decref(findings);
    json_decref(vss);
}

/* Pods unknown (NULL, e.g. files without any Pod): subsets are not reported as selecting
 * nothing; an empty pod map is known to be empty. */
static void test_pods_unknown(void **state)
{
    json_t *svcs = json_pack("{s:{s:{s:s,s:s},s:{s:{s:s}}}}", "bookinfo/reviews", "metadata",
                             "name", "reviews", "namespace", "bookinfo", "spec", "selector",
                             "app", "reviews");
    json_t *drs = json_pack("{s:{s:{s:s,s:s},s:{s:s,s:[{s:s}]}}}", "bookinfo/reviews",
                            "metadata", "name", "reviews", "namespace", "bookinfo", "spec",
                            "host", "reviews", "subsets", "name", "v1");
    json_t *pods = json_object(), *findings = NULL;
    struct dp_analyze_inputs in = {.services = svcs, .destination_rules = drs};

    (void)state;
    assert_int_equal(dp_analyze(&in, &findings), 0);
    assert_int_equal(json_array_size(findings), 0);
    json_decref(findings);
    in.pods = pods;
    assert_int_equal(dp_analyze(&in, &findings), 0);
    assert_int_equal(json_array_size(findings), 1);
    json_decref(findings);
    json_decref(pods);
    json_decref(drs);
    json_decref(svcs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_table),
            cmocka_unit_test(test_messages),
            cmocka_unit_test(test_conflict_message),
            cmocka_unit_test(test_rejects),
            cmocka_unit_test(test_key_fallback),
            cmocka_unit_test(test_pods_unknown),
    };

    return cmocka_run_group_tests_name("analyze", tests, NULL, NULL);
}
