/* stream.c - the pure rules of live streams (stream.h): client messages,
 * frame limits and sample conversion, close codes, billing arithmetic.
 * No I/O; any thread. */
#include "stream.h"
#include <math.h>
#include <string.h>
#include "../util/credits.h"
#include "jobs.h"

void vx_stream_config_default(vx_stream_config *cfg) {
    *cfg = (vx_stream_config){.model = "transcribe", .sample_rate = 16000, .encoding = VX_STREAM_PCM_S16LE,
                              .words = true, .partial = true};
}

void vx_stream_config_clear(vx_stream_config *cfg) {
    json_decref(cfg->params);
    cfg->params = NULL;
}

const char *vx_stream_encoding_name(vx_stream_encoding e) {
    return e == VX_STREAM_PCM_F32LE ? "pcm_f32le" : "pcm_s16le";
}

int vx_stream_sample_bytes(vx_stream_encoding e) { return e == VX_STREAM_PCM_F32LE ? 4 : 2; }

static const char *const stream_models[] = {"transcribe", "segment", "enhance", NULL};

static int config_parse(const json_t *c, vx_stream_config *cfg, vx_err *err) {
    if (!json_is_object(c)) return vx_err_set(err, VX_E_INVALID, "invalid_config", "config must be an object");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)c, key, v) {
        if (strcmp(key, "model") == 0) {
            const char *m = json_string_value(v);
            bool known = false;
            for (int i = 0; m && stream_models[i]; i++) known |= strcmp(m, stream_models[i]) == 0;
            if (!known)
                return vx_err_set(err, VX_E_UNPROCESSABLE, "unknown_model",
                                  "model must be one of: transcribe, segment, enhance");
            snprintf(cfg->model, sizeof cfg->model, "%s", m);
        } else if (strcmp(key, "sample_rate") == 0) {
            json_int_t r = json_integer_value(v);
            if (!json_is_integer(v) || r < VX_STREAM_MIN_RATE || r > VX_STREAM_MAX_RATE)
                return vx_err_set(err, VX_E_UNPROCESSABLE, "unsupported_sample_rate",
                                  "sample_rate must be an integer from %d to %d", VX_STREAM_MIN_RATE,
                                  VX_STREAM_MAX_RATE);
            cfg->sample_rate = (int)r;
        } else if (strcmp(key, "encoding") == 0) {
            const char *e = json_string_value(v);
            if (e && strcmp(e, "pcm_s16le") == 0) cfg->encoding = VX_STREAM_PCM_S16LE;
            else if (e && strcmp(e, "pcm_f32le") == 0) cfg->encoding = VX_STREAM_PCM_F32LE;
            else
                return vx_err_set(err, VX_E_UNSUPPORTED, "unsupported_encoding",
                                  "encoding must be pcm_s16le or pcm_f32le (mono)");
        } else if (strcmp(key, "words") == 0 || strcmp(key, "partial") == 0) {
            if (!json_is_boolean(v))
                return vx_err_set(err, VX_E_INVALID, "invalid_config", "%s must be true or false", key);
            if (key[0] == 'w') cfg->words = json_is_true(v);
            else cfg->partial = json_is_true(v);
        } else if (strcmp(key, "params") == 0) {
            if (!json_is_object(v))
                return vx_err_set(err, VX_E_INVALID, "invalid_config", "params must be an object");
            json_decref(cfg->params);
            cfg->params = json_incref(v);
        } else {
            return vx_err_set(err, VX_E_INVALID, "invalid_config",
                              "unknown config field (known: model, sample_rate, encoding, words, partial, params)");
        }
    }
    return 0;
}

int vx_stream_message_parse(const char *text, size_t len, vx_stream_msg_kind *kind, vx_stream_config *cfg,
                            vx_err *err) {
    json_error_t jerr;
    json_t *m = len <= VX_STREAM_MAX_TEXT ? json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    int rc = -1;
    if (!json_is_object(m) || json_object_size(m) != 1) {
        vx_err_set(err, VX_E_INVALID, "invalid_message",
                   "text messages must be one of {\"config\":{...}}, {\"eof\":1}, {\"keepalive\":1}, "
                   "at most %d bytes", VX_STREAM_MAX_TEXT);
        goto out;
    }
    if (json_object_get(m, "config")) {
        *kind = VX_STREAM_MSG_CONFIG;
        vx_stream_config_default(cfg);
        rc = config_parse(json_object_get(m, "config"), cfg, err);
        if (rc != 0) vx_stream_config_clear(cfg);
    } else if (json_object_get(m, "eof")) {
        *kind = VX_STREAM_MSG_EOF;
        rc = 0;
    } else if (json_object_get(m, "keepalive")) {
        *kind = VX_STREAM_MSG_KEEPALIVE;
        rc = 0;
    } else {
        vx_err_set(err, VX_E_INVALID, "invalid_message", "unknown message; expected config, eof or keepalive");
    }
out:
    json_decref(m);
    return rc;
}

size_t vx_stream_frame_limit(const vx_stream_config *cfg) {
    return (size_t)cfg->sample_rate * VX_STREAM_MAX_FRAME_MS / 1000 * (size_t)vx_stream_sample_bytes(cfg->encoding);
}

int vx_stream_frame_check(const vx_stream_config *cfg, size_t len, vx_err *err) {
    size_t limit = vx_stream_frame_limit(cfg);
    if (len > limit)
        return vx_err_set(err, VX_E_TOO_LARGE, "frame_too_large",
                          "an audio frame may carry at most %d ms (%zu bytes at this rate and encoding)",
                          VX_STREAM_MAX_FRAME_MS, limit);
    int b = vx_stream_sample_bytes(cfg->encoding);
    if (len == 0 || len % (size_t)b != 0)
        return vx_err_set(err, VX_E_INVALID, "invalid_audio_frame",
                          "an audio frame must hold a whole, non-zero number of %d-byte %s samples", b,
                          vx_stream_encoding_name(cfg->encoding));
    return 0;
}

size_t vx_stream_frame_decode(const vx_stream_config *cfg, const void *data, size_t len, float *out) {
    const unsigned char *p = data;
    size_t n = len / (size_t)vx_stream_sample_bytes(cfg->encoding);
    for (size_t i = 0; i < n; i++) {
        if (cfg->encoding == VX_STREAM_PCM_S16LE) {
            int16_t v = (int16_t)(uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
            out[i] = (float)v / 32768.0f;
        } else {
            uint32_t u = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
                         (uint32_t)p[4 * i + 3] << 24;
            float f;
            memcpy(&f, &u, sizeof f);
            out[i] = isfinite(f) ? (f > 1.0f ? 1.0f : f < -1.0f ? -1.0f : f) : 0.0f;
        }
    }
    return n;
}

size_t vx_stream_frame_encode(const vx_stream_config *cfg, const float *pcm, size_t n, void *out) {
    unsigned char *p = out;
    for (size_t i = 0; i < n; i++) {
        float x = isfinite(pcm[i]) ? pcm[i] : 0.0f;
        x = x > 1.0f ? 1.0f : x < -1.0f ? -1.0f : x;
        if (cfg->encoding == VX_STREAM_PCM_S16LE) {
            long v = lrintf(x * 32768.0f);
            uint16_t u = (uint16_t)(int16_t)(v > 32767 ? 32767 : v < -32768 ? -32768 : v);
            p[2 * i] = (unsigned char)(u & 0xff);
            p[2 * i + 1] = (unsigned char)(u >> 8);
        } else {
            uint32_t u;
            memcpy(&u, &x, sizeof u);
            for (int k = 0; k < 4; k++) p[4 * i + (size_t)k] = (unsigned char)(u >> (8 * k));
        }
    }
    return n * (size_t)vx_stream_sample_bytes(cfg->encoding);
}

/* Standard codes where one fits (RFC 6455 7.4.1), 4000 + HTTP status for
 * the application's own. */
static const struct {
    const char *code;
    int close;
} close_codes[] = {
    {"invalid_message", 1003},        {"binary_before_config", 1003}, {"invalid_audio_frame", 1007},
    {"invalid_config", 1008},         {"unknown_model", 1008},        {"unsupported_sample_rate", 1008},
    {"unsupported_encoding", 1008},   {"config_after_audio", 1008},   {"frame_too_large", 1009},
    {"insufficient_credits", 4402},   {"asr_busy", 1013},             {"too_many_streams", 1013},
    {"shutting_down", 1001},          {"unknown_param", 1008},        {"invalid_param", 1008},
    {"param_out_of_range", 1008},
};

int vx_stream_close_code(const char *code) {
    for (size_t i = 0; i < sizeof close_codes / sizeof close_codes[0]; i++)
        if (strcmp(code, close_codes[i].code) == 0) return close_codes[i].close;
    return 1011;
}

void vx_stream_bill_init(vx_stream_bill *b, int64_t per_job, int64_t per_second, int hold_s) {
    *b = (vx_stream_bill){.per_job = per_job, .per_second = per_second};
    b->block = vx_job_price(0, per_second, hold_s > 0 ? hold_s : 1);
}

int64_t vx_stream_bill_first_hold(const vx_stream_bill *b) {
    int64_t h = b->per_job + b->block;
    return h > VX_CREDITS_MAX ? VX_CREDITS_MAX : h;
}

int64_t vx_stream_bill_price(const vx_stream_bill *b, double seconds) {
    return vx_job_price(b->per_job, b->per_second, seconds);
}

int64_t vx_stream_bill_shortfall(const vx_stream_bill *b, double more) {
    int64_t need = vx_stream_bill_price(b, b->seconds + more) - b->held;
    return need > 0 ? need : 0;
}

int64_t vx_stream_bill_charge(const vx_stream_bill *b) {
    int64_t c = vx_stream_bill_price(b, b->seconds);
    return c > b->held ? b->held : c;
}
