/*
 * kube_config.h — where the Kubernetes API server is and how to authenticate to it.
 *
 * Two sources, as client-go has them:
 *   - kubeconfig (YAML or JSON): the current-context (or a named one) selects a cluster
 *     (server, certificate-authority / -data, insecure-skip-tls-verify) and a user
 *     (client-certificate / -data, client-key / -data, token, tokenFile). Relative file paths are
 *     resolved against the kubeconfig's directory. `*-data` fields are base64 and are decoded here.
 *   - in-cluster: KUBERNETES_SERVICE_HOST/_PORT, the service-account token file and CA bundle under
 *     /var/run/secrets/kubernetes.io/serviceaccount/ (the directory can be overridden for tests).
 *
 * Tokens that come from a file are not copied: the client re-reads the file (token rotation of
 * projected service-account tokens), see dp_kube_config_token().
 *
 * Nothing here logs; errors are described in errbuf ("kubeconfig <path>: users[0].user: ...").
 */
#ifndef DP_KUBE_CONFIG_H
#define DP_KUBE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DP_KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
/** Token files and PEM blobs larger than this are refused. */
#define DP_KUBE_MAX_SECRET_FILE (1u << 20)

/** All strings are owned by the config (malloc'ed), NULL when absent. */
struct dp_kube_config {
    char *server;       /* "https://10.96.0.1:443", no trailing slash */
    char *ca_file;      /* PEM bundle path */
    char *ca_pem;       /* PEM bundle bytes (from certificate-authority-data) */
    size_t ca_pem_len;
    bool insecure;      /* insecure-skip-tls-verify */
    char *cert_file;    /* client certificate */
    char *cert_pem;
    size_t cert_pem_len;
    char *key_file;     /* client key (never logged) */
    char *key_pem;
    size_t key_pem_len;
    char *token;        /* static bearer token */
    char *token_file;   /* re-read on rotation */
    char *namespace;    /* the context's namespace, or the pod's namespace in-cluster */
    char *context;      /* name of the context used (kubeconfig only) */

    /* token file cache (see dp_kube_config_token) */
    char *token_cache;
    uint64_t token_read_ms;
};

/**
 * Load a kubeconfig file. `context` selects a context by name (NULL = current-context).
 * Returns 0 and a new config (free with dp_kube_config_free), -ENOENT (file or context missing),
 * -EINVAL (malformed; errbuf says where) or -ENOMEM.
 */
int dp_kube_config_load_kubeconfig(const char *path, const char *context,
                                   struct dp_kube_config **ret_cfg, char *errbuf, size_t errsz);

/**
 * Parse kubeconfig text (YAML/JSON). `dir` is the directory relative paths are resolved
 * against (NULL = leave them as they are); `source` names the input in errors.
 */
int dp_kube_config_parse_kubeconfig(const char *data, size_t len, const char *source,
                                    const char *dir, const char *context,
                                    struct dp_kube_config **ret_cfg, char *errbuf, size_t errsz);

/**
 * Read a bearer token file (bounded, surrounding whitespace trimmed): 0 and a NEW string, or
 * -errno (-ENODATA for an empty file). The caller wipes it before freeing.
 */
int dp_kube_read_token_file(const char *path, char **ret_token);

/**
 * In-cluster config from KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT and `sa_dir`
 * (NULL = DP_KUBE_SA_DIR): token file `<dir>/token`, CA `<dir>/ca.crt`, namespace
 * `<dir>/namespace`. -ENOENT when not running in a cluster.
 */
int dp_kube_config_in_cluster(const char *sa_dir, struct dp_kube_config **ret_cfg, char *errbuf,
                              size_t errsz);

/**
 * The usual search order: `explicit_path` (e.g. --kubeconfig) if set, else $KUBECONFIG (first
 * entry), else in-cluster, else ~/.kube/config.
 */
int dp_kube_config_default(const char *explicit_path, struct dp_kube_config **ret_cfg,
                           char *errbuf, size_t errsz);

/** Free a config; accepts NULL. Secret material is wiped before it is freed. */
void dp_kube_config_free(struct dp_kube_config *cfg);

/**
 * The bearer token to send now, or NULL if the config has none. A tokenFile is re-read when the
 * cached copy is older than `max_age_ms` (client-go uses one minute) or when `force` is set
 * (after a 401). Borrowed: valid until the next call. On a read error the previous token is
 * kept (rotation must not break a running watch).
 */
const char *dp_kube_config_token(struct dp_kube_config *cfg, uint64_t now_ms, uint64_t max_age_ms,
                                 bool force);

/** Decode standard base64 (whitespace ignored). 0 and a new buffer (NUL-terminated, *ret_len
 *  excludes the NUL) or -EINVAL / -ENOMEM. */
int dp_kube_base64_decode(const char *in, size_t in_len, char **ret_out, size_t *ret_len);

#endif
