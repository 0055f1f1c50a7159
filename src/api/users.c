/* users.c - sign-up, login, /v1/me and API keys. */
#include <string.h>
#include "../util/clock.h"
#include "common.h"
#include "handlers.h"

void vx_api_signup(vx_request *req) {
    json_t *body = vx_api_body_object(req);
    if (!body) return;
    const char *username, *password, *email;
    if (vx_api_string_field(req, body, "username", true, &username) != 0 ||
        vx_api_string_field(req, body, "password", true, &password) != 0 ||
        vx_api_string_field(req, body, "email", false, &email) != 0)
        goto out;
    vx_user user;
    vx_err err = {0};
    if (vx_accounts_signup(vx_req_app(req), username, password, email, &user, &err) != 0) {
        vx_respond_error(req, &err);
        goto out;
    }
    char location[96];
    snprintf(location, sizeof location, "/v1/users/%s", user.id);
    vx_resp_header(req, "Location", location);
    vx_respond_json(req, 201, vx_api_user_json(&user));
out:
    json_decref(body);
}

void vx_api_login(vx_request *req) {
    json_t *body = vx_api_body_object(req);
    if (!body) return;
    const char *username, *password;
    if (vx_api_string_field(req, body, "username", true, &username) != 0 ||
        vx_api_string_field(req, body, "password", true, &password) != 0)
        goto out;
    char *token = NULL;
    int expires_in = 0;
    vx_err err = {0};
    if (vx_accounts_login(vx_req_app(req), username, password, &token, &expires_in, &err) != 0) {
        vx_respond_error(req, &err);
        goto out;
    }
    vx_resp_header(req, "Cache-Control", "no-store");
    vx_respond_json(req, 200, json_pack("{s:s, s:s, s:i}", "access_token", token, "token_type", "bearer",
                                        "expires_in", expires_in));
    free(token);
out:
    json_decref(body);
}

void vx_api_me(vx_request *req) {
    vx_principal who;
    if (vx_api_auth(req, &who) != 0) return;
    vx_respond_json(req, 200, vx_api_user_json(&who.user));
}

static json_t *api_key_json(const vx_api_key *k) {
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:o}", "id", k->id, "name", k->name, "prefix", k->prefix,
                     "created_at", vx_api_time(k->created_at), "last_used_at", vx_api_time(k->last_used_at),
                     "revoked_at", vx_api_time(k->revoked_at));
}

void vx_api_key_create(vx_request *req) {
    vx_principal who;
    if (vx_api_auth(req, &who) != 0) return;
    size_t len = 0;
    vx_req_body(req, &len);
    json_t *body = len ? vx_api_body_object(req) : json_object();
    if (!body) return;
    const char *name;
    if (vx_api_string_field(req, body, "name", false, &name) != 0) goto out;
    vx_api_key key;
    char secret[VX_API_KEY_SIZE];
    vx_err err = {0};
    if (vx_accounts_create_api_key(vx_req_app(req), who.user.id, name, &key, secret, &err) != 0) {
        vx_respond_error(req, &err);
        goto out;
    }
    json_t *o = api_key_json(&key);
    json_object_set_new(o, "key", json_string(secret));
    vx_resp_header(req, "Cache-Control", "no-store");
    vx_respond_json(req, 201, o);
out:
    json_decref(body);
}

void vx_api_key_list(vx_request *req) {
    vx_principal who;
    if (vx_api_auth(req, &who) != 0) return;
    vx_app *app = vx_req_app(req);
    vx_api_key *keys = NULL;
    size_t n = 0;
    vx_err err = {0};
    if (app->store->ops->api_key_list(app->store, who.user.id, &keys, &n, &err) != 0) {
        vx_respond_error(req, &err);
        return;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(data, api_key_json(&keys[i]));
    free(keys);
    vx_respond_json(req, 200, json_pack("{s:o}", "data", data));
}

void vx_api_key_revoke(vx_request *req) {
    vx_principal who;
    if (vx_api_auth(req, &who) != 0) return;
    vx_app *app = vx_req_app(req);
    vx_err err = {0};
    const char *id = vx_req_capture(req, "id");
    if (app->store->ops->api_key_revoke(app->store, who.user.id, id, vx_now_ms(), &err) != 0) {
        if (err.status == VX_E_NOT_FOUND) vx_err_set(&err, VX_E_NOT_FOUND, "not_found", "no such API key");
        vx_respond_error(req, &err);
        return;
    }
    vx_respond_bytes(req, 204, NULL, "", 0);
}
