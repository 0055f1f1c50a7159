/* fuzz_credits.c - libFuzzer target for credit amounts (vx_credits_parse in
 * src/util/credits.c): the input is JSON text, as in a top-up or admin
 * credits body. Accepted amounts must be in range and survive the trip
 * back through vx_credits_format / vx_credits_json and JSON text unchanged. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../../src/util/credits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Parses JSON text of one amount; aborts unless it gives back `micro`. */
static void expect_same(const char *text, int64_t micro) {
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    if (!v) abort();
    int64_t back = 0;
    vx_err err = {0};
    if (vx_credits_parse(v, 1, &back, &err) != 0 || back != micro) abort();
    json_decref(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    json_t *v = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (!v) return 0;
    for (int allow_negative = 0; allow_negative <= 1; allow_negative++) {
        int64_t micro = 0;
        vx_err err = {0};
        int rc = vx_credits_parse(v, allow_negative, &micro, &err);
        if (rc != 0) {
            if (rc != -1 || err.status != VX_E_INVALID || strcmp(err.code, "invalid_amount") != 0) abort();
            continue;
        }
        if (micro == 0 || micro > VX_CREDITS_MAX || micro < -VX_CREDITS_MAX) abort();
        if (!allow_negative && micro < 0) abort();

        char text[32];
        vx_credits_format(micro, text);
        expect_same(text, micro);

        json_t *j = vx_credits_json(micro);
        if (!j) abort();
        char *dumped = json_dumps(j, VX_JSON_DUMP_FLAGS | JSON_ENCODE_ANY);
        if (!dumped) abort();
        expect_same(dumped, micro);
        free(dumped);
        json_decref(j);
    }
    json_decref(v);
    return 0;
}
