/* ids.h - opaque, time-ordered random identifiers such as "job_0k3f9...".
 * Layout: prefix "_" + 10 chars base32 of the ms timestamp + 16 random base32
 * chars. Ids of one prefix sort by creation time, so list cursors are ids. */
#ifndef VX_IDS_H
#define VX_IDS_H
#include <stdbool.h>

#define VX_ID_SIZE 48

/* Writes a new id with `prefix` (e.g. "usr", "key", "job", "led"). Thread-safe. */
void vx_id_new(char out[VX_ID_SIZE], const char *prefix);
/* True if `s` looks like an id of `prefix` (shape only; cheap input check). */
bool vx_id_valid(const char *s, const char *prefix);

#endif
