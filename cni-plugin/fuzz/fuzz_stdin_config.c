/* fuzz_stdin_config.c — libFuzzer target for everything ambit-cni reads from the runtime:
 * the stdin network configuration with its prevResult (cni_conf_parse), CNI_ARGS
 * (cni_args_parse), and the conflist rewriting install does with a primary config. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cni-plugin/cni_config.h"
#include "cni-plugin/cni_install.h"
#include "cni-plugin/cni_kube.h"
#include "cni-plugin/cni_result.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cni_conf c;
    struct cni_error e;
    struct cni_env env;

    if (cni_conf_parse((const char *)data, size, &c, &e) == 0) {
        /* what ADD does with a parsed prevResult: print it back */
        if (c.prev_result) {
            char *s = json_dumps(c.prev_result, JSON_COMPACT | JSON_PRESERVE_ORDER);
            free(s);
            const char *why;
            cni_enrol_decide(&c, c.prev_result, c.prev_result, &why);
            struct dp_nft_pod_opts o;
            cni_pod_redirect_opts(&c, c.prev_result, &o);
        }
        json_t *err = cni_error_json(&e, c.cni_version);
        json_decref(err);
        cni_conf_done(&c);
    } else {
        json_t *err = cni_error_json(&e, NULL);
        json_decref(err);
    }

    /* the same bytes as CNI_ARGS */
    char *args = malloc(size + 1);
    if (args == NULL)
        return 0;
    memcpy(args, data, size);
    args[size] = 0;
    memset(&env, 0, sizeof(env));
    cni_args_parse(args, &env, &e);
    cni_version_cmp(args, "1.0.0");
    free(args);

    /* and as a primary CNI config for install */
    json_error_t je;
    json_t *primary = json_loadb((const char *)data, size, JSON_DECODE_ANY, &je);
    if (primary) {
        json_t *ours = cni_install_plugin_entry("/run/a.sock", NULL, NULL, "kube-system", false);
        json_t *out = NULL;
        bool changed;
        char eb[128];
        if (cni_install_merge(primary, ours, &out, &changed, eb, sizeof(eb)) == 0) {
            json_t *s = NULL;
            if (cni_install_strip(out, &s, &changed) == 0)
                json_decref(s);
            json_decref(out);
        }
        json_decref(ours);
        json_decref(primary);
    }
    return 0;
}
