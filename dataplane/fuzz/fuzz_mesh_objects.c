/*
 * libFuzzer target for the mesh object decoders, snapshots, the event stream and the policy
 * compilers. The first byte picks the entry point, the rest is the document:
 *   0: config document -> snapshot; encode -> decode must round-trip to an equal document;
 *      then destination selection and policy checks for every workload address
 *   1: NDJSON event stream -> dp_mesh_stream_feed_line per line
 *   2: AuthorizationPolicy CR -> compiled policies (each must decode)
 *   3: PeerAuthentication CR array -> policies + keys for a sample workload
 * Inputs are JSON, or YAML for mode 0 (through dp_yaml_parse, like the node agent's file).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mesh.h"
#include "policy.h"
#include "yaml.h"

static uint64_t fixed_rng(void *arg)
{
    uint64_t *x = arg;
    *x = *x * 6364136223846793005ull + 1442695040888963407ull;
    return *x >> 11;
}

static void exercise(struct dp_mesh_snapshot *s)
{
    const struct dp_mesh_workload *const *wl;
    size_t n = dp_mesh_snapshot_workloads(s, &wl);
    const struct dp_mesh_service *const *sv;
    size_t ns = dp_mesh_snapshot_services(s, &sv);
    uint64_t seed = 1;

    for (size_t i = 0; i < n && i < 64; i++) {
        for (size_t j = 0; j < wl[i]->n_addresses; j++) {
            struct dp_mesh_dest d;
            struct dp_policy_result res;
            struct dp_policy_conn c = {.identity = "cluster.local/ns/a/sa/b",
                                       .src_ip = wl[i]->addresses[j],
                                       .dst_ip = wl[i]->addresses[j],
                                       .dst_port = 80};
            dp_mesh_select_destination(s, wl[i], &wl[i]->addresses[j], 80, fixed_rng, &seed, &d);
            dp_policy_check(s, wl[i], &c, &res);
            c.identity = NULL;
            dp_policy_check(s, wl[i], &c, &res);
        }
    }
    for (size_t i = 0; i < ns && i < 64; i++)
        for (size_t j = 0; j < sv[i]->n_vips; j++)
            for (size_t p = 0; p < sv[i]->n_ports && p < 4; p++) {
                struct dp_mesh_dest d;
                dp_mesh_select_destination(s, n ? wl[0] : NULL, &sv[i]->vips[j],
                                           sv[i]->ports[p].port, fixed_rng, &seed, &d);
            }
}

static void mode_config(const char *data, size_t size)
{
    char err[512];
    json_t *docs = NULL, *enc, *enc2;
    struct dp_mesh_snapshot *s = NULL, *s2 = NULL;

    if (dp_yaml_parse(data, size, "fuzz", &docs, err, sizeof(err)) < 0)
        return;
    if (json_array_size(docs) != 1 ||
        dp_mesh_snapshot_from_json(json_array_get(docs, 0), &s, err, sizeof(err)) < 0) {
        json_decref(docs);
        return;
    }
    enc = dp_mesh_snapshot_to_json(s);
    if (enc) {
        if (dp_mesh_snapshot_from_json(enc, &s2, err, sizeof(err)) < 0)
            abort(); /* our own encoding must always decode */
        enc2 = dp_mesh_snapshot_to_json(s2);
        if (enc2 && !json_equal(enc, enc2))
            abort(); /* and round-trip exactly */
        json_decref(enc2);
        dp_mesh_snapshot_unref(s2);
        json_decref(enc);
    }
    exercise(s);
    dp_mesh_snapshot_unref(s);
    json_decref(docs);
}

static void mode_stream(const char *data, size_t size)
{
    struct dp_mesh_stream *st = NULL;
    char err[512];
    size_t off = 0;

    if (dp_mesh_stream_new(NULL, &st) < 0)
        return;
    while (off < size) {
        const char *nl = memchr(data + off, '\n', size - off);
        size_t len = nl ? (size_t)(nl - (data + off)) : size - off;
        struct dp_mesh_snapshot *s = NULL;
        if (dp_mesh_stream_feed_line(st, data + off, len, &s, err, sizeof(err)) ==
            DP_MESH_FEED_PUBLISHED) {
            exercise(s);
            dp_mesh_snapshot_unref(s);
        }
        off += len + 1;
    }
    struct dp_mesh_snapshot *s = NULL;
    if (dp_mesh_stream_publish(st, &s) == 0)
        dp_mesh_snapshot_unref(s);
    dp_mesh_stream_free(st);
}

static void mode_authz(const json_t *cr)
{
    struct dp_policy_diags d;
    json_t *out = NULL, *el;
    size_t i;
    memset(&d, 0, sizeof(d));
    if (dp_policy_compile_authz(cr, "istio-system", &out, &d) < 0)
        return;
    json_array_foreach(out, i, el) {
        char err[512];
        void *obj = NULL;
        if (dp_mesh_object_decode(DP_MESH_POLICY, el, NULL, NULL, &obj, err, sizeof(err)) < 0)
            abort(); /* the compiler must only emit decodable policies */
        struct dp_policy_conn c = {.identity = "cluster.local/ns/a/sa/b", .dst_port = 80};
        dp_mesh_ip_parse("10.0.0.1", &c.src_ip);
        dp_mesh_ip_parse("10.0.0.2", &c.dst_ip);
        dp_policy_matches(obj, &c);
        dp_mesh_object_unref(DP_MESH_POLICY, obj);
    }
    (void)dp_policy_cr_selects(cr, "istio-system", "default", NULL);
    json_decref(out);
}

static void mode_peerauthn(const json_t *pas)
{
    struct dp_policy_diags d;
    json_t *out = NULL, *keys = NULL, *labels = json_pack("{ss}", "app", "web");
    memset(&d, 0, sizeof(d));
    if (dp_policy_compile_peerauthn(pas, "istio-system", &out, &d) == 0)
        json_decref(out);
    if (dp_policy_peerauthn_keys(pas, "istio-system", "default", labels, &keys, &d) == 0)
        json_decref(keys);
    json_decref(labels);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *j;
    if (size < 1 || size > (1u << 20))
        return 0;
    switch (data[0] % 4) {
    case 0:
        mode_config((const char *)data + 1, size - 1);
        break;
    case 1:
        mode_stream((const char *)data + 1, size - 1);
        break;
    default:
        j = json_loadb((const char *)data + 1, size - 1, 0, NULL);
        if (!j)
            return 0;
        if (data[0] % 4 == 2)
            mode_authz(j);
        else
            mode_peerauthn(j);
        json_decref(j);
        break;
    }
    return 0;
}
