/* postgres_accounts.c - users and API keys of the PostgreSQL store (postgres.c
 * holds the pool and the backend table). Usernames are unique
 * case-insensitively (a unique index on lower(username)). Callable from any
 * thread; each hook is one transaction through vx_pg_run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "postgres_int.h"

/* api_key_touch writes at most once a minute per key (it runs on every request). */
#define TOUCH_INTERVAL_MS 60000

/* ---- users ---------------------------------------------------------------- */

#define USER_COLS "id, username, email, role, password_hash, created_at, disabled"

static void user_from_row(const PGresult *r, int row, int col, vx_user *u) {
    memset(u, 0, sizeof *u);
    vx_pg_col_copy(r, row, col + 0, u->id, sizeof u->id);
    vx_pg_col_copy(r, row, col + 1, u->username, sizeof u->username);
    vx_pg_col_copy(r, row, col + 2, u->email, sizeof u->email);
    vx_pg_col_copy(r, row, col + 3, u->role, sizeof u->role);
    vx_pg_col_copy(r, row, col + 4, u->password_hash, sizeof u->password_hash);
    u->created_at = vx_pg_col_i64(r, row, col + 5);
    u->disabled = vx_pg_col_i64(r, row, col + 6) != 0;
}

static bool role_valid(const char *role) {
    return role && (strcmp(role, "user") == 0 || strcmp(role, "admin") == 0);
}

struct user_create_args { const vx_user *u; int64_t grant; };

static int user_create_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct user_create_args *a = arg;
    const vx_user *u = a->u;
    vx_pg_args p = {0};
    vx_pg_text(&p, u->id);
    vx_pg_text(&p, u->username);
    vx_pg_text(&p, u->email);
    vx_pg_text(&p, u->role);
    vx_pg_text(&p, u->password_hash);
    vx_pg_i64(&p, u->created_at);
    vx_pg_i64(&p, u->disabled ? 1 : 0);
    if (vx_pg_exec_cmd(c, PG_USER_INSERT, "INSERT INTO users (" USER_COLS ") VALUES ($1, $2, $3, $4, $5,"
                       " $6::bigint, $7::integer)", &p, NULL, err) != 0) {
        if (strcmp(vx_pg_sqlstate(c), "23505") == 0) {
            if (strcmp(vx_pg_constraint(c), "users_pkey") == 0)
                return vx_err_set(err, VX_E_CONFLICT, "user_exists", "a user with that id exists");
            return vx_err_set(err, VX_E_CONFLICT, "username_taken", "that username is taken");
        }
        return -1;
    }
    p.n = 0;
    vx_pg_text(&p, u->id);
    if (vx_pg_exec_cmd(c, PG_BALANCE_INSERT, "INSERT INTO balances (user_id, available, held) VALUES ($1, 0, 0)",
                       &p, NULL, err) != 0)
        return -1;
    if (a->grant > 0) {
        vx_ledger_entry e = {.kind = VX_LEDGER_GRANT, .amount = a->grant, .created_at = u->created_at};
        vx_id_new(e.id, "led");
        snprintf(e.user_id, sizeof e.user_id, "%s", u->id);
        snprintf(e.ref, sizeof e.ref, "signup");
        snprintf(e.note, sizeof e.note, "sign-up grant");
        bool replayed;
        vx_balance b;
        if (vx_pg_ledger_post(c, &e, &replayed, &b, err) != 0) return -1;
    }
    return 0;
}

int vx_pg_user_create(vx_store *st, const vx_user *u, int64_t signup_grant, vx_err *err) {
    if (!u->username[0] || !u->id[0])
        return vx_err_set(err, VX_E_INVALID, "invalid_user", "a user needs an id and a username");
    if (!role_valid(u->role)) return vx_err_set(err, VX_E_INVALID, "invalid_role", "role must be user or admin");
    if (signup_grant < 0 || signup_grant > VX_PG_AMOUNT_MAX)
        return vx_err_set(err, VX_E_INVALID, "invalid_amount", "the sign-up grant is out of range");
    struct user_create_args a = {u, signup_grant};
    return vx_pg_run(st, user_create_body, &a, err);
}

struct user_get_args { int slot; const char *sql, *arg; vx_user *out; };
static int user_get_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct user_get_args *a = arg;
    vx_pg_args p = {0};
    vx_pg_text(&p, a->arg);
    PGresult *r = vx_pg_exec(c, a->slot, a->sql, &p, err);
    if (!r) return -1;
    int rc = 0;
    if (PQntuples(r) == 0) rc = vx_err_set(err, VX_E_NOT_FOUND, "user_not_found", "no such user");
    else user_from_row(r, 0, 0, a->out);
    PQclear(r);
    return rc;
}

int vx_pg_user_get(vx_store *st, const char *id, vx_user *out, vx_err *err) {
    struct user_get_args a = {PG_USER_GET, "SELECT " USER_COLS " FROM users WHERE id = $1", id, out};
    return vx_pg_run(st, user_get_body, &a, err);
}

int vx_pg_user_get_by_name(vx_store *st, const char *username, vx_user *out, vx_err *err) {
    struct user_get_args a = {PG_USER_GET_BY_NAME,
                              "SELECT " USER_COLS " FROM users WHERE lower(username) = lower($1)", username, out};
    return vx_pg_run(st, user_get_body, &a, err);
}

struct user_list_args { const char *cursor; int limit; vx_user *list; size_t n; };
static int user_list_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct user_list_args *a = arg;
    vx_pg_args p = {0};
    vx_pg_text(&p, a->cursor && *a->cursor ? a->cursor : VX_PG_CURSOR_TOP);
    vx_pg_i64(&p, a->limit);
    PGresult *r = vx_pg_exec(c, PG_USER_LIST, "SELECT " USER_COLS " FROM users WHERE id < $1"
                             " ORDER BY id DESC LIMIT $2::integer", &p, err);
    if (!r) return -1;
    int rows = PQntuples(r);
    for (int i = 0; i < rows; i++) user_from_row(r, i, 0, &a->list[i]);
    a->n = (size_t)rows;
    PQclear(r);
    return 0;
}

/* Caller frees *out with free(). */
int vx_pg_user_list(vx_store *st, const char *cursor, int limit, vx_user **out, size_t *n, vx_err *err) {
    *out = NULL;
    *n = 0;
    struct user_list_args a = {cursor, vx_pg_clamp_limit(limit), NULL, 0};
    if (!(a.list = calloc((size_t)a.limit, sizeof *a.list))) return vx_pg_oom(err);
    int rc = vx_pg_run(st, user_list_body, &a, err);
    if (rc != 0 || a.n == 0) {
        free(a.list);
        return rc;
    }
    *out = a.list;
    *n = a.n;
    return 0;
}

struct count_args { const char *role; int64_t count; };
static int count_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct count_args *a = arg;
    vx_pg_args p = {0};
    vx_pg_text(&p, a->role);
    PGresult *r = vx_pg_exec(c, PG_USER_COUNT_ROLE, "SELECT COUNT(*) FROM users WHERE role = $1", &p, err);
    if (!r) return -1;
    a->count = vx_pg_col_i64(r, 0, 0);
    PQclear(r);
    return 0;
}

int vx_pg_user_count_role(vx_store *st, const char *role, int64_t *count, vx_err *err) {
    struct count_args a = {role, 0};
    if (vx_pg_run(st, count_body, &a, err) != 0) return -1;
    *count = a.count;
    return 0;
}

int vx_pg_user_set_role(vx_store *st, const char *id, const char *role, vx_err *err) {
    if (!role_valid(role)) return vx_err_set(err, VX_E_INVALID, "invalid_role", "role must be user or admin");
    vx_pg_args p = {0};
    vx_pg_text(&p, role);
    vx_pg_text(&p, id);
    int64_t changes = 0;
    if (vx_pg_write_one(st, PG_USER_SET_ROLE, "UPDATE users SET role = $1 WHERE id = $2", &p, &changes, err) != 0)
        return -1;
    return changes ? 0 : vx_err_set(err, VX_E_NOT_FOUND, "user_not_found", "no such user");
}

/* ---- api keys --------------------------------------------------------------- */

#define KEY_COLS "id, user_id, name, prefix, key_hash, created_at, last_used_at, revoked_at"

static void key_from_row(const PGresult *r, int row, int col, vx_api_key *k) {
    memset(k, 0, sizeof *k);
    vx_pg_col_copy(r, row, col + 0, k->id, sizeof k->id);
    vx_pg_col_copy(r, row, col + 1, k->user_id, sizeof k->user_id);
    vx_pg_col_copy(r, row, col + 2, k->name, sizeof k->name);
    vx_pg_col_copy(r, row, col + 3, k->prefix, sizeof k->prefix);
    vx_pg_col_copy(r, row, col + 4, k->key_hash, sizeof k->key_hash);
    k->created_at = vx_pg_col_i64(r, row, col + 5);
    k->last_used_at = vx_pg_col_i64(r, row, col + 6);
    k->revoked_at = vx_pg_col_i64(r, row, col + 7);
}

int vx_pg_api_key_create(vx_store *st, const vx_api_key *k, vx_err *err) {
    if (!k->id[0] || !k->key_hash[0])
        return vx_err_set(err, VX_E_INVALID, "invalid_api_key", "an api key needs an id and a hash");
    vx_pg_args p = {0};
    vx_pg_text(&p, k->id);
    vx_pg_text(&p, k->user_id);
    vx_pg_text(&p, k->name);
    vx_pg_text(&p, k->prefix);
    vx_pg_text(&p, k->key_hash);
    vx_pg_i64(&p, k->created_at);
    vx_pg_i64(&p, k->last_used_at);
    vx_pg_i64(&p, k->revoked_at);
    int rc = vx_pg_write_one(st, PG_KEY_INSERT, "INSERT INTO api_keys (" KEY_COLS ") VALUES ($1, $2, $3, $4, $5,"
                             " $6::bigint, $7::bigint, $8::bigint)", &p, NULL, err);
    if (rc != 0 && err && err->status == VX_E_CONFLICT)
        vx_err_set(err, VX_E_CONFLICT, "api_key_exists", "that api key exists");
    return rc;
}

struct key_find_args { const char *hash; vx_api_key *key; vx_user *user; };
static int key_find_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct key_find_args *a = arg;
    vx_pg_args p = {0};
    vx_pg_text(&p, a->hash);
    PGresult *r = vx_pg_exec(c, PG_KEY_FIND,
        "SELECT k.id, k.user_id, k.name, k.prefix, k.key_hash, k.created_at, k.last_used_at,"
        " k.revoked_at, u.id, u.username, u.email, u.role, u.password_hash, u.created_at, u.disabled"
        " FROM api_keys k JOIN users u ON u.id = k.user_id"
        " WHERE k.key_hash = $1 AND k.revoked_at = 0", &p, err);
    if (!r) return -1;
    int rc = 0;
    if (PQntuples(r) == 0) {
        rc = vx_err_set(err, VX_E_NOT_FOUND, "api_key_not_found", "no such api key");
    } else {
        if (a->key) key_from_row(r, 0, 0, a->key);
        if (a->user) user_from_row(r, 0, 8, a->user);
    }
    PQclear(r);
    return rc;
}

int vx_pg_api_key_find(vx_store *st, const char *key_hash, vx_api_key *key, vx_user *user, vx_err *err) {
    struct key_find_args a = {key_hash, key, user};
    return vx_pg_run(st, key_find_body, &a, err);
}

struct key_list_args { const char *user_id; vx_api_key *list; size_t n; };
static int key_list_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct key_list_args *a = arg;
    vx_pg_args p = {0};
    vx_pg_text(&p, a->user_id);
    PGresult *r = vx_pg_exec(c, PG_KEY_LIST, "SELECT " KEY_COLS " FROM api_keys WHERE user_id = $1 ORDER BY id DESC",
                             &p, err);
    if (!r) return -1;
    int rows = PQntuples(r);
    if (rows > 0 && !(a->list = calloc((size_t)rows, sizeof *a->list))) {
        PQclear(r);
        return vx_pg_oom(err);
    }
    for (int i = 0; i < rows; i++) key_from_row(r, i, 0, &a->list[i]);
    a->n = (size_t)rows;
    PQclear(r);
    return 0;
}

/* Newest first, revoked keys included. Caller frees *out with free(). */
int vx_pg_api_key_list(vx_store *st, const char *user_id, vx_api_key **out, size_t *n, vx_err *err) {
    struct key_list_args a = {user_id, NULL, 0};
    *out = NULL;
    *n = 0;
    if (vx_pg_run(st, key_list_body, &a, err) != 0) {
        free(a.list);
        return -1;
    }
    *out = a.list;
    *n = a.n;
    return 0;
}

int vx_pg_api_key_revoke(vx_store *st, const char *user_id, const char *key_id, int64_t now, vx_err *err) {
    vx_pg_args p = {0};
    vx_pg_text(&p, key_id);
    vx_pg_text(&p, user_id);
    vx_pg_i64(&p, now);
    int64_t changes = 0;
    if (vx_pg_write_one(st, PG_KEY_REVOKE, "UPDATE api_keys SET revoked_at ="
                        " CASE WHEN revoked_at = 0 THEN $3::bigint ELSE revoked_at END"
                        " WHERE id = $1 AND user_id = $2", &p, &changes, err) != 0)
        return -1;
    return changes ? 0 : vx_err_set(err, VX_E_NOT_FOUND, "api_key_not_found", "no such api key");
}

int vx_pg_api_key_touch(vx_store *st, const char *key_id, int64_t now, vx_err *err) {
    vx_pg_args p = {0};
    vx_pg_text(&p, key_id);
    vx_pg_i64(&p, now);
    vx_pg_i64(&p, TOUCH_INTERVAL_MS);
    return vx_pg_write_one(st, PG_KEY_TOUCH, "UPDATE api_keys SET last_used_at = $2::bigint"
                           " WHERE id = $1 AND last_used_at <= $2::bigint - $3::bigint", &p, NULL, err);
}
