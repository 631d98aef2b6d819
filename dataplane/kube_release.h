/*
 * kube_release.h — is this DaemonSet pod being stopped for an uninstall or for an update?
 *
 * At SIGTERM the cni installer and the node agent must tell `helm uninstall` (take the plugin
 * out of the chain, remove in-pod redirection: pods keep plain networking) from a rolling update
 * (leave everything: pods wait for the next agent rather than run uncaptured). The pod asks the
 * API server with its own service-account token: its owner DaemonSet gone (404) or deleting, or
 * the release's ServiceAccount/RBAC already gone (401/403), means uninstall.
 */
#ifndef DP_KUBE_RELEASE_H
#define DP_KUBE_RELEASE_H

/**
 * Pod from $POD_NAMESPACE/$POD_NAME, in-cluster credentials from sa_dir (NULL: the default
 * service-account dir). Each request bounded by timeout_ms. Returns 1 (release removed),
 * 0 (DaemonSet still there: update), or -errno when it cannot tell (not in a pod, API
 * unreachable, no DaemonSet owner). *ret_why (optional) gets a static reason in every case.
 */
int dp_kube_daemonset_removed(const char *sa_dir, unsigned timeout_ms, const char **ret_why);

#endif
