/* sqlite_jobs.c - jobs and the job queue of the SQLite store: submit with its
 * hold, listings, cancel, and the worker side (claim, heartbeat, succeed,
 * fail, release, reap). Every state change is one BEGIN IMMEDIATE transaction
 * that also writes the matching ledger entry. Callable from any thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "store_int.h"
#include "../util/clock.h"
#include "../util/log.h"
#include "sqlite_int.h"

/* Back-off never waits longer than a day between attempts. */
#define BACKOFF_MAX_MS INT64_C(86400000)

#define JOB_COLS                                                                             \
    "id, user_id, model, status, progress, attempts, max_attempts, created_at, started_at, " \
    "finished_at, updated_at, run_after, price_per_job, price_per_second, held, charged, "   \
    "duration_s, params_json, result_json, error_json, input_key, input_name, "              \
    "input_content_type, input_bytes, input_format, output_key, output_content_type, "       \
    "output_bytes, webhook_url, idempotency_key, request_hash, lease_owner, lease_until, "   \
    "cancel_requested"

/* Ownership test shared by heartbeat's siblings: the job is still ours. */
static const char SQL_LEASE[] =
    "SELECT user_id, held, cancel_requested, error_json, attempts, max_attempts FROM jobs"
    " WHERE id = ?1 AND status = 'running' AND lease_owner = ?2 AND attempts = ?3";
static const char SQL_GET[] = "SELECT " JOB_COLS " FROM jobs WHERE id = ?";
static const char SQL_FINISH[] =
    "UPDATE jobs SET status = ?2, finished_at = ?3, updated_at = ?3, lease_until = 0,"
    " error_json = ?4 WHERE id = ?1";
static const char SQL_REQUEUE[] =
    "UPDATE jobs SET status = 'queued', run_after = ?2, updated_at = ?3, lease_owner = '',"
    " lease_until = 0, progress = 0, error_json = ?4 WHERE id = ?1";

static char *dup_column(sqlite3_stmt *s, int col, bool *oom) {
    const unsigned char *t = sqlite3_column_text(s, col);
    if (!t) return NULL;
    char *d = strdup((const char *)t);
    if (!d) *oom = true;
    return d;
}

static int status_parse_col(sqlite3_stmt *s, int col, vx_job_status *out) {
    const unsigned char *t = sqlite3_column_text(s, col);
    return t ? vx_job_status_parse((const char *)t, out) : -1;
}

/* Fills *j from a row of JOB_COLS; owned strings are malloc'd. */
static int job_from_row(sqlite3_stmt *s, vx_job *j, vx_err *err) {
    memset(j, 0, sizeof *j);
    bool oom = false;
    vx_sqlite_copy_text(s, 0, j->id, sizeof j->id);
    vx_sqlite_copy_text(s, 1, j->user_id, sizeof j->user_id);
    vx_sqlite_copy_text(s, 2, j->model, sizeof j->model);
    if (status_parse_col(s, 3, &j->status) != 0)
        return vx_err_set(err, VX_E_INTERNAL, "database_error", "unknown job status stored");
    j->progress = sqlite3_column_double(s, 4);
    j->attempts = sqlite3_column_int(s, 5);
    j->max_attempts = sqlite3_column_int(s, 6);
    j->created_at = sqlite3_column_int64(s, 7);
    j->started_at = sqlite3_column_int64(s, 8);
    j->finished_at = sqlite3_column_int64(s, 9);
    j->updated_at = sqlite3_column_int64(s, 10);
    j->run_after = sqlite3_column_int64(s, 11);
    j->price_per_job = sqlite3_column_int64(s, 12);
    j->price_per_second = sqlite3_column_int64(s, 13);
    j->held = sqlite3_column_int64(s, 14);
    j->charged = sqlite3_column_int64(s, 15);
    j->duration_s = sqlite3_column_double(s, 16);
    j->params_json = dup_column(s, 17, &oom);
    j->result_json = dup_column(s, 18, &oom);
    j->error_json = dup_column(s, 19, &oom);
    vx_sqlite_copy_text(s, 20, j->input_key, sizeof j->input_key);
    vx_sqlite_copy_text(s, 21, j->input_name, sizeof j->input_name);
    vx_sqlite_copy_text(s, 22, j->input_content_type, sizeof j->input_content_type);
    j->input_bytes = sqlite3_column_int64(s, 23);
    vx_sqlite_copy_text(s, 24, j->input_format, sizeof j->input_format);
    vx_sqlite_copy_text(s, 25, j->output_key, sizeof j->output_key);
    vx_sqlite_copy_text(s, 26, j->output_content_type, sizeof j->output_content_type);
    j->output_bytes = sqlite3_column_int64(s, 27);
    j->webhook_url = dup_column(s, 28, &oom);
    vx_sqlite_copy_text(s, 29, j->idempotency_key, sizeof j->idempotency_key);
    vx_sqlite_copy_text(s, 30, j->request_hash, sizeof j->request_hash);
    vx_sqlite_copy_text(s, 31, j->lease_owner, sizeof j->lease_owner);
    j->lease_until = sqlite3_column_int64(s, 32);
    j->cancel_requested = sqlite3_column_int(s, 33) != 0;
    if (oom) {
        vx_job_clear(j);
        return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
    }
    return 0;
}

/* Loads one job by id on connection c (inside or outside a transaction). */
static int job_load(vx_sqlite_conn *c, const char *id, vx_job *out, vx_err *err) {
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_JOB_GET, SQL_GET, err);
    if (!s) return -1;
    vx_sqlite_bind_text(s, 1, id);
    int r = sqlite3_step(s);
    if (r == SQLITE_DONE) return vx_err_set(err, VX_E_NOT_FOUND, "job_not_found", "no such job");
    if (r != SQLITE_ROW) return vx_sqlite_fail(c, r, err);
    int rc = job_from_row(s, out, err);
    sqlite3_reset(s);
    return rc;
}

/* Capture (charged of held) or release of a job's hold: ref "settle:<id>". */
static int settle(vx_sqlite_conn *c, const char *user_id, const char *job_id, vx_ledger_kind kind,
                  int64_t held, int64_t charged, int64_t now, vx_err *err) {
    vx_ledger_entry e;
    vx_store_settle_entry(&e, user_id, job_id, kind, held, charged, now);
    bool replayed;
    vx_balance b;
    if (vx_sqlite_ledger_post(c, &e, &replayed, &b, err) != 0) return -1;
    if (replayed) vx_warn("store: job %s was already settled", job_id);
    return 0;
}


static int step_done(vx_sqlite_conn *c, sqlite3_stmt *s, vx_err *err) {
    int r = sqlite3_step(s);
    return r == SQLITE_DONE ? 0 : vx_sqlite_fail(c, r, err);
}

/* Final state for a running or queued job, with the release of its hold. */
static int finalize_release(vx_sqlite_conn *c, const char *id, const char *user_id, int64_t held,
                            vx_job_status status, const char *error_json, int64_t now, vx_err *err) {
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_JOB_FINISH, SQL_FINISH, err);
    if (!s) return -1;
    vx_sqlite_bind_text(s, 1, id);
    vx_sqlite_bind_text(s, 2, vx_job_status_name(status));
    sqlite3_bind_int64(s, 3, now);
    vx_sqlite_bind_text(s, 4, error_json);
    if (step_done(c, s, err) != 0) return -1;
    return settle(c, user_id, id, VX_LEDGER_RELEASE, held, 0, now, err);
}

static int requeue(vx_sqlite_conn *c, const char *id, int64_t run_after, const char *error_json,
                   int64_t now, vx_err *err) {
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_JOB_REQUEUE, SQL_REQUEUE, err);
    if (!s) return -1;
    vx_sqlite_bind_text(s, 1, id);
    sqlite3_bind_int64(s, 2, run_after);
    sqlite3_bind_int64(s, 3, now);
    vx_sqlite_bind_text(s, 4, error_json);
    return step_done(c, s, err);
}

/* ---- submit, get, list, cancel ------------------------------------------ */

/* Inserts a queued job and its hold entry (ref "hold:<id>") inside the
 * caller's transaction. */
int vx_sqlite_job_insert(vx_sqlite_conn *c, const vx_job *job, vx_err *err) {
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_JOB_INSERT, "INSERT INTO jobs (" JOB_COLS ") VALUES ("
                       "?, ?, ?, 'queued', 0, 0, ?, ?, 0, 0, ?, ?, ?, ?, ?, 0, ?, ?, NULL, NULL,"
                       " ?, ?, ?, ?, ?, '', '', 0, ?, ?, ?, '', 0, 0)", err);
    if (!s) return -1;
    int i = 1;
    vx_sqlite_bind_text(s, i++, job->id);
    vx_sqlite_bind_text(s, i++, job->user_id);
    vx_sqlite_bind_text(s, i++, job->model);
    sqlite3_bind_int(s, i++, job->max_attempts);
    sqlite3_bind_int64(s, i++, job->created_at);
    sqlite3_bind_int64(s, i++, job->created_at);
    sqlite3_bind_int64(s, i++, job->run_after);
    sqlite3_bind_int64(s, i++, job->price_per_job);
    sqlite3_bind_int64(s, i++, job->price_per_second);
    sqlite3_bind_int64(s, i++, job->held);
    sqlite3_bind_double(s, i++, job->duration_s);
    vx_sqlite_bind_text(s, i++, job->params_json);
    vx_sqlite_bind_text(s, i++, job->input_key);
    vx_sqlite_bind_text(s, i++, job->input_name);
    vx_sqlite_bind_text(s, i++, job->input_content_type);
    sqlite3_bind_int64(s, i++, job->input_bytes);
    vx_sqlite_bind_text(s, i++, job->input_format);
    vx_sqlite_bind_text(s, i++, job->webhook_url);
    vx_sqlite_bind_text(s, i++, job->idempotency_key[0] ? job->idempotency_key : NULL);
    vx_sqlite_bind_text(s, i++, job->request_hash);
    int r = sqlite3_step(s);
    if (r == SQLITE_CONSTRAINT_PRIMARYKEY || r == SQLITE_CONSTRAINT_UNIQUE) {
        vx_err_set(err, VX_E_CONFLICT, "job_exists", "a job with that id exists");
        return -1;
    }
    if (r == SQLITE_CONSTRAINT_FOREIGNKEY) {
        vx_err_set(err, VX_E_NOT_FOUND, "user_not_found", "no such user");
        return -1;
    }
    if (r != SQLITE_DONE) {
        vx_sqlite_fail(c, r, err);
        return -1;
    }
    vx_ledger_entry e;
    vx_store_hold_entry(&e, job->user_id, job->id, job->held, 0, job->created_at);
    bool replayed;
    vx_balance b;
    if (vx_sqlite_ledger_post(c, &e, &replayed, &b, err) != 0) return -1;
    return 0;
}

/* job_submit, and with upload_id also job_submit_upload. */
static int submit(vx_store *st, const vx_job *job, const char *upload_id, int64_t now, vx_job *existing,
                  vx_err *err) {
    if (existing) memset(existing, 0, sizeof *existing);
    if (!job->id[0] || !job->user_id[0] || !job->model[0] || job->held < 0 || job->max_attempts < 1)
        return vx_err_set(err, VX_E_INVALID, "invalid_job", "a job needs an id, user, model and max_attempts");
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = vx_sqlite_begin(c, err);
    if (rc != 0) goto out;
    rc = -1;
    sqlite3_stmt *s;
    if (job->idempotency_key[0]) {
        s = vx_sqlite_stmt(c, SQ_JOB_BY_IDEMPOTENCY,
                           "SELECT " JOB_COLS " FROM jobs WHERE user_id = ? AND idempotency_key = ?", err);
        if (!s) goto out;
        vx_sqlite_bind_text(s, 1, job->user_id);
        vx_sqlite_bind_text(s, 2, job->idempotency_key);
        int r = sqlite3_step(s);
        if (r == SQLITE_ROW) {
            if (existing && job_from_row(s, existing, err) != 0) goto out;
            vx_err_set(err, VX_E_CONFLICT, "idempotency_key_reused", "that idempotency key was used before");
            goto out;
        }
        if (r != SQLITE_DONE) {
            vx_sqlite_fail(c, r, err);
            goto out;
        }
    }
    if (upload_id && vx_sqlite_upload_take(c, upload_id, job->user_id, job->id, now, err) != 0) goto out;
    if (vx_sqlite_job_insert(c, job, err) != 0) goto out;
    rc = 0;
out:
    rc = vx_sqlite_finish(c, rc, err);
    vx_sqlite_conn_put(st, c);
    return rc;
}

int vx_sqlite_job_submit(vx_store *st, const vx_job *job, vx_job *existing, vx_err *err) {
    return submit(st, job, NULL, 0, existing, err);
}

int vx_sqlite_job_submit_upload(vx_store *st, const vx_job *job, const char *upload_id, int64_t now,
                                vx_job *existing, vx_err *err) {
    return submit(st, job, upload_id, now, existing, err);
}

int vx_sqlite_job_get(vx_store *st, const char *id, vx_job *out, vx_err *err) {
    memset(out, 0, sizeof *out);
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = job_load(c, id, out, err);
    vx_sqlite_conn_put(st, c);
    return rc;
}

/* Caller frees *out with vx_job_list_free. */
int vx_sqlite_job_list(vx_store *st, const vx_job_filter *f, vx_job **out, size_t *n, vx_err *err) {
    *out = NULL;
    *n = 0;
    if (f->status < -1 || f->status >= VX_JOB_STATUS_COUNT)
        return vx_err_set(err, VX_E_INVALID, "invalid_status", "unknown job status");
    int limit = vx_sqlite_clamp_limit(f->limit);
    vx_job *list = calloc((size_t)limit, sizeof *list);
    if (!list) return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = -1, r;
    size_t count = 0;
    /* Two statements so the per-user listing walks the (user_id, id) index. */
    sqlite3_stmt *s = f->user_id
        ? vx_sqlite_stmt(c, SQ_JOB_LIST_USER, "SELECT " JOB_COLS " FROM jobs WHERE user_id = ?1"
                         " AND id < ?2 AND (?3 IS NULL OR model = ?3) AND (?4 IS NULL OR status = ?4)"
                         " ORDER BY id DESC LIMIT ?5", err)
        : vx_sqlite_stmt(c, SQ_JOB_LIST_ALL, "SELECT " JOB_COLS " FROM jobs WHERE"
                         " id < ?2 AND (?3 IS NULL OR model = ?3) AND (?4 IS NULL OR status = ?4)"
                         " ORDER BY id DESC LIMIT ?5", err);
    if (!s) goto out;
    if (f->user_id) vx_sqlite_bind_text(s, 1, f->user_id);
    vx_sqlite_bind_text(s, 2, f->cursor && *f->cursor ? f->cursor : VX_SQLITE_CURSOR_TOP);
    vx_sqlite_bind_text(s, 3, f->model);
    vx_sqlite_bind_text(s, 4, f->status >= 0 ? vx_job_status_name((vx_job_status)f->status) : NULL);
    sqlite3_bind_int(s, 5, limit);
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        if (job_from_row(s, &list[count], err) != 0) goto out;
        count++;
    }
    if (r != SQLITE_DONE) {
        vx_sqlite_fail(c, r, err);
        goto out;
    }
    rc = 0;
out:
    vx_sqlite_conn_put(st, c);
    if (rc != 0 || count == 0) {
        vx_job_list_free(list, count);
        return rc;
    }
    *out = list;
    *n = count;
    return 0;
}

int vx_sqlite_job_cancel(vx_store *st, const char *id, int64_t now, vx_job *out, vx_err *err) {
    if (out) memset(out, 0, sizeof *out);
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    vx_job j = {0};
    int rc = vx_sqlite_begin(c, err);
    if (rc != 0) goto out;
    if ((rc = job_load(c, id, &j, err)) != 0) goto out;
    rc = -1;
    if (j.status == VX_JOB_QUEUED) {
        if (finalize_release(c, j.id, j.user_id, j.held, VX_JOB_CANCELED, j.error_json, now, err) != 0)
            goto out;
    } else if (j.status == VX_JOB_RUNNING) {
        sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_JOB_CANCEL_RUNNING, "UPDATE jobs SET cancel_requested = 1,"
                                         " updated_at = ?2 WHERE id = ?1", err);
        if (!s) goto out;
        vx_sqlite_bind_text(s, 1, id);
        sqlite3_bind_int64(s, 2, now);
        if (step_done(c, s, err) != 0) goto out;
    } else {
        vx_err_set(err, VX_E_CONFLICT, "job_finished", "the job has already finished");
        goto out;
    }
    vx_job_clear(&j);
    if (out && job_load(c, id, out, err) != 0) goto out;
    rc = 0;
out:
    vx_job_clear(&j);
    rc = vx_sqlite_finish(c, rc, err);
    if (rc != 0 && out) vx_job_clear(out);
    vx_sqlite_conn_put(st, c);
    return rc;
}

/* ---- the worker side -------------------------------------------------------- */

int vx_sqlite_job_claim(vx_store *st, const char *worker, int64_t now, int64_t lease_ms, vx_job *out,
                        vx_err *err) {
    memset(out, 0, sizeof *out);
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int r = SQLITE_OK;
    int rc = vx_sqlite_begin(c, err);
    if (rc != 0) goto out;
    rc = -1;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_JOB_CLAIM,
        "UPDATE jobs SET status = 'running', lease_owner = ?1, lease_until = ?2 + ?3,"
        " attempts = attempts + 1, updated_at = ?2,"
        " started_at = CASE WHEN started_at = 0 THEN ?2 ELSE started_at END"
        " WHERE id = (SELECT id FROM jobs WHERE status = 'queued' AND run_after <= ?2"
        "             ORDER BY id LIMIT 1)"
        " RETURNING " JOB_COLS, err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, worker);
    sqlite3_bind_int64(s, 2, now);
    sqlite3_bind_int64(s, 3, lease_ms);
    r = sqlite3_step(s);
    if (r == SQLITE_DONE) {
        vx_err_set(err, VX_E_NOT_FOUND, "queue_empty", "no job is ready");
        goto out;
    }
    if (r != SQLITE_ROW) {
        vx_sqlite_fail(c, r, err);
        goto out;
    }
    if (job_from_row(s, out, err) != 0) {
        r = SQLITE_OK; /* nothing to free */
        goto out;
    }
    rc = step_done(c, s, err);
out:
    rc = vx_sqlite_finish(c, rc, err);
    if (rc != 0 && r == SQLITE_ROW) vx_job_clear(out);
    vx_sqlite_conn_put(st, c);
    return rc;
}

int vx_sqlite_job_heartbeat(vx_store *st, const char *id, const char *worker, int attempt, int64_t now,
                            int64_t lease_ms, double progress, bool *cancel_requested, vx_err *err) {
    if (!(progress >= 0)) progress = 0; /* also catches NaN */
    if (progress > 1) progress = 1;
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = vx_sqlite_begin(c, err);
    if (rc != 0) goto out;
    rc = -1;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_JOB_HEARTBEAT,
        "UPDATE jobs SET lease_until = ?4 + ?5, progress = ?6, updated_at = ?4"
        " WHERE id = ?1 AND status = 'running' AND lease_owner = ?2 AND attempts = ?3"
        " RETURNING cancel_requested", err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, id);
    vx_sqlite_bind_text(s, 2, worker);
    sqlite3_bind_int(s, 3, attempt);
    sqlite3_bind_int64(s, 4, now);
    sqlite3_bind_int64(s, 5, lease_ms);
    sqlite3_bind_double(s, 6, progress);
    int r = sqlite3_step(s);
    if (r == SQLITE_DONE) {
        vx_err_set(err, VX_E_CONFLICT, "lease_lost", "the job is no longer leased to this worker");
        goto out;
    }
    if (r != SQLITE_ROW) {
        vx_sqlite_fail(c, r, err);
        goto out;
    }
    if (cancel_requested) *cancel_requested = sqlite3_column_int(s, 0) != 0;
    rc = step_done(c, s, err);
out:
    rc = vx_sqlite_finish(c, rc, err);
    vx_sqlite_conn_put(st, c);
    return rc;
}

/* What the lease check learns about a job we still own. */
typedef struct lease_row {
    char user_id[VX_ID_SIZE];
    int64_t held;
    bool cancel_requested;
    char *error_json;
    int attempts, max_attempts;
} lease_row;

static int lease_check(vx_sqlite_conn *c, const char *id, const char *worker, int attempt, lease_row *l,
                       vx_err *err) {
    memset(l, 0, sizeof *l);
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_JOB_LEASE, SQL_LEASE, err);
    if (!s) return -1;
    vx_sqlite_bind_text(s, 1, id);
    vx_sqlite_bind_text(s, 2, worker);
    sqlite3_bind_int(s, 3, attempt);
    int r = sqlite3_step(s);
    if (r == SQLITE_DONE)
        return vx_err_set(err, VX_E_CONFLICT, "lease_lost", "the job is no longer leased to this worker");
    if (r != SQLITE_ROW) return vx_sqlite_fail(c, r, err);
    bool oom = false;
    vx_sqlite_copy_text(s, 0, l->user_id, sizeof l->user_id);
    l->held = sqlite3_column_int64(s, 1);
    l->cancel_requested = sqlite3_column_int(s, 2) != 0;
    l->error_json = dup_column(s, 3, &oom);
    l->attempts = sqlite3_column_int(s, 4);
    l->max_attempts = sqlite3_column_int(s, 5);
    sqlite3_reset(s);
    return oom ? vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory") : 0;
}

int vx_sqlite_job_succeed(vx_store *st, const vx_job *done, const char *worker, int64_t now, vx_err *err) {
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    lease_row l = {0};
    int rc = vx_sqlite_begin(c, err);
    if (rc != 0) goto out;
    if ((rc = lease_check(c, done->id, worker, done->attempts, &l, err)) != 0) goto out;
    rc = -1;
    if (done->charged < 0 || done->charged > l.held) {
        vx_err_set(err, VX_E_INVALID, "charge_exceeds_hold", "a job cannot cost more than its hold");
        goto out;
    }
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_JOB_SUCCEED,
        "UPDATE jobs SET status = 'succeeded', progress = 1, result_json = ?2, output_key = ?3,"
        " output_content_type = ?4, output_bytes = ?5, charged = ?6, finished_at = ?7,"
        " updated_at = ?7, lease_until = 0 WHERE id = ?1", err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, done->id);
    vx_sqlite_bind_text(s, 2, done->result_json);
    vx_sqlite_bind_text(s, 3, done->output_key);
    vx_sqlite_bind_text(s, 4, done->output_content_type);
    sqlite3_bind_int64(s, 5, done->output_bytes);
    sqlite3_bind_int64(s, 6, done->charged);
    sqlite3_bind_int64(s, 7, now);
    if (step_done(c, s, err) != 0) goto out;
    rc = settle(c, l.user_id, done->id, VX_LEDGER_CAPTURE, l.held, done->charged, now, err);
out:
    free(l.error_json);
    rc = vx_sqlite_finish(c, rc, err);
    vx_sqlite_conn_put(st, c);
    return rc;
}

int vx_sqlite_job_fail(vx_store *st, const char *id, const char *worker, int attempt, const char *code,
                       const char *message, int64_t retry_at, bool canceled, int64_t now, vx_err *err) {
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    lease_row l = {0};
    char *errors = NULL;
    int rc = vx_sqlite_begin(c, err);
    if (rc != 0) goto out;
    if ((rc = lease_check(c, id, worker, attempt, &l, err)) != 0) goto out;
    rc = -1;
    if (!(errors = vx_store_errors_append(l.error_json, attempt, code, message, now))) {
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        goto out;
    }
    /* A canceled job, or one out of attempts, is never retried. */
    bool retry = retry_at > 0 && !canceled && !l.cancel_requested && l.attempts < l.max_attempts;
    if (retry)
        rc = requeue(c, id, retry_at, errors, now, err);
    else
        rc = finalize_release(c, id, l.user_id, l.held,
                              canceled || l.cancel_requested ? VX_JOB_CANCELED : VX_JOB_FAILED,
                              errors, now, err);
out:
    free(errors);
    free(l.error_json);
    rc = vx_sqlite_finish(c, rc, err);
    vx_sqlite_conn_put(st, c);
    return rc;
}

int vx_sqlite_job_release(vx_store *st, const char *id, const char *worker, int attempt, int64_t now,
                          vx_err *err) {
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    lease_row l = {0};
    int rc = vx_sqlite_begin(c, err);
    if (rc != 0) goto out;
    if ((rc = lease_check(c, id, worker, attempt, &l, err)) != 0) goto out;
    if (l.cancel_requested) {
        /* Nobody will run it again: the cancel the user asked for wins. */
        rc = finalize_release(c, id, l.user_id, l.held, VX_JOB_CANCELED, l.error_json, now, err);
        goto out;
    }
    rc = -1;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_JOB_RELEASE,
        "UPDATE jobs SET status = 'queued', attempts = attempts - 1, lease_owner = '',"
        " lease_until = 0, run_after = ?2, updated_at = ?2, progress = 0 WHERE id = ?1", err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, id);
    sqlite3_bind_int64(s, 2, now);
    rc = step_done(c, s, err);
out:
    free(l.error_json);
    rc = vx_sqlite_finish(c, rc, err);
    vx_sqlite_conn_put(st, c);
    return rc;
}

static int64_t backoff_delay(int64_t backoff_ms, int attempts) {
    if (backoff_ms <= 0) return 0;
    int64_t d = backoff_ms > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff_ms;
    for (int i = 1; i < attempts && d < BACKOFF_MAX_MS; i++) d *= 2;
    return d > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : d;
}

typedef struct reap_item {
    char id[VX_ID_SIZE];
    char user_id[VX_ID_SIZE];
    int64_t held;
    int64_t charged;            /* streams: what the seconds recorded so far cost */
    int attempts, max_attempts;
    bool cancel_requested;
    bool stream;                /* a live stream's job: settled, never retried */
    char *error_json;
} reap_item;

static void reap_items_free(reap_item *items, size_t n) {
    for (size_t i = 0; i < n; i++) free(items[i].error_json);
    free(items);
}

/* Collects the jobs to reap first: rows are updated only after the scan. */
static int reap_collect(vx_sqlite_conn *c, int64_t now, const char *owner_prefix, reap_item **out,
                        size_t *n, vx_err *err) {
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_JOB_REAP_SELECT,
        "SELECT id, user_id, held, attempts, max_attempts, cancel_requested, error_json, charged,"
        " input_format = '" VX_JOB_STREAM_FORMAT "' FROM jobs"
        " WHERE status = 'running' AND (lease_until < ?1"
        "  OR (?2 IS NOT NULL AND substr(lease_owner, 1, length(?2)) = ?2)) ORDER BY id", err);
    if (!s) return -1;
    sqlite3_bind_int64(s, 1, now);
    vx_sqlite_bind_text(s, 2, owner_prefix && *owner_prefix ? owner_prefix : NULL);
    reap_item *items = NULL;
    size_t count = 0, cap = 0;
    int r;
    bool oom = false;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            reap_item *grown = realloc(items, ncap * sizeof *grown);
            if (!grown) {
                oom = true;
                break;
            }
            items = grown;
            cap = ncap;
        }
        reap_item *it = &items[count++];
        memset(it, 0, sizeof *it);
        vx_sqlite_copy_text(s, 0, it->id, sizeof it->id);
        vx_sqlite_copy_text(s, 1, it->user_id, sizeof it->user_id);
        it->held = sqlite3_column_int64(s, 2);
        it->attempts = sqlite3_column_int(s, 3);
        it->max_attempts = sqlite3_column_int(s, 4);
        it->cancel_requested = sqlite3_column_int(s, 5) != 0;
        it->error_json = dup_column(s, 6, &oom);
        it->charged = sqlite3_column_int64(s, 7);
        it->stream = sqlite3_column_int(s, 8) != 0;
    }
    sqlite3_reset(s);
    if (oom || (r != SQLITE_DONE && r != SQLITE_ROW)) {
        reap_items_free(items, count);
        return oom ? vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory") : vx_sqlite_fail(c, r, err);
    }
    *out = items;
    *n = count;
    return 0;
}

static int finalize_capture(vx_sqlite_conn *c, const reap_item *it, const char *error_json, int64_t now,
                            vx_err *err) {
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_JOB_FINISH, SQL_FINISH, err);
    if (!s) return -1;
    vx_sqlite_bind_text(s, 1, it->id);
    vx_sqlite_bind_text(s, 2, vx_job_status_name(VX_JOB_FAILED));
    sqlite3_bind_int64(s, 3, now);
    vx_sqlite_bind_text(s, 4, error_json);
    if (step_done(c, s, err) != 0) return -1;
    int64_t charged = it->charged < 0 ? 0 : it->charged > it->held ? it->held : it->charged;
    return settle(c, it->user_id, it->id, VX_LEDGER_CAPTURE, it->held, charged, now, err);
}

int vx_sqlite_job_reap(vx_store *st, int64_t now, const char *owner_prefix, int64_t backoff_ms,
                       int *requeued, int *failed, vx_err *err) {
    int nre = 0, nfail = 0;
    reap_item *items = NULL;
    size_t n = 0;
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = vx_sqlite_begin(c, err);
    if (rc != 0) goto out;
    if ((rc = reap_collect(c, now, owner_prefix, &items, &n, err)) != 0) goto out;
    for (size_t i = 0; i < n && rc == 0; i++) {
        reap_item *it = &items[i];
        char *errors = vx_store_errors_append(it->error_json, it->attempts, "lease_expired",
                                     "the worker stopped before finishing the job", now);
        if (!errors) {
            rc = vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
            break;
        }
        if (it->stream) {
            /* The node serving the stream is gone, and with it the audio:
             * charge the seconds it last recorded, release the rest. */
            rc = finalize_capture(c, it, errors, now, err);
            nfail++;
        } else if (!it->cancel_requested && it->attempts < it->max_attempts) {
            rc = requeue(c, it->id, now + backoff_delay(backoff_ms, it->attempts), errors, now, err);
            nre++;
        } else {
            rc = finalize_release(c, it->id, it->user_id, it->held,
                                  it->cancel_requested ? VX_JOB_CANCELED : VX_JOB_FAILED, errors, now, err);
            nfail++;
        }
        free(errors);
    }
out:
    reap_items_free(items, n);
    rc = vx_sqlite_finish(c, rc, err);
    vx_sqlite_conn_put(st, c);
    if (requeued) *requeued = rc == 0 ? nre : 0;
    if (failed) *failed = rc == 0 ? nfail : 0;
    if (rc == 0 && (nre || nfail))
        vx_info("store: reaped %d expired leases (%d requeued, %d failed)", nre + nfail, nre, nfail);
    return rc;
}

int vx_sqlite_job_counts(vx_store *st, int64_t counts[VX_JOB_STATUS_COUNT], vx_err *err) {
    for (int i = 0; i < VX_JOB_STATUS_COUNT; i++) counts[i] = 0;
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = -1, r;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_JOB_COUNTS, "SELECT status, COUNT(*) FROM jobs GROUP BY status", err);
    if (!s) goto out;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        vx_job_status status;
        if (status_parse_col(s, 0, &status) == 0) counts[status] = sqlite3_column_int64(s, 1);
    }
    if (r != SQLITE_DONE) {
        vx_sqlite_fail(c, r, err);
        goto out;
    }
    rc = 0;
out:
    vx_sqlite_conn_put(st, c);
    return rc;
}
