/* test_range.c - unit tests of src/http/range.c: the single byte ranges a
 * download accepts, what is ignored (whole object sent) and what is
 * unsatisfiable (416). */
#include "../../src/http/range.h"
#include "test.h"

/* Runs the parser on a 1000-byte object unless said otherwise. */
static int parse(const char *h, int64_t size, int64_t *from, int64_t *to) {
    *from = -7;
    *to = -7;
    return vx_http_range_parse(h, size, from, to);
}

static void test_closed_range_selects_inclusive_bytes(void) {
    int64_t a, b;
    CHECK_EQ_INT(parse("bytes=0-0", 1000, &a, &b), 1);
    CHECK_EQ_INT(a, 0);
    CHECK_EQ_INT(b, 0);
    CHECK_EQ_INT(parse("bytes=10-19", 1000, &a, &b), 1);
    CHECK_EQ_INT(a, 10);
    CHECK_EQ_INT(b, 19);
    CHECK_EQ_INT(parse("bytes=999-999", 1000, &a, &b), 1);
    CHECK_EQ_INT(a, 999);
    CHECK_EQ_INT(b, 999);
}

static void test_open_range_runs_to_the_last_byte(void) {
    int64_t a, b;
    CHECK_EQ_INT(parse("bytes=500-", 1000, &a, &b), 1);
    CHECK_EQ_INT(a, 500);
    CHECK_EQ_INT(b, 999);
}

static void test_suffix_range_selects_the_tail(void) {
    int64_t a, b;
    CHECK_EQ_INT(parse("bytes=-100", 1000, &a, &b), 1);
    CHECK_EQ_INT(a, 900);
    CHECK_EQ_INT(b, 999);
}

static void test_suffix_longer_than_object_selects_everything(void) {
    int64_t a, b;
    CHECK_EQ_INT(parse("bytes=-5000", 1000, &a, &b), 1);
    CHECK_EQ_INT(a, 0);
    CHECK_EQ_INT(b, 999);
    CHECK_EQ_INT(parse("bytes=-99999999999999999999999", 1000, &a, &b), 1);
    CHECK_EQ_INT(a, 0);
    CHECK_EQ_INT(b, 999);
}

static void test_last_position_past_the_end_is_clamped(void) {
    int64_t a, b;
    CHECK_EQ_INT(parse("bytes=100-5000", 1000, &a, &b), 1);
    CHECK_EQ_INT(a, 100);
    CHECK_EQ_INT(b, 999);
    CHECK_EQ_INT(parse("bytes=0-99999999999999999999999", 1000, &a, &b), 1);
    CHECK_EQ_INT(a, 0);
    CHECK_EQ_INT(b, 999);
}

static void test_first_position_at_or_past_the_end_is_unsatisfiable(void) {
    int64_t a, b;
    CHECK_EQ_INT(parse("bytes=1000-", 1000, &a, &b), -1);
    CHECK_EQ_INT(parse("bytes=1000-2000", 1000, &a, &b), -1);
    CHECK_EQ_INT(parse("bytes=99999999999999999999999-", 1000, &a, &b), -1);
    CHECK_EQ_INT(a, -7);
    CHECK_EQ_INT(b, -7);
}

static void test_empty_suffix_and_empty_object_are_unsatisfiable(void) {
    int64_t a, b;
    CHECK_EQ_INT(parse("bytes=-0", 1000, &a, &b), -1);
    CHECK_EQ_INT(parse("bytes=0-", 0, &a, &b), -1);
    CHECK_EQ_INT(parse("bytes=-10", 0, &a, &b), -1);
    CHECK_EQ_INT(a, -7);
    CHECK_EQ_INT(b, -7);
}

static void test_absent_or_foreign_header_is_ignored(void) {
    int64_t a, b;
    CHECK_EQ_INT(parse(NULL, 1000, &a, &b), 0);
    CHECK_EQ_INT(parse("", 1000, &a, &b), 0);
    CHECK_EQ_INT(parse("items=0-10", 1000, &a, &b), 0);
    CHECK_EQ_INT(parse("bytes 0-10", 1000, &a, &b), 0);
    CHECK_EQ_INT(a, -7);
    CHECK_EQ_INT(b, -7);
}

static void test_several_ranges_are_ignored(void) {
    int64_t a, b;
    CHECK_EQ_INT(parse("bytes=0-10,20-30", 1000, &a, &b), 0);
    CHECK_EQ_INT(parse("bytes=0-10,", 1000, &a, &b), 0);
    CHECK_EQ_INT(a, -7);
}

static void test_malformed_ranges_are_ignored(void) {
    int64_t a, b;
    const char *bad[] = {"bytes=", "bytes=-", "bytes=abc", "bytes=10", "bytes=10-5", "bytes=10-x",
                         "bytes=10-20x", "bytes=x-20", "bytes=-10x", "bytes=--10", "bytes=-5-1",
                         "bytes=10-20-30"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = parse(bad[i], 1000, &a, &b);
        if (rc != 0) fprintf(stderr, "  \"%s\" gave %d\n", bad[i], rc);
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(a, -7);
    }
}

TEST_MAIN(TEST_ENTRY(test_closed_range_selects_inclusive_bytes), TEST_ENTRY(test_open_range_runs_to_the_last_byte),
          TEST_ENTRY(test_suffix_range_selects_the_tail), TEST_ENTRY(test_suffix_longer_than_object_selects_everything),
          TEST_ENTRY(test_last_position_past_the_end_is_clamped),
          TEST_ENTRY(test_first_position_at_or_past_the_end_is_unsatisfiable),
          TEST_ENTRY(test_empty_suffix_and_empty_object_are_unsatisfiable),
          TEST_ENTRY(test_absent_or_foreign_header_is_ignored), TEST_ENTRY(test_several_ranges_are_ignored),
          TEST_ENTRY(test_malformed_ranges_are_ignored))
