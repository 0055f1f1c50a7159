/* blob.h - object storage behind one interface (DESIGN.md "blob").
 * Backends: file:///dir (fs.c) and s3://bucket?endpoint=... (s3.c); chosen
 * by URL scheme. Keys are relative paths of [A-Za-z0-9._/-] with no "..",
 * no leading "/" and no empty segment (vx_blob_key_valid); every hook
 * refuses others with VX_E_INVALID "invalid_key". Objects are immutable once
 * put: a put is atomic (readers see the old object or the whole new one).
 * All hooks are thread-safe. Return 0 / -1 with err, or NULL with err. */
#ifndef VX_BLOB_H
#define VX_BLOB_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include "../util/err.h"

typedef struct vx_blob vx_blob;

/* An open object being read. */
typedef struct vx_blob_reader {
    int64_t size;    /* whole object size in bytes */
    int fd;          /* >= 0 when the backend can hand out a file descriptor
                        positioned anywhere (sendfile); -1 otherwise */
    void *priv;      /* backend state */
} vx_blob_reader;

/* One object seen by a listing. */
typedef struct vx_blob_entry {
    char key[512];
    int64_t size;
    int64_t modified_ms;  /* last write, Unix ms */
} vx_blob_entry;

/* Called for each listed object; a non-zero return stops the listing. The
 * entry is valid during the call only; removing that object from within the
 * call is allowed. */
typedef int (*vx_blob_list_fn)(const vx_blob_entry *e, void *user);

typedef struct vx_blob_ops {
    const char *scheme;          /* "file", "s3" */
    vx_blob *(*open)(const char *url, vx_err *err);
    void (*close)(vx_blob *b);
    int (*ping)(vx_blob *b, vx_err *err);
    /* Stores the local file `path` as `key`. The backend consumes the file
     * (it is the caller's spool file): fs moves it, s3 uploads and then
     * unlinks it; after success the caller must not expect `path` to exist,
     * after a failure it still exists. Overwrites atomically. */
    int (*put_file)(vx_blob *b, const char *key, const char *path, vx_err *err);
    /* Opens `key` for reading. NOT_FOUND "object_not_found" if absent. */
    int (*reader_open)(vx_blob *b, const char *key, vx_blob_reader *r, vx_err *err);
    /* Reads up to len bytes at offset; returns bytes read (0 at end) or -1. */
    ssize_t (*reader_pread)(vx_blob_reader *r, void *buf, size_t len, int64_t offset, vx_err *err);
    void (*reader_close)(vx_blob_reader *r);
    /* Makes the object available as a local file for decoders: writes its
     * path into path_out (cap bytes). *is_temp = true when the backend made
     * a temporary copy under tmp_dir that the caller must unlink. */
    int (*fetch_local)(vx_blob *b, const char *key, const char *tmp_dir, char *path_out,
                       size_t cap, bool *is_temp, vx_err *err);
    /* Removes `key`; absent is not an error. */
    int (*remove)(vx_blob *b, const char *key, vx_err *err);
    /* size of key; NOT_FOUND if absent. */
    int (*stat)(vx_blob *b, const char *key, int64_t *size, vx_err *err);
    /* Optional (NULL: the backend cannot; use vx_blob_presign). A URL with
     * which any HTTP client, without credentials, may GET the object or PUT
     * it (one whole body) until expires_s seconds from now. Caller frees. */
    char *(*presign_get)(vx_blob *b, const char *key, int64_t expires_s, vx_err *err);
    char *(*presign_put)(vx_blob *b, const char *key, int64_t expires_s, vx_err *err);
    /* Calls fn for every object whose key starts with `prefix` ("" = all),
     * in no promised order, paging through big listings; stops early when
     * fn returns non-zero (still 0). Objects put or removed meanwhile may or
     * may not be seen. -1 with err when the storage fails. */
    int (*list)(vx_blob *b, const char *prefix, vx_blob_list_fn fn, void *user, vx_err *err);
} vx_blob_ops;

struct vx_blob {
    const vx_blob_ops *ops;
};

bool vx_blob_key_valid(const char *key);
/* By scheme; unknown: INVALID "unknown_blob_scheme". */
vx_blob *vx_blob_open(const char *url, vx_err *err);
void vx_blob_close(vx_blob *b);

#define VX_BLOB_PRESIGN_MAX_SECONDS 604800 /* seven days, as S3 allows */

/* A presigned URL for method "GET" or "PUT" on key, valid for expires_s
 * seconds (1..VX_BLOB_PRESIGN_MAX_SECONDS). Caller frees. A backend without
 * presigning (file:) fails with INVALID "presign_unsupported". */
static inline char *vx_blob_presign(vx_blob *b, const char *method, const char *key, int64_t expires_s,
                                    vx_err *err) {
    bool put = method && strcmp(method, "PUT") == 0, get = method && strcmp(method, "GET") == 0;
    char *(*hook)(vx_blob *, const char *, int64_t, vx_err *) =
        put ? b->ops->presign_put : get ? b->ops->presign_get : NULL;
    if (!put && !get) {
        vx_err_set(err, VX_E_INVALID, "invalid_presign", "only GET and PUT can be presigned");
        return NULL;
    }
    if (!hook) {
        vx_err_set(err, VX_E_INVALID, "presign_unsupported",
                   "this storage cannot hand out direct URLs (it needs an s3:// blob store)");
        return NULL;
    }
    if (expires_s < 1 || expires_s > VX_BLOB_PRESIGN_MAX_SECONDS) {
        vx_err_set(err, VX_E_INVALID, "invalid_expiry", "a direct URL lasts 1 to %d seconds",
                   VX_BLOB_PRESIGN_MAX_SECONDS);
        return NULL;
    }
    if (!vx_blob_key_valid(key)) {
        vx_err_set(err, VX_E_INVALID, "invalid_key", "invalid object key");
        return NULL;
    }
    return hook(b, key, expires_s, err);
}

#endif
