/* app.h - the process-wide context handed to api/, core/ and worker/:
 * configuration, the chosen backends and a few derived values. Built once by
 * main.c; read-only afterwards except the atomics. */
#ifndef VX_APP_H
#define VX_APP_H
#include <stdatomic.h>
#include <stdbool.h>
#include "../blob/blob.h"
#include "../store/store.h"
#include "../util/config.h"

typedef struct vx_metrics vx_metrics;
typedef struct vx_events vx_events;
typedef struct vx_streams vx_streams;

typedef struct vx_app {
    const vx_config *cfg;
    vx_store *store;
    vx_blob *blob;
    vx_metrics *metrics;
    vx_events *events;              /* event hub (core/events.c); NULL = emitting is a no-op */
    vx_streams *streams;            /* live stream threads (api/stream.c); NULL = streams refused */
    unsigned char jwt_secret[32];
    char tmp_dir[VX_PATH_SIZE + 16]; /* <data>/tmp: upload spools, fetched inputs, outputs */
    atomic_bool shutting_down;      /* set on SIGTERM: stop claiming, readyz fails */
    atomic_int workers_busy;
    struct {                        /* orphan sweeper totals (worker/sweeper.c), for /metrics */
        atomic_llong runs, removed, expired_uploads, failed;
    } sweep;
} vx_app;

#endif
