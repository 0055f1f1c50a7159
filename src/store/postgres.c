/* postgres.c - the cluster store backend (postgres://user[:pw]@host:port/db):
 * a per-process pool of libpq connections with named prepared statements,
 * transactions with retry of serialization failures and deadlocks, reconnect
 * after the server went away, migrations under an advisory lock, and the
 * settings hooks. Other hooks live in postgres_*.c. Every hook may be called
 * from any thread; each takes one connection for its duration.
 * URL parameters of voxd's own: pool=1..64 (default 8), schema=NAME (created
 * if missing, used as search_path), password_file=PATH; any other parameter
 * (sslmode, ...) and PGPASSWORD / PGPASSFILE are libpq's. Neither the URL nor
 * the password is ever logged. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../util/clock.h"
#include "../util/log.h"
#include "postgres_int.h"
#include "schema.h"

#define POOL_DEFAULT 8
#define POOL_MAX 64
#define RETRIES 5
#define CONNECT_TIMEOUT "5"

struct vx_pg_conn {
    PGconn *pg;
    bool prepared[PG_SLOT_COUNT];
    bool retry;
    char sqlstate[6];
    char constraint[64];
};

typedef struct pg_store {
    vx_store base;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    vx_pg_conn *conns;
    vx_pg_conn **idle;
    size_t nconns, nidle;
    char *conninfo;   /* the URL without voxd's own parameters */
    char *password;   /* from password_file=, else NULL (libpq reads PGPASSWORD) */
    char schema[64];  /* "" = the server's default search_path */
    char options[96];
    bool down;        /* last connect failed: log recovery once */
    struct vx_pg_listener *listener; /* job wake-ups (postgres_listen.c), or NULL */
} pg_store;

/* ---- parameters and columns ---------------------------------------------- */

void vx_pg_text(vx_pg_args *a, const char *s) {
    if (a->n < VX_PG_MAX_PARAMS) a->v[a->n++] = s;
}

void vx_pg_i64(vx_pg_args *a, int64_t v) {
    if (a->n >= VX_PG_MAX_PARAMS) return;
    snprintf(a->num[a->n], sizeof a->num[0], "%lld", (long long)v);
    a->v[a->n] = a->num[a->n];
    a->n++;
}

void vx_pg_f64(vx_pg_args *a, double v) {
    if (a->n >= VX_PG_MAX_PARAMS) return;
    snprintf(a->num[a->n], sizeof a->num[0], "%.17g", v);
    a->v[a->n] = a->num[a->n];
    a->n++;
}

int64_t vx_pg_col_i64(const PGresult *r, int row, int col) {
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

double vx_pg_col_f64(const PGresult *r, int row, int col) {
    return PQgetisnull(r, row, col) ? 0 : strtod(PQgetvalue(r, row, col), NULL);
}

void vx_pg_col_copy(const PGresult *r, int row, int col, char *dst, size_t cap) {
    snprintf(dst, cap, "%s", PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

char *vx_pg_col_dup(const PGresult *r, int row, int col, bool *oom) {
    if (PQgetisnull(r, row, col)) return NULL;
    char *d = strdup(PQgetvalue(r, row, col));
    if (!d) *oom = true;
    return d;
}

int vx_pg_clamp_limit(int limit) { return limit < 1 ? 1 : limit > VX_PG_LIST_MAX ? VX_PG_LIST_MAX : limit; }
int vx_pg_oom(vx_err *err) { return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory"); }

/* ---- statements and errors -------------------------------------------------- */

const char *vx_pg_sqlstate(const vx_pg_conn *c) { return c->sqlstate; }
const char *vx_pg_constraint(const vx_pg_conn *c) { return c->constraint; }
void vx_pg_retry(vx_pg_conn *c) { c->retry = true; }

static bool conn_lost(const vx_pg_conn *c, const char *state) {
    return PQstatus(c->pg) != CONNECTION_OK || !state || strncmp(state, "08", 2) == 0 ||
           strcmp(state, "57P01") == 0 || strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0;
}

static int fail(vx_pg_conn *c, const PGresult *r, vx_err *err) {
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *cons = r ? PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME) : NULL;
    snprintf(c->sqlstate, sizeof c->sqlstate, "%s", state ? state : "");
    snprintf(c->constraint, sizeof c->constraint, "%s", cons ? cons : "");
    if (conn_lost(c, state)) {
        vx_warn("postgres: lost the connection: %s", PQerrorMessage(c->pg));
        return vx_err_set(err, VX_E_UNAVAILABLE, "database_unavailable", "the database is unavailable");
    }
    if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0) {
        c->retry = true;
        return vx_err_set(err, VX_E_UNAVAILABLE, "database_busy", "the database is busy, try again");
    }
    if (strcmp(state, "23514") == 0 && strncmp(c->constraint, "balances_", 9) == 0)
        return vx_err_set(err, VX_E_PAYMENT, "insufficient_credits", "not enough credits");
    if (strcmp(state, "23505") == 0) return vx_err_set(err, VX_E_CONFLICT, "already_exists", "it already exists");
    if (strcmp(state, "23503") == 0) return vx_err_set(err, VX_E_NOT_FOUND, "user_not_found", "no such user");
    if (strcmp(state, "22003") == 0)
        return vx_err_set(err, VX_E_INVALID, "amount_out_of_range", "a number is out of range");
    if (strcmp(state, "23514") == 0)
        return vx_err_set(err, VX_E_INVALID, "invalid_value", "a value is out of range");
    vx_error("postgres: %s (%s)", r ? PQresultErrorMessage(r) : PQerrorMessage(c->pg), state);
    return vx_err_set(err, VX_E_INTERNAL, "database_error", "the database failed");
}

PGresult *vx_pg_exec(vx_pg_conn *c, int slot, const char *sql, const vx_pg_args *a, vx_err *err) {
    char name[16];
    snprintf(name, sizeof name, "vx%d", slot);
    c->sqlstate[0] = c->constraint[0] = '\0';
    if (!c->prepared[slot]) {
        PGresult *p = PQprepare(c->pg, name, sql, 0, NULL);
        if (PQresultStatus(p) != PGRES_COMMAND_OK) {
            fail(c, p, err);
            PQclear(p);
            return NULL;
        }
        PQclear(p);
        c->prepared[slot] = true;
    }
    PGresult *r = PQexecPrepared(c->pg, name, a ? a->n : 0, a ? a->v : NULL, NULL, NULL, 0);
    ExecStatusType s = PQresultStatus(r);
    if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) return r;
    fail(c, r, err);
    PQclear(r);
    return NULL;
}

int vx_pg_exec_cmd(vx_pg_conn *c, int slot, const char *sql, const vx_pg_args *a, int64_t *changes,
                   vx_err *err) {
    PGresult *r = vx_pg_exec(c, slot, sql, a, err);
    if (!r) return -1;
    if (changes) *changes = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return 0;
}

/* A statement without parameters (transaction control, migrations). */
static int simple(vx_pg_conn *c, const char *sql, vx_err *err) {
    PGresult *r = PQexec(c->pg, sql);
    ExecStatusType s = PQresultStatus(r);
    int rc = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK ? 0 : fail(c, r, err);
    PQclear(r);
    return rc;
}

/* ---- connections and the pool ------------------------------------------------- */

static void on_notice(void *arg, const char *message) {
    (void)arg;
    vx_debug("postgres: %s", message);
}

PGconn *vx_pg_connect_new(vx_store *st) {
    pg_store *s = (pg_store *)st;
    const char *keys[8], *vals[8];
    int n = 0;
    keys[n] = "dbname", vals[n++] = s->conninfo;
    keys[n] = "connect_timeout", vals[n++] = CONNECT_TIMEOUT;
    keys[n] = "application_name", vals[n++] = "voxd";
    if (s->password) keys[n] = "password", vals[n++] = s->password;
    if (s->options[0]) keys[n] = "options", vals[n++] = s->options;
    keys[n] = NULL, vals[n] = NULL;
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (pg) PQsetNoticeProcessor(pg, on_notice, NULL);
    return pg;
}

struct vx_pg_listener **vx_pg_listener_slot(vx_store *st) { return &((pg_store *)st)->listener; }

static int conn_ensure(pg_store *s, vx_pg_conn *c, vx_err *err) {
    if (c->pg && PQstatus(c->pg) == CONNECTION_OK) return 0;
    if (c->pg) {
        PQreset(c->pg);
    } else {
        c->pg = vx_pg_connect_new(&s->base);
        if (!c->pg) return vx_pg_oom(err);
    }
    memset(c->prepared, 0, sizeof c->prepared);
    if (PQstatus(c->pg) != CONNECTION_OK) {
        pthread_mutex_lock(&s->mu);
        bool first = !s->down;
        s->down = true;
        pthread_mutex_unlock(&s->mu);
        if (first) vx_warn("postgres: cannot connect: %s", PQerrorMessage(c->pg));
        return vx_err_set(err, VX_E_UNAVAILABLE, "database_unavailable", "the database is unavailable");
    }
    pthread_mutex_lock(&s->mu);
    bool was_down = s->down;
    s->down = false;
    pthread_mutex_unlock(&s->mu);
    if (was_down) vx_info("postgres: connected again");
    return 0;
}

static vx_pg_conn *conn_get(pg_store *s) {
    pthread_mutex_lock(&s->mu);
    while (s->nidle == 0) pthread_cond_wait(&s->cv, &s->mu);
    vx_pg_conn *c = s->idle[--s->nidle];
    pthread_mutex_unlock(&s->mu);
    return c;
}

static void conn_put(pg_store *s, vx_pg_conn *c) {
    pthread_mutex_lock(&s->mu);
    s->idle[s->nidle++] = c;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void pause_before_retry(int attempt) {
    long ms = (long)(5 << attempt) + (long)(vx_now_ms() % 7);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int vx_pg_run(vx_store *st, vx_pg_body body, void *arg, vx_err *err) {
    pg_store *s = (pg_store *)st;
    int busy_tries = 0;
    for (int attempt = 0;; attempt++) {
        vx_pg_conn *c = conn_get(s);
        if (conn_ensure(s, c, err) != 0) {
            conn_put(s, c);
            return -1;
        }
        c->retry = false;
        int rc = -1;
        bool reconnect = false, again = false;
        if (simple(c, "BEGIN", err) != 0) {
            /* A connection that died while idle (server restart): BEGIN had no
             * effect, so try again; the next conn_ensure reconnects it, and
             * every pooled connection may need that once. */
            reconnect = PQstatus(c->pg) != CONNECTION_OK && attempt <= (int)s->nconns;
        } else {
            rc = body(c, arg, err);
            if (rc == 0) {
                rc = simple(c, "COMMIT", err);
            } else {
                again = c->retry && busy_tries++ < RETRIES;
                vx_err ignored;
                if (PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
                    simple(c, "ROLLBACK", &ignored);
            }
        }
        conn_put(s, c);
        if (rc == 0) return 0;
        if (again) pause_before_retry(busy_tries);
        else if (!reconnect) return -1;
    }
}

struct write_one_args { int slot; const char *sql; const vx_pg_args *a; int64_t *changes; };
static int write_one_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct write_one_args *w = arg;
    return vx_pg_exec_cmd(c, w->slot, w->sql, w->a, w->changes, err);
}

int vx_pg_write_one(vx_store *st, int slot, const char *sql, const vx_pg_args *a, int64_t *changes,
                    vx_err *err) {
    int64_t ignored = 0;
    struct write_one_args w = {slot, sql, a, changes ? changes : &ignored};
    return vx_pg_run(st, write_one_body, &w, err);
}

/* ---- open, migrations, close ---------------------------------------------------- */

/* voxd's own query parameters, removed before libpq sees the URL:
 * pool=1..64, schema=[a-z0-9_] (created if missing; used as search_path),
 * password_file=PATH (first line is the password). */
static int take_param(pg_store *s, const char *key, const char *val, size_t vlen, vx_err *err) {
    char v[PATH_MAX];
    if (vlen >= sizeof v) return -1;
    memcpy(v, val, vlen);
    v[vlen] = '\0';
    if (strcmp(key, "pool") == 0) {
        char *end;
        long n = strtol(v, &end, 10);
        if (*end || n < 1 || n > POOL_MAX) return -1;
        s->nconns = (size_t)n;
    } else if (strcmp(key, "schema") == 0) {
        if (!vlen || vlen >= sizeof s->schema || strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789_") != vlen)
            return -1;
        memcpy(s->schema, v, vlen + 1);
        snprintf(s->options, sizeof s->options, "-c search_path=%.63s", s->schema);
    } else if (strcmp(key, "password_file") == 0) {
        FILE *f = fopen(v, "r");
        char line[512];
        if (!f) {
            vx_error("postgres: cannot read the password file (errno %d)", errno);
            return vx_err_set(err, VX_E_INVALID, "invalid_store_url", "cannot read the database password file");
        }
        bool got = fgets(line, sizeof line, f) != NULL;
        fclose(f);
        if (!got) return vx_err_set(err, VX_E_INVALID, "invalid_store_url", "the database password file is empty");
        line[strcspn(line, "\r\n")] = '\0';
        free(s->password);
        if (!(s->password = strdup(line))) return vx_pg_oom(err);
    } else {
        return 1; /* not ours: libpq's */
    }
    return 0;
}

static int parse_url(pg_store *s, const char *url, vx_err *err) {
    const char *q = strchr(url, '?');
    size_t base = q ? (size_t)(q - url) : strlen(url);
    char *out = malloc(strlen(url) + 1);
    if (!out) return vx_pg_oom(err);
    memcpy(out, url, base);
    size_t len = base;
    char sep = '?';
    for (const char *p = q ? q + 1 : NULL; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        char key[32];
        int rc = 1;
        if (eq && (size_t)(eq - p) < sizeof key) {
            memcpy(key, p, (size_t)(eq - p));
            key[eq - p] = '\0';
            rc = take_param(s, key, eq + 1, plen - (size_t)(eq - p) - 1, err);
        }
        if (rc < 0) {
            free(out);
            if (err && err->status != VX_OK && strcmp(err->code, "invalid_store_url") == 0) return -1;
            return vx_err_set(err, VX_E_INVALID, "invalid_store_url",
                              "bad store URL parameter (pool=1..64, schema=[a-z0-9_])");
        }
        if (rc == 1) {
            out[len++] = sep;
            sep = '&';
            memcpy(out + len, p, plen);
            len += plen;
        }
        p = amp ? amp + 1 : NULL;
    }
    out[len] = '\0';
    s->conninfo = out;
    return 0;
}

static int exec_params(vx_pg_conn *c, const char *sql, const vx_pg_args *a, PGresult **res, vx_err *err) {
    PGresult *r = PQexecParams(c->pg, sql, a ? a->n : 0, NULL, a ? a->v : NULL, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fail(c, r, err);
        PQclear(r);
        return -1;
    }
    if (res) *res = r;
    else PQclear(r);
    return 0;
}

static int create_schema(vx_pg_conn *c, const char *schema, vx_err *err) {
    char *ident = PQescapeIdentifier(c->pg, schema, strlen(schema));
    if (!ident) return vx_pg_oom(err);
    char sql[160];
    snprintf(sql, sizeof sql, "CREATE SCHEMA IF NOT EXISTS %s", ident);
    PQfreemem(ident);
    int rc = simple(c, "BEGIN", err);
    if (rc == 0) rc = simple(c, "SELECT pg_advisory_xact_lock(hashtext('voxd.create_schema'))", err);
    if (rc == 0) rc = simple(c, sql, err);
    vx_err ignored;
    return rc == 0 ? simple(c, "COMMIT", err) : (simple(c, "ROLLBACK", &ignored), -1);
}

/* Applies one migration unless recorded. The advisory lock is held until the
 * transaction ends, so nodes starting together apply each one exactly once. */
static int migrate_one(vx_pg_conn *c, const vx_migration *m, vx_err *err) {
    PGresult *r = NULL;
    vx_pg_args a = {0};
    vx_pg_i64(&a, m->version);
    int rc = simple(c, "BEGIN", err);
    if (rc != 0) return -1;
    rc = simple(c, "SELECT pg_advisory_xact_lock(hashtext('voxd.migrate.' || current_schema()))", err);
    if (rc == 0) rc = simple(c, "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                                " name TEXT NOT NULL, applied_at BIGINT NOT NULL)", err);
    if (rc == 0) rc = exec_params(c, "SELECT 1 FROM schema_migrations WHERE version = $1::integer", &a, &r, err);
    if (rc == 0 && PQntuples(r) == 0) {
        vx_info("store: applying migration %s", m->name);
        rc = simple(c, m->sql, err);
        vx_pg_text(&a, m->name);
        vx_pg_i64(&a, vx_now_ms());
        if (rc == 0) rc = exec_params(c, "INSERT INTO schema_migrations (version, name, applied_at)"
                                         " VALUES ($1::integer, $2, $3::bigint)", &a, NULL, err);
    }
    PQclear(r);
    vx_err ignored;
    if (rc == 0) return simple(c, "COMMIT", err);
    vx_error("store: migration %s failed", m->name);
    simple(c, "ROLLBACK", &ignored);
    return -1;
}

static int migrate(pg_store *s, vx_pg_conn *c, vx_err *err) {
    if (s->schema[0] && create_schema(c, s->schema, err) != 0) return -1;
    int last = 0;
    for (const vx_migration *m = vx_migrations_postgres; m->sql; m++) {
        if (m->version <= last) return vx_err_set(err, VX_E_INTERNAL, "database_error", "migrations out of order");
        last = m->version;
        if (migrate_one(c, m, err) != 0) return -1;
    }
    return 0;
}

static void pg_close(vx_store *st) {
    pg_store *s = (pg_store *)st;
    if (!s) return;
    vx_pg_listener_free(s->listener);
    for (size_t i = 0; s->conns && i < s->nconns; i++)
        if (s->conns[i].pg) PQfinish(s->conns[i].pg);
    free(s->conns);
    free(s->idle);
    free(s->conninfo);
    if (s->password) {
        memset(s->password, 0, strlen(s->password));
        free(s->password);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

static vx_store *pg_open(const char *url, vx_err *err);

/* ---- small hooks ------------------------------------------------------------------ */

static int ping_body(vx_pg_conn *c, void *arg, vx_err *err) {
    (void)arg;
    return vx_pg_exec_cmd(c, PG_PING, "SELECT 1", NULL, NULL, err);
}

static int pg_ping(vx_store *st, vx_err *err) { return vx_pg_run(st, ping_body, NULL, err); }

static int version_body(vx_pg_conn *c, void *arg, vx_err *err) {
    PGresult *r = vx_pg_exec(c, PG_SCHEMA_VERSION, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                             NULL, err);
    if (!r) return -1;
    *(int *)arg = (int)vx_pg_col_i64(r, 0, 0);
    PQclear(r);
    return 0;
}

static int pg_schema_version(vx_store *st) {
    int v = -1;
    vx_err err;
    return vx_pg_run(st, version_body, &v, &err) == 0 ? v : -1;
}

struct setting_args { const char *key; char *value; size_t cap; bool insert; };

static const char SQL_SETTING_GET[] = "SELECT value FROM settings WHERE key = $1";

static int setting_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct setting_args *a = arg;
    vx_pg_args p = {0};
    vx_pg_text(&p, a->key);
    if (a->insert) {
        vx_pg_text(&p, a->value);
        if (vx_pg_exec_cmd(c, PG_SETTING_INSERT, "INSERT INTO settings (key, value) VALUES ($1, $2)"
                           " ON CONFLICT (key) DO NOTHING", &p, NULL, err) != 0)
            return -1;
        p.n = 1;
    }
    PGresult *r = vx_pg_exec(c, PG_SETTING_GET, SQL_SETTING_GET, &p, err);
    if (!r) return -1;
    int rc = 0;
    if (PQntuples(r) == 0) {
        rc = vx_err_set(err, VX_E_NOT_FOUND, "setting_not_found", "no such setting");
    } else {
        size_t len = (size_t)PQgetlength(r, 0, 0);
        if (len >= a->cap) rc = vx_err_set(err, VX_E_INTERNAL, "setting_too_long", "a stored setting does not fit");
        else memcpy(a->value, PQgetvalue(r, 0, 0), len + 1);
    }
    PQclear(r);
    return rc;
}

static int pg_setting_get(vx_store *st, const char *key, char *value, size_t cap, vx_err *err) {
    struct setting_args a = {key, value, cap, false};
    return vx_pg_run(st, setting_body, &a, err);
}

static int pg_setting_put_if_absent(vx_store *st, const char *key, char *value, size_t cap, vx_err *err) {
    struct setting_args a = {key, value, cap, true};
    return vx_pg_run(st, setting_body, &a, err);
}

/* ---- the table ------------------------------------------------------------------------- */

#define PG_HOOKS                                                                               \
    .open = pg_open, .close = pg_close, .ping = pg_ping, .schema_version = pg_schema_version,   \
    .setting_get = pg_setting_get, .setting_put_if_absent = pg_setting_put_if_absent,           \
    .user_create = vx_pg_user_create, .user_get = vx_pg_user_get,                               \
    .user_get_by_name = vx_pg_user_get_by_name, .user_list = vx_pg_user_list,                   \
    .user_count_role = vx_pg_user_count_role, .user_set_role = vx_pg_user_set_role,             \
    .api_key_create = vx_pg_api_key_create, .api_key_find = vx_pg_api_key_find,                 \
    .api_key_list = vx_pg_api_key_list, .api_key_revoke = vx_pg_api_key_revoke,                 \
    .api_key_touch = vx_pg_api_key_touch, .balance_get = vx_pg_balance_get,                     \
    .ledger_apply = vx_pg_ledger_apply, .ledger_list = vx_pg_ledger_list,                       \
    .ledger_audit = vx_pg_ledger_audit, .price_get = vx_pg_price_get,                           \
    .price_set = vx_pg_price_set,                                                               \
    .job_submit = vx_pg_job_submit, .job_get = vx_pg_job_get, .job_list = vx_pg_job_list,       \
    .job_cancel = vx_pg_job_cancel, .job_claim = vx_pg_job_claim,                               \
    .job_heartbeat = vx_pg_job_heartbeat, .job_succeed = vx_pg_job_succeed,                     \
    .job_fail = vx_pg_job_fail, .job_release = vx_pg_job_release, .job_reap = vx_pg_job_reap,   \
    .job_counts = vx_pg_job_counts, .event_append = vx_pg_event_append,                         \
    .event_list = vx_pg_event_list, .event_last_id = vx_pg_event_last_id,                       \
    .event_purge = vx_pg_event_purge, .webhook_create = vx_pg_webhook_create,                   \
    .webhook_get = vx_pg_webhook_get, .webhook_list = vx_pg_webhook_list,                       \
    .webhook_job_endpoint = vx_pg_webhook_job_endpoint, .webhook_delete = vx_pg_webhook_delete, \
    .webhook_rotate = vx_pg_webhook_rotate, .delivery_claim = vx_pg_delivery_claim,             \
    .delivery_record = vx_pg_delivery_record, .delivery_list = vx_pg_delivery_list,             \
    .delivery_redeliver = vx_pg_delivery_redeliver,                                             \
    .delivery_release_owner = vx_pg_delivery_release_owner,                                     \
    .upload_create = vx_pg_upload_create, .upload_get = vx_pg_upload_get,                       \
    .job_submit_upload = vx_pg_job_submit_upload, .upload_expire = vx_pg_upload_expire,         \
    .lease_acquire = vx_pg_lease_acquire, .job_listen = vx_pg_job_listen,                       \
    .job_ready = vx_pg_job_ready, .jobs_without_terminal_event = vx_pg_jobs_without_terminal_event, \
    .stream_open = vx_pg_stream_open, .stream_record = vx_pg_stream_record

const vx_store_ops vx_store_postgres_ops = {.scheme = "postgres", PG_HOOKS};
const vx_store_ops vx_store_postgresql_ops = {.scheme = "postgresql", PG_HOOKS};

/* Returns a store the caller closes with vx_store_close(). Connections open
 * lazily, except the first, which applies the migrations. */
static vx_store *pg_open(const char *url, vx_err *err) {
    pg_store *s = calloc(1, sizeof *s);
    if (!s) {
        vx_pg_oom(err);
        return NULL;
    }
    bool plain = strncmp(url, "postgresql://", 13) == 0;
    s->base.ops = plain ? &vx_store_postgresql_ops : &vx_store_postgres_ops;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->nconns = POOL_DEFAULT;
    if (strncmp(url, "postgres://", 11) != 0 && !plain) {
        vx_err_set(err, VX_E_INVALID, "invalid_store_url", "expected postgres://user@host:port/dbname");
        goto fail;
    }
    if (parse_url(s, url, err) != 0) goto fail;
    size_t pool = s->nconns;
    s->nconns = 0;
    s->conns = calloc(pool, sizeof *s->conns);
    s->idle = calloc(pool, sizeof *s->idle);
    if (!s->conns || !s->idle) {
        vx_pg_oom(err);
        goto fail;
    }
    s->nconns = pool;
    if (conn_ensure(s, &s->conns[0], err) != 0 || migrate(s, &s->conns[0], err) != 0) goto fail;
    for (size_t i = 0; i < pool; i++) s->idle[s->nidle++] = &s->conns[pool - 1 - i];
    return &s->base;
fail:
    pg_close(&s->base);
    return NULL;
}
