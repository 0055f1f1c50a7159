/* server.c - the libmicrohttpd daemon and each request's lifecycle: URI
 * callback (request state, id, timing), access handler (route, body
 * handling, handler call, answer), completion (access log, metrics, free),
 * graceful stop. MHD calls in on its pool threads; one request is only ever
 * touched by the thread serving its connection. vx_http_start/stop run on
 * the thread that owns the server. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "../util/log.h"
#include "http_int.h"

/* Per-connection memory pool: request line + headers (a JWT or API key is
 * well under 1 KiB) and the read buffer that body data streams through.
 * MHD's default size; it keeps idle keep-alive connections and future
 * upgraded WebSockets cheap while uploads still stream at full speed. */
#define HTTP_CONNECTION_MEMORY (32 * 1024)

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void format_peer(struct MHD_Connection *conn, char *out, size_t size) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char ip[INET6_ADDRSTRLEN] = "?";
    snprintf(out, size, "?");
    if (!ci || !ci->client_addr) return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(out, size, "%s:%u", ip, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        snprintf(out, size, "[%s]:%u", ip, ntohs(in6->sin6_port));
    }
}

/* Allocates the request state (freed in on_completed). NULL on OOM. */
static vx_request *request_new(vx_http_server *srv, struct MHD_Connection *conn, const char *uri) {
    vx_request *req = calloc(1, sizeof *req);
    if (!req) return NULL;
    req->srv = srv;
    req->conn = conn;
    req->start_ns = mono_ns();
    req->route_index = VX_HTTP_ROUTE_UNMATCHED;
    vx_id_new(req->id, "req");
    size_t len = strcspn(uri, "?#");
    req->raw_path = strndup(uri, len);
    req->path = malloc(len + 1);
    if (!req->raw_path || !req->path) {
        free(req->raw_path);
        free(req->path);
        free(req);
        return NULL;
    }
    long dec = vx_http_percent_decode(uri, len, req->path);
    if (dec < 0 || strlen(req->path) != (size_t)dec) {
        memcpy(req->path, req->raw_path, len + 1);
        req->path_bad = true;
    }
    format_peer(conn, req->peer, sizeof req->peer);
    atomic_fetch_add(&srv->in_flight, 1);
    return req;
}

static void request_free(vx_request *req) {
    /* The request's references (each handle embeds its vx_stream_item first). */
    if (req->deferred) vx_stream_item_unref((vx_stream_item *)(void *)req->deferred);
    if (req->sse) vx_stream_item_unref((vx_stream_item *)(void *)req->sse);
    if (req->ws) vx_stream_item_unref((vx_stream_item *)(void *)req->ws);
    vx_http_upload_release(req);
    vx_http_response_release(req);
    if (req->data_free) req->data_free(req->data);
    vx_route_match_clear(&req->match);
    free(req->body);
    free(req->raw_path);
    free(req->path);
    free(req);
}

/* MHD_OPTION_URI_LOG_CALLBACK: the earliest point of a request and the only
 * place the raw (undecoded) URI is visible; the return value becomes *con_cls. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
    return request_new(cls, conn, uri);
}

/* Answers on the first access-handler call: MHD then skips the body and
 * closes the connection after the response (intended for refusals). */
static enum MHD_Result answer_early(vx_request *req, const vx_err *err) {
    req->close_after = true;
    vx_respond_error(req, err);
    return vx_http_queue(req);
}

/* MHD 0.9.75 refuses MHD_queue_response while it is feeding upload data
 * (verified by test_http), so a refusal in the middle of a body is written
 * straight to the socket (plain HTTP only) and MHD is told to close the
 * connection; the rest of the body is never read. */
static enum MHD_Result abort_mid_body(vx_request *req, const vx_err *err) {
    char msg[2048];
    size_t len = vx_http_render_raw_error(req, err, msg, sizeof msg);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (len == 0 || !ci) return MHD_NO;
    int fd = ci->connect_fd;
    size_t sent = 0;
    int waited_ms = 0;
    while (sent < len && waited_ms < 2000) {
        ssize_t n = send(fd, msg + sent, len - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            poll(&p, 1, 50);
            waited_ms += 50;
        } else {
            break;
        }
    }
    shutdown(fd, SHUT_WR);
    if (sent < len) vx_warn("http %s: early %d answer not fully sent", req->id, req->status);
    return MHD_NO;
}

static bool is_api_path(const char *path) {
    return strncmp(path, "/v1", 3) == 0 && (path[3] == '\0' || path[3] == '/');
}

static enum MHD_Result on_headers(vx_request *req, const char *method) {
    vx_http_server *srv = req->srv;
    snprintf(req->method, sizeof req->method, "%s", method);
    vx_route_result res = vx_router_match(srv->router, req->method, req->raw_path, &req->match);
    if (res == VX_ROUTE_FOUND) {
        req->route_index = (int)req->match.index;
        req->route = &srv->routes[req->match.index];
    } else if (res == VX_ROUTE_NO_METHOD) {
        snprintf(req->allow, sizeof req->allow, "%s", req->match.allow);
    } else if (!is_api_path(req->path) && (strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0)) {
        req->route_index = VX_HTTP_ROUTE_STATIC;
    }
    if (!req->route) return MHD_YES;

    vx_err err = {0};
    if (req->route->body == VX_BODY_UPLOAD && req->route->json_too) {
        const char *ct = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        size_t n = strlen("application/json");
        req->json_body = ct && strncasecmp(ct, "application/json", n) == 0 && (ct[n] == '\0' || ct[n] == ';' ||
                                                                            ct[n] == ' ');
    }
    if (req->route->body == VX_BODY_JSON) req->json_body = true;
    if (req->json_body) {
        const char *cl = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        unsigned long long declared = cl ? strtoull(cl, NULL, 10) : 0;
        if (declared > (unsigned long long)srv->app->cfg->max_body_bytes) {
            vx_err_set(&err, VX_E_TOO_LARGE, "body_too_large", "the request body is over %lld bytes",
                       (long long)srv->app->cfg->max_body_bytes);
            return answer_early(req, &err);
        }
    }
    if (req->route->body == VX_BODY_UPLOAD || req->route->body == VX_BODY_RAW) {
        if (req->route->body == VX_BODY_UPLOAD && !req->json_body && vx_http_upload_begin(req, &err) != 0)
            return answer_early(req, &err);
        if (req->route->begin && req->route->begin(req, &err) != 0) {
            if (err.status == VX_OK) vx_err_set(&err, VX_E_INTERNAL, "internal", "upload refused");
            return answer_early(req, &err);
        }
    }
    return MHD_YES;
}

static enum MHD_Result on_body(vx_request *req, const char *data, size_t size) {
    const vx_route *route = req->route;
    if (!route || route->body == VX_BODY_NONE) return MHD_YES;
    vx_err err = {0};
    if (route->body == VX_BODY_RAW) {
        vx_upload_chunk chunk = {
            .name = "",
            .content_type = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE),
            .data = data,
            .offset = req->upload_bytes,
            .size = size,
        };
        req->upload_bytes += size;
        if (route->upload_part(req, &chunk, &err) != 0) {
            if (err.status == VX_OK) vx_err_set(&err, VX_E_INTERNAL, "internal", "upload refused");
            return abort_mid_body(req, &err);
        }
        return MHD_YES;
    }
    if (req->json_body) {
        size_t max = (size_t)req->srv->app->cfg->max_body_bytes;
        if (size > max - req->body_len) {
            vx_err_set(&err, VX_E_TOO_LARGE, "body_too_large", "the request body is over %zu bytes", max);
            return abort_mid_body(req, &err);
        }
        if (req->body_len + size + 1 > req->body_cap) {
            size_t cap = req->body_cap ? req->body_cap : 4096;
            while (cap < req->body_len + size + 1) cap *= 2;
            char *grown = realloc(req->body, cap);
            if (!grown) {
                vx_err_set(&err, VX_E_INTERNAL, "internal", "out of memory");
                return abort_mid_body(req, &err);
            }
            req->body = grown;
            req->body_cap = cap;
        }
        memcpy(req->body + req->body_len, data, size);
        req->body_len += size;
        req->body[req->body_len] = '\0';
        return MHD_YES;
    }
    if (vx_http_upload_feed(req, data, size, &err) != 0) return abort_mid_body(req, &err);
    return MHD_YES;
}

static enum MHD_Result on_complete(vx_request *req) {
    const vx_route *route = req->route;
    if (req->deferred) return vx_deferred_on_access(req);  /* resumed */
    if (req->status != 0) {
        /* answered already (a begin hook that responded itself) */
    } else if (!route && req->route_index == VX_HTTP_ROUTE_STATIC) {
        vx_http_serve_static(req);
    } else if (!route && req->allow[0]) {
        vx_resp_header(req, MHD_HTTP_HEADER_ALLOW, req->allow);
        vx_respond_errorf(req, VX_E_METHOD, "method_not_allowed", "%s is not allowed here; allowed: %s",
                          req->method, req->allow);
    } else if (!route) {
        vx_respond_errorf(req, VX_E_NOT_FOUND, "not_found", "no such resource");
    } else {
        vx_err err = {0};
        if (route->body == VX_BODY_UPLOAD && !req->json_body && vx_http_upload_finish(req, &err) != 0) {
            vx_respond_error(req, &err);
        } else {
            route->handle(req);
            if (req->deferred) return vx_deferred_on_access(req);
            if (req->status == 0) {
                vx_error("http %s: handler for %s %s returned without answering", req->id, route->method,
                         route->pattern);
                vx_respond_errorf(req, VX_E_INTERNAL, "internal", "internal error");
            }
        }
    }
    return vx_http_queue(req);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size,
                                 void **con_cls) {
    vx_request *req = *con_cls;
    if (!req) {
        req = request_new(cls, conn, url);
        if (!req) return MHD_NO;
        *con_cls = req;
    }
    /* The first call only looks at the headers: answering here would make
     * MHD drop keep-alive, so ordinary answers wait for the final call. */
    if (!req->started) {
        req->started = true;
        return on_headers(req, method);
    }
    if (*upload_data_size) {
        size_t size = *upload_data_size;
        *upload_data_size = 0;
        return on_body(req, upload_data, size);
    }
    return on_complete(req);
}

/* Copies the path for the log with control bytes made visible and harmless. */
static void log_path(const char *path, char *out, size_t size) {
    size_t o = 0;
    for (const char *p = path; *p && o + 1 < size; p++)
        out[o++] = ((unsigned char)*p < 0x21 || (unsigned char)*p == 0x7f) ? '?' : *p;
    out[o] = '\0';
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    vx_http_server *srv = cls;
    vx_request *req = *con_cls;
    if (!req) return;
    *con_cls = NULL;
    if (req->deferred) vx_deferred_on_request_done(req->deferred);
    if (req->sse) vx_sse_on_request_done(req->sse);
    if (req->ws) vx_ws_on_request_done(req->ws);
    double seconds = (double)(mono_ns() - req->start_ns) / 1e9;
    if (req->status != 0 && req->method[0])
        vx_http_metrics_record(srv->metrics, req->route_index, req->method, req->status, seconds);
    if (srv->app->cfg->access_log) {
        char path[512];
        log_path(req->raw_path, path, sizeof path);
        vx_info("http req=%s method=%s path=%s status=%d bytes=%llu ms=%.1f peer=%s%s", req->id,
                req->method[0] ? req->method : "-", path, req->status, (unsigned long long)req->resp_bytes,
                seconds * 1000.0, req->peer,
                toe == MHD_REQUEST_TERMINATED_COMPLETED_OK || req->status != 0 ? "" : " aborted=1");
    }
    request_free(req);
    atomic_fetch_sub(&srv->in_flight, 1);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\r\n")] = '\0';
    vx_debug("mhd: %s", msg);
}

/* "HOST:PORT" with an IPv4 literal or "localhost"; port 0 = any free port. */
static int parse_listen(const char *listen, struct sockaddr_in *sa, vx_err *err) {
    const char *colon = strrchr(listen, ':');
    char host[64];
    if (!colon || (size_t)(colon - listen) >= sizeof host || colon == listen) goto bad;
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    char *end = NULL;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || errno || port < 0 || port > 65535) goto bad;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0) snprintf(host, sizeof host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) goto bad;
    return 0;
bad:
    return vx_err_set(err, VX_E_INVALID, "invalid_listen",
                      "listen address must be IPV4:PORT or localhost:PORT, got \"%.64s\"", listen);
}

/* New connections while stopping are closed at once. MHD_quiesce_daemon
 * would stop accepting instead, but in MHD 0.9.75's epoll thread pool it
 * races the pool threads over the listening socket's epoll registration and
 * can abort the process ("Failed to remove listen FD from epoll set", seen
 * about once in 60 stops). */
static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen) {
    (void)addr;
    (void)addrlen;
    const vx_http_server *srv = cls;
    return atomic_load(&srv->stopping) ? MHD_NO : MHD_YES;
}

vx_http_server *vx_http_start(vx_app *app, const vx_route *routes, size_t n_routes, vx_err *err) {
    const vx_config *cfg = app->cfg;
    struct sockaddr_in sa;
    if (parse_listen(cfg->listen, &sa, err) != 0) return NULL;
    vx_http_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        return NULL;
    }
    srv->app = app;
    srv->routes = routes;
    srv->n_routes = n_routes;
    srv->router = vx_router_new(routes, n_routes, err);
    if (!srv->router) goto fail;
    srv->metrics = vx_http_metrics_new(routes, n_routes);
    if (!srv->metrics) {
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        goto fail;
    }
    struct stat st;
    if (cfg->web_dir[0] && realpath(cfg->web_dir, srv->web_root) && stat(srv->web_root, &st) == 0 &&
        S_ISDIR(st.st_mode)) {
        if (strlen(srv->web_root) >= sizeof srv->web_root - 1) srv->web_root[0] = '\0';
    } else {
        srv->web_root[0] = '\0';
        if (cfg->web_dir[0]) vx_warn("http: web directory %s not found; the web UI is not served", cfg->web_dir);
    }

    /* Known MHD 0.9.75 epoll quirk (test_http shows it): a client that
     * disconnects in the middle of a body is noticed only at the idle
     * timeout, so its request state lives until then. poll() notices at once. */
    srv->stream = vx_stream_start(srv, err);
    if (!srv->stream) goto fail;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_UPGRADE | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    flags |= MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES ? MHD_USE_EPOLL : MHD_USE_POLL;
    unsigned threads = cfg->http_threads > 0 ? (unsigned)cfg->http_threads : 1;
    unsigned limit = cfg->max_connections > 0 ? (unsigned)cfg->max_connections : 1024;
    if (limit < threads) limit = threads;
    srv->daemon = MHD_start_daemon(
        flags, 0, accept_policy, srv, on_access, srv,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv,  /* first, so that every message goes through it */
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_THREAD_POOL_SIZE, threads,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(cfg->request_timeout_s > 0 ? cfg->request_timeout_s : 0),
        MHD_OPTION_CONNECTION_LIMIT, limit,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONNECTION_MEMORY,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_END);
    if (!srv->daemon) {
        vx_err_set(err, VX_E_UNAVAILABLE, "listen_failed", "could not listen on %.64s", cfg->listen);
        goto fail;
    }
    char ip[INET_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
    vx_info("http: listening on %s:%d (%u threads, %s)", ip, vx_http_port(srv), threads,
            (flags & MHD_USE_EPOLL) ? "epoll" : "poll");
    return srv;
fail:
    vx_stream_free(srv->stream);
    vx_router_free(srv->router);
    vx_http_metrics_free(srv->metrics);
    free(srv);
    return NULL;
}

int vx_http_port(const vx_http_server *srv) {
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    return info ? (int)info->port : -1;
}

static void nap_ms(int ms) {
    struct timespec nap = {.tv_sec = 0, .tv_nsec = ms * 1000000L};
    nanosleep(&nap, NULL);
}

/* Long-lived answers end in two steps: phase 1 asks politely (WebSockets
 * close with 1001, event streams end, deferred requests get 503) and the
 * grace period lets that happen; phase 2 ends what is left, because
 * MHD_stop_daemon must see no suspended connection and no open upgraded
 * socket (MHD 0.9.75 panics on the first and frees the second under us). */
void vx_http_stop(vx_http_server *srv, int grace_ms) {
    if (!srv) return;
    atomic_store(&srv->stopping, true); /* accept_policy turns new connections away from now on */
    uint64_t deadline = mono_ns() + (uint64_t)(grace_ms > 0 ? grace_ms : 0) * 1000000u;
    vx_stream_stop_phase(srv->stream, 1);
    while (atomic_load(&srv->in_flight) > 0 && mono_ns() < deadline) nap_ms(5);
    int left = atomic_load(&srv->in_flight);
    if (left > 0) vx_warn("http: stopping with %d requests still in flight", left);
    vx_stream_stop_phase(srv->stream, 2);
    /* Resumes and upgrades already posted to the stream thread land within
     * moments; wait for them (bounded) rather than race MHD_stop_daemon. */
    for (int i = 0; i < 400 && (atomic_load(&srv->suspended) > 0 || atomic_load(&srv->upgrading) > 0); i++)
        nap_ms(5);
    if (atomic_load(&srv->suspended) > 0 || atomic_load(&srv->upgrading) > 0)
        vx_error("http: %d suspended connections and %d upgrades left at stop", atomic_load(&srv->suspended),
                 atomic_load(&srv->upgrading));
    MHD_stop_daemon(srv->daemon);
    vx_stream_free(srv->stream);
    vx_router_free(srv->router);
    vx_http_metrics_free(srv->metrics);
    free(srv);
}

/* ---- request accessors ---- */

vx_app *vx_req_app(vx_request *req) { return req->srv->app; }
const char *vx_req_id(vx_request *req) { return req->id; }
const char *vx_req_method(vx_request *req) { return req->method; }
const char *vx_req_path(vx_request *req) { return req->path; }
const char *vx_req_peer(vx_request *req) { return req->peer; }

const char *vx_req_header(vx_request *req, const char *name) {
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *vx_req_query(vx_request *req, const char *name) {
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *vx_req_capture(vx_request *req, const char *name) {
    for (size_t i = 0; i < req->match.n_captures; i++)
        if (strcmp(req->match.names[i], name) == 0) return req->match.values[i];
    return NULL;
}

bool vx_req_body_is_json(vx_request *req) { return req->json_body; }

const char *vx_req_body(vx_request *req, size_t *len) {
    if (len) *len = req->body_len;
    return req->body ? req->body : "";
}

void vx_req_set_data(vx_request *req, void *data, void (*free_fn)(void *)) {
    if (req->data_free && req->data != data) req->data_free(req->data);
    req->data = data;
    req->data_free = free_fn;
}

void *vx_req_data(vx_request *req) { return req->data; }
