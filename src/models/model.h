/* model.h - the model interface and the catalog (DESIGN.md "models").
 * A model is a pure function of decoded PCM + parameters: it knows nothing
 * of HTTP, SQL or storage. It is driven in frames (open / process* / finish)
 * so the same model serves batch jobs and live streams with bounded state.
 * Each model file defines one const vx_model; catalog.c lists them all.
 * Models are re-entrant: state lives in what open() returns. */
#ifndef VX_MODEL_H
#define VX_MODEL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "../audio/audio.h"
#include "../util/err.h"

typedef enum vx_param_type { VX_PARAM_INT, VX_PARAM_NUMBER, VX_PARAM_BOOL, VX_PARAM_ENUM } vx_param_type;

typedef struct vx_param_spec {
    const char *name;
    vx_param_type type;
    const char *description;
    double min, max;                 /* INT / NUMBER bounds, inclusive */
    double default_number;           /* INT / NUMBER default */
    bool default_bool;
    const char *default_choice;      /* ENUM default */
    const char *const *choices;      /* ENUM, NULL-terminated */
} vx_param_spec;

/* What the model wants from the runner, decided from params + input. */
typedef struct vx_model_plan {
    int in_rate;          /* PCM rate the model consumes (0 = as the input) */
    int in_channels;      /* 0 = as the input */
    char out_format[16];  /* "" when the model makes no audio file */
    int out_rate;         /* rate/channels of the audio the model emits */
    int out_channels;
    vx_audio_info input;  /* the probed input; filled by the runner after plan() */
} vx_model_plan;

/* Where a model sends audio it produces. */
typedef struct vx_pcm_out {
    int (*write)(void *user, const float *pcm, size_t frames, vx_err *err);
    void *user;
} vx_pcm_out;

/* Where a model reports live results during process()/poll()/finish(), for
 * streams: final pieces as soon as nothing can change them (an utterance, a
 * speech segment) and, if `partials`, a changed partial hypothesis. emit gets
 * a JSON object it must not keep (borrowed for the call). `wake` (optional)
 * may be called from any thread when results became ready outside the
 * model's calls (work done in the background): the host then calls poll()
 * soon, on the thread that drives the model; wake must only schedule that.
 * Without wake, models do all their work inside their calls. */
typedef struct vx_model_listener {
    void (*emit)(void *user, const json_t *event);
    void (*wake)(void *user);
    bool partials;
    void *user;
} vx_model_listener;

typedef struct vx_model {
    const char *name;            /* catalog key, [a-z0-9_-] */
    const char *kind;            /* "conversion", "enhancement", "analysis", "transcription" */
    const char *description;
    const char *const *inputs;   /* accepted input formats, NULL-terminated */
    const vx_param_spec *params;
    size_t n_params;
    int64_t price_per_job;       /* default prices in micro-credits */
    int64_t price_per_second;

    /* Decides rates/formats. `params` is already validated with defaults
     * filled (vx_catalog_validate_params). */
    int (*plan)(const json_t *params, const vx_audio_info *input, vx_model_plan *plan, vx_err *err);
    /* Per-run state; NULL on failure. */
    void *(*open)(const json_t *params, const vx_model_plan *plan, vx_err *err);
    /* Consumes `frames` interleaved frames at plan->in_rate/in_channels. */
    int (*process)(void *state, const float *pcm, size_t frames, const vx_pcm_out *out, vx_err *err);
    /* End of input: flush, and return the result document (new reference).
     * Live streams whose listener has a wake only: may return 1 while work
     * runs in the background; the host calls finish again after a wake
     * (input is not flushed twice) until it returns 0 or -1. */
    int (*finish)(void *state, const vx_pcm_out *out, json_t **result, vx_err *err);
    void (*close)(void *state);

    /* Optional: renders a stored result document in another text format for
     * GET /v1/jobs/{id}/result?format=... ("srt", "csv", ...). On success *out
     * is malloc'd (caller frees), *len its length, *content_type a static
     * string. Unknown format: 400 "invalid_format". NULL = JSON only. */
    int (*render)(const json_t *result, const char *format, char **out, size_t *len,
                  const char **content_type, vx_err *err);

    /* Optional, live streams: sets the listener (borrowed until close) right
     * after open(); may take resources a live run needs at once (503
     * "asr_busy"). NULL = the model reports only its final document. */
    int (*listen)(void *state, const vx_model_listener *listener, vx_err *err);
    /* Optional, live streams: reports results that became ready since the
     * last call (after the listener's wake). */
    int (*poll)(void *state, vx_err *err);
} vx_model;

/* ---- the models (one file each in src/models/; catalog.c lists them) ---- */
extern const vx_model vx_model_convert;   /* convert.c: any input -> wav/flac/opus/mp3 */
extern const vx_model vx_model_transcribe; /* transcribe.c: speech -> text, segments, words (srt/vtt) */
extern const vx_model vx_model_segment;    /* segment.c: speech segments (json/csv/audacity) */
extern const vx_model vx_model_analyze;    /* analyze.c: per-chunk speech, loudness, peaks, SNR, quality */
extern const vx_model vx_model_enhance;    /* enhance.c: speech enhancement (denoise, dehum, loudness) */

/* Plans the audio file a model writes from its `format` (wav|flac|opus|mp3),
 * `sample_rate` (0 = keep the input's, raised to at least min_kept_rate;
 * Opus/MP3 pick a rate they carry) and `channels` (0 = keep; MP3 at most 2)
 * params: fills in_* and out_* alike (the decoder resamples). 422
 * "param_out_of_range" / "unsupported_sample_rate" / "invalid_audio". */
int vx_model_plan_audio_output(const json_t *params, const vx_audio_info *input, int min_kept_rate,
                               vx_model_plan *plan, vx_err *err);

/* ---- catalog ---- */
const vx_model *vx_catalog_find(const char *name);
const vx_model *const *vx_catalog_all(size_t *n);
/* Checks `params` (a JSON object or NULL) against the model's specs: unknown
 * key 422 "unknown_param", wrong type 422 "invalid_param", out of bounds or
 * not a choice 422 "param_out_of_range" (messages name the parameter and the
 * allowed range). On success *out is a new object with every param, defaults
 * filled. */
int vx_catalog_validate_params(const vx_model *m, const json_t *params, json_t **out, vx_err *err);
/* {"name","kind","description","inputs":[...],"params":[{name,type,description,default,min,max|choices}],
 *  "price":{"per_job","per_second"}} with the given prices (credits). New reference. */
json_t *vx_catalog_model_json(const vx_model *m, int64_t per_job, int64_t per_second);

#endif
