/* libFuzzer target: arbitrary bytes through the HTTP/1.1 request parser, fed whole and in
 * pieces (the first byte picks the piece size), with default and with small limits, including
 * pipelined requests (the parser is reset after each complete request). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "http.h"

static void run(const struct dp_http_limits *lim, const uint8_t *data, size_t size, size_t step)
{
    struct dp_http_parser p;
    if (dp_http_parser_init(&p, lim) < 0)
        return;
    size_t off = 0;
    while (off < size) {
        size_t n = size - off < step ? size - off : step;
        size_t used = 0;
        const char *desc = NULL;
        int r = dp_http_parser_feed(&p, (const char *)data + off, n, &used, &desc);
        if (r < 0) {
            if (desc == NULL || dp_http_error_status(r) < 400)
                __builtin_trap();
            break;
        }
        if (used > n)
            __builtin_trap();
        off += used;
        if (r == DP_HTTP_DONE) {
            const struct dp_http_request *q = &p.req;
            /* touch everything the parser handed out */
            if (strlen(q->path) != q->path_len || strlen(q->target) != q->target_len ||
                q->body_len > p.lim.max_body || q->n_headers > p.lim.max_headers)
                __builtin_trap();
            for (unsigned i = 0; i < q->n_headers; i++)
                if (strlen(q->headers[i].value) != q->headers[i].value_len)
                    __builtin_trap();
            volatile size_t sink = strlen(q->method_str) + strlen(q->query);
            (void)sink;
            if (q->body_len > 0 && q->body[q->body_len] != '\0')
                __builtin_trap();
            dp_http_parser_reset(&p);
        } else if (used != n) {
            __builtin_trap();
        }
    }
    dp_http_parser_done(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct dp_http_limits small = {
            .max_request_line = 256, .max_header_bytes = 1024, .max_headers = 16, .max_body = 4096};
    if (size > (1u << 20))
        return 0;
    size_t step = size > 0 ? (size_t)(data[0] % 17) + 1 : 1;
    run(NULL, data, size, size ? size : 1);
    run(&small, data, size, step);
    return 0;
}
