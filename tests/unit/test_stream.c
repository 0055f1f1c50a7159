/* test_stream.c - the pure rules of live streams (src/core/stream.c): the
 * client's text messages and the config, frame limits, sample conversion,
 * close codes and the billing arithmetic of holds in blocks. */
#include <math.h>
#include <string.h>
#include "../../src/core/stream.h"
#include "test.h"

static int parse(const char *text, vx_stream_msg_kind *kind, vx_stream_config *cfg, vx_err *err) {
    return vx_stream_message_parse(text, strlen(text), kind, cfg, err);
}

static void test_config_message_fills_defaults_and_reads_every_field(void) {
    vx_stream_msg_kind kind;
    vx_stream_config cfg;
    vx_err err = {0};
    REQUIRE(parse("{\"config\":{}}", &kind, &cfg, &err) == 0);
    CHECK_EQ_INT(kind, VX_STREAM_MSG_CONFIG);
    CHECK_EQ_STR(cfg.model, "transcribe");
    CHECK_EQ_INT(cfg.sample_rate, 16000);
    CHECK_EQ_INT(cfg.encoding, VX_STREAM_PCM_S16LE);
    CHECK(cfg.words && cfg.partial && cfg.params == NULL);
    vx_stream_config_clear(&cfg);
    REQUIRE(parse("{\"config\":{\"model\":\"enhance\",\"sample_rate\":48000,\"encoding\":\"pcm_f32le\","
                  "\"words\":false,\"partial\":false,\"params\":{\"denoise\":true}}}", &kind, &cfg, &err) == 0);
    CHECK_EQ_STR(cfg.model, "enhance");
    CHECK_EQ_INT(cfg.sample_rate, 48000);
    CHECK_EQ_INT(cfg.encoding, VX_STREAM_PCM_F32LE);
    CHECK(!cfg.words && !cfg.partial);
    CHECK(json_is_true(json_object_get(cfg.params, "denoise")));
    vx_stream_config_clear(&cfg);
}

static void test_eof_keepalive_and_bad_messages(void) {
    vx_stream_msg_kind kind;
    vx_stream_config cfg;
    vx_err err = {0};
    CHECK(parse("{\"eof\":1}", &kind, &cfg, &err) == 0 && kind == VX_STREAM_MSG_EOF);
    CHECK(parse("{\"keepalive\":1}", &kind, &cfg, &err) == 0 && kind == VX_STREAM_MSG_KEEPALIVE);
    static const char *const bad[] = {"hello", "[1]", "{}", "{\"eof\":1,\"keepalive\":1}", "{\"stop\":1}",
                                      "{\"eof\":1,\"eof\":1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err = (vx_err){0};
        CHECK(parse(bad[i], &kind, &cfg, &err) != 0);
        CHECK_EQ_STR(err.code, "invalid_message");
        CHECK_EQ_INT(vx_stream_close_code(err.code), 1003);
    }
    /* a config padded past the text limit */
    char big[VX_STREAM_MAX_TEXT + 64];
    int n = snprintf(big, sizeof big, "{\"config\":{\"model\":\"transcribe\"%*s}}", VX_STREAM_MAX_TEXT, "");
    REQUIRE(n > VX_STREAM_MAX_TEXT && n < (int)sizeof big);
    CHECK(parse(big, &kind, &cfg, &err) != 0);
    CHECK_EQ_STR(err.code, "invalid_message");
}

static void test_bad_configs_name_their_error_and_close_code(void) {
    static const struct {
        const char *text, *code;
        int close;
    } cases[] = {
        {"{\"config\":{\"sample_rate\":7999}}", "unsupported_sample_rate", 1008},
        {"{\"config\":{\"sample_rate\":48001}}", "unsupported_sample_rate", 1008},
        {"{\"config\":{\"sample_rate\":16000.5}}", "unsupported_sample_rate", 1008},
        {"{\"config\":{\"encoding\":\"mulaw\"}}", "unsupported_encoding", 1008},
        {"{\"config\":{\"model\":\"convert\"}}", "unknown_model", 1008},
        {"{\"config\":{\"words\":1}}", "invalid_config", 1008},
        {"{\"config\":{\"params\":[]}}", "invalid_config", 1008},
        {"{\"config\":{\"language\":\"en\"}}", "invalid_config", 1008},
        {"{\"config\":7}", "invalid_config", 1008},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vx_stream_msg_kind kind;
        vx_stream_config cfg;
        vx_err err = {0};
        CHECK(parse(cases[i].text, &kind, &cfg, &err) != 0);
        CHECK_EQ_STR(err.code, cases[i].code);
        CHECK_EQ_INT(vx_stream_close_code(err.code), cases[i].close);
        CHECK(err.message[0] != '\0');
    }
    CHECK_EQ_INT(vx_stream_close_code("insufficient_credits"), 4402);
    CHECK_EQ_INT(vx_stream_close_code("frame_too_large"), 1009);
    CHECK_EQ_INT(vx_stream_close_code("invalid_audio_frame"), 1007);
    CHECK_EQ_INT(vx_stream_close_code("asr_busy"), 1013);
    CHECK_EQ_INT(vx_stream_close_code("anything_else"), 1011);
}

static void test_frames_are_limited_to_half_a_second_of_whole_samples(void) {
    vx_stream_config cfg;
    vx_stream_config_default(&cfg);
    vx_err err = {0};
    CHECK_EQ_INT(vx_stream_frame_limit(&cfg), 16000);
    CHECK_EQ_INT(vx_stream_frame_check(&cfg, 16000, &err), 0);
    CHECK(vx_stream_frame_check(&cfg, 16002, &err) != 0);
    CHECK_EQ_STR(err.code, "frame_too_large");
    CHECK(vx_stream_frame_check(&cfg, 3201, &err) != 0);
    CHECK_EQ_STR(err.code, "invalid_audio_frame");
    CHECK(vx_stream_frame_check(&cfg, 0, &err) != 0);
    CHECK_EQ_STR(err.code, "invalid_audio_frame");
    cfg.encoding = VX_STREAM_PCM_F32LE;
    cfg.sample_rate = 48000;
    CHECK_EQ_INT(vx_stream_frame_limit(&cfg), 96000);
    CHECK(vx_stream_frame_check(&cfg, 6, &err) != 0);
    CHECK_EQ_INT(vx_stream_frame_check(&cfg, 8, &err), 0);
}

static void test_samples_round_trip_both_encodings(void) {
    vx_stream_config cfg;
    vx_stream_config_default(&cfg);
    const unsigned char s16[] = {0x00, 0x80, 0xff, 0x7f, 0x00, 0x00, 0x00, 0x40};
    float out[4];
    CHECK_EQ_INT(vx_stream_frame_decode(&cfg, s16, sizeof s16, out), 4);
    CHECK(out[0] == -1.0f && fabsf(out[1] - 32767.0f / 32768.0f) < 1e-7f && out[2] == 0.0f && out[3] == 0.5f);
    unsigned char back[8];
    CHECK_EQ_INT(vx_stream_frame_encode(&cfg, out, 4, back), 8);
    CHECK(memcmp(back, s16, 8) == 0);
    cfg.encoding = VX_STREAM_PCM_F32LE;
    const float f[3] = {0.25f, 2.0f, NAN};
    float g[3];
    CHECK_EQ_INT(vx_stream_frame_decode(&cfg, f, sizeof f, g), 3);
    CHECK(g[0] == 0.25f && g[1] == 1.0f && g[2] == 0.0f); /* clipped, NaN silenced */
}

static void test_billing_holds_blocks_and_charges_the_seconds_streamed(void) {
    vx_stream_bill b;
    vx_stream_bill_init(&b, 1000, 5000, 30); /* 0.001 per stream, 0.005 per second, 30 s blocks */
    CHECK_EQ_INT(b.block, 150000);
    CHECK_EQ_INT(vx_stream_bill_first_hold(&b), 151000);
    b.held = vx_stream_bill_first_hold(&b);
    CHECK_EQ_INT(vx_stream_bill_shortfall(&b, 30.0), 0);
    CHECK_EQ_INT(vx_stream_bill_shortfall(&b, 30.1), 500);
    b.seconds = 29.95;
    CHECK_EQ_INT(vx_stream_bill_shortfall(&b, 0.05), 0);
    CHECK_EQ_INT(vx_stream_bill_charge(&b), 1000 + 149750);
    /* partial seconds round up to the micro-credit, never above the hold */
    b.seconds = 0.0000001;
    CHECK_EQ_INT(vx_stream_bill_charge(&b), 1001);
    b.seconds = 100;
    CHECK_EQ_INT(vx_stream_bill_charge(&b), b.held);
    b.seconds = 0;
    CHECK_EQ_INT(vx_stream_bill_charge(&b), 1000);
}

TEST_MAIN(TEST_ENTRY(test_config_message_fills_defaults_and_reads_every_field),
          TEST_ENTRY(test_eof_keepalive_and_bad_messages),
          TEST_ENTRY(test_bad_configs_name_their_error_and_close_code),
          TEST_ENTRY(test_frames_are_limited_to_half_a_second_of_whole_samples),
          TEST_ENTRY(test_samples_round_trip_both_encodings),
          TEST_ENTRY(test_billing_holds_blocks_and_charges_the_seconds_streamed))
