/* range.c - parses the HTTP Range header of a download (see range.h).
 * Lives apart from the handlers so that it can be unit-tested and fuzzed
 * on its own. Pure; callable from any thread. */
#include "range.h"
#include <stdlib.h>
#include <string.h>

int vx_http_range_parse(const char *h, int64_t size, int64_t *from, int64_t *to) {
    /* Several ranges would need a multipart/byteranges answer: ignoring the
     * header and sending everything is the simpler answer RFC 9110 permits. */
    if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ',')) return 0;
    const char *p = h + 6;
    char *end;
    if (*p == '-') {
        long long n = strtoll(p + 1, &end, 10);
        if (end == p + 1 || *end || n < 0) return 0;
        if (n == 0 || size == 0) return -1;
        *from = n >= size ? 0 : size - n;
        *to = size - 1;
        return 1;
    }
    long long a = strtoll(p, &end, 10);
    if (end == p || *end != '-' || a < 0) return 0;
    const char *q = end + 1;
    long long b = size - 1;
    if (*q) {
        b = strtoll(q, &end, 10);
        if (end == q || *end || b < a) return 0;
    }
    if (a >= size) return -1;
    if (b >= size) b = size - 1;
    *from = a;
    *to = b;
    return 1;
}
