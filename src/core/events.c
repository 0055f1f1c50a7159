/* events.c - the job event hub (see events.h): picks the webhook deliveries
 * an event needs, stores event + deliveries in one transaction, then
 * publishes the rendered event on the bus. Store-then-publish runs under one
 * hub mutex, so live subscribers in this process see events in id order and
 * a feed can drop anything at or below the last id it replayed. Any thread. */
#include "events.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../util/clock.h"
#include "../util/credits.h"
#include "../util/log.h"
#include "webhooks.h"

struct vx_events {
    vx_store *store;
    vx_bus *bus;
    const vx_config *cfg;
    pthread_mutex_t order_mu;   /* store + publish of one event happen together */
    pthread_mutex_t wake_mu;
    void (*wake)(void *);
    void *wake_user;
};

static const char *const type_names[VX_EV_TYPE_COUNT] = {
    [VX_EV_QUEUED] = "job.queued",       [VX_EV_STARTED] = "job.started",
    [VX_EV_PROGRESS] = "job.progress",   [VX_EV_SUCCEEDED] = "job.succeeded",
    [VX_EV_FAILED] = "job.failed",       [VX_EV_CANCELED] = "job.canceled",
    [VX_EV_RETRYING] = "job.retrying",
};

const char *vx_event_type_name(vx_event_type t) {
    return (unsigned)t < VX_EV_TYPE_COUNT ? type_names[t] : "unknown";
}

int vx_event_type_parse(const char *name, vx_event_type *out) {
    for (int i = 0; name && i < VX_EV_TYPE_COUNT; i++) {
        if (strcmp(type_names[i], name) == 0) {
            *out = (vx_event_type)i;
            return 0;
        }
    }
    return -1;
}

/* ---- hub and the app binding ---- */

/* Returns a hub the caller frees with vx_events_free. */
vx_events *vx_events_new(vx_store *store, vx_bus *bus, const vx_config *cfg, vx_err *err) {
    vx_events *ev = calloc(1, sizeof *ev);
    if (!ev) {
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        return NULL;
    }
    ev->store = store;
    ev->bus = bus;
    ev->cfg = cfg;
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE); /* vx_events_lock + emit */
    pthread_mutex_init(&ev->order_mu, &attr);
    pthread_mutexattr_destroy(&attr);
    pthread_mutex_init(&ev->wake_mu, NULL);
    return ev;
}

void vx_events_free(vx_events *ev) {
    if (!ev) return;
    pthread_mutex_destroy(&ev->order_mu);
    pthread_mutex_destroy(&ev->wake_mu);
    free(ev);
}

vx_bus *vx_events_bus(vx_events *ev) { return ev->bus; }

void vx_events_set_delivery_wake(vx_events *ev, void (*fn)(void *), void *user) {
    pthread_mutex_lock(&ev->wake_mu);
    ev->wake = fn;
    ev->wake_user = user;
    pthread_mutex_unlock(&ev->wake_mu);
}

void vx_events_wake_deliveries(vx_app *app) {
    vx_events *ev = vx_events_of(app);
    if (!ev) return;
    pthread_mutex_lock(&ev->wake_mu);
    if (ev->wake) ev->wake(ev->wake_user);
    pthread_mutex_unlock(&ev->wake_mu);
}

int vx_events_attach(vx_app *app, vx_events *ev, vx_err *err) {
    (void)err;
    app->events = ev;
    return 0;
}

void vx_events_detach(vx_app *app) { app->events = NULL; }

vx_events *vx_events_of(const vx_app *app) { return app->events; }

void vx_events_lock(vx_app *app) {
    vx_events *ev = vx_events_of(app);
    if (ev) pthread_mutex_lock(&ev->order_mu);
}

void vx_events_unlock(vx_app *app) {
    vx_events *ev = vx_events_of(app);
    if (ev) pthread_mutex_unlock(&ev->order_mu);
}

/* ---- rendering ---- */

void vx_event_id_format(int64_t id, char out[VX_EVENT_ID_SIZE]) {
    snprintf(out, VX_EVENT_ID_SIZE, "evt_%016lld", (long long)id);
}

int vx_event_id_parse(const char *text, int64_t *out) {
    if (!text) return -1;
    if (strncmp(text, "evt_", 4) == 0) text += 4;
    size_t len = strlen(text);
    if (len == 0 || len > 18 || strspn(text, "0123456789") != len) return -1;
    *out = strtoll(text, NULL, 10);
    return 0;
}

/* Returns malloc'd JSON text the caller frees. */
char *vx_event_render(const vx_event_rec *ev) {
    char id[VX_EVENT_ID_SIZE], at[VX_TIME_SIZE];
    vx_event_id_format(ev->id, id);
    vx_time_format(ev->at, at);
    json_t *data = ev->data_json ? json_loads(ev->data_json, 0, NULL) : NULL;
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "id", id, "type", ev->type, "job_id", ev->job_id,
                          "user_id", ev->user_id, "at", at, "data", data ? data : json_object());
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    return text;
}

/* ---- emission ---- */

/* Deliveries this event needs: the user's endpoints whose filter takes the
 * type, and the job's own webhook_url. Caller frees *out. */
static int plan_deliveries(vx_events *ev, const char *type, const char *user_id, const char *webhook_url,
                           int64_t now, vx_delivery **out, size_t *n, vx_err *err) {
    *out = NULL;
    *n = 0;
    vx_webhook_endpoint *eps = NULL;
    size_t neps = 0;
    if (ev->store->ops->webhook_list(ev->store, user_id, &eps, &neps, err) != 0) return -1;
    size_t cap = neps + 1;
    vx_delivery *ds = calloc(cap, sizeof *ds);
    if (!ds) {
        free(eps);
        return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
    }
    size_t count = 0;
    const char *job_ep = NULL;
    for (size_t i = 0; i < neps; i++) {
        if (strcmp(eps[i].kind, "job") == 0) {
            job_ep = eps[i].id;
            continue;
        }
        if (!vx_webhook_types_match(eps[i].event_types, type)) continue;
        vx_delivery *d = &ds[count++];
        snprintf(d->endpoint_id, sizeof d->endpoint_id, "%s", eps[i].id);
        snprintf(d->url, sizeof d->url, "%s", eps[i].url);
    }
    vx_webhook_endpoint job_row;
    if (webhook_url && *webhook_url) {
        if (!job_ep) {
            vx_webhook_endpoint cand = {.created_at = now};
            vx_id_new(cand.id, "whk");
            snprintf(cand.user_id, sizeof cand.user_id, "%s", user_id);
            vx_webhook_secret_new(cand.secret);
            if (ev->store->ops->webhook_job_endpoint(ev->store, &cand, &job_row, err) != 0) {
                free(eps);
                free(ds);
                return -1;
            }
            job_ep = job_row.id;
        }
        vx_delivery *d = &ds[count++];
        snprintf(d->endpoint_id, sizeof d->endpoint_id, "%s", job_ep);
        snprintf(d->url, sizeof d->url, "%s", webhook_url);
    }
    for (size_t i = 0; i < count; i++) {
        vx_id_new(ds[i].id, "dlv");
        snprintf(ds[i].user_id, sizeof ds[i].user_id, "%s", user_id);
        ds[i].max_attempts = ev->cfg->webhook_max_attempts > 0 ? ev->cfg->webhook_max_attempts : 1;
        ds[i].created_at = ds[i].next_at = now;
    }
    free(eps);
    *out = ds;
    *n = count;
    return 0;
}

int64_t vx_events_emit(vx_events *ev, vx_event_type type, const char *job_id, const char *user_id,
                       const char *webhook_url, json_t *data) {
    vx_err err = {0};
    vx_delivery *ds = NULL;
    size_t nds = 0;
    char *text = NULL;
    int64_t id = 0;
    const char *name = vx_event_type_name(type);
    vx_event_rec rec = {.at = vx_now_ms()};
    if (!data) data = json_object();
    rec.data_json = json_dumps(data, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(data);
    if (!rec.data_json) {
        vx_err_set(&err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        goto out;
    }
    snprintf(rec.type, sizeof rec.type, "%s", name);
    snprintf(rec.job_id, sizeof rec.job_id, "%s", job_id);
    snprintf(rec.user_id, sizeof rec.user_id, "%s", user_id);
    rec.once_per_job = vx_event_type_terminal(type);
    if (plan_deliveries(ev, name, user_id, webhook_url, rec.at, &ds, &nds, &err) != 0) goto out;

    pthread_mutex_lock(&ev->order_mu);
    int rc = ev->store->ops->event_append(ev->store, &rec, ds, nds, &err);
    if (rc == 0 && (text = vx_event_render(&rec))) {
        vx_bus_msg msg = {.seq = rec.id, .type = name, .user_id = user_id, .job_id = job_id, .json = text,
                          .len = strlen(text)};
        vx_err perr = {0};
        if (vx_bus_publish(ev->bus, &msg, &perr) != 0)
            vx_warn("events: %s %s stored but not published live: %s", name, job_id, perr.message);
    }
    pthread_mutex_unlock(&ev->order_mu);
    if (rc != 0 && rec.once_per_job && strcmp(err.code, "event_recorded") == 0) {
        vx_debug("events: %s for job %s already recorded", name, job_id);
        goto quiet;
    }
    if (rc != 0) goto out;
    id = rec.id;
    if (nds) {
        pthread_mutex_lock(&ev->wake_mu);
        if (ev->wake) ev->wake(ev->wake_user);
        pthread_mutex_unlock(&ev->wake_mu);
    }
out:
    if (!id) vx_warn("events: %s for job %s was not recorded: %s (%s)", name, job_id, err.message, err.code);
quiet:
    free(text);
    free(ds);
    vx_event_rec_clear(&rec);
    return id;
}

/* ---- job states as events ---- */

static json_t *last_error(const vx_job *job) {
    json_t *errors = job->error_json ? json_loads(job->error_json, 0, NULL) : NULL;
    json_t *last = json_array_get(errors, json_array_size(errors) - 1);
    json_t *e = last ? json_pack("{s:O, s:O}", "code", json_object_get(last, "code"), "message",
                                 json_object_get(last, "message"))
                     : json_null();
    json_decref(errors);
    return e ? e : json_null();
}

static json_t *time_or_null(int64_t ms) {
    if (ms <= 0) return json_null();
    char at[VX_TIME_SIZE];
    vx_time_format(ms, at);
    return json_string(at);
}

/* Returns a new reference. */
json_t *vx_events_job_state(const vx_job *job, vx_event_type *type) {
    json_t *d = json_object();
    json_object_set_new(d, "status", json_string(vx_job_status_name(job->status)));
    json_object_set_new(d, "model", json_string(job->model));
    switch (job->status) {
    case VX_JOB_QUEUED:
        *type = job->attempts > 0 ? VX_EV_RETRYING : VX_EV_QUEUED;
        if (job->attempts > 0) {
            json_object_set_new(d, "attempt", json_integer(job->attempts));
            json_object_set_new(d, "retry_at", time_or_null(job->run_after));
            json_object_set_new(d, "error", last_error(job));
        }
        break;
    case VX_JOB_RUNNING:
        *type = VX_EV_STARTED;
        json_object_set_new(d, "attempt", json_integer(job->attempts));
        json_object_set_new(d, "progress", json_real(job->progress));
        break;
    case VX_JOB_SUCCEEDED: {
        *type = VX_EV_SUCCEEDED;
        json_t *result = job->result_json ? json_loads(job->result_json, 0, NULL) : NULL;
        json_object_set_new(d, "attempt", json_integer(job->attempts));
        json_object_set_new(d, "result", result ? result : json_null());
        json_object_set_new(d, "charged", vx_credits_json(job->charged));
        break;
    }
    case VX_JOB_FAILED:
        *type = VX_EV_FAILED;
        json_object_set_new(d, "attempt", json_integer(job->attempts));
        json_object_set_new(d, "error", last_error(job));
        break;
    case VX_JOB_CANCELED:
        *type = VX_EV_CANCELED;
        break;
    }
    return d;
}

void vx_events_job_changed(vx_app *app, const vx_job *job) {
    vx_events *ev = vx_events_of(app);
    if (!ev) return;
    vx_event_type type;
    json_t *data = vx_events_job_state(job, &type);
    vx_events_emit(ev, type, job->id, job->user_id, job->webhook_url, data);
}

void vx_events_job_settled(vx_app *app, const char *job_id, int attempt) {
    vx_events *ev = vx_events_of(app);
    if (!ev) return;
    vx_job job = {0};
    vx_err err = {0};
    if (app->store->ops->job_get(app->store, job_id, &job, &err) != 0) {
        vx_warn("events: job %s could not be read after its attempt: %s", job_id, err.message);
        return;
    }
    vx_event_type type;
    json_t *data = vx_events_job_state(&job, &type);
    if (job.status == VX_JOB_RUNNING) {
        if (job.attempts > attempt) {
            /* already claimed again: what happened in between was a retry */
            type = VX_EV_RETRYING;
            json_object_set_new(data, "status", json_string("queued"));
            json_object_set_new(data, "attempt", json_integer(attempt));
            json_object_del(data, "progress");
            json_object_set_new(data, "retry_at", json_null());
            json_object_set_new(data, "error", last_error(&job));
        } else {
            json_decref(data); /* still ours: nothing settled (the lease was lost) */
            data = NULL;
        }
    }
    if (data) vx_events_emit(ev, type, job.id, job.user_id, job.webhook_url, data);
    vx_job_clear(&job);
}

int vx_events_repair(vx_app *app, int64_t now, int64_t settle_ms, int *repaired, vx_err *err) {
    enum { BATCH = 64 };
    char ids[BATCH][VX_ID_SIZE];
    size_t n = 0;
    *repaired = 0;
    vx_events *ev = vx_events_of(app);
    if (!ev || !app->store->ops->jobs_without_terminal_event) return 0;
    if (app->store->ops->jobs_without_terminal_event(app->store, now - VX_EVENTS_REPAIR_WINDOW_MS, now - settle_ms,
                                                      BATCH, ids, &n, err) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        vx_job job = {0};
        vx_err jerr = {0};
        if (app->store->ops->job_get(app->store, ids[i], &job, &jerr) != 0) {
            vx_warn("events: job %s could not be read to repair its events: %s", ids[i], jerr.message);
            continue;
        }
        vx_event_type type;
        json_t *data = vx_events_job_state(&job, &type);
        if (vx_event_type_terminal(type) &&
            vx_events_emit(ev, type, job.id, job.user_id, job.webhook_url, data) > 0) {
            vx_info("events: %s of job %s was missing (its process ended first); recorded now",
                    vx_event_type_name(type), job.id);
            (*repaired)++;
        } else if (!vx_event_type_terminal(type)) {
            json_decref(data);
        }
        vx_job_clear(&job);
    }
    return 0;
}

void vx_events_job_progress(vx_app *app, const vx_job *job, double fraction, const char *stage) {
    vx_events *ev = vx_events_of(app);
    if (!ev) return;
    json_t *data = json_pack("{s:f, s:s}", "fraction", fraction, "stage", stage ? stage : "processing");
    vx_events_emit(ev, VX_EV_PROGRESS, job->id, job->user_id, job->webhook_url, data);
}

bool vx_progress_gate_pass(vx_progress_gate *g, int64_t now_ms, double fraction) {
    if (g->started && (now_ms - g->last_ms < VX_EVENTS_PROGRESS_INTERVAL_MS || fraction <= g->last_fraction))
        return false;
    g->started = true;
    g->last_ms = now_ms;
    g->last_fraction = fraction;
    return true;
}

/* ---- reaper and retention ---- */

int vx_events_reap(vx_app *app, int64_t now, const char *owner_prefix, int64_t backoff_ms, int *requeued,
                   int *failed, vx_err *err) {
    vx_events *ev = vx_events_of(app);
    vx_job *running = NULL;
    size_t n = 0;
    if (ev) {
        /* The store reports counts only: note the candidates first. */
        vx_job_filter f = {.status = VX_JOB_RUNNING, .limit = 200};
        vx_err lerr = {0};
        if (app->store->ops->job_list(app->store, &f, &running, &n, &lerr) != 0)
            vx_warn("events: cannot list running jobs before reaping: %s", lerr.message);
    }
    int nre = 0, nfail = 0;
    int rc = app->store->ops->job_reap(app->store, now, owner_prefix, backoff_ms, &nre, &nfail, err);
    size_t plen = owner_prefix ? strlen(owner_prefix) : 0;
    for (size_t i = 0; rc == 0 && (nre || nfail) && i < n; i++) {
        const vx_job *j = &running[i];
        bool expired = j->lease_until < now || (plen && strncmp(j->lease_owner, owner_prefix, plen) == 0);
        if (expired) vx_events_job_settled(app, j->id, j->attempts);
    }
    vx_job_list_free(running, n);
    if (requeued) *requeued = nre;
    if (failed) *failed = nfail;
    return rc;
}

int vx_events_purge(vx_events *ev, int64_t now, vx_err *err) {
    int64_t purged = 0;
    int64_t before = now - (int64_t)ev->cfg->event_retention_s * 1000;
    if (ev->store->ops->event_purge(ev->store, before, &purged, err) != 0) return -1;
    if (purged) vx_info("events: purged %lld event(s) past the retention window", (long long)purged);
    return 0;
}
