/* bus.h - live-event fan-out behind one interface (DESIGN.md "bus"). A
 * backend is a const table of hooks chosen from the URL scheme at start-up:
 * "local:" (in-process, local.c) now, "redis://" with the cluster issue.
 * Messages are plain event JSON text plus the routing keys a subscriber
 * filters on, so a network backend can carry them unchanged.
 * Threads: publish, subscribe and unsubscribe are callable from any thread. */
#ifndef VX_BUS_H
#define VX_BUS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "../util/err.h"
#include "../util/ids.h"

typedef struct vx_bus vx_bus;
typedef struct vx_bus_sub vx_bus_sub;

/* One published event, borrowed for the duration of a callback. */
typedef struct vx_bus_msg {
    int64_t seq;                /* the event's store sequence (ordering, resume) */
    const char *type;           /* "job.progress", ... */
    const char *user_id;
    const char *job_id;
    const char *json;           /* the event as JSON text */
    size_t len;
} vx_bus_msg;

/* A subscription sees the events of one user or of one job. */
typedef struct vx_bus_filter {
    const char *user_id;        /* exactly one of the two is set */
    const char *job_id;
} vx_bus_filter;

/* Called for each matching message, on the publisher's thread (local) or the
 * backend's reader thread (network backends). It must not block and must not
 * call subscribe/unsubscribe: copy what it needs into the subscriber's own
 * bounded queue and return, so a slow consumer never slows a publisher. */
typedef void (*vx_bus_fn)(void *user_data, const vx_bus_msg *msg);

typedef struct vx_bus_ops {
    const char *scheme;         /* "local", "redis" */
    /* NULL with err on failure. */
    vx_bus *(*open)(const char *url, vx_err *err);
    /* Every subscription must be gone before close. */
    void (*close)(vx_bus *bus);
    /* Delivers msg to every matching subscriber. A backend that cannot reach
     * its server returns -1 UNAVAILABLE; the local one cannot fail. */
    int (*publish)(vx_bus *bus, const vx_bus_msg *msg, vx_err *err);
    /* NULL with err on failure (bad filter, out of memory). */
    vx_bus_sub *(*subscribe)(vx_bus *bus, const vx_bus_filter *f, vx_bus_fn fn, void *user_data,
                             vx_err *err);
    /* After it returns, fn is not running and never runs again for sub. */
    void (*unsubscribe)(vx_bus *bus, vx_bus_sub *sub);
    /* Messages come from several processes, so they may arrive out of id
     * order (or, after an outage, not at all): a subscriber that needs every
     * event in order fills gaps from the store. false: in-process, in order. */
    bool cross_process;
    /* Optional (cross-process buses): how many times the subscription was
     * (re)established; a change means messages may have been missed. */
    uint64_t (*epoch)(vx_bus *bus);
} vx_bus_ops;

struct vx_bus {
    const vx_bus_ops *ops;
};

/* Chooses the backend by URL scheme; unknown: INVALID "unknown_bus_scheme". */
vx_bus *vx_bus_open(const char *url, vx_err *err);
void vx_bus_close(vx_bus *bus);

static inline int vx_bus_publish(vx_bus *bus, const vx_bus_msg *msg, vx_err *err) {
    return bus->ops->publish(bus, msg, err);
}
static inline vx_bus_sub *vx_bus_subscribe(vx_bus *bus, const vx_bus_filter *f, vx_bus_fn fn, void *user_data,
                                           vx_err *err) {
    return bus->ops->subscribe(bus, f, fn, user_data, err);
}
static inline void vx_bus_unsubscribe(vx_bus *bus, vx_bus_sub *sub) {
    if (sub) bus->ops->unsubscribe(bus, sub);
}

#endif
