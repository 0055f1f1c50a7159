/* worker.c - claim -> fetch input -> pipeline -> store output -> settle.
 * Threads: `n` workers plus one keeper. A worker owns its slot; the keeper
 * only reads a slot's job id/attempt/progress under the slot mutex and sets
 * its atomic flags. Failure handling: input problems (4xx-class errors) fail
 * the job for good; anything else is retried with exponential back-off up
 * to max_attempts, then fails and releases the hold. A user's cancel ends the
 * job `canceled`; a shutdown gives the job back without counting the attempt. */
#include "worker.h"
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "../core/events.h"
#include "../core/jobs.h"
#include "../models/model.h"
#include "../util/clock.h"
#include "../util/credits.h"
#include "../util/crypto.h"
#include "../util/log.h"
#include "pipeline.h"

#define IDLE_POLL_MS 1000             /* longest idle sleep without a store listener */
#define IDLE_POLL_LISTENING_MS 5000   /* ... and with one (a fallback only) */
#define REPAIR_EVERY_MS 5000          /* how often the keeper looks for finished jobs without their event */
#define REPAIR_SETTLE_MS 5000         /* ... that finished at least this long ago (their process had time) */

typedef struct worker_slot {
    struct vx_workers *pool;
    pthread_t thread;
    int index;
    char name[96];               /* lease owner: <node>/<boot>/w<index> */
    pthread_mutex_t mu;          /* guards job_id, attempt, progress, busy */
    bool busy;
    char job_id[VX_ID_SIZE];
    int attempt;
    double progress;
    const vx_job *job;           /* the claimed job, for progress events (worker thread only) */
    vx_progress_gate gate;       /* throttles those events (worker thread only) */
    atomic_bool cancel;          /* interrupt the pipeline */
    atomic_bool user_canceled;   /* the reason was a user's cancel */
    atomic_bool lease_lost;      /* the reason was a lost lease */
} worker_slot;

struct vx_workers {
    vx_app *app;
    int n;
    worker_slot *slots;
    pthread_t keeper;
    bool keeper_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;           /* wakes idle workers and the keeper */
    unsigned wake_seq;
    bool listening;              /* the store wakes us when jobs arrive (cross-process) */
    atomic_bool stopping;        /* no more claims */
    atomic_bool interrupt;       /* grace over: interrupt running jobs */
};

static void wake(void *user) {
    vx_workers *w = user;
    pthread_mutex_lock(&w->mu);
    w->wake_seq++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Sleeps up to ms or until woken/stopping. */
static void nap(vx_workers *w, int ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&w->mu);
    unsigned seq = w->wake_seq;
    while (seq == w->wake_seq && !atomic_load(&w->stopping))
        if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT) break;
    pthread_mutex_unlock(&w->mu);
}

static void on_progress(void *user, double fraction) {
    worker_slot *s = user;
    pthread_mutex_lock(&s->mu);
    s->progress = fraction;
    pthread_mutex_unlock(&s->mu);
    if (s->job && vx_progress_gate_pass(&s->gate, vx_mono_ms(), fraction))
        vx_events_job_progress(s->pool->app, s->job, fraction, "processing");
}

/* Input problems are the client's: retrying cannot help. */
static bool permanent(const vx_err *e) {
    switch (e->status) {
    case VX_E_INVALID: case VX_E_UNSUPPORTED: case VX_E_UNPROCESSABLE: case VX_E_TOO_LARGE:
        return true;
    default:
        return false;
    }
}

static int64_t backoff_ms(const vx_config *cfg, int attempt) {
    int shift = attempt > 1 ? attempt - 1 : 0;
    if (shift > 16) shift = 16;
    return (int64_t)cfg->retry_base_s * 1000 * ((int64_t)1 << shift);
}

static json_t *result_document(const vx_job *job, const vx_pipeline_result *res) {
    json_t *doc = res->result ? json_deep_copy(res->result) : json_object();
    if (!json_is_object(doc)) {
        json_decref(doc);
        doc = json_object();
    }
    if (res->has_output) {
        char url[160];
        snprintf(url, sizeof url, "/v1/jobs/%s/result", job->id);
        json_object_set_new(doc, "output",
                            json_pack("{s:s, s:I, s:s}", "content_type",
                                      vx_audio_content_type(res->output_format), "bytes",
                                      (json_int_t)res->output_bytes, "url", url));
    }
    return doc;
}

/* Runs one claimed job to a settled state (or gives it back). */
static void run_job(worker_slot *s, vx_job *job) {
    vx_workers *w = s->pool;
    vx_app *app = w->app;
    vx_err err = {0}, serr = {0};
    char in_path[VX_PATH_SIZE + 128] = "", out_path[VX_PATH_SIZE + 128] = "";
    bool in_temp = false;
    json_t *params = NULL;
    vx_pipeline_result res = {0};
    int64_t t0 = vx_mono_ms();

    const vx_model *m = vx_catalog_find(job->model);
    if (!m) {
        vx_err_set(&err, VX_E_UNPROCESSABLE, "unknown_model", "model '%s' is no longer available", job->model);
        goto failed;
    }
    params = json_loads(job->params_json ? job->params_json : "{}", 0, NULL);
    if (!params) {
        vx_err_set(&err, VX_E_INTERNAL, "internal", "stored params are unreadable");
        goto failed;
    }
    if (app->blob->ops->fetch_local(app->blob, job->input_key, app->tmp_dir, in_path, sizeof in_path,
                                    &in_temp, &err) != 0)
        goto failed;
    snprintf(out_path, sizeof out_path, "%s/%s.%d.out", app->tmp_dir, job->id, job->attempts);

    vx_pipeline_request req = {
        .model = m, .params = params, .input_path = in_path, .output_path = out_path,
        .progress = on_progress, .progress_user = s, .cancel = &s->cancel,
    };
    if (vx_pipeline_run(&req, &res, &err) != 0) goto failed;

    vx_job done = *job; /* shallow: only fields job_succeed reads are changed */
    done.params_json = job->params_json;
    done.error_json = NULL;
    done.webhook_url = job->webhook_url;
    done.charged = vx_job_price(job->price_per_job, job->price_per_second, res.input_duration_s);
    if (done.charged > job->held) done.charged = job->held;
    json_t *doc = result_document(job, &res);
    done.result_json = json_dumps(doc, VX_JSON_DUMP_FLAGS);
    json_decref(doc);
    done.output_key[0] = '\0';
    done.output_bytes = 0;
    if (res.has_output) {
        snprintf(done.output_key, sizeof done.output_key, "users/%s/%s/output.%s", job->user_id, job->id,
                 vx_audio_extension(res.output_format));
        snprintf(done.output_content_type, sizeof done.output_content_type, "%s",
                 vx_audio_content_type(res.output_format));
        done.output_bytes = res.output_bytes;
        if (app->blob->ops->put_file(app->blob, done.output_key, out_path, &err) != 0) {
            free(done.result_json);
            goto failed;
        }
    }
    int rc = app->store->ops->job_succeed(app->store, &done, s->name, vx_now_ms(), &serr);
    free(done.result_json);
    if (rc != 0) {
        vx_warn("job %s: could not record success: %s (%s)", job->id, serr.message, serr.code);
        goto cleanup;
    }
    vx_events_job_settled(app, job->id, job->attempts);
    vx_info("job %s succeeded in %lld ms (attempt %d, charged %lld)", job->id,
            (long long)(vx_mono_ms() - t0), job->attempts, (long long)done.charged);
    goto cleanup;

failed:
    if (atomic_load(&s->lease_lost)) {
        vx_warn("job %s: lease lost, dropping attempt %d", job->id, job->attempts);
        goto cleanup;
    }
    if (err.status == VX_E_CANCELED && !atomic_load(&s->user_canceled)) {
        /* shutdown: give it back untouched */
        if (app->store->ops->job_release(app->store, job->id, s->name, job->attempts, vx_now_ms(), &serr) != 0)
            vx_warn("job %s: release failed: %s", job->id, serr.message);
        else {
            vx_info("job %s given back to the queue (shutdown)", job->id);
            vx_events_job_settled(app, job->id, job->attempts);
        }
        goto cleanup;
    }
    bool canceled = err.status == VX_E_CANCELED;
    int64_t retry_at = 0;
    if (!canceled && !permanent(&err) && job->attempts < job->max_attempts)
        retry_at = vx_now_ms() + backoff_ms(app->cfg, job->attempts);
    if (canceled) vx_err_set(&err, VX_E_CANCELED, "canceled", "canceled by request");
    if (app->store->ops->job_fail(app->store, job->id, s->name, job->attempts, err.code, err.message, retry_at,
                                  canceled, vx_now_ms(), &serr) != 0)
        vx_warn("job %s: could not record failure: %s", job->id, serr.message);
    else {
        vx_events_job_settled(app, job->id, job->attempts);
        vx_info("job %s attempt %d %s: %s (%s)", job->id, job->attempts,
                canceled ? "canceled" : retry_at ? "failed, will retry" : "failed for good", err.message,
                err.code);
    }
cleanup:
    if (out_path[0]) unlink(out_path);
    if (in_temp) unlink(in_path);
    vx_pipeline_result_clear(&res);
    json_decref(params);
}

static void *worker_main(void *arg) {
    worker_slot *s = arg;
    vx_workers *w = s->pool;
    vx_app *app = w->app;
    /* Idle workers sleep until woken: by this process's submits (wake), by
     * the store's listener for other processes', else by polling. With a
     * listener the poll is only a slow safety net. */
    int idle_max = w->listening ? IDLE_POLL_LISTENING_MS : IDLE_POLL_MS;
    int idle_ms = 50;
    while (!atomic_load(&w->stopping)) {
        vx_job job = {0};
        vx_err err = {0};
        int64_t lease_ms = (int64_t)app->cfg->lease_s * 1000;
        /* Counted busy before the claim: a shutdown that starts while a job is
         * being claimed must still give that job its grace period. */
        atomic_fetch_add(&app->workers_busy, 1);
        if (app->store->ops->job_claim(app->store, s->name, vx_now_ms(), lease_ms, &job, &err) != 0) {
            atomic_fetch_sub(&app->workers_busy, 1);
            if (err.status != VX_E_NOT_FOUND) vx_warn("worker %s: claim failed: %s", s->name, err.message);
            nap(w, idle_ms);
            idle_ms = idle_ms * 2 < idle_max ? idle_ms * 2 : idle_max;
            continue;
        }
        idle_ms = 50;
        pthread_mutex_lock(&s->mu);
        s->busy = true;
        snprintf(s->job_id, sizeof s->job_id, "%s", job.id);
        s->attempt = job.attempts;
        s->progress = 0;
        atomic_store(&s->cancel, atomic_load(&w->interrupt));
        atomic_store(&s->user_canceled, false);
        atomic_store(&s->lease_lost, false);
        s->job = &job;
        s->gate = (vx_progress_gate){0};
        pthread_mutex_unlock(&s->mu);
        vx_events_job_changed(app, &job);
        vx_info("worker %s: job %s attempt %d (%s)", s->name, job.id, job.attempts, job.model);
        run_job(s, &job);
        atomic_fetch_sub(&app->workers_busy, 1);
        pthread_mutex_lock(&s->mu);
        s->busy = false;
        s->job_id[0] = '\0';
        s->job = NULL;
        pthread_mutex_unlock(&s->mu);
        vx_job_clear(&job);
    }
    return NULL;
}

/* Heartbeats every running slot and reaps expired leases, about once a second. */
static void *keeper_main(void *arg) {
    vx_workers *w = arg;
    vx_app *app = w->app;
    int64_t last_beat = 0, last_reap = 0, last_repair = 0;
    while (!atomic_load(&w->stopping) || atomic_load(&app->workers_busy) > 0) {
        int64_t now = vx_now_ms();
        bool interrupting = atomic_load(&w->interrupt);
        if (now - last_beat >= 500) {
            last_beat = now;
            for (int i = 0; i < w->n; i++) {
                worker_slot *s = &w->slots[i];
                char id[VX_ID_SIZE];
                int attempt;
                double progress;
                pthread_mutex_lock(&s->mu);
                bool busy = s->busy;
                snprintf(id, sizeof id, "%s", s->job_id);
                attempt = s->attempt;
                progress = s->progress;
                pthread_mutex_unlock(&s->mu);
                if (!busy) continue;
                if (interrupting) atomic_store(&s->cancel, true);
                bool cancel_requested = false;
                vx_err err = {0};
                int beat = app->store->ops->job_heartbeat(app->store, id, s->name, attempt, vx_now_ms(),
                                                          (int64_t)app->cfg->lease_s * 1000, progress,
                                                          &cancel_requested, &err);
                if (beat != 0 && err.status != VX_E_CONFLICT) {
                    vx_warn("heartbeat %s: %s", id, err.message);
                    continue;
                }
                if (beat == 0 && !cancel_requested) continue;
                /* The answer is about `id`'s attempt only: the slot may have
                 * finished it meanwhile (a heartbeat racing the finish gets
                 * CONFLICT) and be running its next job, which it must not
                 * abandon. The worker resets these flags under this mutex
                 * when it takes a job, so the check and the set are one. */
                pthread_mutex_lock(&s->mu);
                if (s->busy && s->attempt == attempt && strcmp(s->job_id, id) == 0) {
                    atomic_store(beat != 0 ? &s->lease_lost : &s->user_canceled, true);
                    atomic_store(&s->cancel, true);
                }
                pthread_mutex_unlock(&s->mu);
            }
        }
        if (!atomic_load(&w->stopping) && now - last_reap >= 1000) {
            last_reap = now;
            int requeued = 0, failed = 0;
            vx_err err = {0};
            if (vx_events_reap(app, now, NULL, (int64_t)app->cfg->retry_base_s * 1000, &requeued, &failed,
                               &err) != 0)
                vx_warn("reaper: %s", err.message);
            else if (requeued || failed)
                vx_info("reaper: %d expired lease(s) requeued, %d failed for good", requeued, failed);
            if (requeued) wake(w);
        }
        if (!atomic_load(&w->stopping) && now - last_repair >= REPAIR_EVERY_MS) {
            last_repair = now;
            int repaired = 0;
            vx_err err = {0};
            if (vx_events_repair(app, now, REPAIR_SETTLE_MS, &repaired, &err) != 0)
                vx_warn("event repair: %s", err.message);
        }
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

vx_workers *vx_workers_start(vx_app *app, int n, vx_err *err) {
    vx_workers *w = calloc(1, sizeof *w);
    if (!w) {
        vx_err_set(err, VX_E_INTERNAL, "internal", "out of memory");
        return NULL;
    }
    w->app = app;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    mkdir(app->tmp_dir, 0700);

    /* Leases of an earlier run of this node died with it, but only a node
     * whose id no other live process shares (exclusive_node: serve on its own
     * locked SQLite database, or said so) may take them back before they
     * expire. Anyone else shares the store with live peers whose leases carry
     * the same "<node>/" prefix: it reclaims expired leases only. */
    char prefix[80];
    snprintf(prefix, sizeof prefix, "%s/", app->cfg->node_id);
    bool exclusive = app->cfg->exclusive_node;
    int requeued = 0, failed = 0;
    if (vx_events_reap(app, vx_now_ms(), exclusive ? prefix : NULL,
                       exclusive ? 0 : (int64_t)app->cfg->retry_base_s * 1000, &requeued, &failed, err) != 0)
        goto fail;
    if (requeued || failed)
        vx_info("recovered %d job(s) from %s (%d failed for good after max attempts)", requeued,
                exclusive ? "an earlier run" : "expired leases", failed);

    if (n > 0 && app->store->ops->job_listen) {
        if (app->store->ops->job_listen(app->store, wake, w, err) != 0) goto fail;
        w->listening = true;
    }
    char boot[9];
    vx_random_alnum(boot, 8);
    w->slots = calloc((size_t)(n > 0 ? n : 1), sizeof *w->slots);
    if (!w->slots) {
        vx_err_set(err, VX_E_INTERNAL, "internal", "out of memory");
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        worker_slot *s = &w->slots[i];
        s->pool = w;
        s->index = i;
        snprintf(s->name, sizeof s->name, "%s/%s/w%d", app->cfg->node_id, boot, i);
        pthread_mutex_init(&s->mu, NULL);
        if (pthread_create(&s->thread, NULL, worker_main, s) != 0) {
            vx_err_set(err, VX_E_INTERNAL, "internal", "cannot start worker thread");
            goto fail;
        }
        w->n = i + 1;
    }
    if (pthread_create(&w->keeper, NULL, keeper_main, w) != 0) {
        vx_err_set(err, VX_E_INTERNAL, "internal", "cannot start keeper thread");
        goto fail;
    }
    w->keeper_started = true;
    vx_jobs_set_wake(wake, w);
    return w;
fail:
    vx_workers_stop(w, 0);
    return NULL;
}

void vx_workers_stop(vx_workers *w, int grace_ms) {
    if (!w) return;
    vx_jobs_set_wake(NULL, NULL);
    if (w->listening) w->app->store->ops->job_listen(w->app->store, NULL, NULL, NULL);
    atomic_store(&w->stopping, true);
    wake(w);
    int64_t deadline = vx_mono_ms() + grace_ms;
    while (atomic_load(&w->app->workers_busy) > 0 && vx_mono_ms() < deadline) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    atomic_store(&w->interrupt, true);
    for (int i = 0; i < w->n; i++) atomic_store(&w->slots[i].cancel, true);
    for (int i = 0; i < w->n; i++) {
        pthread_join(w->slots[i].thread, NULL);
        pthread_mutex_destroy(&w->slots[i].mu);
    }
    if (w->keeper_started) pthread_join(w->keeper, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w->slots);
    free(w);
}
