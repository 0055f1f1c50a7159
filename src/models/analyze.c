/* analyze.c - the `analyze` model: cuts the audio into fixed windows
 * (default 4 s at 16 kHz, the last partial one included) and scores each:
 * speech probability (audio/vad.h), loudness (libebur128), sample and true
 * peak, clipping, estimated SNR, spectral flatness and a 0-1 quality score
 * (formula in docs/analyze.md), plus a whole-file summary. Levels use every
 * channel; speech, SNR and flatness use their average. Streams in blocks with
 * state bounded by the number of chunks. Re-entrant: state lives in open(). */
#include <ebur128.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../audio/vad.h"
#include "model.h"

#define DEFAULT_RATE 16000
#define MAX_RATE 48000
#define MAX_CHANNELS 8
/* A sample at or above this magnitude (-0.09 dBFS) counts as clipped. */
#define CLIP_LEVEL 0.99
/* Loudness is read every 100 ms: energies of consecutive pieces add up to
 * the chunk's (ungated) loudness, and short-term values give the maximum. */
#define PIECE_S 0.1
/* Frames quieter than this carry no spectral shape worth averaging. */
#define SILENT_DB -100.0
#define SPEECH_FRAME 0.5

static const vx_param_spec analyze_params[] = {
    {.name = "chunk_s", .type = VX_PARAM_NUMBER,
     .description = "window length in seconds; the last, shorter window is included",
     .min = 0.5, .max = 60, .default_number = 4.0},
    {.name = "sample_rate", .type = VX_PARAM_INT,
     .description = "analysis sample rate in Hz (8000-48000); 0 analyses at the input's own rate (up to 48000)",
     .min = 0, .max = MAX_RATE, .default_number = DEFAULT_RATE},
};

typedef struct chunk {
    int64_t frames;                     /* samples per channel seen so far */
    double peak, true_peak;             /* linear */
    int64_t clipped;
    double energy;                      /* sum of piece energy x piece frames (K-weighted mean square) */
    int64_t energy_frames;
    double short_term_max;              /* LUFS, -HUGE_VAL until known */
    /* from the detector's 10 ms frames */
    int64_t vad_frames, speech_frames, flat_frames;
    double prob_sum, noise_sum, speech_power_sum, pause_power_sum, flat_sum;
} chunk;

typedef struct analyze_state {
    int rate, channels;
    int64_t chunk_len;                  /* samples per channel per chunk */
    int64_t piece_len;
    ebur128_state *loud;
    vx_vad *vad;
    float *mono;
    size_t mono_cap;
    chunk *chunks;
    size_t n_chunks, cap_chunks;
    int64_t frames;                     /* samples per channel consumed */
    int64_t piece_fill;
    vx_audio_info input;                /* the probed input, for the summary */
} analyze_state;

static int analyze_plan(const json_t *params, const vx_audio_info *input, vx_model_plan *plan, vx_err *err) {
    int rate = (int)json_integer_value(json_object_get(params, "sample_rate"));
    if (rate > 0 && rate < VX_VAD_MIN_RATE)
        return vx_err_set(err, VX_E_UNPROCESSABLE, "param_out_of_range",
                          "sample_rate must be 0 (the input's rate) or between %d and %d", VX_VAD_MIN_RATE, MAX_RATE);
    if (rate == 0) {
        rate = input->sample_rate > MAX_RATE ? MAX_RATE : input->sample_rate;
        if (rate < VX_VAD_MIN_RATE)
            return vx_err_set(err, VX_E_UNPROCESSABLE, "unsupported_sample_rate",
                              "the input's rate (%d Hz) is below %d Hz: set sample_rate", input->sample_rate,
                              VX_VAD_MIN_RATE);
    }
    if (input->channels <= 0)
        return vx_err_set(err, VX_E_UNPROCESSABLE, "invalid_audio", "the input has no usable channel count");
    memset(plan, 0, sizeof *plan);
    plan->in_rate = rate;
    /* Beyond 8 channels the decoder folds the rest in: loudness weights stop at 5.1 anyway. */
    plan->in_channels = input->channels > MAX_CHANNELS ? MAX_CHANNELS : input->channels;
    return 0;
}

static void analyze_close(void *state) {
    analyze_state *s = state;
    if (!s) return;
    if (s->loud) ebur128_destroy(&s->loud);
    vx_vad_free(s->vad);
    free(s->mono);
    free(s->chunks);
    free(s);
}

/* Returns state the runner frees with analyze_close. */
static void *analyze_open(const json_t *params, const vx_model_plan *plan, vx_err *err) {
    analyze_state *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    s->rate = plan->in_rate;
    s->channels = plan->in_channels;
    s->input = plan->input;
    double chunk_s = json_number_value(json_object_get(params, "chunk_s"));
    s->chunk_len = (int64_t)llround(chunk_s * s->rate);
    s->piece_len = (int64_t)llround(PIECE_S * s->rate);
    if (s->rate <= 0 || s->channels <= 0 || s->chunk_len <= 0) {
        vx_err_set(err, VX_E_INTERNAL, "internal", "analyze was planned without a rate or channel count");
        goto fail;
    }
    s->loud = ebur128_init((unsigned)s->channels, (unsigned long)s->rate,
                           EBUR128_MODE_S | EBUR128_MODE_I | EBUR128_MODE_LRA | EBUR128_MODE_TRUE_PEAK |
                               EBUR128_MODE_HISTOGRAM);
    if (!s->loud) goto oom;
    s->vad = vx_vad_new(s->rate, err);
    if (!s->vad) goto fail;
    return s;
oom:
    vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
fail:
    analyze_close(s);
    return NULL;
}

/* The chunk holding sample `pos` (appended on first use). NULL when out of memory. */
static chunk *chunk_at(analyze_state *s, int64_t pos) {
    size_t i = (size_t)(pos / s->chunk_len);
    while (s->n_chunks <= i) {
        if (s->n_chunks == s->cap_chunks) {
            size_t cap = s->cap_chunks ? s->cap_chunks * 2 : 16;
            chunk *c = realloc(s->chunks, cap * sizeof *c);
            if (!c) return NULL;
            s->chunks = c;
            s->cap_chunks = cap;
        }
        s->chunks[s->n_chunks++] = (chunk){.short_term_max = -HUGE_VAL};
    }
    return &s->chunks[i];
}

static int oom(vx_err *err) { return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory"); }

static int on_frame(void *user, const vx_vad_frame *f, vx_err *err) {
    analyze_state *s = user;
    int64_t pos = f->index * vx_vad_hop(s->vad);
    if (pos >= s->frames) return 0; /* padding past the end of the audio */
    chunk *c = chunk_at(s, pos);
    if (!c) return oom(err);
    c->vad_frames++;
    c->prob_sum += f->probability;
    c->noise_sum += pow(10.0, f->noise_db / 10.0);
    if (f->probability >= SPEECH_FRAME) {
        c->speech_frames++;
        c->speech_power_sum += pow(10.0, f->power_db / 10.0);
    } else {
        c->pause_power_sum += pow(10.0, f->power_db / 10.0);
    }
    if (f->power_db > SILENT_DB) {
        c->flat_frames++;
        c->flat_sum += f->flatness;
    }
    return 0;
}

static int loudness_fail(vx_err *err) {
    return vx_err_set(err, VX_E_INTERNAL, "loudness_failed", "the loudness meter failed");
}

/* Levels of n frames that all belong to one chunk and one 100 ms piece. */
static int measure(analyze_state *s, chunk *c, const float *pcm, size_t n, vx_err *err) {
    size_t total = n * (size_t)s->channels;
    for (size_t i = 0; i < total; i++) {
        double a = fabs(pcm[i]);
        if (a > c->peak) c->peak = a;
        if (a >= CLIP_LEVEL) c->clipped++;
    }
    if (ebur128_add_frames_float(s->loud, pcm, n) != EBUR128_SUCCESS) return loudness_fail(err);
    for (int ch = 0; ch < s->channels; ch++) {
        double tp = 0;
        if (ebur128_prev_true_peak(s->loud, (unsigned)ch, &tp) == EBUR128_SUCCESS && tp > c->true_peak)
            c->true_peak = tp;
    }
    c->frames += (int64_t)n;
    s->frames += (int64_t)n;
    s->piece_fill += (int64_t)n;
    bool chunk_done = c->frames == s->chunk_len;
    if (s->piece_fill == s->piece_len || chunk_done) {
        double l, st;
        unsigned long ms = (unsigned long)llround(s->piece_fill * 1000.0 / s->rate);
        if (ms == 0) ms = 1;
        if (ebur128_loudness_window(s->loud, ms, &l) != EBUR128_SUCCESS) return loudness_fail(err);
        if (l > -HUGE_VAL) c->energy += pow(10.0, (l + 0.691) / 10.0) * (double)s->piece_fill;
        c->energy_frames += s->piece_fill;
        if (ebur128_loudness_shortterm(s->loud, &st) == EBUR128_SUCCESS && st > c->short_term_max)
            c->short_term_max = st;
        s->piece_fill = 0;
    }
    return 0;
}

static const float *as_mono(analyze_state *s, const float *pcm, size_t frames, vx_err *err) {
    if (s->channels == 1) return pcm;
    if (frames > s->mono_cap) {
        float *m = realloc(s->mono, frames * sizeof *m);
        if (!m) {
            oom(err);
            return NULL;
        }
        s->mono = m;
        s->mono_cap = frames;
    }
    for (size_t i = 0; i < frames; i++) {
        double sum = 0;
        for (int ch = 0; ch < s->channels; ch++) sum += pcm[i * (size_t)s->channels + (size_t)ch];
        s->mono[i] = (float)(sum / s->channels);
    }
    return s->mono;
}

static int analyze_process(void *state, const float *pcm, size_t frames, const vx_pcm_out *out, vx_err *err) {
    analyze_state *s = state;
    const float *mono = as_mono(s, pcm, frames, err);
    if (!mono) return -1;
    size_t done = 0;
    while (done < frames) {
        chunk *c = chunk_at(s, s->frames);
        if (!c) return oom(err);
        int64_t room = s->chunk_len - c->frames;
        int64_t piece_room = s->piece_len - s->piece_fill;
        int64_t n = (int64_t)(frames - done);
        if (n > room) n = room;
        if (n > piece_room) n = piece_room;
        if (measure(s, c, pcm + done * (size_t)s->channels, (size_t)n, err) != 0) return -1;
        done += (size_t)n;
    }
    return vx_vad_process(s->vad, mono, frames, on_frame, s, err);
}

/* ---- the document ---- */
static double round_to(double x, double unit) { return round(x / unit) * unit; }

static json_t *db_or_null(double linear_power, double unit) {
    return linear_power > 0 ? json_real(round_to(10.0 * log10(linear_power), unit)) : json_null();
}

static double clamp01(double x) { return x < 0 ? 0 : x > 1 ? 1 : x; }

/* quality = q_snr * q_clip * q_level * q_flat, each in [0,1] (docs/analyze.md). */
static double quality(double snr_db, bool has_snr, double clip_ratio, double lufs, bool has_lufs, double flatness,
                      bool has_flat) {
    double q_snr = has_snr ? clamp01(snr_db / 30.0) : 0.0;
    double q_clip = clamp01(1.0 - clip_ratio / 0.01);
    double q_level = 0.0;
    if (has_lufs) {
        if (lufs < -30.0) q_level = clamp01(1.0 - (-30.0 - lufs) / 30.0);
        else if (lufs > -10.0) q_level = clamp01(1.0 - (lufs + 10.0) / 10.0);
        else q_level = 1.0;
    }
    double q_flat = has_flat ? 1.0 - 0.5 * clamp01((flatness - 0.25) / 0.3) : 1.0;
    return q_snr * q_clip * q_level * q_flat;
}

static int analyze_finish(void *state, const vx_pcm_out *out, json_t **result, vx_err *err) {
    analyze_state *s = state;
    if (vx_vad_flush(s->vad, on_frame, s, err) != 0) return -1;
    double file_speech_power = 0, speech_frames = 0, vad_frames = 0, peak = 0, true_peak = 0, quality_sum = 0;
    int64_t clipped = 0;
    for (size_t i = 0; i < s->n_chunks; i++) {
        file_speech_power += s->chunks[i].speech_power_sum;
        speech_frames += (double)s->chunks[i].speech_frames;
    }
    double mean_speech_power = speech_frames > 0 ? file_speech_power / speech_frames : 0;
    json_t *list = json_array();
    if (!list) return oom(err);
    for (size_t i = 0; i < s->n_chunks; i++) {
        const chunk *c = &s->chunks[i];
        double start = (double)((int64_t)i * s->chunk_len) / s->rate;
        double end = start + (double)c->frames / s->rate;
        double prob = c->vad_frames ? c->prob_sum / (double)c->vad_frames : 0;
        double noise = c->vad_frames ? c->noise_sum / (double)c->vad_frames : 0;
        /* The tracker adapts over ~1 s; short pauses show a lower floor. */
        int64_t pauses = c->vad_frames - c->speech_frames;
        if (pauses > 0) noise = fmin(noise, c->pause_power_sum / (double)pauses);
        /* A chunk without speech is rated against the file's speech level. */
        double sp = c->speech_frames ? c->speech_power_sum / (double)c->speech_frames : mean_speech_power;
        bool has_snr = sp > 0 && noise > 0;
        double snr = has_snr ? 10.0 * log10(fmax(sp - noise, 1e-3 * noise) / noise) : 0;
        double mean_sq = c->energy_frames ? c->energy / (double)c->energy_frames : 0;
        double lufs = mean_sq > 0 ? -0.691 + 10.0 * log10(mean_sq) : 0;
        bool has_flat = c->flat_frames > 0;
        double flat = has_flat ? c->flat_sum / (double)c->flat_frames : 0;
        double clip_ratio = c->frames ? (double)c->clipped / ((double)c->frames * s->channels) : 0;
        double q = quality(snr, has_snr, clip_ratio, lufs, mean_sq > 0, flat, has_flat);
        json_t *o = json_pack(
            "{s:I, s:f, s:f, s:f, s:f, s:o, s:o, s:o, s:o, s:f, s:o, s:o, s:f}", "chunk_id", (json_int_t)i, "start_s",
            round_to(start, 1e-3), "end_s", round_to(end, 1e-3), "speech_probability", round_to(prob, 1e-3),
            "speech_ratio", round_to(c->vad_frames ? (double)c->speech_frames / (double)c->vad_frames : 0, 1e-3),
            "loudness_lufs", mean_sq > 0 ? json_real(round_to(lufs, 0.01)) : json_null(), "short_term_max_lufs",
            c->short_term_max > -HUGE_VAL ? json_real(round_to(c->short_term_max, 0.01)) : json_null(), "peak_dbfs",
            db_or_null(c->peak * c->peak, 0.01), "true_peak_dbtp", db_or_null(c->true_peak * c->true_peak, 0.01),
            "clipping_ratio", round_to(clip_ratio, 1e-6), "snr_db",
            has_snr ? json_real(round_to(snr, 0.1)) : json_null(), "spectral_flatness",
            has_flat ? json_real(round_to(flat, 1e-4)) : json_null(), "quality", round_to(q, 1e-3));
        if (!o || json_array_append_new(list, o) != 0) {
            json_decref(list);
            return oom(err);
        }
        vad_frames += (double)c->vad_frames;
        peak = fmax(peak, c->peak);
        true_peak = fmax(true_peak, c->true_peak);
        clipped += c->clipped;
        quality_sum += q * (double)c->frames;
    }
    double integrated = -HUGE_VAL, range = 0;
    if (ebur128_loudness_global(s->loud, &integrated) != EBUR128_SUCCESS ||
        ebur128_loudness_range(s->loud, &range) != EBUR128_SUCCESS) {
        json_decref(list);
        return loudness_fail(err);
    }
    double duration = (double)s->frames / s->rate;
    *result = json_pack(
        "{s:o, s:{s:f, s:i, s:i, s:f, s:I, s:o, s:f, s:o, s:o, s:f, s:f, s:f}}", "chunks", list, "summary",
        "duration_s", round_to(duration, 1e-3), "sample_rate", s->rate, "channels", s->channels, "chunk_s",
        round_to((double)s->chunk_len / s->rate, 1e-3), "chunk_count", (json_int_t)s->n_chunks, "integrated_lufs",
        integrated > -HUGE_VAL ? json_real(round_to(integrated, 0.01)) : json_null(), "loudness_range_lu",
        round_to(range, 0.01), "peak_dbfs", db_or_null(peak * peak, 0.01), "true_peak_dbtp",
        db_or_null(true_peak * true_peak, 0.01), "clipping_ratio",
        round_to(s->frames ? (double)clipped / ((double)s->frames * s->channels) : 0, 1e-6), "speech_ratio",
        round_to(vad_frames > 0 ? speech_frames / vad_frames : 0, 1e-3), "quality",
        round_to(s->frames ? quality_sum / (double)s->frames : 0, 1e-3));
    if (!*result) return oom(err);
    json_t *summary = json_object_get(*result, "summary");
    if (s->input.format[0]) json_object_set_new(summary, "format", json_string(s->input.format));
    if (s->input.codec[0]) json_object_set_new(summary, "codec", json_string(s->input.codec));
    if (s->input.sample_rate > 0) json_object_set_new(summary, "input_sample_rate", json_integer(s->input.sample_rate));
    if (s->input.channels > 0) json_object_set_new(summary, "input_channels", json_integer(s->input.channels));
    return 0;
}

const vx_model vx_model_analyze = {
    .name = "analyze",
    .kind = "analysis",
    .description = "Score fixed windows of audio: speech probability, loudness, peaks, clipping, SNR, flatness, quality.",
    .inputs = vx_audio_input_formats,
    .params = analyze_params,
    .n_params = sizeof analyze_params / sizeof analyze_params[0],
    .price_per_job = 2000,
    .price_per_second = 300,
    .plan = analyze_plan,
    .open = analyze_open,
    .process = analyze_process,
    .finish = analyze_finish,
    .close = analyze_close,
};
