/* http_int.h - private parts shared by the files of src/http/ (server.c,
 * respond.c, upload.c, static.c, metrics.c): the request and server structs
 * and the internal calls between them. Never included outside src/http/.
 * A vx_request is touched only by the MHD pool thread serving its
 * connection; the server struct is shared (atomics, metrics mutex). */
#ifndef VX_HTTP_INT_H
#define VX_HTTP_INT_H
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "../util/ids.h"
#include "http.h"
#include "router.h"

/* Pseudo route indexes for requests that matched no route. */
#define VX_HTTP_ROUTE_STATIC (-1)
#define VX_HTTP_ROUTE_UNMATCHED (-2)

typedef struct vx_http_metrics vx_http_metrics;
typedef struct vx_stream vx_stream;

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
    vx_stream *stream;             /* the stream thread: deferred, SSE, WebSocket */
    atomic_int suspended;          /* connections suspended by us (must be 0 at MHD_stop_daemon) */
    atomic_int upgrading;          /* WebSocket answers queued whose socket the stream thread has not taken */
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
    bool json_body;                /* body buffered as JSON (VX_BODY_JSON or json_too) */

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

    /* long-lived answers (at most one set); each holds a reference */
    struct vx_deferred *deferred;
    struct vx_sse *sse;
    struct vx_ws *ws;
};

/* ---- stream.c: the stream thread ----
 * One thread per server with its own epoll: an eventfd for work posted by
 * other threads (vx_stream_wake), a timerfd for the earliest deadline of a
 * heap of items, and the sockets of WebSockets and suspended requests.
 * Items (deferred answers, SSE channels, WebSockets) embed a vx_stream_item
 * first; functions marked "stream thread" must only be called there. */
typedef struct vx_stream_item vx_stream_item;

typedef struct vx_stream_item_ops {
    /* Posted work (vx_stream_wake). Stream thread. */
    void (*wake)(vx_stream_item *it);
    /* epoll events on the item's fd (vx_stream_watch). Stream thread. */
    void (*io)(vx_stream_item *it, uint32_t events);
    /* The item's deadline passed. Stream thread. */
    void (*timer)(vx_stream_item *it, uint64_t now_ns);
    /* Server stopping: phase 1 = wind down politely, 2 = end now (before
     * MHD_stop_daemon: no suspended connection or open upgraded socket may
     * remain). Called once per phase for each registered item. Stream thread. */
    void (*stop)(vx_stream_item *it, int phase);
    /* Last reference dropped. Any thread. */
    void (*destroy)(vx_stream_item *it);
} vx_stream_item_ops;

struct vx_stream_item {
    const vx_stream_item_ops *ops;
    vx_stream *stream;
    atomic_int refs;
    /* under the stream's queue mutex */
    vx_stream_item *wake_next;
    bool wake_queued;
    /* stream thread only */
    bool registered, in_epoll;
    vx_stream_item *prev, *next;   /* registered items */
    vx_stream_item *dead_next;     /* retired in this loop turn */
    size_t heap_pos;               /* 0 = not in the timer heap, else index + 1 */
    uint64_t deadline_ns;
    int fd;
};

/* refs = 1 (the creator's). */
void vx_stream_item_init(vx_stream_item *it, vx_stream *s, const vx_stream_item_ops *ops);
void vx_stream_item_ref(vx_stream_item *it);
void vx_stream_item_unref(vx_stream_item *it);
/* Queues ops->wake on the stream thread (once until it runs; holds a
 * reference meanwhile). Any thread; the stream must still exist: callers
 * only wake items that are not finished. */
void vx_stream_wake(vx_stream_item *it);
/* Stream thread: adds the item to the registered set (holds a reference
 * until vx_stream_retire). Idempotent. */
void vx_stream_register(vx_stream_item *it);
/* Stream thread: removes the item from epoll, the heap and the set; the
 * reference is dropped at the end of the loop turn. */
void vx_stream_retire(vx_stream_item *it);
/* Stream thread: watch fd for events (0 = stop watching). -1 on failure. */
int vx_stream_watch(vx_stream_item *it, int fd, uint32_t events);
/* Stream thread: the item's next deadline (CLOCK_MONOTONIC ns; 0 = none). */
void vx_stream_set_deadline(vx_stream_item *it, uint64_t deadline_ns);
/* 0 = running, 1 = stopping politely, 2 = ending everything. Any thread. */
int vx_stream_phase(const vx_stream *s);
uint64_t vx_stream_now_ns(void);

/* Starts the thread. NULL with err on failure. */
vx_stream *vx_stream_start(vx_http_server *srv, vx_err *err);
/* Enters a stop phase (1, then 2) and waits until the thread has called
 * ops->stop for every registered item. */
void vx_stream_stop_phase(vx_stream *s, int phase);
/* Lets the thread run the remaining work (on_close callbacks of requests
 * completed by MHD_stop_daemon), stops and frees it. */
void vx_stream_free(vx_stream *s);

/* ---- deferred.c, sse.c, websocket.c: hooks called by server.c ---- */
/* Final access-handler call of a request with a deferred answer: queues the
 * answer if there is one, else suspends the connection. */
enum MHD_Result vx_deferred_on_access(vx_request *req);
/* The request is over (on_completed): the handle forgets the connection. */
void vx_deferred_on_request_done(struct vx_deferred *d);
void vx_sse_on_request_done(struct vx_sse *sse);
void vx_ws_on_request_done(struct vx_ws *ws);

/* websocket.c: SHA-1 (RFC 3174) for the handshake; exposed for its test. */
void vx_http_sha1(const void *data, size_t len, unsigned char out[20]);
/* Sec-WebSocket-Accept for a key: base64(SHA-1(key + GUID)); out >= 29 bytes. */
void vx_http_ws_accept(const char *key, char out[29]);

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
