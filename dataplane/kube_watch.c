/*
 * kube_watch.c — watch-stream line splitter and event decoder. See kube_watch.h.
 *
 * Only newly arrived bytes are searched for '\n', so a long line arriving one byte at a time
 * costs O(n), and complete lines inside a chunk are decoded in place without copying.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kube_watch.h"

const char *dp_kube_event_type_str(enum dp_kube_event_type t)
{
    switch (t) {
    case DP_KUBE_EV_ADDED:
        return "ADDED";
    case DP_KUBE_EV_MODIFIED:
        return "MODIFIED";
    case DP_KUBE_EV_DELETED:
        return "DELETED";
    case DP_KUBE_EV_BOOKMARK:
        return "BOOKMARK";
    case DP_KUBE_EV_ERROR:
        return "ERROR";
    }
    return "?";
}

void dp_kube_splitter_init(struct dp_kube_splitter *s, size_t max_line)
{
    memset(s, 0, sizeof(*s));
    s->max_line = max_line ? max_line : DP_KUBE_WATCH_MAX_LINE;
}

void dp_kube_splitter_done(struct dp_kube_splitter *s)
{
    free(s->buf);
    s->buf = NULL;
    s->len = s->cap = s->scanned = 0;
}

void dp_kube_splitter_reset(struct dp_kube_splitter *s)
{
    s->len = s->scanned = 0;
    s->lines = 0;
    s->error = 0;
    s->errmsg[0] = '\0';
}

int dp_kube_watch_decode_line(const char *line, size_t len, enum dp_kube_event_type *ret_type,
                              json_t **ret_object, char *errbuf, size_t errsz)
{
    static const struct {
        const char *name;
        enum dp_kube_event_type type;
    } types[] = {
            {"ADDED", DP_KUBE_EV_ADDED},       {"MODIFIED", DP_KUBE_EV_MODIFIED},
            {"DELETED", DP_KUBE_EV_DELETED},   {"BOOKMARK", DP_KUBE_EV_BOOKMARK},
            {"ERROR", DP_KUBE_EV_ERROR},
    };
    json_error_t jerr;
    json_t *ev, *obj;
    const char *t;
    size_t i;
    int r = -EBADMSG;

    ev = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (ev == NULL) {
        snprintf(errbuf, errsz, "bad JSON at column %d: %s", jerr.column, jerr.text);
        return -EBADMSG;
    }
    if (!json_is_object(ev)) {
        snprintf(errbuf, errsz, "event is not an object");
        goto out;
    }
    t = json_string_value(json_object_get(ev, "type"));
    if (t == NULL) {
        snprintf(errbuf, errsz, "event has no \"type\"");
        goto out;
    }
    obj = json_object_get(ev, "object");
    if (!json_is_object(obj)) {
        snprintf(errbuf, errsz, "%.20s event has no \"object\"", t);
        goto out;
    }
    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcmp(t, types[i].name) == 0) {
            *ret_type = types[i].type;
            *ret_object = json_incref(obj);
            r = 0;
            goto out;
        }
    }
    snprintf(errbuf, errsz, "unknown event type \"%.40s\"", t);
out:
    json_decref(ev);
    return r;
}

static int fail(struct dp_kube_splitter *s, int r, const char *what)
{
    snprintf(s->errmsg, sizeof(s->errmsg), "watch line %zu: %s", s->lines + 1, what);
    s->error = r;
    return r;
}

static int emit_line(struct dp_kube_splitter *s, const char *line, size_t n, dp_kube_event_cb *cb,
                     void *arg)
{
    enum dp_kube_event_type type;
    json_t *obj = NULL;
    char err[160];
    int r;

    if (n > 0 && line[n - 1] == '\r')
        n--;
    if (n == 0) {
        s->lines++;
        return 0;
    }
    if (n > s->max_line)
        return fail(s, -EMSGSIZE, "line exceeds the limit");
    r = dp_kube_watch_decode_line(line, n, &type, &obj, err, sizeof(err));
    if (r < 0)
        return fail(s, r, err);
    r = cb(type, obj, arg);
    json_decref(obj);
    if (r < 0)
        return fail(s, r, "event handler failed");
    s->lines++;
    return 0;
}

int dp_kube_splitter_feed(struct dp_kube_splitter *s, const char *data, size_t len,
                          dp_kube_event_cb *cb, void *arg)
{
    int r;

    if (s->error)
        return s->error;
    /* Fast path: no buffered partial line, emit complete lines straight from `data`. */
    while (s->len == 0 && len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t n;

        if (nl == NULL)
            break;
        n = (size_t)(nl - data);
        r = emit_line(s, data, n, cb, arg);
        if (r < 0)
            return r;
        data += n + 1;
        len -= n + 1;
    }
    while (len > 0) {
        const char *nl;
        size_t take;

        nl = memchr(data, '\n', len);
        take = nl ? (size_t)(nl - data) : len;
        if (s->len + take > s->max_line)
            return fail(s, -EMSGSIZE, "line exceeds the limit");
        if (s->len + take > s->cap) {
            size_t cap = s->cap ? s->cap : 4096;
            char *p;

            while (cap < s->len + take)
                cap *= 2;
            if (cap > s->max_line)
                cap = s->max_line;
            p = realloc(s->buf, cap);
            if (p == NULL)
                return fail(s, -ENOMEM, "out of memory");
            s->buf = p;
            s->cap = cap;
        }
        memcpy(s->buf + s->len, data, take);
        s->len += take;
        s->scanned = s->len;
        if (nl == NULL)
            break;
        r = emit_line(s, s->buf, s->len, cb, arg);
        s->len = s->scanned = 0;
        if (r < 0)
            return r;
        data += take + 1;
        len -= take + 1;
        /* back to the fast path for the rest */
        while (len > 0) {
            const char *nl2 = memchr(data, '\n', len);
            size_t n;

            if (nl2 == NULL)
                break;
            n = (size_t)(nl2 - data);
            r = emit_line(s, data, n, cb, arg);
            if (r < 0)
                return r;
            data += n + 1;
            len -= n + 1;
        }
    }
    return 0;
}

int dp_kube_splitter_finish(struct dp_kube_splitter *s)
{
    size_t n = s->len;

    if (s->error)
        return s->error;
    while (n > 0 && (s->buf[n - 1] == ' ' || s->buf[n - 1] == '\r' || s->buf[n - 1] == '\t'))
        n--;
    s->len = s->scanned = 0;
    if (n > 0) {
        snprintf(s->errmsg, sizeof(s->errmsg), "watch line %zu: stream ended mid-line",
                 s->lines + 1);
        return -EPIPE;
    }
    return 0;
}
