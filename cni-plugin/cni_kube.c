/*
 * cni_kube.c — see cni_kube.h.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

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

static const char *meta_str(const json_t *obj, const char *map, const char *key)
{
    json_t *m = json_object_get(json_object_get(obj, "metadata"), map);
    json_t *v = json_object_get(m, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static const char *meta_field(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(json_object_get(obj, "metadata"), key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

bool cni_enrol_decide(const struct cni_conf *conf, const json_t *pod, const json_t *ns,
                      const char **ret_reason)
{
    const char *pod_ns = meta_field(pod, "namespace");
    const char *ns_name = meta_field(ns, "name");
    const char *name = meta_field(pod, "name");
    const char *nsn = pod_ns ? pod_ns : ns_name;

    if (nsn && cni_conf_ns_excluded(conf, nsn)) {
        *ret_reason = "namespace excluded";
        return false;
    }
    if (json_is_true(json_object_get(json_object_get(pod, "spec"), "hostNetwork"))) {
        *ret_reason = "host network pod";
        return false;
    }
    if (meta_str(pod, "annotations", CNI_ANNOTATION_SIDECAR)) {
        *ret_reason = "sidecar-injected pod";
        return false;
    }
    if (nsn && strcmp(nsn, conf->mesh_namespace) == 0) {
        const char *app = meta_str(pod, "labels", "app");
        if ((app && (strcmp(app, "ambit-node") == 0 || strcmp(app, "ztunnel") == 0 ||
                     strcmp(app, "ambit-cni") == 0)) ||
            (name && strncmp(name, "ambit-node-", 11) == 0)) {
            *ret_reason = "mesh's own pod";
            return false;
        }
    }
    const char *pm = meta_str(pod, "labels", CNI_LABEL_DATAPLANE_MODE);
    if (pm && strcmp(pm, "ambient") == 0) {
        *ret_reason = "pod labelled ambient";
        return true;
    }
    if (pm && strcmp(pm, "none") == 0) {
        *ret_reason = "pod opted out";
        return false;
    }
    const char *nm = meta_str(ns, "labels", CNI_LABEL_DATAPLANE_MODE);
    if (nm && strcmp(nm, "ambient") == 0) {
        *ret_reason = "namespace labelled ambient";
        return true;
    }
    *ret_reason = "not ambient";
    return false;
}

void cni_pod_redirect_opts(const struct cni_conf *conf, const json_t *pod,
                           struct dp_nft_pod_opts *ret)
{
    struct dp_nft_pod_opts o;
    dp_nft_pod_opts_init(&o);
    o.dns_capture = conf->dns_capture;
    o.ipv6 = conf->ipv6;
    const char *dns = meta_str(pod, "annotations", CNI_ANNOTATION_DNS_CAPTURE);
    if (dns && strcmp(dns, "true") == 0)
        o.dns_capture = true;
    else if (dns && strcmp(dns, "false") == 0)
        o.dns_capture = false;
    const char *bypass = meta_str(pod, "annotations", CNI_ANNOTATION_BYPASS_INBOUND);
    if (bypass && strcmp(bypass, "true") == 0)
        o.bypass_inbound = true;
    *ret = o;
}
