/* routes.c - the one table of voxd's endpoints (docs/api.md documents them,
 * src/api/openapi.json describes them). */
#include "api.h"
#include "handlers.h"

#define GET(p, h) {.method = "GET", .pattern = p, .body = VX_BODY_NONE, .handle = h}
#define DEL(p, h) {.method = "DELETE", .pattern = p, .body = VX_BODY_NONE, .handle = h}
#define POST(p, h) {.method = "POST", .pattern = p, .body = VX_BODY_JSON, .handle = h}
#define PUT(p, h) {.method = "PUT", .pattern = p, .body = VX_BODY_JSON, .handle = h}

static const vx_route routes[] = {
    GET("/healthz", vx_api_healthz),
    GET("/readyz", vx_api_readyz),
    GET("/metrics", vx_api_metrics),
    GET("/openapi.json", vx_api_openapi),

    POST("/v1/users", vx_api_signup),
    POST("/v1/auth/login", vx_api_login),
    GET("/v1/me", vx_api_me),
    POST("/v1/api-keys", vx_api_key_create),
    GET("/v1/api-keys", vx_api_key_list),
    DEL("/v1/api-keys/{id}", vx_api_key_revoke),

    GET("/v1/balance", vx_api_balance),
    POST("/v1/balance/top-up", vx_api_top_up),
    GET("/v1/ledger", vx_api_ledger),

    GET("/v1/models", vx_api_models),
    GET("/v1/models/{name}", vx_api_model_get),

    {.method = "POST", .pattern = "/v1/jobs", .body = VX_BODY_UPLOAD, .begin = vx_api_job_upload_begin,
     .upload_part = vx_api_job_upload_part, .handle = vx_api_job_submit, .json_too = true},
    GET("/v1/jobs", vx_api_job_list),
    GET("/v1/jobs/{id}", vx_api_job_get),
    POST("/v1/jobs/{id}/cancel", vx_api_job_cancel),
    GET("/v1/jobs/{id}/result", vx_api_job_result),
    GET("/v1/jobs/{id}/input", vx_api_job_input),
    GET("/v1/jobs/{id}/events", vx_api_job_events),
    GET("/v1/events", vx_api_events),
    GET("/v1/stream", vx_api_stream),

    POST("/v1/webhooks", vx_api_webhook_create),
    GET("/v1/webhooks", vx_api_webhook_list),
    GET("/v1/webhooks/{id}", vx_api_webhook_get),
    DEL("/v1/webhooks/{id}", vx_api_webhook_delete),
    POST("/v1/webhooks/{id}/rotate-secret", vx_api_webhook_rotate),
    GET("/v1/webhooks/{id}/deliveries", vx_api_webhook_deliveries),
    POST("/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver", vx_api_webhook_redeliver),

    GET("/v1/admin/users", vx_api_admin_users),
    POST("/v1/admin/users/{id}/credits", vx_api_admin_credits),
    GET("/v1/admin/users/{id}/audit", vx_api_admin_audit),
    PUT("/v1/admin/models/{name}/price", vx_api_admin_price),
    GET("/v1/admin/jobs", vx_api_admin_jobs),

    {.method = "POST", .pattern = "/v1/audio/transcriptions", .body = VX_BODY_UPLOAD,
     .begin = vx_api_openai_upload_begin, .upload_part = vx_api_openai_upload_part,
     .handle = vx_api_openai_transcribe, .error_body = vx_api_openai_error_body},
    POST("/v1/uploads", vx_api_upload_create),
    GET("/v1/uploads/{id}", vx_api_upload_get),
    {.method = "PUT", .pattern = "/v1/uploads/{id}", .body = VX_BODY_RAW, .begin = vx_api_upload_put_begin,
     .upload_part = vx_api_upload_put_part, .handle = vx_api_upload_put},
    GET("/v1/downloads/{id}/{part}", vx_api_download),
};

const vx_route *vx_api_routes(size_t *n) {
    *n = sizeof routes / sizeof routes[0];
    return routes;
}
