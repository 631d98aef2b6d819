/*
 * csr_authz.c — certificate request authorization. See csr_authz.h.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "csr_authz.h"

static int seg(const char **p, char out[254], char stop)
{
    size_t n = 0;

    while (**p && **p != stop) {
        unsigned char c = (unsigned char)**p;

        if (n >= 253 || c <= 0x20 || c >= 0x7f || c == '/' || c == '?' || c == '#' || c == '%')
            return -EINVAL;
        out[n++] = (char)c;
        (*p)++;
    }
    out[n] = '\0';
    return n > 0 ? 0 : -EINVAL;
}

int op_spiffe_parse(const char *id, char td[254], char ns[254], char sa[254])
{
    const char *p = id;

    if (strncmp(p, "spiffe://", 9) != 0)
        return -EINVAL;
    p += 9;
    if (seg(&p, td, '/') < 0 || strncmp(p, "/ns/", 4) != 0)
        return -EINVAL;
    p += 4;
    if (seg(&p, ns, '/') < 0 || strncmp(p, "/sa/", 4) != 0)
        return -EINVAL;
    p += 4;
    if (seg(&p, sa, '\0') < 0 || *p != '\0')
        return -EINVAL;
    return 0;
}

static const char *pod_str(const json_t *pod, const char *a, const char *b)
{
    return json_string_value(json_object_get(json_object_get(pod, a), b));
}

static bool pod_running(const json_t *pod)
{
    const char *phase = pod_str(pod, "status", "phase");

    if (json_object_get(json_object_get(pod, "metadata"), "deletionTimestamp") != NULL)
        return false;
    return phase == NULL || (strcmp(phase, "Succeeded") != 0 && strcmp(phase, "Failed") != 0);
}

static const char *pod_sa(const json_t *pod)
{
    const char *sa = pod_str(pod, "spec", "serviceAccountName");

    return sa && sa[0] ? sa : "default";
}

int op_csr_authorize(const struct op_csr_policy *pol, const struct dp_kube_token_info *caller,
                     const char *identity, const json_t *pods, const json_t *waypoints,
                     char *why, size_t whysz)
{
    char td[254], ns[254], sa[254], acct[512];
    const char *node = NULL, *k;
    const json_t *pod;
    bool trusted = false;

    if (caller == NULL || !caller->authenticated) {
        snprintf(why, whysz, "token not authenticated%s%s",
                 caller && caller->error ? ": " : "", caller && caller->error ? caller->error : "");
        return -EACCES;
    }
    if (caller->sa_namespace == NULL || caller->sa_name == NULL) {
        snprintf(why, whysz, "caller %s is not a service account",
                 caller->username ? caller->username : "(unknown)");
        return -EPERM;
    }
    snprintf(acct, sizeof(acct), "%s/%s", caller->sa_namespace, caller->sa_name);
    for (const char *const *t = pol->trusted_accounts; t && *t; t++)
        trusted |= strcmp(*t, acct) == 0;
    if (!trusted) {
        snprintf(why, whysz, "service account %s is not a trusted node agent account", acct);
        return -EPERM;
    }
    if (caller->pod_name != NULL) {
        char pkey[512];
        const json_t *cp;

        snprintf(pkey, sizeof(pkey), "%s/%s", caller->sa_namespace, caller->pod_name);
        cp = json_object_get(pods, pkey);
        if (cp == NULL) {
            snprintf(why, whysz, "caller pod %s not found", pkey);
            return -EPERM;
        }
        if (caller->pod_uid != NULL && pod_str(cp, "metadata", "uid") != NULL &&
            strcmp(caller->pod_uid, pod_str(cp, "metadata", "uid")) != 0) {
            snprintf(why, whysz, "caller pod %s has another uid (replaced?)", pkey);
            return -EPERM;
        }
        if (strcmp(pod_sa(cp), caller->sa_name) != 0) {
            snprintf(why, whysz, "caller pod %s does not run as %s", pkey, acct);
            return -EPERM;
        }
        node = pod_str(cp, "spec", "nodeName");
        if (caller->node_name != NULL && node != NULL && strcmp(node, caller->node_name) != 0) {
            snprintf(why, whysz, "caller pod %s runs on %s, token says %s", pkey, node,
                     caller->node_name);
            return -EPERM;
        }
    }
    if (node == NULL)
        node = caller->node_name;
    if (node == NULL || node[0] == '\0') {
        snprintf(why, whysz, "caller's node unknown (token is not bound to a pod or node)");
        return -EPERM;
    }
    if (op_spiffe_parse(identity, td, ns, sa) < 0) {
        snprintf(why, whysz, "identity \"%.200s\" is not spiffe://<td>/ns/<ns>/sa/<sa>", identity);
        return -EINVAL;
    }
    if (strcmp(td, pol->trust_domain) != 0) {
        snprintf(why, whysz, "trust domain %s is not %s", td, pol->trust_domain);
        return -EPERM;
    }
    json_object_foreach((json_t *)pods, k, pod) {
        if (strcmp(pod_str(pod, "metadata", "namespace") ?: "", ns) == 0 &&
            strcmp(pod_sa(pod), sa) == 0 && pod_str(pod, "spec", "nodeName") != NULL &&
            strcmp(pod_str(pod, "spec", "nodeName"), node) == 0 && pod_running(pod)) {
            snprintf(why, whysz, "pod %s on %s runs as %s/%s", k, node, ns, sa);
            return 0;
        }
    }
    {
        char wkey[512];
        const json_t *wp, *n;
        size_t i;

        snprintf(wkey, sizeof(wkey), "%s/%s", ns, sa);
        wp = json_object_get(waypoints, wkey);
        json_array_foreach(json_object_get(wp, "nodes"), i, n) {
            if (json_is_string(n) && strcmp(json_string_value(n), node) == 0) {
                snprintf(why, whysz, "waypoint %s is placed on %s", wkey, node);
                return 0;
            }
        }
    }
    snprintf(why, whysz, "no running pod with service account %s/%s on node %s", ns, sa, node);
    return -EPERM;
}
