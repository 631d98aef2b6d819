/*
 * webhook_config.h — keeps the ValidatingWebhookConfiguration that registers the operator's
 * admission webhook (server.h, 15017) usable: the API server only calls a webhook whose TLS
 * certificate verifies against that entry's clientConfig.caBundle, and nothing but the
 * operator knows its CA.
 *
 * The leader (op_may_write) watches the one object named by --webhook-config (an informer with
 * field selector metadata.name=<name>, so RBAC can restrict every verb to that resourceName)
 * and JSON-patches every webhook entry's clientConfig.caBundle to base64(PEM of the mesh root,
 * which verifies the serving certificate, serving_cert.h). It patches again whenever the object
 * changes (someone blanked it, helm re-created it) and when the CA changes (checked every
 * second against op_ca). A missing object is not an error: logged once at info, watched.
 *
 * CA rotation (`cacerts`): the bundle becomes new root + previous root for 10 minutes (a
 * replica that has not reloaded yet, or an old connection, still verifies), and the webhook
 * server keeps its old certificate until the configuration it sees trusts the new root
 * (op_webhook_config_trusts_ca as its CA gate), so the API server never meets a certificate
 * its caBundle cannot verify.
 *
 * failurePolicy, as Istio's validation controller does it: the chart ships `Ignore` (fail open:
 * an operator that is not there yet cannot block Istio objects); with fail_closed the leader
 * proves the whole path — API server -> Service -> pod -> TLS verified with the caBundle ->
 * our analyzer — by a dry-run create of an invalid VirtualService in its namespace, and only
 * once our webhook denied it sets `Fail` on every entry. It never sets it back: a later
 * outage of the operator blocks writes of Istio kinds (the only ones the rules match; the rest
 * of the cluster is unaffected) rather than letting invalid config through. Without
 * fail_closed it keeps every entry at `Ignore`.
 */
#ifndef OP_WEBHOOK_CONFIG_H
#define OP_WEBHOOK_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "operator.h"

struct op_webhook_config;

/**
 * Pure: the JSON Patch (RFC 6902) that brings `vwc` (a ValidatingWebhookConfiguration) to
 * caBundle `ca_bundle` (base64) on every entry and, when `policy` is not NULL, failurePolicy
 * `policy`. Each changed entry is guarded by a `test` of its name, so a concurrent reorder
 * fails the patch instead of writing the wrong entry. 0 and *ret_patch = NEW array, or NULL
 * when nothing needs changing; -EINVAL when vwc is malformed (errbuf names the field).
 */
int op_webhook_config_patch(const json_t *vwc, const char *ca_bundle, const char *policy,
                            json_t **ret_patch, char *errbuf, size_t errsz);

/** base64 (no newlines) of PEM `pem` followed by `extra_pem` (may be NULL; a newline is put
 *  between when pem lacks one): NEW string (free()) or NULL. */
char *op_webhook_ca_bundle(const char *pem, const char *extra_pem);

/** Does every entry's caBundle (base64) contain the PEM text `pem`? True when vwc has no
 *  entries. Pure. */
bool op_webhook_bundle_has(const json_t *vwc, const char *pem);

/** Does the denial message of a dry-run come from one of vwc's webhooks (`admission webhook
 *  "<name>" denied the request`)? Pure. */
bool op_webhook_denied_by(const json_t *vwc, const char *message);

/**
 * Manage the configuration `name` (borrowed, must outlive wc). fail_closed: see above.
 * resync_ms: how often the CA is compared (a local check; 0 = every second). Starts its
 * informer.
 * 0 or -errno.
 */
int op_webhook_config_new(struct op_ctx *op, const char *name, bool fail_closed,
                          unsigned resync_ms, struct op_webhook_config **ret_wc);
void op_webhook_config_free(struct op_webhook_config *wc);
/** The webhook server's CA gate (server.h op_server_set_ca_gate; arg = wc, may be NULL): true
 *  when the configuration as last seen trusts the current CA (or there is none to update). */
bool op_webhook_config_trusts_ca(void *arg);
/** Re-check now (leadership changes; op_may_write decides who writes). */
void op_webhook_config_kick(struct op_webhook_config *wc);

#endif
