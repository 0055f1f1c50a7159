/* uploads.c - direct uploads, voxd-signed direct downloads (see uploads.h)
 * and the orphan-object sweep.
 * An upload's object lives at users/{user_id}/uploads/{upload_id}; a job
 * that takes it keeps that key as its input (no copy). The row is written
 * before any URL exists, so an object under uploads/ without a live row is
 * always garbage. Called from API handler threads and the sweeper thread. */
#include "uploads.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../util/clock.h"
#include "../util/crypto.h"
#include "../util/ids.h"
#include "../util/log.h"
#include "jobs.h"

#define SIGNATURE_HEX 64

bool vx_uploads_served_here(const vx_app *app) { return app->blob->ops->presign_put == NULL; }

/* hex(HMAC-SHA256(server secret, "voxd-<purpose>\n<id>\n<expires>")): a
 * domain-separated use of the JWT secret, so no token of one kind passes
 * for another. */
static void sign_for(const vx_app *app, const char *purpose, const char *id, int64_t expires_s,
                     char out[SIGNATURE_HEX + 1]) {
    char msg[200];
    int len = snprintf(msg, sizeof msg, "voxd-%s\n%s\n%lld", purpose, id, (long long)expires_s);
    unsigned char mac[32];
    vx_hmac_sha256(app->jwt_secret, sizeof app->jwt_secret, msg, (size_t)len, mac);
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

static void sign(const vx_app *app, const char *id, int64_t expires_s, char out[SIGNATURE_HEX + 1]) {
    sign_for(app, "upload", id, expires_s, out);
}

/* Checks expires (Unix seconds, decimal) and signature of a signed URL.
 * 403 invalid_signature, 410 expired_code. */
static int verify(const vx_app *app, const char *purpose, const char *id, const char *expires, const char *signature,
                  const char *expired_code, vx_err *err) {
    char *end = NULL;
    long long exp = expires && *expires ? strtoll(expires, &end, 10) : 0;
    char want[SIGNATURE_HEX + 1];
    if (!end || *end || exp <= 0 || !signature || strlen(signature) != SIGNATURE_HEX)
        return vx_err_set(err, VX_E_FORBIDDEN, "invalid_signature", "the URL is not valid");
    sign_for(app, purpose, id, exp, want);
    if (!vx_ct_equal(want, signature, SIGNATURE_HEX))
        return vx_err_set(err, VX_E_FORBIDDEN, "invalid_signature", "the URL is not valid");
    if (exp * 1000 <= vx_now_ms()) return vx_err_set(err, VX_E_GONE, expired_code, "the URL has expired");
    return 0;
}

static bool content_type_valid(const char *ct) {
    size_t len = strlen(ct);
    if (len == 0 || len >= sizeof ((vx_upload *)0)->content_type) return false;
    for (const unsigned char *p = (const unsigned char *)ct; *p; p++)
        if (*p < 0x20 || *p >= 0x7f) return false;
    return true;
}

int vx_uploads_create(vx_app *app, const vx_principal *who, const vx_upload_request *rq, const char *base_url,
                      vx_upload *out, char **url, vx_err *err) {
    *url = NULL;
    if (rq->filename && !vx_jobs_filename_valid(rq->filename))
        return vx_err_set(err, VX_E_INVALID, "invalid_filename",
                          "the file name must be a plain name without paths or control characters");
    if (rq->content_type && !content_type_valid(rq->content_type))
        return vx_err_set(err, VX_E_INVALID, "invalid_content_type", "content_type must be a short printable text");
    if (rq->declared_bytes < 0)
        return vx_err_set(err, VX_E_INVALID, "invalid_size", "size must be a positive number of bytes");
    if (rq->declared_bytes > app->cfg->max_upload_bytes)
        return vx_err_set(err, VX_E_TOO_LARGE, "upload_too_large", "the upload exceeds the limit of %lld bytes",
                          (long long)app->cfg->max_upload_bytes);
    int64_t now = vx_now_ms(), ttl = app->cfg->upload_url_ttl_s;
    vx_upload u = {.declared_bytes = rq->declared_bytes, .state = VX_UPLOAD_PENDING, .created_at = now,
                   .expires_at = now + ttl * 1000};
    vx_id_new(u.id, "upl");
    snprintf(u.user_id, sizeof u.user_id, "%s", who->user.id);
    snprintf(u.key, sizeof u.key, "users/%s/uploads/%s", who->user.id, u.id);
    snprintf(u.filename, sizeof u.filename, "%s", rq->filename ? rq->filename : "");
    snprintf(u.content_type, sizeof u.content_type, "%s", rq->content_type ? rq->content_type : "");
    if (app->store->ops->upload_create(app->store, &u, err) != 0) return -1;
    if (!vx_uploads_served_here(app)) {
        *url = vx_blob_presign(app->blob, "PUT", u.key, ttl, err);
    } else {
        char sig[SIGNATURE_HEX + 1];
        int64_t expires_s = (u.expires_at + 999) / 1000; /* rounded up: never shorter than asked */
        sign(app, u.id, expires_s, sig);
        size_t cap = strlen(base_url) + 256;
        if ((*url = malloc(cap)))
            snprintf(*url, cap, "%s/v1/uploads/%s?expires=%lld&signature=%s", base_url, u.id,
                     (long long)expires_s, sig);
        else
            vx_err_set(err, VX_E_INTERNAL, "internal", "out of memory");
    }
    if (!*url) return -1; /* the row stays pending and expires unused */
    *out = u;
    return 0;
}

int vx_uploads_get(vx_app *app, const vx_principal *who, const char *id, vx_upload *out, vx_err *err) {
    vx_err e = {0};
    if (!vx_id_valid(id, "upl") || app->store->ops->upload_get(app->store, id, out, &e) != 0) {
        if (e.status != VX_OK && e.status != VX_E_NOT_FOUND) {
            if (err) *err = e;
            return -1;
        }
        return vx_err_set(err, VX_E_NOT_FOUND, "upload_not_found", "no such upload");
    }
    if (strcmp(who->user.role, "admin") != 0 && strcmp(out->user_id, who->user.id) != 0)
        return vx_err_set(err, VX_E_NOT_FOUND, "upload_not_found", "no such upload");
    return 0;
}

static bool expired(const vx_upload *u, int64_t now) {
    return u->state == VX_UPLOAD_EXPIRED || (u->state == VX_UPLOAD_PENDING && u->expires_at <= now);
}

const char *vx_uploads_state(vx_app *app, const vx_upload *u, int64_t now, int64_t *size) {
    *size = -1;
    if (u->state == VX_UPLOAD_USED) return "used";
    if (expired(u, now)) return "expired";
    vx_err e = {0};
    return app->blob->ops->stat(app->blob, u->key, size, &e) == 0 ? "uploaded" : "pending";
}

/* The refusals shared by the PUT and the job submission. */
static int check_takeable(const vx_upload *u, int64_t now, vx_err *err) {
    if (u->state == VX_UPLOAD_USED)
        return vx_err_set(err, VX_E_CONFLICT, "upload_used", "the upload was already used by a job");
    if (expired(u, now))
        return vx_err_set(err, VX_E_GONE, "upload_expired", "the upload URL has expired; create a new upload");
    return 0;
}

int vx_uploads_authorize_put(vx_app *app, const char *id, const char *expires, const char *signature,
                             vx_upload *out, vx_err *err) {
    if (!vx_id_valid(id, "upl"))
        return vx_err_set(err, VX_E_FORBIDDEN, "invalid_signature", "the URL is not valid");
    if (verify(app, "upload", id, expires, signature, "upload_expired", err) != 0) return -1;
    int64_t now = vx_now_ms();
    vx_err e = {0};
    if (app->store->ops->upload_get(app->store, id, out, &e) != 0) {
        if (e.status == VX_E_NOT_FOUND) return vx_err_set(err, VX_E_NOT_FOUND, "upload_not_found", "no such upload");
        if (err) *err = e;
        return -1;
    }
    return check_takeable(out, now, err);
}

int vx_uploads_store(vx_app *app, const vx_upload *u, const char *spool_path, vx_err *err) {
    if (app->blob->ops->put_file(app->blob, u->key, spool_path, err) != 0) return -1;
    vx_info("upload %s stored for user %s", u->id, u->user_id);
    return 0;
}

char *vx_downloads_url(vx_app *app, const char *base_url, const char *job_id, const char *part, int64_t ttl_s,
                       vx_err *err) {
    char what[VX_ID_SIZE + 16], sig[SIGNATURE_HEX + 1];
    int64_t expires_s = (vx_now_ms() + ttl_s * 1000 + 999) / 1000;
    snprintf(what, sizeof what, "%s/%s", job_id, part);
    sign_for(app, "download", what, expires_s, sig);
    size_t cap = strlen(base_url) + 256;
    char *url = malloc(cap);
    if (!url) {
        vx_err_set(err, VX_E_INTERNAL, "internal", "out of memory");
        return NULL;
    }
    snprintf(url, cap, "%s/v1/downloads/%s/%s?expires=%lld&signature=%s", base_url, job_id, part,
             (long long)expires_s, sig);
    return url;
}

int vx_downloads_authorize(vx_app *app, const char *job_id, const char *part, const char *expires,
                           const char *signature, vx_err *err) {
    char what[VX_ID_SIZE + 16];
    if (!vx_id_valid(job_id, "job") || (strcmp(part, "result") != 0 && strcmp(part, "input") != 0))
        return vx_err_set(err, VX_E_FORBIDDEN, "invalid_signature", "the URL is not valid");
    snprintf(what, sizeof what, "%s/%s", job_id, part);
    return verify(app, "download", what, expires, signature, "download_expired", err);
}

int vx_uploads_open_for_job(vx_app *app, const vx_principal *who, const char *id, bool idempotent, vx_upload *u,
                            char *path, size_t cap, bool *is_temp, int64_t *bytes, vx_err *err) {
    *is_temp = false;
    path[0] = '\0';
    if (vx_uploads_get(app, who, id, u, err) != 0) return -1;
    /* Only the owner submits from an upload, also for admins. */
    if (strcmp(u->user_id, who->user.id) != 0)
        return vx_err_set(err, VX_E_NOT_FOUND, "upload_not_found", "no such upload");
    if (!(idempotent && u->state == VX_UPLOAD_USED) && check_takeable(u, vx_now_ms(), err) != 0) return -1;
    vx_err e = {0};
    if (app->blob->ops->stat(app->blob, u->key, bytes, &e) != 0) {
        if (e.status == VX_E_NOT_FOUND)
            return vx_err_set(err, VX_E_CONFLICT, "upload_incomplete",
                              "nothing was uploaded to this upload's URL yet");
        if (err) *err = e;
        return -1;
    }
    if (*bytes > app->cfg->max_upload_bytes)
        return vx_err_set(err, VX_E_TOO_LARGE, "upload_too_large", "the upload exceeds the limit of %lld bytes",
                          (long long)app->cfg->max_upload_bytes);
    if (*bytes == 0) return vx_err_set(err, VX_E_UNPROCESSABLE, "empty_file", "the uploaded file is empty");
    return app->blob->ops->fetch_local(app->blob, u->key, app->tmp_dir, path, cap, is_temp, err);
}

/* ---- the orphan sweep ------------------------------------------------------- */

typedef struct sweep_ctx {
    vx_app *app;
    int64_t now, grace_ms;
    vx_sweep_stats *stats;
} sweep_ctx;

/* 1: the object belongs to nothing; 0: keep it; -1: cannot tell now. */
static int orphaned(vx_app *app, const char *key) {
    char user[VX_ID_SIZE], owner[VX_ID_SIZE], rest[512];
    /* users/{user_id}/{job_id}/... or users/{user_id}/uploads/{upload_id} */
    if (sscanf(key, "users/%47[^/]/%47[^/]/%511s", user, owner, rest) != 3) return 1;
    vx_err e = {0};
    if (strcmp(owner, "uploads") == 0) {
        vx_upload u;
        if (app->store->ops->upload_get(app->store, rest, &u, &e) != 0) return e.status == VX_E_NOT_FOUND ? 1 : -1;
        return u.state == VX_UPLOAD_EXPIRED || strcmp(u.user_id, user) != 0 ? 1 : 0;
    }
    vx_job job = {0};
    int rc = app->store->ops->job_get(app->store, owner, &job, &e);
    bool mine = rc == 0 && strcmp(job.user_id, user) == 0;
    vx_job_clear(&job);
    if (rc != 0) return e.status == VX_E_NOT_FOUND ? 1 : -1;
    return mine ? 0 : 1;
}

static int sweep_one(const vx_blob_entry *ent, void *user) {
    sweep_ctx *c = user;
    c->stats->listed++;
    if (c->now - ent->modified_ms < c->grace_ms) return 0; /* maybe a submission in flight */
    int o = orphaned(c->app, ent->key);
    vx_err e = {0};
    if (o < 0 || (o == 1 && c->app->blob->ops->remove(c->app->blob, ent->key, &e) != 0)) {
        c->stats->failed++;
        return 0;
    }
    if (o == 1) {
        c->stats->removed++;
        vx_info("sweeper: removed orphaned object %s (%lld bytes)", ent->key, (long long)ent->size);
    }
    return 0;
}

int vx_uploads_sweep(vx_app *app, int64_t now, int64_t grace_ms, vx_sweep_stats *stats, vx_err *err) {
    memset(stats, 0, sizeof *stats);
    for (;;) {
        vx_upload *gone = NULL;
        size_t n = 0;
        if (app->store->ops->upload_expire(app->store, now, 200, &gone, &n, err) != 0) return -1;
        for (size_t i = 0; i < n; i++) {
            vx_err e = {0};
            if (app->blob->ops->remove(app->blob, gone[i].key, &e) != 0) stats->failed++;
        }
        stats->expired_uploads += (int64_t)n;
        free(gone);
        if (n < 200) break;
    }
    if (!app->blob->ops->list)
        return vx_err_set(err, VX_E_INTERNAL, "list_unsupported", "this storage cannot list its objects");
    sweep_ctx c = {app, now, grace_ms, stats};
    return app->blob->ops->list(app->blob, "users/", sweep_one, &c, err);
}
