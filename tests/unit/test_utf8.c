/* test_utf8.c - UTF-8 validation and repair for JSON-bound text. */
#include "test.h"
#include "util/utf8.h"

static void test_well_formed_text_is_valid_and_kept(void) {
    char out[64];
    CHECK(vx_utf8_valid("plain ascii"));
    CHECK(vx_utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8e\xa7"));
    CHECK_EQ_STR(vx_utf8_sanitize("caf\xc3\xa9 \xe2\x82\xac", out, sizeof out), "caf\xc3\xa9 \xe2\x82\xac");
}

static void test_malformed_bytes_become_question_marks(void) {
    char out[64];
    CHECK(!vx_utf8_valid("P\xffT"));
    CHECK_EQ_STR(vx_utf8_sanitize("P\xffT", out, sizeof out), "P?T");
    CHECK(!vx_utf8_valid("\xc0\xaf"));            /* overlong '/' */
    CHECK_EQ_STR(vx_utf8_sanitize("\xc0\xaf", out, sizeof out), "??");
    CHECK(!vx_utf8_valid("\xed\xa0\x80"));        /* surrogate */
    CHECK(!vx_utf8_valid("\xf4\x90\x80\x80"));    /* above U+10FFFF */
    CHECK(!vx_utf8_valid("a\xc3"));               /* cut character */
    CHECK_EQ_STR(vx_utf8_sanitize("a\xc3", out, sizeof out), "a?");
    CHECK(vx_utf8_valid(vx_utf8_sanitize("\xff\xfe\xe2\x82", out, sizeof out)));
}

static void test_sanitize_never_cuts_a_character_at_the_end(void) {
    char out[5];
    CHECK_EQ_STR(vx_utf8_sanitize("abc\xe2\x82\xac", out, sizeof out), "abc");
    CHECK(vx_utf8_valid(out));
    char one[1];
    CHECK_EQ_STR(vx_utf8_sanitize("abc", one, sizeof one), "");
}

TEST_MAIN(TEST_ENTRY(test_well_formed_text_is_valid_and_kept), TEST_ENTRY(test_malformed_bytes_become_question_marks),
          TEST_ENTRY(test_sanitize_never_cuts_a_character_at_the_end))
