/* test_analyze.c - the `analyze` model through its vx_model face, on
 * signals whose answers are known: chunk counts and boundaries for odd
 * lengths, loudness of a calibrated sine (mono and stereo), peak and true
 * peak of a sine sampled off its crests, clipping ratio of a clipped sine,
 * silence and a speech-like signal, and the plan's rate/channel choices. */
#include <math.h>
#include <stdlib.h>
#include "models/model.h"
#include "test.h"

/* Runs analyze over interleaved x (frames x channels at rate) with params. */
static json_t *run_model(const float *x, size_t frames, int rate, int channels, const char *params_text) {
    const vx_model *m = vx_catalog_find("analyze");
    vx_err err = {0};
    json_t *given = json_loads(params_text, 0, NULL), *params = NULL, *result = NULL;
    vx_audio_info info = {.sample_rate = rate, .channels = channels, .duration_s = (double)frames / rate};
    vx_model_plan plan;
    void *st = NULL;
    if (!m || vx_catalog_validate_params(m, given, &params, &err) != 0) goto out;
    if (m->plan(params, &info, &plan, &err) != 0 || plan.in_rate != rate || plan.in_channels != channels) goto out;
    st = m->open(params, &plan, &err);
    if (!st) goto out;
    vx_pcm_out out = {0};
    size_t block = 4093; /* odd, so blocks straddle chunk and piece boundaries */
    for (size_t i = 0; i < frames; i += block)
        if (m->process(st, x + i * (size_t)channels, i + block <= frames ? block : frames - i, &out, &err) != 0) goto out;
    m->finish(st, &out, &result, &err);
out:
    if (st) m->close(st);
    json_decref(given);
    json_decref(params);
    return result;
}

static const json_t *chunk(const json_t *r, size_t i) { return json_array_get(json_object_get(r, "chunks"), i); }
static double num(const json_t *o, const char *key) { return json_number_value(json_object_get(o, key)); }
static double summary(const json_t *r, const char *key) { return num(json_object_get(r, "summary"), key); }

#define WITHIN(a, b, tol) (fabs((a) - (b)) <= (tol))

static float *sine(size_t frames, int rate, int channels, double freq, double amp, double phase) {
    float *x = malloc(frames * (size_t)channels * sizeof *x);
    for (size_t i = 0; i < frames; i++)
        for (int c = 0; c < channels; c++)
            x[i * (size_t)channels + (size_t)c] = (float)(amp * sin(2 * M_PI * freq * (double)i / rate + phase));
    return x;
}

static void test_odd_length_gives_exact_chunks_with_a_short_last_one(void) {
    size_t n = 164800; /* 10.3 s at 16 kHz */
    float *x = sine(n, 16000, 1, 440, 0.1, 0);
    json_t *r = run_model(x, n, 16000, 1, "{}");
    REQUIRE(r != NULL);
    REQUIRE(json_array_size(json_object_get(r, "chunks")) == 3);
    double bounds[3][2] = {{0, 4}, {4, 8}, {8, 10.3}};
    for (size_t i = 0; i < 3; i++) {
        CHECK_EQ_INT(json_integer_value(json_object_get(chunk(r, i), "chunk_id")), i);
        CHECK(WITHIN(num(chunk(r, i), "start_s"), bounds[i][0], 1e-9));
        CHECK(WITHIN(num(chunk(r, i), "end_s"), bounds[i][1], 1e-9));
    }
    CHECK(WITHIN(summary(r, "duration_s"), 10.3, 1e-9));
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(r, "summary"), "chunk_count")), 3);
    json_decref(r);
    /* An exact multiple has no empty trailing chunk; chunk_s is honoured. */
    r = run_model(x, 80000, 16000, 1, "{\"chunk_s\": 2.5}");
    REQUIRE(r != NULL);
    CHECK_EQ_INT(json_array_size(json_object_get(r, "chunks")), 2);
    CHECK(WITHIN(num(chunk(r, 1), "end_s"), 5.0, 1e-9));
    json_decref(r);
    r = run_model(x, 3 * 16000 + 1, 16000, 1, "{\"chunk_s\": 1.5}");
    REQUIRE(r != NULL);
    CHECK_EQ_INT(json_array_size(json_object_get(r, "chunks")), 3);
    CHECK(WITHIN(num(chunk(r, 2), "end_s"), 3.0, 1e-3));
    json_decref(r);
    free(x);
}

static void test_loudness_of_a_calibrated_sine_mono_and_stereo(void) {
    /* BS.1770: a 997 Hz sine of peak amplitude A in one channel reads 20 log10(A) - 3.01 LUFS. */
    size_t n = 8 * 48000;
    float *x = sine(n, 48000, 1, 997, 0.1, 0);
    json_t *r = run_model(x, n, 48000, 1, "{\"sample_rate\": 0}");
    REQUIRE(r != NULL);
    CHECK(WITHIN(summary(r, "integrated_lufs"), -23.01, 0.1));
    CHECK(WITHIN(num(chunk(r, 1), "loudness_lufs"), -23.01, 0.1));
    CHECK(WITHIN(num(chunk(r, 1), "short_term_max_lufs"), -23.01, 0.1));
    CHECK(WITHIN(summary(r, "loudness_range_lu"), 0.0, 0.1));
    json_decref(r);
    free(x);
    float *y = sine(n, 48000, 2, 997, 0.1, 0); /* both channels: +3 dB */
    r = run_model(y, n, 48000, 2, "{\"sample_rate\": 0}");
    REQUIRE(r != NULL);
    CHECK(WITHIN(summary(r, "integrated_lufs"), -20.0, 0.1));
    CHECK_EQ_INT(summary(r, "channels"), 2);
    json_decref(r);
    free(y);
}

static void test_true_peak_exceeds_the_sample_peak_of_an_off_crest_sine(void) {
    /* fs/4 with a 45 degree phase: samples at A/sqrt(2), the waveform reaches A. */
    size_t n = 2 * 16000;
    float *x = sine(n, 16000, 1, 4000, 0.5, M_PI / 4);
    json_t *r = run_model(x, n, 16000, 1, "{}");
    REQUIRE(r != NULL);
    CHECK(WITHIN(num(chunk(r, 0), "peak_dbfs"), 20 * log10(0.5 / sqrt(2)), 0.05));
    CHECK(WITHIN(num(chunk(r, 0), "true_peak_dbtp"), 20 * log10(0.5), 0.5));
    CHECK(WITHIN(summary(r, "true_peak_dbtp"), 20 * log10(0.5), 0.5));
    CHECK(num(chunk(r, 0), "clipping_ratio") == 0);
    json_decref(r);
    free(x);
}

static void test_clipping_ratio_of_a_clipped_sine(void) {
    /* 2 sin clipped at full scale: |sin| >= 1/2 for 2/3 of the time. */
    size_t n = 3 * 16000;
    float *x = sine(n, 16000, 1, 261.7, 2.0, 0.1); /* not a divisor of the rate: phases spread evenly */
    for (size_t i = 0; i < n; i++) x[i] = x[i] > 1 ? 1 : x[i] < -1 ? -1 : x[i];
    json_t *r = run_model(x, n, 16000, 1, "{}");
    REQUIRE(r != NULL);
    CHECK(WITHIN(num(chunk(r, 0), "clipping_ratio"), 2.0 / 3.0, 0.01));
    CHECK(WITHIN(summary(r, "clipping_ratio"), 2.0 / 3.0, 0.01));
    CHECK(WITHIN(num(chunk(r, 0), "peak_dbfs"), 0.0, 0.01));
    CHECK(num(chunk(r, 0), "quality") == 0); /* 1 % clipped already scores 0 */
    json_decref(r);
    free(x);
}

static void test_silence_is_not_speech_and_has_no_level(void) {
    size_t n = 5 * 16000;
    float *x = calloc(n, sizeof *x);
    json_t *r = run_model(x, n, 16000, 1, "{}");
    REQUIRE(r != NULL);
    for (size_t i = 0; i < 2; i++) {
        CHECK(num(chunk(r, i), "speech_probability") < 0.1);
        CHECK(json_is_null(json_object_get(chunk(r, i), "loudness_lufs")));
        CHECK(json_is_null(json_object_get(chunk(r, i), "peak_dbfs")));
        CHECK(json_is_null(json_object_get(chunk(r, i), "snr_db")));
        CHECK(num(chunk(r, i), "quality") == 0);
    }
    CHECK(json_is_null(json_object_get(json_object_get(r, "summary"), "integrated_lufs")));
    json_decref(r);
    free(x);
}

/* Harmonic complex under formant-like peaks, in 200 ms syllables with
 * 100 ms pauses, as speech pauses between syllables. */
static void speech_like(float *x, size_t n, int rate, double level) {
    double phase = 0;
    for (size_t i = 0; i < n; i++) {
        double t = (double)i / rate, f0 = 130 + 30 * sin(2 * M_PI * 0.6 * t);
        phase += 2 * M_PI * f0 / rate;
        double s = 0;
        for (int h = 1; h * f0 < 3800; h++) {
            double f = h * f0;
            s += (exp(-pow((f - 550) / 180, 2)) + 0.5 * exp(-pow((f - 1600) / 300, 2)) + 0.03) * sin(h * phase);
        }
        double u = fmod(t, 0.3), env = u < 0.2 ? sin(M_PI * u / 0.2) : 0.0;
        x[i] = (float)(level * env * s);
    }
}

static void test_speech_like_chunk_is_detected_and_rated_clean(void) {
    size_t n = 8 * 16000;
    float *x = calloc(n, sizeof *x);
    speech_like(x + 4 * 16000, 4 * 16000, 16000, 0.05); /* chunk 0 silent, chunk 1 speech-like */
    json_t *r = run_model(x, n, 16000, 1, "{}");
    REQUIRE(r != NULL);
    CHECK(num(chunk(r, 0), "speech_probability") < 0.1);
    CHECK(num(chunk(r, 1), "speech_probability") > 0.5); /* speech 2/3 of the time */
    CHECK(num(chunk(r, 1), "snr_db") > 20); /* noisy speech at 10 dB reads ~10 */
    CHECK(num(chunk(r, 1), "quality") > 0.8);
    CHECK(num(chunk(r, 1), "spectral_flatness") < 0.2);
    CHECK(summary(r, "speech_ratio") > 0.25 && summary(r, "speech_ratio") < 0.45);
    json_decref(r);
    free(x);
}

static void test_plan_keeps_channels_and_picks_the_rate(void) {
    const vx_model *m = vx_catalog_find("analyze");
    REQUIRE(m != NULL);
    vx_err err = {0};
    json_t *params = NULL, *given = json_loads("{\"sample_rate\": 0}", 0, NULL);
    vx_audio_info info = {.sample_rate = 96000, .channels = 6};
    vx_model_plan plan;
    REQUIRE(vx_catalog_validate_params(m, given, &params, &err) == 0);
    REQUIRE(m->plan(params, &info, &plan, &err) == 0);
    CHECK_EQ_INT(plan.in_rate, 48000);
    CHECK_EQ_INT(plan.in_channels, 6);
    CHECK(plan.out_format[0] == '\0');
    json_decref(params);
    json_decref(given);
    given = json_loads("{\"sample_rate\": 4000}", 0, NULL);
    REQUIRE(vx_catalog_validate_params(m, given, &params, &err) == 0);
    CHECK(m->plan(params, &info, &plan, &err) == -1);
    CHECK_EQ_STR(err.code, "param_out_of_range");
    json_decref(params);
    json_decref(given);
    REQUIRE(vx_catalog_validate_params(m, NULL, &params, &err) == 0);
    REQUIRE(m->plan(params, &info, &plan, &err) == 0);
    CHECK_EQ_INT(plan.in_rate, 16000);
    CHECK(m->price_per_second > 0);
    json_decref(params);
}

TEST_MAIN(TEST_ENTRY(test_odd_length_gives_exact_chunks_with_a_short_last_one),
          TEST_ENTRY(test_loudness_of_a_calibrated_sine_mono_and_stereo),
          TEST_ENTRY(test_true_peak_exceeds_the_sample_peak_of_an_off_crest_sine),
          TEST_ENTRY(test_clipping_ratio_of_a_clipped_sine), TEST_ENTRY(test_silence_is_not_speech_and_has_no_level),
          TEST_ENTRY(test_speech_like_chunk_is_detected_and_rated_clean),
          TEST_ENTRY(test_plan_keeps_channels_and_picks_the_rate))
