/* router.h - method + path-pattern matching for the HTTP server
 * ("/v1/jobs/{id}/result"): literal segments and single-segment captures.
 * Private to src/http/ (and its unit test). A router is immutable after
 * vx_router_new, so any thread may match concurrently. */
#ifndef VX_ROUTER_H
#define VX_ROUTER_H
#include <stddef.h>
#include "../util/err.h"

struct vx_route;

#define VX_ROUTER_MAX_CAPTURES 8
#define VX_ROUTER_MAX_SEGMENTS 32

typedef struct vx_router vx_router;

typedef enum vx_route_result {
    VX_ROUTE_FOUND,        /* m->index names the route */
    VX_ROUTE_NO_PATH,      /* no pattern matches the path: 404 */
    VX_ROUTE_NO_METHOD,    /* a pattern matches but not for this method: 405, m->allow */
} vx_route_result;

typedef struct vx_route_match {
    size_t index;                               /* into the route table */
    size_t n_captures;
    const char *names[VX_ROUTER_MAX_CAPTURES];  /* borrowed from the router */
    const char *values[VX_ROUTER_MAX_CAPTURES]; /* decoded, point into buf */
    char allow[128];                            /* "GET, HEAD, POST" for 405 */
    char *buf;                                  /* owned; vx_route_match_clear frees it */
} vx_route_match;

/* Checks and compiles the patterns (must start with '/', captures are
 * "{name}" filling a whole segment, at most VX_ROUTER_MAX_CAPTURES, no
 * duplicate method+pattern). Routes are borrowed. Caller frees with
 * vx_router_free. NULL with err (500 invalid_route) on a bad table. */
vx_router *vx_router_new(const struct vx_route *routes, size_t n_routes, vx_err *err);
void vx_router_free(vx_router *r);

/* Matches a raw (still percent-encoded, no query string) path. Segments are
 * decoded before comparison; a capture whose decoded value contains '/' or
 * NUL, or an invalid %-escape, never matches. HEAD falls back to the GET
 * route of the same pattern. Fills m (clear it after with
 * vx_route_match_clear, whatever the result). */
vx_route_result vx_router_match(const vx_router *r, const char *method, const char *raw_path,
                                vx_route_match *m);
void vx_route_match_clear(vx_route_match *m);

/* Decodes %XX escapes of src[0..len) into dst (room for len+1 bytes), NUL
 * terminated; '+' stays '+'. Returns the decoded length or -1 on a bad escape. */
long vx_http_percent_decode(const char *src, size_t len, char *dst);

#endif
