/*
 * cni_install.h — `ambit-cni install|uninstall`, run by the cni DaemonSet: copy the plugin into
 * the host's CNI bin dir and chain it as the LAST plugin of the node's primary network config
 * (the lexically first *.conf / *.conflist / *.json in the conf dir), converting a single-plugin
 * .conf into a .conflist. Idempotent; uninstall removes exactly our entry and the binary.
 *
 * The JSON rewriting is pure (cni_install_merge / cni_install_strip) and unit-tested; the file
 * side writes atomically (temp file + rename) so the runtime never reads half a config.
 */
#ifndef CNI_INSTALL_H
#define CNI_INSTALL_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

struct cni_install_opts {
    const char *bin_dir;  /* e.g. /opt/cni/bin */
    const char *conf_dir; /* e.g. /etc/cni/net.d */
    const char *self;     /* binary to copy; NULL = /proc/self/exe */
    json_t *plugin;       /* our conflist entry (borrowed), see cni_install_plugin_entry */
};

/** Our entry: {"type":"ambit-cni", ...settings}. NEW reference. Strings may be NULL (omitted). */
json_t *cni_install_plugin_entry(const char *agent_socket, const char *run_dir,
                                 const char *kubeconfig, const char *exclude_csv,
                                 bool dns_capture);

/**
 * New conflist = primary (a conflist or a single-plugin conf) with `ours` as the last plugin
 * (an older entry of ours anywhere in the list is replaced). Returns 0 and a NEW reference and
 * *ret_changed (false when the result equals the input conflist), or -EINVAL with errbuf.
 */
int cni_install_merge(const json_t *primary, const json_t *ours, json_t **ret_conflist,
                      bool *ret_changed, char *errbuf, size_t errsz);

/** Conflist without our entries: 0 and a NEW reference (*ret_changed false if none were
 *  there), -EINVAL if it is not a conflist. */
int cni_install_strip(const json_t *conflist, json_t **ret_conflist, bool *ret_changed);

/** Path of the primary config in dir (lexically first .conf/.conflist/.json). -ENOENT if none. */
int cni_install_find_primary(const char *dir, char *ret_path, size_t sz);

/**
 * The kubeconfig the plugin uses, built from the DaemonSet pod's service account: server from
 * KUBERNETES_SERVICE_HOST/_PORT (passed in), CA and token read from sa_dir (ca.crt, token) and
 * embedded, since the plugin runs on the host where the pod's files are not visible. Written
 * atomically with mode 0600, only when the content changed (token rotation rewrites it).
 * Returns 1 written, 0 unchanged, -errno with errbuf.
 */
int cni_install_write_kubeconfig(const char *path, const char *sa_dir, const char *host,
                                 const char *port, char *errbuf, size_t errsz);

/** Do it on the file system. 0 or -errno with errbuf. */
int cni_install(const struct cni_install_opts *o, char *errbuf, size_t errsz);
int cni_uninstall(const struct cni_install_opts *o, char *errbuf, size_t errsz);

#endif
