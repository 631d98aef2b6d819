/*
 * proxy.h — the three per-pod connection paths. Each takes an accepted, non-blocking socket
 * (stolen) on the pod's worker loop.
 *
 *   outbound (15001): SO_ORIGINAL_DST -> destination selection -> HBONE from inside the source
 *                     pod netns with the source identity, plain TCP passthrough, or fail fast.
 *   inbound  (15008): HBONE server with the pod's identity; authority must be a local pod
 *                     address; L4 policy (deny -> 401); app connect from the pod netns; splice.
 *   inbound  (15006): plaintext; allowed only if policy allows an identity-less peer
 *                     (STRICT PeerAuthentication arrives as such a DENY policy); else RST.
 */
#ifndef NA_PROXY_H
#define NA_PROXY_H

struct na_pod;

void na_outbound_accept(struct na_pod *pod, int fd);
void na_inbound_hbone_accept(struct na_pod *pod, int fd);
void na_inbound_plain_accept(struct na_pod *pod, int fd);
/** Drain: GOAWAY on every inbound HBONE connection of the pod (pod's worker only). Open
 *  streams finish; peers open new ones elsewhere. */
void na_pod_drain_hbone(struct na_pod *pod);

#endif
