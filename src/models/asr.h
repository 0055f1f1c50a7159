/* asr.h - the speech-to-text engine behind `transcribe`, the OpenAI endpoint
 * and live streams: a loaded model shared by all threads, a bounded pool of
 * reusable decoders, per-utterance calls (begin, feed 16 kHz mono PCM,
 * partial, end -> timed words), and whole-utterance decodes in the
 * background for live streams (asr_later.c). Model, pool and background
 * tasks: any thread; a decoder: one thread at a time, between
 * vx_asr_acquire and vx_asr_release. */
#ifndef VX_ASR_H
#define VX_ASR_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "../util/err.h"

typedef struct vx_asr_word {
    char *word;          /* lower-case, no pronunciation variant suffix */
    double start, end;   /* seconds from the start of the stream */
    double confidence;   /* posterior probability in [0, 1] */
} vx_asr_word;

/* One decoded utterance. Times are absolute (begin's offset added). */
typedef struct vx_asr_utterance {
    char *text;          /* words joined by single spaces; "" when nothing was heard */
    double start, end;   /* the audio that was fed, not only the words */
    vx_asr_word *words;
    size_t n_words;
} vx_asr_utterance;

void vx_asr_utterance_clear(vx_asr_utterance *u);

/* An engine fills this table (like a store backend). `model` is the shared,
 * read-only part (acoustic model, dictionary, language model as far as the
 * engine can share them); `decoder` is per-stream search state. Every hook
 * fails with -1/NULL and a filled err; none may print. */
typedef struct vx_asr_options vx_asr_options;
typedef struct vx_asr_engine {
    const char *name;
    int sample_rate;                                   /* what feed() consumes, mono int16 */
    /* Checks and loads what decoders share. NULL on failure (503 asr_unavailable). */
    void *(*load)(const vx_asr_options *opt, vx_err *err);
    void (*unload)(void *model);
    /* A new decoder on `model` (the expensive step). */
    void *(*decoder_new)(void *model, vx_err *err);
    void (*decoder_free)(void *decoder);
    int (*start)(void *decoder, vx_err *err);
    int (*feed)(void *decoder, const int16_t *pcm, size_t n, vx_err *err);
    /* The current best hypothesis, "" if none; owned by the decoder, valid
     * until the next call on it. */
    const char *(*partial)(void *decoder);
    /* Ends the utterance; fills `out` with times relative to its first sample. */
    int (*end)(void *decoder, vx_asr_utterance *out, vx_err *err);
    /* Decodes one complete utterance in a single pass (start, feed, end),
     * free to normalise over all of it first; same output as end(). */
    int (*decode)(void *decoder, const int16_t *pcm, size_t n, vx_asr_utterance *out, vx_err *err);
    /* Optional: forgets what earlier utterances taught the decoder (e.g. a
     * running normalisation), when the pool hands it to a new user. */
    void (*reset)(void *decoder);
} vx_asr_engine;

extern const vx_asr_engine vx_asr_pocketsphinx;   /* CMU PocketSphinx, US English */

struct vx_asr_options {
    const char *engine;       /* engine name; NULL = "pocketsphinx" */
    const char *model_dir;    /* NULL = the engine's default (Debian's pocketsphinx-en-us) */
    int max_decoders;         /* pool bound, >= 1 */
};

/* The defaults: pocketsphinx, its default model, VX_ASR_DEFAULT_DECODERS. */
#define VX_ASR_DEFAULT_DECODERS 4
void vx_asr_options_default(vx_asr_options *opt);

typedef struct vx_asr_model vx_asr_model;
typedef struct vx_asr_decoder vx_asr_decoder;

/* Loads the engine's shared model; the pool starts empty. NULL on failure:
 * 503 "asr_unavailable" (model files missing or unreadable), 400
 * "invalid_param" (unknown engine, bad bound). Free with vx_asr_model_free. */
vx_asr_model *vx_asr_model_new(const vx_asr_options *opt, vx_err *err);
/* Frees the pool and the model. Every decoder must have been released. */
void vx_asr_model_free(vx_asr_model *m);
const char *vx_asr_model_engine(const vx_asr_model *m);
int vx_asr_model_rate(const vx_asr_model *m);

/* Takes an idle decoder (most recently released first), creates one while
 * fewer than max_decoders exist, else waits up to wait_ms (< 0 = forever,
 * 0 = not at all) for a release. This is a long hold (a job, a live stream's
 * partials): long holds leave `reserved` decoders (one when the bound is 2 or
 * more) to brief ones, so background decodes always make progress. NULL on
 * failure: 503 "asr_busy" when the wait ran out, or the engine's error when
 * creation failed. */
vx_asr_decoder *vx_asr_acquire(vx_asr_model *m, int wait_ms, vx_err *err);
/* A brief hold, for one decode that ends by itself (the background tasks
 * below): may take the reserved decoders; waits as long as it must. */
vx_asr_decoder *vx_asr_acquire_brief(vx_asr_model *m, vx_err *err);
/* Gives the decoder back for reuse (an utterance left open is ended and
 * dropped). NULL is ignored. */
void vx_asr_release(vx_asr_decoder *d);

typedef struct vx_asr_pool_stats {
    int max;        /* bound */
    int created;    /* decoders alive (idle + in use) */
    int in_use;     /* long and brief holds */
    int held;       /* long holds; never above max - reserved */
    int reserved;   /* decoders kept for brief holds: 1 when max >= 2, else 0 */
    int64_t creations;   /* decoders ever created (reuse keeps this low) */
} vx_asr_pool_stats;
void vx_asr_pool_stats_get(vx_asr_model *m, vx_asr_pool_stats *out);

/* Starts an utterance whose first sample is at `offset_s` in the caller's
 * stream (word times are reported from there). */
int vx_asr_begin(vx_asr_decoder *d, double offset_s, vx_err *err);
/* Feeds mono PCM at vx_asr_model_rate(): int16, or float in [-1, 1]
 * (clipped). Only between begin and end. */
int vx_asr_feed_s16(vx_asr_decoder *d, const int16_t *pcm, size_t n, vx_err *err);
int vx_asr_feed_f32(vx_asr_decoder *d, const float *pcm, size_t n, vx_err *err);
/* Seconds fed since begin. */
double vx_asr_fed_seconds(const vx_asr_decoder *d);
/* The current partial hypothesis ("" when none or outside an utterance).
 * Owned by the decoder, valid until its next call. */
const char *vx_asr_partial(vx_asr_decoder *d);
/* Ends the utterance and fills *out (caller clears it with
 * vx_asr_utterance_clear). Words are in time order, start <= end, inside
 * [offset, offset + fed seconds]. */
int vx_asr_end(vx_asr_decoder *d, vx_asr_utterance *out, vx_err *err);

/* Decodes a complete utterance of n samples whose first sample is at
 * `offset_s`: batch work, where the whole utterance is known, gets better
 * accuracy this way than by feeding it (PocketSphinx normalises the cepstra
 * over the whole utterance instead of a running estimate). Same guarantees
 * as vx_asr_end; no utterance may be open. */
int vx_asr_decode_s16(vx_asr_decoder *d, const int16_t *pcm, size_t n, double offset_s, vx_asr_utterance *out,
                      vx_err *err);

/* ---- background decodes (asr_later.c) ----
 * A live stream hands each finished utterance to a few process-wide
 * threads (one per core, below normal priority), so its frame replies never
 * wait for the whole-utterance decode. Each task decodes a copy of its audio
 * on a brief decoder of its model, exactly as vx_asr_decode_s16 does. */
typedef struct vx_asr_task vx_asr_task;

/* Whether m can decode in the background (its bound leaves a reserved
 * decoder); if not, decode on the caller's thread. */
bool vx_asr_background_ok(vx_asr_model *m);
/* Queues the decode of a copy of pcm[0, n) whose first sample is at
 * offset_s. `ready(user)` (optional) is called on a background thread when
 * the result can be taken without waiting, never after vx_asr_task_drop
 * returned for the task; it runs under the queue's lock, so it must only
 * signal (no asr calls). NULL when out of memory or !vx_asr_background_ok
 * (409 "asr_no_background"). */
vx_asr_task *vx_asr_decode_later(vx_asr_model *m, const int16_t *pcm, size_t n, double offset_s,
                                 void (*ready)(void *user), void *user, vx_err *err);
/* True once the task's result is there (take will not wait). */
bool vx_asr_task_ready(vx_asr_task *t);
/* Waits for the result if need be, moves it to *out (as vx_asr_decode_s16)
 * and frees the task. */
int vx_asr_task_take(vx_asr_task *t, vx_asr_utterance *out, vx_err *err);
/* Forgets a task (queued, running or done) and its result; frees it, now or
 * when its decode ends. NULL is ignored. */
void vx_asr_task_drop(vx_asr_task *t);
/* Tasks queued or running, and tasks ever decoded (for tests and metrics). */
void vx_asr_background_stats(int *pending, int64_t *decoded);
/* Stops the background threads (after every task was taken or dropped);
 * they start again on the next vx_asr_decode_later. */
void vx_asr_background_stop(void);

/* The process-wide model that models and streams share, loaded on first use
 * (thread-safe) with the options given to vx_asr_shared_configure, or the
 * defaults. A failed load is retried at the next call. Borrowed pointer. */
vx_asr_model *vx_asr_shared(vx_err *err);
/* Sets the options of the shared model; only before its first use (returns
 * -1 with 409 "asr_loaded" after). Strings are copied. */
int vx_asr_shared_configure(const vx_asr_options *opt, vx_err *err);
/* Frees the shared model (at exit, after every user has released). */
void vx_asr_shared_free(void);

#endif
