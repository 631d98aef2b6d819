#include "common.h"

#include <stdio.h>
#include <time.h>

void dp_bug(const char *file, int line, const char *expr)
{
    fprintf(stderr, "BUG at %s:%d: %s\n", file, line, expr);
    abort();
}

void *dp_xmalloc(size_t size)
{
    void *p = calloc(1, size ? size : 1);
    if (p == NULL) {
        fprintf(stderr, "out of memory allocating %zu bytes\n", size);
        abort();
    }
    return p;
}

uint64_t dp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t dp_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
