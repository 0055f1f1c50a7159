/* jwt.h - HS256 JSON Web Tokens with strict checks: header must be exactly
 * alg=HS256 (typ JWT if present), signature compared in constant time, `exp`
 * required and in the future, `sub` required. Nothing else is accepted. */
#ifndef VX_JWT_H
#define VX_JWT_H
#include <stddef.h>
#include <stdint.h>
#include "err.h"

/* Returns a malloc'd token for {"sub":sub,"role":role,"iat":now,"exp":now+ttl}
 * (caller frees), or NULL when out of memory. Times in seconds. */
char *vx_jwt_sign(const unsigned char *secret, size_t secret_len, const char *sub,
                  const char *role, int64_t now_s, int64_t ttl_s);

/* Verifies `token` at time now_s. On success copies the subject into sub
 * (sub_cap bytes) and returns 0; otherwise -1 with VX_E_UNAUTHORIZED and
 * code "invalid_token" or "token_expired". */
int vx_jwt_verify(const unsigned char *secret, size_t secret_len, const char *token,
                  int64_t now_s, char *sub, size_t sub_cap, vx_err *err);

#endif
