/* fuzz_multipart.c - libFuzzer target for streaming multipart uploads:
 * src/http/server.c + upload.c around MHD's post processor, and the job
 * upload hooks of src/api/jobs.c. The post processor only exists on a live
 * MHD connection, so one real server runs in-process on 127.0.0.1 port 0
 * and each input is sent to it as one HTTP request over loopback. */
#include <arpa/inet.h>
#include <errno.h>
#include <libavutil/log.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include "../../src/api/handlers.h"
#include "../../src/blob/blob.h"
#include "../../src/core/accounts.h"
#include "../../src/core/jobs.h"
#include "../../src/http/http.h"
#include "../../src/store/store.h"
#include "../../src/util/crypto.h"
#include "../../src/util/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- a test route that checks the chunk contract of http.h ---- */

typedef struct parts {
    char name[64];        /* current part (truncated copy, for the check) */
    uint64_t part_bytes;  /* bytes of the current part so far */
    uint64_t total;
    int n;
} parts;

static int t_begin(vx_request *req, vx_err *err) {
    parts *p = calloc(1, sizeof *p);
    if (!p) return vx_err_set(err, VX_E_INTERNAL, "internal", "out of memory");
    vx_req_set_data(req, p, free);
    return 0;
}

/* Chunks of one part arrive in order with increasing offsets; a new part
 * starts at offset 0. Anything else breaks what every upload hook assumes. */
static int t_part(vx_request *req, const vx_upload_chunk *c, vx_err *err) {
    parts *p = vx_req_data(req);
    if (!c->name || !c->data) abort();
    if (c->offset == 0) {
        snprintf(p->name, sizeof p->name, "%s", c->name);
        p->part_bytes = 0;
        p->n++;
    } else if (c->offset != p->part_bytes || strncmp(p->name, c->name, sizeof p->name - 1) != 0) {
        fprintf(stderr, "fuzz_multipart: chunk of '%s' at offset %llu, expected '%s' at %llu\n", c->name,
                (unsigned long long)c->offset, p->name, (unsigned long long)p->part_bytes);
        abort();
    }
    if (c->filename) (void)vx_jobs_filename_valid(c->filename);
    p->part_bytes += c->size;
    p->total += c->size;
    (void)err;
    return 0;
}

static void t_handle(vx_request *req) {
    parts *p = vx_req_data(req);
    vx_respond_json(req, 200, json_pack("{s:i,s:I}", "parts", p->n, "bytes", (json_int_t)p->total));
}

static const vx_route routes[] = {
    {.method = "POST", .pattern = "/up", .body = VX_BODY_UPLOAD, .begin = t_begin, .upload_part = t_part,
     .handle = t_handle},
    /* the real job submission: authentication, spooling, fields, probe,
     * price; the fuzz user has no credits, so nothing is ever enqueued */
    {.method = "POST", .pattern = "/v1/jobs", .body = VX_BODY_UPLOAD, .begin = vx_api_job_upload_begin,
     .upload_part = vx_api_job_upload_part, .handle = vx_api_job_submit},
};

/* ---- the server, started once ---- */

static vx_config cfg;
static vx_app app;
static vx_http_server *srv;
static int port;
static char dir[256];
static char api_key[VX_API_KEY_SIZE];

static void teardown(void) {
    if (srv) vx_http_stop(srv, 1000);
    srv = NULL;
    if (app.blob) vx_blob_close(app.blob);
    if (app.store) vx_store_close(app.store);
    app.blob = NULL;
    app.store = NULL;
    if (dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "fuzz_multipart: could not remove %s\n", dir);
    }
}

static void fail(const char *what, const vx_err *err) {
    fprintf(stderr, "fuzz_multipart: %s failed: %s %s\n", what, err->code, err->message);
    teardown();
    exit(1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    setenv("VOXD_FAST_PASSWORD_HASH", "1", 1);
    vx_crypto_init();
    vx_log_set_level(VX_LOG_ERROR);
    av_log_set_level(AV_LOG_QUIET);
    /* scripts/fuzz.sh names a scratch dir it removes even after a crash */
    const char *base = getenv("VOXD_FUZZ_TMP");
    struct stat sb;
    if (!base || !base[0]) base = stat("/dev/shm", &sb) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%.200s/voxd-fuzz-mp-XXXXXX", base);
    if (!mkdtemp(dir)) {
        perror("fuzz_multipart: mkdtemp");
        exit(1);
    }
    vx_config_defaults(&cfg);
    snprintf(cfg.listen, sizeof cfg.listen, "127.0.0.1:0");
    snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s", dir);
    snprintf(cfg.db_url, sizeof cfg.db_url, "sqlite://%s/voxd.db", dir);
    snprintf(cfg.blob_url, sizeof cfg.blob_url, "file://%s/blobs", dir);
    cfg.web_dir[0] = '\0';
    cfg.http_threads = 1;
    cfg.request_timeout_s = 2; /* incomplete raw requests linger until then */
    cfg.access_log = false;
    cfg.signup_grant_micro = 0;
    cfg.max_upload_bytes = 32 * 1024;
    cfg.max_duration_s = 30;
    app.cfg = &cfg;
    snprintf(app.tmp_dir, sizeof app.tmp_dir, "%s/tmp", dir);
    mkdir(app.tmp_dir, 0700);
    vx_err err = {0};
    app.store = vx_store_open(cfg.db_url, &err);
    if (!app.store) fail("store", &err);
    app.blob = vx_blob_open(cfg.blob_url, &err);
    if (!app.blob) fail("blob", &err);
    char pw[64];
    bool created;
    if (vx_accounts_bootstrap(&app, pw, sizeof pw, &created, &err) != 0) fail("bootstrap", &err);
    vx_user user;
    if (vx_accounts_signup(&app, "fuzzer", "a long enough fuzz secret", NULL, &user, &err) != 0)
        fail("signup", &err);
    vx_api_key key;
    if (vx_accounts_create_api_key(&app, user.id, "fuzz", &key, api_key, &err) != 0) fail("api key", &err);
    srv = vx_http_start(&app, routes, sizeof routes / sizeof routes[0], &err);
    if (!srv) fail("server", &err);
    port = vx_http_port(srv);
    atexit(teardown);
    return 0;
}

/* ---- the client ---- */

/* Appends to a growing buffer; aborts on OOM (a harness failure, not a find). */
typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static void put(buf *b, const void *data, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) abort();
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void putf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(buf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* libFuzzer's timer signal can interrupt connect(); a fresh socket is the
 * simplest retry. */
static int connect_server(void) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int attempt = 0; attempt < 20; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) abort();
        struct timeval tv = {.tv_sec = 15};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) return fd;
        int e = errno;
        close(fd);
        if (e != EINTR && e != EAGAIN && e != ECONNREFUSED) {
            fprintf(stderr, "fuzz_multipart: connect: %s\n", strerror(e));
            abort();
        }
    }
    fprintf(stderr, "fuzz_multipart: cannot connect to the server\n");
    abort();
}

/* Sends the request and reads the whole answer (the request asks for
 * Connection: close). Returns the status code, or 0 if none came back.
 * patient = false: a raw request may be incomplete, and MHD notices a
 * half-closed client only at its idle timeout, so wait 20 ms at most (a
 * complete request to these routes is answered well within that; one
 * answered later is merely not checked). */
static int exchange(const buf *request, buf *answer, bool patient) {
    int fd = connect_server();
    if (!patient) {
        struct timeval tv = {.tv_usec = 20 * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    size_t sent = 0;
    while (sent < request->len) {
        ssize_t n = send(fd, request->p + sent, request->len - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break; /* the server answered early and closed: read its answer */
        sent += (size_t)n;
    }
    char tmp[4096];
    for (;;) {
        ssize_t n = recv(fd, tmp, sizeof tmp, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && !patient) break;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            fprintf(stderr, "fuzz_multipart: no complete answer within 15 s\n");
            abort();
        }
        if (n <= 0) break;
        put(answer, tmp, (size_t)n);
    }
    /* RST rather than TIME_WAIT: a minute of fuzzing opens ~100k connections */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    int status = 0;
    if (answer->len >= 12 && strncmp(answer->p, "HTTP/1.1 ", 9) == 0) status = atoi(answer->p + 9);
    return status;
}

static void build_request(buf *req, bool real, bool quoted, const char *boundary, bool chunked, size_t chunk,
                          const uint8_t *body, size_t body_len) {
    putf(req, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n", real ? "/v1/jobs" : "/up");
    if (real) putf(req, "Authorization: Bearer %s\r\n", api_key);
    putf(req, "Content-Type: multipart/form-data; boundary=%s%s%s\r\n", quoted ? "\"" : "", boundary,
         quoted ? "\"" : "");
    if (chunked) {
        putf(req, "Transfer-Encoding: chunked\r\n\r\n");
        for (size_t off = 0; off < body_len; off += chunk) {
            size_t n = body_len - off < chunk ? body_len - off : chunk;
            putf(req, "%zx\r\n", n);
            put(req, body + off, n);
            put(req, "\r\n", 2);
        }
        putf(req, "0\r\n\r\n");
    } else {
        putf(req, "Content-Length: %zu\r\n\r\n", body_len);
        put(req, body, body_len);
    }
}

/* Input layout: byte 0 flags (bit 0 chunked transfer encoding, bit 1 quoted
 * boundary, bit 2 the real /v1/jobs route, bit 3 raw, bits 4-7 chunk size),
 * then the boundary up to the first '\n' (printable bytes only, at most 70),
 * then the body. Raw: the bytes after the boundary line are the whole
 * request (request line and headers too), sent as they are. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2 || size > 16384) return 0;
    uint8_t flags = data[0];
    const uint8_t *p = data + 1, *end = data + size;
    const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) return 0;
    char boundary[71];
    size_t blen = 0;
    for (const uint8_t *q = p; q < nl && blen < sizeof boundary - 1; q++)
        boundary[blen++] = (*q >= 0x20 && *q < 0x7f) ? (char)*q : 'x';
    boundary[blen] = '\0';
    const uint8_t *body = nl + 1;
    size_t body_len = (size_t)(end - body);
    bool chunked = flags & 1, quoted = flags & 2, real = flags & 4, raw = flags & 8;
    static const size_t chunk_sizes[16] = {1, 2, 3, 5, 8, 16, 31, 64, 100, 128, 255, 512, 1000, 1024, 4096, 8192};
    size_t chunk = chunk_sizes[flags >> 4];

    buf req = {0};
    if (raw) {
        put(&req, body, body_len);
    } else {
        build_request(&req, real, quoted, boundary, chunked, chunk, body, body_len);
    }

    buf answer = {0};
    int status = exchange(&req, &answer, !raw);
    /* A client's bytes may earn any 4xx, never a 5xx or silence. The real
     * route cannot answer 202: the fuzz user has no credits. Raw requests
     * may be cut short (no answer) or go anywhere, but never earn a 5xx from
     * voxd (its answers carry X-Request-Id; MHD's own 505 for HTTP/0.x is fine). */
    bool from_voxd = answer.p && strstr(answer.p, "\r\nX-Request-Id: ");
    bool ok = raw ? (status < 500 || !from_voxd)
                  : real ? (status >= 400 && status < 500) : (status == 200 || status == 400);
    if (!ok) {
        fprintf(stderr, "fuzz_multipart: unexpected answer to %s request:\n%.*s\n",
                raw ? "a raw" : real ? "a /v1/jobs" : "an /up", (int)(answer.len < 2000 ? answer.len : 2000),
                answer.p ? answer.p : "(nothing)");
        abort();
    }
    free(req.p);
    free(answer.p);
    return 0;
}
