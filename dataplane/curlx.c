/*
 * curlx.c — shared libcurl pieces (see curlx.h).
 */
#include "curlx.h"

#include <errno.h>

int dp_curl_errno(CURLcode cc)
{
    switch (cc) {
    case CURLE_OK:
        return 0;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
        return -ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_WRITE_ERROR:
        return -EMSGSIZE;
    case CURLE_ABORTED_BY_CALLBACK:
        return -ECANCELED;
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
        return -ECONNRESET;
    default:
        return -EPROTO;
    }
}

size_t dp_curl_sink_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct dp_curl_sink *s = arg;
    size_t n = size * nmemb;
    int r = dp_buf_append(&s->buf, ptr, n);

    if (r < 0) {
        s->err = r == -ENOMEM ? -ENOMEM : -EMSGSIZE;
        return 0; /* abort the transfer */
    }
    return n;
}
