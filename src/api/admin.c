/* admin.c - /v1/admin/...: users with balances, credit grants and
 * adjustments, model prices, every job, and a ledger audit per user. */
#include <string.h>
#include "../core/billing.h"
#include "../core/jobs.h"
#include "../util/clock.h"
#include "../util/credits.h"
#include "common.h"
#include "handlers.h"

void vx_api_admin_users(vx_request *req) {
    vx_principal who;
    if (vx_api_auth_admin(req, &who) != 0) return;
    int limit;
    const char *cursor;
    if (vx_api_page_args(req, &limit, &cursor) != 0) return;
    vx_app *app = vx_req_app(req);
    vx_user *users = NULL;
    size_t n = 0;
    vx_err err = {0};
    if (app->store->ops->user_list(app->store, cursor, limit, &users, &n, &err) != 0) {
        vx_respond_error(req, &err);
        return;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++) {
        vx_balance b = {0};
        if (app->store->ops->balance_get(app->store, users[i].id, &b, &err) != 0) {
            json_decref(data);
            free(users);
            vx_respond_error(req, &err);
            return;
        }
        json_t *u = vx_api_user_json(&users[i]);
        json_object_set_new(u, "balance", vx_credits_json(b.available));
        json_object_set_new(u, "held", vx_credits_json(b.held));
        json_array_append_new(data, u);
    }
    vx_respond_json(req, 200, vx_api_page_json(data, n == (size_t)limit ? users[n - 1].id : NULL));
    free(users);
}

void vx_api_admin_credits(vx_request *req) {
    vx_principal who;
    if (vx_api_auth_admin(req, &who) != 0) return;
    const char *idem;
    if (vx_api_idempotency_key(req, &idem) != 0) return;
    json_t *body = vx_api_body_object(req);
    if (!body) return;
    const char *reason;
    int64_t amount;
    vx_balance b;
    vx_err err = {0};
    if (vx_api_string_field(req, body, "reason", true, &reason) != 0) goto out;
    if (vx_credits_parse(json_object_get(body, "amount"), 1, &amount, &err) != 0 ||
        vx_billing_admin_adjust(vx_req_app(req), &who, vx_req_capture(req, "id"), amount, reason, idem, &b,
                                &err) != 0)
        vx_respond_error(req, &err);
    else
        vx_respond_json(req, 200, vx_api_balance_json(&b));
out:
    json_decref(body);
}

/* A price is a credits number >= 0 (zero allowed: free models). */
static int parse_price(vx_request *req, json_t *body, const char *name, int64_t *out) {
    json_t *v = json_object_get(body, name);
    vx_err err = {0};
    if (json_is_number(v) && json_number_value(v) == 0) {
        *out = 0;
        return 0;
    }
    if (vx_credits_parse(v, 0, out, &err) != 0) {
        vx_respond_errorf(req, VX_E_INVALID, "invalid_amount", "'%s' must be a number of credits >= 0", name);
        return -1;
    }
    return 0;
}

void vx_api_admin_price(vx_request *req) {
    vx_principal who;
    if (vx_api_auth_admin(req, &who) != 0) return;
    const vx_model *m = vx_catalog_find(vx_req_capture(req, "name"));
    if (!m) {
        vx_respond_errorf(req, VX_E_NOT_FOUND, "not_found", "no such model");
        return;
    }
    json_t *body = vx_api_body_object(req);
    if (!body) return;
    int64_t per_job, per_second;
    vx_app *app = vx_req_app(req);
    vx_err err = {0};
    if (parse_price(req, body, "per_job", &per_job) != 0 || parse_price(req, body, "per_second", &per_second) != 0)
        goto out;
    if (app->store->ops->price_set(app->store, m->name, per_job, per_second, who.user.id, vx_now_ms(), &err) != 0) {
        vx_respond_error(req, &err);
        goto out;
    }
    json_t *o = vx_api_model_json(app, m, &err);
    if (!o) vx_respond_error(req, &err);
    else vx_respond_json(req, 200, o);
out:
    json_decref(body);
}

void vx_api_admin_jobs(vx_request *req) {
    vx_principal who;
    if (vx_api_auth_admin(req, &who) != 0) return;
    const char *user_id = vx_req_query(req, "user_id");
    vx_api_job_list_for(req, user_id && *user_id ? user_id : NULL, true);
}

void vx_api_admin_audit(vx_request *req) {
    vx_principal who;
    if (vx_api_auth_admin(req, &who) != 0) return;
    vx_app *app = vx_req_app(req);
    const char *id = vx_req_capture(req, "id");
    bool ok = false;
    vx_ledger_sums sums = {0};
    vx_err err = {0};
    if (app->store->ops->ledger_audit(app->store, id, &sums, &ok, &err) != 0) {
        if (err.status == VX_E_NOT_FOUND) vx_err_set(&err, VX_E_NOT_FOUND, "not_found", "no such user");
        vx_respond_error(req, &err);
        return;
    }
    vx_respond_json(req, 200, json_pack("{s:s, s:o, s:o, s:o, s:o, s:b}", "user_id", id, "balance",
                                        vx_credits_json(sums.available), "held", vx_credits_json(sums.held),
                                        "ledger_sum", vx_credits_json(sums.amount_sum), "held_sum",
                                        vx_credits_json(sums.held_sum), "consistent", ok));
}
