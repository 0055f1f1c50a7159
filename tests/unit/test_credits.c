/* test_credits.c - src/util/credits.c: decimal credits in JSON map to exact
 * integer micro-credits and back, with every malformed amount refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "test.h"
#include "../../src/util/credits.h"
#include "../../src/util/crypto.h"

/* Dumps vx_credits_json(micro) the way every voxd response does. */
static void dump_micro(int64_t micro, char *out, size_t cap) {
    json_t *v = vx_credits_json(micro);
    char *text = v ? json_dumps(v, VX_JSON_DUMP_FLAGS | JSON_ENCODE_ANY) : NULL;
    snprintf(out, cap, "%s", text ? text : "(null)");
    free(text);
    json_decref(v);
}

/* Parses JSON text as an amount; returns 0/-1 like vx_credits_parse. */
static int parse_text(const char *text, int allow_negative, int64_t *micro, vx_err *err) {
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    if (!v) return -2;
    vx_err_clear(err);
    int rc = vx_credits_parse(v, allow_negative, micro, err);
    json_decref(v);
    return rc;
}

static void test_json_dump_prints_exact_decimals(void) {
    char out[64];
    dump_micro(100000, out, sizeof out);
    CHECK_EQ_STR(out, "0.1");
    dump_micro(12500000, out, sizeof out);
    CHECK_EQ_STR(out, "12.5");
    dump_micro(1000000000LL * VX_MICRO, out, sizeof out);
    CHECK_EQ_STR(out, "1000000000");
    dump_micro(-3250000, out, sizeof out);
    CHECK_EQ_STR(out, "-3.25");
    dump_micro(3 * VX_MICRO, out, sizeof out);
    CHECK_EQ_STR(out, "3");
    dump_micro(0, out, sizeof out);
    CHECK_EQ_STR(out, "0");
    dump_micro(999999999999999LL, out, sizeof out);
    CHECK_EQ_STR(out, "999999999.999999");
    dump_micro(12300000, out, sizeof out);
    CHECK_EQ_STR(out, "12.3");
    /* jansson renders values below 1e-4 with %g's exponent form; "1e-6" is
     * the same JSON number as 0.000001 and parses back to exactly 1 micro. */
    dump_micro(1, out, sizeof out);
    CHECK_EQ_STR(out, "1e-6");
    dump_micro(-50, out, sizeof out);
    CHECK_EQ_STR(out, "-5e-5");
}

static void test_dump_then_parse_round_trips_every_magnitude(void) {
    REQUIRE(vx_crypto_init() == 0);
    char out[64];
    vx_err err;
    for (int i = 0; i < 20000; i++) {
        uint64_t r;
        vx_random_bytes(&r, sizeof r);
        /* Spread over every magnitude from 1 micro to the maximum. */
        int64_t micro = (int64_t)(r % (uint64_t)VX_CREDITS_MAX) + 1;
        micro /= (int64_t)pow(10, (double)(i % 16));
        if (micro == 0) micro = 1;
        if (i & 1) micro = -micro;
        dump_micro(micro, out, sizeof out);
        int64_t back = 0;
        int rc = parse_text(out, 1, &back, &err);
        if (rc != 0 || back != micro) {
            fprintf(stderr, "  micro %lld dumped as %s parsed as %lld\n", (long long)micro, out,
                    (long long)back);
            CHECK(0);
            return;
        }
    }
}

static void test_parse_rounds_to_the_nearest_micro(void) {
    vx_err err;
    int64_t m = 0;
    CHECK_EQ_INT(parse_text("12.3", 0, &m, &err), 0);
    CHECK_EQ_INT(m, 12300000);
    CHECK_EQ_INT(parse_text("0.1", 0, &m, &err), 0);
    CHECK_EQ_INT(m, 100000);
    CHECK_EQ_INT(parse_text("0.000001", 0, &m, &err), 0);
    CHECK_EQ_INT(m, 1);
    CHECK_EQ_INT(parse_text("1e-6", 0, &m, &err), 0);
    CHECK_EQ_INT(m, 1);
    CHECK_EQ_INT(parse_text("4.35", 0, &m, &err), 0); /* 4.35 * 1e6 = 4349999.99... */
    CHECK_EQ_INT(m, 4350000);
    CHECK_EQ_INT(parse_text("3", 0, &m, &err), 0);
    CHECK_EQ_INT(m, 3000000);
    CHECK_EQ_INT(parse_text("3.0", 0, &m, &err), 0);
    CHECK_EQ_INT(m, 3000000);
    CHECK_EQ_INT(parse_text("1000000000", 0, &m, &err), 0);
    CHECK_EQ_INT(m, VX_CREDITS_MAX);
    CHECK_EQ_INT(parse_text("999999999.999999", 0, &m, &err), 0);
    CHECK_EQ_INT(m, 999999999999999LL);
    CHECK_EQ_INT(parse_text("-3.25", 1, &m, &err), 0);
    CHECK_EQ_INT(m, -3250000);
    CHECK_EQ_INT(parse_text("-1000000000", 1, &m, &err), 0);
    CHECK_EQ_INT(m, -VX_CREDITS_MAX);
}

static void check_rejected(const char *text, int allow_negative) {
    vx_err err;
    int64_t m = 42;
    int rc = parse_text(text, allow_negative, &m, &err);
    if (rc != -1) fprintf(stderr, "  %s was not rejected\n", text);
    CHECK_EQ_INT(rc, -1);
    CHECK_EQ_INT(err.status, VX_E_INVALID);
    CHECK_EQ_STR(err.code, "invalid_amount");
    CHECK_EQ_INT(m, 42);
}

static void test_parse_refuses_more_than_six_decimals(void) {
    check_rejected("0.0000001", 0);
    check_rejected("1e-7", 0);
    check_rejected("1.0000001", 0);
    check_rejected("12.3456789", 0);
    check_rejected("-0.0000005", 1);
}

static void test_parse_refuses_out_of_range(void) {
    check_rejected("1000000000.000001", 0);
    check_rejected("1000000001", 0);
    check_rejected("-1000000001", 1);
    check_rejected("1e10", 0);
    check_rejected("9223372036854775807", 0);
    check_rejected("-9223372036854775807", 1);
    check_rejected("1e300", 0);
}

static void test_parse_refuses_non_numbers_zero_and_negatives(void) {
    check_rejected("\"12.5\"", 0);
    check_rejected("true", 0);
    check_rejected("null", 0);
    check_rejected("[1]", 0);
    check_rejected("{\"amount\":1}", 0);
    check_rejected("0", 0);
    check_rejected("0.0", 0);
    check_rejected("-0.0", 0);
    check_rejected("0", 1);      /* zero is never an amount */
    check_rejected("-0.0", 1);
    check_rejected("-1", 0);
    check_rejected("-0.5", 0);
    vx_err err;
    int64_t m = 42;
    CHECK_EQ_INT(vx_credits_parse(NULL, 0, &m, &err), -1);
    CHECK_EQ_STR(err.code, "invalid_amount");
    /* NaN and infinity cannot be JSON text, but a caller may build them. */
    json_t *nan_real = json_real(1.0);
    CHECK(json_real_set(nan_real, NAN) == -1 || vx_credits_parse(nan_real, 1, &m, &err) == -1);
    json_decref(nan_real);
}

static void test_format_prints_plain_decimals(void) {
    char out[32];
    vx_credits_format(12500000, out);
    CHECK_EQ_STR(out, "12.5");
    vx_credits_format(-1, out);
    CHECK_EQ_STR(out, "-0.000001");
    vx_credits_format(3000000, out);
    CHECK_EQ_STR(out, "3");
    vx_credits_format(0, out);
    CHECK_EQ_STR(out, "0");
    vx_credits_format(100000, out);
    CHECK_EQ_STR(out, "0.1");
    vx_credits_format(1000000000LL * VX_MICRO, out);
    CHECK_EQ_STR(out, "1000000000");
    vx_credits_format(-999999999999999LL, out);
    CHECK_EQ_STR(out, "-999999999.999999");
    vx_credits_format(INT64_MIN, out);
    CHECK_EQ_STR(out, "-9223372036854.775808");
    vx_credits_format(INT64_MAX, out);
    CHECK_EQ_STR(out, "9223372036854.775807");
}

TEST_MAIN(TEST_ENTRY(test_json_dump_prints_exact_decimals),
          TEST_ENTRY(test_dump_then_parse_round_trips_every_magnitude),
          TEST_ENTRY(test_parse_rounds_to_the_nearest_micro),
          TEST_ENTRY(test_parse_refuses_more_than_six_decimals),
          TEST_ENTRY(test_parse_refuses_out_of_range),
          TEST_ENTRY(test_parse_refuses_non_numbers_zero_and_negatives),
          TEST_ENTRY(test_format_prints_plain_decimals))
