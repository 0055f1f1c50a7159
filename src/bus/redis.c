/* redis.c - the cross-process bus ("redis://host:port[/db]", hiredis): every
 * node PUBLISHes each event once on one channel and one reader thread per
 * process SUBSCRIBEs to it, then fans messages out through an in-process
 * local bus (the same hashed user/job dispatch). A publish is delivered here
 * first and then sent; echoes of our own messages are skipped by origin id.
 * Redis being down never blocks callers for long: bounded timeouts, then
 * drop (events live in the store; clients resume from it). The process must
 * ignore SIGPIPE (main does). publish/subscribe/unsubscribe: any thread. */
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "../util/clock.h"
#include "../util/crypto.h"
#include "../util/log.h"
#include "bus.h"

/* A publisher waits at most about connect + 2 commands once when redis
 * vanishes (a dead host, not a refused port), then drops until the back-off
 * ends: it publishes under the events hub's ordering lock. */
#define CONNECT_TIMEOUT_MS 300
#define COMMAND_TIMEOUT_MS 500
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define IDLE_PING_MS 10000      /* a silent subscription is probed ... */
#define PING_DEADLINE_MS 10000  /* ... and dropped when the probe goes unanswered */
#define ORIGIN_LEN 16

typedef struct redis_bus {
    vx_bus base;
    vx_bus *local;              /* this process's subscribers */
    char host[256];
    int port, db;
    char password[256];
    char channel[64];           /* "voxd:events:<db>": pub/sub ignores SELECT, so the db names the channel */
    char origin[ORIGIN_LEN + 1];/* this bus instance, to skip its own echoes */

    pthread_mutex_t pub_mu;     /* the publishing connection and its back-off */
    redisContext *pub;
    int64_t pub_retry_at;       /* monotonic ms; no connect attempt before */
    int pub_backoff_ms;
    bool pub_down;              /* logged as down; log again when it is back */

    pthread_t reader;
    bool reader_started;
    atomic_bool subscribed;     /* the reader's subscription is live */
    atomic_uint_fast64_t epoch; /* subscriptions made so far (see bus.h) */
    int wake[2];                /* self-pipe: close() wakes the reader */
    atomic_bool stopping;
} redis_bus;

static void set_tv(struct timeval *tv, int ms) {
    tv->tv_sec = ms / 1000;
    tv->tv_usec = (ms % 1000) * 1000;
}

/* A connected, authenticated context with command timeouts, or NULL with a
 * reason in why (no secrets in it). */
static redisContext *connect_redis(redis_bus *b, char *why, size_t cap) {
    struct timeval tv;
    set_tv(&tv, CONNECT_TIMEOUT_MS);
    redisContext *c = redisConnectWithTimeout(b->host, b->port, tv);
    if (!c || c->err) {
        snprintf(why, cap, "cannot connect to %.128s:%d: %s", b->host, b->port, c ? c->errstr : "out of memory");
        goto fail;
    }
    set_tv(&tv, COMMAND_TIMEOUT_MS);
    redisSetTimeout(c, tv);
    redisEnableKeepAlive(c);
    if (b->password[0]) {
        redisReply *r = redisCommand(c, "AUTH %s", b->password);
        bool ok = r && r->type == REDIS_REPLY_STATUS;
        freeReplyObject(r);
        if (!ok) {
            snprintf(why, cap, "redis at %.128s:%d refused the password", b->host, b->port);
            goto fail;
        }
    }
    return c;
fail:
    if (c) redisFree(c);
    return NULL;
}

/* ---- publishing ---- */

/* "1 <origin> <seq> <type> <user_id> <job_id>\n<json>"; "-" for an absent
 * key. The caller frees it; NULL when out of memory. */
static char *encode(const redis_bus *b, const vx_bus_msg *m, size_t *len) {
    const char *user = m->user_id && *m->user_id ? m->user_id : "-";
    const char *job = m->job_id && *m->job_id ? m->job_id : "-";
    int head = snprintf(NULL, 0, "1 %s %" PRId64 " %s %s %s\n", b->origin, m->seq, m->type, user, job);
    char *out = malloc((size_t)head + m->len + 1);
    if (!out) return NULL;
    snprintf(out, (size_t)head + 1, "1 %s %" PRId64 " %s %s %s\n", b->origin, m->seq, m->type, user, job);
    memcpy(out + head, m->json, m->len);
    out[head + m->len] = '\0';
    *len = (size_t)head + m->len;
    return out;
}

/* Under pub_mu: one PUBLISH on the current connection; false when the
 * connection is broken (it is then freed). */
static bool publish_once(redis_bus *b, const char *payload, size_t len, char *why, size_t cap) {
    redisReply *r = redisCommand(b->pub, "PUBLISH %s %b", b->channel, payload, len);
    bool ok = r && r->type == REDIS_REPLY_INTEGER;
    if (!ok) {
        snprintf(why, cap, "%s", r ? (r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply")
                                   : b->pub->errstr);
        redisFree(b->pub);
        b->pub = NULL;
    }
    freeReplyObject(r);
    return ok;
}

static int redis_publish(vx_bus *bus, const vx_bus_msg *msg, vx_err *err) {
    redis_bus *b = (redis_bus *)bus;
    vx_bus_publish(b->local, msg, err); /* ours first; cannot fail */
    size_t len = 0;
    char *payload = encode(b, msg, &len);
    if (!payload) return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
    char why[512] = "";
    bool sent = false;
    pthread_mutex_lock(&b->pub_mu);
    /* A broken connection gets one fresh attempt at once (Redis restarted);
     * after a failed connect, callers drop at once until the back-off ends. */
    bool fresh = false;
    for (int round = 0; round < 2 && !sent; round++) {
        if (!b->pub) {
            if (vx_mono_ms() < b->pub_retry_at) break;
            if (!(b->pub = connect_redis(b, why, sizeof why))) {
                b->pub_backoff_ms = b->pub_backoff_ms ? b->pub_backoff_ms * 2 : BACKOFF_MIN_MS;
                if (b->pub_backoff_ms > BACKOFF_MAX_MS) b->pub_backoff_ms = BACKOFF_MAX_MS;
                b->pub_retry_at = vx_mono_ms() + b->pub_backoff_ms;
                break;
            }
            fresh = true;
        }
        sent = publish_once(b, payload, len, why, sizeof why);
        if (!sent && fresh) break;
    }
    if (sent) {
        b->pub_backoff_ms = 0;
        if (b->pub_down) vx_info("redis bus: publishing to %.128s:%d again", b->host, b->port);
        b->pub_down = false;
    } else if (!b->pub_down) {
        b->pub_down = true;
        vx_warn("redis bus: events are delivered in this process only until redis is back (%s)", why);
    }
    pthread_mutex_unlock(&b->pub_mu);
    free(payload);
    if (!sent) return vx_err_set(err, VX_E_UNAVAILABLE, "bus_unavailable", "the redis event bus is unreachable");
    return 0;
}

/* ---- the subscriber thread ---- */

/* Delivers one received payload to local subscribers unless it is our own. */
static void dispatch(redis_bus *b, const char *p, size_t len) {
    const char *nl = memchr(p, '\n', len);
    if (!nl || (size_t)(nl - p) > 400) goto bad;
    char head[401], origin[ORIGIN_LEN + 1], type[32], user[VX_ID_SIZE], job[VX_ID_SIZE];
    long long seq;
    memcpy(head, p, (size_t)(nl - p));
    head[nl - p] = '\0';
    if (sscanf(head, "1 %16s %lld %31s %47s %47s", origin, &seq, type, user, job) != 5) goto bad;
    if (strcmp(origin, b->origin) == 0) return;
    vx_bus_msg m = {.seq = seq, .type = type, .user_id = strcmp(user, "-") ? user : NULL,
                    .job_id = strcmp(job, "-") ? job : NULL, .json = nl + 1,
                    .len = len - (size_t)(nl + 1 - p)};
    vx_err err = {0};
    vx_bus_publish(b->local, &m, &err);
    return;
bad:
    vx_warn("redis bus: ignored a malformed message on %s", b->channel);
}

/* True to keep reading; false when the connection must be dropped. */
static bool handle_reply(redis_bus *b, redisReply *r, bool *pong) {
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1 && r->element[0]->type == REDIS_REPLY_STRING) {
        const char *kind = r->element[0]->str;
        if (strcmp(kind, "message") == 0 && r->elements == 3 && r->element[2]->type == REDIS_REPLY_STRING)
            dispatch(b, r->element[2]->str, r->element[2]->len);
        else if (strcmp(kind, "pong") == 0)
            *pong = true;
        return true;
    }
    return r->type != REDIS_REPLY_ERROR;
}

/* Waits up to ms for the wake pipe; true when the bus is closing. */
static bool sleep_or_stop(redis_bus *b, int ms) {
    struct pollfd p = {.fd = b->wake[0], .events = POLLIN};
    poll(&p, 1, ms);
    return atomic_load(&b->stopping);
}

/* Reads one subscription until it breaks or the bus closes. */
static void follow(redis_bus *b, redisContext *c) {
    int64_t last_rx = vx_mono_ms(), ping_at = 0;
    for (;;) {
        void *reply = NULL;
        while (redisReaderGetReply(c->reader, &reply) == REDIS_OK && reply) {
            bool pong = false;
            bool keep = handle_reply(b, reply, &pong);
            freeReplyObject(reply);
            reply = NULL;
            if (!keep) return;
            if (pong) ping_at = 0;
        }
        if (c->reader->err) return;
        struct pollfd p[2] = {{.fd = c->fd, .events = POLLIN}, {.fd = b->wake[0], .events = POLLIN}};
        int n = poll(p, 2, 1000);
        if (atomic_load(&b->stopping)) return;
        if (n < 0 && errno != EINTR) return;
        int64_t now = vx_mono_ms();
        if (n > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            if (redisBufferRead(c) != REDIS_OK) {
                vx_warn("redis bus: subscription to %.128s:%d lost: %s", b->host, b->port, c->errstr);
                return;
            }
            last_rx = now;
            continue;
        }
        if (ping_at && now - ping_at > PING_DEADLINE_MS) {
            vx_warn("redis bus: %.128s:%d stopped answering; reconnecting", b->host, b->port);
            return;
        }
        if (!ping_at && now - last_rx > IDLE_PING_MS) {
            int done = 0;
            if (redisAppendCommand(c, "PING") != REDIS_OK || redisBufferWrite(c, &done) != REDIS_OK) return;
            ping_at = now;
        }
    }
}

static void *reader_main(void *arg) {
    redis_bus *b = arg;
    int backoff = 0;
    bool was_lost = false;
    while (!atomic_load(&b->stopping)) {
        char why[512] = "";
        redisContext *c = connect_redis(b, why, sizeof why);
        if (c) {
            redisReply *r = redisCommand(c, "SUBSCRIBE %s", b->channel);
            bool ok = r && r->type == REDIS_REPLY_ARRAY;
            freeReplyObject(r);
            if (ok) {
                if (was_lost) vx_info("redis bus: subscribed to %s on %.128s:%d again", b->channel, b->host, b->port);
                backoff = 0;
                atomic_store(&b->subscribed, true);
                atomic_fetch_add(&b->epoch, 1);
                struct timeval none = {0, 0};
                redisSetTimeout(c, none); /* follow() polls; blocking reads only after data is there */
                follow(b, c);
                atomic_store(&b->subscribed, false);
            } else {
                snprintf(why, sizeof why, "redis at %.128s:%d refused SUBSCRIBE", b->host, b->port);
            }
            redisFree(c);
        }
        if (atomic_load(&b->stopping)) break;
        if (why[0] && !was_lost) vx_warn("redis bus: %s; retrying with back-off", why);
        was_lost = true;
        backoff = backoff ? backoff * 2 : BACKOFF_MIN_MS;
        if (backoff > BACKOFF_MAX_MS) backoff = BACKOFF_MAX_MS;
        if (sleep_or_stop(b, backoff)) break;
    }
    return NULL;
}

/* ---- subscriptions: the local bus does the matching ---- */

static vx_bus_sub *redis_subscribe(vx_bus *bus, const vx_bus_filter *f, vx_bus_fn fn, void *user_data,
                                   vx_err *err) {
    return vx_bus_subscribe(((redis_bus *)bus)->local, f, fn, user_data, err);
}

static void redis_unsubscribe(vx_bus *bus, vx_bus_sub *sub) {
    vx_bus_unsubscribe(((redis_bus *)bus)->local, sub);
}

/* ---- open / close ---- */

/* redis://[[user]:password@]host[:port][/db]; fills the bus fields. */
static int parse_url(redis_bus *b, const char *url, vx_err *err) {
    const char *p = url + strlen("redis://");
    if (strncmp(url, "redis://", 8) != 0) goto bad;
    const char *at = strchr(p, '@'), *slash = strchr(p, '/');
    if (at && (!slash || at < slash)) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        if ((size_t)(at - pw) >= sizeof b->password) goto bad;
        memcpy(b->password, pw, (size_t)(at - pw));
        b->password[at - pw] = '\0';
        p = at + 1;
    }
    size_t hostlen = strcspn(p, ":/");
    if (hostlen == 0 || hostlen >= sizeof b->host) goto bad;
    memcpy(b->host, p, hostlen);
    b->host[hostlen] = '\0';
    p += hostlen;
    b->port = 6379;
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535) goto bad;
        b->port = (int)port;
        p = end;
    }
    if (*p == '/' && p[1]) {
        char *end;
        long db = strtol(p + 1, &end, 10);
        if (end == p + 1 || *end || db < 0 || db > 1000000) goto bad;
        b->db = (int)db;
    } else if (*p && strcmp(p, "/") != 0) {
        goto bad;
    }
    snprintf(b->channel, sizeof b->channel, "voxd:events:%d", b->db);
    return 0;
bad:
    return vx_err_set(err, VX_E_INVALID, "invalid_bus_url", "the redis bus URL is redis://host[:port][/db]");
}

static void redis_close(vx_bus *bus) {
    redis_bus *b = (redis_bus *)bus;
    if (!b) return;
    if (b->wake[1] >= 0) {
        atomic_store(&b->stopping, true);
        ssize_t w = write(b->wake[1], "x", 1);
        (void)w;
        if (b->reader_started) pthread_join(b->reader, NULL);
        close(b->wake[0]);
        close(b->wake[1]);
    }
    if (b->pub) redisFree(b->pub);
    vx_bus_close(b->local);
    pthread_mutex_destroy(&b->pub_mu);
    free(b);
}

static vx_bus *redis_open(const char *url, vx_err *err);

static uint64_t redis_epoch(vx_bus *bus) { return atomic_load(&((redis_bus *)bus)->epoch); }

const vx_bus_ops vx_bus_redis_ops = {
    .scheme = "redis",
    .open = redis_open,              /* fails when redis cannot be reached at start-up */
    .close = redis_close,
    .publish = redis_publish,        /* local delivery, then PUBLISH or drop */
    .subscribe = redis_subscribe,
    .unsubscribe = redis_unsubscribe,
    .cross_process = true,           /* many publishers: feeds fill gaps from the store */
    .epoch = redis_epoch,            /* bumps on every (re)subscription */
};

/* Returns a bus the caller closes with vx_bus_close(). */
static vx_bus *redis_open(const char *url, vx_err *err) {
    redis_bus *b = calloc(1, sizeof *b);
    if (!b) {
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        return NULL;
    }
    b->base.ops = &vx_bus_redis_ops;
    b->wake[0] = b->wake[1] = -1;
    pthread_mutex_init(&b->pub_mu, NULL);
    if (parse_url(b, url, err) != 0) goto fail;
    vx_random_alnum(b->origin, ORIGIN_LEN);
    b->origin[ORIGIN_LEN] = '\0';
    if (!(b->local = vx_bus_open("local:", err))) goto fail;
    char why[512];
    if (!(b->pub = connect_redis(b, why, sizeof why))) {
        vx_err_set(err, VX_E_UNAVAILABLE, "bus_unavailable", "%s", why);
        goto fail;
    }
    if (pipe2(b->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        b->wake[0] = b->wake[1] = -1;
        vx_err_set(err, VX_E_INTERNAL, "internal", "cannot create a pipe");
        goto fail;
    }
    if (pthread_create(&b->reader, NULL, reader_main, b) != 0) {
        vx_err_set(err, VX_E_INTERNAL, "internal", "cannot start the redis reader thread");
        goto fail;
    }
    b->reader_started = true;
    /* Events published elsewhere right after open should reach us: give the
     * subscription a moment (it is live within one round trip normally). */
    for (int i = 0; i < 200 && !atomic_load(&b->subscribed); i++) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    vx_info("redis bus: %.128s:%d, channel %s", b->host, b->port, b->channel);
    return &b->base;
fail:
    redis_close(&b->base);
    return NULL;
}
