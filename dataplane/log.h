/*
 * log.h — structured logging: logfmt by default, JSON with LOG_FORMAT=json.
 *
 *   ts=2026-03-01T12:00:00.123456Z level=info scope=hbone msg="connection complete" k=v ...
 *
 * Fields are typed (DP_LS string, DP_LU unsigned, DP_LI signed, DP_LF double, DP_LB bool,
 * DP_LERR(-errno) -> error="..."). Every string value is escaped (logfmt: quoted when it has
 * spaces, quotes, '=' or control bytes; JSON: per RFC 8259), so hostile values cannot forge
 * fields or lines. Keys that name secrets (containing "key", "token", "password", "secret",
 * "authorization") have their values replaced by "[redacted]": key material is never logged.
 *
 * The level check happens before arguments are evaluated. Identical (scope, msg) warnings
 * (and errors) beyond 10 per second are suppressed; the next line of that (scope, msg) after
 * the window carries `suppressed=N` (or dp_log_flush_suppressed() writes a summary line).
 * Redaction applies to values of every type. Field keys equal to a fixed field name (ts,
 * level, scope, msg, suppressed, truncated) are written as `field.<key>`; characters outside
 * [A-Za-z0-9_.:/@-] in keys become '_'. Non-finite doubles are NaN/+Inf/-Inf in logfmt and
 * null in JSON. Scope overrides match the scope itself and its sub-scopes ("hbone" also
 * matches "hbone.pool" and "hbone::pool"); "off" disables a scope.
 *
 * Levels are set with LOG_LEVEL (or RUST_LOG for ztunnel habits) as a spec
 * "info,hbone=debug,kube=trace": a default plus per-scope overrides.
 * Each line is written with one write(2), so threads do not interleave lines.
 */
#ifndef DP_LOG_H
#define DP_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum dp_log_level { DP_LOG_ERROR = 0, DP_LOG_WARN, DP_LOG_INFO, DP_LOG_DEBUG, DP_LOG_TRACE };
enum dp_log_format { DP_LOG_LOGFMT = 0, DP_LOG_JSON };

enum dp_log_ftype { DP_LF_STR, DP_LF_U64, DP_LF_I64, DP_LF_F64, DP_LF_BOOL, DP_LF_ERR };

/** One field. Key: borrowed, from code (never from a peer). String values: borrowed for the
 *  duration of the call, any bytes (escaped on output); NULL is written as null. */
struct dp_log_field {
    const char *key;
    enum dp_log_ftype type;
    union {
        const char *s;
        unsigned long long u;
        long long i;
        double f;
        int err; /* -errno or errno */
    } v;
};

#define DP_LS(k, val) ((struct dp_log_field){.key = (k), .type = DP_LF_STR, .v.s = (val)})
#define DP_LU(k, val) ((struct dp_log_field){.key = (k), .type = DP_LF_U64, .v.u = (val)})
#define DP_LI(k, val) ((struct dp_log_field){.key = (k), .type = DP_LF_I64, .v.i = (val)})
#define DP_LF(k, val) ((struct dp_log_field){.key = (k), .type = DP_LF_F64, .v.f = (val)})
#define DP_LB(k, val) ((struct dp_log_field){.key = (k), .type = DP_LF_BOOL, .v.i = !!(val)})
#define DP_LERR(r)    ((struct dp_log_field){.key = "error", .type = DP_LF_ERR, .v.err = (r)})

/** Configure from LOG_FORMAT and LOG_LEVEL / RUST_LOG. Returns 0 or -EINVAL (bad spec; the
 *  defaults stay: logfmt, info). */
int dp_log_init_from_env(void);
void dp_log_set_format(enum dp_log_format fmt);
/** Parse "info,hbone=debug". 0 or -EINVAL (nothing changed). */
int dp_log_set_level_spec(const char *spec);
/** Where lines go (default 2 = stderr). */
void dp_log_set_fd(int fd);
bool dp_log_enabled(enum dp_log_level level, const char *scope);
const char *dp_log_level_str(enum dp_log_level level);

void dp_log_emit(enum dp_log_level level, const char *scope, const char *msg,
                 const struct dp_log_field *fields, unsigned n);

/** Format one line, including its trailing '\n', into out (always NUL-terminated; returns the
 *  length written, excluding the NUL). A line that does not fit is cut at a field boundary
 *  (a long string value is cut with "...") and marked truncated=true, so it stays one
 *  well-formed logfmt line / JSON object — provided outsz > 96; smaller buffers get a plain
 *  cut to outsz - 1. Used by dp_log_emit (8 KiB lines) and tests. */
unsigned dp_log_format_line(char *out, unsigned outsz, enum dp_log_format fmt, uint64_t unix_us,
                            enum dp_log_level level, const char *scope, const char *msg,
                            const struct dp_log_field *fields, unsigned n);

/** Write a summary line (`suppressed=N`) for every rate-limited (scope, msg) whose suppressed
 *  repeats have not been reported by a later line yet. Call at shutdown or from a periodic
 *  timer. Thread-safe. */
void dp_log_flush_suppressed(void);
/** For tests: the millisecond clock used by rate limiting (NULL = dp_now_ms). */
void dp_log_set_ratelimit_clock(uint64_t (*now_ms)(void));

#define dp_log(level, scope, msg, ...)                                                             \
    do {                                                                                           \
        if (dp_log_enabled((level), (scope))) {                                                    \
            const struct dp_log_field dp_lf_[] = {{0}, ##__VA_ARGS__};                             \
            dp_log_emit((level), (scope), (msg), dp_lf_ + 1,                                       \
                        (unsigned)(sizeof(dp_lf_) / sizeof(dp_lf_[0]) - 1));                       \
        }                                                                                          \
    } while (0)

#define dp_error(scope, msg, ...) dp_log(DP_LOG_ERROR, scope, msg, ##__VA_ARGS__)
#define dp_warn(scope, msg, ...)  dp_log(DP_LOG_WARN, scope, msg, ##__VA_ARGS__)
#define dp_info(scope, msg, ...)  dp_log(DP_LOG_INFO, scope, msg, ##__VA_ARGS__)
#define dp_debug(scope, msg, ...) dp_log(DP_LOG_DEBUG, scope, msg, ##__VA_ARGS__)
#define dp_trace(scope, msg, ...) dp_log(DP_LOG_TRACE, scope, msg, ##__VA_ARGS__)

#endif
