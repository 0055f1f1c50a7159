/* range.h - the HTTP Range request header (RFC 9110 section 14.2) for
 * downloads: one "bytes=" range of a representation of known size.
 * A pure function of its arguments; any thread may call it. */
#ifndef VX_RANGE_H
#define VX_RANGE_H
#include <stdint.h>

/* Parses a single "bytes=a-b" / "bytes=a-" / "bytes=-n" range against an
 * object of `size` bytes. Returns 1 with the inclusive [*from, *to] (then
 * 0 <= *from <= *to < size); 0 when the header is NULL or not a single
 * byte range we understand (the whole object is then sent, as RFC 9110
 * allows for an ignored Range); -1 when the range is unsatisfiable (416).
 * A last position past the end is clamped to size - 1; a suffix longer than
 * the object means the whole object. *from and *to are untouched unless 1. */
int vx_http_range_parse(const char *header, int64_t size, int64_t *from, int64_t *to);

#endif
