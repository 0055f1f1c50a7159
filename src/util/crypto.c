/* crypto.c - libsodium wrappers (see crypto.h). Thread-safe after
 * vx_crypto_init(). Password hashing cost can be lowered for tests with
 * VOXD_FAST_PASSWORD_HASH=1 (read once at init; never for production). */
#include "crypto.h"
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(vx_sha256) >= sizeof(crypto_hash_sha256_state), "vx_sha256 too small");
_Static_assert(VX_PASSWORD_HASH_SIZE >= crypto_pwhash_STRBYTES, "password hash buffer too small");

static unsigned long long pw_ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
static size_t pw_mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;

int vx_crypto_init(void) {
    if (sodium_init() < 0) return -1;
    const char *fast = getenv("VOXD_FAST_PASSWORD_HASH");
    if (fast && strcmp(fast, "1") == 0) {
        pw_ops = crypto_pwhash_OPSLIMIT_MIN;
        pw_mem = 8192 * 8; /* 64 KiB: argon2id still, just cheap */
    }
    return 0;
}

void vx_random_bytes(void *buf, size_t len) { randombytes_buf(buf, len); }

void vx_random_alnum(char *out, size_t nchars) {
    static const char set[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    for (size_t i = 0; i < nchars; i++) out[i] = set[randombytes_uniform(sizeof set - 1)];
    out[nchars] = '\0';
}

int vx_password_hash(const char *password, char out[VX_PASSWORD_HASH_SIZE]) {
    return crypto_pwhash_str_alg(out, password, strlen(password), pw_ops, pw_mem,
                                 crypto_pwhash_ALG_ARGON2ID13) == 0 ? 0 : -1;
}

bool vx_password_verify(const char *hash, const char *password) {
    return crypto_pwhash_str_verify(hash, password, strlen(password)) == 0;
}

static void to_hex(const unsigned char *bin, size_t len, char *out) {
    sodium_bin2hex(out, len * 2 + 1, bin, len);
}

void vx_sha256_hex(const void *data, size_t len, char out[VX_SHA256_HEX_SIZE]) {
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(digest, data, len);
    to_hex(digest, sizeof digest, out);
}

void vx_sha256_init(vx_sha256 *h) { crypto_hash_sha256_init((crypto_hash_sha256_state *)h->state); }

void vx_sha256_update(vx_sha256 *h, const void *data, size_t len) {
    crypto_hash_sha256_update((crypto_hash_sha256_state *)h->state, data, len);
}

void vx_sha256_final_hex(vx_sha256 *h, char out[VX_SHA256_HEX_SIZE]) {
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_final((crypto_hash_sha256_state *)h->state, digest);
    to_hex(digest, sizeof digest, out);
}

void vx_hmac_sha256(const void *key, size_t key_len, const void *msg, size_t msg_len,
                    unsigned char out[32]) {
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, key_len);
    crypto_auth_hmacsha256_update(&st, msg, msg_len);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

size_t vx_base64url_size(size_t len) {
    return sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

void vx_base64url_encode(const void *data, size_t len, char *out) {
    sodium_bin2base64(out, vx_base64url_size(len), data, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

long vx_base64url_decode(const char *text, size_t text_len, void *out, size_t out_cap) {
    size_t bin_len = 0;
    const char *end = NULL;
    if (sodium_base642bin(out, out_cap, text, text_len, NULL, &bin_len, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return -1;
    if (end != text + text_len) return -1;
    return (long)bin_len;
}

bool vx_ct_equal(const void *a, const void *b, size_t len) { return sodium_memcmp(a, b, len) == 0; }
