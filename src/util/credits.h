/* credits.h - money is integer micro-credits (1 credit = 1,000,000 micro).
 * JSON shows decimal credits ("balance": 12.5). Conversion to and from JSON
 * is the only place a double appears, and it is rounded to the micro-credit
 * and range-checked; arithmetic and storage are always int64. */
#ifndef VX_CREDITS_H
#define VX_CREDITS_H
#include <stdint.h>
#include <jansson.h>
#include "err.h"

#define VX_MICRO 1000000LL
/* Largest amount accepted anywhere: one billion credits. */
#define VX_CREDITS_MAX (1000000000LL * VX_MICRO)

/* A JSON number with the exact decimal value (json dump uses
 * VX_JSON_DUMP_FLAGS so 0.1 prints as 0.1). Returns a new reference. */
json_t *vx_credits_json(int64_t micro);
/* Parses a JSON number of credits with at most 6 decimals, |x| <= VX_CREDITS_MAX.
 * allow_negative=0 also rejects zero and negatives. 400 "invalid_amount" on failure. */
int vx_credits_parse(const json_t *value, int allow_negative, int64_t *out_micro, vx_err *err);
/* "12.5", "-0.000001", "3" into out (32 bytes). */
void vx_credits_format(int64_t micro, char out[32]);

/* Flags every voxd json_dumps uses: compact, keys in insertion order, 15
 * significant digits so decimal credits print exactly. */
#define VX_JSON_DUMP_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))

#endif
