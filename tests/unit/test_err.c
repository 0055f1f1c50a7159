/* test_err.c - the one error type: filling, clearing and the HTTP status
 * table the API answers with. */
#include "test.h"
#include "util/err.h"
#include "util/utf8.h"

static void test_set_fills_status_code_and_message_and_returns_minus_one(void) {
    vx_err e;
    CHECK_EQ_INT(vx_err_set(&e, VX_E_PAYMENT, "insufficient_credits", "need %d more", 3), -1);
    CHECK_EQ_INT(e.status, VX_E_PAYMENT);
    CHECK_EQ_STR(e.code, "insufficient_credits");
    CHECK_EQ_STR(e.message, "need 3 more");
    vx_err_clear(&e);
    CHECK_EQ_INT(e.status, VX_OK);
    CHECK_EQ_STR(e.code, "");
    CHECK_EQ_INT(vx_err_set(NULL, VX_E_INTERNAL, "x", "y"), -1); /* a NULL err is allowed */
}

static void test_long_codes_and_messages_are_truncated_not_overflowed(void) {
    vx_err e;
    char big[1000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    vx_err_set(&e, VX_E_INVALID, big, "%s", big);
    CHECK_EQ_INT(strlen(e.code), sizeof e.code - 1);
    CHECK_EQ_INT(strlen(e.message), sizeof e.message - 1);
}

static void test_messages_are_always_valid_utf8(void) {
    vx_err e;
    vx_err_set(&e, VX_E_INVALID, "x", "bad byte \xff and a cut %.2s", "\xc3\xa9\xc3\xa9");
    CHECK(vx_utf8_valid(e.message));
    CHECK_EQ_STR(e.message, "bad byte ? and a cut \xc3\xa9");
    char long_text[600];
    for (int i = 0; i < 299; i++) long_text[2 * i] = '\xc3', long_text[2 * i + 1] = '\xa9';
    long_text[598] = '\0';
    vx_err_set(&e, VX_E_INVALID, "x", "a%s", long_text); /* the cut at 256 bytes falls inside a character */
    CHECK(vx_utf8_valid(e.message));
}

static void test_every_status_maps_to_its_http_status(void) {
    static const struct { vx_status s; int http; } table[] = {
        {VX_OK, 200}, {VX_E_INVALID, 400}, {VX_E_UNAUTHORIZED, 401}, {VX_E_PAYMENT, 402},
        {VX_E_FORBIDDEN, 403}, {VX_E_NOT_FOUND, 404}, {VX_E_METHOD, 405}, {VX_E_CONFLICT, 409},
        {VX_E_CANCELED, 409}, {VX_E_TOO_LARGE, 413}, {VX_E_UNSUPPORTED, 415}, {VX_E_RANGE, 416},
        {VX_E_UNPROCESSABLE, 422}, {VX_E_INTERNAL, 500}, {VX_E_UNAVAILABLE, 503}, {VX_E_GONE, 410},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        CHECK_EQ_INT(vx_err_http_status(table[i].s), table[i].http);
    CHECK_EQ_INT(vx_err_http_status((vx_status)999), 500);
}

TEST_MAIN(TEST_ENTRY(test_set_fills_status_code_and_message_and_returns_minus_one),
          TEST_ENTRY(test_long_codes_and_messages_are_truncated_not_overflowed),
          TEST_ENTRY(test_messages_are_always_valid_utf8), TEST_ENTRY(test_every_status_maps_to_its_http_status))
