/*
 * admin.h — the standard admin endpoints on a dp_httpd: Prometheus metrics and readiness.
 *
 *   GET /metrics, GET /stats/prometheus  -> the registry in text format 0.0.4 (200), or 500
 *                                           when the exposition does not fit max_response
 *   GET /healthz/ready                   -> 200 "ready\n" or 503 "not ready: <reason>\n"
 *
 * (HEAD works on all of them.) The node agent serves metrics on 15020 and readiness on 15021,
 * the operator metrics on 15014: each port is its own dp_httpd, so the two halves can be added
 * separately. Loop-thread only, like the server.
 */
#ifndef DP_ADMIN_H
#define DP_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

struct dp_httpd;
struct dp_metrics;

/** Readiness check, run per request on the server's loop: return true when ready; otherwise
 *  may write a short reason (NUL-terminated, truncated to reason_sz) — it is sent to the
 *  prober, so no secrets. */
typedef bool dp_admin_ready_cb(void *arg, char *reason, size_t reason_sz);

/** Route /metrics and /stats/prometheus to m (borrowed; must outlive srv). 0 or the
 *  dp_httpd_route errors (-EEXIST when already added). */
int dp_admin_add_metrics(struct dp_httpd *srv, struct dp_metrics *m);

struct dp_admin_ready;
/**
 * Route /healthz/ready to cb(arg). Returns 0 and a new handle in *ret_ready that the caller
 * frees with dp_admin_ready_free() after freeing srv; -EEXIST, -ENOMEM.
 */
int dp_admin_add_ready(struct dp_httpd *srv, dp_admin_ready_cb *cb, void *arg,
                       struct dp_admin_ready **ret_ready);
/** Accepts NULL. */
void dp_admin_ready_free(struct dp_admin_ready *r);

#endif
