/*
 * json.c — path-tracking decode helpers over jansson.
 */
#include "json.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void dp_jpath_init(struct dp_jpath *p, const char *root)
{
    p->depth = 0;
    p->overflow = 0;
    p->len = 0;
    p->buf[0] = '\0';
    if (root && *root) {
        snprintf(p->buf, sizeof(p->buf), "%s", root);
        p->len = strlen(p->buf);
    }
}

static bool is_ident(const char *k)
{
    if (!*k)
        return false;
    for (const char *c = k; *c; c++)
        if (!(isalnum((unsigned char)*c) || *c == '_' || *c == '-' || *c == '$' || *c == '@'))
            return false;
    return true;
}

static void append(struct dp_jpath *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void append(struct dp_jpath *p, const char *fmt, ...)
{
    va_list ap;
    if (p->len >= sizeof(p->buf) - 1)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(p->buf + p->len, sizeof(p->buf) - p->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    p->len += (size_t)n;
    if (p->len >= sizeof(p->buf))
        p->len = sizeof(p->buf) - 1;
}

static bool mark(struct dp_jpath *p)
{
    if (p->depth >= DP_JPATH_DEPTH) {
        p->overflow++;
        return false;
    }
    p->marks[p->depth++] = p->len;
    return true;
}

void dp_jpath_push_key(struct dp_jpath *p, const char *key)
{
    if (!mark(p))
        return;
    if (is_ident(key)) {
        append(p, "%s%s", p->len ? "." : "", key);
        return;
    }
    /* quote keys with dots, brackets, spaces, quotes...: ["a.b"] */
    append(p, "[\"");
    for (const char *c = key; *c; c++) {
        if (*c == '"' || *c == '\\')
            append(p, "\\%c", *c);
        else if ((unsigned char)*c < 0x20)
            append(p, "\\u%04x", (unsigned char)*c);
        else
            append(p, "%c", *c);
    }
    append(p, "\"]");
}

void dp_jpath_push_index(struct dp_jpath *p, size_t index)
{
    if (!mark(p))
        return;
    append(p, "[%zu]", index);
}

void dp_jpath_pop(struct dp_jpath *p)
{
    if (p->overflow) {
        p->overflow--;
        return;
    }
    if (p->depth == 0)
        return;
    p->len = p->marks[--p->depth];
    p->buf[p->len] = '\0';
}

const char *dp_jpath_str(const struct dp_jpath *p)
{
    return p->len ? p->buf : "<root>";
}

int dp_jerr_set(struct dp_jerr *e, const struct dp_jpath *p, const char *key, const char *fmt, ...)
{
    if (!e)
        return -EINVAL;
    struct dp_jpath tmp = *p;
    if (key)
        dp_jpath_push_key(&tmp, key);
    int n = snprintf(e->msg, sizeof(e->msg), "%s: ", dp_jpath_str(&tmp));
    if (n >= 0 && (size_t)n < sizeof(e->msg)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg + n, sizeof(e->msg) - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

const char *dp_json_type_str(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
    default:
        return "null";
    }
}

/* Fetch a member: 1 present, 0 absent (or null and optional), -EINVAL missing + required. */
static int member(const json_t *obj, const char *key, bool required, json_t **ret,
                  const struct dp_jpath *p, struct dp_jerr *e)
{
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    if (!json_is_object(obj))
        return dp_jerr_set(e, p, NULL, "expected object, got %s",
                           obj ? dp_json_type_str(obj) : "nothing");
    if (v == NULL || json_is_null(v)) {
        if (required)
            return dp_jerr_set(e, p, key, "required field is missing");
        return 0;
    }
    *ret = v;
    return 1;
}

int dp_json_get_str(const json_t *obj, const char *key, bool required, const char **ret,
                    const struct dp_jpath *p, struct dp_jerr *e)
{
    json_t *v;
    int r = member(obj, key, required, &v, p, e);
    if (r <= 0)
        return r;
    if (!json_is_string(v))
        return dp_jerr_set(e, p, key, "expected string, got %s", dp_json_type_str(v));
    if (strlen(json_string_value(v)) != json_string_length(v))
        return dp_jerr_set(e, p, key, "string contains a NUL byte");
    *ret = json_string_value(v);
    return 1;
}

int dp_json_get_int(const json_t *obj, const char *key, bool required, long long min,
                    long long max, long long *ret, const struct dp_jpath *p, struct dp_jerr *e)
{
    json_t *v;
    int r = member(obj, key, required, &v, p, e);
    if (r <= 0)
        return r;
    if (!json_is_integer(v))
        return dp_jerr_set(e, p, key, "expected integer, got %s", dp_json_type_str(v));
    long long x = json_integer_value(v);
    if (x < min || x > max)
        return dp_jerr_set(e, p, key, "%lld out of range [%lld, %lld]", x, min, max);
    *ret = x;
    return 1;
}

int dp_json_get_num(const json_t *obj, const char *key, bool required, double min, double max,
                    double *ret, const struct dp_jpath *p, struct dp_jerr *e)
{
    json_t *v;
    int r = member(obj, key, required, &v, p, e);
    if (r <= 0)
        return r;
    if (!json_is_number(v))
        return dp_jerr_set(e, p, key, "expected number, got %s", dp_json_type_str(v));
    double x = json_number_value(v);
    if (!isfinite(x) || x < min || x > max)
        return dp_jerr_set(e, p, key, "%g out of range [%g, %g]", x, min, max);
    *ret = x;
    return 1;
}

int dp_json_get_bool(const json_t *obj, const char *key, bool required, bool *ret,
                     const struct dp_jpath *p, struct dp_jerr *e)
{
    json_t *v;
    int r = member(obj, key, required, &v, p, e);
    if (r <= 0)
        return r;
    if (!json_is_boolean(v))
        return dp_jerr_set(e, p, key, "expected boolean, got %s", dp_json_type_str(v));
    *ret = json_is_true(v);
    return 1;
}

int dp_json_get_obj(const json_t *obj, const char *key, bool required, json_t **ret,
                    const struct dp_jpath *p, struct dp_jerr *e)
{
    json_t *v;
    int r = member(obj, key, required, &v, p, e);
    if (r <= 0)
        return r;
    if (!json_is_object(v))
        return dp_jerr_set(e, p, key, "expected object, got %s", dp_json_type_str(v));
    *ret = v;
    return 1;
}

int dp_json_get_arr(const json_t *obj, const char *key, bool required, size_t max_items,
                    json_t **ret, const struct dp_jpath *p, struct dp_jerr *e)
{
    json_t *v;
    int r = member(obj, key, required, &v, p, e);
    if (r <= 0)
        return r;
    if (!json_is_array(v))
        return dp_jerr_set(e, p, key, "expected array, got %s", dp_json_type_str(v));
    if (json_array_size(v) > max_items)
        return dp_jerr_set(e, p, key, "too many items (%zu, at most %zu)", json_array_size(v),
                           max_items);
    *ret = v;
    return 1;
}

int dp_json_check_keys(const json_t *obj, const char *const *allowed, const struct dp_jpath *p,
                       struct dp_jerr *e)
{
    const char *k;
    json_t *v;
    if (!json_is_object(obj))
        return dp_jerr_set(e, p, NULL, "expected object, got %s", dp_json_type_str(obj));
    json_object_foreach((json_t *)obj, k, v)
    {
        bool ok = false;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(*a, k) == 0) {
                ok = true;
                break;
            }
        if (!ok)
            return dp_jerr_set(e, p, k, "unknown field");
    }
    return 0;
}

json_t *dp_json_pointer_get(const json_t *root, const char *pointer)
{
    json_t *cur = (json_t *)root;
    char tok[256];
    const char *s = pointer;

    if (!pointer || !*pointer)
        return cur;
    if (*s != '/')
        return NULL;
    while (cur && *s == '/') {
        size_t n = 0;
        s++;
        while (*s && *s != '/') {
            char c = *s++;
            if (c == '~') {
                if (*s == '0')
                    c = '~';
                else if (*s == '1')
                    c = '/';
                else
                    return NULL;
                s++;
            }
            if (n + 1 >= sizeof(tok))
                return NULL;
            tok[n++] = c;
        }
        tok[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, tok);
        } else if (json_is_array(cur)) {
            char *end;
            if (n == 0 || (n > 1 && tok[0] == '0') || !isdigit((unsigned char)tok[0]))
                return NULL;
            errno = 0;
            unsigned long idx = strtoul(tok, &end, 10);
            if (*end || errno)
                return NULL;
            cur = json_array_get(cur, idx);
        } else {
            return NULL;
        }
    }
    return cur;
}

int dp_json_parse(const char *data, size_t len, size_t limit, const char *source, json_t **ret,
                  char *errbuf, size_t errsz)
{
    json_error_t je;
    if (len > limit) {
        snprintf(errbuf, errsz, "%s: document of %zu bytes exceeds the limit of %zu", source,
                 len, limit);
        return -EMSGSIZE;
    }
    json_t *v = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
    if (!v) {
        snprintf(errbuf, errsz, "%s:%d:%d: %s", source, je.line, je.column, je.text);
        return -EINVAL;
    }
    *ret = v;
    return 0;
}
