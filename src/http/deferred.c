/* deferred.c - answers given later by another thread: the request's
 * connection is suspended in MHD (no CPU, no timeout) until the answer
 * arrives, the client hangs up (the stream thread watches the socket for
 * EPOLLRDHUP) or the server stops (503). With vx_deferred_on_ready the wait
 * is bounded by a stream-thread timer, and a wake or the timeout resumes the
 * connection so that the answer is made on an MHD thread (which may block),
 * not on the stream thread. Handle calls: any thread;
 * vx_deferred_on_access / _on_request_done: the request's MHD thread;
 * the item ops: the stream thread. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include "../util/credits.h"
#include "../util/log.h"
#include "http_int.h"

struct vx_deferred {
    vx_stream_item item;           /* first: the stream thread's view */
    pthread_mutex_t mu;            /* everything below */
    vx_http_server *srv;
    struct MHD_Connection *conn;   /* NULL once the request is over */
    int fd;                        /* the connection's socket (watched while suspended) */
    char id[VX_ID_SIZE];
    json_t *(*error_body)(const vx_err *err, int *http_status);  /* the route's, or NULL */
    struct MHD_Response *resp;     /* the answer until the MHD thread takes it */
    int status;
    uint64_t bytes;
    bool is_json;
    vx_resp_extra *extra, *extra_tail;
    bool answered;                 /* an answer was given (maybe already taken) */
    bool suspended;                /* the connection is suspended by us */
    bool done;                     /* the request is over */
    atomic_bool gone;              /* the client left (or the server stopped) before an answer */
    /* vx_deferred_on_ready */
    void (*ready)(vx_deferred *d, vx_deferred_why why, void *user);
    void *ready_user;
    int timeout_ms;
    bool deadline_set;             /* the timer is armed (stream thread) */
    bool woken, timed_out, ready_ran;
};

static vx_deferred *of(vx_stream_item *it) { return (vx_deferred *)(void *)it; }

static void free_extra(vx_resp_extra *e) {
    while (e) {
        vx_resp_extra *next = e->next;
        free(e->name);
        free(e->value);
        free(e);
        e = next;
    }
}

static void d_destroy(vx_stream_item *it) {
    vx_deferred *d = of(it);
    if (d->resp) MHD_destroy_response(d->resp);
    free_extra(d->extra);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

/* JSON text response; NULL on failure. Steals body. */
static struct MHD_Response *json_response(json_t *body, uint64_t *bytes) {
    char *text = body ? json_dumps(body, VX_JSON_DUMP_FLAGS) : NULL;
    json_decref(body);
    if (!text) return NULL;
    size_t len = strlen(text);
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(len, text, free);
    if (!resp) {
        free(text);
        return NULL;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    *bytes = len;
    return resp;
}

/* In the route's own envelope when it has one (vx_route.error_body). */
static struct MHD_Response *error_response(const vx_deferred *d, vx_status st, const char *code,
                                           const char *message, int *status, uint64_t *bytes) {
    *status = vx_err_http_status(st);
    if (d->error_body) {
        vx_err err = {.status = st};
        snprintf(err.code, sizeof err.code, "%s", code);
        snprintf(err.message, sizeof err.message, "%s", message);
        return json_response(d->error_body(&err, status), bytes);
    }
    return json_response(json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message), bytes);
}

/* Takes the connection out of suspension (stream thread, d->mu held on
 * entry, released on return): stop watching the socket first, since MHD
 * may close it as soon as it runs the connection again. */
static void resume_unlock(vx_deferred *d) {
    struct MHD_Connection *conn = d->conn;
    d->suspended = false;
    vx_stream_watch(&d->item, -1, 0);
    vx_stream_set_deadline(&d->item, 0);
    pthread_mutex_unlock(&d->mu);
    atomic_fetch_sub(&d->srv->suspended, 1);
    MHD_resume_connection(conn);
}

/* Stream thread, d->mu held: the server is stopping; answer 503 unless answered. */
static void answer_stopping(vx_deferred *d) {
    if (d->answered) return;
    d->resp = error_response(d, VX_E_UNAVAILABLE, "shutting_down", "the server is shutting down", &d->status,
                             &d->bytes);
    d->is_json = true;
    d->answered = true;
    atomic_store(&d->gone, true);
}

/* Stream thread: act on the current state. */
static void d_step(vx_deferred *d) {
    pthread_mutex_lock(&d->mu);
    if (d->done) {
        pthread_mutex_unlock(&d->mu);
        vx_stream_retire(&d->item);
        return;
    }
    if (!d->suspended) {
        pthread_mutex_unlock(&d->mu);
        return;
    }
    vx_stream_register(&d->item);
    if (vx_stream_phase(d->item.stream) >= 1) answer_stopping(d);
    if (d->answered || atomic_load(&d->gone) || d->woken || d->timed_out) {
        resume_unlock(d);
        return;
    }
    if (d->ready && d->timeout_ms > 0 && !d->deadline_set) {
        d->deadline_set = true;
        vx_stream_set_deadline(&d->item, vx_stream_now_ns() + (uint64_t)d->timeout_ms * 1000000u);
    }
    if (!d->item.in_epoll && vx_stream_watch(&d->item, d->fd, EPOLLRDHUP) != 0)
        vx_warn("http %s: cannot watch the suspended connection", d->id);
    pthread_mutex_unlock(&d->mu);
}

static void d_wake(vx_stream_item *it) { d_step(of(it)); }

static void d_io(vx_stream_item *it, uint32_t events) {
    vx_deferred *d = of(it);
    pthread_mutex_lock(&d->mu);
    if (d->suspended && (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
        atomic_store(&d->gone, true);
        resume_unlock(d);
        return;
    }
    pthread_mutex_unlock(&d->mu);
}

static void d_timer(vx_stream_item *it, uint64_t now) {
    (void)now;
    vx_deferred *d = of(it);
    pthread_mutex_lock(&d->mu);
    if (d->suspended && !d->answered && !d->woken && !atomic_load(&d->gone)) {
        d->timed_out = true;
        resume_unlock(d);
        return;
    }
    pthread_mutex_unlock(&d->mu);
}

static void d_stop(vx_stream_item *it, int phase) {
    (void)phase;
    d_step(of(it));
}

static const vx_stream_item_ops deferred_ops = {
    .wake = d_wake,
    .io = d_io,
    .timer = d_timer,
    .stop = d_stop,
    .destroy = d_destroy,
};

vx_deferred *vx_respond_deferred(vx_request *req) {
    if (req->status != 0 || req->deferred || req->sse || req->ws) {
        vx_error("http %s: handler answered twice; deferred answer refused", req->id);
        return NULL;
    }
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    vx_deferred *d = calloc(1, sizeof *d);
    if (!d || !ci) {
        free(d);
        vx_respond_errorf(req, VX_E_INTERNAL, "internal", "internal error");
        return NULL;
    }
    vx_stream_item_init(&d->item, req->srv->stream, &deferred_ops);
    vx_stream_item_ref(&d->item);  /* one for the caller, one for the request */
    pthread_mutex_init(&d->mu, NULL);
    d->srv = req->srv;
    d->conn = req->conn;
    d->fd = ci->connect_fd;
    d->error_body = req->route ? req->route->error_body : NULL;
    memcpy(d->id, req->id, sizeof d->id);
    req->deferred = d;
    return d;
}

/* MHD thread, d->mu held (released meanwhile): runs the ready callback when
 * a wake or the timeout is pending; it must answer. */
static void run_ready_locked(vx_deferred *d) {
    if (!d->ready || d->ready_ran || d->answered || atomic_load(&d->gone) || (!d->woken && !d->timed_out))
        return;
    d->ready_ran = true;
    vx_deferred_why why = d->woken ? VX_DEFERRED_WOKEN : VX_DEFERRED_TIMEOUT;
    vx_stream_item_ref(&d->item); /* fn may release the caller's reference */
    pthread_mutex_unlock(&d->mu);
    d->ready(d, why, d->ready_user);
    pthread_mutex_lock(&d->mu);
    if (!d->answered) {
        vx_error("http %s: deferred ready callback did not answer", d->id);
        d->resp = error_response(d, VX_E_INTERNAL, "internal", "internal error", &d->status, &d->bytes);
        d->is_json = true;
        d->answered = true;
    }
    vx_stream_item_unref(&d->item); /* the request's reference keeps d alive */
}

enum MHD_Result vx_deferred_on_access(vx_request *req) {
    vx_deferred *d = req->deferred;
    pthread_mutex_lock(&d->mu);
    if (!d->answered && vx_stream_phase(d->item.stream) >= 1) {
        d->resp = error_response(d, VX_E_UNAVAILABLE, "shutting_down", "the server is shutting down", &d->status,
                                 &d->bytes);
        d->is_json = true;
        d->answered = true;
        atomic_store(&d->gone, true);
    }
    run_ready_locked(d);
    if (d->resp) {
        req->resp = d->resp;
        req->status = d->status;
        req->resp_bytes = d->bytes;
        req->is_json = d->is_json;
        d->resp = NULL;
        if (d->extra) {
            if (req->extra_tail) req->extra_tail->next = d->extra;
            else req->extra = d->extra;
            req->extra_tail = d->extra_tail;
            d->extra = d->extra_tail = NULL;
        }
        pthread_mutex_unlock(&d->mu);
        return vx_http_queue(req);
    }
    if (d->answered || atomic_load(&d->gone)) {
        /* answered with nothing to send (response creation failed) or the
         * client left: close the connection */
        pthread_mutex_unlock(&d->mu);
        return MHD_NO;
    }
    d->suspended = true;
    atomic_fetch_add(&d->srv->suspended, 1);
    MHD_suspend_connection(d->conn);
    vx_stream_wake(&d->item);
    pthread_mutex_unlock(&d->mu);
    return MHD_YES;
}

void vx_deferred_on_request_done(vx_deferred *d) {
    pthread_mutex_lock(&d->mu);
    d->done = true;
    d->conn = NULL;
    if (!d->answered) atomic_store(&d->gone, true);
    bool run = d->ready && !d->ready_ran;
    d->ready_ran = true;
    vx_stream_item_ref(&d->item);
    vx_stream_wake(&d->item);
    pthread_mutex_unlock(&d->mu);
    if (run) d->ready(d, VX_DEFERRED_ENDED, d->ready_user);
    vx_stream_item_unref(&d->item);
}

int vx_deferred_on_ready(vx_deferred *d, int timeout_ms,
                         void (*fn)(vx_deferred *d, vx_deferred_why why, void *user), void *user) {
    pthread_mutex_lock(&d->mu);
    int rc = d->ready ? -1 : 0;
    if (rc == 0) {
        d->ready = fn;
        d->ready_user = user;
        d->timeout_ms = timeout_ms;
        if (d->suspended) vx_stream_wake(&d->item); /* arms the timer */
    }
    pthread_mutex_unlock(&d->mu);
    return rc;
}

void vx_deferred_wake(vx_deferred *d) {
    pthread_mutex_lock(&d->mu);
    if (!d->ready_ran && !d->answered && !d->woken) {
        d->woken = true;
        if (d->suspended) vx_stream_wake(&d->item);
    }
    pthread_mutex_unlock(&d->mu);
}

/* Installs an answer: 0, or -1 (resp destroyed) if one can no longer be given. */
static int answer(vx_deferred *d, int status, struct MHD_Response *resp, uint64_t bytes, bool is_json) {
    if (!resp) {
        vx_error("http %s: could not create the deferred answer", d->id);
        return -1;
    }
    pthread_mutex_lock(&d->mu);
    if (d->answered || d->done || atomic_load(&d->gone)) {
        pthread_mutex_unlock(&d->mu);
        MHD_destroy_response(resp);
        return -1;
    }
    d->resp = resp;
    d->status = status;
    d->bytes = bytes;
    d->is_json = is_json;
    d->answered = true;
    if (d->suspended) vx_stream_wake(&d->item);
    pthread_mutex_unlock(&d->mu);
    return 0;
}

int vx_deferred_json(vx_deferred *d, int status, json_t *body) {
    uint64_t bytes = 0;
    return answer(d, status, json_response(body, &bytes), bytes, true);
}

int vx_deferred_error(vx_deferred *d, const vx_err *err) {
    vx_status st = err->status == VX_OK ? VX_E_INTERNAL : err->status;
    int status = 0;
    uint64_t bytes = 0;
    struct MHD_Response *resp = error_response(d, st, err->code[0] ? err->code : "internal",
                                               err->message[0] ? err->message : "internal error", &status, &bytes);
    if (status >= 500) vx_error("http %s: %d %s: %s", d->id, status, err->code, err->message);
    return answer(d, status, resp, bytes, true);
}

int vx_deferred_bytes(vx_deferred *d, int status, const char *content_type, const void *data, size_t len) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
    if (resp)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                content_type ? content_type : "application/octet-stream");
    return answer(d, status, resp, len, false);
}

void vx_deferred_header(vx_deferred *d, const char *name, const char *value) {
    vx_resp_extra *e = calloc(1, sizeof *e);
    if (!e) return;
    e->name = strdup(name);
    e->value = strdup(value);
    pthread_mutex_lock(&d->mu);
    if (!e->name || !e->value || d->answered) {
        pthread_mutex_unlock(&d->mu);
        free_extra(e);
        return;
    }
    if (d->extra_tail) d->extra_tail->next = e;
    else d->extra = e;
    d->extra_tail = e;
    pthread_mutex_unlock(&d->mu);
}

bool vx_deferred_gone(const vx_deferred *d) { return atomic_load(&d->gone); }

const char *vx_deferred_id(const vx_deferred *d) { return d->id; }

void vx_deferred_release(vx_deferred *d) {
    if (!d) return;
    pthread_mutex_lock(&d->mu);
    bool unanswered = !d->answered && !d->done && !atomic_load(&d->gone);
    pthread_mutex_unlock(&d->mu);
    if (unanswered) {
        vx_error("http %s: deferred handle released without an answer", d->id);
        vx_err err;
        vx_err_set(&err, VX_E_INTERNAL, "internal", "internal error");
        vx_deferred_error(d, &err);
    }
    vx_stream_item_unref(&d->item);
}
