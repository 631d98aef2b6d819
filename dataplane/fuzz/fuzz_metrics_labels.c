/* libFuzzer target: peer-controlled label values and HELP text through the metrics exposition.
 * Input: HELP text, then label values, separated by NUL bytes. Checks that the output is valid
 * UTF-8, one series per line, and that un-escaping every label value gives back the value with
 * invalid UTF-8 replaced by U+FFFD (so escaping can neither break out of the quotes nor lose
 * bytes). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "metrics.h"

static bool valid_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            k = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + k > n)
            return false;
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if ((k == 3 && cp < 0x800) || (k == 4 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k;
    }
    return true;
}

/* Parse `"..."` at p (p points at the opening quote), un-escape into out. Returns the position
 * after the closing quote or NULL. */
static const char *unquote(const char *p, const char *end, struct dp_buf **out)
{
    if (p >= end || *p != '"')
        return NULL;
    for (p++; p < end; p++) {
        if (*p == '"')
            return p + 1;
        if (*p == '\n')
            return NULL;
        if (*p == '\\') {
            if (++p >= end)
                return NULL;
            char c = *p == 'n' ? '\n' : *p;
            if (*p != 'n' && *p != '\\' && *p != '"')
                return NULL;
            dp_buf_append(out, &c, 1);
        } else {
            dp_buf_append(out, p, 1);
        }
    }
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy, *parts[3] = {"", "", ""};
    struct dp_metrics *m = NULL;
    struct dp_metric *f;
    struct dp_metric_series *s;
    struct dp_buf *out = NULL, *want = NULL, *got = NULL;
    static const char *const keys[] = {"a", "b"};

    if (size > 8192)
        return 0;
    copy = malloc(size + 1);
    memcpy(copy, data, size);
    copy[size] = '\0';
    /* split at NULs: help, value a, value b */
    char *p = copy;
    for (int i = 0; i < 3 && p <= copy + size; i++) {
        parts[i] = p;
        p += strlen(p) + 1;
    }
    if (dp_metrics_new(&m) < 0 || dp_metrics_counter(m, "fuzz_total", parts[0], keys, 2, &f) < 0)
        __builtin_trap();
    const char *values[2] = {parts[1], parts[2]};
    if (dp_metric_series(f, values, 2, &s) < 0)
        goto out; /* value too long */
    dp_counter_inc(s);
    if (dp_buf_new(1024, 1u << 20, &out) < 0 || dp_metrics_expose(m, &out) < 0)
        __builtin_trap();
    const char *t = dp_buf_head(out), *end = t + out->len;
    if (!valid_utf8((const unsigned char *)t, out->len))
        __builtin_trap();
    /* exactly three lines: HELP, TYPE, series */
    unsigned lines = 0;
    for (const char *c = t; c < end; c++)
        lines += *c == '\n';
    if (lines != 3 || end[-1] != '\n')
        __builtin_trap();
    const char *series = memmem(t, out->len, "\nfuzz_total{a=", 14);
    if (series == NULL)
        __builtin_trap();
    const char *q = series + 14;
    for (int i = 0; i < 2; i++) {
        dp_buf_new(64, 1u << 20, &want);
        dp_buf_new(64, 1u << 20, &got);
        dp_metrics_escape(&want, values[i], false); /* sanitised, with \\ and \n escaped */
        q = unquote(q, end, &got);
        if (q == NULL)
            __builtin_trap();
        /* compare got (raw) to values[i] sanitised: re-escape got the same way */
        struct dp_buf *re = NULL;
        dp_buf_new(64, 1u << 20, &re);
        dp_buf_append(&got, "", 1);
        dp_metrics_escape(&re, dp_buf_head(got), false);
        if (re->len != want->len || memcmp(dp_buf_head(re), dp_buf_head(want), re->len) != 0)
            __builtin_trap();
        dp_buf_free(re);
        dp_buf_free(want);
        dp_buf_free(got);
        want = got = NULL;
        if (i == 0) {
            if (end - q < 3 || memcmp(q, ",b=", 3) != 0)
                __builtin_trap();
            q += 3;
        }
    }
    if (end - q < 4 || memcmp(q, "} 1\n", 4) != 0)
        __builtin_trap();
out:
    dp_buf_free(out);
    dp_metrics_free(m);
    free(copy);
    return 0;
}
