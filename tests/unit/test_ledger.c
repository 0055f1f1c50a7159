/* test_ledger.c - credit arithmetic of the store (SQLite, or PostgreSQL with
 * VOXD_TEST_STORE_URL): ledger_apply for
 * grant/top-up/adjust/refund, refusal of a negative balance by the database,
 * idempotent refs, listing, and the audit invariant after every operation. */
#include <ftw.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../../src/store/store.h"
#include "../../src/util/clock.h"
#include "../../src/util/crypto.h"
#include "test.h"

static char dir[64];
static vx_store *st;
static vx_user user;

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

/* A fresh store with one user "payer" and no credits. */
static int setup(void) {
    vx_crypto_init();
    snprintf(dir, sizeof dir, "/tmp/voxd-ledger-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    char url[256], path[128];
    snprintf(path, sizeof path, "%s/voxd.db", dir);
    store_url(url, sizeof url, path);
    vx_err err;
    if (!(st = vx_store_open(url, &err))) return -1;
    memset(&user, 0, sizeof user);
    vx_id_new(user.id, "usr");
    snprintf(user.username, sizeof user.username, "payer");
    snprintf(user.role, sizeof user.role, "user");
    snprintf(user.password_hash, sizeof user.password_hash, "x");
    user.created_at = vx_now_ms();
    return st->ops->user_create(st, &user, 0, &err);
}

static void teardown(void) {
    vx_store_close(st);
    st = NULL;
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static bool audit_ok(void) {
    bool ok = false;
    vx_err err;
    return st->ops->ledger_audit(st, user.id, NULL, &ok, &err) == 0 && ok;
}

static int apply(vx_ledger_kind kind, int64_t amount, const char *ref, bool *replayed, vx_balance *b,
                 vx_err *err) {
    vx_ledger_entry e = {.kind = kind, .amount = amount, .created_at = vx_now_ms()};
    vx_id_new(e.id, "led");
    snprintf(e.user_id, sizeof e.user_id, "%s", user.id);
    snprintf(e.ref, sizeof e.ref, "%s", ref);
    snprintf(e.note, sizeof e.note, "test %s", ref);
    snprintf(e.actor_id, sizeof e.actor_id, "usr_admin");
    return st->ops->ledger_apply(st, &e, replayed, b, err);
}

static size_t ledger_count(void) {
    vx_ledger_entry *e = NULL;
    size_t n = 0;
    vx_err err;
    if (st->ops->ledger_list(st, user.id, NULL, 200, &e, &n, &err) != 0) return (size_t)-1;
    free(e);
    return n;
}

static void test_grant_top_up_adjust_refund_add_up(void) {
    REQUIRE(setup() == 0);
    vx_err err;
    bool rep = true;
    vx_balance b;
    CHECK_EQ_INT(apply(VX_LEDGER_GRANT, 1000, "g1", &rep, &b, &err), 0);
    CHECK(!rep);
    CHECK_EQ_INT(b.available, 1000);
    CHECK(audit_ok());
    CHECK_EQ_INT(apply(VX_LEDGER_TOP_UP, 2500, "t1", &rep, &b, &err), 0);
    CHECK_EQ_INT(b.available, 3500);
    CHECK(audit_ok());
    CHECK_EQ_INT(apply(VX_LEDGER_ADJUST, -500, "a1", &rep, &b, &err), 0);
    CHECK_EQ_INT(b.available, 3000);
    CHECK(audit_ok());
    CHECK_EQ_INT(apply(VX_LEDGER_REFUND, 7, "r1", &rep, &b, &err), 0);
    CHECK_EQ_INT(b.available, 3007);
    CHECK_EQ_INT(b.held, 0);
    CHECK(audit_ok());
    vx_balance got;
    CHECK_EQ_INT(st->ops->balance_get(st, user.id, &got, &err), 0);
    CHECK_EQ_INT(got.available, 3007);
    teardown();
}

static void test_negative_adjust_beyond_balance_is_refused_and_changes_nothing(void) {
    REQUIRE(setup() == 0);
    vx_err err;
    bool rep;
    vx_balance b;
    REQUIRE(apply(VX_LEDGER_GRANT, 100, "g1", &rep, &b, &err) == 0);
    CHECK_EQ_INT(apply(VX_LEDGER_ADJUST, -101, "a1", &rep, &b, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_PAYMENT);
    CHECK_EQ_STR(err.code, "insufficient_credits");
    CHECK_EQ_INT(st->ops->balance_get(st, user.id, &b, &err), 0);
    CHECK_EQ_INT(b.available, 100);
    CHECK_EQ_INT(ledger_count(), 1);
    CHECK(audit_ok());
    /* the ref of a refused entry stays free */
    CHECK_EQ_INT(apply(VX_LEDGER_ADJUST, -100, "a1", &rep, &b, &err), 0);
    CHECK(!rep);
    CHECK_EQ_INT(b.available, 0);
    CHECK(audit_ok());
    teardown();
}

static void test_replayed_ref_is_a_no_op_reporting_the_balance(void) {
    REQUIRE(setup() == 0);
    vx_err err;
    bool rep = true;
    vx_balance b;
    CHECK_EQ_INT(apply(VX_LEDGER_TOP_UP, 400, "topup:abc", &rep, &b, &err), 0);
    CHECK(!rep);
    CHECK_EQ_INT(apply(VX_LEDGER_TOP_UP, 400, "topup:abc", &rep, &b, &err), 0);
    CHECK(rep);
    CHECK_EQ_INT(b.available, 400);
    CHECK_EQ_INT(ledger_count(), 1);
    CHECK(audit_ok());
    teardown();
}

static void test_reused_ref_with_another_amount_or_kind_conflicts(void) {
    REQUIRE(setup() == 0);
    vx_err err;
    bool rep = true;
    vx_balance b;
    CHECK_EQ_INT(apply(VX_LEDGER_TOP_UP, 400, "topup:abc", &rep, &b, &err), 0);
    CHECK_EQ_INT(apply(VX_LEDGER_TOP_UP, 999, "topup:abc", &rep, &b, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_CONFLICT);
    CHECK_EQ_STR(err.code, "idempotency_key_reused");
    CHECK_EQ_INT(apply(VX_LEDGER_GRANT, 400, "topup:abc", &rep, &b, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_CONFLICT);
    CHECK_EQ_INT(ledger_count(), 1);
    CHECK(audit_ok());
    teardown();
}

static void test_invalid_entries_are_refused(void) {
    REQUIRE(setup() == 0);
    vx_err err;
    bool rep;
    vx_balance b;
    CHECK_EQ_INT(apply(VX_LEDGER_HOLD, -10, "h", &rep, &b, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_INVALID);
    CHECK_EQ_INT(apply(VX_LEDGER_CAPTURE, 10, "c", &rep, &b, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_INVALID);
    CHECK_EQ_INT(apply(VX_LEDGER_GRANT, 0, "z", &rep, &b, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_INVALID);
    CHECK_EQ_INT(apply(VX_LEDGER_TOP_UP, -5, "neg", &rep, &b, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_INVALID);
    CHECK_EQ_INT(apply(VX_LEDGER_GRANT, INT64_MAX, "huge", &rep, &b, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_INVALID);
    CHECK_EQ_INT(apply(VX_LEDGER_GRANT, 10, "", &rep, &b, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_INVALID);
    vx_ledger_entry e = {.kind = VX_LEDGER_GRANT, .amount = 5};
    vx_id_new(e.id, "led");
    snprintf(e.user_id, sizeof e.user_id, "usr_nobody");
    snprintf(e.ref, sizeof e.ref, "x");
    CHECK_EQ_INT(st->ops->ledger_apply(st, &e, &rep, &b, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_NOT_FOUND);
    CHECK_EQ_INT(ledger_count(), 0);
    CHECK(audit_ok());
    teardown();
}

static void test_ledger_lists_newest_first_with_balance_after_and_pages(void) {
    REQUIRE(setup() == 0);
    vx_err err;
    bool rep;
    vx_balance b;
    char ref[16];
    for (int i = 1; i <= 5; i++) {
        snprintf(ref, sizeof ref, "t%d", i);
        REQUIRE(apply(VX_LEDGER_TOP_UP, i * 10, ref, &rep, &b, &err) == 0);
    }
    /* Two pages; ids of one millisecond are not ordered among themselves, so
     * check the order of ids and the set of balances rather than positions. */
    vx_ledger_entry all[5];
    size_t total = 0;
    vx_ledger_entry *e = NULL;
    size_t n = 0;
    CHECK_EQ_INT(st->ops->ledger_list(st, user.id, NULL, 2, &e, &n, &err), 0);
    REQUIRE(n == 2);
    memcpy(all, e, n * sizeof *e);
    total = n;
    CHECK_EQ_INT(e[0].kind, VX_LEDGER_TOP_UP);
    CHECK_EQ_STR(e[0].actor_id, "usr_admin");
    CHECK(strncmp(e[0].note, "test t", 6) == 0);
    free(e);
    CHECK_EQ_INT(st->ops->ledger_list(st, user.id, all[1].id, 50, &e, &n, &err), 0);
    REQUIRE(n == 3);
    memcpy(all + total, e, n * sizeof *e);
    total += n;
    free(e);
    int64_t sum = 0, seen = 0;
    for (size_t i = 0; i < total; i++) {
        if (i > 0) CHECK(strcmp(all[i].id, all[i - 1].id) < 0);
        sum += all[i].amount;
        int64_t after = all[i].balance_after; /* 10, 30, 60, 100, 150 */
        for (int k = 1; k <= 5; k++)
            if (after == 5 * k * (k + 1)) seen |= 1 << k;
    }
    CHECK_EQ_INT(sum, 150);
    CHECK_EQ_INT(seen, 0x3e);
    teardown();
}

/* Another process's clock or id counter may give a later entry a smaller
 * id; listings follow the order the entries were written in. */
static void test_ledger_lists_in_write_order_even_when_ids_are_not(void) {
    REQUIRE(setup() == 0);
    vx_err err;
    bool rep;
    vx_balance b;
    static const char *const ids[] = {"led_3", "led_1", "led_2"}; /* written in this order */
    for (int i = 0; i < 3; i++) {
        vx_ledger_entry e = {.kind = VX_LEDGER_TOP_UP, .amount = 10, .created_at = vx_now_ms()};
        snprintf(e.id, sizeof e.id, "%s", ids[i]);
        snprintf(e.user_id, sizeof e.user_id, "%s", user.id);
        snprintf(e.ref, sizeof e.ref, "w%d", i);
        REQUIRE(st->ops->ledger_apply(st, &e, &rep, &b, &err) == 0);
    }
    vx_ledger_entry *e = NULL;
    size_t n = 0;
    REQUIRE(st->ops->ledger_list(st, user.id, NULL, 2, &e, &n, &err) == 0);
    REQUIRE(n == 2);
    CHECK_EQ_STR(e[0].id, "led_2");
    CHECK_EQ_INT(e[0].balance_after, 30);
    CHECK_EQ_STR(e[1].id, "led_1");
    CHECK_EQ_INT(e[1].balance_after, 20);
    char cursor[VX_ID_SIZE];
    snprintf(cursor, sizeof cursor, "%s", e[1].id);
    free(e);
    REQUIRE(st->ops->ledger_list(st, user.id, cursor, 2, &e, &n, &err) == 0);
    REQUIRE(n == 1);
    CHECK_EQ_STR(e[0].id, "led_3");
    CHECK_EQ_INT(e[0].balance_after, 10);
    free(e);
    teardown();
}

/* The CHECKs and triggers hold even against a buggy caller with raw SQL. */
static void test_database_itself_forbids_negative_balance_and_ledger_edits(void) {
    REQUIRE(setup() == 0);
    vx_err err;
    bool rep;
    vx_balance b;
    REQUIRE(apply(VX_LEDGER_GRANT, 50, "g", &rep, &b, &err) == 0);
    static const char *const forbidden[] = {
        "UPDATE balances SET available = -1", "UPDATE balances SET held = -1",
        "UPDATE ledger SET amount = 1000000", "DELETE FROM ledger",
    };
    if (pg_url()) {
        PGconn *pg = pg_raw();
        REQUIRE(PQstatus(pg) == CONNECTION_OK);
        PGresult *seen = PQexec(pg, "SELECT COUNT(*) FROM ledger"); /* the schema is the store's */
        CHECK(PQresultStatus(seen) == PGRES_TUPLES_OK && strcmp(PQgetvalue(seen, 0, 0), "1") == 0);
        PQclear(seen);
        for (size_t i = 0; i < sizeof forbidden / sizeof forbidden[0]; i++) {
            PGresult *r = PQexec(pg, forbidden[i]);
            CHECK(PQresultStatus(r) == PGRES_FATAL_ERROR);
            PQclear(r);
        }
        PGresult *r = PQexec(pg, "TRUNCATE ledger");
        CHECK(PQresultStatus(r) == PGRES_FATAL_ERROR);
        PQclear(r);
        PQfinish(pg);
    } else {
        char path[128];
        snprintf(path, sizeof path, "%s/voxd.db", dir);
        sqlite3 *db = NULL;
        REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
        sqlite3_busy_timeout(db, 5000);
        for (size_t i = 0; i < sizeof forbidden / sizeof forbidden[0]; i++)
            CHECK(sqlite3_exec(db, forbidden[i], NULL, NULL, NULL) != SQLITE_OK);
        sqlite3_close(db);
    }
    CHECK_EQ_INT(st->ops->balance_get(st, user.id, &b, &err), 0);
    CHECK_EQ_INT(b.available, 50);
    CHECK(audit_ok());
    teardown();
}

TEST_MAIN(TEST_ENTRY(test_grant_top_up_adjust_refund_add_up),
          TEST_ENTRY(test_negative_adjust_beyond_balance_is_refused_and_changes_nothing),
          TEST_ENTRY(test_replayed_ref_is_a_no_op_reporting_the_balance),
          TEST_ENTRY(test_reused_ref_with_another_amount_or_kind_conflicts),
          TEST_ENTRY(test_invalid_entries_are_refused),
          TEST_ENTRY(test_ledger_lists_newest_first_with_balance_after_and_pages),
          TEST_ENTRY(test_ledger_lists_in_write_order_even_when_ids_are_not),
          TEST_ENTRY(test_database_itself_forbids_negative_balance_and_ledger_edits))
