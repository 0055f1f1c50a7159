/* enhance_front.c - the time-domain front end of `enhance`, one per channel:
 * declipper (rebuilds flat clipped runs with a local cubic fit), DC blocker,
 * and a mains-hum canceller that first detects 50 vs 60 Hz and which
 * harmonics are really there (long-window FFT), then removes only those with
 * a closed-loop harmonic model kept in one period-long table. A fixed
 * lookahead (ring buffer) lets detection see a window before the samples it
 * governs are output. Bounded state; one object per channel and thread. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <libavutil/mem.h>
#include <libavutil/tx.h>
#include "enhance_int.h"

#define HUM_WINDOW_S 1.0    /* detection window (and the front end's lookahead) */
#define HUM_DETECT_EVERY_S 0.5
#define HUM_FMAX 4000.0     /* highest harmonic considered */
#define HUM_TABLE 512       /* samples of the one-period hum table; harmonics < HUM_TABLE/2 */
#define HUM_TAU_S 0.3       /* amplitude tracking time constant (sets notch width ~1/(pi tau)) */
#define HUM_INIT_S 0.2      /* lookahead used to seed a newly found harmonic */
#define HUM_MAX_HARM 96
#define HUM_PLL_GAIN 0.1    /* share of the measured frequency error corrected per update */
#define CLIP_CONTEXT 4      /* samples either side of a clipped run used by the fit */
#define CLIP_MIN_RUN 3

typedef struct hum_state {
    AVTXContext *fwd, *inv;       /* detection FFT */
    av_tx_fn fwd_fn;
    AVTXContext *tfwd, *tinv;     /* table-sized FFTs for fold / synthesis */
    av_tx_fn tfwd_fn, tinv_fn;
    int nfft, win_len;
    float *det_in;                /* av_malloc: nfft */
    AVComplexFloat *det_out;      /* av_malloc: nfft/2+1 */
    float *det_window;            /* Hann, win_len */
    float *power;                 /* nfft/2+1 */
    int tl;                       /* table length: a power of two below the samples per mains period */
    float *fold;                  /* av_malloc: HUM_TABLE; residual folded by phase (sums) */
    float *count;                 /* samples in each fold slot */
    float *table;                 /* av_malloc: HUM_TABLE + 1 (wrap sample) */
    AVComplexFloat *fold_spec;    /* av_malloc: HUM_TABLE/2+1 */
    AVComplexFloat *amp;          /* complex amplitude per harmonic number (0 = not notched) */
    bool *active;
    int n_active;
    double f0;                    /* current fundamental (Hz), 0 = inactive */
    double phase;                 /* [0,1) position within the hum period at the head */
    int update_every, since_update;  /* samples folded since the last table update */
    bool dirty;                   /* harmonic set changed: rebuild the table */
    int64_t next_detect;          /* write count at which to run detection next */
} hum_state;

struct vx_enhance_front {
    vx_enhance_front_opts o;
    int rate, delay;
    float *ring;
    size_t mask;
    int64_t written, real_end;    /* real_end: count of real samples (-1 while open) */
    int64_t head;                 /* next ring position to output (written - delay) */
    /* declip */
    int64_t scan;                 /* next ring position whose run membership is decided */
    int64_t run_start;            /* -1: not in a run */
    float run_value, peak;
    int max_run;
    /* DC remover: subtract a centred triangular mean (two cascaded boxcars
     * of dc_len): linear phase, so speech above ~50 Hz keeps its waveform. */
    int dc_len;
    double dc_sum1, dc_sum2;
    float *dc_ma1;                /* ring of dc_len first-stage means */
    hum_state hum;
    bool hum_on;
    vx_enhance_front_stats st;
};

static float ring_at(const vx_enhance_front *f, int64_t i) { return f->ring[(size_t)i & f->mask]; }
static float *ring_ptr(vx_enhance_front *f, int64_t i) { return &f->ring[(size_t)i & f->mask]; }

/* ---------------------------------------------------------------- declip */

/* Least-squares cubic through CLIP_CONTEXT samples on each side of the run
 * [a, b); rebuilt samples keep the clipped sign and never fall below the
 * clip level (the true signal was at least that large there). */
static void repair_run(vx_enhance_front *f, int64_t a, int64_t b) {
    double ata[4][5] = {{0}};
    double mid = 0.5 * (double)(a + b - 1), half = 0.5 * (double)(b - a) + CLIP_CONTEXT;
    for (int side = 0; side < 2; side++) {
        for (int k = 1; k <= CLIP_CONTEXT; k++) {
            int64_t i = side ? b - 1 + k : a - k;
            double t = ((double)i - mid) / half, y = ring_at(f, i), p[4] = {1, t, t * t, t * t * t};
            for (int r = 0; r < 4; r++) {
                for (int c = 0; c < 4; c++) ata[r][c] += p[r] * p[c];
                ata[r][4] += p[r] * y;
            }
        }
    }
    for (int c = 0; c < 4; c++) { /* Gaussian elimination with partial pivoting */
        int piv = c;
        for (int r = c + 1; r < 4; r++)
            if (fabs(ata[r][c]) > fabs(ata[piv][c])) piv = r;
        if (fabs(ata[piv][c]) < 1e-12) return;
        for (int k = 0; k < 5; k++) {
            double t = ata[c][k];
            ata[c][k] = ata[piv][k];
            ata[piv][k] = t;
        }
        for (int r = 0; r < 4; r++) {
            if (r == c) continue;
            double m = ata[r][c] / ata[c][c];
            for (int k = c; k < 5; k++) ata[r][k] -= m * ata[c][k];
        }
    }
    double coef[4];
    for (int r = 0; r < 4; r++) coef[r] = ata[r][4] / ata[r][r];
    float level = fabsf(f->run_value), sign = f->run_value < 0 ? -1.0f : 1.0f;
    for (int64_t i = a; i < b; i++) {
        double t = ((double)i - mid) / half;
        double y = coef[0] + t * (coef[1] + t * (coef[2] + t * coef[3]));
        double mag = y * sign;
        /* A fit that bends the wrong way or wildly high is not trusted. */
        if (mag < level) mag = level;
        if (mag > 4.0 * level) mag = 4.0 * level;
        *ring_ptr(f, i) = (float)(sign * mag);
    }
    f->st.declipped_samples += b - a;
    f->st.clip_runs++;
}

/* Decides run membership for ring positions up to written - CLIP_CONTEXT - 1,
 * so that a finished run always has its right-hand context in the ring. */
static void declip_scan(vx_enhance_front *f) {
    int64_t limit = f->written - CLIP_CONTEXT;
    if (f->real_end >= 0 && limit > f->real_end) limit = f->real_end;
    for (; f->scan < limit; f->scan++) {
        float x = ring_at(f, f->scan), ax = fabsf(x);
        if (f->run_start >= 0 && x == f->run_value) {
            if (f->scan - f->run_start > f->max_run) f->run_start = -2; /* too long to rebuild: skip it */
            continue;
        }
        if (f->run_start >= 0) {
            int64_t len = f->scan - f->run_start, end = f->real_end >= 0 ? f->real_end : f->written;
            if (len >= CLIP_MIN_RUN && f->run_start >= CLIP_CONTEXT && f->scan + CLIP_CONTEXT <= end)
                repair_run(f, f->run_start, f->scan);
        }
        if (f->run_start == -2 && x == f->run_value) continue;
        f->run_start = -1;
        /* Runs start only at large values: quiet passages have flat stretches
         * that are quantisation, not clipping. */
        if (ax >= 0.25f && ax >= 0.5f * f->peak && f->scan > 0 && ring_at(f, f->scan - 1) != x) {
            f->run_start = f->scan;
            f->run_value = x;
        }
        if (ax > f->peak) f->peak = ax;
    }
}

/* ------------------------------------------------------------------- hum */

static int hum_init(hum_state *h, int rate, vx_err *err) {
    h->win_len = (int)(HUM_WINDOW_S * rate);
    h->nfft = 1;
    while (h->nfft < h->win_len) h->nfft *= 2;
    float one = 1.0f, inv_scale = 1.0f;
    h->det_in = av_malloc((size_t)h->nfft * sizeof(float));
    h->det_out = av_malloc((size_t)(h->nfft / 2 + 2) * sizeof(AVComplexFloat));
    h->det_window = malloc((size_t)h->win_len * sizeof(float));
    h->power = malloc((size_t)(h->nfft / 2 + 1) * sizeof(float));
    h->fold = av_malloc(HUM_TABLE * sizeof(float));
    h->count = calloc(HUM_TABLE, sizeof(float));
    /* Every slot must see samples each period, or the folded period is
     * sampled unevenly and the harmonics leak into one another. */
    h->tl = 16;
    while (h->tl * 2 <= HUM_TABLE && h->tl * 2 <= rate / 62) h->tl *= 2;
    h->table = av_malloc((HUM_TABLE + 1) * sizeof(float));
    h->fold_spec = av_malloc((HUM_TABLE / 2 + 2) * sizeof(AVComplexFloat));
    h->amp = calloc(HUM_TABLE / 2 + 1, sizeof(AVComplexFloat));
    h->active = calloc(HUM_TABLE / 2 + 1, sizeof(bool));
    if (!h->det_in || !h->det_out || !h->det_window || !h->power || !h->fold || !h->count || !h->table || !h->fold_spec ||
        !h->amp || !h->active)
        return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
    if (av_tx_init(&h->fwd, &h->fwd_fn, AV_TX_FLOAT_RDFT, 0, h->nfft, &one, 0) < 0 ||
        av_tx_init(&h->tfwd, &h->tfwd_fn, AV_TX_FLOAT_RDFT, 0, h->tl, &one, 0) < 0 ||
        av_tx_init(&h->tinv, &h->tinv_fn, AV_TX_FLOAT_RDFT, 1, h->tl, &inv_scale, 0) < 0)
        return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory setting up the FFT");
    for (int i = 0; i < h->win_len; i++) h->det_window[i] = (float)(0.5 - 0.5 * cos(2 * M_PI * (i + 0.5) / h->win_len));
    memset(h->fold, 0, h->tl * sizeof(float));
    memset(h->table, 0, (h->tl + 1) * sizeof(float));
    h->update_every = rate / 32;
    if (h->update_every < 64) h->update_every = 64;
    h->next_detect = h->win_len;
    return 0;
}

static void hum_free(hum_state *h) {
    av_tx_uninit(&h->fwd);
    av_tx_uninit(&h->inv);
    av_tx_uninit(&h->tfwd);
    av_tx_uninit(&h->tinv);
    av_free(h->det_in);
    av_free(h->det_out);
    free(h->det_window);
    free(h->power);
    av_free(h->fold);
    free(h->count);
    av_free(h->table);
    av_free(h->fold_spec);
    free(h->amp);
    free(h->active);
}

/* k-th smallest of v[0..n) (Hoare selection; reorders v). */
static float select_kth(float *v, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = v[(lo + hi) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot) i++;
            while (v[j] > pivot) j--;
            if (i <= j) {
                float t = v[i];
                v[i++] = v[j];
                v[j--] = t;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            break;
    }
    return v[k];
}

/* Peak near frequency `hz` (searching +-`tol` Hz): returns the peak-to-
 * background power ratio and the interpolated peak frequency. */
static double harmonic_peak(const hum_state *h, int rate, double hz, double tol, double family, double *peak_hz,
                            double *sharpness) {
    double df = (double)rate / h->nfft;
    int nb = h->nfft / 2 + 1;
    int lo = (int)floor((hz - tol) / df), hi = (int)ceil((hz + tol) / df);
    if (lo < 2) lo = 2;
    if (hi > nb - 3) hi = nb - 3;
    if (hi < lo) return 0;
    int best = lo;
    for (int b = lo; b <= hi; b++)
        if (h->power[b] > h->power[best]) best = b;
    double a = log(h->power[best - 1] + 1e-30), c = log(h->power[best] + 1e-30), e = log(h->power[best + 1] + 1e-30);
    double den = a - 2 * c + e, delta = den < 0 ? 0.5 * (a - e) / den : 0;
    if (delta > 0.5) delta = 0.5;
    if (delta < -0.5) delta = -0.5;
    *peak_hz = (best + delta) * df;
    /* Background: median of the bins between the neighbouring harmonics,
     * away from the peak's main lobe. */
    float bg[256];
    int n = 0, span = (int)(0.4 * family / df);
    for (int b = best - span; b <= best + span && n < 256; b++)
        if (b > 0 && b < nb && abs(b - best) > 3) bg[n++] = h->power[b];
    if (n < 4) return 0;
    double med = select_kth(bg, n, n / 2) + 1e-30;
    double pk = h->power[best - 1] + h->power[best] + h->power[best + 1];
    /* A mains component is a steady sinusoid: over the window it stays in
     * the main lobe, while even a monotone voice's partials smear. */
    double skirt = 1e-30;
    for (int d = 3; d <= 6; d++) {
        if (best - d > 0) skirt += h->power[best - d];
        if (best + d < nb) skirt += h->power[best + d];
    }
    *sharpness = pk / skirt;
    return pk / (3.0 * med);
}

#define HUM_FAMILY_RATIO 20.0  /* 13 dB: a harmonic that makes a family credible */
#define HUM_KEEP_RATIO 4.0     /* 6 dB: a harmonic worth notching once the family is found */
#define HUM_SHARPNESS 30.0     /* main lobe vs. skirt power of a family-making harmonic */
#define HUM_KEEP_SHARPNESS 10.0 /* ... and of one worth notching: speech partials smear */
#define HUM_STAY_RATIO 2.0     /* a notched harmonic is dropped below 3 dB */
#define HUM_TOLERANCE 0.005    /* mains frequency may be off by 0.5% */
#define HUM_MIN_HARMONICS 3

/* Estimates a family's fundamental from its clear harmonics; returns the
 * count of consistent harmonics and fills *f0 and *score. */
static int family_fit(const hum_state *h, int rate, double family, double *f0, double *score) {
    double wsum = 0, fsum = 0;
    int count = 0;
    *score = 0;
    for (int k = 1; k * family <= HUM_FMAX && k * family < 0.45 * rate && k < h->tl / 2; k++) {
        double sharp, pk_hz, r = harmonic_peak(h, rate, k * family, k * family * HUM_TOLERANCE + 1.0, family, &pk_hz, &sharp);
        if (r < HUM_FAMILY_RATIO || sharp < HUM_SHARPNESS) continue;
        double est = pk_hz / k, w = (double)k * k * log(r);
        if (fabs(est - family) > HUM_TOLERANCE * family + 0.5 / k) continue;
        fsum += w * est;
        wsum += w;
        *score += log(r);
        count++;
    }
    *f0 = wsum > 0 ? fsum / wsum : family;
    return count;
}

static void fold_clear(hum_state *h) {
    memset(h->fold, 0, (size_t)h->tl * sizeof(float));
    memset(h->count, 0, (size_t)h->tl * sizeof(float));
}

/* Mean per slot, so an unevenly filled fold is still one period sampled
 * evenly, then its spectrum: bin k = tl * (complex amplitude of harmonic k). */
static void fold_transform(hum_state *h) {
    for (int b = 0; b < h->tl; b++) h->fold[b] = h->count[b] > 0 ? h->fold[b] / h->count[b] : 0.0f;
    h->tfwd_fn(h->tfwd, h->fold_spec, h->fold, sizeof(float));
}

/* Runs detection on the last window of real samples ending at `end`. */
static void hum_detect(vx_enhance_front *f, int64_t end) {
    hum_state *h = &f->hum;
    int64_t len = end < h->win_len ? end : h->win_len;
    if (len < f->rate / 4) return; /* too short to tell 50 from 60 Hz reliably */
    memset(h->det_in, 0, (size_t)h->nfft * sizeof(float));
    double energy = 0;
    for (int64_t i = 0; i < len; i++) {
        float x = ring_at(f, end - len + i);
        energy += (double)x * x;
        h->det_in[i] = x * h->det_window[(int64_t)((double)i * h->win_len / len)];
    }
    h->fwd_fn(h->fwd, h->det_out, h->det_in, sizeof(float));
    h->det_out[0].im = h->det_out[h->nfft / 2].im = 0; /* real bins; av_tx may leave im unwritten */
    for (int b = 0; b <= h->nfft / 2; b++)
        h->power[b] = h->det_out[b].re * h->det_out[b].re + h->det_out[b].im * h->det_out[b].im;

    double f0 = 0, best_score = 0;
    int family = 0;
    for (int fam = 50; fam <= 60; fam += 10) {
        if (f->o.mains_hz > 0 && f->o.mains_hz != fam) continue;
        double est, score;
        int n = family_fit(h, f->rate, fam, &est, &score);
        if (n >= HUM_MIN_HARMONICS && score > best_score) {
            best_score = score;
            f0 = est;
            family = fam;
        }
    }
    if (!family) {
        /* Gone: stop notching (the amplitudes decay away by dropping them). */
        memset(h->active, 0, (HUM_TABLE / 2 + 1) * sizeof(bool));
        memset(h->amp, 0, (HUM_TABLE / 2 + 1) * sizeof(AVComplexFloat));
        memset(h->table, 0, (HUM_TABLE + 1) * sizeof(float));
        h->n_active = 0;
        h->f0 = 0;
        return;
    }
    /* Newly found harmonics are seeded from the lookahead (open loop), so
     * the canceller is right from the first sample it governs. */
    int64_t head = f->head < 0 ? 0 : f->head;
    int seed_len = (int)(HUM_INIT_S * f->rate);
    if (h->f0 > 0 && fabs(h->f0 - f0) < 0.01 * family) f0 = h->f0; /* keep the tracked value */
    h->f0 = f0;
    bool newly[HUM_TABLE / 2 + 1] = {false};
    int n_active = 0, n_new = 0;
    double hum_power = 0;
    for (int k = 1; k < h->tl / 2 && k < HUM_MAX_HARM && k * f0 <= HUM_FMAX && k * f0 < 0.45 * f->rate; k++) {
        double sharp, pk_hz, r = harmonic_peak(h, f->rate, k * f0, 1.5 * f->rate / h->nfft, family, &pk_hz, &sharp);
        /* Hysteresis: a notched harmonic stays until it clearly fades, so
         * speech passing over it does not toggle it on and off. */
        bool keep = h->active[k] ? r >= HUM_STAY_RATIO : r >= HUM_KEEP_RATIO && sharp >= HUM_KEEP_SHARPNESS;
        if (keep && !h->active[k]) newly[k] = true, n_new++;
        if (!keep && h->active[k]) h->amp[k] = (AVComplexFloat){0, 0};
        h->active[k] = keep;
        if (keep) n_active++;
    }
    if (n_new > 0) {
        int64_t avail = f->written - head;
        int n = seed_len < avail ? seed_len : (int)avail;
        if (f->real_end >= 0 && head + n > f->real_end) n = (int)(f->real_end - head);
        if (n > 0) {
            fold_clear(h);
            double ph = h->phase, step = h->f0 / f->rate;
            for (int i = 0; i < n; i++) {
                int b = (int)(ph * h->tl + 0.5) & (h->tl - 1);
                h->fold[b] += ring_at(f, head + i);
                h->count[b] += 1;
                ph += step;
                ph -= floor(ph);
            }
            fold_transform(h);
            for (int k = 1; k < h->tl / 2; k++) {
                if (!newly[k]) continue;
                h->amp[k].re = h->fold_spec[k].re / h->tl;
                h->amp[k].im = h->fold_spec[k].im / h->tl;
            }
            fold_clear(h);
            h->since_update = 0;
        }
    }
    for (int k = 1; k < h->tl / 2; k++)
        if (h->active[k]) hum_power += 2.0 * (h->amp[k].re * h->amp[k].re + h->amp[k].im * h->amp[k].im);
    h->n_active = n_active;
    h->dirty = true;

    if (n_active > f->st.harmonics) f->st.harmonics = n_active;
    if (n_active > 0) {
        f->st.mains_hz = family;
        f->st.mains_f0 = h->f0;
        double mean_power = energy / (double)len;
        if (mean_power > 0 && hum_power > 0) f->st.hum_level_db = 10 * log10(hum_power / mean_power);
    }
}

/* Closed-loop update from the folded residual, a small frequency correction
 * from how the amplitudes rotate, and a fresh one-period table. */
static void hum_update(vx_enhance_front *f, int samples) {
    hum_state *h = &f->hum;
    if (samples > 0) {
        fold_transform(h);
        double mu = (double)samples / (HUM_TAU_S * f->rate);
        if (mu > 1) mu = 1;
        double fnum = 0, fden = 0;
        for (int k = 1; k < h->tl / 2; k++) {
            if (!h->active[k]) continue;
            AVComplexFloat *a = &h->amp[k];
            AVComplexFloat old = *a;
            /* Residual correlated with e^{-i 2 pi k phase}: push the model
             * towards it (the fold computed sum(y e^{-i...})). */
            a->re += (float)(mu * h->fold_spec[k].re / h->tl);
            a->im += (float)(mu * h->fold_spec[k].im / h->tl);
            double p = (double)a->re * a->re + (double)a->im * a->im;
            if (p > 1e-14) {
                double cross_re = (double)a->re * old.re + (double)a->im * old.im;
                double cross_im = (double)a->im * old.re - (double)a->re * old.im;
                double dphi = atan2(cross_im, cross_re); /* radians per `samples` */
                double dfk = dphi * f->rate / (2 * M_PI * samples);
                fnum += p * k * dfk; /* weight k^2 p, estimate dfk/k */
                fden += p * k * k;
            }
        }
        if (fden > 0) {
            double df0 = fnum / fden;
            if (df0 > 0.005) df0 = 0.005;
            if (df0 < -0.005) df0 = -0.005;
            h->f0 += HUM_PLL_GAIN * df0;
        }
        fold_clear(h);
    }
    memset(h->fold_spec, 0, (h->tl / 2 + 2) * sizeof(AVComplexFloat));
    for (int k = 1; k < h->tl / 2; k++) {
        if (!h->active[k]) continue;
        /* The sinusoid 2 Re(a e^{i 2 pi k n/N}) from the half spectrum. */
        h->fold_spec[k].re = h->amp[k].re * h->tl;
        h->fold_spec[k].im = h->amp[k].im * h->tl;
    }
    h->tinv_fn(h->tinv, h->table, h->fold_spec, sizeof(AVComplexFloat));
    /* The real inverse adds each bin's conjugate: 2 Re(X_k e^{..}). */
    for (int i = 0; i < h->tl; i++) h->table[i] *= 1.0f / h->tl;
    h->table[h->tl] = h->table[0];
}

static float hum_cancel(hum_state *h, float x, double rate) {
    double pos = h->phase * h->tl;
    int i = (int)pos;
    float frac = (float)(pos - i);
    float y = x - (h->table[i] + frac * (h->table[i + 1] - h->table[i]));
    /* Fold to the nearest slot: flooring would turn every estimate by half
     * a slot (k * pi / h->tl radians for harmonic k). */
    int b = (int)(pos + 0.5) & (h->tl - 1);
    h->fold[b] += y;
    h->count[b] += 1;
    h->phase += h->f0 / rate;
    if (h->phase >= 1.0) h->phase -= floor(h->phase);
    return y;
}

/* ------------------------------------------------------------- the stage */

vx_enhance_front *vx_enhance_front_new(int rate, const vx_enhance_front_opts *o, vx_err *err) {
    vx_enhance_front *f = calloc(1, sizeof *f);
    if (!f) {
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        return NULL;
    }
    f->o = *o;
    f->rate = rate;
    f->real_end = -1;
    f->head = 0;
    f->run_start = -1;
    f->max_run = rate / 250; /* 4 ms: longer flat runs are not rebuilt by a local fit */
    f->dc_len = rate / 10; /* nulls at multiples of 10 Hz; < -50 dB ripple above 70 Hz */
    f->hum_on = o->mains_hz >= 0;
    int clip_delay = o->declip ? f->max_run + 2 * CLIP_CONTEXT + 2 : 0;
    f->delay = clip_delay + (o->dc_removal ? f->dc_len : 0);
    if (o->dc_removal) {
        f->dc_ma1 = calloc((size_t)f->dc_len, sizeof(float));
        if (!f->dc_ma1) {
            vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
            vx_enhance_front_free(f);
            return NULL;
        }
    }
    if (f->hum_on) {
        if (hum_init(&f->hum, rate, err) != 0) {
            vx_enhance_front_free(f);
            return NULL;
        }
        if (f->hum.win_len > f->delay) f->delay = f->hum.win_len;
    }
    f->head = -f->delay;
    size_t need = (size_t)f->delay + (size_t)(f->hum_on ? f->hum.win_len : 0) + 4096, size = 1;
    while (size < need) size *= 2;
    f->ring = calloc(size, sizeof(float));
    if (!f->ring) {
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        vx_enhance_front_free(f);
        return NULL;
    }
    f->mask = size - 1;
    return f;
}

void vx_enhance_front_free(vx_enhance_front *f) {
    if (!f) return;
    if (f->hum_on) hum_free(&f->hum);
    free(f->ring);
    free(f->dc_ma1);
    free(f);
}

int vx_enhance_front_delay(const vx_enhance_front *f) { return f->delay; }

void vx_enhance_front_end_input(vx_enhance_front *f) {
    if (f->real_end >= 0) return;
    f->real_end = f->written;
    if (f->o.declip) {
        /* Finish the scan on real samples; a run touching the end stays as is. */
        declip_scan(f);
    }
    if (f->hum_on && f->written < f->hum.win_len) hum_detect(f, f->written);
}

void vx_enhance_front_process(vx_enhance_front *f, const float *in, float *out, size_t n) {
    /* Work in slices so detection runs at its cadence and the ring never
     * overwrites samples still ahead of the head. */
    while (n > 0) {
        size_t slice = n < 1024 ? n : 1024;
        for (size_t i = 0; i < slice; i++) *ring_ptr(f, f->written + (int64_t)i) = in[i];
        f->written += (int64_t)slice;
        if (f->o.declip) declip_scan(f);
        if (f->hum_on && f->real_end < 0 && f->written >= f->hum.next_detect) {
            hum_detect(f, f->written);
            f->hum.next_detect = f->written + (int64_t)(HUM_DETECT_EVERY_S * f->rate);
        }
        hum_state *h = &f->hum;
        for (size_t i = 0; i < slice; i++) {
            int64_t pos = f->head++;
            double x = pos >= 0 ? ring_at(f, pos) : 0.0;
            if (f->o.dc_removal) {
                /* Advance both boxcars to end at pos + 2(L-1)/2: the
                 * triangle they form is centred on pos. */
                int L = f->dc_len;
                int64_t lead = pos + L - 1;
                double a = ring_at(f, lead), b = lead - L >= 0 ? ring_at(f, lead - L) : 0.0;
                f->dc_sum1 += a - b;
                float ma1 = (float)(f->dc_sum1 / L);
                float *slot = &f->dc_ma1[(size_t)((lead % L + L) % L)];
                f->dc_sum2 += (double)ma1 - *slot;
                *slot = ma1;
                if (pos >= 0) x -= f->dc_sum2 / L;
            }
            if (f->hum_on && h->n_active > 0 && pos >= 0) {
                if (h->dirty || h->since_update >= h->update_every) {
                    hum_update(f, h->since_update);
                    h->since_update = 0;
                    h->dirty = false;
                }
                x = hum_cancel(h, (float)x, f->rate);
                h->since_update++;
            }
            out[i] = (float)x;
        }
        in += slice;
        out += slice;
        n -= slice;
    }
}

void vx_enhance_front_get_stats(const vx_enhance_front *f, vx_enhance_front_stats *st) { *st = f->st; }
