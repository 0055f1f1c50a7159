/* postgres_ledger.c - credits and prices of the PostgreSQL store: balances,
 * the immutable ledger (a post locks the user's balance row first, so posts
 * for one user serialize and a ref is judged against committed entries),
 * audits and model price overrides. Callable from any thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "postgres_int.h"

/* ---- credits -------------------------------------------------------------------------- */

static int balance_read(vx_pg_conn *c, int slot, const char *sql, const char *user_id, vx_balance *out,
                        vx_err *err) {
    vx_pg_args p = {0};
    vx_pg_text(&p, user_id);
    PGresult *r = vx_pg_exec(c, slot, sql, &p, err);
    if (!r) return -1;
    int rc = 0;
    if (PQntuples(r) == 0) {
        rc = vx_err_set(err, VX_E_NOT_FOUND, "user_not_found", "no such user");
    } else {
        out->available = vx_pg_col_i64(r, 0, 0);
        out->held = vx_pg_col_i64(r, 0, 1);
    }
    PQclear(r);
    return rc;
}

struct balance_args { const char *user_id; vx_balance *out; };
static int balance_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct balance_args *a = arg;
    return balance_read(c, PG_BALANCE_GET, "SELECT available, held FROM balances WHERE user_id = $1",
                        a->user_id, a->out, err);
}

int vx_pg_balance_get(vx_store *st, const char *user_id, vx_balance *out, vx_err *err) {
    struct balance_args a = {user_id, out};
    return vx_pg_run(st, balance_body, &a, err);
}

/* check_reuse: a ref already used for another kind or amount is a conflict. */
static int post_entry(vx_pg_conn *c, const vx_ledger_entry *e, bool check_reuse, bool *replayed,
                      vx_balance *after, vx_err *err) {
    *replayed = false;
    if (balance_read(c, PG_BALANCE_LOCK, "SELECT available, held FROM balances WHERE user_id = $1 FOR UPDATE",
                     e->user_id, after, err) != 0)
        return -1;
    vx_pg_args p = {0};
    vx_pg_text(&p, e->user_id);
    vx_pg_text(&p, e->ref);
    PGresult *r = vx_pg_exec(c, PG_LEDGER_REF_DETAIL, "SELECT kind, amount FROM ledger WHERE user_id = $1 AND ref = $2",
                             &p, err);
    if (!r) return -1;
    if (PQntuples(r) > 0) {
        bool differs = strcmp(PQgetvalue(r, 0, 0), vx_ledger_kind_name(e->kind)) != 0 ||
                       vx_pg_col_i64(r, 0, 1) != e->amount;
        PQclear(r);
        if (check_reuse && differs)
            return vx_err_set(err, VX_E_CONFLICT, "idempotency_key_reused",
                              "this Idempotency-Key was used for a different request");
        *replayed = true;
        return 0;
    }
    PQclear(r);
    p.n = 0;
    vx_pg_text(&p, e->user_id);
    vx_pg_i64(&p, e->amount);
    vx_pg_i64(&p, e->held_delta);
    if (!(r = vx_pg_exec(c, PG_BALANCE_UPDATE, "UPDATE balances SET available = available + $2::bigint,"
                         " held = held + $3::bigint WHERE user_id = $1 RETURNING available, held", &p, err)))
        return -1;
    after->available = vx_pg_col_i64(r, 0, 0);
    after->held = vx_pg_col_i64(r, 0, 1);
    PQclear(r);
    p.n = 0;
    vx_pg_text(&p, e->id);
    vx_pg_text(&p, e->user_id);
    vx_pg_text(&p, vx_ledger_kind_name(e->kind));
    vx_pg_i64(&p, e->amount);
    vx_pg_i64(&p, e->held_delta);
    vx_pg_i64(&p, e->charged);
    vx_pg_text(&p, e->job_id);
    vx_pg_text(&p, e->ref);
    vx_pg_text(&p, e->note);
    vx_pg_text(&p, e->actor_id);
    vx_pg_i64(&p, e->created_at);
    vx_pg_i64(&p, after->available);
    if (vx_pg_exec_cmd(c, PG_LEDGER_INSERT, "INSERT INTO ledger (id, user_id, kind, amount, held_delta, charged,"
                       " job_id, ref, note, actor_id, created_at, balance_after) VALUES ($1, $2, $3,"
                       " $4::bigint, $5::bigint, $6::bigint, $7, $8, $9, $10, $11::bigint, $12::bigint)",
                       &p, NULL, err) != 0) {
        if (strcmp(vx_pg_sqlstate(c), "23505") == 0)
            return vx_err_set(err, VX_E_CONFLICT, "ledger_entry_exists", "a ledger entry with that id exists");
        return -1;
    }
    return 0;
}

int vx_pg_ledger_post(vx_pg_conn *c, const vx_ledger_entry *e, bool *replayed, vx_balance *after,
                      vx_err *err) {
    return post_entry(c, e, false, replayed, after, err);
}

struct apply_args { const vx_ledger_entry *e; bool replayed; vx_balance b; };
static int apply_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct apply_args *a = arg;
    return post_entry(c, a->e, true, &a->replayed, &a->b, err);
}

int vx_pg_ledger_apply(vx_store *st, const vx_ledger_entry *e, bool *replayed, vx_balance *out_balance,
                           vx_err *err) {
    bool ok_kind = e->kind == VX_LEDGER_GRANT || e->kind == VX_LEDGER_TOP_UP || e->kind == VX_LEDGER_ADJUST ||
                   e->kind == VX_LEDGER_REFUND;
    if (!ok_kind)
        return vx_err_set(err, VX_E_INVALID, "invalid_ledger_kind", "holds and settlements come from jobs");
    bool positive_only = e->kind != VX_LEDGER_ADJUST;
    if (e->amount == 0 || e->amount > VX_PG_AMOUNT_MAX || e->amount < -VX_PG_AMOUNT_MAX ||
        (positive_only && e->amount < 0))
        return vx_err_set(err, VX_E_INVALID, "invalid_amount", "the amount is out of range");
    if (!e->ref[0] || !e->id[0])
        return vx_err_set(err, VX_E_INVALID, "invalid_ledger_entry", "a ledger entry needs an id and a ref");
    vx_ledger_entry entry = *e;
    entry.held_delta = 0;
    entry.charged = 0;
    struct apply_args a = {.e = &entry};
    if (vx_pg_run(st, apply_body, &a, err) != 0) return -1;
    if (replayed) *replayed = a.replayed;
    if (out_balance) *out_balance = a.b;
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

struct ledger_list_args { const char *user_id, *cursor; int limit; vx_ledger_entry *list; size_t n; };
static int ledger_list_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct ledger_list_args *a = arg;
    vx_pg_args p = {0};
    vx_pg_text(&p, a->user_id);
    vx_pg_text(&p, a->cursor && *a->cursor ? a->cursor : VX_PG_CURSOR_TOP);
    vx_pg_i64(&p, a->limit);
    PGresult *r = vx_pg_exec(c, PG_LEDGER_LIST,
        "SELECT id, user_id, kind, amount, held_delta, charged, job_id, ref, note, actor_id,"
        " created_at, balance_after FROM ledger WHERE user_id = $1"
        " AND seq < COALESCE((SELECT seq FROM ledger WHERE id = $2 AND user_id = $1),"
        " CASE WHEN $2 = '" VX_PG_CURSOR_TOP "' THEN 9223372036854775807 ELSE 0 END)"
        " ORDER BY seq DESC LIMIT $3::integer", &p, err);
    if (!r) return -1;
    int rows = PQntuples(r);
    for (int i = 0; i < rows; i++) {
        vx_ledger_entry *e = &a->list[i];
        memset(e, 0, sizeof *e);
        vx_pg_col_copy(r, i, 0, e->id, sizeof e->id);
        vx_pg_col_copy(r, i, 1, e->user_id, sizeof e->user_id);
        if (kind_parse(PQgetvalue(r, i, 2), &e->kind) != 0) {
            PQclear(r);
            return vx_err_set(err, VX_E_INTERNAL, "database_error", "unknown ledger kind stored");
        }
        e->amount = vx_pg_col_i64(r, i, 3);
        e->held_delta = vx_pg_col_i64(r, i, 4);
        e->charged = vx_pg_col_i64(r, i, 5);
        vx_pg_col_copy(r, i, 6, e->job_id, sizeof e->job_id);
        vx_pg_col_copy(r, i, 7, e->ref, sizeof e->ref);
        vx_pg_col_copy(r, i, 8, e->note, sizeof e->note);
        vx_pg_col_copy(r, i, 9, e->actor_id, sizeof e->actor_id);
        e->created_at = vx_pg_col_i64(r, i, 10);
        e->balance_after = vx_pg_col_i64(r, i, 11);
    }
    a->n = (size_t)rows;
    PQclear(r);
    return 0;
}

/* Caller frees *out with free(). */
int vx_pg_ledger_list(vx_store *st, const char *user_id, const char *cursor, int limit,
                          vx_ledger_entry **out, size_t *n, vx_err *err) {
    *out = NULL;
    *n = 0;
    struct ledger_list_args a = {user_id, cursor, vx_pg_clamp_limit(limit), NULL, 0};
    if (!(a.list = calloc((size_t)a.limit, sizeof *a.list))) return vx_pg_oom(err);
    int rc = vx_pg_run(st, ledger_list_body, &a, err);
    if (rc != 0 || a.n == 0) {
        free(a.list);
        return rc;
    }
    *out = a.list;
    *n = a.n;
    return 0;
}

struct audit_args { const char *user_id; vx_ledger_sums got; };
static int audit_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct audit_args *a = arg;
    vx_pg_args p = {0};
    vx_pg_text(&p, a->user_id);
    PGresult *r = vx_pg_exec(c, PG_LEDGER_AUDIT,
        "SELECT b.available, b.held, COALESCE(SUM(l.amount), 0), COALESCE(SUM(l.held_delta), 0)"
        " FROM balances b LEFT JOIN ledger l ON l.user_id = b.user_id"
        " WHERE b.user_id = $1 GROUP BY b.user_id, b.available, b.held", &p, err);
    if (!r) return -1;
    int rc = 0;
    if (PQntuples(r) == 0) {
        rc = vx_err_set(err, VX_E_NOT_FOUND, "user_not_found", "no such user");
    } else {
        a->got = (vx_ledger_sums){
            .available = vx_pg_col_i64(r, 0, 0), .held = vx_pg_col_i64(r, 0, 1),
            .amount_sum = vx_pg_col_i64(r, 0, 2), .held_sum = vx_pg_col_i64(r, 0, 3),
        };
    }
    PQclear(r);
    return rc;
}

int vx_pg_ledger_audit(vx_store *st, const char *user_id, vx_ledger_sums *sums, bool *ok, vx_err *err) {
    struct audit_args a = {.user_id = user_id};
    if (vx_pg_run(st, audit_body, &a, err) != 0) return -1;
    *ok = a.got.available == a.got.amount_sum && a.got.held == a.got.held_sum;
    if (sums) *sums = a.got;
    return 0;
}

/* ---- prices ----------------------------------------------------------------------- */

struct price_args { const char *model; int64_t per_job, per_second; };
static int price_get_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct price_args *a = arg;
    vx_pg_args p = {0};
    vx_pg_text(&p, a->model);
    PGresult *r = vx_pg_exec(c, PG_PRICE_GET, "SELECT per_job, per_second FROM prices WHERE model = $1", &p, err);
    if (!r) return -1;
    int rc = 0;
    if (PQntuples(r) == 0) {
        rc = vx_err_set(err, VX_E_NOT_FOUND, "price_not_set", "no price override for that model");
    } else {
        a->per_job = vx_pg_col_i64(r, 0, 0);
        a->per_second = vx_pg_col_i64(r, 0, 1);
    }
    PQclear(r);
    return rc;
}

int vx_pg_price_get(vx_store *st, const char *model, int64_t *per_job, int64_t *per_second, vx_err *err) {
    struct price_args a = {.model = model};
    if (vx_pg_run(st, price_get_body, &a, err) != 0) return -1;
    *per_job = a.per_job;
    *per_second = a.per_second;
    return 0;
}

int vx_pg_price_set(vx_store *st, const char *model, int64_t per_job, int64_t per_second,
                        const char *actor_id, int64_t now, vx_err *err) {
    if (!model || !*model || per_job < 0 || per_second < 0 || per_job > VX_PG_AMOUNT_MAX ||
        per_second > VX_PG_AMOUNT_MAX)
        return vx_err_set(err, VX_E_INVALID, "invalid_price", "prices must be between 0 and 1e15");
    vx_pg_args p = {0};
    vx_pg_text(&p, model);
    vx_pg_i64(&p, per_job);
    vx_pg_i64(&p, per_second);
    vx_pg_text(&p, actor_id ? actor_id : "");
    vx_pg_i64(&p, now);
    return vx_pg_write_one(st, PG_PRICE_SET,
                           "INSERT INTO prices (model, per_job, per_second, actor_id, updated_at)"
                           " VALUES ($1, $2::bigint, $3::bigint, $4, $5::bigint) ON CONFLICT (model) DO UPDATE SET"
                           " per_job = EXCLUDED.per_job, per_second = EXCLUDED.per_second,"
                           " actor_id = EXCLUDED.actor_id, updated_at = EXCLUDED.updated_at",
                           &p, NULL, err);
}
