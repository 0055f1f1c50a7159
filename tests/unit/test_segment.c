/* test_segment.c - the `segment` model through its vx_model face: a
 * constructed on/off signal gives the segments that min_speech_ms,
 * min_silence_ms and pad_ms call for; silence gives none; results render as
 * CSV and Audacity labels, and other formats are refused. */
#include <math.h>
#include <stdlib.h>
#include "models/model.h"
#include "test.h"

#define RATE 16000

/* Speech-like burst: harmonic complex (f0 ~120 Hz) under a formant-like
 * envelope, amplitude-modulated at 4 Hz. */
static void burst(float *x, size_t n) {
    double phase = 0;
    for (size_t i = 0; i < n; i++) {
        double t = (double)i / RATE, f0 = 120 + 20 * sin(2 * M_PI * 0.9 * t);
        phase += 2 * M_PI * f0 / RATE;
        double s = 0;
        for (int h = 1; h * f0 < 3800; h++) {
            double f = h * f0;
            s += (exp(-pow((f - 600) / 200, 2)) + 0.5 * exp(-pow((f - 1700) / 300, 2)) + 0.03) * sin(h * phase);
        }
        x[i] = (float)(0.05 * (0.6 + 0.4 * sin(2 * M_PI * 4 * t)) * s);
    }
}

/* silence 1.0 | speech 1.0 | silence 0.2 | speech 1.0 | silence 1.0 | speech 0.12 | silence 1.0 (5.32 s) */
static float *on_off(size_t *n) {
    static const double parts[] = {1.0, 1.0, 0.2, 1.0, 1.0, 0.12, 1.0};
    size_t total = 0;
    for (size_t i = 0; i < 7; i++) total += (size_t)lround(parts[i] * RATE);
    float *x = calloc(total, sizeof *x);
    size_t at = 0;
    for (size_t i = 0; i < 7; i++) {
        size_t len = (size_t)lround(parts[i] * RATE);
        if (i % 2) burst(x + at, len);
        at += len;
    }
    *n = total;
    return x;
}

/* Runs the model over x (mono, RATE) with params (JSON text); returns the result. */
static json_t *run_model(const float *x, size_t n, const char *params_text) {
    const vx_model *m = vx_catalog_find("segment");
    vx_err err = {0};
    json_t *given = json_loads(params_text, 0, NULL), *params = NULL, *result = NULL;
    vx_audio_info info = {.sample_rate = RATE, .channels = 1, .duration_s = (double)n / RATE};
    vx_model_plan plan;
    void *st = NULL;
    if (!m || vx_catalog_validate_params(m, given, &params, &err) != 0) goto out;
    if (m->plan(params, &info, &plan, &err) != 0 || plan.in_rate != RATE || plan.in_channels != 1 || plan.out_format[0])
        goto out;
    st = m->open(params, &plan, &err);
    if (!st) goto out;
    vx_pcm_out out = {0};
    for (size_t i = 0; i < n; i += 3000)
        if (m->process(st, x + i, i + 3000 <= n ? 3000 : n - i, &out, &err) != 0) goto out;
    m->finish(st, &out, &result, &err);
out:
    if (st) m->close(st);
    json_decref(given);
    json_decref(params);
    return result;
}

static double seg_value(const json_t *r, size_t i, const char *key) {
    return json_number_value(json_object_get(json_array_get(json_object_get(r, "segments"), i), key));
}

static size_t seg_count(const json_t *r) { return json_array_size(json_object_get(r, "segments")); }

#define WITHIN(a, b, tol) (fabs((a) - (b)) <= (tol))

static void test_defaults_join_the_short_pause_and_drop_the_blip(void) {
    size_t n;
    float *x = on_off(&n);
    json_t *r = run_model(x, n, "{}");
    REQUIRE(r != NULL);
    REQUIRE(seg_count(r) == 1);
    CHECK(WITHIN(seg_value(r, 0, "start_s"), 1.0 - 0.05, 0.06));
    CHECK(WITHIN(seg_value(r, 0, "end_s"), 3.2 + 0.05, 0.08));
    CHECK(seg_value(r, 0, "confidence") > 0.7);
    CHECK(WITHIN(json_number_value(json_object_get(r, "duration_s")), 5.32, 1e-9));
    CHECK_EQ_INT(json_integer_value(json_object_get(r, "count")), 1);
    json_decref(r);
    free(x);
}

static void test_min_silence_below_the_pause_splits_and_min_speech_zero_keeps_the_blip(void) {
    size_t n;
    float *x = on_off(&n);
    json_t *r = run_model(x, n, "{\"min_silence_ms\": 100, \"pad_ms\": 0}");
    REQUIRE(r != NULL);
    REQUIRE(seg_count(r) == 2);
    CHECK(WITHIN(seg_value(r, 0, "end_s"), 2.0, 0.08));
    CHECK(WITHIN(seg_value(r, 1, "start_s"), 2.2, 0.08));
    json_decref(r);
    r = run_model(x, n, "{\"min_silence_ms\": 100, \"pad_ms\": 0, \"min_speech_ms\": 0}");
    REQUIRE(r != NULL);
    REQUIRE(seg_count(r) == 3);
    CHECK(WITHIN(seg_value(r, 2, "start_s"), 4.2, 0.08));
    CHECK(WITHIN(seg_value(r, 2, "end_s"), 4.32, 0.08));
    json_decref(r);
    free(x);
}

static void test_padding_widens_segments_and_merges_those_it_joins(void) {
    size_t n;
    float *x = on_off(&n);
    json_t *a = run_model(x, n, "{\"pad_ms\": 0}"), *b = run_model(x, n, "{\"pad_ms\": 300}");
    REQUIRE(a && b && seg_count(a) == 1 && seg_count(b) == 1);
    CHECK(WITHIN(seg_value(a, 0, "start_s") - seg_value(b, 0, "start_s"), 0.3, 1e-6));
    CHECK(WITHIN(seg_value(b, 0, "end_s") - seg_value(a, 0, "end_s"), 0.3, 1e-6));
    json_decref(a);
    json_decref(b);
    /* 1 s of padding joins the blip 1 s after the speech (1 s gap < 2 x 1 s). */
    json_t *c = run_model(x, n, "{\"pad_ms\": 1000, \"min_speech_ms\": 0}");
    REQUIRE(c && seg_count(c) == 1);
    CHECK(WITHIN(seg_value(c, 0, "start_s"), 0.0, 0.06));
    CHECK(WITHIN(seg_value(c, 0, "end_s"), 5.32, 1e-6));
    json_decref(c);
    free(x);
}

static void test_silence_has_no_segments(void) {
    size_t n = 2 * RATE + 77;
    float *x = calloc(n, sizeof *x);
    json_t *r = run_model(x, n, "{}");
    REQUIRE(r != NULL);
    CHECK_EQ_INT(seg_count(r), 0);
    CHECK(json_number_value(json_object_get(r, "speech_ratio")) == 0);
    json_decref(r);
    free(x);
}

static void test_renders_csv_and_audacity_labels(void) {
    const vx_model *m = vx_catalog_find("segment");
    REQUIRE(m && m->render);
    json_t *doc = json_loads("{\"segments\":[{\"start_s\":0.25,\"end_s\":1.5,\"confidence\":0.912},"
                             "{\"start_s\":2.0,\"end_s\":3.125,\"confidence\":0.5}]}", 0, NULL);
    char *text = NULL;
    size_t len = 0;
    const char *ctype = NULL;
    vx_err err = {0};
    REQUIRE(m->render(doc, "csv", &text, &len, &ctype, &err) == 0);
    CHECK_EQ_STR(text, "start,end,confidence\n0.250,1.500,0.912\n2.000,3.125,0.500\n");
    CHECK_EQ_INT(len, strlen(text));
    CHECK(strncmp(ctype, "text/csv", 8) == 0);
    free(text);
    REQUIRE(m->render(doc, "audacity", &text, &len, &ctype, &err) == 0);
    CHECK_EQ_STR(text, "0.250000\t1.500000\tspeech\n2.000000\t3.125000\tspeech\n");
    CHECK(strncmp(ctype, "text/plain", 10) == 0);
    free(text);
    text = NULL;
    CHECK(m->render(doc, "srt", &text, &len, &ctype, &err) == -1);
    CHECK_EQ_STR(err.code, "invalid_format");
    CHECK_EQ_INT(err.status, VX_E_INVALID);
    CHECK(text == NULL);
    json_decref(doc);
    /* No segments: a header-only CSV and an empty label track. */
    doc = json_loads("{\"segments\":[]}", 0, NULL);
    REQUIRE(m->render(doc, "csv", &text, &len, &ctype, &err) == 0);
    CHECK_EQ_STR(text, "start,end,confidence\n");
    free(text);
    REQUIRE(m->render(doc, "audacity", &text, &len, &ctype, &err) == 0);
    CHECK_EQ_INT(len, 0);
    free(text);
    json_decref(doc);
    doc = json_loads("{\"count\": 2}", 0, NULL);
    CHECK(m->render(doc, "csv", &text, &len, &ctype, &err) == -1);
    CHECK_EQ_STR(err.code, "internal");
    json_decref(doc);
}

static void test_multichannel_input_is_planned_as_16k_mono(void) {
    const vx_model *m = vx_catalog_find("segment");
    REQUIRE(m != NULL);
    json_t *params = NULL;
    vx_err err = {0};
    REQUIRE(vx_catalog_validate_params(m, NULL, &params, &err) == 0);
    vx_audio_info info = {.sample_rate = 48000, .channels = 6};
    vx_model_plan plan;
    REQUIRE(m->plan(params, &info, &plan, &err) == 0);
    CHECK_EQ_INT(plan.in_rate, 16000);
    CHECK_EQ_INT(plan.in_channels, 1);
    CHECK(m->price_per_second > 0);
    json_decref(params);
}

TEST_MAIN(TEST_ENTRY(test_defaults_join_the_short_pause_and_drop_the_blip),
          TEST_ENTRY(test_min_silence_below_the_pause_splits_and_min_speech_zero_keeps_the_blip),
          TEST_ENTRY(test_padding_widens_segments_and_merges_those_it_joins), TEST_ENTRY(test_silence_has_no_segments),
          TEST_ENTRY(test_renders_csv_and_audacity_labels), TEST_ENTRY(test_multichannel_input_is_planned_as_16k_mono))
