/* crypto.h - the small set of primitives voxd needs, all from libsodium:
 * random tokens, argon2id password hashes, SHA-256, HMAC-SHA256, base64url and
 * constant-time comparison. vx_crypto_init() must run once before any other
 * call (main does it); everything else is thread-safe. */
#ifndef VX_CRYPTO_H
#define VX_CRYPTO_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VX_SHA256_HEX_SIZE 65  /* 64 hex chars + NUL */
#define VX_PASSWORD_HASH_SIZE 128

int vx_crypto_init(void);

void vx_random_bytes(void *buf, size_t len);
/* Random string of `nchars` chars from [A-Za-z0-9] into out (out has nchars+1). */
void vx_random_alnum(char *out, size_t nchars);

/* argon2id (libsodium "interactive" limits unless VOXD_FAST_PASSWORD_HASH is
 * set, which tests use). Returns 0 on success, -1 when out of memory. */
int vx_password_hash(const char *password, char out[VX_PASSWORD_HASH_SIZE]);
bool vx_password_verify(const char *hash, const char *password);

void vx_sha256_hex(const void *data, size_t len, char out[VX_SHA256_HEX_SIZE]);

/* Incremental SHA-256 (for hashing uploads as they stream). */
typedef struct vx_sha256 { unsigned char state[208] __attribute__((aligned(64))); } vx_sha256;
void vx_sha256_init(vx_sha256 *h);
void vx_sha256_update(vx_sha256 *h, const void *data, size_t len);
void vx_sha256_final_hex(vx_sha256 *h, char out[VX_SHA256_HEX_SIZE]);

void vx_hmac_sha256(const void *key, size_t key_len, const void *msg, size_t msg_len,
                    unsigned char out[32]);

/* base64url without padding. Encode: out must hold vx_base64url_size(len).
 * Decode: returns decoded length or -1 on bad input / too small out. */
size_t vx_base64url_size(size_t len);
void vx_base64url_encode(const void *data, size_t len, char *out);
long vx_base64url_decode(const char *text, size_t text_len, void *out, size_t out_cap);

/* Constant-time equality of two equal-length buffers. */
bool vx_ct_equal(const void *a, const void *b, size_t len);

#endif
