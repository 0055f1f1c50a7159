/* test_http.c - black-box tests of src/http/ over loopback: a real server on
 * 127.0.0.1 port 0 with a table of test routes, libcurl as the client and
 * raw sockets where the exact bytes on the wire matter (early answers). */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "../../src/http/http.h"
#include "../../src/util/crypto.h"
#include "../../src/util/log.h"
#include "../../src/util/strbuf.h"
#include "test.h"

/* ---- test routes ---- */

static atomic_int slow_started;
static char file_path[512];

static void h_echo(vx_request *req) {
    const char *q = vx_req_query(req, "q");
    json_t *o = json_pack("{s:s,s:s,s:s}", "id", vx_req_capture(req, "id"), "method", vx_req_method(req),
                          "path", vx_req_path(req));
    json_object_set_new(o, "q", q ? json_string(q) : json_null());
    vx_resp_header(req, "X-Test", "yes");
    vx_respond_json(req, 200, o);
}

static void h_json(vx_request *req) {
    size_t len = 0;
    const char *body = vx_req_body(req, &len);
    json_error_t jerr;
    json_t *in = json_loadb(body, len, 0, &jerr);
    if (!in) {
        vx_respond_errorf(req, VX_E_INVALID, "invalid_json", "body is not JSON");
        return;
    }
    const char *q = vx_req_query(req, "tag");
    json_t *o = json_pack("{s:s,s:s,s:o}", "id", vx_req_capture(req, "id"), "tag", q ? q : "", "body", in);
    vx_respond_json(req, 201, o);
}

typedef struct upload_state {
    char names[8][32];
    uint64_t size[8];
    uint64_t hash[8];
    char text[8][64];
    int n;
    uint64_t total;
    uint64_t refuse_after;
    bool offsets_ok;
} upload_state;

static uint64_t fnv(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}
#define FNV_INIT 14695981039346656037ull

static atomic_int states_freed;

static void state_free(void *p) {
    free(p);
    atomic_fetch_add(&states_freed, 1);
}

static int u_begin(vx_request *req, vx_err *err) {
    if (vx_req_header(req, "X-Refuse"))
        return vx_err_set(err, VX_E_FORBIDDEN, "refused_in_begin", "not allowed to upload");
    upload_state *st = calloc(1, sizeof *st);
    st->offsets_ok = true;
    const char *after = vx_req_header(req, "X-Refuse-After");
    st->refuse_after = after ? strtoull(after, NULL, 10) : 0;
    vx_req_set_data(req, st, state_free);
    return 0;
}

static int u_part(vx_request *req, const vx_upload_chunk *c, vx_err *err) {
    upload_state *st = vx_req_data(req);
    if (st->n == 0 || strcmp(st->names[st->n - 1], c->name) != 0 || c->offset == 0) {
        if (st->n == 8) return vx_err_set(err, VX_E_INVALID, "too_many_parts", "too many parts");
        snprintf(st->names[st->n], sizeof st->names[0], "%s", c->name);
        st->hash[st->n] = FNV_INIT;
        st->n++;
    }
    int i = st->n - 1;
    if (c->offset != st->size[i]) st->offsets_ok = false;
    st->hash[i] = fnv(st->hash[i], c->data, c->size);
    if (!c->filename && st->size[i] + c->size < sizeof st->text[0])
        memcpy(st->text[i] + st->size[i], c->data, c->size);
    st->size[i] += c->size;
    st->total += c->size;
    if (st->refuse_after && st->total > st->refuse_after)
        return vx_err_set(err, VX_E_TOO_LARGE, "upload_too_large", "stop right there");
    return 0;
}

static void u_handle(vx_request *req) {
    upload_state *st = vx_req_data(req);
    json_t *parts = json_array();
    for (int i = 0; i < st->n; i++) {
        char h[32];
        snprintf(h, sizeof h, "%016llx", (unsigned long long)st->hash[i]);
        json_array_append_new(parts, json_pack("{s:s,s:I,s:s,s:s}", "name", st->names[i], "size",
                                               (json_int_t)st->size[i], "hash", h, "text", st->text[i]));
    }
    vx_respond_json(req, 200, json_pack("{s:o,s:b}", "parts", parts, "offsets_ok", st->offsets_ok));
}

static void h_file(vx_request *req) {
    int fd = open(file_path, O_RDONLY);
    vx_respond_fd(req, 206, "text/plain", fd, strtoll(vx_req_query(req, "offset"), NULL, 10),
                  strtoll(vx_req_query(req, "length"), NULL, 10));
}

static void h_forget(vx_request *req) { (void)req; }

static void h_slow(vx_request *req) {
    atomic_store(&slow_started, 1);
    struct timespec t = {.tv_sec = 0, .tv_nsec = 300 * 1000000};
    nanosleep(&t, NULL);
    vx_respond_json(req, 200, json_pack("{s:b}", "slow", 1));
}

static void h_metrics(vx_request *req) {
    vx_strbuf b = {0};
    vx_http_metrics_render(req, &b);
    vx_respond_bytes(req, 200, "text/plain; version=0.0.4", b.data, b.len);
    vx_strbuf_free(&b);
}

static void h_unauth(vx_request *req) {
    vx_respond_errorf(req, VX_E_UNAUTHORIZED, "unauthorized", "no credentials");
}

static long s_read(void *user, uint64_t pos, char *buf, size_t max) {
    (void)user;
    for (size_t i = 0; i < max; i++) buf[i] = (char)('a' + (pos + i) % 26);
    return (long)max;
}

static void h_stream(vx_request *req) {
    int *counter = malloc(sizeof *counter);
    vx_respond_stream(req, 200, "text/plain", 100000, s_read, counter, free);
}

static const vx_route routes[] = {
    {.method = "GET", .pattern = "/v1/echo/{id}", .handle = h_echo},
    {.method = "DELETE", .pattern = "/v1/echo/{id}", .handle = h_echo},
    {.method = "POST", .pattern = "/v1/json/{id}", .body = VX_BODY_JSON, .handle = h_json},
    {.method = "POST", .pattern = "/v1/upload", .body = VX_BODY_UPLOAD, .begin = u_begin,
     .upload_part = u_part, .handle = u_handle},
    {.method = "GET", .pattern = "/v1/file", .handle = h_file},
    {.method = "GET", .pattern = "/v1/forget", .handle = h_forget},
    {.method = "GET", .pattern = "/v1/slow", .handle = h_slow},
    {.method = "GET", .pattern = "/v1/unauth", .handle = h_unauth},
    {.method = "GET", .pattern = "/v1/stream", .handle = h_stream},
    {.method = "GET", .pattern = "/metrics", .handle = h_metrics},
};

/* ---- fixture ---- */

static vx_config cfg;
static vx_app app;
static vx_http_server *srv;
static int port;
static char tmp_root[256];

static void write_file(const char *dir, const char *name, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static bool server_up_timeout(int timeout_s) {
    vx_crypto_init();
    vx_log_set_level(getenv("VX_TEST_VERBOSE") ? VX_LOG_DEBUG : VX_LOG_WARN);
    snprintf(tmp_root, sizeof tmp_root, "/tmp/voxd_http_XXXXXX");
    if (!mkdtemp(tmp_root)) return false;
    char web[300];
    snprintf(web, sizeof web, "%s/web", tmp_root);
    mkdir(web, 0700);
    write_file(web, "index.html", "<html>voxd</html>\n");
    write_file(web, "app.js", "console.log(1);\n");
    write_file(tmp_root, "secret.txt", "top secret\n");
    write_file(tmp_root, "data.txt", "0123456789abcdef");
    char link[400];
    snprintf(link, sizeof link, "%s/link.txt", web);
    if (symlink("../secret.txt", link) != 0) return false;
    snprintf(file_path, sizeof file_path, "%s/data.txt", tmp_root);

    vx_config_defaults(&cfg);
    snprintf(cfg.listen, sizeof cfg.listen, "127.0.0.1:0");
    snprintf(cfg.web_dir, sizeof cfg.web_dir, "%s", web);
    cfg.http_threads = 3;
    cfg.max_body_bytes = 64 * 1024;
    cfg.request_timeout_s = timeout_s;
    cfg.access_log = true;
    app = (vx_app){.cfg = &cfg};
    vx_err err = {0};
    srv = vx_http_start(&app, routes, sizeof routes / sizeof routes[0], &err);
    if (!srv) {
        fprintf(stderr, "  start: %s %s\n", err.code, err.message);
        return false;
    }
    port = vx_http_port(srv);
    atomic_store(&slow_started, 0);
    return port > 0;
}

static bool server_up(void) { return server_up_timeout(30); }

static void server_down(void) {
    if (srv) vx_http_stop(srv, 2000);
    srv = NULL;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    if (strncmp(tmp_root, "/tmp/voxd_http_", 15) == 0 && system(cmd) != 0) fprintf(stderr, "  cleanup failed\n");
}

/* ---- curl client ---- */

typedef struct resp {
    long status;
    vx_strbuf body;
    char request_id[64];
    char allow[128];
    char content_type[128];
    char www_auth[64];
    char cache_control[64];
    char content_length[32];
    char x_test[16];
} resp;

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    vx_strbuf_append(&((resp *)ud)->body, p, size * n);
    return size * n;
}

static void header_value(const char *line, size_t len, const char *name, char *out, size_t out_size) {
    size_t nl = strlen(name);
    if (len <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':') return;
    const char *v = line + nl + 1;
    while (*v == ' ') v++;
    size_t vl = len - (size_t)(v - line);
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n')) vl--;
    snprintf(out, out_size, "%.*s", (int)vl, v);
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
    resp *r = ud;
    size_t len = size * n;
    header_value(p, len, "X-Request-Id", r->request_id, sizeof r->request_id);
    header_value(p, len, "Allow", r->allow, sizeof r->allow);
    header_value(p, len, "Content-Type", r->content_type, sizeof r->content_type);
    header_value(p, len, "WWW-Authenticate", r->www_auth, sizeof r->www_auth);
    header_value(p, len, "Cache-Control", r->cache_control, sizeof r->cache_control);
    header_value(p, len, "Content-Length", r->content_length, sizeof r->content_length);
    header_value(p, len, "X-Test", r->x_test, sizeof r->x_test);
    return len;
}

static void resp_free(resp *r) { vx_strbuf_free(&r->body); }

/* Performs one request on `c` (reused for keep-alive); fills r. */
static CURLcode perform(CURL *c, const char *method, const char *path, resp *r) {
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    memset(r, 0, sizeof *r);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    return rc;
}

static long get(const char *path, resp *r) {
    CURL *c = curl_easy_init();
    CURLcode rc = perform(c, "GET", path, r);
    curl_easy_cleanup(c);
    return rc == CURLE_OK ? r->status : -1;
}

static bool error_code_is(const resp *r, const char *code) {
    json_t *j = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, NULL);
    const char *got = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    bool same = got && strcmp(got, code) == 0;
    if (!same) fprintf(stderr, "  error code %s, wanted %s (body %s)\n", got ? got : "(none)", code,
                       r->body.data ? r->body.data : "");
    json_decref(j);
    return same;
}

/* ---- raw socket client ---- */

static int raw_connect(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends `head`, then up to body_len generated bytes (chunked framing if
 * `chunked`), stopping as soon as the server answers; reads the answer
 * until the server closes. Returns the body bytes sent. */
static uint64_t raw_exchange(const char *head, uint64_t body_len, bool chunked, const char *prefix,
                             vx_strbuf *answer) {
    int fd = raw_connect();
    if (fd < 0) return 0;
    if (send(fd, head, strlen(head), MSG_NOSIGNAL) != (ssize_t)strlen(head)) {
        close(fd);
        return 0;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    static char chunk[65536 + 16];
    uint64_t sent = 0;
    size_t plen = prefix ? strlen(prefix) : 0;
    bool answered = false, closed = false;
    /* The pending piece of wire data not yet accepted by the socket. */
    size_t pend_at = 0, pend_len = 0;
    while (!closed) {
        struct pollfd p = {.fd = fd, .events = POLLIN | (answered || sent >= body_len ? 0 : POLLOUT)};
        if (poll(&p, 1, 10000) <= 0) break;
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            char buf[4096];
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n > 0) {
                vx_strbuf_append(answer, buf, (size_t)n);
                answered = true;
            } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                closed = true;
            }
            continue;
        }
        if (pend_len == 0) {
            size_t n = body_len - sent < 65536 ? (size_t)(body_len - sent) : 65536;
            size_t off = 0;
            if (chunked) off = (size_t)snprintf(chunk, 16, "%zx\r\n", n);
            for (size_t i = 0; i < n; i++) {
                uint64_t at = sent + i;
                chunk[off + i] = at < plen ? prefix[at] : (char)('A' + at % 23);
            }
            if (chunked) memcpy(chunk + off + n, "\r\n", 2);
            pend_at = 0;
            pend_len = off + n + (chunked ? 2 : 0);
            sent += n;
        }
        ssize_t w = send(fd, chunk + pend_at, pend_len, MSG_NOSIGNAL);
        if (w > 0) {
            pend_at += (size_t)w;
            pend_len -= (size_t)w;
        } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
            /* The server closed; what it answered is still readable. */
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
            answered = true;
        }
    }
    close(fd);
    return sent;
}

/* ---- tests ---- */

static void test_json_round_trip_with_capture_query_and_request_id(void) {
    REQUIRE(server_up());
    CURL *c = curl_easy_init();
    resp r;
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{\"a\":[1,2,{\"b\":\"c\"}]}");
    CHECK_EQ_INT(perform(c, "POST", "/v1/json/job%5F42?tag=x%20y&other=1", &r), CURLE_OK);
    CHECK_EQ_INT(r.status, 201);
    CHECK_EQ_STR(r.body.data, "{\"id\":\"job_42\",\"tag\":\"x y\",\"body\":{\"a\":[1,2,{\"b\":\"c\"}]}}");
    CHECK_EQ_STR(r.content_type, "application/json");
    CHECK(strncmp(r.request_id, "req_", 4) == 0);
    resp_free(&r);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{not json");
    CHECK_EQ_INT(perform(c, "POST", "/v1/json/1", &r), CURLE_OK);
    CHECK_EQ_INT(r.status, 400);
    CHECK(error_code_is(&r, "invalid_json"));
    resp_free(&r);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);

    CHECK_EQ_INT(get("/v1/echo/abc?q=hello", &r), 200);
    CHECK_EQ_STR(r.body.data, "{\"id\":\"abc\",\"method\":\"GET\",\"path\":\"/v1/echo/abc\",\"q\":\"hello\"}");
    CHECK_EQ_STR(r.x_test, "yes");
    char first_id[64];
    snprintf(first_id, sizeof first_id, "%s", r.request_id);
    resp_free(&r);
    CHECK_EQ_INT(get("/v1/echo/abc", &r), 200);
    CHECK(strcmp(first_id, r.request_id) != 0);
    resp_free(&r);
    server_down();
}

static void test_head_on_get_route_sends_headers_without_body(void) {
    REQUIRE(server_up());
    CURL *c = curl_easy_init();
    resp r;
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    CHECK_EQ_INT(perform(c, "HEAD", "/v1/echo/abc?q=1", &r), CURLE_OK);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT(r.body.len, 0);
    CHECK_EQ_STR(r.content_length, "58"); /* {"id":"abc","method":"HEAD",...} */
    CHECK(strncmp(r.request_id, "req_", 4) == 0);
    resp_free(&r);
    curl_easy_cleanup(c);
    server_down();
}

static void test_keep_alive_reuses_the_connection(void) {
    REQUIRE(server_up());
    CURL *c = curl_easy_init();
    resp r;
    long connects = -1;
    CHECK_EQ_INT(perform(c, "GET", "/v1/echo/one", &r), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &connects);
    CHECK_EQ_INT(connects, 1);
    resp_free(&r);
    CHECK_EQ_INT(perform(c, "GET", "/v1/echo/two", &r), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &connects);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT(connects, 0);
    resp_free(&r);
    /* An error answer (404) also keeps the connection. */
    CHECK_EQ_INT(perform(c, "GET", "/v1/nope", &r), CURLE_OK);
    CHECK_EQ_INT(r.status, 404);
    resp_free(&r);
    CHECK_EQ_INT(perform(c, "GET", "/v1/echo/three", &r), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &connects);
    CHECK_EQ_INT(connects, 0);
    resp_free(&r);
    curl_easy_cleanup(c);
    server_down();
}

static void test_unknown_path_404_and_wrong_method_405_with_allow(void) {
    REQUIRE(server_up());
    resp r;
    CHECK_EQ_INT(get("/v1/nothing/here", &r), 404);
    CHECK(error_code_is(&r, "not_found"));
    CHECK_EQ_STR(r.content_type, "application/json");
    resp_free(&r);
    CURL *c = curl_easy_init();
    CHECK_EQ_INT(perform(c, "PUT", "/v1/echo/x", &r), CURLE_OK);
    CHECK_EQ_INT(r.status, 405);
    CHECK_EQ_STR(r.allow, "GET, DELETE, HEAD");
    CHECK(error_code_is(&r, "method_not_allowed"));
    resp_free(&r);
    /* A capture holding an encoded '/' matches nothing. */
    CHECK_EQ_INT(perform(c, "GET", "/v1/echo/a%2Fb", &r), CURLE_OK);
    CHECK_EQ_INT(r.status, 404);
    resp_free(&r);
    curl_easy_cleanup(c);
    CHECK_EQ_INT(get("/v1/unauth", &r), 401);
    CHECK_EQ_STR(r.www_auth, "Bearer");
    CHECK(error_code_is(&r, "unauthorized"));
    resp_free(&r);
    server_down();
}

static void test_json_body_over_limit_is_413_from_content_length_before_the_body(void) {
    REQUIRE(server_up());
    char head[512];
    snprintf(head, sizeof head,
             "POST /v1/json/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             "Content-Length: %d\r\n\r\n", 10 * 1024 * 1024);
    vx_strbuf a = {0};
    uint64_t sent = raw_exchange(head, 10 * 1024 * 1024, false, NULL, &a);
    REQUIRE(a.data);
    CHECK(strncmp(a.data, "HTTP/1.1 413", 12) == 0);
    CHECK(strstr(a.data, "\"body_too_large\"") != NULL);
    CHECK(strstr(a.data, "X-Request-Id: req_") != NULL);
    CHECK(sent < 10 * 1024 * 1024);
    vx_strbuf_free(&a);
    server_down();
}

static void test_chunked_json_body_over_limit_is_413_while_streaming(void) {
    REQUIRE(server_up());
    const char *head = "POST /v1/json/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n";
    vx_strbuf a = {0};
    uint64_t sent = raw_exchange(head, 50 * 1024 * 1024, true, NULL, &a);
    REQUIRE(a.data);
    CHECK(strncmp(a.data, "HTTP/1.1 413", 12) == 0);
    CHECK(strstr(a.data, "\"body_too_large\"") != NULL);
    CHECK(strstr(a.data, "Connection: close") != NULL);
    CHECK(sent < 50 * 1024 * 1024);
    vx_strbuf_free(&a);
    /* Under the limit, chunked is accepted. */
    CURL *c = curl_easy_init();
    resp r;
    struct curl_slist *h = curl_slist_append(NULL, "Transfer-Encoding: chunked");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "[1,2,3]");
    CHECK_EQ_INT(perform(c, "POST", "/v1/json/7", &r), CURLE_OK);
    CHECK_EQ_INT(r.status, 201);
    resp_free(&r);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    server_down();
}

/* A 20 MB file generated on the fly, with boundary-like lines inside. */
typedef struct gen {
    uint64_t pos, size, hash, state;
} gen;

static size_t gen_read(char *buf, size_t size, size_t n, void *ud) {
    gen *g = ud;
    size_t want = size * n, i = 0;
    for (; i < want && g->pos < g->size; i++, g->pos++) {
        if (g->pos % 100003 < 40) {
            buf[i] = "\r\n--------------------------boundary--\r\n"[g->pos % 100003];
        } else {
            g->state ^= g->state << 13;
            g->state ^= g->state >> 7;
            g->state ^= g->state << 17;
            buf[i] = (char)(g->state & 0xff);
        }
    }
    g->hash = fnv(g->hash, buf, i);
    return i;
}

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1) break;
    if (f) fclose(f);
    return kb;
}

static void test_multipart_upload_of_20mb_streams_byte_identical(void) {
    REQUIRE(server_up());
    long rss_before = rss_kb();
    gen g = {.size = 20 * 1024 * 1024, .hash = FNV_INIT, .state = 88172645463325252ull};
    CURL *c = curl_easy_init();
    curl_mime *mime = curl_mime_init(c);
    curl_mimepart *p = curl_mime_addpart(mime);
    curl_mime_name(p, "model");
    curl_mime_data(p, "convert", CURL_ZERO_TERMINATED);
    p = curl_mime_addpart(mime);
    curl_mime_name(p, "file");
    curl_mime_filename(p, "in.wav");
    curl_mime_type(p, "audio/wav");
    curl_mime_data_cb(p, (curl_off_t)g.size, gen_read, NULL, NULL, &g);
    p = curl_mime_addpart(mime);
    curl_mime_name(p, "params");
    curl_mime_data(p, "{\"rate\":16000}", CURL_ZERO_TERMINATED);
    curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
    resp r;
    CHECK_EQ_INT(perform(c, "POST", "/v1/upload", &r), CURLE_OK);
    CHECK_EQ_INT(r.status, 200);
    json_t *j = json_loadb(r.body.data ? r.body.data : "", r.body.len, 0, NULL);
    json_t *parts = json_object_get(j, "parts");
    REQUIRE(json_array_size(parts) == 3);
    char want[32];
    snprintf(want, sizeof want, "%016llx", (unsigned long long)g.hash);
    json_t *file = json_array_get(parts, 1);
    CHECK_EQ_STR(json_string_value(json_object_get(file, "name")), "file");
    CHECK_EQ_INT(json_integer_value(json_object_get(file, "size")), 20 * 1024 * 1024);
    CHECK_EQ_STR(json_string_value(json_object_get(file, "hash")), want);
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(parts, 0), "text")), "convert");
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(parts, 2), "text")), "{\"rate\":16000}");
    CHECK(json_is_true(json_object_get(j, "offsets_ok")));
    json_decref(j);
#ifndef __SANITIZE_ADDRESS__
    /* The server buffers nothing per upload byte: the process grew far less
     * than the 20 MB that went through it. */
    long grown = rss_kb() - rss_before;
    if (grown >= 8 * 1024) fprintf(stderr, "  RSS grew %ld KiB\n", grown);
    CHECK(grown < 8 * 1024);
#else
    (void)rss_before;
#endif
    resp_free(&r);
    curl_mime_free(mime);
    curl_easy_cleanup(c);
    server_down();
}

static void test_upload_part_refusal_is_answered_before_the_body_is_sent(void) {
    REQUIRE(server_up());
    const uint64_t total = 50 * 1024 * 1024;
    const char *prefix = "--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n"
                         "Content-Type: application/octet-stream\r\n\r\n";
    char head[512];
    snprintf(head, sizeof head,
             "POST /v1/upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XYZ\r\n"
             "X-Refuse-After: 1048576\r\nContent-Length: %llu\r\n\r\n", (unsigned long long)total);
    vx_strbuf a = {0};
    uint64_t sent = raw_exchange(head, total, false, prefix, &a);
    REQUIRE(a.data);
    CHECK(strncmp(a.data, "HTTP/1.1 413", 12) == 0);
    CHECK(strstr(a.data, "\"upload_too_large\"") != NULL);
    CHECK(strstr(a.data, "Content-Type: application/json") != NULL);
    CHECK(strstr(a.data, "Connection: close") != NULL);
    CHECK(strstr(a.data, "X-Request-Id: req_") != NULL);
    if (sent >= total / 2) fprintf(stderr, "  sent %llu of %llu\n", (unsigned long long)sent, (unsigned long long)total);
    CHECK(sent < total / 2);
    vx_strbuf_free(&a);
    /* The server is still healthy afterwards. */
    resp r;
    CHECK_EQ_INT(get("/v1/echo/after", &r), 200);
    resp_free(&r);
    server_down();
}

static void test_begin_refusal_is_answered_before_any_body_byte(void) {
    REQUIRE(server_up());
    const char *head = "POST /v1/upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XYZ\r\n"
                       "X-Refuse: 1\r\nContent-Length: 10000000\r\n\r\n";
    int fd = raw_connect();
    REQUIRE(fd >= 0);
    CHECK_EQ_INT(send(fd, head, strlen(head), MSG_NOSIGNAL), strlen(head));
    vx_strbuf a = {0};
    char buf[4096];
    ssize_t n;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (poll(&p, 1, 10000) > 0 && (n = recv(fd, buf, sizeof buf, 0)) > 0) vx_strbuf_append(&a, buf, (size_t)n);
    close(fd);
    REQUIRE(a.data);
    CHECK(strncmp(a.data, "HTTP/1.1 403", 12) == 0);
    CHECK(strstr(a.data, "\"refused_in_begin\"") != NULL);
    vx_strbuf_free(&a);
    server_down();
}

/* With epoll, MHD 0.9.75 notices a client that vanished mid-body only at the
 * idle timeout (1 s here); with poll at once. Either way the state is freed. */
static void test_client_leaving_mid_upload_frees_handler_state(void) {
    REQUIRE(server_up_timeout(1));
    int before = atomic_load(&states_freed);
    const char *head = "POST /v1/upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XYZ\r\n"
                       "Content-Length: 10000000\r\n\r\n"
                       "--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n";
    int fd = raw_connect();
    REQUIRE(fd >= 0);
    CHECK_EQ_INT(send(fd, head, strlen(head), MSG_NOSIGNAL), strlen(head));
    static char junk[200000];
    memset(junk, 'j', sizeof junk);
    CHECK_EQ_INT(send(fd, junk, sizeof junk, MSG_NOSIGNAL), sizeof junk);
    close(fd);
    for (int i = 0; i < 5000 && atomic_load(&states_freed) == before; i++) {
        struct timespec nap = {.tv_sec = 0, .tv_nsec = 2000000};
        nanosleep(&nap, NULL);
    }
    CHECK_EQ_INT(atomic_load(&states_freed), before + 1);
    server_down();
}

static void test_oversized_headers_are_refused_and_request_state_released(void) {
    REQUIRE(server_up());
    vx_strbuf head = {0};
    vx_strbuf_puts(&head, "GET /v1/echo/x HTTP/1.1\r\nHost: x\r\nX-Big: ");
    for (int i = 0; i < 40000; i++) vx_strbuf_puts(&head, "b");
    vx_strbuf_puts(&head, "\r\n\r\n");
    vx_strbuf a = {0};
    raw_exchange(head.data, 0, false, NULL, &a);
    CHECK(a.data && strncmp(a.data, "HTTP/1.1 4", 10) == 0);
    vx_strbuf_free(&a);
    vx_strbuf_free(&head);
    /* The refused request is no longer counted as in flight (only /metrics is). */
    resp r;
    CHECK_EQ_INT(get("/metrics", &r), 200);
    CHECK(r.body.data && strstr(r.body.data, "voxd_http_requests_in_flight 1\n") != NULL);
    resp_free(&r);
    server_down();
}

static void test_non_multipart_upload_is_415_and_missing_boundary_400(void) {
    REQUIRE(server_up());
    CURL *c = curl_easy_init();
    resp r;
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{}");
    CHECK_EQ_INT(perform(c, "POST", "/v1/upload", &r), CURLE_OK);
    CHECK_EQ_INT(r.status, 415);
    CHECK(error_code_is(&r, "unsupported_media_type"));
    resp_free(&r);
    curl_slist_free_all(h);
    h = curl_slist_append(NULL, "Content-Type: multipart/form-data");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    CHECK_EQ_INT(perform(c, "POST", "/v1/upload", &r), CURLE_OK);
    CHECK_EQ_INT(r.status, 400);
    CHECK(error_code_is(&r, "invalid_multipart"));
    resp_free(&r);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    server_down();
}

static void test_malformed_or_truncated_multipart_is_400(void) {
    REQUIRE(server_up());
    const char *bodies[] = {
        "--XYZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nhello",        /* ends mid-part */
        "--XYZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nhello\r\n--XY", /* cut in the boundary */
        "this is not multipart at all",
        "",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        CURL *c = curl_easy_init();
        resp r;
        struct curl_slist *h = curl_slist_append(NULL, "Content-Type: multipart/form-data; boundary=XYZ");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, bodies[i]);
        CHECK_EQ_INT(perform(c, "POST", "/v1/upload", &r), CURLE_OK);
        if (r.status != 400) fprintf(stderr, "  body %zu -> %ld\n", i, r.status);
        CHECK_EQ_INT(r.status, 400);
        CHECK(error_code_is(&r, "invalid_multipart"));
        resp_free(&r);
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
    }
    server_down();
}

static void test_fd_response_sends_the_requested_range(void) {
    REQUIRE(server_up());
    resp r;
    CHECK_EQ_INT(get("/v1/file?offset=3&length=5", &r), 206);
    CHECK_EQ_STR(r.body.data, "34567");
    CHECK_EQ_STR(r.content_type, "text/plain");
    resp_free(&r);
    CHECK_EQ_INT(get("/v1/file?offset=10&length=6", &r), 206);
    CHECK_EQ_STR(r.body.data, "abcdef");
    resp_free(&r);
    CHECK_EQ_INT(get("/v1/stream", &r), 200);
    CHECK_EQ_INT(r.body.len, 100000);
    CHECK(r.body.data && r.body.data[0] == 'a' && r.body.data[99999] == 'a' + 99999 % 26);
    resp_free(&r);
    server_down();
}

static void test_handler_that_forgets_to_answer_gets_500(void) {
    REQUIRE(server_up());
    resp r;
    CHECK_EQ_INT(get("/v1/forget", &r), 500);
    CHECK(error_code_is(&r, "internal"));
    CHECK(strncmp(r.request_id, "req_", 4) == 0);
    resp_free(&r);
    server_down();
}

static void test_static_files_are_served_and_escapes_refused(void) {
    REQUIRE(server_up());
    resp r;
    CHECK_EQ_INT(get("/", &r), 200);
    CHECK_EQ_STR(r.body.data, "<html>voxd</html>\n");
    CHECK_EQ_STR(r.content_type, "text/html; charset=utf-8");
    CHECK_EQ_STR(r.cache_control, "no-cache");
    CHECK(strncmp(r.request_id, "req_", 4) == 0);
    resp_free(&r);
    CHECK_EQ_INT(get("/app.js", &r), 200);
    CHECK_EQ_STR(r.content_type, "text/javascript; charset=utf-8");
    CHECK_EQ_STR(r.cache_control, "");
    resp_free(&r);
    CHECK_EQ_INT(get("/missing.png", &r), 404);
    CHECK(error_code_is(&r, "not_found"));
    resp_free(&r);
    CHECK_EQ_INT(get("/link.txt", &r), 404);  /* symlink out of the web dir */
    resp_free(&r);
    CHECK_EQ_INT(get("/%2e%2e/secret.txt", &r), 404);
    resp_free(&r);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    CHECK_EQ_INT(perform(c, "GET", "/../secret.txt", &r), CURLE_OK);
    CHECK_EQ_INT(r.status, 404);
    CHECK(!r.body.data || !strstr(r.body.data, "secret"));
    resp_free(&r);
    CHECK_EQ_INT(perform(c, "GET", "/x/../../secret.txt", &r), CURLE_OK);
    CHECK_EQ_INT(r.status, 404);
    resp_free(&r);
    curl_easy_cleanup(c);
    /* API paths never fall through to files. */
    CHECK_EQ_INT(get("/v1/index.html", &r), 404);
    resp_free(&r);
    server_down();
}

static void test_metrics_count_requests_by_route_method_status(void) {
    REQUIRE(server_up());
    resp r;
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(get("/v1/echo/m", &r), 200);
        resp_free(&r);
    }
    CHECK_EQ_INT(get("/v1/nope", &r), 404);
    resp_free(&r);
    CHECK_EQ_INT(get("/app.js", &r), 200);
    resp_free(&r);
    CHECK_EQ_INT(get("/metrics", &r), 200);
    const char *t = r.body.data ? r.body.data : "";
    CHECK(strstr(t, "# TYPE voxd_http_requests_total counter\n") != NULL);
    CHECK(strstr(t, "voxd_http_requests_total{route=\"/v1/echo/{id}\",method=\"GET\",status=\"200\"} 3\n") != NULL);
    CHECK(strstr(t, "voxd_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1\n") != NULL);
    CHECK(strstr(t, "voxd_http_requests_total{route=\"static\",method=\"GET\",status=\"200\"} 1\n") != NULL);
    CHECK(strstr(t, "# TYPE voxd_http_request_duration_seconds histogram\n") != NULL);
    CHECK(strstr(t, "voxd_http_request_duration_seconds_bucket{route=\"/v1/echo/{id}\",le=\"+Inf\"} 3\n") != NULL);
    CHECK(strstr(t, "voxd_http_request_duration_seconds_count{route=\"/v1/echo/{id}\"} 3\n") != NULL);
    CHECK(strstr(t, "voxd_http_request_duration_seconds_bucket{route=\"/v1/echo/{id}\",le=\"0.001\"}") != NULL);
    CHECK(strstr(t, "voxd_http_requests_in_flight 1\n") != NULL);
    resp_free(&r);
    server_down();
}

static void *slow_client(void *arg) {
    resp *r = arg;
    get("/v1/slow", r);
    return NULL;
}

static void test_graceful_stop_lets_in_flight_request_finish(void) {
    REQUIRE(server_up());
    resp r;
    memset(&r, 0, sizeof r);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, slow_client, &r) == 0);
    while (!atomic_load(&slow_started)) {
        struct timespec nap = {.tv_sec = 0, .tv_nsec = 1000000};
        nanosleep(&nap, NULL);
    }
    int stopped_port = port;
    vx_http_stop(srv, 10000);
    srv = NULL;
    pthread_join(t, NULL);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_STR(r.body.data, "{\"slow\":true}");
    resp_free(&r);
    /* Nothing listens any more. */
    port = stopped_port;
    CHECK(raw_connect() < 0);
    server_down();
}

static void test_bad_listen_address_is_an_error(void) {
    vx_crypto_init();
    vx_log_set_level(VX_LOG_ERROR);
    const char *bad[] = {"nonsense", "127.0.0.1:99999", "example.com:80", ":80", "127.0.0.1:", "1.2.3:80"};
    vx_config c;
    vx_config_defaults(&c);
    vx_app a = {.cfg = &c};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(c.listen, sizeof c.listen, "%s", bad[i]);
        vx_err err = {0};
        vx_http_server *s = vx_http_start(&a, routes, sizeof routes / sizeof routes[0], &err);
        CHECK(s == NULL);
        CHECK_EQ_STR(err.code, "invalid_listen");
        if (s) vx_http_stop(s, 0);
    }
    /* A port already taken. */
    snprintf(c.listen, sizeof c.listen, "localhost:0");
    vx_err err = {0};
    vx_http_server *first = vx_http_start(&a, routes, sizeof routes / sizeof routes[0], &err);
    REQUIRE(first);
    snprintf(c.listen, sizeof c.listen, "127.0.0.1:%d", vx_http_port(first));
    vx_http_server *second = vx_http_start(&a, routes, sizeof routes / sizeof routes[0], &err);
    CHECK(second == NULL);
    CHECK_EQ_STR(err.code, "listen_failed");
    if (second) vx_http_stop(second, 0);
    vx_http_stop(first, 0);
}

TEST_MAIN(TEST_ENTRY(test_json_round_trip_with_capture_query_and_request_id),
          TEST_ENTRY(test_head_on_get_route_sends_headers_without_body),
          TEST_ENTRY(test_keep_alive_reuses_the_connection),
          TEST_ENTRY(test_unknown_path_404_and_wrong_method_405_with_allow),
          TEST_ENTRY(test_json_body_over_limit_is_413_from_content_length_before_the_body),
          TEST_ENTRY(test_chunked_json_body_over_limit_is_413_while_streaming),
          TEST_ENTRY(test_multipart_upload_of_20mb_streams_byte_identical),
          TEST_ENTRY(test_upload_part_refusal_is_answered_before_the_body_is_sent),
          TEST_ENTRY(test_begin_refusal_is_answered_before_any_body_byte),
          TEST_ENTRY(test_client_leaving_mid_upload_frees_handler_state),
          TEST_ENTRY(test_oversized_headers_are_refused_and_request_state_released),
          TEST_ENTRY(test_non_multipart_upload_is_415_and_missing_boundary_400),
          TEST_ENTRY(test_malformed_or_truncated_multipart_is_400),
          TEST_ENTRY(test_fd_response_sends_the_requested_range),
          TEST_ENTRY(test_handler_that_forgets_to_answer_gets_500),
          TEST_ENTRY(test_static_files_are_served_and_escapes_refused),
          TEST_ENTRY(test_metrics_count_requests_by_route_method_status),
          TEST_ENTRY(test_graceful_stop_lets_in_flight_request_finish),
          TEST_ENTRY(test_bad_listen_address_is_an_error))
