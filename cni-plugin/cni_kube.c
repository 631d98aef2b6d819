/*
 * cni_kube.c — see cni_kube.h.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ambient.h"
#include "cni_kube.h"
#include "kube.h"
#include "kube_config.h"

int cni_kube_lookup(const struct cni_conf *conf, const char *ns, const char *name,
                    json_t **ret_pod, json_t **ret_ns, char *errbuf, size_t errsz)
{
    struct dp_kube_config *cfg = NULL;
    struct dp_kube_client *kc = NULL;
    json_t *pod = NULL, *nso = NULL;
    char e[256] = "";
    int r;

    r = dp_kube_config_load_kubeconfig(conf->kubeconfig, NULL, &cfg, e, sizeof(e));
    if (r < 0) {
        snprintf(errbuf, errsz, "kubeconfig %s: %s", conf->kubeconfig, e[0] ? e : strerror(-r));
        goto out;
    }
    r = dp_kube_client_new(cfg, &kc);
    if (r < 0) {
        snprintf(errbuf, errsz, "kube client: %s", strerror(-r));
        goto out;
    }
    dp_kube_client_set_timeout(kc, conf->kube_timeout_ms);
    r = dp_kube_get(kc, &DP_KUBE_RES_PODS, ns, name, &pod);
    if (r < 0) {
        snprintf(errbuf, errsz, "GET pod %s/%s from %s: %s", ns, name,
                 cfg->server ? cfg->server : "?",
                 dp_kube_client_last_error(kc)[0] ? dp_kube_client_last_error(kc)
                                                  : strerror(-r));
        goto out;
    }
    r = dp_kube_get(kc, &DP_KUBE_RES_NAMESPACES, NULL, ns, &nso);
    if (r < 0) {
        snprintf(errbuf, errsz, "GET namespace %s from %s: %s", ns,
                 cfg->server ? cfg->server : "?",
                 dp_kube_client_last_error(kc)[0] ? dp_kube_client_last_error(kc)
                                                  : strerror(-r));
        goto out;
    }
    *ret_pod = pod;
    *ret_ns = nso;
    pod = nso = NULL;
out:
    json_decref(pod);
    json_decref(nso);
    dp_kube_client_free(kc);
    dp_kube_config_free(cfg);
    return r;
}

bool cni_enrol_decide(const struct cni_conf *conf, const json_t *pod, const json_t *ns,
                      const char **ret_reason)
{
    /* one rule for the plugin and the node agent's enrolment loop: dataplane/ambient.h */
    struct dp_ambient_policy pol = {.mesh_ns = conf->mesh_namespace};
    for (size_t i = 0; i < conf->n_exclude_ns && i < DP_AMBIENT_MAX_EXCLUDE; i++)
        pol.exclude_ns[pol.n_exclude++] = conf->exclude_ns[i];
    return dp_ambient_selected(pod, ns, &pol, ret_reason);
}

bool cni_installer_pod(const struct cni_conf *conf, const char *ns, const char *name)
{
    size_t n = strlen(CNI_INSTALLER_POD_PREFIX);
    return ns && name && conf->mesh_namespace[0] && strcmp(ns, conf->mesh_namespace) == 0 &&
           strncmp(name, CNI_INSTALLER_POD_PREFIX, n) == 0 && name[n] != '\0';
}

void cni_pod_redirect_opts(const struct cni_conf *conf, const json_t *pod,
                           struct dp_nft_pod_opts *ret)
{
    struct dp_nft_pod_opts o;
    dp_nft_pod_opts_init(&o);
    o.dns_capture = conf->dns_capture;
    o.ipv6 = conf->ipv6;
    dp_ambient_redirect_opts(pod, &o, ret);
}
