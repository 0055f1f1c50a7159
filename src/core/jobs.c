/* jobs.c - accepting, pricing, showing and canceling jobs (see jobs.h).
 * Order of a submission matters: everything that can be refused is checked
 * (model, params, audio probe, plan, price) before any state changes; then
 * the input is stored and the job + hold are written in one store
 * transaction, so a refused or failed submission leaves nothing behind.
 * Called from API handler threads. */
#include "jobs.h"
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "../util/clock.h"
#include "../util/credits.h"
#include "../util/crypto.h"
#include "../util/ids.h"
#include "../util/log.h"
#include "events.h"

/* How long a job submitted on a shared store waits at most for its
 * "job.queued" event before workers may claim it anyway (see submit). */
#define READY_GRACE_MS 30000

static vx_jobs_wake_fn wake_fn;
static void *wake_user;

void vx_jobs_set_wake(vx_jobs_wake_fn fn, void *user) {
    wake_fn = fn;
    wake_user = user;
}

int64_t vx_job_price(int64_t per_job, int64_t per_second, double duration_s) {
    if (duration_s < 0 || !isfinite(duration_s)) duration_s = 0;
    double variable = ceil((double)per_second * duration_s - 1e-6);
    if (variable < 0) variable = 0;
    if (variable > (double)VX_CREDITS_MAX) return VX_CREDITS_MAX;
    int64_t total = per_job + (int64_t)variable;
    return total > VX_CREDITS_MAX ? VX_CREDITS_MAX : total;
}

int vx_model_prices(vx_app *app, const vx_model *m, int64_t *per_job, int64_t *per_second, vx_err *err) {
    vx_err e = {0};
    if (app->store->ops->price_get(app->store, m->name, per_job, per_second, &e) == 0) return 0;
    if (e.status != VX_E_NOT_FOUND) {
        if (err) *err = e;
        return -1;
    }
    *per_job = m->price_per_job;
    *per_second = m->price_per_second;
    return 0;
}

bool vx_jobs_filename_valid(const char *name) {
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > 255) return false;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strstr(name, "..")) return false;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p < 0x20 || *p == 0x7f || *p == '/' || *p == '\\') return false;
    return true;
}

static bool webhook_url_valid(const char *url) {
    size_t len = strlen(url);
    if (len > 2000) return false;
    const char *rest;
    if (strncmp(url, "https://", 8) == 0) rest = url + 8;
    else if (strncmp(url, "http://", 7) == 0) rest = url + 7;
    else return false;
    if (*rest == '\0' || *rest == '/') return false;
    for (const unsigned char *p = (const unsigned char *)url; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f) return false;
    return true;
}

/* Identifies "the same request" for Idempotency-Key: everything the client sent. */
static void request_hash(const vx_job_submission *s, const char *params_canonical, char out[VX_SHA256_HEX_SIZE]) {
    vx_sha256 h;
    vx_sha256_init(&h);
    const char *parts[] = {s->model, params_canonical, s->webhook_url ? s->webhook_url : "",
                           s->upload_sha256 ? s->upload_sha256 : "", s->filename ? s->filename : ""};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        vx_sha256_update(&h, parts[i], strlen(parts[i]) + 1); /* include the NUL as a separator */
    }
    /* only when set, so hashes of file submissions stay as they were */
    if (s->upload_id) vx_sha256_update(&h, s->upload_id, strlen(s->upload_id) + 1);
    vx_sha256_final_hex(&h, out);
}

static bool format_accepted(const vx_model *m, const char *format) {
    for (const char *const *f = m->inputs; f && *f; f++)
        if (strcmp(*f, format) == 0) return true;
    return false;
}

int vx_jobs_submit(vx_app *app, const vx_principal *who, const vx_job_submission *s, vx_job *out,
                   bool *replayed, vx_err *err) {
    int rc = -1;
    json_t *given = NULL, *params = NULL;
    char *params_text = NULL;
    bool spool_consumed = false;
    vx_job job = {0}, existing = {0};
    *replayed = false;

    const vx_model *m = vx_catalog_find(s->model);
    if (!m) {
        vx_err_set(err, VX_E_UNPROCESSABLE, "unknown_model", "no model named '%.64s'; see GET /v1/models", s->model);
        goto out;
    }
    if (s->params_text && *s->params_text) {
        json_error_t jerr;
        given = json_loads(s->params_text, JSON_REJECT_DUPLICATES, &jerr);
        if (!given || !json_is_object(given)) {
            vx_err_set(err, VX_E_INVALID, "invalid_params_json", "params must be a JSON object");
            goto out;
        }
    }
    if (vx_catalog_validate_params(m, given, &params, err) != 0) goto out;
    if (s->webhook_url && *s->webhook_url && !webhook_url_valid(s->webhook_url)) {
        vx_err_set(err, VX_E_INVALID, "invalid_webhook_url", "webhook_url must be an http or https URL");
        goto out;
    }
    params_text = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);
    if (!params_text) {
        vx_err_set(err, VX_E_INTERNAL, "internal", "out of memory");
        goto out;
    }

    vx_audio_info info;
    if (vx_audio_probe(s->spool_path, app->cfg->max_duration_s, &info, err) != 0) goto out;
    if (!format_accepted(m, info.format)) {
        vx_err_set(err, VX_E_UNSUPPORTED, "unsupported_format", "model '%s' does not accept %s input",
                   m->name, info.format);
        goto out;
    }
    vx_model_plan plan = {0};
    if (m->plan(params, &info, &plan, err) != 0) goto out;

    int64_t per_job, per_second;
    if (vx_model_prices(app, m, &per_job, &per_second, err) != 0) goto out;

    int64_t now = vx_now_ms();
    vx_id_new(job.id, "job");
    snprintf(job.user_id, sizeof job.user_id, "%s", who->user.id);
    snprintf(job.model, sizeof job.model, "%s", m->name);
    job.status = VX_JOB_QUEUED;
    job.max_attempts = app->cfg->max_attempts;
    job.created_at = job.updated_at = job.run_after = now;
    /* A store shared with workers in other processes: the job waits until
     * "job.queued" is stored (job_ready below), or READY_GRACE_MS if this
     * node dies in between, so no worker's "job.started" can precede it. */
    bool two_phase = app->store->ops->job_ready != NULL;
    if (two_phase) job.run_after = now + READY_GRACE_MS;
    job.price_per_job = per_job;
    job.price_per_second = per_second;
    job.held = vx_job_price(per_job, per_second, info.duration_s);
    job.duration_s = info.duration_s;
    job.params_json = params_text;
    if (s->upload_id)
        snprintf(job.input_key, sizeof job.input_key, "%s", s->upload_key);
    else
        snprintf(job.input_key, sizeof job.input_key, "users/%s/%s/input.%s", who->user.id, job.id,
                 vx_audio_extension(info.format));
    snprintf(job.input_name, sizeof job.input_name, "%s", s->filename);
    /* The probed content decides; a client's generic type says nothing. */
    const char *declared = s->content_type;
    bool generic = !declared || !*declared || strcmp(declared, "application/octet-stream") == 0;
    snprintf(job.input_content_type, sizeof job.input_content_type, "%s",
             generic ? vx_audio_content_type(info.format) : declared);
    job.input_bytes = s->bytes;
    snprintf(job.input_format, sizeof job.input_format, "%s", info.format);
    job.webhook_url = (s->webhook_url && *s->webhook_url) ? (char *)s->webhook_url : NULL;
    if (s->idempotency_key && *s->idempotency_key) {
        snprintf(job.idempotency_key, sizeof job.idempotency_key, "%s", s->idempotency_key);
        request_hash(s, params_text, job.request_hash);
    }

    if (!s->upload_id) {
        if (app->blob->ops->put_file(app->blob, job.input_key, s->spool_path, err) != 0) goto out;
        spool_consumed = true;
    }

    vx_err serr = {0};
    vx_events_lock(app); /* "queued" goes out before a worker's "started" */
    int submitted = s->upload_id
        ? app->store->ops->job_submit_upload(app->store, &job, s->upload_id, now, &existing, &serr)
        : app->store->ops->job_submit(app->store, &job, &existing, &serr);
    int loaded = submitted == 0 ? app->store->ops->job_get(app->store, job.id, out, err) : -1;
    if (loaded == 0) vx_events_job_changed(app, out);
    vx_events_unlock(app);
    if (submitted != 0) {
        vx_err rm = {0};
        if (!s->upload_id) app->blob->ops->remove(app->blob, job.input_key, &rm);
        if (serr.status == VX_E_CONFLICT && strcmp(serr.code, "idempotency_key_reused") == 0 &&
            strcmp(existing.request_hash, job.request_hash) == 0) {
            *out = existing; /* the first answer, replayed */
            memset(&existing, 0, sizeof existing);
            *replayed = true;
            rc = 0;
            goto out;
        }
        if (serr.status == VX_E_CONFLICT && strcmp(serr.code, "idempotency_key_reused") == 0)
            vx_err_set(err, VX_E_CONFLICT, "idempotency_key_reused",
                       "this Idempotency-Key was used for a different request");
        else if (err)
            *err = serr;
        goto out;
    }
    if (loaded != 0) goto out;
    if (two_phase && app->store->ops->job_ready(app->store, job.id, vx_now_ms(), &serr) != 0)
        vx_warn("job %s: could not make it claimable now (%s); it will be after %d s", job.id, serr.message,
                READY_GRACE_MS / 1000);
    if (wake_fn) wake_fn(wake_user);
    vx_info("job %s accepted: model=%s user=%s duration=%.2fs held=%lld", job.id, m->name, who->user.id,
            info.duration_s, (long long)job.held);
    rc = 0;
out:
    if (!spool_consumed && s->spool_path && (!s->upload_id || s->spool_is_temp)) unlink(s->spool_path);
    vx_job_clear(&existing);
    json_decref(given);
    json_decref(params);
    free(params_text);
    return rc;
}

static bool may_see(const vx_principal *who, const vx_job *job) {
    return strcmp(who->user.role, "admin") == 0 || strcmp(job->user_id, who->user.id) == 0;
}

int vx_jobs_get(vx_app *app, const vx_principal *who, const char *id, vx_job *out, vx_err *err) {
    if (!vx_id_valid(id, "job")) return vx_err_set(err, VX_E_NOT_FOUND, "not_found", "no such job");
    vx_err e = {0};
    if (app->store->ops->job_get(app->store, id, out, &e) != 0) {
        if (e.status == VX_E_NOT_FOUND) return vx_err_set(err, VX_E_NOT_FOUND, "not_found", "no such job");
        if (err) *err = e;
        return -1;
    }
    if (!may_see(who, out)) {
        vx_job_clear(out);
        memset(out, 0, sizeof *out);
        return vx_err_set(err, VX_E_NOT_FOUND, "not_found", "no such job");
    }
    return 0;
}

int vx_jobs_cancel(vx_app *app, const vx_principal *who, const char *id, vx_job *out, vx_err *err) {
    vx_job seen = {0};
    if (vx_jobs_get(app, who, id, &seen, err) != 0) return -1;
    vx_job_clear(&seen);
    if (app->store->ops->job_cancel(app->store, id, vx_now_ms(), out, err) != 0) {
        if (err && err->status == VX_E_CONFLICT)
            vx_err_set(err, VX_E_CONFLICT, "job_finished", "the job has already finished");
        return -1;
    }
    /* A queued job ends here; a running one ends when its worker stops it. */
    if (out && out->status == VX_JOB_CANCELED) vx_events_job_changed(app, out);
    return 0;
}
