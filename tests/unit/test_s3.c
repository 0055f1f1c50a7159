/* test_s3.c - the s3 blob backend (src/blob/s3.c) against a real
 * S3-compatible server on loopback: tests/s3/s3server.sh starts s3rver behind
 * a strict SigV4 verifier on its own port and data directory (installing it
 * with npm ci from the lockfile the first time) and stops it by PID at exit.
 * Covers round trips (single PUT and multipart), ranges, stat, remove,
 * fetch_local, keys, errors (missing, denied, down, injected 5xx), retries,
 * multipart abort, presigned URLs used by a plain HTTP client, virtual-host
 * style, prefixes, session tokens and concurrent use. Run from the repo root. */
#include <curl/curl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "../../src/blob/blob.h"
#include "../../src/blob/sigv4.h"
#include "../../src/util/crypto.h"
#include "test.h"

#define SCRIPT "tests/s3/s3server.sh"
#define KEY_ID "VOXDTESTKEY"
#define SECRET "voxd-test-secret/with+odd=chars"
#define TOKEN "session-token/for+tests="
#define BUCKET "voxd-unit"
#define MIB (1024 * 1024)

typedef struct test_server {
    char dir[64];
    int port;
    bool tried;
} test_server;

static test_server plain_srv, token_srv;
static char scratch[64];

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) { return remove(path); }

static void stop_server(test_server *s) {
    if (!s->dir[0]) return;
    char cmd[256];
    snprintf(cmd, sizeof cmd, SCRIPT " stop '%s'", s->dir);
    if (system(cmd) != 0) fprintf(stderr, "  could not stop the s3 test server in %s\n", s->dir);
    nftw(s->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    s->dir[0] = '\0';
}

static void cleanup(void) {
    stop_server(&plain_srv);
    stop_server(&token_srv);
    if (scratch[0]) nftw(scratch, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* Starts (once) a server; 0 when it runs. A session token makes it demand one. */
static int start_server(test_server *s, const char *token) {
    if (s->tried) return s->port > 0 ? 0 : -1;
    s->tried = true;
    if (access(SCRIPT, X_OK) != 0) {
        fprintf(stderr, "  %s not found: run the unit tests from the repository root\n", SCRIPT);
        return -1;
    }
    snprintf(s->dir, sizeof s->dir, "/tmp/voxd-s3srv-XXXXXX");
    if (!mkdtemp(s->dir)) return -1;
    setenv("S3_TEST_ACCESS_KEY", KEY_ID, 1);
    setenv("S3_TEST_SECRET_KEY", SECRET, 1);
    setenv("S3_TEST_REGION", "us-east-1", 1);
    setenv("S3_TEST_BUCKET", BUCKET, 1);
    char owner[24];
    snprintf(owner, sizeof owner, "%d", (int)getpid()); /* a crash of ours stops it too */
    setenv("S3_TEST_OWNER_PID", owner, 1);
    if (token) setenv("S3_TEST_SESSION_TOKEN", token, 1);
    else unsetenv("S3_TEST_SESSION_TOKEN");
    char cmd[256];
    snprintf(cmd, sizeof cmd, SCRIPT " start '%s' 0", s->dir);
    FILE *p = popen(cmd, "r");
    if (!p || fscanf(p, "%d", &s->port) != 1) s->port = 0;
    int rc = p ? pclose(p) : -1;
    unsetenv("S3_TEST_SESSION_TOKEN");
    if (rc != 0 || s->port <= 0) {
        fprintf(stderr, "  the s3 test server did not start; its log:\n");
        snprintf(cmd, sizeof cmd, "tail -n 20 '%s/log' >&2", s->dir);
        if (system(cmd) != 0) fprintf(stderr, "  (no log)\n");
        s->port = 0;
        return -1;
    }
    return 0;
}

static void setup_env(void) {
    static bool done;
    if (done) return;
    done = true;
    vx_crypto_init();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(scratch, sizeof scratch, "/tmp/voxd-s3test-XXXXXX");
    if (!mkdtemp(scratch)) scratch[0] = '\0';
    setenv("AWS_ACCESS_KEY_ID", KEY_ID, 1);
    setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
    unsetenv("AWS_SESSION_TOKEN");
    atexit(cleanup);
}

/* Opens the backend on the plain server with extra URL options. */
static vx_blob *open_blob(const char *options) {
    setup_env();
    if (start_server(&plain_srv, NULL) != 0) return NULL;
    char url[512];
    snprintf(url, sizeof url, "s3://" BUCKET "?endpoint=http://127.0.0.1:%d&region=us-east-1%s", plain_srv.port,
             options ? options : "");
    vx_err err = {0};
    vx_blob *b = vx_blob_open(url, &err);
    if (!b) fprintf(stderr, "  open failed: %s (%s)\n", err.message, err.code);
    return b;
}

/* Writes `len` bytes of a pattern (byte i = (i * 7 + i / 251 + seed)) to a new scratch file. */
static int make_file(char *out, size_t cap, const char *name, size_t len, unsigned seed, char sha[VX_SHA256_HEX_SIZE]) {
    snprintf(out, cap, "%s/%s", scratch, name);
    FILE *f = fopen(out, "wb");
    if (!f) return -1;
    vx_sha256 h;
    vx_sha256_init(&h);
    unsigned char chunk[4096];
    for (size_t i = 0; i < len;) {
        size_t n = len - i < sizeof chunk ? len - i : sizeof chunk;
        for (size_t j = 0; j < n; j++) chunk[j] = (unsigned char)(((i + j) * 7 + (i + j) / 251 + seed) & 0xff);
        fwrite(chunk, 1, n, f);
        vx_sha256_update(&h, chunk, n);
        i += n;
    }
    if (sha) vx_sha256_final_hex(&h, sha);
    return fclose(f);
}

static unsigned char pattern_at(size_t i, unsigned seed) { return (unsigned char)((i * 7 + i / 251 + seed) & 0xff); }

static int sha_of_file(const char *path, char sha[VX_SHA256_HEX_SIZE]) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    vx_sha256 h;
    vx_sha256_init(&h);
    unsigned char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) vx_sha256_update(&h, buf, n);
    fclose(f);
    vx_sha256_final_hex(&h, sha);
    return 0;
}

typedef struct body {
    unsigned char *data;
    size_t len;
} body;

static size_t collect(char *p, size_t size, size_t n, void *user) {
    body *b = user;
    unsigned char *d = realloc(b->data, b->len + size * n + 1);
    if (!d) return 0;
    memcpy(d + b->len, p, size * n);
    b->data = d;
    b->len += size * n;
    return size * n;
}

/* A plain HTTP client: libcurl without any signing. Returns the status. */
static long http_plain(const char *method, const char *url, const void *data, size_t len, body *out) {
    CURL *h = curl_easy_init();
    body sink = {0};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out ? out : &sink);
    if (data) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, data);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    long status = 0;
    if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    free(sink.data);
    return status;
}

/* POST to the test server's /__control/ hooks (fault injection). */
static void control(const char *what) {
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/__control/%s", plain_srv.port, what);
    CHECK_EQ_INT(http_plain("POST", url, "", 0, NULL), 204);
}

static int open_uploads(void) {
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/__control/uploads?bucket=" BUCKET, plain_srv.port);
    body b = {0};
    int n = -1;
    if (http_plain("GET", url, NULL, 0, &b) == 200 && b.data) {
        b.data[b.len] = '\0';
        n = atoi((char *)b.data);
    }
    free(b.data);
    return n;
}

static int count_entries(const char *dir) {
    char cmd[256];
    int n = -1;
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    if (p && fscanf(p, "%d", &n) != 1) n = -1;
    if (p) pclose(p);
    return n;
}

static void test_urls_and_credentials_are_validated(void) {
    setup_env();
    vx_err err = {0};
    const char *bad[] = {
        "s3://",
        "s3://Bad_Bucket?endpoint=http://127.0.0.1:1",
        "s3://ok-bucket?endpoint=ftp://127.0.0.1:1",
        "s3://ok-bucket?endpoint=http://127.0.0.1:1/path",
        "s3://ok-bucket?endpoint=http://127.0.0.1:1&style=sideways",
        "s3://ok-bucket?endpoint=http://127.0.0.1:1&colour=blue",
        "s3://ok-bucket?endpoint=http://127.0.0.1:1&part_size=1M",
        "s3://ok-bucket?endpoint=http://127.0.0.1:1&multipart_threshold=4M",
        "s3://ok-bucket?endpoint=http://127.0.0.1:1&retries=11",
        "s3://ok-bucket?endpoint=http://127.0.0.1:1&prefix=../up",
        "s3://ok-bucket?endpoint=http://127.0.0.1:1&region=US_EAST",
        "s3://ok-bucket?endpoint",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vx_blob *b = vx_blob_open(bad[i], &err);
        if (b) fprintf(stderr, "  accepted %s\n", bad[i]);
        CHECK(b == NULL);
        vx_blob_close(b);
        CHECK_EQ_INT(err.status, VX_E_INVALID);
        CHECK_EQ_STR(err.code, "invalid_blob_url");
    }
    /* Valid forms open without contacting anything. */
    const char *good[] = {
        "s3://ok-bucket",
        "s3://ok-bucket/some/prefix?region=eu-west-1",
        "s3://ok.dotted.bucket?region=eu-west-1&style=path",
        "s3://ok-bucket?endpoint=http%3A%2F%2F127.0.0.1%3A1&part_size=5M&multipart_threshold=1G&retries=0",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        vx_blob *b = vx_blob_open(good[i], &err);
        if (!b) fprintf(stderr, "  refused %s: %s\n", good[i], err.message);
        CHECK(b != NULL);
        vx_blob_close(b);
    }
    unsetenv("AWS_SECRET_ACCESS_KEY");
    CHECK(vx_blob_open("s3://ok-bucket?endpoint=http://127.0.0.1:1", &err) == NULL);
    CHECK_EQ_STR(err.code, "missing_credentials");
    CHECK(strstr(err.message, "AWS_SECRET_ACCESS_KEY") != NULL);
    setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
}

static void test_small_put_round_trips_with_ranges_stat_fetch_and_remove(void) {
    vx_blob *b = open_blob(NULL);
    REQUIRE(b != NULL);
    vx_err err = {0};
    char src[160], sha[VX_SHA256_HEX_SIZE], got_sha[VX_SHA256_HEX_SIZE];
    REQUIRE(make_file(src, sizeof src, "small", 100000, 3, sha) == 0);
    CHECK_EQ_INT(b->ops->ping(b, &err), 0);
    CHECK_EQ_INT(b->ops->put_file(b, "users/u1/job_1/input.wav", src, &err), 0);
    CHECK(access(src, F_OK) != 0); /* the spool file is consumed */
    int64_t size = 0;
    CHECK_EQ_INT(b->ops->stat(b, "users/u1/job_1/input.wav", &size, &err), 0);
    CHECK_EQ_INT(size, 100000);

    vx_blob_reader r;
    REQUIRE(b->ops->reader_open(b, "users/u1/job_1/input.wav", &r, &err) == 0);
    CHECK_EQ_INT(r.size, 100000);
    CHECK_EQ_INT(r.fd, -1);
    unsigned char buf[300];
    CHECK_EQ_INT(b->ops->reader_pread(&r, buf, sizeof buf, 5000, &err), 300);
    bool same = true;
    for (size_t i = 0; i < sizeof buf; i++) same &= buf[i] == pattern_at(5000 + i, 3);
    CHECK(same);
    CHECK_EQ_INT(b->ops->reader_pread(&r, buf, sizeof buf, 99900, &err), 100);
    CHECK_EQ_INT(buf[99], pattern_at(99999, 3));
    CHECK_EQ_INT(b->ops->reader_pread(&r, buf, sizeof buf, 100000, &err), 0);
    CHECK_EQ_INT(b->ops->reader_pread(&r, buf, sizeof buf, -1, &err), -1);
    /* sequential small reads, as an HTTP response streams them */
    vx_sha256 h;
    vx_sha256_init(&h);
    int64_t pos = 0;
    for (ssize_t n; (n = b->ops->reader_pread(&r, buf, sizeof buf, pos, &err)) > 0; pos += n)
        vx_sha256_update(&h, buf, (size_t)n);
    vx_sha256_final_hex(&h, got_sha);
    CHECK_EQ_INT(pos, 100000);
    CHECK_EQ_STR(got_sha, sha);
    b->ops->reader_close(&r);

    char local[512];
    bool is_temp = false;
    REQUIRE(b->ops->fetch_local(b, "users/u1/job_1/input.wav", scratch, local, sizeof local, &is_temp, &err) == 0);
    CHECK(is_temp);
    CHECK(strncmp(local, scratch, strlen(scratch)) == 0);
    CHECK(strstr(local, ".wav") != NULL);
    REQUIRE(sha_of_file(local, got_sha) == 0);
    CHECK_EQ_STR(got_sha, sha);
    unlink(local);

    CHECK_EQ_INT(b->ops->remove(b, "users/u1/job_1/input.wav", &err), 0);
    CHECK_EQ_INT(b->ops->stat(b, "users/u1/job_1/input.wav", &size, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_NOT_FOUND);
    CHECK_EQ_INT(b->ops->remove(b, "users/u1/job_1/input.wav", &err), 0);

    /* an empty object is an object */
    REQUIRE(make_file(src, sizeof src, "empty", 0, 0, NULL) == 0);
    CHECK_EQ_INT(b->ops->put_file(b, "empty/one", src, &err), 0);
    CHECK_EQ_INT(b->ops->stat(b, "empty/one", &size, &err), 0);
    CHECK_EQ_INT(size, 0);
    vx_blob_close(b);
}

static void test_multipart_upload_round_trips_byte_identical(void) {
    vx_blob *b = open_blob("&multipart_threshold=5M&part_size=5M");
    REQUIRE(b != NULL);
    vx_err err = {0};
    size_t len = 12 * MIB + 4321; /* three parts: 5 + 5 + 2 MiB */
    char src[160], sha[VX_SHA256_HEX_SIZE], got_sha[VX_SHA256_HEX_SIZE];
    REQUIRE(make_file(src, sizeof src, "big", len, 9, sha) == 0);
    CHECK_EQ_INT(b->ops->put_file(b, "users/u2/job_2/input.flac", src, &err), 0);
    CHECK(access(src, F_OK) != 0);
    CHECK_EQ_INT(open_uploads(), 0);
    int64_t size = 0;
    CHECK_EQ_INT(b->ops->stat(b, "users/u2/job_2/input.flac", &size, &err), 0);
    CHECK_EQ_INT(size, (int64_t)len);

    char local[512];
    bool is_temp = false;
    REQUIRE(b->ops->fetch_local(b, "users/u2/job_2/input.flac", scratch, local, sizeof local, &is_temp, &err) == 0);
    REQUIRE(sha_of_file(local, got_sha) == 0);
    CHECK_EQ_STR(got_sha, sha);
    unlink(local);

    /* a read across the part boundary, large enough to bypass read-ahead */
    vx_blob_reader r;
    REQUIRE(b->ops->reader_open(b, "users/u2/job_2/input.flac", &r, &err) == 0);
    size_t want = 2 * MIB;
    unsigned char *buf = malloc(want);
    REQUIRE(buf != NULL);
    int64_t off = 5 * MIB - 777;
    CHECK_EQ_INT(b->ops->reader_pread(&r, buf, want, off, &err), (ssize_t)want);
    bool same = true;
    for (size_t i = 0; i < want; i++) same &= buf[i] == pattern_at((size_t)off + i, 9);
    CHECK(same);
    CHECK_EQ_INT(b->ops->reader_pread(&r, buf, want, (int64_t)len - 10, &err), 10);
    CHECK_EQ_INT(buf[9], pattern_at(len - 1, 9));
    free(buf);
    b->ops->reader_close(&r);
    vx_blob_close(b);
}

static void test_failed_multipart_upload_is_aborted_and_keeps_the_file(void) {
    vx_blob *b = open_blob("&multipart_threshold=5M&part_size=5M&retries=1");
    REQUIRE(b != NULL);
    vx_err err = {0};
    char src[160];
    REQUIRE(make_file(src, sizeof src, "doomed", 6 * MIB, 1, NULL) == 0);
    control("fault?status=503&count=100&method=PUT");
    CHECK_EQ_INT(b->ops->put_file(b, "users/u3/job_3/output.wav", src, &err), -1);
    control("clear");
    CHECK_EQ_INT(err.status, VX_E_UNAVAILABLE);
    CHECK_EQ_STR(err.code, "storage_unavailable");
    CHECK_EQ_INT(open_uploads(), 0); /* aborted: no parts left behind */
    CHECK(access(src, F_OK) == 0);   /* the caller still has its file */
    int64_t size;
    CHECK_EQ_INT(b->ops->stat(b, "users/u3/job_3/output.wav", &size, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_NOT_FOUND);
    /* and the same file goes up once the store recovers */
    CHECK_EQ_INT(b->ops->put_file(b, "users/u3/job_3/output.wav", src, &err), 0);
    CHECK_EQ_INT(b->ops->stat(b, "users/u3/job_3/output.wav", &size, &err), 0);
    CHECK_EQ_INT(size, 6 * MIB);
    vx_blob_close(b);
}

static void test_transient_failures_are_retried(void) {
    vx_blob *b = open_blob(NULL);
    REQUIRE(b != NULL);
    vx_err err = {0};
    char src[160];
    REQUIRE(make_file(src, sizeof src, "retry", 5000, 2, NULL) == 0);
    control("fault?status=503&count=2&method=PUT");
    CHECK_EQ_INT(b->ops->put_file(b, "retry/a", src, &err), 0);
    control("fault?status=0&count=1&method=HEAD"); /* a dropped connection */
    int64_t size = 0;
    CHECK_EQ_INT(b->ops->stat(b, "retry/a", &size, &err), 0);
    CHECK_EQ_INT(size, 5000);
    control("fault?status=500&count=1&method=GET");
    char local[512];
    bool is_temp = false;
    CHECK_EQ_INT(b->ops->fetch_local(b, "retry/a", scratch, local, sizeof local, &is_temp, &err), 0);
    struct stat sb;
    CHECK(stat(local, &sb) == 0 && sb.st_size == 5000);
    unlink(local);
    /* more failures than retries: a clear error */
    control("fault?status=503&count=10&method=HEAD");
    CHECK_EQ_INT(b->ops->stat(b, "retry/a", &size, &err), -1);
    control("clear");
    CHECK_EQ_INT(err.status, VX_E_UNAVAILABLE);
    CHECK_EQ_STR(err.code, "storage_unavailable");
    vx_blob_close(b);
}

static void test_missing_objects_are_not_found(void) {
    vx_blob *b = open_blob(NULL);
    REQUIRE(b != NULL);
    vx_err err = {0};
    int64_t size;
    vx_blob_reader r;
    CHECK_EQ_INT(b->ops->stat(b, "nope/none.wav", &size, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_NOT_FOUND);
    CHECK_EQ_STR(err.code, "object_not_found");
    CHECK_EQ_INT(b->ops->reader_open(b, "nope/none.wav", &r, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_NOT_FOUND);
    int before = count_entries(scratch);
    char local[512];
    bool is_temp = true;
    CHECK_EQ_INT(b->ops->fetch_local(b, "nope/none.wav", scratch, local, sizeof local, &is_temp, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_NOT_FOUND);
    CHECK(!is_temp);
    CHECK_EQ_INT(count_entries(scratch), before); /* no temporary file left */
    CHECK_EQ_INT(b->ops->remove(b, "nope/none.wav", &err), 0);
    vx_blob_close(b);
}

static void test_invalid_keys_are_refused_by_every_hook(void) {
    vx_blob *b = open_blob(NULL);
    REQUIRE(b != NULL);
    vx_err err = {0};
    char src[160];
    REQUIRE(make_file(src, sizeof src, "keyed", 10, 1, NULL) == 0);
    const char *bad[] = {"../escape", "/abs", "a//b", ".hidden/x", "a b", "a?b", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t size;
        vx_blob_reader r;
        char local[256];
        bool is_temp;
        CHECK_EQ_INT(b->ops->put_file(b, bad[i], src, &err), -1);
        CHECK_EQ_STR(err.code, "invalid_key");
        CHECK_EQ_INT(b->ops->stat(b, bad[i], &size, &err), -1);
        CHECK_EQ_STR(err.code, "invalid_key");
        CHECK_EQ_INT(b->ops->reader_open(b, bad[i], &r, &err), -1);
        CHECK_EQ_STR(err.code, "invalid_key");
        CHECK_EQ_INT(b->ops->fetch_local(b, bad[i], scratch, local, sizeof local, &is_temp, &err), -1);
        CHECK_EQ_STR(err.code, "invalid_key");
        CHECK_EQ_INT(b->ops->remove(b, bad[i], &err), -1);
        CHECK_EQ_STR(err.code, "invalid_key");
        CHECK(vx_blob_presign(b, "GET", bad[i], 60, &err) == NULL);
        CHECK_EQ_STR(err.code, "invalid_key");
    }
    CHECK(access(src, F_OK) == 0);
    vx_blob_close(b);
}

static void test_unreachable_store_is_unavailable(void) {
    setup_env();
    /* a port nobody listens on: bound, then closed */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    REQUIRE(bind(s, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(s, (struct sockaddr *)&a, &alen) == 0);
    close(s);
    char url[256];
    snprintf(url, sizeof url, "s3://" BUCKET "?endpoint=http://127.0.0.1:%d&retries=1", ntohs(a.sin_port));
    vx_err err = {0};
    vx_blob *b = vx_blob_open(url, &err);
    REQUIRE(b != NULL);
    CHECK_EQ_INT(b->ops->ping(b, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_UNAVAILABLE);
    CHECK_EQ_STR(err.code, "storage_unavailable");
    int64_t size;
    CHECK_EQ_INT(b->ops->stat(b, "a/b", &size, &err), -1);
    CHECK_EQ_STR(err.code, "storage_unavailable");
    char src[160];
    REQUIRE(make_file(src, sizeof src, "unsent", 100, 1, NULL) == 0);
    CHECK_EQ_INT(b->ops->put_file(b, "a/b", src, &err), -1);
    CHECK_EQ_STR(err.code, "storage_unavailable");
    CHECK(access(src, F_OK) == 0);
    vx_blob_close(b);
}

static void test_wrong_credentials_or_region_are_denied(void) {
    setup_env();
    REQUIRE(start_server(&plain_srv, NULL) == 0);
    vx_err err = {0};
    setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret", 1);
    vx_blob *b = open_blob(NULL);
    setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
    REQUIRE(b != NULL);
    CHECK_EQ_INT(b->ops->ping(b, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_UNAVAILABLE);
    CHECK_EQ_STR(err.code, "storage_denied");
    CHECK(strstr(err.message, "not-the-secret") == NULL);
    vx_blob_close(b);
    char url[256];
    snprintf(url, sizeof url, "s3://" BUCKET "?endpoint=http://127.0.0.1:%d&region=eu-west-3", plain_srv.port);
    b = vx_blob_open(url, &err);
    REQUIRE(b != NULL);
    CHECK_EQ_INT(b->ops->ping(b, &err), -1);
    CHECK_EQ_STR(err.code, "storage_denied");
    vx_blob_close(b);
    /* and a bucket that does not exist makes the store unusable */
    snprintf(url, sizeof url, "s3://no-such-bucket?endpoint=http://127.0.0.1:%d", plain_srv.port);
    b = vx_blob_open(url, &err);
    REQUIRE(b != NULL);
    CHECK_EQ_INT(b->ops->ping(b, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_UNAVAILABLE);
    vx_blob_close(b);
}

static void test_presigned_put_and_get_work_for_a_plain_http_client(void) {
    vx_blob *b = open_blob(NULL);
    REQUIRE(b != NULL);
    vx_err err = {0};
    static const char payload[] = "uploaded straight to the store, no credentials";
    char *put = vx_blob_presign(b, "PUT", "users/u4/up_1/input.wav", 300, &err);
    REQUIRE(put != NULL);
    CHECK(strstr(put, "X-Amz-SignedHeaders=host") != NULL);
    CHECK(strstr(put, SECRET) == NULL);
    CHECK_EQ_INT(http_plain("PUT", put, payload, strlen(payload), NULL), 200);
    int64_t size = 0;
    CHECK_EQ_INT(b->ops->stat(b, "users/u4/up_1/input.wav", &size, &err), 0);
    CHECK_EQ_INT(size, (int64_t)strlen(payload));

    char *get = vx_blob_presign(b, "GET", "users/u4/up_1/input.wav", 300, &err);
    REQUIRE(get != NULL);
    body got = {0};
    CHECK_EQ_INT(http_plain("GET", get, NULL, 0, &got), 200);
    CHECK(got.len == strlen(payload) && memcmp(got.data, payload, got.len) == 0);
    free(got.data);

    /* the PUT URL does not read, the GET URL does not write */
    CHECK_EQ_INT(http_plain("GET", put, NULL, 0, NULL), 403);
    CHECK_EQ_INT(http_plain("PUT", get, "x", 1, NULL), 403);
    /* tampering: another signature, another key, a longer expiry */
    char *t = strdup(get);
    char *sig = strstr(t, "X-Amz-Signature=") + 16;
    sig[0] = sig[0] == 'a' ? 'b' : 'a';
    CHECK_EQ_INT(http_plain("GET", t, NULL, 0, NULL), 403);
    free(t);
    t = strdup(get);
    memcpy(strstr(t, "up_1"), "up_2", 4);
    CHECK_EQ_INT(http_plain("GET", t, NULL, 0, NULL), 403);
    free(t);
    t = strdup(get);
    memcpy(strstr(t, "X-Amz-Expires=300"), "X-Amz-Expires=900", 17);
    CHECK_EQ_INT(http_plain("GET", t, NULL, 0, NULL), 403);
    free(t);
    /* without the query it is an anonymous request: refused */
    t = strdup(get);
    *strchr(t, '?') = '\0';
    CHECK_EQ_INT(http_plain("GET", t, NULL, 0, NULL), 403);
    free(t);
    /* an expired URL (signed an hour ago for a minute) */
    char path[128];
    snprintf(path, sizeof path, "/" BUCKET "/users/u4/up_1/input.wav");
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", plain_srv.port);
    vx_sigv4_presign old = {.method = "GET", .base_url = base, .path = path, .region = "us-east-1",
                            .service = "s3", .access_key = KEY_ID, .secret_key = SECRET, .expires = 60,
                            .now = time(NULL) - 3600};
    char *expired = vx_sigv4_presign_url(&old, &err);
    REQUIRE(expired != NULL);
    CHECK_EQ_INT(http_plain("GET", expired, NULL, 0, NULL), 403);
    old.now = time(NULL);
    char *fresh = vx_sigv4_presign_url(&old, &err); /* the same, signed now: accepted */
    REQUIRE(fresh != NULL);
    CHECK_EQ_INT(http_plain("GET", fresh, NULL, 0, NULL), 200);
    free(expired);
    free(fresh);
    free(put);
    free(get);

    CHECK(vx_blob_presign(b, "GET", "a/b", 0, &err) == NULL);
    CHECK_EQ_STR(err.code, "invalid_expiry");
    CHECK(vx_blob_presign(b, "DELETE", "a/b", 60, &err) == NULL);
    CHECK_EQ_STR(err.code, "invalid_presign");
    vx_blob_close(b);
}

static void test_virtual_host_style_and_prefixes_address_the_right_objects(void) {
    setup_env();
    REQUIRE(start_server(&plain_srv, NULL) == 0);
    char url[256];
    snprintf(url, sizeof url, "s3://" BUCKET "/tenant-a?endpoint=http://localhost:%d&style=virtual", plain_srv.port);
    vx_err err = {0};
    vx_blob *va = vx_blob_open(url, &err);
    REQUIRE(va != NULL);
    vx_blob *pb = open_blob("&prefix=tenant-b/");
    REQUIRE(pb != NULL);
    vx_blob *root = open_blob(NULL);
    REQUIRE(root != NULL);
    char src[160], sha[VX_SHA256_HEX_SIZE], got_sha[VX_SHA256_HEX_SIZE];
    REQUIRE(make_file(src, sizeof src, "vh", 70000, 4, sha) == 0);
    CHECK_EQ_INT(va->ops->ping(va, &err), 0);
    CHECK_EQ_INT(va->ops->put_file(va, "x/y.bin", src, &err), 0);
    int64_t size = 0;
    CHECK_EQ_INT(va->ops->stat(va, "x/y.bin", &size, &err), 0);
    CHECK_EQ_INT(size, 70000);
    CHECK_EQ_INT(pb->ops->stat(pb, "x/y.bin", &size, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_NOT_FOUND);
    CHECK_EQ_INT(root->ops->stat(root, "tenant-a/x/y.bin", &size, &err), 0);
    char local[512];
    bool is_temp;
    REQUIRE(va->ops->fetch_local(va, "x/y.bin", scratch, local, sizeof local, &is_temp, &err) == 0);
    REQUIRE(sha_of_file(local, got_sha) == 0);
    CHECK_EQ_STR(got_sha, sha);
    unlink(local);
    char *get = vx_blob_presign(va, "GET", "x/y.bin", 60, &err);
    REQUIRE(get != NULL);
    char expect[128];
    snprintf(expect, sizeof expect, "http://" BUCKET ".localhost:%d/tenant-a/x/y.bin?", plain_srv.port);
    CHECK(strncmp(get, expect, strlen(expect)) == 0);
    body got = {0};
    CHECK_EQ_INT(http_plain("GET", get, NULL, 0, &got), 200);
    CHECK_EQ_INT(got.len, 70000);
    free(got.data);
    free(get);
    CHECK_EQ_INT(va->ops->remove(va, "x/y.bin", &err), 0);
    CHECK_EQ_INT(root->ops->stat(root, "tenant-a/x/y.bin", &size, &err), -1);
    vx_blob_close(va);
    vx_blob_close(pb);
    vx_blob_close(root);
}

static void test_session_token_is_sent_and_presigned(void) {
    setup_env();
    REQUIRE(start_server(&token_srv, TOKEN) == 0);
    char url[256];
    snprintf(url, sizeof url, "s3://" BUCKET "?endpoint=http://127.0.0.1:%d&retries=0", token_srv.port);
    vx_err err = {0};
    vx_blob *without = vx_blob_open(url, &err);
    REQUIRE(without != NULL);
    CHECK_EQ_INT(without->ops->ping(without, &err), -1);
    CHECK_EQ_STR(err.code, "storage_denied");
    vx_blob_close(without);
    setenv("AWS_SESSION_TOKEN", TOKEN, 1);
    vx_blob *b = vx_blob_open(url, &err);
    unsetenv("AWS_SESSION_TOKEN");
    REQUIRE(b != NULL);
    CHECK_EQ_INT(b->ops->ping(b, &err), 0);
    char src[160];
    REQUIRE(make_file(src, sizeof src, "tok", 1000, 5, NULL) == 0);
    CHECK_EQ_INT(b->ops->put_file(b, "t/k", src, &err), 0);
    char *get = vx_blob_presign(b, "GET", "t/k", 60, &err);
    REQUIRE(get != NULL);
    CHECK(strstr(get, "X-Amz-Security-Token=") != NULL);
    CHECK_EQ_INT(http_plain("GET", get, NULL, 0, NULL), 200);
    free(get);
    vx_blob_close(b);
}

static void test_replaced_object_fails_an_open_reader_instead_of_mixing(void) {
    vx_blob *b = open_blob(NULL);
    REQUIRE(b != NULL);
    vx_err err = {0};
    char src[160];
    REQUIRE(make_file(src, sizeof src, "v1", 3 * MIB, 1, NULL) == 0);
    REQUIRE(b->ops->put_file(b, "doc/result.bin", src, &err) == 0);
    vx_blob_reader r;
    REQUIRE(b->ops->reader_open(b, "doc/result.bin", &r, &err) == 0);
    unsigned char buf[100];
    CHECK_EQ_INT(b->ops->reader_pread(&r, buf, sizeof buf, 0, &err), 100);
    REQUIRE(make_file(src, sizeof src, "v2", 3 * MIB, 2, NULL) == 0);
    REQUIRE(b->ops->put_file(b, "doc/result.bin", src, &err) == 0);
    /* past the read-ahead: a new GET, which must not serve version 2 */
    CHECK_EQ_INT(b->ops->reader_pread(&r, buf, sizeof buf, 2 * MIB, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_CONFLICT);
    CHECK_EQ_STR(err.code, "object_changed");
    b->ops->reader_close(&r);
    vx_blob_close(b);
}

typedef struct worker_arg {
    vx_blob *b;
    int id;
    int failures;
} worker_arg;

static void *worker(void *p) {
    worker_arg *w = p;
    for (int i = 0; i < 8; i++) {
        char src[160], name[64], key[64], sha[VX_SHA256_HEX_SIZE], got[VX_SHA256_HEX_SIZE], local[512];
        snprintf(name, sizeof name, "w%d-%d", w->id, i);
        snprintf(key, sizeof key, "conc/%d/%d.bin", w->id, i);
        vx_err err = {0};
        bool is_temp;
        size_t len = 20000 + (size_t)(w->id * 1000 + i * 37);
        if (make_file(src, sizeof src, name, len, (unsigned)(w->id + i), sha) != 0 ||
            w->b->ops->put_file(w->b, key, src, &err) != 0 ||
            w->b->ops->fetch_local(w->b, key, scratch, local, sizeof local, &is_temp, &err) != 0) {
            w->failures++;
            continue;
        }
        if (sha_of_file(local, got) != 0 || strcmp(got, sha) != 0) w->failures++;
        unlink(local);
        if (w->b->ops->remove(w->b, key, &err) != 0) w->failures++;
    }
    return NULL;
}

static void test_one_store_serves_many_threads(void) {
    vx_blob *b = open_blob(NULL);
    REQUIRE(b != NULL);
    pthread_t t[4];
    worker_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (worker_arg){.b = b, .id = i};
        REQUIRE(pthread_create(&t[i], NULL, worker, &args[i]) == 0);
    }
    int failures = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        failures += args[i].failures;
    }
    CHECK_EQ_INT(failures, 0);
    vx_blob_close(b);
}

TEST_MAIN(TEST_ENTRY(test_urls_and_credentials_are_validated),
          TEST_ENTRY(test_small_put_round_trips_with_ranges_stat_fetch_and_remove),
          TEST_ENTRY(test_multipart_upload_round_trips_byte_identical),
          TEST_ENTRY(test_failed_multipart_upload_is_aborted_and_keeps_the_file),
          TEST_ENTRY(test_transient_failures_are_retried),
          TEST_ENTRY(test_missing_objects_are_not_found),
          TEST_ENTRY(test_invalid_keys_are_refused_by_every_hook),
          TEST_ENTRY(test_unreachable_store_is_unavailable),
          TEST_ENTRY(test_wrong_credentials_or_region_are_denied),
          TEST_ENTRY(test_presigned_put_and_get_work_for_a_plain_http_client),
          TEST_ENTRY(test_virtual_host_style_and_prefixes_address_the_right_objects),
          TEST_ENTRY(test_session_token_is_sent_and_presigned),
          TEST_ENTRY(test_replaced_object_fails_an_open_reader_instead_of_mixing),
          TEST_ENTRY(test_one_store_serves_many_threads))
