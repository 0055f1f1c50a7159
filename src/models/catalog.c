/* catalog.c - the one table of models voxd offers, parameter validation
 * against each model's specs, and the catalog's JSON face (GET /v1/models).
 * Adding a model = one file in src/models/ plus one line in `models` below.
 * Any thread: the table is const and nothing here keeps state. */
#include <math.h>
#include <string.h>
#include "../util/credits.h"
#include "../util/strbuf.h"
#include "model.h"

static const vx_model *const models[] = {
    &vx_model_convert,
    &vx_model_transcribe,
    &vx_model_segment,
    &vx_model_analyze,
    &vx_model_enhance,
};
#define N_MODELS (sizeof models / sizeof models[0])

const vx_model *vx_catalog_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < N_MODELS; i++)
        if (strcmp(models[i]->name, name) == 0) return models[i];
    return NULL;
}

const vx_model *const *vx_catalog_all(size_t *n) {
    if (n) *n = N_MODELS;
    return models;
}

static const char *type_name(vx_param_type t) {
    switch (t) {
    case VX_PARAM_INT: return "integer";
    case VX_PARAM_NUMBER: return "number";
    case VX_PARAM_BOOL: return "boolean";
    case VX_PARAM_ENUM: return "enum";
    }
    return "unknown";
}

static const vx_param_spec *find_spec(const vx_model *m, const char *name) {
    for (size_t i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, name) == 0) return &m->params[i];
    return NULL;
}

/* "wav, flac, opus" for messages. */
static void choices_text(const vx_param_spec *s, char *out, size_t n) {
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; s->choices && s->choices[i] && used < n; i++)
        used += (size_t)snprintf(out + used, n - used, "%s%s", i ? ", " : "", s->choices[i]);
}

static json_t *default_value(const vx_param_spec *s) {
    switch (s->type) {
    case VX_PARAM_INT: return json_integer((json_int_t)s->default_number);
    case VX_PARAM_NUMBER: return json_real(s->default_number);
    case VX_PARAM_BOOL: return json_boolean(s->default_bool);
    case VX_PARAM_ENUM: return json_string(s->default_choice);
    }
    return json_null();
}

/* Checks one supplied value; returns the normalised value or NULL (err set). */
static json_t *check_value(const vx_param_spec *s, const json_t *v, vx_err *err) {
    char list[256];
    switch (s->type) {
    case VX_PARAM_INT: {
        double x;
        if (json_is_integer(v))
            x = (double)json_integer_value(v);
        else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)))
            x = json_real_value(v); /* 16000.0 is an integer written by a float-minded client */
        else {
            vx_err_set(err, VX_E_UNPROCESSABLE, "invalid_param", "%s must be an integer between %.0f and %.0f",
                       s->name, s->min, s->max);
            return NULL;
        }
        if (x < s->min || x > s->max) {
            vx_err_set(err, VX_E_UNPROCESSABLE, "param_out_of_range", "%s must be between %.0f and %.0f",
                       s->name, s->min, s->max);
            return NULL;
        }
        return json_integer((json_int_t)x);
    }
    case VX_PARAM_NUMBER: {
        if (!json_is_number(v)) {
            vx_err_set(err, VX_E_UNPROCESSABLE, "invalid_param", "%s must be a number between %g and %g", s->name,
                       s->min, s->max);
            return NULL;
        }
        double x = json_number_value(v);
        if (!(x >= s->min && x <= s->max)) {
            vx_err_set(err, VX_E_UNPROCESSABLE, "param_out_of_range", "%s must be between %g and %g", s->name,
                       s->min, s->max);
            return NULL;
        }
        return json_real(x);
    }
    case VX_PARAM_BOOL:
        if (!json_is_boolean(v)) {
            vx_err_set(err, VX_E_UNPROCESSABLE, "invalid_param", "%s must be true or false", s->name);
            return NULL;
        }
        return json_boolean(json_is_true(v));
    case VX_PARAM_ENUM: {
        choices_text(s, list, sizeof list);
        if (!json_is_string(v)) {
            vx_err_set(err, VX_E_UNPROCESSABLE, "invalid_param", "%s must be a string, one of: %s", s->name, list);
            return NULL;
        }
        const char *str = json_string_value(v);
        for (size_t i = 0; s->choices && s->choices[i]; i++)
            if (strcmp(s->choices[i], str) == 0) return json_string(str);
        vx_err_set(err, VX_E_UNPROCESSABLE, "param_out_of_range", "%s must be one of: %s", s->name, list);
        return NULL;
    }
    }
    vx_err_set(err, VX_E_INTERNAL, "internal", "bad parameter spec");
    return NULL;
}

int vx_catalog_validate_params(const vx_model *m, const json_t *params, json_t **out, vx_err *err) {
    *out = NULL;
    if (params && !json_is_object(params) && !json_is_null(params))
        return vx_err_set(err, VX_E_UNPROCESSABLE, "invalid_param", "params must be a JSON object");
    const char *key;
    const json_t *value;
    if (params && json_is_object(params)) {
        json_object_foreach((json_t *)params, key, value) {
            if (!find_spec(m, key)) {
                vx_strbuf known = {0};
                for (size_t i = 0; i < m->n_params; i++)
                    vx_strbuf_printf(&known, "%s%s", i ? ", " : "", m->params[i].name);
                vx_err_set(err, VX_E_UNPROCESSABLE, "unknown_param", "unknown parameter \"%.64s\" for %s (known: %s)",
                           key, m->name, known.data ? known.data : "none");
                vx_strbuf_free(&known);
                return -1;
            }
        }
    }
    json_t *result = json_object();
    for (size_t i = 0; i < m->n_params; i++) {
        const vx_param_spec *s = &m->params[i];
        const json_t *given = params && json_is_object(params) ? json_object_get(params, s->name) : NULL;
        /* An explicit null asks for the default, as an absent key does. */
        json_t *v = given && !json_is_null(given) ? check_value(s, given, err) : default_value(s);
        if (!v) {
            json_decref(result);
            return -1;
        }
        json_object_set_new(result, s->name, v);
    }
    *out = result;
    return 0;
}

json_t *vx_catalog_model_json(const vx_model *m, int64_t per_job, int64_t per_second) {
    json_t *inputs = json_array(), *params = json_array();
    for (size_t i = 0; m->inputs && m->inputs[i]; i++) json_array_append_new(inputs, json_string(m->inputs[i]));
    for (size_t i = 0; i < m->n_params; i++) {
        const vx_param_spec *s = &m->params[i];
        json_t *p = json_pack("{s:s, s:s, s:s, s:o}", "name", s->name, "type", type_name(s->type), "description",
                              s->description ? s->description : "", "default", default_value(s));
        if (s->type == VX_PARAM_INT) {
            json_object_set_new(p, "min", json_integer((json_int_t)s->min));
            json_object_set_new(p, "max", json_integer((json_int_t)s->max));
        } else if (s->type == VX_PARAM_NUMBER) {
            json_object_set_new(p, "min", json_real(s->min));
            json_object_set_new(p, "max", json_real(s->max));
        } else if (s->type == VX_PARAM_ENUM) {
            json_t *choices = json_array();
            for (size_t k = 0; s->choices && s->choices[k]; k++) json_array_append_new(choices, json_string(s->choices[k]));
            json_object_set_new(p, "choices", choices);
        }
        json_array_append_new(params, p);
    }
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:{s:o, s:o}}", "name", m->name, "kind", m->kind, "description",
                     m->description, "inputs", inputs, "params", params, "price", "per_job", vx_credits_json(per_job),
                     "per_second", vx_credits_json(per_second));
}
