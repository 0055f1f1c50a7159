/* billing.h - credit movements a person asks for (self top-up, admin grants
 * and adjustments) and the rules around them; job holds/captures/releases
 * happen in jobs.c and worker.c through the store. Any thread. */
#ifndef VX_BILLING_H
#define VX_BILLING_H
#include <stdint.h>
#include "accounts.h"
#include "app.h"

/* Self top-up: 403 "top_up_disabled" unless cfg->allow_self_top_up. With an
 * idempotency key the same key is applied once. *out = balance after. */
int vx_billing_top_up(vx_app *app, const vx_principal *who, int64_t amount, const char *idempotency_key,
                      vx_balance *out, vx_err *err);

/* Admin grant (amount > 0) or adjustment (amount < 0) with a reason:
 * 403 "forbidden" for non-admins, 404 for an unknown user, 402 when the
 * balance would go below zero. */
int vx_billing_admin_adjust(vx_app *app, const vx_principal *admin, const char *user_id, int64_t amount,
                            const char *reason, const char *idempotency_key, vx_balance *out, vx_err *err);

#endif
