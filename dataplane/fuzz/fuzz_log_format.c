/* fuzz_log_format.c — log line formatting with hostile values.
 * Input: first byte picks the buffer size, the rest is split at '\0'-free boundaries into
 * scope / msg / value. Properties: never crashes or overflows; with a normal buffer every
 * line is exactly one line (one '\n', at the end), and the JSON form parses with jansson. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static char *take(const uint8_t **p, size_t *n)
{
    size_t k = 0;
    char *s;

    while (k < *n && (*p)[k] != 0xff)
        k++;
    s = malloc(k + 1);
    if (s == NULL)
        abort();
    memcpy(s, *p, k);
    s[k] = '\0';
    *p += k < *n ? k + 1 : k;
    *n -= k < *n ? k + 1 : k;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char line[8192];
    unsigned outsz, len;
    char *scope, *msg, *val;
    int fmt;

    if (size < 1 || size > 65536)
        return 0;
    outsz = data[0] < 8 ? data[0] : sizeof(line) >> (data[0] % 8);
    data++;
    size--;
    scope = take(&data, &size);
    msg = take(&data, &size);
    val = take(&data, &size);
    for (fmt = 0; fmt < 2; fmt++) {
        const struct dp_log_field f[] = {DP_LS("v", val), DP_LS(val, "k"), DP_LS("token", val),
                                         DP_LU("n", size)};
        len = dp_log_format_line(line, outsz, (enum dp_log_format)fmt, 1772366400123456ull,
                                 DP_LOG_WARN, scope, msg, f, 4);
        if (outsz > 0 && (len >= outsz || line[len] != '\0'))
            abort();
        if (outsz <= 96)
            continue;
        if (len == 0 || line[len - 1] != '\n' || memchr(line, '\n', len - 1) != NULL)
            abort();
        if (fmt == 1) {
            json_t *o = json_loadb(line, len, 0, NULL);
            if (o == NULL)
                abort();
            json_decref(o);
        }
    }
    free(scope);
    free(msg);
    free(val);
    return 0;
}
