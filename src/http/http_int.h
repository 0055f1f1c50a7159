/* http_int.h - private parts shared by the files of src/http/ (server.c,
 * respond.c, upload.c, static.c, metrics.c): the request and server structs
 * and the internal calls between them. Never included outside src/http/.
 * A vx_request is touched only by the MHD pool thread serving its
 * connection; the server struct is shared (atomics, metrics mutex). */
#ifndef VX_HTTP_INT_H
#define VX_HTTP_INT_H
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdint.h>
#include "../util/ids.h"
#include "http.h"
#include "router.h"

/* Pseudo route indexes for requests that matched no route. */
#define VX_HTTP_ROUTE_STATIC (-1)
#define VX_HTTP_ROUTE_UNMATCHED (-2)

typedef struct vx_http_metrics vx_http_metrics;

struct vx_http_server {
    vx_app *app;
    const vx_route *routes;
    size_t n_routes;
    vx_router *router;
    vx_http_metrics *metrics;
    struct MHD_Daemon *daemon;
    char web_root[VX_PATH_SIZE];   /* realpath of cfg->web_dir; "" = no static files */
    atomic_int in_flight;          /* requests begun and not yet completed */
    atomic_bool stopping;          /* set by vx_http_stop: answers say Connection: close */
};

typedef struct vx_resp_extra {
    struct vx_resp_extra *next;
    char *name, *value;
} vx_resp_extra;

struct vx_request {
    vx_http_server *srv;
    struct MHD_Connection *conn;
    char id[VX_ID_SIZE];
    char method[16];               /* truncated copy: long methods never match a route */
    char *raw_path;                /* as sent, without the query string (access log) */
    char *path;                    /* percent-decoded (raw copy if that failed) */
    bool path_bad;                 /* bad %-escape or a decoded NUL */
    char peer[64];
    uint64_t start_ns;             /* CLOCK_MONOTONIC */
    bool started;                  /* first access-handler call done */

    int route_index;               /* >= 0, or VX_HTTP_ROUTE_STATIC / _UNMATCHED */
    const vx_route *route;         /* NULL unless a route matched */
    vx_route_match match;
    char allow[128];               /* 405: methods of the matched pattern */

    /* VX_BODY_JSON */
    char *body;
    size_t body_len, body_cap;

    /* VX_BODY_UPLOAD */
    struct MHD_PostProcessor *pp;
    bool upload_failed;            /* upload_part refused; err holds why */
    bool upload_seen_part;
    uint64_t upload_bytes;         /* body bytes fed to the post processor */

    vx_err err;                    /* pending error to answer (early refusal) */

    /* response: prepared by vx_respond_*, queued by server.c */
    struct MHD_Response *resp;
    int status;                    /* 0 until answered */
    uint64_t resp_bytes;
    bool is_json;
    bool close_after;              /* answered before the body was read */
    vx_resp_extra *extra, *extra_tail;

    void *data;
    void (*data_free)(void *);
};

/* respond.c */
/* Adds X-Request-Id, Content-Type (JSON), extra headers, WWW-Authenticate
 * for 401 and Connection: close when needed, then queues req->resp. Returns
 * MHD_NO if MHD refused the response. */
enum MHD_Result vx_http_queue(vx_request *req);
/* Renders the error as a whole HTTP/1.1 message with Connection: close into
 * buf; sets req->status and resp_bytes. Returns the length or 0 if too big. */
size_t vx_http_render_raw_error(vx_request *req, const vx_err *err, char *buf, size_t size);
/* Frees a prepared but never queued response and the extra headers. */
void vx_http_response_release(vx_request *req);

/* upload.c */
/* Checks the Content-Type and creates the post processor. -1 with err
 * (415 unsupported_media_type) if it is not multipart/form-data with a boundary. */
int vx_http_upload_begin(vx_request *req, vx_err *err);
/* Feeds body bytes; -1 with err (400 invalid_multipart or the handler's
 * refusal from upload_part). */
int vx_http_upload_feed(vx_request *req, const char *data, size_t size, vx_err *err);
/* Body complete: -1 with err if the multipart body was cut short or empty. */
int vx_http_upload_finish(vx_request *req, vx_err *err);
/* Destroys the post processor if still there (client went away). */
void vx_http_upload_release(vx_request *req);

/* static.c */
/* Serves GET/HEAD of a file under srv->web_root; answers 404 JSON otherwise. */
void vx_http_serve_static(vx_request *req);

/* metrics.c */
/* Allocates counters for the route table's distinct patterns plus
 * "static" and "unmatched". Caller frees with vx_http_metrics_free. */
vx_http_metrics *vx_http_metrics_new(const vx_route *routes, size_t n_routes);
void vx_http_metrics_free(vx_http_metrics *m);
/* Counts one finished request. Thread-safe. */
void vx_http_metrics_record(vx_http_metrics *m, int route_index, const char *method, int status,
                            double seconds);
void vx_http_metrics_render_to(vx_http_metrics *m, int in_flight, vx_strbuf *buf);

#endif
