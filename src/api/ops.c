/* ops.c - operations endpoints: liveness, readiness, Prometheus metrics and
 * the OpenAPI document (embedded from src/api/openapi.json at build time). */
#include <stdatomic.h>
#include <string.h>
#include "../util/strbuf.h"
#include "common.h"
#include "handlers.h"

extern const char vx_openapi_json[];

void vx_api_healthz(vx_request *req) { vx_respond_json(req, 200, json_pack("{s:s}", "status", "ok")); }

void vx_api_readyz(vx_request *req) {
    vx_app *app = vx_req_app(req);
    vx_err err = {0};
    if (atomic_load(&app->shutting_down)) {
        vx_respond_errorf(req, VX_E_UNAVAILABLE, "shutting_down", "the server is stopping");
        return;
    }
    if (app->store->ops->ping(app->store, &err) != 0 || app->blob->ops->ping(app->blob, &err) != 0) {
        vx_respond_errorf(req, VX_E_UNAVAILABLE, "not_ready", "a backend is unavailable: %s", err.message);
        return;
    }
    vx_respond_json(req, 200, json_pack("{s:s}", "status", "ready"));
}

void vx_api_metrics(vx_request *req) {
    vx_app *app = vx_req_app(req);
    vx_strbuf b = {0};
    vx_http_metrics_render(req, &b);
    int64_t counts[VX_JOB_STATUS_COUNT] = {0};
    vx_err err = {0};
    if (app->store->ops->job_counts(app->store, counts, &err) == 0) {
        vx_strbuf_puts(&b, "# HELP voxd_jobs Jobs in the store by status.\n# TYPE voxd_jobs gauge\n");
        for (int s = 0; s < VX_JOB_STATUS_COUNT; s++)
            vx_strbuf_printf(&b, "voxd_jobs{status=\"%s\"} %lld\n", vx_job_status_name((vx_job_status)s),
                             (long long)counts[s]);
        vx_strbuf_printf(&b, "# HELP voxd_queue_depth Jobs waiting to run.\n# TYPE voxd_queue_depth gauge\n"
                             "voxd_queue_depth %lld\n", (long long)counts[VX_JOB_QUEUED]);
    }
    vx_strbuf_printf(&b,
                     "# HELP voxd_workers Worker threads in this process.\n# TYPE voxd_workers gauge\n"
                     "voxd_workers %d\n"
                     "# HELP voxd_workers_busy Worker threads running a job.\n# TYPE voxd_workers_busy gauge\n"
                     "voxd_workers_busy %d\n",
                     app->cfg->workers, atomic_load(&app->workers_busy));
    vx_strbuf_printf(&b,
                     "# HELP voxd_sweeps_total Orphan-object sweeps this process ran.\n# TYPE voxd_sweeps_total counter\n"
                     "voxd_sweeps_total %lld\n"
                     "# HELP voxd_sweep_removed_total Stored objects the sweeper removed as orphans.\n"
                     "# TYPE voxd_sweep_removed_total counter\nvoxd_sweep_removed_total %lld\n"
                     "# HELP voxd_sweep_expired_uploads_total Direct uploads that expired unused.\n"
                     "# TYPE voxd_sweep_expired_uploads_total counter\nvoxd_sweep_expired_uploads_total %lld\n"
                     "# HELP voxd_sweep_failed_total Objects or sweeps that failed (kept for the next sweep).\n"
                     "# TYPE voxd_sweep_failed_total counter\nvoxd_sweep_failed_total %lld\n",
                     (long long)atomic_load(&app->sweep.runs), (long long)atomic_load(&app->sweep.removed),
                     (long long)atomic_load(&app->sweep.expired_uploads), (long long)atomic_load(&app->sweep.failed));
    vx_respond_bytes(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    vx_strbuf_free(&b);
}

void vx_api_openapi(vx_request *req) {
    vx_respond_bytes(req, 200, "application/json", vx_openapi_json, strlen(vx_openapi_json));
}
