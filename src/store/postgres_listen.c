/* postgres_listen.c - job wake-ups across processes with LISTEN/NOTIFY:
 * transactions that make a job claimable run vx_pg_job_notify (delivered at
 * commit, dropped on rollback), and a listener thread per process holds one
 * connection outside the pool that LISTENs on the schema's channel and calls
 * the worker pool's wake function. After a lost connection it reconnects with
 * back-off and wakes once, since notifications sent meanwhile are gone.
 * vx_pg_job_listen: any thread; the callback runs on the listener thread. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../util/clock.h"
#include "../util/log.h"
#include "postgres_int.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* The channel: one per schema, so test servers sharing a database (each on
 * its own schema) never wake each other. */
#define CHANNEL_SQL "'voxd_jobs.' || COALESCE(current_schema(), '')"

struct vx_pg_listener {
    vx_store *st;
    void (*fn)(void *user);
    void *user;
    pthread_t thread;
    int stop_pipe[2];           /* a byte here ends the thread */
    atomic_bool stopping;
};

int vx_pg_job_notify(vx_pg_conn *c, int64_t due_ms, vx_err *err) {
    vx_pg_args p = {0};
    vx_pg_i64(&p, due_ms);
    return vx_pg_exec_cmd(c, PG_JOB_NOTIFY, "SELECT pg_notify(" CHANNEL_SQL ", $1)", &p, NULL, err);
}

/* Waits up to ms for the stop pipe; true when stopping. */
static bool sleep_or_stop(struct vx_pg_listener *l, int ms) {
    struct pollfd p = {.fd = l->stop_pipe[0], .events = POLLIN};
    return poll(&p, 1, ms) > 0 || atomic_load(&l->stopping);
}

/* A connection that LISTENs on the channel, or NULL. */
static PGconn *listen_conn(struct vx_pg_listener *l) {
    PGconn *pg = vx_pg_connect_new(l->st);
    if (!pg || PQstatus(pg) != CONNECTION_OK) goto fail;
    PGresult *r = PQexec(pg, "SELECT " CHANNEL_SQL);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        PQclear(r);
        goto fail;
    }
    char *ident = PQescapeIdentifier(pg, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    PQclear(r);
    if (!ident) goto fail;
    char sql[256];
    snprintf(sql, sizeof sql, "LISTEN %s", ident);
    PQfreemem(ident);
    r = PQexec(pg, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (ok) return pg;
fail:
    if (pg) PQfinish(pg);
    return NULL;
}

/* Follows one connection until it breaks or the listener stops. A
 * notification's payload is when its job becomes claimable (wall-clock ms,
 * e.g. a retry after back-off): the wake-up waits until then. */
static void follow(struct vx_pg_listener *l, PGconn *pg) {
    int sock = PQsocket(pg);
    int64_t due = 0; /* the earliest wake-up still to come, 0: none */
    while (!atomic_load(&l->stopping)) {
        struct pollfd p[2] = {{.fd = sock, .events = POLLIN}, {.fd = l->stop_pipe[0], .events = POLLIN}};
        int64_t wait = due ? due - vx_now_ms() : -1;
        if (due && wait < 0) wait = 0;
        int rc = poll(p, 2, wait > 60000 ? 60000 : (int)wait);
        if (rc < 0) {
            if (errno == EINTR) continue;
            return;
        }
        if (p[1].revents) return;
        int64_t now = vx_now_ms();
        bool woke = false;
        if (due && now >= due) {
            due = 0;
            woke = true;
        }
        if (p[0].revents) {
            if (!PQconsumeInput(pg)) return;
            PGnotify *n;
            while ((n = PQnotifies(pg))) {
                int64_t at = strtoll(n->extra ? n->extra : "0", NULL, 10);
                PQfreemem(n);
                if (at <= now) woke = true; /* one wake for a burst: the claim loop drains the queue */
                else if (!due || at < due) due = at;
            }
        }
        if (woke) l->fn(l->user);
        if (PQstatus(pg) != CONNECTION_OK) return;
    }
}

static void *listener_main(void *arg) {
    struct vx_pg_listener *l = arg;
    int backoff = 0;
    bool was_down = false;
    while (!atomic_load(&l->stopping)) {
        PGconn *pg = listen_conn(l);
        if (pg) {
            if (was_down) vx_info("postgres: job listener connected again");
            was_down = false;
            backoff = 0;
            l->fn(l->user); /* anything queued while we were away */
            follow(l, pg);
            PQfinish(pg);
            if (atomic_load(&l->stopping)) break;
        }
        if (!was_down) vx_warn("postgres: job listener lost the server; reconnecting (workers poll meanwhile)");
        was_down = true;
        backoff = backoff ? backoff * 2 : BACKOFF_MIN_MS;
        if (backoff > BACKOFF_MAX_MS) backoff = BACKOFF_MAX_MS;
        if (sleep_or_stop(l, backoff)) break;
    }
    return NULL;
}

void vx_pg_listener_free(struct vx_pg_listener *l) {
    if (!l) return;
    atomic_store(&l->stopping, true);
    ssize_t w = write(l->stop_pipe[1], "x", 1);
    (void)w; /* the flag alone stops it at the next wake-up */
    pthread_join(l->thread, NULL);
    close(l->stop_pipe[0]);
    close(l->stop_pipe[1]);
    free(l);
}

int vx_pg_job_listen(vx_store *st, void (*fn)(void *user), void *user, vx_err *err) {
    struct vx_pg_listener **slot = vx_pg_listener_slot(st);
    vx_pg_listener_free(*slot);
    *slot = NULL;
    if (!fn) return 0;
    struct vx_pg_listener *l = calloc(1, sizeof *l);
    if (!l) return vx_pg_oom(err);
    l->st = st;
    l->fn = fn;
    l->user = user;
    if (pipe(l->stop_pipe) != 0) {
        free(l);
        return vx_err_set(err, VX_E_INTERNAL, "internal", "cannot create the job listener's pipe");
    }
    if (pthread_create(&l->thread, NULL, listener_main, l) != 0) {
        close(l->stop_pipe[0]);
        close(l->stop_pipe[1]);
        free(l);
        return vx_err_set(err, VX_E_INTERNAL, "internal", "cannot start the job listener");
    }
    *slot = l;
    return 0;
}
