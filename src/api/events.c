/* events.c - live event feeds over WebSocket or Server-Sent Events:
 * GET /v1/jobs/{id}/events (one job: its current state first, then live
 * events, closed after the terminal one) and GET /v1/events (all of the
 * caller's jobs). Both resume with Last-Event-ID or ?since=: stored events
 * after that id are replayed, then live ones follow without gaps or
 * duplicates. How: subscribe first, hold live events while replaying, then
 * forward only ids above the last one sent (the hub publishes in id order).
 * A cross-process bus (Redis) gives no such order, and may lose messages
 * while it is down: there a live event only says "the store has news up to
 * id N", and the filler thread sends the feed's stored events after the last
 * one sent (the store commits events in id order, so what it shows has no
 * holes). The transport's bounded queue drops a consumer that falls behind,
 * with a clear reason; it can resume. The bus callback runs on publisher
 * threads, the handlers on HTTP threads, on_close on the stream thread,
 * fills on the filler thread. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../core/events.h"
#include "../core/jobs.h"
#include "../util/clock.h"
#include "../util/log.h"
#include "common.h"
#include "handlers.h"

#define REPLAY_PAGE 200
#define HELD_MAX 1024             /* live events held while a replay runs */
#define SSE_QUEUE_BYTES (1 << 20)
#define SLOW_REASON "slow consumer: resume with ?since=<last event id>"

static const char OVERFLOW_DATA[] =
    "{\"error\":{\"code\":\"slow_consumer\",\"message\":\"the client fell behind and was dropped; "
    "reconnect with Last-Event-ID to resume\"}}";

typedef struct held_msg {
    struct held_msg *next;
    int64_t seq;
    bool terminal;
    char type[32];
    char json[];
} held_msg;

typedef struct feed {
    atomic_int refs;              /* handler + transport (until on_close) + a queued fill */
    pthread_mutex_t mu;           /* sending order, held list, last_sent */
    vx_bus *bus;
    vx_bus_sub *sub;
    vx_sse *sse;
    vx_ws *ws;
    bool job_feed;                /* ends after the job's terminal event */
    bool replaying;               /* live events are held, not sent */
    bool done;                    /* closed or closing: send nothing more */
    bool ws_opened;               /* on_open ran: a close may go out now */
    int ws_close_code;            /* a close asked for before on_open */
    const char *ws_close_reason;
    int64_t last_sent;
    held_msg *held, **held_tail;
    int n_held;
    /* cross-process bus only: */
    bool fill;                    /* live events go through the filler */
    vx_app *app;
    char user_id[VX_ID_SIZE];     /* the feed's filter (one of the two) */
    char job_id[VX_ID_SIZE];
    bool fill_queued;             /* on the filler's queue (holds a ref) */
    int64_t fill_upto;            /* highest live id announced */
    struct feed *fill_next;
    uint64_t epoch;               /* the bus's epoch last filled for */
    struct feed *reg_prev, *reg_next; /* every fill feed (registry_mu) */
} feed;

static void registry_add(feed *f);
static void registry_remove(feed *f);
static bool filler_ensure(void);

static void fill_request_locked(feed *f, int64_t upto);

static void feed_unref(feed *f) {
    if (atomic_fetch_sub(&f->refs, 1) != 1) return;
    vx_bus_unsubscribe(f->bus, f->sub); /* no callback runs after this */
    if (f->fill) registry_remove(f);
    while (f->held) {
        held_msg *m = f->held;
        f->held = m->next;
        free(m);
    }
    if (f->sse) vx_sse_release(f->sse);
    if (f->ws) vx_ws_release(f->ws);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

/* Under f->mu. Ends the feed: after the terminal event, or when dropped. */
static void finish_locked(feed *f, bool slow) {
    if (f->done) return;
    f->done = true;
    if (f->sse) {
        if (slow) vx_sse_send(f->sse, NULL, "error", OVERFLOW_DATA);
        vx_sse_close(f->sse);
    } else if (f->ws) {
        f->ws_close_code = slow ? VX_WS_POLICY : VX_WS_NORMAL;
        f->ws_close_reason = slow ? SLOW_REASON : "job finished";
        /* A close queued before the handshake went out is not sent promptly
         * by the transport: on_open sends it. */
        if (f->ws_opened) vx_ws_close(f->ws, f->ws_close_code, f->ws_close_reason);
    }
}

/* Under f->mu: sends one event unless already sent; a transport refusal
 * (its queue overflowed) has already ended the stream. */
static void send_locked(feed *f, int64_t seq, const char *type, const char *json, bool terminal) {
    if (f->done || seq <= f->last_sent) return;
    char id[VX_EVENT_ID_SIZE];
    vx_event_id_format(seq, id);
    int rc = f->sse ? vx_sse_send(f->sse, id, type, json) : vx_ws_send_text(f->ws, json, strlen(json));
    f->last_sent = seq;
    if (rc != 0) f->done = true;
    else if (terminal && f->job_feed) finish_locked(f, false);
}

static bool is_terminal(const char *type) {
    vx_event_type t;
    return vx_event_type_parse(type, &t) == 0 && vx_event_type_terminal(t);
}

/* Bus callback (publisher thread): never blocks beyond the feed mutex. */
static void on_event(void *user, const vx_bus_msg *msg) {
    feed *f = user;
    pthread_mutex_lock(&f->mu);
    bool terminal = is_terminal(msg->type);
    if (f->done || msg->seq <= f->last_sent) {
        /* already sent, or nobody listens any more */
    } else if (f->fill) {
        if (f->replaying) { /* go_live asks for the fill */
            if (msg->seq > f->fill_upto) f->fill_upto = msg->seq;
        } else {
            fill_request_locked(f, msg->seq);
        }
    } else if (!f->replaying) {
        send_locked(f, msg->seq, msg->type, msg->json, terminal);
    } else if (f->n_held >= HELD_MAX) {
        finish_locked(f, true);
    } else {
        held_msg *m = malloc(sizeof *m + msg->len + 1);
        if (!m) {
            finish_locked(f, true);
        } else {
            m->next = NULL;
            m->seq = msg->seq;
            m->terminal = terminal;
            snprintf(m->type, sizeof m->type, "%s", msg->type);
            memcpy(m->json, msg->json, msg->len);
            m->json[msg->len] = '\0';
            *f->held_tail = m;
            f->held_tail = &m->next;
            f->n_held++;
        }
    }
    pthread_mutex_unlock(&f->mu);
}

static void mark_done(feed *f) {
    pthread_mutex_lock(&f->mu);
    f->done = true;
    pthread_mutex_unlock(&f->mu);
}

static void sse_closed(vx_sse *sse, vx_stream_end why, void *user) {
    feed *f = user;
    mark_done(f);
    feed_unref(f);
}

static void ws_opened(vx_ws *ws, void *user) {
    feed *f = user;
    pthread_mutex_lock(&f->mu);
    f->ws_opened = true;
    if (f->ws_close_code) vx_ws_close(ws, f->ws_close_code, f->ws_close_reason);
    pthread_mutex_unlock(&f->mu);
}

static void ws_text(vx_ws *ws, const char *data, size_t len, void *user) {
    /* Clients may send anything (pings of their own); the feed is one-way. */
}

static void ws_closed(vx_ws *ws, int code, const char *reason, void *user) {
    feed *f = user;
    mark_done(f);
    feed_unref(f);
}

/* Last-Event-ID header or ?since=: 1 with *since set, 0 when absent, -1
 * after answering 400. */
static int resume_point(vx_request *req, int64_t *since) {
    const char *v = vx_req_header(req, "Last-Event-ID");
    if (!v || !*v) v = vx_req_query(req, "since");
    if (!v || !*v) return 0;
    if (vx_event_id_parse(v, since) != 0) {
        vx_respond_errorf(req, VX_E_INVALID, "invalid_event_id", "since / Last-Event-ID must be an event id");
        return -1;
    }
    return 1;
}

/* Answers with the transport the client asked for and subscribes. NULL
 * when already answered. The feed starts in replay mode. */
static feed *feed_open(vx_request *req, const vx_bus_filter *filter, bool job_feed) {
    vx_app *app = vx_req_app(req);
    vx_events *hub = vx_events_of(app);
    bool ws = vx_req_is_websocket(req), sse = !ws && vx_req_wants_sse(req);
    if (!hub) {
        vx_respond_errorf(req, VX_E_UNAVAILABLE, "not_ready", "live events are not available");
        return NULL;
    }
    if (!ws && !sse) {
        vx_respond_errorf(req, VX_E_INVALID, "unsupported_transport",
                          "ask for a WebSocket upgrade or send Accept: text/event-stream");
        return NULL;
    }
    feed *f = calloc(1, sizeof *f);
    if (!f) {
        vx_respond_errorf(req, VX_E_INTERNAL, "internal", "out of memory");
        return NULL;
    }
    pthread_mutex_init(&f->mu, NULL);
    atomic_init(&f->refs, 2);
    f->bus = vx_events_bus(hub);
    f->fill = f->bus->ops->cross_process;
    f->epoch = f->bus->ops->epoch ? f->bus->ops->epoch(f->bus) : 0;
    f->app = app;
    snprintf(f->user_id, sizeof f->user_id, "%s", filter->user_id ? filter->user_id : "");
    snprintf(f->job_id, sizeof f->job_id, "%s", filter->job_id ? filter->job_id : "");
    f->job_feed = job_feed;
    f->replaying = true;
    f->held_tail = &f->held;
    if (sse) {
        vx_sse_options o = {.max_queued_bytes = SSE_QUEUE_BYTES, .retry_ms = 2000, .overflow_event = "error",
                            .overflow_data = OVERFLOW_DATA, .on_close = sse_closed, .user = f};
        f->sse = vx_respond_sse(req, &o);
    } else {
        vx_ws_handlers h = {.on_open = ws_opened, .on_text = ws_text, .on_close = ws_closed};
        f->ws = vx_respond_websocket(req, &h, NULL, f);
    }
    if (!f->sse && !f->ws) { /* answered; no on_close will come */
        pthread_mutex_destroy(&f->mu);
        free(f);
        return NULL;
    }
    if (f->fill) {
        filler_ensure(); /* it also watches the bus's epoch */
        registry_add(f);
    }
    vx_err err = {0};
    if (!(f->sub = vx_bus_subscribe(f->bus, filter, on_event, f, &err))) {
        vx_warn("events: cannot subscribe a feed: %s", err.message);
        pthread_mutex_lock(&f->mu);
        finish_locked(f, true);
        pthread_mutex_unlock(&f->mu);
    }
    return f;
}

/* Sends stored events after `since` (of the job or the user). */
static void replay(feed *f, vx_app *app, const vx_event_filter *base, int64_t since) {
    vx_event_filter flt = *base;
    flt.after_id = since;
    flt.limit = REPLAY_PAGE;
    for (;;) {
        vx_event_rec *evs = NULL;
        size_t n = 0;
        vx_err err = {0};
        if (app->store->ops->event_list(app->store, &flt, &evs, &n, &err) != 0) {
            vx_warn("events: replay failed: %s", err.message);
            pthread_mutex_lock(&f->mu);
            finish_locked(f, true); /* the client resumes from what it got */
            pthread_mutex_unlock(&f->mu);
            return;
        }
        pthread_mutex_lock(&f->mu);
        for (size_t i = 0; i < n && !f->done; i++) {
            char *json = vx_event_render(&evs[i]);
            if (json) send_locked(f, evs[i].id, evs[i].type, json, is_terminal(evs[i].type));
            free(json);
            flt.after_id = evs[i].id;
        }
        bool stop = f->done;
        pthread_mutex_unlock(&f->mu);
        vx_event_list_free(evs, n);
        if (stop || n < REPLAY_PAGE) return;
    }
}

/* Ends replay mode: held live events above the last id sent go out. */
static void go_live(feed *f) {
    pthread_mutex_lock(&f->mu);
    while (f->held) {
        held_msg *m = f->held;
        f->held = m->next;
        send_locked(f, m->seq, m->type, m->json, m->terminal);
        free(m);
    }
    f->held_tail = &f->held;
    f->n_held = 0;
    f->replaying = false;
    if (f->fill && f->fill_upto > f->last_sent) fill_request_locked(f, f->fill_upto);
    pthread_mutex_unlock(&f->mu);
}

/* ---- the filler (cross-process bus) ---- */

static pthread_once_t filler_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t filler_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t filler_cv = PTHREAD_COND_INITIALIZER;
static feed *filler_head, **filler_tail = &filler_head;
static bool filler_running;

/* Sends the feed's stored events after the last one sent, in id order. */
static void fill_feed(feed *f) {
    pthread_mutex_lock(&f->mu);
    int64_t from = f->last_sent;
    pthread_mutex_unlock(&f->mu);
    vx_event_filter flt = {.user_id = f->user_id[0] ? f->user_id : NULL, .job_id = f->job_id[0] ? f->job_id : NULL};
    replay(f, f->app, &flt, from);
}

/* Lock order: registry_mu, then a feed's mu, then filler_mu. */
static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static feed *registry;

static void registry_add(feed *f) {
    pthread_mutex_lock(&registry_mu);
    f->reg_next = registry;
    if (registry) registry->reg_prev = f;
    registry = f;
    pthread_mutex_unlock(&registry_mu);
}

static void registry_remove(feed *f) {
    pthread_mutex_lock(&registry_mu);
    if (f->reg_prev) f->reg_prev->reg_next = f->reg_next;
    else if (registry == f) registry = f->reg_next;
    if (f->reg_next) f->reg_next->reg_prev = f->reg_prev;
    pthread_mutex_unlock(&registry_mu);
}

/* After the bus re-subscribed (e.g. Redis restarted), events published in
 * between never arrive: every live feed fills from the store once. */
static void resync_after_bus_gaps(void) {
    pthread_mutex_lock(&registry_mu);
    for (feed *f = registry; f; f = f->reg_next) {
        if (!f->bus->ops->epoch) continue;
        uint64_t e = f->bus->ops->epoch(f->bus);
        pthread_mutex_lock(&f->mu);
        if (e != f->epoch && !f->replaying && !f->done) {
            f->epoch = e;
            fill_request_locked(f, 0);
        }
        pthread_mutex_unlock(&f->mu);
    }
    pthread_mutex_unlock(&registry_mu);
}

static void *filler_main(void *arg) {
    pthread_mutex_lock(&filler_mu);
    for (;;) {
        while (!filler_head) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            if (pthread_cond_timedwait(&filler_cv, &filler_mu, &ts) != 0) {
                pthread_mutex_unlock(&filler_mu);
                resync_after_bus_gaps();
                pthread_mutex_lock(&filler_mu);
            }
        }
        feed *f = filler_head;
        filler_head = f->fill_next;
        if (!filler_head) filler_tail = &filler_head;
        pthread_mutex_unlock(&filler_mu);
        pthread_mutex_lock(&f->mu);
        f->fill_queued = false; /* news from now on queue it again */
        pthread_mutex_unlock(&f->mu);
        fill_feed(f);
        feed_unref(f);
        pthread_mutex_lock(&filler_mu);
    }
    return NULL;
}

/* The filler lives as long as the process: feeds come and go on any node. */
static void filler_start(void) {
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    filler_running = pthread_create(&t, &a, filler_main, NULL) == 0;
    pthread_attr_destroy(&a);
    if (!filler_running) vx_error("events: cannot start the live-event filler thread");
}

static bool filler_ensure(void) {
    pthread_once(&filler_once, filler_start);
    return filler_running;
}

/* Under f->mu: the store has events up to `upto` for this feed; queue one
 * fill (a burst of news is coalesced into it). Never blocks on the store. */
static void fill_request_locked(feed *f, int64_t upto) {
    if (upto > f->fill_upto) f->fill_upto = upto;
    if (f->fill_queued || f->done) return;
    if (!filler_ensure()) {
        finish_locked(f, true);
        return;
    }
    f->fill_queued = true;
    atomic_fetch_add(&f->refs, 1);
    pthread_mutex_lock(&filler_mu);
    f->fill_next = NULL;
    *filler_tail = f;
    filler_tail = &f->fill_next;
    pthread_cond_signal(&filler_cv);
    pthread_mutex_unlock(&filler_mu);
}

/* True when the job's newest stored event is its terminal one (or nothing
 * can be read: do not hang a feed on a store error). */
static bool terminal_event_stored(vx_app *app, const char *job_id) {
    vx_event_filter f = {.job_id = job_id, .limit = 1};
    vx_event_rec *evs = NULL;
    size_t n = 0;
    vx_err err = {0};
    int64_t last = 0;
    if (app->store->ops->event_last_id(app->store, &f, &last, &err) != 0 || last == 0) return true;
    f.after_id = last - 1;
    if (app->store->ops->event_list(app->store, &f, &evs, &n, &err) != 0) return true;
    vx_event_type t;
    bool terminal = n == 1 && vx_event_type_parse(evs[0].type, &t) == 0 && vx_event_type_terminal(t);
    vx_event_list_free(evs, n);
    return terminal;
}

void vx_api_job_events(vx_request *req) {
    vx_principal who;
    vx_job job = {0};
    vx_app *app = vx_req_app(req);
    int64_t since = 0;
    if (vx_api_auth_query(req, &who) != 0) return;
    vx_err err = {0};
    if (vx_jobs_get(app, &who, vx_req_capture(req, "id"), &job, &err) != 0) {
        vx_respond_error(req, &err);
        return;
    }
    int resume = resume_point(req, &since);
    bool was_terminal = vx_job_status_terminal(job.status);
    int64_t finished_at = job.finished_at;
    vx_bus_filter bf = {.job_id = job.id};
    feed *f = resume < 0 ? NULL : feed_open(req, &bf, true);
    vx_job_clear(&job);
    if (!f) return;
    vx_event_filter ef = {.job_id = bf.job_id};
    if (resume) {
        replay(f, app, &ef, since);
    } else {
        /* The current state, as one event carrying the newest stored id:
         * read that id first, so nothing after it can be missed. */
        int64_t last = 0;
        vx_job now = {0};
        if (app->store->ops->event_last_id(app->store, &ef, &last, &err) != 0 ||
            app->store->ops->job_get(app->store, bf.job_id, &now, &err) != 0) {
            vx_warn("events: cannot read job %s for its feed: %s", bf.job_id, err.message);
            pthread_mutex_lock(&f->mu);
            finish_locked(f, true);
            pthread_mutex_unlock(&f->mu);
        } else {
            vx_event_type type;
            json_t *data = vx_events_job_state(&now, &type);
            json_object_set_new(data, "snapshot", json_true());
            vx_event_rec snap = {.id = last, .at = vx_now_ms(), .data_json = json_dumps(data, JSON_COMPACT)};
            snprintf(snap.type, sizeof snap.type, "%s", vx_event_type_name(type));
            snprintf(snap.job_id, sizeof snap.job_id, "%s", now.id);
            snprintf(snap.user_id, sizeof snap.user_id, "%s", now.user_id);
            char *json = snap.data_json ? vx_event_render(&snap) : NULL;
            pthread_mutex_lock(&f->mu);
            if (json) {
                /* id 0 (no stored event yet) must still go out */
                f->last_sent = last - 1;
                send_locked(f, last, snap.type, json, vx_event_type_terminal(type));
            } else {
                finish_locked(f, true);
            }
            pthread_mutex_unlock(&f->mu);
            free(json);
            json_decref(data);
            vx_event_rec_clear(&snap);
        }
        vx_job_clear(&now);
    }
    go_live(f);
    if (resume && was_terminal) {
        /* Resumed past the end: nothing will come (an EventSource that
         * reconnects after the end gets a short answer, not a hung one).
         * Unless the job has just finished and its terminal event is not
         * stored yet (it is stored after the job's own transaction, by its
         * process or else by the repair, see vx_events_repair): then it is
         * still to come, live. */
        bool pending = finished_at > vx_now_ms() - VX_EVENTS_REPAIR_WINDOW_MS &&
                       !terminal_event_stored(app, bf.job_id);
        pthread_mutex_lock(&f->mu);
        if (!pending) finish_locked(f, false);
        pthread_mutex_unlock(&f->mu);
    }
    feed_unref(f);
}

void vx_api_events(vx_request *req) {
    vx_principal who;
    vx_app *app = vx_req_app(req);
    int64_t since = 0;
    if (vx_api_auth_query(req, &who) != 0) return;
    int resume = resume_point(req, &since);
    if (resume < 0) return;
    vx_bus_filter bf = {.user_id = who.user.id};
    feed *f = feed_open(req, &bf, false);
    if (!f) return;
    vx_event_filter ef = {.user_id = who.user.id};
    if (resume) replay(f, app, &ef, since); /* else live from now on */
    go_live(f);
    feed_unref(f);
}
