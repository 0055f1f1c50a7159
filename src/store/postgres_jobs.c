/* postgres_jobs.c - jobs and the job queue of the PostgreSQL store: submit
 * with its hold, listings, cancel, and the worker side (claim with FOR UPDATE
 * SKIP LOCKED, heartbeat, succeed, fail, release, reap). Each hook is one
 * transaction that also writes the matching ledger entry; rows another
 * transaction changes are locked (FOR UPDATE) before they are judged.
 * Callable from any thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "store_int.h"
#include "../util/clock.h"
#include "../util/log.h"
#include "postgres_int.h"

/* Back-off never waits longer than a day between attempts. */
#define BACKOFF_MAX_MS INT64_C(86400000)

#define JOB_COLS                                                                             \
    "id, user_id, model, status, progress, attempts, max_attempts, created_at, started_at, " \
    "finished_at, updated_at, run_after, price_per_job, price_per_second, held, charged, "   \
    "duration_s, params_json, result_json, error_json, input_key, input_name, "              \
    "input_content_type, input_bytes, input_format, output_key, output_content_type, "       \
    "output_bytes, webhook_url, idempotency_key, request_hash, lease_owner, lease_until, "   \
    "cancel_requested"

static const char SQL_GET[] = "SELECT " JOB_COLS " FROM jobs WHERE id = $1";
static const char SQL_GET_LOCK[] = "SELECT " JOB_COLS " FROM jobs WHERE id = $1 FOR UPDATE";
static const char SQL_FINISH[] =
    "UPDATE jobs SET status = $2, finished_at = $3::bigint, updated_at = $3::bigint, lease_until = 0,"
    " error_json = $4 WHERE id = $1";
static const char SQL_REQUEUE[] =
    "UPDATE jobs SET status = 'queued', run_after = $2::bigint, updated_at = $3::bigint, lease_owner = '',"
    " lease_until = 0, progress = 0, error_json = $4 WHERE id = $1";

/* Fills *j from row `row` of JOB_COLS; owned strings are malloc'd. */
static int job_from_row(const PGresult *r, int row, vx_job *j, vx_err *err) {
    memset(j, 0, sizeof *j);
    bool oom = false;
    vx_pg_col_copy(r, row, 0, j->id, sizeof j->id);
    vx_pg_col_copy(r, row, 1, j->user_id, sizeof j->user_id);
    vx_pg_col_copy(r, row, 2, j->model, sizeof j->model);
    if (vx_job_status_parse(PQgetvalue(r, row, 3), &j->status) != 0)
        return vx_err_set(err, VX_E_INTERNAL, "database_error", "unknown job status stored");
    j->progress = vx_pg_col_f64(r, row, 4);
    j->attempts = (int)vx_pg_col_i64(r, row, 5);
    j->max_attempts = (int)vx_pg_col_i64(r, row, 6);
    j->created_at = vx_pg_col_i64(r, row, 7);
    j->started_at = vx_pg_col_i64(r, row, 8);
    j->finished_at = vx_pg_col_i64(r, row, 9);
    j->updated_at = vx_pg_col_i64(r, row, 10);
    j->run_after = vx_pg_col_i64(r, row, 11);
    j->price_per_job = vx_pg_col_i64(r, row, 12);
    j->price_per_second = vx_pg_col_i64(r, row, 13);
    j->held = vx_pg_col_i64(r, row, 14);
    j->charged = vx_pg_col_i64(r, row, 15);
    j->duration_s = vx_pg_col_f64(r, row, 16);
    j->params_json = vx_pg_col_dup(r, row, 17, &oom);
    j->result_json = vx_pg_col_dup(r, row, 18, &oom);
    j->error_json = vx_pg_col_dup(r, row, 19, &oom);
    vx_pg_col_copy(r, row, 20, j->input_key, sizeof j->input_key);
    vx_pg_col_copy(r, row, 21, j->input_name, sizeof j->input_name);
    vx_pg_col_copy(r, row, 22, j->input_content_type, sizeof j->input_content_type);
    j->input_bytes = vx_pg_col_i64(r, row, 23);
    vx_pg_col_copy(r, row, 24, j->input_format, sizeof j->input_format);
    vx_pg_col_copy(r, row, 25, j->output_key, sizeof j->output_key);
    vx_pg_col_copy(r, row, 26, j->output_content_type, sizeof j->output_content_type);
    j->output_bytes = vx_pg_col_i64(r, row, 27);
    j->webhook_url = vx_pg_col_dup(r, row, 28, &oom);
    vx_pg_col_copy(r, row, 29, j->idempotency_key, sizeof j->idempotency_key);
    vx_pg_col_copy(r, row, 30, j->request_hash, sizeof j->request_hash);
    vx_pg_col_copy(r, row, 31, j->lease_owner, sizeof j->lease_owner);
    j->lease_until = vx_pg_col_i64(r, row, 32);
    j->cancel_requested = vx_pg_col_i64(r, row, 33) != 0;
    if (oom) {
        vx_job_clear(j);
        return vx_pg_oom(err);
    }
    return 0;
}

/* Loads one job by id (lock: FOR UPDATE, for a change that follows). */
static int job_load(vx_pg_conn *c, const char *id, bool lock, vx_job *out, vx_err *err) {
    vx_pg_args p = {0};
    vx_pg_text(&p, id);
    PGresult *r = vx_pg_exec(c, lock ? PG_JOB_GET_LOCK : PG_JOB_GET, lock ? SQL_GET_LOCK : SQL_GET, &p, err);
    if (!r) return -1;
    int rc = PQntuples(r) == 0 ? vx_err_set(err, VX_E_NOT_FOUND, "job_not_found", "no such job")
                               : job_from_row(r, 0, out, err);
    PQclear(r);
    return rc;
}

/* Capture (charged of held) or release of a job's hold: ref "settle:<id>". */
static int settle(vx_pg_conn *c, const char *user_id, const char *job_id, vx_ledger_kind kind, int64_t held,
                  int64_t charged, int64_t now, vx_err *err) {
    vx_ledger_entry e;
    vx_store_settle_entry(&e, user_id, job_id, kind, held, charged, now);
    bool replayed;
    vx_balance b;
    if (vx_pg_ledger_post(c, &e, &replayed, &b, err) != 0) return -1;
    if (replayed) vx_warn("store: job %s was already settled", job_id);
    return 0;
}


/* Final state for a running or queued job, with the release of its hold. */
static int finalize_release(vx_pg_conn *c, const char *id, const char *user_id, int64_t held,
                            vx_job_status status, const char *error_json, int64_t now, vx_err *err) {
    vx_pg_args p = {0};
    vx_pg_text(&p, id);
    vx_pg_text(&p, vx_job_status_name(status));
    vx_pg_i64(&p, now);
    vx_pg_text(&p, error_json);
    if (vx_pg_exec_cmd(c, PG_JOB_FINISH, SQL_FINISH, &p, NULL, err) != 0) return -1;
    return settle(c, user_id, id, VX_LEDGER_RELEASE, held, 0, now, err);
}

static int requeue(vx_pg_conn *c, const char *id, int64_t run_after, const char *error_json, int64_t now,
                   vx_err *err) {
    vx_pg_args p = {0};
    vx_pg_text(&p, id);
    vx_pg_i64(&p, run_after);
    vx_pg_i64(&p, now);
    vx_pg_text(&p, error_json);
    if (vx_pg_exec_cmd(c, PG_JOB_REQUEUE, SQL_REQUEUE, &p, NULL, err) != 0) return -1;
    return vx_pg_job_notify(c, run_after, err);
}

struct ready_args { const char *id; int64_t now; };
static int ready_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct ready_args *a = arg;
    vx_pg_args p = {0};
    vx_pg_text(&p, a->id);
    vx_pg_i64(&p, a->now);
    int64_t changed = 0;
    if (vx_pg_exec_cmd(c, PG_JOB_READY, "UPDATE jobs SET run_after = $2::bigint WHERE id = $1"
                       " AND status = 'queued' AND run_after > $2::bigint", &p, &changed, err) != 0)
        return -1;
    return changed ? vx_pg_job_notify(c, a->now, err) : 0;
}

int vx_pg_job_ready(vx_store *st, const char *id, int64_t now, vx_err *err) {
    struct ready_args a = {id, now};
    return vx_pg_run(st, ready_body, &a, err);
}

/* ---- submit, get, list, cancel ------------------------------------------ */

struct submit_args { const vx_job *job; vx_job *existing; const char *upload_id; int64_t now; };

static int submit_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct submit_args *a = arg;
    const vx_job *job = a->job;
    vx_pg_args p = {0};
    if (job->idempotency_key[0]) {
        vx_pg_text(&p, job->user_id);
        vx_pg_text(&p, job->idempotency_key);
        PGresult *r = vx_pg_exec(c, PG_JOB_BY_IDEMPOTENCY, "SELECT " JOB_COLS " FROM jobs WHERE user_id = $1"
                                 " AND idempotency_key = $2", &p, err);
        if (!r) return -1;
        if (PQntuples(r) > 0) {
            int rc = a->existing ? job_from_row(r, 0, a->existing, err) : 0;
            PQclear(r);
            if (rc != 0) return -1;
            return vx_err_set(err, VX_E_CONFLICT, "idempotency_key_reused", "that idempotency key was used before");
        }
        PQclear(r);
    }
    if (a->upload_id && vx_pg_upload_take(c, a->upload_id, job->user_id, job->id, a->now, err) != 0) return -1;
    p.n = 0;
    vx_pg_text(&p, job->id);
    vx_pg_text(&p, job->user_id);
    vx_pg_text(&p, job->model);
    vx_pg_i64(&p, job->max_attempts);
    vx_pg_i64(&p, job->created_at);
    vx_pg_i64(&p, job->created_at);
    vx_pg_i64(&p, job->run_after);
    vx_pg_i64(&p, job->price_per_job);
    vx_pg_i64(&p, job->price_per_second);
    vx_pg_i64(&p, job->held);
    vx_pg_f64(&p, job->duration_s);
    vx_pg_text(&p, job->params_json);
    vx_pg_text(&p, job->input_key);
    vx_pg_text(&p, job->input_name);
    vx_pg_text(&p, job->input_content_type);
    vx_pg_i64(&p, job->input_bytes);
    vx_pg_text(&p, job->input_format);
    vx_pg_text(&p, job->webhook_url);
    vx_pg_text(&p, job->idempotency_key[0] ? job->idempotency_key : NULL);
    vx_pg_text(&p, job->request_hash);
    if (vx_pg_exec_cmd(c, PG_JOB_INSERT, "INSERT INTO jobs (" JOB_COLS ") VALUES ($1, $2, $3, 'queued', 0, 0,"
                       " $4::integer, $5::bigint, 0, 0, $6::bigint, $7::bigint, $8::bigint, $9::bigint,"
                       " $10::bigint, 0, $11::double precision, $12, NULL, NULL, $13, $14, $15, $16::bigint,"
                       " $17, '', '', 0, $18, $19, $20, '', 0, 0)", &p, NULL, err) != 0) {
        if (strcmp(vx_pg_sqlstate(c), "23505") == 0) {
            if (strcmp(vx_pg_constraint(c), "jobs_idempotency") == 0) {
                vx_pg_retry(c); /* a concurrent submit with the key won: the next try reports it */
                return -1;
            }
            return vx_err_set(err, VX_E_CONFLICT, "job_exists", "a job with that id exists");
        }
        return -1;
    }
    vx_ledger_entry e;
    vx_store_hold_entry(&e, job->user_id, job->id, job->held, 0, job->created_at);
    bool replayed;
    vx_balance b;
    if (vx_pg_ledger_post(c, &e, &replayed, &b, err) != 0) return -1;
    return vx_pg_job_notify(c, job->run_after, err);
}

int vx_pg_job_insert(vx_pg_conn *c, const vx_job *job, vx_err *err) {
    struct submit_args a = {job, NULL, NULL, 0};
    return submit_body(c, &a, err);
}

int vx_pg_job_submit(vx_store *st, const vx_job *job, vx_job *existing, vx_err *err) {
    if (existing) memset(existing, 0, sizeof *existing);
    if (!job->id[0] || !job->user_id[0] || !job->model[0] || job->held < 0 || job->max_attempts < 1)
        return vx_err_set(err, VX_E_INVALID, "invalid_job", "a job needs an id, user, model and max_attempts");
    struct submit_args a = {job, existing, NULL, 0};
    return vx_pg_run(st, submit_body, &a, err);
}

int vx_pg_job_submit_upload(vx_store *st, const vx_job *job, const char *upload_id, int64_t now,
                            vx_job *existing, vx_err *err) {
    if (existing) memset(existing, 0, sizeof *existing);
    if (!job->id[0] || !job->user_id[0] || !job->model[0] || job->held < 0 || job->max_attempts < 1)
        return vx_err_set(err, VX_E_INVALID, "invalid_job", "a job needs an id, user, model and max_attempts");
    struct submit_args a = {job, existing, upload_id, now};
    return vx_pg_run(st, submit_body, &a, err);
}

struct get_args { const char *id; vx_job *out; };
static int get_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct get_args *a = arg;
    return job_load(c, a->id, false, a->out, err);
}

int vx_pg_job_get(vx_store *st, const char *id, vx_job *out, vx_err *err) {
    memset(out, 0, sizeof *out);
    struct get_args a = {id, out};
    return vx_pg_run(st, get_body, &a, err);
}

struct list_args { const vx_job_filter *f; int limit; vx_job *list; size_t n; };
static int list_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct list_args *a = arg;
    const vx_job_filter *f = a->f;
    vx_pg_args p = {0};
    vx_pg_text(&p, f->user_id ? f->user_id : "");
    vx_pg_text(&p, f->cursor && *f->cursor ? f->cursor : VX_PG_CURSOR_TOP);
    vx_pg_text(&p, f->model);
    vx_pg_text(&p, f->status >= 0 ? vx_job_status_name((vx_job_status)f->status) : NULL);
    vx_pg_i64(&p, a->limit);
    /* Two statements so the per-user listing walks the (user_id, id) index. */
    PGresult *r = f->user_id
        ? vx_pg_exec(c, PG_JOB_LIST_USER, "SELECT " JOB_COLS " FROM jobs WHERE user_id = $1 AND id < $2"
                     " AND ($3::text IS NULL OR model = $3) AND ($4::text IS NULL OR status = $4)"
                     " ORDER BY id DESC LIMIT $5::integer", &p, err)
        : vx_pg_exec(c, PG_JOB_LIST_ALL, "SELECT " JOB_COLS " FROM jobs WHERE $1::text IS NOT NULL AND id < $2"
                     " AND ($3::text IS NULL OR model = $3) AND ($4::text IS NULL OR status = $4)"
                     " ORDER BY id DESC LIMIT $5::integer", &p, err);
    if (!r) return -1;
    int rows = PQntuples(r);
    for (int i = 0; i < rows; i++) {
        if (job_from_row(r, i, &a->list[i], err) != 0) {
            for (int k = 0; k < i; k++) vx_job_clear(&a->list[k]);
            PQclear(r);
            return -1;
        }
    }
    a->n = (size_t)rows;
    PQclear(r);
    return 0;
}

/* Caller frees *out with vx_job_list_free. */
int vx_pg_job_list(vx_store *st, const vx_job_filter *f, vx_job **out, size_t *n, vx_err *err) {
    *out = NULL;
    *n = 0;
    if (f->status < -1 || f->status >= VX_JOB_STATUS_COUNT)
        return vx_err_set(err, VX_E_INVALID, "invalid_status", "unknown job status");
    struct list_args a = {f, vx_pg_clamp_limit(f->limit), NULL, 0};
    if (!(a.list = calloc((size_t)a.limit, sizeof *a.list))) return vx_pg_oom(err);
    int rc = vx_pg_run(st, list_body, &a, err);
    if (rc != 0 || a.n == 0) {
        vx_job_list_free(a.list, a.n);
        return rc;
    }
    *out = a.list;
    *n = a.n;
    return 0;
}

struct cancel_args { const char *id; int64_t now; vx_job *out; };
static int cancel_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct cancel_args *a = arg;
    vx_job j = {0};
    int rc = job_load(c, a->id, true, &j, err);
    if (rc != 0) return -1;
    rc = -1;
    if (j.status == VX_JOB_QUEUED) {
        if (finalize_release(c, j.id, j.user_id, j.held, VX_JOB_CANCELED, j.error_json, a->now, err) != 0) goto out;
    } else if (j.status == VX_JOB_RUNNING) {
        vx_pg_args p = {0};
        vx_pg_text(&p, a->id);
        vx_pg_i64(&p, a->now);
        if (vx_pg_exec_cmd(c, PG_JOB_CANCEL_RUNNING, "UPDATE jobs SET cancel_requested = 1, updated_at = $2::bigint"
                           " WHERE id = $1", &p, NULL, err) != 0)
            goto out;
    } else {
        vx_err_set(err, VX_E_CONFLICT, "job_finished", "the job has already finished");
        goto out;
    }
    rc = a->out ? job_load(c, a->id, false, a->out, err) : 0;
out:
    vx_job_clear(&j);
    return rc;
}

int vx_pg_job_cancel(vx_store *st, const char *id, int64_t now, vx_job *out, vx_err *err) {
    if (out) memset(out, 0, sizeof *out);
    struct cancel_args a = {id, now, out};
    int rc = vx_pg_run(st, cancel_body, &a, err);
    if (rc != 0 && out) vx_job_clear(out);
    return rc;
}

/* ---- the worker side -------------------------------------------------------- */

struct claim_args { const char *worker; int64_t now, lease_ms; vx_job *out; };
static int claim_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct claim_args *a = arg;
    vx_pg_args p = {0};
    vx_pg_text(&p, a->worker);
    vx_pg_i64(&p, a->now);
    vx_pg_i64(&p, a->lease_ms);
    /* SKIP LOCKED: claimers never wait on each other's candidate rows; a row
     * claimed and committed meanwhile fails the re-checked status test. */
    PGresult *r = vx_pg_exec(c, PG_JOB_CLAIM,
        "UPDATE jobs SET status = 'running', lease_owner = $1, lease_until = $2::bigint + $3::bigint,"
        " attempts = attempts + 1, updated_at = $2::bigint,"
        " started_at = CASE WHEN started_at = 0 THEN $2::bigint ELSE started_at END"
        " WHERE id = (SELECT id FROM jobs WHERE status = 'queued' AND run_after <= $2::bigint"
        "             ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)"
        " RETURNING " JOB_COLS, &p, err);
    if (!r) return -1;
    int rc = PQntuples(r) == 0 ? vx_err_set(err, VX_E_NOT_FOUND, "queue_empty", "no job is ready")
                               : job_from_row(r, 0, a->out, err);
    PQclear(r);
    return rc;
}

int vx_pg_job_claim(vx_store *st, const char *worker, int64_t now, int64_t lease_ms, vx_job *out, vx_err *err) {
    memset(out, 0, sizeof *out);
    struct claim_args a = {worker, now, lease_ms, out};
    int rc = vx_pg_run(st, claim_body, &a, err);
    if (rc != 0) vx_job_clear(out);
    return rc;
}

struct heartbeat_args { const char *id, *worker; int attempt; int64_t now, lease_ms; double progress; bool cancel; };
static int heartbeat_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct heartbeat_args *a = arg;
    vx_pg_args p = {0};
    vx_pg_text(&p, a->id);
    vx_pg_text(&p, a->worker);
    vx_pg_i64(&p, a->attempt);
    vx_pg_i64(&p, a->now);
    vx_pg_i64(&p, a->lease_ms);
    vx_pg_f64(&p, a->progress);
    PGresult *r = vx_pg_exec(c, PG_JOB_HEARTBEAT,
        "UPDATE jobs SET lease_until = $4::bigint + $5::bigint, progress = $6::double precision,"
        " updated_at = $4::bigint WHERE id = $1 AND status = 'running' AND lease_owner = $2"
        " AND attempts = $3::integer RETURNING cancel_requested", &p, err);
    if (!r) return -1;
    int rc = 0;
    if (PQntuples(r) == 0) rc = vx_err_set(err, VX_E_CONFLICT, "lease_lost", "the job is no longer leased to this worker");
    else a->cancel = vx_pg_col_i64(r, 0, 0) != 0;
    PQclear(r);
    return rc;
}

int vx_pg_job_heartbeat(vx_store *st, const char *id, const char *worker, int attempt, int64_t now,
                        int64_t lease_ms, double progress, bool *cancel_requested, vx_err *err) {
    if (!(progress >= 0)) progress = 0; /* also catches NaN */
    if (progress > 1) progress = 1;
    struct heartbeat_args a = {id, worker, attempt, now, lease_ms, progress, false};
    if (vx_pg_run(st, heartbeat_body, &a, err) != 0) return -1;
    if (cancel_requested) *cancel_requested = a.cancel;
    return 0;
}

/* What the lease check learns about a job we still own (its row locked). */
typedef struct lease_row {
    char user_id[VX_ID_SIZE];
    int64_t held;
    bool cancel_requested;
    char *error_json;
    int attempts, max_attempts;
} lease_row;

static int lease_check(vx_pg_conn *c, const char *id, const char *worker, int attempt, lease_row *l,
                       vx_err *err) {
    memset(l, 0, sizeof *l);
    vx_pg_args p = {0};
    vx_pg_text(&p, id);
    vx_pg_text(&p, worker);
    vx_pg_i64(&p, attempt);
    PGresult *r = vx_pg_exec(c, PG_JOB_LEASE,
        "SELECT user_id, held, cancel_requested, error_json, attempts, max_attempts FROM jobs"
        " WHERE id = $1 AND status = 'running' AND lease_owner = $2 AND attempts = $3::integer FOR UPDATE",
        &p, err);
    if (!r) return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return vx_err_set(err, VX_E_CONFLICT, "lease_lost", "the job is no longer leased to this worker");
    }
    bool oom = false;
    vx_pg_col_copy(r, 0, 0, l->user_id, sizeof l->user_id);
    l->held = vx_pg_col_i64(r, 0, 1);
    l->cancel_requested = vx_pg_col_i64(r, 0, 2) != 0;
    l->error_json = vx_pg_col_dup(r, 0, 3, &oom);
    l->attempts = (int)vx_pg_col_i64(r, 0, 4);
    l->max_attempts = (int)vx_pg_col_i64(r, 0, 5);
    PQclear(r);
    return oom ? vx_pg_oom(err) : 0;
}

struct succeed_args { const vx_job *done; const char *worker; int64_t now; };
static int succeed_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct succeed_args *a = arg;
    const vx_job *done = a->done;
    lease_row l;
    int rc = lease_check(c, done->id, a->worker, done->attempts, &l, err);
    if (rc != 0) return -1;
    rc = -1;
    if (done->charged < 0 || done->charged > l.held) {
        vx_err_set(err, VX_E_INVALID, "charge_exceeds_hold", "a job cannot cost more than its hold");
        goto out;
    }
    vx_pg_args p = {0};
    vx_pg_text(&p, done->id);
    vx_pg_text(&p, done->result_json);
    vx_pg_text(&p, done->output_key);
    vx_pg_text(&p, done->output_content_type);
    vx_pg_i64(&p, done->output_bytes);
    vx_pg_i64(&p, done->charged);
    vx_pg_i64(&p, a->now);
    if (vx_pg_exec_cmd(c, PG_JOB_SUCCEED,
                       "UPDATE jobs SET status = 'succeeded', progress = 1, result_json = $2, output_key = $3,"
                       " output_content_type = $4, output_bytes = $5::bigint, charged = $6::bigint,"
                       " finished_at = $7::bigint, updated_at = $7::bigint, lease_until = 0 WHERE id = $1",
                       &p, NULL, err) != 0)
        goto out;
    rc = settle(c, l.user_id, done->id, VX_LEDGER_CAPTURE, l.held, done->charged, a->now, err);
out:
    free(l.error_json);
    return rc;
}

int vx_pg_job_succeed(vx_store *st, const vx_job *done, const char *worker, int64_t now, vx_err *err) {
    struct succeed_args a = {done, worker, now};
    return vx_pg_run(st, succeed_body, &a, err);
}

struct fail_args {
    const char *id, *worker, *code, *message;
    int attempt;
    int64_t retry_at, now;
    bool canceled;
};
static int fail_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct fail_args *a = arg;
    lease_row l;
    char *errors = NULL;
    int rc = lease_check(c, a->id, a->worker, a->attempt, &l, err);
    if (rc != 0) return -1;
    if (!(errors = vx_store_errors_append(l.error_json, a->attempt, a->code, a->message, a->now))) {
        rc = vx_pg_oom(err);
        goto out;
    }
    /* A canceled job, or one out of attempts, is never retried. */
    bool retry = a->retry_at > 0 && !a->canceled && !l.cancel_requested && l.attempts < l.max_attempts;
    if (retry)
        rc = requeue(c, a->id, a->retry_at, errors, a->now, err);
    else
        rc = finalize_release(c, a->id, l.user_id, l.held,
                              a->canceled || l.cancel_requested ? VX_JOB_CANCELED : VX_JOB_FAILED, errors,
                              a->now, err);
out:
    free(errors);
    free(l.error_json);
    return rc;
}

int vx_pg_job_fail(vx_store *st, const char *id, const char *worker, int attempt, const char *code,
                   const char *message, int64_t retry_at, bool canceled, int64_t now, vx_err *err) {
    struct fail_args a = {id, worker, code, message, attempt, retry_at, now, canceled};
    return vx_pg_run(st, fail_body, &a, err);
}

struct release_args { const char *id, *worker; int attempt; int64_t now; };
static int release_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct release_args *a = arg;
    lease_row l;
    int rc = lease_check(c, a->id, a->worker, a->attempt, &l, err);
    if (rc != 0) return -1;
    if (l.cancel_requested) {
        /* Nobody will run it again: the cancel the user asked for wins. */
        rc = finalize_release(c, a->id, l.user_id, l.held, VX_JOB_CANCELED, l.error_json, a->now, err);
    } else {
        vx_pg_args p = {0};
        vx_pg_text(&p, a->id);
        vx_pg_i64(&p, a->now);
        rc = vx_pg_exec_cmd(c, PG_JOB_RELEASE,
                            "UPDATE jobs SET status = 'queued', attempts = attempts - 1, lease_owner = '',"
                            " lease_until = 0, run_after = $2::bigint, updated_at = $2::bigint, progress = 0"
                            " WHERE id = $1", &p, NULL, err);
        if (rc == 0) rc = vx_pg_job_notify(c, a->now, err);
    }
    free(l.error_json);
    return rc;
}

int vx_pg_job_release(vx_store *st, const char *id, const char *worker, int attempt, int64_t now, vx_err *err) {
    struct release_args a = {id, worker, attempt, now};
    return vx_pg_run(st, release_body, &a, err);
}

static int64_t backoff_delay(int64_t backoff_ms, int attempts) {
    if (backoff_ms <= 0) return 0;
    int64_t d = backoff_ms > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff_ms;
    for (int i = 1; i < attempts && d < BACKOFF_MAX_MS; i++) d *= 2;
    return d > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : d;
}

/* A stream's job whose node is gone: failed, with a capture of what its
 * recorded seconds cost. */
static int finalize_capture(vx_pg_conn *c, const char *id, const char *user_id, int64_t held, int64_t charged,
                            const char *error_json, int64_t now, vx_err *err) {
    vx_pg_args p = {0};
    vx_pg_text(&p, id);
    vx_pg_text(&p, vx_job_status_name(VX_JOB_FAILED));
    vx_pg_i64(&p, now);
    vx_pg_text(&p, error_json);
    if (vx_pg_exec_cmd(c, PG_JOB_FINISH, SQL_FINISH, &p, NULL, err) != 0) return -1;
    if (charged < 0) charged = 0;
    if (charged > held) charged = held;
    return settle(c, user_id, id, VX_LEDGER_CAPTURE, held, charged, now, err);
}

struct reap_args { int64_t now; const char *owner_prefix; int64_t backoff_ms; int requeued, failed; };
static int reap_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct reap_args *a = arg;
    a->requeued = a->failed = 0;
    vx_pg_args p = {0};
    vx_pg_i64(&p, a->now);
    vx_pg_text(&p, a->owner_prefix && *a->owner_prefix ? a->owner_prefix : NULL);
    /* Rows another transaction holds (a heartbeat, a finish) are skipped:
     * they are live or about to leave the running state anyway. */
    PGresult *r = vx_pg_exec(c, PG_JOB_REAP_SELECT,
        "SELECT id, user_id, held, attempts, max_attempts, cancel_requested, error_json, charged,"
        " (input_format = '" VX_JOB_STREAM_FORMAT "')::int FROM jobs"
        " WHERE status = 'running' AND (lease_until < $1::bigint"
        "  OR ($2::text IS NOT NULL AND left(lease_owner, length($2::text)) = $2::text))"
        " ORDER BY id FOR UPDATE SKIP LOCKED", &p, err);
    if (!r) return -1;
    int rc = 0, rows = PQntuples(r);
    for (int i = 0; i < rows && rc == 0; i++) {
        const char *id = PQgetvalue(r, i, 0), *user_id = PQgetvalue(r, i, 1);
        int64_t held = vx_pg_col_i64(r, i, 2);
        int attempts = (int)vx_pg_col_i64(r, i, 3), max_attempts = (int)vx_pg_col_i64(r, i, 4);
        bool cancel = vx_pg_col_i64(r, i, 5) != 0;
        char *errors = vx_store_errors_append(PQgetisnull(r, i, 6) ? NULL : PQgetvalue(r, i, 6), attempts,
                                     "lease_expired", "the worker stopped before finishing the job", a->now);
        if (!errors) {
            rc = vx_pg_oom(err);
            break;
        }
        if (vx_pg_col_i64(r, i, 8) != 0) {
            /* The node serving the stream is gone, and with it the audio:
             * charge the seconds it last recorded, release the rest. */
            rc = finalize_capture(c, id, user_id, held, vx_pg_col_i64(r, i, 7), errors, a->now, err);
            a->failed++;
        } else if (!cancel && attempts < max_attempts) {
            rc = requeue(c, id, a->now + backoff_delay(a->backoff_ms, attempts), errors, a->now, err);
            a->requeued++;
        } else {
            rc = finalize_release(c, id, user_id, held, cancel ? VX_JOB_CANCELED : VX_JOB_FAILED, errors,
                                  a->now, err);
            a->failed++;
        }
        free(errors);
    }
    PQclear(r);
    return rc;
}

int vx_pg_job_reap(vx_store *st, int64_t now, const char *owner_prefix, int64_t backoff_ms, int *requeued,
                   int *failed, vx_err *err) {
    struct reap_args a = {now, owner_prefix, backoff_ms, 0, 0};
    int rc = vx_pg_run(st, reap_body, &a, err);
    if (requeued) *requeued = rc == 0 ? a.requeued : 0;
    if (failed) *failed = rc == 0 ? a.failed : 0;
    if (rc == 0 && (a.requeued || a.failed))
        vx_info("store: reaped %d expired leases (%d requeued, %d failed)", a.requeued + a.failed, a.requeued,
                a.failed);
    return rc;
}

static int counts_body(vx_pg_conn *c, void *arg, vx_err *err) {
    int64_t *counts = arg;
    PGresult *r = vx_pg_exec(c, PG_JOB_COUNTS, "SELECT status, COUNT(*) FROM jobs GROUP BY status", NULL, err);
    if (!r) return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        vx_job_status status;
        if (vx_job_status_parse(PQgetvalue(r, i, 0), &status) == 0) counts[status] = vx_pg_col_i64(r, i, 1);
    }
    PQclear(r);
    return 0;
}

int vx_pg_job_counts(vx_store *st, int64_t counts[VX_JOB_STATUS_COUNT], vx_err *err) {
    for (int i = 0; i < VX_JOB_STATUS_COUNT; i++) counts[i] = 0;
    return vx_pg_run(st, counts_body, counts, err);
}
