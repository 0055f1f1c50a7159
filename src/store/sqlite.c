/* sqlite.c - the embedded store backend (sqlite:///path/voxd.db): a small pool
 * of WAL-mode connections with per-connection cached statements, migrations at
 * open, and the settings/ledger/price hooks. Users and API keys live in
 * sqlite_accounts.c, jobs and the queue in sqlite_jobs.c. Every hook may be called from any thread; writers
 * take BEGIN IMMEDIATE behind one process-wide mutex. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "../util/clock.h"
#include "../util/log.h"
#include "schema.h"
#include "sqlite_int.h"

#define POOL_DEFAULT 8
#define POOL_MAX 64
#define BUSY_TIMEOUT_MS 10000

struct vx_sqlite_conn {
    sqlite3 *db;
    pthread_mutex_t *write_mu;
    bool in_tx;
    sqlite3_stmt *stmts[SQ_SLOT_COUNT];
};

typedef struct sq_store {
    vx_store base;
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    pthread_mutex_t write_mu;
    vx_sqlite_conn *conns;
    vx_sqlite_conn **idle;
    size_t nconns, nidle;
} sq_store;

/* ---- connections and transactions ------------------------------------ */

vx_sqlite_conn *vx_sqlite_conn_get(vx_store *st) {
    sq_store *s = (sq_store *)st;
    pthread_mutex_lock(&s->pool_mu);
    while (s->nidle == 0) pthread_cond_wait(&s->pool_cv, &s->pool_mu);
    vx_sqlite_conn *c = s->idle[--s->nidle];
    pthread_mutex_unlock(&s->pool_mu);
    return c;
}

/* A statement left mid-step would pin an old WAL snapshot or hold up COMMIT. */
static void reset_busy(vx_sqlite_conn *c) {
    for (sqlite3_stmt *p = sqlite3_next_stmt(c->db, NULL); p; p = sqlite3_next_stmt(c->db, p))
        if (sqlite3_stmt_busy(p)) sqlite3_reset(p);
}

void vx_sqlite_conn_put(vx_store *st, vx_sqlite_conn *c) {
    sq_store *s = (sq_store *)st;
    reset_busy(c);
    if (c->in_tx) vx_sqlite_finish(c, -1, NULL);
    pthread_mutex_lock(&s->pool_mu);
    s->idle[s->nidle++] = c;
    pthread_cond_signal(&s->pool_cv);
    pthread_mutex_unlock(&s->pool_mu);
}

sqlite3 *vx_sqlite_conn_db(vx_sqlite_conn *c) { return c->db; }

int vx_sqlite_fail(vx_sqlite_conn *c, int rc, vx_err *err) {
    int base = rc & 0xff;
    if (base == SQLITE_BUSY || base == SQLITE_LOCKED) {
        vx_warn("sqlite: busy beyond the timeout (%d)", rc);
        return vx_err_set(err, VX_E_UNAVAILABLE, "database_busy", "the database is busy, try again");
    }
    vx_error("sqlite: %s (%d)", c ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc), rc);
    if (base == SQLITE_FULL)
        return vx_err_set(err, VX_E_UNAVAILABLE, "storage_full", "the database disk is full");
    return vx_err_set(err, VX_E_INTERNAL, "database_error", "the database failed");
}

sqlite3_stmt *vx_sqlite_stmt(vx_sqlite_conn *c, int slot, const char *sql, vx_err *err) {
    sqlite3_stmt *s = c->stmts[slot];
    if (s) {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
        return s;
    }
    int rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL);
    if (rc != SQLITE_OK) {
        vx_sqlite_fail(c, rc, err);
        return NULL;
    }
    c->stmts[slot] = s;
    return s;
}

static int exec_slot(vx_sqlite_conn *c, int slot, const char *sql, vx_err *err) {
    sqlite3_stmt *s = vx_sqlite_stmt(c, slot, sql, err);
    if (!s) return -1;
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : vx_sqlite_fail(c, rc, err);
}

int vx_sqlite_begin(vx_sqlite_conn *c, vx_err *err) {
    pthread_mutex_lock(c->write_mu);
    if (exec_slot(c, SQ_BEGIN, "BEGIN IMMEDIATE", err) != 0) {
        pthread_mutex_unlock(c->write_mu);
        return -1;
    }
    c->in_tx = true;
    return 0;
}

int vx_sqlite_finish(vx_sqlite_conn *c, int rc, vx_err *err) {
    if (!c->in_tx) return rc;
    reset_busy(c);
    if (rc == 0 && exec_slot(c, SQ_COMMIT, "COMMIT", err) != 0) rc = -1;
    if (rc != 0 && !sqlite3_get_autocommit(c->db)) {
        vx_err ignored;
        if (exec_slot(c, SQ_ROLLBACK, "ROLLBACK", &ignored) != 0)
            vx_error("sqlite: rollback failed: %s", ignored.message);
    }
    c->in_tx = false;
    pthread_mutex_unlock(c->write_mu);
    return rc;
}

void vx_sqlite_copy_text(sqlite3_stmt *s, int col, char *dst, size_t cap) {
    const unsigned char *t = sqlite3_column_text(s, col);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

int vx_sqlite_bind_text(sqlite3_stmt *s, int idx, const char *v) {
    return v ? sqlite3_bind_text(s, idx, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(s, idx);
}

/* ---- open, migrations, close ------------------------------------------ */

static int mkdir_parents(const char *path) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return -1;
    char *slash = strrchr(buf, '/');
    if (!slash || slash == buf) return 0;
    *slash = '\0';
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(buf, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

/* sqlite:///abs/path, sqlite://relative/path or sqlite:path, with ?pool=N. */
static int parse_url(const char *url, char *path, size_t cap, int *pool, vx_err *err) {
    if (strncmp(url, "sqlite:", 7) != 0) goto bad;
    const char *p = url + 7;
    if (strncmp(p, "//", 2) == 0) p += 2;
    const char *q = strchr(p, '?');
    size_t len = q ? (size_t)(q - p) : strlen(p);
    if (len == 0 || len >= cap) goto bad;
    memcpy(path, p, len);
    path[len] = '\0';
    *pool = POOL_DEFAULT;
    if (q) {
        char *end;
        if (strncmp(q + 1, "pool=", 5) != 0) goto bad;
        long n = strtol(q + 6, &end, 10);
        if (*end || n < 1 || n > POOL_MAX) goto bad;
        *pool = (int)n;
    }
    return 0;
bad:
    return vx_err_set(err, VX_E_INVALID, "invalid_store_url",
                      "expected sqlite:///path/to/voxd.db (optionally ?pool=1..64)");
}

static int conn_open(vx_sqlite_conn *c, const char *path, pthread_mutex_t *write_mu, vx_err *err) {
    c->write_mu = write_mu;
    int rc = sqlite3_open_v2(path, &c->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        vx_error("sqlite: cannot open the database: %s", c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        return vx_err_set(err, VX_E_UNAVAILABLE, "database_unavailable", "cannot open the database");
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
    rc = sqlite3_exec(c->db, "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;", NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : vx_sqlite_fail(c, rc, err);
}

static int set_wal(vx_sqlite_conn *c, vx_err *err) {
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(s);
    bool wal = rc == SQLITE_ROW && sqlite3_column_text(s, 0) &&
               strcmp((const char *)sqlite3_column_text(s, 0), "wal") == 0;
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW) return vx_sqlite_fail(c, rc, err);
    if (!wal) return vx_err_set(err, VX_E_INTERNAL, "database_error", "the database refused WAL mode");
    return 0;
}

/* Applies one migration unless recorded; the check runs inside the write
 * transaction so two processes starting together apply it once. */
static int migrate_one(vx_sqlite_conn *c, const vx_migration *m, vx_err *err) {
    if (vx_sqlite_begin(c, err) != 0) return -1;
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(c->db, "SELECT 1 FROM schema_migrations WHERE version = ?", -1, &s, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(s, 1, m->version);
        rc = sqlite3_step(s);
    }
    sqlite3_finalize(s);
    if (rc == SQLITE_ROW) return vx_sqlite_finish(c, 0, err);
    if (rc != SQLITE_DONE) goto fail;
    vx_info("store: applying migration %s", m->name);
    rc = sqlite3_exec(c->db, m->sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) goto fail;
    rc = sqlite3_prepare_v2(c->db, "INSERT INTO schema_migrations (version, name, applied_at) "
                            "VALUES (?, ?, ?)", -1, &s, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(s, 1, m->version);
        sqlite3_bind_text(s, 2, m->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, vx_now_ms());
        rc = sqlite3_step(s);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) goto fail;
    return vx_sqlite_finish(c, 0, err);
fail:
    vx_sqlite_fail(c, rc, err);
    vx_error("store: migration %s failed", m->name);
    return vx_sqlite_finish(c, -1, NULL);
}

static int migrate(vx_sqlite_conn *c, vx_err *err) {
    int rc = sqlite3_exec(c->db,
                          "CREATE TABLE IF NOT EXISTS schema_migrations ("
                          " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                          " applied_at INTEGER NOT NULL) STRICT",
                          NULL, NULL, NULL);
    if (rc != SQLITE_OK) return vx_sqlite_fail(c, rc, err);
    int last = 0;
    for (const vx_migration *m = vx_migrations_sqlite; m->sql; m++) {
        if (m->version <= last)
            return vx_err_set(err, VX_E_INTERNAL, "database_error", "migrations out of order");
        last = m->version;
        if (migrate_one(c, m, err) != 0) return -1;
    }
    return 0;
}

static void sq_close(vx_store *st) {
    sq_store *s = (sq_store *)st;
    if (!s) return;
    for (size_t i = 0; i < s->nconns; i++) {
        vx_sqlite_conn *c = &s->conns[i];
        for (int k = 0; k < SQ_SLOT_COUNT; k++) sqlite3_finalize(c->stmts[k]);
        if (c->db && sqlite3_close(c->db) != SQLITE_OK) vx_error("sqlite: close failed");
    }
    free(s->conns);
    free(s->idle);
    pthread_mutex_destroy(&s->pool_mu);
    pthread_cond_destroy(&s->pool_cv);
    pthread_mutex_destroy(&s->write_mu);
    free(s);
}

static vx_store *sq_open(const char *url, vx_err *err);

/* ---- small hooks -------------------------------------------------------- */

static int sq_ping(vx_store *st, vx_err *err) {
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = -1;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_PING, "SELECT 1", err);
    if (s) {
        int r = sqlite3_step(s);
        rc = r == SQLITE_ROW ? 0 : vx_sqlite_fail(c, r, err);
    }
    vx_sqlite_conn_put(st, c);
    return rc;
}

static int sq_schema_version(vx_store *st) {
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int v = -1;
    vx_err err;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_SCHEMA_VERSION,
                                     "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &err);
    if (s && sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int(s, 0);
    vx_sqlite_conn_put(st, c);
    return v;
}

/* Copies a whole text column, refusing to truncate (settings hold secrets). */
static int copy_exact(sqlite3_stmt *s, int col, char *dst, size_t cap, vx_err *err) {
    const unsigned char *t = sqlite3_column_text(s, col);
    size_t len = t ? (size_t)sqlite3_column_bytes(s, col) : 0;
    if (len >= cap) return vx_err_set(err, VX_E_INTERNAL, "setting_too_long", "a stored setting does not fit");
    memcpy(dst, t ? (const char *)t : "", len);
    dst[len] = '\0';
    return 0;
}

static const char SQL_SETTING_GET[] = "SELECT value FROM settings WHERE key = ?";

static int sq_setting_get(vx_store *st, const char *key, char *value, size_t cap, vx_err *err) {
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = -1;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_SETTING_GET, SQL_SETTING_GET, err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, key);
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW) rc = copy_exact(s, 0, value, cap, err);
    else if (r == SQLITE_DONE) vx_err_set(err, VX_E_NOT_FOUND, "setting_not_found", "no such setting");
    else vx_sqlite_fail(c, r, err);
out:
    vx_sqlite_conn_put(st, c);
    return rc;
}

static int sq_setting_put_if_absent(vx_store *st, const char *key, char *value, size_t cap, vx_err *err) {
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = vx_sqlite_begin(c, err);
    if (rc != 0) goto out;
    rc = -1;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_SETTING_INSERT,
                                     "INSERT INTO settings (key, value) VALUES (?, ?) "
                                     "ON CONFLICT (key) DO NOTHING", err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, key);
    vx_sqlite_bind_text(s, 2, value);
    int r = sqlite3_step(s);
    if (r != SQLITE_DONE) {
        vx_sqlite_fail(c, r, err);
        goto out;
    }
    if (!(s = vx_sqlite_stmt(c, SQ_SETTING_GET, SQL_SETTING_GET, err))) goto out;
    vx_sqlite_bind_text(s, 1, key);
    r = sqlite3_step(s);
    if (r != SQLITE_ROW) {
        vx_sqlite_fail(c, r, err);
        goto out;
    }
    rc = copy_exact(s, 0, value, cap, err);
out:
    rc = vx_sqlite_finish(c, rc, err);
    vx_sqlite_conn_put(st, c);
    return rc;
}

/* ---- shared helpers ---------------------------------------------------- */

int vx_sqlite_clamp_limit(int limit) { return limit < 1 ? 1 : limit > VX_SQLITE_LIST_MAX ? VX_SQLITE_LIST_MAX : limit; }

int vx_sqlite_write_one(vx_store *st, int slot, const char *sql, vx_sqlite_bind_fn bind,
                        const void *arg, int *changes, vx_err *err) {
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = vx_sqlite_begin(c, err);
    if (rc != 0) goto out;
    rc = -1;
    sqlite3_stmt *s = vx_sqlite_stmt(c, slot, sql, err);
    if (!s) goto out;
    bind(s, arg);
    int r = sqlite3_step(s);
    if (r != SQLITE_DONE) {
        if (r == SQLITE_CONSTRAINT_UNIQUE || r == SQLITE_CONSTRAINT_PRIMARYKEY)
            vx_err_set(err, VX_E_CONFLICT, "already_exists", "it already exists");
        else if (r == SQLITE_CONSTRAINT_FOREIGNKEY)
            vx_err_set(err, VX_E_NOT_FOUND, "user_not_found", "no such user");
        else
            vx_sqlite_fail(c, r, err);
        goto out;
    }
    *changes = sqlite3_changes(c->db);
    rc = 0;
out:
    rc = vx_sqlite_finish(c, rc, err);
    vx_sqlite_conn_put(st, c);
    return rc;
}

/* ---- credits ------------------------------------------------------------------ */

static int balance_read(vx_sqlite_conn *c, const char *user_id, vx_balance *out, vx_err *err) {
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_BALANCE_GET,
                                     "SELECT available, held FROM balances WHERE user_id = ?", err);
    if (!s) return -1;
    vx_sqlite_bind_text(s, 1, user_id);
    int r = sqlite3_step(s);
    if (r == SQLITE_DONE) return vx_err_set(err, VX_E_NOT_FOUND, "user_not_found", "no such user");
    if (r != SQLITE_ROW) return vx_sqlite_fail(c, r, err);
    out->available = sqlite3_column_int64(s, 0);
    out->held = sqlite3_column_int64(s, 1);
    sqlite3_reset(s);
    return 0;
}

static int sq_balance_get(vx_store *st, const char *user_id, vx_balance *out, vx_err *err) {
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = balance_read(c, user_id, out, err);
    vx_sqlite_conn_put(st, c);
    return rc;
}

int vx_sqlite_ledger_post(vx_sqlite_conn *c, const vx_ledger_entry *e, bool *replayed,
                          vx_balance *after, vx_err *err) {
    *replayed = false;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_LEDGER_FIND_REF,
                                     "SELECT 1 FROM ledger WHERE user_id = ? AND ref = ?", err);
    if (!s) return -1;
    vx_sqlite_bind_text(s, 1, e->user_id);
    vx_sqlite_bind_text(s, 2, e->ref);
    int r = sqlite3_step(s);
    sqlite3_reset(s);
    if (r == SQLITE_ROW) {
        *replayed = true;
        return balance_read(c, e->user_id, after, err);
    }
    if (r != SQLITE_DONE) return vx_sqlite_fail(c, r, err);

    if (!(s = vx_sqlite_stmt(c, SQ_BALANCE_UPDATE,
                             "UPDATE balances SET available = available + ?2, held = held + ?3 "
                             "WHERE user_id = ?1 RETURNING available, held", err)))
        return -1;
    vx_sqlite_bind_text(s, 1, e->user_id);
    sqlite3_bind_int64(s, 2, e->amount);
    sqlite3_bind_int64(s, 3, e->held_delta);
    r = sqlite3_step(s);
    if (r == SQLITE_CONSTRAINT_CHECK)
        return vx_err_set(err, VX_E_PAYMENT, "insufficient_credits", "not enough credits");
    if (r == SQLITE_CONSTRAINT_DATATYPE)
        return vx_err_set(err, VX_E_INVALID, "amount_out_of_range", "the balance would overflow");
    if (r == SQLITE_DONE) return vx_err_set(err, VX_E_NOT_FOUND, "user_not_found", "no such user");
    if (r != SQLITE_ROW) return vx_sqlite_fail(c, r, err);
    after->available = sqlite3_column_int64(s, 0);
    after->held = sqlite3_column_int64(s, 1);
    if ((r = sqlite3_step(s)) != SQLITE_DONE) return vx_sqlite_fail(c, r, err);

    if (!(s = vx_sqlite_stmt(c, SQ_LEDGER_INSERT,
                             "INSERT INTO ledger (id, user_id, kind, amount, held_delta, charged,"
                             " job_id, ref, note, actor_id, created_at, balance_after)"
                             " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", err)))
        return -1;
    vx_sqlite_bind_text(s, 1, e->id);
    vx_sqlite_bind_text(s, 2, e->user_id);
    vx_sqlite_bind_text(s, 3, vx_ledger_kind_name(e->kind));
    sqlite3_bind_int64(s, 4, e->amount);
    sqlite3_bind_int64(s, 5, e->held_delta);
    sqlite3_bind_int64(s, 6, e->charged);
    vx_sqlite_bind_text(s, 7, e->job_id);
    vx_sqlite_bind_text(s, 8, e->ref);
    vx_sqlite_bind_text(s, 9, e->note);
    vx_sqlite_bind_text(s, 10, e->actor_id);
    sqlite3_bind_int64(s, 11, e->created_at);
    sqlite3_bind_int64(s, 12, after->available);
    r = sqlite3_step(s);
    if (r == SQLITE_CONSTRAINT_PRIMARYKEY)
        return vx_err_set(err, VX_E_CONFLICT, "ledger_entry_exists", "a ledger entry with that id exists");
    return r == SQLITE_DONE ? 0 : vx_sqlite_fail(c, r, err);
}

/* A ref names one request: reusing it for another kind or amount is a
 * conflict, not a replay. */
static int ref_conflict(vx_sqlite_conn *c, const vx_ledger_entry *e, vx_err *err) {
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_LEDGER_REF_DETAIL,
                                     "SELECT kind, amount FROM ledger WHERE user_id = ? AND ref = ?", err);
    if (!s) return -1;
    vx_sqlite_bind_text(s, 1, e->user_id);
    vx_sqlite_bind_text(s, 2, e->ref);
    int r = sqlite3_step(s);
    bool differs = r == SQLITE_ROW &&
                   (strcmp((const char *)sqlite3_column_text(s, 0), vx_ledger_kind_name(e->kind)) != 0 ||
                    sqlite3_column_int64(s, 1) != e->amount);
    sqlite3_reset(s);
    if (r != SQLITE_ROW && r != SQLITE_DONE) return vx_sqlite_fail(c, r, err);
    if (differs)
        return vx_err_set(err, VX_E_CONFLICT, "idempotency_key_reused",
                          "this Idempotency-Key was used for a different request");
    return 0;
}

static int sq_ledger_apply(vx_store *st, const vx_ledger_entry *e, bool *replayed,
                           vx_balance *out_balance, vx_err *err) {
    bool ok_kind = e->kind == VX_LEDGER_GRANT || e->kind == VX_LEDGER_TOP_UP ||
                   e->kind == VX_LEDGER_ADJUST || e->kind == VX_LEDGER_REFUND;
    if (!ok_kind)
        return vx_err_set(err, VX_E_INVALID, "invalid_ledger_kind", "holds and settlements come from jobs");
    bool positive_only = e->kind != VX_LEDGER_ADJUST;
    if (e->amount == 0 || e->amount > VX_SQLITE_AMOUNT_MAX || e->amount < -VX_SQLITE_AMOUNT_MAX || (positive_only && e->amount < 0))
        return vx_err_set(err, VX_E_INVALID, "invalid_amount", "the amount is out of range");
    if (!e->ref[0] || !e->id[0])
        return vx_err_set(err, VX_E_INVALID, "invalid_ledger_entry", "a ledger entry needs an id and a ref");
    vx_ledger_entry entry = *e;
    entry.held_delta = 0;
    entry.charged = 0;
    vx_balance b = {0};
    bool rep = false;
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = vx_sqlite_begin(c, err);
    if (rc == 0) rc = ref_conflict(c, &entry, err);
    if (rc == 0) rc = vx_sqlite_ledger_post(c, &entry, &rep, &b, err);
    rc = vx_sqlite_finish(c, rc, err);
    vx_sqlite_conn_put(st, c);
    if (rc != 0) return -1;
    if (replayed) *replayed = rep;
    if (out_balance) *out_balance = b;
    return 0;
}

static int kind_parse(const char *name, vx_ledger_kind *out) {
    for (int k = VX_LEDGER_GRANT; k <= VX_LEDGER_RELEASE; k++) {
        if (strcmp(vx_ledger_kind_name((vx_ledger_kind)k), name) == 0) {
            *out = (vx_ledger_kind)k;
            return 0;
        }
    }
    return -1;
}

/* Caller frees *out with free(). */
static int sq_ledger_list(vx_store *st, const char *user_id, const char *cursor, int limit,
                          vx_ledger_entry **out, size_t *n, vx_err *err) {
    *out = NULL;
    *n = 0;
    limit = vx_sqlite_clamp_limit(limit);
    vx_ledger_entry *list = calloc((size_t)limit, sizeof *list);
    if (!list) return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = -1, r;
    size_t count = 0;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_LEDGER_LIST,
        "SELECT id, user_id, kind, amount, held_delta, charged, job_id, ref, note, actor_id,"
        " created_at, balance_after FROM ledger WHERE user_id = ?1 AND rowid <"
        " COALESCE((SELECT rowid FROM ledger WHERE id = ?2 AND user_id = ?1),"
        " CASE WHEN ?2 = '" VX_SQLITE_CURSOR_TOP "' THEN 9223372036854775807 ELSE 0 END)"
        " ORDER BY rowid DESC LIMIT ?3", err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, user_id);
    vx_sqlite_bind_text(s, 2, cursor && *cursor ? cursor : VX_SQLITE_CURSOR_TOP);
    sqlite3_bind_int(s, 3, limit);
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        vx_ledger_entry *e = &list[count++];
        vx_sqlite_copy_text(s, 0, e->id, sizeof e->id);
        vx_sqlite_copy_text(s, 1, e->user_id, sizeof e->user_id);
        const unsigned char *kind = sqlite3_column_text(s, 2);
        if (!kind || kind_parse((const char *)kind, &e->kind) != 0) {
            vx_err_set(err, VX_E_INTERNAL, "database_error", "unknown ledger kind stored");
            goto out;
        }
        e->amount = sqlite3_column_int64(s, 3);
        e->held_delta = sqlite3_column_int64(s, 4);
        e->charged = sqlite3_column_int64(s, 5);
        vx_sqlite_copy_text(s, 6, e->job_id, sizeof e->job_id);
        vx_sqlite_copy_text(s, 7, e->ref, sizeof e->ref);
        vx_sqlite_copy_text(s, 8, e->note, sizeof e->note);
        vx_sqlite_copy_text(s, 9, e->actor_id, sizeof e->actor_id);
        e->created_at = sqlite3_column_int64(s, 10);
        e->balance_after = sqlite3_column_int64(s, 11);
    }
    if (r != SQLITE_DONE) {
        vx_sqlite_fail(c, r, err);
        goto out;
    }
    rc = 0;
out:
    vx_sqlite_conn_put(st, c);
    if (rc != 0 || count == 0) {
        free(list);
        return rc;
    }
    *out = list;
    *n = count;
    return 0;
}

static int sq_ledger_audit(vx_store *st, const char *user_id, vx_ledger_sums *sums, bool *ok, vx_err *err) {
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = -1;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_LEDGER_AUDIT,
        "SELECT b.available, b.held, COALESCE(SUM(l.amount), 0), COALESCE(SUM(l.held_delta), 0)"
        " FROM balances b LEFT JOIN ledger l ON l.user_id = b.user_id"
        " WHERE b.user_id = ? GROUP BY b.user_id", err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, user_id);
    int r = sqlite3_step(s);
    if (r == SQLITE_DONE) {
        vx_err_set(err, VX_E_NOT_FOUND, "user_not_found", "no such user");
        goto out;
    }
    if (r != SQLITE_ROW) {
        vx_sqlite_fail(c, r, err);
        goto out;
    }
    vx_ledger_sums got = {
        .available = sqlite3_column_int64(s, 0), .held = sqlite3_column_int64(s, 1),
        .amount_sum = sqlite3_column_int64(s, 2), .held_sum = sqlite3_column_int64(s, 3),
    };
    *ok = got.available == got.amount_sum && got.held == got.held_sum;
    if (sums) *sums = got;
    rc = 0;
out:
    vx_sqlite_conn_put(st, c);
    return rc;
}

/* ---- prices ------------------------------------------------------------------- */

static int sq_price_get(vx_store *st, const char *model, int64_t *per_job, int64_t *per_second,
                        vx_err *err) {
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = -1;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_PRICE_GET,
                                     "SELECT per_job, per_second FROM prices WHERE model = ?", err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, model);
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        *per_job = sqlite3_column_int64(s, 0);
        *per_second = sqlite3_column_int64(s, 1);
        rc = 0;
    } else if (r == SQLITE_DONE) {
        vx_err_set(err, VX_E_NOT_FOUND, "price_not_set", "no price override for that model");
    } else {
        vx_sqlite_fail(c, r, err);
    }
out:
    vx_sqlite_conn_put(st, c);
    return rc;
}

struct price_args { const char *model, *actor; int64_t per_job, per_second, now; };
static void bind_price(sqlite3_stmt *s, const void *arg) {
    const struct price_args *a = arg;
    vx_sqlite_bind_text(s, 1, a->model);
    sqlite3_bind_int64(s, 2, a->per_job);
    sqlite3_bind_int64(s, 3, a->per_second);
    vx_sqlite_bind_text(s, 4, a->actor ? a->actor : "");
    sqlite3_bind_int64(s, 5, a->now);
}

static int sq_price_set(vx_store *st, const char *model, int64_t per_job, int64_t per_second,
                        const char *actor_id, int64_t now, vx_err *err) {
    if (!model || !*model || per_job < 0 || per_second < 0 || per_job > VX_SQLITE_AMOUNT_MAX || per_second > VX_SQLITE_AMOUNT_MAX)
        return vx_err_set(err, VX_E_INVALID, "invalid_price", "prices must be between 0 and 1e15");
    struct price_args a = {model, actor_id, per_job, per_second, now};
    int changes = 0;
    return vx_sqlite_write_one(st, SQ_PRICE_SET,
                     "INSERT INTO prices (model, per_job, per_second, actor_id, updated_at)"
                     " VALUES (?, ?, ?, ?, ?) ON CONFLICT (model) DO UPDATE SET"
                     " per_job = excluded.per_job, per_second = excluded.per_second,"
                     " actor_id = excluded.actor_id, updated_at = excluded.updated_at",
                     bind_price, &a, &changes, err);
}

/* ---- the table -------------------------------------------------------------- */

const vx_store_ops vx_store_sqlite_ops = {
    .scheme = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .ping = sq_ping,
    .schema_version = sq_schema_version,
    .setting_get = sq_setting_get,
    .setting_put_if_absent = sq_setting_put_if_absent,
    .user_create = vx_sqlite_user_create,
    .user_get = vx_sqlite_user_get,
    .user_get_by_name = vx_sqlite_user_get_by_name,
    .user_list = vx_sqlite_user_list,
    .user_count_role = vx_sqlite_user_count_role,
    .user_set_role = vx_sqlite_user_set_role,
    .api_key_create = vx_sqlite_api_key_create,
    .api_key_find = vx_sqlite_api_key_find,
    .api_key_list = vx_sqlite_api_key_list,
    .api_key_revoke = vx_sqlite_api_key_revoke,
    .api_key_touch = vx_sqlite_api_key_touch,
    .balance_get = sq_balance_get,
    .ledger_apply = sq_ledger_apply,
    .ledger_list = sq_ledger_list,
    .ledger_audit = sq_ledger_audit,
    .price_get = sq_price_get,
    .price_set = sq_price_set,
    .job_submit = vx_sqlite_job_submit,
    .job_get = vx_sqlite_job_get,
    .job_list = vx_sqlite_job_list,
    .job_cancel = vx_sqlite_job_cancel,
    .job_claim = vx_sqlite_job_claim,
    .job_heartbeat = vx_sqlite_job_heartbeat,
    .job_succeed = vx_sqlite_job_succeed,
    .job_fail = vx_sqlite_job_fail,
    .job_release = vx_sqlite_job_release,
    .job_reap = vx_sqlite_job_reap,
    .job_counts = vx_sqlite_job_counts,
    .event_append = vx_sqlite_event_append,
    .event_list = vx_sqlite_event_list,
    .event_last_id = vx_sqlite_event_last_id,
    .jobs_without_terminal_event = vx_sqlite_jobs_without_terminal_event,
    .event_purge = vx_sqlite_event_purge,
    .webhook_create = vx_sqlite_webhook_create,
    .webhook_get = vx_sqlite_webhook_get,
    .webhook_list = vx_sqlite_webhook_list,
    .webhook_job_endpoint = vx_sqlite_webhook_job_endpoint,
    .webhook_delete = vx_sqlite_webhook_delete,
    .webhook_rotate = vx_sqlite_webhook_rotate,
    .delivery_claim = vx_sqlite_delivery_claim,
    .delivery_record = vx_sqlite_delivery_record,
    .delivery_list = vx_sqlite_delivery_list,
    .delivery_redeliver = vx_sqlite_delivery_redeliver,
    .delivery_release_owner = vx_sqlite_delivery_release_owner,
    .upload_create = vx_sqlite_upload_create,
    .upload_get = vx_sqlite_upload_get,
    .job_submit_upload = vx_sqlite_job_submit_upload,
    .upload_expire = vx_sqlite_upload_expire,
    .lease_acquire = vx_sqlite_lease_acquire,
    .stream_open = vx_sqlite_stream_open,
    .stream_record = vx_sqlite_stream_record,
};

/* Returns a store the caller closes with vx_store_close(). */
static vx_store *sq_open(const char *url, vx_err *err) {
    char path[PATH_MAX];
    int pool;
    if (parse_url(url, path, sizeof path, &pool, err) != 0) return NULL;
    if (mkdir_parents(path) != 0) {
        vx_error("store: cannot create the directory for the database (errno %d)", errno);
        vx_err_set(err, VX_E_UNAVAILABLE, "database_unavailable", "cannot create the database directory");
        return NULL;
    }
    sq_store *s = calloc(1, sizeof *s);
    if (!s) {
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        return NULL;
    }
    s->base.ops = &vx_store_sqlite_ops;
    pthread_mutex_init(&s->pool_mu, NULL);
    pthread_cond_init(&s->pool_cv, NULL);
    pthread_mutex_init(&s->write_mu, NULL);
    s->conns = calloc((size_t)pool, sizeof *s->conns);
    s->idle = calloc((size_t)pool, sizeof *s->idle);
    if (!s->conns || !s->idle) {
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        goto fail;
    }
    for (int i = 0; i < pool; i++) {
        s->nconns++;
        if (conn_open(&s->conns[i], path, &s->write_mu, err) != 0) goto fail;
        if (i == 0 && (set_wal(&s->conns[0], err) != 0 || migrate(&s->conns[0], err) != 0)) goto fail;
        s->idle[s->nidle++] = &s->conns[i];
    }
    return &s->base;
fail:
    sq_close(&s->base);
    return NULL;
}
