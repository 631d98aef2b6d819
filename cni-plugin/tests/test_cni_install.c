/* test_cni_install.c — conflist rewriting (pure) and install/uninstall on a temp directory. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cni-plugin/cni_install.h"
#include "kube_config.h"

static json_t *J(const char *s)
{
    json_error_t je;
    json_t *j = json_loads(s, JSON_DECODE_ANY, &je);
    if (j == NULL)
        fail_msg("bad test JSON: %s", je.text);
    return j;
}

static void assert_json(const json_t *got, const char *want)
{
    json_t *w = J(want);
    if (!json_equal(got, w)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
        fail_msg("got %s\nwant %s", g, want);
    }
    json_decref(w);
}

static json_t *ours(void)
{
    return cni_install_plugin_entry("/run/ambit/cni.sock", NULL, "/etc/cni/net.d/kc",
                                    "kube-system,ambit", false);
}

#define OURS                                                                                   \
    "{\"type\":\"ambit-cni\",\"agent_socket\":\"/run/ambit/cni.sock\","                        \
    "\"kubeconfig\":\"/etc/cni/net.d/kc\",\"exclude_namespaces\":[\"kube-system\",\"ambit\"]}"

static void test_merge_single_conf(void **state)
{
    (void)state;
    json_t *p = J("{\"cniVersion\":\"0.4.0\",\"name\":\"k8s\",\"type\":\"bridge\","
                  "\"bridge\":\"cni0\",\"ipam\":{\"type\":\"host-local\"}}");
    json_t *o = ours(), *out = NULL;
    bool changed = false;
    char err[128];
    assert_int_equal(cni_install_merge(p, o, &out, &changed, err, sizeof(err)), 0);
    assert_true(changed);
    assert_json(out, "{\"cniVersion\":\"0.4.0\",\"name\":\"k8s\",\"plugins\":["
                     "{\"type\":\"bridge\",\"bridge\":\"cni0\",\"ipam\":{\"type\":\"host-local\"}},"
                     OURS "]}");
    /* merging again is a no-op */
    json_t *again = NULL;
    assert_int_equal(cni_install_merge(out, o, &again, &changed, err, sizeof(err)), 0);
    assert_false(changed);
    json_decref(again);
    json_decref(out);
    json_decref(p);
    json_decref(o);
}

static void test_merge_conflist(void **state)
{
    (void)state;
    json_t *o = ours(), *out = NULL;
    bool changed;
    char err[128];
    /* an old entry of ours in the middle is replaced and moved last */
    json_t *p = J("{\"cniVersion\":\"1.0.0\",\"name\":\"net\",\"plugins\":["
                  "{\"type\":\"calico\"},{\"type\":\"ambit-cni\",\"agent_socket\":\"/old\"},"
                  "{\"type\":\"portmap\",\"capabilities\":{\"portMappings\":true}}]}");
    assert_int_equal(cni_install_merge(p, o, &out, &changed, err, sizeof(err)), 0);
    assert_true(changed);
    assert_json(out, "{\"cniVersion\":\"1.0.0\",\"name\":\"net\",\"plugins\":["
                     "{\"type\":\"calico\"},"
                     "{\"type\":\"portmap\",\"capabilities\":{\"portMappings\":true}}," OURS "]}");
    /* strip restores the list without us */
    json_t *s = NULL;
    assert_int_equal(cni_install_strip(out, &s, &changed), 0);
    assert_true(changed);
    assert_json(s, "{\"cniVersion\":\"1.0.0\",\"name\":\"net\",\"plugins\":["
                   "{\"type\":\"calico\"},"
                   "{\"type\":\"portmap\",\"capabilities\":{\"portMappings\":true}}]}");
    json_t *s2 = NULL;
    assert_int_equal(cni_install_strip(s, &s2, &changed), 0);
    assert_false(changed);
    json_decref(s2);
    json_decref(s);
    json_decref(out);
    json_decref(p);
    json_decref(o);
}

static void test_merge_bad(void **state)
{
    (void)state;
    json_t *o = ours(), *out = (void *)0x1;
    bool changed;
    char err[128];
    const char *bad[] = {
            "[]",
            "{\"name\":\"x\"}",
            "{\"plugins\":[]}",
            "{\"plugins\":{}}",
            "{\"plugins\":[1]}",
            "{\"plugins\":[{\"type\":\"ambit-cni\"}]}",
            "{\"type\":\"ambit-cni\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *p = J(bad[i]);
        err[0] = 0;
        assert_int_equal(cni_install_merge(p, o, &out, &changed, err, sizeof(err)), -EINVAL);
        assert_true(err[0] != 0);
        json_decref(p);
    }
    assert_ptr_equal(out, (void *)0x1);
    json_t *p = J("{\"type\":\"bridge\"}");
    assert_int_equal(cni_install_strip(p, &out, &changed), -EINVAL);
    json_decref(p);
    json_decref(o);
}

/* ---- file system */

static char tmpdir[64];

static void write_file(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
}

static json_t *load(const char *path)
{
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (j == NULL)
        fail_msg("%s: %s", path, je.text);
    return j;
}

static void test_install_files(void **state)
{
    (void)state;
    char bin[128], conf[128], self[128], p[256];
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/amb-cni-inst.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    snprintf(bin, sizeof(bin), "%s/bin", tmpdir);
    snprintf(conf, sizeof(conf), "%s/net.d", tmpdir);
    snprintf(self, sizeof(self), "%s/self", tmpdir);
    assert_int_equal(mkdir(bin, 0755), 0);
    assert_int_equal(mkdir(conf, 0755), 0);
    write_file(self, "#!/bin/sh\necho fake plugin\n");

    json_t *o = ours();
    struct cni_install_opts opts = {.bin_dir = bin, .conf_dir = conf, .self = self, .plugin = o};
    char err[256] = "";

    /* no primary config yet: a clear error, binary already in place */
    assert_int_equal(cni_install(&opts, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "no primary CNI config"));

    write_file(strcat(strcpy(p, conf), "/10-bridge.conf"),
               "{\"cniVersion\":\"0.3.1\",\"name\":\"k8s\",\"type\":\"bridge\"}");
    write_file(strcat(strcpy(p, conf), "/99-later.conflist"),
               "{\"cniVersion\":\"0.3.1\",\"name\":\"other\",\"plugins\":[{\"type\":\"ptp\"}]}");
    write_file(strcat(strcpy(p, conf), "/README"), "not a config");
    assert_int_equal(cni_install(&opts, err, sizeof(err)), 0);

    struct stat st;
    assert_int_equal(stat(strcat(strcpy(p, bin), "/ambit-cni"), &st), 0);
    assert_true(st.st_mode & 0100);
    assert_int_equal(stat(strcat(strcpy(p, conf), "/10-bridge.conf"), &st), -1); /* converted */
    json_t *j = load(strcat(strcpy(p, conf), "/10-bridge.conflist"));
    assert_json(j, "{\"cniVersion\":\"0.3.1\",\"name\":\"k8s\",\"plugins\":[{\"type\":\"bridge\"},"
                   OURS "]}");
    json_decref(j);
    /* the lexically later config is untouched */
    j = load(strcat(strcpy(p, conf), "/99-later.conflist"));
    assert_int_equal(json_array_size(json_object_get(j, "plugins")), 1);
    json_decref(j);

    /* idempotent: second install leaves the file byte-identical (not even rewritten) */
    assert_int_equal(stat(strcat(strcpy(p, conf), "/10-bridge.conflist"), &st), 0);
    ino_t ino = st.st_ino;
    assert_int_equal(cni_install(&opts, err, sizeof(err)), 0);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_ino, ino);

    /* the primary CNI rewrites its file without us: install puts us back */
    write_file(p, "{\"cniVersion\":\"0.3.1\",\"name\":\"k8s\",\"plugins\":[{\"type\":\"bridge\"}]}");
    assert_int_equal(cni_install(&opts, err, sizeof(err)), 0);
    j = load(p);
    assert_int_equal(json_array_size(json_object_get(j, "plugins")), 2);
    json_decref(j);

    assert_int_equal(cni_uninstall(&opts, err, sizeof(err)), 0);
    j = load(p);
    assert_json(j, "{\"cniVersion\":\"0.3.1\",\"name\":\"k8s\",\"plugins\":[{\"type\":\"bridge\"}]}");
    json_decref(j);
    assert_int_equal(stat(strcat(strcpy(p, bin), "/ambit-cni"), &st), -1);
    assert_int_equal(cni_uninstall(&opts, err, sizeof(err)), 0); /* twice is fine */

    /* a broken primary config is reported, not overwritten */
    write_file(strcat(strcpy(p, conf), "/05-broken.conf"), "{nope");
    assert_int_equal(cni_install(&opts, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "05-broken.conf"));

    json_decref(o);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    assert_int_equal(system(cmd), 0);
}

static void test_write_kubeconfig(void **state)
{
    (void)state;
    char dir[64] = "/tmp/amb-cni-kc.XXXXXX", p[128], kc[128], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(p, sizeof(p), "%s/ca.crt", dir);
    write_file(p, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    snprintf(p, sizeof(p), "%s/token", dir);
    write_file(p, "tok-1\n");
    snprintf(kc, sizeof(kc), "%s/kubeconfig", dir);

    assert_int_equal(cni_install_write_kubeconfig(kc, dir, "10.96.0.1", "443", err, sizeof(err)), 1);
    struct stat st;
    assert_int_equal(stat(kc, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    json_t *j = load(kc);
    json_t *cl = json_object_get(json_array_get(json_object_get(j, "clusters"), 0), "cluster");
    assert_string_equal(json_string_value(json_object_get(cl, "server")), "https://10.96.0.1:443");
    /* base64 of the CA file */
    assert_string_equal(json_string_value(json_object_get(cl, "certificate-authority-data")),
                        "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=");
    json_t *u = json_object_get(json_array_get(json_object_get(j, "users"), 0), "user");
    assert_string_equal(json_string_value(json_object_get(u, "token")), "tok-1");
    assert_string_equal(json_string_value(json_object_get(j, "current-context")), "ambit-cni");
    json_decref(j);
    /* and the plugin's kube client reads it */
    struct dp_kube_config *cfg = NULL;
    assert_int_equal(dp_kube_config_load_kubeconfig(kc, NULL, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->server, "https://10.96.0.1:443");
    assert_string_equal(cfg->token, "tok-1");
    assert_non_null(cfg->ca_pem);
    dp_kube_config_free(cfg);

    /* unchanged -> not rewritten; rotated token -> rewritten */
    assert_int_equal(cni_install_write_kubeconfig(kc, dir, "10.96.0.1", "443", err, sizeof(err)), 0);
    write_file(p, "tok-2");
    assert_int_equal(cni_install_write_kubeconfig(kc, dir, "10.96.0.1", "443", err, sizeof(err)), 1);
    j = load(kc);
    u = json_object_get(json_array_get(json_object_get(j, "users"), 0), "user");
    assert_string_equal(json_string_value(json_object_get(u, "token")), "tok-2");
    json_decref(j);
    /* IPv6 service address */
    assert_int_equal(cni_install_write_kubeconfig(kc, dir, "fd00::1", "443", err, sizeof(err)), 1);
    j = load(kc);
    cl = json_object_get(json_array_get(json_object_get(j, "clusters"), 0), "cluster");
    assert_string_equal(json_string_value(json_object_get(cl, "server")), "https://[fd00::1]:443");
    json_decref(j);

    assert_int_equal(cni_install_write_kubeconfig(kc, dir, NULL, "443", err, sizeof(err)), -ENOENT);
    assert_int_equal(cni_install_write_kubeconfig(kc, "/nonexistent-amb", "h", "1", err, sizeof(err)),
                     -ENOENT);
    assert_non_null(strstr(err, "ca.crt"));
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_merge_single_conf),
            cmocka_unit_test(test_merge_conflist),
            cmocka_unit_test(test_merge_bad),
            cmocka_unit_test(test_install_files),
            cmocka_unit_test(test_write_kubeconfig),
    };
    return cmocka_run_group_tests_name("cni_install", tests, NULL, NULL);
}
