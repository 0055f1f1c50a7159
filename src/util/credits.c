/* credits.c - the border between integer micro-credits and JSON numbers
 * (see credits.h). The only doubles in voxd's money path live here, and each
 * one is proven to be an exact 6-decimal value before it becomes an int64.
 * Pure functions; callable from any thread. */
#include "credits.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Returns a new reference; NULL only when jansson is out of memory. */
json_t *vx_credits_json(int64_t micro) {
    /* Whole credits print as "3" rather than "3.0". Otherwise the double
     * nearest micro/1e6 has <= 15 significant digits (|x| <= 1e9 with 6
     * decimals), so JSON_REAL_PRECISION(15) prints the exact decimal. */
    if (micro % VX_MICRO == 0) return json_integer((json_int_t)(micro / VX_MICRO));
    return json_real((double)micro / (double)VX_MICRO);
}

static int invalid(vx_err *err, const char *why) {
    return vx_err_set(err, VX_E_INVALID, "invalid_amount", "amount %s", why);
}

int vx_credits_parse(const json_t *value, int allow_negative, int64_t *out_micro, vx_err *err) {
    int64_t micro;
    if (json_is_integer(value)) {
        json_int_t v = json_integer_value(value);
        if (v > VX_CREDITS_MAX / VX_MICRO || v < -(VX_CREDITS_MAX / VX_MICRO))
            return invalid(err, "is out of range");
        micro = (int64_t)v * VX_MICRO;
    } else if (json_is_real(value)) {
        double d = json_real_value(value);
        if (!isfinite(d)) return invalid(err, "must be a finite number");
        if (fabs(d) > (double)(VX_CREDITS_MAX / VX_MICRO)) return invalid(err, "is out of range");
        /* Over this range d * 1e6 lands well within 0.5 of the intended
         * integer, so llround finds it (12.3 -> 12300000, not 12299999). The value had at most 6
         * decimals exactly when that integer maps back to the same double. */
        micro = (int64_t)llround(d * (double)VX_MICRO);
        if ((double)micro / (double)VX_MICRO != d)
            return invalid(err, "must have at most 6 decimals");
    } else {
        return invalid(err, "must be a number");
    }
    if (micro == 0) return invalid(err, "must not be zero");
    if (micro < 0 && !allow_negative) return invalid(err, "must be positive");
    *out_micro = micro;
    return 0;
}

void vx_credits_format(int64_t micro, char out[32]) {
    /* Unsigned magnitude so INT64_MIN formats without overflow. */
    uint64_t mag = micro < 0 ? (uint64_t)0 - (uint64_t)micro : (uint64_t)micro;
    uint64_t whole = mag / (uint64_t)VX_MICRO, frac = mag % (uint64_t)VX_MICRO;
    int n = snprintf(out, 32, "%s%llu", micro < 0 ? "-" : "", (unsigned long long)whole);
    if (frac == 0 || n < 0) return;
    char digits[8];
    snprintf(digits, sizeof digits, "%06llu", (unsigned long long)frac);
    size_t len = 6;
    while (digits[len - 1] == '0') len--;
    digits[len] = '\0';
    snprintf(out + n, 32 - (size_t)n, ".%s", digits);
}
