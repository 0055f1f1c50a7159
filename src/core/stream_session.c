/* stream_session.c - one live stream (stream.h): its config, the job row and
 * the ledger (a first hold on start, more holds in blocks as audio flows, a
 * capture of the seconds streamed at the end), and the model run on the
 * audio (resampled to the model's rate; results to the sink). Blocking (store,
 * model): run it on a stream worker thread, one thread at a time. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../audio/audio.h"
#include "../models/asr.h"
#include "../util/clock.h"
#include "../util/credits.h"
#include "../util/log.h"
#include "events.h"
#include "jobs.h"
#include "stream.h"

struct vx_stream_session {
    vx_app *app;
    vx_principal who;
    char owner[96];
    vx_stream_sink sink;
    vx_stream_config cfg;
    bool started, ended, muted;
    bool ending;                  /* end asked for; the model still decodes in the background */
    bool input_drained;           /* the resampler's tail went to the model */
    char end_reason[64];
    bool replied;                 /* the current frame got a message carrying "seconds" */
    const vx_model *model;
    void *state;
    vx_model_plan plan;
    json_t *params;
    vx_model_listener listener;
    vx_resampler *in_rs, *out_rs; /* client rate <-> model rate; NULL when equal */
    vx_stream_bill bill;
    char job_id[VX_ID_SIZE];
    int64_t frames;
    int64_t last_record_ms;
    float *pcm;
    size_t pcm_cap;
    unsigned char *bytes;
    size_t bytes_cap;
};

static double ms3(double x) { return round(x * 1000.0) / 1000.0; }

static int oom(vx_err *err) { return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory"); }

static void emit(void *user, const json_t *event) {
    vx_stream_session *s = user;
    if (s->muted) return;
    json_t *m = json_copy((json_t *)event);
    if (!m) return;
    if (json_object_get(m, "partial")) {
        json_object_set_new(m, "seconds", json_real(ms3(s->bill.seconds)));
        s->replied = true;
    }
    s->sink.text(s->sink.user, m);
}

/* The model finished work in the background (any thread). */
static void wake(void *user) {
    vx_stream_session *s = user;
    s->sink.wake(s->sink.user);
}

vx_stream_session *vx_stream_session_new(vx_app *app, const vx_principal *who, const char *owner,
                                         const vx_stream_sink *sink) {
    vx_stream_session *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->app = app;
    s->who = *who;
    snprintf(s->owner, sizeof s->owner, "%s", owner);
    s->sink = *sink;
    vx_stream_config_default(&s->cfg);
    s->listener = (vx_model_listener){.emit = emit, .wake = sink->wake ? wake : NULL, .user = s};
    return s;
}

void vx_stream_session_free(vx_stream_session *s) {
    if (!s) return;
    if (s->state) s->model->close(s->state);
    json_decref(s->params);
    vx_stream_config_clear(&s->cfg);
    vx_resampler_free(s->in_rs);
    vx_resampler_free(s->out_rs);
    free(s->pcm);
    free(s->bytes);
    free(s);
}

bool vx_stream_session_started(const vx_stream_session *s) { return s->started; }

int vx_stream_session_configure(vx_stream_session *s, vx_stream_config *cfg, vx_err *err) {
    if (s->started || s->frames > 0) {
        vx_stream_config_clear(cfg);
        return vx_err_set(err, VX_E_CONFLICT, "config_after_audio", "the config must come before any audio");
    }
    vx_stream_config_clear(&s->cfg);
    s->cfg = *cfg;
    cfg->params = NULL;
    return 0;
}

/* Grows s->pcm / s->bytes to hold n items. */
static int reserve(void **buf, size_t *cap, size_t n, size_t size, vx_err *err) {
    if (n <= *cap) return 0;
    void *p = realloc(*buf, n * size);
    if (!p) return oom(err);
    *buf = p;
    *cap = n;
    return 0;
}

/* Model audio out (enhance): back to the client's rate and encoding. */
static int audio_out(void *user, const float *pcm, size_t n, vx_err *err) {
    vx_stream_session *s = user;
    if (s->out_rs && vx_resampler_run(s->out_rs, pcm, n, &pcm, &n, err) != 0) return -1;
    if (s->muted || n == 0) return 0;
    size_t bytes = n * (size_t)vx_stream_sample_bytes(s->cfg.encoding);
    if (reserve((void **)&s->bytes, &s->bytes_cap, bytes, 1, err) != 0) return -1;
    vx_stream_frame_encode(&s->cfg, pcm, n, s->bytes);
    s->sink.binary(s->sink.user, s->bytes, bytes);
    s->replied = true;
    return 0;
}

/* The model's validated params: the config's "params" plus `words`. */
static int build_params(vx_stream_session *s, vx_err *err) {
    json_t *p = s->cfg.params ? json_deep_copy(s->cfg.params) : json_object();
    if (!p) return oom(err);
    if (strcmp(s->model->name, "transcribe") == 0 && !json_object_get(p, "words"))
        json_object_set_new(p, "words", json_boolean(s->cfg.words));
    int rc = vx_catalog_validate_params(s->model, p, &s->params, err);
    json_decref(p);
    return rc;
}

/* Places the first hold with the job row. A balance short of a whole block
 * still streams what it covers: the hold is then all that is available. */
static int open_job(vx_stream_session *s, vx_err *err) {
    vx_store *st = s->app->store;
    int64_t now = vx_now_ms();
    vx_job job = {.max_attempts = 1, .created_at = now, .run_after = now,
                  .price_per_job = s->bill.per_job, .price_per_second = s->bill.per_second,
                  .held = vx_stream_bill_first_hold(&s->bill), .input_bytes = 0,
                  .lease_until = now + (int64_t)s->app->cfg->lease_s * 1000};
    vx_id_new(job.id, "job");
    snprintf(job.user_id, sizeof job.user_id, "%s", s->who.user.id);
    snprintf(job.model, sizeof job.model, "%s", s->model->name);
    snprintf(job.input_format, sizeof job.input_format, "%s", VX_JOB_STREAM_FORMAT);
    snprintf(job.input_name, sizeof job.input_name, "stream");
    snprintf(job.input_content_type, sizeof job.input_content_type, "audio/%s;rate=%d",
             s->cfg.encoding == VX_STREAM_PCM_S16LE ? "L16" : "x-f32le", s->cfg.sample_rate);
    snprintf(job.lease_owner, sizeof job.lease_owner, "%s", s->owner);
    char *params = json_dumps(s->params, JSON_COMPACT | JSON_SORT_KEYS);
    if (!params) return oom(err);
    job.params_json = params;
    int rc = st->ops->stream_open(st, &job, err);
    if (rc != 0 && err->status == VX_E_PAYMENT) {
        vx_balance b;
        vx_err e2 = {0};
        int64_t least = vx_stream_bill_price(&s->bill, 1.0);
        if (st->ops->balance_get(st, s->who.user.id, &b, &e2) == 0 && b.available >= least) {
            job.held = b.available;
            *err = (vx_err){0};
            rc = st->ops->stream_open(st, &job, err);
        }
    }
    free(params);
    if (rc != 0) {
        if (err->status == VX_E_PAYMENT)
            vx_err_set(err, VX_E_PAYMENT, "insufficient_credits",
                       "not enough credits to start a %s stream", s->model->name);
        return -1;
    }
    snprintf(s->job_id, sizeof s->job_id, "%s", job.id);
    s->bill.held = job.held;
    s->last_record_ms = now;
    vx_job row = {0};
    vx_err e3 = {0};
    if (st->ops->job_get(st, s->job_id, &row, &e3) == 0) vx_events_job_changed(s->app, &row);
    vx_job_clear(&row);
    return 0;
}

/* Gives the hold back when the model cannot start. */
static void abandon_job(vx_stream_session *s, const vx_err *why) {
    vx_err e = {0};
    if (s->app->store->ops->job_fail(s->app->store, s->job_id, s->owner, 1, why->code, why->message, 0, false,
                                     vx_now_ms(), &e) != 0)
        vx_warn("stream %s: cannot release its hold: %s", s->job_id, e.message);
    vx_events_job_settled(s->app, s->job_id, 1);
}

static int start(vx_stream_session *s, vx_err *err) {
    if (!(s->model = vx_catalog_find(s->cfg.model)))
        return vx_err_set(err, VX_E_UNPROCESSABLE, "unknown_model", "this server does not offer that model");
    if (build_params(s, err) != 0) return -1;
    vx_audio_info in = {.sample_rate = s->cfg.sample_rate, .channels = 1};
    snprintf(in.codec, sizeof in.codec, "%s", vx_stream_encoding_name(s->cfg.encoding));
    if (s->model->plan(s->params, &in, &s->plan, err) != 0) return -1;
    s->plan.input = in;
    if (!s->plan.in_rate) s->plan.in_rate = in.sample_rate;
    if (!s->plan.in_channels) s->plan.in_channels = 1;
    if (s->plan.in_channels != 1)
        return vx_err_set(err, VX_E_UNPROCESSABLE, "invalid_config", "streams are mono");
    if (strcmp(s->model->name, "transcribe") == 0) {
        /* A stream with partials keeps a decoder: refuse at once rather than
         * wait (and before any hold); the model takes it in listen(). */
        vx_asr_model *asr = vx_asr_shared(err);
        if (!asr) return -1;
        vx_asr_pool_stats ps;
        vx_asr_pool_stats_get(asr, &ps);
        if ((s->cfg.partial || ps.reserved == 0) && ps.held >= ps.max - ps.reserved)
            return vx_err_set(err, VX_E_UNAVAILABLE, "asr_busy", "every speech decoder is busy; try again later");
    }
    int64_t per_job, per_second;
    if (vx_model_prices(s->app, s->model, &per_job, &per_second, err) != 0) return -1;
    vx_stream_bill_init(&s->bill, per_job, per_second, s->app->cfg->stream_hold_s);
    if (s->plan.in_rate != s->cfg.sample_rate &&
        !(s->in_rs = vx_resampler_new(s->cfg.sample_rate, s->plan.in_rate, err)))
        return -1;
    if (s->plan.out_rate && s->plan.out_rate != s->cfg.sample_rate &&
        !(s->out_rs = vx_resampler_new(s->plan.out_rate, s->cfg.sample_rate, err)))
        return -1;
    if (open_job(s, err) != 0) return -1;
    s->started = true;
    s->listener.partials = s->cfg.partial;
    if (!(s->state = s->model->open(s->params, &s->plan, err)) ||
        (s->model->listen && s->model->listen(s->state, &s->listener, err) != 0)) {
        abandon_job(s, err);
        s->ended = true;
        return -1;
    }
    return 0;
}

/* Records seconds, charge and lease; with extra > 0 also holds more. */
static int record(vx_stream_session *s, int64_t extra, vx_err *err) {
    int64_t now = vx_now_ms();
    vx_store *st = s->app->store;
    if (st->ops->stream_record(st, s->job_id, s->owner, s->bill.seconds, vx_stream_bill_charge(&s->bill), extra,
                               now, (int64_t)s->app->cfg->lease_s * 1000, err) != 0)
        return -1;
    s->bill.held += extra;
    s->last_record_ms = now;
    return 0;
}

/* Holds enough for `more` seconds: a block, or what is left if less. */
static int cover(vx_stream_session *s, double more, vx_err *err) {
    int64_t need = vx_stream_bill_shortfall(&s->bill, more);
    if (need == 0) return 0;
    int64_t extra = need > s->bill.block ? need : s->bill.block;
    if (record(s, extra, err) == 0) return 0;
    if (err->status != VX_E_PAYMENT) return -1;
    vx_balance b;
    vx_err e2 = {0};
    if (s->app->store->ops->balance_get(s->app->store, s->who.user.id, &b, &e2) == 0 && b.available >= need) {
        *err = (vx_err){0};
        if (record(s, b.available, err) == 0) return 0;
        if (err->status != VX_E_PAYMENT) return -1;
    }
    return vx_err_set(err, VX_E_PAYMENT, "insufficient_credits",
                      "credits ran out after %.1f s of audio; top up to stream more", s->bill.seconds);
}

int vx_stream_session_audio(vx_stream_session *s, const void *data, size_t len, vx_err *err) {
    if (s->ended) return vx_err_set(err, VX_E_CONFLICT, "stream_ended", "the stream has ended");
    if (vx_stream_frame_check(&s->cfg, len, err) != 0) return -1;
    if (!s->started && start(s, err) != 0) return -1;
    size_t n = len / (size_t)vx_stream_sample_bytes(s->cfg.encoding);
    double more = (double)n / s->cfg.sample_rate;
    if (cover(s, more, err) != 0) return -1;
    if (reserve((void **)&s->pcm, &s->pcm_cap, n, sizeof *s->pcm, err) != 0) return -1;
    vx_stream_frame_decode(&s->cfg, data, len, s->pcm);
    const float *pcm = s->pcm;
    size_t m = n;
    if (s->in_rs && vx_resampler_run(s->in_rs, s->pcm, n, &pcm, &m, err) != 0) return -1;
    s->frames++;
    s->bill.seconds += more;
    s->replied = false;
    vx_pcm_out out = {.write = audio_out, .user = s};
    if (m > 0 && s->model->process(s->state, pcm, m, &out, err) != 0) return -1;
    if (!s->replied) {
        if (s->plan.out_format[0]) {
            s->sink.binary(s->sink.user, "", 0); /* enhance: nothing out yet (its filter fills) */
        } else {
            json_t *ack = json_pack("{s:I, s:f}", "ack", (json_int_t)s->frames, "seconds", ms3(s->bill.seconds));
            if (ack) s->sink.text(s->sink.user, ack);
        }
    }
    return vx_stream_session_tick(s, err);
}

static int settle(vx_stream_session *s, vx_err *err);

int vx_stream_session_poll(vx_stream_session *s, vx_err *err) {
    if (!s->started || s->ended) return 0;
    if (s->ending) {
        int rc = settle(s, err);
        return rc == 1 ? 0 : rc == 0 ? 1 : -1;
    }
    return s->model->poll ? s->model->poll(s->state, err) : 0;
}

int vx_stream_session_tick(vx_stream_session *s, vx_err *err) {
    if (!s->started || s->ended) return 0;
    if (vx_now_ms() - s->last_record_ms < (int64_t)s->app->cfg->heartbeat_s * 1000) return 0;
    return record(s, 0, err);
}

/* Drains the resamplers into the model (once) and finishes the model: 0 with
 * its document in *doc, 1 while its background work goes on (call again
 * after the next wake), -1 on error. */
static int drain(vx_stream_session *s, json_t **doc, vx_err *err) {
    vx_pcm_out out = {.write = audio_out, .user = s};
    const float *pcm;
    size_t m = 0;
    if (!s->input_drained) {
        s->input_drained = true;
        if (s->in_rs && vx_resampler_run(s->in_rs, NULL, 0, &pcm, &m, err) != 0) return -1;
        if (m > 0 && s->model->process(s->state, pcm, m, &out, err) != 0) return -1;
    }
    int rc = s->model->finish(s->state, &out, doc, err);
    if (rc != 0) return rc;
    if (s->out_rs && vx_resampler_run(s->out_rs, NULL, 0, &pcm, &m, err) == 0 && m > 0 && !s->muted) {
        vx_resampler *keep = s->out_rs;
        s->out_rs = NULL; /* already at the client's rate */
        rc = audio_out(s, pcm, m, err);
        s->out_rs = keep;
        if (rc != 0) return -1;
    }
    return 0;
}

/* Finishes an end asked for: 1 while the model is still busy, else settles
 * (see vx_stream_session_end). */
static int settle(vx_stream_session *s, vx_err *err) {
    json_t *doc = NULL;
    vx_err derr = {0};
    int drc = drain(s, &doc, &derr);
    if (drc == 1) return 1;
    s->ending = false;
    s->ended = true;
    if (drc != 0) {
        vx_warn("stream %s: flushing the model failed: %s", s->job_id, derr.message);
        json_decref(doc);
        doc = NULL;
    }
    if (!doc) doc = json_object();
    json_object_set_new(doc, "end_reason", json_string(s->end_reason));
    json_object_set_new(doc, "source", json_string("stream"));
    int64_t charged = vx_stream_bill_charge(&s->bill);
    vx_store *st = s->app->store;
    int rc = record(s, 0, err);
    vx_job done = {.attempts = 1, .charged = charged};
    snprintf(done.id, sizeof done.id, "%s", s->job_id);
    done.result_json = json_dumps(doc, JSON_COMPACT);
    if (rc == 0 && !done.result_json) rc = oom(err);
    if (rc == 0) rc = st->ops->job_succeed(st, &done, s->owner, vx_now_ms(), err);
    free(done.result_json);
    if (rc != 0) vx_warn("stream %s: cannot settle: %s", s->job_id, err->message);
    else vx_events_job_settled(s->app, s->job_id, 1);
    if (!s->muted && rc == 0) {
        json_t *fin = json_pack("{s:b, s:s, s:f, s:o, s:O}", "final", 1, "job_id", s->job_id, "duration",
                                ms3(s->bill.seconds), "charged", vx_credits_json(charged), "result", doc);
        if (fin) s->sink.text(s->sink.user, fin);
    }
    json_decref(doc);
    return rc;
}

int vx_stream_session_end(vx_stream_session *s, bool flush, const char *reason, vx_err *err) {
    if (s->ended) return 0;
    if (s->ending) {
        if (!flush) s->muted = true; /* the client left meanwhile */
        return 1;
    }
    s->muted = !flush;
    if (!s->started) {
        s->ended = true;
        if (flush)
            s->sink.text(s->sink.user, json_pack("{s:b, s:n, s:f, s:o, s:n}", "final", 1, "job_id", "duration", 0.0,
                                                  "charged", vx_credits_json(0), "result"));
        return 0;
    }
    s->ending = true;
    snprintf(s->end_reason, sizeof s->end_reason, "%s", reason);
    return settle(s, err);
}

bool vx_stream_session_ending(const vx_stream_session *s) { return s->ending; }
