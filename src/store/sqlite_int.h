/* sqlite_int.h - private parts of the SQLite store shared by sqlite.c (pool,
 * transactions, migrations, settings, ledger, prices), sqlite_accounts.c
 * (users, API keys), sqlite_jobs.c (jobs, the queue) and sqlite_events.c
 * (events, webhook endpoints and deliveries). Nothing outside src/store/ includes this. A connection is used by
 * one thread at a time: take it with vx_sqlite_conn_get, give it back with
 * vx_sqlite_conn_put. */
#ifndef VX_SQLITE_INT_H
#define VX_SQLITE_INT_H
#include <sqlite3.h>
#include "store.h"

/* One cached prepared statement per slot and connection. */
enum vx_sqlite_slot {
    SQ_BEGIN, SQ_COMMIT, SQ_ROLLBACK, SQ_PING, SQ_SCHEMA_VERSION,
    SQ_SETTING_GET, SQ_SETTING_INSERT,
    SQ_USER_INSERT, SQ_BALANCE_INSERT, SQ_USER_GET, SQ_USER_GET_BY_NAME, SQ_USER_LIST,
    SQ_USER_COUNT_ROLE, SQ_USER_SET_ROLE,
    SQ_KEY_INSERT, SQ_KEY_FIND, SQ_KEY_LIST, SQ_KEY_REVOKE, SQ_KEY_TOUCH,
    SQ_BALANCE_GET, SQ_BALANCE_UPDATE, SQ_LEDGER_FIND_REF, SQ_LEDGER_REF_DETAIL, SQ_LEDGER_INSERT, SQ_LEDGER_LIST,
    SQ_LEDGER_AUDIT,
    SQ_PRICE_GET, SQ_PRICE_SET,
    SQ_JOB_INSERT, SQ_JOB_GET, SQ_JOB_BY_IDEMPOTENCY, SQ_JOB_LIST_USER, SQ_JOB_LIST_ALL,
    SQ_JOB_CANCEL_QUEUED, SQ_JOB_CANCEL_RUNNING, SQ_JOB_CLAIM, SQ_JOB_HEARTBEAT,
    SQ_JOB_LEASE, SQ_JOB_SUCCEED, SQ_JOB_REQUEUE, SQ_JOB_FINISH, SQ_JOB_RELEASE,
    SQ_JOB_REAP_SELECT, SQ_JOB_COUNTS,
    /* sqlite_events.c */
    SQ_EVENT_INSERT, SQ_DELIVERY_INSERT, SQ_EVENT_LIST, SQ_EVENT_LAST, SQ_EVENT_PURGE_DELIVERIES,
    SQ_EVENT_PURGE, SQ_WEBHOOK_INSERT, SQ_WEBHOOK_GET, SQ_WEBHOOK_LIST, SQ_WEBHOOK_JOB_GET,
    SQ_WEBHOOK_DELETE_DELIVERIES, SQ_WEBHOOK_DELETE, SQ_WEBHOOK_ROTATE, SQ_DELIVERY_DUE,
    SQ_DELIVERY_LEASE, SQ_DELIVERY_RECORD, SQ_DELIVERY_LIST, SQ_DELIVERY_GET, SQ_DELIVERY_REDELIVER,
    SQ_DELIVERY_RELEASE_OWNER,
    /* sqlite_uploads.c */
    SQ_UPLOAD_INSERT, SQ_UPLOAD_GET, SQ_UPLOAD_TAKE, SQ_UPLOAD_EXPIRE_SELECT, SQ_UPLOAD_EXPIRE_MARK,
    SQ_LEASE_ACQUIRE,
    /* sqlite_events.c: one terminal event per job */
    SQ_TERMINAL_CLAIM, SQ_JOBS_WITHOUT_TERMINAL,
    /* sqlite_streams.c */
    SQ_STREAM_START, SQ_STREAM_LOAD, SQ_STREAM_RECORD,
    SQ_SLOT_COUNT
};

typedef struct vx_sqlite_conn vx_sqlite_conn;

/* The backend table (sqlite.c), picked by store.c for "sqlite:" URLs. */
extern const vx_store_ops vx_store_sqlite_ops;

/* Blocks until a pooled connection is free. Never fails. */
vx_sqlite_conn *vx_sqlite_conn_get(vx_store *st);
void vx_sqlite_conn_put(vx_store *st, vx_sqlite_conn *c);
sqlite3 *vx_sqlite_conn_db(vx_sqlite_conn *c);

/* The statement for `slot` (prepared from `sql` on first use, then cached),
 * reset and with bindings cleared. NULL with err set on failure. */
sqlite3_stmt *vx_sqlite_stmt(vx_sqlite_conn *c, int slot, const char *sql, vx_err *err);

/* BEGIN IMMEDIATE (writers of this process queue on a mutex first so they
 * do not spin in SQLite's busy handler). */
int vx_sqlite_begin(vx_sqlite_conn *c, vx_err *err);
/* Ends the transaction begun by vx_sqlite_begin: commits when rc == 0, else
 * rolls back. Returns 0 only if it committed. */
int vx_sqlite_finish(vx_sqlite_conn *c, int rc, vx_err *err);

/* Maps a SQLite result code to err (busy -> UNAVAILABLE "database_busy",
 * else INTERNAL with a SQL-free message; the SQLite text goes to the log).
 * Returns -1. */
int vx_sqlite_fail(vx_sqlite_conn *c, int rc, vx_err *err);

/* Inside a transaction: appends entry `e` (id, created_at, user_id, kind,
 * amount, held_delta, charged, job_id, ref, note, actor_id) and moves the
 * balance. A (user, ref) already present: no change, *replayed = true.
 * PAYMENT "insufficient_credits" when a CHECK on balances fails. */
int vx_sqlite_ledger_post(vx_sqlite_conn *c, const vx_ledger_entry *e, bool *replayed,
                          vx_balance *after, vx_err *err);

/* Copies a text column into a fixed buffer (truncating; NULL -> ""). */
void vx_sqlite_copy_text(sqlite3_stmt *s, int col, char *dst, size_t cap);
/* Binds a string; NULL binds SQL NULL. */
int vx_sqlite_bind_text(sqlite3_stmt *s, int idx, const char *v);

/* Listings return at most this many rows; ledger amounts beyond a billion
 * credits are refused before SQL sees them. */
#define VX_SQLITE_LIST_MAX 200
#define VX_SQLITE_AMOUNT_MAX INT64_C(1000000000000000)
/* A cursor that sorts after every id (ids are lowercase base32 and '_'). */
#define VX_SQLITE_CURSOR_TOP "\x7f"

int vx_sqlite_clamp_limit(int limit);

/* Runs one single-statement write in its own transaction; *changes gets the
 * rows touched. Unique violations -> CONFLICT "already_exists", foreign-key
 * violations -> NOT_FOUND "user_not_found". */
typedef void (*vx_sqlite_bind_fn)(sqlite3_stmt *s, const void *arg);
int vx_sqlite_write_one(vx_store *st, int slot, const char *sql, vx_sqlite_bind_fn bind,
                        const void *arg, int *changes, vx_err *err);

/* Hooks implemented in sqlite_accounts.c. */
int vx_sqlite_user_create(vx_store *st, const vx_user *u, int64_t signup_grant, vx_err *err);
int vx_sqlite_user_get(vx_store *st, const char *id, vx_user *out, vx_err *err);
int vx_sqlite_user_get_by_name(vx_store *st, const char *username, vx_user *out, vx_err *err);
int vx_sqlite_user_list(vx_store *st, const char *cursor, int limit, vx_user **out, size_t *n,
                        vx_err *err);
int vx_sqlite_user_count_role(vx_store *st, const char *role, int64_t *count, vx_err *err);
int vx_sqlite_user_set_role(vx_store *st, const char *id, const char *role, vx_err *err);
int vx_sqlite_api_key_create(vx_store *st, const vx_api_key *k, vx_err *err);
int vx_sqlite_api_key_find(vx_store *st, const char *key_hash, vx_api_key *key, vx_user *user,
                           vx_err *err);
int vx_sqlite_api_key_list(vx_store *st, const char *user_id, vx_api_key **out, size_t *n,
                           vx_err *err);
int vx_sqlite_api_key_revoke(vx_store *st, const char *user_id, const char *key_id, int64_t now,
                             vx_err *err);
int vx_sqlite_api_key_touch(vx_store *st, const char *key_id, int64_t now, vx_err *err);

/* Hooks implemented in sqlite_jobs.c. */
int vx_sqlite_job_submit(vx_store *st, const vx_job *job, vx_job *existing, vx_err *err);
int vx_sqlite_job_get(vx_store *st, const char *id, vx_job *out, vx_err *err);
int vx_sqlite_job_list(vx_store *st, const vx_job_filter *f, vx_job **out, size_t *n, vx_err *err);
int vx_sqlite_job_cancel(vx_store *st, const char *id, int64_t now, vx_job *out, vx_err *err);
int vx_sqlite_job_claim(vx_store *st, const char *worker, int64_t now, int64_t lease_ms,
                        vx_job *out, vx_err *err);
int vx_sqlite_job_heartbeat(vx_store *st, const char *id, const char *worker, int attempt,
                            int64_t now, int64_t lease_ms, double progress,
                            bool *cancel_requested, vx_err *err);
int vx_sqlite_job_succeed(vx_store *st, const vx_job *done, const char *worker, int64_t now,
                          vx_err *err);
int vx_sqlite_job_fail(vx_store *st, const char *id, const char *worker, int attempt,
                       const char *code, const char *message, int64_t retry_at, bool canceled,
                       int64_t now, vx_err *err);
int vx_sqlite_job_release(vx_store *st, const char *id, const char *worker, int attempt,
                          int64_t now, vx_err *err);
int vx_sqlite_job_reap(vx_store *st, int64_t now, const char *owner_prefix, int64_t backoff_ms,
                       int *requeued, int *failed, vx_err *err);
int vx_sqlite_job_counts(vx_store *st, int64_t counts[VX_JOB_STATUS_COUNT], vx_err *err);

/* Inside a transaction: inserts a queued job and its hold entry (ref
 * "hold:<id>"); the job_submit and stream_open hooks share it. */
int vx_sqlite_job_insert(vx_sqlite_conn *c, const vx_job *job, vx_err *err);

/* Hooks implemented in sqlite_streams.c. */
int vx_sqlite_stream_open(vx_store *st, const vx_job *job, vx_err *err);
int vx_sqlite_stream_record(vx_store *st, const char *id, const char *owner, double seconds, int64_t charged,
                            int64_t extra_hold, int64_t now, int64_t lease_ms, vx_err *err);

/* Hooks implemented in sqlite_events.c (events, webhook endpoints, deliveries). */
int vx_sqlite_event_append(vx_store *st, vx_event_rec *ev, const vx_delivery *deliveries, size_t n,
                           vx_err *err);
int vx_sqlite_event_list(vx_store *st, const vx_event_filter *f, vx_event_rec **out, size_t *n,
                         vx_err *err);
int vx_sqlite_event_last_id(vx_store *st, const vx_event_filter *f, int64_t *id, vx_err *err);
int vx_sqlite_jobs_without_terminal_event(vx_store *st, int64_t from_ms, int64_t to_ms, int limit,
                                          char (*ids)[VX_ID_SIZE], size_t *n, vx_err *err);
int vx_sqlite_event_purge(vx_store *st, int64_t before_ms, int64_t *purged, vx_err *err);
int vx_sqlite_webhook_create(vx_store *st, const vx_webhook_endpoint *ep, vx_err *err);
int vx_sqlite_webhook_get(vx_store *st, const char *user_id, const char *id, vx_webhook_endpoint *out,
                          vx_err *err);
int vx_sqlite_webhook_list(vx_store *st, const char *user_id, vx_webhook_endpoint **out, size_t *n,
                           vx_err *err);
int vx_sqlite_webhook_job_endpoint(vx_store *st, const vx_webhook_endpoint *candidate,
                                   vx_webhook_endpoint *out, vx_err *err);
int vx_sqlite_webhook_delete(vx_store *st, const char *user_id, const char *id, vx_err *err);
int vx_sqlite_webhook_rotate(vx_store *st, const char *user_id, const char *id, const char *new_secret,
                             int64_t previous_until, vx_err *err);
int vx_sqlite_delivery_claim(vx_store *st, const char *owner, int64_t now, int64_t lease_ms, int limit,
                             vx_delivery **out, size_t *n, vx_err *err);
int vx_sqlite_delivery_record(vx_store *st, const char *id, const char *owner,
                              const vx_delivery_attempt *a, int64_t now, vx_err *err);
int vx_sqlite_delivery_list(vx_store *st, const char *endpoint_id, const char *cursor, int limit,
                            vx_delivery **out, size_t *n, vx_err *err);
int vx_sqlite_delivery_redeliver(vx_store *st, const char *endpoint_id, const char *id, int64_t now,
                                 vx_delivery *out, vx_err *err);
int vx_sqlite_delivery_release_owner(vx_store *st, const char *owner_prefix, vx_err *err);

/* Hooks implemented in sqlite_uploads.c (direct uploads, leases). */
int vx_sqlite_upload_create(vx_store *st, const vx_upload *u, vx_err *err);
int vx_sqlite_upload_get(vx_store *st, const char *id, vx_upload *out, vx_err *err);
int vx_sqlite_upload_expire(vx_store *st, int64_t now, int limit, vx_upload **out, size_t *n, vx_err *err);
int vx_sqlite_lease_acquire(vx_store *st, const char *name, const char *owner, int64_t now, int64_t ttl_ms,
                            bool *acquired, vx_err *err);
/* Inside a transaction: takes a pending, unexpired upload of user_id for
 * job_id; CONFLICT "upload_used" when it cannot (sqlite_uploads.c). */
int vx_sqlite_upload_take(vx_sqlite_conn *c, const char *upload_id, const char *user_id, const char *job_id,
                          int64_t now, vx_err *err);
/* sqlite_jobs.c */
int vx_sqlite_job_submit_upload(vx_store *st, const vx_job *job, const char *upload_id, int64_t now,
                                vx_job *existing, vx_err *err);

#endif
