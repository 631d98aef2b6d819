/*
 * libFuzzer target for the snapshot builder: the input is a JSON array of Kubernetes objects
 * (any shape: the API server validates core kinds, but CRs and our own assumptions about
 * optional fields must not crash us). Objects are bucketed by kind, the snapshot is built,
 * diffed against empty and against itself, and CSR authorization runs over the pods.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "operator/csr_authz.h"
#include "operator/snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const kinds[] = {"Namespace", "Pod", "Service", "EndpointSlice", "Node",
                                        "Gateway", "AuthorizationPolicy", "PeerAuthentication"};
    static const char *const trusted[] = {"istio-system/ztunnel", NULL};
    json_t *arr, *buckets[8], *o, *snap = NULL, *ev = NULL;
    struct op_mesh_config cfg;
    struct op_inputs in;
    size_t i;

    arr = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (!json_is_array(arr)) {
        json_decref(arr);
        return 0;
    }
    for (i = 0; i < 8; i++)
        buckets[i] = json_object();
    json_array_foreach(arr, i, o) {
        const char *kind = json_string_value(json_object_get(o, "kind"));
        const char *name = json_string_value(json_object_get(json_object_get(o, "metadata"), "name"));
        const char *ns = json_string_value(
                json_object_get(json_object_get(o, "metadata"), "namespace"));
        char key[600];

        if (kind == NULL || name == NULL)
            continue;
        snprintf(key, sizeof(key), "%s%s%s", ns ? ns : "", ns ? "/" : "", name);
        for (size_t k = 0; k < 8; k++)
            if (strcmp(kind, kinds[k]) == 0)
                json_object_set(buckets[k], key, o);
    }
    in = (struct op_inputs){buckets[0], buckets[1], buckets[2], buckets[3],
                            buckets[4], buckets[5], buckets[6], buckets[7]};
    op_mesh_config_defaults(&cfg);
    if (op_snapshot_build(&in, &cfg, &snap, NULL) == 0) {
        if (op_snapshot_full(snap, 1, &ev) == 0)
            json_decref(ev);
        if (op_snapshot_diff(snap, snap, 1, &ev) == 0) {
            if (json_array_size(ev) != 0)
                __builtin_trap(); /* a snapshot differs from itself */
            json_decref(ev);
        }
        {
            const struct op_csr_policy pol = {"cluster.local", trusted};
            struct dp_kube_token_info ti = {.authenticated = true,
                                            .sa_namespace = (char *)"istio-system",
                                            .sa_name = (char *)"ztunnel",
                                            .node_name = (char *)"n1"};
            char why[256];

            (void)op_csr_authorize(&pol, &ti, "spiffe://cluster.local/ns/shop/sa/default",
                                   buckets[1], json_object_get(snap, "waypoint"), why,
                                   sizeof(why));
        }
        json_decref(snap);
    }
    for (i = 0; i < 8; i++)
        json_decref(buckets[i]);
    json_decref(arr);
    return 0;
}
