/* postgres_int.h - private parts of the PostgreSQL store shared by postgres.c
 * (pool, transactions, migrations, settings, the backend table),
 * postgres_ledger.c (credits, prices), postgres_accounts.c (users, API keys),
 * postgres_jobs.c (jobs, the queue) and postgres_events.c (events,
 * webhooks). Nothing outside src/store/ includes this. Every hook runs its
 * body through vx_pg_run, on one pooled connection. */
#ifndef VX_POSTGRES_INT_H
#define VX_POSTGRES_INT_H
#include <libpq-fe.h>
#include "store.h"

/* One named prepared statement per slot, prepared once per connection. */
enum vx_pg_slot {
    PG_PING, PG_SCHEMA_VERSION, PG_SETTING_GET, PG_SETTING_INSERT,
    PG_USER_INSERT, PG_BALANCE_INSERT, PG_USER_GET, PG_USER_GET_BY_NAME, PG_USER_LIST,
    PG_USER_COUNT_ROLE, PG_USER_SET_ROLE,
    PG_KEY_INSERT, PG_KEY_FIND, PG_KEY_LIST, PG_KEY_REVOKE, PG_KEY_TOUCH,
    PG_BALANCE_GET, PG_BALANCE_LOCK, PG_BALANCE_UPDATE, PG_LEDGER_REF_DETAIL, PG_LEDGER_INSERT,
    PG_LEDGER_LIST, PG_LEDGER_AUDIT, PG_PRICE_GET, PG_PRICE_SET,
    PG_JOB_INSERT, PG_JOB_GET, PG_JOB_GET_LOCK, PG_JOB_BY_IDEMPOTENCY, PG_JOB_LIST_USER,
    PG_JOB_LIST_ALL, PG_JOB_CANCEL_RUNNING, PG_JOB_CLAIM, PG_JOB_HEARTBEAT, PG_JOB_LEASE,
    PG_JOB_SUCCEED, PG_JOB_REQUEUE, PG_JOB_FINISH, PG_JOB_RELEASE, PG_JOB_REAP_SELECT,
    PG_JOB_COUNTS,
    PG_EVENT_LOCK, PG_EVENT_INSERT, PG_DELIVERY_INSERT, PG_EVENT_LIST, PG_EVENT_LAST,
    PG_EVENT_PURGE_DELIVERIES, PG_EVENT_PURGE, PG_WEBHOOK_INSERT, PG_WEBHOOK_GET, PG_WEBHOOK_LIST,
    PG_WEBHOOK_JOB_GET, PG_WEBHOOK_DELETE_DELIVERIES, PG_WEBHOOK_DELETE, PG_WEBHOOK_ROTATE,
    PG_DELIVERY_DUE, PG_DELIVERY_LEASE, PG_DELIVERY_RECORD, PG_DELIVERY_LIST, PG_DELIVERY_GET,
    PG_DELIVERY_REDELIVER, PG_DELIVERY_RELEASE_OWNER,
    /* postgres_uploads.c */
    PG_UPLOAD_INSERT, PG_UPLOAD_GET, PG_UPLOAD_TAKE, PG_UPLOAD_EXPIRE, PG_LEASE_ACQUIRE,
    PG_JOB_NOTIFY, PG_JOB_READY,
    /* postgres_events.c: one terminal event per job */
    PG_TERMINAL_CLAIM, PG_JOBS_WITHOUT_TERMINAL,
    /* postgres_streams.c */
    PG_STREAM_START, PG_STREAM_LOAD, PG_STREAM_RECORD,
    PG_SLOT_COUNT
};

typedef struct vx_pg_conn vx_pg_conn;

/* The backend table (postgres.c), picked by store.c for postgres:// URLs. */
extern const vx_store_ops vx_store_postgres_ops;
extern const vx_store_ops vx_store_postgresql_ops;

/* Text parameters of one statement (all parameters travel as text; the SQL
 * casts them). */
#define VX_PG_MAX_PARAMS 40
typedef struct vx_pg_args {
    int n;
    const char *v[VX_PG_MAX_PARAMS];
    char num[VX_PG_MAX_PARAMS][32];
} vx_pg_args;
void vx_pg_text(vx_pg_args *a, const char *s);     /* NULL -> SQL NULL; not copied */
void vx_pg_i64(vx_pg_args *a, int64_t v);
void vx_pg_f64(vx_pg_args *a, double v);

/* Runs statement `slot` (prepared from `sql` on first use on this
 * connection). Returns the result (caller PQclear's) or NULL with err set
 * from the SQLSTATE: check_violation -> PAYMENT "insufficient_credits",
 * unique -> CONFLICT "already_exists", foreign key -> NOT_FOUND
 * "user_not_found", numeric range -> INVALID "amount_out_of_range", lost
 * connection -> UNAVAILABLE "database_unavailable", serialization failure or
 * deadlock -> UNAVAILABLE "database_busy" (and the hook is retried), else
 * INTERNAL. The server's text goes to the log only. */
PGresult *vx_pg_exec(vx_pg_conn *c, int slot, const char *sql, const vx_pg_args *a, vx_err *err);
/* Like vx_pg_exec for statements whose rows are not needed; *changes (may be
 * NULL) gets the rows touched. */
int vx_pg_exec_cmd(vx_pg_conn *c, int slot, const char *sql, const vx_pg_args *a, int64_t *changes,
                   vx_err *err);
/* The SQLSTATE and constraint of the last failed statement ("" if none). */
const char *vx_pg_sqlstate(const vx_pg_conn *c);
const char *vx_pg_constraint(const vx_pg_conn *c);
/* Asks vx_pg_run to run the body again (a race that a fresh try resolves). */
void vx_pg_retry(vx_pg_conn *c);

/* Runs body(c, arg, err) in one transaction on a pooled connection: commits
 * when it returns 0, rolls back otherwise. Reconnects a broken connection
 * and retries serialization failures and deadlocks a few times. A body must
 * leave no owned output behind when it fails (it may run again). */
typedef int (*vx_pg_body)(vx_pg_conn *c, void *arg, vx_err *err);
int vx_pg_run(vx_store *st, vx_pg_body body, void *arg, vx_err *err);

/* Column readers: NULL reads as 0 / "". */
int64_t vx_pg_col_i64(const PGresult *r, int row, int col);
double vx_pg_col_f64(const PGresult *r, int row, int col);
void vx_pg_col_copy(const PGresult *r, int row, int col, char *dst, size_t cap);
/* A malloc'd copy of a column, NULL for SQL NULL (sets *oom when out of memory). */
char *vx_pg_col_dup(const PGresult *r, int row, int col, bool *oom);

/* Inside a transaction: appends entry `e` and moves the balance (the
 * balance row is locked first, so concurrent posts for one user serialize).
 * A (user, ref) already present: no change, *replayed = true. PAYMENT
 * "insufficient_credits" when the CHECK on balances fails. */
int vx_pg_ledger_post(vx_pg_conn *c, const vx_ledger_entry *e, bool *replayed, vx_balance *after,
                      vx_err *err);

/* Inside a transaction: wakes the job listeners of every process on this
 * schema at commit (postgres_listen.c) after a job became queued; due_ms:
 * when it can be claimed (wall-clock ms; <= now: at once). */
int vx_pg_job_notify(vx_pg_conn *c, int64_t due_ms, vx_err *err);

/* A new connection with the store's parameters (caller PQfinish'es; check
 * PQstatus), for a listener outside the pool; NULL when out of memory. */
PGconn *vx_pg_connect_new(vx_store *st);
/* The listener slot of the store (postgres_listen.c owns what it holds). */
struct vx_pg_listener **vx_pg_listener_slot(vx_store *st);
/* Stops and frees a listener (NULL: nothing). */
void vx_pg_listener_free(struct vx_pg_listener *l);
int vx_pg_job_listen(vx_store *st, void (*fn)(void *user), void *user, vx_err *err);
int vx_pg_job_ready(vx_store *st, const char *id, int64_t now, vx_err *err);
/* Inside a transaction: inserts a queued job and its hold entry (ref
 * "hold:<id>"); job_submit and stream_open share it. */
int vx_pg_job_insert(vx_pg_conn *c, const vx_job *job, vx_err *err);
/* Hooks implemented in postgres_streams.c. */
int vx_pg_stream_open(vx_store *st, const vx_job *job, vx_err *err);
int vx_pg_stream_record(vx_store *st, const char *id, const char *owner, double seconds, int64_t charged,
                        int64_t extra_hold, int64_t now, int64_t lease_ms, vx_err *err);

/* Runs one single-statement write (as vx_pg_exec_cmd) in its own transaction. */
int vx_pg_write_one(vx_store *st, int slot, const char *sql, const vx_pg_args *a, int64_t *changes,
                    vx_err *err);

#define VX_PG_LIST_MAX 200
#define VX_PG_AMOUNT_MAX INT64_C(1000000000000000)
/* A cursor that sorts after every id (ids are lowercase base32 and '_'). */
#define VX_PG_CURSOR_TOP "~"
int vx_pg_clamp_limit(int limit);
int vx_pg_oom(vx_err *err);

/* Hooks implemented in postgres_ledger.c (credits, prices). */
int vx_pg_balance_get(vx_store *st, const char *user_id, vx_balance *out, vx_err *err);
int vx_pg_ledger_apply(vx_store *st, const vx_ledger_entry *e, bool *replayed, vx_balance *out_balance,
                       vx_err *err);
int vx_pg_ledger_list(vx_store *st, const char *user_id, const char *cursor, int limit,
                      vx_ledger_entry **out, size_t *n, vx_err *err);
int vx_pg_ledger_audit(vx_store *st, const char *user_id, vx_ledger_sums *sums, bool *ok, vx_err *err);
int vx_pg_price_get(vx_store *st, const char *model, int64_t *per_job, int64_t *per_second, vx_err *err);
int vx_pg_price_set(vx_store *st, const char *model, int64_t per_job, int64_t per_second,
                    const char *actor_id, int64_t now, vx_err *err);

/* Hooks implemented in postgres_accounts.c. */
int vx_pg_user_create(vx_store *st, const vx_user *u, int64_t signup_grant, vx_err *err);
int vx_pg_user_get(vx_store *st, const char *id, vx_user *out, vx_err *err);
int vx_pg_user_get_by_name(vx_store *st, const char *username, vx_user *out, vx_err *err);
int vx_pg_user_list(vx_store *st, const char *cursor, int limit, vx_user **out, size_t *n, vx_err *err);
int vx_pg_user_count_role(vx_store *st, const char *role, int64_t *count, vx_err *err);
int vx_pg_user_set_role(vx_store *st, const char *id, const char *role, vx_err *err);
int vx_pg_api_key_create(vx_store *st, const vx_api_key *k, vx_err *err);
int vx_pg_api_key_find(vx_store *st, const char *key_hash, vx_api_key *key, vx_user *user, vx_err *err);
int vx_pg_api_key_list(vx_store *st, const char *user_id, vx_api_key **out, size_t *n, vx_err *err);
int vx_pg_api_key_revoke(vx_store *st, const char *user_id, const char *key_id, int64_t now, vx_err *err);
int vx_pg_api_key_touch(vx_store *st, const char *key_id, int64_t now, vx_err *err);

/* Hooks implemented in postgres_jobs.c. */
int vx_pg_job_submit(vx_store *st, const vx_job *job, vx_job *existing, vx_err *err);
int vx_pg_job_get(vx_store *st, const char *id, vx_job *out, vx_err *err);
int vx_pg_job_list(vx_store *st, const vx_job_filter *f, vx_job **out, size_t *n, vx_err *err);
int vx_pg_job_cancel(vx_store *st, const char *id, int64_t now, vx_job *out, vx_err *err);
int vx_pg_job_claim(vx_store *st, const char *worker, int64_t now, int64_t lease_ms, vx_job *out,
                    vx_err *err);
int vx_pg_job_heartbeat(vx_store *st, const char *id, const char *worker, int attempt, int64_t now,
                        int64_t lease_ms, double progress, bool *cancel_requested, vx_err *err);
int vx_pg_job_succeed(vx_store *st, const vx_job *done, const char *worker, int64_t now, vx_err *err);
int vx_pg_job_fail(vx_store *st, const char *id, const char *worker, int attempt, const char *code,
                   const char *message, int64_t retry_at, bool canceled, int64_t now, vx_err *err);
int vx_pg_job_release(vx_store *st, const char *id, const char *worker, int attempt, int64_t now,
                      vx_err *err);
int vx_pg_job_reap(vx_store *st, int64_t now, const char *owner_prefix, int64_t backoff_ms,
                   int *requeued, int *failed, vx_err *err);
int vx_pg_job_counts(vx_store *st, int64_t counts[VX_JOB_STATUS_COUNT], vx_err *err);

/* Hooks implemented in postgres_events.c. */
int vx_pg_event_append(vx_store *st, vx_event_rec *ev, const vx_delivery *deliveries, size_t n,
                       vx_err *err);
int vx_pg_event_list(vx_store *st, const vx_event_filter *f, vx_event_rec **out, size_t *n, vx_err *err);
int vx_pg_event_last_id(vx_store *st, const vx_event_filter *f, int64_t *id, vx_err *err);
int vx_pg_jobs_without_terminal_event(vx_store *st, int64_t from_ms, int64_t to_ms, int limit,
                                      char (*ids)[VX_ID_SIZE], size_t *n, vx_err *err);
int vx_pg_event_purge(vx_store *st, int64_t before_ms, int64_t *purged, vx_err *err);
int vx_pg_webhook_create(vx_store *st, const vx_webhook_endpoint *ep, vx_err *err);
int vx_pg_webhook_get(vx_store *st, const char *user_id, const char *id, vx_webhook_endpoint *out,
                      vx_err *err);
int vx_pg_webhook_list(vx_store *st, const char *user_id, vx_webhook_endpoint **out, size_t *n,
                       vx_err *err);
int vx_pg_webhook_job_endpoint(vx_store *st, const vx_webhook_endpoint *candidate,
                               vx_webhook_endpoint *out, vx_err *err);
int vx_pg_webhook_delete(vx_store *st, const char *user_id, const char *id, vx_err *err);
int vx_pg_webhook_rotate(vx_store *st, const char *user_id, const char *id, const char *new_secret,
                         int64_t previous_until, vx_err *err);
int vx_pg_delivery_claim(vx_store *st, const char *owner, int64_t now, int64_t lease_ms, int limit,
                         vx_delivery **out, size_t *n, vx_err *err);
int vx_pg_delivery_record(vx_store *st, const char *id, const char *owner, const vx_delivery_attempt *a,
                          int64_t now, vx_err *err);
int vx_pg_delivery_list(vx_store *st, const char *endpoint_id, const char *cursor, int limit,
                        vx_delivery **out, size_t *n, vx_err *err);
int vx_pg_delivery_redeliver(vx_store *st, const char *endpoint_id, const char *id, int64_t now,
                             vx_delivery *out, vx_err *err);
int vx_pg_delivery_release_owner(vx_store *st, const char *owner_prefix, vx_err *err);

/* Hooks implemented in postgres_uploads.c (direct uploads, leases). */
int vx_pg_upload_create(vx_store *st, const vx_upload *u, vx_err *err);
int vx_pg_upload_get(vx_store *st, const char *id, vx_upload *out, vx_err *err);
int vx_pg_upload_expire(vx_store *st, int64_t now, int limit, vx_upload **out, size_t *n, vx_err *err);
int vx_pg_lease_acquire(vx_store *st, const char *name, const char *owner, int64_t now, int64_t ttl_ms,
                        bool *acquired, vx_err *err);
/* Inside a transaction: takes a pending, unexpired upload of user_id for
 * job_id; CONFLICT "upload_used" when it cannot (postgres_uploads.c). */
int vx_pg_upload_take(vx_pg_conn *c, const char *upload_id, const char *user_id, const char *job_id, int64_t now,
                      vx_err *err);
/* postgres_jobs.c */
int vx_pg_job_submit_upload(vx_store *st, const vx_job *job, const char *upload_id, int64_t now,
                            vx_job *existing, vx_err *err);

#endif
