/*
 * http.c — HTTP/1.1 request parser and response helpers. See http.h for the framing rules.
 *
 * The head is copied byte by byte into a buffer sized by the limits, so pointers handed out in
 * dp_http_request never move and a peer can never make us allocate more than the limits allow.
 * Each line is validated when its LF arrives; fields are NUL-terminated in place (the ':' and
 * the first byte after the trimmed value are overwritten), which is why values may not contain
 * NUL — a NUL is a control byte and refused anyway.
 */
#include "http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"

const struct dp_http_limits dp_http_default_limits = {
        .max_request_line = 4096,
        .max_header_bytes = 16384,
        .max_headers = 64,
        .max_body = 1u << 20,
};

#define MAX_EMPTY_LINES  4
#define MAX_CHUNK_DIGITS 16
#define BODY_KEEP_CAP    (64u * 1024)
#define BODY_INITIAL_CAP 1024

static const char *const method_names[DP_HTTP_M__COUNT] = {
        [DP_HTTP_M_OTHER] = "OTHER",     [DP_HTTP_M_GET] = "GET",
        [DP_HTTP_M_HEAD] = "HEAD",       [DP_HTTP_M_POST] = "POST",
        [DP_HTTP_M_PUT] = "PUT",         [DP_HTTP_M_DELETE] = "DELETE",
        [DP_HTTP_M_PATCH] = "PATCH",     [DP_HTTP_M_OPTIONS] = "OPTIONS",
        [DP_HTTP_M_CONNECT] = "CONNECT", [DP_HTTP_M_TRACE] = "TRACE",
};

const char *dp_http_method_str(enum dp_http_method m)
{
    if ((unsigned)m >= DP_HTTP_M__COUNT)
        return "OTHER";
    return method_names[m];
}

int dp_http_error_status(int err)
{
    switch (err) {
    case DP_HTTP_E_URI_TOO_LONG:
        return 414;
    case DP_HTTP_E_HEADER_TOO_LARGE:
        return 431;
    case DP_HTTP_E_BODY_TOO_LARGE:
        return 413;
    case DP_HTTP_E_NOT_IMPLEMENTED:
        return 501;
    case DP_HTTP_E_VERSION:
        return 505;
    case DP_HTTP_E_NOMEM:
        return 503;
    default:
        return 400;
    }
}

const char *dp_http_error_str(int err)
{
    switch (err) {
    case DP_HTTP_AGAIN:
        return "again";
    case DP_HTTP_DONE:
        return "done";
    case DP_HTTP_E_SYNTAX:
        return "syntax";
    case DP_HTTP_E_URI_TOO_LONG:
        return "uri-too-long";
    case DP_HTTP_E_HEADER_TOO_LARGE:
        return "header-too-large";
    case DP_HTTP_E_BODY_TOO_LARGE:
        return "body-too-large";
    case DP_HTTP_E_NOT_IMPLEMENTED:
        return "not-implemented";
    case DP_HTTP_E_VERSION:
        return "version";
    case DP_HTTP_E_NOMEM:
        return "nomem";
    default:
        return "unknown";
    }
}

const char *dp_http_pstate_str(enum dp_http_pstate s)
{
    switch (s) {
    case DP_HTTP_PS_HEAD:
        return "head";
    case DP_HTTP_PS_BODY:
        return "body";
    case DP_HTTP_PS_CHUNK_SIZE:
        return "chunk-size";
    case DP_HTTP_PS_CHUNK_DATA:
        return "chunk-data";
    case DP_HTTP_PS_CHUNK_CRLF:
        return "chunk-crlf";
    case DP_HTTP_PS_TRAILERS:
        return "trailers";
    case DP_HTTP_PS_DONE:
        return "done";
    case DP_HTTP_PS_ERROR:
        return "error";
    }
    return "?";
}

/* RFC 9110 tchar */
static bool is_tchar(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return true;
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-vchar / SP / HTAB / obs-text */
static bool is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int is_hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
        return (c | 0x20) - 'a' + 10;
    return -1;
}

int dp_http_parser_init(struct dp_http_parser *p, const struct dp_http_limits *lim)
{
    if (lim == NULL)
        lim = &dp_http_default_limits;
    if (lim->max_request_line == 0 || lim->max_header_bytes == 0 || lim->max_headers == 0)
        return -EINVAL;
    if (lim->max_request_line > (1u << 24) || lim->max_header_bytes > (1u << 24) ||
        lim->max_headers > (1u << 16) || lim->max_body > ((size_t)1 << 40))
        return -EINVAL;
    memset(p, 0, sizeof(*p));
    p->lim = *lim;
    /* request line + CRLF + up to MAX_EMPTY_LINES CRLFs are never kept together, so: line,
     * its CRLF, the fields, then room for a NUL-terminated copy of the path. */
    p->head_cap = lim->max_request_line + 2 + lim->max_header_bytes + 2;
    p->head = malloc(p->head_cap + lim->max_request_line + 1);
    p->hdrs = calloc(lim->max_headers, sizeof(*p->hdrs));
    if (p->head == NULL || p->hdrs == NULL) {
        free(p->head);
        free(p->hdrs);
        memset(p, 0, sizeof(*p));
        return -ENOMEM;
    }
    dp_http_parser_reset(p);
    return 0;
}

void dp_http_parser_done(struct dp_http_parser *p)
{
    if (p == NULL)
        return;
    free(p->head);
    free(p->hdrs);
    free(p->body);
    memset(p, 0, sizeof(*p));
}

void dp_http_parser_reset(struct dp_http_parser *p)
{
    if (p->body != NULL && p->body_cap > BODY_KEEP_CAP) {
        free(p->body);
        p->body = NULL;
        p->body_cap = 0;
    }
    memset(&p->req, 0, sizeof(p->req));
    p->state = DP_HTTP_PS_HEAD;
    p->head_len = 0;
    p->line_start = 0;
    p->hdr_base = 0;
    p->n_lines = 0;
    p->n_empty = 0;
    p->have_reqline = false;
    p->body_len = 0;
    p->remaining = 0;
    p->line_len = 0;
    p->chunk_digits = 0;
    p->chunk_ext = false;
    p->line_cr = false;
    p->trailer_bytes = 0;
    p->offset = 0;
    p->err = 0;
    p->err_desc = NULL;
}

static int fail(struct dp_http_parser *p, int err, const char *desc)
{
    p->state = DP_HTTP_PS_ERROR;
    p->err = err;
    p->err_desc = desc;
    return err;
}

/* ---------------------------------------------------------------- head */

static enum dp_http_method method_lookup(const char *s, size_t n)
{
    for (unsigned i = 1; i < DP_HTTP_M__COUNT; i++)
        if (strlen(method_names[i]) == n && memcmp(method_names[i], s, n) == 0)
            return (enum dp_http_method)i;
    return DP_HTTP_M_OTHER;
}

/* line = head[start, start+len), CRLF already stripped (head[start+len] == '\r'). */
static int parse_request_line(struct dp_http_parser *p, size_t start, size_t len)
{
    char *l = p->head + start;
    size_t i = 0;

    /* method */
    while (i < len && l[i] != ' ') {
        if (!is_tchar((unsigned char)l[i]))
            return fail(p, DP_HTTP_E_SYNTAX, "invalid character in method");
        i++;
    }
    if (i == 0 || i == len)
        return fail(p, DP_HTTP_E_SYNTAX, "malformed request line");
    size_t mlen = i;
    l[i++] = '\0';

    /* target */
    size_t t0 = i;
    while (i < len && l[i] != ' ') {
        unsigned char c = (unsigned char)l[i];
        if (c < 0x21 || c > 0x7e)
            return fail(p, DP_HTTP_E_SYNTAX, "invalid character in request target");
        i++;
    }
    if (i == t0 || i == len)
        return fail(p, DP_HTTP_E_SYNTAX, "malformed request line");
    size_t tlen = i - t0;
    l[i++] = '\0';

    /* version: HTTP/d.d, nothing after it */
    const char *v = l + i;
    if (len - i != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' || v[5] < '0' || v[5] > '9' ||
        v[7] < '0' || v[7] > '9')
        return fail(p, DP_HTTP_E_SYNTAX, "malformed HTTP version");
    if (v[5] != '1')
        return fail(p, DP_HTTP_E_VERSION, "unsupported HTTP major version");
    p->req.version_minor = v[7] == '0' ? 0 : 1;
    l[len] = '\0'; /* the CR */

    p->req.method_str = l;
    p->req.method = method_lookup(l, mlen);
    p->req.target = l + t0;
    p->req.target_len = tlen;

    /* path / query. A copy goes to the scratch area after head_cap (room for max_request_line
     * + 1 bytes) so target stays intact. */
    const char *t = l + t0;
    const char *path = t, *end = t + tlen;
    bool absolute = false;
    if (t[0] != '/' && !(tlen == 1 && t[0] == '*')) {
        /* absolute-form scheme://authority[/path][?query] -> its path; else authority-form */
        const char *sep = memchr(t, ':', tlen);
        if (sep != NULL && end - sep >= 3 && sep[1] == '/' && sep[2] == '/') {
            absolute = true;
            path = sep + 3;
            while (path < end && *path != '/' && *path != '?')
                path++;
        }
    }
    char *scratch = p->head + p->head_cap;
    size_t plen = 0;
    const char *q = memchr(path, '?', (size_t)(end - path));
    const char *pend = q != NULL ? q : end;
    if (absolute && pend == path)
        scratch[plen++] = '/'; /* absolute-form with an empty path */
    memcpy(scratch + plen, path, (size_t)(pend - path));
    plen += (size_t)(pend - path);
    scratch[plen] = '\0';
    p->req.path = scratch;
    p->req.path_len = plen;
    if (q != NULL) {
        /* query is a suffix of target, which is NUL-terminated: point into it */
        p->req.query = q + 1;
        p->req.query_len = (size_t)(end - (q + 1));
    } else {
        p->req.query = "";
        p->req.query_len = 0;
    }
    return 0;
}

static int parse_header_line(struct dp_http_parser *p, size_t start, size_t len)
{
    char *l = p->head + start;
    size_t i = 0;

    if (l[0] == ' ' || l[0] == '\t')
        return fail(p, DP_HTTP_E_SYNTAX, "obsolete line folding");
    while (i < len && l[i] != ':') {
        unsigned char c = (unsigned char)l[i];
        if (c == ' ' || c == '\t')
            return fail(p, DP_HTTP_E_SYNTAX, "whitespace in header name");
        if (!is_tchar(c))
            return fail(p, DP_HTTP_E_SYNTAX, "invalid character in header name");
        i++;
    }
    if (i == len)
        return fail(p, DP_HTTP_E_SYNTAX, "header line without colon");
    if (i == 0)
        return fail(p, DP_HTTP_E_SYNTAX, "empty header name");
    size_t nlen = i;
    l[i++] = '\0';
    while (i < len && (l[i] == ' ' || l[i] == '\t'))
        i++;
    size_t v0 = i, vend = i;
    for (; i < len; i++) {
        unsigned char c = (unsigned char)l[i];
        if (!is_value_char(c))
            return fail(p, DP_HTTP_E_SYNTAX, "invalid character in header value");
        if (c != ' ' && c != '\t')
            vend = i + 1;
    }
    l[vend] = '\0'; /* a trailing blank or the CR */

    struct dp_http_header *h = &p->hdrs[p->req.n_headers++];
    h->name = l;
    h->name_len = nlen;
    h->value = l + v0;
    h->value_len = vend - v0;
    return 0;
}

static bool token_list_has(const char *v, const char *tok)
{
    size_t tl = strlen(tok);
    while (*v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        const char *s = v;
        while (*v && *v != ',')
            v++;
        const char *e = v;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - s) == tl && strncasecmp(s, tok, tl) == 0)
            return true;
    }
    return false;
}

static int grow_body(struct dp_http_parser *p, size_t need)
{
    /* need excludes the NUL; need <= max_body is checked by the callers */
    if (need + 1 <= p->body_cap)
        return 0;
    size_t cap = p->body_cap ? p->body_cap : BODY_INITIAL_CAP;
    while (cap < need + 1)
        cap *= 2;
    if (cap > p->lim.max_body + 1)
        cap = p->lim.max_body + 1;
    char *nb = realloc(p->body, cap);
    if (nb == NULL)
        return fail(p, DP_HTTP_E_NOMEM, "out of memory for the request body");
    p->body = nb;
    p->body_cap = cap;
    return 0;
}

/* All fields are in; decide the body framing. */
static int finish_head(struct dp_http_parser *p)
{
    struct dp_http_request *r = &p->req;
    unsigned n_cl = 0, n_te = 0, n_host = 0;
    const char *cl = NULL, *te = NULL;

    r->headers = p->hdrs;
    p->trailer_bytes = p->head_len - p->hdr_base; /* trailers share the header budget */
    r->keep_alive = r->version_minor >= 1;
    for (unsigned i = 0; i < r->n_headers; i++) {
        const struct dp_http_header *h = &p->hdrs[i];
        if (strcasecmp(h->name, "content-length") == 0) {
            n_cl++;
            cl = h->value;
        } else if (strcasecmp(h->name, "transfer-encoding") == 0) {
            n_te++;
            te = h->value;
        } else if (strcasecmp(h->name, "host") == 0) {
            n_host++;
            r->host = h->value;
        } else if (strcasecmp(h->name, "connection") == 0) {
            if (token_list_has(h->value, "close"))
                r->keep_alive = false;
            else if (r->version_minor == 0 && token_list_has(h->value, "keep-alive"))
                r->keep_alive = true;
        } else if (strcasecmp(h->name, "expect") == 0) {
            if (strcasecmp(h->value, "100-continue") == 0)
                r->expect_continue = true;
        }
    }
    if (n_host > 1)
        return fail(p, DP_HTTP_E_SYNTAX, "more than one Host header");
    if (n_host == 0 && r->version_minor >= 1)
        return fail(p, DP_HTTP_E_SYNTAX, "HTTP/1.1 request without Host header");
    if (n_te > 0 && n_cl > 0)
        return fail(p, DP_HTTP_E_SYNTAX, "both Transfer-Encoding and Content-Length");
    if (n_cl > 1)
        return fail(p, DP_HTTP_E_SYNTAX, "more than one Content-Length header");
    if (n_te > 0 && r->version_minor == 0)
        return fail(p, DP_HTTP_E_SYNTAX, "Transfer-Encoding in an HTTP/1.0 request");
    if (n_te > 1)
        return fail(p, DP_HTTP_E_SYNTAX, "more than one Transfer-Encoding header");
    if (n_te == 1) {
        if (strcasecmp(te, "chunked") != 0)
            return fail(p, DP_HTTP_E_NOT_IMPLEMENTED, "unsupported transfer coding");
        r->chunked = true;
        p->state = DP_HTTP_PS_CHUNK_SIZE;
        p->remaining = 0;
        p->chunk_digits = 0;
        p->chunk_ext = false;
        p->line_cr = false;
        p->line_len = 0;
        return 0;
    }
    if (n_cl == 1) {
        uint64_t v = 0;
        if (*cl == '\0')
            return fail(p, DP_HTTP_E_SYNTAX, "empty Content-Length");
        for (const char *c = cl; *c; c++) {
            if (*c < '0' || *c > '9')
                return fail(p, DP_HTTP_E_SYNTAX, "invalid Content-Length");
            if (v > (UINT64_MAX - 9) / 10)
                return fail(p, DP_HTTP_E_BODY_TOO_LARGE, "Content-Length too large");
            v = v * 10 + (uint64_t)(*c - '0');
        }
        if (v > p->lim.max_body)
            return fail(p, DP_HTTP_E_BODY_TOO_LARGE, "Content-Length above the body limit");
        if (v > 0) {
            int r2 = grow_body(p, (size_t)v);
            if (r2 < 0)
                return r2;
            p->remaining = v;
            p->state = DP_HTTP_PS_BODY;
            return 0;
        }
    }
    p->state = DP_HTTP_PS_DONE;
    return 0;
}

static void finish_request(struct dp_http_parser *p)
{
    if (p->body != NULL) {
        p->body[p->body_len] = '\0';
        p->req.body = p->body;
    } else {
        p->req.body = "";
    }
    p->req.body_len = p->body_len;
    p->state = DP_HTTP_PS_DONE;
}

/* Consume head bytes; returns bytes used via *used, or an error. */
static int feed_head(struct dp_http_parser *p, const char *data, size_t len, size_t *used)
{
    size_t i;
    for (i = 0; i < len; i++) {
        char c = data[i];
        size_t line_len = p->head_len - p->line_start; /* bytes of this line so far */

        if (line_len > 0 && p->head[p->head_len - 1] == '\r' && c != '\n') {
            *used = i;
            return fail(p, DP_HTTP_E_SYNTAX, "CR not followed by LF");
        }
        if (!p->have_reqline) {
            if (c != '\r' && c != '\n' && line_len + 1 > p->lim.max_request_line) {
                *used = i;
                return fail(p, DP_HTTP_E_URI_TOO_LONG, "request line too long");
            }
        } else if (p->head_len + 1 - p->hdr_base > p->lim.max_header_bytes + 2) {
            /* + 2: the empty line that ends the head is not a field */
            *used = i;
            return fail(p, DP_HTTP_E_HEADER_TOO_LARGE, "request header fields too large");
        }
        if (p->head_len >= p->head_cap) {
            *used = i;
            return fail(p, DP_HTTP_E_HEADER_TOO_LARGE, "request head too large");
        }
        p->head[p->head_len++] = c;
        if (c != '\n')
            continue;

        if (line_len == 0 || p->head[p->head_len - 2] != '\r') {
            *used = i + 1;
            return fail(p, DP_HTTP_E_SYNTAX, "bare LF line terminator");
        }
        size_t l0 = p->line_start, llen = p->head_len - 2 - p->line_start;
        if (!p->have_reqline) {
            if (llen == 0) {
                if (++p->n_empty > MAX_EMPTY_LINES) {
                    *used = i + 1;
                    return fail(p, DP_HTTP_E_SYNTAX, "too many empty lines before request");
                }
                p->head_len = p->line_start = 0;
                continue;
            }
            int r = parse_request_line(p, l0, llen);
            if (r < 0) {
                *used = i + 1;
                return r;
            }
            p->have_reqline = true;
            p->line_start = p->hdr_base = p->head_len;
            continue;
        }
        if (llen == 0) {
            *used = i + 1;
            return finish_head(p);
        }
        if (p->n_lines >= p->lim.max_headers) {
            *used = i + 1;
            return fail(p, DP_HTTP_E_HEADER_TOO_LARGE, "too many header fields");
        }
        p->n_lines++;
        int r = parse_header_line(p, l0, llen);
        if (r < 0) {
            *used = i + 1;
            return r;
        }
        p->line_start = p->head_len;
    }
    *used = len;
    return DP_HTTP_AGAIN;
}

/* chunk-size [ext] CRLF */
static int feed_chunk_size(struct dp_http_parser *p, char c)
{
    if (p->line_cr) {
        if (c != '\n')
            return fail(p, DP_HTTP_E_SYNTAX, "CR not followed by LF in chunk size line");
        if (p->chunk_digits == 0)
            return fail(p, DP_HTTP_E_SYNTAX, "missing chunk size");
        p->line_cr = false;
        p->line_len = 0;
        p->chunk_digits = 0;
        p->chunk_ext = false;
        if (p->remaining == 0) {
            p->state = DP_HTTP_PS_TRAILERS;
            return 0;
        }
        if (p->remaining > p->lim.max_body - p->body_len)
            return fail(p, DP_HTTP_E_BODY_TOO_LARGE, "chunked body above the body limit");
        int r = grow_body(p, p->body_len + (size_t)p->remaining);
        if (r < 0)
            return r;
        p->state = DP_HTTP_PS_CHUNK_DATA;
        return 0;
    }
    if (c == '\r') {
        p->line_cr = true;
        return 0;
    }
    if (c == '\n')
        return fail(p, DP_HTTP_E_SYNTAX, "bare LF in chunk size line");
    if (++p->line_len > p->lim.max_request_line)
        return fail(p, DP_HTTP_E_SYNTAX, "chunk size line too long");
    if (!p->chunk_ext) {
        int h = is_hex((unsigned char)c);
        if (h >= 0) {
            if (++p->chunk_digits > MAX_CHUNK_DIGITS)
                return fail(p, DP_HTTP_E_SYNTAX, "chunk size has too many digits");
            p->remaining = (p->remaining << 4) | (uint64_t)h;
            return 0;
        }
        if (p->chunk_digits == 0)
            return fail(p, DP_HTTP_E_SYNTAX, "invalid chunk size");
        if (c != ';' && c != ' ' && c != '\t')
            return fail(p, DP_HTTP_E_SYNTAX, "invalid character after chunk size");
        p->chunk_ext = true;
        return 0;
    }
    if (!is_value_char((unsigned char)c))
        return fail(p, DP_HTTP_E_SYNTAX, "invalid character in chunk extension");
    return 0;
}

/* trailer-section CRLF: fields are validated loosely and discarded */
static int feed_trailer(struct dp_http_parser *p, char c)
{
    if (p->line_cr) {
        if (c != '\n')
            return fail(p, DP_HTTP_E_SYNTAX, "CR not followed by LF in trailer");
        p->line_cr = false;
        if (p->line_len == 0) {
            finish_request(p);
            return 0;
        }
        if (p->n_lines >= p->lim.max_headers)
            return fail(p, DP_HTTP_E_HEADER_TOO_LARGE, "too many header and trailer fields");
        p->n_lines++;
        p->line_len = 0;
        return 0;
    }
    if (c == '\r') {
        p->line_cr = true;
        return 0;
    }
    if (c == '\n')
        return fail(p, DP_HTTP_E_SYNTAX, "bare LF in trailer");
    if (!is_value_char((unsigned char)c))
        return fail(p, DP_HTTP_E_SYNTAX, "invalid character in trailer");
    if (p->line_len == 0 && (c == ' ' || c == '\t'))
        return fail(p, DP_HTTP_E_SYNTAX, "obsolete line folding in trailer");
    p->line_len++;
    if (++p->trailer_bytes > p->lim.max_header_bytes)
        return fail(p, DP_HTTP_E_HEADER_TOO_LARGE, "header and trailer fields too large");
    return 0;
}

int dp_http_parser_feed(struct dp_http_parser *p, const char *data, size_t len,
                        size_t *ret_consumed, const char **err_desc)
{
    size_t i = 0;
    int r = 0;

    if (p->state == DP_HTTP_PS_ERROR) {
        r = p->err;
        goto out;
    }
    if (p->state == DP_HTTP_PS_HEAD) {
        size_t used = 0;
        r = feed_head(p, data, len, &used);
        i = used;
        if (r < 0)
            goto out;
        if (p->state == DP_HTTP_PS_HEAD)
            goto out; /* AGAIN, all consumed */
        if (p->state == DP_HTTP_PS_DONE) {
            finish_request(p);
            goto out;
        }
    }
    while (i < len && p->state != DP_HTTP_PS_DONE) {
        switch (p->state) {
        case DP_HTTP_PS_BODY:
        case DP_HTTP_PS_CHUNK_DATA: {
            size_t n = len - i;
            if (n > p->remaining)
                n = (size_t)p->remaining;
            memcpy(p->body + p->body_len, data + i, n);
            p->body_len += n;
            p->remaining -= n;
            i += n;
            if (p->remaining == 0) {
                if (p->state == DP_HTTP_PS_BODY) {
                    finish_request(p);
                } else {
                    p->state = DP_HTTP_PS_CHUNK_CRLF;
                    p->line_cr = false;
                }
            }
            break;
        }
        case DP_HTTP_PS_CHUNK_CRLF: {
            char c = data[i++];
            if (!p->line_cr) {
                if (c != '\r') {
                    r = fail(p, DP_HTTP_E_SYNTAX, "chunk data not followed by CRLF");
                    goto out;
                }
                p->line_cr = true;
            } else {
                if (c != '\n') {
                    r = fail(p, DP_HTTP_E_SYNTAX, "chunk data not followed by CRLF");
                    goto out;
                }
                p->line_cr = false;
                p->state = DP_HTTP_PS_CHUNK_SIZE;
            }
            break;
        }
        case DP_HTTP_PS_CHUNK_SIZE:
            r = feed_chunk_size(p, data[i++]);
            if (r < 0)
                goto out;
            break;
        case DP_HTTP_PS_TRAILERS:
            r = feed_trailer(p, data[i++]);
            if (r < 0)
                goto out;
            break;
        default:
            r = fail(p, DP_HTTP_E_SYNTAX, "parser in an impossible state");
            goto out;
        }
    }
    r = 0;
out:
    p->offset += i;
    if (r < 0) {
        if (err_desc != NULL)
            *err_desc = p->err_desc;
        return r;
    }
    if (ret_consumed != NULL)
        *ret_consumed = i;
    return p->state == DP_HTTP_PS_DONE ? DP_HTTP_DONE : DP_HTTP_AGAIN;
}

const struct dp_http_header *dp_http_request_header(const struct dp_http_request *req,
                                                    const char *name)
{
    for (unsigned i = 0; i < req->n_headers; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return &req->headers[i];
    return NULL;
}

/* ---------------------------------------------------------------- responses */

const char *dp_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

bool dp_http_header_ok(const char *name, const char *value)
{
    if (name == NULL || value == NULL || *name == '\0')
        return false;
    for (const char *c = name; *c; c++)
        if (!is_tchar((unsigned char)*c))
            return false;
    for (const char *c = value; *c; c++)
        if (!is_value_char((unsigned char)*c))
            return false;
    return true;
}

int dp_http_append_header(struct dp_buf **out, const char *name, const char *value)
{
    if (!dp_http_header_ok(name, value))
        return -EINVAL;
    return dp_buf_appendf(out, "%s: %s\r\n", name, value);
}

int dp_http_append_status(struct dp_buf **out, int status, const struct dp_http_header *hdrs,
                          unsigned n_hdrs)
{
    if (status < 100 || status > 999)
        return -EINVAL;
    for (unsigned i = 0; i < n_hdrs; i++)
        if (!dp_http_header_ok(hdrs[i].name, hdrs[i].value))
            return -EINVAL;
    int r = dp_buf_appendf(out, "HTTP/1.1 %d %s\r\n", status, dp_http_reason(status));
    for (unsigned i = 0; r >= 0 && i < n_hdrs; i++)
        r = dp_buf_appendf(out, "%s: %s\r\n", hdrs[i].name, hdrs[i].value);
    return r < 0 ? r : 0;
}

int dp_http_append_head_end(struct dp_buf **out)
{
    return dp_buf_append(out, "\r\n", 2);
}

int dp_http_append_chunk(struct dp_buf **out, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    int r = dp_buf_appendf(out, "%zx\r\n", len);
    if (r >= 0)
        r = dp_buf_append(out, data, len);
    if (r >= 0)
        r = dp_buf_append(out, "\r\n", 2);
    return r < 0 ? r : 0;
}

int dp_http_append_last_chunk(struct dp_buf **out)
{
    return dp_buf_append(out, "0\r\n\r\n", 5);
}

int dp_http_append_response(struct dp_buf **out, int status, const char *content_type,
                            const void *body, size_t len, bool close, bool head_only)
{
    if (content_type != NULL && !dp_http_header_ok("Content-Type", content_type))
        return -EINVAL;
    int r = dp_http_append_status(out, status, NULL, 0);
    if (r >= 0 && content_type != NULL)
        r = dp_buf_appendf(out, "Content-Type: %s\r\n", content_type);
    if (r >= 0)
        r = dp_buf_appendf(out, "Content-Length: %zu\r\n", len);
    if (r >= 0 && close)
        r = dp_buf_append_str(out, "Connection: close\r\n");
    if (r >= 0)
        r = dp_http_append_head_end(out);
    if (r >= 0 && !head_only && len > 0)
        r = dp_buf_append(out, body, len);
    return r < 0 ? r : 0;
}
