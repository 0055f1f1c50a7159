/* test_catalog.c - src/models/catalog.c and convert.c: the model table,
 * parameter validation (unknown, wrong type, out of range, defaults), the
 * catalog JSON, and the convert model's plan and result document. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "models/model.h"
#include "test.h"

static json_t *parse(const char *text) {
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!j) fprintf(stderr, "  bad JSON in test: %s\n", je.text);
    return j;
}

/* Validates `text` against convert; returns rc, fills *out / err. */
static int validate(const char *text, json_t **out, vx_err *err) {
    json_t *in = text ? parse(text) : NULL;
    vx_err_clear(err);
    int rc = vx_catalog_validate_params(&vx_model_convert, in, out, err);
    json_decref(in);
    return rc;
}

static void expect_refused(const char *text, const char *code, const char *must_mention) {
    json_t *out = NULL;
    vx_err err;
    CHECK_EQ_INT(validate(text, &out, &err), -1);
    CHECK(out == NULL);
    CHECK_EQ_INT(err.status, VX_E_UNPROCESSABLE);
    CHECK_EQ_STR(err.code, code);
    if (!strstr(err.message, must_mention)) fprintf(stderr, "  %s: message \"%s\"\n", text, err.message);
    CHECK(strstr(err.message, must_mention) != NULL);
}

static void test_catalog_finds_convert_and_only_known_names(void) {
    size_t n = 0;
    const vx_model *const *all = vx_catalog_all(&n);
    REQUIRE(n >= 1);
    CHECK(vx_catalog_find("convert") == &vx_model_convert);
    CHECK(vx_catalog_find("nope") == NULL);
    CHECK(vx_catalog_find(NULL) == NULL);
    for (size_t i = 0; i < n; i++) {
        CHECK(vx_catalog_find(all[i]->name) == all[i]);
        CHECK(strspn(all[i]->name, "abcdefghijklmnopqrstuvwxyz0123456789_-") == strlen(all[i]->name));
        CHECK(all[i]->plan && all[i]->open && all[i]->process && all[i]->finish && all[i]->close);
        CHECK(all[i]->price_per_job >= 0 && all[i]->price_per_second >= 0);
        /* Every default must itself pass validation. */
        json_t *out = NULL;
        vx_err err;
        CHECK_EQ_INT(vx_catalog_validate_params(all[i], NULL, &out, &err), 0);
        json_decref(out);
    }
}

static void test_null_params_give_every_default(void) {
    json_t *out = NULL;
    vx_err err;
    REQUIRE(validate(NULL, &out, &err) == 0);
    CHECK_EQ_STR(json_string_value(json_object_get(out, "format")), "wav");
    CHECK(json_is_integer(json_object_get(out, "sample_rate")));
    CHECK_EQ_INT(json_integer_value(json_object_get(out, "sample_rate")), 0);
    CHECK_EQ_INT(json_integer_value(json_object_get(out, "channels")), 0);
    CHECK_EQ_INT(json_object_size(out), 3);
    json_decref(out);
    /* An empty object and explicit nulls mean the same. */
    REQUIRE(validate("{\"format\":null}", &out, &err) == 0);
    CHECK_EQ_STR(json_string_value(json_object_get(out, "format")), "wav");
    json_decref(out);
}

static void test_valid_params_are_kept_and_normalised(void) {
    json_t *out = NULL;
    vx_err err;
    REQUIRE(validate("{\"format\":\"flac\",\"sample_rate\":16000.0,\"channels\":1}", &out, &err) == 0);
    CHECK_EQ_STR(json_string_value(json_object_get(out, "format")), "flac");
    CHECK(json_is_integer(json_object_get(out, "sample_rate")));
    CHECK_EQ_INT(json_integer_value(json_object_get(out, "sample_rate")), 16000);
    CHECK_EQ_INT(json_integer_value(json_object_get(out, "channels")), 1);
    json_decref(out);
}

static void test_unknown_param_is_refused_by_name(void) {
    expect_refused("{\"bitrate\":128}", "unknown_param", "bitrate");
}

static void test_wrong_types_are_refused_naming_param_and_range(void) {
    expect_refused("{\"sample_rate\":\"16000\"}", "invalid_param", "sample_rate must be an integer between 0 and 192000");
    expect_refused("{\"channels\":1.5}", "invalid_param", "channels");
    expect_refused("{\"channels\":true}", "invalid_param", "channels");
    expect_refused("{\"format\":3}", "invalid_param", "wav, flac, opus, mp3");
    expect_refused("[1,2]", "invalid_param", "object");
}

static void test_out_of_range_values_are_refused_naming_the_range(void) {
    expect_refused("{\"sample_rate\":192001}", "param_out_of_range", "sample_rate must be between 0 and 192000");
    expect_refused("{\"sample_rate\":-1}", "param_out_of_range", "sample_rate");
    expect_refused("{\"channels\":9}", "param_out_of_range", "channels must be between 0 and 8");
    expect_refused("{\"format\":\"aac\"}", "param_out_of_range", "format must be one of: wav, flac, opus, mp3");
}

/* A model with the param types convert does not use, to cover them. */
static const vx_param_spec other_params[] = {
    {.name = "gain", .type = VX_PARAM_NUMBER, .description = "gain in dB", .min = -20, .max = 20, .default_number = 1.5},
    {.name = "normalize", .type = VX_PARAM_BOOL, .description = "normalise", .default_bool = true},
};
static const vx_model other = {.name = "other", .kind = "enhancement", .description = "test",
                               .params = other_params, .n_params = 2};

static void test_number_and_bool_params_are_checked(void) {
    json_t *in = parse("{\"gain\":-3.25,\"normalize\":false}"), *out = NULL;
    vx_err err;
    REQUIRE(vx_catalog_validate_params(&other, in, &out, &err) == 0);
    CHECK(fabs(json_number_value(json_object_get(out, "gain")) + 3.25) < 1e-12);
    CHECK(json_is_false(json_object_get(out, "normalize")));
    json_decref(out);
    json_decref(in);
    in = parse("{\"gain\":21}");
    CHECK_EQ_INT(vx_catalog_validate_params(&other, in, &out, &err), -1);
    CHECK_EQ_STR(err.code, "param_out_of_range");
    CHECK(strstr(err.message, "gain must be between -20 and 20") != NULL);
    json_decref(in);
    in = parse("{\"normalize\":1}");
    CHECK_EQ_INT(vx_catalog_validate_params(&other, in, &out, &err), -1);
    CHECK_EQ_STR(err.code, "invalid_param");
    json_decref(in);
    REQUIRE(vx_catalog_validate_params(&other, NULL, &out, &err) == 0);
    CHECK(json_number_value(json_object_get(out, "gain")) == 1.5);
    CHECK(json_is_true(json_object_get(out, "normalize")));
    json_decref(out);
}

static void test_model_json_lists_params_bounds_and_prices_in_credits(void) {
    json_t *j = vx_catalog_model_json(&vx_model_convert, vx_model_convert.price_per_job,
                                      vx_model_convert.price_per_second);
    REQUIRE(j);
    CHECK_EQ_STR(json_string_value(json_object_get(j, "name")), "convert");
    CHECK_EQ_STR(json_string_value(json_object_get(j, "kind")), "conversion");
    CHECK_EQ_INT(json_array_size(json_object_get(j, "inputs")), 7);
    json_t *price = json_object_get(j, "price");
    CHECK(fabs(json_number_value(json_object_get(price, "per_job")) - 0.01) < 1e-12);
    CHECK(fabs(json_number_value(json_object_get(price, "per_second")) - 0.001) < 1e-12);
    json_t *params = json_object_get(j, "params");
    CHECK_EQ_INT(json_array_size(params), 3);
    json_t *format = json_array_get(params, 0), *rate = json_array_get(params, 1);
    CHECK_EQ_STR(json_string_value(json_object_get(format, "type")), "enum");
    CHECK_EQ_STR(json_string_value(json_object_get(format, "default")), "wav");
    CHECK_EQ_INT(json_array_size(json_object_get(format, "choices")), 4);
    CHECK_EQ_STR(json_string_value(json_object_get(rate, "name")), "sample_rate");
    CHECK_EQ_STR(json_string_value(json_object_get(rate, "type")), "integer");
    CHECK_EQ_INT(json_integer_value(json_object_get(rate, "max")), 192000);
    CHECK_EQ_INT(json_integer_value(json_object_get(rate, "default")), 0);
    json_decref(j);
}

/* Plans convert for `params_text` over an input of rate/channels. */
static int plan_for(const char *params_text, int rate, int channels, vx_model_plan *plan, vx_err *err) {
    json_t *params = NULL;
    if (validate(params_text, &params, err) != 0) return -2;
    vx_audio_info in = {.sample_rate = rate, .channels = channels, .duration_s = 1};
    snprintf(in.format, sizeof in.format, "wav");
    int rc = vx_model_convert.plan(params, &in, plan, err);
    json_decref(params);
    return rc;
}

static void test_convert_plan_keeps_the_input_shape_by_default(void) {
    vx_model_plan p;
    vx_err err;
    REQUIRE(plan_for(NULL, 44100, 2, &p, &err) == 0);
    CHECK_EQ_STR(p.out_format, "wav");
    CHECK_EQ_INT(p.in_rate, 44100);
    CHECK_EQ_INT(p.out_rate, 44100);
    CHECK_EQ_INT(p.in_channels, 2);
    CHECK_EQ_INT(p.out_channels, 2);
    REQUIRE(plan_for("{\"format\":\"flac\",\"sample_rate\":8000,\"channels\":1}", 44100, 2, &p, &err) == 0);
    CHECK_EQ_INT(p.in_rate, 8000);
    CHECK_EQ_INT(p.out_channels, 1);
}

static void test_convert_plan_refuses_rates_below_8000(void) {
    vx_model_plan p;
    vx_err err;
    CHECK_EQ_INT(plan_for("{\"sample_rate\":7999}", 44100, 2, &p, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_UNPROCESSABLE);
    CHECK_EQ_STR(err.code, "param_out_of_range");
    CHECK_EQ_INT(plan_for("{\"sample_rate\":1}", 44100, 2, &p, &err), -1);
    CHECK_EQ_STR(err.code, "param_out_of_range");
}

static void test_convert_plan_picks_a_codec_rate_when_keeping_the_input_rate(void) {
    vx_model_plan p;
    vx_err err;
    REQUIRE(plan_for("{\"format\":\"opus\"}", 44100, 2, &p, &err) == 0);
    CHECK_EQ_INT(p.out_rate, 48000);
    REQUIRE(plan_for("{\"format\":\"opus\"}", 16000, 1, &p, &err) == 0);
    CHECK_EQ_INT(p.out_rate, 16000);
    REQUIRE(plan_for("{\"format\":\"mp3\"}", 96000, 2, &p, &err) == 0);
    CHECK_EQ_INT(p.out_rate, 48000);
    REQUIRE(plan_for("{\"format\":\"mp3\"}", 11000, 1, &p, &err) == 0);
    CHECK_EQ_INT(p.out_rate, 11025);
    REQUIRE(plan_for("{\"format\":\"mp3\"}", 44100, 6, &p, &err) == 0);
    CHECK_EQ_INT(p.out_channels, 2);
}

static void test_convert_plan_refuses_explicit_shapes_the_codec_cannot_carry(void) {
    vx_model_plan p;
    vx_err err;
    CHECK_EQ_INT(plan_for("{\"format\":\"opus\",\"sample_rate\":44100}", 44100, 2, &p, &err), -1);
    CHECK_EQ_STR(err.code, "unsupported_sample_rate");
    CHECK_EQ_INT(plan_for("{\"format\":\"mp3\",\"sample_rate\":96000}", 44100, 2, &p, &err), -1);
    CHECK_EQ_STR(err.code, "unsupported_sample_rate");
    CHECK_EQ_INT(plan_for("{\"format\":\"mp3\",\"channels\":3}", 44100, 2, &p, &err), -1);
    CHECK_EQ_STR(err.code, "param_out_of_range");
    CHECK_EQ_INT(plan_for(NULL, 44100, 12, &p, &err), -1);
    CHECK_EQ_STR(err.code, "param_out_of_range");
}

typedef struct sink {
    size_t frames;
    int fail;
} sink;

static int sink_write(void *user, const float *pcm, size_t frames, vx_err *err) {
    sink *s = user;
    if (s->fail) return vx_err_set(err, VX_E_INTERNAL, "disk_full", "no space");
    s->frames += frames;
    return 0;
}

static void test_convert_passes_audio_through_and_describes_the_output(void) {
    vx_model_plan p;
    vx_err err;
    json_t *params = NULL;
    REQUIRE(validate("{\"format\":\"flac\",\"sample_rate\":8000,\"channels\":1}", &params, &err) == 0);
    vx_audio_info in = {.sample_rate = 44100, .channels = 2};
    REQUIRE(vx_model_convert.plan(params, &in, &p, &err) == 0);
    void *st = vx_model_convert.open(params, &p, &err);
    REQUIRE(st);
    sink s = {0};
    vx_pcm_out out = {.write = sink_write, .user = &s};
    float pcm[4000] = {0};
    CHECK_EQ_INT(vx_model_convert.process(st, pcm, 4000, &out, &err), 0);
    CHECK_EQ_INT(vx_model_convert.process(st, pcm, 2000, &out, &err), 0);
    CHECK_EQ_INT(s.frames, 6000);
    s.fail = 1;
    CHECK_EQ_INT(vx_model_convert.process(st, pcm, 10, &out, &err), -1);
    CHECK_EQ_STR(err.code, "disk_full");
    json_t *doc = NULL;
    CHECK_EQ_INT(vx_model_convert.finish(st, &out, &doc, &err), 0);
    vx_model_convert.close(st);
    REQUIRE(doc);
    CHECK_EQ_STR(json_string_value(json_object_get(doc, "format")), "flac");
    CHECK_EQ_INT(json_integer_value(json_object_get(doc, "sample_rate")), 8000);
    CHECK_EQ_INT(json_integer_value(json_object_get(doc, "channels")), 1);
    CHECK(fabs(json_number_value(json_object_get(doc, "duration_s")) - 0.75) < 1e-9);
    json_decref(doc);
    json_decref(params);
}

TEST_MAIN(TEST_ENTRY(test_catalog_finds_convert_and_only_known_names),
          TEST_ENTRY(test_null_params_give_every_default),
          TEST_ENTRY(test_valid_params_are_kept_and_normalised),
          TEST_ENTRY(test_unknown_param_is_refused_by_name),
          TEST_ENTRY(test_wrong_types_are_refused_naming_param_and_range),
          TEST_ENTRY(test_out_of_range_values_are_refused_naming_the_range),
          TEST_ENTRY(test_number_and_bool_params_are_checked),
          TEST_ENTRY(test_model_json_lists_params_bounds_and_prices_in_credits),
          TEST_ENTRY(test_convert_plan_keeps_the_input_shape_by_default),
          TEST_ENTRY(test_convert_plan_refuses_rates_below_8000),
          TEST_ENTRY(test_convert_plan_picks_a_codec_rate_when_keeping_the_input_rate),
          TEST_ENTRY(test_convert_plan_refuses_explicit_shapes_the_codec_cannot_carry),
          TEST_ENTRY(test_convert_passes_audio_through_and_describes_the_output))
