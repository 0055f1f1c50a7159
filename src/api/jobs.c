/* jobs.c - job submission (streaming multipart upload to a spool file, then
 * core/jobs.c), status, history, cancel, and result/input downloads with
 * Range support. The upload is never held in memory: each chunk is hashed
 * and written to <data>/tmp as it arrives, and limits are checked per chunk. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../core/jobs.h"
#include "../core/uploads.h"
#include "../http/range.h"
#include "../util/clock.h"
#include "../util/crypto.h"
#include "../util/log.h"
#include "common.h"
#include "handlers.h"

#define FIELD_MAX (64 * 1024)

typedef struct upload_state {
    vx_principal who;
    const char *idempotency_key;   /* borrowed from the request headers */
    vx_api_spool spool;
    char *model, *params, *webhook_url, *upload_id;   /* text fields, malloc'd */
    size_t model_len, params_len, webhook_len, upload_id_len;
} upload_state;

static void upload_free(void *p) {
    upload_state *u = p;
    vx_api_spool_clear(&u->spool);
    free(u->model);
    free(u->params);
    free(u->webhook_url);
    free(u->upload_id);
    free(u);
}

int vx_api_upload_admit(vx_request *req, vx_principal *who, vx_err *err) {
    vx_app *app = vx_req_app(req);
    if (vx_accounts_authenticate(app, vx_req_header(req, "Authorization"), vx_req_header(req, "X-API-Key"), who,
                                 err) != 0)
        return -1;
    const char *cl = vx_req_header(req, "Content-Length");
    if (cl) {
        long long n = strtoll(cl, NULL, 10);
        /* the multipart framing adds a little; refuse what cannot fit */
        if (n > app->cfg->max_upload_bytes + FIELD_MAX * 3 + 4096)
            return vx_err_set(err, VX_E_TOO_LARGE, "upload_too_large", "the upload exceeds the limit of %lld bytes",
                              (long long)app->cfg->max_upload_bytes);
    }
    return 0;
}

int vx_api_job_upload_begin(vx_request *req, vx_err *err) {
    upload_state *u = calloc(1, sizeof *u);
    if (!u) return vx_err_set(err, VX_E_INTERNAL, "internal", "out of memory");
    vx_api_spool_init(&u->spool);
    vx_req_set_data(req, u, upload_free);
    if (vx_api_upload_admit(req, &u->who, err) != 0) return -1;
    const char *k = vx_req_header(req, "Idempotency-Key");
    if (k) {
        size_t len = strlen(k);
        bool ok = len >= 1 && len <= 255;
        for (size_t i = 0; ok && i < len; i++) ok = k[i] > 0x20 && k[i] < 0x7f;
        if (!ok)
            return vx_err_set(err, VX_E_INVALID, "invalid_idempotency_key",
                              "Idempotency-Key must be 1-255 printable characters without spaces");
        u->idempotency_key = k;
    }
    return 0;
}

int vx_api_field_append(char **dst, size_t *len, const vx_upload_chunk *c, vx_err *err) {
    if (*len + c->size > FIELD_MAX)
        return vx_err_set(err, VX_E_TOO_LARGE, "field_too_large", "form field '%s' is over 64 KiB", c->name);
    char *p = realloc(*dst, *len + c->size + 1);
    if (!p) return vx_err_set(err, VX_E_INTERNAL, "internal", "out of memory");
    memcpy(p + *len, c->data, c->size);
    *len += c->size;
    p[*len] = '\0';
    *dst = p;
    return 0;
}

void vx_api_spool_init(vx_api_spool *s) {
    memset(s, 0, sizeof *s);
    s->fd = -1;
}

void vx_api_spool_clear(vx_api_spool *s) {
    if (s->fd >= 0) close(s->fd);
    if (s->path[0]) unlink(s->path);
    s->fd = -1;
    s->path[0] = '\0';
}

int vx_api_spool_part(vx_app *app, vx_api_spool *s, const vx_upload_chunk *c, vx_err *err) {
    if (c->offset == 0) {
        if (s->have_file) return vx_err_set(err, VX_E_INVALID, "invalid_request", "send exactly one 'file' part");
        if (!c->filename || !vx_jobs_filename_valid(c->filename))
            return vx_err_set(err, VX_E_INVALID, "invalid_filename",
                              "the file name must be a plain name without paths or control characters");
        s->have_file = true;
        snprintf(s->filename, sizeof s->filename, "%s", c->filename);
        snprintf(s->content_type, sizeof s->content_type, "%s", c->content_type ? c->content_type : "");
        if ((s->fd = vx_api_spool_open(app, s->path, sizeof s->path, err)) < 0) return -1;
        vx_sha256_init(&s->hash);
    }
    if (s->fd < 0) return vx_err_set(err, VX_E_INVALID, "invalid_multipart", "unexpected file data");
    s->bytes += (int64_t)c->size;
    if (s->bytes > app->cfg->max_upload_bytes)
        return vx_err_set(err, VX_E_TOO_LARGE, "upload_too_large", "the upload exceeds the limit of %lld bytes",
                          (long long)app->cfg->max_upload_bytes);
    vx_sha256_update(&s->hash, c->data, c->size);
    return vx_api_spool_write(s->fd, c->data, c->size, err);
}

/* Closes the spool and fills the file fields of *sub (borrowing from s). */
static int spool_finish(vx_api_spool *s, vx_job_submission *sub, vx_err *err) {
    if (!s->have_file) return vx_err_set(err, VX_E_INVALID, "missing_file", "the 'file' part is required");
    if (s->bytes == 0) return vx_err_set(err, VX_E_UNPROCESSABLE, "empty_file", "the uploaded file is empty");
    int rc = fsync(s->fd) != 0 ? -1 : 0;
    if (close(s->fd) != 0) rc = -1;
    s->fd = -1;
    if (rc != 0) return vx_err_set(err, VX_E_UNAVAILABLE, "storage_unavailable", "cannot store the upload now");
    vx_sha256_final_hex(&s->hash, s->digest);
    sub->spool_path = s->path;
    sub->filename = s->filename;
    sub->content_type = s->content_type;
    sub->bytes = s->bytes;
    sub->upload_sha256 = s->digest;
    return 0;
}

int vx_api_spool_submit(vx_request *req, const vx_principal *who, vx_api_spool *spool, vx_job_submission *s,
                        vx_job *job, bool *replayed) {
    vx_err err = {0};
    if (spool_finish(spool, s, &err) != 0) {
        vx_respond_error(req, &err);
        return -1;
    }
    int rc = vx_jobs_submit(vx_req_app(req), who, s, job, replayed, &err);
    spool->path[0] = '\0'; /* consumed by vx_jobs_submit either way */
    if (rc != 0) vx_respond_error(req, &err);
    return rc;
}

int vx_api_job_upload_part(vx_request *req, const vx_upload_chunk *c, vx_err *err) {
    upload_state *u = vx_req_data(req);
    if (strcmp(c->name, "file") == 0) return vx_api_spool_part(vx_req_app(req), &u->spool, c, err);
    if (strcmp(c->name, "model") == 0) return vx_api_field_append(&u->model, &u->model_len, c, err);
    if (strcmp(c->name, "params") == 0) return vx_api_field_append(&u->params, &u->params_len, c, err);
    if (strcmp(c->name, "webhook_url") == 0) return vx_api_field_append(&u->webhook_url, &u->webhook_len, c, err);
    if (strcmp(c->name, "upload_id") == 0) return vx_api_field_append(&u->upload_id, &u->upload_id_len, c, err);
    return 0; /* other fields are ignored, as form posts often carry extras */
}

/* Answers a submission: 202 with the job, or the error. */
static void answer_submit(vx_request *req, int rc, const vx_job *job, bool replayed, const vx_err *err) {
    if (rc != 0) {
        vx_respond_error(req, err);
        return;
    }
    char location[96];
    snprintf(location, sizeof location, "/v1/jobs/%s", job->id);
    vx_resp_header(req, "Location", location);
    if (replayed) vx_resp_header(req, "Idempotent-Replayed", "true");
    vx_respond_json(req, 202, vx_api_job_json(job, false));
}

/* A job whose input is a direct upload (POST /v1/uploads). */
static void submit_upload(vx_request *req, upload_state *u, const char *upload_id) {
    vx_app *app = vx_req_app(req);
    if (!u->model || !*u->model) {
        vx_respond_errorf(req, VX_E_INVALID, "missing_model", "the 'model' field is required");
        return;
    }
    vx_upload up;
    char path[VX_PATH_SIZE + 64];
    bool is_temp = false;
    int64_t bytes = 0;
    vx_err err = {0};
    if (vx_uploads_open_for_job(app, &u->who, upload_id, u->idempotency_key != NULL, &up, path, sizeof path, &is_temp, &bytes, &err) != 0) {
        if (is_temp) unlink(path);
        vx_respond_error(req, &err);
        return;
    }
    vx_job_submission s = {
        .model = u->model, .params_text = u->params, .webhook_url = u->webhook_url, .spool_path = path,
        .filename = up.filename[0] ? up.filename : "upload", .content_type = up.content_type, .bytes = bytes,
        .idempotency_key = u->idempotency_key, .upload_id = up.id, .upload_key = up.key, .spool_is_temp = is_temp,
    };
    vx_job job = {0};
    bool replayed = false;
    int rc = vx_jobs_submit(app, &u->who, &s, &job, &replayed, &err);
    answer_submit(req, rc, &job, replayed, &err);
    vx_job_clear(&job);
}

/* application/json: {"model","upload_id","params"?,"webhook_url"?}; a JSON
 * body cannot carry the audio itself. */
static void submit_json(vx_request *req, upload_state *u) {
    json_t *body = vx_api_body_object(req);
    if (!body) return;
    const char *model = NULL, *upload_id = NULL, *webhook = NULL;
    json_t *params = json_object_get(body, "params");
    if (vx_api_string_field(req, body, "model", false, &model) != 0 ||
        vx_api_string_field(req, body, "upload_id", false, &upload_id) != 0 ||
        vx_api_string_field(req, body, "webhook_url", false, &webhook) != 0)
        goto out;
    if (!upload_id) {
        vx_respond_errorf(req, VX_E_INVALID, "missing_upload_id",
                          "a JSON submission names an upload_id (send the file itself as multipart/form-data)");
        goto out;
    }
    if (params && !json_is_null(params) && !json_is_object(params) && !json_is_string(params)) {
        vx_respond_errorf(req, VX_E_INVALID, "invalid_params_json", "params must be a JSON object");
        goto out;
    }
    u->model = model ? strdup(model) : NULL;
    u->webhook_url = webhook ? strdup(webhook) : NULL;
    u->params = json_is_string(params) ? strdup(json_string_value(params))
                : json_is_object(params) ? json_dumps(params, JSON_COMPACT) : NULL;
    if ((model && !u->model) || (webhook && !u->webhook_url) || (json_is_object(params) && !u->params)) {
        vx_respond_errorf(req, VX_E_INTERNAL, "internal", "out of memory");
        goto out;
    }
    submit_upload(req, u, upload_id);
out:
    json_decref(body);
}

void vx_api_job_submit(vx_request *req) {
    upload_state *u = vx_req_data(req);
    if (vx_req_body_is_json(req)) {
        submit_json(req, u);
        return;
    }
    if (u->upload_id && u->spool.have_file) {
        vx_respond_errorf(req, VX_E_INVALID, "invalid_request", "send either a 'file' part or an 'upload_id', not both");
        return;
    }
    if (u->upload_id) {
        submit_upload(req, u, u->upload_id);
        return;
    }
    if (!u->spool.have_file) {
        vx_respond_errorf(req, VX_E_INVALID, "missing_file", "the 'file' part is required");
        return;
    }
    if (!u->model || !*u->model) {
        vx_respond_errorf(req, VX_E_INVALID, "missing_model", "the 'model' field is required");
        return;
    }
    vx_job_submission s = {
        .model = u->model, .params_text = u->params, .webhook_url = u->webhook_url,
        .idempotency_key = u->idempotency_key,
    };
    vx_job job = {0};
    bool replayed = false;
    if (vx_api_spool_submit(req, &u->who, &u->spool, &s, &job, &replayed) == 0) answer_submit(req, 0, &job, replayed, NULL);
    vx_job_clear(&job);
}

/* Authenticates and loads the {id} job the caller may see; answers and
 * returns -1 otherwise. Caller clears *job. */
static int visible_job(vx_request *req, vx_principal *who, vx_job *job) {
    if (vx_api_auth(req, who) != 0) return -1;
    vx_err err = {0};
    if (vx_jobs_get(vx_req_app(req), who, vx_req_capture(req, "id"), job, &err) != 0) {
        vx_respond_error(req, &err);
        return -1;
    }
    return 0;
}

void vx_api_job_get(vx_request *req) {
    vx_principal who;
    vx_job job = {0};
    if (visible_job(req, &who, &job) != 0) return;
    vx_respond_json(req, 200, vx_api_job_json(&job, strcmp(who.user.role, "admin") == 0));
    vx_job_clear(&job);
}

/* Lists jobs; user_id NULL = everyone (admin route). */
void vx_api_job_list_for(vx_request *req, const char *user_id, bool with_user) {
    int limit;
    const char *cursor;
    if (vx_api_page_args(req, &limit, &cursor) != 0) return;
    vx_job_filter f = {.user_id = user_id, .status = -1, .cursor = cursor, .limit = limit};
    const char *status = vx_req_query(req, "status");
    if (status && *status) {
        vx_job_status st;
        if (vx_job_status_parse(status, &st) != 0) {
            vx_respond_errorf(req, VX_E_INVALID, "invalid_status",
                              "status must be one of queued, running, succeeded, failed, canceled");
            return;
        }
        f.status = (int)st;
    }
    const char *model = vx_req_query(req, "model");
    if (model && *model) f.model = model;
    vx_app *app = vx_req_app(req);
    vx_job *jobs = NULL;
    size_t n = 0;
    vx_err err = {0};
    if (app->store->ops->job_list(app->store, &f, &jobs, &n, &err) != 0) {
        vx_respond_error(req, &err);
        return;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(data, vx_api_job_json(&jobs[i], with_user));
    vx_respond_json(req, 200, vx_api_page_json(data, n == (size_t)limit ? jobs[n - 1].id : NULL));
    vx_job_list_free(jobs, n);
}

void vx_api_job_list(vx_request *req) {
    vx_principal who;
    if (vx_api_auth(req, &who) != 0) return;
    vx_api_job_list_for(req, who.user.id, false);
}

void vx_api_job_cancel(vx_request *req) {
    vx_principal who;
    if (vx_api_auth(req, &who) != 0) return;
    vx_job job = {0};
    vx_err err = {0};
    if (vx_jobs_cancel(vx_req_app(req), &who, vx_req_capture(req, "id"), &job, &err) != 0) {
        vx_respond_error(req, &err);
        return;
    }
    vx_respond_json(req, 200, vx_api_job_json(&job, false));
    vx_job_clear(&job);
}

/* A stored object streamed through a blob reader (backends without an fd, s3). */
typedef struct blob_stream {
    vx_blob *blob;
    vx_blob_reader r;
    int64_t from, length;
} blob_stream;

static long blob_stream_read(void *user, uint64_t pos, char *buf, size_t max) {
    blob_stream *s = user;
    if ((int64_t)pos >= s->length) return 0;
    if ((int64_t)max > s->length - (int64_t)pos) max = (size_t)(s->length - (int64_t)pos);
    vx_err err = {0};
    ssize_t n = s->blob->ops->reader_pread(&s->r, buf, max, s->from + (int64_t)pos, &err);
    if (n < 0) vx_warn("streaming a stored object failed: %s (%s)", err.message, err.code);
    return (long)n;
}

static void blob_stream_free(void *user) {
    blob_stream *s = user;
    s->blob->ops->reader_close(&s->r);
    free(s);
}

/* ?redirect=1: 302 to a short-lived direct URL of `part` ("result" or
 * "input") of the job: presigned by the blob store when it can, else voxd's
 * own signed /v1/downloads URL. Returns false (nothing answered) without
 * ?redirect=1. */
static bool redirected(vx_request *req, const vx_job *job, const char *part, const char *key) {
    const char *r = vx_req_query(req, "redirect");
    vx_app *app = vx_req_app(req);
    if (!r || (strcmp(r, "1") != 0 && strcmp(r, "true") != 0)) return false;
    vx_err err = {0};
    int64_t ttl = app->cfg->download_url_ttl_s;
    char base[VX_URL_SIZE], *url = NULL;
    if (app->blob->ops->presign_get) url = vx_blob_presign(app->blob, "GET", key, ttl, &err);
    else if (vx_api_base_url(req, base, sizeof base) != 0) return true;
    else url = vx_downloads_url(app, base, job->id, part, ttl, &err);
    if (!url) {
        vx_respond_error(req, &err);
        return true;
    }
    vx_resp_header(req, "Location", url);
    vx_resp_header(req, "Cache-Control", "no-store");
    vx_respond_json(req, 302, json_pack("{s:s, s:o}", "url", url, "expires_at", vx_api_time(vx_now_ms() + ttl * 1000)));
    free(url);
    return true;
}

static void send_object(vx_request *req, const char *key, const char *content_type, const char *download_name) {
    vx_app *app = vx_req_app(req);
    vx_blob_reader r = {.fd = -1};
    vx_err err = {0};
    if (app->blob->ops->reader_open(app->blob, key, &r, &err) != 0) {
        vx_respond_error(req, &err);
        return;
    }
    int64_t from = 0, to = r.size - 1;
    int rr = vx_http_range_parse(vx_req_header(req, "Range"), r.size, &from, &to);
    char buf[160];
    vx_resp_header(req, "Accept-Ranges", "bytes");
    if (rr < 0) {
        snprintf(buf, sizeof buf, "bytes */%lld", (long long)r.size);
        vx_resp_header(req, "Content-Range", buf);
        app->blob->ops->reader_close(&r);
        vx_respond_errorf(req, VX_E_RANGE, "range_not_satisfiable", "the requested range is outside the file");
        return;
    }
    char safe[128];
    snprintf(safe, sizeof safe, "%s", download_name);
    for (char *c = safe; *c; c++)
        if (*c == '"' || *c == ';' || (unsigned char)*c >= 0x7f) *c = '_';
    snprintf(buf, sizeof buf, "attachment; filename=\"%s\"", safe);
    vx_resp_header(req, "Content-Disposition", buf);
    if (rr > 0) {
        snprintf(buf, sizeof buf, "bytes %lld-%lld/%lld", (long long)from, (long long)to, (long long)r.size);
        vx_resp_header(req, "Content-Range", buf);
    }
    if (r.fd < 0) {
        blob_stream *s = malloc(sizeof *s);
        if (!s) {
            app->blob->ops->reader_close(&r);
            vx_respond_errorf(req, VX_E_INTERNAL, "internal", "out of memory");
            return;
        }
        *s = (blob_stream){.blob = app->blob, .r = r, .from = from, .length = r.size ? to - from + 1 : 0};
        vx_respond_stream(req, rr > 0 ? 206 : 200, content_type, s->length, blob_stream_read, s, blob_stream_free);
        return;
    }
    int fd = dup(r.fd);
    app->blob->ops->reader_close(&r);
    if (fd < 0) {
        vx_respond_errorf(req, VX_E_INTERNAL, "internal", "cannot read the stored file");
        return;
    }
    vx_respond_fd(req, rr > 0 ? 206 : 200, content_type, fd, from, r.size ? to - from + 1 : 0);
}

/* ?format= on a result: the model renders its stored document (SRT, CSV...). */
static void render_result(vx_request *req, const vx_job *job, const char *format) {
    const vx_model *m = vx_catalog_find(job->model);
    if (!m || !m->render) {
        vx_respond_errorf(req, VX_E_INVALID, "invalid_format", "results of '%s' come only as %s", job->model,
                          job->output_key[0] ? "the output file (or format=json)" : "JSON");
        return;
    }
    json_t *doc = job->result_json ? json_loads(job->result_json, 0, NULL) : NULL;
    char *text = NULL;
    size_t len = 0;
    const char *content_type = NULL;
    vx_err err = {0};
    if (!doc) vx_respond_errorf(req, VX_E_INTERNAL, "internal", "the stored result is unreadable");
    else if (m->render(doc, format, &text, &len, &content_type, &err) != 0) vx_respond_error(req, &err);
    else vx_respond_bytes(req, 200, content_type, text, len);
    free(text);
    json_decref(doc);
}

/* A text-rendering model (transcribe: format=srt) answers in the format the
 * job asked for unless the request names another. */
static void default_format(const vx_job *job, char *out, size_t cap) {
    out[0] = '\0';
    const vx_model *m = vx_catalog_find(job->model);
    if (!m || !m->render || !job->params_json) return;
    json_t *params = json_loads(job->params_json, 0, NULL);
    const char *f = json_string_value(json_object_get(params, "format"));
    if (f && strcmp(f, "json") != 0) snprintf(out, cap, "%s", f);
    json_decref(params);
}

static void send_result_file(vx_request *req, const vx_job *job) {
    char name[128];
    const char *ext = strrchr(job->output_key, '.');
    snprintf(name, sizeof name, "%s%s", job->id, ext ? ext : "");
    send_object(req, job->output_key, job->output_content_type, name);
}

void vx_api_job_result(vx_request *req) {
    const char *format = vx_req_query(req, "format");
    vx_principal who;
    vx_job job = {0};
    if (visible_job(req, &who, &job) != 0) return;
    char asked[32];
    if (!format) {
        default_format(&job, asked, sizeof asked);
        if (asked[0]) format = asked;
    }
    if (job.status != VX_JOB_SUCCEEDED) {
        vx_respond_errorf(req, VX_E_CONFLICT, "result_not_ready", "the job is %s; a result exists once it succeeded",
                          vx_job_status_name(job.status));
    } else if (format && strcmp(format, "json") != 0) {
        render_result(req, &job, format);
    } else if (!job.output_key[0] || format) { /* format=json: the document, also for audio models */
        json_t *doc = job.result_json ? json_loads(job.result_json, 0, NULL) : NULL;
        vx_respond_json(req, 200, doc ? doc : json_object());
    } else if (!redirected(req, &job, "result", job.output_key)) {
        send_result_file(req, &job);
    }
    vx_job_clear(&job);
}

void vx_api_job_input(vx_request *req) {
    vx_principal who;
    vx_job job = {0};
    if (visible_job(req, &who, &job) != 0) return;
    if (!redirected(req, &job, "input", job.input_key))
        send_object(req, job.input_key, job.input_content_type, job.input_name);
    vx_job_clear(&job);
}

/* GET /v1/downloads/{id}/{part}?expires=&signature=: a ?redirect=1 URL of a
 * blob store without presigning; the signature stands in for credentials. */
void vx_api_download(vx_request *req) {
    vx_app *app = vx_req_app(req);
    const char *id = vx_req_capture(req, "id"), *part = vx_req_capture(req, "part");
    vx_err err = {0};
    if (vx_downloads_authorize(app, id, part, vx_req_query(req, "expires"), vx_req_query(req, "signature"),
                               &err) != 0) {
        vx_respond_error(req, &err);
        return;
    }
    vx_job job = {0};
    if (app->store->ops->job_get(app->store, id, &job, &err) != 0) {
        vx_respond_error(req, &err);
        return;
    }
    if (strcmp(part, "input") == 0) send_object(req, job.input_key, job.input_content_type, job.input_name);
    else if (job.status == VX_JOB_SUCCEEDED && job.output_key[0]) send_result_file(req, &job);
    else vx_respond_errorf(req, VX_E_NOT_FOUND, "not_found", "the job has no result file");
    vx_job_clear(&job);
}
