/*
 * prune.c — drop the fields of cached objects nothing in the operator reads. See prune.h.
 */
#include <stdbool.h>
#include <string.h>

#include "prune.h"

#define LAST_APPLIED "kubectl.kubernetes.io/last-applied-configuration"

/* delete every key of o not in keep (NULL-terminated); o may be anything */
static void keep_only(json_t *o, const char *const *keep)
{
    const char *k;
    json_t *v;
    void *tmp;

    if (!json_is_object(o))
        return;
    json_object_foreach_safe(o, tmp, k, v) {
        bool kept = false;

        for (const char *const *p = keep; *p && !kept; p++)
            kept = strcmp(*p, k) == 0;
        if (!kept)
            json_object_del(o, k);
    }
}

static void keep_in_array(json_t *arr, const char *const *keep)
{
    size_t i;
    json_t *e;

    json_array_foreach(arr, i, e) {
        keep_only(e, keep);
    }
}

static void prune_metadata(json_t *obj)
{
    json_t *md = json_object_get(obj, "metadata");

    json_object_del(json_object_get(md, "annotations"), LAST_APPLIED);
}

static const char *const COND_KEEP[] = {"type", "status", "reason", NULL};

void op_prune_pod(json_t *pod)
{
    static const char *const spec_keep[] = {"nodeName", "serviceAccountName", "serviceAccount",
                                            "hostNetwork", "containers", NULL};
    static const char *const container_keep[] = {"name", "ports", NULL};
    static const char *const status_keep[] = {"phase",  "podIP",   "podIPs",
                                              "hostIP", "hostIPs", "conditions", NULL};
    json_t *spec = json_object_get(pod, "spec"), *status = json_object_get(pod, "status");

    prune_metadata(pod);
    keep_only(spec, spec_keep);
    keep_in_array(json_object_get(spec, "containers"), container_keep);
    keep_only(status, status_keep);
    keep_in_array(json_object_get(status, "conditions"), COND_KEEP);
}

void op_prune_node(json_t *node)
{
    static const char *const status_keep[] = {"conditions", "addresses", NULL};
    json_t *status = json_object_get(node, "status");

    prune_metadata(node);
    keep_only(status, status_keep);
    keep_in_array(json_object_get(status, "conditions"), COND_KEEP);
}

void op_prune_endpointslice(json_t *slice)
{
    static const char *const ep_keep[] = {"addresses", "conditions", "targetRef", NULL};
    static const char *const ref_keep[] = {"kind", "name", "namespace", NULL};
    json_t *ep;
    size_t i;

    prune_metadata(slice);
    json_array_foreach(json_object_get(slice, "endpoints"), i, ep) {
        keep_only(ep, ep_keep);
        keep_only(json_object_get(ep, "targetRef"), ref_keep);
    }
}
