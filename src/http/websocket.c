/* websocket.c - RFC 6455 WebSockets: the handshake (checked here, answered
 * 101 by MHD, which then hands over the raw socket), and each connection's
 * life on the server's stream thread: wslay framing, a bounded outgoing
 * queue fed by any thread, pause/resume of reading for back-pressure, pings,
 * idle timeouts and the close handshake. Handle calls: any thread; the
 * upgrade hook and on_request_done: MHD threads; everything else and all
 * handler callbacks: the stream thread. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <wslay/wslay.h>
#include "../util/credits.h"
#include "../util/log.h"
#include "http_int.h"

#define WS_DEFAULT_MAX_MESSAGE (1024 * 1024)
#define WS_DEFAULT_MAX_QUEUED (1024 * 1024)
#define WS_DEFAULT_PING_MS 30000
/* How long the peer has to answer our close frame. */
#define WS_CLOSE_WAIT_NS (3 * 1000000000ull)

typedef struct ws_msg {
    struct ws_msg *next;
    uint8_t opcode;
    size_t len;
    unsigned char data[];
} ws_msg;

enum { WS_PRE, WS_OPEN, WS_DONE };

struct vx_ws {
    vx_stream_item item;           /* first: the stream thread's view */
    /* fixed at creation */
    vx_http_server *srv;
    char id[VX_ID_SIZE];
    vx_ws_handlers h;
    void *user;
    size_t max_message, max_queued;
    uint64_t ping_ns, idle_ns;

    pthread_mutex_t mu;            /* the cross-thread part */
    ws_msg *out_head, *out_tail;   /* sends not yet given to wslay */
    size_t out_bytes;
    size_t wire_bytes;             /* inside wslay, not yet written */
    bool closing;                  /* a close was asked for: sends refused */
    bool close_now;                /* close without flushing the queue first */
    int close_code;
    char close_reason[124];
    bool want_pause;
    bool upgraded;                 /* MHD handed over the socket */
    bool failed;                   /* the request ended without an upgrade */
    bool finished;                 /* on_close is done or under way: calls are no-ops */
    int sock;
    struct MHD_UpgradeResponseHandle *urh;
    char *extra;                   /* bytes MHD read past the handshake */
    size_t extra_len;

    /* stream thread only */
    int st;
    bool counted_upgrade;          /* srv->upgrading still counts this one */
    wslay_event_context_ptr ctx;
    size_t extra_off;
    bool paused;                   /* reading stopped (applied) */
    bool close_queued;             /* a close frame is queued in wslay */
    bool server_initiated;
    bool peer_gone;                /* recv/send failed: the TCP connection is dead */
    uint32_t ep_events;
    uint64_t last_rx_ns, last_msg_ns, last_ping_ns, close_deadline_ns;
    ws_msg *held_head, *held_tail; /* received while paused, delivered on resume */
    char peer_reason[124];         /* reason of the peer's close frame */
};

static vx_ws *of(vx_stream_item *it) { return (vx_ws *)(void *)it; }

static void free_msgs(ws_msg *m) {
    while (m) {
        ws_msg *next = m->next;
        free(m);
        m = next;
    }
}

static void w_destroy(vx_stream_item *it) {
    vx_ws *ws = of(it);
    free_msgs(ws->out_head);
    free_msgs(ws->held_head);
    if (ws->ctx) wslay_event_context_free(ws->ctx);
    free(ws->extra);
    pthread_mutex_destroy(&ws->mu);
    free(ws);
}

/* ---- SHA-1 (FIPS 180-4), only for Sec-WebSocket-Accept ---- */

static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1_block(uint32_t h[5], const unsigned char *p) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) f = (b & c) | (~b & d), k = 0x5a827999;
        else if (i < 40) f = b ^ c ^ d, k = 0x6ed9eba1;
        else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8f1bbcdc;
        else f = b ^ c ^ d, k = 0xca62c1d6;
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol(b, 30);
        b = a;
        a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

void vx_http_sha1(const void *data, size_t len, unsigned char out[20]) {
    uint32_t h[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
    const unsigned char *p = data;
    size_t left = len;
    for (; left >= 64; left -= 64, p += 64) sha1_block(h, p);
    unsigned char tail[128] = {0};
    memcpy(tail, p, left);
    tail[left] = 0x80;
    size_t tail_len = left + 9 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) tail[tail_len - 1 - i] = (unsigned char)(bits >> (8 * i));
    sha1_block(h, tail);
    if (tail_len == 128) sha1_block(h, tail + 64);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (unsigned char)(h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(h[i] >> 8);
        out[4 * i + 3] = (unsigned char)h[i];
    }
}

void vx_http_ws_accept(const char *key, char out[29]) {
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char buf[128];
    size_t klen = strnlen(key, 64);
    memcpy(buf, key, klen);
    memcpy(buf + klen, guid, sizeof guid - 1);
    unsigned char digest[20];
    vx_http_sha1(buf, klen + sizeof guid - 1, digest);
    sodium_bin2base64(out, 29, digest, sizeof digest, sodium_base64_VARIANT_ORIGINAL);
}

/* ---- wslay callbacks (stream thread) ---- */

static ssize_t cb_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user) {
    (void)flags;
    vx_ws *ws = user;
    if (ws->extra_off < ws->extra_len) {
        size_t n = ws->extra_len - ws->extra_off;
        if (n > len) n = len;
        memcpy(buf, ws->extra + ws->extra_off, n);
        ws->extra_off += n;
        return (ssize_t)n;
    }
    if (ws->paused) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    ssize_t n = recv(ws->sock, buf, len, 0);
    if (n > 0) {
        ws->last_rx_ns = vx_stream_now_ns();
        return n;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    } else {
        ws->peer_gone = true;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    }
    return -1;
}

static ssize_t cb_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user) {
    vx_ws *ws = user;
    ssize_t n = send(ws->sock, data, len, MSG_NOSIGNAL | ((flags & WSLAY_MSG_MORE) ? MSG_MORE : 0));
    if (n >= 0) return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    } else {
        ws->peer_gone = true;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    }
    return -1;
}

/* Asks for a close from the stream thread itself (protocol-level refusals). */
static void close_internal(vx_ws *ws, int code, const char *reason) {
    pthread_mutex_lock(&ws->mu);
    if (!ws->closing) {
        ws->closing = true;
        ws->close_now = true;
        ws->close_code = code;
        snprintf(ws->close_reason, sizeof ws->close_reason, "%s", reason);
    }
    pthread_mutex_unlock(&ws->mu);
}

static bool pause_wanted(vx_ws *ws) {
    pthread_mutex_lock(&ws->mu);
    bool p = ws->want_pause;
    pthread_mutex_unlock(&ws->mu);
    return p;
}

static void deliver(vx_ws *ws, uint8_t opcode, const unsigned char *data, size_t len) {
    if (opcode == WSLAY_TEXT_FRAME) {
        if (ws->h.on_text) ws->h.on_text(ws, (const char *)data, len, ws->user);
        else close_internal(ws, VX_WS_UNSUPPORTED, "text messages are not accepted");
    } else {
        if (ws->h.on_binary) ws->h.on_binary(ws, data, len, ws->user);
        else close_internal(ws, VX_WS_UNSUPPORTED, "binary messages are not accepted");
    }
    if (pause_wanted(ws)) ws->paused = true;
}

static void cb_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user) {
    (void)ctx;
    vx_ws *ws = user;
    if (arg->opcode == WSLAY_CONNECTION_CLOSE && arg->msg_length > 2) {
        size_t n = arg->msg_length - 2 < sizeof ws->peer_reason ? arg->msg_length - 2 : sizeof ws->peer_reason - 1;
        memcpy(ws->peer_reason, arg->msg + 2, n);
        ws->peer_reason[n] = '\0';
    }
    if (arg->opcode != WSLAY_TEXT_FRAME && arg->opcode != WSLAY_BINARY_FRAME) return;
    ws->last_msg_ns = vx_stream_now_ns();
    pthread_mutex_lock(&ws->mu);
    bool closing = ws->closing;
    pthread_mutex_unlock(&ws->mu);
    if (closing) return;  /* the app has said goodbye: drop late messages */
    if (ws->paused) {
        /* already in wslay's read buffer when reading was paused: keep it */
        ws_msg *m = malloc(sizeof *m + arg->msg_length);
        if (!m) {
            close_internal(ws, VX_WS_INTERNAL, "out of memory");
            return;
        }
        m->next = NULL;
        m->opcode = arg->opcode;
        m->len = arg->msg_length;
        if (arg->msg_length) memcpy(m->data, arg->msg, arg->msg_length);
        if (ws->held_tail) ws->held_tail->next = m;
        else ws->held_head = m;
        ws->held_tail = m;
        return;
    }
    deliver(ws, arg->opcode, arg->msg, arg->msg_length);
}

static const struct wslay_event_callbacks ws_callbacks = {
    .recv_callback = cb_recv,
    .send_callback = cb_send,
    .on_msg_recv_callback = cb_msg,
};

/* ---- connection life (stream thread) ---- */

static void finish(vx_ws *ws) {
    if (ws->st == WS_DONE) return;
    int code = VX_WS_ABNORMAL;
    char reason[124] = "";
    if (ws->ctx) {
        bool received = wslay_event_get_close_received(ws->ctx);
        bool sent = wslay_event_get_close_sent(ws->ctx);
        if (received && !ws->server_initiated) {
            code = wslay_event_get_status_code_received(ws->ctx);
            snprintf(reason, sizeof reason, "%s", ws->peer_reason);
        } else if (sent) {
            code = wslay_event_get_status_code_sent(ws->ctx);
        }
    }
    pthread_mutex_lock(&ws->mu);
    if (ws->server_initiated && code != VX_WS_ABNORMAL && ws->close_code == code)
        snprintf(reason, sizeof reason, "%s", ws->close_reason);
    ws->finished = true;
    ws->closing = true;
    free_msgs(ws->out_head);
    ws->out_head = ws->out_tail = NULL;
    ws->out_bytes = 0;
    pthread_mutex_unlock(&ws->mu);

    bool was_open = ws->st == WS_OPEN || ws->urh;
    ws->st = WS_DONE;
    vx_stream_watch(&ws->item, -1, 0);
    vx_stream_set_deadline(&ws->item, 0);
    if (ws->urh) MHD_upgrade_action(ws->urh, MHD_UPGRADE_ACTION_CLOSE);
    ws->urh = NULL;
    if (ws->counted_upgrade) atomic_fetch_sub(&ws->srv->upgrading, 1);
    ws->counted_upgrade = false;
    vx_debug("http %s: websocket closed with %d%s", ws->id, code, was_open ? "" : " (never opened)");
    if (ws->h.on_close) ws->h.on_close(ws, code, reason, ws->user);
    vx_stream_retire(&ws->item);
}

static uint64_t min_nonzero(uint64_t a, uint64_t b) { return !a ? b : (!b || a < b) ? a : b; }

/* Moves queued sends into wslay, applies close/pause requests, reads if
 * asked, writes what it can, then updates epoll interest and the deadline. */
/* Moves the sends of other threads into wslay (dropped if a close without
 * flush was asked for). */
/* What the app asked for, read in the same lock hold that takes the
 * outbox: a close seen here never overtakes a message sent before it. */
typedef struct ws_wants {
    bool closing, close_now, pause;
    int close_code;
    char close_reason[124];
} ws_wants;

static void take_outbox(vx_ws *ws, ws_wants *w) {
    pthread_mutex_lock(&ws->mu);
    ws_msg *batch = ws->out_head;
    ws->out_head = ws->out_tail = NULL;
    ws->out_bytes = 0;
    w->closing = ws->closing;
    w->close_now = ws->close_now;
    w->pause = ws->want_pause;
    w->close_code = ws->close_code;
    memcpy(w->close_reason, ws->close_reason, sizeof w->close_reason);
    pthread_mutex_unlock(&ws->mu);
    for (ws_msg *m = batch; m; m = m->next) {
        struct wslay_event_msg msg = {.opcode = m->opcode, .msg = m->data, .msg_length = m->len};
        if (!w->close_now) wslay_event_queue_msg(ws->ctx, &msg);
    }
    free_msgs(batch);
}

static void service(vx_ws *ws, bool readable) {
    if (ws->st != WS_OPEN) return;
    ws_wants w;
    take_outbox(ws, &w);
    bool want_pause = w.pause;

    if (ws->paused && !want_pause) {
        ws->paused = false;
        ws->last_rx_ns = ws->last_msg_ns = vx_stream_now_ns();
        while (ws->held_head && !ws->paused) {
            ws_msg *m = ws->held_head;
            ws->held_head = m->next;
            if (!ws->held_head) ws->held_tail = NULL;
            deliver(ws, m->opcode, m->data, m->len);
            free(m);
        }
        readable = !ws->paused;  /* wslay may hold whole frames already read */
    } else if (!ws->paused && want_pause) {
        ws->paused = true;
    }

    if (readable && !ws->paused && wslay_event_want_read(ws->ctx)) {
        if (wslay_event_recv(ws->ctx) != 0) ws->peer_gone = true;
        if (!wslay_event_get_close_received(ws->ctx) && !wslay_event_want_read(ws->ctx) && !ws->peer_gone)
            ws->server_initiated = true;  /* wslay refused the input (1002/1007/1009) */
        take_outbox(ws, &w);  /* what the handlers just sent goes before any close */
    }

    /* Twice: a close asked for while messages were still queued goes out
     * once this turn's send has flushed them (no later wake would come). */
    for (int round = 0; round < 2; round++) {
        if (w.closing && !ws->close_queued && !ws->peer_gone &&
            (w.close_now || wslay_event_get_queued_msg_count(ws->ctx) == 0)) {
            ws->close_queued = true;
            if (!wslay_event_get_close_received(ws->ctx)) ws->server_initiated = true;
            wslay_event_queue_close(ws->ctx, (uint16_t)w.close_code, (const uint8_t *)w.close_reason,
                                    strlen(w.close_reason));
            ws->close_deadline_ns = vx_stream_now_ns() + WS_CLOSE_WAIT_NS;
        }
        if (!ws->peer_gone && wslay_event_want_write(ws->ctx) && wslay_event_send(ws->ctx) != 0)
            ws->peer_gone = true;
    }

    bool sent = wslay_event_get_close_sent(ws->ctx), received = wslay_event_get_close_received(ws->ctx);
    if (ws->peer_gone || (sent && (received || !wslay_event_want_read(ws->ctx)))) {
        finish(ws);
        return;
    }
    if (received && !sent) ws->close_deadline_ns = ws->close_deadline_ns ? ws->close_deadline_ns
                                                                         : vx_stream_now_ns() + WS_CLOSE_WAIT_NS;

    pthread_mutex_lock(&ws->mu);
    ws->wire_bytes = wslay_event_get_queued_msg_length(ws->ctx);
    pthread_mutex_unlock(&ws->mu);

    uint32_t events = 0;
    if (!ws->paused && wslay_event_want_read(ws->ctx)) events |= EPOLLIN;
    if (wslay_event_want_write(ws->ctx)) events |= EPOLLOUT;
    if (events != ws->ep_events || !ws->item.in_epoll) {
        /* No interest (paused, nothing to write): stay registered edge-
         * triggered so that a reset (HUP/ERR) is still reported, once. */
        if (vx_stream_watch(&ws->item, ws->sock, events ? events : EPOLLET) != 0) {
            ws->peer_gone = true;
            finish(ws);
            return;
        }
        ws->ep_events = events;
    }

    uint64_t deadline = ws->close_deadline_ns;
    if (!ws->paused) {
        if (ws->ping_ns) deadline = min_nonzero(deadline, ws->last_ping_ns + ws->ping_ns);
        if (ws->ping_ns) deadline = min_nonzero(deadline, ws->last_rx_ns + 2 * ws->ping_ns);
        if (ws->idle_ns && !w.closing) deadline = min_nonzero(deadline, ws->last_msg_ns + ws->idle_ns);
    }
    vx_stream_set_deadline(&ws->item, deadline);
}

static void open_connection(vx_ws *ws) {
    pthread_mutex_lock(&ws->mu);
    int sock = ws->sock;
    pthread_mutex_unlock(&ws->mu);
    atomic_fetch_sub(&ws->srv->upgrading, 1);
    ws->counted_upgrade = false;
    int fl = fcntl(sock, F_GETFL);
    if (fl >= 0) fcntl(sock, F_SETFL, fl | O_NONBLOCK);
    if (wslay_event_context_server_init(&ws->ctx, &ws_callbacks, ws) != 0) {
        ws->ctx = NULL;
        vx_error("http %s: websocket: out of memory", ws->id);
        finish(ws);
        return;
    }
    wslay_event_config_set_max_recv_msg_length(ws->ctx, ws->max_message);
    ws->st = WS_OPEN;
    ws->last_rx_ns = ws->last_msg_ns = ws->last_ping_ns = vx_stream_now_ns();
    int phase = vx_stream_phase(ws->item.stream);
    if (phase >= 2) {
        finish(ws);
        return;
    }
    if (ws->h.on_open) ws->h.on_open(ws, ws->user);
    if (phase >= 1) close_internal(ws, VX_WS_GOING_AWAY, "server shutting down");
    service(ws, ws->extra_len > 0);
}

static void w_wake(vx_stream_item *it) {
    vx_ws *ws = of(it);
    if (ws->st == WS_DONE) return;
    vx_stream_register(it);
    if (ws->st == WS_PRE) {
        pthread_mutex_lock(&ws->mu);
        bool upgraded = ws->upgraded, failed = ws->failed;
        pthread_mutex_unlock(&ws->mu);
        if (upgraded) open_connection(ws);
        else if (failed) finish(ws);
        return;
    }
    service(ws, false);
}

static void w_io(vx_stream_item *it, uint32_t events) {
    vx_ws *ws = of(it);
    if (ws->st != WS_OPEN) return;
    if ((events & (EPOLLHUP | EPOLLERR)) && ws->paused) {
        ws->peer_gone = true;
        finish(ws);
        return;
    }
    service(ws, (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0);
}

static void w_timer(vx_stream_item *it, uint64_t now) {
    vx_ws *ws = of(it);
    if (ws->st != WS_OPEN) return;
    if (ws->close_deadline_ns && now >= ws->close_deadline_ns) {
        finish(ws);
        return;
    }
    if (!ws->paused) {
        if (ws->ping_ns && now >= ws->last_rx_ns + 2 * ws->ping_ns) {
            vx_debug("http %s: websocket peer silent; dropped", ws->id);
            ws->peer_gone = true;
            finish(ws);
            return;
        }
        if (ws->idle_ns && now >= ws->last_msg_ns + ws->idle_ns) close_internal(ws, VX_WS_GOING_AWAY, "idle timeout");
        if (ws->ping_ns && now >= ws->last_ping_ns + ws->ping_ns) {
            struct wslay_event_msg ping = {.opcode = WSLAY_PING, .msg = NULL, .msg_length = 0};
            wslay_event_queue_msg(ws->ctx, &ping);
            ws->last_ping_ns = now;
        }
    }
    service(ws, false);
}

static void w_stop(vx_stream_item *it, int phase) {
    vx_ws *ws = of(it);
    if (ws->st == WS_DONE) return;
    if (phase == 1) {
        if (ws->st == WS_OPEN) {
            pthread_mutex_lock(&ws->mu);
            if (!ws->closing) {
                ws->closing = true;
                ws->close_code = VX_WS_GOING_AWAY;
                snprintf(ws->close_reason, sizeof ws->close_reason, "server shutting down");
            }
            pthread_mutex_unlock(&ws->mu);
            service(ws, false);
        }
        return;
    }
    if (ws->st == WS_PRE) {
        w_wake(it);  /* opens it if the socket arrived: it then ends at once */
        return;
    }
    finish(ws);
}

static const vx_stream_item_ops ws_ops = {
    .wake = w_wake,
    .io = w_io,
    .timer = w_timer,
    .stop = w_stop,
    .destroy = w_destroy,
};

/* ---- handshake and upgrade ---- */

/* True if the comma-separated header value lists token (case-insensitive). */
static bool has_token(const char *value, const char *token) {
    size_t tlen = strlen(token);
    for (const char *p = value; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        size_t n = strcspn(p, ",");
        size_t m = n;
        while (m && (p[m - 1] == ' ' || p[m - 1] == '\t')) m--;
        if (m == tlen && strncasecmp(p, token, tlen) == 0) return true;
        p += n;
    }
    return false;
}

/* A key is base64 of 16 bytes: 22 characters and "==". */
static bool key_ok(const char *key) {
    unsigned char raw[18];
    size_t len = 0;
    if (!key || strlen(key) != 24) return false;
    return sodium_base642bin(raw, sizeof raw, key, 24, NULL, &len, NULL, sodium_base64_VARIANT_ORIGINAL) == 0 &&
           len == 16;
}

bool vx_req_is_websocket(vx_request *req) {
    const char *up = vx_req_header(req, "Upgrade");
    return up && has_token(up, "websocket");
}

/* MHD thread, after the 101 went out: hand the socket to the stream thread. */
static void on_upgrade(void *cls, struct MHD_Connection *conn, void *con_cls, const char *extra_in,
                       size_t extra_in_size, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh) {
    (void)conn, (void)con_cls;
    vx_ws *ws = cls;
    char *extra = NULL;
    if (extra_in_size) {
        extra = malloc(extra_in_size);
        if (extra) memcpy(extra, extra_in, extra_in_size);
    }
    pthread_mutex_lock(&ws->mu);
    ws->sock = sock;
    ws->urh = urh;
    ws->extra = extra;
    ws->extra_len = extra ? extra_in_size : 0;
    ws->upgraded = true;
    if (extra_in_size && !extra) {
        ws->closing = ws->close_now = true;
        ws->close_code = VX_WS_INTERNAL;
    }
    vx_stream_wake(&ws->item);
    pthread_mutex_unlock(&ws->mu);
}

static void refuse(vx_request *req, const char *why) {
    vx_respond_errorf(req, VX_E_INVALID, "invalid_websocket_handshake", "%s", why);
}

vx_ws *vx_respond_websocket(vx_request *req, const vx_ws_handlers *handlers, const vx_ws_options *opts,
                            void *user) {
    if (req->status != 0 || req->deferred || req->sse || req->ws) {
        vx_error("http %s: handler answered twice; websocket refused", req->id);
        return NULL;
    }
    const char *up = vx_req_header(req, "Upgrade"), *conn = vx_req_header(req, "Connection");
    const char *version = vx_req_header(req, "Sec-WebSocket-Version"), *key = vx_req_header(req, "Sec-WebSocket-Key");
    if (strcmp(req->method, "GET") != 0) {
        refuse(req, "a WebSocket handshake must be a GET");
        return NULL;
    }
    if (!up || !has_token(up, "websocket") || !conn || !has_token(conn, "upgrade")) {
        refuse(req, "expected Upgrade: websocket and Connection: Upgrade");
        return NULL;
    }
    if (!version || strcmp(version, "13") != 0) {
        vx_resp_header(req, "Sec-WebSocket-Version", "13");
        refuse(req, "unsupported Sec-WebSocket-Version (13 is supported)");
        return NULL;
    }
    if (!key_ok(key)) {
        refuse(req, "Sec-WebSocket-Key must be the base64 of 16 bytes");
        return NULL;
    }
    if (atomic_load(&req->srv->stopping) || vx_stream_phase(req->srv->stream) >= 1) {
        vx_respond_errorf(req, VX_E_UNAVAILABLE, "shutting_down", "the server is shutting down");
        return NULL;
    }
    vx_ws *ws = calloc(1, sizeof *ws);
    struct MHD_Response *resp = ws ? MHD_create_response_for_upgrade(on_upgrade, ws) : NULL;
    if (!resp) {
        free(ws);
        vx_respond_errorf(req, VX_E_INTERNAL, "internal", "internal error");
        return NULL;
    }
    vx_stream_item_init(&ws->item, req->srv->stream, &ws_ops);
    vx_stream_item_ref(&ws->item);  /* the caller and the request */
    pthread_mutex_init(&ws->mu, NULL);
    ws->srv = req->srv;
    memcpy(ws->id, req->id, sizeof ws->id);
    ws->h = *handlers;
    ws->user = user;
    vx_ws_options o = opts ? *opts : (vx_ws_options){0};
    ws->max_message = o.max_message_bytes ? o.max_message_bytes : WS_DEFAULT_MAX_MESSAGE;
    ws->max_queued = o.max_queued_bytes ? o.max_queued_bytes : WS_DEFAULT_MAX_QUEUED;
    ws->ping_ns = (uint64_t)(o.ping_interval_ms > 0 ? o.ping_interval_ms : WS_DEFAULT_PING_MS) * 1000000u;
    ws->idle_ns = (uint64_t)(o.idle_timeout_ms > 0 ? o.idle_timeout_ms : 0) * 1000000u;
    ws->sock = -1;
    ws->st = WS_PRE;
    ws->counted_upgrade = true;
    atomic_fetch_add(&req->srv->upgrading, 1);

    char accept[29];
    vx_http_ws_accept(key, accept);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_UPGRADE, "websocket");
    MHD_add_response_header(resp, "Sec-WebSocket-Accept", accept);
    const char *offered = vx_req_header(req, "Sec-WebSocket-Protocol");
    if (o.subprotocol && offered && has_token(offered, o.subprotocol))
        MHD_add_response_header(resp, "Sec-WebSocket-Protocol", o.subprotocol);
    req->resp = resp;
    req->status = 101;
    req->ws = ws;
    vx_stream_wake(&ws->item);  /* registers it: server stop sees it from now on */
    return ws;
}

void vx_ws_on_request_done(vx_ws *ws) {
    pthread_mutex_lock(&ws->mu);
    if (!ws->upgraded && !ws->finished) {
        ws->failed = true;
        vx_stream_wake(&ws->item);
    }
    pthread_mutex_unlock(&ws->mu);
}

/* ---- handle calls (any thread) ---- */

static int send_msg(vx_ws *ws, uint8_t opcode, const void *data, size_t len) {
    ws_msg *m = malloc(sizeof *m + len);
    if (m) {
        m->next = NULL;
        m->opcode = opcode;
        m->len = len;
        if (len) memcpy(m->data, data, len);
    }
    pthread_mutex_lock(&ws->mu);
    if (ws->closing || !m) {
        pthread_mutex_unlock(&ws->mu);
        free(m);
        return -1;
    }
    if (ws->out_bytes + ws->wire_bytes + len > ws->max_queued) {
        ws->closing = ws->close_now = true;
        ws->close_code = VX_WS_POLICY;
        snprintf(ws->close_reason, sizeof ws->close_reason, "consumer too slow");
        free_msgs(ws->out_head);
        ws->out_head = ws->out_tail = NULL;
        ws->out_bytes = 0;
        vx_stream_wake(&ws->item);
        pthread_mutex_unlock(&ws->mu);
        vx_warn("http %s: websocket consumer too slow; closing with 1008", ws->id);
        free(m);
        return -1;
    }
    if (ws->out_tail) ws->out_tail->next = m;
    else ws->out_head = m;
    ws->out_tail = m;
    ws->out_bytes += len;
    vx_stream_wake(&ws->item);
    pthread_mutex_unlock(&ws->mu);
    return 0;
}

int vx_ws_send_text(vx_ws *ws, const char *data, size_t len) { return send_msg(ws, WSLAY_TEXT_FRAME, data, len); }

int vx_ws_send_binary(vx_ws *ws, const void *data, size_t len) {
    return send_msg(ws, WSLAY_BINARY_FRAME, data, len);
}

int vx_ws_send_json(vx_ws *ws, json_t *json) {
    char *text = json ? json_dumps(json, VX_JSON_DUMP_FLAGS) : NULL;
    json_decref(json);
    if (!text) return -1;
    int rc = send_msg(ws, WSLAY_TEXT_FRAME, text, strlen(text));
    free(text);
    return rc;
}

/* Cuts at most max bytes of UTF-8 without splitting a character. */
static size_t utf8_cut(const char *s, size_t max) {
    size_t n = strlen(s);
    if (n <= max) return n;
    while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80) max--;
    return max;
}

void vx_ws_close(vx_ws *ws, int code, const char *reason) {
    if (code < 1000 || code > 4999 || code == 1004 || code == 1005 || code == 1006 || code == 1015) code = 1000;
    pthread_mutex_lock(&ws->mu);
    if (!ws->closing) {
        ws->closing = true;
        ws->close_code = code;
        size_t n = utf8_cut(reason ? reason : "", 123);
        memcpy(ws->close_reason, reason ? reason : "", n);
        ws->close_reason[n] = '\0';
        vx_stream_wake(&ws->item);
    }
    pthread_mutex_unlock(&ws->mu);
}

static void set_pause(vx_ws *ws, bool pause) {
    pthread_mutex_lock(&ws->mu);
    if (!ws->finished && ws->want_pause != pause) {
        ws->want_pause = pause;
        vx_stream_wake(&ws->item);
    }
    pthread_mutex_unlock(&ws->mu);
}

void vx_ws_pause_reading(vx_ws *ws) { set_pause(ws, true); }
void vx_ws_resume_reading(vx_ws *ws) { set_pause(ws, false); }

bool vx_ws_open(const vx_ws *ws) {
    vx_ws *m = (vx_ws *)ws;
    pthread_mutex_lock(&m->mu);
    bool open = !m->closing;
    pthread_mutex_unlock(&m->mu);
    return open;
}

const char *vx_ws_id(const vx_ws *ws) { return ws->id; }
void *vx_ws_user(const vx_ws *ws) { return ws->user; }

void vx_ws_release(vx_ws *ws) {
    if (ws) vx_stream_item_unref(&ws->item);
}
