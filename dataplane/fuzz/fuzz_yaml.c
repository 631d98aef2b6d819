/* libFuzzer target: arbitrary bytes through the YAML loader and back out as JSON. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "yaml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    json_t *docs = NULL;
    if (size > (1u << 20))
        return 0;
    if (dp_yaml_parse((const char *)data, size, "fuzz", &docs, err, sizeof(err)) == 0) {
        char *s = json_dumps(docs, JSON_COMPACT);
        free(s);
        json_decref(docs);
    }
    return 0;
}
