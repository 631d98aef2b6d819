/*
 * cni_agent.h — the plugin's side of PROTOCOLS.md §3: HTTP/1.1 over the node agent's unix
 * socket (libcurl, CURLOPT_UNIX_SOCKET_PATH).
 *
 *   POST /v1/pods {"uid","namespace","name","containerId","netns","ips"} -> 200 {"adopted":true}
 *   DELETE /v1/pods/<uid> -> 200 (known or not)
 */
#ifndef CNI_AGENT_H
#define CNI_AGENT_H

#include <stddef.h>

#include <jansson.h>

#include "cni_config.h"

#define CNI_AGENT_MAX_BODY (64u * 1024u)

struct cni_pod {
    const char *uid, *namespace, *name, *container_id, *netns;
    const char *const *ips; /* n_ips strings without prefix length */
    size_t n_ips;
};

/** The POST body (NEW reference). */
json_t *cni_agent_adopt_body(const struct cni_pod *pod);

/**
 * Ask the agent to adopt the pod; returns only when it answered. 0 = adopted. Errors (message
 * in errbuf): -ENOENT/-ECONNREFUSED (agent not listening), -ETIMEDOUT, -EAGAIN (503: cannot
 * adopt now), -EPROTO (any other answer, or 200 without "adopted": true), -ENOMEM.
 */
int cni_agent_adopt(const struct cni_conf *conf, const struct cni_pod *pod, char *errbuf,
                    size_t errsz);

/** Tell the agent the pod is gone. Same errors; 0 also when the agent did not know it. */
int cni_agent_release(const struct cni_conf *conf, const char *uid, char *errbuf, size_t errsz);

/**
 * Interpret an answer (pure, for tests): status + body -> 0 or -errno with errbuf.
 */
int cni_agent_parse_adopt_reply(long status, const char *body, size_t len, char *errbuf,
                                size_t errsz);

#endif
