/*
 * ambient.c — the enrolment rule shared by ambit-cni and ambit-node.
 */
#include "ambient.h"

#include <string.h>

#include "kube.h"

bool dp_ambient_selected(const json_t *pod, const json_t *ns, const struct dp_ambient_policy *pol,
                         const char **ret_reason)
{
    const char *reason, *pns = dp_kube_meta_str(pod, "namespace");
    const char *pname = dp_kube_meta_str(pod, "name");
    bool yes = false;

    if (!pns && ns)
        pns = dp_kube_meta_str(ns, "name");
    for (size_t i = 0; pol && pns && i < pol->n_exclude; i++) {
        if (strcmp(pns, pol->exclude_ns[i]) == 0) {
            reason = "namespace excluded";
            goto out;
        }
    }
    if (json_is_true(json_object_get(json_object_get(pod, "spec"), "hostNetwork"))) {
        reason = "host network pod";
        goto out;
    }
    if (dp_kube_annotation(pod, DP_AMBIENT_SIDECAR_ANN)) {
        reason = "sidecar-injected pod";
        goto out;
    }
    if (pol && pol->self_ns && pol->self_name && pns && pname && strcmp(pns, pol->self_ns) == 0 &&
        strcmp(pname, pol->self_name) == 0) {
        reason = "the agent's own pod";
        goto out;
    }
    if (pol && pol->mesh_ns && pns && strcmp(pns, pol->mesh_ns) == 0) {
        const char *app = dp_kube_label(pod, "app");
        if ((app && (strcmp(app, "ambit-node") == 0 || strcmp(app, "ztunnel") == 0 ||
                     strcmp(app, "ambit-cni") == 0)) ||
            (pname && strncmp(pname, "ambit-node-", 11) == 0)) {
            reason = "mesh's own pod";
            goto out;
        }
    }
    const char *pl = dp_kube_label(pod, DP_AMBIENT_LABEL);
    const char *nl = ns ? dp_kube_label(ns, DP_AMBIENT_LABEL) : NULL;
    if (pl && strcmp(pl, "ambient") == 0) {
        reason = "pod labelled ambient";
        yes = true;
    } else if (pl && strcmp(pl, "none") == 0) {
        reason = "pod opted out";
    } else if (nl && strcmp(nl, "ambient") == 0) {
        reason = "namespace labelled ambient";
        yes = true;
    } else {
        reason = "not ambient";
    }
out:
    if (ret_reason)
        *ret_reason = reason;
    return yes;
}

void dp_ambient_redirect_opts(const json_t *pod, const struct dp_nft_pod_opts *base,
                              struct dp_nft_pod_opts *ret)
{
    struct dp_nft_pod_opts o = *base;
    const char *dns = dp_kube_annotation(pod, DP_AMBIENT_DNS_ANN);
    if (dns && strcmp(dns, "true") == 0)
        o.dns_capture = true;
    else if (dns && strcmp(dns, "false") == 0)
        o.dns_capture = false;
    const char *bypass = dp_kube_annotation(pod, DP_AMBIENT_BYPASS_IN_ANN);
    if (bypass && strcmp(bypass, "true") == 0)
        o.bypass_inbound = true;
    *ret = o;
}
