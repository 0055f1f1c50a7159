/* postgres_uploads.c - direct uploads and named leases of the PostgreSQL
 * store (migration 0004). An upload is taken inside the job's submit
 * transaction (vx_pg_upload_take): the conditional UPDATE locks the row, so
 * of two racing submits the second sees it used and gets "upload_used".
 * Callable from any thread; every hook runs through vx_pg_run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "postgres_int.h"

#define UPLOAD_COLS \
    "id, user_id, key, filename, content_type, declared_bytes, state, created_at, expires_at, used_by_job"

static void upload_from_row(const PGresult *r, int row, vx_upload *u) {
    memset(u, 0, sizeof *u);
    vx_pg_col_copy(r, row, 0, u->id, sizeof u->id);
    vx_pg_col_copy(r, row, 1, u->user_id, sizeof u->user_id);
    vx_pg_col_copy(r, row, 2, u->key, sizeof u->key);
    vx_pg_col_copy(r, row, 3, u->filename, sizeof u->filename);
    vx_pg_col_copy(r, row, 4, u->content_type, sizeof u->content_type);
    u->declared_bytes = vx_pg_col_i64(r, row, 5);
    const char *state = PQgetvalue(r, row, 6);
    u->state = strcmp(state, "used") == 0 ? VX_UPLOAD_USED
               : strcmp(state, "expired") == 0 ? VX_UPLOAD_EXPIRED : VX_UPLOAD_PENDING;
    u->created_at = vx_pg_col_i64(r, row, 7);
    u->expires_at = vx_pg_col_i64(r, row, 8);
    vx_pg_col_copy(r, row, 9, u->used_by_job, sizeof u->used_by_job);
}

int vx_pg_upload_create(vx_store *st, const vx_upload *u, vx_err *err) {
    if (!u->id[0] || !u->user_id[0] || !u->key[0] || u->expires_at <= u->created_at)
        return vx_err_set(err, VX_E_INVALID, "invalid_upload", "an upload needs an id, user, key and a future expiry");
    vx_pg_args p = {0};
    vx_pg_text(&p, u->id);
    vx_pg_text(&p, u->user_id);
    vx_pg_text(&p, u->key);
    vx_pg_text(&p, u->filename);
    vx_pg_text(&p, u->content_type);
    vx_pg_i64(&p, u->declared_bytes);
    vx_pg_i64(&p, u->created_at);
    vx_pg_i64(&p, u->expires_at);
    return vx_pg_write_one(st, PG_UPLOAD_INSERT,
                           "INSERT INTO uploads (id, user_id, key, filename, content_type, declared_bytes, state,"
                           " created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6::bigint, 'pending',"
                           " $7::bigint, $8::bigint)", &p, NULL, err);
}

struct get_args { const char *id; vx_upload *out; };
static int get_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct get_args *a = arg;
    vx_pg_args p = {0};
    vx_pg_text(&p, a->id);
    PGresult *r = vx_pg_exec(c, PG_UPLOAD_GET, "SELECT " UPLOAD_COLS " FROM uploads WHERE id = $1", &p, err);
    if (!r) return -1;
    int rc = 0;
    if (PQntuples(r) == 0) rc = vx_err_set(err, VX_E_NOT_FOUND, "upload_not_found", "no such upload");
    else upload_from_row(r, 0, a->out);
    PQclear(r);
    return rc;
}

int vx_pg_upload_get(vx_store *st, const char *id, vx_upload *out, vx_err *err) {
    struct get_args a = {id, out};
    return vx_pg_run(st, get_body, &a, err);
}

int vx_pg_upload_take(vx_pg_conn *c, const char *upload_id, const char *user_id, const char *job_id, int64_t now,
                      vx_err *err) {
    vx_pg_args p = {0};
    vx_pg_text(&p, job_id);
    vx_pg_text(&p, upload_id);
    vx_pg_text(&p, user_id);
    vx_pg_i64(&p, now);
    int64_t changes = 0;
    if (vx_pg_exec_cmd(c, PG_UPLOAD_TAKE, "UPDATE uploads SET state = 'used', used_by_job = $1 WHERE id = $2"
                       " AND user_id = $3 AND state = 'pending' AND expires_at > $4::bigint", &p, &changes, err) != 0)
        return -1;
    if (changes == 0)
        return vx_err_set(err, VX_E_CONFLICT, "upload_used", "the upload was already used by another job");
    return 0;
}

struct expire_args { int64_t now; int limit; vx_upload *list; size_t n; };
static int expire_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct expire_args *a = arg;
    vx_pg_args p = {0};
    vx_pg_i64(&p, a->now);
    vx_pg_i64(&p, a->limit);
    /* SKIP LOCKED: a row a submit is taking right now is left to it. */
    PGresult *r = vx_pg_exec(c, PG_UPLOAD_EXPIRE,
                             "UPDATE uploads SET state = 'expired' WHERE id IN (SELECT id FROM uploads"
                             " WHERE state = 'pending' AND expires_at <= $1::bigint ORDER BY expires_at, id"
                             " LIMIT $2::integer FOR UPDATE SKIP LOCKED) RETURNING " UPLOAD_COLS, &p, err);
    if (!r) return -1;
    int rows = PQntuples(r);
    if (rows > 0 && !(a->list = calloc((size_t)rows, sizeof *a->list))) {
        PQclear(r);
        return vx_pg_oom(err);
    }
    for (int i = 0; i < rows; i++) upload_from_row(r, i, &a->list[i]);
    a->n = (size_t)rows;
    PQclear(r);
    return 0;
}

/* Caller frees *out with free(). */
int vx_pg_upload_expire(vx_store *st, int64_t now, int limit, vx_upload **out, size_t *n, vx_err *err) {
    struct expire_args a = {now, vx_pg_clamp_limit(limit), NULL, 0};
    *out = NULL;
    *n = 0;
    if (vx_pg_run(st, expire_body, &a, err) != 0) {
        free(a.list);
        return -1;
    }
    *out = a.list;
    *n = a.n;
    return 0;
}

int vx_pg_lease_acquire(vx_store *st, const char *name, const char *owner, int64_t now, int64_t ttl_ms,
                        bool *acquired, vx_err *err) {
    *acquired = false;
    if (!name || !*name || !owner || !*owner || ttl_ms < 1)
        return vx_err_set(err, VX_E_INVALID, "invalid_lease", "a lease needs a name, an owner and a duration");
    vx_pg_args p = {0};
    vx_pg_text(&p, name);
    vx_pg_text(&p, owner);
    vx_pg_i64(&p, now + ttl_ms);
    vx_pg_i64(&p, now);
    int64_t changes = 0;
    if (vx_pg_write_one(st, PG_LEASE_ACQUIRE,
                        "INSERT INTO leases (name, owner, until) VALUES ($1, $2, $3::bigint)"
                        " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until"
                        " WHERE leases.until <= $4::bigint OR leases.owner = excluded.owner", &p, &changes, err) != 0)
        return -1;
    *acquired = changes > 0;
    return 0;
}
