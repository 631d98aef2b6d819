/*
 * enrol.h — the agent enrolment loop (istio-ambient-internals.md §1.2, §1.4, §1.5).
 *
 * With API access, ambit-node watches the Pods bound to its node (fieldSelector
 * spec.nodeName=<node>) and all Namespaces. Every change queues the pod's "<ns>/<name>" key; a
 * worker compares the intent (na_enrol_decide) with what the agent holds and:
 *
 *   enrol:    find the pod's netns, install the in-pod redirection (dataplane/nft, idempotent),
 *             adopt it (pod.h: listeners 15001/15006/15008), add its IPs to the host probe set
 *             when the host table exists, then merge-patch pods/status with the annotation
 *             `ambient.istio.io/redirection: enabled`;
 *   un-enrol: release the listeners, remove the rules (and probe set entries), then clear the
 *             annotation (`null` in the merge patch).
 *
 * The netns is found, in order: a state file in <run-dir>/cni-pods/ with the same uid — the CNI
 * plugin's <container>.json (it also says whether DNS capture / IPv6 rules were installed) or
 * the agent's own enrol-<uid>.json, written on enrol and removed on un-enrol (records of pods
 * that no longer exist are dropped after the first sync); a pod the agent already
 * adopted through cni.sock; a /proc/<pid>/cgroup scan for the pod UID (dp_netns_find_pod); and
 * finally every entry of the netns dir (/var/run/netns; entries whose name contains the first
 * 8 characters of the uid win over others, as test/cluster names them amb-k8s-n<i>-<uid8>).
 * Every candidate must hold one of the pod's IPs. The netns fd is kept open while the pod is
 * enrolled (like Istio's per-uid netns cache), so un-enrol always reaches the right netns.
 *
 * Nothing is decided before both informers have synced, so on start (agent restart) the full
 * state is reconciled: pods that should be enrolled are adopted again (rules re-applied as a
 * no-op), pods annotated but no longer wanted are released. The agent's exit leaves the rules in
 * place (pods stay captured across a restart, new connections wait for the next agent).
 *
 * Enabling (documented in docs/node-agent.md):
 *   --kubeconfig PATH (na_options.kubeconfig) — always on, a bad kubeconfig is fatal;
 *   otherwise AMBIT_ENROL=auto (default): on when running in a cluster (KUBERNETES_SERVICE_HOST
 *   and the service-account token) and NODE_NAME is set; AMBIT_ENROL=on uses the usual
 *   search order ($KUBECONFIG, in-cluster, ~/.kube/config); AMBIT_ENROL=off disables.
 * Other knobs (environment): AMBIT_EXCLUDE_NAMESPACES (comma list, default "kube-system"),
 * AMBIT_NETNS_DIR (default /var/run/netns), AMBIT_PROC_ROOT (default /proc), POD_NAME +
 * POD_NAMESPACE (the agent's own pod, never enrolled).
 *
 * Threading: everything runs on worker 0's loop (the main thread), which also serves cni.sock,
 * so plugin adoptions and the loop never interleave. Blocking work per pod is bounded (netns
 * scan, one nft batch, one adopt).
 */
#ifndef NA_ENROL_H
#define NA_ENROL_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "ambient.h"

#include "nft.h"

struct na_agent;
struct na_enrol;

#define NA_ENROL_ANNOTATION  "ambient.istio.io/redirection"

enum na_enrol_decision {
    NA_ENROL_NO = 0, /* not in the mesh: un-enrol if enrolled */
    NA_ENROL_YES,    /* in the mesh and Running with an IP: enrol */
    NA_ENROL_WAIT,   /* would be in the mesh but not Running / no IP yet: leave as it is */
};

const char *na_enrol_decision_str(enum na_enrol_decision d);

/**
 * dp_ambient_selected() (the rule the CNI plugin applies too) plus the pod's lifecycle: a deleted
 * pod (NULL) and phases Succeeded/Failed are NA_ENROL_NO; an ambient pod that is not Running or
 * has no IP yet is NA_ENROL_WAIT. *ret_reason (optional) gets a static description.
 */
enum na_enrol_decision na_enrol_decide(const json_t *pod, const json_t *ns,
                                       const struct dp_ambient_policy *pol, const char **ret_reason);

/** Pod IPs: status.podIPs[].ip, else status.podIP. Borrowed strings; returns how many (<= max). */
size_t na_enrol_pod_ips(const json_t *pod, const char **ips, size_t max);

/** Parse a comma list of namespaces into pol (strings point into `csv`, which is modified).
 *  0, or -E2BIG beyond DP_AMBIENT_MAX_EXCLUDE. */
int na_enrol_policy_parse_exclude(struct dp_ambient_policy *pol, char *csv);

/**
 * Create and start the loop on worker 0 when enabled (see above); *ret_e is NULL when disabled.
 * Returns 0, or -errno when --kubeconfig was given but cannot be used (the agent must not run
 * half-configured).
 */
int na_enrol_new(struct na_agent *a, struct na_enrol **ret_e);
/** Stop watching and free (pods stay adopted/captured); accepts NULL. Call on worker 0's thread
 *  or after the loops stopped. */
void na_enrol_free(struct na_enrol *e);

/** Number of pods this loop currently holds enrolled (for tests and the admin view). */
size_t na_enrol_count(const struct na_enrol *e);

#endif
