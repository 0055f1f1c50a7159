/* sweeper.h - the orphan-object sweeper thread of `voxd serve`: every
 * --sweep-interval it runs one vx_uploads_sweep, on one node of a cluster
 * at a time (a store lease named "sweeper"). Start/stop from main only. */
#ifndef VX_SWEEPER_H
#define VX_SWEEPER_H
#include "../core/app.h"

typedef struct vx_sweeper vx_sweeper;

/* NULL with err if the thread cannot start; NULL without error (err
 * untouched) when --sweep-interval is 0. Stop with vx_sweeper_stop. */
vx_sweeper *vx_sweeper_start(vx_app *app, vx_err *err);
/* Waits for a sweep in progress to end; NULL is fine. */
void vx_sweeper_stop(vx_sweeper *s);

#endif
