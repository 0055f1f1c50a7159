/* http.h - the HTTP server glue over libmicrohttpd: routing by method and
 * path pattern, bounded JSON bodies, streaming multipart uploads, responses
 * (JSON, bytes, files with sendfile), access log with request ids, request
 * metrics, static files for the web UI, graceful stop.
 * Handlers in src/api/ see only this header, never MHD. A handler runs on
 * one of MHD's pool threads and must answer exactly once (vx_respond_*).
 * Long-lived answers (below the metrics section): deferred answers given
 * later by any thread, Server-Sent Events streams and WebSockets, all driven
 * by one stream thread per server (epoll, eventfd, timerfd). */
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
    VX_BODY_UPLOAD,  /* multipart/form-data streamed to upload_part; anything else 415
                        (unless the route sets json_too) */
    VX_BODY_RAW,     /* any body, streamed as it arrives to upload_part as one part
                        (name "", filename NULL, content_type = the request's) */
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
    /* Optional: the body of this route's error answers (vx_respond_error,
     * refusals of begin/upload_part and of the multipart parser) in another
     * API's envelope. Returns a new reference; may change *http_status.
     * NULL = voxd's {"error":{"code","message"}}. */
    json_t *(*error_body)(const vx_err *err, int *http_status);
    /* VX_BODY_UPLOAD: an application/json body is accepted too, buffered as
     * for VX_BODY_JSON (begin is still called first; upload_part is not);
     * the handler tells the two apart with vx_req_body_is_json. */
    bool json_too;
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
/* True when the body was buffered as JSON (VX_BODY_JSON, or a json_too
 * upload route that got application/json). */
bool vx_req_body_is_json(vx_request *req);
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

/* ---- long-lived answers: common rules ----
 * Each of vx_respond_deferred / vx_respond_sse / vx_respond_websocket is the
 * request's one answer: call it from the route's handle() instead of the
 * other vx_respond_* calls. It returns a handle that holds one reference
 * owned by the caller; the caller drops it with the matching *_release
 * (from any thread, exactly once, whenever it likes: the transport keeps
 * its own reference while the connection lives). Every other function on a
 * handle may be called from any thread, also after the connection has
 * ended (it then does nothing and returns -1). Callbacks run on the
 * server's stream thread, must not block (queue work elsewhere) and may
 * call any function of this header on any handle, including *_release.
 * vx_http_stop ends them all: unanswered deferred requests get 503
 * "shutting_down", SSE streams end, WebSockets close with 1001.
 * Each open one counts against cfg->max_connections. Measured on loopback
 * (bench/idle_connections.sh): ~30 KiB per idle WebSocket (MHD's 32 KiB
 * connection pool stays allocated plus wslay's ~9 KiB), ~11 KiB per idle
 * SSE stream; idle ones use no CPU. */

/* ---- deferred answers ---- */
/* A request answered later by another thread (e.g. a synchronous
 * transcription that waits for its job). The connection is suspended
 * (costs no CPU) until the answer arrives or the client leaves; MHD's idle
 * timeout does not run meanwhile, so the waiting code bounds the wait
 * (vx_deferred_on_ready). */
typedef struct vx_deferred vx_deferred;
/* Suspends req's answer. Returns the handle (caller releases it with
 * vx_deferred_release), or NULL after answering 500 itself (out of memory).
 * A client that disconnects meanwhile is noticed at once (the stream thread
 * watches the socket): vx_deferred_gone() turns true and answering becomes a
 * no-op. Releasing an unanswered handle answers 500 "internal" (a bug, logged). */
vx_deferred *vx_respond_deferred(vx_request *req);
/* Answers once. Steals body. 0 = the answer is on its way; -1 = nothing
 * sent: already answered, client gone, server stopping, or out of memory. */
int vx_deferred_json(vx_deferred *d, int status, json_t *body);
/* Same with the error envelope (status mapped from err->status; the
 * route's vx_route.error_body when it has one, also for the 503 on stop). */
int vx_deferred_error(vx_deferred *d, const vx_err *err);
/* Same with raw bytes (copied); content_type NULL = application/octet-stream. */
int vx_deferred_bytes(vx_deferred *d, int status, const char *content_type, const void *data, size_t len);
/* Adds a header to the coming answer (copied); ignored once answered. */
void vx_deferred_header(vx_deferred *d, const char *name, const char *value);
/* True once the client has gone away (or the server stopped) before an answer. */
bool vx_deferred_gone(const vx_deferred *d);
/* Why a vx_deferred_on_ready callback runs. */
typedef enum vx_deferred_why {
    VX_DEFERRED_WOKEN,    /* vx_deferred_wake was called: answer now */
    VX_DEFERRED_TIMEOUT,  /* timeout_ms passed first: answer now (e.g. 504) */
    VX_DEFERRED_ENDED,    /* the request ended unanswered (client gone, server stop): answers are no-ops */
} vx_deferred_why;
/* Bounds the wait and moves the answering onto an HTTP pool thread, where
 * blocking work (store reads, rendering) is allowed: fn(d, why, user) runs
 * exactly once, after vx_deferred_wake, after timeout_ms (<= 0: no bound),
 * or when the request ends unanswered, whichever comes first. For WOKEN and
 * TIMEOUT fn must answer (else 500 "internal" is sent). fn may release d.
 * Call at most once, before anything can call vx_deferred_wake. -1 if the
 * handle already has a callback. */
int vx_deferred_on_ready(vx_deferred *d, int timeout_ms,
                         void (*fn)(vx_deferred *d, vx_deferred_why why, void *user), void *user);
/* The awaited thing happened: schedules fn(WOKEN) (any thread, never blocks,
 * safe from bus callbacks). No-op once fn has run. */
void vx_deferred_wake(vx_deferred *d);
/* The request id ("req_..."), valid until release; for logs. */
const char *vx_deferred_id(const vx_deferred *d);
void vx_deferred_release(vx_deferred *d);

/* ---- Server-Sent Events ---- */
typedef struct vx_sse vx_sse;

/* Why a stream ended (given to on_close). */
typedef enum vx_stream_end {
    VX_STREAM_CLOSED,         /* vx_sse_close: everything queued was sent */
    VX_STREAM_CLIENT_GONE,    /* the client disconnected or the network failed */
    VX_STREAM_SLOW_CONSUMER,  /* the queue overflowed: pending events dropped, final event sent */
    VX_STREAM_SERVER_STOP,    /* vx_http_stop */
} vx_stream_end;

/* Zero fields take the defaults. */
typedef struct vx_sse_options {
    size_t max_queued_bytes;   /* encoded bytes waiting for the client; default 256 KiB */
    int heartbeat_ms;          /* ": keep-alive" comment when idle this long; default 15000 */
    int retry_ms;              /* > 0: sends "retry: N" first (EventSource reconnect delay) */
    /* Sent in place of the dropped queue when a consumer falls behind;
     * defaults: event "error", data
     * {"error":{"code":"slow_consumer","message":"..."}} (borrowed strings). */
    const char *overflow_event;
    const char *overflow_data;
    /* Called exactly once, on the stream thread, when the stream has ended
     * for good, even if the handle was already released: free user state
     * there. May be NULL. */
    void (*on_close)(vx_sse *sse, vx_stream_end why, void *user);
    void *user;
} vx_sse_options;

/* Answers 200 text/event-stream (Cache-Control: no-cache,
 * X-Accel-Buffering: no) and keeps the response open. opts may be NULL
 * (copied; strings borrowed). Returns the channel (caller releases it with
 * vx_sse_release), or NULL after answering 500 itself (out of memory; no
 * on_close then). Idle streams cost no CPU: the connection is suspended
 * while the queue is empty. A disconnect is noticed at once when idle
 * (socket watch) or at the next write otherwise. */
vx_sse *vx_respond_sse(vx_request *req, const vx_sse_options *opts);
/* Queues one event. id and event may be NULL (no such field; must not
 * contain CR/LF, else -1); data (NULL = "") is split into "data:" lines at
 * each newline. 0 = queued; -1 = not queued: the stream has ended (or is
 * ending), or this event overflowed the queue, which ends the stream with
 * the overflow event (on_close gets VX_STREAM_SLOW_CONSUMER). */
int vx_sse_send(vx_sse *sse, const char *id, const char *event, const char *data);
/* Queues a comment line (": text"); same results as vx_sse_send. */
int vx_sse_comment(vx_sse *sse, const char *text);
/* Ends the stream after everything queued has been sent (the response
 * completes; the client sees end of stream). Later sends return -1. */
void vx_sse_close(vx_sse *sse);
/* True while sends can still be queued. */
bool vx_sse_open(const vx_sse *sse);
void vx_sse_release(vx_sse *sse);

/* True if the request asks for an event stream (Accept has text/event-stream). */
bool vx_req_wants_sse(vx_request *req);

/* ---- WebSocket (RFC 6455) ---- */
typedef struct vx_ws vx_ws;

/* Close codes used by the server (also reported to on_close). */
#define VX_WS_NORMAL 1000          /* vx_ws_close by the app, or the client closed */
#define VX_WS_GOING_AWAY 1001      /* server stop; idle timeout */
#define VX_WS_PROTOCOL_ERROR 1002  /* bad framing from the client */
#define VX_WS_UNSUPPORTED 1003     /* text or binary message without a handler for it */
#define VX_WS_ABNORMAL 1006        /* reported only: the connection dropped without a close */
#define VX_WS_INVALID_DATA 1007    /* text message that is not UTF-8 */
#define VX_WS_POLICY 1008          /* outgoing queue overflow (consumer too slow); app policy */
#define VX_WS_TOO_BIG 1009         /* incoming message over max_message_bytes */
#define VX_WS_INTERNAL 1011        /* server error */

/* All called on the stream thread (never on an HTTP thread or concurrently
 * for one socket). data is valid only during the call. NULL on_text or
 * on_binary: such messages close the connection with 1003. */
typedef struct vx_ws_handlers {
    void (*on_open)(vx_ws *ws, void *user);      /* handshake sent; may be NULL */
    void (*on_text)(vx_ws *ws, const char *data, size_t len, void *user);  /* UTF-8 checked */
    void (*on_binary)(vx_ws *ws, const void *data, size_t len, void *user);
    /* Exactly once, last, even if the upgrade never completed (1006) or the
     * handle was already released: free user state here. code is the close
     * code sent or received (1006 when the connection just dropped);
     * reason is valid during the call, "" if none. */
    void (*on_close)(vx_ws *ws, int code, const char *reason, void *user);
} vx_ws_handlers;

/* Zero fields take the defaults. */
typedef struct vx_ws_options {
    size_t max_message_bytes;  /* whole incoming message (all fragments); default 1 MiB; over: 1009 */
    size_t max_queued_bytes;   /* outgoing bytes not yet on the wire; default 1 MiB; over: 1008 */
    int ping_interval_ms;      /* default 30000; a peer silent for two intervals is dropped (1006) */
    int idle_timeout_ms;       /* no message (pongs excluded) this long: close 1001 "idle timeout"; 0 = never */
    const char *subprotocol;   /* answered as Sec-WebSocket-Protocol if the client offered it; may be NULL */
} vx_ws_options;

/* True if the request asks for a WebSocket upgrade (Upgrade: websocket). */
bool vx_req_is_websocket(vx_request *req);
/* Checks the handshake (GET, Upgrade: websocket, Connection: upgrade,
 * Sec-WebSocket-Version: 13, a valid Sec-WebSocket-Key) and answers 101
 * Switching Protocols; the socket then moves to the stream thread.
 * Authenticate before calling (headers or ?api_key=). handlers is copied,
 * opts may be NULL (copied). Returns the handle (caller releases it with
 * vx_ws_release) or NULL after answering itself: 400
 * "invalid_websocket_handshake" (no on_close then) or 500 (out of memory).
 * Sends made before on_open are queued and go out after the handshake. */
vx_ws *vx_respond_websocket(vx_request *req, const vx_ws_handlers *handlers, const vx_ws_options *opts,
                            void *user);
/* Queue one whole message (data copied; text must be UTF-8). 0 = queued;
 * -1 = not queued: closing/closed, out of memory, or this message would
 * overflow max_queued_bytes, which closes the connection with 1008. */
int vx_ws_send_text(vx_ws *ws, const char *data, size_t len);
int vx_ws_send_binary(vx_ws *ws, const void *data, size_t len);
/* Steals json; sends it as one compact text message. */
int vx_ws_send_json(vx_ws *ws, json_t *json);
/* Starts the close handshake with code (1000-4999; others become 1000) and
 * reason (UTF-8, cut to 123 bytes) after the messages already queued have
 * been sent (also when called before on_open). The peer has 3 s to answer
 * before the socket is dropped. Later sends return -1. The first close wins. */
void vx_ws_close(vx_ws *ws, int code, const char *reason);
/* Back-pressure: stop reading the socket (TCP pushes back on the client)
 * until vx_ws_resume_reading. Pongs and closes are not read meanwhile, so
 * ping/idle timers are suspended too. */
void vx_ws_pause_reading(vx_ws *ws);
void vx_ws_resume_reading(vx_ws *ws);
/* True until a close has been started or the connection dropped. */
bool vx_ws_open(const vx_ws *ws);
/* The request id of the upgrade ("req_..."), for logs. */
const char *vx_ws_id(const vx_ws *ws);
void *vx_ws_user(const vx_ws *ws);
void vx_ws_release(vx_ws *ws);

/* ---- metrics (Prometheus text) ---- */
/* Appends the server's HTTP metrics (requests by route/method/status,
 * latency histogram, in-flight) to buf in Prometheus text format. */
typedef struct vx_strbuf vx_strbuf;
void vx_http_metrics_render(vx_request *req, vx_strbuf *buf);

#endif
