/* sweeper.c - the orphan-object sweeper thread (see sweeper.h). The lease
 * outlives one interval, so the node that holds it keeps renewing it and the
 * others skip; when that node dies its lease runs out and another takes over.
 * Totals go to app->sweep for /metrics. Threads: start/stop from main. */
#include "sweeper.h"
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include "../core/uploads.h"
#include "../util/clock.h"
#include "../util/log.h"

#define LEASE_NAME "sweeper"

struct vx_sweeper {
    vx_app *app;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool stopping;
    char owner[96];
};

static void sweep_once(vx_sweeper *s) {
    vx_app *app = s->app;
    int64_t now = vx_now_ms(), interval_ms = (int64_t)app->cfg->sweep_interval_s * 1000;
    bool mine = false;
    vx_err err = {0};
    if (app->store->ops->lease_acquire(app->store, LEASE_NAME, s->owner, now, 2 * interval_ms + 60000, &mine,
                                       &err) != 0) {
        vx_warn("sweeper: cannot take the sweep lease: %s", err.message);
        return;
    }
    if (!mine) return; /* another node sweeps */
    vx_sweep_stats st;
    int rc = vx_uploads_sweep(app, now, (int64_t)app->cfg->sweep_grace_s * 1000, &st, &err);
    atomic_fetch_add(&app->sweep.runs, 1);
    atomic_fetch_add(&app->sweep.removed, st.removed);
    atomic_fetch_add(&app->sweep.expired_uploads, st.expired_uploads);
    atomic_fetch_add(&app->sweep.failed, st.failed + (rc != 0));
    if (rc != 0) vx_warn("sweeper: sweep failed: %s (%s)", err.message, err.code);
    vx_info("sweeper: listed=%lld removed=%lld expired_uploads=%lld failed=%lld in %lld ms", (long long)st.listed,
            (long long)st.removed, (long long)st.expired_uploads, (long long)st.failed,
            (long long)(vx_now_ms() - now));
}

static void *sweeper_main(void *arg) {
    vx_sweeper *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        pthread_mutex_unlock(&s->mu);
        sweep_once(s);
        pthread_mutex_lock(&s->mu);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += s->app->cfg->sweep_interval_s;
        while (!s->stopping && pthread_cond_timedwait(&s->cond, &s->mu, &until) == 0) {
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Returns a sweeper the caller stops with vx_sweeper_stop. */
vx_sweeper *vx_sweeper_start(vx_app *app, vx_err *err) {
    if (app->cfg->sweep_interval_s <= 0) return NULL;
    vx_sweeper *s = calloc(1, sizeof *s);
    if (!s) {
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        return NULL;
    }
    s->app = app;
    snprintf(s->owner, sizeof s->owner, "%s/%ld", app->cfg->node_id, (long)getpid());
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);
    if (pthread_create(&s->thread, NULL, sweeper_main, s) != 0) {
        vx_err_set(err, VX_E_INTERNAL, "internal", "cannot start the sweeper thread");
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cond);
        free(s);
        return NULL;
    }
    return s;
}

void vx_sweeper_stop(vx_sweeper *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cond);
    free(s);
}
