/* sse.c - Server-Sent Events: a chunked 200 text/event-stream response
 * whose MHD content reader drains a bounded per-channel queue and, when the
 * queue is empty, suspends the connection (MHD calls nothing meanwhile: an
 * idle stream costs no CPU) until a producer queues an event, a heartbeat
 * falls due, the client hangs up or the server stops; the stream thread
 * resumes it. Handle calls: any thread; reader/on_request_done: the
 * request's MHD thread; item ops and on_close: the stream thread. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include "../util/log.h"
#include "http_int.h"

#define SSE_DEFAULT_QUEUE (256 * 1024)
#define SSE_DEFAULT_HEARTBEAT_MS 15000
/* The response's own buffer: MHD copies each chunk through it. Small,
 * because every open stream keeps one. */
#define SSE_BLOCK 2048

static const char default_overflow_data[] =
    "{\"error\":{\"code\":\"slow_consumer\",\"message\":\"the client fell behind the event stream; "
    "reconnect with Last-Event-ID to resume\"}}";

typedef struct sse_chunk {
    struct sse_chunk *next;
    size_t len;
    char data[];
} sse_chunk;

enum { SSE_OPEN, SSE_CLOSING, SSE_ENDED };

struct vx_sse {
    vx_stream_item item;           /* first: the stream thread's view */
    pthread_mutex_t mu;            /* everything below */
    vx_http_server *srv;
    struct MHD_Connection *conn;   /* NULL once the request is over */
    int fd;
    char id[VX_ID_SIZE];
    vx_sse_options opt;
    sse_chunk *head, *tail;
    size_t head_off;               /* bytes of head already handed to MHD */
    size_t queued;                 /* bytes not yet handed to MHD */
    int state;                     /* SSE_OPEN: sends accepted; CLOSING: flush, then end */
    vx_stream_end why;
    bool why_set;
    bool suspended, gone, done, notified;
    uint64_t last_write_ns;
};

static vx_sse *of(vx_stream_item *it) { return (vx_sse *)(void *)it; }

static void drop_queue(vx_sse *s, bool keep_partial) {
    sse_chunk *c = s->head;
    if (keep_partial && c && s->head_off > 0) {
        /* part of this event is on the wire: the rest must follow */
        s->queued = c->len - s->head_off;
        c = c->next;
        s->head->next = NULL;
        s->tail = s->head;
    } else {
        s->head = s->tail = NULL;
        s->head_off = 0;
        s->queued = 0;
    }
    while (c) {
        sse_chunk *next = c->next;
        free(c);
        c = next;
    }
}

static void s_destroy(vx_stream_item *it) {
    vx_sse *s = of(it);
    drop_queue(s, false);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static void append(vx_sse *s, sse_chunk *c) {
    c->next = NULL;
    if (s->tail) s->tail->next = c;
    else s->head = c;
    s->tail = c;
    s->queued += c->len;
}

static bool has_newline(const char *t) { return t && strpbrk(t, "\r\n"); }

/* One event in wire form; NULL on OOM. data lines split at CR, LF or CRLF. */
static sse_chunk *encode(const char *id, const char *event, const char *data) {
    if (!data) data = "";
    size_t lines = 1;
    for (const char *p = data; *p; p++)
        if (*p == '\n' || (*p == '\r' && p[1] != '\n')) lines++;
    size_t cap = strlen(data) + lines * 7 + 2 + (id ? strlen(id) + 5 : 0) + (event ? strlen(event) + 8 : 0) + 1;
    sse_chunk *c = malloc(sizeof *c + cap);
    if (!c) return NULL;
    char *o = c->data;
    if (id) o += sprintf(o, "id: %s\n", id);
    if (event) o += sprintf(o, "event: %s\n", event);
    const char *p = data;
    for (;;) {
        size_t n = strcspn(p, "\r\n");
        memcpy(o, "data: ", 6);
        o += 6;
        memcpy(o, p, n);
        o += n;
        *o++ = '\n';
        p += n;
        if (!*p) break;
        p += (p[0] == '\r' && p[1] == '\n') ? 2 : 1;
    }
    *o++ = '\n';
    c->len = (size_t)(o - c->data);
    return c;
}

static sse_chunk *raw_chunk(const char *text) {
    size_t len = strlen(text);
    sse_chunk *c = malloc(sizeof *c + len);
    if (!c) return NULL;
    memcpy(c->data, text, len);
    c->len = len;
    return c;
}

/* Stream thread, s->mu held on entry, released on return. */
static void resume_unlock(vx_sse *s) {
    struct MHD_Connection *conn = s->conn;
    s->suspended = false;
    vx_stream_watch(&s->item, -1, 0);
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_sub(&s->srv->suspended, 1);
    MHD_resume_connection(conn);
}

static uint64_t heartbeat_ns(const vx_sse *s) { return (uint64_t)s->opt.heartbeat_ms * 1000000u; }

/* Stream thread: act on the current state. */
static void s_step(vx_sse *s) {
    pthread_mutex_lock(&s->mu);
    if (s->done) {
        bool notify = !s->notified;
        s->notified = true;
        vx_stream_end why = s->why;
        pthread_mutex_unlock(&s->mu);
        if (notify && s->opt.on_close) s->opt.on_close(s, why, s->opt.user);
        vx_stream_retire(&s->item);
        return;
    }
    if (!s->item.registered) {
        vx_stream_register(&s->item);
        vx_stream_set_deadline(&s->item, vx_stream_now_ns() + heartbeat_ns(s));
    }
    if (vx_stream_phase(s->item.stream) >= 2) s->gone = true;
    if (s->suspended && (s->queued > 0 || s->state != SSE_OPEN || s->gone)) {
        resume_unlock(s);
        return;
    }
    if (s->suspended && !s->item.in_epoll && vx_stream_watch(&s->item, s->fd, EPOLLRDHUP) != 0)
        vx_warn("http %s: cannot watch the idle event stream", s->id);
    pthread_mutex_unlock(&s->mu);
}

static void s_wake(vx_stream_item *it) { s_step(of(it)); }

static void s_io(vx_stream_item *it, uint32_t events) {
    vx_sse *s = of(it);
    pthread_mutex_lock(&s->mu);
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) s->gone = true;
    pthread_mutex_unlock(&s->mu);
    s_step(s);
}

static void s_timer(vx_stream_item *it, uint64_t now) {
    vx_sse *s = of(it);
    pthread_mutex_lock(&s->mu);
    if (s->done) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    uint64_t next = s->last_write_ns + heartbeat_ns(s);
    if (s->state == SSE_OPEN && s->queued == 0 && now >= next) {
        sse_chunk *c = raw_chunk(": keep-alive\n\n");
        if (c) append(s, c);
        next = now + heartbeat_ns(s);
    } else if (next <= now) {
        next = now + heartbeat_ns(s);
    }
    vx_stream_set_deadline(&s->item, next);
    pthread_mutex_unlock(&s->mu);
    s_step(s);
}

static void s_stop(vx_stream_item *it, int phase) {
    vx_sse *s = of(it);
    pthread_mutex_lock(&s->mu);
    if (s->state == SSE_OPEN) {
        s->state = SSE_CLOSING;
        s->why = VX_STREAM_SERVER_STOP;
        s->why_set = true;
    }
    if (phase >= 2) s->gone = true;
    pthread_mutex_unlock(&s->mu);
    s_step(s);
}

static const vx_stream_item_ops sse_ops = {
    .wake = s_wake,
    .io = s_io,
    .timer = s_timer,
    .stop = s_stop,
    .destroy = s_destroy,
};

/* MHD content reader (the request's MHD thread). */
static ssize_t s_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    vx_sse *s = cls;
    pthread_mutex_lock(&s->mu);
    ssize_t ret;
    if (s->gone || !s->conn) {
        ret = MHD_CONTENT_READER_END_WITH_ERROR;
    } else if (s->queued > 0) {
        size_t n = 0;
        while (n < max && s->head) {
            sse_chunk *c = s->head;
            size_t take = c->len - s->head_off;
            if (take > max - n) take = max - n;
            memcpy(buf + n, c->data + s->head_off, take);
            n += take;
            s->head_off += take;
            s->queued -= take;
            if (s->head_off == c->len) {
                s->head = c->next;
                if (!s->head) s->tail = NULL;
                s->head_off = 0;
                free(c);
            }
        }
        s->last_write_ns = vx_stream_now_ns();
        ret = (ssize_t)n;
    } else if (s->state != SSE_OPEN || vx_stream_phase(s->item.stream) >= 1) {
        ret = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        /* Nothing to send: park the connection instead of returning 0
         * alone, which would make MHD call again at once (busy loop). */
        s->suspended = true;
        atomic_fetch_add(&s->srv->suspended, 1);
        MHD_suspend_connection(s->conn);
        vx_stream_wake(&s->item);
        ret = 0;
    }
    pthread_mutex_unlock(&s->mu);
    return ret;
}

static void s_response_free(void *cls) { vx_stream_item_unref(&((vx_sse *)cls)->item); }

bool vx_req_wants_sse(vx_request *req) {
    const char *accept = vx_req_header(req, "Accept");
    return accept && strcasestr(accept, "text/event-stream") != NULL;
}

vx_sse *vx_respond_sse(vx_request *req, const vx_sse_options *opts) {
    if (req->status != 0 || req->deferred || req->sse || req->ws) {
        vx_error("http %s: handler answered twice; event stream refused", req->id);
        return NULL;
    }
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    vx_sse *s = calloc(1, sizeof *s);
    sse_chunk *first = NULL;
    if (s) {
        s->opt = opts ? *opts : (vx_sse_options){0};
        if (!s->opt.max_queued_bytes) s->opt.max_queued_bytes = SSE_DEFAULT_QUEUE;
        if (s->opt.heartbeat_ms <= 0) s->opt.heartbeat_ms = SSE_DEFAULT_HEARTBEAT_MS;
        if (!s->opt.overflow_event) s->opt.overflow_event = "error";
        if (!s->opt.overflow_data) s->opt.overflow_data = default_overflow_data;
        char text[64];
        if (s->opt.retry_ms > 0) snprintf(text, sizeof text, "retry: %d\n\n", s->opt.retry_ms);
        else snprintf(text, sizeof text, ": ok\n\n");
        /* Something to send at once, so that the headers leave now. */
        first = raw_chunk(text);
    }
    struct MHD_Response *resp =
        s && first && ci ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SSE_BLOCK, s_read, s, s_response_free)
                         : NULL;
    if (!resp) {
        free(first);
        free(s);
        vx_respond_errorf(req, VX_E_INTERNAL, "internal", "internal error");
        return NULL;
    }
    vx_stream_item_init(&s->item, req->srv->stream, &sse_ops);
    atomic_store(&s->item.refs, 3);  /* the caller, the request, the response */
    pthread_mutex_init(&s->mu, NULL);
    s->srv = req->srv;
    s->conn = req->conn;
    s->fd = ci->connect_fd;
    memcpy(s->id, req->id, sizeof s->id);
    s->last_write_ns = vx_stream_now_ns();
    append(s, first);
    req->sse = s;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream; charset=utf-8");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    req->resp = resp;
    req->status = 200;
    vx_stream_wake(&s->item);  /* registers it: heartbeats, server stop */
    return s;
}

void vx_sse_on_request_done(vx_sse *s) {
    pthread_mutex_lock(&s->mu);
    s->done = true;
    s->conn = NULL;
    if (!s->why_set) s->why = (s->state == SSE_CLOSING && s->queued == 0 && !s->gone) ? VX_STREAM_CLOSED
                                                                                      : VX_STREAM_CLIENT_GONE;
    s->state = SSE_ENDED;
    drop_queue(s, false);
    vx_stream_wake(&s->item);
    pthread_mutex_unlock(&s->mu);
}

/* s->mu held: wake the stream thread if the connection waits for data. */
static void kick(vx_sse *s) {
    if (s->suspended) vx_stream_wake(&s->item);
}

static int enqueue(vx_sse *s, sse_chunk *c) {
    pthread_mutex_lock(&s->mu);
    if (s->state != SSE_OPEN || !c) {
        pthread_mutex_unlock(&s->mu);
        free(c);
        return -1;
    }
    if (s->queued + c->len > s->opt.max_queued_bytes) {
        free(c);
        drop_queue(s, true);
        sse_chunk *last = encode(NULL, s->opt.overflow_event, s->opt.overflow_data);
        if (last) append(s, last);
        s->state = SSE_CLOSING;
        s->why = VX_STREAM_SLOW_CONSUMER;
        s->why_set = true;
        vx_warn("http %s: event stream consumer too slow; stream closed", s->id);
        kick(s);
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    append(s, c);
    kick(s);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int vx_sse_send(vx_sse *s, const char *id, const char *event, const char *data) {
    if (has_newline(id) || has_newline(event)) return -1;
    return enqueue(s, encode(id, event, data));
}

int vx_sse_comment(vx_sse *s, const char *text) {
    if (has_newline(text)) return -1;
    size_t len = strlen(text ? text : "");
    sse_chunk *c = malloc(sizeof *c + len + 5);
    if (c) c->len = (size_t)sprintf(c->data, ": %s\n\n", text ? text : "");
    return enqueue(s, c);
}

void vx_sse_close(vx_sse *s) {
    pthread_mutex_lock(&s->mu);
    if (s->state == SSE_OPEN) {
        s->state = SSE_CLOSING;
        kick(s);
    }
    pthread_mutex_unlock(&s->mu);
}

bool vx_sse_open(const vx_sse *s) {
    vx_sse *m = (vx_sse *)s;
    pthread_mutex_lock(&m->mu);
    bool open = m->state == SSE_OPEN;
    pthread_mutex_unlock(&m->mu);
    return open;
}

void vx_sse_release(vx_sse *s) {
    if (s) vx_stream_item_unref(&s->item);
}
