/* strbuf.c - growable text buffer; doubling growth, abort on OOM. */
#include "strbuf.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void reserve(vx_strbuf *b, size_t extra) {
    if (b->data && b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        fputs("voxd: out of memory\n", stderr);
        abort();
    }
    b->data = p;
    b->cap = cap;
}

void vx_strbuf_append(vx_strbuf *b, const char *data, size_t len) {
    reserve(b, len);
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void vx_strbuf_puts(vx_strbuf *b, const char *s) { vx_strbuf_append(b, s, strlen(s)); }

void vx_strbuf_printf(vx_strbuf *b, const char *fmt, ...) {
    va_list ap;
    char probe[1];
    va_start(ap, fmt);
    int n = vsnprintf(probe, sizeof probe, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

char *vx_strbuf_take(vx_strbuf *b) {
    if (!b->data) reserve(b, 0), b->data[0] = '\0';
    char *p = b->data;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

void vx_strbuf_free(vx_strbuf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
