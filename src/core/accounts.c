/* accounts.c - account and authentication rules (see accounts.h): what a
 * valid username, password and email are, how credentials become a
 * principal, how API keys are minted and how the first start is seeded.
 * No SQL here; everything persistent goes through app->store. Thread-safe. */
#include "accounts.h"
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "../util/clock.h"
#include "../util/crypto.h"
#include "../util/jwt.h"
#include "../util/log.h"

#define KEY_PREFIX "vx_"
#define KEY_RANDOM_CHARS 40
#define KEY_SHOWN_CHARS 11          /* "vx_" + 8: enough to tell keys apart in a list */
#define KEY_TOUCH_INTERVAL_MS 60000 /* last_used_at resolution; saves a write per request */
#define GENERATED_PASSWORD_CHARS 24
#define CREDENTIAL_MAX 4096

/* Passwords of 10+ characters that top every leaked-password list; shorter
 * ones are refused by length already. Compared case-insensitively. */
static const char *const common_passwords[] = {
    "1234567890", "0123456789", "12345678910", "123456789a", "a123456789", "1234567890a",
    "password12", "password123", "password1234", "passw0rd123", "password!!", "qwertyuiop",
    "qwerty1234", "qwerty12345", "qwerty123456", "1q2w3e4r5t", "1qaz2wsx3edc", "zaq12wsxcde3",
    "abcdefghij", "abc1234567", "abcd123456", "iloveyou12", "iloveyou123", "letmein123",
    "welcome123", "football123", "baseball123", "monkey12345", "trustno1234", "superman123",
    "changeme123", "administrator", "admin12345", "admin123456", "qwertyuiopasdfghjkl",
    "asdfghjkl123", "princess123", "sunshine123", "starwars123", "dragon12345",
};

static bool ascii_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int check_username(const char *username, vx_err *err) {
    size_t n = username ? strlen(username) : 0;
    bool ok = n >= 3 && n <= 32 && ascii_alnum(username[0]);
    for (size_t i = 1; ok && i < n; i++)
        ok = ascii_alnum(username[i]) || username[i] == '_' || username[i] == '.' || username[i] == '-';
    if (ok) return 0;
    return vx_err_set(err, VX_E_UNPROCESSABLE, "invalid_username",
                      "username must be 3-32 characters of letters, digits, '_', '.' or '-', "
                      "starting with a letter or digit");
}

static int weak(vx_err *err, const char *why) {
    return vx_err_set(err, VX_E_UNPROCESSABLE, "weak_password", "password %s", why);
}

static int check_password(const char *username, const char *password, vx_err *err) {
    size_t n = password ? strlen(password) : 0;
    if (n < 10) return weak(err, "must be at least 10 characters long");
    if (n > 256) return weak(err, "must be at most 256 bytes long");
    size_t same = 1;
    while (same < n && password[same] == password[0]) same++;
    if (same == n) return weak(err, "must not be one repeated character");
    if (username && username[0] && strcasestr(password, username))
        return weak(err, "must not contain the username");
    for (size_t i = 0; i < sizeof common_passwords / sizeof common_passwords[0]; i++)
        if (strcasecmp(password, common_passwords[i]) == 0) return weak(err, "is too common");
    return 0;
}

/* local@domain.tld: no spaces or control characters, one '@', a dot inside
 * the domain with non-empty labels and a top-level part of 2+ characters. */
static int check_email(const char *email, vx_err *err) {
    size_t n = strlen(email);
    const char *at = strchr(email, '@');
    bool ok = n <= 254 && at && at != email && !strchr(at + 1, '@') && at - email <= 64;
    for (size_t i = 0; ok && i < n; i++) ok = (unsigned char)email[i] > 0x20 && email[i] != 0x7f;
    if (ok) {
        const char *domain = at + 1, *last_dot = strrchr(domain, '.');
        ok = last_dot && domain[0] != '.' && strlen(last_dot + 1) >= 2 && !strstr(domain, "..");
    }
    if (ok) return 0;
    return vx_err_set(err, VX_E_UNPROCESSABLE, "invalid_email", "email must look like name@example.com");
}

int vx_accounts_signup(vx_app *app, const char *username, const char *password, const char *email,
                       vx_user *out, vx_err *err) {
    if (!app->cfg->allow_signup)
        return vx_err_set(err, VX_E_FORBIDDEN, "signup_disabled", "sign-up is disabled on this server");
    if (check_username(username, err) != 0) return -1;
    if (check_password(username, password, err) != 0) return -1;
    if (!email) email = "";
    if (email[0] && check_email(email, err) != 0) return -1;

    vx_user u = {.created_at = vx_now_ms(), .disabled = false};
    vx_id_new(u.id, "usr");
    snprintf(u.username, sizeof u.username, "%s", username);
    snprintf(u.email, sizeof u.email, "%s", email);
    snprintf(u.role, sizeof u.role, "user");
    if (vx_password_hash(password, u.password_hash) != 0)
        return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "could not hash the password");
    if (app->store->ops->user_create(app->store, &u, app->cfg->signup_grant_micro, err) != 0) {
        if (err && err->status == VX_E_CONFLICT)
            vx_err_set(err, VX_E_CONFLICT, "username_taken", "that username is taken");
        return -1;
    }
    if (out) *out = u;
    return 0;
}

/* A hash of a random password, so that logging in as an unknown user costs
 * one argon2id verification just like a wrong password does. */
static char dummy_hash[VX_PASSWORD_HASH_SIZE];
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;

static void make_dummy_hash(void) {
    char pw[33];
    vx_random_alnum(pw, 32);
    if (vx_password_hash(pw, dummy_hash) != 0) dummy_hash[0] = '\0';
}

int vx_accounts_login(vx_app *app, const char *username, const char *password, char **token,
                      int *expires_in, vx_err *err) {
    *token = NULL;
    if (!password) password = "";
    vx_user u;
    vx_err lookup;
    vx_err_clear(&lookup);
    int found = username && username[0] && strlen(username) < sizeof u.username
                    ? app->store->ops->user_get_by_name(app->store, username, &u, &lookup)
                    : vx_err_set(&lookup, VX_E_NOT_FOUND, "user_not_found", "no such user");
    if (found != 0 && lookup.status != VX_E_NOT_FOUND) {
        if (err) *err = lookup;
        return -1;
    }
    if (found != 0) {
        pthread_once(&dummy_once, make_dummy_hash);
        (void)vx_password_verify(dummy_hash, password);
        return vx_err_set(err, VX_E_UNAUTHORIZED, "invalid_credentials", "wrong username or password");
    }
    if (!vx_password_verify(u.password_hash, password))
        return vx_err_set(err, VX_E_UNAUTHORIZED, "invalid_credentials", "wrong username or password");
    if (u.disabled)
        return vx_err_set(err, VX_E_FORBIDDEN, "account_disabled", "this account is disabled");
    *token = vx_jwt_sign(app->jwt_secret, sizeof app->jwt_secret, u.id, u.role, vx_now_ms() / 1000,
                         app->cfg->jwt_ttl_s);
    if (!*token) return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "could not issue a token");
    if (expires_in) *expires_in = app->cfg->jwt_ttl_s;
    return 0;
}

static bool key_shape_ok(const char *key) {
    if (strncmp(key, KEY_PREFIX, strlen(KEY_PREFIX)) != 0) return false;
    const char *p = key + strlen(KEY_PREFIX);
    size_t n = 0;
    while (ascii_alnum(p[n])) n++;
    return n == KEY_RANDOM_CHARS && p[n] == '\0';
}

static int auth_api_key(vx_app *app, const char *key, vx_principal *out, vx_err *err) {
    if (!key_shape_ok(key)) return vx_err_set(err, VX_E_UNAUTHORIZED, "invalid_api_key", "invalid API key");
    char hash[VX_SHA256_HEX_SIZE];
    vx_sha256_hex(key, strlen(key), hash);
    vx_api_key k;
    vx_err e;
    vx_err_clear(&e);
    if (app->store->ops->api_key_find(app->store, hash, &k, &out->user, &e) != 0) {
        if (e.status == VX_E_NOT_FOUND)
            return vx_err_set(err, VX_E_UNAUTHORIZED, "invalid_api_key", "invalid or revoked API key");
        if (err) *err = e;
        return -1;
    }
    if (out->user.disabled)
        return vx_err_set(err, VX_E_FORBIDDEN, "account_disabled", "this account is disabled");
    out->via_api_key = true;
    snprintf(out->api_key_id, sizeof out->api_key_id, "%s", k.id);
    int64_t now = vx_now_ms();
    if (now - k.last_used_at >= KEY_TOUCH_INTERVAL_MS) {
        /* Bookkeeping only: a failed touch must not fail the request. */
        if (app->store->ops->api_key_touch(app->store, k.id, now, &e) != 0)
            vx_warn("could not record API key use (%s)", e.code);
    }
    return 0;
}

static int auth_jwt(vx_app *app, const char *token, vx_principal *out, vx_err *err) {
    char sub[VX_ID_SIZE];
    if (vx_jwt_verify(app->jwt_secret, sizeof app->jwt_secret, token, vx_now_ms() / 1000, sub,
                      sizeof sub, err) != 0)
        return -1;
    vx_err e;
    vx_err_clear(&e);
    if (app->store->ops->user_get(app->store, sub, &out->user, &e) != 0) {
        if (e.status == VX_E_NOT_FOUND)
            return vx_err_set(err, VX_E_UNAUTHORIZED, "invalid_token", "the token's account no longer exists");
        if (err) *err = e;
        return -1;
    }
    if (out->user.disabled)
        return vx_err_set(err, VX_E_FORBIDDEN, "account_disabled", "this account is disabled");
    return 0;
}

static bool is_space(char c) { return c == ' ' || c == '\t'; }

int vx_accounts_authenticate(vx_app *app, const char *authorization, const char *x_api_key,
                             vx_principal *out, vx_err *err) {
    memset(out, 0, sizeof *out);
    char cred[CREDENTIAL_MAX + 1];
    if (authorization && authorization[0]) {
        const char *p = authorization;
        if (strncasecmp(p, "Bearer", 6) != 0 || !is_space(p[6]))
            return vx_err_set(err, VX_E_UNAUTHORIZED, "invalid_authorization",
                              "Authorization must be 'Bearer <token or API key>'");
        p += 6;
        while (is_space(*p)) p++;
        size_t n = strlen(p);
        while (n && is_space(p[n - 1])) n--;
        if (n == 0 || n > CREDENTIAL_MAX || memchr(p, ' ', n) || memchr(p, '\t', n))
            return vx_err_set(err, VX_E_UNAUTHORIZED, "invalid_authorization",
                              "Authorization must be 'Bearer <token or API key>'");
        memcpy(cred, p, n);
        cred[n] = '\0';
        if (strncmp(cred, KEY_PREFIX, strlen(KEY_PREFIX)) == 0) return auth_api_key(app, cred, out, err);
        return auth_jwt(app, cred, out, err);
    }
    if (x_api_key && x_api_key[0]) {
        if (strlen(x_api_key) > CREDENTIAL_MAX)
            return vx_err_set(err, VX_E_UNAUTHORIZED, "invalid_api_key", "invalid API key");
        return auth_api_key(app, x_api_key, out, err);
    }
    return vx_err_set(err, VX_E_UNAUTHORIZED, "missing_credentials",
                      "send 'Authorization: Bearer <token or API key>' or 'X-API-Key: <key>'");
}

static int check_key_name(const char *name, vx_err *err) {
    size_t n = strlen(name);
    bool ok = n <= 100;
    for (size_t i = 0; ok && i < n; i++) ok = (unsigned char)name[i] >= 0x20 && name[i] != 0x7f;
    if (ok) { /* jansson refuses invalid UTF-8, and the name is rendered as JSON */
        json_t *probe = json_string(name);
        ok = probe != NULL;
        json_decref(probe);
    }
    if (ok) return 0;
    return vx_err_set(err, VX_E_UNPROCESSABLE, "invalid_name",
                      "name must be at most 100 bytes of printable UTF-8 text");
}

int vx_accounts_create_api_key(vx_app *app, const char *user_id, const char *name, vx_api_key *out,
                               char key[VX_API_KEY_SIZE], vx_err *err) {
    if (!name || !name[0]) name = "default";
    if (check_key_name(name, err) != 0) return -1;
    vx_api_key k = {.created_at = vx_now_ms()};
    vx_id_new(k.id, "key");
    snprintf(k.user_id, sizeof k.user_id, "%s", user_id);
    snprintf(k.name, sizeof k.name, "%s", name);
    char secret[VX_API_KEY_SIZE];
    memcpy(secret, KEY_PREFIX, strlen(KEY_PREFIX));
    vx_random_alnum(secret + strlen(KEY_PREFIX), KEY_RANDOM_CHARS);
    snprintf(k.prefix, sizeof k.prefix, "%.*s", KEY_SHOWN_CHARS, secret);
    vx_sha256_hex(secret, strlen(secret), k.key_hash);
    int rc = app->store->ops->api_key_create(app->store, &k, err);
    if (rc == 0) {
        memcpy(key, secret, strlen(secret) + 1);
        if (out) *out = k;
    }
    explicit_bzero(secret, sizeof secret);
    return rc;
}

/* Loads the shared JWT secret, creating it if this is the first start. */
static int load_jwt_secret(vx_app *app, vx_err *err) {
    unsigned char fresh[32];
    char text[64];
    vx_random_bytes(fresh, sizeof fresh);
    vx_base64url_encode(fresh, sizeof fresh, text);
    explicit_bzero(fresh, sizeof fresh);
    int rc = app->store->ops->setting_put_if_absent(app->store, "jwt_secret", text, sizeof text, err);
    if (rc == 0 && vx_base64url_decode(text, strlen(text), app->jwt_secret, sizeof app->jwt_secret) !=
                       (long)sizeof app->jwt_secret)
        rc = vx_err_set(err, VX_E_INTERNAL, "invalid_jwt_secret", "the stored JWT secret is malformed");
    explicit_bzero(text, sizeof text);
    return rc;
}

int vx_accounts_bootstrap(vx_app *app, char *generated_password, size_t cap, bool *created_admin,
                          vx_err *err) {
    *created_admin = false;
    if (generated_password && cap) generated_password[0] = '\0';
    if (load_jwt_secret(app, err) != 0) return -1;
    vx_store *st = app->store;
    int64_t admins = 0;
    if (st->ops->user_count_role(st, "admin", &admins, err) != 0) return -1;
    if (admins > 0) return 0;

    vx_user u = {.created_at = vx_now_ms()};
    vx_err e;
    vx_err_clear(&e);
    if (st->ops->user_get_by_name(st, "admin", &u, &e) == 0) {
        /* Another node starting at the same time may have just created it. */
        if (strcmp(u.role, "admin") == 0) return 0;
        return vx_err_set(err, VX_E_CONFLICT, "admin_name_taken",
                          "there is no admin, but a regular user is named 'admin'; rename that user "
                          "or give it the admin role, then start again");
    }
    if (e.status != VX_E_NOT_FOUND) {
        if (err) *err = e;
        return -1;
    }

    const char *password = app->cfg->admin_password;
    char generated[GENERATED_PASSWORD_CHARS + 1];
    if (password[0]) {
        if (check_password("admin", password, &e) != 0)
            return vx_err_set(err, e.status, e.code, "VOXD_ADMIN_PASSWORD: %s", e.message);
    } else {
        if (!generated_password || cap < sizeof generated)
            return vx_err_set(err, VX_E_INTERNAL, "buffer_too_small", "no room for the admin password");
        do { /* a random draw could, very rarely, contain "admin" */
            vx_random_alnum(generated, GENERATED_PASSWORD_CHARS);
        } while (check_password("admin", generated, &e) != 0);
        password = generated;
    }

    u = (vx_user){.created_at = vx_now_ms()};
    vx_id_new(u.id, "usr");
    snprintf(u.username, sizeof u.username, "admin");
    snprintf(u.role, sizeof u.role, "admin");
    int rc = vx_password_hash(password, u.password_hash) == 0
                 ? st->ops->user_create(st, &u, 0, &e)
                 : vx_err_set(&e, VX_E_INTERNAL, "out_of_memory", "could not hash the password");
    if (rc != 0 && e.status == VX_E_CONFLICT) {
        /* Another node created it between our check and insert: fine if it is an admin. */
        if (st->ops->user_count_role(st, "admin", &admins, err) != 0) goto out;
        if (admins > 0) rc = 0;
        else vx_err_set(err, VX_E_CONFLICT, "admin_name_taken", "a regular user named 'admin' appeared");
        goto out;
    }
    if (rc != 0) {
        if (err) *err = e;
        goto out;
    }
    *created_admin = true;
    if (password == generated) memcpy(generated_password, generated, sizeof generated);
    vx_info("created the admin account 'admin'");
out:
    explicit_bzero(generated, sizeof generated);
    return rc;
}
