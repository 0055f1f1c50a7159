/* err.c - filling vx_err and mapping its status to HTTP. */
#include "err.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "utf8.h"

int vx_err_set(vx_err *err, vx_status status, const char *code, const char *fmt, ...) {
    if (!err) return -1;
    err->status = status;
    snprintf(err->code, sizeof err->code, "%s", code ? code : "error");
    char raw[sizeof err->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    /* Messages may quote client bytes or be cut mid-character; they go into JSON. */
    vx_utf8_sanitize(raw, err->message, sizeof err->message);
    return -1;
}

void vx_err_clear(vx_err *err) {
    if (!err) return;
    err->status = VX_OK;
    err->code[0] = '\0';
    err->message[0] = '\0';
}

int vx_err_http_status(vx_status status) {
    switch (status) {
    case VX_OK: return 200;
    case VX_E_INVALID: return 400;
    case VX_E_UNAUTHORIZED: return 401;
    case VX_E_PAYMENT: return 402;
    case VX_E_FORBIDDEN: return 403;
    case VX_E_NOT_FOUND: return 404;
    case VX_E_METHOD: return 405;
    case VX_E_CONFLICT: return 409;
    case VX_E_CANCELED: return 409;
    case VX_E_TOO_LARGE: return 413;
    case VX_E_UNSUPPORTED: return 415;
    case VX_E_RANGE: return 416;
    case VX_E_UNPROCESSABLE: return 422;
    case VX_E_UNAVAILABLE: return 503;
    case VX_E_GONE: return 410;
    case VX_E_INTERNAL: return 500;
    }
    return 500;
}
