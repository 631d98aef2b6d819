/*
 * metrics.h — a registry of counters, gauges and histograms with label sets, exposed in the
 * Prometheus text format 0.0.4.
 *
 * Shape: a registry (struct dp_metrics) holds families (struct dp_metric: name, help, type,
 * label names fixed at registration, a cap on the number of series). A family hands out series
 * (struct dp_metric_series: one label-value combination) that callers look up once and cache;
 * the hot path (dp_counter_add, dp_gauge_set, dp_histogram_observe) is a lock-free atomic
 * update on that handle.
 *
 * Threads: every function is thread-safe. Registration, series lookup/creation and exposition
 * take the registry mutex; updates through a series handle are atomics only (relaxed order), so
 * worker loops on different threads share one registry. Series live until the registry is
 * freed: handles stay valid that long, and the number of series per family is bounded by its
 * max_series (lookups past the cap fail with -ENOSPC, so a peer that controls a label value
 * cannot grow memory without bound).
 *
 * Exposition order is registration order for families and creation order for series, which
 * keeps the output deterministic for golden tests. Label values and HELP text are escaped per
 * the format (backslash, double quote in label values, newline); bytes that are not valid UTF-8
 * are replaced with U+FFFD, since Prometheus rejects such values. The output passes
 * `promtool check metrics` as long as names follow Prometheus conventions (counters ending in
 * _total, which we do not enforce).
 */
#ifndef DP_METRICS_H
#define DP_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dp_buf;
struct dp_metrics;
struct dp_metric;
struct dp_metric_series;

enum dp_metric_type { DP_METRIC_COUNTER = 0, DP_METRIC_GAUGE, DP_METRIC_HISTOGRAM };

/** A label as key/value; both borrowed for the duration of the call. */
struct dp_label {
    const char *key;
    const char *value;
};

/** Limits: label names per family, bytes per label value, histogram buckets. */
#define DP_METRICS_MAX_LABELS    16
#define DP_METRICS_MAX_VALUE_LEN 1024
#define DP_METRICS_MAX_BUCKETS   64
/** Series cap used when a registration passes max_series = 0. */
#define DP_METRICS_DEFAULT_SERIES 1024

/** New empty registry. 0 or -ENOMEM. */
int dp_metrics_new(struct dp_metrics **ret_m);
/** Free the registry, its families and series (all handles become invalid); accepts NULL. */
void dp_metrics_free(struct dp_metrics *m);

/**
 * Register a family. name must match [a-zA-Z_:][a-zA-Z0-9_:]*, label keys [a-zA-Z_][a-zA-Z0-9_]*
 * without a leading "__" and (for histograms) not "le"; keys must be distinct. help is copied
 * (any bytes; escaped on output). For histograms, bounds are the upper bounds of the finite
 * buckets, strictly increasing and finite (+Inf is implicit); n_bounds <= DP_METRICS_MAX_BUCKETS.
 * max_series caps the series count (0 = DP_METRICS_DEFAULT_SERIES).
 *
 * Returns 0 and a borrowed family pointer (valid until dp_metrics_free) in *ret_f;
 * -EINVAL for bad names/bounds, -EEXIST if the name is taken, -ENOMEM.
 */
int dp_metrics_register(struct dp_metrics *m, enum dp_metric_type type, const char *name,
                        const char *help, const char *const *label_keys, unsigned n_labels,
                        const double *bounds, unsigned n_bounds, unsigned max_series,
                        struct dp_metric **ret_f);

/** Shorthands for dp_metrics_register. */
int dp_metrics_counter(struct dp_metrics *m, const char *name, const char *help,
                       const char *const *label_keys, unsigned n_labels, struct dp_metric **ret_f);
int dp_metrics_gauge(struct dp_metrics *m, const char *name, const char *help,
                     const char *const *label_keys, unsigned n_labels, struct dp_metric **ret_f);
int dp_metrics_histogram(struct dp_metrics *m, const char *name, const char *help,
                         const char *const *label_keys, unsigned n_labels, const double *bounds,
                         unsigned n_bounds, struct dp_metric **ret_f);

/** Default latency buckets in seconds (0.0005 .. 10), for dp_metrics_histogram. */
extern const double dp_metrics_latency_bounds[];
extern const unsigned dp_metrics_latency_bounds_n;

/**
 * Find or create the series for label values given in the family's key order (n must equal
 * the family's label count; NULL values count as ""). Values longer than
 * DP_METRICS_MAX_VALUE_LEN are -EINVAL. Returns 0 and a borrowed handle (valid until
 * dp_metrics_free) in *ret_s; -ENOSPC when the family is at max_series, -ENOMEM.
 * Cache the handle: this takes the registry lock and hashes the values.
 */
int dp_metric_series(struct dp_metric *f, const char *const *values, unsigned n,
                     struct dp_metric_series **ret_s);
/** Same with key/value pairs in any order; the keys must be exactly the family's. */
int dp_metric_series_kv(struct dp_metric *f, const struct dp_label *labels, unsigned n,
                        struct dp_metric_series **ret_s);

/* ---- hot path: atomics on a cached handle. Calling one on a series of another type is a bug
 * (DP_BUG_ON). */
void dp_counter_add(struct dp_metric_series *s, uint64_t v);
static inline void dp_counter_inc(struct dp_metric_series *s)
{
    dp_counter_add(s, 1);
}
void dp_gauge_set(struct dp_metric_series *s, double v);
void dp_gauge_add(struct dp_metric_series *s, double delta);
void dp_histogram_observe(struct dp_metric_series *s, double v);

/** Current values (for tests and /config_dump style introspection). */
uint64_t dp_counter_value(const struct dp_metric_series *s);
double dp_gauge_value(const struct dp_metric_series *s);
/** Observation count and sum of a histogram series. */
uint64_t dp_histogram_count(const struct dp_metric_series *s);
double dp_histogram_sum(const struct dp_metric_series *s);

/**
 * Append the whole registry in text format 0.0.4 to *out (each family: # HELP, # TYPE, then
 * its series; histograms as _bucket{le=...} cumulative, _bucket{le="+Inf"}, _sum, _count).
 * Families without labels get their one series at registration, so an unlabelled counter
 * shows up (as 0) before its first increment; labelled families without series emit only
 * HELP and TYPE.
 * Returns 0 or the dp_buf errors (-EMSGSIZE when *out's limit is reached, -ENOMEM); on error
 * *out holds a partial exposition.
 */
int dp_metrics_expose(struct dp_metrics *m, struct dp_buf **out);

/** Content-Type of the exposition. */
#define DP_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/**
 * Append s to *out escaped for a label value (quote=true: \\ \" \n) or HELP text (quote=false:
 * \\ \n), replacing invalid UTF-8 with U+FFFD. Exposed for tests and other exporters.
 */
int dp_metrics_escape(struct dp_buf **out, const char *s, bool quote);

#endif
