/*
 * curlx.h — the small pieces every libcurl user in dataplane/ shares (the Kubernetes client and
 * the operator client): one mapping of curl results to -errno, and one bounded body sink that
 * collects an answer into a dp_buf, whose hard limit bounds what a peer can make us hold.
 */
#ifndef DP_CURLX_H
#define DP_CURLX_H

#include <stddef.h>

#include <curl/curl.h>

#include "buf.h"

/** -errno for a curl result: 0, -ECONNREFUSED (connect/resolve), -ETIMEDOUT, -ENOMEM,
 *  -EMSGSIZE (write callback refused: body too large), -ECANCELED (aborted), -ECONNRESET
 *  (connection lost mid-transfer), else -EPROTO. */
int dp_curl_errno(CURLcode cc);

/** A response body sink: set CURLOPT_WRITEFUNCTION to dp_curl_sink_write and
 *  CURLOPT_WRITEDATA to the sink. `buf` must be a dp_buf (its limit is the cap); past the cap
 *  the transfer is aborted and `err` is -EMSGSIZE. */
struct dp_curl_sink {
    struct dp_buf *buf;
    int err;
};

size_t dp_curl_sink_write(char *ptr, size_t size, size_t nmemb, void *sink);

#endif
