/* respond.c - the vx_respond_* family: builds the MHD response (JSON, error
 * envelope, bytes, file via sendfile, callback stream) and parks it on the
 * request; server.c queues it at a point where MHD accepts a response.
 * Called on the MHD pool thread that owns the request. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include "../util/credits.h"
#include "../util/log.h"
#include "../util/utf8.h"
#include "http_int.h"

/* Only the first answer counts; a second one is a handler bug, logged and dropped. */
static bool claim(vx_request *req) {
    if (req->status != 0 || req->deferred || req->sse || req->ws) {
        vx_error("http %s: handler answered twice; extra answer dropped", req->id);
        return false;
    }
    return true;
}

static void park(vx_request *req, int status, struct MHD_Response *resp, uint64_t bytes,
                 const char *content_type) {
    if (!resp) {
        vx_error("http %s: could not create a response", req->id);
        req->status = 500;
        return;
    }
    if (content_type) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    req->resp = resp;
    req->status = status;
    req->resp_bytes = bytes;
}

void vx_resp_header(vx_request *req, const char *name, const char *value) {
    vx_resp_extra *e = calloc(1, sizeof *e);
    if (!e) return;
    e->name = strdup(name);
    e->value = strdup(value);
    if (!e->name || !e->value) {
        free(e->name);
        free(e->value);
        free(e);
        return;
    }
    if (req->extra_tail) req->extra_tail->next = e;
    else req->extra = e;
    req->extra_tail = e;
}

/* Messages may echo client bytes or be cut mid-character: repair them so an
 * error never turns into a 500 because it is not valid UTF-8. */
static json_t *error_body(const char *code, const char *message) {
    char safe_code[64], safe_message[512];
    return json_pack("{s:{s:s,s:s}}", "error", "code", vx_utf8_sanitize(code, safe_code, sizeof safe_code),
                     "message", vx_utf8_sanitize(message, safe_message, sizeof safe_message));
}

void vx_respond_json(vx_request *req, int status, json_t *body) {
    if (!claim(req)) {
        json_decref(body);
        return;
    }
    char *text = body ? json_dumps(body, VX_JSON_DUMP_FLAGS) : NULL;
    json_decref(body);
    if (!text) {
        vx_error("http %s: response body could not be rendered as JSON", req->id);
        static const char fallback[] = "{\"error\":{\"code\":\"internal\",\"message\":\"internal error\"}}";
        park(req, 500,
             MHD_create_response_from_buffer(sizeof fallback - 1, (void *)fallback, MHD_RESPMEM_PERSISTENT),
             sizeof fallback - 1, "application/json");
        req->is_json = true;
        return;
    }
    size_t len = strlen(text);
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(len, text, free);
    if (!resp) free(text);
    park(req, status, resp, len, "application/json");
    req->is_json = true;
}

/* The error envelope of req's route (vx_route.error_body) or voxd's. */
static json_t *route_error_body(const vx_request *req, const vx_err *err, int *http) {
    *http = vx_err_http_status(err->status == VX_OK ? VX_E_INTERNAL : err->status);
    if (req->route && req->route->error_body) return req->route->error_body(err, http);
    return error_body(err->code[0] ? err->code : "internal", err->message[0] ? err->message : "internal error");
}

void vx_respond_error(vx_request *req, const vx_err *err) {
    int http;
    json_t *body = route_error_body(req, err, &http);
    if (http >= 500)
        vx_error("http %s: %d %s: %s", req->id, http, err->code[0] ? err->code : "internal", err->message);
    vx_respond_json(req, http, body);
}

void vx_respond_errorf(vx_request *req, vx_status status, const char *code, const char *fmt, ...) {
    vx_err err = {.status = status};
    snprintf(err.code, sizeof err.code, "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err.message, sizeof err.message, fmt, ap);
    va_end(ap);
    vx_respond_error(req, &err);
}

void vx_respond_bytes(vx_request *req, int status, const char *content_type, const void *data, size_t len) {
    if (!claim(req)) return;
    park(req, status, MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY), len,
         content_type ? content_type : "application/octet-stream");
}

void vx_respond_fd(vx_request *req, int status, const char *content_type, int fd, int64_t offset,
                   int64_t length) {
    if (!claim(req)) {
        close(fd);
        return;
    }
    struct MHD_Response *resp = NULL;
    if (offset >= 0 && length >= 0)
        resp = MHD_create_response_from_fd_at_offset64((uint64_t)length, fd, (uint64_t)offset);
    if (!resp) {
        close(fd);
        vx_respond_errorf(req, VX_E_INTERNAL, "internal", "internal error");
        return;
    }
    park(req, status, resp, (uint64_t)length, content_type ? content_type : "application/octet-stream");
}

typedef struct stream_ctx {
    long (*reader)(void *user, uint64_t pos, char *buf, size_t max);
    void *user;
    void (*free_fn)(void *);
    uint64_t length;
} stream_ctx;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream_ctx *s = cls;
    long n = s->reader(s->user, pos, buf, max);
    /* 0 before the announced end would make MHD poll the reader in a busy loop. */
    if (n < 0 || (n == 0 && pos < s->length)) return MHD_CONTENT_READER_END_WITH_ERROR;
    if (n == 0) return MHD_CONTENT_READER_END_OF_STREAM;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream_ctx *s = cls;
    if (s->free_fn) s->free_fn(s->user);
    free(s);
}

void vx_respond_stream(vx_request *req, int status, const char *content_type, int64_t length,
                       long (*reader)(void *user, uint64_t pos, char *buf, size_t max), void *user,
                       void (*free_fn)(void *)) {
    stream_ctx *s = claim(req) && length >= 0 ? malloc(sizeof *s) : NULL;
    if (!s) {
        if (free_fn) free_fn(user);
        if (req->status == 0) vx_respond_errorf(req, VX_E_INTERNAL, "internal", "internal error");
        return;
    }
    *s = (stream_ctx){.reader = reader, .user = user, .free_fn = free_fn, .length = (uint64_t)length};
    struct MHD_Response *resp =
        MHD_create_response_from_callback((uint64_t)length, 64 * 1024, stream_read, s, stream_free);
    if (!resp) {
        stream_free(s);
        vx_respond_errorf(req, VX_E_INTERNAL, "internal", "internal error");
        return;
    }
    park(req, status, resp, (uint64_t)length, content_type ? content_type : "application/octet-stream");
}

static bool has_extra(const vx_request *req, const char *name) {
    for (const vx_resp_extra *e = req->extra; e; e = e->next)
        if (strcasecmp(e->name, name) == 0) return true;
    return false;
}

enum MHD_Result vx_http_queue(vx_request *req) {
    struct MHD_Response *resp = req->resp;
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "X-Request-Id", req->id);
    for (const vx_resp_extra *e = req->extra; e; e = e->next) MHD_add_response_header(resp, e->name, e->value);
    if (req->status == 401 && !has_extra(req, MHD_HTTP_HEADER_WWW_AUTHENTICATE))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if ((req->close_after || atomic_load(&req->srv->stopping)) && req->status != 101)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(req->conn, (unsigned)req->status, resp);
    MHD_destroy_response(resp);
    req->resp = NULL;
    if (ret != MHD_YES) vx_error("http %s: MHD refused the response", req->id);
    return ret;
}

size_t vx_http_render_raw_error(vx_request *req, const vx_err *err, char *buf, size_t size) {
    int http;
    json_t *body = route_error_body(req, err, &http);
    char *text = body ? json_dumps(body, VX_JSON_DUMP_FLAGS) : NULL;
    json_decref(body);
    if (!text) return 0;
    size_t blen = strlen(text);
    const char *reason = MHD_get_reason_phrase_for((unsigned)http);
    int n = snprintf(buf, size,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "X-Request-Id: %s\r\n%sConnection: close\r\n",
                     http, reason && reason[0] ? reason : "Error", blen, req->id,
                     http == 401 && !has_extra(req, MHD_HTTP_HEADER_WWW_AUTHENTICATE)
                         ? "WWW-Authenticate: Bearer\r\n" : "");
    size_t at = n > 0 ? (size_t)n : size;
    for (const vx_resp_extra *e = req->extra; e && at < size; e = e->next) {
        if (strpbrk(e->name, "\r\n") || strpbrk(e->value, "\r\n")) continue;
        n = snprintf(buf + at, size - at, "%s: %s\r\n", e->name, e->value);
        at = n > 0 ? at + (size_t)n : size;
    }
    if (at < size) {
        n = snprintf(buf + at, size - at, "\r\n%s", text);
        at = n > 0 ? at + (size_t)n : size;
    }
    free(text);
    if (at >= size) return 0;
    req->status = http;
    req->resp_bytes = blen;
    req->is_json = true;
    return at;
}

void vx_http_response_release(vx_request *req) {
    if (req->resp) MHD_destroy_response(req->resp);
    req->resp = NULL;
    for (vx_resp_extra *e = req->extra, *next; e; e = next) {
        next = e->next;
        free(e->name);
        free(e->value);
        free(e);
    }
    req->extra = req->extra_tail = NULL;
}
