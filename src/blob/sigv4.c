/* sigv4.c - AWS Signature Version 4 canonical forms, signatures and
 * presigned URLs (sigv4.h). Checked against AWS's published examples in
 * tests/unit/test_sigv4.c. No state: any thread. */
#include "sigv4.h"
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PARAMS 32

void vx_sigv4_signing_key(const char *secret_key, const char *date, const char *region, const char *service,
                          unsigned char out[32]) {
    size_t slen = strlen(secret_key);
    char *k = malloc(slen + 5);
    if (!k) abort(); /* as vx_strbuf: a few bytes we cannot do without */
    memcpy(k, "AWS4", 4);
    memcpy(k + 4, secret_key, slen + 1);
    unsigned char a[32], b[32];
    vx_hmac_sha256(k, slen + 4, date, strlen(date), a);
    vx_hmac_sha256(a, sizeof a, region, strlen(region), b);
    vx_hmac_sha256(b, sizeof b, service, strlen(service), a);
    vx_hmac_sha256(a, sizeof a, "aws4_request", 12, out);
    /* The derived keys are as good as the secret for a day: wipe them. */
    explicit_bzero(k, slen + 4);
    explicit_bzero(a, sizeof a);
    explicit_bzero(b, sizeof b);
    free(k);
}

void vx_sigv4_uri_encode(vx_strbuf *out, const char *s, bool keep_slash) {
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                     c == '.' || c == '_' || c == '~' || (keep_slash && c == '/');
        if (plain) {
            char ch = (char)c;
            vx_strbuf_append(out, &ch, 1);
        } else {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
            vx_strbuf_append(out, esc, 3);
        }
    }
    if (!out->data) vx_strbuf_append(out, "", 0);
}

typedef struct encoded_param {
    char *name;
    char *value;
} encoded_param;

static int cmp_param(const void *x, const void *y) {
    const encoded_param *a = x, *b = y;
    int c = strcmp(a->name, b->name);
    return c ? c : strcmp(a->value, b->value);
}

static char *encode(const char *s) {
    vx_strbuf b = {0};
    vx_sigv4_uri_encode(&b, s, false);
    return vx_strbuf_take(&b);
}

void vx_sigv4_canonical_query(vx_strbuf *out, const vx_sigv4_param *params, size_t n) {
    encoded_param enc[MAX_PARAMS];
    if (n > MAX_PARAMS) n = MAX_PARAMS;
    for (size_t i = 0; i < n; i++) {
        enc[i].name = encode(params[i].name);
        enc[i].value = encode(params[i].value ? params[i].value : "");
    }
    /* Sorting the encoded forms is what AWS specifies (byte order). */
    qsort(enc, n, sizeof enc[0], cmp_param);
    for (size_t i = 0; i < n; i++) {
        vx_strbuf_printf(out, "%s%s=%s", i ? "&" : "", enc[i].name, enc[i].value);
        free(enc[i].name);
        free(enc[i].value);
    }
    if (!out->data) vx_strbuf_append(out, "", 0);
}

/* Returns the string to sign; caller frees. */
char *vx_sigv4_string_to_sign(const vx_sigv4_request *req) {
    vx_strbuf canon = {0};
    vx_strbuf_printf(&canon, "%s\n%s\n%s\n%s\n%s\n%s", req->method, req->canonical_uri,
                     req->canonical_query ? req->canonical_query : "", req->canonical_headers,
                     req->signed_headers, req->payload_hash);
    char hash[VX_SHA256_HEX_SIZE];
    vx_sha256_hex(canon.data, canon.len, hash);
    vx_strbuf_free(&canon);
    vx_strbuf sts = {0};
    vx_strbuf_printf(&sts, "AWS4-HMAC-SHA256\n%s\n%.8s/%s/%s/aws4_request\n%s", req->amz_date, req->amz_date,
                     req->region, req->service, hash);
    return vx_strbuf_take(&sts);
}

void vx_sigv4_sign(const vx_sigv4_request *req, const char *secret_key, char out[VX_SHA256_HEX_SIZE]) {
    static const char hex[] = "0123456789abcdef";
    char date[9];
    snprintf(date, sizeof date, "%.8s", req->amz_date);
    unsigned char key[32], mac[32];
    vx_sigv4_signing_key(secret_key, date, req->region, req->service, key);
    char *sts = vx_sigv4_string_to_sign(req);
    vx_hmac_sha256(key, sizeof key, sts, strlen(sts), mac);
    free(sts);
    explicit_bzero(key, sizeof key);
    for (size_t i = 0; i < sizeof mac; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[64] = '\0';
}

/* The Host header a client sends for base_url: host[:port], lower case,
 * without the scheme's default port. 0, or -1 when base_url is unusable. */
static int host_of(const char *base_url, char *out, size_t cap) {
    bool https = strncmp(base_url, "https://", 8) == 0;
    if (!https && strncmp(base_url, "http://", 7) != 0) return -1;
    const char *h = base_url + (https ? 8 : 7);
    size_t len = strcspn(h, "/?#");
    if (len == 0 || len >= cap || h[len] != '\0') return -1;
    for (size_t i = 0; i < len; i++) out[i] = (char)tolower((unsigned char)h[i]);
    out[len] = '\0';
    /* Clients leave the default port out of Host, so the signature must too. */
    const char *dflt = https ? ":443" : ":80";
    size_t dl = strlen(dflt);
    bool ported = len > dl && strcmp(out + len - dl, dflt) == 0;
    if (ported && (out[0] != '[' || out[len - dl - 1] == ']')) out[len - dl] = '\0';
    return 0;
}

/* Returns the presigned URL; caller frees. */
char *vx_sigv4_presign_url(const vx_sigv4_presign *p, vx_err *err) {
    char host[512];
    if (!p->method || (strcmp(p->method, "GET") != 0 && strcmp(p->method, "PUT") != 0) || !p->path ||
        p->path[0] != '/' || !p->access_key || !*p->access_key || !p->secret_key || !p->region || !p->service ||
        !p->base_url || host_of(p->base_url, host, sizeof host) != 0) {
        vx_err_set(err, VX_E_INVALID, "invalid_presign", "cannot presign this request");
        return NULL;
    }
    if (p->expires < 1 || p->expires > VX_SIGV4_MAX_EXPIRES) {
        vx_err_set(err, VX_E_INVALID, "invalid_presign", "a presigned URL lasts 1 to %d seconds",
                   VX_SIGV4_MAX_EXPIRES);
        return NULL;
    }
    struct tm tm;
    char amz_date[20], credential[256], expires[24];
    gmtime_r(&p->now, &tm);
    strftime(amz_date, sizeof amz_date, "%Y%m%dT%H%M%SZ", &tm);
    if (snprintf(credential, sizeof credential, "%s/%.8s/%s/%s/aws4_request", p->access_key, amz_date, p->region,
                 p->service) >= (int)sizeof credential) {
        vx_err_set(err, VX_E_INVALID, "invalid_presign", "the credential scope is too long");
        return NULL;
    }
    snprintf(expires, sizeof expires, "%lld", (long long)p->expires);
    vx_sigv4_param params[6] = {
        {.name = "X-Amz-Algorithm", .value = "AWS4-HMAC-SHA256"},
        {.name = "X-Amz-Credential", .value = credential},
        {.name = "X-Amz-Date", .value = amz_date},
        {.name = "X-Amz-Expires", .value = expires},
        {.name = "X-Amz-SignedHeaders", .value = "host"},
    };
    size_t n = 5;
    /* Temporary credentials: the token travels in the URL, signed. */
    if (p->session_token && *p->session_token)
        params[n++] = (vx_sigv4_param){.name = "X-Amz-Security-Token", .value = p->session_token};

    vx_strbuf uri = {0}, query = {0}, headers = {0};
    vx_sigv4_uri_encode(&uri, p->path, true);
    vx_sigv4_canonical_query(&query, params, n);
    vx_strbuf_printf(&headers, "host:%s\n", host);
    vx_sigv4_request req = {
        .method = p->method,
        .canonical_uri = uri.data,
        .canonical_query = query.data,
        .canonical_headers = headers.data,
        .signed_headers = "host",
        .payload_hash = VX_SIGV4_UNSIGNED_PAYLOAD,
        .amz_date = amz_date,
        .region = p->region,
        .service = p->service,
    };
    char signature[VX_SHA256_HEX_SIZE];
    vx_sigv4_sign(&req, p->secret_key, signature);
    vx_strbuf url = {0};
    vx_strbuf_printf(&url, "%s%s?%s&X-Amz-Signature=%s", p->base_url, uri.data, query.data, signature);
    vx_strbuf_free(&uri);
    vx_strbuf_free(&query);
    vx_strbuf_free(&headers);
    return vx_strbuf_take(&url);
}
