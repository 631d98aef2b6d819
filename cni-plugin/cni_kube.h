/*
 * cni_kube.h — who is enrolled (reference §1.2) and the API-server lookup it needs.
 *
 * The lookup is one function (cni_kube_lookup) over the dataplane kube client, so the transport
 * can change without touching the decision. The decision itself is pure and unit-tested.
 */
#ifndef CNI_KUBE_H
#define CNI_KUBE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "cni_config.h"

#define CNI_LABEL_DATAPLANE_MODE "istio.io/dataplane-mode"
#define CNI_ANNOTATION_SIDECAR   "sidecar.istio.io/status"

/**
 * GET pod <ns>/<name> and namespace <ns> with the kubeconfig from the plugin config, each
 * bounded by conf->kube_timeout_ms. Returns 0 and two NEW references, or -errno with a
 * message in errbuf (-ENOENT: kubeconfig or object missing; -ETIMEDOUT, -ECONNREFUSED...).
 */
int cni_kube_lookup(const struct cni_conf *conf, const char *ns, const char *name,
                    json_t **ret_pod, json_t **ret_ns, char *errbuf, size_t errsz);

/**
 * Should this pod be captured? Ambient if the pod is labelled
 * istio.io/dataplane-mode=ambient, or its namespace is and the pod does not opt out with
 * =none. Never: excluded namespaces, hostNetwork pods, sidecar-injected pods, the mesh's own
 * pods (node agent / ztunnel in the mesh namespace). Returns true/false and a static reason.
 */
bool cni_enrol_decide(const struct cni_conf *conf, const json_t *pod, const json_t *ns,
                      const char **ret_reason);

/* pods of the cni DaemonSet (charts/cni: ambit-cni-node in the release namespace) */
#define CNI_INSTALLER_POD_PREFIX "ambit-cni-node-"

/**
 * Is <ns>/<name> a pod of the plugin's own installer DaemonSet (name prefix
 * CNI_INSTALLER_POD_PREFIX in conf->mesh_namespace)? Such a pod is never captured and the
 * plugin must decide so WITHOUT the API server: during a rolling update the kubeconfig on the
 * node still carries the previous installer pod's token, which the API server rejects as soon
 * as that pod is deleted, and only the new installer pod can write a fresh one. Pure.
 */
bool cni_installer_pod(const struct cni_conf *conf, const char *ns, const char *name);

#define CNI_ANNOTATION_DNS_CAPTURE    "ambient.istio.io/dns-capture"
#define CNI_ANNOTATION_BYPASS_INBOUND "ambient.istio.io/bypass-inbound-capture"

/**
 * Redirection options for this pod (reference §1.11): the plugin config's defaults, overridden
 * by the pod annotations ambient.istio.io/dns-capture ("true"/"false") and
 * ambient.istio.io/bypass-inbound-capture ("true": capture outbound only). Other values leave
 * the default. Pure.
 */
void cni_pod_redirect_opts(const struct cni_conf *conf, const json_t *pod,
                           struct dp_nft_pod_opts *ret);

#endif
