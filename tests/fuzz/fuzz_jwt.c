/* fuzz_jwt.c - libFuzzer target for JWT verification (src/util/jwt.c) with
 * a fixed secret. The first byte picks a mode: 0 the input is a raw token;
 * 1 the input is "header-json NUL claims-json", which this target encodes
 * and signs with the secret so the claim checks behind the signature are
 * reached; 2 "sub NUL role" goes through vx_jwt_sign and must verify. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../../src/util/crypto.h"
#include "../../src/util/jwt.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const unsigned char secret[32] = "voxd-fuzz-secret-0123456789abcd";
#define NOW 1700000000
#define SUB_CAP 64

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    if (vx_crypto_init() != 0) abort();
    return 0;
}

/* Checks the verify contract; returns rc. */
static int verify(const char *token) {
    char sub[SUB_CAP];
    vx_err err = {0};
    memset(sub, 'x', sizeof sub);
    int rc = vx_jwt_verify(secret, sizeof secret, token, NOW, sub, sizeof sub, &err);
    if (rc == 0) {
        size_t n = strnlen(sub, sizeof sub);
        if (n == 0 || n == sizeof sub) abort();
    } else {
        if (rc != -1 || err.status != VX_E_UNAUTHORIZED || sub[0] != '\0') abort();
        if (strcmp(err.code, "invalid_token") != 0 && strcmp(err.code, "token_expired") != 0) abort();
    }
    return rc;
}

/* The claims must hold an integer exp after NOW and a non-empty string sub
 * equal to what verify returned. */
static void check_accepted_claims(const char *claims, size_t len, const char *token) {
    char sub[SUB_CAP];
    vx_err err = {0};
    if (vx_jwt_verify(secret, sizeof secret, token, NOW, sub, sizeof sub, &err) != 0) abort();
    json_t *c = json_loadb(claims, len, 0, NULL);
    if (!json_is_object(c)) abort();
    json_t *exp = json_object_get(c, "exp"), *jsub = json_object_get(c, "sub");
    if (!json_is_integer(exp) || json_integer_value(exp) <= NOW) abort();
    if (!json_is_string(jsub) || strcmp(json_string_value(jsub), sub) != 0) abort();
    json_decref(c);
}

static void signed_pieces(const char *head, size_t head_len, const char *claims, size_t claims_len) {
    size_t cap = vx_base64url_size(head_len) + vx_base64url_size(claims_len) + vx_base64url_size(32) + 4;
    char *token = malloc(cap);
    if (!token) return;
    vx_base64url_encode(head, head_len, token);
    size_t pos = strlen(token);
    token[pos++] = '.';
    vx_base64url_encode(claims, claims_len, token + pos);
    pos += strlen(token + pos);
    unsigned char mac[32];
    vx_hmac_sha256(secret, sizeof secret, token, pos, mac);
    token[pos++] = '.';
    vx_base64url_encode(mac, sizeof mac, token + pos);
    if (verify(token) == 0) check_accepted_claims(claims, claims_len, token);
    /* The same token under another secret must never pass. */
    char sub[SUB_CAP];
    vx_err err = {0};
    static const unsigned char other[32] = "another-secret-0123456789abcdef";
    if (vx_jwt_verify(other, sizeof other, token, NOW, sub, sizeof sub, &err) == 0) abort();
    free(token);
}

static void round_trip(const char *sub, const char *role) {
    char *token = vx_jwt_sign(secret, sizeof secret, sub, role, NOW, 900);
    if (!token) return; /* invalid UTF-8 or too long for a token: refused at signing */
    char got[SUB_CAP];
    vx_err err = {0};
    int rc = vx_jwt_verify(secret, sizeof secret, token, NOW, got, sizeof got, &err);
    size_t n = strlen(sub);
    if (n > 0 && n < SUB_CAP) {
        if (rc != 0 || strcmp(got, sub) != 0) abort();
    } else if (rc == 0) {
        abort();
    }
    if (vx_jwt_verify(secret, sizeof secret, token, NOW + 900, got, sizeof got, &err) == 0) abort();
    free(token);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 8192) return 0;
    char *text = malloc(size);
    if (!text) return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    size_t first = strlen(text);
    const char *second = first + 1 < size ? text + first + 1 : "";
    switch (data[0] % 3) {
    case 0:
        verify(text);
        break;
    case 1:
        signed_pieces(text, first, second, first + 1 < size ? size - 1 - first - 1 : 0);
        break;
    default:
        round_trip(text, second);
        break;
    }
    free(text);
    return 0;
}
