/*
 * log.c — structured logging (logfmt / JSON), per-scope levels, escaping, redaction and
 * rate-limiting of repeated warnings. See log.h for the contract.
 *
 * Every line is formatted into a stack buffer and written with one write(2). Formatting never
 * allocates. A line that would not fit is cut at a field boundary (or a long value is cut
 * mid-value with "..."), and ends with truncated=true, so the output stays well-formed: a line
 * that is cut is still one valid logfmt line or one valid JSON object.
 *
 * The level spec is an immutable snapshot published through an atomic pointer; readers never
 * lock. Replaced snapshots are kept on a chain (level changes are rare and tiny) so a reader on
 * another thread can never see freed memory.
 */
#include "log.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define LINE_MAX_BYTES 8192
#define TAIL_RESERVE   32 /* room kept for the truncated marker and the line end */
#define KEY_MAX        64
#define SCOPE_NAME_MAX 48
#define SCOPES_MAX     32
#define LEVEL_OFF      (-1)

/* rate limiting of repeated warnings/errors */
#define RL_BURST    10
#define RL_WINDOW   1000 /* ms */
#define RL_SLOTS    256
#define RL_PROBE    4
#define RL_SCOPE_SZ 32
#define RL_MSG_SZ   96

/* ------------------------------------------------------------------ level spec */

struct scope_level {
    char name[SCOPE_NAME_MAX];
    size_t len;
    int level;
};

struct spec {
    int def;
    unsigned n;
    struct scope_level scopes[SCOPES_MAX];
    struct spec *older; /* replaced snapshots stay reachable, see top comment */
};

static struct spec default_spec = {.def = DP_LOG_INFO};
static _Atomic(struct spec *) cur_spec = &default_spec;
static pthread_mutex_t spec_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int log_format = DP_LOG_LOGFMT;
static atomic_int log_fd = 2;

static uint64_t (*rl_clock)(void) = dp_now_ms;

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};

const char *dp_log_level_str(enum dp_log_level level)
{
    if ((unsigned)level < DP_ARRAY_SIZE(level_names))
        return level_names[level];
    return "unknown";
}

static int parse_level(const char *s, size_t n)
{
    static const struct {
        const char *name;
        int level;
    } names[] = {
            {"off", LEVEL_OFF},      {"none", LEVEL_OFF},      {"error", DP_LOG_ERROR},
            {"warn", DP_LOG_WARN},   {"warning", DP_LOG_WARN}, {"info", DP_LOG_INFO},
            {"debug", DP_LOG_DEBUG}, {"trace", DP_LOG_TRACE},
    };
    size_t i;

    for (i = 0; i < DP_ARRAY_SIZE(names); i++) {
        if (strlen(names[i].name) == n && strncasecmp(s, names[i].name, n) == 0)
            return names[i].level;
    }
    return -EINVAL - 100; /* distinct from LEVEL_OFF */
}

static bool scope_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.' || c == ':';
}

static void trim(const char **s, size_t *n)
{
    while (*n > 0 && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
        (*n)--;
}

static int parse_spec(const char *text, struct spec *sp)
{
    const char *p = text;

    sp->def = DP_LOG_INFO;
    sp->n = 0;
    while (*p != '\0') {
        const char *tok = p, *eq;
        size_t n = strcspn(p, ",");
        int lvl;

        p += n;
        if (*p == ',')
            p++;
        trim(&tok, &n);
        if (n == 0)
            continue;
        eq = memchr(tok, '=', n);
        if (eq == NULL) {
            lvl = parse_level(tok, n);
            if (lvl < LEVEL_OFF)
                return -EINVAL;
            sp->def = lvl;
        } else {
            const char *name = tok, *lv = eq + 1;
            size_t nlen = (size_t)(eq - tok), vlen = n - nlen - 1, i;
            unsigned j;

            trim(&name, &nlen);
            trim(&lv, &vlen);
            lvl = parse_level(lv, vlen);
            if (lvl < LEVEL_OFF || nlen == 0 || nlen >= SCOPE_NAME_MAX)
                return -EINVAL;
            for (i = 0; i < nlen; i++) {
                if (!scope_char_ok(name[i]))
                    return -EINVAL;
            }
            /* a later entry for the same scope wins */
            for (j = 0; j < sp->n; j++) {
                if (sp->scopes[j].len == nlen && memcmp(sp->scopes[j].name, name, nlen) == 0)
                    break;
            }
            if (j == sp->n) {
                if (sp->n == SCOPES_MAX)
                    return -EINVAL;
                sp->n++;
            }
            memcpy(sp->scopes[j].name, name, nlen);
            sp->scopes[j].name[nlen] = '\0';
            sp->scopes[j].len = nlen;
            sp->scopes[j].level = lvl;
        }
    }
    return 0;
}

int dp_log_set_level_spec(const char *text)
{
    struct spec *sp;
    int r;

    if (text == NULL)
        return -EINVAL;
    sp = calloc(1, sizeof(*sp));
    if (sp == NULL)
        return -ENOMEM;
    r = parse_spec(text, sp);
    if (r < 0) {
        free(sp);
        return r;
    }
    pthread_mutex_lock(&spec_lock);
    sp->older = atomic_load(&cur_spec);
    atomic_store_explicit(&cur_spec, sp, memory_order_release);
    pthread_mutex_unlock(&spec_lock);
    return 0;
}

/* Longest configured name that equals scope or is a prefix of it ending at '.' or ':'. */
static int scope_threshold(const struct spec *sp, const char *scope)
{
    size_t best = 0;
    int lvl = sp->def;
    unsigned i;

    if (scope == NULL)
        return lvl;
    for (i = 0; i < sp->n; i++) {
        const struct scope_level *s = &sp->scopes[i];
        if (s->len > best && strncmp(scope, s->name, s->len) == 0 &&
            (scope[s->len] == '\0' || scope[s->len] == '.' || scope[s->len] == ':')) {
            best = s->len;
            lvl = s->level;
        }
    }
    return lvl;
}

bool dp_log_enabled(enum dp_log_level level, const char *scope)
{
    const struct spec *sp = atomic_load_explicit(&cur_spec, memory_order_acquire);

    return (int)level <= scope_threshold(sp, scope);
}

void dp_log_set_format(enum dp_log_format fmt)
{
    atomic_store(&log_format, fmt == DP_LOG_JSON ? DP_LOG_JSON : DP_LOG_LOGFMT);
}

void dp_log_set_fd(int fd)
{
    atomic_store(&log_fd, fd);
}

int dp_log_init_from_env(void)
{
    const char *fmt = getenv("LOG_FORMAT");
    const char *lvl = getenv("LOG_LEVEL");
    int r = 0;

    if (fmt != NULL && *fmt != '\0') {
        if (strcasecmp(fmt, "json") == 0)
            dp_log_set_format(DP_LOG_JSON);
        else if (strcasecmp(fmt, "logfmt") == 0 || strcasecmp(fmt, "plain") == 0 ||
                 strcasecmp(fmt, "text") == 0)
            dp_log_set_format(DP_LOG_LOGFMT);
        else
            r = -EINVAL;
    }
    if (lvl == NULL || *lvl == '\0')
        lvl = getenv("RUST_LOG");
    if (lvl != NULL && *lvl != '\0' && dp_log_set_level_spec(lvl) < 0)
        r = -EINVAL;
    return r;
}

void dp_log_set_ratelimit_clock(uint64_t (*now_ms)(void))
{
    rl_clock = now_ms != NULL ? now_ms : dp_now_ms;
}

/* ------------------------------------------------------------------ writer */

struct w {
    char *p;
    size_t cap; /* usable bytes for content (excludes reserve and NUL) */
    size_t len;
    bool over;
};

static bool w_fits(const struct w *w, size_t n)
{
    return !w->over && w->len + n <= w->cap;
}

static bool put(struct w *w, const char *s, size_t n)
{
    if (!w_fits(w, n)) {
        w->over = true;
        return false;
    }
    memcpy(w->p + w->len, s, n);
    w->len += n;
    return true;
}

static bool puts_(struct w *w, const char *s)
{
    return put(w, s, strlen(s));
}

/*
 * Decode one UTF-8 sequence at s (n bytes available). Returns its length and the code point,
 * or 0 if the bytes are not valid UTF-8 (overlong, surrogate, beyond U+10FFFF, truncated).
 */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    uint32_t c;
    size_t len, i;

    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
        c = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        c = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        c = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10ffff)) ||
        (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return len;
}

/* Code points that some viewers treat as line breaks or controls: always escaped. */
static bool cp_needs_escape(uint32_t cp)
{
    return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029;
}

/*
 * Write s escaped for a quoted logfmt (json=false) or JSON string, without the quotes. Stops
 * early (and appends "...") when the writer would run out of room; returns false then.
 */
static bool put_escaped(struct w *w, const char *str, bool json)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t n = strlen(str), i = 0;
    char tmp[16];

    while (i < n) {
        uint32_t cp;
        size_t l = utf8_decode(s + i, n - i, &cp), tl;
        const char *out = tmp;

        if (l == 0) {
            /* invalid byte: logfmt keeps it visible, JSON must stay valid UTF-8 */
            if (json)
                out = "\\ufffd";
            else
                snprintf(tmp, sizeof(tmp), "\\x%02x", s[i]);
            l = 1;
        } else if (cp == '"') {
            out = "\\\"";
        } else if (cp == '\\') {
            out = "\\\\";
        } else if (cp == '\n') {
            out = "\\n";
        } else if (cp == '\r') {
            out = "\\r";
        } else if (cp == '\t') {
            out = "\\t";
        } else if (cp_needs_escape(cp)) {
            snprintf(tmp, sizeof(tmp), "\\u%04x", (unsigned)cp);
        } else {
            out = (const char *)s + i;
        }
        tl = out == (const char *)s + i ? l : strlen(out);
        /* keep 4 bytes for `..."` so a cut value still closes */
        if (w->over || w->len + tl + 4 > w->cap) {
            put(w, "...", 3);
            return false;
        }
        memcpy(w->p + w->len, out, tl);
        w->len += tl;
        i += l;
    }
    return true;
}

static bool logfmt_bare_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    if (*p == '\0')
        return false;
    for (; *p != '\0'; p++) {
        if (*p <= 0x20 || *p >= 0x7f || *p == '"' || *p == '=' || *p == '\\')
            return false;
    }
    return true;
}

/* A string value: logfmt bare when safe, else quoted; JSON always quoted. */
static bool put_str_value(struct w *w, const char *s, bool json)
{
    bool ok;

    if (s == NULL)
        return puts_(w, "null");
    if (!json && logfmt_bare_ok(s) && w_fits(w, strlen(s)))
        return puts_(w, s);
    /* opening quote + room for `..."`: put_escaped keeps that invariant, so the value can
     * always be closed, however little of it fits */
    if (!w_fits(w, 5)) {
        w->over = true;
        return false;
    }
    w->p[w->len++] = '"';
    ok = put_escaped(w, s, json);
    w->p[w->len++] = '"';
    return ok;
}

/* `<sep+key>` + string value, all or nothing: a key is never left without its value. */
static bool put_fixed(struct w *w, const char *key, const char *val, bool json)
{
    size_t mark = w->len;
    bool ok = puts_(w, key) && put_str_value(w, val != NULL ? val : "", json);

    if (w->over)
        w->len = mark;
    return ok;
}

static bool key_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.' || c == '/' || c == '@' || c == ':';
}

/* Keys come from code, but we still never let one break the line format. */
static bool put_key(struct w *w, const char *key, bool json, bool first)
{
    static const char *const reserved[] = {"ts",  "level",      "scope",
                                           "msg", "suppressed", "truncated"};
    char k[KEY_MAX + 8];
    size_t n = 0, i;

    if (key == NULL || *key == '\0')
        key = "_";
    for (i = 0; i < DP_ARRAY_SIZE(reserved); i++) {
        if (strcmp(key, reserved[i]) == 0) {
            memcpy(k, "field.", 6);
            n = 6;
            break;
        }
    }
    for (i = 0; i < KEY_MAX && key[i] != '\0'; i++)
        k[n++] = key_char_ok(key[i]) ? key[i] : '_';
    if (json) {
        return put(w, first ? "\"" : ",\"", first ? 1 : 2) && put(w, k, n) && put(w, "\":", 2);
    }
    return (first || put(w, " ", 1)) && put(w, k, n) && put(w, "=", 1);
}

static bool ci_contains(const char *hay, const char *needle)
{
    size_t n = strlen(needle);

    for (; *hay != '\0'; hay++) {
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    }
    return false;
}

/* Keys that name secrets: their values are never written, whatever their type. */
static bool key_is_secret(const char *key)
{
    static const char *const words[] = {"key",    "token",         "password", "passwd",
                                        "secret", "authorization", "cookie",   "credential"};
    size_t i;

    if (key == NULL)
        return false;
    for (i = 0; i < DP_ARRAY_SIZE(words); i++) {
        if (ci_contains(key, words[i]))
            return true;
    }
    return false;
}

static bool put_field_value(struct w *w, const struct dp_log_field *f, bool json)
{
    char num[64];

    if (key_is_secret(f->key))
        return put_str_value(w, "[redacted]", json);
    switch (f->type) {
    case DP_LF_STR:
        return put_str_value(w, f->v.s, json);
    case DP_LF_U64:
        snprintf(num, sizeof(num), "%llu", f->v.u);
        return puts_(w, num);
    case DP_LF_I64:
        snprintf(num, sizeof(num), "%lld", f->v.i);
        return puts_(w, num);
    case DP_LF_F64:
        if (!isfinite(f->v.f)) {
            if (json)
                return puts_(w, "null");
            return puts_(w, isnan(f->v.f) ? "NaN" : f->v.f > 0 ? "+Inf" : "-Inf");
        }
        snprintf(num, sizeof(num), "%.15g", f->v.f);
        return puts_(w, num);
    case DP_LF_BOOL:
        return puts_(w, f->v.i ? "true" : "false");
    case DP_LF_ERR: {
        char eb[128];
        int e = f->v.err < 0 ? -f->v.err : f->v.err;
        return put_str_value(w, strerror_r(e, eb, sizeof(eb)), json);
    }
    }
    return put_str_value(w, "?", json);
}

static void fmt_ts(char *out, size_t sz, uint64_t unix_us)
{
    time_t sec = (time_t)(unix_us / 1000000u);
    struct tm tm;
    size_t n;

    if (gmtime_r(&sec, &tm) == NULL) {
        snprintf(out, sz, "1970-01-01T00:00:00.000000Z");
        return;
    }
    n = strftime(out, sz, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, sz - n, ".%06uZ", (unsigned)(unix_us % 1000000u));
}

static unsigned format_line(char *out, unsigned outsz, enum dp_log_format fmt, uint64_t unix_us,
                            enum dp_log_level level, const char *scope, const char *msg,
                            const struct dp_log_field *fields, unsigned n,
                            unsigned long long suppressed)
{
    bool json = fmt == DP_LOG_JSON, truncated = false;
    struct w w = {.p = out};
    char ts[40];
    unsigned i;

    if (outsz == 0)
        return 0;
    if (outsz <= TAIL_RESERVE + 64) {
        /* too small for a well-formed line: best effort, plain cut */
        w.cap = outsz - 1;
    } else {
        w.cap = outsz - 1 - TAIL_RESERVE;
    }
    fmt_ts(ts, sizeof(ts), unix_us);

    /* fixed fields first; their keys are the reserved names, written directly */
    if (json) {
        puts_(&w, "{\"ts\":\"");
        puts_(&w, ts);
        puts_(&w, "\",\"level\":\"");
        puts_(&w, dp_log_level_str(level));
        puts_(&w, "\"");
    } else {
        puts_(&w, "ts=");
        puts_(&w, ts);
        puts_(&w, " level=");
        puts_(&w, dp_log_level_str(level));
    }
    if (!put_fixed(&w, json ? ",\"scope\":" : " scope=", scope, json))
        truncated = true;
    if (!put_fixed(&w, json ? ",\"msg\":" : " msg=", msg, json))
        truncated = true;
    if (suppressed > 0) {
        char num[48];
        snprintf(num, sizeof(num), json ? ",\"suppressed\":%llu" : " suppressed=%llu", suppressed);
        puts_(&w, num);
    }
    for (i = 0; i < n && !w.over; i++) {
        size_t mark = w.len;

        if (!put_key(&w, fields[i].key, json, false) || !w_fits(&w, 8)) {
            w.over = true;
        } else if (!put_field_value(&w, &fields[i], json)) {
            truncated = true; /* a string value was cut with "...", or did not fit */
        }
        if (w.over) {
            /* the field did not fit: drop it entirely and stop */
            w.len = mark;
            break;
        }
    }
    if (i < n)
        truncated = true;
    w.over = false;
    if (outsz > TAIL_RESERVE + 64)
        w.cap = outsz - 1;
    if (truncated)
        puts_(&w, json ? ",\"truncated\":true" : " truncated=true");
    if (json)
        put(&w, "}", 1);
    put(&w, "\n", 1);
    if (w.len > outsz - 1)
        w.len = outsz - 1;
    out[w.len] = '\0';
    return (unsigned)w.len;
}

unsigned dp_log_format_line(char *out, unsigned outsz, enum dp_log_format fmt, uint64_t unix_us,
                            enum dp_log_level level, const char *scope, const char *msg,
                            const struct dp_log_field *fields, unsigned n)
{
    return format_line(out, outsz, fmt, unix_us, level, scope, msg, fields, n, 0);
}

/* ------------------------------------------------------------------ rate limiting */

struct rl_entry {
    uint64_t hash;
    uint64_t window; /* start of the current window, ms */
    unsigned long long suppressed;
    unsigned count;
    enum dp_log_level level;
    char scope[RL_SCOPE_SZ];
    char msg[RL_MSG_SZ];
};

static pthread_mutex_t rl_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rl_entry rl_tab[RL_SLOTS];

static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; s != NULL && *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

static bool rl_same(const struct rl_entry *e, uint64_t h, const char *scope, const char *msg)
{
    return e->hash == h && strncmp(e->scope, scope, RL_SCOPE_SZ - 1) == 0 &&
           strncmp(e->msg, msg, RL_MSG_SZ - 1) == 0;
}

/* Returns true if the line must be dropped; else *ret_supp = count suppressed before it. */
static bool ratelimit(enum dp_log_level level, const char *scope, const char *msg,
                      unsigned long long *ret_supp)
{
    uint64_t h, now = rl_clock();
    struct rl_entry *e = NULL, *victim = NULL;
    bool drop = false;
    unsigned i;

    scope = scope != NULL ? scope : "";
    msg = msg != NULL ? msg : "";
    h = fnv1a(fnv1a(0xcbf29ce484222325ull, scope) ^ 0xff, msg);
    h |= 1; /* 0 marks a free entry */
    pthread_mutex_lock(&rl_lock);
    for (i = 0; i < RL_PROBE; i++) {
        struct rl_entry *c = &rl_tab[(h + i) % RL_SLOTS];
        if (rl_same(c, h, scope, msg)) {
            e = c;
            break;
        }
        /* prefer a free entry, then one without pending suppressions, then the oldest */
        if (victim == NULL || c->hash == 0 ||
            (victim->hash != 0 && (victim->suppressed > 0) > (c->suppressed > 0)) ||
            (victim->hash != 0 && (victim->suppressed > 0) == (c->suppressed > 0) &&
             c->window < victim->window))
            victim = c;
    }
    if (e == NULL) {
        e = victim;
        e->hash = h;
        e->window = now;
        e->count = 0;
        e->suppressed = 0;
        e->level = level;
        snprintf(e->scope, sizeof(e->scope), "%s", scope);
        snprintf(e->msg, sizeof(e->msg), "%s", msg);
    }
    *ret_supp = 0;
    if (now - e->window >= RL_WINDOW) {
        *ret_supp = e->suppressed;
        e->suppressed = 0;
        e->count = 0;
        e->window = now;
    }
    if (e->count >= RL_BURST) {
        e->suppressed++;
        drop = true;
    } else {
        e->count++;
    }
    pthread_mutex_unlock(&rl_lock);
    return drop;
}

static void write_line(const char *line, size_t len)
{
    int fd = atomic_load(&log_fd);
    ssize_t n;

    while (len > 0) {
        n = write(fd, line, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* nowhere else to report it */
        line += n;
        len -= (size_t)n;
    }
}

static uint64_t unix_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void dp_log_emit(enum dp_log_level level, const char *scope, const char *msg,
                 const struct dp_log_field *fields, unsigned n)
{
    char line[LINE_MAX_BYTES];
    unsigned long long supp = 0;
    unsigned len;

    if (level <= DP_LOG_WARN && ratelimit(level, scope, msg, &supp))
        return;
    len = format_line(line, sizeof(line), atomic_load(&log_format), unix_now_us(), level, scope,
                      msg, fields, n, supp);
    write_line(line, len);
}

void dp_log_flush_suppressed(void)
{
    unsigned i;

    for (i = 0; i < RL_SLOTS; i++) {
        struct rl_entry copy;
        char line[1024];
        unsigned len;

        pthread_mutex_lock(&rl_lock);
        copy = rl_tab[i];
        rl_tab[i].suppressed = 0;
        pthread_mutex_unlock(&rl_lock);
        if (copy.hash == 0 || copy.suppressed == 0)
            continue;
        len = format_line(line, sizeof(line), atomic_load(&log_format), unix_now_us(), copy.level,
                          copy.scope, copy.msg, NULL, 0, copy.suppressed);
        write_line(line, len);
    }
}
