/* Unit tests for kube.c and kube_config.c: paths, selectors, errors, TokenReview, kubeconfig. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "curlx.h"
#include "kube.h"
#include "kube_config.h"

static void test_paths(void **state)
{
    struct dp_kube_list_opts o = {.label_selector = "app=reviews,version in (v1,v2)",
                                  .field_selector = "spec.nodeName=node-1",
                                  .limit = 100,
                                  .continue_token = "abc+/=",
                                  .resource_version = "42",
                                  .watch = true,
                                  .allow_bookmarks = true,
                                  .timeout_seconds = 300};
    char *p = NULL;

    (void)state;
    assert_int_equal(dp_kube_path(&DP_KUBE_RES_PODS, NULL, NULL, NULL, NULL, &p), 0);
    assert_string_equal(p, "/api/v1/pods");
    free(p);
    assert_int_equal(dp_kube_path(&DP_KUBE_RES_PODS, "bookinfo", "r-1", "status", NULL, &p), 0);
    assert_string_equal(p, "/api/v1/namespaces/bookinfo/pods/r-1/status");
    free(p);
    /* cluster-scoped resources ignore the namespace */
    assert_int_equal(dp_kube_path(&DP_KUBE_RES_NODES, "x", "node-1", NULL, NULL, &p), 0);
    assert_string_equal(p, "/api/v1/nodes/node-1");
    free(p);
    assert_int_equal(dp_kube_path(&DP_KUBE_RES_AUTHORIZATIONPOLICIES, "ns1", NULL, NULL, &o, &p),
                     0);
    assert_string_equal(p, "/apis/security.istio.io/v1/namespaces/ns1/authorizationpolicies"
                           "?labelSelector=app%3Dreviews%2Cversion%20in%20%28v1%2Cv2%29"
                           "&fieldSelector=spec.nodeName%3Dnode-1&limit=100&continue=abc%2B%2F%3D"
                           "&resourceVersion=42&watch=true&allowWatchBookmarks=true"
                           "&timeoutSeconds=300");
    free(p);
    assert_int_equal(dp_kube_path(&DP_KUBE_RES_MESHES, NULL, "default", NULL, NULL, &p), 0);
    assert_string_equal(p, "/apis/install.ambit.dev/v1alpha1/meshes/default");
    free(p);
    assert_int_equal(dp_kube_path(&DP_KUBE_RES_VALIDATING_WEBHOOK_CONFIGS, "ignored", "v", NULL,
                                  NULL, &p),
                     0);
    assert_string_equal(p, "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/v");
    free(p);
    /* hostile segments */
    assert_int_equal(dp_kube_path(&DP_KUBE_RES_PODS, "a/b", "x", NULL, NULL, &p), -EINVAL);
    assert_int_equal(dp_kube_path(&DP_KUBE_RES_PODS, "ns", "..", NULL, NULL, &p), -EINVAL);
    assert_int_equal(dp_kube_path(&DP_KUBE_RES_PODS, "ns", "a?b", NULL, NULL, &p), -EINVAL);
    assert_int_equal(dp_kube_path(&DP_KUBE_RES_PODS, "ns", "a%2f", NULL, NULL, &p), -EINVAL);
    assert_int_equal(dp_kube_path(&DP_KUBE_RES_PODS, "ns", "", NULL, NULL, &p), -EINVAL);
    assert_int_equal(dp_kube_path(&DP_KUBE_RES_PODS, "ns", NULL, "status", NULL, &p), -EINVAL);
    assert_int_equal(dp_kube_path(&DP_KUBE_RES_PODS, "ns", "a b", NULL, NULL, &p), -EINVAL);
}

static void test_http_errno(void **state)
{
    (void)state;
    assert_int_equal(dp_kube_http_errno(200, NULL), 0);
    assert_int_equal(dp_kube_http_errno(201, NULL), 0);
    assert_int_equal(dp_kube_http_errno(404, "NotFound"), -ENOENT);
    assert_int_equal(dp_kube_http_errno(409, "AlreadyExists"), -EEXIST);
    assert_int_equal(dp_kube_http_errno(409, "Conflict"), -EBUSY);
    assert_int_equal(dp_kube_http_errno(410, "Expired"), -ESTALE);
    assert_int_equal(dp_kube_http_errno(401, NULL), -EACCES);
    assert_int_equal(dp_kube_http_errno(403, NULL), -EPERM);
    assert_int_equal(dp_kube_http_errno(422, "Invalid"), -EINVAL);
    assert_int_equal(dp_kube_http_errno(429, NULL), -EAGAIN);
    assert_int_equal(dp_kube_http_errno(503, NULL), -EIO);
}

static void test_selectors(void **state)
{
    json_t *labels = json_pack("{s:s,s:s,s:s}", "app", "reviews", "version", "v1",
                               "istio.io/rev", "");
    static const struct {
        const char *sel;
        int want;
    } cases[] = {
            {"", 1},
            {"app=reviews", 1},
            {"app==reviews", 1},
            {"app=ratings", 0},
            {"app!=ratings", 1},
            {"app!=reviews", 0},
            {"app", 1},
            {"!app", 0},
            {"!missing", 1},
            {"missing", 0},
            {"missing!=x", 1},
            {"app=reviews, version=v1", 1},
            {"app=reviews,version=v2", 0},
            {"version in (v1, v2)", 1},
            {"version in (v2,v3)", 0},
            {"version notin (v2)", 1},
            {"version notin (v1)", 0},
            {"missing notin (v1)", 1},
            {"istio.io/rev=", 1},
            {"app=", 0},
            {"=x", -EINVAL},
            {"app=reviews,", 1},
            {"version in v1", -EINVAL},
            {"version in (v1", -EINVAL},
            {"app=rev iews", -EINVAL},
            {"app>1", -EINVAL},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = dp_kube_selector_matches(cases[i].sel, labels);

        if (got != cases[i].want)
            fail_msg("selector \"%s\": got %d want %d", cases[i].sel, got, cases[i].want);
    }
    json_decref(labels);
}

static void test_label_selector_object(void **state)
{
    json_t *labels = json_pack("{s:s,s:s}", "app", "reviews", "version", "v1");
    json_t *sel;

    (void)state;
    assert_int_equal(dp_kube_label_selector_matches(NULL, labels), 1);
    sel = json_pack("{s:{s:s}}", "matchLabels", "app", "reviews");
    assert_int_equal(dp_kube_label_selector_matches(sel, labels), 1);
    json_decref(sel);
    sel = json_pack("{s:{s:s}}", "matchLabels", "app", "ratings");
    assert_int_equal(dp_kube_label_selector_matches(sel, labels), 0);
    json_decref(sel);
    sel = json_pack("{s:[{s:s,s:s,s:[s,s]}]}", "matchExpressions", "key", "version", "operator",
                    "In", "values", "v1", "v2");
    assert_int_equal(dp_kube_label_selector_matches(sel, labels), 1);
    json_decref(sel);
    sel = json_pack("{s:[{s:s,s:s}]}", "matchExpressions", "key", "tier", "operator", "Exists");
    assert_int_equal(dp_kube_label_selector_matches(sel, labels), 0);
    json_decref(sel);
    sel = json_pack("{s:[{s:s,s:s}]}", "matchExpressions", "key", "tier", "operator", "Bogus");
    assert_int_equal(dp_kube_label_selector_matches(sel, labels), -EINVAL);
    json_decref(sel);
    json_decref(labels);
}

static void test_token_review(void **state)
{
    struct dp_kube_token_info ti;
    json_t *body, *resp;
    char *s;

    (void)state;
    body = dp_kube_token_review_body("tok", "istio-ca");
    s = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(s, "{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenReview\","
                           "\"spec\":{\"audiences\":[\"istio-ca\"],\"token\":\"tok\"}}");
    free(s);
    json_decref(body);

    resp = json_loads("{\"status\":{\"authenticated\":true,\"user\":{\"username\":"
                      "\"system:serviceaccount:istio-system:ztunnel\",\"uid\":\"u1\",\"extra\":{"
                      "\"authentication.kubernetes.io/pod-name\":[\"ztunnel-abc\"],"
                      "\"authentication.kubernetes.io/pod-uid\":[\"p-uid\"],"
                      "\"authentication.kubernetes.io/node-name\":[\"node-1\"]}}}}",
                      0, NULL);
    assert_int_equal(dp_kube_token_review_parse(resp, &ti), 0);
    assert_true(ti.authenticated);
    assert_string_equal(ti.sa_namespace, "istio-system");
    assert_string_equal(ti.sa_name, "ztunnel");
    assert_string_equal(ti.pod_name, "ztunnel-abc");
    assert_string_equal(ti.pod_uid, "p-uid");
    assert_string_equal(ti.node_name, "node-1");
    dp_kube_token_info_done(&ti);
    json_decref(resp);

    resp = json_loads("{\"status\":{\"authenticated\":false,\"error\":\"token expired\"}}", 0,
                      NULL);
    assert_int_equal(dp_kube_token_review_parse(resp, &ti), 0);
    assert_false(ti.authenticated);
    assert_string_equal(ti.error, "token expired");
    assert_null(ti.sa_name);
    dp_kube_token_info_done(&ti);
    json_decref(resp);

    /* a user that is not a service account, and a malformed SA name */
    resp = json_loads("{\"status\":{\"authenticated\":true,\"user\":{\"username\":"
                      "\"system:serviceaccount:a:b:c\"}}}",
                      0, NULL);
    assert_int_equal(dp_kube_token_review_parse(resp, &ti), 0);
    assert_null(ti.sa_name);
    dp_kube_token_info_done(&ti);
    json_decref(resp);

    resp = json_loads("{\"kind\":\"Status\"}", 0, NULL);
    assert_int_equal(dp_kube_token_review_parse(resp, &ti), -EINVAL);
    json_decref(resp);
}

static void test_base64(void **state)
{
    char *out;
    size_t n;

    (void)state;
    assert_int_equal(dp_kube_base64_decode("aGVsbG8gd29ybGQ=", 16, &out, &n), 0);
    assert_int_equal(n, 11);
    assert_string_equal(out, "hello world");
    free(out);
    assert_int_equal(dp_kube_base64_decode("aGVs\nbG8=\n", 10, &out, &n), 0);
    assert_string_equal(out, "hello");
    free(out);
    assert_int_equal(dp_kube_base64_decode("", 0, &out, &n), 0);
    assert_int_equal(n, 0);
    free(out);
    assert_int_equal(dp_kube_base64_decode("aGVs*G8=", 8, &out, &n), -EINVAL);
    assert_int_equal(dp_kube_base64_decode("aG=Vs", 5, &out, &n), -EINVAL);
    assert_int_equal(dp_kube_base64_decode("a", 1, &out, &n), -EINVAL);
}

static const char KUBECONFIG[] = "apiVersion: v1\n"
                                 "kind: Config\n"
                                 "current-context: admin@local\n"
                                 "clusters:\n"
                                 "- name: local\n"
                                 "  cluster:\n"
                                 "    server: https://127.0.0.1:6443/\n"
                                 "    certificate-authority-data: LS0tLS1CRUdJTg==\n"
                                 "- name: other\n"
                                 "  cluster:\n"
                                 "    server: https://10.0.0.1:443\n"
                                 "    certificate-authority: pki/ca.crt\n"
                                 "    insecure-skip-tls-verify: false\n"
                                 "users:\n"
                                 "- name: admin\n"
                                 "  user:\n"
                                 "    client-certificate-data: Y2VydA==\n"
                                 "    client-key-data: a2V5\n"
                                 "- name: bot\n"
                                 "  user:\n"
                                 "    tokenFile: tok\n"
                                 "contexts:\n"
                                 "- name: admin@local\n"
                                 "  context: {cluster: local, user: admin}\n"
                                 "- name: bot@other\n"
                                 "  context: {cluster: other, user: bot, namespace: istio-system}\n";

static void test_kubeconfig(void **state)
{
    struct dp_kube_config *cfg = NULL;
    char err[256];

    (void)state;
    assert_int_equal(dp_kube_config_parse_kubeconfig(KUBECONFIG, sizeof(KUBECONFIG) - 1, "kc",
                                                     "/etc/k", NULL, &cfg, err, sizeof(err)),
                     0);
    assert_string_equal(cfg->server, "https://127.0.0.1:6443");
    assert_string_equal(cfg->context, "admin@local");
    assert_int_equal(cfg->ca_pem_len, 10);
    assert_memory_equal(cfg->ca_pem, "-----BEGIN", 10);
    assert_string_equal(cfg->cert_pem, "cert");
    assert_string_equal(cfg->key_pem, "key");
    assert_null(cfg->token);
    assert_null(cfg->namespace);
    dp_kube_config_free(cfg);

    assert_int_equal(dp_kube_config_parse_kubeconfig(KUBECONFIG, sizeof(KUBECONFIG) - 1, "kc",
                                                     "/etc/k", "bot@other", &cfg, err, sizeof(err)),
                     0);
    assert_string_equal(cfg->server, "https://10.0.0.1:443");
    assert_string_equal(cfg->ca_file, "/etc/k/pki/ca.crt");
    assert_string_equal(cfg->token_file, "/etc/k/tok");
    assert_string_equal(cfg->namespace, "istio-system");
    assert_null(cfg->cert_pem);
    dp_kube_config_free(cfg);

    assert_int_equal(dp_kube_config_parse_kubeconfig(KUBECONFIG, sizeof(KUBECONFIG) - 1, "kc",
                                                     NULL, "nope", &cfg, err, sizeof(err)),
                     -ENOENT);
    assert_non_null(strstr(err, "\"nope\" not found"));
}

static void test_kubeconfig_bad(void **state)
{
    static const char *bad[] = {
            "- a\n- b\n",
            "contexts: []\n",
            "current-context: c\ncontexts: [{name: c, context: {cluster: x}}]\n",
            "current-context: c\ncontexts: [{name: c, context: {user: u}}]\n",
            "current-context: c\ncontexts: [{name: c, context: {cluster: x}}]\n"
            "clusters: [{name: x, cluster: {server: ftp://a}}]\n",
            "current-context: c\ncontexts: [{name: c, context: {cluster: x}}]\n"
            "clusters: [{name: x, cluster: {server: https://a, certificate-authority-data: '*'}}]\n",
            "current-context: c\ncontexts: [{name: c, context: {cluster: x, user: u}}]\n"
            "clusters: [{name: x, cluster: {server: https://a}}]\n"
            "users: [{name: u, user: {client-certificate-data: Y2VydA==}}]\n",
            "current-context: c\ncontexts: [{name: c, context: {cluster: x, user: u}}]\n"
            "clusters: [{name: x, cluster: {server: https://a}}]\n"
            "users: [{name: u, user: {token: [1]}}]\n",
            "current-context: c\ncontexts: [{name: c, context: {cluster: x}}]\n"
            "clusters: [{name: x, cluster: {server: https://a, insecure-skip-tls-verify: yes}}]\n",
            "{{{\n",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct dp_kube_config *cfg = NULL;
        char err[256] = "";
        int r = dp_kube_config_parse_kubeconfig(bad[i], strlen(bad[i]), "bad", NULL, NULL, &cfg,
                                                err, sizeof(err));

        if (r >= 0)
            fail_msg("case %zu accepted", i);
        assert_null(cfg);
        assert_true(err[0] != '\0');
    }
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_in_cluster_and_rotation(void **state)
{
    char dir[] = "/tmp/amb-kube-XXXXXX", path[256], err[256];
    struct dp_kube_config *cfg = NULL;
    const char *tok;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/token", dir);
    write_file(path, "tok-1\n");
    snprintf(path, sizeof(path), "%s/namespace", dir);
    write_file(path, "istio-system");
    setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    assert_int_equal(dp_kube_config_in_cluster(dir, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->server, "https://[fd00::1]:443");
    assert_string_equal(cfg->namespace, "istio-system");
    tok = dp_kube_config_token(cfg, 1000, 60000, false);
    assert_string_equal(tok, "tok-1");
    snprintf(path, sizeof(path), "%s/token", dir);
    write_file(path, "tok-2");
    /* cached until max age */
    assert_string_equal(dp_kube_config_token(cfg, 2000, 60000, false), "tok-1");
    assert_string_equal(dp_kube_config_token(cfg, 61000, 60000, false), "tok-2");
    write_file(path, "tok-3");
    assert_string_equal(dp_kube_config_token(cfg, 61001, 60000, true), "tok-3");
    /* a vanished token file keeps the last token */
    unlink(path);
    assert_string_equal(dp_kube_config_token(cfg, 200000, 60000, true), "tok-3");
    dp_kube_config_free(cfg);

    unsetenv("KUBERNETES_SERVICE_HOST");
    assert_int_equal(dp_kube_config_in_cluster(dir, &cfg, err, sizeof(err)), -ENOENT);
    snprintf(path, sizeof(path), "%s/namespace", dir);
    unlink(path);
    rmdir(dir);
}

static void test_token_file(void **state)
{
    char dir[] = "/tmp/amb-tok-XXXXXX", path[256];
    char *tok = NULL;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/token", dir);
    write_file(path, "  eyJ.abc.def \r\n");
    assert_int_equal(dp_kube_read_token_file(path, &tok), 0);
    assert_string_equal(tok, "eyJ.abc.def");
    free(tok);
    tok = NULL;
    write_file(path, " \n");
    assert_int_equal(dp_kube_read_token_file(path, &tok), -ENODATA);
    assert_null(tok);
    unlink(path);
    assert_int_equal(dp_kube_read_token_file(path, &tok), -ENOENT);
    assert_int_equal(dp_kube_read_token_file(NULL, &tok), -EINVAL);
    rmdir(dir);
}

static void test_curl_sink(void **state)
{
    struct dp_curl_sink s = {0};
    char chunk[100];

    (void)state;
    memset(chunk, 'x', sizeof(chunk));
    assert_int_equal(dp_buf_new(16, 250, &s.buf), 0);
    assert_int_equal(dp_curl_sink_write(chunk, 1, 100, &s), 100);
    assert_int_equal(dp_curl_sink_write(chunk, 10, 10, &s), 100);
    assert_int_equal(s.buf->len, 200);
    assert_int_equal(s.err, 0);
    /* past the buffer's limit the transfer is aborted with -EMSGSIZE */
    assert_int_equal(dp_curl_sink_write(chunk, 1, 100, &s), 0);
    assert_int_equal(s.err, -EMSGSIZE);
    dp_buf_free(s.buf);

    assert_int_equal(dp_curl_errno(CURLE_OK), 0);
    assert_int_equal(dp_curl_errno(CURLE_COULDNT_CONNECT), -ECONNREFUSED);
    assert_int_equal(dp_curl_errno(CURLE_OPERATION_TIMEDOUT), -ETIMEDOUT);
    assert_int_equal(dp_curl_errno(CURLE_WRITE_ERROR), -EMSGSIZE);
    assert_int_equal(dp_curl_errno(CURLE_RECV_ERROR), -ECONNRESET);
    assert_int_equal(dp_curl_errno(CURLE_SSL_CONNECT_ERROR), -EPROTO);
}

static void test_obj_helpers(void **state)
{
    json_t *o = json_loads("{\"metadata\":{\"name\":\"n\",\"namespace\":\"ns\",\"labels\":"
                           "{\"app\":\"x\"},\"annotations\":{\"a\":\"b\"}}}",
                           0, NULL);
    char key[16];

    (void)state;
    assert_string_equal(dp_kube_label(o, "app"), "x");
    assert_null(dp_kube_label(o, "nope"));
    assert_string_equal(dp_kube_annotation(o, "a"), "b");
    assert_int_equal(dp_kube_obj_key(o, key, sizeof(key)), 0);
    assert_string_equal(key, "ns/n");
    assert_int_equal(dp_kube_obj_key(o, key, 3), -ENAMETOOLONG);
    json_decref(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_paths),
            cmocka_unit_test(test_http_errno),
            cmocka_unit_test(test_selectors),
            cmocka_unit_test(test_label_selector_object),
            cmocka_unit_test(test_token_review),
            cmocka_unit_test(test_base64),
            cmocka_unit_test(test_kubeconfig),
            cmocka_unit_test(test_kubeconfig_bad),
            cmocka_unit_test(test_in_cluster_and_rotation),
            cmocka_unit_test(test_token_file),
            cmocka_unit_test(test_curl_sink),
            cmocka_unit_test(test_obj_helpers),
    };

    return cmocka_run_group_tests_name("kube", tests, NULL, NULL);
}
