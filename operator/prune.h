/*
 * prune.h — what the operator keeps of the objects its informers cache. A pod from the API
 * server is mostly fields nothing here reads (volumes, tolerations, container images, env and
 * probes, containerStatuses, kubectl's last-applied annotation); in jansson every field costs
 * an allocation or more, so 10 000 pods take ~2.5x the memory they would pruned. These run on
 * every listed and watched object before it is stored (dp_kube_informer_set_prune).
 *
 * Kept — everything a reader in the operator uses (snapshot.c, csr_authz.c, status.c, the
 * analyzer, the webhook), plus a little margin:
 *   Pod:  metadata (without the last-applied annotation); spec.nodeName, serviceAccountName,
 *         serviceAccount, hostNetwork, containers[].{name, ports}; status.phase, podIP,
 *         podIPs, hostIP, hostIPs, conditions[].{type, status, reason}
 *   Node: metadata (idem); spec; status.conditions[].{type, status, reason}, addresses
 *   EndpointSlice: all but endpoints[] other than addresses, conditions, targetRef.{kind,
 *         name, namespace} (nodeName, zone, hints, targetRef.uid go)
 * A new reader of another field must add it here (test_prune.c checks the snapshot does not
 * change).
 */
#ifndef OP_PRUNE_H
#define OP_PRUNE_H

#include <jansson.h>

void op_prune_pod(json_t *pod);
void op_prune_node(json_t *node);
void op_prune_endpointslice(json_t *slice);

#endif
