/* utf8.h - making text safe to put into JSON strings: jansson refuses
 * invalid UTF-8, and error messages may echo client bytes or be cut in the
 * middle of a character. Thread-safe, no allocation. */
#ifndef VX_UTF8_H
#define VX_UTF8_H
#include <stdbool.h>
#include <stddef.h>

/* True if s is well-formed UTF-8 (RFC 3629: no overlongs, surrogates or
 * code points above U+10FFFF). */
bool vx_utf8_valid(const char *s);
/* Copies s into out (cap bytes, always NUL-terminated), replacing every byte
 * that does not start a well-formed sequence with '?', and never cutting a
 * character in half at the end. Returns out. */
char *vx_utf8_sanitize(const char *s, char *out, size_t cap);

#endif
