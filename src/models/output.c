/* output.c - planning the audio file a model writes (format, sample rate,
 * channel count) from its `format` / `sample_rate` / `channels` params and the
 * input, shared by every model that produces audio (convert, enhance). Knows
 * which rates each codec carries. Pure; any thread. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "model.h"

static const int opus_rates[] = {8000, 12000, 16000, 24000, 48000, 0};
static const int mp3_rates[] = {8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 0};

/* Lowest rate asked for explicitly; below it speech is unintelligible and
 * the codecs refuse. */
#define MIN_EXPLICIT_RATE 8000
#define MAX_RATE 192000
#define MAX_CHANNELS 8

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

int vx_model_plan_audio_output(const json_t *params, const vx_audio_info *input, int min_kept_rate,
                               vx_model_plan *plan, vx_err *err) {
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
        if (rate > MAX_RATE) rate = MAX_RATE;
        if (rate > 0 && rate < min_kept_rate) rate = min_kept_rate;
    }
    if (mp3 && channels > 2)
        return vx_err_set(err, VX_E_UNPROCESSABLE, "param_out_of_range", "mp3 output carries 1 or 2 channels, not %d",
                          channels);
    if (channels == 0) {
        channels = input->channels;
        if (mp3 && channels > 2) channels = 2;
        if (channels > MAX_CHANNELS)
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
