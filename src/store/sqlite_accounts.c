/* sqlite_accounts.c - users and API keys of the SQLite store (sqlite.c holds
 * the pool and the backend table). Usernames are unique case-insensitively
 * (COLLATE NOCASE in the schema). Callable from any thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sqlite_int.h"

/* api_key_touch writes at most once a minute per key (it runs on every request). */
#define TOUCH_INTERVAL_MS 60000

/* ---- users ---------------------------------------------------------------- */

#define USER_COLS "id, username, email, role, password_hash, created_at, disabled"

static void user_from_row(sqlite3_stmt *s, int col, vx_user *u) {
    memset(u, 0, sizeof *u);
    vx_sqlite_copy_text(s, col + 0, u->id, sizeof u->id);
    vx_sqlite_copy_text(s, col + 1, u->username, sizeof u->username);
    vx_sqlite_copy_text(s, col + 2, u->email, sizeof u->email);
    vx_sqlite_copy_text(s, col + 3, u->role, sizeof u->role);
    vx_sqlite_copy_text(s, col + 4, u->password_hash, sizeof u->password_hash);
    u->created_at = sqlite3_column_int64(s, col + 5);
    u->disabled = sqlite3_column_int(s, col + 6) != 0;
}

static bool role_valid(const char *role) {
    return role && (strcmp(role, "user") == 0 || strcmp(role, "admin") == 0);
}

int vx_sqlite_user_create(vx_store *st, const vx_user *u, int64_t signup_grant, vx_err *err) {
    if (!u->username[0] || !u->id[0])
        return vx_err_set(err, VX_E_INVALID, "invalid_user", "a user needs an id and a username");
    if (!role_valid(u->role)) return vx_err_set(err, VX_E_INVALID, "invalid_role", "role must be user or admin");
    if (signup_grant < 0 || signup_grant > VX_SQLITE_AMOUNT_MAX)
        return vx_err_set(err, VX_E_INVALID, "invalid_amount", "the sign-up grant is out of range");
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = vx_sqlite_begin(c, err);
    if (rc != 0) goto out;
    rc = -1;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_USER_INSERT, "INSERT INTO users (" USER_COLS ") "
                                     "VALUES (?, ?, ?, ?, ?, ?, ?)", err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, u->id);
    vx_sqlite_bind_text(s, 2, u->username);
    vx_sqlite_bind_text(s, 3, u->email);
    vx_sqlite_bind_text(s, 4, u->role);
    vx_sqlite_bind_text(s, 5, u->password_hash);
    sqlite3_bind_int64(s, 6, u->created_at);
    sqlite3_bind_int(s, 7, u->disabled ? 1 : 0);
    int r = sqlite3_step(s);
    if (r == SQLITE_CONSTRAINT_UNIQUE) {
        vx_err_set(err, VX_E_CONFLICT, "username_taken", "that username is taken");
        goto out;
    }
    if (r == SQLITE_CONSTRAINT_PRIMARYKEY) {
        vx_err_set(err, VX_E_CONFLICT, "user_exists", "a user with that id exists");
        goto out;
    }
    if (r != SQLITE_DONE) {
        vx_sqlite_fail(c, r, err);
        goto out;
    }
    if (!(s = vx_sqlite_stmt(c, SQ_BALANCE_INSERT,
                             "INSERT INTO balances (user_id, available, held) VALUES (?, 0, 0)", err)))
        goto out;
    vx_sqlite_bind_text(s, 1, u->id);
    if ((r = sqlite3_step(s)) != SQLITE_DONE) {
        vx_sqlite_fail(c, r, err);
        goto out;
    }
    if (signup_grant > 0) {
        vx_ledger_entry e = {.kind = VX_LEDGER_GRANT, .amount = signup_grant,
                             .created_at = u->created_at};
        vx_id_new(e.id, "led");
        snprintf(e.user_id, sizeof e.user_id, "%s", u->id);
        snprintf(e.ref, sizeof e.ref, "signup");
        snprintf(e.note, sizeof e.note, "sign-up grant");
        bool replayed;
        vx_balance b;
        if (vx_sqlite_ledger_post(c, &e, &replayed, &b, err) != 0) goto out;
    }
    rc = 0;
out:
    rc = vx_sqlite_finish(c, rc, err);
    vx_sqlite_conn_put(st, c);
    return rc;
}

static int user_get_by(vx_store *st, int slot, const char *sql, const char *arg, vx_user *out,
                       vx_err *err) {
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = -1;
    sqlite3_stmt *s = vx_sqlite_stmt(c, slot, sql, err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, arg);
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        user_from_row(s, 0, out);
        rc = 0;
    } else if (r == SQLITE_DONE) {
        vx_err_set(err, VX_E_NOT_FOUND, "user_not_found", "no such user");
    } else {
        vx_sqlite_fail(c, r, err);
    }
out:
    vx_sqlite_conn_put(st, c);
    return rc;
}

int vx_sqlite_user_get(vx_store *st, const char *id, vx_user *out, vx_err *err) {
    return user_get_by(st, SQ_USER_GET, "SELECT " USER_COLS " FROM users WHERE id = ?", id, out, err);
}

int vx_sqlite_user_get_by_name(vx_store *st, const char *username, vx_user *out, vx_err *err) {
    return user_get_by(st, SQ_USER_GET_BY_NAME, "SELECT " USER_COLS " FROM users WHERE username = ?",
                       username, out, err);
}

/* Caller frees *out with free(). */
int vx_sqlite_user_list(vx_store *st, const char *cursor, int limit, vx_user **out, size_t *n,
                        vx_err *err) {
    *out = NULL;
    *n = 0;
    limit = vx_sqlite_clamp_limit(limit);
    vx_user *list = calloc((size_t)limit, sizeof *list);
    if (!list) return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = -1;
    size_t count = 0;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_USER_LIST, "SELECT " USER_COLS " FROM users "
                                     "WHERE id < ? ORDER BY id DESC LIMIT ?", err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, cursor && *cursor ? cursor : VX_SQLITE_CURSOR_TOP);
    sqlite3_bind_int(s, 2, limit);
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) user_from_row(s, 0, &list[count++]);
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

int vx_sqlite_user_count_role(vx_store *st, const char *role, int64_t *count, vx_err *err) {
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = -1;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_USER_COUNT_ROLE, "SELECT COUNT(*) FROM users WHERE role = ?", err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, role);
    int r = sqlite3_step(s);
    if (r != SQLITE_ROW) {
        vx_sqlite_fail(c, r, err);
        goto out;
    }
    *count = sqlite3_column_int64(s, 0);
    rc = 0;
out:
    vx_sqlite_conn_put(st, c);
    return rc;
}

struct role_args { const char *id, *role; };
static void bind_role(sqlite3_stmt *s, const void *arg) {
    const struct role_args *a = arg;
    vx_sqlite_bind_text(s, 1, a->role);
    vx_sqlite_bind_text(s, 2, a->id);
}

int vx_sqlite_user_set_role(vx_store *st, const char *id, const char *role, vx_err *err) {
    if (!role_valid(role)) return vx_err_set(err, VX_E_INVALID, "invalid_role", "role must be user or admin");
    struct role_args a = {id, role};
    int changes = 0;
    if (vx_sqlite_write_one(st, SQ_USER_SET_ROLE, "UPDATE users SET role = ? WHERE id = ?", bind_role, &a,
                  &changes, err) != 0)
        return -1;
    return changes ? 0 : vx_err_set(err, VX_E_NOT_FOUND, "user_not_found", "no such user");
}

/* ---- api keys --------------------------------------------------------------- */

#define KEY_COLS "id, user_id, name, prefix, key_hash, created_at, last_used_at, revoked_at"

static void key_from_row(sqlite3_stmt *s, int col, vx_api_key *k) {
    memset(k, 0, sizeof *k);
    vx_sqlite_copy_text(s, col + 0, k->id, sizeof k->id);
    vx_sqlite_copy_text(s, col + 1, k->user_id, sizeof k->user_id);
    vx_sqlite_copy_text(s, col + 2, k->name, sizeof k->name);
    vx_sqlite_copy_text(s, col + 3, k->prefix, sizeof k->prefix);
    vx_sqlite_copy_text(s, col + 4, k->key_hash, sizeof k->key_hash);
    k->created_at = sqlite3_column_int64(s, col + 5);
    k->last_used_at = sqlite3_column_int64(s, col + 6);
    k->revoked_at = sqlite3_column_int64(s, col + 7);
}

static void bind_key(sqlite3_stmt *s, const void *arg) {
    const vx_api_key *k = arg;
    vx_sqlite_bind_text(s, 1, k->id);
    vx_sqlite_bind_text(s, 2, k->user_id);
    vx_sqlite_bind_text(s, 3, k->name);
    vx_sqlite_bind_text(s, 4, k->prefix);
    vx_sqlite_bind_text(s, 5, k->key_hash);
    sqlite3_bind_int64(s, 6, k->created_at);
    sqlite3_bind_int64(s, 7, k->last_used_at);
    sqlite3_bind_int64(s, 8, k->revoked_at);
}

int vx_sqlite_api_key_create(vx_store *st, const vx_api_key *k, vx_err *err) {
    int changes = 0;
    if (!k->id[0] || !k->key_hash[0])
        return vx_err_set(err, VX_E_INVALID, "invalid_api_key", "an api key needs an id and a hash");
    int rc = vx_sqlite_write_one(st, SQ_KEY_INSERT, "INSERT INTO api_keys (" KEY_COLS ") "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", bind_key, k, &changes, err);
    if (rc != 0 && err && err->status == VX_E_CONFLICT)
        vx_err_set(err, VX_E_CONFLICT, "api_key_exists", "that api key exists");
    return rc;
}

int vx_sqlite_api_key_find(vx_store *st, const char *key_hash, vx_api_key *key, vx_user *user,
                           vx_err *err) {
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = -1;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_KEY_FIND,
        "SELECT k.id, k.user_id, k.name, k.prefix, k.key_hash, k.created_at, k.last_used_at,"
        " k.revoked_at, u.id, u.username, u.email, u.role, u.password_hash, u.created_at, u.disabled"
        " FROM api_keys k JOIN users u ON u.id = k.user_id"
        " WHERE k.key_hash = ? AND k.revoked_at = 0", err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, key_hash);
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        if (key) key_from_row(s, 0, key);
        if (user) user_from_row(s, 8, user);
        rc = 0;
    } else if (r == SQLITE_DONE) {
        vx_err_set(err, VX_E_NOT_FOUND, "api_key_not_found", "no such api key");
    } else {
        vx_sqlite_fail(c, r, err);
    }
out:
    vx_sqlite_conn_put(st, c);
    return rc;
}

/* Newest first, revoked keys included. Caller frees *out with free(). */
int vx_sqlite_api_key_list(vx_store *st, const char *user_id, vx_api_key **out, size_t *n, vx_err *err) {
    *out = NULL;
    *n = 0;
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = -1, r;
    size_t count = 0, cap = 0;
    vx_api_key *list = NULL;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_KEY_LIST, "SELECT " KEY_COLS " FROM api_keys "
                                     "WHERE user_id = ? ORDER BY id DESC", err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, user_id);
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            vx_api_key *grown = realloc(list, ncap * sizeof *grown);
            if (!grown) {
                vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
                goto out;
            }
            list = grown;
            cap = ncap;
        }
        key_from_row(s, 0, &list[count++]);
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

struct revoke_args { const char *user_id, *key_id; int64_t now; };
static void bind_revoke(sqlite3_stmt *s, const void *arg) {
    const struct revoke_args *a = arg;
    vx_sqlite_bind_text(s, 1, a->key_id);
    vx_sqlite_bind_text(s, 2, a->user_id);
    sqlite3_bind_int64(s, 3, a->now);
}

int vx_sqlite_api_key_revoke(vx_store *st, const char *user_id, const char *key_id, int64_t now,
                             vx_err *err) {
    struct revoke_args a = {user_id, key_id, now};
    int changes = 0;
    if (vx_sqlite_write_one(st, SQ_KEY_REVOKE, "UPDATE api_keys SET revoked_at = "
                  "CASE WHEN revoked_at = 0 THEN ?3 ELSE revoked_at END "
                  "WHERE id = ?1 AND user_id = ?2", bind_revoke, &a, &changes, err) != 0)
        return -1;
    return changes ? 0 : vx_err_set(err, VX_E_NOT_FOUND, "api_key_not_found", "no such api key");
}

static void bind_touch(sqlite3_stmt *s, const void *arg) {
    const struct revoke_args *a = arg;
    vx_sqlite_bind_text(s, 1, a->key_id);
    sqlite3_bind_int64(s, 2, a->now);
    sqlite3_bind_int64(s, 3, TOUCH_INTERVAL_MS);
}

int vx_sqlite_api_key_touch(vx_store *st, const char *key_id, int64_t now, vx_err *err) {
    struct revoke_args a = {NULL, key_id, now};
    int changes = 0;
    return vx_sqlite_write_one(st, SQ_KEY_TOUCH, "UPDATE api_keys SET last_used_at = ?2 "
                     "WHERE id = ?1 AND last_used_at <= ?2 - ?3", bind_touch, &a, &changes, err);
}

