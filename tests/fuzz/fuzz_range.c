/* fuzz_range.c - libFuzzer target for the HTTP Range header parser
 * (src/http/range.c). The first byte picks the object size; the rest is the
 * header. Checks the contract in range.h and, for plain "bytes=digits-digits"
 * headers, compares with a small independent model of the same rules. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../../src/http/range.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const int64_t sizes[] = {0, 1, 2, 100, 1000, (int64_t)1 << 40, INT64_MAX};

/* Parses up to 18 digits (so no overflow); -1 if empty or not all digits. */
static int64_t digits(const char *s, size_t n) {
    if (n == 0 || n > 18) return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* The rules of range.h for "bytes=A-B" where A and B are short digit runs
 * (either may be empty). Returns 2 when the header is outside that shape. */
static int model(const char *h, int64_t size, int64_t *from, int64_t *to) {
    if (strncmp(h, "bytes=", 6) != 0) return 2;
    const char *p = h + 6, *dash = strchr(p, '-');
    if (!dash || strchr(dash + 1, '-')) return 2;
    size_t na = (size_t)(dash - p), nb = strlen(dash + 1);
    int64_t a = digits(p, na), b = digits(dash + 1, nb);
    if ((na && a < 0) || (nb && b < 0)) return 2;
    if (!na && !nb) return 0;
    if (!na) {
        if (b == 0 || size == 0) return -1;
        *from = b >= size ? 0 : size - b;
        *to = size - 1;
        return 1;
    }
    if (nb && b < a) return 0;
    if (a >= size) return -1;
    *from = a;
    *to = !nb || b >= size ? size - 1 : b;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 4096) return 0;
    int64_t objsize = sizes[data[0] % (sizeof sizes / sizeof sizes[0])];
    char *h = malloc(size);
    if (!h) return 0;
    memcpy(h, data + 1, size - 1);
    h[size - 1] = '\0';

    int64_t from = -7, to = -7;
    int rc = vx_http_range_parse(h, objsize, &from, &to);
    if (rc == 1) {
        if (!(from >= 0 && from <= to && to < objsize)) abort();
    } else if (rc == 0 || rc == -1) {
        if (from != -7 || to != -7) abort();
    } else {
        abort();
    }
    if (strncmp(h, "bytes=", 6) != 0 && rc != 0) abort();
    if (vx_http_range_parse(NULL, objsize, &from, &to) != 0) abort();

    int64_t mfrom = -7, mto = -7;
    int mrc = model(h, objsize, &mfrom, &mto);
    if (mrc != 2 && (mrc != rc || (rc == 1 && (mfrom != from || mto != to)))) abort();
    free(h);
    return 0;
}
