/* accounts.h - the account and authentication rules: sign-up checks, login,
 * turning request credentials (JWT or API key) into a principal, API key
 * issue, and first-start bootstrap (JWT secret, first admin). All storage
 * goes through the store; callable from any thread once bootstrap ran. */
#ifndef VX_ACCOUNTS_H
#define VX_ACCOUNTS_H
#include <stdbool.h>
#include <stddef.h>
#include "../store/store.h"
#include "../util/err.h"
#include "../util/ids.h"
#include "app.h"

/* "vx_" + 40 alphanumerics + NUL fits with room to spare. */
#define VX_API_KEY_SIZE 64

/* Who is calling: the user as stored now (role, disabled come from the
 * store, not from the token), and the API key used, if any. */
typedef struct vx_principal {
    vx_user user;
    bool via_api_key;
    char api_key_id[VX_ID_SIZE];   /* "" when authenticated by JWT */
} vx_principal;

/* Creates a user with role "user" and the configured sign-up grant.
 * 403 "signup_disabled"; 422 "invalid_username" (3-32 of [A-Za-z0-9_.-],
 * starting with a letter or digit), "weak_password" (10-256 bytes, not one
 * repeated character, not containing the username, not a common password),
 * "invalid_email" (optional; NULL or "" = none); 409 "username_taken". */
int vx_accounts_signup(vx_app *app, const char *username, const char *password, const char *email,
                       vx_user *out, vx_err *err);

/* Checks the password and issues a JWT valid for cfg->jwt_ttl_s seconds.
 * *token is malloc'd (caller frees). 401 "invalid_credentials" for an
 * unknown user or a wrong password alike (same work either way); 403
 * "account_disabled" once the password is right. */
int vx_accounts_login(vx_app *app, const char *username, const char *password, char **token,
                      int *expires_in, vx_err *err);

/* Resolves the Authorization and X-API-Key header values (either may be
 * NULL; Authorization wins when both are given). "Bearer vx_..." and
 * X-API-Key carry API keys, any other Bearer value is a JWT. 401
 * "missing_credentials", "invalid_authorization", "invalid_api_key",
 * "invalid_token", "token_expired"; 403 "account_disabled". */
int vx_accounts_authenticate(vx_app *app, const char *authorization, const char *x_api_key,
                             vx_principal *out, vx_err *err);

/* Issues a new API key for user_id. `key` receives the secret, which is
 * shown once and stored only as its SHA-256. name: NULL or "" = "default",
 * else at most 100 bytes without control characters (422 "invalid_name"). */
int vx_accounts_create_api_key(vx_app *app, const char *user_id, const char *name, vx_api_key *out,
                               char key[VX_API_KEY_SIZE], vx_err *err);

/* Start-up: loads (or creates, once across all nodes) the JWT secret into
 * app->jwt_secret, then makes sure an admin exists. A new admin "admin"
 * gets cfg->admin_password (which must pass the sign-up strength rules) or
 * a random 24-character password written to generated_password (cap >= 25;
 * "" when not generated). *created_admin tells whether one was made. Fails
 * with 409 "admin_name_taken" if a non-admin user is called "admin". */
int vx_accounts_bootstrap(vx_app *app, char *generated_password, size_t cap, bool *created_admin,
                          vx_err *err);

#endif
