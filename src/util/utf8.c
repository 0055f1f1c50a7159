/* utf8.c - UTF-8 validation and repair (see utf8.h). */
#include "utf8.h"
#include <string.h>

/* Length of the well-formed sequence at p (1-4), or 0 if p does not start one. */
static size_t sequence_length(const unsigned char *p) {
    unsigned c = p[0];
    if (c < 0x80) return 1;
    size_t n;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) n = 2;
    else if (c == 0xe0) n = 3, lo = 0xa0;
    else if (c == 0xed) n = 3, hi = 0x9f;          /* no surrogates */
    else if (c >= 0xe1 && c <= 0xef) n = 3;
    else if (c == 0xf0) n = 4, lo = 0x90;
    else if (c >= 0xf1 && c <= 0xf3) n = 4;
    else if (c == 0xf4) n = 4, hi = 0x8f;          /* <= U+10FFFF */
    else return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf) return 0;
    return n;
}

bool vx_utf8_valid(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = sequence_length(p);
        if (!n) return false;
        p += n;
    }
    return true;
}

char *vx_utf8_sanitize(const char *s, char *out, size_t cap) {
    if (cap == 0) return out;
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = sequence_length(p);
        if (n == 0) {
            if (o + 1 >= cap) break;
            out[o++] = '?';
            p++;
            continue;
        }
        if (o + n >= cap) break; /* no half characters at the end */
        memcpy(out + o, p, n);
        o += n;
        p += n;
    }
    out[o] = '\0';
    return out;
}
