/* handlers.h - every handler function, grouped by resource file; routes.c
 * binds them to methods and paths. Private to src/api/. */
#ifndef VX_API_HANDLERS_H
#define VX_API_HANDLERS_H
#include <stdbool.h>
#include "../http/http.h"
#include "../models/model.h"
#include "../core/accounts.h"
#include "../core/jobs.h"
#include "../store/store.h"
#include "../util/crypto.h"

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
/* jobs.c: the spooled 'file' part of an upload (POST /v1/jobs and the
 * OpenAI endpoint): streamed to <data>/tmp and hashed as it arrives. */
typedef struct vx_api_spool {
    int fd;                        /* -1 until the file part starts, and after finish */
    char path[VX_PATH_SIZE + 64];  /* "" when nothing to remove */
    char filename[256];
    char content_type[96];
    bool have_file;
    int64_t bytes;
    vx_sha256 hash;
    char digest[VX_SHA256_HEX_SIZE];
} vx_api_spool;
void vx_api_spool_init(vx_api_spool *s);
/* Closes and removes the spool file unless vx_jobs_submit consumed it
 * (the caller then sets path[0] = '\0'). */
void vx_api_spool_clear(vx_api_spool *s);
/* One chunk of the 'file' part: limits, hashing, writing. */
int vx_api_spool_part(vx_app *app, vx_api_spool *s, const vx_upload_chunk *c, vx_err *err);
/* Upload complete (400 missing_file, 422 empty_file, 503 when it cannot be
 * synced): fills the file fields of *s and runs vx_jobs_submit, which
 * consumes the spool file. Answers the error and returns -1 on failure.
 * Caller clears *job. */
int vx_api_spool_submit(vx_request *req, const vx_principal *who, vx_api_spool *spool, vx_job_submission *s,
                        vx_job *job, bool *replayed);
/* Appends a chunk of a text field (at most 64 KiB, else 413 field_too_large). */
int vx_api_field_append(char **dst, size_t *len, const vx_upload_chunk *c, vx_err *err);
/* Upload begin hook's common part: authenticates into *who and refuses a
 * Content-Length that cannot fit the upload limit. */
int vx_api_upload_admit(vx_request *req, vx_principal *who, vx_err *err);
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
/* openai.c */
int vx_api_openai_upload_begin(vx_request *req, vx_err *err);
int vx_api_openai_upload_part(vx_request *req, const vx_upload_chunk *chunk, vx_err *err);
void vx_api_openai_transcribe(vx_request *req);
json_t *vx_api_openai_error_body(const vx_err *err, int *http_status);
/* stream.c (its threads: api.h) */
void vx_api_stream(vx_request *req);
/* ops.c */
void vx_api_healthz(vx_request *req);
void vx_api_readyz(vx_request *req);
void vx_api_metrics(vx_request *req);
void vx_api_openapi(vx_request *req);
/* uploads.c */
void vx_api_upload_create(vx_request *req);
void vx_api_upload_get(vx_request *req);
int vx_api_upload_put_begin(vx_request *req, vx_err *err);
int vx_api_upload_put_part(vx_request *req, const vx_upload_chunk *chunk, vx_err *err);
void vx_api_upload_put(vx_request *req);
/* jobs.c (signed direct downloads) */
void vx_api_download(vx_request *req);

#endif
