/* postgres_streams.c - the jobs of live streams in the PostgreSQL store:
 * opened running with their first hold, then recorded (seconds, charge so
 * far, lease, more hold) while audio flows; the row is locked before it is
 * judged. Settling goes through job_succeed and the reaper
 * (postgres_jobs.c). Callable from any thread. */
#include <stdio.h>
#include <string.h>
#include "postgres_int.h"
#include "store_int.h"

static int open_body(vx_pg_conn *c, void *arg, vx_err *err) {
    const vx_job *job = arg;
    if (vx_pg_job_insert(c, job, err) != 0) return -1;
    vx_pg_args p = {0};
    vx_pg_text(&p, job->id);
    vx_pg_i64(&p, job->created_at);
    vx_pg_text(&p, job->lease_owner);
    vx_pg_i64(&p, job->lease_until);
    return vx_pg_exec_cmd(c, PG_STREAM_START,
                          "UPDATE jobs SET status = 'running', attempts = 1, started_at = $2::bigint,"
                          " updated_at = $2::bigint, lease_owner = $3, lease_until = $4::bigint WHERE id = $1",
                          &p, NULL, err);
}

int vx_pg_stream_open(vx_store *st, const vx_job *job, vx_err *err) {
    if (!job->id[0] || !job->user_id[0] || !job->model[0] || job->held < 0 || !job->lease_owner[0])
        return vx_err_set(err, VX_E_INVALID, "invalid_job", "a stream needs an id, user, model and owner");
    return vx_pg_run(st, open_body, (void *)job, err);
}

struct record_args {
    const char *id, *owner;
    double seconds;
    int64_t charged, extra_hold, now, lease_ms;
};

static int record_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct record_args *a = arg;
    vx_pg_args p = {0};
    vx_pg_text(&p, a->id);
    vx_pg_text(&p, a->owner);
    PGresult *r = vx_pg_exec(c, PG_STREAM_LOAD,
                             "SELECT user_id, held FROM jobs WHERE id = $1 AND status = 'running'"
                             " AND lease_owner = $2 FOR UPDATE", &p, err);
    if (!r) return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return vx_err_set(err, VX_E_CONFLICT, "lease_lost", "the stream is no longer leased to this node");
    }
    char user_id[VX_ID_SIZE];
    vx_pg_col_copy(r, 0, 0, user_id, sizeof user_id);
    int64_t held = vx_pg_col_i64(r, 0, 1) + a->extra_hold;
    PQclear(r);
    if (a->charged > held)
        return vx_err_set(err, VX_E_INVALID, "charge_exceeds_hold", "a stream cannot cost more than its hold");
    if (a->extra_hold > 0) {
        vx_ledger_entry e;
        vx_store_hold_entry(&e, user_id, a->id, a->extra_hold, held, a->now);
        bool replayed;
        vx_balance b;
        if (vx_pg_ledger_post(c, &e, &replayed, &b, err) != 0) return -1;
    }
    p.n = 0;
    vx_pg_text(&p, a->id);
    vx_pg_i64(&p, held);
    vx_pg_i64(&p, a->charged);
    vx_pg_f64(&p, a->seconds);
    vx_pg_i64(&p, a->now + a->lease_ms);
    vx_pg_i64(&p, a->now);
    return vx_pg_exec_cmd(c, PG_STREAM_RECORD,
                          "UPDATE jobs SET held = $2::bigint, charged = $3::bigint,"
                          " duration_s = $4::double precision, lease_until = $5::bigint, updated_at = $6::bigint"
                          " WHERE id = $1", &p, NULL, err);
}

int vx_pg_stream_record(vx_store *st, const char *id, const char *owner, double seconds, int64_t charged,
                        int64_t extra_hold, int64_t now, int64_t lease_ms, vx_err *err) {
    if (extra_hold < 0 || charged < 0 || seconds < 0)
        return vx_err_set(err, VX_E_INVALID, "invalid_stream_record", "negative seconds, charge or hold");
    struct record_args a = {id, owner, seconds, charged, extra_hold, now, lease_ms};
    return vx_pg_run(st, record_body, &a, err);
}
