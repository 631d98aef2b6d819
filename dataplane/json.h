/*
 * json.h — decoding helpers over jansson that report errors with the path of the offending
 * value, e.g. `spec.http[2].route[0].weight: expected integer, got string`.
 *
 * A decoder keeps a struct dp_jpath on the stack: push a key or an index before descending,
 * pop after. The typed getters read one member of an object, check its type and bounds, and on
 * failure write "<path>.<key>: <problem>" into a struct dp_jerr and return -EINVAL. Paths are
 * truncated (never overflow) at DP_JPATH_MAX bytes.
 *
 * Everything here borrows: returned json_t* and const char* stay valid as long as the caller
 * holds the object they came from.
 */
#ifndef DP_JSON_H
#define DP_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#define DP_JPATH_MAX  256
#define DP_JPATH_DEPTH 32

struct dp_jpath {
    char buf[DP_JPATH_MAX];
    size_t len;
    unsigned depth;
    size_t marks[DP_JPATH_DEPTH]; /* buf length before each push */
    unsigned overflow;            /* pushes beyond DP_JPATH_DEPTH, popped without effect */
};

struct dp_jerr {
    char msg[512];
};

/** Start a path at `root` ("" or e.g. "spec"). */
void dp_jpath_init(struct dp_jpath *p, const char *root);
/** Append ".key" (or "key" at the start); keys that are not identifiers are written ["k.y"]. */
void dp_jpath_push_key(struct dp_jpath *p, const char *key);
/** Append "[index]". */
void dp_jpath_push_index(struct dp_jpath *p, size_t index);
/** Undo the last push. */
void dp_jpath_pop(struct dp_jpath *p);
/** The path so far ("" means the document root; printed as "<root>"). */
const char *dp_jpath_str(const struct dp_jpath *p);

/** Write "<path>[.key]: <message>" into e and return -EINVAL. key may be NULL. */
int dp_jerr_set(struct dp_jerr *e, const struct dp_jpath *p, const char *key, const char *fmt,
                ...) __attribute__((format(printf, 4, 5)));

/** "object", "array", "string", "integer", "number", "boolean", "null". */
const char *dp_json_type_str(const json_t *v);

/*
 * Typed member getters. `required`: a missing (or null) member is an error; otherwise the output
 * is left untouched and 0 is returned (so callers preset defaults). They return 1 when the
 * member was present, 0 when absent, -EINVAL on a type/bounds error.
 */
int dp_json_get_str(const json_t *obj, const char *key, bool required, const char **ret,
                    const struct dp_jpath *p, struct dp_jerr *e);
int dp_json_get_int(const json_t *obj, const char *key, bool required, long long min,
                    long long max, long long *ret, const struct dp_jpath *p, struct dp_jerr *e);
int dp_json_get_bool(const json_t *obj, const char *key, bool required, bool *ret,
                     const struct dp_jpath *p, struct dp_jerr *e);
/** Number (integer or real) as double. */
int dp_json_get_num(const json_t *obj, const char *key, bool required, double min, double max,
                    double *ret, const struct dp_jpath *p, struct dp_jerr *e);
int dp_json_get_obj(const json_t *obj, const char *key, bool required, json_t **ret,
                    const struct dp_jpath *p, struct dp_jerr *e);
/** Array with at most max_items elements (bounds what a peer can make us iterate). */
int dp_json_get_arr(const json_t *obj, const char *key, bool required, size_t max_items,
                    json_t **ret, const struct dp_jpath *p, struct dp_jerr *e);

/** Reject members of obj not listed in `allowed` (NULL-terminated): strict decoding. */
int dp_json_check_keys(const json_t *obj, const char *const *allowed, const struct dp_jpath *p,
                       struct dp_jerr *e);

/** RFC 6901 JSON Pointer lookup ("/spec/http/2/route/0"); borrowed result or NULL. */
json_t *dp_json_pointer_get(const json_t *root, const char *pointer);

/** Parse JSON text with a size limit; errors read "source:line:column: message". NEW ref. */
int dp_json_parse(const char *data, size_t len, size_t limit, const char *source, json_t **ret,
                  char *errbuf, size_t errsz);

#endif
