/* test_websocket.c - WebSockets over a real server on 127.0.0.1 port 0,
 * driven by a small raw-frame client written here (masking, fragments,
 * control frames, bad input on purpose), plus SHA-1 known answers. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "../../src/http/http.h"
#include "../../src/http/http_int.h"
#include "../../src/util/crypto.h"
#include "../../src/util/log.h"
#include "../../src/util/strbuf.h"
#include "test.h"

/* ---- server side: the test routes ---- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static vx_ws *handed;
static int opens, closes, last_code, messages;
static char last_reason[128];
static bool pause_after_message;
static bool echo_binary = true;
static const char *tag = "ws-user";
static bool user_ok = true;

static void on_open(vx_ws *ws, void *user) {
    pthread_mutex_lock(&mu);
    opens++;
    if (user != tag) user_ok = false;
    pthread_mutex_unlock(&mu);
}

static void count_message(vx_ws *ws) {
    pthread_mutex_lock(&mu);
    messages++;
    bool pause = pause_after_message;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&mu);
    if (pause) vx_ws_pause_reading(ws);
}

static void on_text(vx_ws *ws, const char *data, size_t len, void *user) {
    count_message(ws);
    if (len == 5 && memcmp(data, "close", 5) == 0) {
        vx_ws_send_text(ws, "bye", 3);
        vx_ws_close(ws, 4000, "asked to close");
        return;
    }
    vx_ws_send_text(ws, data, len);
}

static void on_binary(vx_ws *ws, const void *data, size_t len, void *user) {
    count_message(ws);
    if (echo_binary) vx_ws_send_binary(ws, data, len);
}

static void on_close(vx_ws *ws, int code, const char *reason, void *user) {
    pthread_mutex_lock(&mu);
    closes++;
    last_code = code;
    snprintf(last_reason, sizeof last_reason, "%s", reason);
    if (user != tag) user_ok = false;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&mu);
}

static int qint(vx_request *req, const char *name) {
    const char *v = vx_req_query(req, name);
    return v ? atoi(v) : 0;
}

static void h_ws(vx_request *req) {
    const char *key = vx_req_query(req, "api_key");
    if (!key || strcmp(key, "good") != 0) {
        vx_respond_errorf(req, VX_E_UNAUTHORIZED, "unauthorized", "no api key");
        return;
    }
    vx_ws_handlers h = {.on_open = on_open, .on_text = on_text, .on_binary = on_binary, .on_close = on_close};
    if (vx_req_query(req, "nobin")) h.on_binary = NULL;
    vx_ws_options o = {
        .max_message_bytes = (size_t)qint(req, "max"),
        .max_queued_bytes = (size_t)qint(req, "q"),
        .ping_interval_ms = qint(req, "ping"),
        .idle_timeout_ms = qint(req, "idle"),
        .subprotocol = "voxd.v1",
    };
    vx_ws *ws = vx_respond_websocket(req, &h, &o, (void *)tag);
    if (!ws) return;
    if (vx_req_query(req, "greet")) vx_ws_send_text(ws, "hello before open", 17);
    pthread_mutex_lock(&mu);
    handed = ws;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&mu);
}

static const vx_route routes[] = {
    {.method = "GET", .pattern = "/v1/ws", .handle = h_ws},
};

/* ---- fixture ---- */

static vx_config cfg;
static vx_app app;
static vx_http_server *srv;
static int port;

static bool up(void) {
    vx_crypto_init();
    vx_log_set_level(getenv("VX_TEST_VERBOSE") ? VX_LOG_DEBUG : VX_LOG_ERROR);
    vx_config_defaults(&cfg);
    snprintf(cfg.listen, sizeof cfg.listen, "127.0.0.1:0");
    cfg.web_dir[0] = '\0';
    cfg.http_threads = 2;
    cfg.request_timeout_s = 30;
    cfg.access_log = false;
    app = (vx_app){.cfg = &cfg};
    vx_err err = {0};
    srv = vx_http_start(&app, routes, sizeof routes / sizeof routes[0], &err);
    if (!srv) return false;
    port = vx_http_port(srv);
    pthread_mutex_lock(&mu);
    handed = NULL;
    opens = closes = messages = last_code = 0;
    last_reason[0] = '\0';
    pause_after_message = false;
    echo_binary = true;
    user_ok = true;
    pthread_mutex_unlock(&mu);
    return port > 0;
}

static void down(void) {
    if (srv) vx_http_stop(srv, 2000);
    srv = NULL;
}

static void sleep_ms(int ms) {
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static vx_ws *take(void) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&mu);
    while (!handed && pthread_cond_timedwait(&cond, &mu, &until) == 0) {}
    vx_ws *ws = handed;
    handed = NULL;
    pthread_mutex_unlock(&mu);
    return ws;
}

/* Waits (5 s) for n on_close calls; returns the last code or -1. */
static int wait_close(int n) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&mu);
    while (closes < n && pthread_cond_timedwait(&cond, &mu, &until) == 0) {}
    int code = closes >= n ? last_code : -1;
    pthread_mutex_unlock(&mu);
    return code;
}

static int messages_seen(void) {
    pthread_mutex_lock(&mu);
    int n = messages;
    pthread_mutex_unlock(&mu);
    return n;
}

/* ---- client side: raw frames ---- */

typedef struct client {
    int fd;
    vx_strbuf in;   /* received, not yet parsed */
    size_t off;
    char head[2048];
} client;

static int tcp_connect(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool fill(client *c, int timeout_ms) {
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) <= 0) return false;
    char buf[65536];
    ssize_t n = recv(c->fd, buf, sizeof buf, 0);
    if (n <= 0) return false;
    vx_strbuf_append(&c->in, buf, (size_t)n);
    return true;
}

/* Sends a handshake with the given header block; returns the HTTP status
 * and leaves the head in c->head. `after` bytes go out right behind it. */
static int handshake(client *c, const char *query, const char *headers, const void *after, size_t after_len) {
    memset(c, 0, sizeof *c);
    c->fd = tcp_connect();
    if (c->fd < 0) return -1;
    char req[1024];
    int n = snprintf(req, sizeof req, "GET /v1/ws%s HTTP/1.1\r\nHost: t\r\n%s\r\n", query, headers);
    vx_strbuf out = {0};
    vx_strbuf_append(&out, req, (size_t)n);
    if (after_len) vx_strbuf_append(&out, after, after_len);
    bool sent = send(c->fd, out.data, out.len, MSG_NOSIGNAL) == (ssize_t)out.len;
    vx_strbuf_free(&out);
    if (!sent) return -1;
    for (int i = 0; i < 100; i++) {
        const char *end = c->in.data ? memmem(c->in.data, c->in.len, "\r\n\r\n", 4) : NULL;
        if (end) {
            size_t hl = (size_t)(end - c->in.data) + 4;
            snprintf(c->head, sizeof c->head, "%.*s", (int)hl, c->in.data);
            c->off = hl;
            return atoi(c->head + 9);
        }
        fill(c, 50);
    }
    return -1;
}

static const char *good_headers =
    "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: chat, voxd.v1\r\n";

static bool ws_open(client *c, const char *query) {
    return handshake(c, query, good_headers, NULL, 0) == 101;
}

/* Encodes one frame (client frames are masked unless `unmasked`). */
static void frame(vx_strbuf *out, bool fin, int opcode, const void *data, size_t len, bool unmasked) {
    unsigned char h[14];
    size_t hl = 0;
    h[hl++] = (unsigned char)((fin ? 0x80 : 0) | opcode);
    unsigned char m = unmasked ? 0 : 0x80;
    if (len < 126) {
        h[hl++] = (unsigned char)(m | len);
    } else if (len < 65536) {
        h[hl++] = m | 126;
        h[hl++] = (unsigned char)(len >> 8);
        h[hl++] = (unsigned char)len;
    } else {
        h[hl++] = m | 127;
        for (int i = 7; i >= 0; i--) h[hl++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    unsigned char key[4] = {0x12, 0x34, 0x56, 0x78};
    if (!unmasked) {
        memcpy(h + hl, key, 4);
        hl += 4;
    }
    vx_strbuf_append(out, (const char *)h, hl);
    size_t at = out->len;
    vx_strbuf_append(out, data, len);
    if (!unmasked)
        for (size_t i = 0; i < len; i++) out->data[at + i] = (char)(out->data[at + i] ^ key[i % 4]);
}

static bool send_frame(client *c, bool fin, int opcode, const void *data, size_t len) {
    vx_strbuf f = {0};
    frame(&f, fin, opcode, data, len, false);
    bool ok = send(c->fd, f.data, f.len, MSG_NOSIGNAL) == (ssize_t)f.len;
    vx_strbuf_free(&f);
    return ok;
}

typedef struct wsframe {
    int opcode;
    bool fin;
    vx_strbuf payload;
} wsframe;

/* Reads one server frame (unmasked). false on timeout or close. */
static bool read_frame(client *c, wsframe *f, int timeout_ms) {
    memset(f, 0, sizeof *f);
    for (int waited = 0;;) {
        const unsigned char *p = (const unsigned char *)c->in.data + c->off;
        size_t left = c->in.len - c->off;
        if (left >= 2) {
            size_t len = p[1] & 0x7f, hl = 2;
            if (len == 126 && left >= 4) len = (size_t)p[2] << 8 | p[3], hl = 4;
            else if (len == 127 && left >= 10) {
                len = 0;
                for (int i = 0; i < 8; i++) len = len << 8 | p[2 + i];
                hl = 10;
            }
            if ((p[1] & 0x7f) < 126 || hl > 2) {
                if (left >= hl + len) {
                    f->fin = p[0] & 0x80;
                    f->opcode = p[0] & 0x0f;
                    vx_strbuf_append(&f->payload, (const char *)p + hl, len);
                    c->off += hl + len;
                    return true;
                }
            }
        }
        if (waited >= timeout_ms) return false;
        if (!fill(c, 50)) waited += 50;
    }
}

/* Reads frames until a close; returns its code (or -1) and reason. */
static int read_close(client *c, char *reason, size_t size, int timeout_ms) {
    wsframe f;
    while (read_frame(c, &f, timeout_ms)) {
        if (f.opcode == 8) {
            int code = f.payload.len >= 2 ? ((unsigned char)f.payload.data[0] << 8 | (unsigned char)f.payload.data[1]) : 1005;
            if (reason) snprintf(reason, size, "%.*s", (int)(f.payload.len > 2 ? f.payload.len - 2 : 0),
                                 f.payload.len > 2 ? f.payload.data + 2 : "");
            vx_strbuf_free(&f.payload);
            return code;
        }
        vx_strbuf_free(&f.payload);
    }
    return -1;
}

static bool peer_closed(client *c, int timeout_ms) {
    for (int waited = 0; waited < timeout_ms; waited += 50) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, 50) > 0) {
            char buf[4096];
            ssize_t n = recv(c->fd, buf, sizeof buf, 0);
            if (n <= 0) return true;
        }
    }
    return false;
}

static void client_close(client *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    vx_strbuf_free(&c->in);
}

static bool echo_is(client *c, int opcode, const char *data, size_t len) {
    wsframe f;
    if (!read_frame(c, &f, 5000)) return false;
    bool same = f.fin && f.opcode == opcode && f.payload.len == len && (len == 0 || memcmp(f.payload.data, data, len) == 0);
    vx_strbuf_free(&f.payload);
    return same;
}

/* ---- tests ---- */

static void hex(const unsigned char *d, size_t n, char *out) {
    for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static void test_sha1_matches_known_answers(void) {
    unsigned char d[20];
    char h[41];
    vx_http_sha1("abc", 3, d);
    hex(d, 20, h);
    CHECK_EQ_STR(h, "a9993e364706816aba3e25717850c26c9cd0d89d");
    vx_http_sha1("", 0, d);
    hex(d, 20, h);
    CHECK_EQ_STR(h, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";  /* 56 bytes: two padding blocks */
    vx_http_sha1(two, strlen(two), d);
    hex(d, 20, h);
    CHECK_EQ_STR(h, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    char *million = malloc(1000000);
    memset(million, 'a', 1000000);
    vx_http_sha1(million, 1000000, d);
    free(million);
    hex(d, 20, h);
    CHECK_EQ_STR(h, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    char accept[29];
    vx_http_ws_accept("dGhlIHNhbXBsZSBub25jZQ==", accept);  /* RFC 6455 section 1.3 */
    CHECK_EQ_STR(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_websocket_handshake_answers_101_with_the_accept_key(void) {
    REQUIRE(up());
    client c;
    CHECK_EQ_INT(handshake(&c, "?api_key=good", good_headers, NULL, 0), 101);
    CHECK(strcasestr(c.head, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") != NULL);
    CHECK(strcasestr(c.head, "Upgrade: websocket\r\n") != NULL);
    CHECK(strcasestr(c.head, "Connection: Upgrade\r\n") != NULL);
    CHECK(strcasestr(c.head, "Sec-WebSocket-Protocol: voxd.v1\r\n") != NULL);
    vx_ws *ws = take();
    REQUIRE(ws);
    CHECK(strncmp(vx_ws_id(ws), "req_", 4) == 0);
    CHECK(vx_ws_user(ws) == tag);
    client_close(&c);
    CHECK_EQ_INT(wait_close(1), VX_WS_ABNORMAL);
    CHECK_EQ_INT(opens, 1);
    CHECK(user_ok);
    vx_ws_release(ws);
    down();
}

static void test_bad_websocket_handshakes_get_400(void) {
    REQUIRE(up());
    static const struct {
        const char *headers;
        const char *why;
    } bad[] = {
        {.headers = "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
         .why = "no Upgrade"},
        {.headers = "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
         .why = "no Connection"},
        {.headers = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
         .why = "no version"},
        {.headers = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
         .why = "old version"},
        {.headers = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n", .why = "no key"},
        {.headers = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                    "Sec-WebSocket-Key: c2hvcnQ=\r\n",
         .why = "short key"},
        {.headers = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                    "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\n",
         .why = "not base64"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        client c;
        int status = handshake(&c, "?api_key=good", bad[i].headers, NULL, 0);
        if (status != 400) fprintf(stderr, "  %s: status %d\n", bad[i].why, status);
        CHECK_EQ_INT(status, 400);
        while (!strstr(c.in.data ? c.in.data : "", "invalid_websocket_handshake") && fill(&c, 1000)) {}
        CHECK(c.in.data && strstr(c.in.data, "\"code\":\"invalid_websocket_handshake\""));
        if (strstr(bad[i].why, "version")) CHECK(strcasestr(c.head, "Sec-WebSocket-Version: 13") != NULL);
        client_close(&c);
    }
    client c;
    CHECK_EQ_INT(handshake(&c, "?api_key=bad", good_headers, NULL, 0), 401);  /* the route's own auth */
    client_close(&c);
    CHECK_EQ_INT(opens, 0);
    CHECK_EQ_INT(closes, 0);
    down();
}

static void test_text_and_binary_messages_echo(void) {
    REQUIRE(up());
    client c;
    REQUIRE(ws_open(&c, "?api_key=good"));
    vx_ws *ws = take();
    REQUIRE(ws);
    CHECK(send_frame(&c, true, 1, "héllo", 6));
    CHECK(echo_is(&c, 1, "héllo", 6));
    unsigned char bin[70000];
    for (size_t i = 0; i < sizeof bin; i++) bin[i] = (unsigned char)(i * 7);
    CHECK(send_frame(&c, true, 2, bin, sizeof bin));  /* 64-bit length */
    CHECK(echo_is(&c, 2, (const char *)bin, sizeof bin));
    CHECK(send_frame(&c, true, 2, bin, 300));  /* 16-bit length */
    CHECK(echo_is(&c, 2, (const char *)bin, 300));
    CHECK(send_frame(&c, true, 1, "", 0));
    CHECK(echo_is(&c, 1, "", 0));
    vx_ws_release(ws);
    client_close(&c);
    wait_close(1);
    down();
}

static void test_fragmented_message_is_delivered_whole(void) {
    REQUIRE(up());
    client c;
    REQUIRE(ws_open(&c, "?api_key=good"));
    vx_ws *ws = take();
    REQUIRE(ws);
    CHECK(send_frame(&c, false, 1, "frag", 4));
    CHECK(send_frame(&c, true, 9, "mid", 3));  /* a ping between fragments */
    CHECK(send_frame(&c, false, 0, "men", 3));
    CHECK(send_frame(&c, true, 0, "ted", 3));
    CHECK(echo_is(&c, 10, "mid", 3));  /* the pong first */
    CHECK(echo_is(&c, 1, "fragmented", 10));
    CHECK_EQ_INT(messages_seen(), 1);
    vx_ws_release(ws);
    client_close(&c);
    wait_close(1);
    down();
}

static void test_ping_gets_pong_and_server_pings_idle_clients(void) {
    REQUIRE(up());
    client c;
    REQUIRE(ws_open(&c, "?api_key=good&ping=100"));
    vx_ws *ws = take();
    REQUIRE(ws);
    CHECK(send_frame(&c, true, 9, "p1", 2));
    CHECK(echo_is(&c, 10, "p1", 2));
    wsframe f;
    CHECK(read_frame(&c, &f, 2000));  /* the server's own ping */
    CHECK_EQ_INT(f.opcode, 9);
    vx_strbuf_free(&f.payload);
    CHECK(send_frame(&c, true, 10, "", 0));
    vx_ws_release(ws);
    client_close(&c);
    wait_close(1);
    down();
}

static void test_silent_peer_is_dropped(void) {
    REQUIRE(up());
    client c;
    REQUIRE(ws_open(&c, "?api_key=good&ping=100"));
    vx_ws *ws = take();
    REQUIRE(ws);
    /* never answers pings: gone after two intervals */
    CHECK_EQ_INT(wait_close(1), VX_WS_ABNORMAL);
    CHECK(!vx_ws_open(ws));
    CHECK_EQ_INT(vx_ws_send_text(ws, "x", 1), -1);
    vx_ws_release(ws);
    client_close(&c);
    down();
}

static void test_oversized_message_closes_with_1009(void) {
    REQUIRE(up());
    client c;
    REQUIRE(ws_open(&c, "?api_key=good&max=1000"));
    vx_ws *ws = take();
    REQUIRE(ws);
    char big[1001];
    memset(big, 'a', sizeof big);
    CHECK(send_frame(&c, false, 1, big, 600));
    CHECK(send_frame(&c, true, 0, big, 401));  /* whole message over, each frame under */
    CHECK_EQ_INT(read_close(&c, NULL, 0, 5000), 1009);
    CHECK_EQ_INT(wait_close(1), 1009);
    CHECK_EQ_INT(messages_seen(), 0);
    vx_ws_release(ws);
    client_close(&c);
    down();
}

static void test_invalid_utf8_closes_with_1007(void) {
    REQUIRE(up());
    client c;
    REQUIRE(ws_open(&c, "?api_key=good"));
    vx_ws *ws = take();
    REQUIRE(ws);
    CHECK(send_frame(&c, true, 1, "\xc3\x28", 2));
    CHECK_EQ_INT(read_close(&c, NULL, 0, 5000), 1007);
    CHECK_EQ_INT(wait_close(1), 1007);
    vx_ws_release(ws);
    client_close(&c);
    down();
}

static void test_unmasked_client_frame_closes_with_1002(void) {
    REQUIRE(up());
    client c;
    REQUIRE(ws_open(&c, "?api_key=good"));
    vx_ws *ws = take();
    REQUIRE(ws);
    vx_strbuf f = {0};
    frame(&f, true, 1, "plain", 5, true);
    CHECK(send(c.fd, f.data, f.len, MSG_NOSIGNAL) == (ssize_t)f.len);
    vx_strbuf_free(&f);
    CHECK_EQ_INT(read_close(&c, NULL, 0, 5000), 1002);
    CHECK_EQ_INT(wait_close(1), 1002);
    vx_ws_release(ws);
    client_close(&c);
    down();
}

static void test_binary_message_without_a_handler_closes_with_1003(void) {
    REQUIRE(up());
    client c;
    REQUIRE(ws_open(&c, "?api_key=good&nobin=1"));
    vx_ws *ws = take();
    REQUIRE(ws);
    CHECK(send_frame(&c, true, 2, "\x01\x02", 2));
    char reason[128];
    CHECK_EQ_INT(read_close(&c, reason, sizeof reason, 5000), 1003);
    CHECK_EQ_STR(reason, "binary messages are not accepted");
    CHECK(send_frame(&c, true, 8, "\x03\xeb", 2));  /* answer the close */
    CHECK_EQ_INT(wait_close(1), 1003);
    vx_ws_release(ws);
    client_close(&c);
    down();
}

static void test_client_close_is_echoed_and_reported(void) {
    REQUIRE(up());
    client c;
    REQUIRE(ws_open(&c, "?api_key=good"));
    vx_ws *ws = take();
    REQUIRE(ws);
    CHECK(send_frame(&c, true, 8, "\x03\xe8" "done", 6));
    char reason[128];
    CHECK_EQ_INT(read_close(&c, reason, sizeof reason, 5000), 1000);
    CHECK(peer_closed(&c, 5000));
    CHECK_EQ_INT(wait_close(1), 1000);
    CHECK_EQ_STR(last_reason, "done");
    vx_ws_release(ws);
    client_close(&c);
    down();
}

static void test_app_close_flushes_queued_messages_first(void) {
    REQUIRE(up());
    client c;
    REQUIRE(ws_open(&c, "?api_key=good"));
    vx_ws *ws = take();
    REQUIRE(ws);
    CHECK(send_frame(&c, true, 1, "close", 5));
    CHECK(echo_is(&c, 1, "bye", 3));
    char reason[128];
    CHECK_EQ_INT(read_close(&c, reason, sizeof reason, 5000), 4000);
    CHECK_EQ_STR(reason, "asked to close");
    CHECK(send_frame(&c, true, 8, "\x0f\xa0", 2));
    CHECK(peer_closed(&c, 5000));
    CHECK_EQ_INT(wait_close(1), 4000);
    CHECK_EQ_STR(last_reason, "asked to close");
    CHECK_EQ_INT(vx_ws_send_text(ws, "x", 1), -1);
    vx_ws_release(ws);
    client_close(&c);
    down();
}

static void test_idle_websocket_times_out_with_1001(void) {
    REQUIRE(up());
    client c;
    REQUIRE(ws_open(&c, "?api_key=good&idle=200"));
    vx_ws *ws = take();
    REQUIRE(ws);
    char reason[128];
    CHECK_EQ_INT(read_close(&c, reason, sizeof reason, 5000), 1001);
    CHECK_EQ_STR(reason, "idle timeout");
    CHECK(send_frame(&c, true, 8, "\x03\xe9", 2));
    CHECK_EQ_INT(wait_close(1), 1001);
    vx_ws_release(ws);
    client_close(&c);
    down();
}

typedef struct sender {
    vx_ws *ws;
    int n;
    int failed;
} sender;

static void *send_many(void *arg) {
    sender *s = arg;
    for (int i = 0; i < s->n; i++) {
        char msg[32];
        int len = snprintf(msg, sizeof msg, "m%d", i);
        if (vx_ws_send_text(s->ws, msg, (size_t)len) != 0) s->failed++;
    }
    return NULL;
}

static void test_sends_from_other_threads_arrive_in_order(void) {
    REQUIRE(up());
    client c;
    REQUIRE(ws_open(&c, "?api_key=good&greet=1"));
    vx_ws *ws = take();
    REQUIRE(ws);
    CHECK(echo_is(&c, 1, "hello before open", 17));  /* queued before the upgrade */
    sender s = {.ws = ws, .n = 2000};
    pthread_t t;
    pthread_create(&t, NULL, send_many, &s);
    int next = 0;
    wsframe f;
    while (next < 2000 && read_frame(&c, &f, 5000)) {
        char want[32];
        snprintf(want, sizeof want, "m%d", next);
        if (f.payload.len == strlen(want) && memcmp(f.payload.data, want, f.payload.len) == 0) next++;
        else break;
        vx_strbuf_free(&f.payload);
    }
    pthread_join(t, NULL);
    CHECK_EQ_INT(s.failed, 0);
    CHECK_EQ_INT(next, 2000);
    vx_ws_release(ws);
    client_close(&c);
    wait_close(1);
    down();
}

static void test_slow_websocket_consumer_is_closed_with_1008(void) {
    REQUIRE(up());
    client c;
    REQUIRE(ws_open(&c, "?api_key=good&q=65536"));
    vx_ws *ws = take();
    REQUIRE(ws);
    char chunk[4096];
    memset(chunk, 'z', sizeof chunk);
    int sent = 0;
    while (sent < 100000 && vx_ws_send_binary(ws, chunk, sizeof chunk) == 0) {
        sent++;
        if (sent % 16 == 0) sleep_ms(1);
    }
    CHECK(sent < 100000);
    CHECK(!vx_ws_open(ws));
    /* reading now: some data, then the close */
    char reason[128] = "";
    CHECK_EQ_INT(read_close(&c, reason, sizeof reason, 10000), 1008);
    CHECK_EQ_STR(reason, "consumer too slow");
    CHECK_EQ_INT(wait_close(1), 1008);
    vx_ws_release(ws);
    client_close(&c);
    down();
}

static void test_paused_reading_pushes_back_on_a_fast_client(void) {
    REQUIRE(up());
    pause_after_message = true;
    echo_binary = false;
    client c;
    REQUIRE(ws_open(&c, "?api_key=good"));
    vx_ws *ws = take();
    REQUIRE(ws);
    static unsigned char msg[65536];
    memset(msg, 'p', sizeof msg);
    vx_strbuf f = {0};
    frame(&f, true, 2, msg, sizeof msg, false);
    int fl = fcntl(c.fd, F_GETFL);
    fcntl(c.fd, F_SETFL, fl | O_NONBLOCK);
    /* The handler pauses after the first message: the server stops reading,
     * so the socket buffers fill and the client's writes block. */
    size_t total = 0, frames = 0, off = 0;
    bool blocked = false;
    while (total < (size_t)256 << 20) {
        ssize_t n = send(c.fd, f.data + off, f.len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN) {
            struct pollfd p = {.fd = c.fd, .events = POLLOUT};
            if (poll(&p, 1, 500) == 0) {
                blocked = true;
                break;
            }
            continue;
        }
        if (n <= 0) break;
        off += (size_t)n;
        total += (size_t)n;
        if (off == f.len) {
            off = 0;
            frames++;
        }
    }
    CHECK(blocked);
    CHECK_EQ_INT(messages_seen(), 1);
    /* Resume: everything the client managed to send arrives. */
    pthread_mutex_lock(&mu);
    pause_after_message = false;
    pthread_mutex_unlock(&mu);
    if (off) {  /* finish the frame in flight */
        fcntl(c.fd, F_SETFL, fl);
        vx_ws_resume_reading(ws);
        CHECK(send(c.fd, f.data + off, f.len - off, MSG_NOSIGNAL) == (ssize_t)(f.len - off));
        frames++;
    } else {
        vx_ws_resume_reading(ws);
    }
    for (int waited = 0; messages_seen() < (int)frames && waited < 10000; waited += 10) sleep_ms(10);
    CHECK_EQ_INT(messages_seen(), (int)frames);
    vx_strbuf_free(&f);
    vx_ws_release(ws);
    client_close(&c);
    wait_close(1);
    down();
}

static void test_first_frame_sent_with_the_handshake_is_read(void) {
    REQUIRE(up());
    client c;
    vx_strbuf f = {0};
    frame(&f, true, 1, "early", 5, false);
    CHECK_EQ_INT(handshake(&c, "?api_key=good", good_headers, f.data, f.len), 101);
    vx_strbuf_free(&f);
    vx_ws *ws = take();
    REQUIRE(ws);
    CHECK(echo_is(&c, 1, "early", 5));
    vx_ws_release(ws);
    client_close(&c);
    wait_close(1);
    down();
}

static void *down_thread(void *arg) {
    (void)arg;
    down();
    return NULL;
}

static void test_server_stop_closes_websockets_with_1001(void) {
    REQUIRE(up());
    client c;
    REQUIRE(ws_open(&c, "?api_key=good"));
    vx_ws *ws = take();
    REQUIRE(ws);
    client c2;
    REQUIRE(ws_open(&c2, "?api_key=good"));
    vx_ws *ws2 = take();
    REQUIRE(ws2);
    /* c answers the close, c2 does not: both end before stop returns */
    pthread_t t;
    pthread_create(&t, NULL, down_thread, NULL);
    char reason[128];
    CHECK_EQ_INT(read_close(&c, reason, sizeof reason, 5000), 1001);
    CHECK_EQ_STR(reason, "server shutting down");
    CHECK(send_frame(&c, true, 8, "\x03\xe9", 2));
    CHECK_EQ_INT(read_close(&c2, NULL, 0, 5000), 1001);
    pthread_join(t, NULL);
    CHECK_EQ_INT(closes, 2);
    CHECK_EQ_INT(last_code, 1001);
    CHECK_EQ_INT(vx_ws_send_text(ws, "x", 1), -1);
    vx_ws_release(ws);
    vx_ws_release(ws2);
    client_close(&c);
    client_close(&c2);
}

static void test_many_websockets_echo_concurrently(void) {
    REQUIRE(up());
    enum { N = 200 };
    static client cs[N];
    vx_ws *wss[N];
    for (int i = 0; i < N; i++) {
        REQUIRE(ws_open(&cs[i], "?api_key=good"));
        wss[i] = take();
        REQUIRE(wss[i]);
    }
    for (int i = 0; i < N; i++) {
        char m[16];
        snprintf(m, sizeof m, "n%d", i);
        CHECK(send_frame(&cs[i], true, 1, m, strlen(m)));
    }
    int ok = 0;
    for (int i = 0; i < N; i++) {
        char m[16];
        snprintf(m, sizeof m, "n%d", i);
        if (echo_is(&cs[i], 1, m, strlen(m))) ok++;
        CHECK(send_frame(&cs[i], true, 8, "\x03\xe8", 2));
    }
    CHECK_EQ_INT(ok, N);
    CHECK_EQ_INT(wait_close(N), 1000);
    for (int i = 0; i < N; i++) {
        vx_ws_release(wss[i]);
        client_close(&cs[i]);
    }
    down();
}

TEST_MAIN(TEST_ENTRY(test_sha1_matches_known_answers),
          TEST_ENTRY(test_websocket_handshake_answers_101_with_the_accept_key),
          TEST_ENTRY(test_bad_websocket_handshakes_get_400),
          TEST_ENTRY(test_text_and_binary_messages_echo),
          TEST_ENTRY(test_fragmented_message_is_delivered_whole),
          TEST_ENTRY(test_ping_gets_pong_and_server_pings_idle_clients),
          TEST_ENTRY(test_silent_peer_is_dropped),
          TEST_ENTRY(test_oversized_message_closes_with_1009),
          TEST_ENTRY(test_invalid_utf8_closes_with_1007),
          TEST_ENTRY(test_unmasked_client_frame_closes_with_1002),
          TEST_ENTRY(test_binary_message_without_a_handler_closes_with_1003),
          TEST_ENTRY(test_client_close_is_echoed_and_reported),
          TEST_ENTRY(test_app_close_flushes_queued_messages_first),
          TEST_ENTRY(test_idle_websocket_times_out_with_1001),
          TEST_ENTRY(test_sends_from_other_threads_arrive_in_order),
          TEST_ENTRY(test_slow_websocket_consumer_is_closed_with_1008),
          TEST_ENTRY(test_paused_reading_pushes_back_on_a_fast_client),
          TEST_ENTRY(test_first_frame_sent_with_the_handshake_is_read),
          TEST_ENTRY(test_server_stop_closes_websockets_with_1001),
          TEST_ENTRY(test_many_websockets_echo_concurrently))
