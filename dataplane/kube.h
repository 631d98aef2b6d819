/*
 * kube.h — a small Kubernetes API client on libcurl + jansson.
 *
 * This header holds what every user needs: resource descriptors and request paths (pure, no
 * I/O), the blocking client for one-shot programs (the CNI plugin, ambitctl, tests) and the
 * mapping of API errors to -errno. The asynchronous machinery driven by dp_loop (watches,
 * informers, work queue) lives in kube_watch.h and kube_informer.h.
 *
 * Error mapping of API responses (dp_kube_http_errno):
 *   2xx -> 0; 400/422 -> -EINVAL; 401 -> -EACCES; 403 -> -EPERM; 404 -> -ENOENT;
 *   409 -> -EEXIST (AlreadyExists) or -EBUSY (Conflict: stale resourceVersion);
 *   410 -> -ESTALE (Gone / Expired: relist); 413 -> -EMSGSIZE; 429 -> -EAGAIN;
 *   5xx -> -EIO; transport errors -> -ECONNREFUSED / -ETIMEDOUT / -EPROTO.
 * The server's Status message of the last failed call is kept in the client
 * (dp_kube_client_last_error), because the caller decides what to log.
 *
 * Response bodies are bounded (DP_KUBE_MAX_BODY); larger responses fail with -EMSGSIZE, so
 * list with a page `limit`.
 *
 * Nothing here logs above debug. Not thread-safe: one client per thread.
 */
#ifndef DP_KUBE_H
#define DP_KUBE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "kube_config.h"

struct curl_slist;

#define DP_KUBE_MAX_BODY     (64u << 20)
#define DP_KUBE_FIELD_MANAGER "ambit"

/** Describes one API resource; instances are static tables (see DP_KUBE_RES_*). */
struct dp_kube_resource {
    const char *group;    /* "" for the core group */
    const char *version;  /* "v1" */
    const char *resource; /* plural, lower case: "pods" */
    const char *kind;     /* "Pod" */
    bool namespaced;
};

extern const struct dp_kube_resource DP_KUBE_RES_NAMESPACES, DP_KUBE_RES_PODS,
        DP_KUBE_RES_SERVICES, DP_KUBE_RES_ENDPOINTSLICES, DP_KUBE_RES_NODES,
        DP_KUBE_RES_SERVICEACCOUNTS, DP_KUBE_RES_SECRETS, DP_KUBE_RES_CONFIGMAPS,
        DP_KUBE_RES_LEASES, DP_KUBE_RES_EVENTS, DP_KUBE_RES_TOKENREVIEWS,
        DP_KUBE_RES_CRDS, DP_KUBE_RES_GATEWAYS, DP_KUBE_RES_GATEWAYCLASSES,
        DP_KUBE_RES_HTTPROUTES, DP_KUBE_RES_VIRTUALSERVICES, DP_KUBE_RES_DESTINATIONRULES,
        DP_KUBE_RES_ISTIO_GATEWAYS, DP_KUBE_RES_SERVICEENTRIES,
        DP_KUBE_RES_PEERAUTHENTICATIONS, DP_KUBE_RES_AUTHORIZATIONPOLICIES,
        DP_KUBE_RES_REQUESTAUTHENTICATIONS, DP_KUBE_RES_TELEMETRIES, DP_KUBE_RES_MESHES,
        DP_KUBE_RES_VALIDATING_WEBHOOK_CONFIGS;

/** Options of a list or watch; every member optional (NULL/0). */
struct dp_kube_list_opts {
    const char *label_selector;  /* "app=reviews,version!=v1" */
    const char *field_selector;  /* "spec.nodeName=node-1" */
    const char *resource_version;
    const char *continue_token;
    unsigned limit;              /* page size */
    bool watch;
    bool allow_bookmarks;
    unsigned timeout_seconds;    /* server-side watch timeout */
};

/** Percent-encode s for a query value (RFC 3986 unreserved kept). New string or NULL. */
char *dp_kube_urlencode(const char *s);

/**
 * Build a request path (no server): "/api/v1/namespaces/<ns>/pods/<name>/<sub>?<query>".
 * ns NULL (or the resource cluster-scoped) = all namespaces / cluster scope; name and sub may be
 * NULL; opts may be NULL. Path segments are checked (no '/', '?', '#', '%', control bytes, not
 * "." or ".."; at most 253 bytes). Returns 0 and a new string, or -EINVAL / -ENOMEM.
 */
int dp_kube_path(const struct dp_kube_resource *res, const char *ns, const char *name,
                 const char *sub, const struct dp_kube_list_opts *opts, char **ret_path);

/** HTTP status + Status reason -> -errno (see the table above). */
int dp_kube_http_errno(long http_status, const char *reason);

/* ------------------------------------------------------------------ blocking client */

struct dp_kube_client;

/** New client for cfg (borrowed: cfg must outlive the client). 0 or -ENOMEM / -EINVAL. */
int dp_kube_client_new(struct dp_kube_config *cfg, struct dp_kube_client **ret_client);
void dp_kube_client_free(struct dp_kube_client *c);
/** Request timeout for blocking calls (default 30 s). */
void dp_kube_client_set_timeout(struct dp_kube_client *c, unsigned timeout_ms);
/** "409 AlreadyExists: pods \"x\" already exists" of the last failure ("" after success).
 *  Borrowed, valid until the next call. */
const char *dp_kube_client_last_error(const struct dp_kube_client *c);
/** The config the client was built from (borrowed). */
struct dp_kube_config *dp_kube_client_config(struct dp_kube_client *c);

/**
 * Raw request: method "GET"/"POST"/"PUT"/"PATCH"/"DELETE", path from dp_kube_path, optional
 * body with its content type. On 2xx returns 0 and (if ret_body) a new reference to the decoded
 * JSON body (JSON null if empty). *ret_http (optional) receives the status even on failure.
 */
int dp_kube_request(struct dp_kube_client *c, const char *method, const char *path,
                    const char *content_type, const json_t *body, long *ret_http,
                    json_t **ret_body);

/** GET one object. New reference. */
int dp_kube_get(struct dp_kube_client *c, const struct dp_kube_resource *res, const char *ns,
                const char *name, json_t **ret_obj);

/**
 * List all pages (following metadata.continue; opts->limit is the page size, default 500).
 * Returns 0, a new array of items (each with apiVersion/kind filled in, as a watch delivers
 * them) and (optional) the list's resourceVersion (new string). A 410 on a later page
 * (continue token expired) restarts the list once from the beginning.
 */
int dp_kube_list(struct dp_kube_client *c, const struct dp_kube_resource *res, const char *ns,
                 const struct dp_kube_list_opts *opts, json_t **ret_items, char **ret_rv);

/** POST. ns is taken from obj.metadata.namespace when NULL. ret_obj optional (new ref). */
int dp_kube_create(struct dp_kube_client *c, const struct dp_kube_resource *res, const char *ns,
                   const json_t *obj, json_t **ret_obj);
/** PUT of the whole object (obj must carry metadata.name and resourceVersion). sub may be
 *  "status" to replace the status subresource. */
int dp_kube_update(struct dp_kube_client *c, const struct dp_kube_resource *res, const char *ns,
                   const json_t *obj, const char *sub, json_t **ret_obj);
/** DELETE; -ENOENT when already gone. */
int dp_kube_delete(struct dp_kube_client *c, const struct dp_kube_resource *res, const char *ns,
                   const char *name);
/** JSON merge patch (RFC 7386) of the object or of a subresource (sub = "status" or NULL). */
int dp_kube_merge_patch(struct dp_kube_client *c, const struct dp_kube_resource *res,
                        const char *ns, const char *name, const char *sub, const json_t *patch,
                        json_t **ret_obj);
/**
 * Server-side apply (application/apply-patch+yaml with a JSON body, fieldManager "ambit").
 * obj must carry apiVersion, kind and metadata.name. `force` takes over conflicting fields.
 * sub may be "status".
 */
int dp_kube_apply(struct dp_kube_client *c, const struct dp_kube_resource *res, const char *ns,
                  const json_t *obj, const char *sub, bool force, json_t **ret_obj);

/** What a TokenReview said about a token. Strings are new (free with _done). */
struct dp_kube_token_info {
    bool authenticated;
    char *username;   /* "system:serviceaccount:istio-system:ztunnel" */
    char *uid;
    char *sa_namespace; /* parsed from username, NULL if not a service account */
    char *sa_name;
    char *pod_name;   /* from extra["authentication.kubernetes.io/pod-name"] when bound */
    char *pod_uid;
    char *node_name;  /* from extra["authentication.kubernetes.io/node-name"] (1.30+) */
    char *error;      /* status.error when not authenticated */
};
void dp_kube_token_info_done(struct dp_kube_token_info *ti);

/**
 * Build the TokenReview request body for `token` and `audience` (NULL = API server default).
 * New reference. Exposed for tests.
 */
json_t *dp_kube_token_review_body(const char *token, const char *audience);
/** Interpret a TokenReview response (status.*). 0 or -EINVAL when malformed. */
int dp_kube_token_review_parse(const json_t *resp, struct dp_kube_token_info *ret_info);
/** POST a TokenReview and parse it. 0 (see ret_info->authenticated) or -errno. */
int dp_kube_token_review(struct dp_kube_client *c, const char *token, const char *audience,
                         struct dp_kube_token_info *ret_info);

/* ------------------------------------------------------------------ shared with kube_watch.c */

/**
 * Configure a curl easy handle for one API request: URL = server + path, TLS (CA, client
 * cert/key from files or memory, insecure), bearer token (re-read from the token file when
 * stale, or always when `force_token`), method, body (copied by curl) and headers. *ret_headers
 * receives a new slist the caller frees after the transfer (curl_slist_free_all).
 */
int dp_kube_easy_prepare(struct dp_kube_config *cfg, void *curl_easy, const char *method,
                         const char *path, const char *content_type, const char *body,
                         size_t body_len, bool force_token, struct curl_slist **ret_headers);

/** Decode an error body into "<http> <reason>: <message>" (msg may be NULL). */
void dp_kube_format_error(long http, const json_t *body, char *buf, size_t bufsz);

/* ------------------------------------------------------------------ object helpers */

/** metadata.<key> as a string, or NULL (borrowed). */
const char *dp_kube_meta_str(const json_t *obj, const char *key);
/** metadata.labels[key] / metadata.annotations[key], or NULL (borrowed). */
const char *dp_kube_label(const json_t *obj, const char *key);
const char *dp_kube_annotation(const json_t *obj, const char *key);
/** "<ns>/<name>" or "<name>" for cluster-scoped objects into buf; -ENAMETOOLONG / -EINVAL. */
int dp_kube_obj_key(const json_t *obj, char *buf, size_t bufsz);
/** Status code of a v1 Status object (an ERROR watch event), or 0. */
long dp_kube_status_code(const json_t *status);

/**
 * Does a label selector string ("a=b,c!=d,e,!f,g in (x,y),h notin (z)") match `labels`
 * (an object of strings; NULL = no labels)? Returns 1/0, or -EINVAL for a malformed selector.
 * Used for client-side filtering and tested against the server's semantics.
 */
int dp_kube_selector_matches(const char *selector, const json_t *labels);
/** matchLabels/matchExpressions LabelSelector object against labels. 1/0 or -EINVAL. */
int dp_kube_label_selector_matches(const json_t *selector, const json_t *labels);

#endif
