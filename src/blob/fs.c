/* fs.c - blob backend on a local directory (file:///abs/dir). A key is a
 * relative path under the directory. Puts are crash-safe: the data is
 * fsync'd before rename(2) makes it visible, and the directory after, so a
 * reader sees the old object or the whole new one. Copies across file
 * systems go through <dir>/.tmp. Thread-safe: no mutable state after open. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "../util/log.h"
#include "blob.h"

extern const vx_blob_ops vx_blob_fs_ops;

#define TMP_DIR ".tmp"
/* Spool files older than this at open are leftovers of a crash. */
#define STALE_TMP_SECONDS 3600
#define COPY_CHUNK (128 * 1024)
/* Leaves room in PATH_MAX for a key (at most 511 chars) below the root. */
#define ROOT_MAX 3072

typedef struct fs_blob {
    vx_blob base;
    char root[ROOT_MAX];
    char tmp[ROOT_MAX + 8];
} fs_blob;

static int io_fail(vx_err *err, const char *what, int errnum) {
    vx_error("blob: %s failed: %s", what, strerror(errnum));
    if (errnum == ENOSPC || errnum == EDQUOT)
        return vx_err_set(err, VX_E_UNAVAILABLE, "storage_full", "the storage is full");
    return vx_err_set(err, VX_E_INTERNAL, "storage_error", "the storage failed");
}

static int invalid_key(vx_err *err) {
    return vx_err_set(err, VX_E_INVALID, "invalid_key", "invalid object key");
}

static int fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* Creates every missing directory of `path` below `base` (`path` itself is a
 * directory), syncing each parent so the new entries survive a crash. */
static int mkdirs(const char *base, const char *path) {
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    size_t base_len = strlen(base);
    if (strlen(buf) <= base_len) return 0;
    for (char *p = buf + base_len + 1; ; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(buf, 0750) == 0) {
            char *slash = strrchr(buf, '/');
            *slash = '\0';
            int rc = fsync_dir(buf);
            *slash = '/';
            if (rc != 0) return -1;
        } else if (errno != EEXIST) {
            return -1;
        }
        *p = saved;
        if (saved == '\0') break;
    }
    return 0;
}

static int mkdir_p(const char *path) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0750) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(buf, 0750) != 0 && errno != EEXIST ? -1 : 0;
}

static int key_path(const fs_blob *b, const char *key, char *out, size_t cap, vx_err *err) {
    if (!vx_blob_key_valid(key)) return invalid_key(err);
    if (snprintf(out, cap, "%s/%s", b->root, key) >= (int)cap) return invalid_key(err);
    return 0;
}

static void remove_stale_tmp(const char *tmp) {
    DIR *d = opendir(tmp);
    if (!d) return;
    time_t cutoff = time(NULL) - STALE_TMP_SECONDS;
    struct dirent *e;
    while ((e = readdir(d))) {
        struct stat sb;
        if (e->d_name[0] == '.') continue;
        if (fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode) &&
            sb.st_mtime < cutoff)
            unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

static void fs_close(vx_blob *vb) { free(vb); }

/* file:///abs/dir, file://relative/dir or file:dir. Caller closes the result. */
static vx_blob *fs_open(const char *url, vx_err *err) {
    const char *p = strncmp(url, "file:", 5) == 0 ? url + 5 : NULL;
    if (p && strncmp(p, "//", 2) == 0) p += 2;
    size_t len = p ? strlen(p) : 0;
    while (len > 1 && p[len - 1] == '/') len--;
    if (!p || len == 0 || len >= ROOT_MAX || strchr(p, '?')) {
        vx_err_set(err, VX_E_INVALID, "invalid_blob_url", "expected file:///path/to/dir");
        return NULL;
    }
    fs_blob *b = calloc(1, sizeof *b);
    if (!b) {
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        return NULL;
    }
    b->base.ops = &vx_blob_fs_ops;
    memcpy(b->root, p, len);
    b->root[len] = '\0';
    snprintf(b->tmp, sizeof b->tmp, "%s/" TMP_DIR, b->root);
    if (mkdir_p(b->tmp) != 0) {
        io_fail(err, "creating the blob directory", errno);
        vx_err_set(err, VX_E_UNAVAILABLE, "storage_unavailable", "cannot create the storage directory");
        free(b);
        return NULL;
    }
    remove_stale_tmp(b->tmp);
    return &b->base;
}

static int fs_ping(vx_blob *vb, vx_err *err) {
    fs_blob *b = (fs_blob *)vb;
    struct stat sb;
    if (stat(b->root, &sb) != 0 || !S_ISDIR(sb.st_mode) || access(b->root, W_OK) != 0)
        return vx_err_set(err, VX_E_UNAVAILABLE, "storage_unavailable", "the storage directory is not usable");
    return 0;
}

static int copy_fd(int in, int out) {
    char *buf = malloc(COPY_CHUNK);
    if (!buf) {
        errno = ENOMEM;
        return -1;
    }
    int rc = -1;
    for (;;) {
        ssize_t n = read(in, buf, COPY_CHUNK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) goto out;
        if (n == 0) break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) goto out;
            off += w;
        }
    }
    rc = 0;
out:
    free(buf);
    return rc;
}

/* Copies the open source into a spool file under .tmp and renames it to dest. */
static int put_by_copy(fs_blob *b, int src_fd, const char *dest, vx_err *err) {
    char tmp[ROOT_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s/put.XXXXXX", b->tmp);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) return io_fail(err, "creating a spool file", errno);
    int rc = -1;
    if (lseek(src_fd, 0, SEEK_SET) < 0 || copy_fd(src_fd, fd) != 0) {
        io_fail(err, "copying into the store", errno);
        goto out;
    }
    if (fchmod(fd, 0640) != 0 || fsync(fd) != 0) {
        io_fail(err, "syncing an object", errno);
        goto out;
    }
    if (rename(tmp, dest) != 0) {
        io_fail(err, "renaming an object", errno);
        goto out;
    }
    rc = 0;
out:
    close(fd);
    if (rc != 0) unlink(tmp);
    return rc;
}

static int fs_put_file(vx_blob *vb, const char *key, const char *path, vx_err *err) {
    fs_blob *b = (fs_blob *)vb;
    char dest[PATH_MAX], dir[PATH_MAX];
    if (key_path(b, key, dest, sizeof dest, err) != 0) return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return io_fail(err, "opening the file to store", errno);
    int rc = -1;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        io_fail(err, "reading the file to store", errno);
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        vx_err_set(err, VX_E_INVALID, "not_a_file", "only regular files can be stored");
        goto out;
    }
    snprintf(dir, sizeof dir, "%s", dest);
    *strrchr(dir, '/') = '\0';
    if (mkdirs(b->root, dir) != 0) {
        io_fail(err, "creating object directories", errno);
        goto out;
    }
    /* The data must be durable before the name points at it. */
    if (fsync(fd) != 0) {
        io_fail(err, "syncing the file to store", errno);
        goto out;
    }
    if (rename(path, dest) != 0) {
        if (errno != EXDEV) {
            io_fail(err, "moving the file into the store", errno);
            goto out;
        }
        if (put_by_copy(b, fd, dest, err) != 0) goto out;
        if (unlink(path) != 0) vx_warn("blob: could not remove the spool file after copying it");
    }
    if (fsync_dir(dir) != 0) {
        io_fail(err, "syncing an object directory", errno);
        goto out;
    }
    rc = 0;
out:
    close(fd);
    return rc;
}

static int fs_reader_open(vx_blob *vb, const char *key, vx_blob_reader *r, vx_err *err) {
    fs_blob *b = (fs_blob *)vb;
    char path[PATH_MAX];
    r->fd = -1;
    r->size = 0;
    r->priv = NULL;
    if (key_path(b, key, path, sizeof path, err) != 0) return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR || errno == EISDIR)
            return vx_err_set(err, VX_E_NOT_FOUND, "object_not_found", "no such object");
        return io_fail(err, "opening an object", errno);
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int saved = errno;
        close(fd);
        return io_fail(err, "reading an object", saved);
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return vx_err_set(err, VX_E_NOT_FOUND, "object_not_found", "no such object");
    }
    r->fd = fd;
    r->size = sb.st_size;
    return 0;
}

static ssize_t fs_reader_pread(vx_blob_reader *r, void *buf, size_t len, int64_t offset, vx_err *err) {
    if (offset < 0 || r->fd < 0) {
        vx_err_set(err, VX_E_INVALID, "invalid_range", "invalid read offset");
        return -1;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(r->fd, (char *)buf + done, len - done, (off_t)(offset + (int64_t)done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            io_fail(err, "reading an object", errno);
            return -1;
        }
        if (n == 0) break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

static void fs_reader_close(vx_blob_reader *r) {
    if (r->fd >= 0) close(r->fd);
    r->fd = -1;
}

static int stat_object(fs_blob *b, const char *key, char *path, size_t cap, int64_t *size, vx_err *err) {
    if (key_path(b, key, path, cap, err) != 0) return -1;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return vx_err_set(err, VX_E_NOT_FOUND, "object_not_found", "no such object");
        return io_fail(err, "inspecting an object", errno);
    }
    if (!S_ISREG(sb.st_mode)) return vx_err_set(err, VX_E_NOT_FOUND, "object_not_found", "no such object");
    if (size) *size = sb.st_size;
    return 0;
}

/* Objects are immutable files, so decoders may read the object in place. */
static int fs_fetch_local(vx_blob *vb, const char *key, const char *tmp_dir, char *path_out, size_t cap,
                          bool *is_temp, vx_err *err) {
    char path[PATH_MAX];
    *is_temp = false;
    if (stat_object((fs_blob *)vb, key, path, sizeof path, NULL, err) != 0) return -1;
    if (snprintf(path_out, cap, "%s", path) >= (int)cap)
        return vx_err_set(err, VX_E_INTERNAL, "path_too_long", "the object path does not fit");
    return 0;
}

static int fs_remove(vx_blob *vb, const char *key, vx_err *err) {
    char path[PATH_MAX];
    if (key_path((fs_blob *)vb, key, path, sizeof path, err) != 0) return -1;
    if (unlink(path) != 0 && errno != ENOENT && errno != ENOTDIR) return io_fail(err, "removing an object", errno);
    return 0;
}

static int fs_stat(vx_blob *vb, const char *key, int64_t *size, vx_err *err) {
    char path[PATH_MAX];
    return stat_object((fs_blob *)vb, key, path, sizeof path, size, err);
}

/* Walks dir (the key prefix `rel`, "" or ending in '/') depth first. */
static int walk(const char *dir, const char *rel, const char *prefix, vx_blob_list_fn fn, void *user, bool *stop,
                vx_err *err) {
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT || errno == ENOTDIR) return 0;
        return io_fail(err, "listing objects", errno);
    }
    int rc = 0;
    struct dirent *e;
    while (!*stop && rc == 0 && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (!rel[0] && strcmp(e->d_name, TMP_DIR) == 0) continue; /* spool files, not objects */
        vx_blob_entry ent = {0};
        if (snprintf(ent.key, sizeof ent.key, "%s%s", rel, e->d_name) >= (int)sizeof ent.key) continue;
        struct stat sb;
        if (fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0) continue; /* removed meanwhile */
        size_t plen = strlen(prefix), klen = strlen(ent.key);
        if (S_ISDIR(sb.st_mode)) {
            size_t n = klen < plen ? klen : plen;
            if (strncmp(ent.key, prefix, n) != 0) continue; /* nothing below can match */
            char sub[PATH_MAX], subrel[sizeof ent.key + 1];
            if (snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name) >= (int)sizeof sub) continue;
            snprintf(subrel, sizeof subrel, "%s/", ent.key);
            rc = walk(sub, subrel, prefix, fn, user, stop, err);
        } else if (S_ISREG(sb.st_mode) && strncmp(ent.key, prefix, plen) == 0 && vx_blob_key_valid(ent.key)) {
            ent.size = sb.st_size;
            ent.modified_ms = (int64_t)sb.st_mtim.tv_sec * 1000 + sb.st_mtim.tv_nsec / 1000000;
            if (fn(&ent, user) != 0) *stop = true;
        }
    }
    closedir(d);
    return rc;
}

static int fs_list(vx_blob *vb, const char *prefix, vx_blob_list_fn fn, void *user, vx_err *err) {
    fs_blob *b = (fs_blob *)vb;
    bool stop = false;
    return walk(b->root, "", prefix ? prefix : "", fn, user, &stop, err);
}

const vx_blob_ops vx_blob_fs_ops = {
    .scheme = "file",
    .open = fs_open,            /* creates the directory and its .tmp spool */
    .close = fs_close,
    .ping = fs_ping,            /* the directory exists and is writable */
    .put_file = fs_put_file,    /* rename(2), or copy + rename across file systems */
    .reader_open = fs_reader_open, /* hands out an O_CLOEXEC fd */
    .reader_pread = fs_reader_pread,
    .reader_close = fs_reader_close,
    .fetch_local = fs_fetch_local, /* the object's own path, never a copy */
    .remove = fs_remove,        /* a missing key is not an error */
    .stat = fs_stat,
    .list = fs_list,            /* a directory walk that skips the .tmp spool */
};
