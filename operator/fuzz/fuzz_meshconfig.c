/*
 * libFuzzer target for the MeshConfig parser (operator/meshconfig.h): the input is the text of
 * ConfigMap istio's `mesh` key, which anyone allowed to edit that ConfigMap controls. A parse
 * must either fail with a message naming the source or produce a config whose status form
 * serialises and compares equal to itself.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "operator/meshconfig.h"

#define SRC "ConfigMap istio-system/istio key mesh"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct op_meshconfig *cfg = NULL;
    json_t *unknown = NULL, *j;
    char err[512] = "";
    int r;

    r = op_meshconfig_parse((const char *)data, size, SRC, "cluster.local", "istio-system", &cfg,
                            &unknown, err, sizeof(err));
    if (r < 0) {
        if (strncmp(err, SRC, strlen(SRC)) != 0)
            abort(); /* every error names where it comes from */
        return 0;
    }
    if (cfg->trust_domain[0] == '\0' || cfg->root_ns[0] == '\0' ||
        !op_meshconfig_equal(cfg, cfg))
        abort();
    j = op_meshconfig_to_json(cfg);
    if (j == NULL)
        abort();
    free(json_dumps(j, JSON_COMPACT));
    json_decref(j);
    json_decref(unknown);
    op_meshconfig_free(cfg);
    return 0;
}
