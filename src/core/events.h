/* events.h - the job event model: {id, type, job_id, user_id, at, data}.
 * Every job state change and progress step is stored (for feed resume and
 * webhook deliveries, in one store transaction) and then published on the
 * bus. Ids come from the store's own sequence, so "after id N" replays
 * without gaps or duplicates. Emitters (core/jobs.c, worker/worker.c) only
 * see the vx_app; main attaches the events hub to it. Any thread. */
#ifndef VX_EVENTS_H
#define VX_EVENTS_H
#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include "../bus/bus.h"
#include "app.h"

typedef enum vx_event_type {
    VX_EV_QUEUED, VX_EV_STARTED, VX_EV_PROGRESS, VX_EV_SUCCEEDED, VX_EV_FAILED, VX_EV_CANCELED,
    VX_EV_RETRYING,
} vx_event_type;
#define VX_EV_TYPE_COUNT 7

const char *vx_event_type_name(vx_event_type t);            /* "job.queued", ... */
int vx_event_type_parse(const char *name, vx_event_type *out); /* -1 if unknown */
static inline bool vx_event_type_terminal(vx_event_type t) {
    return t == VX_EV_SUCCEEDED || t == VX_EV_FAILED || t == VX_EV_CANCELED;
}

/* Progress events of one job come at most this often. */
#define VX_EVENTS_PROGRESS_INTERVAL_MS 250

/* ---- the hub ---- */
typedef struct vx_events vx_events;

/* A hub over the store (where events live) and the bus (where they go
 * live). Borrowed pointers; NULL with err when out of memory. */
vx_events *vx_events_new(vx_store *store, vx_bus *bus, const vx_config *cfg, vx_err *err);
void vx_events_free(vx_events *ev);
vx_bus *vx_events_bus(vx_events *ev);
/* fn(user) runs after an event enqueued webhook deliveries (the sender's
 * wake-up); NULL to unset. */
void vx_events_set_delivery_wake(vx_events *ev, void (*fn)(void *), void *user);
/* Runs that wake-up (a delivery became due, e.g. a manual redeliver). */
void vx_events_wake_deliveries(vx_app *app);

/* Binds a hub to an app (app->events; main, tests); detach before freeing
 * the hub. With no hub attached emitting is a no-op. Not thread-safe: bind
 * before threads that emit start. */
int vx_events_attach(vx_app *app, vx_events *ev, vx_err *err);
void vx_events_detach(vx_app *app);
vx_events *vx_events_of(const vx_app *app);

/* Stores the event (with one webhook delivery per matching endpoint of the
 * user, and one to webhook_url when given) and publishes it. Steals data.
 * The caller's state change already happened: failures are logged, and 0
 * is returned, else the new event id. */
int64_t vx_events_emit(vx_events *ev, vx_event_type type, const char *job_id, const char *user_id,
                       const char *webhook_url, json_t *data);

/* Around a state change and the emission of its event, when another thread
 * could otherwise emit a later event of the same job first (a submission:
 * a worker may claim the job before "queued" is out). Recursive. */
void vx_events_lock(vx_app *app);
void vx_events_unlock(vx_app *app);

/* ---- emitters' helpers (no-ops without an attached hub) ---- */

/* The event a job row's state stands for (queued, started, succeeded, ...):
 * *type and data (new reference). A queued job that already ran is
 * "retrying". Also the first event of a job feed (the current state). */
json_t *vx_events_job_state(const vx_job *job, vx_event_type *type);
/* Emits the event of the job's state (vx_events_job_state). */
void vx_events_job_changed(vx_app *app, const vx_job *job);
/* After a settled attempt (job_fail/job_release/job_succeed): reloads the
 * job and emits what it became. `attempt` is the attempt that ended, so a
 * job already claimed again still reports job.retrying. */
void vx_events_job_settled(vx_app *app, const char *job_id, int attempt);
/* job.progress {fraction, stage}. */
void vx_events_job_progress(vx_app *app, const vx_job *job, double fraction, const char *stage);

/* Reaper with reporting: the store's job_reap, then the event of each job
 * it moved (retrying, failed or canceled). Same contract as job_reap. */
int vx_events_reap(vx_app *app, int64_t now, const char *owner_prefix, int64_t backoff_ms, int *requeued,
                   int *failed, vx_err *err);
/* Terminal events are stored once per job (the store refuses a second) but
 * after the job's own transaction, so a process that dies in between leaves
 * a finished job without one. This emits the missing events of jobs that
 * finished between now - VX_EVENTS_REPAIR_WINDOW_MS and now - settle_ms
 * (time the settling process gets to emit it itself); a race with that
 * process is harmless (one of the two is refused). *repaired = events
 * emitted. Any thread; run periodically by the worker keeper. */
#define VX_EVENTS_REPAIR_WINDOW_MS (3600 * 1000)
int vx_events_repair(vx_app *app, int64_t now, int64_t settle_ms, int *repaired, vx_err *err);

/* Throttle for progress events of one job: true when this step should be
 * emitted (the first one, then at most every VX_EVENTS_PROGRESS_INTERVAL_MS,
 * and only when the fraction grew). Pure; the caller keeps the state. */
typedef struct vx_progress_gate {
    int64_t last_ms;
    double last_fraction;
    bool started;
} vx_progress_gate;
bool vx_progress_gate_pass(vx_progress_gate *g, int64_t now_ms, double fraction);

/* ---- rendering and cursors ---- */

/* "evt_" + 16 digits: sorts like the sequence. */
#define VX_EVENT_ID_SIZE 24
void vx_event_id_format(int64_t id, char out[VX_EVENT_ID_SIZE]);
/* Accepts "evt_<digits>" or plain digits; -1 otherwise. */
int vx_event_id_parse(const char *text, int64_t *out);
/* {"id","type","job_id","user_id","at","data"} as compact JSON text; the
 * caller frees it. NULL when out of memory. */
char *vx_event_render(const vx_event_rec *ev);

/* Deletes events older than the retention window (and their finished
 * deliveries). Called periodically by the webhook sender thread. */
int vx_events_purge(vx_events *ev, int64_t now, vx_err *err);

#endif
