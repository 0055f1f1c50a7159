/* stft.h - streaming short-time Fourier transform: windowed real FFT analysis
 * and weighted overlap-add synthesis over libavutil's av_tx (AV_TX_FLOAT_RDFT),
 * one hop at a time with bounded state (two frame-sized buffers), so the same
 * code serves whole files and live streams. Used by spectral models (enhance,
 * segment, analyze). One vx_stft per channel and per thread; no global state.
 *
 * Conventions (stable API):
 *  - A frame is `frame` samples; consecutive frames start `hop` samples apart.
 *  - vx_stft_analyze() takes exactly `hop` new samples and returns the
 *    spectrum of the last `frame` samples (zeros before the first sample),
 *    windowed by the analysis window: bins = frame/2 + 1 complex values,
 *    bin k at k * rate / frame Hz, unnormalised (a full-scale sine of
 *    amplitude A at a bin centre reads about A * sum(window) / 2). The DC
 *    and Nyquist bins have im = 0.
 *  - vx_stft_synthesize() takes one (possibly modified) spectrum and returns
 *    exactly `hop` finished output samples. With an unmodified spectrum the
 *    output equals the input delayed by vx_stft_latency() = frame - hop
 *    samples (to float rounding): the synthesis window is the analysis
 *    window divided by the overlap-added squared window, so any window/hop
 *    pair whose squared windows cover every sample reconstructs exactly.
 *  - vx_stft_process() wraps both for arbitrary block sizes and removes the
 *    latency: total output length equals total input length, aligned sample
 *    for sample, once vx_stft_flush() has run.
 */
#ifndef VX_STFT_H
#define VX_STFT_H
#include <stdbool.h>
#include <stddef.h>
#include "../util/err.h"

/* Layout-compatible with FFmpeg's AVComplexFloat. */
typedef struct vx_complex {
    float re, im;
} vx_complex;

typedef enum vx_stft_window {
    VX_STFT_WINDOW_SQRT_HANN = 0, /* periodic sqrt-Hann (sine); the usual choice with hop = frame/2 or frame/4 */
    VX_STFT_WINDOW_HANN,          /* periodic Hann; needs hop < frame for synthesis */
    VX_STFT_WINDOW_HAMMING,       /* periodic Hamming */
    VX_STFT_WINDOW_RECT,          /* no window (boxcar) */
} vx_stft_window;

typedef struct vx_stft_config {
    int frame;               /* FFT size in samples: even, 16..65536 */
    int hop;                 /* 1..frame */
    vx_stft_window window;   /* used for analysis and (when enabled) synthesis */
    bool synthesis;          /* false: analysis only (no inverse FFT allocated) */
} vx_stft_config;

typedef struct vx_stft vx_stft;

/* Called by vx_stft_process once per hop with the frame's spectrum, which the
 * callback may modify in place (it is then synthesised). `index` counts
 * frames from 0. Returns 0, or -1 to stop processing with *err filled. */
typedef int (*vx_stft_frame_fn)(void *user, vx_complex *spec, int bins, long index, vx_err *err);

/* New transform; NULL on failure with err filled (422 "invalid_stft" for a
 * bad config, including synthesis with a window/hop pair that leaves some
 * sample uncovered, e.g. Hann with hop = frame; 500 "out_of_memory").
 * Caller frees with vx_stft_free. */
vx_stft *vx_stft_new(const vx_stft_config *cfg, vx_err *err);
void vx_stft_free(vx_stft *s);
/* Back to the state right after vx_stft_new (all history zero). */
void vx_stft_reset(vx_stft *s);

int vx_stft_frame(const vx_stft *s);
int vx_stft_hop(const vx_stft *s);
int vx_stft_bins(const vx_stft *s);      /* frame/2 + 1 */
int vx_stft_latency(const vx_stft *s);   /* frame - hop */
/* The analysis window (frame values), e.g. for power normalisation. */
const float *vx_stft_window_values(const vx_stft *s);

/* Hop-level analysis: `in` holds exactly hop new samples; `spec` receives
 * bins values. Never fails. */
void vx_stft_analyze(vx_stft *s, const float *in, vx_complex *spec);
/* Hop-level synthesis (config must have synthesis = true): `spec` holds bins
 * values and is left unchanged; `out` receives exactly hop samples. */
void vx_stft_synthesize(vx_stft *s, const vx_complex *spec, float *out);

/* Block-level streaming: feeds n samples (any n), calls fn once per complete
 * hop, and when synthesis is on writes the finished, latency-compensated
 * samples to `out` (room for n + frame floats) and returns how many (>= 0);
 * without synthesis `out` may be NULL and 0 is returned. -1 if fn failed. */
long vx_stft_process(vx_stft *s, const float *in, size_t n, vx_stft_frame_fn fn, void *user, float *out,
                     vx_err *err);
/* End of input: pushes zeros through so that every input sample has been
 * analysed in full overlap and (with synthesis) written. Writes at most
 * frame + hop samples to `out` and returns how many, -1 if fn failed. The
 * object must be reset before it is fed again. */
long vx_stft_flush(vx_stft *s, vx_stft_frame_fn fn, void *user, float *out, vx_err *err);

#endif
