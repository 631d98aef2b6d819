/*
 * metrics.c — metric registry and Prometheus text exposition. See metrics.h for the contract.
 *
 * Values are plain 64-bit words updated with __atomic builtins: counters and histogram buckets
 * as integers, gauges and histogram sums as the bit pattern of a double (compare-and-swap loop
 * for adds). Histogram buckets are stored non-cumulative and summed at exposition; _count is
 * the sum of all buckets, so a scrape that races with observe() is still self-consistent
 * (+Inf bucket == _count), only _sum may lag by the racing observation.
 */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "common.h"

const double dp_metrics_latency_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                            0.1,    0.25,  0.5,    1,     2.5,  5,     10};
const unsigned dp_metrics_latency_bounds_n = DP_ARRAY_SIZE(dp_metrics_latency_bounds);

#define MAX_HASH_BUCKETS 4096u

struct dp_metric_series {
    struct dp_metric_series *next;  /* creation order */
    struct dp_metric_series *hnext; /* hash chain */
    struct dp_metric *family;
    uint64_t hash;
    const char **values; /* n_labels, point into the same allocation */
    uint64_t word;       /* counter value, gauge bits, histogram sum bits */
    uint64_t buckets[];  /* histogram: n_bounds + 1 (last is +Inf), non-cumulative */
};

struct dp_metric {
    struct dp_metric *next;
    struct dp_metrics *reg;
    enum dp_metric_type type;
    char *name;
    char *help;
    unsigned n_labels;
    char *keys[DP_METRICS_MAX_LABELS];
    double *bounds;
    unsigned n_bounds;
    unsigned max_series, n_series;
    struct dp_metric_series *first, *last;
    struct dp_metric_series **hash;
    unsigned hash_mask;
};

struct dp_metrics {
    pthread_mutex_t lock;
    struct dp_metric *first, *last;
};

int dp_metrics_new(struct dp_metrics **ret_m)
{
    struct dp_metrics *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return -ENOMEM;
    pthread_mutex_init(&m->lock, NULL);
    *ret_m = m;
    return 0;
}

static void family_free(struct dp_metric *f)
{
    if (f == NULL)
        return;
    struct dp_metric_series *s = f->first;
    while (s != NULL) {
        struct dp_metric_series *n = s->next;
        free(s);
        s = n;
    }
    for (unsigned i = 0; i < f->n_labels; i++)
        free(f->keys[i]);
    free(f->hash);
    free(f->bounds);
    free(f->name);
    free(f->help);
    free(f);
}

void dp_metrics_free(struct dp_metrics *m)
{
    if (m == NULL)
        return;
    struct dp_metric *f = m->first;
    while (f != NULL) {
        struct dp_metric *n = f->next;
        family_free(f);
        f = n;
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static bool valid_metric_name(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    for (const char *c = s; *c; c++) {
        bool alpha = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '_' || *c == ':';
        bool digit = *c >= '0' && *c <= '9';
        if (!alpha && !(digit && c != s))
            return false;
    }
    return true;
}

static bool valid_label_name(const char *s)
{
    if (s == NULL || *s == '\0' || (s[0] == '_' && s[1] == '_'))
        return false;
    for (const char *c = s; *c; c++) {
        bool alpha = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '_';
        bool digit = *c >= '0' && *c <= '9';
        if (!alpha && !(digit && c != s))
            return false;
    }
    return true;
}

static uint64_t hash_values(const char *const *values, unsigned n)
{
    uint64_t h = 1469598103934665603ull;
    for (unsigned i = 0; i < n; i++) {
        for (const unsigned char *c = (const unsigned char *)(values[i] ? values[i] : ""); *c; c++)
            h = (h ^ *c) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull; /* separator: ("ab","") != ("a","b") */
    }
    return h;
}

/* Called with the registry lock held. */
static int series_create(struct dp_metric *f, const char *const *values, uint64_t hash,
                         struct dp_metric_series **ret_s)
{
    size_t nb = f->type == DP_METRIC_HISTOGRAM ? f->n_bounds + 1 : 0;
    size_t sz = sizeof(struct dp_metric_series) + nb * sizeof(uint64_t);
    size_t voff = sz;
    sz += f->n_labels * sizeof(char *);
    size_t soff = sz;
    for (unsigned i = 0; i < f->n_labels; i++)
        sz += strlen(values[i] ? values[i] : "") + 1;

    struct dp_metric_series *s = calloc(1, sz);
    if (s == NULL)
        return -ENOMEM;
    s->family = f;
    s->hash = hash;
    s->values = (const char **)((char *)s + voff);
    char *p = (char *)s + soff;
    for (unsigned i = 0; i < f->n_labels; i++) {
        const char *v = values[i] ? values[i] : "";
        size_t l = strlen(v) + 1;
        memcpy(p, v, l);
        s->values[i] = p;
        p += l;
    }
    if (f->type == DP_METRIC_GAUGE || f->type == DP_METRIC_HISTOGRAM) {
        double z = 0.0;
        memcpy(&s->word, &z, sizeof(z));
    }
    unsigned b = (unsigned)hash & f->hash_mask;
    s->hnext = f->hash[b];
    f->hash[b] = s;
    if (f->last != NULL)
        f->last->next = s;
    else
        f->first = s;
    f->last = s;
    f->n_series++;
    *ret_s = s;
    return 0;
}

int dp_metrics_register(struct dp_metrics *m, enum dp_metric_type type, const char *name,
                        const char *help, const char *const *label_keys, unsigned n_labels,
                        const double *bounds, unsigned n_bounds, unsigned max_series,
                        struct dp_metric **ret_f)
{
    struct dp_metric *f = NULL;
    int r;

    if (!valid_metric_name(name) || n_labels > DP_METRICS_MAX_LABELS ||
        (n_labels > 0 && label_keys == NULL))
        return -EINVAL;
    if (type != DP_METRIC_COUNTER && type != DP_METRIC_GAUGE && type != DP_METRIC_HISTOGRAM)
        return -EINVAL;
    for (unsigned i = 0; i < n_labels; i++) {
        if (!valid_label_name(label_keys[i]))
            return -EINVAL;
        if (type == DP_METRIC_HISTOGRAM && strcmp(label_keys[i], "le") == 0)
            return -EINVAL;
        for (unsigned j = 0; j < i; j++)
            if (strcmp(label_keys[i], label_keys[j]) == 0)
                return -EINVAL;
    }
    if (type == DP_METRIC_HISTOGRAM) {
        if (n_bounds > DP_METRICS_MAX_BUCKETS || (n_bounds > 0 && bounds == NULL))
            return -EINVAL;
        for (unsigned i = 0; i < n_bounds; i++) {
            if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
                return -EINVAL;
        }
    } else {
        n_bounds = 0;
    }
    if (max_series == 0)
        max_series = DP_METRICS_DEFAULT_SERIES;

    f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -ENOMEM;
    f->reg = m;
    f->type = type;
    f->max_series = max_series;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    if (f->name == NULL || f->help == NULL)
        goto nomem;
    for (unsigned i = 0; i < n_labels; i++) {
        f->keys[i] = strdup(label_keys[i]);
        if (f->keys[i] == NULL)
            goto nomem;
        f->n_labels = i + 1;
    }
    if (n_bounds > 0) {
        f->bounds = malloc(n_bounds * sizeof(double));
        if (f->bounds == NULL)
            goto nomem;
        memcpy(f->bounds, bounds, n_bounds * sizeof(double));
        f->n_bounds = n_bounds;
    }
    unsigned hb = 1;
    while (hb < max_series && hb < MAX_HASH_BUCKETS)
        hb <<= 1;
    f->hash = calloc(hb, sizeof(*f->hash));
    if (f->hash == NULL)
        goto nomem;
    f->hash_mask = hb - 1;

    pthread_mutex_lock(&m->lock);
    for (struct dp_metric *o = m->first; o != NULL; o = o->next) {
        if (strcmp(o->name, name) == 0) {
            pthread_mutex_unlock(&m->lock);
            r = -EEXIST;
            goto fail;
        }
    }
    if (n_labels == 0) {
        static const char *const none[1] = {""};
        struct dp_metric_series *s;
        r = series_create(f, none, hash_values(none, 0), &s);
        if (r < 0) {
            pthread_mutex_unlock(&m->lock);
            goto fail;
        }
    }
    if (m->last != NULL)
        m->last->next = f;
    else
        m->first = f;
    m->last = f;
    pthread_mutex_unlock(&m->lock);
    *ret_f = f;
    return 0;

nomem:
    r = -ENOMEM;
fail:
    family_free(f);
    return r;
}

int dp_metrics_counter(struct dp_metrics *m, const char *name, const char *help,
                       const char *const *label_keys, unsigned n_labels, struct dp_metric **ret_f)
{
    return dp_metrics_register(m, DP_METRIC_COUNTER, name, help, label_keys, n_labels, NULL, 0, 0,
                               ret_f);
}

int dp_metrics_gauge(struct dp_metrics *m, const char *name, const char *help,
                     const char *const *label_keys, unsigned n_labels, struct dp_metric **ret_f)
{
    return dp_metrics_register(m, DP_METRIC_GAUGE, name, help, label_keys, n_labels, NULL, 0, 0,
                               ret_f);
}

int dp_metrics_histogram(struct dp_metrics *m, const char *name, const char *help,
                         const char *const *label_keys, unsigned n_labels, const double *bounds,
                         unsigned n_bounds, struct dp_metric **ret_f)
{
    return dp_metrics_register(m, DP_METRIC_HISTOGRAM, name, help, label_keys, n_labels, bounds,
                               n_bounds, 0, ret_f);
}

int dp_metric_series(struct dp_metric *f, const char *const *values, unsigned n,
                     struct dp_metric_series **ret_s)
{
    if (n != f->n_labels || (n > 0 && values == NULL))
        return -EINVAL;
    for (unsigned i = 0; i < n; i++)
        if (values[i] != NULL &&
            strnlen(values[i], DP_METRICS_MAX_VALUE_LEN + 1) > DP_METRICS_MAX_VALUE_LEN)
            return -EINVAL;

    uint64_t h = hash_values(values, n);
    struct dp_metric_series *s;
    int r = 0;
    pthread_mutex_lock(&f->reg->lock);
    for (s = f->hash[(unsigned)h & f->hash_mask]; s != NULL; s = s->hnext) {
        if (s->hash != h)
            continue;
        unsigned i;
        for (i = 0; i < n; i++)
            if (strcmp(s->values[i], values[i] ? values[i] : "") != 0)
                break;
        if (i == n)
            break;
    }
    if (s == NULL) {
        if (f->n_series >= f->max_series)
            r = -ENOSPC;
        else
            r = series_create(f, values, h, &s);
    }
    pthread_mutex_unlock(&f->reg->lock);
    if (r < 0)
        return r;
    *ret_s = s;
    return 0;
}

int dp_metric_series_kv(struct dp_metric *f, const struct dp_label *labels, unsigned n,
                        struct dp_metric_series **ret_s)
{
    const char *values[DP_METRICS_MAX_LABELS] = {0};
    bool seen[DP_METRICS_MAX_LABELS] = {0};

    if (n != f->n_labels || (n > 0 && labels == NULL))
        return -EINVAL;
    for (unsigned i = 0; i < n; i++) {
        unsigned k;
        for (k = 0; k < f->n_labels; k++)
            if (labels[i].key != NULL && strcmp(labels[i].key, f->keys[k]) == 0)
                break;
        if (k == f->n_labels || seen[k])
            return -EINVAL;
        seen[k] = true;
        values[k] = labels[i].value;
    }
    return dp_metric_series(f, values, n, ret_s);
}

/* ---------------------------------------------------------------- hot path */

static double bits_to_double(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof(d));
    return d;
}

static uint64_t double_to_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof(b));
    return b;
}

static void atomic_add_double(uint64_t *word, double delta)
{
    uint64_t old = __atomic_load_n(word, __ATOMIC_RELAXED);
    uint64_t nv;
    do {
        nv = double_to_bits(bits_to_double(old) + delta);
    } while (
            !__atomic_compare_exchange_n(word, &old, nv, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
}

void dp_counter_add(struct dp_metric_series *s, uint64_t v)
{
    DP_BUG_ON(s->family->type != DP_METRIC_COUNTER);
    __atomic_fetch_add(&s->word, v, __ATOMIC_RELAXED);
}

void dp_gauge_set(struct dp_metric_series *s, double v)
{
    DP_BUG_ON(s->family->type != DP_METRIC_GAUGE);
    __atomic_store_n(&s->word, double_to_bits(v), __ATOMIC_RELAXED);
}

void dp_gauge_add(struct dp_metric_series *s, double delta)
{
    DP_BUG_ON(s->family->type != DP_METRIC_GAUGE);
    atomic_add_double(&s->word, delta);
}

void dp_histogram_observe(struct dp_metric_series *s, double v)
{
    const struct dp_metric *f = s->family;
    DP_BUG_ON(f->type != DP_METRIC_HISTOGRAM);
    /* first bucket whose bound is >= v; NaN and values above all bounds land in +Inf */
    unsigned lo = 0, hi = f->n_bounds;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (v <= f->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    if (isnan(v))
        lo = f->n_bounds;
    __atomic_fetch_add(&s->buckets[lo], 1, __ATOMIC_RELAXED);
    atomic_add_double(&s->word, v);
}

uint64_t dp_counter_value(const struct dp_metric_series *s)
{
    return __atomic_load_n(&s->word, __ATOMIC_RELAXED);
}

double dp_gauge_value(const struct dp_metric_series *s)
{
    return bits_to_double(__atomic_load_n(&s->word, __ATOMIC_RELAXED));
}

uint64_t dp_histogram_count(const struct dp_metric_series *s)
{
    uint64_t n = 0;
    for (unsigned i = 0; i <= s->family->n_bounds; i++)
        n += __atomic_load_n(&s->buckets[i], __ATOMIC_RELAXED);
    return n;
}

double dp_histogram_sum(const struct dp_metric_series *s)
{
    return bits_to_double(__atomic_load_n(&s->word, __ATOMIC_RELAXED));
}

/* ---------------------------------------------------------------- exposition */

/* Length of the valid UTF-8 sequence at s (max bytes available), or 0 if invalid. Rejects
 * overlong forms, surrogates and code points above U+10FFFF, as Go's utf8.ValidString does. */
static size_t utf8_seq(const unsigned char *s, size_t max)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n > max)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

int dp_metrics_escape(struct dp_buf **out, const char *s, bool quote)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s), run = 0, i = 0;
    int r = 0;

    while (i < len && r >= 0) {
        unsigned char c = p[i];
        const char *rep = NULL;
        size_t n = 1;
        if (c == '\\')
            rep = "\\\\";
        else if (c == '\n')
            rep = "\\n";
        else if (c == '"' && quote)
            rep = "\\\"";
        else if (c >= 0x80) {
            n = utf8_seq(p + i, len - i);
            if (n == 0) {
                rep = "\xef\xbf\xbd";
                n = 1;
            }
        }
        if (rep == NULL) {
            i += n;
            continue;
        }
        if (i > run)
            r = dp_buf_append(out, p + run, i - run);
        if (r >= 0)
            r = dp_buf_append_str(out, rep);
        i += n;
        run = i;
    }
    if (r >= 0 && len > run)
        r = dp_buf_append(out, p + run, len - run);
    return r < 0 ? r : 0;
}

/* Shortest %g form that reads back as the same double; Prometheus spellings of the specials. */
static void format_double(char *out, size_t sz, double v)
{
    if (isnan(v)) {
        snprintf(out, sz, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, sz, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, sz, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

static int append_labels(struct dp_buf **out, const struct dp_metric *f,
                         const struct dp_metric_series *s, const char *le)
{
    if (f->n_labels == 0 && le == NULL)
        return 0;
    int r = dp_buf_append(out, "{", 1);
    for (unsigned i = 0; r >= 0 && i < f->n_labels; i++) {
        r = dp_buf_appendf(out, "%s%s=\"", i ? "," : "", f->keys[i]);
        if (r >= 0)
            r = dp_metrics_escape(out, s->values[i], true);
        if (r >= 0)
            r = dp_buf_append(out, "\"", 1);
    }
    if (r >= 0 && le != NULL)
        r = dp_buf_appendf(out, "%sle=\"%s\"", f->n_labels ? "," : "", le);
    if (r >= 0)
        r = dp_buf_append(out, "}", 1);
    return r < 0 ? r : 0;
}

static int expose_series(struct dp_buf **out, const struct dp_metric *f,
                         const struct dp_metric_series *s)
{
    char num[64];
    int r = 0;

    switch (f->type) {
    case DP_METRIC_COUNTER:
    case DP_METRIC_GAUGE:
        r = dp_buf_append_str(out, f->name);
        if (r >= 0)
            r = append_labels(out, f, s, NULL);
        if (f->type == DP_METRIC_COUNTER)
            snprintf(num, sizeof(num), "%" PRIu64, dp_counter_value(s));
        else
            format_double(num, sizeof(num), dp_gauge_value(s));
        if (r >= 0)
            r = dp_buf_appendf(out, " %s\n", num);
        break;
    case DP_METRIC_HISTOGRAM: {
        uint64_t cum = 0;
        for (unsigned i = 0; r >= 0 && i <= f->n_bounds; i++) {
            char le[64];
            cum += __atomic_load_n(&s->buckets[i], __ATOMIC_RELAXED);
            if (i < f->n_bounds)
                format_double(le, sizeof(le), f->bounds[i]);
            else
                snprintf(le, sizeof(le), "+Inf");
            r = dp_buf_appendf(out, "%s_bucket", f->name);
            if (r >= 0)
                r = append_labels(out, f, s, le);
            if (r >= 0)
                r = dp_buf_appendf(out, " %" PRIu64 "\n", cum);
        }
        format_double(num, sizeof(num), dp_histogram_sum(s));
        if (r >= 0)
            r = dp_buf_appendf(out, "%s_sum", f->name);
        if (r >= 0)
            r = append_labels(out, f, s, NULL);
        if (r >= 0)
            r = dp_buf_appendf(out, " %s\n%s_count", num, f->name);
        if (r >= 0)
            r = append_labels(out, f, s, NULL);
        if (r >= 0)
            r = dp_buf_appendf(out, " %" PRIu64 "\n", cum);
        break;
    }
    }
    return r < 0 ? r : 0;
}

static const char *type_str(enum dp_metric_type t)
{
    switch (t) {
    case DP_METRIC_COUNTER:
        return "counter";
    case DP_METRIC_GAUGE:
        return "gauge";
    case DP_METRIC_HISTOGRAM:
        return "histogram";
    }
    return "untyped";
}

int dp_metrics_expose(struct dp_metrics *m, struct dp_buf **out)
{
    int r = 0;
    pthread_mutex_lock(&m->lock);
    for (const struct dp_metric *f = m->first; r >= 0 && f != NULL; f = f->next) {
        r = dp_buf_appendf(out, "# HELP %s ", f->name);
        if (r >= 0)
            r = dp_metrics_escape(out, f->help, false);
        if (r >= 0)
            r = dp_buf_appendf(out, "\n# TYPE %s %s\n", f->name, type_str(f->type));
        for (const struct dp_metric_series *s = f->first; r >= 0 && s != NULL; s = s->next)
            r = expose_series(out, f, s);
    }
    pthread_mutex_unlock(&m->lock);
    return r < 0 ? r : 0;
}
