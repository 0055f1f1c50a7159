/* enhance_spectral.c - the spectral stage of `enhance`: a zero-phase
 * high-pass (Butterworth magnitude applied per bin, so speech keeps its
 * waveform) and statistical noise suppression: noise tracking by speech
 * presence probability, capped by minimum statistics (minima-controlled),
 * decision-directed a priori SNR and the MMSE log-spectral amplitude gain
 * with a floor, plus a transient (burst) suppressor that looks 4 frames
 * ahead. Channels share one gain (from their mean power) so the stereo
 * image stays put. Bounded state. One object per model run; not
 * thread-safe. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../audio/stft.h"
#include "enhance_int.h"

#define MAX_CHANNELS 8
#define MIN_SUBWINDOWS 8      /* minimum search: 8 sub-windows ... */
#define MIN_WINDOW_S 2.0      /* ... spanning this long */
#define TAU_SMOOTH_S 0.07     /* periodogram smoothing for the minimum search */
#define TAU_PRESENCE_S 0.15   /* smoothing of the presence probability (stall guard) */
#define TAU_NOISE_S 0.072     /* noise update time constant */
#define LEVEL_HIST 3          /* onset detection: power vs. LEVEL_HIST frames ago ... */
#define ONSET_JUMP 4.0f       /* ... up 6 dB */
#define HOLD_S 0.5            /* noise estimate held this long after an onset */
#define SPP_XI 5.0f           /* a priori SNR assumed for speech (7 dB) */
#define MIN_BIAS 4.0f         /* minimum of smoothed noise power -> its mean, with margin */
#define ABSENCE_ODDS 0.25f    /* a priori odds of speech absence for the OM-LSA weighting */
#define DD_ALPHA 0.97         /* decision-directed weight */
#define LOOK 4                /* frames of lookahead for the burst detector (64 ms at 16 kHz) */
#define BURST_QUIET 2.5f      /* a burst starts from a pause: frame power within 4 dB of the noise ... */
#define BURST_RISE 3000.0f    /* ... rises 35 dB over the noise ... */
#define BURST_GONE 0.3f       /* ... and LOOK frames later keeps less than this of its peak */
#define BURST_REGROW 1.5f     /* a frame this much louder than the one before ends a burst */
#define BURST_MAX_S 0.4       /* so does this much time */
#define BURST_ATTEN_DB 10.0   /* a burst's bins are attenuated at least this much (a miss costs little) */
#define LSA_TABLE_PER_OCT 64
#define LSA_LOG2_MIN -20
#define LSA_LOG2_MAX 6
#define LSA_TABLE ((LSA_LOG2_MAX - LSA_LOG2_MIN) * LSA_TABLE_PER_OCT + 2)

struct vx_enhance_spectral {
    vx_enhance_spectral_opts o;
    int rate, channels, frame, hop, bins;
    vx_stft *stft[MAX_CHANNELS];
    vx_complex *spec[MAX_CHANNELS];  /* frame t (being processed): points into ring */
    vx_complex *ring[LOOK + 1][MAX_CHANNELS]; /* spectra of frames t..t+LOOK */
    float *pring[LOOK + 1];          /* their powers */
    float energy[LOOK + 1];          /* their total powers */
    float e_prev[2];                 /* total power of frames t-1 and t-2 */
    int64_t analysed;
    float *hp;        /* high-pass magnitude per bin (1 when off) */
    float *power;     /* mean power across channels, high-passed: frame t (points into pring) */
    float *burst;     /* power of the transient (burst) noise in frame t */
    bool burst_on;
    int burst_frames, burst_max;
    float burst_gain;
    int64_t burst_ended;  /* frame where the last burst ended */
    int64_t bursts;
    float *smooth;    /* S: time/frequency-smoothed power */
    float *smin, *stmp;
    float *sub_min;   /* MIN_SUBWINDOWS x bins ring of sub-window minima */
    float *presence;  /* smoothed speech-presence probability */
    float *noise;     /* lambda_d */
    float *prev_gain2_gamma; /* G^2 * gamma of the previous frame (decision-directed) */
    float *gain;
    float lsa[LSA_TABLE]; /* exp(0.5 E1(v)) on a log2(v) grid */
    float a_smooth, a_presence, a_noise, gain_floor, log_floor;
    int sub_len, sub_pos, sub_idx, subs_filled;
    int64_t frames;
    int64_t lead_in;        /* padding samples before the real input */
    float *ramp;            /* per early frame: window energy share of real samples */
    int ramp_frames;
    bool tracking, had_gain, seen_silence;
    float level_hist[LEVEL_HIST]; /* frame power, last LEVEL_HIST frames */
    int hold, hold_frames;
    int64_t tracked;        /* frames that updated the noise statistics */
    float silence;          /* frame power below this is digital silence */
    double sum_in, sum_out, sum_speech, sum_noise;
};

/* Exponential integral E1(x), x > 0 (series below 1, continued fraction above). */
static double expint_e1(double x) {
    if (x < 1.0) {
        double sum = 0, term = 1;
        for (int k = 1; k < 40; k++) {
            term *= -x / k;
            sum -= term / k;
        }
        return -0.57721566490153286 - log(x) + sum;
    }
    double b = x + 1, c = 1e300, d = 1 / b, h = d;
    for (int i = 1; i < 200; i++) {
        double an = -(double)i * i;
        b += 2;
        d = 1 / (an * d + b);
        c = b + an / c;
        double del = c * d;
        h *= del;
        if (fabs(del - 1) < 1e-12) break;
    }
    return h * exp(-x);
}

static float lsa_factor(const vx_enhance_spectral *s, float v) {
    if (v <= 0) v = 1e-12f;
    float pos = (log2f(v) - LSA_LOG2_MIN) * LSA_TABLE_PER_OCT;
    if (pos >= LSA_TABLE - 2) return 1.0f;
    if (pos <= 0) return s->lsa[0] * sqrtf(exp2f(LSA_LOG2_MIN) / v); /* E1 ~ -ln v: factor ~ v^-1/2 */
    int i = (int)pos;
    float fr = pos - (float)i;
    return s->lsa[i] + fr * (s->lsa[i + 1] - s->lsa[i]);
}

static float alpha_for(double tau_s, double hop_s) { return (float)exp(-hop_s / tau_s); }

vx_enhance_spectral *vx_enhance_spectral_new(int rate, int channels, const vx_enhance_spectral_opts *o,
                                             vx_err *err) {
    if (channels < 1 || channels > MAX_CHANNELS) {
        vx_err_set(err, VX_E_UNPROCESSABLE, "param_out_of_range", "enhance handles 1 to 8 channels");
        return NULL;
    }
    vx_enhance_spectral *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    s->o = *o;
    s->rate = rate;
    s->channels = channels;
    /* ~32 ms frames (a power of two), 75% overlap. */
    s->frame = 256;
    while (s->frame * 1000 < rate * 24) s->frame *= 2;
    s->hop = s->frame / 2;
    s->bins = s->frame / 2 + 1;
    vx_stft_config cfg = {.frame = s->frame, .hop = s->hop, .window = VX_STFT_WINDOW_SQRT_HANN, .synthesis = true};
    for (int c = 0; c < channels; c++) {
        s->stft[c] = vx_stft_new(&cfg, err);
        if (!s->stft[c]) goto fail;
        for (int f = 0; f <= LOOK; f++) {
            s->ring[f][c] = calloc((size_t)s->bins, sizeof(vx_complex));
            if (!s->ring[f][c]) goto oom;
        }
    }
    size_t nb = (size_t)s->bins;
    float **arrays[] = {&s->pring[0], &s->pring[1], &s->pring[2], &s->pring[3], &s->pring[4], &s->hp, &s->smooth, &s->smin, &s->stmp, &s->presence, &s->noise,
                        &s->prev_gain2_gamma, &s->gain, &s->burst};
    _Static_assert(LOOK == 4, "pring entries above");
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) {
        *arrays[i] = calloc(nb, sizeof(float));
        if (!*arrays[i]) goto oom;
    }
    s->sub_min = calloc(nb * MIN_SUBWINDOWS, sizeof(float));
    if (!s->sub_min) goto oom;
    for (int k = 0; k < s->bins; k++) {
        double f = (double)k * rate / s->frame;
        if (o->highpass_hz <= 0)
            s->hp[k] = 1.0f;
        else /* 8th-order Butterworth magnitude; the phase is left alone */
            s->hp[k] = f <= 0 ? 0.0f : (float)(1.0 / sqrt(1.0 + pow(o->highpass_hz / f, 16.0)));
    }
    double hop_s = (double)s->hop / rate;
    s->a_smooth = alpha_for(TAU_SMOOTH_S, hop_s);
    s->a_presence = alpha_for(TAU_PRESENCE_S, hop_s);
    s->a_noise = alpha_for(TAU_NOISE_S, hop_s);
    s->hold_frames = (int)(HOLD_S / hop_s);
    s->burst_max = (int)(BURST_MAX_S / hop_s);
    s->burst_gain = (float)pow(10.0, -BURST_ATTEN_DB / 20.0);
    if (s->burst_gain < s->gain_floor) s->burst_gain = s->gain_floor;
    s->sub_len = (int)ceil(MIN_WINDOW_S / MIN_SUBWINDOWS / hop_s);
    s->gain_floor = (float)pow(10.0, -o->max_attenuation_db / 20.0);
    s->log_floor = logf(s->gain_floor);
    /* Window energy share of real samples for frames reaching into the
     * lead-in padding: frame f holds input samples [f*hop + hop - frame,
     * f*hop + hop). */
    s->lead_in = o->lead_in;
    s->ramp_frames = (int)((o->lead_in + s->frame) / s->hop + 1);
    s->ramp = malloc((size_t)s->ramp_frames * sizeof(float));
    if (!s->ramp) goto oom;
    double wsum = 0;
    for (int n = 0; n < s->frame; n++) wsum += (double)vx_stft_window_values(s->stft[0])[n] * vx_stft_window_values(s->stft[0])[n];
    for (int f = 0; f < s->ramp_frames; f++) {
        double real = 0;
        int64_t first = (int64_t)f * s->hop + s->hop - s->frame;
        for (int n = 0; n < s->frame; n++) {
            double w = vx_stft_window_values(s->stft[0])[n];
            if (first + n >= o->lead_in) real += w * w;
        }
        s->ramp[f] = (float)(real / wsum);
    }
    /* -100 dBFS per sample, as frame power summed over the bins. */
    s->silence = (float)(1e-10 * wsum * s->frame / 2);
    for (int i = 0; i < LSA_TABLE; i++) {
        double v = exp2((double)i / LSA_TABLE_PER_OCT + LSA_LOG2_MIN);
        s->lsa[i] = (float)exp(0.5 * expint_e1(v));
    }
    return s;
oom:
    vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
fail:
    vx_enhance_spectral_free(s);
    return NULL;
}

void vx_enhance_spectral_free(vx_enhance_spectral *s) {
    if (!s) return;
    for (int c = 0; c < MAX_CHANNELS; c++) {
        vx_stft_free(s->stft[c]);
        for (int f = 0; f <= LOOK; f++) free(s->ring[f][c]);
    }
    for (int f = 0; f <= LOOK; f++) free(s->pring[f]);
    free(s->hp);
    free(s->smooth);
    free(s->smin);
    free(s->stmp);
    free(s->sub_min);
    free(s->presence);
    free(s->noise);
    free(s->prev_gain2_gamma);
    free(s->gain);
    free(s->burst);
    free(s->ramp);
    free(s);
}

int vx_enhance_spectral_hop(const vx_enhance_spectral *s) { return s->hop; }
/* The STFT's latency plus the burst detector's lookahead. */
int vx_enhance_spectral_delay(const vx_enhance_spectral *s) { return s->frame - s->hop + LOOK * s->hop; }

/* Noise tracking by speech presence probability (Gerkmann & Hendriks'
 * unbiased MMSE estimator): each bin's posterior probability of speech,
 * under a fixed a priori SNR for speech, decides how much of the current
 * periodogram is noise. It needs no noise-only lead-in and follows rising
 * noise within a few hundred ms. A minima-controlled bound (the smallest
 * smoothed power over MIN_WINDOW_S, bias-corrected) caps the estimate, so a
 * file that starts with speech does not keep an inflated noise estimate. */
static void track_noise(vx_enhance_spectral *s, const float *p) {
    int nb = s->bins;
    bool first = !s->tracking;
    s->tracking = true;
    for (int k = 0; k < nb; k++) {
        float sf = k == 0 || k == nb - 1 ? p[k] : 0.25f * p[k - 1] + 0.5f * p[k] + 0.25f * p[k + 1];
        if (first) {
            s->smooth[k] = s->smin[k] = s->stmp[k] = sf;
            /* After digital silence the first sound is as likely speech as
             * noise: start from no noise and let the minimum bound (after
             * one window) lift the estimate if it was noise. */
            s->noise[k] = (s->seen_silence ? 0.0f : sf) + 1e-12f;
            for (int u = 0; u < MIN_SUBWINDOWS; u++) s->sub_min[u * nb + k] = sf;
            continue;
        }
        float sm = s->a_smooth * s->smooth[k] + (1 - s->a_smooth) * sf;
        s->smooth[k] = sm;
        if (sm < s->stmp[k]) s->stmp[k] = sm;
        if (sm < s->smin[k]) s->smin[k] = sm;
        float lambda = s->noise[k];
        float gamma = p[k] / lambda;
        /* P(H1 | y) with xi_H1 = SPP_XI and equal priors. */
        float e = expf(-gamma * (SPP_XI / (1 + SPP_XI)));
        float ph1 = 1.0f / (1.0f + (1 + SPP_XI) * e);
        float pr = s->a_presence * s->presence[k] + (1 - s->a_presence) * ph1;
        s->presence[k] = pr;
        if (pr > 0.99f && ph1 > 0.99f) ph1 = 0.99f; /* never stall for good */
        float noise_now = (1 - ph1) * p[k] + ph1 * lambda;
        lambda = s->a_noise * lambda + (1 - s->a_noise) * noise_now;
        /* Noise power is never many times the minimum of the smoothed
         * power over the last window; above that, speech has leaked in. */
        if (s->tracked >= s->sub_len * MIN_SUBWINDOWS) {
            float cap = MIN_BIAS * s->smin[k];
            if (lambda > cap) lambda = cap;
        }
        s->noise[k] = lambda + 1e-12f;
    }
    s->tracked++;
    if (first) return;
    if (++s->sub_pos >= s->sub_len) {
        /* Close a sub-window: the minimum is the least of the last
         * MIN_SUBWINDOWS sub-window minima, so it forgets old lows in at most
         * MIN_WINDOW_S and follows rising noise. */
        s->sub_pos = 0;
        float *slot = s->sub_min + (size_t)s->sub_idx * (size_t)nb;
        memcpy(slot, s->stmp, (size_t)nb * sizeof(float));
        s->sub_idx = (s->sub_idx + 1) % MIN_SUBWINDOWS;
        for (int k = 0; k < nb; k++) {
            float m = s->smooth[k];
            for (int u = 0; u < MIN_SUBWINDOWS; u++) m = fminf(m, s->sub_min[u * nb + k]);
            s->smin[k] = m;
            s->stmp[k] = s->smooth[k];
        }
    }
}

static void compute_gains(vx_enhance_spectral *s) {
    int nb = s->bins;
    s->had_gain = true;
    float strength = (float)s->o.strength;
    for (int k = 0; k < nb; k++) {
        float lambda = strength * s->noise[k] + 1e-20f;
        float gamma = s->power[k] / lambda;
        if (gamma > 1e5f) gamma = 1e5f;
        float ml = gamma - 1 > 0 ? gamma - 1 : 0;
        float xi = !s->had_gain ? ml : DD_ALPHA * s->prev_gain2_gamma[k] + (1 - DD_ALPHA) * ml;
        if (xi < 1e-3f) xi = 1e-3f;
        float r = xi / (1 + xi), v = r * gamma;
        float g = r * lsa_factor(s, v);
        if (g > 1) g = 1;
        if (g < s->gain_floor) g = s->gain_floor;
        /* Optimally modified LSA: weigh the gain by the probability that
         * speech is present at all, falling to the floor
         * where it is not. */
        float ev = v < 80 ? expf(-v) : 0.0f;
        float p = 1.0f / (1.0f + ABSENCE_ODDS * (1 + xi) * ev);
        g = expf(p * (logf(g) - s->log_floor) + s->log_floor); /* g^p * floor^(1-p) */
        if (s->burst_on && s->burst[k] > s->noise[k] && g > s->burst_gain) g = s->burst_gain;
        s->gain[k] = g;
        s->prev_gain2_gamma[k] = g * g * gamma;
        s->sum_speech += s->power[k] > s->noise[k] ? s->power[k] - s->noise[k] : 0;
        s->sum_noise += s->noise[k];
    }
}

/* Transient (burst) noise in pauses: knocks, clatter and door slams rise
 * within a few ms and die away within a few tens, while speech that starts
 * after a pause goes on (a syllable outlasts the 64 ms lookahead). A frame
 * that follows a quiet one (within 4 dB of the tracked floor), rises 35 dB
 * over the floor and, LOOK frames later, has fallen under BURST_GONE of its
 * peak without growing again starts a burst. Its bins standing 3 dB over
 * the floor are held at least BURST_ATTEN_DB down until the level grows
 * again (speech arriving), falls back to the floor, or BURST_MAX_S passes.
 * Plosives after a closure look alike, so the thresholds are strict and the
 * attenuation bounded: a false hit on speech costs 10 dB on one consonant,
 * not its removal. Bursts under speech are left to the statistical gain. */
static void track_bursts(vx_enhance_spectral *s, int64_t t) {
    int nb = s->bins;
    const float *pc = s->power;
    float floor_e = 0;
    for (int k = 0; k < nb; k++) floor_e += s->noise[k];
    float e_t = s->energy[t % (LOOK + 1)];
    if (s->burst_on) {
        if (++s->burst_frames < s->burst_max && e_t <= BURST_REGROW * s->e_prev[0] && e_t > 2 * floor_e) {
            for (int k = 0; k < nb; k++) s->burst[k] = pc[k] > s->noise[k] ? pc[k] - s->noise[k] : 0.0f;
            return;
        }
        s->burst_on = false;
        s->burst_ended = t;
        memset(s->burst, 0, (size_t)nb * sizeof(float));
    }
    if (fminf(s->e_prev[0], s->e_prev[1]) > BURST_QUIET * floor_e) return;
    float peak = fmaxf(e_t, s->energy[(t + 1) % (LOOK + 1)]);
    if (peak < BURST_RISE * floor_e) return;
    for (int f = 2; f <= LOOK; f++) {
        float e = s->energy[(t + f) % (LOOK + 1)], before = s->energy[(t + f - 1) % (LOOK + 1)];
        if (e > peak || e > BURST_REGROW * before) return;
    }
    if (s->energy[(t + LOOK) % (LOOK + 1)] > BURST_GONE * peak) return;
    for (int k = 0; k < nb; k++) s->burst[k] = pc[k] > s->noise[k] ? pc[k] - s->noise[k] : 0.0f;
    /* A burst whose peak is in the frame after its onset ends there (it
     * grew) and starts again at once, with the lookahead checked anew: one
     * burst, counted once. */
    if (!(s->burst_frames == 1 && s->burst_ended == t)) s->bursts++;
    s->burst_on = true;
    s->burst_frames = 0;
}

static float power_of(const vx_enhance_spectral *s, vx_complex *const *spec, float *out) {
    float inv_ch = 1.0f / (float)s->channels, total = 0;
    for (int k = 0; k < s->bins; k++) {
        float p = 0;
        for (int c = 0; c < s->channels; c++) p += spec[c][k].re * spec[c][k].re + spec[c][k].im * spec[c][k].im;
        out[k] = p * inv_ch * s->hp[k] * s->hp[k];
        total += out[k];
    }
    return total;
}

void vx_enhance_spectral_process(vx_enhance_spectral *s, float *const *io) {
    int nb = s->bins;
    int slot = (int)(s->analysed % (LOOK + 1));
    for (int c = 0; c < s->channels; c++) vx_stft_analyze(s->stft[c], io[c], s->ring[slot][c]);
    s->energy[slot] = power_of(s, s->ring[slot], s->pring[slot]);
    if (s->analysed++ < LOOK) {
        /* The first frames wait for their lookahead: emit the (silent)
         * output of empty frames before them. */
        vx_complex *zero = s->ring[LOOK][0];
        memset(zero, 0, (size_t)nb * sizeof(vx_complex));
        for (int c = 0; c < s->channels; c++) vx_stft_synthesize(s->stft[c], zero, io[c]);
        return;
    }
    int64_t t = s->frames; /* == analysed - 1 - LOOK */
    int cur = (int)(t % (LOOK + 1));
    s->power = s->pring[cur];
    for (int c = 0; c < s->channels; c++) s->spec[c] = s->ring[cur][c];
    float total = s->energy[cur];
    bool gains = false;
    if (s->o.denoise) {
        /* Frames that still overlap the leading padding hold less energy
         * than the input really has: scale them up for the statistics, and
         * skip those that are mostly padding. Digital silence says nothing
         * about the noise and is skipped too. */
        float share = s->frames < s->ramp_frames ? s->ramp[s->frames] : 1.0f;
        if (share >= 0.3f && total <= s->silence * share && !s->tracking) s->seen_silence = true;
        /* A sudden jump in level (a knock, a door, a word onset) holds the
         * noise estimate for a moment: impulsive sounds must not raise it. */
        float before = s->level_hist[s->frames % LEVEL_HIST];
        s->level_hist[s->frames % LEVEL_HIST] = total;
        if (s->frames >= LEVEL_HIST && total > ONSET_JUMP * before) s->hold = s->hold_frames;
        bool hold = s->hold > 0;
        if (s->hold > 0) s->hold--;
        if (share >= 0.3f && total > s->silence * share && !(hold && s->tracking)) {
            if (share < 1.0f) {
                for (int k = 0; k < nb; k++) s->gain[k] = s->power[k] / share; /* scratch */
                track_noise(s, s->gain);
            } else {
                track_noise(s, s->power);
            }
        }
        if (s->tracking) {
            if (s->frames >= 2) track_bursts(s, t);
            compute_gains(s);
            gains = true;
        }
    }
    double in = 0, out = 0;
    for (int k = 0; k < nb; k++) {
        float g = (gains ? s->gain[k] : 1.0f) * s->hp[k];
        for (int c = 0; c < s->channels; c++) {
            s->spec[c][k].re *= g;
            s->spec[c][k].im *= g;
        }
        if (gains) {
            in += s->power[k];
            out += (double)s->power[k] * s->gain[k] * s->gain[k];
        }
    }
    s->sum_in += in;
    s->sum_out += out;
    for (int c = 0; c < s->channels; c++) vx_stft_synthesize(s->stft[c], s->spec[c], io[c]);
    s->e_prev[1] = s->e_prev[0];
    s->e_prev[0] = total;
    s->frames++;
}

void vx_enhance_spectral_get_stats(const vx_enhance_spectral *s, vx_enhance_spectral_stats *st) {
    memset(st, 0, sizeof *st);
    st->frames = s->frames;
    st->bursts = s->bursts;
    st->snr_db = NAN;
    if (s->sum_noise > 0 && s->sum_speech > 0) st->snr_db = 10 * log10(s->sum_speech / s->sum_noise);
    st->mean_attenuation_db = s->sum_out > 0 && s->sum_in > 0 ? 10 * log10(s->sum_in / s->sum_out) : 0;
}
