/*
 * http.h — incremental HTTP/1.1 request parser with hard limits, and response serialisation
 * helpers. Independent of the event loop: the admin/metrics server (httpd.h), the waypoint and
 * the fuzzers all drive it by feeding bytes.
 *
 * Model: the parser owns a copy of the request head (request line + header fields) in a buffer
 * allocated once at init, sized by the limits, and a body buffer that grows (checked) up to
 * max_body. Strings handed out in struct dp_http_request point into those buffers, are
 * NUL-terminated and stay valid until dp_http_parser_reset() / dp_http_parser_done().
 *
 * Framing decisions (RFC 9110/9112, strict where the RFC allows a choice, to rule out request
 * smuggling):
 *   - lines end in CRLF; a bare LF or bare CR is a syntax error (400). Up to 4 empty lines
 *     before the request line are skipped (clients may send a stray CRLF after a body).
 *   - obsolete line folding, whitespace before the colon, control bytes (except HTAB) in a field
 *     value, non-token bytes in a method or field name, and bytes outside 0x21..0x7e in the
 *     request-target are 400.
 *   - HTTP/1.0 and HTTP/1.x are served (1.x>1 as 1.1); any other major version is 505.
 *   - HTTP/1.1 requests need exactly one Host field; missing or repeated Host is 400.
 *   - Content-Length: digits only, at most one field (even with equal values) -> otherwise 400;
 *     a declared length above max_body is 413 before any body byte is read.
 *   - Transfer-Encoding: only exactly "chunked" is implemented; any other coding (or a list such
 *     as "gzip, chunked") is 501. Chunked bodies are decoded into the body buffer; the decoded
 *     size is bounded by max_body (413), chunk-size lines by 16 hex digits and the extension
 *     bytes by max_request_line (400), trailer fields are discarded but count against the header
 *     limits (431). Transfer-Encoding together with Content-Length, or in an HTTP/1.0 request,
 *     is 400. We decode rather than answer 411 because curl and most clients stream uploads of
 *     unknown size as chunked.
 *   - A request with neither field has an empty body.
 *
 * Limits: the request line is bounded by max_request_line (414 — also when the line is
 * malformed but overlong), the header fields together by max_header_bytes and their number by
 * max_headers (431), the body by max_body (413).
 *
 * Errors are domain codes (negative enum dp_http_error values — not -errno) plus a static
 * message and the stream offset where they were detected; dp_http_error_status() maps a code to
 * the status a server answers. After an error the parser must be reset before reuse, and a
 * server should close the connection: the framing is lost.
 *
 * Not thread-safe; one parser per connection.
 */
#ifndef DP_HTTP_H
#define DP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dp_buf;

/** Request methods. DP_HTTP_M_OTHER is any other valid token (method_str has it). */
enum dp_http_method {
    DP_HTTP_M_OTHER = 0,
    DP_HTTP_M_GET,
    DP_HTTP_M_HEAD,
    DP_HTTP_M_POST,
    DP_HTTP_M_PUT,
    DP_HTTP_M_DELETE,
    DP_HTTP_M_PATCH,
    DP_HTTP_M_OPTIONS,
    DP_HTTP_M_CONNECT,
    DP_HTTP_M_TRACE,
    DP_HTTP_M__COUNT
};
/** Bit for a method in a method mask (routes). */
#define DP_HTTP_MBIT(m) (1u << (m))
const char *dp_http_method_str(enum dp_http_method m);

/** Parser results: >= 0 progress, < 0 a domain error. */
enum dp_http_error {
    DP_HTTP_AGAIN = 0,               /* need more bytes */
    DP_HTTP_DONE = 1,                /* a complete request is available */
    DP_HTTP_E_SYNTAX = -1,           /* 400 */
    DP_HTTP_E_URI_TOO_LONG = -2,     /* 414 */
    DP_HTTP_E_HEADER_TOO_LARGE = -3, /* 431 */
    DP_HTTP_E_BODY_TOO_LARGE = -4,   /* 413 */
    DP_HTTP_E_NOT_IMPLEMENTED = -5,  /* 501 */
    DP_HTTP_E_VERSION = -6,          /* 505 */
    DP_HTTP_E_NOMEM = -7,            /* 503: could not grow the body buffer */
};
/** HTTP status to answer for a parser error code (400 for unknown codes). */
int dp_http_error_status(int err);
/** Short name of a result/error code, for traces ("syntax", "uri-too-long", ...). */
const char *dp_http_error_str(int err);

struct dp_http_limits {
    size_t max_request_line; /* bytes, without CRLF */
    size_t max_header_bytes; /* all header field lines together, with their CRLFs */
    unsigned max_headers;    /* number of header fields (trailers count too) */
    size_t max_body;         /* decoded body bytes */
};
/** Defaults: 4096 / 16384 / 64 / 1 MiB. */
extern const struct dp_http_limits dp_http_default_limits;

struct dp_http_header {
    const char *name;  /* as received (case preserved), NUL-terminated */
    const char *value; /* leading/trailing whitespace trimmed, NUL-terminated */
    size_t name_len, value_len;
};

struct dp_http_request {
    enum dp_http_method method;
    const char *method_str;
    const char *target; /* raw request-target */
    const char *path;   /* origin-form path ("/x/y"), or the whole target for other forms
                         * ("*", authority-form); absolute-form is reduced to its path */
    const char *query;  /* after '?', without it; "" when absent */
    size_t target_len, path_len, query_len;
    int version_minor; /* 0 or 1 (HTTP/1.x with x > 1 is reported as 1) */
    struct dp_http_header *headers;
    unsigned n_headers;
    const char *body; /* decoded body, NUL-terminated (the NUL is not counted) */
    size_t body_len;
    bool keep_alive;      /* per version + Connection: close / keep-alive */
    bool chunked;         /* the body arrived chunked */
    bool expect_continue; /* Expect: 100-continue */
    const char *host;     /* Host field or NULL (HTTP/1.0 without Host) */
};

enum dp_http_pstate {
    DP_HTTP_PS_HEAD = 0, /* reading request line + fields */
    DP_HTTP_PS_BODY,     /* Content-Length body */
    DP_HTTP_PS_CHUNK_SIZE,
    DP_HTTP_PS_CHUNK_DATA,
    DP_HTTP_PS_CHUNK_CRLF,
    DP_HTTP_PS_TRAILERS,
    DP_HTTP_PS_DONE,
    DP_HTTP_PS_ERROR,
};
const char *dp_http_pstate_str(enum dp_http_pstate s);

/** Embed in the owner (e.g. the connection); fields are private to http.c except `req`,
 *  which is valid after dp_http_parser_feed() returned DP_HTTP_DONE. */
struct dp_http_parser {
    struct dp_http_limits lim;
    enum dp_http_pstate state;
    struct dp_http_request req;
    /* head buffer: fixed size, allocated at init */
    char *head;
    size_t head_cap, head_len;
    size_t line_start; /* offset in head of the line being read */
    size_t hdr_base;   /* offset in head where the header fields start */
    unsigned n_lines;  /* header lines seen (after the request line) */
    unsigned n_empty;  /* empty lines skipped before the request line */
    bool have_reqline;
    /* header fields (array of max_headers), allocated at init */
    struct dp_http_header *hdrs;
    /* body */
    char *body;
    size_t body_cap, body_len;
    uint64_t remaining; /* Content-Length left, or bytes of the current chunk left */
    /* chunk-size / trailer line accumulation */
    size_t line_len;
    unsigned chunk_digits;
    bool chunk_ext, line_cr;
    size_t trailer_bytes;
    /* diagnostics */
    uint64_t offset; /* bytes consumed since reset */
    int err;
    const char *err_desc;
};

/** Initialise with limits (NULL = defaults). Allocates the head buffer and header array.
 *  0, -EINVAL (a zero limit), or -ENOMEM. */
int dp_http_parser_init(struct dp_http_parser *p, const struct dp_http_limits *lim);
/** Release buffers; accepts NULL and a parser that was zeroed but never initialised. */
void dp_http_parser_done(struct dp_http_parser *p);
/** Forget the current request (pointers in req become invalid) and start over. Keeps the
 *  buffers (the body buffer shrinks back if it grew beyond 64 KiB). */
void dp_http_parser_reset(struct dp_http_parser *p);

/**
 * Feed len bytes. Returns DP_HTTP_AGAIN (all bytes consumed, need more), DP_HTTP_DONE (a
 * request is complete in p->req; *ret_consumed tells how many bytes of this call were used —
 * the rest belongs to the next, pipelined request), or a negative dp_http_error code with
 * *err_desc set to a static message (also kept in p->err_desc; p->offset is where). Feeding a
 * parser in DONE or ERROR state returns the same result again without consuming anything.
 * ret_consumed and err_desc may be NULL.
 */
int dp_http_parser_feed(struct dp_http_parser *p, const char *data, size_t len,
                        size_t *ret_consumed, const char **err_desc);

/** True once the whole head has been parsed (p->req fields except the body are valid) —
 *  e.g. to send "100 Continue" before the body arrives. */
static inline bool dp_http_parser_head_done(const struct dp_http_parser *p)
{
    return p->state != DP_HTTP_PS_HEAD && p->state != DP_HTTP_PS_ERROR;
}

/** Case-insensitive header lookup; the first match or NULL. Borrowed from req. */
const struct dp_http_header *dp_http_request_header(const struct dp_http_request *req,
                                                    const char *name);

/* ------------------------------------------------------------------ responses */

/** Reason phrase for a status ("Not Found"); "Unknown" for codes we do not know. */
const char *dp_http_reason(int status);

/** True if name is a valid field name (token) and value has no CR, LF, NUL or other control
 *  bytes except HTAB — i.e. appending them cannot split the response. */
bool dp_http_header_ok(const char *name, const char *value);

/**
 * Append "HTTP/1.1 <status> <reason>\r\n" and the given fields to *out. Does not add the empty
 * line (use dp_http_append_head_end) so callers can add more fields. -EINVAL for a status outside
 * 100..999 or a field rejected by dp_http_header_ok (nothing appended in that case), or the
 * dp_buf errors (-EMSGSIZE, -ENOMEM).
 */
int dp_http_append_status(struct dp_buf **out, int status, const struct dp_http_header *hdrs,
                          unsigned n_hdrs);
/** Append one field "name: value\r\n" (-EINVAL if !dp_http_header_ok). */
int dp_http_append_header(struct dp_buf **out, const char *name, const char *value);
/** Append the empty line that ends a head. */
int dp_http_append_head_end(struct dp_buf **out);
/** Append one chunk of a chunked body ("<hex>\r\n<data>\r\n"); len 0 appends nothing (use
 *  dp_http_append_last_chunk to end the body). */
int dp_http_append_chunk(struct dp_buf **out, const void *data, size_t len);
/** Append "0\r\n\r\n". */
int dp_http_append_last_chunk(struct dp_buf **out);

/**
 * Convenience: a complete response with Content-Length, optional Content-Type and
 * "Connection: close" when close is set. Body may be NULL when len is 0. When head_only is set
 * (a HEAD request) the Content-Length is that of body but the body is not appended.
 */
int dp_http_append_response(struct dp_buf **out, int status, const char *content_type,
                            const void *body, size_t len, bool close, bool head_only);

#endif
