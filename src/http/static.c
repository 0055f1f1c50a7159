/* static.c - serves the web UI's files from cfg->web_dir for GET/HEAD on
 * paths outside /v1 that match no route. Refuses "..", hidden files and any
 * symlink leading out of the directory (realpath prefix check).
 * Called on the MHD pool thread that owns the request. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include "http_int.h"

static const struct {
    const char *ext;
    const char *type;
} content_types[] = {
    {.ext = "html", .type = "text/html; charset=utf-8"},
    {.ext = "js", .type = "text/javascript; charset=utf-8"},
    {.ext = "css", .type = "text/css; charset=utf-8"},
    {.ext = "json", .type = "application/json"},
    {.ext = "svg", .type = "image/svg+xml"},
    {.ext = "png", .type = "image/png"},
    {.ext = "ico", .type = "image/x-icon"},
    {.ext = "txt", .type = "text/plain; charset=utf-8"},
};

static const char *type_for(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    if (dot) {
        for (size_t i = 0; i < sizeof content_types / sizeof content_types[0]; i++)
            if (strcasecmp(dot + 1, content_types[i].ext) == 0) return content_types[i].type;
    }
    return "application/octet-stream";
}

/* No "." or ".." segment, no hidden file, no backslash. */
static bool path_safe(const char *path) {
    if (path[0] != '/' || strchr(path, '\\')) return false;
    for (const char *p = path; p; p = strchr(p + 1, '/'))
        if (p[1] == '.') return false;
    return true;
}

static void not_found(vx_request *req) {
    vx_respond_errorf(req, VX_E_NOT_FOUND, "not_found", "no such resource");
}

void vx_http_serve_static(vx_request *req) {
    const vx_http_server *srv = req->srv;
    if ((strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) || !srv->web_root[0] ||
        req->path_bad || !path_safe(req->path)) {
        not_found(req);
        return;
    }
    size_t plen = strlen(req->path);
    const char *index = req->path[plen - 1] == '/' ? "index.html" : "";
    char full[PATH_MAX + 16], resolved[PATH_MAX];
    int n = snprintf(full, sizeof full, "%s%s%s", srv->web_root, req->path, index);
    if (n < 0 || (size_t)n >= sizeof full || !realpath(full, resolved)) {
        not_found(req);
        return;
    }
    size_t rlen = strlen(srv->web_root);
    if (strncmp(resolved, srv->web_root, rlen) != 0 || resolved[rlen] != '/') {
        not_found(req);
        return;
    }
    int fd = open(resolved, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        not_found(req);
        return;
    }
    const char *type = type_for(resolved);
    /* The UI has no build step and no hashed names: make browsers revalidate pages. */
    if (strncmp(type, "text/html", 9) == 0) vx_resp_header(req, "Cache-Control", "no-cache");
    vx_respond_fd(req, 200, type, fd, 0, (int64_t)st.st_size);
}
