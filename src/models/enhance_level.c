/* enhance_level.c - the level stage of `enhance`: loudness normalisation to
 * an integrated target (EBU R128 via libebur128) and a true-peak limiter.
 * Bounded design: cleaned audio is held in a FIFO of at most `window_s`;
 * audio leaves the FIFO with the gain implied by the integrated loudness of
 * everything seen so far (so any input no longer than the window gets one
 * exact gain; longer ones a slowly settling gain), raised by the loudness
 * the limiter will take (a dry run of the limiter over the window). The
 * limiter estimates inter-sample peaks by polyphase interpolation to 192 kHz
 * (at least 4x) and applies a smooth lookahead gain that never lets them
 * exceed the ceiling. Not thread-safe. */
#include <ebur128.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "enhance_int.h"

#define MAX_CHANNELS 8
#define TP_HALF 8              /* interpolation taps either side */
#define TP_PHASES_MAX 12       /* oversampling: to 192 kHz (as meters do), at least 4x */
#define TP_TARGET_RATE 192000
#define LIMIT_LOOKAHEAD_S 0.001  /* attack: a linear ramp this long before a peak */
#define LIMIT_RELEASE_S 0.01   /* short: touches little of the waveform (docs/enhance.md) */
#define LIMIT_MARGIN_DB 0.3    /* our interpolator vs. the meter's */
#define GAIN_MAX_DB 30.0
#define GAIN_MIN_DB -30.0
#define GAIN_SLEW_DB_PER_S 1.0 /* how fast a long input's gain may move */
#define RING 1024              /* limiter history (frames); > 2*TP_HALF + 2*lookahead */
#define MAX_LOOKAHEAD 480
#define DRY_ROUNDS 3
#define OUT_CHUNK 1024

/* Running true-peak estimate of a stream (interpolated near the max). */
typedef struct peak_tracker {
    float hist[2 * TP_HALF][MAX_CHANNELS];
    int64_t n;
    float peak;
} peak_tracker;

/* The limiter proper: a ring of gained frames, the gain each needs, and
 * the smoothed gain. Separate from the level stage so a scratch copy can
 * dry-run a window to measure the loudness the limiting will take. */
typedef struct limiter {
    const float (*taps)[2 * TP_HALF];
    int phases;
    int channels, lookahead;
    float ceiling, release_step;
    float hist[RING][MAX_CHANNELS];   /* gained input */
    float greq[RING], m1[RING];
    double box_sum;
    float release_gain;
    int64_t n_in;                     /* frames entered */
    int64_t last_over;                /* newest position needing reduction */
    double max_reduction_db;
    int64_t limited;
} limiter;

struct vx_enhance_level {
    vx_enhance_level_opts o;
    int rate, channels;
    ebur128_state *meter_in, *meter_pre, *meter_out, *meter_dry;
    /* loudness FIFO (interleaved) */
    float *fifo;
    size_t fifo_cap, fifo_head, fifo_len; /* in frames */
    double gain_db;
    double limit_loss_db;  /* loudness the limiter takes at the target gain (dry run) */
    bool gain_set;
    peak_tracker pre;   /* cleaned audio before the gain */
    peak_tracker post;  /* the emitted output (for the report) */
    float taps[TP_PHASES_MAX][2 * TP_HALF];
    int phases;
    limiter lim, *dry; /* dry: scratch limiter for the loudness dry run */
    float out[OUT_CHUNK * MAX_CHANNELS];
    size_t out_len;
    vx_enhance_level_stats st;
};

static void limiter_init(limiter *m, const vx_enhance_level *l, double lookahead_s, double release_s) {
    memset(m, 0, sizeof *m);
    m->taps = (const float (*)[2 * TP_HALF])l->taps;
    m->phases = l->phases;
    m->channels = l->channels;
    m->ceiling = (float)pow(10.0, (l->o.ceiling_dbtp - LIMIT_MARGIN_DB) / 20.0);
    m->lookahead = (int)ceil(lookahead_s * l->rate);
    if (m->lookahead < 4) m->lookahead = 4;
    if (m->lookahead > MAX_LOOKAHEAD) m->lookahead = MAX_LOOKAHEAD;
    m->release_gain = 1.0f;
    m->last_over = INT64_MIN;
    m->release_step = (float)(1.0 - exp(-1.0 / (release_s * l->rate)));
    for (int i = 0; i < RING; i++) m->greq[i] = m->m1[i] = 1.0f;
    m->box_sum = m->lookahead + 1;
}

vx_enhance_level *vx_enhance_level_new(int rate, int channels, const vx_enhance_level_opts *o, vx_err *err) {
    if (channels < 1 || channels > MAX_CHANNELS) {
        vx_err_set(err, VX_E_UNPROCESSABLE, "param_out_of_range", "enhance handles 1 to 8 channels");
        return NULL;
    }
    vx_enhance_level *l = calloc(1, sizeof *l);
    if (!l) goto oom;
    l->o = *o;
    l->rate = rate;
    l->channels = channels;
    l->meter_in = ebur128_init((unsigned)channels, (unsigned long)rate, EBUR128_MODE_I);
    l->meter_pre = ebur128_init((unsigned)channels, (unsigned long)rate, EBUR128_MODE_I);
    l->meter_out = ebur128_init((unsigned)channels, (unsigned long)rate, EBUR128_MODE_I);
    if (!l->meter_in || !l->meter_pre || !l->meter_out) goto oom;
    if (o->normalize) {
        l->fifo_cap = (size_t)(o->window_s * rate);
        if (l->fifo_cap < 1) l->fifo_cap = 1;
        l->fifo = malloc(l->fifo_cap * (size_t)channels * sizeof(float));
        if (!l->fifo) goto oom;
    }
    /* Inter-sample peaks of audio with content near Nyquist (16 kHz speech
     * with clicks) fall between 4x points: oversample to 192 kHz like a
     * BS.1770 meter working at that rate would. */
    l->phases = (TP_TARGET_RATE + rate - 1) / rate;
    if (l->phases < 4) l->phases = 4;
    if (l->phases > TP_PHASES_MAX) l->phases = TP_PHASES_MAX;
    for (int p = 0; p < l->phases; p++) {
        double frac = (double)p / l->phases;
        for (int t = 0; t < 2 * TP_HALF; t++) {
            double x = (double)(t - TP_HALF + 1) - frac; /* tap t weighs sample m - TP_HALF + 1 + t */
            double sinc = fabs(x) < 1e-9 ? 1.0 : sin(M_PI * x) / (M_PI * x);
            double w = 0.5 + 0.5 * cos(M_PI * x / (TP_HALF + 0.5));
            l->taps[p][t] = (float)(sinc * w);
        }
    }
    limiter_init(&l->lim, l, LIMIT_LOOKAHEAD_S, LIMIT_RELEASE_S);
    if (o->normalize && o->limit) {
        l->dry = malloc(sizeof *l->dry);
        l->meter_dry = ebur128_init((unsigned)channels, (unsigned long)rate, EBUR128_MODE_I);
        if (!l->dry || !l->meter_dry) goto oom;
        *l->dry = l->lim;
    }
    l->st.min_gain_db = INFINITY;
    l->st.max_gain_db = -INFINITY;
    return l;
oom:
    vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
    vx_enhance_level_free(l);
    return NULL;
}

void vx_enhance_level_free(vx_enhance_level *l) {
    if (!l) return;
    if (l->meter_in) ebur128_destroy(&l->meter_in);
    if (l->meter_pre) ebur128_destroy(&l->meter_pre);
    if (l->meter_out) ebur128_destroy(&l->meter_out);
    if (l->meter_dry) ebur128_destroy(&l->meter_dry);
    free(l->dry);
    free(l->fifo);
    free(l);
}

/* Frames between a sample entering the limiter and leaving it. */
int vx_enhance_level_delay(const vx_enhance_level *l) { return l->o.limit ? TP_HALF + l->lim.lookahead : 0; }

void vx_enhance_level_measure_input(vx_enhance_level *l, const float *pcm, size_t frames) {
    ebur128_add_frames_float(l->meter_in, pcm, frames);
}

static void track_peak(const vx_enhance_level *l, peak_tracker *t, const float *frame);

void vx_enhance_level_measure_output(vx_enhance_level *l, const float *pcm, size_t frames) {
    ebur128_add_frames_float(l->meter_out, pcm, frames);
    for (size_t k = 0; k < frames; k++) track_peak(l, &l->post, pcm + k * (size_t)l->channels);
}

static int flush_out(vx_enhance_level *l, vx_enhance_emit_fn emit, void *user, vx_err *err) {
    if (l->out_len == 0) return 0;
    int rc = emit(user, l->out, l->out_len, err);
    l->out_len = 0;
    return rc;
}

static int put_out(vx_enhance_level *l, const float *frame, vx_enhance_emit_fn emit, void *user, vx_err *err) {
    memcpy(l->out + l->out_len * (size_t)l->channels, frame, (size_t)l->channels * sizeof(float));
    if (++l->out_len == OUT_CHUNK) return flush_out(l, emit, user, err);
    return 0;
}

/* Largest estimated true peak around history position m (all channels). */
static float true_peak_at(const limiter *l, int64_t m) {
    float peak = 0;
    for (int c = 0; c < l->channels; c++) {
        float a = fabsf(l->hist[m & (RING - 1)][c]), b = fabsf(l->hist[(m + 1) & (RING - 1)][c]);
        peak = fmaxf(peak, a);
        /* Inter-sample overshoot of band-limited audio stays within a few
         * dB: only interpolate samples that could reach the ceiling. */
        if (fmaxf(a, b) < 0.5f * l->ceiling) continue;
        for (int p = 1; p < l->phases; p++) {
            float y = 0;
            for (int t = 0; t < 2 * TP_HALF; t++) y += l->taps[p][t] * l->hist[(m - TP_HALF + 1 + t) & (RING - 1)][c];
            peak = fmaxf(peak, fabsf(y));
        }
    }
    return peak;
}

/* One gained frame into the limiter. Returns true and fills out with the
 * frame the lookahead behind once there is one. */
static bool limiter_step(limiter *l, const float *frame, float *out) {
    int64_t n = l->n_in++;
    memcpy(l->hist[n & (RING - 1)], frame, (size_t)l->channels * sizeof(float));
    int64_t m = n - TP_HALF; /* newest position with full interpolation support */
    if (m < 0) return false;
    float tp = true_peak_at(l, m);
    l->greq[m & (RING - 1)] = tp > l->ceiling ? l->ceiling / tp : 1.0f;
    if (tp > l->ceiling) l->last_over = m;
    int la = l->lookahead;
    int64_t i = m - la; /* m1[i] = min(greq[i..i+la]) is now known */
    /* The box average for output sample 0 spans m1[-la..0]: those windows
     * reach into the first samples too, so they are computed (not assumed
     * to be 1) before anything is emitted. */
    if (i < -la) return false;
    float mn = 1.0f;
    if (l->last_over >= i) /* only scan windows that hold a reduction */
        for (int j = 0; j <= la; j++) {
            float g = l->greq[(i + j) & (RING - 1)];
            if (g < mn) mn = g;
        }
    l->box_sum += mn - l->m1[(i - la - 1) & (RING - 1)];
    l->m1[i & (RING - 1)] = mn;
    float b = (float)(l->box_sum / (la + 1));
    float r = l->release_gain + (1.0f - l->release_gain) * l->release_step;
    if (b < r) r = b;
    l->release_gain = r;
    if (i < 0) return false;
    for (int c = 0; c < l->channels; c++) out[c] = l->hist[i & (RING - 1)][c] * r;
    if (r < 0.9999f) {
        l->limited++;
        double red = -20 * log10(r);
        if (red > l->max_reduction_db) l->max_reduction_db = red;
    }
    return true;
}

/* One gained frame into the limiter; emits the frame lookahead behind. */
static int limit_frame(vx_enhance_level *l, const float *frame, vx_enhance_emit_fn emit, void *user, vx_err *err) {
    if (!l->o.limit) return put_out(l, frame, emit, user, err);
    float outf[MAX_CHANNELS];
    if (!limiter_step(&l->lim, frame, outf)) return 0;
    return put_out(l, outf, emit, user, err);
}

/* Loudness (LUFS) the limiter takes from the FIFO's audio at gain_db: a
 * scratch limiter runs over it (and its tail) into a scratch meter. */
static double dry_run_loss_db(vx_enhance_level *l, double gain_db) {
    limiter *d = l->dry;
    double la_s = (double)l->lim.lookahead / l->rate, rel_s = -1.0 / (log(1.0 - l->lim.release_step) * l->rate);
    limiter_init(d, l, la_s, rel_s);
    ebur128_state *m = l->meter_dry;
    /* a fresh meter per run: libebur128 has no reset */
    ebur128_destroy(&l->meter_dry);
    m = l->meter_dry = ebur128_init((unsigned)l->channels, (unsigned long)l->rate, EBUR128_MODE_I);
    if (!m) return 0.0;
    float g = (float)pow(10.0, gain_db / 20.0), in[MAX_CHANNELS], out[MAX_CHANNELS * 256];
    size_t n_out = 0, total = l->fifo_len + (size_t)vx_enhance_level_delay(l);
    for (size_t k = 0; k < total; k++) {
        if (k < l->fifo_len) {
            const float *src = l->fifo + ((l->fifo_head + k) % l->fifo_cap) * (size_t)l->channels;
            for (int c = 0; c < l->channels; c++) in[c] = src[c] * g;
        } else {
            memset(in, 0, sizeof in);
        }
        if (limiter_step(d, in, out + n_out * (size_t)l->channels) && ++n_out == 256) {
            ebur128_add_frames_float(m, out, n_out);
            n_out = 0;
        }
    }
    if (n_out) ebur128_add_frames_float(m, out, n_out);
    double lim;
    if (ebur128_loudness_global(m, &lim) != EBUR128_SUCCESS || !isfinite(lim)) return 0.0;
    double before;
    if (ebur128_loudness_global(l->meter_pre, &before) != EBUR128_SUCCESS || !isfinite(before)) return 0.0;
    /* meter_pre has seen exactly the FIFO's audio on the first release */
    double loss = before + gain_db - lim;
    return loss > 0 ? loss : 0.0;
}

/* Feeds one frame to a true-peak tracker. Interpolates only around
 * samples near the running peak: elsewhere the inter-sample value cannot
 * set a new maximum. */
static void track_peak(const vx_enhance_level *l, peak_tracker *t, const float *frame) {
    int slot = (int)(t->n++ % (2 * TP_HALF));
    memcpy(t->hist[slot], frame, (size_t)l->channels * sizeof(float));
    if (t->n < 2 * TP_HALF) {
        for (int c = 0; c < l->channels; c++) t->peak = fmaxf(t->peak, fabsf(frame[c]));
        return;
    }
    /* Interpolate between the two middle samples of the history. */
    int64_t base = t->n - 2 * TP_HALF;
    for (int c = 0; c < l->channels; c++) {
        float a = fabsf(t->hist[(base + TP_HALF - 1) % (2 * TP_HALF)][c]);
        float b = fabsf(t->hist[(base + TP_HALF) % (2 * TP_HALF)][c]);
        t->peak = fmaxf(t->peak, fmaxf(a, b));
        if (fmaxf(a, b) < 0.6f * t->peak) continue;
        for (int p = 1; p < l->phases; p++) {
            float y = 0;
            for (int k = 0; k < 2 * TP_HALF; k++) y += l->taps[p][k] * t->hist[(base + k) % (2 * TP_HALF)][c];
            t->peak = fmaxf(t->peak, fabsf(y));
        }
    }
}

/* Gain for the audio leaving the FIFO now: the loudness target (plus the
 * loudness the limiter will take), lowered where the peaks seen so far
 * would need more than max_limiting_db of limiting to stay under the
 * ceiling. */
static double current_gain_db(vx_enhance_level *l) {
    double lufs = -HUGE_VAL;
    if (ebur128_loudness_global(l->meter_pre, &lufs) != EBUR128_SUCCESS || !isfinite(lufs) || lufs < -70)
        return l->gain_set ? l->gain_db : 0.0;
    double g = l->o.target_lufs - lufs + l->limit_loss_db;
    if (l->o.limit && l->pre.peak > 0) {
        double room = l->o.ceiling_dbtp - LIMIT_MARGIN_DB - 20 * log10(l->pre.peak) + l->o.max_limiting_db;
        if (g > room) g = room;
    }
    if (g > GAIN_MAX_DB) g = GAIN_MAX_DB;
    if (g < GAIN_MIN_DB) g = GAIN_MIN_DB;
    return g;
}

static int release(vx_enhance_level *l, size_t frames, bool final, vx_enhance_emit_fn emit, void *user,
                   vx_err *err) {
    (void)final;
    double target = current_gain_db(l);
    if (!l->gain_set && l->dry) {
        /* The limiter lowers loudness with the peaks: measure how much on
         * the held audio and raise the gain by it (a few rounds: more gain,
         * more limiting). Later audio keeps this allowance. */
        for (int round = 0; round < DRY_ROUNDS; round++) {
            double loss = dry_run_loss_db(l, target);
            if (fabs(loss - l->limit_loss_db) < 0.05) break;
            l->limit_loss_db = loss;
            target = current_gain_db(l);
        }
    }
    if (!l->gain_set) {
        l->gain_db = target;
        l->gain_set = true;
    }
    /* Once audio has left with one gain, later gains move slowly so the
     * level does not pump. */
    double max_step = GAIN_SLEW_DB_PER_S / l->rate;
    float frame[MAX_CHANNELS];
    float g = (float)pow(10.0, l->gain_db / 20.0);
    for (size_t k = 0; k < frames; k++) {
        double d = target - l->gain_db;
        if (d > max_step) d = max_step;
        if (d < -max_step) d = -max_step;
        if (d != 0) {
            l->gain_db += d;
            g = (float)pow(10.0, l->gain_db / 20.0);
        }
        const float *src = l->fifo + l->fifo_head * (size_t)l->channels;
        for (int c = 0; c < l->channels; c++) frame[c] = src[c] * g;
        l->fifo_head = (l->fifo_head + 1) % l->fifo_cap;
        l->fifo_len--;
        if (limit_frame(l, frame, emit, user, err) != 0) return -1;
        if (k % 256 == 0) {
            if (l->gain_db < l->st.min_gain_db) l->st.min_gain_db = l->gain_db;
            if (l->gain_db > l->st.max_gain_db) l->st.max_gain_db = l->gain_db;
        }
    }
    if (frames > 0) {
        if (l->gain_db < l->st.min_gain_db) l->st.min_gain_db = l->gain_db;
        if (l->gain_db > l->st.max_gain_db) l->st.max_gain_db = l->gain_db;
    }
    return 0;
}

int vx_enhance_level_push(vx_enhance_level *l, const float *pcm, size_t frames, vx_enhance_emit_fn emit,
                          void *user, vx_err *err) {
    ebur128_add_frames_float(l->meter_pre, pcm, frames);
    int ch = l->channels;
    if (l->o.normalize && l->o.limit)
        for (size_t k = 0; k < frames; k++) track_peak(l, &l->pre, pcm + k * (size_t)ch);
    if (!l->o.normalize) {
        for (size_t k = 0; k < frames; k++)
            if (limit_frame(l, pcm + k * (size_t)ch, emit, user, err) != 0) return -1;
        return flush_out(l, emit, user, err);
    }
    for (size_t k = 0; k < frames; k++) {
        /* Full: release a slice (not one frame) so the loudness query and
         * the gain update stay off the per-sample path. */
        if (l->fifo_len == l->fifo_cap) {
            size_t slice = (size_t)l->rate / 10;
            if (slice < 1) slice = 1;
            if (slice > l->fifo_len) slice = l->fifo_len;
            if (release(l, slice, false, emit, user, err) != 0) return -1;
        }
        size_t tail = (l->fifo_head + l->fifo_len) % l->fifo_cap;
        memcpy(l->fifo + tail * (size_t)ch, pcm + k * (size_t)ch, (size_t)ch * sizeof(float));
        l->fifo_len++;
    }
    return flush_out(l, emit, user, err);
}

int vx_enhance_level_flush(vx_enhance_level *l, vx_enhance_emit_fn emit, void *user, vx_err *err) {
    if (l->o.normalize && release(l, l->fifo_len, true, emit, user, err) != 0) return -1;
    if (l->o.limit) {
        float zero[MAX_CHANNELS] = {0};
        int tail = vx_enhance_level_delay(l);
        for (int k = 0; k < tail; k++)
            if (limit_frame(l, zero, emit, user, err) != 0) return -1;
    }
    if (flush_out(l, emit, user, err) != 0) return -1;
    double v;
    l->st.input_lufs = ebur128_loudness_global(l->meter_in, &v) == EBUR128_SUCCESS ? v : -HUGE_VAL;
    l->st.pre_gain_lufs = ebur128_loudness_global(l->meter_pre, &v) == EBUR128_SUCCESS ? v : -HUGE_VAL;
    l->st.output_lufs = ebur128_loudness_global(l->meter_out, &v) == EBUR128_SUCCESS ? v : -HUGE_VAL;
    /* The last TP_HALF samples only ever had their sample peak counted. */
    l->st.output_true_peak_dbtp = l->post.peak > 0 ? 20 * log10(l->post.peak) : -HUGE_VAL;
    l->st.gain_db = l->gain_set ? l->gain_db : 0.0;
    l->st.limited_samples = l->lim.limited;
    l->st.limiter_max_reduction_db = l->lim.max_reduction_db;
    if (!isfinite(l->st.min_gain_db)) l->st.min_gain_db = l->st.max_gain_db = l->st.gain_db;
    return 0;
}

void vx_enhance_level_get_stats(const vx_enhance_level *l, vx_enhance_level_stats *st) { *st = l->st; }
