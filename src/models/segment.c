/* segment.c - the `segment` model: speech segments (start, end, confidence)
 * from the voice activity detector (audio/vad.h) with threshold, minimum
 * speech, minimum silence and padding rules; results render as JSON, CSV or
 * an Audacity label track. Channels are mixed to mono by the decoder, at
 * 16 kHz. Re-entrant: all state lives in what open() returns. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../audio/vad.h"
#include "../util/strbuf.h"
#include "model.h"

#define SEGMENT_RATE 16000

static const vx_param_spec segment_params[] = {
    {.name = "threshold", .type = VX_PARAM_NUMBER,
     .description = "speech probability from which a 10 ms frame counts as speech",
     .min = 0.01, .max = 0.99, .default_number = 0.5},
    {.name = "min_speech_ms", .type = VX_PARAM_INT,
     .description = "speech shorter than this (after joining across short pauses) is dropped",
     .min = 0, .max = 10000, .default_number = 250},
    {.name = "min_silence_ms", .type = VX_PARAM_INT,
     .description = "pauses shorter than this do not split a segment",
     .min = 0, .max = 10000, .default_number = 300},
    {.name = "pad_ms", .type = VX_PARAM_INT,
     .description = "each segment is widened by this much on both sides; segments that then overlap merge",
     .min = 0, .max = 2000, .default_number = 50},
};

typedef struct segment_state {
    vx_vad *vad;
    vx_vad_segmenter *seg;
    json_t *segments;
    float *mono;
    size_t mono_cap;
    int channels;
    int64_t samples;
    double speech_s;
    /* live streams: speech_start once a run is sure to be kept */
    const vx_model_listener *listener;
    double threshold, frame_s, pad_s, last_end_s;
    int min_speech_frames, run;
    int64_t frames;
    bool in_speech;
} segment_state;

static int segment_plan(const json_t *params, const vx_audio_info *input, vx_model_plan *plan, vx_err *err) {
    memset(plan, 0, sizeof *plan);
    plan->in_rate = SEGMENT_RATE;
    plan->in_channels = 1;
    return 0;
}

static void segment_close(void *state) {
    segment_state *s = state;
    if (!s) return;
    vx_vad_free(s->vad);
    vx_vad_segmenter_free(s->seg);
    json_decref(s->segments);
    free(s->mono);
    free(s);
}

/* Returns state the runner frees with segment_close. */
static void *segment_open(const json_t *params, const vx_model_plan *plan, vx_err *err) {
    segment_state *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    s->channels = plan->in_channels > 0 ? plan->in_channels : 1;
    s->vad = vx_vad_new(plan->in_rate, err);
    if (!s->vad) goto fail;
    vx_vad_segment_config cfg = {
        .threshold = json_number_value(json_object_get(params, "threshold")),
        .min_speech_ms = (int)json_integer_value(json_object_get(params, "min_speech_ms")),
        .min_silence_ms = (int)json_integer_value(json_object_get(params, "min_silence_ms")),
        .pad_ms = (int)json_integer_value(json_object_get(params, "pad_ms")),
        .frame_s = (double)vx_vad_hop(s->vad) / plan->in_rate,
    };
    s->seg = vx_vad_segmenter_new(&cfg, err);
    if (!s->seg) goto fail;
    s->threshold = cfg.threshold;
    s->frame_s = cfg.frame_s;
    s->pad_s = cfg.pad_ms / 1000.0;
    s->min_speech_frames = (int)ceil(cfg.min_speech_ms / 1000.0 / cfg.frame_s);
    if (s->min_speech_frames < 1) s->min_speech_frames = 1;
    s->segments = json_array();
    if (!s->segments) goto oom;
    return s;
oom:
    vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
fail:
    segment_close(s);
    return NULL;
}

static double ms_round(double x) { return round(x * 1000.0) / 1000.0; }

/* Live: {"event":"speech_start","start"} then {"event":"speech_end",
 * "start","end","confidence"}, strictly alternating. */
static void emit_event(segment_state *s, const char *event, double start, const vx_vad_segment *g) {
    json_t *e = g ? json_pack("{s:s, s:f, s:f, s:f}", "event", event, "start", ms_round(g->start_s), "end",
                              ms_round(g->end_s), "confidence", ms_round(g->confidence))
                  : json_pack("{s:s, s:f}", "event", event, "start", ms_round(start));
    if (e) s->listener->emit(s->listener->user, e);
    json_decref(e);
}

static int on_segment(void *user, const vx_vad_segment *g, vx_err *err) {
    segment_state *s = user;
    if (s->listener) {
        if (!s->in_speech) emit_event(s, "speech_start", g->start_s, NULL);
        emit_event(s, "speech_end", 0, g);
        s->in_speech = false;
        s->last_end_s = g->end_s;
    }
    json_t *o = json_pack("{s:f, s:f, s:f}", "start_s", ms_round(g->start_s), "end_s", ms_round(g->end_s),
                          "confidence", ms_round(g->confidence));
    if (!o || json_array_append_new(s->segments, o) != 0)
        return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
    s->speech_s += g->end_s - g->start_s;
    return 0;
}

static int on_frame(void *user, const vx_vad_frame *f, vx_err *err) {
    segment_state *s = user;
    s->frames++;
    s->run = f->probability >= s->threshold ? s->run + 1 : 0;
    if (s->listener && !s->in_speech && s->run == s->min_speech_frames) {
        /* A run this long is never dropped: its segment will come. */
        double start = (double)(s->frames - s->run) * s->frame_s - s->pad_s;
        if (start < s->last_end_s) start = s->last_end_s;
        emit_event(s, "speech_start", start < 0 ? 0 : start, NULL);
        s->in_speech = true;
    }
    return vx_vad_segmenter_push(s->seg, f->probability, on_segment, s, err);
}

static int segment_listen(void *state, const vx_model_listener *listener, vx_err *err) {
    segment_state *s = state;
    s->listener = listener;
    return 0;
}

/* Mixes interleaved frames to mono (only needed if the plan ever keeps channels). */
static const float *as_mono(segment_state *s, const float *pcm, size_t frames, vx_err *err) {
    if (s->channels == 1) return pcm;
    if (frames > s->mono_cap) {
        float *m = realloc(s->mono, frames * sizeof *m);
        if (!m) {
            vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
            return NULL;
        }
        s->mono = m;
        s->mono_cap = frames;
    }
    for (size_t i = 0; i < frames; i++) {
        double sum = 0;
        for (int c = 0; c < s->channels; c++) sum += pcm[i * (size_t)s->channels + (size_t)c];
        s->mono[i] = (float)(sum / s->channels);
    }
    return s->mono;
}

static int segment_process(void *state, const float *pcm, size_t frames, const vx_pcm_out *out, vx_err *err) {
    segment_state *s = state;
    const float *mono = as_mono(s, pcm, frames, err);
    if (!mono) return -1;
    s->samples += (int64_t)frames;
    return vx_vad_process(s->vad, mono, frames, on_frame, s, err);
}

static int segment_finish(void *state, const vx_pcm_out *out, json_t **result, vx_err *err) {
    segment_state *s = state;
    int rate = vx_vad_rate(s->vad);
    double duration = (double)s->samples / rate;
    if (vx_vad_flush(s->vad, on_frame, s, err) != 0) return -1;
    if (vx_vad_segmenter_finish(s->seg, duration, on_segment, s, err) != 0) return -1;
    *result = json_pack("{s:O, s:i, s:f, s:f, s:f, s:i, s:i}", "segments", s->segments, "count",
                        (json_int_t)json_array_size(s->segments), "speech_s", ms_round(s->speech_s), "duration_s",
                        ms_round(duration), "speech_ratio", duration > 0 ? ms_round(s->speech_s / duration) : 0.0,
                        "sample_rate", rate, "frame_ms", (int)lround(1000.0 * vx_vad_hop(s->vad) / rate));
    if (!*result) return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
    return 0;
}

/* ---- ?format=csv | audacity, from the stored document ---- */
static int segment_render(const json_t *result, const char *format, char **out, size_t *len, const char **content_type,
                          vx_err *err) {
    bool csv = strcmp(format, "csv") == 0, audacity = strcmp(format, "audacity") == 0;
    if (!csv && !audacity)
        return vx_err_set(err, VX_E_INVALID, "invalid_format",
                          "segment results come as format=json, csv or audacity, not \"%.32s\"", format);
    const json_t *segs = json_object_get(result, "segments");
    if (!json_is_array(segs))
        return vx_err_set(err, VX_E_INTERNAL, "internal", "the stored result has no segment list");
    vx_strbuf b = {0};
    if (csv) vx_strbuf_printf(&b, "start,end,confidence\n");
    size_t i;
    const json_t *g;
    json_array_foreach(segs, i, g) {
        double a = json_number_value(json_object_get(g, "start_s")), e = json_number_value(json_object_get(g, "end_s"));
        double c = json_number_value(json_object_get(g, "confidence"));
        if (csv) vx_strbuf_printf(&b, "%.3f,%.3f,%.3f\n", a, e, c);
        else vx_strbuf_printf(&b, "%.6f\t%.6f\tspeech\n", a, e);
    }
    *len = b.len; /* an Audacity track without labels is an empty file */
    *out = vx_strbuf_take(&b);
    *content_type = csv ? "text/csv; charset=utf-8" : "text/plain; charset=utf-8";
    return 0;
}

const vx_model vx_model_segment = {
    .name = "segment",
    .kind = "analysis",
    .description = "Find speech: segments with start/end times and confidence (JSON, CSV or Audacity labels).",
    .inputs = vx_audio_input_formats,
    .params = segment_params,
    .n_params = sizeof segment_params / sizeof segment_params[0],
    .price_per_job = 2000,
    .price_per_second = 200,
    .plan = segment_plan,
    .open = segment_open,
    .process = segment_process,
    .finish = segment_finish,
    .close = segment_close,
    .render = segment_render,
    .listen = segment_listen,
};
