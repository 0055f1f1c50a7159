/* http.h - the HTTP server glue over libmicrohttpd: routing by method and
 * path pattern, bounded JSON bodies, streaming multipart uploads, responses
 * (JSON, bytes, files with sendfile), access log with request ids, request
 * metrics, static files for the web UI, graceful stop.
 * Handlers in src/api/ see only this header, never MHD. A handler runs on
 * one of MHD's pool threads and must answer exactly once (vx_respond_*).
 * Room is left for the WebSocket thread (live events/streaming issues):
 * MHD runs with MHD_ALLOW_UPGRADE so an upgrade hook can be added here. */
#ifndef VX_HTTP_H
#define VX_HTTP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "../core/app.h"
#include "../util/err.h"

typedef struct vx_request vx_request;
typedef struct vx_http_server vx_http_server;

typedef enum vx_body_kind {
    VX_BODY_NONE,    /* a body, if any, is read and discarded */
    VX_BODY_JSON,    /* buffered up to cfg->max_body_bytes, else 413 "body_too_large" */
    VX_BODY_UPLOAD,  /* multipart/form-data streamed to upload_part; anything else 415 */
} vx_body_kind;

/* One piece of one multipart part, as it arrives. Parts arrive in order;
 * a part's chunks arrive with increasing offset. */
typedef struct vx_upload_chunk {
    const char *name;          /* form field name */
    const char *filename;      /* NULL for plain fields */
    const char *content_type;  /* NULL if the part has none */
    const char *data;
    uint64_t offset;           /* of data within this part */
    size_t size;
} vx_upload_chunk;

typedef struct vx_route {
    const char *method;        /* "GET", "POST", "DELETE", ... */
    const char *pattern;       /* "/v1/jobs/{id}/result": literal segments and {captures} */
    vx_body_kind body;
    /* VX_BODY_UPLOAD: called when the headers are in, before any body byte
     * is read (authenticate, check Content-Length). -1 with err: the error is
     * answered at once and the body is not read. May be NULL. */
    int (*begin)(vx_request *req, vx_err *err);
    /* VX_BODY_UPLOAD: each chunk. -1 with err stops the upload: the error is
     * answered at once (connection closed after), the rest is not read. */
    int (*upload_part)(vx_request *req, const vx_upload_chunk *chunk, vx_err *err);
    /* Whole request in: must answer with one vx_respond_* call. */
    void (*handle)(vx_request *req);
} vx_route;

/* ---- server ---- */
/* Starts listening on cfg->listen with cfg->http_threads threads (MHD
 * internal epoll thread pool). Routes are borrowed (static tables). */
vx_http_server *vx_http_start(vx_app *app, const vx_route *routes, size_t n_routes, vx_err *err);
/* The bound port (useful with port 0). */
int vx_http_port(const vx_http_server *srv);
/* Graceful: stop accepting, wait up to grace_ms for in-flight requests, stop. */
void vx_http_stop(vx_http_server *srv, int grace_ms);

/* ---- request ---- */
vx_app *vx_req_app(vx_request *req);
const char *vx_req_id(vx_request *req);        /* "req_..." also sent as X-Request-Id */
const char *vx_req_method(vx_request *req);
const char *vx_req_path(vx_request *req);
/* Case-insensitive header lookup; NULL if absent. */
const char *vx_req_header(vx_request *req, const char *name);
/* Decoded query argument; NULL if absent. */
const char *vx_req_query(vx_request *req, const char *name);
/* Path capture by name from the route pattern ("id"); NULL if none. */
const char *vx_req_capture(vx_request *req, const char *name);
/* The buffered body (VX_BODY_JSON), NUL-terminated; *len without the NUL. */
const char *vx_req_body(vx_request *req, size_t *len);
/* Per-request handler state, freed with free_fn when the request ends
 * (also when the client goes away mid-upload). */
void vx_req_set_data(vx_request *req, void *data, void (*free_fn)(void *));
void *vx_req_data(vx_request *req);
/* Name of the client peer, "ip:port". */
const char *vx_req_peer(vx_request *req);

/* ---- responses (exactly one per request) ---- */
/* Adds a header to the coming response (copied). */
void vx_resp_header(vx_request *req, const char *name, const char *value);
/* Steals `body` (json_decref'd); dumps with VX_JSON_DUMP_FLAGS. */
void vx_respond_json(vx_request *req, int status, json_t *body);
/* {"error":{"code","message"}} with the status mapped from err->status. */
void vx_respond_error(vx_request *req, const vx_err *err);
/* Convenience: builds the error and responds. */
void vx_respond_errorf(vx_request *req, vx_status status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Copies data. */
void vx_respond_bytes(vx_request *req, int status, const char *content_type, const void *data, size_t len);
/* Sends `length` bytes of fd from `offset` (sendfile); takes ownership of fd. */
void vx_respond_fd(vx_request *req, int status, const char *content_type, int fd, int64_t offset, int64_t length);
/* Streams `length` bytes produced by reader(user, pos, buf, max) -> bytes or -1;
 * free_fn(user) at the end. For backends without an fd. */
void vx_respond_stream(vx_request *req, int status, const char *content_type, int64_t length,
                       long (*reader)(void *user, uint64_t pos, char *buf, size_t max),
                       void *user, void (*free_fn)(void *));

/* ---- metrics (Prometheus text) ---- */
/* Appends the server's HTTP metrics (requests by route/method/status,
 * latency histogram, in-flight) to buf in Prometheus text format. */
typedef struct vx_strbuf vx_strbuf;
void vx_http_metrics_render(vx_request *req, vx_strbuf *buf);

#endif
