/* vad.c - the voice activity detector behind vad.h. Per 10 ms frame: a
 * Hann-windowed spectrum (vx_stft), a minima-controlled recursive-averaging
 * noise tracker (MCRA, Cohen & Berdugo 2002), Sohn's statistical likelihood
 * ratio with decision-directed a-priori SNR, a voicing score from the
 * autocorrelation of the noise-reduced spectrum, long-term features over a
 * centred 110 ms window (modulation, LTSV, mean voicing and llr, and the
 * latter two over their own 3 s minimum), and a logistic combination of
 * them; a two-state HMM smoothed over a fixed lag turns frame posteriors
 * into probabilities with hangover. State is bounded: a few spectra and
 * feature windows per stream. Any thread; one object belongs to one thread
 * at a time. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <libavutil/mem.h>
#include <libavutil/tx.h>
#include "stft.h"
#include "vad.h"

/* ---- tuning ---------------------------------------------------------------
 * Noise tracker (MCRA): smoothing of the periodogram, minimum-search window,
 * speech-presence threshold on S/Smin, presence and noise smoothing. */
#define MCRA_ALPHA_S 0.8
#define MCRA_WINDOW_FRAMES 80         /* minimum over 0.8-1.6 s */
#define MCRA_DELTA 5.0
#define MCRA_ALPHA_P 0.2
#define MCRA_ALPHA_D 0.95
#define MCRA_MIN_BIAS 2.0             /* noise never above this multiple of the running minimum */
/* Decision-directed a-priori SNR (Ephraim-Malah). */
#define DD_ALPHA 0.98
#define XI_MIN 0.003                  /* -25 dB */
#define POWER_FLOOR 1e-12             /* -120 dBFS: digital silence */
/* Temporal smoothing: HMM switch probabilities per frame and the fixed lag.
 * Speech is sticky (a talker pauses briefly), onsets are easy to enter. */
#define HMM_SPEECH_TO_NOISE 0.01
#define HMM_NOISE_TO_SPEECH 0.1
#define SMOOTH_LAG 8                  /* frames of look-ahead (80 ms) */
/* Long-term features over a centred window of 2 * LT_HALF + 1 frames (110
 * ms): the posterior of frame t waits for frame t + LT_HALF. */
#define LT_HALF 5
#define LT_RING (2 * LT_HALF + 1)
#define LTSV_BANDS 24
#define LLR_CAP 6.0                   /* a frame's llr counts at most this much */
/* Adaptive floors of voicing_lt and llr_lt: their minimum over FLOOR_SUBS
 * sub-windows of FLOOR_SUB frames (3 s). Babble is voiced all the time;
 * what marks the target talker is voicing above that floor. */
#define FLOOR_SUBS 10
#define FLOOR_SUB 30

/* Logistic combination of the frame features (fitted by bench/vad_fit.py on
 * a corpus made with another seed than the one the accuracy is measured on). */
/* The fit weighs speech and non-speech frames equally; speech is most of
 * what callers feed, and missing it costs more than a pause kept, so the
 * operating point is moved by this much log-odds (chosen on the fitting
 * corpus with bench/segment_accuracy.py: frame accuracy at 0 dB SNR 83.4 ->
 * 88.6 %, noise-only false alarms 10.5 -> 15.9 %). */
#define PRIOR_SHIFT 0.5
static const double W_BIAS = -0.431, W_LLR = 0.370, W_VOICING = 0.101, W_SNR = -0.063, W_FLAT = 2.054,
                    W_MOD = 0.043, W_LTSV = 0.849, W_VOICING_LT = -1.829, W_LLR_LT = -0.187, W_VOICING_REL = 12.858,
                    W_LLR_REL = -0.043;

typedef struct pending {
    vx_vad_frame frame;
    double fwd_s;                     /* forward probability of speech */
    double like;                      /* emission likelihood ratio speech/noise */
} pending;

struct vx_vad {
    int rate, hop, frame, bins, lead, pad;
    vx_stft *stft;
    vx_complex *spec;
    float *hopbuf;
    int fill;
    int64_t analysed;                 /* stft analyses done */
    int64_t samples_in;               /* input samples (without padding) */
    int64_t frames_out;               /* frames handed to the smoother */
    bool flushed;
    double pnorm;                     /* |X|^2 -> power per bin */
    /* band limits (bin indices, inclusive lo, exclusive hi) */
    int llr_lo, llr_hi, snr_lo, snr_hi, voi_lo, voi_hi, flat_lo, flat_hi, lag_lo, lag_hi;
    /* per-bin state */
    double *pw, *psm, *s, *smin, *stmp, *noise, *presence, *prev_clean;
    int mcra_count;
    bool started;
    /* voicing */
    AVTXContext *inv;
    av_tx_fn inv_fn;
    AVComplexFloat *acf_in;
    float *acf_out;
    double *win_acf;                  /* normalised autocorrelation of the window */
    /* frames waiting for their long-term window, by index % LT_RING */
    struct lt_entry {
        vx_vad_frame f;
        double level;                 /* 300-3400 Hz band level, dB */
        double band[LTSV_BANDS];      /* LTSV band powers */
    } lt[LT_RING];
    int band_edge[LTSV_BANDS + 1];    /* bins of the LTSV bands (100 Hz-4 kHz, log-spaced) */
    double floor_v[FLOOR_SUBS], floor_l[FLOOR_SUBS]; /* sub-window minima */
    int64_t floor_n;                  /* frames seen by the floors */
    /* smoother */
    pending ring[SMOOTH_LAG + 1];
    int64_t ring_count;               /* frames pushed into the ring */
};

static int pow2_at_least(int n) {
    int p = 16;
    while (p < n) p *= 2;
    return p;
}

static int bin_of(const vx_vad *v, double hz) {
    int k = (int)lround(hz * v->frame / v->rate);
    if (k < 1) k = 1;
    if (k > v->bins - 1) k = v->bins - 1;
    return k;
}

/* The window's own circular autocorrelation, to undo its taper on the
 * signal's (Boersma 1993). */
static int window_acf(vx_vad *v) {
    const float *w = vx_stft_window_values(v->stft);
    v->win_acf = calloc((size_t)v->frame, sizeof *v->win_acf);
    if (!v->win_acf) return -1;
    double r0 = 0;
    for (int i = 0; i < v->frame; i++) r0 += (double)w[i] * w[i];
    for (int lag = 0; lag < v->frame; lag++) {
        double r = 0;
        for (int i = 0; i < v->frame; i++) r += (double)w[i] * w[(i + lag) % v->frame];
        v->win_acf[lag] = r / r0;
    }
    return 0;
}

vx_vad *vx_vad_new(int sample_rate, vx_err *err) {
    if (sample_rate < VX_VAD_MIN_RATE || sample_rate > VX_VAD_MAX_RATE) {
        vx_err_set(err, VX_E_UNPROCESSABLE, "invalid_sample_rate", "voice activity detection needs %d to %d Hz, not %d",
                   VX_VAD_MIN_RATE, VX_VAD_MAX_RATE, sample_rate);
        return NULL;
    }
    vx_vad *v = calloc(1, sizeof *v);
    if (!v) goto oom;
    v->rate = sample_rate;
    v->hop = (int)lround(sample_rate / 100.0);
    v->frame = pow2_at_least((int)ceil(sample_rate * 0.025));
    v->bins = v->frame / 2 + 1;
    /* Frame t is centred on its hop [t*hop, (t+1)*hop): the first `lead`
     * analyses fall before time 0 and `pad` zeros shift the grid. */
    v->lead = (v->frame / 2 + v->hop / 2 + v->hop - 1) / v->hop;
    v->pad = v->lead * v->hop - v->frame / 2 - v->hop / 2;
    vx_stft_config cfg = {.frame = v->frame, .hop = v->hop, .window = VX_STFT_WINDOW_HANN, .synthesis = false};
    v->stft = vx_stft_new(&cfg, err);
    if (!v->stft) goto fail;
    const float *w = vx_stft_window_values(v->stft);
    double wsum2 = 0;
    for (int i = 0; i < v->frame; i++) wsum2 += (double)w[i] * w[i];
    v->pnorm = 2.0 / ((double)v->frame * wsum2);
    size_t nb = (size_t)v->bins;
    v->spec = malloc(nb * sizeof *v->spec);
    v->hopbuf = calloc((size_t)v->hop, sizeof *v->hopbuf);
    v->pw = calloc(nb, sizeof(double));
    v->psm = calloc(nb, sizeof(double));
    v->s = calloc(nb, sizeof(double));
    v->smin = calloc(nb, sizeof(double));
    v->stmp = calloc(nb, sizeof(double));
    v->noise = calloc(nb, sizeof(double));
    v->presence = calloc(nb, sizeof(double));
    v->prev_clean = calloc(nb, sizeof(double));
    v->acf_in = av_malloc((nb + 1) * sizeof *v->acf_in);
    v->acf_out = av_malloc((size_t)v->frame * sizeof *v->acf_out + 64);
    if (!v->spec || !v->hopbuf || !v->pw || !v->psm || !v->s || !v->smin || !v->stmp || !v->noise || !v->presence ||
        !v->prev_clean || !v->acf_in || !v->acf_out)
        goto oom;
    float scale = 1.0f;
    if (av_tx_init(&v->inv, &v->inv_fn, AV_TX_FLOAT_RDFT, 1, v->frame, &scale, 0) < 0) goto oom;
    if (window_acf(v) != 0) goto oom;
    double nyq = sample_rate / 2.0;
    v->llr_lo = bin_of(v, 100);
    v->llr_hi = bin_of(v, fmin(6000, 0.94 * nyq)) + 1;
    v->snr_lo = bin_of(v, 300);
    v->snr_hi = bin_of(v, fmin(3400, 0.94 * nyq)) + 1;
    v->voi_lo = bin_of(v, 60);
    v->voi_hi = bin_of(v, fmin(3000, 0.94 * nyq)) + 1;
    v->flat_lo = bin_of(v, 100);
    v->flat_hi = bin_of(v, 0.9 * nyq) + 1;
    v->lag_lo = (int)floor(sample_rate / 400.0);
    v->lag_hi = (int)ceil(sample_rate / 70.0);
    if (v->lag_hi > v->frame / 2) v->lag_hi = v->frame / 2;
    for (int b = 0; b <= LTSV_BANDS; b++) {
        double hz = 100.0 * pow(fmin(4000.0, 0.94 * nyq) / 100.0, (double)b / LTSV_BANDS);
        v->band_edge[b] = bin_of(v, hz);
        if (b > 0 && v->band_edge[b] <= v->band_edge[b - 1]) v->band_edge[b] = v->band_edge[b - 1] + 1;
    }
    if (v->band_edge[LTSV_BANDS] > v->bins) {
        vx_err_set(err, VX_E_UNPROCESSABLE, "invalid_sample_rate", "sample rate too low for voice activity detection");
        goto fail;
    }
    v->fill = v->pad;
    return v;
oom:
    vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory setting up voice activity detection");
fail:
    vx_vad_free(v);
    return NULL;
}

void vx_vad_free(vx_vad *v) {
    if (!v) return;
    vx_stft_free(v->stft);
    av_tx_uninit(&v->inv);
    av_free(v->acf_in);
    av_free(v->acf_out);
    free(v->win_acf);
    free(v->spec);
    free(v->hopbuf);
    free(v->pw);
    free(v->psm);
    free(v->s);
    free(v->smin);
    free(v->stmp);
    free(v->noise);
    free(v->presence);
    free(v->prev_clean);
    free(v);
}

int vx_vad_hop(const vx_vad *v) { return v->hop; }
int vx_vad_rate(const vx_vad *v) { return v->rate; }
int vx_vad_latency(const vx_vad *v) { return v->frame / 2 + (LT_HALF + SMOOTH_LAG) * v->hop; }

static double db(double p) { return 10.0 * log10(p > POWER_FLOOR ? p : POWER_FLOOR); }

/* MCRA: minima-controlled recursive averaging of the noise power per bin. */
static void track_noise(vx_vad *v) {
    int nb = v->bins;
    for (int k = 0; k < nb; k++) {
        double l = v->pw[k > 0 ? k - 1 : k], r = v->pw[k < nb - 1 ? k + 1 : k];
        v->psm[k] = 0.25 * l + 0.5 * v->pw[k] + 0.25 * r;
    }
    if (!v->started) {
        for (int k = 0; k < nb; k++) {
            double p = fmax(v->psm[k], POWER_FLOOR / nb);
            v->s[k] = v->smin[k] = v->stmp[k] = v->noise[k] = p;
        }
        v->started = true;
        return;
    }
    bool roll = ++v->mcra_count >= MCRA_WINDOW_FRAMES;
    if (roll) v->mcra_count = 0;
    for (int k = 0; k < nb; k++) {
        v->s[k] = MCRA_ALPHA_S * v->s[k] + (1 - MCRA_ALPHA_S) * v->psm[k];
        if (roll) {
            v->smin[k] = fmin(v->stmp[k], v->s[k]);
            v->stmp[k] = v->s[k];
        } else {
            v->smin[k] = fmin(v->smin[k], v->s[k]);
            v->stmp[k] = fmin(v->stmp[k], v->s[k]);
        }
        double present = v->s[k] > MCRA_DELTA * v->smin[k] ? 1.0 : 0.0;
        v->presence[k] = MCRA_ALPHA_P * v->presence[k] + (1 - MCRA_ALPHA_P) * present;
        double ad = MCRA_ALPHA_D + (1 - MCRA_ALPHA_D) * v->presence[k];
        double n = ad * v->noise[k] + (1 - ad) * v->pw[k];
        n = fmin(n, MCRA_MIN_BIAS * v->smin[k]);
        v->noise[k] = fmax(n, POWER_FLOOR / nb);
    }
}

/* Peak of the autocorrelation of the noise-reduced spectrum within the
 * pitch lags, corrected for the window's taper, as a share of the band's
 * power: the periodic part of the frame that stands above the noise. */
static double voicing(vx_vad *v) {
    double e = 0, band = 0;
    for (int k = 0; k < v->bins; k++) {
        double c = 0;
        if (k >= v->voi_lo && k < v->voi_hi) {
            c = fmax(v->pw[k] - 2.0 * v->noise[k], 0.0);
            band += v->pw[k];
        }
        v->acf_in[k].re = (float)c;
        v->acf_in[k].im = 0.0f;
        e += c;
    }
    if (e <= POWER_FLOOR) return 0.0;
    v->inv_fn(v->inv, v->acf_out, v->acf_in, sizeof(AVComplexFloat));
    /* Relative to the whole band's power, not the residual's: a few stray
     * residual bins are perfectly "periodic" but carry no energy. */
    double r0 = v->acf_out[0] * band / e;
    if (r0 <= 0) return 0.0;
    double best = 0;
    for (int lag = v->lag_lo; lag <= v->lag_hi; lag++) {
        double wr = v->win_acf[lag];
        if (wr < 0.05) break;
        double r = v->acf_out[lag] / r0 / wr;
        if (r > best) best = r;
    }
    return best > 1.0 ? 1.0 : best;
}

/* Long-term features of frame c over frames [c - LT_HALF, c + LT_HALF]
 * (clipped to [0, newest]): the mean voicing and llr (a talker keeps
 * voicing through a syllable; noise flickers). Modulation: the spread of the
 * speech band's level (a talker's syllables and pauses swing it by 10 dB or
 * more; steady noise and many-talker babble much less). LTSV: per band, the
 * entropy of its power's distribution over time (low where a band comes and
 * goes), then the variance of that entropy across bands: speech's moving
 * formants make bands differ. Then the frame posterior. */
static void long_term(vx_vad *v, int64_t c, int64_t newest, vx_vad_frame *f) {
    int64_t a = c - LT_HALF > 0 ? c - LT_HALF : 0, b = c + LT_HALF < newest ? c + LT_HALF : newest;
    double n = (double)(b - a + 1), m = 0, m2 = 0, vm = 0, lm = 0;
    for (int64_t i = a; i <= b; i++) {
        const struct lt_entry *e = &v->lt[i % LT_RING];
        m += e->level;
        m2 += e->level * e->level;
        vm += e->f.voicing;
        lm += fmin(e->f.llr, LLR_CAP);
    }
    m /= n;
    f->modulation = sqrt(fmax(m2 / n - m * m, 0.0));
    f->voicing_lt = vm / n;
    f->llr_lt = lm / n;
    double hs = 0, hs2 = 0;
    for (int k = 0; k < LTSV_BANDS; k++) {
        double sum = 0, h = 0;
        for (int64_t i = a; i <= b; i++) sum += v->lt[i % LT_RING].band[k];
        for (int64_t i = a; i <= b; i++) {
            double q = v->lt[i % LT_RING].band[k] / sum;
            h -= q * log(q);
        }
        hs += h;
        hs2 += h * h;
    }
    hs /= LTSV_BANDS;
    f->ltsv = fmax(hs2 / LTSV_BANDS - hs * hs, 0.0);
    int sub = (int)((v->floor_n / FLOOR_SUB) % FLOOR_SUBS);
    if (v->floor_n % FLOOR_SUB == 0) {
        v->floor_v[sub] = f->voicing_lt;
        v->floor_l[sub] = f->llr_lt;
    } else {
        v->floor_v[sub] = fmin(v->floor_v[sub], f->voicing_lt);
        v->floor_l[sub] = fmin(v->floor_l[sub], f->llr_lt);
    }
    int subs = v->floor_n / FLOOR_SUB + 1 < FLOOR_SUBS ? (int)(v->floor_n / FLOOR_SUB) + 1 : FLOOR_SUBS;
    v->floor_n++;
    double fv = f->voicing_lt, fl = f->llr_lt;
    for (int i = 0; i < subs; i++) {
        fv = fmin(fv, v->floor_v[i]);
        fl = fmin(fl, v->floor_l[i]);
    }
    f->voicing_rel = f->voicing_lt - fv;
    f->llr_rel = f->llr_lt - fl;
    double z = W_BIAS + PRIOR_SHIFT + W_LLR * fmin(f->llr, LLR_CAP) + W_VOICING * f->voicing +
               W_SNR * fmax(fmin(f->snr_db, 30.0), -10.0) + W_FLAT * f->flatness + W_MOD * fmin(f->modulation, 20.0) +
               W_LTSV * log(f->ltsv + 1e-4) + W_VOICING_LT * f->voicing_lt + W_LLR_LT * f->llr_lt +
               W_VOICING_REL * f->voicing_rel + W_LLR_REL * f->llr_rel;
    f->raw = 1.0 / (1.0 + exp(-z));
}

/* The frame's own features from the current spectrum, kept in the
 * long-term ring (the posterior comes with its window, long_term()). */
static void analyse(vx_vad *v, vx_vad_frame *f) {
    double total = 0;
    for (int k = 0; k < v->bins; k++) {
        double p = ((double)v->spec[k].re * v->spec[k].re + (double)v->spec[k].im * v->spec[k].im) * v->pnorm;
        v->pw[k] = p;
        total += p;
    }
    track_noise(v);
    double ntot = 0, sp = 0, sn = 0, llr = 0, lsum = 0, asum = 0;
    for (int k = 0; k < v->bins; k++) ntot += v->noise[k];
    for (int k = 0; k < v->bins; k++) {
        double gamma = fmin(v->pw[k] / v->noise[k], 1e4);
        double xi = DD_ALPHA * v->prev_clean[k] + (1 - DD_ALPHA) * fmax(gamma - 1.0, 0.0);
        if (xi < XI_MIN) xi = XI_MIN;
        double g = xi / (1.0 + xi);
        v->prev_clean[k] = g * g * gamma;
        if (k >= v->llr_lo && k < v->llr_hi) llr += gamma * g - log1p(xi);
        if (k >= v->snr_lo && k < v->snr_hi) {
            sp += v->pw[k];
            sn += v->noise[k];
        }
        if (k >= v->flat_lo && k < v->flat_hi) {
            double p = v->pw[k] + POWER_FLOOR / v->bins;
            lsum += log(p);
            asum += p;
        }
    }
    int nflat = v->flat_hi - v->flat_lo;
    f->power_db = db(total);
    f->noise_db = db(ntot);
    f->snr_db = 10.0 * log10((sp + POWER_FLOOR) / (sn + POWER_FLOOR));
    f->flatness = total > POWER_FLOOR && nflat > 0 ? exp(lsum / nflat) / (asum / nflat) : 0.0;
    f->llr = llr / (v->llr_hi - v->llr_lo);
    f->voicing = voicing(v);
    struct lt_entry *e = &v->lt[f->index % LT_RING];
    e->f = *f;
    e->level = db(sp);
    for (int b = 0; b < LTSV_BANDS; b++) {
        double p = 0;
        for (int k = v->band_edge[b]; k < v->band_edge[b + 1]; k++) p += v->pw[k];
        e->band[b] = p + POWER_FLOOR;
    }
}

static int smooth_push(vx_vad *v, const vx_vad_frame *f, vx_vad_frame_fn fn, void *user, vx_err *err);

/* Frame c's window is complete up to `newest`: posterior, then smoothing. */
static int finish_frame(vx_vad *v, int64_t c, int64_t newest, vx_vad_frame_fn fn, void *user, vx_err *err) {
    vx_vad_frame f = v->lt[c % LT_RING].f;
    long_term(v, c, newest, &f);
    return smooth_push(v, &f, fn, user, err);
}

/* ---- temporal smoothing: two-state HMM, forward filter + fixed-lag backward pass ---- */
static pending *slot(vx_vad *v, int64_t i) { return &v->ring[i % (SMOOTH_LAG + 1)]; }

/* Smoothed probability of the oldest frame in the ring given all frames in it. */
static double smoothed(vx_vad *v, int64_t t, int64_t last) {
    double bs = 1.0, bn = 1.0;
    for (int64_t j = last; j > t; j--) {
        double l = slot(v, j)->like;
        double ns = (1 - HMM_SPEECH_TO_NOISE) * l * bs + HMM_SPEECH_TO_NOISE * bn;
        double nn = HMM_NOISE_TO_SPEECH * l * bs + (1 - HMM_NOISE_TO_SPEECH) * bn;
        double sum = ns + nn;
        bs = ns / sum;
        bn = nn / sum;
    }
    double fs = slot(v, t)->fwd_s;
    double ps = fs * bs, pn = (1 - fs) * bn;
    return ps / (ps + pn);
}

static int emit(vx_vad *v, int64_t t, int64_t last, vx_vad_frame_fn fn, void *user, vx_err *err) {
    vx_vad_frame f = slot(v, t)->frame;
    f.probability = smoothed(v, t, last);
    return fn(user, &f, err);
}

static int smooth_push(vx_vad *v, const vx_vad_frame *f, vx_vad_frame_fn fn, void *user, vx_err *err) {
    int64_t t = v->ring_count++;
    pending *p = slot(v, t);
    p->frame = *f;
    double q = fmin(fmax(f->raw, 1e-4), 1 - 1e-4);
    p->like = q / (1 - q);
    double prev = t > 0 ? slot(v, t - 1)->fwd_s : HMM_NOISE_TO_SPEECH / (HMM_NOISE_TO_SPEECH + HMM_SPEECH_TO_NOISE);
    double ps = p->like * (prev * (1 - HMM_SPEECH_TO_NOISE) + (1 - prev) * HMM_NOISE_TO_SPEECH);
    double pn = prev * HMM_SPEECH_TO_NOISE + (1 - prev) * (1 - HMM_NOISE_TO_SPEECH);
    p->fwd_s = ps / (ps + pn);
    if (t >= SMOOTH_LAG) return emit(v, t - SMOOTH_LAG, t, fn, user, err);
    return 0;
}

static int analyse_hop(vx_vad *v, vx_vad_frame_fn fn, void *user, vx_err *err) {
    vx_stft_analyze(v->stft, v->hopbuf, v->spec);
    /* A real signal's Nyquist bin is real; libavutil 57's RDFT leaves its
     * imaginary slot unwritten, so it is not trusted. */
    v->spec[v->bins - 1].im = 0.0f;
    v->fill = 0;
    int64_t t = v->analysed++ - v->lead + 1;
    if (t < 0) return 0;
    vx_vad_frame f = {.index = t};
    analyse(v, &f);
    v->frames_out++;
    return t >= LT_HALF ? finish_frame(v, t - LT_HALF, t, fn, user, err) : 0;
}

int vx_vad_process(vx_vad *v, const float *pcm, size_t n, vx_vad_frame_fn fn, void *user, vx_err *err) {
    size_t i = 0;
    while (i < n) {
        size_t take = (size_t)(v->hop - v->fill);
        if (take > n - i) take = n - i;
        memcpy(v->hopbuf + v->fill, pcm + i, take * sizeof *pcm);
        v->fill += (int)take;
        i += take;
        v->samples_in += (int64_t)take;
        if (v->fill == v->hop && analyse_hop(v, fn, user, err) != 0) return -1;
    }
    return 0;
}

int vx_vad_flush(vx_vad *v, vx_vad_frame_fn fn, void *user, vx_err *err) {
    if (v->flushed) return 0;
    v->flushed = true;
    int64_t total = (v->samples_in + v->hop - 1) / v->hop;
    while (v->frames_out < total) {
        memset(v->hopbuf + v->fill, 0, (size_t)(v->hop - v->fill) * sizeof *v->hopbuf);
        v->fill = v->hop;
        if (analyse_hop(v, fn, user, err) != 0) return -1;
    }
    for (int64_t c = total > LT_HALF ? total - LT_HALF : 0; c < total; c++)
        if (finish_frame(v, c, total - 1, fn, user, err) != 0) return -1;
    int64_t last = v->ring_count - 1;
    for (int64_t t = v->ring_count > SMOOTH_LAG ? v->ring_count - SMOOTH_LAG : 0; t <= last; t++)
        if (emit(v, t, last, fn, user, err) != 0) return -1;
    return 0;
}

/* ---- segments from probabilities (rules in vad.h) ---- */
struct vx_vad_segmenter {
    vx_vad_segment_config cfg;
    int64_t t;                         /* frames pushed */
    bool active;                       /* inside a speech run (maybe in a short gap) */
    int64_t start, last;               /* run's first and latest speech frame */
    double sum_run, sum_to_last;       /* probability sums from start to now / to `last` */
    bool has_pending;                  /* a kept, padded segment that may still merge */
    double pend_start, pend_end, pend_sum;
    int64_t pend_n;
};

/* Tolerance for comparing durations made of whole frames with milliseconds. */
#define SEG_EPS 1e-9

vx_vad_segmenter *vx_vad_segmenter_new(const vx_vad_segment_config *cfg, vx_err *err) {
    if (!cfg || !(cfg->threshold >= 0 && cfg->threshold <= 1) || cfg->min_speech_ms < 0 || cfg->min_silence_ms < 0 ||
        cfg->pad_ms < 0 || !(cfg->frame_s > 0)) {
        vx_err_set(err, VX_E_UNPROCESSABLE, "invalid_param", "segment settings out of range");
        return NULL;
    }
    vx_vad_segmenter *s = calloc(1, sizeof *s);
    if (!s) {
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    return s;
}

void vx_vad_segmenter_free(vx_vad_segmenter *s) { free(s); }

static int emit_pending(vx_vad_segmenter *s, double end_limit, vx_vad_segment_fn fn, void *user, vx_err *err) {
    if (!s->has_pending) return 0;
    s->has_pending = false;
    vx_vad_segment seg = {.start_s = s->pend_start, .end_s = fmin(s->pend_end, end_limit),
                          .confidence = s->pend_n ? s->pend_sum / (double)s->pend_n : 0};
    return fn(user, &seg, err);
}

/* The run [start, last] ended: keep it if long enough, pad, merge or queue. */
static int close_run(vx_vad_segmenter *s, vx_vad_segment_fn fn, void *user, vx_err *err) {
    s->active = false;
    double fs = s->cfg.frame_s, pad = s->cfg.pad_ms / 1000.0;
    int64_t n = s->last - s->start + 1;
    if ((double)n * fs + SEG_EPS < s->cfg.min_speech_ms / 1000.0) return 0;
    double a = fmax(0.0, (double)s->start * fs - pad), b = (double)(s->last + 1) * fs + pad;
    if (s->has_pending && a <= s->pend_end + SEG_EPS) {
        s->pend_end = fmax(s->pend_end, b);
        s->pend_sum += s->sum_to_last;
        s->pend_n += n;
        return 0;
    }
    if (emit_pending(s, INFINITY, fn, user, err) != 0) return -1;
    s->has_pending = true;
    s->pend_start = a;
    s->pend_end = b;
    s->pend_sum = s->sum_to_last;
    s->pend_n = n;
    return 0;
}

int vx_vad_segmenter_push(vx_vad_segmenter *s, double probability, vx_vad_segment_fn fn, void *user, vx_err *err) {
    int64_t t = s->t++;
    double fs = s->cfg.frame_s;
    if (probability >= s->cfg.threshold) {
        if (!s->active) {
            s->active = true;
            s->start = t;
            s->sum_run = 0;
        }
        s->last = t;
        s->sum_run += probability;
        s->sum_to_last = s->sum_run;
    } else if (s->active) {
        s->sum_run += probability;
        if ((double)(t - s->last) * fs + SEG_EPS >= s->cfg.min_silence_ms / 1000.0 &&
            close_run(s, fn, user, err) != 0)
            return -1;
    }
    /* Nothing that starts from here on can reach back to the queued segment. */
    int64_t earliest = s->active ? s->start : s->t;
    if (s->has_pending && (double)earliest * fs - s->cfg.pad_ms / 1000.0 > s->pend_end + SEG_EPS)
        return emit_pending(s, INFINITY, fn, user, err);
    return 0;
}

int vx_vad_segmenter_finish(vx_vad_segmenter *s, double duration_s, vx_vad_segment_fn fn, void *user, vx_err *err) {
    if (s->active && close_run(s, fn, user, err) != 0) return -1;
    return emit_pending(s, duration_s, fn, user, err);
}
