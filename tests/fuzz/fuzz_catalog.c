/* fuzz_catalog.c - libFuzzer target for model parameter validation
 * (vx_catalog_validate_params in src/models/catalog.c): the input is the
 * `params` JSON text of a job submission, checked against every model of
 * the catalog. Accepted params must come back complete, typed, within the
 * spec's bounds, and validate again to the same object; refusals must have
 * a message the JSON error envelope can carry (valid UTF-8). */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../../src/models/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_value(const vx_param_spec *s, const json_t *v) {
    switch (s->type) {
    case VX_PARAM_INT:
        if (!json_is_integer(v)) abort();
        if ((double)json_integer_value(v) < s->min || (double)json_integer_value(v) > s->max) abort();
        break;
    case VX_PARAM_NUMBER: {
        if (!json_is_number(v)) abort();
        double d = json_number_value(v);
        if (!isfinite(d) || d < s->min || d > s->max) abort();
        break;
    }
    case VX_PARAM_BOOL:
        if (!json_is_boolean(v)) abort();
        break;
    case VX_PARAM_ENUM: {
        if (!json_is_string(v)) abort();
        size_t i = 0;
        while (s->choices && s->choices[i] && strcmp(s->choices[i], json_string_value(v)) != 0) i++;
        if (!s->choices || !s->choices[i]) abort();
        break;
    }
    }
}

static void check_model(const vx_model *m, const json_t *params) {
    json_t *out = NULL;
    vx_err err = {0};
    if (vx_catalog_validate_params(m, params, &out, &err) != 0) {
        if (out || err.status != VX_E_UNPROCESSABLE || !err.code[0]) abort();
        /* the message goes into the JSON error envelope: it must be UTF-8 */
        json_t *msg = json_string(err.message);
        if (!msg) {
            fprintf(stderr, "fuzz_catalog: error message is not valid UTF-8: %s\n", err.message);
            abort();
        }
        json_decref(msg);
        return;
    }
    if (!json_is_object(out) || json_object_size(out) != m->n_params) abort();
    for (size_t i = 0; i < m->n_params; i++) {
        const json_t *v = json_object_get(out, m->params[i].name);
        if (!v) abort();
        check_value(&m->params[i], v);
    }
    json_t *again = NULL;
    if (vx_catalog_validate_params(m, out, &again, &err) != 0 || !json_equal(out, again)) abort();
    json_decref(again);
    json_decref(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 16384) return 0;
    json_t *params = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    if (!params) return 0;
    size_t n = 0;
    const vx_model *const *all = vx_catalog_all(&n);
    for (size_t i = 0; i < n; i++) check_model(all[i], params);
    json_decref(params);
    return 0;
}
