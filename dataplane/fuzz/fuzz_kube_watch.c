/*
 * libFuzzer target for the watch-stream splitter: the input is fed in chunks whose sizes come
 * from the first bytes, with a small line limit so that the limit path is reached too.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kube_watch.h"

static int on_event(enum dp_kube_event_type type, json_t *obj, void *arg)
{
    size_t *n = arg;

    (void)dp_kube_event_type_str(type);
    (void)json_object_size(obj);
    (*n)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dp_kube_splitter s;
    size_t events = 0, off = 0;
    unsigned stride;
    int r = 0;

    if (size < 2)
        return 0;
    stride = (unsigned)data[0] + 1;
    dp_kube_splitter_init(&s, data[1] & 1 ? 512 : 0);
    data += 2;
    size -= 2;
    while (off < size && r == 0) {
        size_t n = size - off < stride ? size - off : stride;

        r = dp_kube_splitter_feed(&s, (const char *)data + off, n, on_event, &events);
        off += n;
    }
    if (r == 0)
        (void)dp_kube_splitter_finish(&s);
    dp_kube_splitter_done(&s);
    return 0;
}
