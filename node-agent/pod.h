/*
 * pod.h — adopted pods: the pod's netns, its addresses, and the three listeners the agent
 * opens INSIDE the pod netns (marked 0x539): 15001 outbound capture, 15006 inbound plaintext,
 * 15008 inbound HBONE.
 *
 * Adopt/release are idempotent and keyed by uid. A pod is pinned to one worker: listeners,
 * accepted connections and their HBONE pool usage all run on that worker's loop. Release
 * closes the listeners; connections already accepted finish on their own (they hold a
 * reference on the pod).
 */
#ifndef NA_POD_H
#define NA_POD_H

#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "common.h"
#include "loop.h"

struct na_agent;
struct na_worker;

#define NA_POD_MAX_IPS 4
#define NA_POD_UID_MAX 256

enum na_listener_kind { NA_L_OUTBOUND = 0, NA_L_INBOUND, NA_L_HBONE, NA_L_COUNT };

struct na_listener {
    int fd;
    struct dp_io io;
    enum na_listener_kind kind;
    struct na_pod *pod;
};

struct na_pod {
    struct dp_list link;     /* agent->pods, under pods_mu */
    int refs;                /* list + connections; touched on the pod's worker only */
    char uid[NA_POD_UID_MAX];
    char netns_path[1024];
    char ns[128], name[256];
    int netns_fd;
    uint64_t netns_ino;
    struct sockaddr_storage ips[NA_POD_MAX_IPS];
    unsigned nips;
    struct na_worker *w;
    struct na_agent *agent;
    struct na_listener l[NA_L_COUNT];
    struct dp_list hbcs;     /* inbound HBONE connections (proxy.c), pod's worker only */
    bool released;
    bool orig_src; /* redirection + policy routing present: inbound connects to the app may
                      use the client's address (IP_TRANSPARENT), reference §1.8 */
};

struct na_pod_spec {
    const char *uid;
    const char *netns;
    const char *ns, *name; /* optional */
    const char *ips[NA_POD_MAX_IPS];
    unsigned nips;
};

/** Adopt (idempotent: an existing pod with the same uid and netns answers 0 at once). Returns
 *  once the listeners are listening. 0, -EBADMSG (bad spec: uid, netns path, ips), -ENOENT (netns gone), -EINVAL (not a netns),
 *  -ESHUTDOWN (draining), other -errno. */
int na_pod_adopt(struct na_agent *a, const struct na_pod_spec *spec);
/** Release by uid; 0 whether or not it was known. */
int na_pod_release(struct na_agent *a, const char *uid);
/** Re-adopt the pods listed in <run_dir>/pods.json (written on every adopt/release) after a
 *  restart; pods whose netns is gone are dropped from the file. 0. */
int na_pods_restore(struct na_agent *a);
/** Release everything (shutdown; the state file is kept for the next start). */
void na_pods_release_all(struct na_agent *a);
/**
 * Uninstall: remove the in-pod redirection (nft table, routing) of every adopted pod, so pods
 * keep plain networking once the agent is gone. Listeners stay until released. Returns how many
 * pods were cleaned.
 */
int na_pods_remove_redirection(struct na_agent *a);

/** Stop accepting on every pod (drain) — listeners closed, pods kept. */
void na_pods_stop_listening(struct na_agent *a);

/** Connection bookkeeping (pod's worker only). */
void na_pod_ref(struct na_pod *p);
void na_pod_unref(struct na_pod *p);

/** True if addr (port ignored) is one of the pod's IPs. */
bool na_pod_has_ip(const struct na_pod *p, const struct sockaddr *addr);

/** Non-blocking TCP socket inside the pod netns with SO_MARK set, connect() to dst started.
 *  Returns fd or -errno. */
int na_pod_connect(struct na_pod *p, const struct sockaddr *dst, socklen_t dst_len);
/** Same for inbound delivery to the app: when the pod has the policy routing of reference
 *  §1.8 (p->orig_src) and `src` is not one of the pod's own addresses, the socket is
 *  IP_TRANSPARENT and bound to src's IP so the app sees the real client address. Falls back
 *  to a plain connect when binding fails. */
int na_pod_connect_from(struct na_pod *p, const struct sockaddr *src, const struct sockaddr *dst,
                        socklen_t dst_len);

#endif
