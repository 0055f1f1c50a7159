/* enhance_int.h - private interfaces between the stages of the `enhance`
 * model (enhance.c glue; enhance_front.c declip/DC/hum; enhance_spectral.c
 * high-pass + noise suppression; enhance_level.c loudness + true-peak
 * limiter). Each stage is a fixed-delay, bounded-state block processor so
 * the chain can run on a live stream. Not part of any public API. */
#ifndef VX_ENHANCE_INT_H
#define VX_ENHANCE_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "../util/err.h"

/* ---- front end (one per channel): declip -> DC blocker -> hum canceller ---- */
typedef struct vx_enhance_front_opts {
    bool declip;
    bool dc_removal;
    int mains_hz;        /* -1 off, 0 auto-detect 50/60, 50 or 60 forced family */
} vx_enhance_front_opts;

typedef struct vx_enhance_front_stats {
    int64_t declipped_samples;  /* samples rebuilt by the declipper */
    int64_t clip_runs;
    int mains_hz;               /* 50/60 when hum was found, else 0 */
    double mains_f0;            /* measured fundamental (Hz) */
    int harmonics;              /* largest number of harmonics notched at once */
    double hum_level_db;        /* hum power relative to the whole signal at detection, dB */
} vx_enhance_front_stats;

typedef struct vx_enhance_front vx_enhance_front;
/* NULL on failure (err filled). Caller frees with vx_enhance_front_free. */
vx_enhance_front *vx_enhance_front_new(int rate, const vx_enhance_front_opts *o, vx_err *err);
void vx_enhance_front_free(vx_enhance_front *f);
/* n samples in, n samples out, delayed by vx_enhance_front_delay(). */
void vx_enhance_front_process(vx_enhance_front *f, const float *in, float *out, size_t n);
/* Marks the end of real input: later samples are padding (zeros) and do not
 * change detection. A file shorter than the hum window is analysed here. */
void vx_enhance_front_end_input(vx_enhance_front *f);
int vx_enhance_front_delay(const vx_enhance_front *f);
void vx_enhance_front_get_stats(const vx_enhance_front *f, vx_enhance_front_stats *st);

/* ---- spectral stage (all channels, linked gains): high-pass + denoise ---- */
typedef struct vx_enhance_spectral_opts {
    double highpass_hz;        /* 0 = off */
    bool denoise;
    double strength;           /* noise over-estimation factor; 0 = no suppression */
    double max_attenuation_db; /* floor of the suppression gain */
    int64_t lead_in;           /* samples of padding the earlier stages emit first */
} vx_enhance_spectral_opts;

typedef struct vx_enhance_spectral_stats {
    double snr_db;              /* estimated input SNR (speech-weighted), NAN if no signal */
    double mean_attenuation_db; /* energy removed by the denoiser, dB (>= 0) */
    int64_t bursts;             /* transient noise bursts suppressed */
    int64_t frames;
} vx_enhance_spectral_stats;

typedef struct vx_enhance_spectral vx_enhance_spectral;
/* NULL on failure (err filled). Caller frees with vx_enhance_spectral_free. */
vx_enhance_spectral *vx_enhance_spectral_new(int rate, int channels, const vx_enhance_spectral_opts *o,
                                             vx_err *err);
void vx_enhance_spectral_free(vx_enhance_spectral *s);
int vx_enhance_spectral_hop(const vx_enhance_spectral *s);
int vx_enhance_spectral_delay(const vx_enhance_spectral *s);
/* In place: io[c] holds exactly hop samples of channel c; on return, hop
 * processed samples delayed by vx_enhance_spectral_delay(). */
void vx_enhance_spectral_process(vx_enhance_spectral *s, float *const *io);
void vx_enhance_spectral_get_stats(const vx_enhance_spectral *s, vx_enhance_spectral_stats *st);

/* ---- level stage: loudness normalisation over a bounded window + limiter ---- */
typedef struct vx_enhance_level_opts {
    bool normalize;
    double target_lufs;
    bool limit;
    double ceiling_dbtp;
    double max_limiting_db;    /* peak reduction the limiter may do to reach the target */
    double window_s;           /* lookahead held before the gain is committed */
} vx_enhance_level_opts;

typedef struct vx_enhance_level_stats {
    double input_lufs;         /* of what entered the model (before any stage) */
    double pre_gain_lufs;      /* after cleaning, before the gain */
    double output_lufs;
    double output_true_peak_dbtp;
    double gain_db;            /* last gain applied (the one gain for inputs within the window) */
    double min_gain_db, max_gain_db;
    double limiter_max_reduction_db;
    int64_t limited_samples;
} vx_enhance_level_stats;

/* Receives interleaved output frames. */
typedef int (*vx_enhance_emit_fn)(void *user, const float *pcm, size_t frames, vx_err *err);

typedef struct vx_enhance_level vx_enhance_level;
/* NULL on failure (err filled). Caller frees with vx_enhance_level_free. */
vx_enhance_level *vx_enhance_level_new(int rate, int channels, const vx_enhance_level_opts *o, vx_err *err);
void vx_enhance_level_free(vx_enhance_level *l);
/* Measures the raw input (for the report); interleaved. */
void vx_enhance_level_measure_input(vx_enhance_level *l, const float *pcm, size_t frames);
/* Measures the final output (what the model emits, after alignment). */
void vx_enhance_level_measure_output(vx_enhance_level *l, const float *pcm, size_t frames);
/* Interleaved cleaned audio in; emits gained, limited audio delayed by the
 * window (released once the window is full) and the limiter lookahead. */
int vx_enhance_level_push(vx_enhance_level *l, const float *pcm, size_t frames, vx_enhance_emit_fn emit,
                          void *user, vx_err *err);
/* End of input: releases everything held, with the final gain. */
int vx_enhance_level_flush(vx_enhance_level *l, vx_enhance_emit_fn emit, void *user, vx_err *err);
int vx_enhance_level_delay(const vx_enhance_level *l); /* limiter lookahead (frames) */
void vx_enhance_level_get_stats(const vx_enhance_level *l, vx_enhance_level_stats *st);

#endif
