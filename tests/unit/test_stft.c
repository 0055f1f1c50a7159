/* test_stft.c - src/audio/stft.c: exact reconstruction through analysis and
 * overlap-add for the usual window/hop pairs and odd block sizes, bin scaling
 * of a sine, hop-level latency, analysis-only frame counts, callback errors
 * and config validation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "audio/stft.h"
#include "test.h"

static unsigned rng_state = 12345;
static float noise(void) {
    rng_state = rng_state * 1103515245u + 12345u;
    return (float)((rng_state >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}

/* Streams `n` random samples through process()+flush() in blocks of `block`
 * and returns the max abs error against the input (-1 on a length error). */
static double roundtrip_error(int frame, int hop, vx_stft_window w, size_t n, size_t block) {
    vx_err err;
    vx_stft *s = vx_stft_new(&(vx_stft_config){.frame = frame, .hop = hop, .window = w, .synthesis = true}, &err);
    if (!s) return -1;
    float *in = malloc(n * sizeof *in), *out = malloc((n + (size_t)frame * 2) * sizeof *out);
    float *tmp = malloc((block + (size_t)frame) * sizeof *tmp);
    for (size_t i = 0; i < n; i++) in[i] = noise();
    size_t got = 0;
    for (size_t i = 0; i < n; i += block) {
        size_t k = n - i < block ? n - i : block;
        long w2 = vx_stft_process(s, in + i, k, NULL, NULL, tmp, &err);
        if (w2 < 0 || got + (size_t)w2 > n) { got = (size_t)-1; break; }
        memcpy(out + got, tmp, (size_t)w2 * sizeof *out);
        got += (size_t)w2;
    }
    double maxerr = -1;
    if (got != (size_t)-1) {
        long w2 = vx_stft_flush(s, NULL, NULL, out + got, &err);
        if (w2 >= 0 && got + (size_t)w2 == n) {
            maxerr = 0;
            for (size_t i = 0; i < n; i++) maxerr = fmax(maxerr, fabs((double)out[i] - in[i]));
        }
    }
    free(in);
    free(out);
    free(tmp);
    vx_stft_free(s);
    return maxerr;
}

static void test_unmodified_spectrum_reconstructs_input_exactly_and_aligned(void) {
    const struct { int frame, hop; vx_stft_window w; size_t block; } cases[] = {
        {512, 256, VX_STFT_WINDOW_SQRT_HANN, 4096}, {512, 128, VX_STFT_WINDOW_SQRT_HANN, 1},
        {256, 64, VX_STFT_WINDOW_HANN, 333},       {400, 160, VX_STFT_WINDOW_HAMMING, 1000},
        {64, 64, VX_STFT_WINDOW_RECT, 7},           {2048, 512, VX_STFT_WINDOW_SQRT_HANN, 100000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double e = roundtrip_error(cases[i].frame, cases[i].hop, cases[i].w, 10007, cases[i].block);
        if (!(e >= 0 && e < 1e-5)) fprintf(stderr, "  case %zu: error %g\n", i, e);
        CHECK(e >= 0 && e < 1e-5);
    }
}

static void test_input_shorter_than_a_frame_comes_back_whole(void) {
    double e = roundtrip_error(512, 128, VX_STFT_WINDOW_SQRT_HANN, 37, 5);
    CHECK(e >= 0 && e < 1e-5);
}

static void test_sine_at_bin_centre_lands_in_that_bin_with_documented_scale(void) {
    vx_err err;
    vx_stft *s = vx_stft_new(&(vx_stft_config){.frame = 512, .hop = 512, .window = VX_STFT_WINDOW_HANN}, &err);
    REQUIRE(s);
    CHECK_EQ_INT(vx_stft_bins(s), 257);
    float in[512];
    vx_complex spec[257];
    const int k = 40;
    for (int i = 0; i < 512; i++) in[i] = 0.5f * (float)sin(2 * M_PI * k * i / 512.0);
    vx_stft_analyze(s, in, spec);
    double wsum = 0;
    for (int i = 0; i < 512; i++) wsum += vx_stft_window_values(s)[i];
    int best = 0;
    double bestmag = 0;
    for (int b = 0; b < 257; b++) {
        double m = hypot(spec[b].re, spec[b].im);
        if (m > bestmag) { bestmag = m; best = b; }
    }
    CHECK_EQ_INT(best, k);
    CHECK(spec[0].im == 0 && spec[256].im == 0);
    CHECK(fabs(bestmag - 0.5 * wsum / 2) < 1e-3 * bestmag);
    /* Hann leaks into the neighbours only; far bins stay near zero. */
    CHECK(hypot(spec[k + 5].re, spec[k + 5].im) < 1e-4 * bestmag);
    vx_stft_free(s);
}

static void test_hop_level_synthesis_delays_by_frame_minus_hop(void) {
    vx_err err;
    vx_stft *s = vx_stft_new(&(vx_stft_config){.frame = 256, .hop = 64, .window = VX_STFT_WINDOW_SQRT_HANN,
                                               .synthesis = true}, &err);
    REQUIRE(s);
    CHECK_EQ_INT(vx_stft_latency(s), 192);
    enum { N = 64 * 40 };
    static float in[N], out[N];
    vx_complex spec[129];
    for (int i = 0; i < N; i++) in[i] = noise();
    for (int h = 0; h < N / 64; h++) {
        vx_stft_analyze(s, in + h * 64, spec);
        vx_stft_synthesize(s, spec, out + h * 64);
    }
    double maxerr = 0;
    for (int i = 192; i < N; i++) maxerr = fmax(maxerr, fabs((double)out[i] - in[i - 192]));
    CHECK(maxerr < 1e-5);
    vx_stft_free(s);
}

typedef struct counter {
    long calls, fail_at;
    int bins;
} counter;

static int count_frames(void *user, vx_complex *spec, int bins, long index, vx_err *err) {
    counter *c = user;
    if (index != c->calls) return vx_err_set(err, VX_E_INTERNAL, "bad_index", "index out of order");
    c->calls++;
    c->bins = bins;
    if (c->fail_at >= 0 && index == c->fail_at) return vx_err_set(err, VX_E_INTERNAL, "stop", "stop here");
    return 0;
}

static void test_analysis_only_sees_every_sample_in_full_overlap(void) {
    vx_err err;
    vx_stft *s = vx_stft_new(&(vx_stft_config){.frame = 400, .hop = 160, .window = VX_STFT_WINDOW_HAMMING}, &err);
    REQUIRE(s);
    static float in[1000];
    counter c = {.fail_at = -1};
    CHECK_EQ_INT(vx_stft_process(s, in, 1000, count_frames, &c, NULL, &err), 0);
    CHECK_EQ_INT(c.calls, 6); /* 1000 / 160 whole hops */
    CHECK_EQ_INT(vx_stft_flush(s, count_frames, &c, NULL, &err), 0);
    /* ceil((1000 + 240) / 160) = 8 frames: the last covers sample 999 fully. */
    CHECK_EQ_INT(c.calls, 8);
    CHECK_EQ_INT(c.bins, 201);
    vx_stft_reset(s);
    c.calls = 0;
    CHECK_EQ_INT(vx_stft_process(s, in, 160, count_frames, &c, NULL, &err), 0);
    CHECK_EQ_INT(c.calls, 1);
    vx_stft_free(s);
}

static void test_callback_failure_stops_processing_with_its_error(void) {
    vx_err err;
    vx_stft *s = vx_stft_new(&(vx_stft_config){.frame = 64, .hop = 32, .synthesis = true}, &err);
    REQUIRE(s);
    static float in[640], out[640 + 64];
    counter c = {.fail_at = 3};
    vx_err_clear(&err);
    CHECK_EQ_INT(vx_stft_process(s, in, 640, count_frames, &c, out, &err), -1);
    CHECK_EQ_STR(err.code, "stop");
    CHECK_EQ_INT(c.calls, 4);
    vx_stft_free(s);
}

static void test_zeroed_spectrum_gives_silence(void) {
    vx_err err;
    vx_stft *s = vx_stft_new(&(vx_stft_config){.frame = 128, .hop = 32, .synthesis = true}, &err);
    REQUIRE(s);
    float in[32], out[32];
    vx_complex spec[65];
    double energy = 0;
    for (int h = 0; h < 20; h++) {
        for (int i = 0; i < 32; i++) in[i] = noise();
        vx_stft_analyze(s, in, spec);
        memset(spec, 0, sizeof spec);
        vx_stft_synthesize(s, spec, out);
        for (int i = 0; i < 32; i++) energy += (double)out[i] * out[i];
    }
    CHECK(energy == 0);
    vx_stft_free(s);
}

static void test_bad_configs_are_refused_with_invalid_stft(void) {
    const vx_stft_config bad[] = {
        {.frame = 511, .hop = 128},
        {.frame = 8, .hop = 4},
        {.frame = 512, .hop = 0},
        {.frame = 512, .hop = 513},
        {.frame = 512, .hop = 512, .window = VX_STFT_WINDOW_HANN, .synthesis = true},
        {.frame = 512, .hop = 128, .window = (vx_stft_window)42},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vx_err err;
        vx_err_clear(&err);
        vx_stft *s = vx_stft_new(&bad[i], &err);
        CHECK(s == NULL);
        CHECK_EQ_STR(err.code, "invalid_stft");
        vx_stft_free(s);
    }
    /* Hann with hop = frame is fine when only analysing. */
    vx_err err;
    vx_stft *s = vx_stft_new(&(vx_stft_config){.frame = 512, .hop = 512, .window = VX_STFT_WINDOW_HANN}, &err);
    CHECK(s != NULL);
    vx_stft_free(s);
}

TEST_MAIN(TEST_ENTRY(test_unmodified_spectrum_reconstructs_input_exactly_and_aligned),
          TEST_ENTRY(test_input_shorter_than_a_frame_comes_back_whole),
          TEST_ENTRY(test_sine_at_bin_centre_lands_in_that_bin_with_documented_scale),
          TEST_ENTRY(test_hop_level_synthesis_delays_by_frame_minus_hop),
          TEST_ENTRY(test_analysis_only_sees_every_sample_in_full_overlap),
          TEST_ENTRY(test_callback_failure_stops_processing_with_its_error),
          TEST_ENTRY(test_zeroed_spectrum_gives_silence),
          TEST_ENTRY(test_bad_configs_are_refused_with_invalid_stft))
