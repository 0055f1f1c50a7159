/* worker.h - the in-process worker pool: N threads that claim jobs from the
 * store with a lease, run them through the pipeline and settle them; one
 * keeper thread that heartbeats running jobs (extending leases, picking up
 * cancel requests) and reaps expired leases. Started and stopped by main. */
#ifndef VX_WORKER_H
#define VX_WORKER_H
#include "../core/app.h"
#include "../util/err.h"

typedef struct vx_workers vx_workers;

/* Reclaims leases left by a previous run of this node (cfg->node_id) when
 * cfg->exclusive_node says no live process shares that id, else only expired
 * leases; then starts n worker threads (n may be 0: only the keeper runs)
 * and the keeper. */
vx_workers *vx_workers_start(vx_app *app, int n, vx_err *err);
/* Stops claiming at once; running jobs get grace_ms to finish, after which
 * they are interrupted and given back to the queue without counting the
 * attempt. Joins every thread and frees. */
void vx_workers_stop(vx_workers *w, int grace_ms);

#endif
