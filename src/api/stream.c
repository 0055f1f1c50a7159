/* stream.c - GET /v1/stream: real-time audio over a WebSocket
 * (docs/streaming.md). The WebSocket callbacks (stream thread) only queue
 * each message on its connection; a small pool of stream worker threads runs
 * the sessions (core/stream.h): one thread at a time per connection, in
 * order. A connection whose queue grows long stops being read (TCP pushes
 * back on the client) until the workers catch up. Handler: HTTP threads;
 * pool: its own threads; start/stop: main. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../core/stream.h"
#include "../util/clock.h"
#include "../util/ids.h"
#include "../util/log.h"
#include "common.h"
#include "api.h"
#include "handlers.h"

/* Reading pauses above HIGH queued bytes and resumes below LOW. */
#define QUEUE_HIGH (256 * 1024)
#define QUEUE_LOW (64 * 1024)
/* Messages a worker handles for one connection before letting others run. */
#define BATCH 8
#define TICK_MS 1000

typedef enum task_kind { TASK_TEXT, TASK_AUDIO, TASK_TICK, TASK_POLL, TASK_GONE } task_kind;

typedef struct task {
    struct task *next;
    task_kind kind;
    int code;                 /* TASK_GONE: the close code */
    size_t len;
    char data[];
} task;

typedef struct conn {
    vx_streams *pool;
    vx_ws *ws;
    vx_stream_session *session;
    /* under pool->mu */
    task *head, **tail;
    size_t queued_bytes;
    bool scheduled;           /* in the run queue or being worked on */
    bool paused;
    bool tick_queued;
    bool poll_queued;
    struct conn *run_next;
    struct conn *prev, *next; /* every live connection */
    /* worker-only */
    bool finished;            /* the session ended and the close was sent */
    bool ending;              /* the session's end waits for background decodes */
    bool gone;                /* the transport closed (on_close came) */
    bool end_error;           /* when the end completes: send end_err, not "eof" */
    vx_err end_err;
} conn;

struct vx_streams {
    vx_app *app;
    char owner[96];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t *threads;
    int n_threads;
    conn *run_head, *run_tail;
    conn *all;
    int live;
    int64_t last_tick;
    bool stopping;
};

/* Under mu: puts c on the run queue unless it is there or being worked on. */
static void schedule_locked(vx_streams *p, conn *c) {
    if (c->scheduled) return;
    c->scheduled = true;
    c->run_next = NULL;
    if (p->run_tail) p->run_tail->run_next = c;
    else p->run_head = c;
    p->run_tail = c;
    pthread_cond_signal(&p->cv);
}

static void enqueue(conn *c, vx_ws *ws, task_kind kind, const void *data, size_t len, int code) {
    vx_streams *p = c->pool;
    task *t = malloc(sizeof *t + len);
    if (!t) {
        vx_ws_close(ws, VX_WS_INTERNAL, "out of memory");
        if (kind != TASK_GONE) return;
        t = malloc(sizeof *t); /* the end must be queued: retry without payload */
        if (!t) {
            vx_error("stream %s: cannot queue its end; its hold waits for the reaper", vx_ws_id(ws));
            return;
        }
        len = 0;
    }
    t->next = NULL;
    t->kind = kind;
    t->code = code;
    t->len = len;
    if (len) memcpy(t->data, data, len);
    pthread_mutex_lock(&p->mu);
    if (!c->ws) c->ws = ws;
    *c->tail = t;
    c->tail = &t->next;
    c->queued_bytes += len;
    if (c->queued_bytes > QUEUE_HIGH && !c->paused && kind != TASK_GONE) {
        c->paused = true;
        vx_ws_pause_reading(ws);
    }
    schedule_locked(p, c);
    pthread_mutex_unlock(&p->mu);
}

static void ws_text(vx_ws *ws, const char *data, size_t len, void *user) {
    enqueue(user, ws, TASK_TEXT, data, len, 0);
}

static void ws_binary(vx_ws *ws, const void *data, size_t len, void *user) {
    enqueue(user, ws, TASK_AUDIO, data, len, 0);
}

static void ws_closed(vx_ws *ws, int code, const char *reason, void *user) {
    enqueue(user, ws, TASK_GONE, NULL, 0, code);
}

/* ---- the session's sink (worker thread) ---- */

static void sink_text(void *user, json_t *msg) {
    conn *c = user;
    vx_ws_send_json(c->ws, msg);
}

static void sink_binary(void *user, const void *data, size_t len) {
    conn *c = user;
    vx_ws_send_binary(c->ws, data, len);
}

/* Background work of the session finished (any thread): queue a poll. The
 * session cancels its background work before it is freed, and the
 * connection outlives the session, so c is alive here. */
static void sink_wake(void *user) {
    conn *c = user;
    vx_streams *p = c->pool;
    pthread_mutex_lock(&p->mu);
    task *t = c->poll_queued ? NULL : malloc(sizeof *t);
    if (t) {
        *t = (task){.kind = TASK_POLL};
        *c->tail = t;
        c->tail = &t->next;
        c->poll_queued = true;
        schedule_locked(p, c);
    } else if (!c->poll_queued) {
        vx_error("stream %s: cannot queue its results (out of memory); they follow with the next frame or tick",
                 c->ws ? vx_ws_id(c->ws) : "?");
    }
    pthread_mutex_unlock(&p->mu);
}

/* ---- worker side ---- */

/* The session has ended: the error frame (if it ended on one) and the
 * close go out after everything it sent. */
static void closing(conn *c) {
    c->ending = false;
    c->finished = true;
    if (!c->end_error) {
        vx_ws_close(c->ws, VX_WS_NORMAL, "eof");
        return;
    }
    const vx_err *err = &c->end_err;
    json_t *m = json_pack("{s:{s:s, s:s}}", "error", "code", err->code, "message", err->message);
    if (m) vx_ws_send_json(c->ws, m);
    vx_ws_close(c->ws, vx_stream_close_code(err->code), err->code);
}

/* Ends the stream with an error frame and its close code. Credits running
 * out still deliver what was paid for (final results) first. */
static void fail(conn *c, const vx_err *err) {
    bool paid_up = strcmp(err->code, "insufficient_credits") == 0;
    char reason[96];
    snprintf(reason, sizeof reason, "%s", err->code);
    c->end_error = true;
    c->end_err = *err;
    vx_err e2 = {0};
    if (vx_stream_session_end(c->session, paid_up && vx_stream_session_started(c->session), reason, &e2) == 1)
        c->ending = true; /* closing() follows the poll that completes it */
    else
        closing(c);
}

static void handle_text(conn *c, const task *t) {
    vx_err err = {0};
    vx_stream_msg_kind kind;
    vx_stream_config cfg = {0};
    if (vx_stream_message_parse(t->data, t->len, &kind, &cfg, &err) != 0) {
        fail(c, &err);
        return;
    }
    if (kind == VX_STREAM_MSG_CONFIG) {
        if (vx_stream_session_configure(c->session, &cfg, &err) != 0) fail(c, &err);
    } else if (kind == VX_STREAM_MSG_EOF) {
        int rc = vx_stream_session_end(c->session, true, "eof", &err);
        if (rc < 0) fail(c, &err);
        else if (rc == 1) c->ending = true; /* the final follows from a poll */
        else closing(c);
    } else if (vx_stream_session_tick(c->session, &err) != 0) {
        fail(c, &err);
    }
}

static void handle(conn *c, const task *t) {
    vx_err err = {0};
    if (t->kind == TASK_GONE) {
        c->gone = true;
        if (!c->finished) {
            /* The client left without eof (or the server is stopping):
             * settle what was streamed, nobody to tell. An end under way
             * goes on muted; the connection lives until it completes. */
            char reason[48];
            snprintf(reason, sizeof reason, t->code == VX_WS_GOING_AWAY ? "closed_idle_or_shutdown" : "client_closed");
            c->ending = vx_stream_session_end(c->session, false, reason, &err) == 1;
        }
        return;
    }
    /* while an end waits for decodes, ticks renew the lease and poll too
     * (a wake that could not be queued is retried within a second) */
    if (t->kind == TASK_POLL || (t->kind == TASK_TICK && c->ending)) {
        if (c->finished) return;
        if (t->kind == TASK_TICK && vx_stream_session_tick(c->session, &err) != 0) {
            fail(c, &err);
            return;
        }
        int rc = vx_stream_session_poll(c->session, &err);
        if (rc < 0) fail(c, &err);
        else if (rc == 1) closing(c);
        return;
    }
    if (c->finished || c->ending) return; /* nothing the client sends matters any more */
    if (t->kind == TASK_TEXT) handle_text(c, t);
    else if (t->kind == TASK_AUDIO && vx_stream_session_audio(c->session, t->data, t->len, &err) != 0) fail(c, &err);
    else if (t->kind == TASK_TICK && vx_stream_session_tick(c->session, &err) != 0) fail(c, &err);
}

static void conn_free(vx_streams *p, conn *c) {
    pthread_mutex_lock(&p->mu);
    if (c->prev) c->prev->next = c->next;
    else p->all = c->next;
    if (c->next) c->next->prev = c->prev;
    p->live--;
    pthread_mutex_unlock(&p->mu);
    vx_stream_session_free(c->session);
    if (c->ws) vx_ws_release(c->ws);
    free(c);
}

/* Under mu: queues a tick for every idle connection (lease and record). */
static void tick_locked(vx_streams *p) {
    int64_t now = vx_now_ms();
    if (now - p->last_tick < TICK_MS) return;
    p->last_tick = now;
    for (conn *c = p->all; c; c = c->next) {
        if (c->scheduled || c->tick_queued || !c->ws) continue;
        task *t = malloc(sizeof *t);
        if (!t) return;
        *t = (task){.kind = TASK_TICK};
        *c->tail = t;
        c->tail = &t->next;
        c->tick_queued = true;
        schedule_locked(p, c);
    }
}

static void *worker_main(void *arg) {
    vx_streams *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->run_head && !(p->stopping && p->live == 0)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&p->cv, &p->mu, &ts);
            tick_locked(p);
        }
        if (!p->run_head) break; /* stopping, and every connection is gone */
        conn *c = p->run_head;
        p->run_head = c->run_next;
        if (!p->run_head) p->run_tail = NULL;
        bool gone = false; /* the transport closed and the session is over */
        for (int i = 0; i < BATCH && c->head && !gone; i++) {
            task *t = c->head;
            c->head = t->next;
            if (!c->head) c->tail = &c->head;
            c->queued_bytes -= t->len;
            if (t->kind == TASK_TICK) c->tick_queued = false;
            if (t->kind == TASK_POLL) c->poll_queued = false;
            if (c->paused && c->queued_bytes < QUEUE_LOW) {
                c->paused = false;
                vx_ws_resume_reading(c->ws);
            }
            pthread_mutex_unlock(&p->mu);
            handle(c, t);
            gone = c->gone && !c->ending;
            free(t);
            pthread_mutex_lock(&p->mu);
        }
        if (gone) {
            /* on_close is the transport's last call: nothing more can come,
             * and a late wake must not queue a poll (the session goes now) */
            c->poll_queued = true;
            while (c->head) {
                task *t = c->head;
                c->head = t->next;
                free(t);
            }
            pthread_mutex_unlock(&p->mu);
            conn_free(p, c);
            pthread_mutex_lock(&p->mu);
            pthread_cond_broadcast(&p->cv);
            continue;
        }
        c->scheduled = false;
        if (c->head) schedule_locked(p, c);
        tick_locked(p);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

vx_streams *vx_api_streams_start(vx_app *app, vx_err *err) {
    vx_streams *p = calloc(1, sizeof *p);
    int n = app->cfg->stream_threads > 0 ? app->cfg->stream_threads : 1;
    if (!p || !(p->threads = calloc((size_t)n, sizeof *p->threads))) {
        free(p);
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        return NULL;
    }
    p->app = app;
    char boot[VX_ID_SIZE];
    vx_id_new(boot, "s");
    snprintf(p->owner, sizeof p->owner, "%.60s/%.24s/stream", app->cfg->node_id, boot);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (int i = 0; i < n; i++) {
        if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
            vx_err_set(err, VX_E_INTERNAL, "thread_failed", "cannot start stream threads");
            vx_api_streams_stop(p);
            return NULL;
        }
        p->n_threads++;
    }
    return p;
}

void vx_api_streams_stop(vx_streams *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}

void vx_api_stream(vx_request *req) {
    vx_app *app = vx_req_app(req);
    vx_streams *p = app->streams;
    vx_principal who;
    if (vx_api_auth_query(req, &who) != 0) return;
    if (!vx_req_is_websocket(req)) {
        vx_respond_errorf(req, VX_E_INVALID, "websocket_required", "GET /v1/stream is a WebSocket: send Upgrade: websocket");
        return;
    }
    if (!p) {
        vx_respond_errorf(req, VX_E_UNAVAILABLE, "not_ready", "live streams are not available on this node");
        return;
    }
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        vx_respond_errorf(req, VX_E_INTERNAL, "internal", "out of memory");
        return;
    }
    c->pool = p;
    c->tail = &c->head;
    vx_stream_sink sink = {.text = sink_text, .binary = sink_binary, .wake = sink_wake, .user = c};
    if (!(c->session = vx_stream_session_new(app, &who, p->owner, &sink))) {
        free(c);
        vx_respond_errorf(req, VX_E_INTERNAL, "internal", "out of memory");
        return;
    }
    pthread_mutex_lock(&p->mu);
    bool full = p->stopping || p->live >= app->cfg->max_streams;
    if (!full) {
        p->live++;
        c->next = p->all;
        if (p->all) p->all->prev = c;
        p->all = c;
    }
    pthread_mutex_unlock(&p->mu);
    if (full) {
        vx_stream_session_free(c->session);
        free(c);
        vx_respond_errorf(req, VX_E_UNAVAILABLE, "too_many_streams", "this node serves its maximum of live streams");
        return;
    }
    vx_ws_handlers h = {.on_text = ws_text, .on_binary = ws_binary, .on_close = ws_closed};
    vx_ws_options o = {.idle_timeout_ms = app->cfg->stream_idle_timeout_s * 1000};
    /* The handle is the one every callback gets: enqueue() keeps it, and
     * the worker releases it after on_close. */
    if (!vx_respond_websocket(req, &h, &o, c)) conn_free(p, c); /* answered; no callback will come */
}
