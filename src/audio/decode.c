/* decode.c - streaming decoder (vx_decoder_*): packets in, interleaved float
 * frames out at the caller's rate/channel count through libswresample. Only
 * one decoded frame is buffered at a time, so memory does not grow with the
 * file. The resampler is drained at the end so no tail is lost.
 * A vx_decoder belongs to one thread at a time. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>
#include "../util/log.h"
#include "audio_int.h"

struct vx_decoder {
    vx_audio_input in;
    AVPacket *pkt;
    AVFrame *frame;

    SwrContext *swr;               /* built for the input shape below */
    AVChannelLayout swr_in_layout;
    int swr_in_rate;
    int swr_in_format;

    int out_rate;
    AVChannelLayout out_layout;

    float *buf;                    /* converted frames waiting for read() */
    size_t buf_cap, buf_len, buf_pos; /* in frames */
    int64_t emitted;               /* frames handed to the caller */
    int64_t limit;                 /* stop after this many frames; -1 = no limit */
    bool demux_done;               /* decoder has been sent its flush packet */
    bool done;                     /* decoder and resampler fully drained */
};

static int oom(vx_err *err) { return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory"); }

/* A layout swresample can mix from: unknown orders become the default
 * layout for that channel count. */
static int usable_layout(AVChannelLayout *dst, const AVChannelLayout *src) {
    if (src->order == AV_CHANNEL_ORDER_UNSPEC || src->nb_channels <= 0) {
        av_channel_layout_default(dst, src->nb_channels > 0 ? src->nb_channels : 1);
        return 0;
    }
    return av_channel_layout_copy(dst, src);
}

static int reserve(vx_decoder *d, size_t extra, vx_err *err) {
    size_t ch = (size_t)d->out_layout.nb_channels;
    if (d->buf_len + extra <= d->buf_cap) return 0;
    size_t cap = d->buf_cap ? d->buf_cap : 4096;
    while (cap < d->buf_len + extra) cap *= 2;
    float *nb = realloc(d->buf, cap * ch * sizeof *nb);
    if (!nb) return oom(err);
    d->buf = nb;
    d->buf_cap = cap;
    return 0;
}

/* Pulls everything the resampler still holds (its filter delay) into buf. */
static int drain_resampler(vx_decoder *d, vx_err *err) {
    if (!d->swr) return 0;
    for (;;) {
        int want = swr_get_out_samples(d->swr, 0);
        if (want <= 0) return 0;
        if (reserve(d, (size_t)want, err) != 0) return -1;
        uint8_t *out = (uint8_t *)(d->buf + d->buf_len * (size_t)d->out_layout.nb_channels);
        int n = swr_convert(d->swr, &out, want, NULL, 0);
        if (n < 0) return vx_err_set(err, VX_E_INTERNAL, "resample_failed", "resampling failed");
        if (n == 0) return 0;
        d->buf_len += (size_t)n;
    }
}

static int setup_resampler(vx_decoder *d, const AVFrame *f, vx_err *err) {
    AVChannelLayout in_layout = {0};
    int rate = f->sample_rate > 0 ? f->sample_rate : d->in.dec->sample_rate;
    if (usable_layout(&in_layout, &f->ch_layout) < 0) return oom(err);
    if (d->swr && d->swr_in_rate == rate && d->swr_in_format == f->format &&
        av_channel_layout_compare(&d->swr_in_layout, &in_layout) == 0) {
        av_channel_layout_uninit(&in_layout);
        return 0;
    }
    /* The stream changed shape mid-way (chained Ogg, HE-AAC switch): finish
     * the old resampler's tail before building a new one. */
    if (d->swr && drain_resampler(d, err) != 0) goto fail;
    swr_free(&d->swr);
    av_channel_layout_uninit(&d->swr_in_layout);
    if (swr_alloc_set_opts2(&d->swr, &d->out_layout, AV_SAMPLE_FMT_FLT, d->out_rate, &in_layout,
                            (enum AVSampleFormat)f->format, rate, 0, NULL) < 0)
        goto bad;
    /* Normalise downmix gains so stereo -> mono cannot clip. */
    av_opt_set_double(d->swr, "rematrix_maxval", 1.0, 0);
    if (swr_init(d->swr) < 0) goto bad;
    d->swr_in_layout = in_layout;
    d->swr_in_rate = rate;
    d->swr_in_format = f->format;
    return 0;
bad:
    swr_free(&d->swr);
    vx_err_set(err, VX_E_UNPROCESSABLE, "invalid_audio",
               "cannot convert %d-channel %d Hz audio to %d channels at %d Hz", in_layout.nb_channels, rate,
               d->out_layout.nb_channels, d->out_rate);
fail:
    av_channel_layout_uninit(&in_layout);
    return -1;
}

static int convert_frame(vx_decoder *d, const AVFrame *f, vx_err *err) {
    if (setup_resampler(d, f, err) != 0) return -1;
    int want = swr_get_out_samples(d->swr, f->nb_samples);
    if (want < 0) return vx_err_set(err, VX_E_INTERNAL, "resample_failed", "resampling failed");
    if (reserve(d, (size_t)want, err) != 0) return -1;
    uint8_t *out = (uint8_t *)(d->buf + d->buf_len * (size_t)d->out_layout.nb_channels);
    int n = swr_convert(d->swr, &out, want, (const uint8_t **)f->extended_data, f->nb_samples);
    if (n < 0) return vx_err_set(err, VX_E_INTERNAL, "resample_failed", "resampling failed");
    d->buf_len += (size_t)n;
    return 0;
}

/* Refills buf. 1 when frames are waiting, 0 at the end, -1 on error. */
static int fill(vx_decoder *d, vx_err *err) {
    char eb[AV_ERROR_MAX_STRING_SIZE];
    d->buf_len = d->buf_pos = 0;
    while (!d->done) {
        int rc = avcodec_receive_frame(d->in.dec, d->frame);
        if (rc == 0) {
            rc = convert_frame(d, d->frame, err);
            av_frame_unref(d->frame);
            if (rc != 0) return -1;
            if (d->buf_len > 0) return 1;
            continue;
        }
        if (rc == AVERROR_EOF || (rc == AVERROR(EAGAIN) && d->demux_done)) {
            if (drain_resampler(d, err) != 0) return -1;
            d->done = true;
            break;
        }
        if (rc != AVERROR(EAGAIN)) {
            /* One damaged frame; the decoder resynchronises on the next. */
            vx_debug("audio: skipping undecodable frame: %s", vx_audio_av_strerror(rc, eb));
            continue;
        }
        rc = av_read_frame(d->in.fmt, d->pkt);
        if (rc < 0) {
            if (rc != AVERROR_EOF) vx_warn("audio: input ends early: %s", vx_audio_av_strerror(rc, eb));
            avcodec_send_packet(d->in.dec, NULL);
            d->demux_done = true;
            continue;
        }
        if (d->pkt->stream_index == d->in.stream) {
            rc = avcodec_send_packet(d->in.dec, d->pkt);
            if (rc < 0) vx_debug("audio: skipping undecodable packet: %s", vx_audio_av_strerror(rc, eb));
        }
        av_packet_unref(d->pkt);
    }
    return d->buf_len > 0 ? 1 : 0;
}

vx_decoder *vx_decoder_open(const char *path, int out_rate, int out_channels, vx_err *err) {
    if (out_rate < 0 || out_channels < 0 || out_channels > 64) {
        vx_err_set(err, VX_E_INVALID, "invalid_argument", "invalid output rate or channel count");
        return NULL;
    }
    vx_decoder *d = calloc(1, sizeof *d);
    if (!d) {
        oom(err);
        return NULL;
    }
    if (vx_audio_input_open(&d->in, path, err) != 0) {
        free(d);
        return NULL;
    }
    d->pkt = av_packet_alloc();
    d->frame = av_frame_alloc();
    if (!d->pkt || !d->frame) {
        oom(err);
        goto fail;
    }
    d->out_rate = out_rate ? out_rate : d->in.info.sample_rate;
    d->limit = d->in.trim_s > 0 ? llround(d->in.trim_s * d->out_rate) : -1;
    if (out_channels)
        av_channel_layout_default(&d->out_layout, out_channels);
    else if (usable_layout(&d->out_layout, &d->in.dec->ch_layout) < 0) {
        oom(err);
        goto fail;
    }
    return d;
fail:
    vx_decoder_close(d);
    return NULL;
}

const vx_audio_info *vx_decoder_info(const vx_decoder *d) { return &d->in.info; }
int vx_decoder_rate(const vx_decoder *d) { return d->out_rate; }
int vx_decoder_channels(const vx_decoder *d) { return d->out_layout.nb_channels; }

long vx_decoder_read(vx_decoder *d, float *pcm, size_t max_frames, vx_err *err) {
    size_t ch = (size_t)d->out_layout.nb_channels, got = 0;
    if (d->limit >= 0 && (int64_t)max_frames > d->limit - d->emitted) max_frames = (size_t)(d->limit - d->emitted);
    while (got < max_frames) {
        if (d->buf_pos == d->buf_len) {
            int rc = fill(d, err);
            if (rc < 0) return -1;
            if (rc == 0) break;
        }
        size_t n = d->buf_len - d->buf_pos;
        if (n > max_frames - got) n = max_frames - got;
        memcpy(pcm + got * ch, d->buf + d->buf_pos * ch, n * ch * sizeof *pcm);
        d->buf_pos += n;
        got += n;
    }
    d->emitted += (int64_t)got;
    return (long)got;
}

void vx_decoder_close(vx_decoder *d) {
    if (!d) return;
    swr_free(&d->swr);
    av_channel_layout_uninit(&d->swr_in_layout);
    av_channel_layout_uninit(&d->out_layout);
    av_frame_free(&d->frame);
    av_packet_free(&d->pkt);
    vx_audio_input_close(&d->in);
    free(d->buf);
    free(d);
}
