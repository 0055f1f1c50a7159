/* resample.c - the streaming mono resampler of audio.h for live streams:
 * pieces of PCM in, converted pieces out, over libswresample with one growing
 * output buffer (bounded by the largest piece). One thread per object. */
#include <stdlib.h>
#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>
#include "audio.h"

struct vx_resampler {
    SwrContext *swr;
    float *buf;
    size_t cap;
};

vx_resampler *vx_resampler_new(int in_rate, int out_rate, vx_err *err) {
    if (in_rate < 1000 || in_rate > 384000 || out_rate < 1000 || out_rate > 384000) {
        vx_err_set(err, VX_E_UNPROCESSABLE, "unsupported_sample_rate", "sample rates must be 1000..384000 Hz");
        return NULL;
    }
    vx_resampler *r = calloc(1, sizeof *r);
    AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
    if (!r || swr_alloc_set_opts2(&r->swr, &mono, AV_SAMPLE_FMT_FLT, out_rate, &mono, AV_SAMPLE_FMT_FLT, in_rate, 0,
                                  NULL) < 0 || swr_init(r->swr) < 0) {
        vx_resampler_free(r);
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "cannot set up the resampler");
        return NULL;
    }
    return r;
}

void vx_resampler_free(vx_resampler *r) {
    if (!r) return;
    swr_free(&r->swr);
    free(r->buf);
    free(r);
}

int vx_resampler_run(vx_resampler *r, const float *in, size_t n, const float **out, size_t *n_out, vx_err *err) {
    *out = r->buf;
    *n_out = 0;
    if (n > (size_t)1 << 24) return vx_err_set(err, VX_E_INVALID, "invalid_param", "piece too large");
    int want = swr_get_out_samples(r->swr, (int)n);
    if (want < 0) return vx_err_set(err, VX_E_INTERNAL, "resample_failed", "resampling failed");
    if ((size_t)want + 64 > r->cap) {
        size_t cap = (size_t)want + 64;
        float *grown = realloc(r->buf, cap * sizeof *grown);
        if (!grown) return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        r->buf = grown;
        r->cap = cap;
    }
    uint8_t *o = (uint8_t *)r->buf;
    const uint8_t *i = (const uint8_t *)in;
    int got = swr_convert(r->swr, &o, (int)r->cap, n ? &i : NULL, (int)n);
    if (got < 0) return vx_err_set(err, VX_E_INTERNAL, "resample_failed", "resampling failed");
    *out = r->buf;
    *n_out = (size_t)got;
    return 0;
}
