/* admin.c — /metrics, /stats/prometheus and /healthz/ready handlers. See admin.h. */
#include "admin.h"

#include <errno.h>
#include <stdlib.h>

#include "httpd.h"
#include "metrics.h"

struct dp_admin_ready {
    dp_admin_ready_cb *cb;
    void *arg;
};

static void on_metrics(struct dp_httpd_resp *resp, const struct dp_http_request *req, void *arg)
{
    struct dp_metrics *m = arg;
    (void)req;
    int r = dp_metrics_expose(m, dp_httpd_resp_body_buf(resp));
    if (r < 0) {
        dp_httpd_resp_text(resp, 500, "metrics exposition failed\n");
        return;
    }
    dp_httpd_resp_header(resp, "Content-Type", DP_METRICS_CONTENT_TYPE);
}

int dp_admin_add_metrics(struct dp_httpd *srv, struct dp_metrics *m)
{
    unsigned get = DP_HTTP_MBIT(DP_HTTP_M_GET);
    int r = dp_httpd_route(srv, get, "/metrics", 0, on_metrics, m);
    if (r < 0)
        return r;
    return dp_httpd_route(srv, get, "/stats/prometheus", 0, on_metrics, m);
}

static void on_ready(struct dp_httpd_resp *resp, const struct dp_http_request *req, void *arg)
{
    struct dp_admin_ready *rd = arg;
    char reason[256] = "";
    (void)req;
    if (rd->cb(rd->arg, reason, sizeof(reason))) {
        dp_httpd_resp_text(resp, 200, "ready\n");
        return;
    }
    reason[sizeof(reason) - 1] = '\0';
    dp_httpd_resp_status(resp, 503);
    dp_httpd_resp_printf(resp, "not ready: %s\n", reason[0] ? reason : "unknown");
}

int dp_admin_add_ready(struct dp_httpd *srv, dp_admin_ready_cb *cb, void *arg,
                       struct dp_admin_ready **ret_ready)
{
    struct dp_admin_ready *rd = calloc(1, sizeof(*rd));
    if (rd == NULL)
        return -ENOMEM;
    rd->cb = cb;
    rd->arg = arg;
    int r = dp_httpd_route(srv, DP_HTTP_MBIT(DP_HTTP_M_GET), "/healthz/ready", 0, on_ready, rd);
    if (r < 0) {
        free(rd);
        return r;
    }
    *ret_ready = rd;
    return 0;
}

void dp_admin_ready_free(struct dp_admin_ready *r)
{
    free(r);
}
