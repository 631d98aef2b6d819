/* fuzz_sockaddr.c — dp_sock_parse_addr / dp_sock_parse_ip on arbitrary bytes.
 * Properties: never crashes; an accepted address formats and re-parses to the same address. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sock.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sockaddr_storage ss, again;
    socklen_t len, len2;
    char out[DP_SOCK_ADDRSTRLEN];
    char *s;

    if (size > 4096)
        return 0;
    s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    if (dp_sock_parse_addr(s, &ss, &len) == 0) {
        dp_sock_format_addr((struct sockaddr *)&ss, len, out, sizeof(out));
        if (dp_sock_parse_addr(out, &again, &len2) != 0 || len2 != len ||
            !dp_sock_addr_equal((struct sockaddr *)&ss, (struct sockaddr *)&again))
            abort();
    }
    if (dp_sock_parse_ip(s, 15008, &ss, &len) == 0) {
        dp_sock_format_addr((struct sockaddr *)&ss, len, out, sizeof(out));
        if (dp_sock_parse_addr(out, &again, &len2) != 0 ||
            !dp_sock_addr_equal((struct sockaddr *)&ss, (struct sockaddr *)&again))
            abort();
    }
    free(s);
    return 0;
}
