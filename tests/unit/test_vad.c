/* test_vad.c - the voice activity detector (src/audio/vad.c) on synthetic
 * signals whose answer is known (silence, a speech-like harmonic complex,
 * white and pink noise, a steady voiced drone that sinks to its adaptive
 * floor), its frame bookkeeping, and the segment rules
 * (threshold, min speech, min silence, padding) on constructed sequences. */
#include <math.h>
#include <stdlib.h>
#include "audio/vad.h"
#include "test.h"

#define RATE 16000

typedef struct probs {
    double *p;
    size_t n, cap;
    int64_t next_index;
    int out_of_order;
} probs;

static int collect(void *user, const vx_vad_frame *f, vx_err *err) {
    probs *c = user;
    if (f->index != c->next_index) c->out_of_order++;
    c->next_index = f->index + 1;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 256;
        c->p = realloc(c->p, c->cap * sizeof *c->p);
    }
    c->p[c->n++] = f->probability;
    return 0;
}

/* Runs the detector over x in blocks of `block` samples. */
static void run(const float *x, size_t n, size_t block, probs *out) {
    vx_err err = {0};
    vx_vad *v = vx_vad_new(RATE, &err);
    if (!v) return;
    for (size_t i = 0; i < n; i += block) vx_vad_process(v, x + i, i + block <= n ? block : n - i, collect, out, &err);
    vx_vad_flush(v, collect, out, &err);
    vx_vad_free(v);
}

static double mean_between(const probs *c, double from_s, double to_s) {
    size_t a = (size_t)(from_s * 100), b = (size_t)(to_s * 100);
    double s = 0;
    for (size_t i = a; i < b && i < c->n; i++) s += c->p[i];
    return b > a ? s / (double)(b - a) : 0;
}

static double share_at_least(const probs *c, double thr) {
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++) k += c->p[i] >= thr;
    return c->n ? (double)k / (double)c->n : 0;
}

static uint32_t rng_state = 12345;
static double uniform(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return ((rng_state >> 8) + 0.5) / 16777216.0;
}
static double gauss(void) { return sqrt(-2.0 * log(uniform())) * cos(2.0 * M_PI * uniform()); }

/* Speech-like: a harmonic complex (f0 gliding 100-150 Hz) under two moving
 * formant-like peaks, amplitude-modulated at a syllable rate of 4 Hz. */
static void speech_like(float *x, size_t n, double level) {
    double phase = 0;
    for (size_t i = 0; i < n; i++) {
        double t = (double)i / RATE;
        double f0 = 125 + 25 * sin(2 * M_PI * 0.7 * t);
        phase += 2 * M_PI * f0 / RATE;
        double f1 = 500 + 200 * sin(2 * M_PI * 3 * t), f2 = 1500 + 400 * sin(2 * M_PI * 2.1 * t);
        double s = 0;
        for (int h = 1; h * f0 < 3800; h++) {
            double f = h * f0;
            double g = exp(-pow((f - f1) / 150, 2)) + 0.5 * exp(-pow((f - f2) / 250, 2)) + 0.02;
            s += g * sin(h * phase);
        }
        double env = 0.55 + 0.45 * sin(2 * M_PI * 4 * t);
        x[i] = (float)(level * env * s);
    }
}

static void test_silence_has_speech_probability_below_0_1(void) {
    size_t n = 3 * RATE;
    float *x = calloc(n, sizeof *x);
    probs c = {0};
    run(x, n, 1000, &c);
    CHECK_EQ_INT(c.n, 300);
    for (size_t i = 0; i < c.n; i++) CHECK(c.p[i] < 0.1);
    free(c.p);
    free(x);
}

static void test_frames_cover_the_input_in_order_whatever_the_blocks(void) {
    size_t n = 12345; /* 77.15 frames of 160 */
    float *x = calloc(n, sizeof *x);
    size_t blocks[] = {1, 7, 160, 161, 4096, 20000};
    for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++) {
        probs c = {0};
        run(x, n, blocks[b], &c);
        CHECK_EQ_INT(c.n, 78);
        CHECK_EQ_INT(c.out_of_order, 0);
        free(c.p);
    }
    free(x);
}

static void test_speech_like_signal_is_detected_and_its_surroundings_are_not(void) {
    size_t n = 6 * RATE;
    float *x = calloc(n, sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = (float)(0.001 * gauss()); /* -60 dBFS floor */
    float *s = calloc(3 * RATE, sizeof *s);
    speech_like(s, 3 * RATE, 0.05);
    for (size_t i = 0; i < 3 * RATE; i++) x[2 * RATE + i] += s[i];
    probs c = {0};
    run(x, n, 4096, &c);
    CHECK(mean_between(&c, 2.2, 4.8) > 0.9);
    CHECK(mean_between(&c, 0.3, 1.8) < 0.1);
    CHECK(mean_between(&c, 5.3, 6.0) < 0.1);
    free(c.p);
    free(s);
    free(x);
}

static void test_white_noise_alone_is_not_speech(void) {
    size_t n = 8 * RATE;
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = (float)(0.1 * gauss());
    probs c = {0};
    run(x, n, 4096, &c);
    CHECK(share_at_least(&c, 0.5) < 0.05);
    free(c.p);
    free(x);
}

static void test_pink_noise_alone_is_not_speech(void) {
    size_t n = 8 * RATE;
    float *x = malloc(n * sizeof *x);
    double b0 = 0, b1 = 0, b2 = 0; /* Paul Kellet's economy 1/f filter */
    for (size_t i = 0; i < n; i++) {
        double w = gauss();
        b0 = 0.99765 * b0 + w * 0.0990460;
        b1 = 0.96300 * b1 + w * 0.2965164;
        b2 = 0.57000 * b2 + w * 1.0526913;
        x[i] = (float)(0.05 * (b0 + b1 + b2 + w * 0.1848));
    }
    probs c = {0};
    run(x, n, 4096, &c);
    CHECK(share_at_least(&c, 0.5) < 0.05);
    free(c.p);
    free(x);
}

/* Mean of the long-term features over frames [from_s, to_s). */
typedef struct lt_means {
    double from_s, to_s, modulation, voicing_rel;
    int n;
} lt_means;

static int collect_lt(void *user, const vx_vad_frame *f, vx_err *err) {
    lt_means *m = user;
    double t = (double)f->index / 100.0;
    if (t >= m->from_s && t < m->to_s) {
        m->modulation += f->modulation;
        m->voicing_rel += f->voicing_rel;
        m->n++;
    }
    return 0;
}

static void lt_of(const float *x, size_t n, lt_means *m) {
    vx_err err = {0};
    vx_vad *v = vx_vad_new(RATE, &err);
    if (!v) return;
    vx_vad_process(v, x, n, collect_lt, m, &err);
    vx_vad_flush(v, collect_lt, m, &err);
    vx_vad_free(v);
    if (m->n) {
        m->modulation /= m->n;
        m->voicing_rel /= m->n;
    }
}

static void test_a_steady_voiced_drone_sinks_to_its_floor_and_syllables_stand_out(void) {
    /* Many talkers blur into a steady voiced drone: voiced, but with no
     * syllabic swing, and its voicing becomes its own adaptive floor. */
    size_t n = 7 * RATE;
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) {
        double t = (double)i / RATE, s = 0;
        for (int h = 1; h * 140 < 3800; h++) s += sin(2 * M_PI * 140 * h * t) / h;
        x[i] = (float)(0.05 * s + 0.001 * gauss());
    }
    lt_means drone = {.from_s = 4.5, .to_s = 6.5};
    lt_of(x, n, &drone);
    REQUIRE(drone.n > 0);
    if (drone.modulation > 1 || drone.voicing_rel > 0.05)
        fprintf(stderr, "  drone: modulation %.2f dB, voicing_rel %.3f\n", drone.modulation, drone.voicing_rel);
    CHECK(drone.modulation < 1.0);
    CHECK(drone.voicing_rel < 0.05);
    /* A talker after 2 s of room noise: syllables swing the level, and the
     * voicing stands well over the floor the noise set. */
    for (size_t i = 0; i < n; i++) x[i] = (float)(0.001 * gauss());
    float *s = malloc(4 * RATE * sizeof *s);
    speech_like(s, 4 * RATE, 0.05);
    for (size_t i = 0; i < 4 * (size_t)RATE; i++) x[2 * RATE + i] += s[i];
    lt_means talk = {.from_s = 2.5, .to_s = 5.5};
    lt_of(x, n, &talk);
    REQUIRE(talk.n > 0);
    if (talk.modulation < 3 || talk.voicing_rel < 0.2)
        fprintf(stderr, "  talker: modulation %.2f dB, voicing_rel %.3f\n", talk.modulation, talk.voicing_rel);
    CHECK(talk.modulation >= 3.0);
    CHECK(talk.voicing_rel >= 0.2);
    free(s);
    free(x);
}

static void test_unsupported_rates_are_refused(void) {
    vx_err err = {0};
    CHECK(vx_vad_new(4000, &err) == NULL);
    CHECK_EQ_STR(err.code, "invalid_sample_rate");
    vx_vad *v = vx_vad_new(44100, &err);
    REQUIRE(v != NULL);
    CHECK_EQ_INT(vx_vad_hop(v), 441);
    CHECK(vx_vad_latency(v) > 0);
    vx_vad_free(v);
}

/* ---- segment rules on probability sequences (10 ms frames) ---- */
typedef struct segs {
    vx_vad_segment s[16];
    int n;
} segs;

static int keep(void *user, const vx_vad_segment *g, vx_err *err) {
    segs *c = user;
    if (c->n < 16) c->s[c->n++] = *g;
    return 0;
}

/* on 300 ms | off 200 ms | on 400 ms | off 500 ms | on 100 ms | off 1 s: 2.5 s. */
static segs segment_pattern(int min_speech, int min_silence, int pad) {
    static const struct { int frames; double p; } pattern[] = {{30, 0.9}, {20, 0.1}, {40, 0.9}, {50, 0.1}, {10, 0.9}, {100, 0.1}};
    segs out = {0};
    vx_err err = {0};
    vx_vad_segment_config cfg = {.threshold = 0.5, .min_speech_ms = min_speech, .min_silence_ms = min_silence,
                                 .pad_ms = pad, .frame_s = 0.01};
    vx_vad_segmenter *s = vx_vad_segmenter_new(&cfg, &err);
    if (!s) return out;
    for (size_t i = 0; i < sizeof pattern / sizeof pattern[0]; i++)
        for (int k = 0; k < pattern[i].frames; k++) vx_vad_segmenter_push(s, pattern[i].p, keep, &out, &err);
    vx_vad_segmenter_finish(s, 2.5, keep, &out, &err);
    vx_vad_segmenter_free(s);
    return out;
}

#define NEAR(a, b) (fabs((a) - (b)) < 1e-6)

static void test_short_pauses_join_and_short_speech_is_dropped(void) {
    segs g = segment_pattern(250, 300, 0);
    REQUIRE(g.n == 1);
    CHECK(NEAR(g.s[0].start_s, 0.0) && NEAR(g.s[0].end_s, 0.9));
    CHECK(NEAR(g.s[0].confidence, (30 * 0.9 + 20 * 0.1 + 40 * 0.9) / 90));
}

static void test_pauses_of_min_silence_split_segments(void) {
    segs g = segment_pattern(250, 200, 0);
    REQUIRE(g.n == 2);
    CHECK(NEAR(g.s[0].start_s, 0.0) && NEAR(g.s[0].end_s, 0.3));
    CHECK(NEAR(g.s[1].start_s, 0.5) && NEAR(g.s[1].end_s, 0.9));
    CHECK(NEAR(g.s[1].confidence, 0.9));
}

static void test_min_speech_zero_keeps_the_blip(void) {
    segs g = segment_pattern(0, 300, 0);
    REQUIRE(g.n == 2);
    CHECK(NEAR(g.s[1].start_s, 1.4) && NEAR(g.s[1].end_s, 1.5));
    segs h = segment_pattern(100, 300, 0); /* exactly min_speech long: kept */
    CHECK_EQ_INT(h.n, 2);
    segs k = segment_pattern(110, 300, 0);
    CHECK_EQ_INT(k.n, 1);
}

static void test_padding_widens_clamps_and_merges(void) {
    segs g = segment_pattern(0, 300, 100);
    REQUIRE(g.n == 2);
    CHECK(NEAR(g.s[0].start_s, 0.0)); /* clamped at 0 */
    CHECK(NEAR(g.s[0].end_s, 1.0));
    CHECK(NEAR(g.s[1].start_s, 1.3) && NEAR(g.s[1].end_s, 1.6));
    segs m = segment_pattern(0, 300, 250); /* 1.15 touches 1.15: one segment */
    REQUIRE(m.n == 1);
    CHECK(NEAR(m.s[0].start_s, 0.0) && NEAR(m.s[0].end_s, 1.75));
    CHECK(NEAR(m.s[0].confidence, (30 * 0.9 + 20 * 0.1 + 40 * 0.9 + 10 * 0.9) / 100));
    segs e = segment_pattern(0, 300, 2000); /* clamped at the end of the audio */
    REQUIRE(e.n == 1);
    CHECK(NEAR(e.s[0].end_s, 2.5));
}

static void test_speech_running_to_the_end_is_closed_by_finish(void) {
    vx_err err = {0};
    vx_vad_segment_config cfg = {.threshold = 0.5, .min_speech_ms = 0, .min_silence_ms = 300, .pad_ms = 50, .frame_s = 0.01};
    vx_vad_segmenter *s = vx_vad_segmenter_new(&cfg, &err);
    REQUIRE(s != NULL);
    segs g = {0};
    for (int i = 0; i < 100; i++) vx_vad_segmenter_push(s, i >= 40 ? 0.8 : 0.2, keep, &g, &err);
    CHECK_EQ_INT(g.n, 0);
    vx_vad_segmenter_finish(s, 0.995, keep, &g, &err);
    REQUIRE(g.n == 1);
    CHECK(NEAR(g.s[0].start_s, 0.35) && NEAR(g.s[0].end_s, 0.995));
    vx_vad_segmenter_free(s);
    cfg.threshold = 1.5;
    CHECK(vx_vad_segmenter_new(&cfg, &err) == NULL);
    CHECK_EQ_STR(err.code, "invalid_param");
}

TEST_MAIN(TEST_ENTRY(test_silence_has_speech_probability_below_0_1),
          TEST_ENTRY(test_a_steady_voiced_drone_sinks_to_its_floor_and_syllables_stand_out),
          TEST_ENTRY(test_frames_cover_the_input_in_order_whatever_the_blocks),
          TEST_ENTRY(test_speech_like_signal_is_detected_and_its_surroundings_are_not),
          TEST_ENTRY(test_white_noise_alone_is_not_speech), TEST_ENTRY(test_pink_noise_alone_is_not_speech),
          TEST_ENTRY(test_unsupported_rates_are_refused),
          TEST_ENTRY(test_short_pauses_join_and_short_speech_is_dropped),
          TEST_ENTRY(test_pauses_of_min_silence_split_segments), TEST_ENTRY(test_min_speech_zero_keeps_the_blip),
          TEST_ENTRY(test_padding_widens_clamps_and_merges),
          TEST_ENTRY(test_speech_running_to_the_end_is_closed_by_finish))
