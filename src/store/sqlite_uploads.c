/* sqlite_uploads.c - direct uploads and named leases of the SQLite store
 * (migration 0004). An upload is taken by a job inside the job's own submit
 * transaction (vx_sqlite_upload_take), so two submits racing for one upload
 * cannot both win. Callable from any thread; writes are BEGIN IMMEDIATE. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sqlite_int.h"

#define UPLOAD_COLS \
    "id, user_id, key, filename, content_type, declared_bytes, state, created_at, expires_at, used_by_job"

static void upload_from_row(sqlite3_stmt *s, vx_upload *u) {
    memset(u, 0, sizeof *u);
    vx_sqlite_copy_text(s, 0, u->id, sizeof u->id);
    vx_sqlite_copy_text(s, 1, u->user_id, sizeof u->user_id);
    vx_sqlite_copy_text(s, 2, u->key, sizeof u->key);
    vx_sqlite_copy_text(s, 3, u->filename, sizeof u->filename);
    vx_sqlite_copy_text(s, 4, u->content_type, sizeof u->content_type);
    u->declared_bytes = sqlite3_column_int64(s, 5);
    const unsigned char *state = sqlite3_column_text(s, 6);
    u->state = state && strcmp((const char *)state, "used") == 0      ? VX_UPLOAD_USED
               : state && strcmp((const char *)state, "expired") == 0 ? VX_UPLOAD_EXPIRED
                                                                       : VX_UPLOAD_PENDING;
    u->created_at = sqlite3_column_int64(s, 7);
    u->expires_at = sqlite3_column_int64(s, 8);
    vx_sqlite_copy_text(s, 9, u->used_by_job, sizeof u->used_by_job);
}

static void bind_upload(sqlite3_stmt *s, const void *arg) {
    const vx_upload *u = arg;
    vx_sqlite_bind_text(s, 1, u->id);
    vx_sqlite_bind_text(s, 2, u->user_id);
    vx_sqlite_bind_text(s, 3, u->key);
    vx_sqlite_bind_text(s, 4, u->filename);
    vx_sqlite_bind_text(s, 5, u->content_type);
    sqlite3_bind_int64(s, 6, u->declared_bytes);
    sqlite3_bind_int64(s, 7, u->created_at);
    sqlite3_bind_int64(s, 8, u->expires_at);
}

int vx_sqlite_upload_create(vx_store *st, const vx_upload *u, vx_err *err) {
    if (!u->id[0] || !u->user_id[0] || !u->key[0] || u->expires_at <= u->created_at)
        return vx_err_set(err, VX_E_INVALID, "invalid_upload", "an upload needs an id, user, key and a future expiry");
    int changes = 0;
    return vx_sqlite_write_one(st, SQ_UPLOAD_INSERT,
                               "INSERT INTO uploads (id, user_id, key, filename, content_type, declared_bytes,"
                               " state, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                               bind_upload, u, &changes, err);
}

int vx_sqlite_upload_get(vx_store *st, const char *id, vx_upload *out, vx_err *err) {
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = -1;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_UPLOAD_GET, "SELECT " UPLOAD_COLS " FROM uploads WHERE id = ?", err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, id);
    int r = sqlite3_step(s);
    if (r == SQLITE_DONE) {
        vx_err_set(err, VX_E_NOT_FOUND, "upload_not_found", "no such upload");
        goto out;
    }
    if (r != SQLITE_ROW) {
        vx_sqlite_fail(c, r, err);
        goto out;
    }
    upload_from_row(s, out);
    sqlite3_reset(s);
    rc = 0;
out:
    vx_sqlite_conn_put(st, c);
    return rc;
}

int vx_sqlite_upload_take(vx_sqlite_conn *c, const char *upload_id, const char *user_id, const char *job_id,
                          int64_t now, vx_err *err) {
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_UPLOAD_TAKE,
                                     "UPDATE uploads SET state = 'used', used_by_job = ?1 WHERE id = ?2"
                                     " AND user_id = ?3 AND state = 'pending' AND expires_at > ?4", err);
    if (!s) return -1;
    vx_sqlite_bind_text(s, 1, job_id);
    vx_sqlite_bind_text(s, 2, upload_id);
    vx_sqlite_bind_text(s, 3, user_id);
    sqlite3_bind_int64(s, 4, now);
    int r = sqlite3_step(s);
    if (r != SQLITE_DONE) return vx_sqlite_fail(c, r, err);
    if (sqlite3_changes(vx_sqlite_conn_db(c)) == 0)
        return vx_err_set(err, VX_E_CONFLICT, "upload_used", "the upload was already used by another job");
    return 0;
}

/* Caller frees *out with free(). */
int vx_sqlite_upload_expire(vx_store *st, int64_t now, int limit, vx_upload **out, size_t *n, vx_err *err) {
    *out = NULL;
    *n = 0;
    limit = vx_sqlite_clamp_limit(limit);
    vx_upload *list = calloc((size_t)limit, sizeof *list);
    if (!list) return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
    size_t count = 0;
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = vx_sqlite_begin(c, err), r;
    if (rc != 0) goto out;
    rc = -1;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_UPLOAD_EXPIRE_SELECT,
                                     "SELECT " UPLOAD_COLS " FROM uploads WHERE state = 'pending'"
                                     " AND expires_at <= ? ORDER BY expires_at, id LIMIT ?", err);
    if (!s) goto out;
    sqlite3_bind_int64(s, 1, now);
    sqlite3_bind_int(s, 2, limit);
    while ((r = sqlite3_step(s)) == SQLITE_ROW && count < (size_t)limit) upload_from_row(s, &list[count++]);
    if (r != SQLITE_DONE && r != SQLITE_ROW) {
        vx_sqlite_fail(c, r, err);
        goto out;
    }
    sqlite3_reset(s);
    for (size_t i = 0; i < count; i++) {
        s = vx_sqlite_stmt(c, SQ_UPLOAD_EXPIRE_MARK, "UPDATE uploads SET state = 'expired' WHERE id = ?", err);
        if (!s) goto out;
        vx_sqlite_bind_text(s, 1, list[i].id);
        if ((r = sqlite3_step(s)) != SQLITE_DONE) {
            vx_sqlite_fail(c, r, err);
            goto out;
        }
        list[i].state = VX_UPLOAD_EXPIRED;
    }
    rc = 0;
out:
    rc = vx_sqlite_finish(c, rc, err);
    vx_sqlite_conn_put(st, c);
    if (rc != 0 || count == 0) {
        free(list);
        return rc;
    }
    *out = list;
    *n = count;
    return 0;
}

struct lease_args { const char *name, *owner; int64_t until, now; };
static void bind_lease(sqlite3_stmt *s, const void *arg) {
    const struct lease_args *a = arg;
    vx_sqlite_bind_text(s, 1, a->name);
    vx_sqlite_bind_text(s, 2, a->owner);
    sqlite3_bind_int64(s, 3, a->until);
    sqlite3_bind_int64(s, 4, a->now);
}

int vx_sqlite_lease_acquire(vx_store *st, const char *name, const char *owner, int64_t now, int64_t ttl_ms,
                            bool *acquired, vx_err *err) {
    *acquired = false;
    if (!name || !*name || !owner || !*owner || ttl_ms < 1)
        return vx_err_set(err, VX_E_INVALID, "invalid_lease", "a lease needs a name, an owner and a duration");
    struct lease_args a = {name, owner, now + ttl_ms, now};
    int changes = 0;
    if (vx_sqlite_write_one(st, SQ_LEASE_ACQUIRE,
                            "INSERT INTO leases (name, owner, until) VALUES (?1, ?2, ?3)"
                            " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until"
                            " WHERE leases.until <= ?4 OR leases.owner = excluded.owner",
                            bind_lease, &a, &changes, err) != 0)
        return -1;
    *acquired = changes > 0;
    return 0;
}
