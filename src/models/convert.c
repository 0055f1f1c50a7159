/* convert.c - the `convert` model: re-encodes any accepted input as WAV,
 * FLAC, Opus or MP3 at a chosen rate and channel count. The resampling and
 * remixing happen in the decoder (the plan asks for them); the model passes
 * PCM through and counts it for the result document. Re-entrant. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "model.h"

static const char *const format_choices[] = {"wav", "flac", "opus", "mp3", NULL};

static const vx_param_spec convert_params[] = {
    {.name = "format", .type = VX_PARAM_ENUM, .description = "output format",
     .default_choice = "wav", .choices = format_choices},
    {.name = "sample_rate", .type = VX_PARAM_INT,
     .description = "output sample rate in Hz (8000 or more); 0 keeps the input rate (Opus/MP3 pick the nearest rate they support)",
     .min = 0, .max = 192000, .default_number = 0},
    {.name = "channels", .type = VX_PARAM_INT,
     .description = "output channel count; 0 keeps the input's (MP3 carries at most 2)",
     .min = 0, .max = 8, .default_number = 0},
};

static const int opus_rates[] = {8000, 12000, 16000, 24000, 48000, 0};
static const int mp3_rates[] = {8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 0};

/* Lowest rate asked for explicitly; below it speech is unintelligible and
 * the codecs refuse. */
#define MIN_EXPLICIT_RATE 8000

static bool in_list(const int *list, int rate) {
    for (; *list; list++)
        if (*list == rate) return true;
    return false;
}

static int nearest(const int *list, int rate) {
    int best = list[0];
    for (; *list; list++)
        if (abs(*list - rate) < abs(best - rate)) best = *list;
    return best;
}

static int convert_plan(const json_t *params, const vx_audio_info *input, vx_model_plan *plan, vx_err *err) {
    const char *format = json_string_value(json_object_get(params, "format"));
    int rate = (int)json_integer_value(json_object_get(params, "sample_rate"));
    int channels = (int)json_integer_value(json_object_get(params, "channels"));
    if (!format || !vx_audio_output_format_valid(format))
        return vx_err_set(err, VX_E_UNPROCESSABLE, "param_out_of_range", "format must be one of: wav, flac, opus, mp3");
    bool opus = strcmp(format, "opus") == 0, mp3 = strcmp(format, "mp3") == 0;

    if (rate > 0 && rate < MIN_EXPLICIT_RATE)
        return vx_err_set(err, VX_E_UNPROCESSABLE, "param_out_of_range",
                          "sample_rate must be 0 (keep the input rate) or between 8000 and 192000");
    if (rate > 0 && opus && !in_list(opus_rates, rate))
        return vx_err_set(err, VX_E_UNPROCESSABLE, "unsupported_sample_rate",
                          "opus output supports 8000, 12000, 16000, 24000 or 48000 Hz, not %d", rate);
    if (rate > 0 && mp3 && !in_list(mp3_rates, rate))
        return vx_err_set(err, VX_E_UNPROCESSABLE, "unsupported_sample_rate",
                          "mp3 output supports 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100 or 48000 Hz, not %d",
                          rate);
    if (rate == 0) {
        rate = input->sample_rate;
        /* Keeping the input rate must not fail just because the codec cannot
         * carry it: Opus always runs at 48 kHz inside, MP3 gets its nearest. */
        if (opus && !in_list(opus_rates, rate)) rate = 48000;
        if (mp3 && !in_list(mp3_rates, rate)) rate = nearest(mp3_rates, rate);
        if (rate > 192000) rate = 192000;
    }
    if (mp3 && channels > 2)
        return vx_err_set(err, VX_E_UNPROCESSABLE, "param_out_of_range", "mp3 output carries 1 or 2 channels, not %d",
                          channels);
    if (channels == 0) {
        channels = input->channels;
        if (mp3 && channels > 2) channels = 2;
        if (channels > 8)
            return vx_err_set(err, VX_E_UNPROCESSABLE, "param_out_of_range",
                              "the input has %d channels; set channels between 1 and 8", channels);
    }
    if (rate <= 0 || channels <= 0)
        return vx_err_set(err, VX_E_UNPROCESSABLE, "invalid_audio", "the input has no usable rate or channel count");

    memset(plan, 0, sizeof *plan);
    plan->in_rate = rate;
    plan->in_channels = channels;
    snprintf(plan->out_format, sizeof plan->out_format, "%s", format);
    plan->out_rate = rate;
    plan->out_channels = channels;
    return 0;
}

typedef struct convert_state {
    vx_model_plan plan;
    int64_t frames;
} convert_state;

/* Returns state the runner frees with convert_close. */
static void *convert_open(const json_t *params, const vx_model_plan *plan, vx_err *err) {
    convert_state *s = calloc(1, sizeof *s);
    if (!s) {
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        return NULL;
    }
    s->plan = *plan;
    return s;
}

static int convert_process(void *state, const float *pcm, size_t frames, const vx_pcm_out *out, vx_err *err) {
    convert_state *s = state;
    if (out->write(out->user, pcm, frames, err) != 0) return -1;
    s->frames += (int64_t)frames;
    return 0;
}

static int convert_finish(void *state, const vx_pcm_out *out, json_t **result, vx_err *err) {
    const convert_state *s = state;
    double seconds = round((double)s->frames / s->plan.out_rate * 1000.0) / 1000.0;
    *result = json_pack("{s:s, s:i, s:i, s:f}", "format", s->plan.out_format, "sample_rate", s->plan.out_rate,
                        "channels", s->plan.out_channels, "duration_s", seconds);
    if (!*result) return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
    return 0;
}

static void convert_close(void *state) { free(state); }

const vx_model vx_model_convert = {
    .name = "convert",
    .kind = "conversion",
    .description = "Convert audio to WAV, FLAC, Opus or MP3 at a chosen sample rate and channel count.",
    .inputs = vx_audio_input_formats,
    .params = convert_params,
    .n_params = sizeof convert_params / sizeof convert_params[0],
    .price_per_job = 10000,
    .price_per_second = 1000,
    .plan = convert_plan,
    .open = convert_open,
    .process = convert_process,
    .finish = convert_finish,
    .close = convert_close,
};
