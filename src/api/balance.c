/* balance.c - balance, self top-up and the ledger. */
#include <string.h>
#include "../core/billing.h"
#include "../util/credits.h"
#include "common.h"
#include "handlers.h"

void vx_api_balance(vx_request *req) {
    vx_principal who;
    if (vx_api_auth(req, &who) != 0) return;
    vx_app *app = vx_req_app(req);
    vx_balance b;
    vx_err err = {0};
    if (app->store->ops->balance_get(app->store, who.user.id, &b, &err) != 0) {
        vx_respond_error(req, &err);
        return;
    }
    vx_respond_json(req, 200, vx_api_balance_json(&b));
}

void vx_api_top_up(vx_request *req) {
    vx_principal who;
    if (vx_api_auth(req, &who) != 0) return;
    const char *idem;
    if (vx_api_idempotency_key(req, &idem) != 0) return;
    vx_app *app = vx_req_app(req);
    if (!app->cfg->allow_self_top_up) {
        vx_respond_errorf(req, VX_E_FORBIDDEN, "top_up_disabled",
                          "self top-up is disabled on this server; ask an admin for credits");
        return;
    }
    json_t *body = vx_api_body_object(req);
    if (!body) return;
    int64_t amount;
    vx_balance b;
    vx_err err = {0};
    if (vx_credits_parse(json_object_get(body, "amount"), 0, &amount, &err) != 0 ||
        vx_billing_top_up(app, &who, amount, idem, &b, &err) != 0)
        vx_respond_error(req, &err);
    else
        vx_respond_json(req, 200, vx_api_balance_json(&b));
    json_decref(body);
}

json_t *vx_api_ledger_entry_json(const vx_ledger_entry *e) {
    json_t *o = json_pack("{s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o}", "id", e->id, "kind",
                          vx_ledger_kind_name(e->kind), "amount", vx_credits_json(e->amount), "held_delta",
                          vx_credits_json(e->held_delta), "balance_after", vx_credits_json(e->balance_after),
                          "job_id", e->job_id[0] ? json_string(e->job_id) : json_null(), "note",
                          e->note[0] ? json_string(e->note) : json_null(), "created_at",
                          vx_api_time(e->created_at));
    if (e->kind == VX_LEDGER_CAPTURE) json_object_set_new(o, "charged", vx_credits_json(e->charged));
    return o;
}

void vx_api_ledger(vx_request *req) {
    vx_principal who;
    if (vx_api_auth(req, &who) != 0) return;
    int limit;
    const char *cursor;
    if (vx_api_page_args(req, &limit, &cursor) != 0) return;
    vx_app *app = vx_req_app(req);
    vx_ledger_entry *entries = NULL;
    size_t n = 0;
    vx_err err = {0};
    if (app->store->ops->ledger_list(app->store, who.user.id, cursor, limit, &entries, &n, &err) != 0) {
        vx_respond_error(req, &err);
        return;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(data, vx_api_ledger_entry_json(&entries[i]));
    vx_respond_json(req, 200, vx_api_page_json(data, n == (size_t)limit ? entries[n - 1].id : NULL));
    free(entries);
}
