/* upload.c - streams a multipart/form-data body through MHD_PostProcessor
 * into the route's upload_part hook, chunk by chunk, so memory stays flat
 * whatever the upload size. Detects malformed or truncated bodies.
 * Called on the MHD pool thread that owns the request. */
#include <string.h>
#include <strings.h>
#include "http_int.h"

/* The post processor's own buffer (field names, headers of a part). */
#define UPLOAD_PP_BUFFER (32 * 1024)

static enum MHD_Result on_part_data(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *filename, const char *content_type,
                                    const char *transfer_encoding, const char *data, uint64_t off,
                                    size_t size) {
    vx_request *req = cls;
    req->upload_seen_part = true;
    vx_upload_chunk chunk = {
        .name = key ? key : "",
        .filename = filename,
        .content_type = content_type,
        .data = data ? data : "",
        .offset = off,
        .size = size,
    };
    vx_err_clear(&req->err);
    if (req->route->upload_part(req, &chunk, &req->err) != 0) {
        if (req->err.status == VX_OK)
            vx_err_set(&req->err, VX_E_INTERNAL, "internal", "upload refused");
        req->upload_failed = true;
        return MHD_NO;
    }
    return MHD_YES;
}

/* 1: multipart/form-data with a usable boundary; 0: multipart/form-data
 * without one (a malformed request); -1: another media type. */
static int multipart_kind(const char *ct) {
    static const char mp[] = "multipart/form-data";
    if (!ct || strncasecmp(ct, mp, sizeof mp - 1) != 0) return -1;
    char next = ct[sizeof mp - 1];
    if (next != ';' && next != ' ' && next != '\0') return -1;
    const char *b = strcasestr(ct, "boundary=");
    if (!b) return 0;
    b += 9;
    if (*b == '"') b++;
    return (*b && *b != '"' && *b != ';') ? 1 : 0;
}

int vx_http_upload_begin(vx_request *req, vx_err *err) {
    const char *ct = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    int kind = multipart_kind(ct);
    if (kind < 0)
        return vx_err_set(err, VX_E_UNSUPPORTED, "unsupported_media_type",
                          "expected a multipart/form-data body");
    if (kind == 0)
        return vx_err_set(err, VX_E_INVALID, "invalid_multipart", "the multipart/form-data body has no boundary");
    req->pp = MHD_create_post_processor(req->conn, UPLOAD_PP_BUFFER, on_part_data, req);
    if (!req->pp)
        return vx_err_set(err, VX_E_INVALID, "invalid_multipart", "the multipart/form-data header is malformed");
    return 0;
}

int vx_http_upload_feed(vx_request *req, const char *data, size_t size, vx_err *err) {
    req->upload_bytes += size;
    if (MHD_post_process(req->pp, data, size) == MHD_YES) return 0;
    if (req->upload_failed) {
        *err = req->err;
        return -1;
    }
    return vx_err_set(err, VX_E_INVALID, "invalid_multipart", "the multipart body is malformed");
}

int vx_http_upload_finish(vx_request *req, vx_err *err) {
    enum MHD_Result done = MHD_destroy_post_processor(req->pp);
    req->pp = NULL;
    if (req->upload_failed) {
        *err = req->err;
        return -1;
    }
    if (done != MHD_YES || !req->upload_seen_part)
        return vx_err_set(err, VX_E_INVALID, "invalid_multipart",
                          "the multipart body is incomplete or has no parts");
    return 0;
}

void vx_http_upload_release(vx_request *req) {
    if (req->pp) MHD_destroy_post_processor(req->pp);
    req->pp = NULL;
}
