/* test_store.c - the store's plumbing and accounts (SQLite, or PostgreSQL
 * with VOXD_TEST_STORE_URL): URL handling,
 * migrations, settings, users, API keys and prices (src/store/sqlite.c,
 * sqlite_accounts.c, store.c). Ledger and queue behaviour have their own files. */
#include <ftw.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../../src/store/schema.h"
#include "../../src/store/store.h"
#include "../../src/util/clock.h"
#include "../../src/util/crypto.h"
#include "test.h"

static char dir[64];
static char url[256];

/* VOXD_TEST_STORE_URL (a postgres:// URL, see scripts/with_postgres.sh) runs
 * these tests against that server, each setup in a fresh schema (pg_schema);
 * unset, a SQLite file at sqlite_path. */
static char pg_schema[VX_ID_SIZE];
static const char *pg_url(void) {
    const char *base = getenv("VOXD_TEST_STORE_URL");
    return base && *base ? base : NULL;
}

static void store_url(char *out, size_t cap, const char *sqlite_path) {
    const char *base = pg_url();
    if (!base) {
        snprintf(out, cap, "sqlite://%s", sqlite_path);
        return;
    }
    vx_id_new(pg_schema, "t");
    snprintf(out, cap, "%s%cschema=%s", base, strchr(base, '?') ? '&' : '?', pg_schema);
}

/* A raw connection into the test's schema, bypassing the store. */
static PGconn *pg_raw(void) {
    PGconn *c = PQconnectdb(pg_url());
    char sql[96];
    snprintf(sql, sizeof sql, "SET search_path TO %s", pg_schema);
    if (PQstatus(c) == CONNECTION_OK) PQclear(PQexec(c, sql));
    return c;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    return remove(path);
}

static vx_store *fresh_store(void) {
    vx_crypto_init();
    snprintf(dir, sizeof dir, "/tmp/voxd-store-XXXXXX");
    if (!mkdtemp(dir)) return NULL;
    char path[128];
    snprintf(path, sizeof path, "%s/db/voxd.db", dir);
    store_url(url, sizeof url, path);
    vx_err err;
    return vx_store_open(url, &err);
}

static void done(vx_store *st) {
    vx_store_close(st);
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static int last_migration(void) {
    int v = 0;
    for (const vx_migration *m = pg_url() ? vx_migrations_postgres : vx_migrations_sqlite; m->sql; m++)
        v = m->version;
    return v;
}

static int count_rows(const char *sql) {
    if (pg_url()) {
        PGconn *pg = pg_raw();
        PGresult *r = PQexec(pg, sql);
        int n = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? atoi(PQgetvalue(r, 0, 0)) : -1;
        PQclear(r);
        PQfinish(pg);
        return n;
    }
    char path[128];
    snprintf(path, sizeof path, "%s/db/voxd.db", dir);
    sqlite3 *db = NULL;
    int n = -1;
    sqlite3_stmt *s = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

static vx_user make_user(const char *name, const char *role) {
    vx_user u = {0};
    vx_id_new(u.id, "usr");
    snprintf(u.username, sizeof u.username, "%s", name);
    snprintf(u.role, sizeof u.role, "%s", role);
    snprintf(u.password_hash, sizeof u.password_hash, "$argon2id$fake");
    u.created_at = vx_now_ms();
    return u;
}

static void test_migrations_apply_once_and_reopen_is_idempotent(void) {
    vx_store *st = fresh_store();
    REQUIRE(st);
    CHECK_EQ_INT(st->ops->schema_version(st), last_migration());
    CHECK(last_migration() >= 1);
    vx_store_close(st);
    vx_err err;
    st = vx_store_open(url, &err);
    REQUIRE(st);
    CHECK_EQ_INT(st->ops->schema_version(st), last_migration());
    int applied = 0;
    for (const vx_migration *m = pg_url() ? vx_migrations_postgres : vx_migrations_sqlite; m->sql; m++) applied++;
    CHECK_EQ_INT(count_rows("SELECT COUNT(*) FROM schema_migrations"), applied);
    CHECK_EQ_INT(count_rows(pg_url() ? "SELECT COUNT(*) FROM information_schema.tables WHERE"
                                       " table_schema = current_schema() AND table_name = 'jobs'"
                                     : "SELECT COUNT(*) FROM sqlite_master WHERE name = 'jobs'"), 1);
    CHECK_EQ_INT(st->ops->ping(st, &err), 0);
    done(st);
}

static void test_database_runs_in_wal_mode_with_parent_directory_created(void) {
    if (pg_url()) return; /* SQLite files only */
    vx_store *st = fresh_store();
    REQUIRE(st);
    char wal[128];
    snprintf(wal, sizeof wal, "%s/db/voxd.db-wal", dir);
    vx_user u = make_user("walcheck", "user");
    vx_err err;
    CHECK_EQ_INT(st->ops->user_create(st, &u, 0, &err), 0);
    CHECK(access(wal, F_OK) == 0);
    done(st);
}

static void test_unknown_scheme_and_bad_url_are_refused(void) {
    vx_err err;
    CHECK(vx_store_open("mysql://localhost/db", &err) == NULL);
    CHECK_EQ_INT(err.status, VX_E_INVALID);
    CHECK_EQ_STR(err.code, "unknown_store_scheme");
    CHECK(vx_store_open("sqlite://", &err) == NULL);
    CHECK_EQ_STR(err.code, "invalid_store_url");
    CHECK(vx_store_open("sqlite:///tmp/x.db?pool=0", &err) == NULL);
    CHECK_EQ_STR(err.code, "invalid_store_url");
    CHECK(vx_store_open("postgres://u@127.0.0.1:1/db?pool=0", &err) == NULL);
    CHECK_EQ_STR(err.code, "invalid_store_url");
    CHECK(vx_store_open("postgresql://u@127.0.0.1:1/db?schema=Bad-Name", &err) == NULL);
    CHECK_EQ_STR(err.code, "invalid_store_url");
}

static void test_file_that_is_not_a_database_fails_without_leaking_sql(void) {
    vx_crypto_init();
    snprintf(dir, sizeof dir, "/tmp/voxd-store-XXXXXX");
    REQUIRE(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/db", dir);
    REQUIRE(mkdir(path, 0700) == 0);
    snprintf(path, sizeof path, "%s/db/voxd.db", dir);
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    for (int i = 0; i < 512; i++) fputs("this is not a database file ", f);
    fclose(f);
    snprintf(url, sizeof url, "sqlite://%s", path);
    vx_err err;
    vx_store *st = vx_store_open(url, &err);
    CHECK(st == NULL);
    CHECK_EQ_INT(err.status, VX_E_INTERNAL);
    CHECK(strstr(err.message, "SELECT") == NULL && strstr(err.message, "PRAGMA") == NULL);
    CHECK(strstr(err.message, dir) == NULL);
    done(st);
}

static void test_setting_put_if_absent_keeps_the_first_value(void) {
    vx_store *st = fresh_store();
    REQUIRE(st);
    vx_err err;
    char v[64];
    CHECK_EQ_INT(st->ops->setting_get(st, "jwt_secret", v, sizeof v, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_NOT_FOUND);
    snprintf(v, sizeof v, "first");
    CHECK_EQ_INT(st->ops->setting_put_if_absent(st, "jwt_secret", v, sizeof v, &err), 0);
    CHECK_EQ_STR(v, "first");
    snprintf(v, sizeof v, "second");
    CHECK_EQ_INT(st->ops->setting_put_if_absent(st, "jwt_secret", v, sizeof v, &err), 0);
    CHECK_EQ_STR(v, "first");
    CHECK_EQ_INT(st->ops->setting_get(st, "jwt_secret", v, sizeof v, &err), 0);
    CHECK_EQ_STR(v, "first");
    char tiny[3];
    CHECK_EQ_INT(st->ops->setting_get(st, "jwt_secret", tiny, sizeof tiny, &err), -1);
    done(st);
}

typedef struct starter { vx_store *st; char value[64]; int rc; } starter;

static void *start_one(void *arg) {
    starter *s = arg;
    vx_err err;
    s->rc = s->st->ops->setting_put_if_absent(s->st, "node_secret", s->value, sizeof s->value, &err);
    return NULL;
}

static void test_concurrent_starters_agree_on_one_setting(void) {
    vx_store *st = fresh_store();
    REQUIRE(st);
    starter s[8];
    pthread_t t[8];
    for (int i = 0; i < 8; i++) {
        s[i].st = st;
        snprintf(s[i].value, sizeof s[i].value, "value-%d", i);
        pthread_create(&t[i], NULL, start_one, &s[i]);
    }
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 8; i++) {
        CHECK_EQ_INT(s[i].rc, 0);
        CHECK_EQ_STR(s[i].value, s[0].value);
    }
    done(st);
}

static void test_user_create_get_and_case_insensitive_duplicate_conflicts(void) {
    vx_store *st = fresh_store();
    REQUIRE(st);
    vx_err err;
    vx_user u = make_user("Alice", "user");
    snprintf(u.email, sizeof u.email, "alice@example.org");
    CHECK_EQ_INT(st->ops->user_create(st, &u, 5000000, &err), 0);
    vx_user got;
    CHECK_EQ_INT(st->ops->user_get(st, u.id, &got, &err), 0);
    CHECK_EQ_STR(got.username, "Alice");
    CHECK_EQ_STR(got.email, "alice@example.org");
    CHECK_EQ_STR(got.role, "user");
    CHECK_EQ_INT(got.created_at, u.created_at);
    CHECK(!got.disabled);
    CHECK_EQ_INT(st->ops->user_get_by_name(st, "aLiCe", &got, &err), 0);
    CHECK_EQ_STR(got.id, u.id);

    vx_user dup = make_user("ALICE", "user");
    CHECK_EQ_INT(st->ops->user_create(st, &dup, 5000000, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_CONFLICT);
    CHECK_EQ_STR(err.code, "username_taken");
    CHECK_EQ_INT(st->ops->user_get(st, dup.id, &got, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_NOT_FOUND);
    CHECK_EQ_INT(count_rows("SELECT COUNT(*) FROM balances"), 1);

    vx_balance b;
    CHECK_EQ_INT(st->ops->balance_get(st, u.id, &b, &err), 0);
    CHECK_EQ_INT(b.available, 5000000);
    CHECK_EQ_INT(b.held, 0);
    bool ok = false;
    CHECK_EQ_INT(st->ops->ledger_audit(st, u.id, NULL, &ok, &err), 0);
    CHECK(ok);
    vx_ledger_entry *e = NULL;
    size_t n = 0;
    CHECK_EQ_INT(st->ops->ledger_list(st, u.id, NULL, 10, &e, &n, &err), 0);
    REQUIRE(n == 1);
    CHECK_EQ_STR(e[0].ref, "signup");
    CHECK_EQ_INT(e[0].kind, VX_LEDGER_GRANT);
    free(e);

    vx_user bad = make_user("mallory", "root");
    CHECK_EQ_INT(st->ops->user_create(st, &bad, 0, &err), -1);
    CHECK_EQ_STR(err.code, "invalid_role");
    done(st);
}

static void test_user_list_pages_newest_first_and_roles_change(void) {
    vx_store *st = fresh_store();
    REQUIRE(st);
    vx_err err;
    char ids[5][VX_ID_SIZE];
    for (int i = 0; i < 5; i++) {
        char name[16];
        snprintf(name, sizeof name, "user%d", i);
        vx_user u = make_user(name, "user");
        /* ids sort by time; make that order explicit */
        snprintf(u.id, sizeof u.id, "usr_%026d", i);
        snprintf(ids[i], sizeof ids[i], "%s", u.id);
        CHECK_EQ_INT(st->ops->user_create(st, &u, 0, &err), 0);
    }
    vx_user *list = NULL;
    size_t n = 0;
    CHECK_EQ_INT(st->ops->user_list(st, NULL, 2, &list, &n, &err), 0);
    REQUIRE(n == 2);
    CHECK_EQ_STR(list[0].id, ids[4]);
    CHECK_EQ_STR(list[1].id, ids[3]);
    char cursor[VX_ID_SIZE];
    snprintf(cursor, sizeof cursor, "%s", list[1].id);
    free(list);
    CHECK_EQ_INT(st->ops->user_list(st, cursor, 10, &list, &n, &err), 0);
    REQUIRE(n == 3);
    CHECK_EQ_STR(list[0].id, ids[2]);
    CHECK_EQ_STR(list[2].id, ids[0]);
    free(list);

    int64_t admins = -1;
    CHECK_EQ_INT(st->ops->user_count_role(st, "admin", &admins, &err), 0);
    CHECK_EQ_INT(admins, 0);
    CHECK_EQ_INT(st->ops->user_set_role(st, ids[1], "admin", &err), 0);
    CHECK_EQ_INT(st->ops->user_count_role(st, "admin", &admins, &err), 0);
    CHECK_EQ_INT(admins, 1);
    CHECK_EQ_INT(st->ops->user_set_role(st, "usr_missing", "admin", &err), -1);
    CHECK_EQ_INT(err.status, VX_E_NOT_FOUND);
    CHECK_EQ_INT(st->ops->user_set_role(st, ids[1], "god", &err), -1);
    CHECK_EQ_INT(err.status, VX_E_INVALID);
    done(st);
}

static void test_api_keys_create_find_touch_and_revoked_key_is_not_found(void) {
    vx_store *st = fresh_store();
    REQUIRE(st);
    vx_err err;
    vx_user u = make_user("bob", "user"), other = make_user("carol", "user");
    REQUIRE(st->ops->user_create(st, &u, 0, &err) == 0);
    REQUIRE(st->ops->user_create(st, &other, 0, &err) == 0);
    vx_api_key k = {0};
    vx_id_new(k.id, "key");
    snprintf(k.user_id, sizeof k.user_id, "%s", u.id);
    snprintf(k.name, sizeof k.name, "laptop");
    snprintf(k.prefix, sizeof k.prefix, "vx_abc");
    vx_sha256_hex("vx_abcdef-secret", 16, k.key_hash);
    k.created_at = vx_now_ms();
    CHECK_EQ_INT(st->ops->api_key_create(st, &k, &err), 0);
    CHECK_EQ_INT(st->ops->api_key_create(st, &k, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_CONFLICT);

    vx_api_key found;
    vx_user owner;
    CHECK_EQ_INT(st->ops->api_key_find(st, k.key_hash, &found, &owner, &err), 0);
    CHECK_EQ_STR(found.id, k.id);
    CHECK_EQ_STR(found.name, "laptop");
    CHECK_EQ_STR(owner.username, "bob");
    CHECK_EQ_INT(found.last_used_at, 0);

    CHECK_EQ_INT(st->ops->api_key_touch(st, k.id, 1000000, &err), 0);
    CHECK_EQ_INT(st->ops->api_key_find(st, k.key_hash, &found, NULL, &err), 0);
    CHECK_EQ_INT(found.last_used_at, 1000000);

    vx_api_key *list = NULL;
    size_t n = 0;
    CHECK_EQ_INT(st->ops->api_key_list(st, u.id, &list, &n, &err), 0);
    CHECK_EQ_INT(n, 1);
    free(list);

    CHECK_EQ_INT(st->ops->api_key_revoke(st, other.id, k.id, 2000, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_NOT_FOUND);
    CHECK_EQ_INT(st->ops->api_key_find(st, k.key_hash, &found, &owner, &err), 0);
    CHECK_EQ_INT(st->ops->api_key_revoke(st, u.id, k.id, 2000, &err), 0);
    CHECK_EQ_INT(st->ops->api_key_find(st, k.key_hash, &found, &owner, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_NOT_FOUND);
    CHECK_EQ_INT(st->ops->api_key_revoke(st, u.id, k.id, 3000, &err), 0);
    CHECK_EQ_INT(st->ops->api_key_list(st, u.id, &list, &n, &err), 0);
    REQUIRE(n == 1);
    CHECK_EQ_INT(list[0].revoked_at, 2000);
    free(list);
    done(st);
}

static void test_price_override_set_get_and_negative_refused(void) {
    vx_store *st = fresh_store();
    REQUIRE(st);
    vx_err err;
    int64_t pj = -1, ps = -1;
    CHECK_EQ_INT(st->ops->price_get(st, "convert", &pj, &ps, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_NOT_FOUND);
    CHECK_EQ_INT(st->ops->price_set(st, "convert", 1000, 20, "usr_admin", 5, &err), 0);
    CHECK_EQ_INT(st->ops->price_set(st, "convert", 2000, 30, "usr_admin", 6, &err), 0);
    CHECK_EQ_INT(st->ops->price_get(st, "convert", &pj, &ps, &err), 0);
    CHECK_EQ_INT(pj, 2000);
    CHECK_EQ_INT(ps, 30);
    CHECK_EQ_INT(st->ops->price_set(st, "convert", -1, 30, "usr_admin", 7, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_INVALID);
    done(st);
}

static void test_unreachable_postgres_is_unavailable_without_leaking_the_password(void) {
    vx_err err;
    /* Nothing listens on port 1: the connect fails fast. */
    CHECK(vx_store_open("postgres://voxd:s3cret-pw@127.0.0.1:1/voxd", &err) == NULL);
    CHECK_EQ_INT(err.status, VX_E_UNAVAILABLE);
    CHECK_EQ_STR(err.code, "database_unavailable");
    CHECK(strstr(err.message, "s3cret") == NULL);
}

/* Killing every pooled connection (as a server restart does) costs no
 * request: the next hook reconnects and prepares its statements again. */
static void test_postgres_pool_reconnects_after_its_connections_are_killed(void) {
    if (!pg_url()) return; /* PostgreSQL only */
    vx_store *st = fresh_store();
    REQUIRE(st);
    vx_user u = make_user("reconnect", "user");
    vx_err err;
    REQUIRE(st->ops->user_create(st, &u, 0, &err) == 0);
    PGconn *pg = pg_raw();
    PGresult *r = PQexec(pg, "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity"
                             " WHERE application_name = 'voxd' AND pid <> pg_backend_pid()");
    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK && atoi(PQgetvalue(r, 0, 0)) >= 1);
    PQclear(r);
    PQfinish(pg);
    vx_user got;
    for (int i = 0; i < 3; i++) { /* more calls than the one connection used so far */
        CHECK_EQ_INT(st->ops->user_get(st, u.id, &got, &err), 0);
        CHECK_EQ_STR(got.username, "reconnect");
    }
    CHECK_EQ_INT(st->ops->ping(st, &err), 0);
    done(st);
}

static void *open_one(void *arg) {
    vx_err err;
    *(vx_store **)arg = vx_store_open(url, &err);
    return NULL;
}

/* Nodes starting together on an empty database: every open succeeds and
 * each migration is recorded exactly once. */
static void test_stores_opening_at_once_apply_each_migration_once(void) {
    vx_store *first = fresh_store(); /* makes the scratch dir */
    REQUIRE(first);
    vx_store_close(first);
    char path[128];
    snprintf(path, sizeof path, "%s/db/other.db", dir);
    store_url(url, sizeof url, path); /* an empty database (PostgreSQL: a new schema) */
    vx_store *sts[6] = {0};
    pthread_t t[6];
    for (int i = 0; i < 6; i++) pthread_create(&t[i], NULL, open_one, &sts[i]);
    for (int i = 0; i < 6; i++) pthread_join(t[i], NULL);
    int opened = 0;
    for (int i = 0; i < 6; i++) opened += sts[i] != NULL;
    CHECK_EQ_INT(opened, 6);
    int applied = 0;
    for (const vx_migration *m = pg_url() ? vx_migrations_postgres : vx_migrations_sqlite; m->sql; m++) applied++;
    if (pg_url()) {
        CHECK_EQ_INT(count_rows("SELECT COUNT(*) FROM schema_migrations"), applied);
    } else {
        sqlite3 *db = NULL;
        sqlite3_stmt *q = NULL;
        int n = -1;
        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
            sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM schema_migrations", -1, &q, NULL) == SQLITE_OK &&
            sqlite3_step(q) == SQLITE_ROW)
            n = sqlite3_column_int(q, 0);
        sqlite3_finalize(q);
        sqlite3_close(db);
        CHECK_EQ_INT(n, applied);
    }
    for (int i = 1; i < 6; i++) vx_store_close(sts[i]);
    done(sts[0]);
}

TEST_MAIN(TEST_ENTRY(test_migrations_apply_once_and_reopen_is_idempotent),
          TEST_ENTRY(test_database_runs_in_wal_mode_with_parent_directory_created),
          TEST_ENTRY(test_unknown_scheme_and_bad_url_are_refused),
          TEST_ENTRY(test_file_that_is_not_a_database_fails_without_leaking_sql),
          TEST_ENTRY(test_setting_put_if_absent_keeps_the_first_value),
          TEST_ENTRY(test_concurrent_starters_agree_on_one_setting),
          TEST_ENTRY(test_user_create_get_and_case_insensitive_duplicate_conflicts),
          TEST_ENTRY(test_user_list_pages_newest_first_and_roles_change),
          TEST_ENTRY(test_api_keys_create_find_touch_and_revoked_key_is_not_found),
          TEST_ENTRY(test_price_override_set_get_and_negative_refused),
          TEST_ENTRY(test_unreachable_postgres_is_unavailable_without_leaking_the_password),
          TEST_ENTRY(test_postgres_pool_reconnects_after_its_connections_are_killed),
          TEST_ENTRY(test_stores_opening_at_once_apply_each_migration_once))
