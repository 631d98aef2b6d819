/*
 * ambient.h — who is enrolled in the ambient mesh, and how its redirection looks (reference
 * §1.2, §1.11). One rule for both deciders: the CNI plugin (at pod ADD) and the node agent's
 * enrolment loop (pods that were running before their namespace joined). Pure functions over
 * Kubernetes Pod / Namespace JSON; nothing here logs.
 */
#ifndef DP_AMBIENT_H
#define DP_AMBIENT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "nft.h"

#define DP_AMBIENT_LABEL          "istio.io/dataplane-mode"
#define DP_AMBIENT_SIDECAR_ANN    "sidecar.istio.io/status"
#define DP_AMBIENT_DNS_ANN        "ambient.istio.io/dns-capture"
#define DP_AMBIENT_BYPASS_IN_ANN  "ambient.istio.io/bypass-inbound-capture"
#define DP_AMBIENT_MAX_EXCLUDE    64

/** What is never enrolled besides the label rules. Strings borrowed. */
struct dp_ambient_policy {
    const char *exclude_ns[DP_AMBIENT_MAX_EXCLUDE]; /* default: kube-system */
    size_t n_exclude;
    const char *self_ns, *self_name; /* the deciding agent's own pod (optional) */
    const char *mesh_ns; /* the mesh's namespace (optional): its ambit-node / ztunnel / ambit-cni
                            pods (label app, or name ambit-node-*) are never enrolled */
};

/**
 * The label rule: a pod is ambient when its label istio.io/dataplane-mode is `ambient`, or its
 * namespace (`ns`, may be NULL when unknown) has that label and the pod's label is not `none`.
 * Never: hostNetwork pods, excluded namespaces, the agent's own pod, sidecar-injected pods
 * (annotation sidecar.istio.io/status), the mesh's own pods. Pod phase is not considered here.
 * *ret_reason (optional) gets a static description.
 */
bool dp_ambient_selected(const json_t *pod, const json_t *ns, const struct dp_ambient_policy *pol,
                         const char **ret_reason);

/**
 * In-pod redirection options: `base` (node-wide defaults, or what the plugin recorded) overridden
 * by the pod annotations ambient.istio.io/dns-capture ("true"/"false") and
 * ambient.istio.io/bypass-inbound-capture ("true": capture outbound only).
 */
void dp_ambient_redirect_opts(const json_t *pod, const struct dp_nft_pod_opts *base,
                              struct dp_nft_pod_opts *ret);

#endif
