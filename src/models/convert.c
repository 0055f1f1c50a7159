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

static int convert_plan(const json_t *params, const vx_audio_info *input, vx_model_plan *plan, vx_err *err) {
    return vx_model_plan_audio_output(params, input, 0, plan, err);
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
