/* jwt.c - HS256 JSON Web Tokens (see jwt.h) built on crypto.h and jansson.
 * Verification is deliberately narrow: one algorithm, three segments, the
 * signature checked in constant time before the payload is even decoded.
 * Pure functions of their arguments; callable from any thread. */
#include "jwt.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include "crypto.h"

#define JWT_MAX_LEN 4096 /* ours are ~250 bytes; refuse to parse anything huge */

/* base64url(json) appended to out at *pos. Returns -1 when out of memory. */
static int append_segment(json_t *obj, char *out, size_t cap, size_t *pos) {
    char *text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text) return -1;
    size_t len = strlen(text);
    int rc = -1;
    if (*pos + vx_base64url_size(len) <= cap) {
        vx_base64url_encode(text, len, out + *pos);
        *pos += strlen(out + *pos);
        rc = 0;
    }
    free(text);
    return rc;
}

/* Returns a malloc'd token (caller frees) or NULL when out of memory. */
char *vx_jwt_sign(const unsigned char *secret, size_t secret_len, const char *sub,
                  const char *role, int64_t now_s, int64_t ttl_s) {
    char *token = NULL;
    json_t *header = json_pack("{s:s, s:s}", "alg", "HS256", "typ", "JWT");
    json_t *claims = json_pack("{s:s, s:s, s:I, s:I}", "sub", sub ? sub : "", "role",
                               role ? role : "", "iat", (json_int_t)now_s,
                               "exp", (json_int_t)(now_s + ttl_s));
    if (!header || !claims) goto out;
    token = malloc(JWT_MAX_LEN);
    if (!token) goto out;
    size_t pos = 0;
    if (append_segment(header, token, JWT_MAX_LEN, &pos) != 0) goto fail;
    token[pos++] = '.';
    if (append_segment(claims, token, JWT_MAX_LEN, &pos) != 0) goto fail;
    unsigned char mac[32];
    vx_hmac_sha256(secret, secret_len, token, pos, mac);
    if (pos + 1 + vx_base64url_size(sizeof mac) > JWT_MAX_LEN) goto fail;
    token[pos++] = '.';
    vx_base64url_encode(mac, sizeof mac, token + pos);
    goto out;
fail:
    free(token);
    token = NULL;
out:
    json_decref(header);
    json_decref(claims);
    return token;
}

/* Decodes one base64url segment holding a JSON object. New reference or NULL. */
static json_t *decode_object(const char *text, size_t len) {
    char buf[JWT_MAX_LEN];
    long n = vx_base64url_decode(text, len, buf, sizeof buf);
    if (n <= 0) return NULL;
    json_t *obj = json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    if (obj && !json_is_object(obj)) {
        json_decref(obj);
        obj = NULL;
    }
    return obj;
}

static int header_ok(const char *text, size_t len) {
    json_t *h = decode_object(text, len);
    if (!h) return 0;
    int ok = 1;
    const char *key;
    json_t *val;
    json_object_foreach(h, key, val) {
        if (strcmp(key, "alg") == 0) {
            ok &= json_is_string(val) && strcmp(json_string_value(val), "HS256") == 0;
        } else if (strcmp(key, "typ") == 0) {
            ok &= json_is_string(val) && strcmp(json_string_value(val), "JWT") == 0;
        } else if (strcmp(key, "crit") == 0) {
            ok = 0; /* RFC 7515: unknown critical extensions must be refused */
        }
    }
    ok &= json_object_get(h, "alg") != NULL;
    json_decref(h);
    return ok;
}

int vx_jwt_verify(const unsigned char *secret, size_t secret_len, const char *token,
                  int64_t now_s, char *sub, size_t sub_cap, vx_err *err) {
    if (sub && sub_cap) sub[0] = '\0';
    if (!token) return vx_err_set(err, VX_E_UNAUTHORIZED, "invalid_token", "token is missing");
    size_t len = strnlen(token, JWT_MAX_LEN + 1);
    if (len > JWT_MAX_LEN) return vx_err_set(err, VX_E_UNAUTHORIZED, "invalid_token", "token is too long");
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot1 || !dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)))
        return vx_err_set(err, VX_E_UNAUTHORIZED, "invalid_token", "token must have three segments");
    size_t head_len = (size_t)(dot1 - token);
    size_t signed_len = (size_t)(dot2 - token);
    const char *sig_text = dot2 + 1;
    size_t sig_len = len - signed_len - 1;

    if (!header_ok(token, head_len))
        return vx_err_set(err, VX_E_UNAUTHORIZED, "invalid_token", "token header is not HS256");

    unsigned char want[32], got[33];
    long n = vx_base64url_decode(sig_text, sig_len, got, sizeof got);
    vx_hmac_sha256(secret, secret_len, token, signed_len, want);
    if (n != (long)sizeof want || !vx_ct_equal(want, got, sizeof want))
        return vx_err_set(err, VX_E_UNAUTHORIZED, "invalid_token", "token signature is invalid");

    /* Only now is the payload trusted enough to be parsed. */
    json_t *claims = decode_object(dot1 + 1, signed_len - head_len - 1);
    if (!claims) return vx_err_set(err, VX_E_UNAUTHORIZED, "invalid_token", "token payload is invalid");
    int rc = -1;
    json_t *exp = json_object_get(claims, "exp");
    json_t *jsub = json_object_get(claims, "sub");
    if (!json_is_integer(exp)) {
        vx_err_set(err, VX_E_UNAUTHORIZED, "invalid_token", "token has no expiry");
    } else if (json_integer_value(exp) <= now_s) {
        vx_err_set(err, VX_E_UNAUTHORIZED, "token_expired", "token has expired");
    } else if (!json_is_string(jsub) || json_string_length(jsub) == 0 || !sub ||
               json_string_length(jsub) >= sub_cap ||
               strlen(json_string_value(jsub)) != json_string_length(jsub)) {
        vx_err_set(err, VX_E_UNAUTHORIZED, "invalid_token", "token has no valid subject");
    } else {
        memcpy(sub, json_string_value(jsub), json_string_length(jsub) + 1);
        rc = 0;
    }
    json_decref(claims);
    return rc;
}
