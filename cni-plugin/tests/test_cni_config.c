/* test_cni_config.c — CNI_* environment, CNI_ARGS, stdin config and prevResult parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cni-plugin/cni_config.h"

/* fake environment */
static const char *const *fake_env;
static const char *get(const char *name)
{
    for (size_t i = 0; fake_env[i]; i += 2)
        if (strcmp(fake_env[i], name) == 0)
            return fake_env[i + 1];
    return NULL;
}

static int env_with(const char *const *vars, struct cni_env *env, struct cni_error *e)
{
    fake_env = vars;
    return cni_env_parse(get, env, e);
}

static void test_env_ok(void **state)
{
    (void)state;
    struct cni_env env;
    struct cni_error e;
    const char *const add[] = {"CNI_COMMAND", "ADD", "CNI_CONTAINERID", "abc123", "CNI_NETNS",
                               "/var/run/netns/x", "CNI_IFNAME", "eth0", "CNI_ARGS",
                               "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=web-0;"
                               "K8S_POD_UID=u-1;K8S_POD_INFRA_CONTAINER_ID=abc123",
                               NULL};
    assert_int_equal(env_with(add, &env, &e), 0);
    assert_int_equal(env.command, CNI_CMD_ADD);
    assert_string_equal(env.container_id, "abc123");
    assert_string_equal(env.netns, "/var/run/netns/x");
    assert_string_equal(env.pod_namespace, "ns1");
    assert_string_equal(env.pod_name, "web-0");
    assert_string_equal(env.pod_uid, "u-1");
    assert_string_equal(env.infra_container_id, "abc123");

    const char *const del[] = {"CNI_COMMAND", "DEL", "CNI_CONTAINERID", "abc", "CNI_IFNAME",
                               "eth0", "CNI_NETNS", "", NULL};
    assert_int_equal(env_with(del, &env, &e), 0); /* DEL needs no netns */
    assert_null(env.netns);
    const char *const ver[] = {"CNI_COMMAND", "VERSION", NULL};
    assert_int_equal(env_with(ver, &env, &e), 0);
    const char *const st[] = {"CNI_COMMAND", "STATUS", NULL};
    assert_int_equal(env_with(st, &env, &e), 0);
    assert_int_equal(env.command, CNI_CMD_STATUS);
}

static void test_env_bad(void **state)
{
    (void)state;
    struct cni_env env;
    struct cni_error e;
    struct {
        const char *const vars[12];
        const char *msg;
    } cases[] = {
            {{NULL}, "CNI_COMMAND is not set"},
            {{"CNI_COMMAND", "FROB", NULL}, "CNI_COMMAND \"FROB\" is not supported"},
            {{"CNI_COMMAND", "ADD", "CNI_NETNS", "/n", "CNI_IFNAME", "eth0", NULL},
             "CNI_CONTAINERID is not set"},
            {{"CNI_COMMAND", "ADD", "CNI_CONTAINERID", "a", "CNI_IFNAME", "eth0", NULL},
             "CNI_NETNS is not set"},
            {{"CNI_COMMAND", "CHECK", "CNI_CONTAINERID", "a", "CNI_NETNS", "/n", NULL},
             "CNI_IFNAME is not set"},
            {{"CNI_COMMAND", "ADD", "CNI_CONTAINERID", "../etc", "CNI_NETNS", "/n", "CNI_IFNAME",
              "eth0", NULL},
             "CNI_CONTAINERID is not a valid container id"},
            {{"CNI_COMMAND", "ADD", "CNI_CONTAINERID", "a", "CNI_NETNS", "/n", "CNI_IFNAME", "eth0",
              "CNI_ARGS", "K8S_POD_NAME", NULL},
             "CNI_ARGS: malformed pair at offset 0 (want KEY=VALUE)"},
            {{"CNI_COMMAND", "ADD", "CNI_CONTAINERID", "a", "CNI_NETNS", "/n", "CNI_IFNAME", "eth0",
              "CNI_ARGS", "K8S_POD_NAME=a/b", NULL},
             "CNI_ARGS: K8S_POD_NAME has an invalid character"},
            {{"CNI_COMMAND", "ADD", "CNI_CONTAINERID", "a", "CNI_NETNS", "/n", "CNI_IFNAME", "eth0",
              "CNI_ARGS", "=x", NULL},
             "CNI_ARGS: malformed pair at offset 0 (want KEY=VALUE)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(&e, 0, sizeof(e));
        assert_int_equal(env_with(cases[i].vars, &env, &e), -1);
        assert_int_equal(e.code, CNI_ERR_INVALID_ENV);
        if (strcmp(e.msg, cases[i].msg) != 0)
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, e.msg, cases[i].msg);
    }
    /* oversized CNI_ARGS / values */
    char big[CNI_ARGS_MAX + 100];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    const char *const v1[] = {"CNI_COMMAND", "ADD", "CNI_CONTAINERID", "a", "CNI_NETNS", "/n",
                              "CNI_IFNAME", "eth0", "CNI_ARGS", big, NULL};
    assert_int_equal(env_with(v1, &env, &e), -1);
    char val[400] = "K8S_POD_NAME=";
    memset(val + 13, 'b', 300);
    val[313] = 0;
    const char *const v2[] = {"CNI_COMMAND", "ADD", "CNI_CONTAINERID", "a", "CNI_NETNS", "/n",
                              "CNI_IFNAME", "eth0", "CNI_ARGS", val, NULL};
    assert_int_equal(env_with(v2, &env, &e), -1);
    assert_string_equal(e.msg, "CNI_ARGS: K8S_POD_NAME is too long");
}

static int parse(const char *j, struct cni_conf *c, struct cni_error *e)
{
    return cni_conf_parse(j, strlen(j), c, e);
}

static void test_conf_ok(void **state)
{
    (void)state;
    struct cni_conf c;
    struct cni_error e;
    const char *j = "{\"cniVersion\":\"1.0.0\",\"name\":\"k8s\",\"type\":\"ambit-cni\","
                    "\"agent_socket\":\"/run/a.sock\",\"run_dir\":\"/run/ambit\","
                    "\"kubeconfig\":\"/etc/kc\",\"dns_capture\":true,\"ipv6\":false,"
                    "\"exclude_namespaces\":[\"a\",\"b\"],\"kube_timeout_ms\":500,"
                    "\"prevResult\":{\"cniVersion\":\"1.0.0\","
                    "\"interfaces\":[{\"name\":\"eth0\",\"sandbox\":\"/n\"}],"
                    "\"ips\":[{\"address\":\"10.1.2.3/24\",\"gateway\":\"10.1.2.1\",\"interface\":0},"
                    "{\"address\":\"fd00::3/64\"}],\"dns\":{}}}";
    assert_int_equal(parse(j, &c, &e), 0);
    assert_string_equal(c.cni_version, "1.0.0");
    assert_string_equal(c.agent_socket, "/run/a.sock");
    assert_string_equal(c.run_dir, "/run/ambit");
    assert_string_equal(c.kubeconfig, "/etc/kc");
    assert_true(c.dns_capture);
    assert_false(c.ipv6);
    assert_int_equal(c.n_exclude_ns, 2);
    assert_true(cni_conf_ns_excluded(&c, "b"));
    assert_false(cni_conf_ns_excluded(&c, "kube-system"));
    assert_int_equal(c.kube_timeout_ms, 500);
    assert_int_equal(c.n_ips, 2);
    assert_string_equal(c.ip_str[0], "10.1.2.3");
    assert_string_equal(c.ip_str[1], "fd00::3");
    assert_int_equal(c.ips[1].family, AF_INET6);
    assert_non_null(c.prev_result);
    /* prevResult is kept verbatim for printing back */
    assert_non_null(json_object_get(c.prev_result, "dns"));
    cni_conf_done(&c);

    assert_int_equal(parse("{\"cniVersion\":\"0.3.1\"}", &c, &e), 0);
    assert_string_equal(c.agent_socket, CNI_DEFAULT_AGENT_SOCKET);
    assert_string_equal(c.kubeconfig, CNI_DEFAULT_KUBECONFIG);
    assert_true(cni_conf_ns_excluded(&c, "kube-system"));
    assert_null(c.prev_result);
    assert_true(c.ipv6);
    cni_conf_done(&c);
    cni_conf_done(NULL);

    assert_int_equal(parse("{\"cniVersion\":\"1.0.0\",\"prevResult\":null}", &c, &e), 0);
    assert_null(c.prev_result);
    cni_conf_done(&c);
}

static void test_conf_bad(void **state)
{
    (void)state;
    struct cni_conf c;
    struct cni_error e;
    struct {
        const char *in;
        int code;
        const char *msg_prefix;
    } cases[] = {
            {"", CNI_ERR_DECODE, "no network configuration"},
            {"{", CNI_ERR_DECODE, "network configuration is not valid JSON"},
            {"\x00\x01\x02", CNI_ERR_DECODE, "network configuration is not valid JSON"},
            {"[]", CNI_ERR_DECODE, "network configuration must be a JSON object, got array"},
            {"{}", CNI_ERR_INVALID_CONFIG, "cniVersion"},
            {"{\"cniVersion\":1}", CNI_ERR_INVALID_CONFIG, "cniVersion"},
            {"{\"cniVersion\":\"0.2.0\"}", CNI_ERR_INCOMPATIBLE_VERSION, "cniVersion \"0.2.0\""},
            {"{\"cniVersion\":\"1.0.0\",\"agent_socket\":\"rel\"}", CNI_ERR_INVALID_CONFIG,
             "agent_socket: must be an absolute path"},
            {"{\"cniVersion\":\"1.0.0\",\"dns_capture\":\"yes\"}", CNI_ERR_INVALID_CONFIG,
             "dns_capture"},
            {"{\"cniVersion\":\"1.0.0\",\"kube_timeout_ms\":1}", CNI_ERR_INVALID_CONFIG,
             "kube_timeout_ms"},
            {"{\"cniVersion\":\"1.0.0\",\"exclude_namespaces\":[1]}", CNI_ERR_INVALID_CONFIG,
             "exclude_namespaces[0]"},
            {"{\"cniVersion\":\"1.0.0\",\"prevResult\":[]}", CNI_ERR_INVALID_CONFIG,
             "prevResult: expected object"},
            {"{\"cniVersion\":\"1.0.0\",\"prevResult\":{\"ips\":{}}}", CNI_ERR_INVALID_CONFIG,
             "prevResult.ips"},
            {"{\"cniVersion\":\"1.0.0\",\"prevResult\":{\"ips\":[{\"address\":\"x\"}]}}",
             CNI_ERR_INVALID_CONFIG, "prevResult.ips[0].address: not an IP address"},
            {"{\"cniVersion\":\"1.0.0\",\"prevResult\":{\"ips\":[{}]}}", CNI_ERR_INVALID_CONFIG,
             "prevResult.ips[0].address"},
            {"{\"cniVersion\":\"1.0.0\",\"prevResult\":{\"ips\":[{\"address\":\"1.2.3.4/8\","
             "\"interface\":3}],\"interfaces\":[{\"name\":\"eth0\"}]}}",
             CNI_ERR_INVALID_CONFIG, "prevResult.ips[0].interface"},
            {"{\"cniVersion\":\"1.0.0\",\"prevResult\":{\"interfaces\":[{}]}}",
             CNI_ERR_INVALID_CONFIG, "prevResult.interfaces[0].name"},
            {"{\"cniVersion\":\"1.0.0\",\"name\":\"a\\u0001b\"}", CNI_ERR_INVALID_CONFIG, "name"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(&e, 0, sizeof(e));
        size_t len = i == 2 ? 3 : strlen(cases[i].in);
        assert_int_equal(cni_conf_parse(cases[i].in, len, &c, &e), -1);
        if (e.code != (enum cni_code)cases[i].code ||
            strncmp(e.msg, cases[i].msg_prefix, strlen(cases[i].msg_prefix)) != 0)
            fail_msg("case %zu: got %d \"%s\", want %d \"%s...\"", i, e.code, e.msg,
                     cases[i].code, cases[i].msg_prefix);
    }
    /* too many addresses */
    char big[8192] = "{\"cniVersion\":\"1.0.0\",\"prevResult\":{\"ips\":[";
    for (int i = 0; i < CNI_MAX_IPS + 1; i++)
        strcat(big, i ? ",{\"address\":\"1.1.1.1\"}" : "{\"address\":\"1.1.1.1\"}");
    strcat(big, "]}}");
    assert_int_equal(parse(big, &c, &e), -1);
    assert_int_equal(e.code, CNI_ERR_INVALID_CONFIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_env_ok),
            cmocka_unit_test(test_env_bad),
            cmocka_unit_test(test_conf_ok),
            cmocka_unit_test(test_conf_bad),
    };
    return cmocka_run_group_tests_name("cni_config", tests, NULL, NULL);
}
