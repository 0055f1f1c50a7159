/* billing.c - top-ups and admin adjustments (see billing.h). Each movement
 * is one ledger entry with a unique ref, so a retried request (same
 * Idempotency-Key) is applied once. Any thread. */
#include "billing.h"
#include <stdio.h>
#include <string.h>
#include "../util/clock.h"
#include "../util/ids.h"

static int apply(vx_app *app, vx_ledger_entry *e, const char *ref_kind, const char *idempotency_key,
                 vx_balance *out, vx_err *err) {
    vx_id_new(e->id, "led");
    e->created_at = vx_now_ms();
    if (idempotency_key && *idempotency_key)
        snprintf(e->ref, sizeof e->ref, "%s:%s:%.100s", ref_kind, e->actor_id, idempotency_key);
    else
        snprintf(e->ref, sizeof e->ref, "%s:%s", ref_kind, e->id);
    bool replayed = false;
    return app->store->ops->ledger_apply(app->store, e, &replayed, out, err);
}

int vx_billing_top_up(vx_app *app, const vx_principal *who, int64_t amount, const char *idempotency_key,
                      vx_balance *out, vx_err *err) {
    if (!app->cfg->allow_self_top_up)
        return vx_err_set(err, VX_E_FORBIDDEN, "top_up_disabled",
                          "self top-up is disabled on this server; ask an admin for credits");
    if (amount <= 0) return vx_err_set(err, VX_E_INVALID, "invalid_amount", "amount must be positive");
    vx_ledger_entry e = {.kind = VX_LEDGER_TOP_UP, .amount = amount};
    snprintf(e.user_id, sizeof e.user_id, "%s", who->user.id);
    snprintf(e.actor_id, sizeof e.actor_id, "%s", who->user.id);
    snprintf(e.note, sizeof e.note, "self top-up");
    return apply(app, &e, "topup", idempotency_key, out, err);
}

int vx_billing_admin_adjust(vx_app *app, const vx_principal *admin, const char *user_id, int64_t amount,
                            const char *reason, const char *idempotency_key, vx_balance *out, vx_err *err) {
    if (strcmp(admin->user.role, "admin") != 0)
        return vx_err_set(err, VX_E_FORBIDDEN, "forbidden", "admin role required");
    if (amount == 0) return vx_err_set(err, VX_E_INVALID, "invalid_amount", "amount must not be zero");
    size_t rlen = reason ? strlen(reason) : 0;
    if (rlen == 0 || rlen > 200)
        return vx_err_set(err, VX_E_INVALID, "invalid_request", "reason is required (1-200 characters)");
    vx_user target;
    vx_err e0 = {0};
    if (app->store->ops->user_get(app->store, user_id, &target, &e0) != 0) {
        if (e0.status == VX_E_NOT_FOUND) return vx_err_set(err, VX_E_NOT_FOUND, "not_found", "no such user");
        if (err) *err = e0;
        return -1;
    }
    vx_ledger_entry e = {.kind = amount > 0 ? VX_LEDGER_GRANT : VX_LEDGER_ADJUST, .amount = amount};
    snprintf(e.user_id, sizeof e.user_id, "%s", user_id);
    snprintf(e.actor_id, sizeof e.actor_id, "%s", admin->user.id);
    snprintf(e.note, sizeof e.note, "%s", reason);
    return apply(app, &e, "admin", idempotency_key, out, err);
}
