/* vad.h - frame-level voice activity detector: mono PCM in, one speech
 * probability per 10 ms frame out, with bounded state (a few spectra and a
 * short smoothing window), so batch models, live streams and transcription
 * can share it. Used by the segment and analyze models.
 * One vx_vad per stream; any thread, one thread at a time per object. */
#ifndef VX_VAD_H
#define VX_VAD_H
#include <stddef.h>
#include <stdint.h>
#include "../util/err.h"

/* Lowest and highest sample rates the detector accepts. */
#define VX_VAD_MIN_RATE 8000
#define VX_VAD_MAX_RATE 192000

/* One analysed frame. Frame `index` describes the samples
 * [index * hop, (index + 1) * hop) of the stream (see vx_vad_hop). */
typedef struct vx_vad_frame {
    int64_t index;
    double probability;  /* smoothed P(speech) in [0,1]: what callers threshold */
    double raw;          /* the frame's own posterior before temporal smoothing */
    double power_db;     /* mean square of the frame's hop samples, dBFS (floor -120) */
    double noise_db;     /* tracked noise floor, full band, dBFS (floor -120) */
    double snr_db;       /* a-posteriori SNR in 300-3400 Hz: frame power over noise floor */
    double flatness;     /* spectral flatness (geometric/arithmetic mean power, 0..1), 0 for silence */
    double llr;          /* mean per-bin log likelihood ratio of speech vs noise (Sohn) */
    double voicing;      /* periodicity of the noise-reduced spectrum in the 70-400 Hz pitch range, 0..1 */
    double modulation;   /* std-dev of the 300-3400 Hz band level over the 110 ms around the frame, dB */
    double ltsv;         /* long-term spectral variability over the same window (Ghosh et al. 2011), 0.. */
    double voicing_lt;   /* mean voicing over the 110 ms around the frame */
    double llr_lt;       /* mean llr (capped at 6) over the same window */
    double voicing_rel;  /* voicing_lt over its own minimum of the last 3 s (adaptive floor) */
    double llr_rel;      /* llr_lt over its own minimum of the last 3 s */
} vx_vad_frame;

/* Called once per frame, in order. Returns 0, or -1 to stop with *err filled. */
typedef int (*vx_vad_frame_fn)(void *user, const vx_vad_frame *frame, vx_err *err);

typedef struct vx_vad vx_vad;

/* New detector for `sample_rate` Hz mono input (VX_VAD_MIN_RATE..MAX).
 * NULL on failure (422 "invalid_sample_rate", 500 "out_of_memory").
 * Caller frees with vx_vad_free. */
vx_vad *vx_vad_new(int sample_rate, vx_err *err);
void vx_vad_free(vx_vad *v);

/* Samples per frame (10 ms, rounded) and the sample rate. */
int vx_vad_hop(const vx_vad *v);
int vx_vad_rate(const vx_vad *v);
/* How many samples of input a frame's result trails the newest input by:
 * the analysis window's look-ahead plus the smoother's fixed lag. */
int vx_vad_latency(const vx_vad *v);

/* Feeds n mono samples (any n); calls fn for every frame that is final.
 * Returns 0, or -1 when fn failed (its err is passed through). */
int vx_vad_process(vx_vad *v, const float *pcm, size_t n, vx_vad_frame_fn fn, void *user, vx_err *err);
/* End of input: emits the remaining frames, so that the stream yields
 * ceil(samples / hop) frames in all. The detector must not be fed again. */
int vx_vad_flush(vx_vad *v, vx_vad_frame_fn fn, void *user, vx_err *err);

/* ---- speech segments from frame probabilities ----
 * Rules, applied in this order (tests/unit/test_vad.c pins them down):
 *  1. a frame is speech when probability >= threshold;
 *  2. speech runs separated by less than min_silence_ms of non-speech join;
 *  3. joined runs shorter than min_speech_ms are dropped;
 *  4. each kept segment widens by pad_ms on both sides (never before 0 nor
 *     past the end of the audio) and segments that then overlap or touch merge.
 * confidence = mean frame probability over the segment before padding. */
typedef struct vx_vad_segment_config {
    double threshold;       /* 0..1 */
    int min_speech_ms;      /* >= 0 */
    int min_silence_ms;     /* >= 0 */
    int pad_ms;             /* >= 0 */
    double frame_s;         /* duration of one frame (hop / rate) */
} vx_vad_segment_config;

typedef struct vx_vad_segment {
    double start_s, end_s;
    double confidence;
} vx_vad_segment;

/* Called once per finished segment, in time order. 0, or -1 with *err. */
typedef int (*vx_vad_segment_fn)(void *user, const vx_vad_segment *seg, vx_err *err);

typedef struct vx_vad_segmenter vx_vad_segmenter;
/* NULL on failure (422 "invalid_param" for a bad config, 500). Caller frees. */
vx_vad_segmenter *vx_vad_segmenter_new(const vx_vad_segment_config *cfg, vx_err *err);
void vx_vad_segmenter_free(vx_vad_segmenter *s);
/* The next frame's probability. A segment is reported once nothing later can
 * change it (that is, up to min_silence_ms + 2 * pad_ms after its end). */
int vx_vad_segmenter_push(vx_vad_segmenter *s, double probability, vx_vad_segment_fn fn, void *user, vx_err *err);
/* End of the audio after `duration_s`: reports what is left. */
int vx_vad_segmenter_finish(vx_vad_segmenter *s, double duration_s, vx_vad_segment_fn fn, void *user, vx_err *err);

#endif
