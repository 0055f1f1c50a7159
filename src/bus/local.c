/* local.c - the in-process bus ("local:"): subscriptions hashed by the user
 * or job they follow, so a publish touches only the matching ones, and each
 * costs one small node (thousands of idle subscribers stay cheap). Callbacks
 * run under a read lock on the publisher's thread; they only enqueue (see
 * bus.h), so publishers never wait on a consumer. Also holds vx_bus_open,
 * the scheme table every backend registers in. Any thread. */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "bus.h"

#define BUCKETS 4096

struct vx_bus_sub {
    struct vx_bus_sub *prev, *next;
    unsigned bucket;
    char by;                    /* 'u' user, 'j' job */
    char key[VX_ID_SIZE];
    vx_bus_fn fn;
    void *user_data;
};

typedef struct local_bus {
    vx_bus base;
    pthread_rwlock_t lock;      /* write: (un)subscribe; read: publish */
    vx_bus_sub *buckets[BUCKETS];
} local_bus;

static unsigned hash_key(char by, const char *key) {
    uint32_t h = 2166136261u ^ (unsigned char)by;  /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) h = (h ^ *p) * 16777619u;
    return h % BUCKETS;
}

static void deliver(local_bus *b, char by, const char *key, const vx_bus_msg *msg) {
    if (!key || !*key) return;
    for (vx_bus_sub *s = b->buckets[hash_key(by, key)]; s; s = s->next)
        if (s->by == by && strcmp(s->key, key) == 0) s->fn(s->user_data, msg);
}

static int local_publish(vx_bus *bus, const vx_bus_msg *msg, vx_err *err) {
    local_bus *b = (local_bus *)bus;
    pthread_rwlock_rdlock(&b->lock);
    deliver(b, 'u', msg->user_id, msg);
    deliver(b, 'j', msg->job_id, msg);
    pthread_rwlock_unlock(&b->lock);
    return 0;
}

/* Returns a subscription released with unsubscribe. */
static vx_bus_sub *local_subscribe(vx_bus *bus, const vx_bus_filter *f, vx_bus_fn fn, void *user_data,
                                   vx_err *err) {
    local_bus *b = (local_bus *)bus;
    bool by_user = f->user_id && *f->user_id, by_job = f->job_id && *f->job_id;
    const char *key = by_user ? f->user_id : f->job_id;
    if (by_user == by_job || !fn || strlen(key) >= VX_ID_SIZE) {
        vx_err_set(err, VX_E_INVALID, "invalid_subscription", "subscribe to exactly one user or one job");
        return NULL;
    }
    vx_bus_sub *s = calloc(1, sizeof *s);
    if (!s) {
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        return NULL;
    }
    s->by = by_user ? 'u' : 'j';
    memcpy(s->key, key, strlen(key) + 1);
    s->fn = fn;
    s->user_data = user_data;
    s->bucket = hash_key(s->by, s->key);
    pthread_rwlock_wrlock(&b->lock);
    s->next = b->buckets[s->bucket];
    if (s->next) s->next->prev = s;
    b->buckets[s->bucket] = s;
    pthread_rwlock_unlock(&b->lock);
    return s;
}

static void local_unsubscribe(vx_bus *bus, vx_bus_sub *s) {
    local_bus *b = (local_bus *)bus;
    pthread_rwlock_wrlock(&b->lock);
    if (s->prev) s->prev->next = s->next;
    else b->buckets[s->bucket] = s->next;
    if (s->next) s->next->prev = s->prev;
    pthread_rwlock_unlock(&b->lock);
    free(s);
}

static vx_bus *local_open(const char *url, vx_err *err);

static void local_close(vx_bus *bus) {
    local_bus *b = (local_bus *)bus;
    if (!b) return;
    pthread_rwlock_destroy(&b->lock);
    free(b);
}

static const vx_bus_ops local_ops = {
    .scheme = "local",
    .open = local_open,          /* "local:" only; no options */
    .close = local_close,        /* subscriptions must be gone */
    .publish = local_publish,    /* never fails, never waits on a consumer */
    .subscribe = local_subscribe,
    .unsubscribe = local_unsubscribe,
};

/* Returns a bus the caller closes with vx_bus_close(). */
static vx_bus *local_open(const char *url, vx_err *err) {
    if (strcmp(url, "local:") != 0 && strcmp(url, "local://") != 0) {
        vx_err_set(err, VX_E_INVALID, "invalid_bus_url", "the in-process bus URL is \"local:\"");
        return NULL;
    }
    local_bus *b = calloc(1, sizeof *b);
    if (!b) {
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        return NULL;
    }
    b->base.ops = &local_ops;
    pthread_rwlock_init(&b->lock, NULL);
    return &b->base;
}

/* ---- scheme registry (shared by every backend) ---------------------------- */

extern const vx_bus_ops vx_bus_redis_ops; /* redis.c */

static const vx_bus_ops *const backends[] = {
    &local_ops,
    &vx_bus_redis_ops,
};

/* Returns a bus the caller closes with vx_bus_close(). */
vx_bus *vx_bus_open(const char *url, vx_err *err) {
    const char *colon = url ? strchr(url, ':') : NULL;
    if (!colon) {
        vx_err_set(err, VX_E_INVALID, "unknown_bus_scheme", "the bus URL has no scheme");
        return NULL;
    }
    size_t len = (size_t)(colon - url);
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        const char *scheme = backends[i]->scheme;
        if (strlen(scheme) == len && strncmp(scheme, url, len) == 0) return backends[i]->open(url, err);
    }
    vx_err_set(err, VX_E_INVALID, "unknown_bus_scheme", "unknown bus scheme \"%.*s\" (known: local, redis)",
               (int)(len > 16 ? 16 : len), url);
    return NULL;
}

void vx_bus_close(vx_bus *bus) {
    if (bus) bus->ops->close(bus);
}
