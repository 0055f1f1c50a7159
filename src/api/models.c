/* models.c - the model catalog with current prices. */
#include "../core/jobs.h"
#include "common.h"
#include "handlers.h"

json_t *vx_api_model_json(vx_app *app, const vx_model *m, vx_err *err) {
    int64_t per_job, per_second;
    if (vx_model_prices(app, m, &per_job, &per_second, err) != 0) return NULL;
    return vx_catalog_model_json(m, per_job, per_second);
}

void vx_api_models(vx_request *req) {
    vx_app *app = vx_req_app(req);
    size_t n = 0;
    const vx_model *const *all = vx_catalog_all(&n);
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++) {
        vx_err err = {0};
        json_t *m = vx_api_model_json(app, all[i], &err);
        if (!m) {
            json_decref(data);
            vx_respond_error(req, &err);
            return;
        }
        json_array_append_new(data, m);
    }
    vx_respond_json(req, 200, json_pack("{s:o}", "data", data));
}

void vx_api_model_get(vx_request *req) {
    const vx_model *m = vx_catalog_find(vx_req_capture(req, "name"));
    if (!m) {
        vx_respond_errorf(req, VX_E_NOT_FOUND, "not_found", "no such model");
        return;
    }
    vx_err err = {0};
    json_t *o = vx_api_model_json(vx_req_app(req), m, &err);
    if (!o) vx_respond_error(req, &err);
    else vx_respond_json(req, 200, o);
}
