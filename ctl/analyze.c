/*
 * analyze.c — `ambitctl analyze`: objects (from files and/or the cluster) through the shared
 * analyzer (dataplane/analyze.h), printed as istioctl analyze prints them. See ctl.h.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "analyze.h"
#include "ctl.h"
#include "kube.h"
#include "yaml.h"

enum { M_VS, M_DR, M_SE, M_SVC, M_POD, M_AP, M_RA, M_TEL, M_PA, M_COUNT };

static const struct {
    const char *kind, *group; /* group: apiVersion prefix ("" = core "v1") */
} KINDS[M_COUNT] = {
        [M_VS] = {"VirtualService", "networking.istio.io/"},
        [M_DR] = {"DestinationRule", "networking.istio.io/"},
        [M_SE] = {"ServiceEntry", "networking.istio.io/"},
        [M_SVC] = {"Service", ""},
        [M_POD] = {"Pod", ""},
        [M_AP] = {"AuthorizationPolicy", "security.istio.io/"},
        [M_RA] = {"RequestAuthentication", "security.istio.io/"},
        [M_TEL] = {"Telemetry", "telemetry.istio.io/"},
        [M_PA] = {"PeerAuthentication", "security.istio.io/"},
};

static int kind_index(const json_t *o)
{
    const char *kind = json_string_value(json_object_get(o, "kind"));
    const char *av = json_string_value(json_object_get(o, "apiVersion"));

    if (kind == NULL)
        return -1;
    for (int i = 0; i < M_COUNT; i++) {
        if (strcmp(kind, KINDS[i].kind) != 0)
            continue;
        /* kind names repeat across groups (Gateway API vs Istio): check the group when known */
        if (av == NULL || (KINDS[i].group[0] ? strncmp(av, KINDS[i].group,
                                                       strlen(KINDS[i].group)) == 0
                                             : strcmp(av, "v1") == 0))
            return i;
    }
    return -1;
}

/* Add o (and the items of a `kind: List`) to the maps; later objects replace earlier ones of
 * the same kind, namespace and name (files overlay the cluster). */
static int add_object(json_t *maps[M_COUNT], const json_t *o, const char *default_ns)
{
    const char *kind = json_string_value(json_object_get(o, "kind"));
    json_t *md, *copy;
    char key[600];
    int i;

    if (kind != NULL && strcmp(kind, "List") == 0) {
        size_t j;
        json_t *it;

        json_array_foreach(json_object_get(o, "items"), j, it) {
            int r = add_object(maps, it, default_ns);

            if (r < 0)
                return r;
        }
        return 0;
    }
    i = kind_index(o);
    if (i < 0 || dp_kube_meta_str(o, "name") == NULL)
        return 0; /* not a kind the analyzer reads */
    copy = json_deep_copy(o);
    md = json_object_get(copy, "metadata");
    if (copy == NULL || md == NULL) {
        json_decref(copy);
        return -ENOMEM;
    }
    if (dp_kube_meta_str(copy, "namespace") == NULL &&
        json_object_set_new(md, "namespace", json_string(default_ns)) < 0) {
        json_decref(copy);
        return -ENOMEM;
    }
    snprintf(key, sizeof(key), "%s/%s", dp_kube_meta_str(copy, "namespace"),
             dp_kube_meta_str(copy, "name"));
    return json_object_set_new(maps[i], key, copy) < 0 ? -ENOMEM : 0;
}

int ctl_analyze(const json_t *objects, const char *default_ns, const char *root_ns,
                json_t **ret_findings)
{
    json_t *maps[M_COUNT] = {0}, *o;
    struct dp_analyze_inputs in = {.root_ns = root_ns};
    size_t i;
    int r = -ENOMEM;

    for (i = 0; i < M_COUNT; i++)
        if ((maps[i] = json_object()) == NULL)
            goto out;
    json_array_foreach(objects, i, o) {
        r = add_object(maps, o, default_ns ? default_ns : "default");
        if (r < 0)
            goto out;
    }
    in.virtual_services = maps[M_VS];
    in.destination_rules = maps[M_DR];
    in.service_entries = maps[M_SE];
    in.services = maps[M_SVC];
    in.pods = json_object_size(maps[M_POD]) > 0 ? maps[M_POD] : NULL; /* none: unknown */
    in.authorization_policies = maps[M_AP];
    in.request_authentications = maps[M_RA];
    in.telemetries = maps[M_TEL];
    in.peer_authentications = maps[M_PA];
    r = dp_analyze(&in, ret_findings);
out:
    for (i = 0; i < M_COUNT; i++)
        json_decref(maps[i]);
    return r;
}

int ctl_analyze_print(FILE *out, const json_t *findings, enum ctl_output fmt)
{
    size_t i;
    json_t *f;
    int errors = 0;

    json_array_foreach(findings, i, f) {
        const char *level = json_string_value(json_object_get(f, "level"));

        if (level && strcmp(level, "Error") == 0)
            errors++;
    }
    if (fmt == CTL_OUT_JSON) {
        if (json_dumpf(findings, out, JSON_INDENT(2)) < 0)
            return -EIO;
        fputc('\n', out);
        return errors;
    }
    if (fmt == CTL_OUT_YAML) {
        int r = dp_yaml_dump(findings, out);

        return r < 0 ? r : errors;
    }
    if (json_array_size(findings) == 0) {
        fputs("\u2714 No validation issues found.\n", out);
        return 0;
    }
    json_array_foreach(findings, i, f) {
        char line[1024];

        dp_analyze_format(f, line, sizeof(line));
        fprintf(out, "%s\n", line);
    }
    return errors;
}

int ctl_analyze_fetch(struct dp_kube_client *c, const char *ns, json_t *objects, char *errbuf,
                      size_t errsz)
{
    static const struct dp_kube_resource *const res[] = {
            &DP_KUBE_RES_VIRTUALSERVICES,        &DP_KUBE_RES_DESTINATIONRULES,
            &DP_KUBE_RES_SERVICEENTRIES,         &DP_KUBE_RES_SERVICES,
            &DP_KUBE_RES_PODS,                   &DP_KUBE_RES_AUTHORIZATIONPOLICIES,
            &DP_KUBE_RES_REQUESTAUTHENTICATIONS, &DP_KUBE_RES_TELEMETRIES,
            &DP_KUBE_RES_PEERAUTHENTICATIONS,
    };

    for (size_t i = 0; i < sizeof(res) / sizeof(res[0]); i++) {
        json_t *items = NULL;
        int r = dp_kube_list(c, res[i], ns, NULL, &items, NULL);

        if (r == -ENOENT)
            continue; /* CRD not installed: nothing of that kind */
        if (r < 0) {
            snprintf(errbuf, errsz, "listing %s: %s", res[i]->resource, strerror(-r));
            return r;
        }
        r = json_array_extend(objects, items);
        json_decref(items);
        if (r < 0)
            return -ENOMEM;
    }
    return 0;
}
