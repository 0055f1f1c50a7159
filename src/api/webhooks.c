/* webhooks.c - the user's webhook endpoints (register, list, show, delete,
 * rotate the secret) and their delivery log with manual redelivery. Secrets
 * appear only in the answers of create and rotate-secret. Rules (vetting,
 * limits, rotation) live in core/webhooks.c; everything is scoped to the
 * caller's own endpoints. Handlers run on HTTP pool threads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../core/events.h"
#include "../core/webhooks.h"
#include "../util/clock.h"
#include "../util/ids.h"
#include "common.h"
#include "handlers.h"

static json_t *types_json(const char *csv) {
    json_t *arr = json_array();
    for (const char *p = csv; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        json_array_append_new(arr, json_stringn(p, len));
        if (!comma) break;
        p = comma + 1;
    }
    return arr;
}

static json_t *endpoint_json(const vx_webhook_endpoint *ep) {
    bool job = strcmp(ep->kind, "job") == 0;
    return json_pack("{s:s, s:s, s:o, s:o, s:o, s:o}", "id", ep->id, "kind", ep->kind, "url",
                     job ? json_null() : json_string(ep->url), "event_types", types_json(ep->event_types),
                     "created_at", vx_api_time(ep->created_at), "previous_secret_expires_at",
                     ep->previous_secret[0] ? vx_api_time(ep->previous_until) : json_null());
}

static json_t *delivery_json(const vx_delivery *d) {
    char event_id[VX_EVENT_ID_SIZE];
    vx_event_id_format(d->event_id, event_id);
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(d->id));
    json_object_set_new(o, "event_id", json_string(event_id));
    json_object_set_new(o, "event_type", json_string(d->event_type));
    json_object_set_new(o, "url", json_string(d->url));
    json_object_set_new(o, "status", json_string(vx_delivery_status_name(d->status)));
    json_object_set_new(o, "attempts", json_integer(d->attempts));
    json_object_set_new(o, "max_attempts", json_integer(d->max_attempts));
    json_object_set_new(o, "status_code", d->last_attempt_at && d->last_status_code
                                              ? json_integer(d->last_status_code) : json_null());
    json_object_set_new(o, "latency_ms", d->last_attempt_at ? json_integer(d->last_latency_ms) : json_null());
    json_object_set_new(o, "error", d->last_error[0] ? json_string(d->last_error) : json_null());
    json_object_set_new(o, "response_prefix", d->last_attempt_at ? json_string(d->response_prefix) : json_null());
    json_object_set_new(o, "created_at", vx_api_time(d->created_at));
    json_object_set_new(o, "last_attempt_at", vx_api_time(d->last_attempt_at));
    json_object_set_new(o, "next_attempt_at",
                        d->status == VX_DELIVERY_PENDING ? vx_api_time(d->next_at) : json_null());
    json_object_set_new(o, "delivered_at", vx_api_time(d->delivered_at));
    return o;
}

/* "event_types": absent/null = every type, else an array of type names. */
static int types_field(vx_request *req, json_t *body, char *csv, size_t cap) {
    json_t *v = json_object_get(body, "event_types");
    csv[0] = '\0';
    if (!v || json_is_null(v)) return 0;
    size_t i, len = 0;
    json_t *t;
    if (!json_is_array(v)) goto bad;
    json_array_foreach(v, i, t) {
        if (!json_is_string(t)) goto bad;
        const char *s = json_string_value(t);
        int n = snprintf(csv + len, cap - len, "%s%s", len ? "," : "", s);
        if (n < 0 || (size_t)n >= cap - len || strchr(s, ',')) goto bad;
        len += (size_t)n;
    }
    if (vx_webhook_types_valid(csv)) return 0;
bad:
    vx_respond_errorf(req, VX_E_INVALID, "invalid_event_types",
                      "event_types must be an array of event types such as \"job.succeeded\"");
    return -1;
}

void vx_api_webhook_create(vx_request *req) {
    vx_principal who;
    if (vx_api_auth(req, &who) != 0) return;
    json_t *body = vx_api_body_object(req);
    if (!body) return;
    const char *url;
    char types[512];
    vx_webhook_endpoint ep;
    vx_err err = {0};
    if (vx_api_string_field(req, body, "url", true, &url) != 0 || types_field(req, body, types, sizeof types) != 0)
        goto out;
    if (vx_webhooks_create(vx_req_app(req), who.user.id, url, types, &ep, &err) != 0) {
        vx_respond_error(req, &err);
        goto out;
    }
    json_t *o = endpoint_json(&ep);
    json_object_set_new(o, "secret", json_string(ep.secret));
    char location[96];
    snprintf(location, sizeof location, "/v1/webhooks/%s", ep.id);
    vx_resp_header(req, "Location", location);
    vx_resp_header(req, "Cache-Control", "no-store");
    vx_respond_json(req, 201, o);
out:
    json_decref(body);
}

void vx_api_webhook_list(vx_request *req) {
    vx_principal who;
    if (vx_api_auth(req, &who) != 0) return;
    vx_app *app = vx_req_app(req);
    vx_webhook_endpoint *eps = NULL;
    size_t n = 0;
    vx_err err = {0};
    if (app->store->ops->webhook_list(app->store, who.user.id, &eps, &n, &err) != 0) {
        vx_respond_error(req, &err);
        return;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(data, endpoint_json(&eps[i]));
    free(eps);
    vx_respond_json(req, 200, json_pack("{s:o}", "data", data));
}

/* Loads the caller's {id} endpoint ("job": the job-webhook one); answers
 * 404 otherwise. */
static int own_endpoint(vx_request *req, vx_principal *who, vx_webhook_endpoint *ep) {
    if (vx_api_auth(req, who) != 0) return -1;
    vx_app *app = vx_req_app(req);
    vx_err err = {0};
    const char *id = vx_req_capture(req, "id");
    if (id && strcmp(id, "job") == 0) {
        /* "job" names the user's job-webhook endpoint, made on first use */
        vx_webhook_endpoint cand = {.created_at = vx_now_ms()};
        vx_id_new(cand.id, "whk");
        snprintf(cand.user_id, sizeof cand.user_id, "%s", who->user.id);
        vx_webhook_secret_new(cand.secret);
        if (app->store->ops->webhook_job_endpoint(app->store, &cand, ep, &err) == 0) return 0;
        vx_respond_error(req, &err);
        return -1;
    }
    if (!vx_id_valid(id, "whk")) {
        vx_respond_errorf(req, VX_E_NOT_FOUND, "not_found", "no such webhook");
        return -1;
    }
    if (app->store->ops->webhook_get(app->store, who->user.id, id, ep, &err) != 0) {
        vx_respond_error(req, &err);
        return -1;
    }
    return 0;
}

void vx_api_webhook_get(vx_request *req) {
    vx_principal who;
    vx_webhook_endpoint ep;
    if (own_endpoint(req, &who, &ep) != 0) return;
    vx_respond_json(req, 200, endpoint_json(&ep));
}

void vx_api_webhook_delete(vx_request *req) {
    vx_principal who;
    vx_webhook_endpoint ep;
    if (own_endpoint(req, &who, &ep) != 0) return;
    vx_app *app = vx_req_app(req);
    vx_err err = {0};
    if (app->store->ops->webhook_delete(app->store, who.user.id, ep.id, &err) != 0) {
        vx_respond_error(req, &err);
        return;
    }
    vx_respond_bytes(req, 204, NULL, "", 0);
}

void vx_api_webhook_rotate(vx_request *req) {
    vx_principal who;
    vx_webhook_endpoint ep, after;
    if (own_endpoint(req, &who, &ep) != 0) return;
    vx_err err = {0};
    if (vx_webhooks_rotate(vx_req_app(req), who.user.id, ep.id, &after, &err) != 0) {
        vx_respond_error(req, &err);
        return;
    }
    json_t *o = endpoint_json(&after);
    json_object_set_new(o, "secret", json_string(after.secret));
    vx_resp_header(req, "Cache-Control", "no-store");
    vx_respond_json(req, 200, o);
}

void vx_api_webhook_deliveries(vx_request *req) {
    vx_principal who;
    vx_webhook_endpoint ep;
    int limit;
    const char *cursor;
    if (own_endpoint(req, &who, &ep) != 0 || vx_api_page_args(req, &limit, &cursor) != 0) return;
    vx_app *app = vx_req_app(req);
    vx_delivery *ds = NULL;
    size_t n = 0;
    vx_err err = {0};
    if (app->store->ops->delivery_list(app->store, ep.id, cursor, limit, &ds, &n, &err) != 0) {
        vx_respond_error(req, &err);
        return;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(data, delivery_json(&ds[i]));
    vx_respond_json(req, 200, vx_api_page_json(data, n == (size_t)limit ? ds[n - 1].id : NULL));
    vx_delivery_list_free(ds, n);
}

void vx_api_webhook_redeliver(vx_request *req) {
    vx_principal who;
    vx_webhook_endpoint ep;
    if (own_endpoint(req, &who, &ep) != 0) return;
    vx_app *app = vx_req_app(req);
    const char *id = vx_req_capture(req, "delivery_id");
    vx_delivery d = {0};
    vx_err err = {0};
    if (!vx_id_valid(id, "dlv") ||
        app->store->ops->delivery_redeliver(app->store, ep.id, id, vx_now_ms(), &d, &err) != 0) {
        if (err.status == VX_E_NOT_FOUND || err.status == VX_OK)
            vx_err_set(&err, VX_E_NOT_FOUND, "not_found", "no such delivery");
        vx_respond_error(req, &err);
        return;
    }
    vx_events_wake_deliveries(app);
    vx_respond_json(req, 202, delivery_json(&d));
    vx_delivery_clear(&d);
}
