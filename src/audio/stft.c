/* stft.c - streaming STFT analysis / weighted overlap-add synthesis over
 * libavutil's real FFT (av_tx AV_TX_FLOAT_RDFT). State is a handful of
 * frame-sized buffers, so memory does not grow with the input. Any thread;
 * one object belongs to one thread at a time. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <libavutil/mem.h>
#include <libavutil/tx.h>
#include "stft.h"

_Static_assert(sizeof(vx_complex) == sizeof(AVComplexFloat), "vx_complex must match AVComplexFloat");

struct vx_stft {
    vx_stft_config cfg;
    int bins;
    AVTXContext *fwd, *inv;
    av_tx_fn fwd_fn, inv_fn;
    float *window;       /* analysis window */
    float *synwin;       /* synthesis window: window / overlap-added window^2 */
    float *frame_in;     /* last `frame` input samples */
    float *ola;          /* overlap-add accumulator */
    float *fft_real;     /* FFT scratch (av_malloc'd: SIMD alignment) */
    vx_complex *fft_spec;
    vx_complex *spec;    /* spectrum handed to the process() callback */
    float *hop_in;       /* process(): input gathered towards one hop */
    float *hop_out;      /* process(): one synthesised hop */
    int hop_fill;
    long frames;         /* frames analysed since reset */
    long long total_in;  /* samples fed through process() since reset */
    long long total_out; /* latency-compensated samples returned */
    long long skip;      /* leading synthesised samples still to drop (latency) */
};

static int fail(vx_err *err, const char *msg) {
    return vx_err_set(err, VX_E_UNPROCESSABLE, "invalid_stft", "%s", msg);
}

static void make_window(float *w, int n, vx_stft_window kind) {
    for (int i = 0; i < n; i++) {
        double hann = 0.5 - 0.5 * cos(2.0 * M_PI * i / n); /* periodic: sums flat under overlap */
        switch (kind) {
        case VX_STFT_WINDOW_SQRT_HANN: w[i] = (float)sqrt(hann); break;
        case VX_STFT_WINDOW_HANN: w[i] = (float)hann; break;
        case VX_STFT_WINDOW_HAMMING: w[i] = (float)(0.54 - 0.46 * cos(2.0 * M_PI * i / n)); break;
        case VX_STFT_WINDOW_RECT: w[i] = 1.0f; break;
        }
    }
}

/* ws = wa / sum_k wa^2(n + k*hop): exact reconstruction of an unmodified
 * spectrum for any window whose shifted squares cover every sample. */
static int make_synthesis_window(vx_stft *s, vx_err *err) {
    int n = s->cfg.frame, hop = s->cfg.hop;
    double peak = 0;
    for (int i = 0; i < n; i++) peak = fmax(peak, (double)s->window[i] * s->window[i]);
    for (int i = 0; i < n; i++) {
        double sum = 0;
        for (int j = i % hop; j < n; j += hop) sum += (double)s->window[j] * s->window[j];
        if (sum < 1e-6 * peak) return fail(err, "this window and hop leave samples uncovered: synthesis is impossible");
        s->synwin[i] = (float)(s->window[i] / sum);
    }
    return 0;
}

vx_stft *vx_stft_new(const vx_stft_config *cfg, vx_err *err) {
    vx_stft *s = NULL;
    if (!cfg || cfg->frame < 16 || cfg->frame > 65536 || cfg->frame % 2 != 0) {
        fail(err, "stft frame must be an even number of samples between 16 and 65536");
        return NULL;
    }
    if (cfg->hop < 1 || cfg->hop > cfg->frame) {
        fail(err, "stft hop must be between 1 and the frame size");
        return NULL;
    }
    if (cfg->window < VX_STFT_WINDOW_SQRT_HANN || cfg->window > VX_STFT_WINDOW_RECT) {
        fail(err, "unknown stft window");
        return NULL;
    }
    s = calloc(1, sizeof *s);
    if (!s) goto oom;
    s->cfg = *cfg;
    s->bins = cfg->frame / 2 + 1;
    size_t n = (size_t)cfg->frame, hop = (size_t)cfg->hop, bins = (size_t)s->bins;
    s->window = malloc(n * sizeof(float));
    s->frame_in = calloc(n, sizeof(float));
    s->hop_in = malloc(hop * sizeof(float));
    s->spec = malloc(bins * sizeof(vx_complex));
    s->fft_real = av_malloc(n * sizeof(float));
    s->fft_spec = av_malloc((bins + 1) * sizeof(vx_complex));
    if (!s->window || !s->frame_in || !s->hop_in || !s->spec || !s->fft_real || !s->fft_spec) goto oom;
    make_window(s->window, cfg->frame, cfg->window);
    float one = 1.0f;
    if (av_tx_init(&s->fwd, &s->fwd_fn, AV_TX_FLOAT_RDFT, 0, cfg->frame, &one, 0) < 0) goto oom;
    if (cfg->synthesis) {
        s->synwin = malloc(n * sizeof(float));
        s->ola = calloc(n, sizeof(float));
        s->hop_out = malloc(hop * sizeof(float));
        if (!s->synwin || !s->ola || !s->hop_out) goto oom;
        if (make_synthesis_window(s, err) != 0) goto fail;
        float scale = 1.0f / (float)cfg->frame;
        if (av_tx_init(&s->inv, &s->inv_fn, AV_TX_FLOAT_RDFT, 1, cfg->frame, &scale, 0) < 0) goto oom;
    }
    vx_stft_reset(s);
    return s;
oom:
    vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory setting up the FFT");
fail:
    vx_stft_free(s);
    return NULL;
}

void vx_stft_free(vx_stft *s) {
    if (!s) return;
    av_tx_uninit(&s->fwd);
    av_tx_uninit(&s->inv);
    free(s->window);
    free(s->synwin);
    free(s->frame_in);
    free(s->ola);
    free(s->hop_in);
    free(s->hop_out);
    free(s->spec);
    av_free(s->fft_real);
    av_free(s->fft_spec);
    free(s);
}

void vx_stft_reset(vx_stft *s) {
    memset(s->frame_in, 0, (size_t)s->cfg.frame * sizeof(float));
    if (s->ola) memset(s->ola, 0, (size_t)s->cfg.frame * sizeof(float));
    s->hop_fill = 0;
    s->frames = 0;
    s->total_in = s->total_out = 0;
    s->skip = s->cfg.frame - s->cfg.hop;
}

int vx_stft_frame(const vx_stft *s) { return s->cfg.frame; }
int vx_stft_hop(const vx_stft *s) { return s->cfg.hop; }
int vx_stft_bins(const vx_stft *s) { return s->bins; }
int vx_stft_latency(const vx_stft *s) { return s->cfg.frame - s->cfg.hop; }
const float *vx_stft_window_values(const vx_stft *s) { return s->window; }

void vx_stft_analyze(vx_stft *s, const float *in, vx_complex *spec) {
    int n = s->cfg.frame, hop = s->cfg.hop;
    memmove(s->frame_in, s->frame_in + hop, (size_t)(n - hop) * sizeof(float));
    memcpy(s->frame_in + (n - hop), in, (size_t)hop * sizeof(float));
    for (int i = 0; i < n; i++) s->fft_real[i] = s->frame_in[i] * s->window[i];
    s->fwd_fn(s->fwd, s->fft_spec, s->fft_real, sizeof(float));
    /* DC and Nyquist are real; av_tx may leave their imaginary slots
     * unwritten, so they are defined here. */
    s->fft_spec[0].im = 0;
    s->fft_spec[s->bins - 1].im = 0;
    memcpy(spec, s->fft_spec, (size_t)s->bins * sizeof(vx_complex));
    s->frames++;
}

void vx_stft_synthesize(vx_stft *s, const vx_complex *spec, float *out) {
    int n = s->cfg.frame, hop = s->cfg.hop;
    /* The inverse transform overwrites its input: work on a copy. */
    memcpy(s->fft_spec, spec, (size_t)s->bins * sizeof(vx_complex));
    s->inv_fn(s->inv, s->fft_real, s->fft_spec, sizeof(AVComplexFloat));
    for (int i = 0; i < n; i++) s->ola[i] += s->fft_real[i] * s->synwin[i];
    memcpy(out, s->ola, (size_t)hop * sizeof(float));
    memmove(s->ola, s->ola + hop, (size_t)(n - hop) * sizeof(float));
    memset(s->ola + (n - hop), 0, (size_t)hop * sizeof(float));
}

/* Runs one gathered hop through analysis, the callback and synthesis;
 * appends the latency-compensated output. Returns samples written or -1. */
static long run_hop(vx_stft *s, vx_stft_frame_fn fn, void *user, float *out, vx_err *err) {
    long index = s->frames;
    vx_stft_analyze(s, s->hop_in, s->spec);
    if (fn && fn(user, s->spec, s->bins, index, err) != 0) return -1;
    if (!s->cfg.synthesis) return 0;
    vx_stft_synthesize(s, s->spec, s->hop_out);
    long hop = s->cfg.hop, from = 0;
    if (s->skip > 0) {
        from = s->skip < hop ? (long)s->skip : hop;
        s->skip -= from;
    }
    long n = hop - from;
    if (n > 0) memcpy(out, s->hop_out + from, (size_t)n * sizeof(float));
    s->total_out += n;
    return n;
}

long vx_stft_process(vx_stft *s, const float *in, size_t n, vx_stft_frame_fn fn, void *user, float *out,
                     vx_err *err) {
    long written = 0;
    int hop = s->cfg.hop;
    s->total_in += (long long)n;
    while (n > 0) {
        size_t take = (size_t)(hop - s->hop_fill);
        if (take > n) take = n;
        memcpy(s->hop_in + s->hop_fill, in, take * sizeof(float));
        s->hop_fill += (int)take;
        in += take;
        n -= take;
        if (s->hop_fill == hop) {
            s->hop_fill = 0;
            long w = run_hop(s, fn, user, out ? out + written : NULL, err);
            if (w < 0) return -1;
            written += w;
        }
    }
    return written;
}

long vx_stft_flush(vx_stft *s, vx_stft_frame_fn fn, void *user, float *out, vx_err *err) {
    /* The last input sample is fully analysed (and synthesised) once it has
     * left the analysis buffer: total_in + latency samples pushed, rounded
     * up to whole hops. */
    long long need = s->total_in + vx_stft_latency(s);
    long long pushed = s->frames * (long long)s->cfg.hop + s->hop_fill;
    long written = 0;
    while (pushed < need || s->hop_fill != 0) {
        int room = s->cfg.hop - s->hop_fill;
        memset(s->hop_in + s->hop_fill, 0, (size_t)room * sizeof(float));
        pushed += room;
        s->hop_fill = 0;
        long w = run_hop(s, fn, user, out ? out + written : NULL, err);
        if (w < 0) return -1;
        written += w;
    }
    if (s->cfg.synthesis && s->total_out > s->total_in) {
        /* Padding made whole hops past the end: keep exactly total_in. */
        written -= (long)(s->total_out - s->total_in);
        s->total_out = s->total_in;
    }
    return written < 0 ? 0 : written;
}
