/* test_jwt.c - src/util/jwt.c: a known-answer token computed outside voxd
 * (Python hmac/base64), then every way a token must be refused: tampering,
 * other algorithms, bad structure, expiry and missing claims. */
#include <stdlib.h>
#include <string.h>
#include "test.h"
#include "../../src/util/crypto.h"
#include "../../src/util/jwt.h"

static const char secret[] = "voxd-test-secret-0123456789abcdef";
#define SECRET (const unsigned char *)secret, strlen(secret)
#define NOW 1700000100
/* HS256 over {"alg":"HS256","typ":"JWT"} . {"sub":"usr_test","role":"user",
 * "iat":1700000000,"exp":1700000900} with `secret`, computed by Python. */
static const char kat[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJ1c3JfdGVzdCIsInJvbGUiOiJ1c2VyIiwiaWF0IjoxNzAwMDAwMDAwLCJleHAiOjE3MDAwMDA5MDB9."
    "unCo8g9G7_ctuq0JpH24guIbIqTsC4GWQTQgavDiBDo";
#define KAT_CLAIMS "{\"sub\":\"usr_test\",\"role\":\"user\",\"iat\":1700000000,\"exp\":1700000900}"
#define HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* Builds "b64(header).b64(payload).b64(HMAC)" by hand; malloc'd. */
static char *make_token(const char *header, const char *payload, int sign) {
    size_t cap = vx_base64url_size(strlen(header)) + vx_base64url_size(strlen(payload)) + 64;
    char *t = malloc(cap);
    vx_base64url_encode(header, strlen(header), t);
    strcat(t, ".");
    vx_base64url_encode(payload, strlen(payload), t + strlen(t));
    strcat(t, ".");
    if (sign) {
        unsigned char mac[32];
        vx_hmac_sha256(secret, strlen(secret), t, strlen(t) - 1, mac);
        vx_base64url_encode(mac, sizeof mac, t + strlen(t));
    }
    return t;
}

/* Verifies and returns the error code ("" on success). */
static const char *verify_code(const char *token, int64_t now) {
    static vx_err err;
    char sub[64];
    vx_err_clear(&err);
    if (vx_jwt_verify(SECRET, token, now, sub, sizeof sub, &err) == 0) return "";
    if (err.status != VX_E_UNAUTHORIZED) return "wrong_status";
    return err.code;
}

static void check_built(const char *header, const char *payload, const char *want_code) {
    char *t = make_token(header, payload, 1);
    CHECK_EQ_STR(verify_code(t, NOW), want_code);
    free(t);
}

static void test_sign_matches_independent_known_answer(void) {
    REQUIRE(vx_crypto_init() == 0);
    char *t = vx_jwt_sign(SECRET, "usr_test", "user", 1700000000, 900);
    REQUIRE(t);
    CHECK_EQ_STR(t, kat);
    free(t);
    char *hand = make_token(HS256, KAT_CLAIMS, 1);
    CHECK_EQ_STR(hand, kat);
    free(hand);
}

static void test_valid_token_yields_subject(void) {
    char sub[64];
    vx_err err;
    CHECK_EQ_INT(vx_jwt_verify(SECRET, kat, NOW, sub, sizeof sub, &err), 0);
    CHECK_EQ_STR(sub, "usr_test");
    /* typ is optional */
    check_built("{\"alg\":\"HS256\"}", KAT_CLAIMS, "");
}

static void test_tampered_payload_is_invalid(void) {
    /* Someone else's claims under the original signature. */
    char *forged = make_token(HS256, "{\"sub\":\"usr_admin\",\"exp\":1700000900}", 0);
    const char *sig = strrchr(kat, '.') + 1;
    forged = realloc(forged, strlen(forged) + strlen(sig) + 1);
    strcat(forged, sig);
    CHECK_EQ_STR(verify_code(forged, NOW), "invalid_token");
    free(forged);
    /* One flipped character inside the payload segment. */
    char t[sizeof kat];
    memcpy(t, kat, sizeof kat);
    char *p = strchr(t, '.') + 5;
    *p = *p == 'A' ? 'B' : 'A';
    CHECK_EQ_STR(verify_code(t, NOW), "invalid_token");
}

static void test_tampered_signature_is_invalid(void) {
    char t[sizeof kat];
    memcpy(t, kat, sizeof kat);
    char *s = strrchr(t, '.') + 1;
    s[0] = s[0] == 'u' ? 'v' : 'u';
    CHECK_EQ_STR(verify_code(t, NOW), "invalid_token");
    /* Truncated and extended signatures. */
    memcpy(t, kat, sizeof kat);
    t[strlen(t) - 2] = '\0';
    CHECK_EQ_STR(verify_code(t, NOW), "invalid_token");
    char longer[sizeof kat + 4];
    snprintf(longer, sizeof longer, "%sAAAA", kat);
    CHECK_EQ_STR(verify_code(longer, NOW), "invalid_token");
    /* Right token, wrong secret. */
    char sub[64];
    vx_err err;
    CHECK_EQ_INT(vx_jwt_verify((const unsigned char *)"other", 5, kat, NOW, sub, sizeof sub, &err), -1);
    CHECK_EQ_STR(err.code, "invalid_token");
}

static void test_alg_none_and_other_algorithms_are_refused(void) {
    char *none = make_token("{\"alg\":\"none\",\"typ\":\"JWT\"}", KAT_CLAIMS, 0);
    CHECK_EQ_STR(verify_code(none, NOW), "invalid_token");
    free(none);
    check_built("{\"alg\":\"none\",\"typ\":\"JWT\"}", KAT_CLAIMS, "invalid_token");
    check_built("{\"alg\":\"hs256\",\"typ\":\"JWT\"}", KAT_CLAIMS, "invalid_token");
    check_built("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", KAT_CLAIMS, "invalid_token");
    check_built("{\"alg\":\"HS512\"}", KAT_CLAIMS, "invalid_token");
    check_built("{\"typ\":\"JWT\"}", KAT_CLAIMS, "invalid_token");
    check_built("{\"alg\":[\"HS256\"]}", KAT_CLAIMS, "invalid_token");
    check_built("{\"alg\":\"HS256\",\"typ\":\"jwt\"}", KAT_CLAIMS, "invalid_token");
    check_built("{\"alg\":\"HS256\",\"typ\":1}", KAT_CLAIMS, "invalid_token");
    check_built("{\"alg\":\"HS256\",\"alg\":\"none\"}", KAT_CLAIMS, "invalid_token");
    check_built("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", KAT_CLAIMS, "invalid_token");
    check_built("[\"HS256\"]", KAT_CLAIMS, "invalid_token");
    check_built("not json", KAT_CLAIMS, "invalid_token");
}

static void test_expired_token_reports_token_expired(void) {
    CHECK_EQ_STR(verify_code(kat, 1700000900), "token_expired"); /* exp == now */
    CHECK_EQ_STR(verify_code(kat, 1800000000), "token_expired");
    CHECK_EQ_STR(verify_code(kat, 1700000899), "");
    char *t = vx_jwt_sign(SECRET, "usr_x", "user", NOW, -10);
    CHECK_EQ_STR(verify_code(t, NOW), "token_expired");
    free(t);
}

static void test_missing_or_malformed_claims_are_invalid(void) {
    check_built(HS256, "{\"sub\":\"usr_test\"}", "invalid_token");
    check_built(HS256, "{\"sub\":\"usr_test\",\"exp\":\"1700000900\"}", "invalid_token");
    check_built(HS256, "{\"sub\":\"usr_test\",\"exp\":1700000900.0}", "invalid_token");
    check_built(HS256, "{\"exp\":1700000900}", "invalid_token");
    check_built(HS256, "{\"sub\":7,\"exp\":1700000900}", "invalid_token");
    check_built(HS256, "{\"sub\":\"\",\"exp\":1700000900}", "invalid_token");
    check_built(HS256, "{\"sub\":\"a\\u0000b\",\"exp\":1700000900}", "invalid_token");
    check_built(HS256, "[1700000900]", "invalid_token");
    check_built(HS256, "{}", "invalid_token");
    /* A subject longer than the caller's buffer is refused, not truncated. */
    char sub[4];
    vx_err err;
    CHECK_EQ_INT(vx_jwt_verify(SECRET, kat, NOW, sub, sizeof sub, &err), -1);
    CHECK_EQ_STR(err.code, "invalid_token");
}

static void test_wrong_segment_count_is_invalid(void) {
    CHECK_EQ_STR(verify_code("", NOW), "invalid_token");
    CHECK_EQ_STR(verify_code("abc", NOW), "invalid_token");
    CHECK_EQ_STR(verify_code("a.b", NOW), "invalid_token");
    CHECK_EQ_STR(verify_code("..", NOW), "invalid_token");
    char four[sizeof kat + 8];
    snprintf(four, sizeof four, "%s.AAAA", kat);
    CHECK_EQ_STR(verify_code(four, NOW), "invalid_token");
    snprintf(four, sizeof four, " %s", kat);
    CHECK_EQ_STR(verify_code(four, NOW), "invalid_token");
    char sub[64];
    vx_err err;
    CHECK_EQ_INT(vx_jwt_verify(SECRET, NULL, NOW, sub, sizeof sub, &err), -1);
    char *huge = malloc(10001);
    memset(huge, 'A', 10000);
    huge[10000] = '\0';
    huge[10] = huge[20] = '.';
    CHECK_EQ_STR(verify_code(huge, NOW), "invalid_token");
    free(huge);
}

static void test_sign_verify_round_trip_with_random_secret(void) {
    unsigned char key[32];
    vx_random_bytes(key, sizeof key);
    char *t = vx_jwt_sign(key, sizeof key, "usr_0123456789abcdefghjkmnpq", "admin", NOW, 60);
    REQUIRE(t);
    char sub[64];
    vx_err err;
    CHECK_EQ_INT(vx_jwt_verify(key, sizeof key, t, NOW + 59, sub, sizeof sub, &err), 0);
    CHECK_EQ_STR(sub, "usr_0123456789abcdefghjkmnpq");
    CHECK_EQ_INT(vx_jwt_verify(key, sizeof key, t, NOW + 60, sub, sizeof sub, &err), -1);
    CHECK_EQ_STR(err.code, "token_expired");
    free(t);
}

TEST_MAIN(TEST_ENTRY(test_sign_matches_independent_known_answer),
          TEST_ENTRY(test_valid_token_yields_subject),
          TEST_ENTRY(test_tampered_payload_is_invalid),
          TEST_ENTRY(test_tampered_signature_is_invalid),
          TEST_ENTRY(test_alg_none_and_other_algorithms_are_refused),
          TEST_ENTRY(test_expired_token_reports_token_expired),
          TEST_ENTRY(test_missing_or_malformed_claims_are_invalid),
          TEST_ENTRY(test_wrong_segment_count_is_invalid),
          TEST_ENTRY(test_sign_verify_round_trip_with_random_secret))
