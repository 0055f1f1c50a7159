/* openai.c - POST /v1/audio/transcriptions, OpenAI's synchronous endpoint:
 * OpenAI's multipart fields and answer shapes over an ordinary `transcribe`
 * job (same upload spool, vx_jobs_submit, hold/capture and history as
 * POST /v1/jobs). The request is answered once the job is terminal: the
 * connection is suspended (vx_respond_deferred), the job's terminal event
 * arrives through the event hub's bus (also from other processes) and wakes
 * the answer, which is rendered on an HTTP thread; --sync-timeout bounds the
 * wait. Upload hooks and handlers: HTTP threads; the bus callback: publisher
 * or bus reader threads (it only wakes the deferred answer). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../core/events.h"
#include "../models/subtitles.h"
#include "../util/log.h"
#include "common.h"
#include "handlers.h"

#define ENGINE_MODEL "transcribe"
#define GRAN_MAX 256   /* all timestamp_granularities[] values together */

/* OpenAI model names this endpoint takes, all served by `transcribe`. */
static const char *const model_aliases[] = {"whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe",
                                            ENGINE_MODEL, NULL};
static const char *const response_formats[] = {"json", "text", "srt", "verbose_json", "vtt", NULL};

/* The `param` an error is about, by voxd code (OpenAI names the field). */
static const struct {
    const char *code, *param;
} error_params[] = {
    {"missing_model", "model"}, {"model_not_found", "model"},
    {"unsupported_language", "language"}, {"unsupported_response_format", "response_format"},
    {"invalid_temperature", "temperature"}, {"invalid_timestamp_granularity", "timestamp_granularities[]"},
    {"stream_not_supported", "stream"}, {"invalid_stream", "stream"},
    {"missing_file", "file"}, {"invalid_filename", "file"}, {"empty_file", "file"},
    {"upload_too_large", "file"}, {"unsupported_format", "file"}, {"invalid_audio", "file"},
    {"empty_audio", "file"}, {"truncated_audio", "file"}, {"no_audio_stream", "file"},
    {"duration_exceeded", "file"}, {"unsupported_sample_rate", "file"},
};

static const char *error_param(const char *code) {
    for (size_t i = 0; i < sizeof error_params / sizeof error_params[0]; i++)
        if (strcmp(error_params[i].code, code) == 0) return error_params[i].param;
    return NULL;
}

/* {"error":{"message","type","param","code"}} with OpenAI's statuses:
 * credits exhausted is 429 insufficient_quota, every other refusal of the
 * request 400 invalid_request_error (401/403/409/413 keep their status). */
json_t *vx_api_openai_error_body(const vx_err *err, int *http_status) {
    const char *code = err->code[0] ? err->code : "internal";
    const char *type = "invalid_request_error";
    switch (err->status) {
    case VX_E_UNAUTHORIZED: *http_status = 401; break;
    case VX_E_FORBIDDEN: *http_status = 403; break;
    case VX_E_CONFLICT: *http_status = 409; break;
    case VX_E_TOO_LARGE: *http_status = 413; break;
    case VX_E_PAYMENT:
        *http_status = 429;
        type = code = "insufficient_quota";
        break;
    case VX_E_INTERNAL: case VX_E_UNAVAILABLE: case VX_OK: case VX_E_CANCELED:
        *http_status = err->status == VX_E_UNAVAILABLE ? 503 : 500;
        type = "server_error";
        break;
    default: *http_status = 400; break;
    }
    if (strcmp(code, "timeout") == 0) *http_status = 504;
    const char *param = error_param(code);
    return json_pack("{s:{s:s, s:s, s:o, s:s}}", "error", "message", err->message[0] ? err->message : "internal error",
                     "type", type, "param", param ? json_string(param) : json_null(), "code", code);
}

/* ---- the upload: OpenAI's fields ---- */

enum { F_MODEL, F_LANGUAGE, F_PROMPT, F_FORMAT, F_TEMPERATURE, F_STREAM, F_GRANS, F_COUNT };
static const char *const field_names[F_COUNT] = {
    [F_MODEL] = "model", [F_LANGUAGE] = "language", [F_PROMPT] = "prompt", [F_FORMAT] = "response_format",
    [F_TEMPERATURE] = "temperature", [F_STREAM] = "stream", [F_GRANS] = "timestamp_granularities[]",
};

typedef struct oa_upload {
    vx_principal who;
    vx_api_spool spool;
    char *field[F_COUNT];          /* text fields, malloc'd; NULL when absent */
    size_t len[F_COUNT];
} oa_upload;

static void oa_upload_free(void *p) {
    oa_upload *u = p;
    vx_api_spool_clear(&u->spool);
    for (int i = 0; i < F_COUNT; i++) free(u->field[i]);
    free(u);
}

int vx_api_openai_upload_begin(vx_request *req, vx_err *err) {
    oa_upload *u = calloc(1, sizeof *u);
    if (!u) return vx_err_set(err, VX_E_INTERNAL, "internal", "out of memory");
    vx_api_spool_init(&u->spool);
    vx_req_set_data(req, u, oa_upload_free);
    return vx_api_upload_admit(req, &u->who, err);
}

int vx_api_openai_upload_part(vx_request *req, const vx_upload_chunk *c, vx_err *err) {
    oa_upload *u = vx_req_data(req);
    const char *n = c->name;
    if (strcmp(n, "file") == 0) return vx_api_spool_part(vx_req_app(req), &u->spool, c, err);
    for (int i = 0; i < F_GRANS; i++)
        if (strcmp(n, field_names[i]) == 0) return vx_api_field_append(&u->field[i], &u->len[i], c, err);
    if (strcmp(n, "timestamp_granularities[]") == 0 || strcmp(n, "timestamp_granularities") == 0) {
        /* repeated field: one value per part, kept newline-separated */
        if (u->len[F_GRANS] + c->size + 1 > GRAN_MAX)
            return vx_err_set(err, VX_E_INVALID, "invalid_timestamp_granularity",
                              "timestamp_granularities[] takes 'word' and/or 'segment'");
        if (c->offset == 0 && u->len[F_GRANS]) {
            vx_upload_chunk sep = {.name = n, .data = "\n", .size = 1};
            if (vx_api_field_append(&u->field[F_GRANS], &u->len[F_GRANS], &sep, err) != 0) return -1;
        }
        return vx_api_field_append(&u->field[F_GRANS], &u->len[F_GRANS], c, err);
    }
    return vx_err_set(err, VX_E_INVALID, "unknown_parameter", "Unrecognized request argument supplied: %.64s", n);
}

static bool one_of(const char *v, const char *const *list) {
    for (size_t i = 0; list[i]; i++)
        if (strcmp(v, list[i]) == 0) return true;
    return false;
}

/* English only: "en", a regional tag of it ("en-US", "en_GB") or "english",
 * in any case. Absent or empty means English too. */
static bool language_english(const char *v) {
    if (!v || !*v || strcasecmp(v, "english") == 0) return true;
    if (strncasecmp(v, "en", 2) != 0) return false;
    if (!v[2]) return true;
    if (v[2] != '-' && v[2] != '_') return false;
    size_t len = strlen(v + 3);
    if (len < 2 || len > 8) return false;
    for (const char *p = v + 3; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-') return false;
    return true;
}

/* What the caller asked for, validated. */
typedef struct oa_request {
    char format[16];
    bool words, segments;       /* verbose_json timestamp granularities */
} oa_request;

static int validate(const oa_upload *u, oa_request *r, vx_err *err) {
    const char *model = u->field[F_MODEL], *language = u->field[F_LANGUAGE], *format = u->field[F_FORMAT],
               *temperature = u->field[F_TEMPERATURE], *stream = u->field[F_STREAM], *grans = u->field[F_GRANS];
    if (!model || !*model)
        return vx_err_set(err, VX_E_INVALID, "missing_model", "you must provide a model parameter");
    if (!one_of(model, model_aliases))
        return vx_err_set(err, VX_E_INVALID, "model_not_found",
                          "model '%.64s' is not available here; use whisper-1, gpt-4o-transcribe, "
                          "gpt-4o-mini-transcribe or transcribe", model);
    if (!language_english(language))
        return vx_err_set(err, VX_E_INVALID, "unsupported_language",
                          "language '%.32s' is not supported: only English (en) is", language);
    const char *f = format && *format ? format : "json";
    if (!one_of(f, response_formats))
        return vx_err_set(err, VX_E_INVALID, "unsupported_response_format",
                          "response_format must be one of json, text, srt, verbose_json, vtt");
    snprintf(r->format, sizeof r->format, "%s", f);
    if (temperature && *temperature) {
        char *end;
        double t = strtod(temperature, &end);
        if (end == temperature || *end || !isfinite(t) || t < 0 || t > 1)
            return vx_err_set(err, VX_E_INVALID, "invalid_temperature", "temperature must be a number from 0 to 1");
    }
    if (stream && *stream) {
        if (strcasecmp(stream, "true") == 0 || strcmp(stream, "1") == 0)
            return vx_err_set(err, VX_E_INVALID, "stream_not_supported",
                              "stream=true is not supported: the answer comes once the transcript is complete");
        if (strcasecmp(stream, "false") != 0 && strcmp(stream, "0") != 0)
            return vx_err_set(err, VX_E_INVALID, "invalid_stream", "stream must be true or false");
    }
    r->segments = true; /* OpenAI's default granularity */
    if (grans) {
        r->segments = false;
        for (const char *p = grans; *p;) {
            size_t len = strcspn(p, "\n");
            if (len == 4 && strncmp(p, "word", 4) == 0) r->words = true;
            else if (len == 7 && strncmp(p, "segment", 7) == 0) r->segments = true;
            else
                return vx_err_set(err, VX_E_INVALID, "invalid_timestamp_granularity",
                                  "timestamp_granularities[] takes 'word' and/or 'segment'");
            p += len + (p[len] == '\n');
        }
    }
    return 0;
}

/* ---- waiting for the job and answering ---- */

typedef struct waiter {
    vx_app *app;
    vx_deferred *d;
    vx_bus *bus;                /* NULL without an events hub */
    vx_bus_sub *sub;
    char job_id[VX_ID_SIZE];
    oa_request r;
} waiter;

/* Bus callback: only the terminal event matters, and it only wakes. */
static void on_job_event(void *user, const vx_bus_msg *msg) {
    waiter *w = user;
    vx_event_type t;
    if (vx_event_type_parse(msg->type, &t) == 0 && vx_event_type_terminal(t)) vx_deferred_wake(w->d);
}

static void answer_error(waiter *w, const vx_err *err) {
    int http = 500;
    json_t *body = vx_api_openai_error_body(err, &http);
    if (http >= 500) vx_warn("openai %s: %d %s: %s", vx_deferred_id(w->d), http, err->code, err->message);
    vx_deferred_json(w->d, http, body);
}

/* Formats into *err (vx_err_set) and answers it. */
#define answer_errorf(w, err, ...) (vx_err_set((err), __VA_ARGS__), answer_error((w), (err)))

/* The succeeded job's document in the asked format, OpenAI's way. */
static void answer_result(waiter *w, const vx_job *job) {
    json_t *doc = job->result_json ? json_loads(job->result_json, 0, NULL) : NULL;
    char *text = NULL;
    size_t len = 0;
    const char *content_type = NULL;
    vx_err err = {0};
    if (!doc) {
        answer_errorf(w, &err, VX_E_INTERNAL, "internal", "the stored result is unreadable");
    } else if (vx_subtitles_render(doc, w->r.format, &text, &len, &content_type, &err) != 0) {
        answer_error(w, &err);
    } else if (strcmp(w->r.format, "json") == 0 || strcmp(w->r.format, "verbose_json") == 0) {
        json_t *body = json_loadb(text, len, 0, NULL);
        if (!body) {
            answer_errorf(w, &err, VX_E_INTERNAL, "internal", "the result could not be rendered");
        } else {
            if (strcmp(w->r.format, "verbose_json") == 0) {
                if (!w->r.segments) json_object_del(body, "segments");
                if (!w->r.words) json_object_del(body, "words");
            }
            /* billed by audio duration, like whisper-1 */
            double seconds = json_number_value(json_object_get(doc, "duration"));
            json_object_set_new(body, "usage", json_pack("{s:s, s:f}", "type", "duration", "seconds", seconds));
            vx_deferred_json(w->d, 200, body);
        }
    } else {
        /* OpenAI sends text, srt and vtt alike as plain text */
        vx_deferred_bytes(w->d, 200, "text/plain; charset=utf-8", text, len);
    }
    free(text);
    json_decref(doc);
}

/* Job failures the input caused are the client's error (400), others 500. */
static vx_status failure_status(const char *code) {
    const char *param = error_param(code);
    return param && strcmp(param, "file") == 0 ? VX_E_INVALID : VX_E_INTERNAL;
}

/* HTTP thread (vx_deferred_on_ready): the wait is over one way or another. */
static void on_ready(vx_deferred *d, vx_deferred_why why, void *user) {
    waiter *w = user;
    if (w->bus) vx_bus_unsubscribe(w->bus, w->sub); /* no callback after this */
    vx_job job = {0};
    vx_err err = {0};
    if (why == VX_DEFERRED_ENDED) {
        vx_info("openai %s: the request ended (client gone or server stopping) before job %s finished; "
                "the job goes on", vx_deferred_id(d), w->job_id);
    } else if (w->app->store->ops->job_get(w->app->store, w->job_id, &job, &err) != 0) {
        answer_errorf(w, &err, VX_E_UNAVAILABLE, "job_unavailable",
                      "cannot read job %s now; fetch it from /v1/jobs/%s", w->job_id, w->job_id);
    } else if (job.status == VX_JOB_SUCCEEDED) {
        answer_result(w, &job);
    } else if (job.status == VX_JOB_FAILED) {
        json_t *errors = job.error_json ? json_loads(job.error_json, 0, NULL) : NULL;
        json_t *e = json_array_get(errors, json_array_size(errors) - 1); /* the last attempt's */
        const char *code = json_string_value(json_object_get(e, "code"));
        const char *msg = json_string_value(json_object_get(e, "message"));
        answer_errorf(w, &err, failure_status(code ? code : ""), code ? code : "job_failed", "%s",
                      msg ? msg : "the transcription failed");
        json_decref(errors);
    } else if (job.status == VX_JOB_CANCELED) {
        answer_errorf(w, &err, VX_E_CONFLICT, "job_canceled", "job %s was canceled", w->job_id);
    } else if (why == VX_DEFERRED_WOKEN) { /* woken without a terminal event: the bus is unusable */
        answer_errorf(w, &err, VX_E_UNAVAILABLE, "events_unavailable",
                      "cannot follow the job now; it goes on as job %s: GET /v1/jobs/%s/result", w->job_id,
                      w->job_id);
    } else {
        answer_errorf(w, &err, VX_E_UNAVAILABLE, "timeout",
                      "the transcription did not finish within %d s; it goes on as job %s: "
                      "GET /v1/jobs/%s/result", w->app->cfg->sync_timeout_s, w->job_id, w->job_id);
    }
    vx_job_clear(&job);
    vx_deferred_release(d);
    free(w);
}

void vx_api_openai_transcribe(vx_request *req) {
    oa_upload *u = vx_req_data(req);
    vx_app *app = vx_req_app(req);
    oa_request r;
    memset(&r, 0, sizeof r);
    vx_err err = {0};
    vx_job_submission s = {.model = ENGINE_MODEL};
    if (!u->spool.have_file) {
        vx_respond_errorf(req, VX_E_INVALID, "missing_file", "you must provide a file parameter");
        return;
    }
    if (validate(u, &r, &err) != 0) {
        vx_respond_error(req, &err);
        return;
    }
    char params[64];
    snprintf(params, sizeof params, "{\"format\":\"%s\"}", r.format);
    s.params_text = params;
    vx_job job = {0};
    bool replayed = false;
    if (vx_api_spool_submit(req, &u->who, &u->spool, &s, &job, &replayed) != 0) return;
    waiter *w = calloc(1, sizeof *w);
    vx_deferred *d = w ? vx_respond_deferred(req) : NULL;
    if (!d) { /* answered 500 (or not yet: out of memory); the job goes on */
        if (!w) vx_respond_errorf(req, VX_E_INTERNAL, "internal", "out of memory");
        free(w);
        vx_job_clear(&job);
        return;
    }
    w->app = app;
    w->d = d;
    w->r = r;
    snprintf(w->job_id, sizeof w->job_id, "%s", job.id);
    vx_job_clear(&job);
    vx_deferred_header(d, "X-Voxd-Job-Id", w->job_id);
    vx_deferred_on_ready(d, app->cfg->sync_timeout_s * 1000, on_ready, w);
    /* Subscribe first, then look: a job that ended in between is seen by
     * the look, one that ends later by the subscription. */
    vx_events *hub = vx_events_of(app);
    vx_bus_filter f = {.job_id = w->job_id};
    if (hub) {
        w->bus = vx_events_bus(hub);
        if (!(w->sub = vx_bus_subscribe(w->bus, &f, on_job_event, w, &err))) {
            vx_warn("openai: cannot follow job %s: %s", w->job_id, err.message);
            w->bus = NULL;
        }
    }
    vx_job now = {0};
    if (!w->bus || app->store->ops->job_get(app->store, w->job_id, &now, &err) != 0 ||
        vx_job_status_terminal(now.status))
        vx_deferred_wake(d); /* answers now: the result, or where to find it */
    vx_job_clear(&now);
}
