/* uploads.h - direct uploads (POST /v1/uploads) and downloads (?redirect=1)
 * without going through the API: for uploads a client gets a short-lived
 * URL to PUT its audio to, then names the upload in POST /v1/jobs instead of
 * sending the file. With a blob store that presigns (s3) the URL goes to the
 * store itself; otherwise (file:) voxd serves it, authorised by an HMAC
 * signature in the URL instead of an API key. Called from API handler threads. */
#ifndef VX_UPLOADS_H
#define VX_UPLOADS_H
#include <stdbool.h>
#include <stdint.h>
#include "accounts.h"
#include "app.h"

/* What a client asks for; strings may be NULL. */
typedef struct vx_upload_request {
    const char *filename;       /* plain base name (vx_jobs_filename_valid) */
    const char *content_type;   /* printable, under 96 bytes */
    int64_t declared_bytes;     /* 0 = not declared; else 1..max_upload_bytes */
} vx_upload_request;

/* Records a new upload of `who` and makes its URL (*url, caller frees).
 * base_url ("http://host:port") prefixes voxd-served URLs. 400
 * invalid_filename / invalid_content_type / invalid_size, 413
 * upload_too_large. */
int vx_uploads_create(vx_app *app, const vx_principal *who, const vx_upload_request *rq, const char *base_url,
                      vx_upload *out, char **url, vx_err *err);

/* The upload `id` if `who` owns it (or is an admin); 404 upload_not_found. */
int vx_uploads_get(vx_app *app, const vx_principal *who, const char *id, vx_upload *out, vx_err *err);

/* What a client sees: "pending" (waiting for its bytes), "uploaded" (bytes
 * stored, *size set), "used" (taken by a job) or "expired". Asks the blob
 * store only for unused, unexpired uploads. */
const char *vx_uploads_state(vx_app *app, const vx_upload *u, int64_t now, int64_t *size);

/* True when uploads go to voxd itself (the blob store cannot presign). */
bool vx_uploads_served_here(const vx_app *app);

/* The voxd-served PUT: checks the URL's expires/signature for upload `id`
 * and that the upload still takes bytes. 403 invalid_signature, 404
 * upload_not_found, 409 upload_used, 410 upload_expired. */
int vx_uploads_authorize_put(vx_app *app, const char *id, const char *expires, const char *signature,
                             vx_upload *out, vx_err *err);
/* Stores the spooled bytes as the upload's object (consumes spool_path as
 * vx_blob put_file does). */
int vx_uploads_store(vx_app *app, const vx_upload *u, const char *spool_path, vx_err *err);

/* Direct downloads served by voxd (blob stores without presigning): a URL
 * "<base_url>/v1/downloads/<job_id>/<part>?expires=&signature=" (part
 * "result" or "input") valid ttl_s seconds; caller frees. authorize checks
 * one: 403 invalid_signature, 410 download_expired. */
char *vx_downloads_url(vx_app *app, const char *base_url, const char *job_id, const char *part, int64_t ttl_s,
                       vx_err *err);
int vx_downloads_authorize(vx_app *app, const char *job_id, const char *part, const char *expires,
                           const char *signature, vx_err *err);

/* For POST /v1/jobs with upload_id: the upload must be the caller's (404
 * upload_not_found), unused (409 upload_used), unexpired (410
 * upload_expired), have its bytes (409 upload_incomplete), within the size
 * limit (413 upload_too_large) and not empty (422 empty_file). Then *path
 * is a local file with the bytes for probing; *is_temp = true when the
 * caller must unlink it. *bytes gets the size. With idempotent, a used
 * upload passes too: the retry of a keyed submission replays its job (the
 * store's idempotency check runs before it takes the upload). */
int vx_uploads_open_for_job(vx_app *app, const vx_principal *who, const char *id, bool idempotent, vx_upload *u,
                            char *path, size_t cap, bool *is_temp, int64_t *bytes, vx_err *err);

/* The orphan sweep (one pass; run by one node at a time, see
 * worker/sweeper.c): marks expired unused uploads expired and removes
 * their objects, then removes every object under users/ older than
 * grace_ms that belongs to no job row and no live upload. */
typedef struct vx_sweep_stats {
    int64_t listed;           /* objects looked at */
    int64_t removed;          /* objects removed as orphans */
    int64_t expired_uploads;  /* uploads that expired unused */
    int64_t failed;           /* objects that could not be checked or removed (kept) */
} vx_sweep_stats;
int vx_uploads_sweep(vx_app *app, int64_t now, int64_t grace_ms, vx_sweep_stats *stats, vx_err *err);

#endif
