/* test_accounts.c - src/core/accounts.c on a real SQLite store in a scratch
 * directory: sign-up rules, login, authentication by JWT and API key (both
 * headers), revocation, expiry, disabled accounts, bootstrap, and store
 * failures injected by swapping hooks in the store's table. */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "test.h"
#include "../../src/core/accounts.h"
#include "../../src/util/clock.h"
#include "../../src/util/config.h"
#include "../../src/util/credits.h"
#include "../../src/util/crypto.h"
#include "../../src/util/jwt.h"
#include "../../src/util/log.h"

static vx_config cfg;
static vx_app app;
static char dir[64];
static char db_path[128];

/* A fresh store and app with default configuration; JWT secret loaded. */
static int setup(void) {
    vx_config_defaults(&cfg);
    memset(&app, 0, sizeof app);
    app.cfg = &cfg;
    snprintf(dir, sizeof dir, "/tmp/voxd-accounts-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    snprintf(db_path, sizeof db_path, "%s/voxd.db", dir);
    char url[160];
    snprintf(url, sizeof url, "sqlite://%s", db_path);
    vx_err err;
    app.store = vx_store_open(url, &err);
    if (!app.store) {
        fprintf(stderr, "  store: %s\n", err.message);
        return -1;
    }
    char generated[32];
    bool created;
    return vx_accounts_bootstrap(&app, generated, sizeof generated, &created, &err);
}

static void teardown(void) {
    vx_store_close(app.store);
    app.store = NULL;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", dir);
}

/* Direct SQL for what the store interface does not offer (disabling a
 * user, ageing a key's last use). */
static void sql(const char *statement) {
    sqlite3 *db = NULL;
    if (sqlite3_open(db_path, &db) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 5000);
        char *msg = NULL;
        if (sqlite3_exec(db, statement, NULL, NULL, &msg) != SQLITE_OK) {
            fprintf(stderr, "  sql: %s\n", msg);
            vx_test_failures++;
        }
        sqlite3_free(msg);
    }
    sqlite3_close(db);
}

static int signup(const char *name, const char *password, vx_user *u) {
    vx_err err;
    return vx_accounts_signup(&app, name, password, NULL, u, &err);
}

/* Runs authenticate and returns its error code ("" on success). */
static const char *auth_code(const char *authorization, const char *x_api_key, vx_principal *who) {
    static vx_err err;
    vx_principal scratch;
    vx_err_clear(&err);
    if (vx_accounts_authenticate(&app, authorization, x_api_key, who ? who : &scratch, &err) == 0) return "";
    return err.code;
}

#define GOOD_PW "plum-tree-47-river"

static void test_signup_creates_user_with_grant(void) {
    setenv("VOXD_FAST_PASSWORD_HASH", "1", 1);
    REQUIRE(vx_crypto_init() == 0);
    vx_log_set_level(VX_LOG_WARN); /* migrations and admin creation are expected */
    REQUIRE(setup() == 0);
    cfg.signup_grant_micro = 12500000;
    vx_user u;
    vx_err err;
    REQUIRE(vx_accounts_signup(&app, "alice", GOOD_PW, "alice@example.com", &u, &err) == 0);
    CHECK(vx_id_valid(u.id, "usr"));
    CHECK_EQ_STR(u.username, "alice");
    CHECK_EQ_STR(u.email, "alice@example.com");
    CHECK_EQ_STR(u.role, "user");
    CHECK(u.created_at > 0);
    CHECK(strncmp(u.password_hash, "$argon2id$", 10) == 0);
    CHECK(strstr(u.password_hash, GOOD_PW) == NULL);
    vx_balance b;
    REQUIRE(app.store->ops->balance_get(app.store, u.id, &b, &err) == 0);
    CHECK_EQ_INT(b.available, 12500000);
    CHECK_EQ_INT(b.held, 0);
    vx_user stored;
    REQUIRE(app.store->ops->user_get_by_name(app.store, "alice", &stored, &err) == 0);
    CHECK_EQ_STR(stored.id, u.id);
    CHECK(vx_password_verify(stored.password_hash, GOOD_PW));
    teardown();
}

static void check_signup_fails(const char *name, const char *pw, const char *email, vx_status status,
                               const char *code) {
    vx_user u;
    vx_err err;
    vx_err_clear(&err);
    int rc = vx_accounts_signup(&app, name, pw, email, &u, &err);
    if (rc == 0 || strcmp(err.code, code) != 0)
        fprintf(stderr, "  signup(%s, %s, %s) gave %s\n", name ? name : "NULL", pw ? pw : "NULL",
                email ? email : "NULL", rc == 0 ? "success" : err.code);
    CHECK_EQ_INT(rc, -1);
    CHECK_EQ_INT(err.status, status);
    CHECK_EQ_STR(err.code, code);
}

static void test_signup_refuses_invalid_usernames(void) {
    REQUIRE(setup() == 0);
    static const char *const bad[] = {"ab", "abcdefghijklmnopqrstuvwxyz0123456", "_abc", "-abc", ".abc",
                                      "a b", "al!ce", "", "b\xc3\xa9la", "bob/../x", "bob\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        check_signup_fails(bad[i], GOOD_PW, NULL, VX_E_UNPROCESSABLE, "invalid_username");
    check_signup_fails(NULL, GOOD_PW, NULL, VX_E_UNPROCESSABLE, "invalid_username");
    vx_user u;
    CHECK_EQ_INT(signup("abc", GOOD_PW, &u), 0);
    CHECK_EQ_INT(signup("9lives.a-b_c", GOOD_PW, &u), 0);
    CHECK_EQ_INT(signup("abcdefghijklmnopqrstuvwxyz012345", GOOD_PW, &u), 0); /* 32 */
    teardown();
}

static void test_signup_refuses_weak_passwords_with_reason(void) {
    REQUIRE(setup() == 0);
    vx_err err;
    vx_user u;
    char long_pw[258];
    for (int i = 0; i < 257; i++) long_pw[i] = (char)('a' + i % 26);
    long_pw[257] = '\0';
    static const struct { const char *pw, *reason; } bad[] = {
        {"short1234", "at least 10"}, {"", "at least 10"}, {"aaaaaaaaaaaaaa", "repeated"},
        {"my-Alice-pass-9", "username"}, {"PASSWORD123", "common"}, {"qwertyuiop", "common"},
        {"1234567890", "common"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ_INT(vx_accounts_signup(&app, "alice", bad[i].pw, NULL, &u, &err), -1);
        CHECK_EQ_INT(err.status, VX_E_UNPROCESSABLE);
        CHECK_EQ_STR(err.code, "weak_password");
        if (!strstr(err.message, bad[i].reason)) fprintf(stderr, "  %s: %s\n", bad[i].pw, err.message);
        CHECK(strstr(err.message, bad[i].reason) != NULL);
    }
    CHECK_EQ_INT(vx_accounts_signup(&app, "alice", long_pw, NULL, &u, &err), -1);
    CHECK(strstr(err.message, "256") != NULL);
    CHECK_EQ_INT(vx_accounts_signup(&app, "alice", NULL, NULL, &u, &err), -1);
    CHECK_EQ_STR(err.code, "weak_password");
    long_pw[256] = '\0'; /* exactly 256 bytes is fine */
    CHECK_EQ_INT(vx_accounts_signup(&app, "alice", long_pw, NULL, &u, &err), 0);
    CHECK_EQ_INT(vx_accounts_signup(&app, "bob", "abababababab", NULL, &u, &err), 0);
    teardown();
}

static void test_signup_refuses_malformed_email(void) {
    REQUIRE(setup() == 0);
    char long_email[300];
    memset(long_email, 'a', 250);
    snprintf(long_email + 250, 50, "@example.com");
    static const char *const bad[] = {"no-at", "a@b", "a@b.c", "@example.com", "a b@example.com",
                                      "a@@example.com", "a@example..com", "a@.example.com", "a@example.com.",
                                      "a@exa mple.com", "a\t@example.com", "a@b@example.com"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        check_signup_fails("alice", GOOD_PW, bad[i], VX_E_UNPROCESSABLE, "invalid_email");
    check_signup_fails("alice", GOOD_PW, long_email, VX_E_UNPROCESSABLE, "invalid_email");
    vx_user u;
    vx_err err;
    CHECK_EQ_INT(vx_accounts_signup(&app, "alice", GOOD_PW, "", &u, &err), 0);
    CHECK_EQ_STR(u.email, "");
    CHECK_EQ_INT(vx_accounts_signup(&app, "bob", GOOD_PW, "bob.smith+tag@mail.example.org", &u, &err), 0);
    teardown();
}

static void test_duplicate_username_is_a_conflict_in_any_case(void) {
    REQUIRE(setup() == 0);
    vx_user u;
    REQUIRE(signup("alice", GOOD_PW, &u) == 0);
    check_signup_fails("alice", GOOD_PW, NULL, VX_E_CONFLICT, "username_taken");
    check_signup_fails("ALICE", "another-fine-pass-1", NULL, VX_E_CONFLICT, "username_taken");
    teardown();
}

static void test_signup_disabled_is_forbidden(void) {
    REQUIRE(setup() == 0);
    cfg.allow_signup = false;
    check_signup_fails("alice", GOOD_PW, NULL, VX_E_FORBIDDEN, "signup_disabled");
    teardown();
}

static void test_login_then_authenticate_with_jwt(void) {
    REQUIRE(setup() == 0);
    vx_user u;
    REQUIRE(signup("alice", GOOD_PW, &u) == 0);
    char *token = NULL;
    int expires_in = 0;
    vx_err err;
    REQUIRE(vx_accounts_login(&app, "alice", GOOD_PW, &token, &expires_in, &err) == 0);
    CHECK_EQ_INT(expires_in, 900);
    char bearer[1024];
    snprintf(bearer, sizeof bearer, "Bearer %s", token);
    vx_principal who;
    CHECK_EQ_STR(auth_code(bearer, NULL, &who), "");
    CHECK_EQ_STR(who.user.id, u.id);
    CHECK_EQ_STR(who.user.role, "user");
    CHECK(!who.via_api_key);
    CHECK_EQ_STR(who.api_key_id, "");
    snprintf(bearer, sizeof bearer, "bearer   %s  ", token); /* scheme is case-insensitive */
    CHECK_EQ_STR(auth_code(bearer, NULL, &who), "");
    /* Login is by the stored name, case-insensitively. */
    char *again = NULL;
    CHECK_EQ_INT(vx_accounts_login(&app, "Alice", GOOD_PW, &again, &expires_in, &err), 0);
    free(again);
    /* The token's exp is the configured ttl from now. */
    char sub[VX_ID_SIZE];
    int64_t now = vx_now_ms() / 1000;
    CHECK_EQ_INT(vx_jwt_verify(app.jwt_secret, 32, token, now + 890, sub, sizeof sub, &err), 0);
    CHECK_EQ_INT(vx_jwt_verify(app.jwt_secret, 32, token, now + 902, sub, sizeof sub, &err), -1);
    free(token);
    teardown();
}

static void test_login_wrong_password_and_unknown_user_look_the_same(void) {
    REQUIRE(setup() == 0);
    vx_user u;
    REQUIRE(signup("alice", GOOD_PW, &u) == 0);
    char *token = (char *)"unchanged";
    int expires_in = 0;
    vx_err wrong, unknown;
    CHECK_EQ_INT(vx_accounts_login(&app, "alice", "plum-tree-47-rivers", &token, &expires_in, &wrong), -1);
    CHECK(token == NULL);
    CHECK_EQ_INT(vx_accounts_login(&app, "nobody", GOOD_PW, &token, &expires_in, &unknown), -1);
    CHECK_EQ_INT(wrong.status, VX_E_UNAUTHORIZED);
    CHECK_EQ_STR(wrong.code, "invalid_credentials");
    CHECK_EQ_INT(unknown.status, wrong.status);
    CHECK_EQ_STR(unknown.code, wrong.code);
    CHECK_EQ_STR(unknown.message, wrong.message);
    CHECK_EQ_INT(vx_accounts_login(&app, "", "", &token, &expires_in, &unknown), -1);
    CHECK_EQ_STR(unknown.code, "invalid_credentials");
    CHECK_EQ_INT(vx_accounts_login(&app, NULL, NULL, &token, &expires_in, &unknown), -1);
    CHECK_EQ_STR(unknown.code, "invalid_credentials");
    teardown();
}

static void test_api_key_works_in_both_headers(void) {
    REQUIRE(setup() == 0);
    vx_user u;
    REQUIRE(signup("alice", GOOD_PW, &u) == 0);
    vx_api_key k;
    char key[VX_API_KEY_SIZE];
    vx_err err;
    REQUIRE(vx_accounts_create_api_key(&app, u.id, NULL, &k, key, &err) == 0);
    CHECK_EQ_INT(strlen(key), 43);
    CHECK(strncmp(key, "vx_", 3) == 0);
    CHECK(strspn(key + 3, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") == 40);
    CHECK_EQ_INT(strlen(k.prefix), 11);
    CHECK(strncmp(k.prefix, key, 11) == 0);
    CHECK_EQ_STR(k.name, "default");
    CHECK(vx_id_valid(k.id, "key"));
    char hash[VX_SHA256_HEX_SIZE];
    vx_sha256_hex(key, strlen(key), hash);
    CHECK_EQ_STR(k.key_hash, hash);
    /* Only the hash is stored. */
    vx_api_key *list = NULL;
    size_t n = 0;
    REQUIRE(app.store->ops->api_key_list(app.store, u.id, &list, &n, &err) == 0);
    REQUIRE(n == 1);
    CHECK_EQ_STR(list[0].key_hash, hash);
    free(list);

    char bearer[128];
    snprintf(bearer, sizeof bearer, "Bearer %s", key);
    vx_principal who;
    CHECK_EQ_STR(auth_code(bearer, NULL, &who), "");
    CHECK_EQ_STR(who.user.id, u.id);
    CHECK(who.via_api_key);
    CHECK_EQ_STR(who.api_key_id, k.id);
    memset(&who, 0, sizeof who);
    CHECK_EQ_STR(auth_code(NULL, key, &who), "");
    CHECK_EQ_STR(who.user.id, u.id);
    CHECK(who.via_api_key);
    CHECK_EQ_STR(auth_code("", key, &who), "");
    /* Authorization wins over X-API-Key. */
    CHECK_EQ_STR(auth_code("Basic abc", key, &who), "invalid_authorization");
    teardown();
}

static void test_api_key_name_rules(void) {
    REQUIRE(setup() == 0);
    vx_user u;
    REQUIRE(signup("alice", GOOD_PW, &u) == 0);
    vx_api_key k;
    char key[VX_API_KEY_SIZE];
    vx_err err;
    char name[102];
    memset(name, 'n', 101);
    name[101] = '\0';
    static const char *const bad[] = {"line\nbreak", "tab\there", "\x7f", "bad \xff utf8"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ_INT(vx_accounts_create_api_key(&app, u.id, bad[i], &k, key, &err), -1);
        CHECK_EQ_INT(err.status, VX_E_UNPROCESSABLE);
        CHECK_EQ_STR(err.code, "invalid_name");
    }
    CHECK_EQ_INT(vx_accounts_create_api_key(&app, u.id, name, &k, key, &err), -1);
    CHECK_EQ_STR(err.code, "invalid_name");
    name[100] = '\0';
    CHECK_EQ_INT(vx_accounts_create_api_key(&app, u.id, name, &k, key, &err), 0);
    CHECK_EQ_STR(k.name, name);
    CHECK_EQ_INT(vx_accounts_create_api_key(&app, u.id, "laptop \xc3\xa9t\xc3\xa9", &k, key, &err), 0);
    CHECK_EQ_INT(vx_accounts_create_api_key(&app, u.id, "", &k, key, &err), 0);
    CHECK_EQ_STR(k.name, "default");
    teardown();
}

static void test_revoked_and_unknown_keys_are_refused(void) {
    REQUIRE(setup() == 0);
    vx_user u;
    REQUIRE(signup("alice", GOOD_PW, &u) == 0);
    vx_api_key k;
    char key[VX_API_KEY_SIZE];
    vx_err err;
    REQUIRE(vx_accounts_create_api_key(&app, u.id, "ci", &k, key, &err) == 0);
    CHECK_EQ_STR(auth_code(NULL, key, NULL), "");
    REQUIRE(app.store->ops->api_key_revoke(app.store, u.id, k.id, vx_now_ms(), &err) == 0);
    CHECK_EQ_STR(auth_code(NULL, key, NULL), "invalid_api_key");
    char bearer[128];
    snprintf(bearer, sizeof bearer, "Bearer %s", key);
    CHECK_EQ_STR(auth_code(bearer, NULL, NULL), "invalid_api_key");

    char other[VX_API_KEY_SIZE] = "vx_";
    vx_random_alnum(other + 3, 40);
    CHECK_EQ_STR(auth_code(NULL, other, NULL), "invalid_api_key");
    CHECK_EQ_STR(auth_code(NULL, "vx_short", NULL), "invalid_api_key");
    CHECK_EQ_STR(auth_code(NULL, "not a key at all", NULL), "invalid_api_key");
    CHECK_EQ_STR(auth_code("Bearer vx_", NULL, NULL), "invalid_api_key");
    vx_principal who;
    vx_accounts_authenticate(&app, NULL, other, &who, &err);
    CHECK_EQ_INT(err.status, VX_E_UNAUTHORIZED);
    teardown();
}

static void test_missing_and_malformed_authorization(void) {
    REQUIRE(setup() == 0);
    CHECK_EQ_STR(auth_code(NULL, NULL, NULL), "missing_credentials");
    CHECK_EQ_STR(auth_code("", "", NULL), "missing_credentials");
    static const char *const bad[] = {"Basic YWxpY2U6cGFzcw==", "Bearer", "Bearer ", "Bearertoken",
                                      "Token abc", "Bearer a b", "Bearer\tx y"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECK_EQ_STR(auth_code(bad[i], NULL, NULL), "invalid_authorization");
    vx_err err;
    vx_principal who;
    CHECK_EQ_INT(vx_accounts_authenticate(&app, "Basic x", NULL, &who, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_UNAUTHORIZED);
    teardown();
}

static void test_bad_expired_and_orphaned_tokens_are_refused(void) {
    REQUIRE(setup() == 0);
    vx_user u;
    REQUIRE(signup("alice", GOOD_PW, &u) == 0);
    int64_t now = vx_now_ms() / 1000;
    char bearer[1024];
    CHECK_EQ_STR(auth_code("Bearer abc.def.ghi", NULL, NULL), "invalid_token");
    CHECK_EQ_STR(auth_code("Bearer abc", NULL, NULL), "invalid_token");

    char *expired = vx_jwt_sign(app.jwt_secret, sizeof app.jwt_secret, u.id, "user", now, -10);
    snprintf(bearer, sizeof bearer, "Bearer %s", expired);
    CHECK_EQ_STR(auth_code(bearer, NULL, NULL), "token_expired");
    free(expired);

    unsigned char other_secret[32] = {1};
    char *forged = vx_jwt_sign(other_secret, sizeof other_secret, u.id, "admin", now, 600);
    snprintf(bearer, sizeof bearer, "Bearer %s", forged);
    CHECK_EQ_STR(auth_code(bearer, NULL, NULL), "invalid_token");
    free(forged);

    char ghost[VX_ID_SIZE];
    vx_id_new(ghost, "usr");
    char *orphan = vx_jwt_sign(app.jwt_secret, sizeof app.jwt_secret, ghost, "user", now, 600);
    snprintf(bearer, sizeof bearer, "Bearer %s", orphan);
    CHECK_EQ_STR(auth_code(bearer, NULL, NULL), "invalid_token");
    free(orphan);

    /* The role comes from the store, not from the token's claim. */
    char *claims_admin = vx_jwt_sign(app.jwt_secret, sizeof app.jwt_secret, u.id, "admin", now, 600);
    snprintf(bearer, sizeof bearer, "Bearer %s", claims_admin);
    vx_principal who;
    CHECK_EQ_STR(auth_code(bearer, NULL, &who), "");
    CHECK_EQ_STR(who.user.role, "user");
    free(claims_admin);
    teardown();
}

static void test_disabled_account_is_forbidden_everywhere(void) {
    REQUIRE(setup() == 0);
    vx_user u;
    REQUIRE(signup("alice", GOOD_PW, &u) == 0);
    vx_err err;
    char *token = NULL;
    int expires_in;
    REQUIRE(vx_accounts_login(&app, "alice", GOOD_PW, &token, &expires_in, &err) == 0);
    vx_api_key k;
    char key[VX_API_KEY_SIZE];
    REQUIRE(vx_accounts_create_api_key(&app, u.id, "ci", &k, key, &err) == 0);
    sql("UPDATE users SET disabled = 1 WHERE username = 'alice'");

    char *none = NULL;
    CHECK_EQ_INT(vx_accounts_login(&app, "alice", GOOD_PW, &none, &expires_in, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_FORBIDDEN);
    CHECK_EQ_STR(err.code, "account_disabled");
    CHECK(none == NULL);
    /* A wrong password reveals nothing about the account's state. */
    CHECK_EQ_INT(vx_accounts_login(&app, "alice", "wrong-password-here", &none, &expires_in, &err), -1);
    CHECK_EQ_STR(err.code, "invalid_credentials");

    char bearer[1024];
    snprintf(bearer, sizeof bearer, "Bearer %s", token);
    CHECK_EQ_STR(auth_code(bearer, NULL, NULL), "account_disabled");
    CHECK_EQ_STR(auth_code(NULL, key, NULL), "account_disabled");
    vx_principal who;
    vx_accounts_authenticate(&app, NULL, key, &who, &err);
    CHECK_EQ_INT(err.status, VX_E_FORBIDDEN);
    free(token);
    teardown();
}

static int64_t key_last_used(const char *user_id) {
    vx_api_key *list = NULL;
    size_t n = 0;
    vx_err err;
    int64_t v = -1;
    if (app.store->ops->api_key_list(app.store, user_id, &list, &n, &err) == 0 && n == 1) v = list[0].last_used_at;
    free(list);
    return v;
}

static int touches;
static const vx_store_ops *real_ops;
static int counting_touch(vx_store *st, const char *id, int64_t now, vx_err *err) {
    touches++;
    return real_ops->api_key_touch(st, id, now, err);
}

static void test_key_last_use_is_recorded_at_most_once_a_minute(void) {
    REQUIRE(setup() == 0);
    vx_user u;
    REQUIRE(signup("alice", GOOD_PW, &u) == 0);
    vx_api_key k;
    char key[VX_API_KEY_SIZE];
    vx_err err;
    REQUIRE(vx_accounts_create_api_key(&app, u.id, "ci", &k, key, &err) == 0);
    CHECK_EQ_INT(key_last_used(u.id), 0);
    int64_t before = vx_now_ms();
    CHECK_EQ_STR(auth_code(NULL, key, NULL), "");
    int64_t first = key_last_used(u.id);
    CHECK(first >= before);
    struct timespec pause = {0, 5 * 1000 * 1000}; /* so a second write would differ */
    nanosleep(&pause, NULL);
    CHECK_EQ_STR(auth_code(NULL, key, NULL), "");
    CHECK_EQ_INT(key_last_used(u.id), first);
    /* Once the recorded use is over a minute old it is refreshed. */
    sql("UPDATE api_keys SET last_used_at = last_used_at - 61000");
    CHECK_EQ_STR(auth_code(NULL, key, NULL), "");
    CHECK(key_last_used(u.id) >= first);
    /* The store is not even asked to write within the minute. */
    real_ops = app.store->ops;
    vx_store_ops counting = *real_ops;
    counting.api_key_touch = counting_touch;
    app.store->ops = &counting;
    touches = 0;
    for (int i = 0; i < 5; i++) CHECK_EQ_STR(auth_code(NULL, key, NULL), "");
    CHECK_EQ_INT(touches, 0);
    app.store->ops = real_ops;
    teardown();
}

/* An empty store, not bootstrapped. */
static int setup_empty(void) {
    if (setup() != 0) return -1;
    vx_store_close(app.store);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -f '%s'*", db_path);
    if (system(cmd) != 0) return -1;
    char url[160];
    snprintf(url, sizeof url, "sqlite://%s", db_path);
    vx_err err;
    app.store = vx_store_open(url, &err);
    return app.store ? 0 : -1;
}

static void test_bootstrap_creates_admin_once_with_working_password(void) {
    REQUIRE(setup_empty() == 0);
    vx_err err;
    char generated[64] = "x";
    bool created = false;
    REQUIRE(vx_accounts_bootstrap(&app, generated, sizeof generated, &created, &err) == 0);
    CHECK(created);
    CHECK_EQ_INT(strlen(generated), 24);
    unsigned char zero[32] = {0}, first_secret[32];
    CHECK(memcmp(app.jwt_secret, zero, 32) != 0);
    memcpy(first_secret, app.jwt_secret, 32);

    char *token = NULL;
    int expires_in;
    REQUIRE(vx_accounts_login(&app, "admin", generated, &token, &expires_in, &err) == 0);
    char bearer[1024];
    snprintf(bearer, sizeof bearer, "Bearer %s", token);
    vx_principal who;
    CHECK_EQ_STR(auth_code(bearer, NULL, &who), "");
    CHECK_EQ_STR(who.user.role, "admin");
    CHECK_EQ_STR(who.user.username, "admin");
    vx_balance b;
    REQUIRE(app.store->ops->balance_get(app.store, who.user.id, &b, &err) == 0);
    CHECK_EQ_INT(b.available, 0); /* no sign-up grant for the admin */

    /* Second start: same secret (tokens stay valid), nothing created. */
    memset(app.jwt_secret, 0, 32);
    char second[64] = "x";
    REQUIRE(vx_accounts_bootstrap(&app, second, sizeof second, &created, &err) == 0);
    CHECK(!created);
    CHECK_EQ_STR(second, "");
    CHECK(memcmp(app.jwt_secret, first_secret, 32) == 0);
    CHECK_EQ_STR(auth_code(bearer, NULL, NULL), "");
    int64_t admins = 0;
    REQUIRE(app.store->ops->user_count_role(app.store, "admin", &admins, &err) == 0);
    CHECK_EQ_INT(admins, 1);
    /* The secret is base64url of 32 bytes in the settings. */
    char stored[64];
    REQUIRE(app.store->ops->setting_get(app.store, "jwt_secret", stored, sizeof stored, &err) == 0);
    CHECK_EQ_INT(strlen(stored), 43);
    free(token);
    teardown();
}

static void test_bootstrap_uses_admin_password_from_config(void) {
    REQUIRE(setup_empty() == 0);
    vx_err err;
    char generated[64];
    bool created = false;
    /* A caller without room for a generated password gets an error. */
    CHECK_EQ_INT(vx_accounts_bootstrap(&app, generated, 8, &created, &err), -1);
    CHECK(!created);
    snprintf(cfg.admin_password, sizeof cfg.admin_password, "short");
    CHECK_EQ_INT(vx_accounts_bootstrap(&app, generated, sizeof generated, &created, &err), -1);
    CHECK_EQ_STR(err.code, "weak_password");
    CHECK(strstr(err.message, "VOXD_ADMIN_PASSWORD") != NULL);
    CHECK(!created);
    snprintf(cfg.admin_password, sizeof cfg.admin_password, "MyAdminPassword7");
    CHECK_EQ_INT(vx_accounts_bootstrap(&app, generated, sizeof generated, &created, &err), -1);
    CHECK_EQ_STR(err.code, "weak_password"); /* contains the username */
    int64_t admins = -1;
    REQUIRE(app.store->ops->user_count_role(app.store, "admin", &admins, &err) == 0);
    CHECK_EQ_INT(admins, 0);

    snprintf(cfg.admin_password, sizeof cfg.admin_password, "copper-kettle-1234");
    REQUIRE(vx_accounts_bootstrap(&app, generated, sizeof generated, &created, &err) == 0);
    CHECK(created);
    CHECK_EQ_STR(generated, "");
    char *token = NULL;
    int expires_in;
    CHECK_EQ_INT(vx_accounts_login(&app, "admin", "copper-kettle-1234", &token, &expires_in, &err), 0);
    free(token);
    teardown();
}

static void test_bootstrap_refuses_to_promote_a_regular_admin_name(void) {
    REQUIRE(setup_empty() == 0);
    vx_err err;
    vx_user u;
    REQUIRE(vx_accounts_signup(&app, "Admin", GOOD_PW, NULL, &u, &err) == 0);
    char generated[64];
    bool created = true;
    CHECK_EQ_INT(vx_accounts_bootstrap(&app, generated, sizeof generated, &created, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_CONFLICT);
    CHECK_EQ_STR(err.code, "admin_name_taken");
    CHECK(!created);
    vx_user still;
    REQUIRE(app.store->ops->user_get(app.store, u.id, &still, &err) == 0);
    CHECK_EQ_STR(still.role, "user");
    teardown();
}

/* ---- store failures, injected by swapping hooks ------------------------- */

static int fail_unavailable(vx_err *err) {
    return vx_err_set(err, VX_E_UNAVAILABLE, "store_unavailable", "the database is busy");
}
static int failing_get_by_name(vx_store *st, const char *n, vx_user *o, vx_err *err) { return fail_unavailable(err); }
static int failing_user_get(vx_store *st, const char *id, vx_user *o, vx_err *err) { return fail_unavailable(err); }
static int failing_touch(vx_store *st, const char *id, int64_t now, vx_err *err) { return fail_unavailable(err); }
static int failing_find(vx_store *st, const char *h, vx_api_key *k, vx_user *u, vx_err *err) {
    return fail_unavailable(err);
}
static int failing_setting(vx_store *st, const char *k, char *v, size_t cap, vx_err *err) {
    return fail_unavailable(err);
}
static int failing_create(vx_store *st, const vx_user *u, int64_t grant, vx_err *err) {
    return fail_unavailable(err);
}

static void test_store_failures_are_reported_not_disguised(void) {
    REQUIRE(setup() == 0);
    vx_user u;
    vx_err err;
    REQUIRE(signup("alice", GOOD_PW, &u) == 0);
    vx_api_key k;
    char key[VX_API_KEY_SIZE], *token = NULL;
    int expires_in;
    REQUIRE(vx_accounts_create_api_key(&app, u.id, "ci", &k, key, &err) == 0);
    REQUIRE(vx_accounts_login(&app, "alice", GOOD_PW, &token, &expires_in, &err) == 0);
    char bearer[1024];
    snprintf(bearer, sizeof bearer, "Bearer %s", token);

    const vx_store_ops *real = app.store->ops;
    vx_store_ops broken = *real;
    broken.user_get_by_name = failing_get_by_name;
    broken.user_get = failing_user_get;
    broken.api_key_find = failing_find;
    broken.setting_put_if_absent = failing_setting;
    broken.user_create = failing_create;
    app.store->ops = &broken;
    char *none = NULL;
    CHECK_EQ_INT(vx_accounts_login(&app, "alice", GOOD_PW, &none, &expires_in, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_UNAVAILABLE); /* not "invalid_credentials" */
    CHECK_EQ_STR(auth_code(bearer, NULL, NULL), "store_unavailable");
    CHECK_EQ_STR(auth_code(NULL, key, NULL), "store_unavailable");
    CHECK_EQ_INT(vx_accounts_signup(&app, "bob", GOOD_PW, NULL, &u, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_UNAVAILABLE);
    char generated[64];
    bool created;
    CHECK_EQ_INT(vx_accounts_bootstrap(&app, generated, sizeof generated, &created, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_UNAVAILABLE);

    /* Failing to record a key's use does not fail the request. */
    broken = *real;
    broken.api_key_touch = failing_touch;
    CHECK_EQ_STR(auth_code(NULL, key, NULL), "");
    app.store->ops = real;
    free(token);
    teardown();
}

TEST_MAIN(TEST_ENTRY(test_signup_creates_user_with_grant),
          TEST_ENTRY(test_signup_refuses_invalid_usernames),
          TEST_ENTRY(test_signup_refuses_weak_passwords_with_reason),
          TEST_ENTRY(test_signup_refuses_malformed_email),
          TEST_ENTRY(test_duplicate_username_is_a_conflict_in_any_case),
          TEST_ENTRY(test_signup_disabled_is_forbidden),
          TEST_ENTRY(test_login_then_authenticate_with_jwt),
          TEST_ENTRY(test_login_wrong_password_and_unknown_user_look_the_same),
          TEST_ENTRY(test_api_key_works_in_both_headers),
          TEST_ENTRY(test_api_key_name_rules),
          TEST_ENTRY(test_revoked_and_unknown_keys_are_refused),
          TEST_ENTRY(test_missing_and_malformed_authorization),
          TEST_ENTRY(test_bad_expired_and_orphaned_tokens_are_refused),
          TEST_ENTRY(test_disabled_account_is_forbidden_everywhere),
          TEST_ENTRY(test_key_last_use_is_recorded_at_most_once_a_minute),
          TEST_ENTRY(test_bootstrap_creates_admin_once_with_working_password),
          TEST_ENTRY(test_bootstrap_uses_admin_password_from_config),
          TEST_ENTRY(test_bootstrap_refuses_to_promote_a_regular_admin_name),
          TEST_ENTRY(test_store_failures_are_reported_not_disguised))
