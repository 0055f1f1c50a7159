/* blob.h - object storage behind one interface (DESIGN.md "blob").
 * Backends: file:///dir now, s3://bucket?... with the cluster issue; chosen
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

typedef struct vx_blob_ops {
    const char *scheme;          /* "file", "s3" */
    vx_blob *(*open)(const char *url, vx_err *err);
    void (*close)(vx_blob *b);
    int (*ping)(vx_blob *b, vx_err *err);
    /* Stores the local file `path` as `key`. The backend may move the file
     * instead of copying it (it is the caller's spool file); after success
     * the caller must not expect `path` to exist. Overwrites atomically. */
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
} vx_blob_ops;

struct vx_blob {
    const vx_blob_ops *ops;
};

bool vx_blob_key_valid(const char *key);
/* By scheme; unknown: INVALID "unknown_blob_scheme". */
vx_blob *vx_blob_open(const char *url, vx_err *err);
void vx_blob_close(vx_blob *b);

#endif
