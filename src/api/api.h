/* api.h - the HTTP handlers of voxd: parse and validate, call core/, render
 * JSON. No SQL and no business rules here (DESIGN.md "Layers"). The route
 * table is the one list of endpoints; openapi.json describes the same set.
 * Handlers run on HTTP pool threads. */
#ifndef VX_API_H
#define VX_API_H
#include <stddef.h>
#include "../http/http.h"

/* All routes, for vx_http_start. */
const vx_route *vx_api_routes(size_t *n);

/* The worker threads of live streams (GET /v1/stream, stream.c): start
 * before the HTTP server, stop after vx_http_stop has closed every stream
 * (each is settled first). NULL on failure. */
vx_streams *vx_api_streams_start(vx_app *app, vx_err *err);
void vx_api_streams_stop(vx_streams *streams);

#endif
