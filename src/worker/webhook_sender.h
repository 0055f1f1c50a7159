/* webhook_sender.h - the one background thread per process that delivers
 * webhooks: it claims due deliveries from the store (so they survive
 * restarts), POSTs the signed event JSON with libcurl (several in flight,
 * 10 s timeout, no redirects, vetted destination pinned against DNS
 * rebinding) and records each attempt, scheduling retries with back-off.
 * It also purges events past the retention window. Started/stopped by main. */
#ifndef VX_WEBHOOK_SENDER_H
#define VX_WEBHOOK_SENDER_H
#include "../core/app.h"
#include "../core/events.h"
#include "../util/err.h"

typedef struct vx_webhook_sender vx_webhook_sender;

/* Parses cfg->webhook_allow (INVALID "invalid_webhook_allow" names a bad
 * entry), frees leases an earlier run of this node left, starts the thread
 * and registers as the hub's delivery wake-up. NULL with err on failure. */
vx_webhook_sender *vx_webhook_sender_start(vx_app *app, vx_events *ev, vx_err *err);
/* Stops at once: transfers in flight are abandoned and their deliveries
 * become due again (they were not recorded). Joins and frees. */
void vx_webhook_sender_stop(vx_webhook_sender *s);

#endif
