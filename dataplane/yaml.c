/*
 * yaml.c — libyaml events to jansson values.
 *
 * The parser walks libyaml's event stream recursively. Anchored nodes are kept in a small table
 * (name -> value); an alias inserts a deep copy, and every copied node counts against the node
 * limit, which is what stops exponential alias bombs.
 */
#include "yaml.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h> /* libyaml; our own header is "yaml.h" (-iquote) */

struct anchor {
    char *name;
    json_t *value; /* owned */
};

struct ctx {
    yaml_parser_t parser;
    const char *source;
    char *errbuf;
    size_t errsz;
    unsigned long nodes;
    struct anchor *anchors;
    size_t n_anchors, cap_anchors;
};

static int fail_at(struct ctx *c, yaml_mark_t mark, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_at(struct ctx *c, yaml_mark_t mark, const char *fmt, ...)
{
    if (c->errbuf && c->errsz) {
        int n = snprintf(c->errbuf, c->errsz, "%s:%zu:%zu: ", c->source, mark.line + 1,
                         mark.column + 1);
        if (n >= 0 && (size_t)n < c->errsz) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(c->errbuf + n, c->errsz - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return -EINVAL;
}

static int parser_error(struct ctx *c)
{
    const char *what = c->parser.problem ? c->parser.problem : "malformed YAML";
    yaml_mark_t m = c->parser.problem_mark;
    if (c->parser.context)
        return fail_at(c, m, "%s %s", what, c->parser.context);
    return fail_at(c, m, "%s", what);
}

static int next_event(struct ctx *c, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&c->parser, ev))
        return c->parser.error == YAML_MEMORY_ERROR ? -ENOMEM : parser_error(c);
    return 0;
}

static int count_node(struct ctx *c, yaml_mark_t mark)
{
    if (++c->nodes > DP_YAML_MAX_NODES)
        return fail_at(c, mark, "document too large (more than %d nodes, alias bomb?)",
                       DP_YAML_MAX_NODES);
    return 0;
}

static unsigned long json_size(json_t *v)
{
    unsigned long n = 1;
    size_t i;
    const char *k;
    json_t *e;
    if (json_is_array(v)) {
        json_array_foreach(v, i, e) n += json_size(e);
    } else if (json_is_object(v)) {
        json_object_foreach(v, k, e) n += json_size(e);
    }
    return n;
}

static int anchor_add(struct ctx *c, const char *name, json_t *v)
{
    /* a later anchor with the same name shadows the earlier one (YAML spec) */
    if (c->n_anchors == c->cap_anchors) {
        size_t ncap = c->cap_anchors ? c->cap_anchors * 2 : 8;
        struct anchor *a = realloc(c->anchors, ncap * sizeof(*a));
        if (!a)
            return -ENOMEM;
        c->anchors = a;
        c->cap_anchors = ncap;
    }
    char *dup = strdup(name);
    if (!dup)
        return -ENOMEM;
    c->anchors[c->n_anchors].name = dup;
    c->anchors[c->n_anchors].value = json_incref(v);
    c->n_anchors++;
    return 0;
}

static json_t *anchor_find(struct ctx *c, const char *name)
{
    for (size_t i = c->n_anchors; i > 0; i--)
        if (strcmp(c->anchors[i - 1].name, name) == 0)
            return c->anchors[i - 1].value;
    return NULL;
}

static bool is_null_word(const char *s, size_t n)
{
    return n == 0 || (n == 1 && s[0] == '~') ||
           (n == 4 && (!strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL")));
}

static int bool_word(const char *s)
{
    static const char *t[] = {"true", "True", "TRUE"};
    static const char *f[] = {"false", "False", "FALSE"};
    for (size_t i = 0; i < 3; i++) {
        if (!strcmp(s, t[i]))
            return 1;
        if (!strcmp(s, f[i]))
            return 0;
    }
    return -1;
}

/* YAML 1.2 core schema integer: [-+]?[0-9]+ | 0o[0-7]+ | 0x[0-9a-fA-F]+ */
static int parse_int(const char *s, bool *is_int, long long *ret)
{
    const char *p = s;
    int base = 10;
    bool neg = false;
    *is_int = false;
    if (p[0] == '0' && p[1] == 'o') {
        base = 8;
        p += 2;
    } else if (p[0] == '0' && p[1] == 'x') {
        base = 16;
        p += 2;
    } else if (*p == '-' || *p == '+') {
        neg = *p == '-';
        p++;
    }
    if (!*p)
        return 0;
    for (const char *q = p; *q; q++) {
        bool ok = base == 16 ? ((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f') ||
                                (*q >= 'A' && *q <= 'F'))
                  : base == 8 ? (*q >= '0' && *q <= '7')
                              : (*q >= '0' && *q <= '9');
        if (!ok)
            return 0;
    }
    *is_int = true;
    errno = 0;
    unsigned long long u = strtoull(p, NULL, base);
    if (errno == ERANGE || u > (unsigned long long)LLONG_MAX + (neg ? 1u : 0u))
        return -ERANGE;
    *ret = neg ? (long long)(0 - u) : (long long)u;
    return 0;
}

/* YAML 1.2 core schema float: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? and .inf/.nan */
static bool looks_float(const char *s, bool *special)
{
    const char *p = s;
    *special = false;
    if (*p == '-' || *p == '+')
        p++;
    if (!strcasecmp(p, ".inf") || !strcasecmp(s, ".nan")) {
        *special = true;
        return true;
    }
    bool digits = false;
    while (*p >= '0' && *p <= '9')
        p++, digits = true;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9')
            p++, digits = true;
    }
    if (!digits)
        return false;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '-' || *p == '+')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return *p == '\0';
}

static int scalar_value(struct ctx *c, yaml_event_t *ev, json_t **ret)
{
    const char *s = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    json_t *v = NULL;

    if (strlen(s) != n)
        return fail_at(c, ev->start_mark, "scalar contains a NUL byte");

    if (tag && strcmp(tag, YAML_STR_TAG) == 0) {
        plain = false;
    } else if (tag && strcmp(tag, "!") != 0 && strcmp(tag, YAML_NULL_TAG) != 0 &&
               strcmp(tag, YAML_BOOL_TAG) != 0 && strcmp(tag, YAML_INT_TAG) != 0 &&
               strcmp(tag, YAML_FLOAT_TAG) != 0) {
        return fail_at(c, ev->start_mark, "unsupported tag %s", tag);
    } else if (tag) {
        plain = strcmp(tag, "!") != 0; /* a typed tag resolves like a plain scalar */
    }

    if (!plain) {
        v = json_stringn(s, n);
        if (!v)
            return fail_at(c, ev->start_mark, "string is not valid UTF-8");
        *ret = v;
        return 0;
    }

    if (is_null_word(s, n)) {
        v = json_null();
    } else if (bool_word(s) >= 0) {
        v = json_boolean(bool_word(s));
    } else {
        bool is_int, special;
        long long iv;
        int r = parse_int(s, &is_int, &iv);
        if (r < 0)
            return fail_at(c, ev->start_mark, "integer %s out of range", s);
        if (is_int) {
            v = json_integer(iv);
        } else if (looks_float(s, &special)) {
            if (special)
                return fail_at(c, ev->start_mark, "%s cannot be represented in JSON", s);
            double d = strtod(s, NULL);
            if (!isfinite(d))
                return fail_at(c, ev->start_mark, "number %s out of range", s);
            v = json_real(d);
        } else {
            v = json_stringn(s, n);
            if (!v)
                return fail_at(c, ev->start_mark, "string is not valid UTF-8");
        }
    }
    if (tag && v) {
        /* explicit type tags must agree with what the scalar resolved to */
        bool ok = (!strcmp(tag, YAML_NULL_TAG) && json_is_null(v)) ||
                  (!strcmp(tag, YAML_BOOL_TAG) && json_is_boolean(v)) ||
                  (!strcmp(tag, YAML_INT_TAG) && json_is_integer(v)) ||
                  (!strcmp(tag, YAML_FLOAT_TAG) && json_is_number(v));
        if (!ok) {
            json_decref(v);
            return fail_at(c, ev->start_mark, "value \"%s\" does not match tag %s", s, tag);
        }
    }
    if (!v)
        return -ENOMEM;
    *ret = v;
    return 0;
}

static int parse_node(struct ctx *c, yaml_event_t *ev, int depth, json_t **ret);

/* Parse nodes until the closing event of the current collection; ev is the start event. */
static int parse_sequence(struct ctx *c, int depth, json_t **ret)
{
    json_t *arr = json_array();
    if (!arr)
        return -ENOMEM;
    for (;;) {
        yaml_event_t ev;
        int r = next_event(c, &ev);
        if (r < 0)
            goto fail;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        json_t *item = NULL;
        r = parse_node(c, &ev, depth + 1, &item);
        yaml_event_delete(&ev);
        if (r < 0)
            goto fail;
        if (json_array_append_new(arr, item) < 0) {
            r = -ENOMEM;
            goto fail;
        }
        continue;
    fail:
        json_decref(arr);
        return r;
    }
    *ret = arr;
    return 0;
}

static int merge_into(struct ctx *c, json_t *dst, json_t *src, yaml_mark_t mark)
{
    /* YAML merge key (<<): explicit keys of the mapping win, then earlier merge sources */
    const char *k;
    json_t *v;
    if (!json_is_object(src))
        return fail_at(c, mark, "merge key << needs a mapping");
    json_object_foreach(src, k, v)
    {
        if (!json_object_get(dst, k) && json_object_set(dst, k, v) < 0)
            return -ENOMEM;
    }
    return 0;
}

static int parse_mapping(struct ctx *c, int depth, json_t **ret)
{
    json_t *obj = json_object();
    json_t *merged = NULL; /* keys from << sources, applied after the explicit keys */
    int r = 0;
    if (!obj)
        return -ENOMEM;
    for (;;) {
        yaml_event_t kev, vev;
        json_t *key = NULL, *val = NULL;
        r = next_event(c, &kev);
        if (r < 0)
            goto out;
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            break;
        }
        yaml_mark_t kmark = kev.start_mark;
        yaml_mark_t vmark;
        if (kev.type != YAML_SCALAR_EVENT && kev.type != YAML_ALIAS_EVENT) {
            r = fail_at(c, kmark, "mapping keys must be scalars");
            yaml_event_delete(&kev);
            goto out;
        }
        bool merge = kev.type == YAML_SCALAR_EVENT &&
                     kev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                     strcmp((const char *)kev.data.scalar.value, "<<") == 0;
        r = parse_node(c, &kev, depth + 1, &key);
        yaml_event_delete(&kev);
        if (r < 0)
            goto out;
        r = next_event(c, &vev);
        if (r < 0) {
            json_decref(key);
            goto out;
        }
        vmark = vev.start_mark;
        r = parse_node(c, &vev, depth + 1, &val);
        yaml_event_delete(&vev);
        if (r < 0) {
            json_decref(key);
            goto out;
        }
        if (merge) {
            if (!merged && !(merged = json_object())) {
                json_decref(key);
                json_decref(val);
                r = -ENOMEM;
                goto out;
            }
            if (json_is_array(val)) {
                size_t i;
                json_t *e;
                json_array_foreach(val, i, e)
                {
                    r = merge_into(c, merged, e, vmark);
                    if (r < 0)
                        break;
                }
            } else {
                r = merge_into(c, merged, val, vmark);
            }
            json_decref(key);
            json_decref(val);
            if (r < 0)
                goto out;
            continue;
        }
        char numbuf[64];
        const char *ks;
        if (json_is_string(key))
            ks = json_string_value(key);
        else if (json_is_integer(key))
            snprintf(numbuf, sizeof(numbuf), "%" JSON_INTEGER_FORMAT, json_integer_value(key)),
                    ks = numbuf;
        else if (json_is_real(key))
            snprintf(numbuf, sizeof(numbuf), "%.17g", json_real_value(key)), ks = numbuf;
        else if (json_is_true(key))
            ks = "true";
        else if (json_is_false(key))
            ks = "false";
        else if (json_is_null(key))
            ks = "null";
        else {
            json_decref(key);
            json_decref(val);
            r = fail_at(c, kmark, "mapping keys must be scalars");
            goto out;
        }
        if (json_object_get(obj, ks)) {
            r = fail_at(c, kmark, "duplicate key \"%s\"", ks);
            json_decref(key);
            json_decref(val);
            goto out;
        }
        r = json_object_set_new(obj, ks, val) < 0 ? -ENOMEM : 0;
        json_decref(key);
        if (r < 0)
            goto out;
    }
    if (merged) {
        const char *k;
        json_t *v;
        json_object_foreach(merged, k, v)
        {
            if (!json_object_get(obj, k) && json_object_set(obj, k, v) < 0) {
                r = -ENOMEM;
                goto out;
            }
        }
        json_decref(merged);
    }
    *ret = obj;
    return 0;
out:
    json_decref(merged);
    json_decref(obj);
    return r;
}

static int parse_node(struct ctx *c, yaml_event_t *ev, int depth, json_t **ret)
{
    json_t *v = NULL;
    const char *anchor = NULL;
    int r;

    if (depth > DP_YAML_MAX_DEPTH)
        return fail_at(c, ev->start_mark, "nesting deeper than %d levels", DP_YAML_MAX_DEPTH);
    r = count_node(c, ev->start_mark);
    if (r < 0)
        return r;

    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        anchor = (const char *)ev->data.scalar.anchor;
        r = scalar_value(c, ev, &v);
        break;
    case YAML_SEQUENCE_START_EVENT:
        anchor = (const char *)ev->data.sequence_start.anchor;
        r = parse_sequence(c, depth, &v);
        break;
    case YAML_MAPPING_START_EVENT:
        anchor = (const char *)ev->data.mapping_start.anchor;
        r = parse_mapping(c, depth, &v);
        break;
    case YAML_ALIAS_EVENT: {
        json_t *a = anchor_find(c, (const char *)ev->data.alias.anchor);
        if (!a)
            return fail_at(c, ev->start_mark, "unknown alias *%s",
                           (const char *)ev->data.alias.anchor);
        c->nodes += json_size(a);
        if (c->nodes > DP_YAML_MAX_NODES)
            return fail_at(c, ev->start_mark,
                           "document too large (more than %d nodes, alias bomb?)",
                           DP_YAML_MAX_NODES);
        v = json_deep_copy(a);
        r = v ? 0 : -ENOMEM;
        break;
    }
    default:
        return fail_at(c, ev->start_mark, "unexpected YAML event");
    }
    if (r < 0)
        return r;
    if (anchor) {
        r = anchor_add(c, anchor, v);
        if (r < 0) {
            json_decref(v);
            return r;
        }
    }
    *ret = v;
    return 0;
}

static void ctx_done(struct ctx *c)
{
    for (size_t i = 0; i < c->n_anchors; i++) {
        free(c->anchors[i].name);
        json_decref(c->anchors[i].value);
    }
    free(c->anchors);
    c->anchors = NULL;
    c->n_anchors = c->cap_anchors = 0;
    yaml_parser_delete(&c->parser);
}

int dp_yaml_parse(const char *data, size_t len, const char *source, json_t **ret_docs,
                  char *errbuf, size_t errsz)
{
    struct ctx c = {.source = source ? source : "<input>", .errbuf = errbuf, .errsz = errsz};
    json_t *docs = NULL;
    int r = 0;

    if (errbuf && errsz)
        errbuf[0] = '\0';
    if (!yaml_parser_initialize(&c.parser))
        return -ENOMEM;
    yaml_parser_set_input_string(&c.parser, (const unsigned char *)data, len);
    docs = json_array();
    if (!docs) {
        r = -ENOMEM;
        goto out;
    }
    for (;;) {
        yaml_event_t ev;
        r = next_event(&c, &ev);
        if (r < 0)
            goto out;
        yaml_event_type_t t = ev.type;
        yaml_event_delete(&ev);
        if (t == YAML_STREAM_END_EVENT)
            break;
        if (t != YAML_DOCUMENT_START_EVENT)
            continue; /* STREAM_START */

        /* one document: a root node, then DOCUMENT_END; anchors are per document */
        json_t *root = NULL;
        r = next_event(&c, &ev);
        if (r < 0)
            goto out;
        r = parse_node(&c, &ev, 0, &root);
        yaml_event_delete(&ev);
        if (r < 0)
            goto out;
        r = next_event(&c, &ev);
        if (r < 0) {
            json_decref(root);
            goto out;
        }
        yaml_event_delete(&ev);
        for (size_t i = 0; i < c.n_anchors; i++) {
            free(c.anchors[i].name);
            json_decref(c.anchors[i].value);
        }
        c.n_anchors = 0;
        if (json_is_null(root)) {
            json_decref(root);
            continue;
        }
        if (json_array_append_new(docs, root) < 0) {
            r = -ENOMEM;
            goto out;
        }
    }
    *ret_docs = docs;
    docs = NULL;
out:
    json_decref(docs);
    ctx_done(&c);
    return r;
}

int dp_yaml_parse_file(const char *path, json_t **ret_docs, char *errbuf, size_t errsz)
{
    char *data = NULL;
    size_t len = 0;
    struct stat st;
    int r, fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        r = -errno;
        snprintf(errbuf, errsz, "%s: cannot open: %s", path, strerror(-r));
        return r;
    }
    if (fstat(fd, &st) < 0) {
        r = -errno;
        goto out;
    }
    if ((size_t)st.st_size > DP_YAML_MAX_FILE) {
        snprintf(errbuf, errsz, "%s: file larger than %u bytes", path, DP_YAML_MAX_FILE);
        r = -EFBIG;
        goto out;
    }
    data = malloc((size_t)st.st_size + 1);
    if (!data) {
        r = -ENOMEM;
        goto out;
    }
    while (len < (size_t)st.st_size) {
        ssize_t n = read(fd, data + len, (size_t)st.st_size - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            snprintf(errbuf, errsz, "%s: read: %s", path, strerror(-r));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    r = dp_yaml_parse(data, len, path, ret_docs, errbuf, errsz);
out:
    free(data);
    close(fd);
    return r;
}

/* ------------------------------------------------------------------ emitter */

static bool plain_safe(const char *s)
{
    bool dummy_int, special;
    long long iv;
    size_t n = strlen(s);
    if (n == 0 || is_null_word(s, n) || bool_word(s) >= 0)
        return false;
    if (parse_int(s, &dummy_int, &iv) < 0 || dummy_int || looks_float(s, &special))
        return false;
    if (strchr("-?:,[]{}#&*!|>'\"%@` ", s[0]) || s[n - 1] == ' ' || s[n - 1] == ':')
        return false;
    if (strstr(s, ": ") || strstr(s, " #"))
        return false;
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return false;
    return true;
}

static int emit_scalar(const json_t *v, FILE *out)
{
    if (json_is_string(v) && plain_safe(json_string_value(v)))
        return fputs(json_string_value(v), out) < 0 ? -EIO : 0;
    if (json_is_object(v))
        return fputs("{}", out) < 0 ? -EIO : 0;
    if (json_is_array(v))
        return fputs("[]", out) < 0 ? -EIO : 0;
    /* numbers, booleans, null and quoted strings: JSON's spelling is valid YAML */
    return json_dumpf(v, out, JSON_ENCODE_ANY) < 0 ? -EIO : 0;
}

static bool is_nonempty_collection(const json_t *v)
{
    return (json_is_object(v) && json_object_size(v) > 0) ||
           (json_is_array(v) && json_array_size(v) > 0);
}

static int emit_node(const json_t *v, FILE *out, int indent)
{
    int r;
    if (json_is_object(v) && json_object_size(v) > 0) {
        const char *k;
        json_t *e;
        bool first = true;
        json_object_foreach((json_t *)v, k, e)
        {
            if (!first || indent > 0)
                fprintf(out, "%*s", first ? 0 : indent, "");
            first = false;
            json_t *key = json_string(k);
            r = emit_scalar(key, out);
            json_decref(key);
            if (r < 0)
                return r;
            if (is_nonempty_collection(e)) {
                if (json_is_array(e)) {
                    fputs(":\n", out);
                    fprintf(out, "%*s", indent, "");
                    r = emit_node(e, out, indent);
                } else {
                    fputs(":\n", out);
                    fprintf(out, "%*s", indent + 2, "");
                    r = emit_node(e, out, indent + 2);
                }
            } else {
                fputs(": ", out);
                r = emit_scalar(e, out);
                fputc('\n', out);
            }
            if (r < 0)
                return r;
        }
        return 0;
    }
    if (json_is_array(v) && json_array_size(v) > 0) {
        size_t i;
        json_t *e;
        json_array_foreach((json_t *)v, i, e)
        {
            if (i > 0)
                fprintf(out, "%*s", indent, "");
            fputs("- ", out);
            if (is_nonempty_collection(e)) {
                r = emit_node(e, out, indent + 2);
            } else {
                r = emit_scalar(e, out);
                fputc('\n', out);
            }
            if (r < 0)
                return r;
        }
        return 0;
    }
    r = emit_scalar(v, out);
    fputc('\n', out);
    return r;
}

int dp_yaml_dump(const json_t *v, FILE *out)
{
    int r = emit_node(v, out, 0);
    if (r == 0 && ferror(out))
        r = -EIO;
    return r;
}
