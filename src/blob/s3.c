/* s3.c - blob backend on an S3-compatible object store (AWS S3, MinIO, Ceph):
 *   s3://bucket[/prefix]?endpoint=http://host:port&region=us-east-1&style=path|virtual
 *     [&prefix=dir/][&public_endpoint=URL][&part_size=N][&multipart_threshold=N][&retries=N]
 * Requests go through libcurl, signed by its CURLOPT_AWS_SIGV4; presigned URLs
 * by sigv4.c. Bodies stream from and to files; big files go up in multipart
 * uploads. Thread-safe: each call borrows a curl handle from a mutex-guarded
 * pool (keeping connections alive); everything else is read-only after open. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "../util/log.h"
#include "../util/strbuf.h"
#include "blob.h"
#include "sigv4.h"

extern const vx_blob_ops vx_blob_s3_ops;

#define MIB ((int64_t)1024 * 1024)
#define DEFAULT_THRESHOLD (64 * MIB)
#define DEFAULT_PART_SIZE (16 * MIB)
#define MIN_PART_SIZE (5 * MIB) /* AWS and MinIO refuse smaller parts (but the last) */
#define MAX_PART_SIZE (5 * 1024 * MIB)
#define MAX_PARTS 10000
#define DEFAULT_RETRIES 3
#define POOL_MAX 16
#define TEXT_MAX (64 * 1024) /* XML answers and error documents we keep */
#define READAHEAD (1 * MIB)  /* a reader fetches at least this much per GET */
#define ETAG_SIZE 130
#define BASE_SIZE 600

typedef struct s3_blob {
    vx_blob base;
    char bucket[64];
    char req_base[BASE_SIZE];  /* scheme://host[:port] requests go to (virtual: bucket.host) */
    char pub_base[BASE_SIZE];  /* the same for presigned URLs (public_endpoint) */
    char path_prefix[80];      /* "/bucket" in path style, "" in virtual style */
    char prefix[256];          /* "" or "dir/": prepended to every key */
    char region[64];
    char sigv4[96];            /* "aws:amz:<region>:s3" for CURLOPT_AWS_SIGV4 */
    char *access_key, *secret_key, *session_token;
    int64_t part_size, threshold;
    int retries;
    pthread_mutex_t lock; /* guards the handle pool */
    CURL *idle[POOL_MAX];
    int n_idle;
} s3_blob;

/* ---- one HTTP call ----------------------------------------------------- */

typedef enum sink_kind { SINK_NONE, SINK_BUF, SINK_FD, SINK_TEXT } sink_kind;

typedef struct s3_call {
    const char *method;     /* GET HEAD PUT POST DELETE */
    const char *object;     /* full object name (prefix + key), NULL for the bucket */
    const char *query;      /* canonical query (libcurl signs it verbatim), or NULL */
    int64_t range_from, range_len; /* GET of a range when range_len > 0 */
    const char *if_match;   /* ETag the object must still have, or NULL */
    int up_fd;              /* PUT body: up_len bytes of up_fd from up_off */
    int64_t up_off, up_len, up_pos;
    const char *post;       /* POST body (may be "") */
    size_t post_len;
    bool retry;             /* safe to repeat */
    sink_kind sink;
    char *buf;              /* SINK_BUF */
    size_t buf_cap, buf_len;
    int64_t skip;           /* bytes to drop first (a server that ignored Range) */
    bool buf_full;
    int out_fd;             /* SINK_FD */
    int64_t out_pos;
    /* answer */
    CURL *curl;
    long status;
    int attempts;
    int io_errno;           /* a local read/write failure */
    int64_t length;         /* Content-Length */
    char etag[ETAG_SIZE];
    vx_strbuf text;         /* SINK_TEXT answer or an error document, capped */
} s3_call;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static CURL *take_handle(s3_blob *b) {
    CURL *h = NULL;
    pthread_mutex_lock(&b->lock);
    if (b->n_idle > 0) h = b->idle[--b->n_idle];
    pthread_mutex_unlock(&b->lock);
    return h ? h : curl_easy_init();
}

/* Reset keeps the handle's live connections, so the next call skips the connect. */
static void give_handle(s3_blob *b, CURL *h) {
    if (!h) return;
    curl_easy_reset(h);
    pthread_mutex_lock(&b->lock);
    if (b->n_idle < POOL_MAX) {
        b->idle[b->n_idle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&b->lock);
    if (h) curl_easy_cleanup(h);
}

static void keep_text(s3_call *c, const char *data, size_t len) {
    size_t room = c->text.len < TEXT_MAX ? TEXT_MAX - c->text.len : 0;
    vx_strbuf_append(&c->text, data, len < room ? len : room);
}

static size_t on_body(char *data, size_t size, size_t n, void *user) {
    s3_call *c = user;
    size_t len = size * n;
    long status = 0;
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status >= 300 || c->sink == SINK_TEXT) {
        keep_text(c, data, len);
        return len;
    }
    if (c->sink == SINK_BUF) {
        if (status == 200 && c->range_from > 0 && c->skip < 0) c->skip = c->range_from;
        size_t off = 0;
        if (c->skip > 0) {
            off = (int64_t)len < c->skip ? len : (size_t)c->skip;
            c->skip -= (int64_t)off;
        }
        size_t want = len - off, room = c->buf_cap - c->buf_len, take = want < room ? want : room;
        memcpy(c->buf + c->buf_len, data + off, take);
        c->buf_len += take;
        if (take < want) {
            c->buf_full = true; /* all we asked for: stop the transfer */
            return 0;
        }
        return len;
    }
    if (c->sink == SINK_FD) {
        for (size_t done = 0; done < len;) {
            ssize_t w = pwrite(c->out_fd, data + done, len - done, (off_t)c->out_pos);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) {
                c->io_errno = errno;
                return 0;
            }
            done += (size_t)w;
            c->out_pos += w;
        }
    }
    return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *user) {
    s3_call *c = user;
    size_t len = size * n;
    if (len > 5 && strncmp(data, "HTTP/", 5) == 0) c->etag[0] = '\0'; /* a new answer (after 100) */
    if (len > 5 && strncasecmp(data, "etag:", 5) == 0) {
        const char *v = data + 5;
        size_t vl = len - 5;
        while (vl && (*v == ' ' || *v == '\t')) v++, vl--;
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' ')) vl--;
        if (vl < ETAG_SIZE) {
            memcpy(c->etag, v, vl);
            c->etag[vl] = '\0';
        }
    }
    return len;
}

static size_t on_upload(char *buf, size_t size, size_t n, void *user) {
    s3_call *c = user;
    int64_t left = c->up_len - c->up_pos;
    size_t want = size * n;
    if ((int64_t)want > left) want = (size_t)left;
    if (want == 0) return 0;
    for (;;) {
        ssize_t r = pread(c->up_fd, buf, want, (off_t)(c->up_off + c->up_pos));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            c->io_errno = r < 0 ? errno : EIO; /* EIO: the file shrank under us */
            return CURL_READFUNC_ABORT;
        }
        c->up_pos += r;
        return (size_t)r;
    }
}

/* libcurl rewinds the body when it must send it again (e.g. after a 100 it
 * did not get); our own retries reset up_pos themselves. */
static int on_seek(void *user, curl_off_t offset, int origin) {
    s3_call *c = user;
    if (origin != SEEK_SET || offset < 0 || offset > c->up_len) return CURL_SEEKFUNC_FAIL;
    c->up_pos = offset;
    return CURL_SEEKFUNC_OK;
}

static void object_url(const s3_blob *b, const char *object, const char *query, vx_strbuf *url) {
    vx_strbuf_printf(url, "%s%s", b->req_base, b->path_prefix);
    if (object) {
        vx_strbuf_puts(url, "/");
        vx_sigv4_uri_encode(url, object, true);
    } else if (!b->path_prefix[0]) {
        vx_strbuf_puts(url, "/");
    }
    if (query && *query) vx_strbuf_printf(url, "?%s", query);
}

static CURLcode perform_once(s3_blob *b, s3_call *c) {
    CURL *h = c->curl;
    vx_strbuf url = {0};
    object_url(b, c->object, c->query, &url);
    struct curl_slist *headers = NULL;
    char line[ETAG_SIZE + 64];
    /* libcurl 7.88 neither sends nor signs a payload hash; S3 requires one. */
    bool body = strcmp(c->method, "PUT") == 0;
    char post_hash[VX_SHA256_HEX_SIZE];
    const char *hash = body ? VX_SIGV4_UNSIGNED_PAYLOAD : VX_SIGV4_EMPTY_SHA256;
    if (c->post) {
        vx_sha256_hex(c->post, c->post_len, post_hash);
        hash = post_hash;
    }
    snprintf(line, sizeof line, "x-amz-content-sha256: %s", hash);
    headers = curl_slist_append(headers, line);
    if (b->session_token) {
        vx_strbuf tok = {0};
        vx_strbuf_printf(&tok, "x-amz-security-token: %s", b->session_token);
        headers = curl_slist_append(headers, tok.data);
        vx_strbuf_free(&tok);
    }
    if (c->if_match && *c->if_match) {
        snprintf(line, sizeof line, "If-Match: %s", c->if_match);
        headers = curl_slist_append(headers, line);
    }
    if (c->post) headers = curl_slist_append(headers, "Content-Type: application/xml");

    curl_easy_setopt(h, CURLOPT_URL, url.data);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERNAME, b->access_key);
    curl_easy_setopt(h, CURLOPT_PASSWORD, b->secret_key);
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, b->sigv4);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    /* No total timeout (objects can be large); a stalled transfer ends. */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
    char range[64];
    if (strcmp(c->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(c->method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)c->up_len);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_upload);
        curl_easy_setopt(h, CURLOPT_READDATA, c);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, c);
    } else if (strcmp(c->method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->post ? c->post : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(c->post ? c->post_len : 0));
    } else if (strcmp(c->method, "DELETE") == 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
    } else if (c->range_len > 0) {
        snprintf(range, sizeof range, "%lld-%lld", (long long)c->range_from,
                 (long long)(c->range_from + c->range_len - 1));
        curl_easy_setopt(h, CURLOPT_RANGE, range);
    }
    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c->status);
    curl_off_t cl = -1;
    curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
    c->length = cl;
    if (rc == CURLE_WRITE_ERROR && c->buf_full) rc = CURLE_OK;
    curl_slist_free_all(headers);
    vx_strbuf_free(&url);
    return rc;
}

static bool transient(CURLcode rc, long status) {
    switch (rc) {
    case CURLE_OK: return status >= 500 || status == 429;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default: return false;
    }
}

/* The text between <tag> and </tag> (first one), XML entities decoded. */
static bool xml_value(const char *xml, const char *tag, char *out, size_t cap) {
    char open[64], close[64];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *s = xml ? strstr(xml, open) : NULL;
    const char *e = s ? strstr(s, close) : NULL;
    if (!s || !e) return false;
    s += strlen(open);
    size_t o = 0;
    static const struct { const char *ent; char ch; } ents[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''},
    };
    while (s < e && o + 1 < cap) {
        char ch = *s++;
        if (ch == '&')
            for (size_t i = 0; i < sizeof ents / sizeof ents[0]; i++)
                if (strncmp(s - 1, ents[i].ent, strlen(ents[i].ent)) == 0) {
                    ch = ents[i].ch;
                    s += strlen(ents[i].ent) - 1;
                    break;
                }
        out[o++] = ch;
    }
    out[o] = '\0';
    return s == e;
}

static int fail(s3_call *c, CURLcode rc, vx_err *err) {
    const char *what = c->object ? "an object" : "the bucket";
    if (c->io_errno) {
        vx_error("s3: %s %s: local file: %s", c->method, what, strerror(c->io_errno));
        if (c->io_errno == ENOSPC || c->io_errno == EDQUOT)
            return vx_err_set(err, VX_E_UNAVAILABLE, "storage_full", "the local disk is full");
        return vx_err_set(err, VX_E_INTERNAL, "storage_error", "reading or writing a local file failed");
    }
    if (rc != CURLE_OK) {
        vx_error("s3: %s %s: %s (after %d attempts)", c->method, what, curl_easy_strerror(rc), c->attempts);
        return vx_err_set(err, VX_E_UNAVAILABLE, "storage_unavailable", "the object store is unreachable");
    }
    char code[64] = "";
    xml_value(c->text.data, "Code", code, sizeof code);
    if (c->status == 404 && strcmp(code, "NoSuchBucket") != 0)
        return vx_err_set(err, VX_E_NOT_FOUND, "object_not_found", "no such object");
    vx_error("s3: %s %s: HTTP %ld %s (after %d attempts)", c->method, what, c->status, code[0] ? code : "-",
             c->attempts);
    if (c->status == 404)
        return vx_err_set(err, VX_E_UNAVAILABLE, "storage_unavailable", "the storage bucket does not exist");
    if (c->status == 403)
        return vx_err_set(err, VX_E_UNAVAILABLE, "storage_denied",
                          "the object store refused voxd's credentials (check AWS_ACCESS_KEY_ID, "
                          "AWS_SECRET_ACCESS_KEY and the region)");
    if (c->status == 412)
        return vx_err_set(err, VX_E_CONFLICT, "object_changed", "the object was replaced while being read");
    if (c->status >= 500 || c->status == 429)
        return vx_err_set(err, VX_E_UNAVAILABLE, "storage_unavailable", "the object store is unavailable (HTTP %ld)",
                          c->status);
    if (c->status >= 300 && c->status < 400)
        return vx_err_set(err, VX_E_UNAVAILABLE, "storage_unavailable",
                          "the object store redirected voxd (check the endpoint and the region)");
    return vx_err_set(err, VX_E_INTERNAL, "storage_error", "the object store refused the request (HTTP %ld %s)",
                      c->status, code);
}

/* Runs the call, repeating it with back-off (100 ms doubling, up to 2 s)
 * while it fails transiently and is safe to repeat. 0 on a 2xx answer. */
static int perform(s3_blob *b, s3_call *c, vx_err *err) {
    c->curl = take_handle(b);
    if (!c->curl) return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
    CURLcode rc = CURLE_OK;
    long delay_ms = 100;
    for (c->attempts = 1;; c->attempts++) {
        c->status = 0;
        c->io_errno = 0;
        c->up_pos = 0;
        c->buf_len = 0;
        c->buf_full = false;
        c->skip = -1;
        c->etag[0] = '\0';
        c->text.len = 0;
        if (c->text.data) c->text.data[0] = '\0';
        if (c->sink == SINK_FD) {
            c->out_pos = 0;
            if (ftruncate(c->out_fd, 0) != 0) c->io_errno = errno;
        }
        if (!c->io_errno) rc = perform_once(b, c);
        /* CompleteMultipartUpload can fail inside a 200 answer. */
        if (rc == CURLE_OK && c->status == 200 && c->sink == SINK_TEXT && c->text.data &&
            strstr(c->text.data, "<Error>"))
            c->status = 500;
        if (c->io_errno || !transient(rc, c->status) || !c->retry || c->attempts > b->retries) break;
        vx_warn("s3: %s %s: %s, trying again in %ld ms", c->method, c->object ? "an object" : "the bucket",
                rc != CURLE_OK ? curl_easy_strerror(rc) : "server error", delay_ms);
        struct timespec ts = {.tv_sec = delay_ms / 1000, .tv_nsec = (delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        delay_ms = delay_ms * 2 > 2000 ? 2000 : delay_ms * 2;
    }
    give_handle(b, c->curl);
    c->curl = NULL;
    if (!c->io_errno && rc == CURLE_OK && c->status >= 200 && c->status < 300) return 0;
    return fail(c, rc, err);
}

static void call_done(s3_call *c) { vx_strbuf_free(&c->text); }

/* ---- keys -------------------------------------------------------------- */

static int object_name(const s3_blob *b, const char *key, char *out, size_t cap, vx_err *err) {
    if (!vx_blob_key_valid(key) || snprintf(out, cap, "%s%s", b->prefix, key) >= (int)cap)
        return vx_err_set(err, VX_E_INVALID, "invalid_key", "invalid object key");
    return 0;
}

#define OBJECT_MAX 800

/* ---- hooks ------------------------------------------------------------- */

static int s3_ping(vx_blob *vb, vx_err *err) {
    s3_call c = {.method = "HEAD", .retry = true};
    int rc = perform((s3_blob *)vb, &c, err);
    if (rc != 0 && err && err->status == VX_E_NOT_FOUND)
        vx_err_set(err, VX_E_UNAVAILABLE, "storage_unavailable", "the storage bucket does not exist");
    call_done(&c);
    return rc;
}

static int head_object(s3_blob *b, const char *object, int64_t *size, char *etag, vx_err *err) {
    s3_call c = {.method = "HEAD", .object = object, .retry = true};
    int rc = perform(b, &c, err);
    if (rc == 0 && c.length < 0) rc = vx_err_set(err, VX_E_INTERNAL, "storage_error", "the object has no size");
    if (rc == 0) {
        if (size) *size = c.length;
        if (etag) snprintf(etag, ETAG_SIZE, "%s", c.etag);
    }
    call_done(&c);
    return rc;
}

static int s3_stat(vx_blob *vb, const char *key, int64_t *size, vx_err *err) {
    char object[OBJECT_MAX];
    if (object_name((s3_blob *)vb, key, object, sizeof object, err) != 0) return -1;
    return head_object((s3_blob *)vb, object, size, NULL, err);
}

static int s3_remove(vx_blob *vb, const char *key, vx_err *err) {
    char object[OBJECT_MAX];
    if (object_name((s3_blob *)vb, key, object, sizeof object, err) != 0) return -1;
    s3_call c = {.method = "DELETE", .object = object, .retry = true};
    vx_err e = {0};
    int rc = perform((s3_blob *)vb, &c, &e);
    call_done(&c);
    if (rc != 0 && e.status == VX_E_NOT_FOUND) return 0;
    if (rc != 0 && err) *err = e;
    return rc;
}

static int put_single(s3_blob *b, const char *object, int fd, int64_t size, vx_err *err) {
    s3_call c = {.method = "PUT", .object = object, .up_fd = fd, .up_len = size, .retry = true};
    int rc = perform(b, &c, err);
    call_done(&c);
    return rc;
}

static void abort_upload(s3_blob *b, const char *object, const char *upload_id) {
    vx_strbuf q = {0};
    vx_sigv4_canonical_query(&q, (vx_sigv4_param[]){{.name = "uploadId", .value = upload_id}}, 1);
    s3_call c = {.method = "DELETE", .object = object, .query = q.data, .retry = true};
    vx_err e = {0};
    if (perform(b, &c, &e) != 0) vx_warn("s3: could not abort a multipart upload: %s", e.message);
    call_done(&c);
    vx_strbuf_free(&q);
}

/* Quotes stay literal: ETags are sent as "..." the way every SDK does. */
static void xml_escape(vx_strbuf *out, const char *s) {
    for (; *s; s++) {
        if (*s == '&') vx_strbuf_puts(out, "&amp;");
        else if (*s == '<') vx_strbuf_puts(out, "&lt;");
        else if (*s == '>') vx_strbuf_puts(out, "&gt;");
        else vx_strbuf_append(out, s, 1);
    }
}

/* Initiate, upload each part (each retried on its own), complete; any
 * failure aborts the upload so no parts are left behind. */
static int put_multipart(s3_blob *b, const char *object, int fd, int64_t size, vx_err *err) {
    int64_t part = b->part_size;
    while ((size + part - 1) / part > MAX_PARTS) part *= 2;
    int n_parts = (int)((size + part - 1) / part);
    char upload_id[512] = "";
    char (*etags)[ETAG_SIZE] = calloc((size_t)n_parts, ETAG_SIZE);
    vx_strbuf q = {0}, xml = {0};
    int rc = -1;
    if (!etags) return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");

    s3_call init = {.method = "POST", .object = object, .query = "uploads=", .post = "", .sink = SINK_TEXT,
                    .retry = true};
    rc = perform(b, &init, err);
    if (rc == 0 && !xml_value(init.text.data, "UploadId", upload_id, sizeof upload_id))
        rc = vx_err_set(err, VX_E_INTERNAL, "storage_error", "the object store gave no upload id");
    call_done(&init);
    if (rc != 0 || !upload_id[0]) goto out;

    for (int i = 0; i < n_parts && rc == 0; i++) {
        char number[16];
        snprintf(number, sizeof number, "%d", i + 1);
        q.len = 0;
        vx_sigv4_canonical_query(&q, (vx_sigv4_param[]){{.name = "partNumber", .value = number},
                                                       {.name = "uploadId", .value = upload_id}},
                                 2);
        int64_t off = (int64_t)i * part;
        s3_call c = {.method = "PUT", .object = object, .query = q.data, .up_fd = fd, .up_off = off,
                     .up_len = size - off < part ? size - off : part, .retry = true};
        rc = perform(b, &c, err);
        if (rc == 0 && !c.etag[0])
            rc = vx_err_set(err, VX_E_INTERNAL, "storage_error", "the object store gave no part ETag");
        if (rc == 0) memcpy(etags[i], c.etag, ETAG_SIZE);
        call_done(&c);
    }
    if (rc != 0) goto out;

    vx_strbuf_puts(&xml, "<CompleteMultipartUpload>");
    for (int i = 0; i < n_parts; i++) {
        vx_strbuf_printf(&xml, "<Part><PartNumber>%d</PartNumber><ETag>", i + 1);
        xml_escape(&xml, etags[i]);
        vx_strbuf_puts(&xml, "</ETag></Part>");
    }
    vx_strbuf_puts(&xml, "</CompleteMultipartUpload>");
    q.len = 0;
    vx_sigv4_canonical_query(&q, (vx_sigv4_param[]){{.name = "uploadId", .value = upload_id}}, 1);
    s3_call done = {.method = "POST", .object = object, .query = q.data, .post = xml.data, .post_len = xml.len,
                    .sink = SINK_TEXT, .retry = true};
    vx_err e = {0};
    rc = perform(b, &done, &e);
    /* A repeat after a lost answer finds the upload already completed. */
    if (rc != 0 && e.status == VX_E_NOT_FOUND && done.attempts > 1) {
        int64_t got = -1;
        if (head_object(b, object, &got, NULL, &e) == 0 && got == size) rc = 0;
    }
    call_done(&done);
    if (rc != 0 && err) *err = e;
    if (rc == 0) upload_id[0] = '\0'; /* nothing to abort */
out:
    if (rc != 0 && upload_id[0]) abort_upload(b, object, upload_id);
    free(etags);
    vx_strbuf_free(&q);
    vx_strbuf_free(&xml);
    return rc;
}

static int s3_put_file(vx_blob *vb, const char *key, const char *path, vx_err *err) {
    s3_blob *b = (s3_blob *)vb;
    char object[OBJECT_MAX];
    if (object_name(b, key, object, sizeof object, err) != 0) return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        vx_error("s3: opening the file to store: %s", strerror(errno));
        return vx_err_set(err, VX_E_INTERNAL, "storage_error", "the file to store cannot be read");
    }
    int rc = -1;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        vx_err_set(err, VX_E_INVALID, "not_a_file", "only regular files can be stored");
        goto out;
    }
    rc = sb.st_size > b->threshold ? put_multipart(b, object, fd, sb.st_size, err)
                                   : put_single(b, object, fd, sb.st_size, err);
    /* Stored: the spool file is consumed, as the fs backend's rename does. */
    if (rc == 0 && unlink(path) != 0) vx_warn("s3: could not remove the spool file after storing it");
out:
    close(fd);
    return rc;
}

typedef struct s3_reader {
    s3_blob *b;
    pthread_mutex_t lock; /* one pread at a time shares the read-ahead */
    char object[OBJECT_MAX];
    char etag[ETAG_SIZE];
    char *cache;
    int64_t cache_off;
    size_t cache_len;
} s3_reader;

static int s3_reader_open(vx_blob *vb, const char *key, vx_blob_reader *r, vx_err *err) {
    s3_blob *b = (s3_blob *)vb;
    r->fd = -1;
    r->size = 0;
    r->priv = NULL;
    s3_reader *sr = calloc(1, sizeof *sr);
    if (!sr) return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
    sr->b = b;
    if (object_name(b, key, sr->object, sizeof sr->object, err) != 0 ||
        head_object(b, sr->object, &r->size, sr->etag, err) != 0) {
        free(sr);
        return -1;
    }
    pthread_mutex_init(&sr->lock, NULL);
    r->priv = sr;
    return 0;
}

/* One ranged GET into buf; the If-Match makes a replaced object an error
 * instead of a mix of two versions. Returns bytes or -1. */
static ssize_t get_range(s3_reader *sr, char *buf, size_t len, int64_t offset, vx_err *err) {
    s3_call c = {.method = "GET", .object = sr->object, .range_from = offset, .range_len = (int64_t)len,
                 .if_match = sr->etag, .sink = SINK_BUF, .buf = buf, .buf_cap = len, .retry = true};
    int rc = perform(sr->b, &c, err);
    size_t got = c.buf_len;
    call_done(&c);
    return rc == 0 ? (ssize_t)got : -1;
}

static ssize_t s3_reader_pread(vx_blob_reader *r, void *buf, size_t len, int64_t offset, vx_err *err) {
    s3_reader *sr = r->priv;
    if (offset < 0 || !sr) {
        vx_err_set(err, VX_E_INVALID, "invalid_range", "invalid read offset");
        return -1;
    }
    if (offset >= r->size || len == 0) return 0;
    if ((int64_t)len > r->size - offset) len = (size_t)(r->size - offset);
    if (len >= READAHEAD) return get_range(sr, buf, len, offset, err);
    pthread_mutex_lock(&sr->lock);
    ssize_t n = -1;
    bool hit = sr->cache && offset >= sr->cache_off && offset + (int64_t)len <= sr->cache_off + (int64_t)sr->cache_len;
    if (!hit) {
        if (!sr->cache) sr->cache = malloc(READAHEAD);
        if (!sr->cache) {
            vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
            goto out;
        }
        size_t want = r->size - offset < READAHEAD ? (size_t)(r->size - offset) : READAHEAD;
        sr->cache_len = 0;
        ssize_t got = get_range(sr, sr->cache, want, offset, err);
        if (got < 0) goto out;
        sr->cache_off = offset;
        sr->cache_len = (size_t)got;
    }
    size_t avail = sr->cache_len - (size_t)(offset - sr->cache_off);
    n = (ssize_t)(len < avail ? len : avail);
    memcpy(buf, sr->cache + (offset - sr->cache_off), (size_t)n);
out:
    pthread_mutex_unlock(&sr->lock);
    return n;
}

static void s3_reader_close(vx_blob_reader *r) {
    s3_reader *sr = r->priv;
    if (sr) {
        pthread_mutex_destroy(&sr->lock);
        free(sr->cache);
        free(sr);
    }
    r->priv = NULL;
    r->fd = -1;
}

/* Downloads to <tmp_dir>/s3-XXXXXX[.ext] (the key's extension kept for
 * decoders that look at it). */
static int s3_fetch_local(vx_blob *vb, const char *key, const char *tmp_dir, char *path_out, size_t cap,
                          bool *is_temp, vx_err *err) {
    s3_blob *b = (s3_blob *)vb;
    char object[OBJECT_MAX];
    *is_temp = false;
    if (object_name(b, key, object, sizeof object, err) != 0) return -1;
    const char *base = strrchr(key, '/');
    const char *dot = strrchr(base ? base : key, '.');
    int suffix = dot && strlen(dot) <= 8 ? (int)strlen(dot) : 0;
    if (snprintf(path_out, cap, "%s/s3-XXXXXX%s", tmp_dir, suffix ? dot : "") >= (int)cap)
        return vx_err_set(err, VX_E_INTERNAL, "path_too_long", "the temporary path does not fit");
    int fd = mkostemps(path_out, suffix, O_CLOEXEC);
    if (fd < 0) {
        vx_error("s3: creating a temporary file: %s", strerror(errno));
        return vx_err_set(err, VX_E_INTERNAL, "storage_error", "cannot create a temporary file");
    }
    s3_call c = {.method = "GET", .object = object, .sink = SINK_FD, .out_fd = fd, .retry = true};
    int rc = perform(b, &c, err);
    if (rc == 0 && c.length >= 0 && c.out_pos != c.length)
        rc = vx_err_set(err, VX_E_UNAVAILABLE, "storage_unavailable", "the object arrived incomplete");
    call_done(&c);
    if (close(fd) != 0 && rc == 0) rc = vx_err_set(err, VX_E_INTERNAL, "storage_error", "writing a temporary file failed");
    if (rc != 0) {
        unlink(path_out);
        path_out[0] = '\0';
        return -1;
    }
    *is_temp = true;
    return 0;
}

static char *presign(vx_blob *vb, const char *method, const char *key, int64_t expires_s, vx_err *err) {
    s3_blob *b = (s3_blob *)vb;
    char object[OBJECT_MAX], path[OBJECT_MAX + 80];
    if (object_name(b, key, object, sizeof object, err) != 0) return NULL;
    snprintf(path, sizeof path, "%s/%s", b->path_prefix, object);
    vx_sigv4_presign p = {
        .method = method,
        .base_url = b->pub_base,
        .path = path,
        .region = b->region,
        .service = "s3",
        .access_key = b->access_key,
        .secret_key = b->secret_key,
        .session_token = b->session_token,
        .expires = expires_s,
        .now = time(NULL),
    };
    return vx_sigv4_presign_url(&p, err);
}

static char *s3_presign_get(vx_blob *vb, const char *key, int64_t expires_s, vx_err *err) {
    return presign(vb, "GET", key, expires_s, err);
}

static char *s3_presign_put(vx_blob *vb, const char *key, int64_t expires_s, vx_err *err) {
    return presign(vb, "PUT", key, expires_s, err);
}

/* ---- open / close ------------------------------------------------------ */

static char *take_secret(const char *name) {
    const char *v = getenv(name);
    return v && *v ? strdup(v) : NULL;
}

static void drop_secret(char *s) {
    if (!s) return;
    explicit_bzero(s, strlen(s));
    free(s);
}

static void s3_close(vx_blob *vb) {
    s3_blob *b = (s3_blob *)vb;
    if (!b) return;
    for (int i = 0; i < b->n_idle; i++) curl_easy_cleanup(b->idle[i]);
    pthread_mutex_destroy(&b->lock);
    drop_secret(b->access_key);
    drop_secret(b->secret_key);
    drop_secret(b->session_token);
    free(b);
}

static int bad_url(vx_err *err, const char *why) {
    return vx_err_set(err, VX_E_INVALID, "invalid_blob_url", "bad s3 URL: %s", why);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..len) into out; -1 on a bad escape or no room. */
static int pct_decode(const char *s, size_t len, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '%') {
            int hi = i + 2 < len ? hexval(s[i + 1]) : -1, lo = i + 2 < len ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) return -1;
            ch = (char)(hi * 16 + lo);
            i += 2;
        }
        if (o + 1 >= cap || ch == '\0') return -1;
        out[o++] = ch;
    }
    out[o] = '\0';
    return 0;
}

/* "http[s]://host[:port][/]" -> scheme and host[:port] separately. */
static int split_endpoint(const char *ep, char *scheme, size_t scap, char *host, size_t hcap) {
    const char *rest;
    if (strncmp(ep, "https://", 8) == 0) snprintf(scheme, scap, "https"), rest = ep + 8;
    else if (strncmp(ep, "http://", 7) == 0) snprintf(scheme, scap, "http"), rest = ep + 7;
    else return -1;
    size_t len = strcspn(rest, "/?#@");
    if (len == 0 || len >= hcap || (rest[len] && strcmp(rest + len, "/") != 0)) return -1;
    memcpy(host, rest, len);
    host[len] = '\0';
    return 0;
}

/* Bytes, with an optional K, M or G (binary) suffix. */
static int parse_size(const char *v, int64_t *out) {
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    int64_t mult = 1;
    if (*end == 'K' || *end == 'k') mult = 1024, end++;
    else if (*end == 'M' || *end == 'm') mult = MIB, end++;
    else if (*end == 'G' || *end == 'g') mult = 1024 * MIB, end++;
    if (errno || end == v || *end || n <= 0 || n > INT64_MAX / mult) return -1;
    *out = (int64_t)n * mult;
    return 0;
}

static bool bucket_valid(const char *s) {
    size_t len = strlen(s);
    if (len < 3 || len > 63) return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && ((c != '-' && c != '.') || i == 0 || i == len - 1)) return false;
    }
    return true;
}

static int set_prefix(s3_blob *b, const char *raw, vx_err *err) {
    char tmp[sizeof b->prefix];
    snprintf(tmp, sizeof tmp, "%s", raw);
    char *p = tmp;
    while (*p == '/') p++;
    size_t len = strlen(p);
    while (len && p[len - 1] == '/') p[--len] = '\0';
    if (len && (!vx_blob_key_valid(p) || len + 2 > sizeof b->prefix)) return bad_url(err, "invalid prefix");
    memcpy(b->prefix, p, len);
    if (len) b->prefix[len++] = '/';
    b->prefix[len] = '\0';
    return 0;
}

static int parse_url(s3_blob *b, const char *url, vx_err *err) {
    char endpoint[BASE_SIZE] = "", public_ep[BASE_SIZE] = "", style[16] = "", value[BASE_SIZE];
    snprintf(b->region, sizeof b->region, "us-east-1");
    b->threshold = DEFAULT_THRESHOLD;
    b->part_size = DEFAULT_PART_SIZE;
    b->retries = DEFAULT_RETRIES;
    if (strncmp(url, "s3://", 5) != 0) return bad_url(err, "expected s3://bucket?endpoint=...");
    const char *p = url + 5;
    size_t len = strcspn(p, "/?");
    if (len >= sizeof b->bucket) return bad_url(err, "invalid bucket name");
    memcpy(b->bucket, p, len);
    b->bucket[len] = '\0';
    if (!bucket_valid(b->bucket)) return bad_url(err, "invalid bucket name");
    p += len;
    if (*p == '/') {
        len = strcspn(++p, "?");
        if (pct_decode(p, len, value, sizeof value) != 0 || set_prefix(b, value, err) != 0)
            return bad_url(err, "invalid prefix");
        p += len;
    }
    if (*p == '?') p++;
    while (*p) {
        size_t plen = strcspn(p, "&");
        const char *eq = memchr(p, '=', plen);
        size_t nlen = eq ? (size_t)(eq - p) : plen;
        if (!eq || pct_decode(eq + 1, plen - nlen - 1, value, sizeof value) != 0)
            return bad_url(err, "every option needs a value");
#define OPT(name) (nlen == strlen(name) && strncmp(p, name, nlen) == 0)
        int64_t n = 0;
#define COPY(dst) (strlen(value) < sizeof(dst) ? (void)memcpy(dst, value, strlen(value) + 1) : (void)0)
        if (strlen(value) >= sizeof b->region && (OPT("region") || OPT("style"))) return bad_url(err, "option too long");
        if (OPT("endpoint")) COPY(endpoint);
        else if (OPT("public_endpoint")) COPY(public_ep);
        else if (OPT("region")) COPY(b->region);
        else if (OPT("style")) COPY(style);
        else if (OPT("prefix")) {
            if (set_prefix(b, value, err) != 0) return -1;
        } else if (OPT("part_size")) {
            if (parse_size(value, &n) != 0 || n < MIN_PART_SIZE || n > MAX_PART_SIZE)
                return bad_url(err, "part_size must be 5M to 5G");
            b->part_size = n;
        } else if (OPT("multipart_threshold")) {
            if (parse_size(value, &n) != 0 || n < MIN_PART_SIZE) return bad_url(err, "multipart_threshold must be at least 5M");
            b->threshold = n;
        } else if (OPT("retries")) {
            char *end;
            long r = strtol(value, &end, 10);
            if (end == value || *end || r < 0 || r > 10) return bad_url(err, "retries must be 0 to 10");
            b->retries = (int)r;
        } else {
            return vx_err_set(err, VX_E_INVALID, "invalid_blob_url", "unknown s3 URL option \"%.*s\"",
                              (int)(nlen > 32 ? 32 : nlen), p);
        }
#undef OPT
#undef COPY
        p += plen;
        if (*p == '&') p++;
    }
    for (const char *r = b->region; *r; r++)
        if (!((*r >= 'a' && *r <= 'z') || (*r >= '0' && *r <= '9') || *r == '-')) return bad_url(err, "invalid region");
    if (!b->region[0]) return bad_url(err, "invalid region");
    bool virtual_style;
    if (!style[0]) virtual_style = !endpoint[0] && !strchr(b->bucket, '.'); /* AWS: virtual; dots break TLS names */
    else if (strcmp(style, "path") == 0) virtual_style = false;
    else if (strcmp(style, "virtual") == 0) virtual_style = true;
    else return bad_url(err, "style must be path or virtual");
    if (!endpoint[0]) snprintf(endpoint, sizeof endpoint, "https://s3.%s.amazonaws.com", b->region);
    if (!public_ep[0]) snprintf(public_ep, sizeof public_ep, "%s", endpoint);
    char scheme[8], host[BASE_SIZE - 100], pscheme[8], phost[BASE_SIZE - 100];
    if (split_endpoint(endpoint, scheme, sizeof scheme, host, sizeof host) != 0)
        return bad_url(err, "endpoint must be http://host[:port] or https://host[:port]");
    if (split_endpoint(public_ep, pscheme, sizeof pscheme, phost, sizeof phost) != 0)
        return bad_url(err, "public_endpoint must be http://host[:port] or https://host[:port]");
    const char *dot = virtual_style ? "." : "";
    const char *vb = virtual_style ? b->bucket : "";
    snprintf(b->req_base, sizeof b->req_base, "%s://%s%s%s", scheme, vb, dot, host);
    snprintf(b->pub_base, sizeof b->pub_base, "%s://%s%s%s", pscheme, vb, dot, phost);
    if (!virtual_style) snprintf(b->path_prefix, sizeof b->path_prefix, "/%s", b->bucket);
    snprintf(b->sigv4, sizeof b->sigv4, "aws:amz:%s:s3", b->region);
    return 0;
}

/* Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and
 * AWS_SESSION_TOKEN), the conventional place every S3 tool reads them, so
 * they never appear in a URL, a flag or a log. Caller closes the result. */
static vx_blob *s3_open(const char *url, vx_err *err) {
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        vx_err_set(err, VX_E_INTERNAL, "storage_error", "libcurl failed to initialise");
        return NULL;
    }
    s3_blob *b = calloc(1, sizeof *b);
    if (!b) {
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        return NULL;
    }
    b->base.ops = &vx_blob_s3_ops;
    pthread_mutex_init(&b->lock, NULL);
    if (parse_url(b, url, err) != 0) goto fail;
    b->access_key = take_secret("AWS_ACCESS_KEY_ID");
    b->secret_key = take_secret("AWS_SECRET_ACCESS_KEY");
    b->session_token = take_secret("AWS_SESSION_TOKEN");
    if (!b->access_key || !b->secret_key) {
        vx_err_set(err, VX_E_INVALID, "missing_credentials",
                   "s3 storage needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment");
        goto fail;
    }
    vx_info("blob: s3 bucket %s at %s (%s style, region %s)", b->bucket, b->req_base,
            b->path_prefix[0] ? "path" : "virtual-host", b->region);
    return &b->base;
fail:
    s3_close(&b->base);
    return NULL;
}

/* ---- listing (ListObjectsV2) -------------------------------------------- */

/* Keeps each answer well below TEXT_MAX even with long keys. */
#define LIST_PAGE "50"

/* "2026-11-21T09:40:38.000Z" -> Unix ms; 0 if unreadable. */
static int64_t iso8601_ms(const char *s) {
    struct tm tm = {0};
    int ms = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
               &tm.tm_sec) != 6)
        return 0;
    const char *dot = strchr(s, '.');
    if (dot) sscanf(dot + 1, "%3d", &ms);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

/* Hands each <Contents> of one page to fn; *stop when fn asked to. */
static void list_page(const s3_blob *b, const char *xml, vx_blob_list_fn fn, void *user, bool *stop) {
    size_t plen = strlen(b->prefix);
    for (const char *p = xml; !*stop && (p = strstr(p, "<Contents>"));) {
        const char *end = strstr(p, "</Contents>");
        if (!end) break;
        size_t len = (size_t)(end - p);
        char *one = strndup(p, len), key[OBJECT_MAX], text[64];
        p = end;
        if (!one) break;
        vx_blob_entry e = {0};
        bool ok = xml_value(one, "Key", key, sizeof key) && strncmp(key, b->prefix, plen) == 0 &&
                  snprintf(e.key, sizeof e.key, "%s", key + plen) < (int)sizeof e.key && vx_blob_key_valid(e.key);
        if (ok && xml_value(one, "Size", text, sizeof text)) e.size = strtoll(text, NULL, 10);
        if (ok && xml_value(one, "LastModified", text, sizeof text)) e.modified_ms = iso8601_ms(text);
        free(one);
        if (ok && fn(&e, user) != 0) *stop = true;
    }
}

static int s3_list(vx_blob *vb, const char *prefix, vx_blob_list_fn fn, void *user, vx_err *err) {
    s3_blob *b = (s3_blob *)vb;
    char full[OBJECT_MAX], token[1024] = "";
    if (snprintf(full, sizeof full, "%s%s", b->prefix, prefix ? prefix : "") >= (int)sizeof full)
        return vx_err_set(err, VX_E_INVALID, "invalid_key", "invalid object key");
    vx_strbuf q = {0};
    bool stop = false;
    int rc = 0;
    do {
        vx_sigv4_param params[4] = {{.name = "list-type", .value = "2"}, {.name = "max-keys", .value = LIST_PAGE},
                                    {.name = "prefix", .value = full}, {.name = "continuation-token", .value = token}};
        q.len = 0;
        vx_sigv4_canonical_query(&q, params, token[0] ? 4 : 3);
        s3_call c = {.method = "GET", .query = q.data, .sink = SINK_TEXT, .retry = true};
        rc = perform(b, &c, err);
        if (rc == 0 && c.text.len >= TEXT_MAX)
            rc = vx_err_set(err, VX_E_INTERNAL, "storage_error", "an object listing page was too long");
        char truncated[16] = "";
        if (rc == 0) {
            list_page(b, c.text.data ? c.text.data : "", fn, user, &stop);
            xml_value(c.text.data, "IsTruncated", truncated, sizeof truncated);
            if (strcmp(truncated, "true") != 0 || !xml_value(c.text.data, "NextContinuationToken", token, sizeof token))
                token[0] = '\0';
        }
        call_done(&c);
    } while (rc == 0 && !stop && token[0]);
    vx_strbuf_free(&q);
    return rc;
}

const vx_blob_ops vx_blob_s3_ops = {
    .scheme = "s3",
    .open = s3_open,              /* parses the URL, reads the credentials; no request yet */
    .close = s3_close,
    .ping = s3_ping,              /* HEAD of the bucket */
    .put_file = s3_put_file,      /* one PUT, or a multipart upload above the threshold; unlinks path */
    .reader_open = s3_reader_open, /* HEAD for size and ETag; fd is -1 */
    .reader_pread = s3_reader_pread, /* ranged GET (If-Match), 1 MiB read-ahead */
    .reader_close = s3_reader_close,
    .fetch_local = s3_fetch_local, /* GET into a temporary file under tmp_dir */
    .remove = s3_remove,          /* DELETE; a missing key is not an error */
    .stat = s3_stat,              /* HEAD */
    .presign_get = s3_presign_get, /* SigV4 query signing, sigv4.c */
    .presign_put = s3_presign_put,
    .list = s3_list,              /* ListObjectsV2 pages with continuation tokens */
};
