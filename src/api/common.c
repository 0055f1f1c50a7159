/* common.c - shared handler helpers (see common.h). */
#include "common.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../util/clock.h"
#include "../util/credits.h"
#include "../util/log.h"

int vx_api_auth(vx_request *req, vx_principal *who) {
    vx_err err = {0};
    if (vx_accounts_authenticate(vx_req_app(req), vx_req_header(req, "Authorization"),
                                 vx_req_header(req, "X-API-Key"), who, &err) != 0) {
        vx_respond_error(req, &err);
        return -1;
    }
    return 0;
}

int vx_api_auth_admin(vx_request *req, vx_principal *who) {
    if (vx_api_auth(req, who) != 0) return -1;
    if (strcmp(who->user.role, "admin") != 0) {
        vx_respond_errorf(req, VX_E_FORBIDDEN, "forbidden", "this endpoint needs the admin role");
        return -1;
    }
    return 0;
}

json_t *vx_api_body_object(vx_request *req) {
    size_t len = 0;
    const char *body = vx_req_body(req, &len);
    json_error_t jerr;
    json_t *obj = body && len ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!obj || !json_is_object(obj)) {
        json_decref(obj);
        vx_respond_errorf(req, VX_E_INVALID, "invalid_json", "the body must be a JSON object");
        return NULL;
    }
    return obj;
}

int vx_api_string_field(vx_request *req, json_t *obj, const char *name, bool required, const char **out) {
    json_t *v = json_object_get(obj, name);
    *out = NULL;
    if (!v || json_is_null(v)) {
        if (!required) return 0;
        vx_respond_errorf(req, VX_E_INVALID, "invalid_request", "'%s' is required", name);
        return -1;
    }
    if (!json_is_string(v)) {
        vx_respond_errorf(req, VX_E_INVALID, "invalid_request", "'%s' must be a string", name);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

int vx_api_page_args(vx_request *req, int *limit, const char **cursor) {
    const char *l = vx_req_query(req, "limit");
    *limit = 50;
    if (l) {
        char *end;
        long v = strtol(l, &end, 10);
        if (*l == '\0' || *end != '\0' || v < 1 || v > 200) {
            vx_respond_errorf(req, VX_E_INVALID, "invalid_limit", "limit must be an integer from 1 to 200");
            return -1;
        }
        *limit = (int)v;
    }
    const char *c = vx_req_query(req, "cursor");
    if (c && (strlen(c) >= VX_ID_SIZE || strspn(c, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(c))) {
        vx_respond_errorf(req, VX_E_INVALID, "invalid_cursor", "cursor is not one this server handed out");
        return -1;
    }
    *cursor = (c && *c) ? c : NULL;
    return 0;
}

int vx_api_idempotency_key(vx_request *req, const char **key) {
    const char *k = vx_req_header(req, "Idempotency-Key");
    *key = NULL;
    if (!k) return 0;
    size_t len = strlen(k);
    bool ok = len >= 1 && len <= 255;
    for (size_t i = 0; ok && i < len; i++) ok = k[i] > 0x20 && k[i] < 0x7f;
    if (!ok) {
        vx_respond_errorf(req, VX_E_INVALID, "invalid_idempotency_key",
                          "Idempotency-Key must be 1-255 printable characters without spaces");
        return -1;
    }
    *key = k;
    return 0;
}

json_t *vx_api_time(int64_t ms) {
    if (ms <= 0) return json_null();
    char buf[VX_TIME_SIZE];
    vx_time_format(ms, buf);
    return json_string(buf);
}

json_t *vx_api_balance_json(const vx_balance *b) {
    return json_pack("{s:o, s:o, s:s}", "balance", vx_credits_json(b->available), "held",
                     vx_credits_json(b->held), "currency", "credits");
}

json_t *vx_api_user_json(const vx_user *u) {
    return json_pack("{s:s, s:s, s:o, s:s, s:o}", "id", u->id, "username", u->username, "email",
                     u->email[0] ? json_string(u->email) : json_null(), "role", u->role, "created_at",
                     vx_api_time(u->created_at));
}

static json_t *parse_or_null(const char *text) {
    if (!text || !*text) return json_null();
    json_t *v = json_loads(text, 0, NULL);
    return v ? v : json_null();
}

json_t *vx_api_job_json(const vx_job *job, bool with_user) {
    json_t *errors = parse_or_null(job->error_json);
    if (!json_is_array(errors)) {
        json_decref(errors);
        errors = json_array();
    }
    json_t *last_error = json_null();
    if (job->status == VX_JOB_FAILED || job->status == VX_JOB_CANCELED) {
        json_t *last = json_array_get(errors, json_array_size(errors) - 1);
        if (last)
            last_error = json_pack("{s:O, s:O}", "code", json_object_get(last, "code"), "message",
                                   json_object_get(last, "message"));
        else if (job->status == VX_JOB_CANCELED)
            last_error = json_pack("{s:s, s:s}", "code", "canceled", "message", "canceled by request");
    }
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(job->id));
    if (with_user) json_object_set_new(o, "user_id", json_string(job->user_id));
    json_object_set_new(o, "model", json_string(job->model));
    json_object_set_new(o, "source",
                        json_string(strcmp(job->input_format, VX_JOB_STREAM_FORMAT) == 0 ? "stream" : "upload"));
    json_object_set_new(o, "status", json_string(vx_job_status_name(job->status)));
    json_object_set_new(o, "progress", json_real(job->status == VX_JOB_SUCCEEDED ? 1.0 : job->progress));
    json_object_set_new(o, "created_at", vx_api_time(job->created_at));
    json_object_set_new(o, "started_at", vx_api_time(job->started_at));
    json_object_set_new(o, "finished_at", vx_api_time(job->finished_at));
    json_object_set_new(o, "attempts", json_integer(job->attempts));
    json_object_set_new(o, "max_attempts", json_integer(job->max_attempts));
    json_object_set_new(o, "cancel_requested", json_boolean(job->cancel_requested));
    json_object_set_new(o, "params", parse_or_null(job->params_json));
    json_object_set_new(o, "input",
                        json_pack("{s:s, s:I, s:s, s:f, s:s}", "filename", job->input_name, "bytes",
                                  (json_int_t)job->input_bytes, "format", job->input_format, "duration_s",
                                  job->duration_s, "content_type", job->input_content_type));
    json_object_set_new(o, "price",
                        json_pack("{s:o, s:o}", "per_job", vx_credits_json(job->price_per_job), "per_second",
                                  vx_credits_json(job->price_per_second)));
    json_object_set_new(o, "cost", json_pack("{s:o, s:o}", "held", vx_credits_json(job->held), "charged",
                                             vx_credits_json(job->charged)));
    json_object_set_new(o, "result", parse_or_null(job->result_json));
    json_object_set_new(o, "error", last_error);
    json_object_set_new(o, "errors", errors);
    json_object_set_new(o, "webhook_url", job->webhook_url ? json_string(job->webhook_url) : json_null());
    return o;
}

json_t *vx_api_page_json(json_t *data, const char *next_cursor) {
    return json_pack("{s:o, s:o}", "data", data, "next_cursor",
                     next_cursor ? json_string(next_cursor) : json_null());
}

int vx_api_spool_open(vx_app *app, char *path, size_t cap, vx_err *err) {
    snprintf(path, cap, "%s/upload-XXXXXX", app->tmp_dir);
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0) {
        path[0] = '\0';
        vx_error("cannot create an upload spool file: %s", strerror(errno));
        return vx_err_set(err, VX_E_UNAVAILABLE, "storage_unavailable", "cannot store the upload now");
    }
    return fd;
}

int vx_api_spool_write(int fd, const char *data, size_t size, vx_err *err) {
    for (size_t off = 0; off < size;) {
        ssize_t w = write(fd, data + off, size - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            vx_error("writing an upload spool file failed: %s", strerror(errno));
            return vx_err_set(err, VX_E_UNAVAILABLE, "storage_unavailable", "cannot store the upload now");
        }
        off += (size_t)w;
    }
    return 0;
}

int vx_api_base_url(vx_request *req, char *out, size_t cap) {
    vx_app *app = vx_req_app(req);
    if (app->cfg->public_url[0]) {
        snprintf(out, cap, "%s", app->cfg->public_url);
        return 0;
    }
    const char *host = vx_req_header(req, "Host");
    bool ok = host && *host && strlen(host) < 256;
    for (const unsigned char *p = (const unsigned char *)host; ok && *p; p++)
        ok = *p > 0x20 && *p < 0x7f && *p != '/' && *p != '?' && *p != '#' && *p != '@';
    if (!ok) {
        vx_respond_errorf(req, VX_E_INVALID, "invalid_host", "a valid Host header is needed to build the URL");
        return -1;
    }
    snprintf(out, cap, "http://%s", host);
    return 0;
}

/* Authenticates from headers, or from ?access_token= / ?api_key= where a
 * browser cannot set headers (WebSocket, EventSource). Answers on failure. */
int vx_api_auth_query(vx_request *req, vx_principal *who) {
    const char *auth = vx_req_header(req, "Authorization"), *key = vx_req_header(req, "X-API-Key");
    char bearer[2048];
    if (!auth && !key) {
        const char *token = vx_req_query(req, "access_token");
        if (token && strlen(token) < sizeof bearer - 8) {
            snprintf(bearer, sizeof bearer, "Bearer %s", token);
            auth = bearer;
        }
        key = vx_req_query(req, "api_key");
    }
    vx_err err = {0};
    if (vx_accounts_authenticate(vx_req_app(req), auth, key, who, &err) != 0) {
        vx_respond_error(req, &err);
        return -1;
    }
    return 0;
}
