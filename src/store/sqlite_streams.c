/* sqlite_streams.c - the jobs of live streams in the SQLite store: opened
 * running with their first hold, then recorded (seconds, charge so far,
 * lease, more hold) while audio flows. Settling goes through job_succeed and
 * the reaper (sqlite_jobs.c). Callable from any thread. */
#include <stdio.h>
#include <string.h>
#include "sqlite_int.h"
#include "store_int.h"

int vx_sqlite_stream_open(vx_store *st, const vx_job *job, vx_err *err) {
    if (!job->id[0] || !job->user_id[0] || !job->model[0] || job->held < 0 || !job->lease_owner[0])
        return vx_err_set(err, VX_E_INVALID, "invalid_job", "a stream needs an id, user, model and owner");
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = vx_sqlite_begin(c, err);
    if (rc != 0) goto out;
    rc = -1;
    if (vx_sqlite_job_insert(c, job, err) != 0) goto out;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_STREAM_START,
        "UPDATE jobs SET status = 'running', attempts = 1, started_at = ?2, updated_at = ?2,"
        " lease_owner = ?3, lease_until = ?4 WHERE id = ?1", err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, job->id);
    sqlite3_bind_int64(s, 2, job->created_at);
    vx_sqlite_bind_text(s, 3, job->lease_owner);
    sqlite3_bind_int64(s, 4, job->lease_until);
    int r = sqlite3_step(s);
    rc = r == SQLITE_DONE ? 0 : vx_sqlite_fail(c, r, err);
out:
    rc = vx_sqlite_finish(c, rc, err);
    vx_sqlite_conn_put(st, c);
    return rc;
}

int vx_sqlite_stream_record(vx_store *st, const char *id, const char *owner, double seconds, int64_t charged,
                            int64_t extra_hold, int64_t now, int64_t lease_ms, vx_err *err) {
    if (extra_hold < 0 || charged < 0 || seconds < 0)
        return vx_err_set(err, VX_E_INVALID, "invalid_stream_record", "negative seconds, charge or hold");
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = vx_sqlite_begin(c, err);
    if (rc != 0) goto out;
    rc = -1;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_STREAM_LOAD,
        "SELECT user_id, held FROM jobs WHERE id = ?1 AND status = 'running' AND lease_owner = ?2", err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, id);
    vx_sqlite_bind_text(s, 2, owner);
    int r = sqlite3_step(s);
    if (r == SQLITE_DONE) {
        vx_err_set(err, VX_E_CONFLICT, "lease_lost", "the stream is no longer leased to this node");
        goto out;
    }
    if (r != SQLITE_ROW) {
        vx_sqlite_fail(c, r, err);
        goto out;
    }
    char user_id[VX_ID_SIZE];
    vx_sqlite_copy_text(s, 0, user_id, sizeof user_id);
    int64_t held = sqlite3_column_int64(s, 1) + extra_hold;
    sqlite3_reset(s);
    if (charged > held) {
        vx_err_set(err, VX_E_INVALID, "charge_exceeds_hold", "a stream cannot cost more than its hold");
        goto out;
    }
    if (extra_hold > 0) {
        vx_ledger_entry e;
        vx_store_hold_entry(&e, user_id, id, extra_hold, held, now);
        bool replayed;
        vx_balance b;
        if (vx_sqlite_ledger_post(c, &e, &replayed, &b, err) != 0) goto out;
    }
    s = vx_sqlite_stmt(c, SQ_STREAM_RECORD,
        "UPDATE jobs SET held = ?2, charged = ?3, duration_s = ?4, lease_until = ?5, updated_at = ?6"
        " WHERE id = ?1", err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, id);
    sqlite3_bind_int64(s, 2, held);
    sqlite3_bind_int64(s, 3, charged);
    sqlite3_bind_double(s, 4, seconds);
    sqlite3_bind_int64(s, 5, now + lease_ms);
    sqlite3_bind_int64(s, 6, now);
    r = sqlite3_step(s);
    rc = r == SQLITE_DONE ? 0 : vx_sqlite_fail(c, r, err);
out:
    rc = vx_sqlite_finish(c, rc, err);
    vx_sqlite_conn_put(st, c);
    return rc;
}
