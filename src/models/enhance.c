/* enhance.c - the `enhance` model: speech enhancement for podcasts and
 * calls. Chain per hop of audio: declip -> DC blocker -> mains-hum canceller
 * (enhance_front.c, per channel) -> zero-phase high-pass + MMSE-LSA noise
 * suppression (enhance_spectral.c, channels linked) -> loudness
 * normalisation + true-peak limiter (enhance_level.c). Every stage has a
 * parameter; all state is bounded (see docs/enhance.md). Output is aligned
 * sample for sample with the input. Re-entrant: state lives in open(). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "enhance_int.h"
#include "model.h"

#define MAX_CHANNELS 8

static const char *const format_choices[] = {"wav", "flac", "opus", "mp3", NULL};
static const char *const dehum_choices[] = {"auto", "50hz", "60hz", "off", NULL};

static const vx_param_spec enhance_params[] = {
    {.name = "format", .type = VX_PARAM_ENUM, .description = "output format", .default_choice = "wav",
     .choices = format_choices},
    {.name = "sample_rate", .type = VX_PARAM_INT,
     .description = "output (and processing) sample rate in Hz, 8000 or more; 0 keeps the input rate",
     .min = 0, .max = 192000, .default_number = 0},
    {.name = "channels", .type = VX_PARAM_INT,
     .description = "output channel count (1-8); 0 keeps the input's. Channels are cleaned with one shared gain",
     .min = 0, .max = 8, .default_number = 0},
    {.name = "dc_removal", .type = VX_PARAM_BOOL, .description = "remove DC offset (5 Hz blocker)",
     .default_bool = true},
    {.name = "highpass_hz", .type = VX_PARAM_NUMBER,
     .description = "high-pass cutoff in Hz (zero-phase, 24 dB/octave); 0 turns it off", .min = 0, .max = 500,
     .default_number = 70},
    {.name = "dehum", .type = VX_PARAM_ENUM,
     .description = "mains-hum removal: auto detects 50 or 60 Hz and notches only the harmonics present",
     .default_choice = "auto", .choices = dehum_choices},
    {.name = "denoise", .type = VX_PARAM_BOOL, .description = "statistical noise suppression (MCRA + MMSE-LSA)",
     .default_bool = true},
    {.name = "strength", .type = VX_PARAM_NUMBER,
     .description = "noise suppression strength: 1 = the noise estimate as measured, higher removes more, 0 none",
     .min = 0, .max = 4, .default_number = 1},
    {.name = "max_attenuation_db", .type = VX_PARAM_NUMBER,
     .description = "most the noise suppressor may attenuate any frequency band, dB", .min = 0, .max = 60,
     .default_number = 30},
    {.name = "declip", .type = VX_PARAM_BOOL,
     .description = "rebuild clipped peaks (acts only where flat clipped runs are found)", .default_bool = true},
    {.name = "normalize", .type = VX_PARAM_BOOL, .description = "loudness normalisation to target_lufs",
     .default_bool = true},
    {.name = "target_lufs", .type = VX_PARAM_NUMBER, .description = "integrated loudness target (EBU R128), LUFS",
     .min = -40, .max = -5, .default_number = -16},
    {.name = "limiter", .type = VX_PARAM_BOOL, .description = "true-peak limiter at true_peak_dbtp",
     .default_bool = true},
    {.name = "true_peak_dbtp", .type = VX_PARAM_NUMBER, .description = "true-peak ceiling, dBTP", .min = -12,
     .max = 0, .default_number = -1},
    {.name = "max_limiting_db", .type = VX_PARAM_NUMBER,
     .description = "how far the limiter may pull peaks down to reach target_lufs; beyond that the gain is lowered "
                    "instead (0, the default = the true-peak ceiling caps the gain and peaks keep their shape: "
                    "best waveform fidelity; up to 20 reaches target_lufs on speech with a high crest factor)",
     .min = 0, .max = 20, .default_number = 0},
    {.name = "loudness_window_s", .type = VX_PARAM_NUMBER,
     .description = "audio held to measure loudness before the gain is committed (inputs up to this long get one exact gain)",
     .min = 0.5, .max = 60, .default_number = 20},
};

static double num(const json_t *params, const char *key) { return json_number_value(json_object_get(params, key)); }
static bool flag(const json_t *params, const char *key) { return json_is_true(json_object_get(params, key)); }

static int enhance_plan(const json_t *params, const vx_audio_info *input, vx_model_plan *plan, vx_err *err) {
    /* the spectral stages need a sensible band: never below 8 kHz */
    return vx_model_plan_audio_output(params, input, 8000, plan, err);
}

typedef struct enhance_state {
    vx_model_plan plan;
    int channels, rate, hop;
    bool dc_removal, denoise, declip, normalize, limiter;
    double highpass_hz, target_lufs, ceiling;
    const char *dehum;
    vx_enhance_front *front[MAX_CHANNELS];
    vx_enhance_spectral *spectral;  /* NULL when neither high-pass nor denoise is on */
    vx_enhance_level *level;
    float *in[MAX_CHANNELS], *mid[MAX_CHANNELS];
    float *inter;
    int fill;
    int64_t total_in, pushed, skip, emitted;
    double dc_sum;
    const vx_pcm_out *out;          /* valid during process/finish calls */
} enhance_state;

static void enhance_close(void *state) {
    enhance_state *s = state;
    if (!s) return;
    for (int c = 0; c < MAX_CHANNELS; c++) {
        vx_enhance_front_free(s->front[c]);
        free(s->in[c]);
        free(s->mid[c]);
    }
    vx_enhance_spectral_free(s->spectral);
    vx_enhance_level_free(s->level);
    free(s->inter);
    free(s);
}

/* Returns state the runner frees with enhance_close. */
static void *enhance_open(const json_t *params, const vx_model_plan *plan, vx_err *err) {
    enhance_state *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    s->plan = *plan;
    s->channels = plan->in_channels;
    s->rate = plan->in_rate;
    if (s->channels < 1 || s->channels > MAX_CHANNELS || s->rate < 8000) {
        vx_err_set(err, VX_E_UNPROCESSABLE, "param_out_of_range", "enhance needs 1 to 8 channels at 8000 Hz or more");
        goto fail;
    }
    s->dc_removal = flag(params, "dc_removal");
    s->highpass_hz = num(params, "highpass_hz");
    s->dehum = json_string_value(json_object_get(params, "dehum"));
    if (!s->dehum) s->dehum = "auto";
    s->denoise = flag(params, "denoise");
    s->declip = flag(params, "declip");
    s->normalize = flag(params, "normalize");
    s->limiter = flag(params, "limiter");
    s->target_lufs = num(params, "target_lufs");
    s->ceiling = num(params, "true_peak_dbtp");
    if (s->highpass_hz >= 0.45 * s->rate) s->highpass_hz = 0.45 * s->rate;

    int mains = strcmp(s->dehum, "off") == 0 ? -1 : strcmp(s->dehum, "50hz") == 0 ? 50 : strcmp(s->dehum, "60hz") == 0 ? 60 : 0;
    vx_enhance_front_opts fo = {.declip = s->declip, .dc_removal = s->dc_removal, .mains_hz = mains};
    for (int c = 0; c < s->channels; c++) {
        s->front[c] = vx_enhance_front_new(s->rate, &fo, err);
        if (!s->front[c]) goto fail;
    }
    s->hop = 256;
    if (s->highpass_hz > 0 || s->denoise) {
        vx_enhance_spectral_opts so = {.highpass_hz = s->highpass_hz, .denoise = s->denoise,
                                       .strength = num(params, "strength"),
                                       .max_attenuation_db = num(params, "max_attenuation_db"),
                                       .lead_in = vx_enhance_front_delay(s->front[0])};
        s->spectral = vx_enhance_spectral_new(s->rate, s->channels, &so, err);
        if (!s->spectral) goto fail;
        s->hop = vx_enhance_spectral_hop(s->spectral);
    }
    vx_enhance_level_opts lo = {.normalize = s->normalize, .target_lufs = s->target_lufs, .limit = s->limiter,
                                .ceiling_dbtp = s->ceiling, .max_limiting_db = num(params, "max_limiting_db"),
                                .window_s = num(params, "loudness_window_s")};
    s->level = vx_enhance_level_new(s->rate, s->channels, &lo, err);
    if (!s->level) goto fail;
    for (int c = 0; c < s->channels; c++) {
        s->in[c] = malloc((size_t)s->hop * sizeof(float));
        s->mid[c] = malloc((size_t)s->hop * sizeof(float));
        if (!s->in[c] || !s->mid[c]) goto oom;
    }
    s->inter = malloc((size_t)s->hop * (size_t)s->channels * sizeof(float));
    if (!s->inter) goto oom;
    /* Leading samples the delaying stages emit before the input's first. */
    s->skip = vx_enhance_front_delay(s->front[0]) + (s->spectral ? vx_enhance_spectral_delay(s->spectral) : 0);
    return s;
oom:
    vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
fail:
    enhance_close(s);
    return NULL;
}

/* Level-stage output: drop the chain's leading delay, stop at the input's
 * length, pass the rest on. */
static int emit(void *user, const float *pcm, size_t frames, vx_err *err) {
    enhance_state *s = user;
    int64_t n = (int64_t)frames;
    if (s->skip > 0) {
        int64_t d = s->skip < n ? s->skip : n;
        s->skip -= d;
        pcm += d * s->channels;
        n -= d;
    }
    if (s->emitted + n > s->total_in) n = s->total_in - s->emitted;
    if (n <= 0) return 0;
    s->emitted += n;
    vx_enhance_level_measure_output(s->level, pcm, (size_t)n);
    return s->out->write(s->out->user, pcm, (size_t)n, err);
}

static int run_hop(enhance_state *s, vx_err *err) {
    int ch = s->channels, hop = s->hop;
    for (int c = 0; c < ch; c++) vx_enhance_front_process(s->front[c], s->in[c], s->mid[c], (size_t)hop);
    if (s->spectral) vx_enhance_spectral_process(s->spectral, s->mid);
    for (int i = 0; i < hop; i++)
        for (int c = 0; c < ch; c++) s->inter[i * ch + c] = s->mid[c][i];
    s->pushed += hop;
    s->fill = 0;
    return vx_enhance_level_push(s->level, s->inter, (size_t)hop, emit, s, err);
}

static int enhance_process(void *state, const float *pcm, size_t frames, const vx_pcm_out *out, vx_err *err) {
    enhance_state *s = state;
    int ch = s->channels;
    s->out = out;
    vx_enhance_level_measure_input(s->level, pcm, frames);
    s->total_in += (int64_t)frames;
    for (size_t k = 0; k < frames; k++) {
        for (int c = 0; c < ch; c++) {
            float x = pcm[k * (size_t)ch + (size_t)c];
            s->in[c][s->fill] = x;
            s->dc_sum += x;
        }
        if (++s->fill == s->hop && run_hop(s, err) != 0) return -1;
    }
    return 0;
}

static json_t *db_or_null(double v) { return isfinite(v) ? json_real(round(v * 100) / 100) : json_null(); }

static json_t *stage(bool enabled, bool acted) {
    return json_pack("{s:b, s:b}", "enabled", enabled, "acted", enabled && acted);
}

static json_t *report(const enhance_state *s) {
    vx_enhance_front_stats fs = {0}, one;
    for (int c = 0; c < s->channels; c++) {
        vx_enhance_front_get_stats(s->front[c], &one);
        fs.declipped_samples += one.declipped_samples;
        fs.clip_runs += one.clip_runs;
        if (one.harmonics > fs.harmonics) {
            fs.harmonics = one.harmonics;
            fs.mains_hz = one.mains_hz;
            fs.mains_f0 = one.mains_f0;
            fs.hum_level_db = one.hum_level_db;
        }
    }
    vx_enhance_spectral_stats ss = {.snr_db = NAN};
    if (s->spectral) vx_enhance_spectral_get_stats(s->spectral, &ss);
    vx_enhance_level_stats ls;
    vx_enhance_level_get_stats(s->level, &ls);
    double dc = s->total_in > 0 ? s->dc_sum / ((double)s->total_in * s->channels) : 0;

    json_t *st = json_object();
    json_t *j = stage(s->dc_removal, fabs(dc) > 1e-4);
    json_object_set_new(j, "offset", json_real(round(dc * 1e6) / 1e6));
    json_object_set_new(st, "dc_removal", j);
    j = stage(s->highpass_hz > 0, s->total_in > 0);
    json_object_set_new(j, "cutoff_hz", json_real(s->highpass_hz));
    json_object_set_new(st, "highpass", j);
    bool hum_on = strcmp(s->dehum, "off") != 0;
    j = stage(hum_on, fs.harmonics > 0);
    json_object_set_new(j, "mains_hz", fs.harmonics > 0 ? json_integer(fs.mains_hz) : json_null());
    json_object_set_new(j, "fundamental_hz", fs.harmonics > 0 ? json_real(round(fs.mains_f0 * 1000) / 1000) : json_null());
    json_object_set_new(j, "harmonics", json_integer(fs.harmonics));
    json_object_set_new(j, "hum_level_db", fs.harmonics > 0 ? db_or_null(fs.hum_level_db) : json_null());
    json_object_set_new(st, "dehum", j);
    j = stage(s->denoise, ss.mean_attenuation_db > 0.1);
    json_object_set_new(j, "attenuation_db", db_or_null(s->denoise ? ss.mean_attenuation_db : 0));
    json_object_set_new(j, "bursts", json_integer(ss.bursts));
    json_object_set_new(st, "denoise", j);
    j = stage(s->declip, fs.declipped_samples > 0);
    json_object_set_new(j, "repaired_samples", json_integer(fs.declipped_samples));
    json_object_set_new(j, "runs", json_integer(fs.clip_runs));
    json_object_set_new(st, "declip", j);
    j = stage(s->normalize, fabs(ls.gain_db) > 0.05 || fabs(ls.max_gain_db - ls.min_gain_db) > 0.05);
    json_object_set_new(j, "target_lufs", json_real(s->target_lufs));
    json_object_set_new(j, "gain_db", db_or_null(s->normalize ? ls.gain_db : 0));
    json_object_set_new(j, "min_gain_db", db_or_null(s->normalize ? ls.min_gain_db : 0));
    json_object_set_new(j, "max_gain_db", db_or_null(s->normalize ? ls.max_gain_db : 0));
    json_object_set_new(st, "loudness", j);
    j = stage(s->limiter, ls.limited_samples > 0);
    json_object_set_new(j, "ceiling_dbtp", json_real(s->ceiling));
    json_object_set_new(j, "max_reduction_db", db_or_null(ls.limiter_max_reduction_db));
    json_object_set_new(j, "limited_samples", json_integer(ls.limited_samples));
    json_object_set_new(st, "limiter", j);

    json_t *acted = json_array();
    const char *key;
    json_t *v;
    json_object_foreach(st, key, v) {
        if (json_is_true(json_object_get(v, "acted"))) json_array_append_new(acted, json_string(key));
    }
    double seconds = round((double)s->total_in / s->rate * 1000.0) / 1000.0;
    return json_pack("{s:s, s:i, s:i, s:f, s:{s:o, s:o}, s:{s:o, s:o}, s:o, s:o}", "format", s->plan.out_format,
                     "sample_rate", s->plan.out_rate, "channels", s->plan.out_channels, "duration_s", seconds,
                     "input", "loudness_lufs", db_or_null(ls.input_lufs), "snr_db", db_or_null(ss.snr_db),
                     "processed", "loudness_lufs", db_or_null(ls.output_lufs), "true_peak_dbtp",
                     db_or_null(ls.output_true_peak_dbtp), "stages", st, "stages_acted", acted);
}

static int enhance_finish(void *state, const vx_pcm_out *out, json_t **result, vx_err *err) {
    enhance_state *s = state;
    s->out = out;
    for (int c = 0; c < s->channels; c++) vx_enhance_front_end_input(s->front[c]);
    /* Push zeros until every input sample has come out of the delaying
     * stages (whole hops). */
    int64_t need = s->total_in + vx_enhance_front_delay(s->front[0]) +
                   (s->spectral ? vx_enhance_spectral_delay(s->spectral) : 0);
    while (s->pushed + s->fill < need || s->fill > 0) {
        for (int c = 0; c < s->channels; c++)
            memset(s->in[c] + s->fill, 0, (size_t)(s->hop - s->fill) * sizeof(float));
        s->fill = s->hop;
        if (run_hop(s, err) != 0) return -1;
    }
    if (vx_enhance_level_flush(s->level, emit, s, err) != 0) return -1;
    *result = report(s);
    if (!*result) return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
    return 0;
}

const vx_model vx_model_enhance = {
    .name = "enhance",
    .kind = "enhancement",
    .description = "Speech enhancement: DC and high-pass, mains-hum removal, noise suppression, de-clipping, "
                   "loudness normalisation with a true-peak limiter.",
    .inputs = vx_audio_input_formats,
    .params = enhance_params,
    .n_params = sizeof enhance_params / sizeof enhance_params[0],
    .price_per_job = 10000,
    .price_per_second = 2000,
    .plan = enhance_plan,
    .open = enhance_open,
    .process = enhance_process,
    .finish = enhance_finish,
    .close = enhance_close,
};
