/*
 * cni_cmd.h — the CNI commands (ADD, DEL, CHECK, VERSION, STATUS, GC) of ambit-cni.
 *
 * ADD for an ambient pod: the node agent adopts the netns first (listeners up), then the
 * redirection goes in (one atomic batch), then the plugin records the pod in
 * <run_dir>/cni-pods/<containerId>.json and prints prevResult unchanged. Any failure after
 * adoption is rolled back (rules removed, agent told), so a pod never runs half-captured, and
 * ADD fails so the runtime retries. Non-ambient pods pass through untouched.
 * DEL undoes what ADD recorded, succeeds when repeated and when the netns is gone.
 *
 * The state file is also for the node agent (e.g. to re-find netns paths after a restart):
 *   {"uid", "namespace", "name", "containerId", "netns": "/var/run/netns/...",
 *    "ips": ["10.244.1.5", ...], "dnsCapture": bool, "ipv6": bool}
 * For pods that never went through the plugin, dp_netns_find_pod() does the /proc scan.
 */
#ifndef CNI_CMD_H
#define CNI_CMD_H

#include <stdio.h>

#include "cni_config.h"
#include "cni_result.h"

#define CNI_STATE_SUBDIR "cni-pods"
#define CNI_LOG_FILE     "ambit-cni.log"

/**
 * Run the command in env with the stdin bytes. Success output (if any) goes to `out`.
 * Returns 0, or -1 with e filled; *ret_version (optional) receives the config's cniVersion
 * (static storage, for the error output) when it was readable.
 */
int cni_cmd_run(const struct cni_env *env, const char *in, size_t len, FILE *out,
                struct cni_error *e, char *ret_version, size_t version_sz);

#endif
