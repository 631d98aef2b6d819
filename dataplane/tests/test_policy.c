/* Unit tests for dataplane/policy: the L4 evaluator (one table row per rule of the reference
 * §2.6), policy selection for a workload, and the AuthorizationPolicy / PeerAuthentication
 * compilers (§2.6, §2.7). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "policy.h"

static json_t *load(const char *s)
{
    json_error_t je;
    json_t *v = json_loads(s, 0, &je);
    if (!v)
        fail_msg("bad fixture: %s: %s", je.text, s);
    return v;
}

static struct dp_mesh_ip ip(const char *s)
{
    struct dp_mesh_ip a;
    if (dp_mesh_ip_parse(s, &a) < 0)
        fail_msg("bad ip %s", s);
    return a;
}

/* Decode a JSON array of policy objects. */
static size_t policies(const char *json, struct dp_mesh_policy **out, size_t max)
{
    json_t *arr = load(json), *el;
    size_t i;
    json_array_foreach(arr, i, el) {
        char err[512];
        void *obj = NULL;
        assert_true(i < max);
        if (dp_mesh_object_decode(DP_MESH_POLICY, el, NULL, "p", &obj, err, sizeof(err)) < 0)
            fail_msg("policy %zu: %s", i, err);
        out[i] = obj;
    }
    i = json_array_size(arr);
    json_decref(arr);
    return i;
}

/* ------------------------------------------------------------------ evaluator table */

#define ID_SLEEP "spiffe://cluster.local/ns/foo/sa/sleep"
#define ID_OTHER "cluster.local/ns/bar/sa/web"
#define P(action, rules)                                                                           \
    "{\"name\": \"p\", \"namespace\": \"ns\", \"action\": \"" action "\", \"rules\": " rules "}"
#define P2(name, action, extra, rules)                                                             \
    "{\"name\": \"" name "\", \"namespace\": \"ns\", \"action\": \"" action "\"" extra             \
    ", \"rules\": " rules "}"

struct eval_case {
    const char *rule; /* which reference rule the row proves */
    const char *policies;
    const char *identity, *src, *dst;
    uint16_t port;
    bool allowed;
    const char *reason;
};

static const struct eval_case eval_cases[] = {
        {"no policies => allow", "[]", ID_SLEEP, "10.0.0.1", "10.0.1.1", 80, true,
         "no allow policies"},
        {"ALLOW with no rules matches nothing (spec: {})", "[" P("Allow", "[]") "]", ID_SLEEP,
         "10.0.0.1", "10.0.1.1", 80, false, "allow policies exist, but none allowed"},
        {"group with zero clauses matches everything (rules: [{}])", "[" P("Allow", "[[]]") "]",
         NULL, "10.0.0.1", "10.0.1.1", 80, true, "allowed by: ns/p"},
        {"empty match matches nothing", "[" P("Allow", "[[[{}]]]") "]", ID_SLEEP, "10.0.0.1",
         "10.0.1.1", 80, false, "allow policies exist, but none allowed"},
        {"clause with zero matches matches nothing", "[" P("Allow", "[[[]]]") "]", ID_SLEEP,
         "10.0.0.1", "10.0.1.1", 80, false, "allow policies exist, but none allowed"},
        {"DENY with no rules denies nothing", "[" P("Deny", "[]") "]", ID_SLEEP, "10.0.0.1",
         "10.0.1.1", 80, true, "no allow policies"},
        {"DENY wins over a matching ALLOW",
         "[" P2("allow", "Allow", "", "[[]]") "," P2("deny", "Deny", "",
                                                     "[[[{\"destinationPorts\": [80]}]]]") "]",
         ID_SLEEP, "10.0.0.1", "10.0.1.1", 80, false, "explicitly denied by: ns/deny"},
        {"non-matching DENY, no ALLOW => allow",
         "[" P("Deny", "[[[{\"destinationPorts\": [81]}]]]") "]", ID_SLEEP, "10.0.0.1", "10.0.1.1",
         80, true, "no allow policies"},
        {"principal exact, peer identity with spiffe:// prefix",
         "[" P("Allow",
               "[[[{\"principals\": [{\"exact\": \"cluster.local/ns/foo/sa/sleep\"}]}]]]") "]",
         ID_SLEEP, "10.0.0.1", "10.0.1.1", 80, true, "allowed by: ns/p"},
        {"principal exact, other identity",
         "[" P("Allow",
               "[[[{\"principals\": [{\"exact\": \"cluster.local/ns/foo/sa/sleep\"}]}]]]") "]",
         ID_OTHER, "10.0.0.1", "10.0.1.1", 80, false, "allow policies exist, but none allowed"},
        {"principal in Istio string form with spiffe:// in the policy",
         "[" P("Allow", "[[[{\"principals\": [\"spiffe://cluster.local/ns/foo/sa/sleep\"]}]]]") "]",
         ID_SLEEP, "10.0.0.1", "10.0.1.1", 80, true, "allowed by: ns/p"},
        {"principal prefix",
         "[" P("Allow", "[[[{\"principals\": [\"cluster.local/ns/foo/*\"]}]]]") "]", ID_SLEEP,
         "10.0.0.1", "10.0.1.1", 80, true, "allowed by: ns/p"},
        {"principal suffix",
         "[" P("Allow", "[[[{\"principals\": [{\"suffix\": \"/sa/web\"}]}]]]") "]", ID_OTHER,
         "10.0.0.1", "10.0.1.1", 80, true, "allowed by: ns/p"},
        {"principal suffix mismatch", "[" P("Allow", "[[[{\"principals\": [\"*/sa/web\"]}]]]") "]",
         ID_SLEEP, "10.0.0.1", "10.0.1.1", 80, false, "allow policies exist, but none allowed"},
        {"principal presence with identity", "[" P("Allow", "[[[{\"principals\": [\"*\"]}]]]") "]",
         ID_OTHER, "10.0.0.1", "10.0.1.1", 80, true, "allowed by: ns/p"},
        {"principal presence without identity (plaintext)",
         "[" P("Allow", "[[[{\"principals\": [{\"presence\": true}]}]]]") "]", NULL, "10.0.0.1",
         "10.0.1.1", 80, false, "allow policies exist, but none allowed"},
        {"static strict: DENY notPrincipals presence, no identity => deny",
         "[" P("Deny", "[[[{\"notPrincipals\": [{\"presence\": true}]}]]]") "]", NULL, "10.0.0.1",
         "10.0.1.1", 80, false, "explicitly denied by: ns/p"},
        {"static strict: DENY notPrincipals presence, with identity => allow",
         "[" P("Deny", "[[[{\"notPrincipals\": [{\"presence\": true}]}]]]") "]", ID_SLEEP,
         "10.0.0.1", "10.0.1.1", 80, true, "no allow policies"},
        {"notPrincipals excludes",
         "[" P("Allow", "[[[{\"notPrincipals\": [\"*/sa/sleep\"]}]]]") "]", ID_SLEEP, "10.0.0.1",
         "10.0.1.1", 80, false, "allow policies exist, but none allowed"},
        {"notPrincipals lets others through",
         "[" P("Allow", "[[[{\"notPrincipals\": [\"*/sa/sleep\"]}]]]") "]", ID_OTHER, "10.0.0.1",
         "10.0.1.1", 80, true, "allowed by: ns/p"},
        {"namespaces from the peer identity",
         "[" P("Allow", "[[[{\"namespaces\": [\"foo\"]}]]]") "]", ID_SLEEP, "10.0.0.1", "10.0.1.1",
         80, true, "allowed by: ns/p"},
        {"namespaces prefix form", "[" P("Allow", "[[[{\"namespaces\": [\"ba*\"]}]]]") "]",
         ID_OTHER, "10.0.0.1", "10.0.1.1", 80, true, "allowed by: ns/p"},
        {"namespaces without identity never match",
         "[" P("Allow", "[[[{\"namespaces\": [\"*\"]}]]]") "]", NULL, "10.0.0.1", "10.0.1.1", 80,
         false, "allow policies exist, but none allowed"},
        {"notNamespaces excludes", "[" P("Allow", "[[[{\"notNamespaces\": [\"foo\"]}]]]") "]",
         ID_SLEEP, "10.0.0.1", "10.0.1.1", 80, false, "allow policies exist, but none allowed"},
        {"notNamespaces without identity does not exclude",
         "[" P("Allow", "[[[{\"notNamespaces\": [\"foo\"]}]]]") "]", NULL, "10.0.0.1", "10.0.1.1",
         80, true, "allowed by: ns/p"},
        {"serviceAccounts (namespace/name)",
         "[" P("Allow", "[[[{\"serviceAccounts\": [\"foo/sleep\"]}]]]") "]", ID_SLEEP, "10.0.0.1",
         "10.0.1.1", 80, true, "allowed by: ns/p"},
        {"serviceAccounts object form, wrong namespace",
         "[" P("Allow", "[[[{\"serviceAccounts\": [{\"namespace\": \"bar\", \"serviceAccount\": "
                        "\"sleep\"}]}]]]") "]",
         ID_SLEEP, "10.0.0.1", "10.0.1.1", 80, false, "allow policies exist, but none allowed"},
        {"notServiceAccounts excludes",
         "[" P("Allow", "[[[{\"notServiceAccounts\": [\"foo/sleep\"]}]]]") "]", ID_SLEEP,
         "10.0.0.1", "10.0.1.1", 80, false, "allow policies exist, but none allowed"},
        {"sourceIps v4 CIDR", "[" P("Allow", "[[[{\"sourceIps\": [\"10.0.0.0/24\"]}]]]") "]", NULL,
         "10.0.0.77", "10.0.1.1", 80, true, "allowed by: ns/p"},
        {"sourceIps v4 CIDR miss", "[" P("Allow", "[[[{\"sourceIps\": [\"10.0.0.0/24\"]}]]]") "]",
         NULL, "10.0.2.1", "10.0.1.1", 80, false, "allow policies exist, but none allowed"},
        {"sourceIps v6 CIDR", "[" P("Allow", "[[[{\"sourceIps\": [\"fd00:1::/64\"]}]]]") "]", NULL,
         "fd00:1::5", "fd00:2::1", 80, true, "allowed by: ns/p"},
        {"sourceIps v6 rule vs v4 peer", "[" P("Allow", "[[[{\"sourceIps\": [\"::/0\"]}]]]") "]",
         NULL, "10.0.0.1", "10.0.1.1", 80, false, "allow policies exist, but none allowed"},
        {"notSourceIps excludes", "[" P("Deny", "[[[{\"notSourceIps\": [\"10.0.0.0/8\"]}]]]") "]",
         NULL, "192.168.1.1", "10.0.1.1", 80, false, "explicitly denied by: ns/p"},
        {"notSourceIps lets the block through",
         "[" P("Deny", "[[[{\"notSourceIps\": [\"10.0.0.0/8\"]}]]]") "]", NULL, "10.9.9.9",
         "10.0.1.1", 80, true, "no allow policies"},
        {"destinationIps", "[" P("Allow", "[[[{\"destinationIps\": [\"10.0.1.1\"]}]]]") "]", NULL,
         "10.0.0.1", "10.0.1.1", 80, true, "allowed by: ns/p"},
        {"notDestinationIps",
         "[" P("Allow", "[[[{\"notDestinationIps\": [\"10.0.1.0/24\"]}]]]") "]", NULL, "10.0.0.1",
         "10.0.1.1", 80, false, "allow policies exist, but none allowed"},
        {"destinationPorts", "[" P("Allow", "[[[{\"destinationPorts\": [8080, 80]}]]]") "]", NULL,
         "10.0.0.1", "10.0.1.1", 80, true, "allowed by: ns/p"},
        {"notDestinationPorts", "[" P("Allow", "[[[{\"notDestinationPorts\": [80]}]]]") "]", NULL,
         "10.0.0.1", "10.0.1.1", 80, false, "allow policies exist, but none allowed"},
        {"fields inside a match AND (principal ok, port not)",
         "[" P("Allow", "[[[{\"principals\": [\"*\"], \"destinationPorts\": [81]}]]]") "]",
         ID_SLEEP, "10.0.0.1", "10.0.1.1", 80, false, "allow policies exist, but none allowed"},
        {"values inside a field OR",
         "[" P("Allow", "[[[{\"principals\": [\"x\", \"cluster.local/ns/bar/sa/web\"]}]]]") "]",
         ID_OTHER, "10.0.0.1", "10.0.1.1", 80, true, "allowed by: ns/p"},
        {"matches of a clause OR",
         "[" P("Allow", "[[[{\"destinationPorts\": [81]}, {\"namespaces\": [\"bar\"]}]]]") "]",
         ID_OTHER, "10.0.0.1", "10.0.1.1", 80, true, "allowed by: ns/p"},
        {"clauses of a group AND",
         "[" P("Allow", "[[[{\"namespaces\": [\"bar\"]}], [{\"destinationPorts\": [81]}]]]") "]",
         ID_OTHER, "10.0.0.1", "10.0.1.1", 80, false, "allow policies exist, but none allowed"},
        {"groups of a policy OR",
         "[" P("Allow", "[[[{\"destinationPorts\": [81]}]], [[{\"namespaces\": [\"bar\"]}]]]") "]",
         ID_OTHER, "10.0.0.1", "10.0.1.1", 80, true, "allowed by: ns/p"},
        {"dry-run DENY does not deny", "[" P2("dry", "Deny", ", \"dryRun\": true", "[[]]") "]",
         ID_SLEEP, "10.0.0.1", "10.0.1.1", 80, true, "no allow policies"},
        {"dry-run ALLOW does not count as an ALLOW policy",
         "[" P2("dry", "Allow", ", \"dryRun\": true", "[]") "]", ID_SLEEP, "10.0.0.1", "10.0.1.1",
         80, true, "no allow policies"},
        {"one matching ALLOW among several",
         "[" P2("a", "Allow", "", "[[[{\"destinationPorts\": [1]}]]]") "," P2(
                 "b", "Allow", "", "[[[{\"destinationPorts\": [80]}]]]") "]",
         NULL, "10.0.0.1", "10.0.1.1", 80, true, "allowed by: ns/b"},
};

static void test_eval_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(eval_cases) / sizeof(eval_cases[0]); i++) {
        const struct eval_case *t = &eval_cases[i];
        struct dp_mesh_policy *pols[8] = {0};
        size_t n = policies(t->policies, pols, 8);
        struct dp_policy_conn c = {.identity = t->identity,
                                   .src_ip = ip(t->src),
                                   .dst_ip = ip(t->dst),
                                   .dst_port = t->port};
        struct dp_policy_result res;
        assert_int_equal(
                dp_policy_evaluate((const struct dp_mesh_policy *const *)pols, n, &c, &res), 0);
        if (res.allowed != t->allowed || strcmp(res.reason, t->reason) != 0)
            fail_msg("row %zu (%s): allowed=%d reason=\"%s\", want %d \"%s\"", i, t->rule,
                     res.allowed, res.reason, t->allowed, t->reason);
        for (size_t j = 0; j < n; j++)
            dp_mesh_object_unref(DP_MESH_POLICY, pols[j]);
    }
}

static void test_eval_dry_run(void **state)
{
    struct dp_mesh_policy *pols[4];
    size_t n = policies("[" P2("dry", "Deny", ", \"dryRun\": true",
                               "[[]]") "," P2("dry-allow", "Allow", ", \"dryRun\": true",
                                              "[[[{\"destinationPorts\": [1]}]]]") "]",
                        pols, 4);
    struct dp_policy_conn c = {.identity = ID_SLEEP,
                               .src_ip = ip("10.0.0.1"),
                               .dst_ip = ip("10.0.1.1"),
                               .dst_port = 80};
    struct dp_policy_result res;
    (void)state;
    dp_policy_evaluate((const struct dp_mesh_policy *const *)pols, n, &c, &res);
    assert_true(res.allowed);
    assert_false(res.dry_run_allowed);
    assert_ptr_equal(res.dry_run_policy, pols[0]);
    for (size_t j = 0; j < n; j++)
        dp_mesh_object_unref(DP_MESH_POLICY, pols[j]);

    /* only a dry-run ALLOW that does not match: would deny ("none allowed") */
    n = policies("[" P2("dry-allow", "Allow", ", \"dryRun\": true",
                        "[[[{\"destinationPorts\": [1]}]]]") "]",
                 pols, 4);
    dp_policy_evaluate((const struct dp_mesh_policy *const *)pols, n, &c, &res);
    assert_true(res.allowed);
    assert_null(res.policy);
    assert_false(res.dry_run_allowed);
    assert_ptr_equal(res.dry_run_policy, pols[0]);
    dp_mesh_object_unref(DP_MESH_POLICY, pols[0]);
}

/* ------------------------------------------------------------------ selection */

static void test_check_selection(void **state)
{
    static const char *cfg =
            "{\"workloads\": ["
            " {\"uid\": \"w1\", \"name\": \"w1\", \"namespace\": \"app\", \"addresses\": "
            "[\"10.1.0.1\"], \"authorizationPolicies\": [\"app/selected\", \"app/missing\"]},"
            " {\"uid\": \"w2\", \"name\": \"w2\", \"namespace\": \"app\", \"addresses\": "
            "[\"10.1.0.2\"]},"
            " {\"uid\": \"w3\", \"name\": \"w3\", \"namespace\": \"other\", \"addresses\": "
            "[\"10.1.0.3\"]}],"
            "\"policies\": ["
            " {\"name\": \"selected\", \"namespace\": \"app\", \"scope\": \"WorkloadSelector\","
            "  \"action\": \"Deny\", \"rules\": [[[{\"destinationPorts\": [22]}]]]},"
            " {\"name\": \"ns-allow\", \"namespace\": \"app\", \"scope\": \"Namespace\","
            "  \"action\": \"Allow\", \"rules\": [[[{\"namespaces\": [\"client\"]}]]]},"
            " {\"name\": \"global\", \"namespace\": \"istio-system\", \"scope\": \"Global\","
            "  \"action\": \"Deny\", \"rules\": [[[{\"sourceIps\": [\"192.0.2.0/24\"]}]]]}"
            "]}";
    json_t *doc = load(cfg);
    struct dp_mesh_snapshot *s = NULL;
    char err[512];
    struct dp_mesh_ip a1 = ip("10.1.0.1"), a2 = ip("10.1.0.2"), a3 = ip("10.1.0.3");
    const struct dp_mesh_workload *w1, *w2, *w3;
    struct dp_policy_result res;
    struct dp_policy_conn c = {
            .identity = "cluster.local/ns/client/sa/c", .src_ip = ip("10.2.0.1"), .dst_port = 22};
    (void)state;

    assert_int_equal(dp_mesh_snapshot_from_json(doc, &s, err, sizeof(err)), 0);
    json_decref(doc);
    w1 = dp_mesh_workload_by_ip(s, &a1);
    w2 = dp_mesh_workload_by_ip(s, &a2);
    w3 = dp_mesh_workload_by_ip(s, &a3);

    /* w1 lists the selector policy: port 22 denied */
    c.dst_ip = a1;
    dp_policy_check(s, w1, &c, &res);
    assert_false(res.allowed);
    assert_string_equal(res.reason, "explicitly denied by: app/selected");
    /* w2 does not list it: the namespace ALLOW applies */
    c.dst_ip = a2;
    dp_policy_check(s, w2, &c, &res);
    assert_true(res.allowed);
    assert_string_equal(res.reason, "allowed by: app/ns-allow");
    /* namespace policy does not reach another namespace; global does */
    c.dst_ip = a3;
    dp_policy_check(s, w3, &c, &res);
    assert_true(res.allowed);
    assert_string_equal(res.reason, "no allow policies");
    c.src_ip = ip("192.0.2.9");
    dp_policy_check(s, w3, &c, &res);
    assert_false(res.allowed);
    assert_string_equal(res.reason, "explicitly denied by: istio-system/global");
    /* plaintext into app: the namespace ALLOW needs an identity */
    c.identity = NULL;
    c.src_ip = ip("10.2.0.1");
    c.dst_ip = a2;
    c.dst_port = 80;
    dp_policy_check(s, w2, &c, &res);
    assert_false(res.allowed);
    assert_string_equal(res.reason, "allow policies exist, but none allowed");
    /* unknown destination: fail closed */
    dp_policy_check(s, NULL, &c, &res);
    assert_false(res.allowed);
    assert_string_equal(res.reason, "unknown destination workload");
    dp_mesh_snapshot_unref(s);
}

/* ------------------------------------------------------------------ AuthorizationPolicy */

static void dump_diags(const struct dp_policy_diags *d)
{
    for (size_t i = 0; i < d->n; i++)
        print_message("  %s %s\n", d->items[i].error ? "error:" : "warning:", d->items[i].text);
}

static bool has_diag(const struct dp_policy_diags *d, bool error, const char *text)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->items[i].error == error && strncmp(d->items[i].text, text, strlen(text)) == 0)
            return true;
    dump_diags(d);
    return false;
}

struct ap_case {
    const char *name;
    const char *cr;
    const char *want;    /* JSON array of policy objects */
    const char *warning; /* a diagnostic that must be present (prefix), or NULL */
};

#define AP(ns, extra_md, spec)                                                                     \
    "{\"apiVersion\": \"security.istio.io/v1\", \"kind\": \"AuthorizationPolicy\", "               \
    "\"metadata\": {\"name\": \"ap\", \"namespace\": \"" ns "\"" extra_md "}, \"spec\": " spec "}"
#define OUT(ns, scope, action, dry, rules)                                                         \
    "[{\"name\": \"ap\", \"namespace\": \"" ns "\", \"scope\": \"" scope                           \
    "\", \"action\": \"" action "\", \"dryRun\": " dry ", \"rules\": " rules "}]"

static const struct ap_case ap_cases[] = {
        {"L4 ALLOW: to, from, when become three clauses",
         AP("app", "",
            "{\"selector\": {\"matchLabels\": {\"app\": \"web\"}}, \"rules\": [{"
            "\"from\": [{\"source\": {\"principals\": [\"cluster.local/ns/a/sa/b\", \"*/sa/x\"],"
            " \"namespaces\": [\"foo*\"]}}, {\"source\": {\"ipBlocks\": [\"10.0.0.0/8\", "
            "\"1.2.3.4\"],"
            " \"notIpBlocks\": [\"10.9.0.0/16\"]}}],"
            "\"to\": [{\"operation\": {\"ports\": [\"8080\", \"9090\"]}}],"
            "\"when\": [{\"key\": \"source.ip\", \"values\": [\"10.1.0.0/16\"]},"
            " {\"key\": \"destination.port\", \"notValues\": [\"22\"]}]}]}"),
         OUT("app", "WorkloadSelector", "Allow", "false",
             "[[[{\"destinationPorts\": [8080, 9090]}],"
             " [{\"principals\": [{\"exact\": \"cluster.local/ns/a/sa/b\"}, {\"suffix\": "
             "\"/sa/x\"}],"
             " \"namespaces\": [{\"prefix\": \"foo\"}]},"
             " {\"sourceIps\": [\"10.0.0.0/8\", \"1.2.3.4/32\"], \"notSourceIps\": "
             "[\"10.9.0.0/16\"]}],"
             " [{\"sourceIps\": [\"10.1.0.0/16\"]}], [{\"notDestinationPorts\": [22]}]]]"),
         NULL},
        {"no spec: allow nothing",
         "{\"kind\": \"AuthorizationPolicy\", \"metadata\": "
         "{\"name\": \"ap\", \"namespace\": \"app\"}}",
         OUT("app", "Namespace", "Allow", "false", "[]"), NULL},
        {"spec {}: allow nothing", AP("app", "", "{}"),
         OUT("app", "Namespace", "Allow", "false", "[]"), NULL},
        {"rules [{}]: allow everything", AP("app", "", "{\"rules\": [{}]}"),
         OUT("app", "Namespace", "Allow", "false", "[[]]"), NULL},
        {"root namespace without selector: Global",
         AP("istio-system", "", "{\"action\": \"DENY\"}"),
         OUT("istio-system", "Global", "Deny", "false", "[]"), NULL},
        {"dry-run annotation",
         AP("app", ", \"annotations\": {\"istio.io/dry-run\": \"true\"}",
            "{\"action\": \"DENY\", \"rules\": [{}]}"),
         OUT("app", "Namespace", "Deny", "true", "[[]]"), NULL},
        {"ALLOW rule with methods is dropped, the other rule stays",
         AP("app", "",
            "{\"rules\": [{\"to\": [{\"operation\": {\"methods\": [\"GET\"], \"ports\": "
            "[\"80\"]}}]},"
            " {\"from\": [{\"source\": {\"namespaces\": [\"ok\"]}}]}]}"),
         OUT("app", "Namespace", "Allow", "false", "[[[{\"namespaces\": [{\"exact\": \"ok\"}]}]]]"),
         "spec.rules[0].to[0].operation.methods: ztunnel does not support HTTP attributes; rule "
         "dropped from ALLOW policy"},
        {"ALLOW with only HTTP rules becomes allow-nothing",
         AP("app", "",
            "{\"rules\": [{\"from\": [{\"source\": {\"requestPrincipals\": [\"*\"]}}]}]}"),
         OUT("app", "Namespace", "Allow", "false", "[]"),
         "spec.rules[0].from[0].source.requestPrincipals: ztunnel does not support HTTP"},
        {"ALLOW with a non-L4 when key is dropped",
         AP("app", "",
            "{\"rules\": [{\"when\": [{\"key\": \"request.headers[x]\", \"values\": [\"a\"]}]}]}"),
         OUT("app", "Namespace", "Allow", "false", "[]"),
         "spec.rules[0].when[0].key: \"request.headers[x]\" is not an L4 attribute"},
        {"DENY keeps the L4 part of an operation",
         AP("app", "",
            "{\"action\": \"DENY\", \"rules\": [{\"to\": [{\"operation\": {\"methods\": "
            "[\"POST\"], \"ports\": [\"8080\"]}}]}]}"),
         OUT("app", "Namespace", "Deny", "false", "[[[{\"destinationPorts\": [8080]}]]]"),
         "spec.rules[0].to[0].operation.methods: ztunnel does not support HTTP attributes; "
         "ignored in DENY rule"},
        {"DENY with an HTTP-only operation matches everything the rest matches",
         AP("app", "",
            "{\"action\": \"DENY\", \"rules\": [{\"from\": [{\"source\": {\"namespaces\": "
            "[\"evil\"]}}], \"to\": [{\"operation\": {\"paths\": [\"/admin\"]}}]}]}"),
         OUT("app", "Namespace", "Deny", "false",
             "[[[{\"namespaces\": [{\"exact\": \"evil\"}]}]]]"),
         "spec.rules[0].to[0].operation.paths"},
        {"DENY with a non-L4 when condition ignores it",
         AP("app", "",
            "{\"action\": \"DENY\", \"rules\": [{\"when\": [{\"key\": \"request.auth.claims[iss]\","
            " \"values\": [\"x\"]}, {\"key\": \"source.namespace\", \"values\": [\"evil\"]}]}]}"),
         OUT("app", "Namespace", "Deny", "false",
             "[[[{\"namespaces\": [{\"exact\": \"evil\"}]}]]]"),
         "spec.rules[0].when[0].key"},
        {"serviceAccounts, principals with spiffe://, presence",
         AP("app", "",
            "{\"rules\": [{\"from\": [{\"source\": {\"serviceAccounts\": [\"ns1/sa1\"],"
            " \"notPrincipals\": [\"spiffe://cluster.local/ns/x/sa/y\"]}}, {\"source\": "
            "{\"principals\": [\"*\"]}}]}]}"),
         OUT("app", "Namespace", "Allow", "false",
             "[[[{\"serviceAccounts\": [{\"namespace\": \"ns1\", \"serviceAccount\": \"sa1\"}],"
             " \"notPrincipals\": [{\"exact\": \"cluster.local/ns/x/sa/y\"}]},"
             " {\"principals\": [{\"presence\": true}]}]]]"),
         NULL},
        {"ipBlocks with host bits are masked (Istio accepts them)",
         AP("app", "",
            "{\"rules\": [{\"from\": [{\"source\": {\"ipBlocks\": [\"10.1.2.3/8\"]}}]}]}"),
         OUT("app", "Namespace", "Allow", "false", "[[[{\"sourceIps\": [\"10.0.0.0/8\"]}]]]"),
         "spec.rules[0].from[0].source.ipBlocks[0]: host bits set; treated as 10.0.0.0/8"},
        {"targetRefs: not for node agents",
         AP("app", "",
            "{\"targetRefs\": [{\"kind\": \"Gateway\", \"group\": "
            "\"gateway.networking.k8s.io\", \"name\": \"wp\"}], \"rules\": [{}]}"),
         "[]", "spec.targetRefs: policy targets a waypoint or gateway"},
        {"AUDIT skipped", AP("app", "", "{\"action\": \"AUDIT\", \"rules\": [{}]}"), "[]",
         "spec.action: AUDIT policies are not enforced by ztunnel"},
        {"CUSTOM skipped",
         AP("app", "",
            "{\"action\": \"CUSTOM\", \"provider\": {\"name\": \"x\"}, \"rules\": [{}]}"),
         "[]", "spec.action: CUSTOM policies"},
};

static void test_compile_authz(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(ap_cases) / sizeof(ap_cases[0]); i++) {
        const struct ap_case *t = &ap_cases[i];
        struct dp_policy_diags d;
        json_t *cr = load(t->cr), *want = load(t->want), *got = NULL;
        int r;
        memset(&d, 0, sizeof(d));
        r = dp_policy_compile_authz(cr, "istio-system", &got, &d);
        if (r != 0) {
            dump_diags(&d);
            fail_msg("case %zu (%s): r=%d", i, t->name, r);
        }
        if (!json_equal(got, want)) {
            char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
            char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
            print_message("got  %s\nwant %s\n", g, w);
            free(g);
            free(w);
            fail_msg("case %zu (%s): output differs", i, t->name);
        }
        if (t->warning && !has_diag(&d, false, t->warning))
            fail_msg("case %zu (%s): missing warning \"%s\"", i, t->name, t->warning);
        if (!t->warning && d.n) {
            dump_diags(&d);
            fail_msg("case %zu (%s): unexpected diagnostics", i, t->name);
        }
        assert_int_equal(d.n_errors, 0);
        json_decref(cr);
        json_decref(want);
        json_decref(got);
    }
}

/* Errors inside rules fail closed, as istiod does: an ALLOW rule in error is ignored (so it
 * allows nothing), a DENY rule in error denies everything. The error is still reported. */
static void test_compile_authz_rule_errors(void **state)
{
    static const struct {
        const char *spec, *err;
    } cases[] = {
            {"{\"rules\": [{\"from\": [{\"source\": {\"ipBlocks\": [\"10.0.0.0/33\"]}}]}]}",
             "spec.rules[0].from[0].source.ipBlocks[0]: not an IP address or CIDR block"},
            {"{\"rules\": [{\"to\": [{\"operation\": {\"ports\": [\"http\"]}}]}]}",
             "spec.rules[0].to[0].operation.ports[0]: not a port number 1..65535"},
            {"{\"rules\": [{\"to\": [{\"operation\": {\"ports\": \"80\"}}]}]}",
             "spec.rules[0].to[0].operation.ports: expected array, got string"},
            {"{\"rules\": [{\"from\": [{\"source\": {\"serviceAccounts\": [\"sa\"]}}]}]}",
             "spec.rules[0].from[0].source.serviceAccounts[0]: service account must be"},
            {"{\"rules\": [{\"from\": [{\"source\": {}}]}]}",
             "spec.rules[0].from[0].source: must set at least one field"},
            {"{\"rules\": [{\"from\": [{}]}]}",
             "spec.rules[0].from[0].source: required object is missing"},
            {"{\"rules\": [{\"when\": [{\"key\": \"source.ip\"}]}]}",
             "spec.rules[0].when[0]: needs values or notValues"},
            {"{\"rules\": [{\"when\": [{\"key\": \"destination.port\", \"values\": [\"x\"]}]}]}",
             "spec.rules[0].when[0].values[0]: not a port number"},
            {"{\"rules\": {}}", "spec.rules: expected array, got object"},
            {"{\"rules\": [3]}", "spec.rules[0]: expected object, got integer"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int deny = 0; deny < 2; deny++) {
            struct dp_policy_diags d;
            json_t *cr = load(AP("app", "", "{}")), *got = NULL, *spec = load(cases[i].spec);
            json_t *want = load(deny ? OUT("app", "Namespace", "Deny", "false", "[[]]")
                                     : OUT("app", "Namespace", "Allow", "false", "[]"));
            if (deny)
                json_object_set_new(spec, "action", json_string("DENY"));
            json_object_set_new(cr, "spec", spec);
            memset(&d, 0, sizeof(d));
            int r = dp_policy_compile_authz(cr, "istio-system", &got, &d);
            if (r != 0 || !has_diag(&d, true, cases[i].err))
                fail_msg("case %zu deny=%d: r=%d, want error \"%s\"", i, deny, r, cases[i].err);
            if (!json_equal(got, want)) {
                char *g = json_dumps(got, JSON_COMPACT);
                print_message("got %s\n", g);
                free(g);
                fail_msg("case %zu deny=%d: not failed closed", i, deny);
            }
            json_decref(cr);
            json_decref(got);
            json_decref(want);
        }
    }
}

/* A good ALLOW rule next to a bad one still applies. */
static void test_compile_authz_bad_rule_keeps_good(void **state)
{
    struct dp_policy_diags d;
    json_t *cr = load(AP("app", "",
                         "{\"rules\": [{\"to\": [{\"operation\": {\"ports\": [\"x\"]}}]},"
                         " {\"to\": [{\"operation\": {\"ports\": [\"80\"]}}]}]}"));
    json_t *want =
            load(OUT("app", "Namespace", "Allow", "false", "[[[{\"destinationPorts\": [80]}]]]"));
    json_t *got = NULL;
    (void)state;
    memset(&d, 0, sizeof(d));
    assert_int_equal(dp_policy_compile_authz(cr, "istio-system", &got, &d), 0);
    assert_int_equal(d.n_errors, 1);
    assert_true(json_equal(got, want));
    json_decref(cr);
    json_decref(want);
    json_decref(got);
    /* and diags may be NULL */
    cr = load(AP("app", "", "{\"rules\": [{}]}"));
    assert_int_equal(dp_policy_compile_authz(cr, "istio-system", &got, NULL), 0);
    json_decref(got);
    json_decref(cr);
}

/* Errors that leave no policy to emit. */
static void test_compile_authz_errors(void **state)
{
    static const struct {
        const char *cr, *err;
    } cases[] = {
            {AP("app", "", "{\"action\": \"MAYBE\"}"), "spec.action: unknown action \"MAYBE\""},
            {AP("app", "", "[]"), "spec: expected object, got array"},
            {"{\"metadata\": {\"namespace\": \"a\"}}", "metadata.name: required field is missing"},
            {"[]", "<root>: expected object, got array"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct dp_policy_diags d;
        json_t *cr = load(cases[i].cr), *got = NULL;
        memset(&d, 0, sizeof(d));
        int r = dp_policy_compile_authz(cr, "istio-system", &got, &d);
        if (r != -EINVAL || !has_diag(&d, true, cases[i].err))
            fail_msg("case %zu: r=%d, want error \"%s\"", i, r, cases[i].err);
        assert_null(got);
        json_decref(cr);
    }
}

/* compile -> decode -> evaluate: what the node agent will enforce */
static bool enforce(const char *cr_json, const char *identity, uint16_t port)
{
    struct dp_policy_diags d;
    json_t *cr = load(cr_json), *out = NULL;
    struct dp_mesh_policy *p[1] = {0};
    struct dp_policy_result res;
    struct dp_policy_conn c = {.identity = identity,
                               .src_ip = ip("10.0.0.1"),
                               .dst_ip = ip("10.0.0.2"),
                               .dst_port = port};
    char err[512];
    size_t n = 0;
    memset(&d, 0, sizeof(d));
    assert_int_equal(dp_policy_compile_authz(cr, "istio-system", &out, &d), 0);
    if (json_array_size(out)) {
        assert_int_equal(dp_mesh_object_decode(DP_MESH_POLICY, json_array_get(out, 0), NULL, NULL,
                                               (void **)&p[0], err, sizeof(err)),
                         0);
        n = 1;
    }
    dp_policy_evaluate((const struct dp_mesh_policy *const *)p, n, &c, &res);
    dp_mesh_object_unref(DP_MESH_POLICY, p[0]);
    json_decref(cr);
    json_decref(out);
    return res.allowed;
}

static void test_compile_then_enforce(void **state)
{
    (void)state;
    /* DENY GET on 8080: at L4 every connection to 8080 is denied (more restrictive) */
    const char *deny_get = AP("app", "",
                              "{\"action\": \"DENY\", \"rules\": [{\"to\": "
                              "[{\"operation\": {\"methods\": [\"GET\"], \"ports\": "
                              "[\"8080\"]}}]}]}");
    assert_false(enforce(deny_get, ID_SLEEP, 8080));
    assert_true(enforce(deny_get, ID_SLEEP, 9090));
    /* ALLOW GET: dropped -> allow nothing (more restrictive) */
    const char *allow_get = AP("app", "",
                               "{\"rules\": [{\"to\": [{\"operation\": {\"methods\": "
                               "[\"GET\"]}}]}]}");
    assert_false(enforce(allow_get, ID_SLEEP, 8080));
    /* ALLOW from namespace foo */
    const char *allow_foo = AP("app", "",
                               "{\"rules\": [{\"from\": [{\"source\": {\"namespaces\": "
                               "[\"foo\"]}}]}]}");
    assert_true(enforce(allow_foo, ID_SLEEP, 80));
    assert_false(enforce(allow_foo, ID_OTHER, 80));
    assert_false(enforce(allow_foo, NULL, 80));
    /* targetRefs: nothing for the node agent */
    assert_true(enforce(AP("app", "", "{\"targetRefs\": [{\"name\": \"x\"}]}"), NULL, 80));
}

static void test_cr_selects(void **state)
{
    json_t *ap = load(AP("app", "", "{\"selector\": {\"matchLabels\": {\"app\": \"web\"}}}"));
    json_t *root_ap =
            load(AP("istio-system", "", "{\"selector\": {\"matchLabels\": {\"app\": \"web\"}}}"));
    json_t *ns_ap = load(AP("app", "", "{}"));
    json_t *pa =
            load("{\"kind\": \"PeerAuthentication\", \"metadata\": {\"name\": \"p\", "
                 "\"namespace\": \"istio-system\"}, \"spec\": {\"selector\": {\"matchLabels\": "
                 "{\"app\": \"web\"}}}}");
    json_t *labels = load("{\"app\": \"web\", \"version\": \"v1\"}");
    json_t *other = load("{\"app\": \"db\"}");
    (void)state;
    assert_true(dp_policy_cr_selects(ap, "istio-system", "app", labels));
    assert_false(dp_policy_cr_selects(ap, "istio-system", "app", other));
    assert_false(dp_policy_cr_selects(ap, "istio-system", "elsewhere", labels));
    assert_true(dp_policy_cr_selects(root_ap, "istio-system", "elsewhere", labels));
    assert_false(dp_policy_cr_selects(ns_ap, "istio-system", "app", labels));
    assert_false(dp_policy_cr_selects(pa, "istio-system", "app", labels));
    assert_false(dp_policy_cr_selects(pa, "istio-system", "istio-system", labels));
    json_decref(ap);
    json_decref(root_ap);
    json_decref(ns_ap);
    json_decref(pa);
    json_decref(labels);
    json_decref(other);
}

/* ------------------------------------------------------------------ PeerAuthentication */

#define PA(name, ns, ts, spec)                                                                     \
    "{\"apiVersion\": \"security.istio.io/v1\", \"kind\": \"PeerAuthentication\", \"metadata\": "  \
    "{\"name\": \"" name "\", \"namespace\": \"" ns "\", \"creationTimestamp\": \"" ts "\"}, "     \
    "\"spec\": " spec "}"
#define STATIC_STRICT                                                                              \
    "{\"name\": \"istio_converted_static_strict\", \"namespace\": \"istio-system\", \"scope\": "   \
    "\"WorkloadSelector\", \"action\": \"Deny\", \"dryRun\": false, \"rules\": "                   \
    "[[[{\"notPrincipals\": [{\"presence\": true}]}]]]}"
#define SK "istio-system/istio_converted_static_strict"

struct pa_case {
    const char *name;
    const char *pas;
    const char *want;        /* policies */
    const char *ns, *labels; /* a workload */
    const char *want_keys;
};

static const struct pa_case pa_cases[] = {
        {"no PeerAuthentication: nothing", "[]", "[]", "app", "{}", "[]"},
        {"namespace STRICT", "[" PA("default", "app", "", "{\"mtls\": {\"mode\": \"STRICT\"}}") "]",
         "[" STATIC_STRICT "]", "app", "{}", "[\"" SK "\"]"},
        {"namespace STRICT does not reach other namespaces",
         "[" PA("default", "app", "", "{\"mtls\": {\"mode\": \"STRICT\"}}") "]",
         "[" STATIC_STRICT "]", "other", "{}", "[]"},
        {"mesh STRICT from the root namespace",
         "[" PA("default", "istio-system", "", "{\"mtls\": {\"mode\": \"STRICT\"}}") "]",
         "[" STATIC_STRICT "]", "other", "{}", "[\"" SK "\"]"},
        {"namespace PERMISSIVE overrides mesh STRICT",
         "[" PA("default", "istio-system", "", "{\"mtls\": {\"mode\": \"STRICT\"}}") "," PA(
                 "default", "app", "", "{\"mtls\": {\"mode\": \"PERMISSIVE\"}}") "]",
         "[" STATIC_STRICT "]", "app", "{}", "[]"},
        {"namespace UNSET inherits mesh STRICT",
         "[" PA("default", "istio-system", "", "{\"mtls\": {\"mode\": \"STRICT\"}}") "," PA(
                 "default", "app", "", "{\"mtls\": {\"mode\": \"UNSET\"}}") "]",
         "[" STATIC_STRICT "]", "app", "{}", "[\"" SK "\"]"},
        {"workload PERMISSIVE overrides namespace STRICT",
         "[" PA("default", "app", "", "{\"mtls\": {\"mode\": \"STRICT\"}}") "," PA(
                 "web", "app", "",
                 "{\"selector\": {\"matchLabels\": {\"app\": \"web\"}}, "
                 "\"mtls\": {\"mode\": \"PERMISSIVE\"}}") "]",
         "[" STATIC_STRICT "]", "app", "{\"app\": \"web\"}", "[]"},
        {"workload DISABLE counts as PERMISSIVE",
         "[" PA("default", "app", "", "{\"mtls\": {\"mode\": \"STRICT\"}}") "," PA(
                 "web", "app", "",
                 "{\"selector\": {\"matchLabels\": {\"app\": \"web\"}}, "
                 "\"mtls\": {\"mode\": \"DISABLE\"}}") "]",
         "[" STATIC_STRICT "]", "app", "{\"app\": \"web\"}", "[]"},
        {"workload STRICT in a permissive namespace",
         "[" PA("web", "app", "",
                "{\"selector\": {\"matchLabels\": {\"app\": \"web\"}}, "
                "\"mtls\": {\"mode\": \"STRICT\"}}") "]",
         "[" STATIC_STRICT "]", "app", "{\"app\": \"web\"}", "[\"" SK "\"]"},
        {"workload selector not matching: namespace mode applies",
         "[" PA("web", "app", "",
                "{\"selector\": {\"matchLabels\": {\"app\": \"web\"}}, "
                "\"mtls\": {\"mode\": \"STRICT\"}}") "]",
         "[" STATIC_STRICT "]", "app", "{\"app\": \"db\"}", "[]"},
        {"root-namespace selector PA is ignored",
         "[" PA("web", "istio-system", "",
                "{\"selector\": {\"matchLabels\": {\"app\": \"web\"}}, "
                "\"mtls\": {\"mode\": \"STRICT\"}}") "]",
         "[" STATIC_STRICT "]", "istio-system", "{\"app\": \"web\"}", "[]"},
        {"STRICT with a PERMISSIVE port: carve-out",
         "[" PA("web", "app", "",
                "{\"selector\": {\"matchLabels\": {\"app\": \"web\"}}, "
                "\"mtls\": {\"mode\": \"STRICT\"}, \"portLevelMtls\": "
                "{\"8080\": {\"mode\": \"PERMISSIVE\"}, \"9000\": {\"mode\": "
                "\"DISABLE\"}, \"9090\": {\"mode\": \"STRICT\"}}}") "]",
         "[" STATIC_STRICT ", {\"name\": \"converted_peer_authentication_web\", \"namespace\": "
         "\"app\", \"scope\": \"WorkloadSelector\", \"action\": \"Deny\", \"dryRun\": false, "
         "\"rules\": [[[{\"notPrincipals\": [{\"presence\": true}], \"notDestinationPorts\": "
         "[8080, 9000]}]]]}]",
         "app", "{\"app\": \"web\"}", "[\"app/converted_peer_authentication_web\"]"},
        {"inherited PERMISSIVE with a STRICT port",
         "[" PA("default", "app", "", "{\"mtls\": {\"mode\": \"PERMISSIVE\"}}") "," PA(
                 "web", "app", "",
                 "{\"selector\": {\"matchLabels\": {\"app\": \"web\"}}, "
                 "\"portLevelMtls\": {\"9000\": {\"mode\": \"STRICT\"}}}") "]",
         "[" STATIC_STRICT ", {\"name\": \"converted_peer_authentication_web\", \"namespace\": "
         "\"app\", \"scope\": \"WorkloadSelector\", \"action\": \"Deny\", \"dryRun\": false, "
         "\"rules\": [[[{\"notPrincipals\": [{\"presence\": true}], \"destinationPorts\": "
         "[9000]}]]]}]",
         "app", "{\"app\": \"web\"}", "[\"app/converted_peer_authentication_web\"]"},
        {"STRICT selector PA whose only port entry is UNSET (fuzzer find)",
         "[" PA("web", "app", "",
                "{\"selector\": {\"matchLabels\": {\"app\": \"web\"}}, "
                "\"mtls\": {\"mode\": \"STRICT\"}, \"portLevelMtls\": "
                "{\"8080\": {}}}") "]",
         "[" STATIC_STRICT ", {\"name\": \"converted_peer_authentication_web\", \"namespace\": "
         "\"app\", \"scope\": \"WorkloadSelector\", \"action\": \"Deny\", \"dryRun\": false, "
         "\"rules\": [[[{\"notPrincipals\": [{\"presence\": true}]}]]]}]",
         "app", "{\"app\": \"web\"}", "[\"app/converted_peer_authentication_web\"]"},
        {"oldest namespace-wide PA wins",
         "[" PA("newer", "app", "2026-02-01T00:00:00Z",
                "{\"mtls\": {\"mode\": \"PERMISSIVE\"}}") "," PA("older", "app",
                                                                 "2026-01-01T00:00:00Z",
                                                                 "{\"mtls\": {\"mode\": "
                                                                 "\"STRICT\"}}") "]",
         "[" STATIC_STRICT "]", "app", "{}", "[\"" SK "\"]"},
        {"portLevelMtls without selector is ignored",
         "[" PA("default", "app", "",
                "{\"mtls\": {\"mode\": \"STRICT\"}, \"portLevelMtls\": "
                "{\"80\": {\"mode\": \"PERMISSIVE\"}}}") "]",
         "[" STATIC_STRICT "]", "app", "{}", "[\"" SK "\"]"},
};

static void test_compile_peerauthn(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(pa_cases) / sizeof(pa_cases[0]); i++) {
        const struct pa_case *t = &pa_cases[i];
        struct dp_policy_diags d;
        json_t *pas = load(t->pas), *want = load(t->want), *got = NULL, *keys = NULL;
        json_t *labels = load(t->labels), *want_keys = load(t->want_keys);
        memset(&d, 0, sizeof(d));
        assert_int_equal(dp_policy_compile_peerauthn(pas, "istio-system", &got, &d), 0);
        if (!json_equal(got, want)) {
            char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
            print_message("got %s\n", g);
            free(g);
            fail_msg("case %zu (%s): policies differ", i, t->name);
        }
        assert_int_equal(dp_policy_peerauthn_keys(pas, "istio-system", t->ns, labels, &keys, &d),
                         0);
        if (!json_equal(keys, want_keys)) {
            char *g = json_dumps(keys, JSON_COMPACT);
            print_message("got keys %s\n", g);
            free(g);
            fail_msg("case %zu (%s): keys differ", i, t->name);
        }
        assert_int_equal(d.n_errors, 0);
        json_decref(pas);
        json_decref(want);
        json_decref(got);
        json_decref(keys);
        json_decref(labels);
        json_decref(want_keys);
    }
}

static void test_peerauthn_errors(void **state)
{
    static const struct {
        const char *pas, *err;
    } cases[] = {
            {"[" PA("a", "app", "", "{\"mtls\": {\"mode\": \"SOMETIMES\"}}") "]",
             "[0].spec.mtls.mode: expected UNSET, DISABLE, PERMISSIVE or STRICT"},
            {"[" PA("a", "app", "",
                    "{\"selector\": {\"matchLabels\": {\"a\": \"b\"}}, "
                    "\"portLevelMtls\": {\"http\": {\"mode\": \"STRICT\"}}}") "]",
             "[0].spec.portLevelMtls.http: not a port number 1..65535"},
            {"[" PA("a", "app", "",
                    "{\"selector\": {\"matchLabels\": {\"a\": \"b\"}}, "
                    "\"portLevelMtls\": {\"80\": \"STRICT\"}}") "]",
             "[0].spec.portLevelMtls.80: expected {\"mode\""},
            {"[{\"metadata\": {\"name\": \"x\"}}]",
             "[0].metadata: name and namespace are required"},
            {"{}", "<root>: expected an array"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct dp_policy_diags d;
        json_t *pas = load(cases[i].pas), *got = NULL;
        memset(&d, 0, sizeof(d));
        int r = dp_policy_compile_peerauthn(pas, "istio-system", &got, &d);
        bool not_array = !json_is_array(pas);
        if (r != (not_array ? -EINVAL : 0) || !has_diag(&d, true, cases[i].err))
            fail_msg("case %zu: r=%d want \"%s\"", i, r, cases[i].err);
        if (not_array) {
            assert_null(got);
        } else {
            /* the bad PA is skipped; nothing else to compile, so only the static policy */
            assert_int_equal(json_array_size(got), 0);
        }
        json_decref(got);
        json_decref(pas);
    }
}

static void test_peerauthn_bad_one_skipped(void **state)
{
    json_t *pas = load("[" PA("bad", "app", "", "{\"mtls\": {\"mode\": \"STRICTEST\"}}") "," PA(
            "default", "istio-system", "", "{\"mtls\": {\"mode\": \"STRICT\"}}") "]");
    json_t *got = NULL, *keys = NULL, *labels = load("{}");
    json_t *want = load("[" STATIC_STRICT "]"), *want_keys = load("[\"" SK "\"]");
    struct dp_policy_diags d;
    (void)state;
    memset(&d, 0, sizeof(d));
    assert_int_equal(dp_policy_compile_peerauthn(pas, "istio-system", &got, &d), 0);
    assert_int_equal(d.n_errors, 1);
    assert_true(has_diag(&d, true, "[0].spec.mtls.mode"));
    assert_true(json_equal(got, want));
    assert_int_equal(dp_policy_peerauthn_keys(pas, "istio-system", "app", labels, &keys, &d), 0);
    assert_true(json_equal(keys, want_keys));
    json_decref(pas);
    json_decref(got);
    json_decref(keys);
    json_decref(labels);
    json_decref(want);
    json_decref(want_keys);
}

/* STRICT end to end: plaintext is denied, HBONE (identity) passes, carve-out port allows
 * plaintext. */
static void test_peerauthn_enforce(void **state)
{
    json_t *pas = load("[" PA("web", "app", "",
                              "{\"selector\": {\"matchLabels\": {\"app\": "
                              "\"web\"}}, \"mtls\": {\"mode\": \"STRICT\"}, "
                              "\"portLevelMtls\": {\"8080\": {\"mode\": "
                              "\"PERMISSIVE\"}}}") "]");
    json_t *pols = NULL, *keys = NULL, *labels = load("{\"app\": \"web\"}");
    json_t *doc, *w;
    struct dp_policy_diags d;
    struct dp_mesh_snapshot *s = NULL;
    struct dp_policy_result res;
    struct dp_mesh_ip a = ip("10.1.0.1");
    struct dp_policy_conn c = {.src_ip = ip("10.2.0.1"), .dst_ip = a, .dst_port = 9090};
    char err[512];
    (void)state;

    memset(&d, 0, sizeof(d));
    assert_int_equal(dp_policy_compile_peerauthn(pas, "istio-system", &pols, &d), 0);
    assert_int_equal(dp_policy_peerauthn_keys(pas, "istio-system", "app", labels, &keys, &d), 0);
    w = json_pack("{ss ss ss s[s] sO}", "uid", "w", "name", "w", "namespace", "app", "addresses",
                  "10.1.0.1", "authorizationPolicies", keys);
    doc = json_pack("{s[o] sO}", "workloads", w, "policies", pols);
    assert_int_equal(dp_mesh_snapshot_from_json(doc, &s, err, sizeof(err)), 0);
    const struct dp_mesh_workload *wl = dp_mesh_workload_by_ip(s, &a);
    assert_non_null(wl);

    dp_policy_check(s, wl, &c, &res); /* plaintext to 9090 */
    assert_false(res.allowed);
    assert_string_equal(res.reason, "explicitly denied by: app/converted_peer_authentication_web");
    c.dst_port = 8080; /* carve-out */
    dp_policy_check(s, wl, &c, &res);
    assert_true(res.allowed);
    c.dst_port = 9090;
    c.identity = ID_SLEEP; /* HBONE */
    dp_policy_check(s, wl, &c, &res);
    assert_true(res.allowed);
    dp_mesh_snapshot_unref(s);
    json_decref(doc);
    json_decref(pas);
    json_decref(pols);
    json_decref(keys);
    json_decref(labels);
}

static void test_diag_overflow(void **state)
{
    /* many unknown fields: diagnostics are capped, counted, never overflow */
    json_t *cr = load(AP("app", "", "{\"rules\": [{}]}"));
    json_t *rule = json_array_get(json_object_get(json_object_get(cr, "spec"), "rules"), 0);
    json_t *out = NULL;
    struct dp_policy_diags d;
    char k[32];
    (void)state;
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof(k), "bogus%d", i);
        json_object_set_new(rule, k, json_true());
    }
    memset(&d, 0, sizeof(d));
    assert_int_equal(dp_policy_compile_authz(cr, "istio-system", &out, &d), 0);
    assert_int_equal(d.n, DP_POLICY_MAX_DIAGS);
    assert_int_equal(d.n_warnings, 100);
    assert_int_equal(d.dropped, 100 - DP_POLICY_MAX_DIAGS);
    json_decref(cr);
    json_decref(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_eval_table),
            cmocka_unit_test(test_eval_dry_run),
            cmocka_unit_test(test_check_selection),
            cmocka_unit_test(test_compile_authz),
            cmocka_unit_test(test_compile_authz_rule_errors),
            cmocka_unit_test(test_compile_authz_bad_rule_keeps_good),
            cmocka_unit_test(test_compile_authz_errors),
            cmocka_unit_test(test_compile_then_enforce),
            cmocka_unit_test(test_cr_selects),
            cmocka_unit_test(test_compile_peerauthn),
            cmocka_unit_test(test_peerauthn_errors),
            cmocka_unit_test(test_peerauthn_bad_one_skipped),
            cmocka_unit_test(test_peerauthn_enforce),
            cmocka_unit_test(test_diag_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
