/*
 * kube_watch.h — the watch-stream decoder: bytes of a `?watch=true` response body in, typed
 * events out.
 *
 * The API server sends one JSON object per line: {"type": "ADDED|MODIFIED|DELETED|BOOKMARK|
 * ERROR", "object": {...}}. Chunks arrive split anywhere (mid-line, mid-UTF-8, several lines at
 * once); the splitter buffers at most `max_line` bytes of an unfinished line, so a peer that
 * never sends '\n' cannot make us grow without bound. Blank lines (and "\r\n") are ignored.
 *
 * ERROR events carry a v1 Status ({"kind": "Status", "code": 410, "reason": "Expired"});
 * the caller decides (410 -> relist). Pure code: no I/O, no loop, no logging.
 */
#ifndef DP_KUBE_WATCH_H
#define DP_KUBE_WATCH_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#define DP_KUBE_WATCH_MAX_LINE (16u << 20) /* default line limit: 16 MiB (objects max ~1.5 MiB) */

enum dp_kube_event_type {
    DP_KUBE_EV_ADDED = 1,
    DP_KUBE_EV_MODIFIED,
    DP_KUBE_EV_DELETED,
    DP_KUBE_EV_BOOKMARK,
    DP_KUBE_EV_ERROR,
};

const char *dp_kube_event_type_str(enum dp_kube_event_type t);

/**
 * One decoded event. `object` is borrowed for the duration of the callback (json_incref to
 * keep it). A negative return stops decoding and is returned by dp_kube_splitter_feed().
 */
typedef int dp_kube_event_cb(enum dp_kube_event_type type, json_t *object, void *arg);

struct dp_kube_splitter {
    char *buf;          /* unfinished line */
    size_t len, cap;
    size_t scanned;     /* bytes of buf already searched for '\n' */
    size_t max_line;
    size_t lines;       /* complete lines seen (for error positions) */
    int error;          /* sticky: once failed, every feed returns this */
    char errmsg[200];
};

/** Initialise (max_line 0 = DP_KUBE_WATCH_MAX_LINE). */
void dp_kube_splitter_init(struct dp_kube_splitter *s, size_t max_line);
/** Release the buffer; the splitter may be re-initialised. Accepts an already-done splitter. */
void dp_kube_splitter_done(struct dp_kube_splitter *s);
/** Forget buffered bytes and a sticky error (a new watch on the same object). */
void dp_kube_splitter_reset(struct dp_kube_splitter *s);

/**
 * Feed `len` bytes. Calls cb once per complete line, in order. Returns 0, -EMSGSIZE (a line
 * exceeds max_line), -EBADMSG (a line is not a watch event: bad JSON, unknown type, missing
 * object), -ENOMEM, or the callback's negative return. Errors are sticky; errmsg says what and
 * at which line.
 */
int dp_kube_splitter_feed(struct dp_kube_splitter *s, const char *data, size_t len,
                          dp_kube_event_cb *cb, void *arg);

/**
 * End of stream. Returns 0 if nothing is pending, -EPIPE if the stream stopped mid-line (the
 * partial line is discarded), or the sticky error.
 */
int dp_kube_splitter_finish(struct dp_kube_splitter *s);

/** Decode one line (without '\n'); exposed for tests and the fuzzer. Same errors as feed. */
int dp_kube_watch_decode_line(const char *line, size_t len, enum dp_kube_event_type *ret_type,
                              json_t **ret_object, char *errbuf, size_t errsz);

#endif
