/* uploads.c - direct uploads: POST /v1/uploads hands out a short-lived URL
 * to PUT the audio to (presigned S3, or voxd's own signed PUT below when the
 * blob store is a directory), GET /v1/uploads/{id} shows its state, and
 * PUT /v1/uploads/{id}?expires=&signature= streams a body to the store with
 * the size limit enforced while it arrives. Rules live in core/uploads.c.
 * Handlers run on HTTP pool threads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../core/uploads.h"
#include "../util/clock.h"
#include "common.h"
#include "handlers.h"

static json_t *upload_json(vx_app *app, const vx_upload *u) {
    int64_t size = -1;
    const char *state = vx_uploads_state(app, u, vx_now_ms(), &size);
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(u->id));
    json_object_set_new(o, "state", json_string(state));
    json_object_set_new(o, "filename", u->filename[0] ? json_string(u->filename) : json_null());
    json_object_set_new(o, "content_type", u->content_type[0] ? json_string(u->content_type) : json_null());
    json_object_set_new(o, "size", u->declared_bytes ? json_integer(u->declared_bytes) : json_null());
    json_object_set_new(o, "bytes", size >= 0 ? json_integer(size) : json_null());
    json_object_set_new(o, "job_id", u->used_by_job[0] ? json_string(u->used_by_job) : json_null());
    json_object_set_new(o, "created_at", vx_api_time(u->created_at));
    json_object_set_new(o, "expires_at", vx_api_time(u->expires_at));
    return o;
}

void vx_api_upload_create(vx_request *req) {
    vx_principal who;
    if (vx_api_auth(req, &who) != 0) return;
    size_t len = 0;
    vx_req_body(req, &len);
    json_t *body = len ? vx_api_body_object(req) : json_object();
    if (!body) return;
    vx_upload_request rq = {0};
    json_t *size = json_object_get(body, "size");
    if (vx_api_string_field(req, body, "filename", false, &rq.filename) != 0 ||
        vx_api_string_field(req, body, "content_type", false, &rq.content_type) != 0)
        goto out;
    if (size && !json_is_null(size)) {
        if (!json_is_integer(size) || json_integer_value(size) < 1) {
            vx_respond_errorf(req, VX_E_INVALID, "invalid_size", "size must be a positive number of bytes");
            goto out;
        }
        rq.declared_bytes = json_integer_value(size);
    }
    char base[VX_URL_SIZE];
    if (vx_api_base_url(req, base, sizeof base) != 0) goto out;
    vx_app *app = vx_req_app(req);
    vx_upload u;
    char *url = NULL;
    vx_err err = {0};
    if (vx_uploads_create(app, &who, &rq, base, &u, &url, &err) != 0) {
        vx_respond_error(req, &err);
        goto out;
    }
    json_t *o = upload_json(app, &u);
    json_object_set_new(o, "method", json_string("PUT"));
    json_object_set_new(o, "url", json_string(url));
    json_object_set_new(o, "headers", json_object()); /* nothing else is signed: any Content-Type goes */
    json_object_set_new(o, "max_bytes", json_integer(app->cfg->max_upload_bytes));
    free(url);
    char location[96];
    snprintf(location, sizeof location, "/v1/uploads/%s", u.id);
    vx_resp_header(req, "Location", location);
    vx_respond_json(req, 201, o);
out:
    json_decref(body);
}

void vx_api_upload_get(vx_request *req) {
    vx_principal who;
    if (vx_api_auth(req, &who) != 0) return;
    vx_upload u;
    vx_err err = {0};
    if (vx_uploads_get(vx_req_app(req), &who, vx_req_capture(req, "id"), &u, &err) != 0) {
        vx_respond_error(req, &err);
        return;
    }
    vx_respond_json(req, 200, upload_json(vx_req_app(req), &u));
}

/* ---- voxd's own signed PUT (blob stores without presigning) ---- */

typedef struct put_state {
    vx_upload upload;
    int fd;
    char spool[VX_PATH_SIZE + 64];
    int64_t bytes;
} put_state;

static void put_free(void *p) {
    put_state *s = p;
    if (s->fd >= 0) close(s->fd);
    if (s->spool[0]) unlink(s->spool);
    free(s);
}

int vx_api_upload_put_begin(vx_request *req, vx_err *err) {
    vx_app *app = vx_req_app(req);
    if (!vx_uploads_served_here(app))
        return vx_err_set(err, VX_E_NOT_FOUND, "not_found", "uploads go to the URL POST /v1/uploads returned");
    put_state *s = calloc(1, sizeof *s);
    if (!s) return vx_err_set(err, VX_E_INTERNAL, "internal", "out of memory");
    s->fd = -1;
    vx_req_set_data(req, s, put_free);
    if (vx_uploads_authorize_put(app, vx_req_capture(req, "id"), vx_req_query(req, "expires"),
                                 vx_req_query(req, "signature"), &s->upload, err) != 0)
        return -1;
    const char *cl = vx_req_header(req, "Content-Length");
    if (cl && strtoll(cl, NULL, 10) > app->cfg->max_upload_bytes)
        return vx_err_set(err, VX_E_TOO_LARGE, "upload_too_large", "the upload exceeds the limit of %lld bytes",
                          (long long)app->cfg->max_upload_bytes);
    if ((s->fd = vx_api_spool_open(app, s->spool, sizeof s->spool, err)) < 0) return -1;
    return 0;
}

int vx_api_upload_put_part(vx_request *req, const vx_upload_chunk *c, vx_err *err) {
    put_state *s = vx_req_data(req);
    vx_app *app = vx_req_app(req);
    s->bytes += (int64_t)c->size;
    if (s->bytes > app->cfg->max_upload_bytes)
        return vx_err_set(err, VX_E_TOO_LARGE, "upload_too_large", "the upload exceeds the limit of %lld bytes",
                          (long long)app->cfg->max_upload_bytes);
    return vx_api_spool_write(s->fd, c->data, c->size, err);
}

void vx_api_upload_put(vx_request *req) {
    put_state *s = vx_req_data(req);
    vx_app *app = vx_req_app(req);
    int rc = fsync(s->fd) | close(s->fd);
    s->fd = -1;
    if (rc != 0) {
        vx_respond_errorf(req, VX_E_UNAVAILABLE, "storage_unavailable", "cannot store the upload now");
        return;
    }
    vx_err err = {0};
    if (vx_uploads_store(app, &s->upload, s->spool, &err) != 0) {
        vx_respond_error(req, &err);
        return;
    }
    s->spool[0] = '\0'; /* now the object */
    vx_respond_json(req, 200, upload_json(app, &s->upload));
}
