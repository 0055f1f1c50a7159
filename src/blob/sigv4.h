/* sigv4.h - AWS Signature Version 4, the part the s3 blob backend signs
 * itself: the canonical forms, the signing key, the signature, and presigned
 * (query-string) URLs. Ordinary requests are signed by libcurl
 * (CURLOPT_AWS_SIGV4); s3.c uses vx_sigv4_canonical_query so its queries are
 * already in the sorted form libcurl signs verbatim. Pure functions without
 * I/O or state: any thread. Call vx_crypto_init() once before use. */
#ifndef VX_SIGV4_H
#define VX_SIGV4_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "../util/crypto.h"
#include "../util/err.h"
#include "../util/strbuf.h"

#define VX_SIGV4_MAX_EXPIRES 604800 /* seven days: the longest AWS accepts */
#define VX_SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
#define VX_SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* kSigning = HMAC chain of "AWS4"+secret over date (YYYYMMDD), region,
 * service and "aws4_request". */
void vx_sigv4_signing_key(const char *secret_key, const char *date, const char *region, const char *service,
                          unsigned char out[32]);

/* Appends `s` URI-encoded as SigV4 wants: A-Za-z0-9-._~ literal, every other
 * byte %XX (upper case); '/' kept literal when keep_slash (object paths). */
void vx_sigv4_uri_encode(vx_strbuf *out, const char *s, bool keep_slash);

typedef struct vx_sigv4_param {
    const char *name;   /* unencoded */
    const char *value;  /* unencoded; "" for a bare "?uploads" */
} vx_sigv4_param;

/* Appends the canonical query string: names and values encoded, sorted by
 * name then value, "name=value" joined by '&'. At most 32 params. */
void vx_sigv4_canonical_query(vx_strbuf *out, const vx_sigv4_param *params, size_t n);

typedef struct vx_sigv4_request {
    const char *method;            /* "GET", "PUT", ... */
    const char *canonical_uri;     /* already encoded path, e.g. "/test%24file.text" */
    const char *canonical_query;   /* from vx_sigv4_canonical_query, or "" */
    const char *canonical_headers; /* "name:value\n" per signed header: lower-case
                                      names, sorted, values trimmed */
    const char *signed_headers;    /* "host;range;x-amz-date" */
    const char *payload_hash;      /* hex SHA-256 of the body, or UNSIGNED-PAYLOAD */
    const char *amz_date;          /* "20130524T000000Z" */
    const char *region;
    const char *service;           /* "s3" */
} vx_sigv4_request;

/* The string to sign (algorithm, date, scope, hash of the canonical
 * request). Caller frees. */
char *vx_sigv4_string_to_sign(const vx_sigv4_request *req);

/* The request's signature as 64 lower-case hex characters. */
void vx_sigv4_sign(const vx_sigv4_request *req, const char *secret_key, char out[VX_SHA256_HEX_SIZE]);

typedef struct vx_sigv4_presign {
    const char *method;        /* "GET" or "PUT" */
    const char *base_url;      /* "scheme://host[:port]", no path */
    const char *path;          /* unencoded, starts with '/': "/bucket/key" or "/key" */
    const char *region;
    const char *service;       /* "s3" */
    const char *access_key;
    const char *secret_key;
    const char *session_token; /* NULL or "" without temporary credentials */
    int64_t expires;           /* seconds, 1..VX_SIGV4_MAX_EXPIRES */
    time_t now;                /* signing time */
} vx_sigv4_presign;

/* A presigned URL (X-Amz-Algorithm, Credential, Date, Expires,
 * SignedHeaders=host, Signature; UNSIGNED-PAYLOAD) that any HTTP client may
 * use for `method` until now + expires. The Host signed is the base URL's
 * host, with its port unless it is the scheme's default. Caller frees;
 * NULL with INVALID "invalid_presign" on bad input. */
char *vx_sigv4_presign_url(const vx_sigv4_presign *p, vx_err *err);

#endif
