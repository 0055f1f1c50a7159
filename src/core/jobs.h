/* jobs.h - the job rules: what a job costs, how a submission is validated
 * and accepted (probe, plan, price, hold and enqueue), who may see or cancel
 * a job. Called from API handler threads; no HTTP and no SQL here. */
#ifndef VX_JOBS_H
#define VX_JOBS_H
#include <stdbool.h>
#include <stdint.h>
#include "../models/model.h"
#include "accounts.h"
#include "app.h"

/* per_job + per_second * duration, rounded up to the micro-credit; saturates
 * at VX_CREDITS_MAX. */
int64_t vx_job_price(int64_t per_job, int64_t per_second, double duration_s);

/* The model's current prices: an admin override from the store, else the
 * catalog defaults. */
int vx_model_prices(vx_app *app, const vx_model *m, int64_t *per_job, int64_t *per_second, vx_err *err);

/* One upload, already spooled to a local file by the API layer. */
typedef struct vx_job_submission {
    const char *model;            /* required */
    const char *params_text;      /* JSON object text or NULL */
    const char *webhook_url;      /* NULL or "" when none */
    const char *spool_path;       /* the uploaded bytes; consumed (moved or removed) */
    const char *filename;         /* client's name, already checked by vx_jobs_filename_valid */
    const char *content_type;     /* client's declared type or NULL */
    int64_t bytes;
    const char *upload_sha256;    /* hex digest of the upload */
    const char *idempotency_key;  /* NULL or "" when none */
    /* A direct upload (POST /v1/uploads) instead of a spooled file: the
     * bytes are already stored under upload_key, which becomes the job's
     * input; the job takes the upload in its own transaction (409
     * upload_used if another job was quicker). spool_path is then a local
     * copy to probe, removed only when spool_is_temp. */
    const char *upload_id;
    const char *upload_key;
    bool spool_is_temp;
} vx_job_submission;

/* Validates, probes, prices and enqueues. On success *out is the new job
 * (or, with the same Idempotency-Key and the same request, the first one:
 * *replayed = true). The spool file is always consumed (with upload_id:
 * removed if spool_is_temp; the stored upload object is never removed). Errors: 422
 * unknown_model / param codes / audio codes, 400 invalid_params_json /
 * invalid_webhook_url, 402 insufficient_credits, 409 idempotency_key_reused.
 * Caller clears *out with vx_job_clear. */
int vx_jobs_submit(vx_app *app, const vx_principal *who, const vx_job_submission *s, vx_job *out,
                   bool *replayed, vx_err *err);

/* A client file name is a plain base name: 1-255 bytes, no '/', '\\', NUL or
 * control characters, not "." / "..", no ".." path pieces. */
bool vx_jobs_filename_valid(const char *name);

/* Loads a job `who` may see (owner or admin); 404 "not_found" otherwise. */
int vx_jobs_get(vx_app *app, const vx_principal *who, const char *id, vx_job *out, vx_err *err);
/* Cancels a job `who` may see (see store job_cancel). */
int vx_jobs_cancel(vx_app *app, const vx_principal *who, const char *id, vx_job *out, vx_err *err);

/* Wakes idle workers after an enqueue (set by the worker pool; may be NULL). */
typedef void (*vx_jobs_wake_fn)(void *user);
void vx_jobs_set_wake(vx_jobs_wake_fn fn, void *user);

#endif
