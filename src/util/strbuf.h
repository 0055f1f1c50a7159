/* strbuf.h - a growable NUL-terminated byte buffer for building text
 * (Prometheus metrics, SRT, SQL-free JSON pieces). Allocation failure aborts
 * the process (a message and abort()), as with jansson's own allocator. */
#ifndef VX_STRBUF_H
#define VX_STRBUF_H
#include <stddef.h>

typedef struct vx_strbuf {
    char *data;   /* NUL-terminated; NULL until the first append */
    size_t len;
    size_t cap;
} vx_strbuf;

void vx_strbuf_append(vx_strbuf *b, const char *data, size_t len);
void vx_strbuf_puts(vx_strbuf *b, const char *s);
void vx_strbuf_printf(vx_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the buffer to the caller (free()) and resets b. Never NULL. */
char *vx_strbuf_take(vx_strbuf *b);
void vx_strbuf_free(vx_strbuf *b);

#endif
