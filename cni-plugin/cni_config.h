/*
 * cni_config.h — what the runtime hands the plugin: the CNI_* environment and the network
 * configuration on stdin (with prevResult), parsed, validated and frozen into plain structs.
 * Runtime code after this point never looks at the raw JSON except to print prevResult back.
 *
 * Limits: stdin at most CNI_STDIN_MAX bytes; prevResult at most CNI_MAX_IPS addresses;
 * CNI_ARGS at most CNI_ARGS_MAX bytes. Errors name the offending field
 * ("prevResult.ips[1].address: not an IP address").
 */
#ifndef CNI_CONFIG_H
#define CNI_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "cni_result.h"
#include "netns.h"
#include "nft.h"

#define CNI_STDIN_MAX      (1u << 20)
#define CNI_ARGS_MAX       4096
#define CNI_MAX_IPS        16
#define CNI_MAX_EXCLUDE_NS 64

#define CNI_DEFAULT_AGENT_SOCKET "/var/run/ambit/cni.sock"
#define CNI_DEFAULT_RUN_DIR      "/var/run/ambit"
#define CNI_DEFAULT_KUBECONFIG   "/etc/cni/net.d/ambit-cni-kubeconfig"
#define CNI_DEFAULT_MESH_NS      "istio-system"
#define CNI_PLUGIN_TYPE          "ambit-cni"

enum cni_command { CNI_CMD_ADD, CNI_CMD_DEL, CNI_CMD_CHECK, CNI_CMD_VERSION, CNI_CMD_STATUS,
                   CNI_CMD_GC };

/** The CNI_* environment. Strings borrowed from the environment block. */
struct cni_env {
    enum cni_command command;
    const char *container_id;
    const char *netns; /* may be NULL for DEL */
    const char *ifname;
    const char *path;
    /* from CNI_ARGS (copied, bounded) */
    char pod_namespace[254];
    char pod_name[254];
    char pod_uid[64];
    char infra_container_id[128];
};

/**
 * Read the environment through `get` (getenv in production, a table in tests). Checks the
 * variables the command needs. Returns 0, or -1 with e filled (code 4, msg naming the variable).
 */
int cni_env_parse(const char *(*get)(const char *name), struct cni_env *ret, struct cni_error *e);

/** Parse CNI_ARGS "K=V;K=V" into env's pod fields (unknown keys ignored). 0 or -1 + e. */
int cni_args_parse(const char *args, struct cni_env *env, struct cni_error *e);

const char *cni_command_str(enum cni_command c);

struct cni_conf {
    char cni_version[16];
    char name[254];
    char type[64];
    char agent_socket[108]; /* sun_path */
    char run_dir[256];
    char kubeconfig[256];
    char mesh_namespace[254];
    char exclude_ns[CNI_MAX_EXCLUDE_NS][64];
    size_t n_exclude_ns;
    unsigned kube_timeout_ms;
    unsigned agent_timeout_ms;
    bool dns_capture;
    bool ipv6;
    char log_level[32];
    /* prevResult */
    json_t *prev_result; /* NEW reference, NULL when absent */
    struct dp_nft_addr ips[CNI_MAX_IPS];
    char ip_str[CNI_MAX_IPS][48]; /* the addresses as given, without prefix length */
    size_t n_ips;
};

/**
 * Parse the stdin configuration. Checks cniVersion (supported, code 1), required fields,
 * types, bounds, and prevResult's shape (interfaces/ips). Does not require prevResult (the
 * command decides). Returns 0 with *conf filled (release with cni_conf_done), or -1 with e.
 */
int cni_conf_parse(const char *data, size_t len, struct cni_conf *conf, struct cni_error *e);

void cni_conf_done(struct cni_conf *conf);

/** 1 if namespace `ns` is in the exclusion list. */
int cni_conf_ns_excluded(const struct cni_conf *conf, const char *ns);

#endif
