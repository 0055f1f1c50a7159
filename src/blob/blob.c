/* blob.c - picks the blob backend from the URL scheme and validates keys for
 * every backend (blob.h states the key rules). Stateless and thread-safe. */
#include "blob.h"
#include <string.h>

extern const vx_blob_ops vx_blob_fs_ops;
extern const vx_blob_ops vx_blob_s3_ops;

static const vx_blob_ops *const backends[] = {
    &vx_blob_fs_ops,
    &vx_blob_s3_ops,
};

#define KEY_MAX 511 /* fits vx_job.input_key / output_key */

/* Segments may not start with '.', which rules out "." and ".." and keeps
 * names such as the fs backend's ".tmp" spool out of the key space. */
bool vx_blob_key_valid(const char *key) {
    if (!key || !*key || strlen(key) > KEY_MAX) return false;
    bool seg_start = true;
    for (const char *p = key; *p; p++) {
        char ch = *p;
        bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!alnum && ch != '.' && ch != '_' && ch != '-' && ch != '/') return false;
        if (seg_start && (ch == '/' || ch == '.')) return false;
        seg_start = ch == '/';
    }
    return !seg_start; /* no trailing '/' */
}

/* Returns a blob store the caller closes with vx_blob_close(). */
vx_blob *vx_blob_open(const char *url, vx_err *err) {
    const char *colon = url ? strchr(url, ':') : NULL;
    if (!colon) {
        vx_err_set(err, VX_E_INVALID, "unknown_blob_scheme", "the blob URL has no scheme");
        return NULL;
    }
    size_t len = (size_t)(colon - url);
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        const char *scheme = backends[i]->scheme;
        if (strlen(scheme) == len && strncmp(scheme, url, len) == 0) return backends[i]->open(url, err);
    }
    vx_err_set(err, VX_E_INVALID, "unknown_blob_scheme", "unknown blob scheme \"%.*s\" (known: file, s3)",
               (int)(len > 16 ? 16 : len), url);
    return NULL;
}

void vx_blob_close(vx_blob *b) {
    if (b) b->ops->close(b);
}
