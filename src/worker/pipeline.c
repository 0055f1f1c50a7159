/* pipeline.c - runs one model over one local file: decode at the rate the
 * model's plan asks for, feed it in blocks, encode what it emits, finish.
 * Reports progress (at most every ~100 ms) and honours cancellation between
 * blocks. On failure no output file is left behind. Any thread; each call
 * owns all of its state. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "../audio/audio.h"
#include "../util/clock.h"
#include "../util/log.h"
#include "pipeline.h"

/* Frames per model call: big enough to amortise calls, small enough that a
 * cancel is seen within a few milliseconds of audio work. */
#define BLOCK_FRAMES 4096
#define PROGRESS_INTERVAL_MS 100

typedef struct progress_state {
    vx_progress_fn fn;
    void *user;
    double expected_frames;   /* from the container estimate; 0 if unknown */
    int64_t last_ms;
    double last_fraction;
} progress_state;

static int write_to_encoder(void *user, const float *pcm, size_t frames, vx_err *err) {
    return vx_encoder_write(user, pcm, frames, err);
}

static int refuse_audio(void *user, const float *pcm, size_t frames, vx_err *err) {
    return vx_err_set(err, VX_E_INTERNAL, "model_failed", "the model produced audio but planned no output file");
}

static void report(progress_state *p, int64_t decoded) {
    if (!p->fn || p->expected_frames <= 0) return;
    int64_t now = vx_mono_ms();
    if (p->last_ms && now - p->last_ms < PROGRESS_INTERVAL_MS) return;
    double f = (double)decoded / p->expected_frames;
    /* The estimate can be short; 1.0 is reserved for "done", which the
     * caller learns from the return value. */
    if (f > 0.99) f = 0.99;
    if (f <= p->last_fraction) return;
    p->last_ms = now;
    p->last_fraction = f;
    p->fn(p->user, f);
}

static bool canceled(const vx_pipeline_request *req) { return req->cancel && atomic_load(req->cancel); }

/* Probes what the input is without decoding it: the plan needs rate and
 * channels before the real decoder can be opened at the plan's shape. */
static int input_info(const char *path, vx_audio_info *info, vx_err *err) {
    vx_decoder *d = vx_decoder_open(path, 0, 0, err);
    if (!d) return -1;
    *info = *vx_decoder_info(d);
    vx_decoder_close(d);
    return 0;
}

int vx_pipeline_run(const vx_pipeline_request *req, vx_pipeline_result *res, vx_err *err) {
    vx_err local;
    vx_err *e = err ? err : &local;
    const vx_model *m = req->model;
    vx_audio_info info;
    vx_model_plan plan;
    vx_decoder *dec = NULL;
    vx_encoder *enc = NULL;
    void *state = NULL;
    float *block = NULL;
    json_t *doc = NULL;
    bool output_complete = false;
    int64_t decoded = 0;
    int rate = 0, channels = 0;
    vx_pcm_out out = {.write = refuse_audio};
    progress_state prog = {.fn = req->progress, .user = req->progress_user};
    int ret = -1;

    memset(res, 0, sizeof *res);
    vx_err_clear(e);
    if (input_info(req->input_path, &info, e) != 0) goto out;
    if (m->plan(req->params, &info, &plan, e) != 0) goto out;
    plan.input = info;
    dec = vx_decoder_open(req->input_path, plan.in_rate, plan.in_channels, e);
    if (!dec) goto out;
    rate = vx_decoder_rate(dec);
    channels = vx_decoder_channels(dec);
    prog.expected_frames = info.duration_s * rate;
    if (plan.out_format[0]) {
        if (!req->output_path) {
            vx_err_set(e, VX_E_INTERNAL, "internal", "the model makes audio but no output path was given");
            goto out;
        }
        enc = vx_encoder_open(req->output_path, plan.out_format, plan.out_rate, plan.out_channels, e);
        if (!enc) goto out;
    }
    if (enc) out = (vx_pcm_out){.write = write_to_encoder, .user = enc};
    state = m->open(req->params, &plan, e);
    if (!state) goto out;
    block = malloc((size_t)BLOCK_FRAMES * (size_t)channels * sizeof *block);
    if (!block) {
        vx_err_set(e, VX_E_INTERNAL, "out_of_memory", "out of memory");
        goto out;
    }
    for (;;) {
        if (canceled(req)) {
            vx_err_set(e, VX_E_CANCELED, "canceled", "the job was canceled");
            goto out;
        }
        long n = vx_decoder_read(dec, block, BLOCK_FRAMES, e);
        if (n < 0) goto out;
        if (n == 0) break;
        if (m->process(state, block, (size_t)n, &out, e) != 0) goto out;
        decoded += n;
        report(&prog, decoded);
    }
    if (canceled(req)) {
        vx_err_set(e, VX_E_CANCELED, "canceled", "the job was canceled");
        goto out;
    }
    if (m->finish(state, &out, &doc, e) != 0) goto out;
    if (enc) {
        if (vx_encoder_finish(enc, e) != 0) goto out;
        output_complete = true;
        struct stat sb;
        if (stat(req->output_path, &sb) != 0) {
            vx_err_set(e, VX_E_INTERNAL, "write_failed", "the output file is missing after encoding");
            goto out;
        }
        res->has_output = true;
        snprintf(res->output_format, sizeof res->output_format, "%s", plan.out_format);
        res->output_bytes = (int64_t)sb.st_size;
    }
    res->result = doc;
    doc = NULL;
    res->input_duration_s = rate > 0 ? (double)decoded / rate : 0;
    ret = 0;
out:
    if (ret != 0 && output_complete && unlink(req->output_path) != 0 && errno != ENOENT)
        vx_warn("pipeline: removing a failed output failed: %s", strerror(errno));
    if (ret != 0) {
        res->has_output = false;
        res->output_bytes = 0;
    }
    vx_encoder_close(enc); /* removes the file unless finished */
    if (state) m->close(state);
    vx_decoder_close(dec);
    json_decref(doc);
    free(block);
    return ret;
}

void vx_pipeline_result_clear(vx_pipeline_result *res) {
    if (!res) return;
    json_decref(res->result);
    memset(res, 0, sizeof *res);
}
