/* libFuzzer target: arbitrary YAML documents (Kubernetes objects of any shape) through the
 * analyzer and its istioctl formatting: wrong types, missing fields and odd keys must give
 * findings or nothing, never a crash. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "analyze.h"
#include "yaml.h"

static const char *const KINDS[] = {"VirtualService",      "DestinationRule",
                                    "ServiceEntry",        "Service",
                                    "Pod",                 "AuthorizationPolicy",
                                    "RequestAuthentication", "Telemetry",
                                    "PeerAuthentication"};
#define N_KINDS (sizeof(KINDS) / sizeof(KINDS[0]))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *docs = NULL, *maps[N_KINDS], *d, *findings = NULL, *f;
    struct dp_analyze_inputs in = {.root_ns = "istio-system"};
    char err[256], key[64], line[1024];
    size_t i, n = 0;

    if (size > (64u << 10))
        return 0;
    if (dp_yaml_parse((const char *)data, size, "fuzz", &docs, err, sizeof(err)) < 0)
        return 0;
    for (i = 0; i < N_KINDS; i++)
        maps[i] = json_object();
    json_array_foreach(docs, i, d) {
        const char *kind = json_string_value(json_object_get(d, "kind"));

        /* keys need not match the objects: the analyzer must cope (map key fallback) */
        snprintf(key, sizeof(key), "ns%zu/o%zu", i % 3, n++);
        for (size_t k = 0; kind != NULL && k < N_KINDS; k++)
            if (strcmp(kind, KINDS[k]) == 0)
                json_object_set(maps[k], key, d);
    }
    in.virtual_services = maps[0];
    in.destination_rules = maps[1];
    in.service_entries = maps[2];
    in.services = maps[3];
    in.pods = json_object_size(maps[4]) ? maps[4] : NULL;
    in.authorization_policies = maps[5];
    in.request_authentications = maps[6];
    in.telemetries = maps[7];
    in.peer_authentications = maps[8];
    if (dp_analyze(&in, &findings) == 0) {
        json_array_foreach(findings, i, f) {
            dp_analyze_format(f, line, sizeof(line));
            (void)dp_analyze_rejects(json_string_value(json_object_get(f, "code")));
        }
        json_decref(findings);
    }
    for (i = 0; i < N_KINDS; i++)
        json_decref(maps[i]);
    json_decref(docs);
    return 0;
}
