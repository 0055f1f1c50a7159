/* err.h - the one error type that crosses every layer of voxd.
 * A function that can fail returns int (0 ok, -1 failed) or a pointer (NULL
 * failed) and fills a caller-owned vx_err. The API layer maps `status` to an
 * HTTP status in one table (vx_err_http_status); `code` is the stable
 * snake_case string clients see. Messages never contain paths, SQL or
 * secrets, and are always valid UTF-8 (vx_err_set repairs them). */
#ifndef VX_ERR_H
#define VX_ERR_H

typedef enum vx_status {
    VX_OK = 0,
    VX_E_INVALID,        /* 400: malformed or invalid request */
    VX_E_UNAUTHORIZED,   /* 401: no, bad, revoked or expired credentials */
    VX_E_PAYMENT,        /* 402: not enough credits */
    VX_E_FORBIDDEN,      /* 403: authenticated but not allowed */
    VX_E_NOT_FOUND,      /* 404 */
    VX_E_METHOD,         /* 405 */
    VX_E_CONFLICT,       /* 409: duplicate, idempotency mismatch, wrong state */
    VX_E_TOO_LARGE,      /* 413: body or upload over a limit */
    VX_E_UNSUPPORTED,    /* 415: unsupported media type / audio format */
    VX_E_UNPROCESSABLE,  /* 422: well-formed but unacceptable (duration, bounds) */
    VX_E_RANGE,          /* 416: unsatisfiable byte range */
    VX_E_CANCELED,       /* job canceled while running (internal) */
    VX_E_INTERNAL,       /* 500 */
    VX_E_UNAVAILABLE,    /* 503: a backend is down or we are shutting down */
    VX_E_GONE,           /* 410: existed but has expired (a direct-upload URL) */
} vx_status;

typedef struct vx_err {
    vx_status status;
    char code[48];      /* snake_case, stable, e.g. "insufficient_credits" */
    char message[256];  /* for humans; safe to show to the client */
} vx_err;

/* Fills `err` (if not NULL) and returns -1 so callers can `return vx_err_set(...)`. */
int vx_err_set(vx_err *err, vx_status status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Resets to VX_OK with empty code and message. */
void vx_err_clear(vx_err *err);

/* The HTTP status for an error status (VX_E_CANCELED maps to 409). */
int vx_err_http_status(vx_status status);

#endif
