/* handlers.h - every handler function, grouped by resource file; routes.c
 * binds them to methods and paths. Private to src/api/. */
#ifndef VX_API_HANDLERS_H
#define VX_API_HANDLERS_H
#include <stdbool.h>
#include "../http/http.h"
#include "../models/model.h"
#include "../store/store.h"

/* users.c */
void vx_api_signup(vx_request *req);
void vx_api_login(vx_request *req);
void vx_api_me(vx_request *req);
void vx_api_key_create(vx_request *req);
void vx_api_key_list(vx_request *req);
void vx_api_key_revoke(vx_request *req);
/* balance.c */
void vx_api_balance(vx_request *req);
void vx_api_top_up(vx_request *req);
void vx_api_ledger(vx_request *req);
json_t *vx_api_ledger_entry_json(const vx_ledger_entry *e);
/* models.c */
void vx_api_models(vx_request *req);
void vx_api_model_get(vx_request *req);
json_t *vx_api_model_json(vx_app *app, const vx_model *m, vx_err *err);
/* jobs.c */
int vx_api_job_upload_begin(vx_request *req, vx_err *err);
int vx_api_job_upload_part(vx_request *req, const vx_upload_chunk *chunk, vx_err *err);
void vx_api_job_submit(vx_request *req);
void vx_api_job_get(vx_request *req);
void vx_api_job_list(vx_request *req);
void vx_api_job_list_for(vx_request *req, const char *user_id, bool with_user);
void vx_api_job_cancel(vx_request *req);
void vx_api_job_result(vx_request *req);
void vx_api_job_input(vx_request *req);
/* admin.c */
void vx_api_admin_users(vx_request *req);
void vx_api_admin_credits(vx_request *req);
void vx_api_admin_price(vx_request *req);
void vx_api_admin_jobs(vx_request *req);
void vx_api_admin_audit(vx_request *req);
/* webhooks.c */
void vx_api_webhook_create(vx_request *req);
void vx_api_webhook_list(vx_request *req);
void vx_api_webhook_get(vx_request *req);
void vx_api_webhook_delete(vx_request *req);
void vx_api_webhook_rotate(vx_request *req);
void vx_api_webhook_deliveries(vx_request *req);
void vx_api_webhook_redeliver(vx_request *req);
/* events.c */
void vx_api_job_events(vx_request *req);
void vx_api_events(vx_request *req);
/* stream.c (its threads: api.h) */
void vx_api_stream(vx_request *req);
/* ops.c */
void vx_api_healthz(vx_request *req);
void vx_api_readyz(vx_request *req);
void vx_api_metrics(vx_request *req);
void vx_api_openapi(vx_request *req);

#endif
