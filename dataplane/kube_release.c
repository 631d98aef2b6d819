/*
 * kube_release.c — see kube_release.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kube.h"
#include "kube_config.h"
#include "kube_release.h"

static const char *owner_daemonset(const json_t *pod)
{
    const char *name = NULL;
    size_t i;
    json_t *ref;
    json_array_foreach(json_object_get(json_object_get(pod, "metadata"), "ownerReferences"), i,
                       ref)
    {
        const char *kind = json_string_value(json_object_get(ref, "kind"));
        if (kind && strcmp(kind, "DaemonSet") == 0)
            name = json_string_value(json_object_get(ref, "name"));
    }
    return name && *name && strlen(name) <= 253 ? name : NULL;
}

int dp_kube_daemonset_removed(const char *sa_dir, unsigned timeout_ms, const char **ret_why)
{
    const char *pod = getenv("POD_NAME"), *ns = getenv("POD_NAMESPACE");
    const char *why = "not in a pod (POD_NAME/POD_NAMESPACE unset)";
    struct dp_kube_config *cfg = NULL;
    struct dp_kube_client *kc = NULL;
    json_t *po = NULL, *ds = NULL;
    char e[256], path[640];
    long http = 0;
    int r = -ENOENT;

    if (!pod || !ns || !*pod || !*ns || strlen(pod) > 253 || strlen(ns) > 63)
        goto out;
    why = "no in-cluster credentials";
    if ((r = dp_kube_config_in_cluster(sa_dir, &cfg, e, sizeof(e))) < 0 ||
        (r = dp_kube_client_new(cfg, &kc)) < 0)
        goto out;
    dp_kube_client_set_timeout(kc, timeout_ms);
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s", ns, pod);
    r = dp_kube_request(kc, "GET", path, NULL, NULL, &http, &po);
    if (r < 0) {
        why = "cannot read the own pod";
        if (http == 401 || http == 403) {
            why = "the release's service account or RBAC is gone";
            r = 1;
        }
        goto out;
    }
    const char *name = owner_daemonset(po);
    if (name == NULL) {
        why = "pod has no DaemonSet owner";
        r = -ENOENT;
        goto out;
    }
    snprintf(path, sizeof(path), "/apis/apps/v1/namespaces/%s/daemonsets/%s", ns, name);
    r = dp_kube_request(kc, "GET", path, NULL, NULL, &http, &ds);
    if (r < 0) {
        why = "cannot read the DaemonSet";
        if (http == 404) {
            why = "DaemonSet deleted";
            r = 1;
        } else if (http == 401 || http == 403) {
            why = "the release's service account or RBAC is gone";
            r = 1;
        }
    } else if (json_object_get(json_object_get(ds, "metadata"), "deletionTimestamp")) {
        why = "DaemonSet being deleted";
        r = 1;
    } else {
        why = "DaemonSet still exists (update)";
        r = 0;
    }
out:
    if (ret_why)
        *ret_why = why;
    json_decref(po);
    json_decref(ds);
    dp_kube_client_free(kc);
    dp_kube_config_free(cfg);
    return r;
}
