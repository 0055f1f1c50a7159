/* encode.c - streaming encoder (vx_encoder_*): interleaved float frames in,
 * a finished WAV / FLAC / Ogg Opus / MP3 file out. PCM is regrouped into the
 * codec's exact frame size, stamped with sample-accurate pts, and flushed
 * with the trailer in finish(). A file that never finished is removed.
 * A vx_encoder belongs to one thread at a time. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../util/log.h"
#include "audio_int.h"

typedef struct encoder_desc {
    const char *format;        /* voxd name */
    const char *muxer;         /* FFmpeg muxer */
    const char *codec;         /* FFmpeg encoder */
    int max_channels;
    const int *rates;          /* allowed rates, 0-terminated; NULL = any in 1..max_rate */
    int max_rate;
} encoder_desc;

static const int opus_rates[] = {48000, 24000, 16000, 12000, 8000, 0};
static const int mp3_rates[] = {48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 0};

static const encoder_desc encoders[] = {
    {.format = "wav", .muxer = "wav", .codec = "pcm_s16le", .max_channels = 8, .max_rate = 768000},
    {.format = "flac", .muxer = "flac", .codec = "flac", .max_channels = 8, .max_rate = 655350},
    {.format = "opus", .muxer = "opus", .codec = "libopus", .max_channels = 8, .rates = opus_rates},
    {.format = "mp3", .muxer = "mp3", .codec = "libmp3lame", .max_channels = 2, .rates = mp3_rates},
};

/* Frames per chunk for codecs that take any size (PCM). */
#define FREE_FRAME_SIZE 4096

struct vx_encoder {
    char *path;
    AVFormatContext *oc;
    AVCodecContext *enc;
    AVStream *st;
    AVFrame *frame;
    AVPacket *pkt;
    int channels;
    int frame_size;
    float *pending;            /* < frame_size interleaved frames awaiting a full frame */
    size_t pending_len;
    int64_t next_pts;
    bool file_created;
    bool failed;               /* a write failed: the file cannot be completed */
    bool finished;
};

static const encoder_desc *find_encoder(const char *format) {
    if (!format) return NULL;
    for (size_t i = 0; i < sizeof encoders / sizeof encoders[0]; i++)
        if (strcmp(encoders[i].format, format) == 0) return &encoders[i];
    return NULL;
}

static bool rate_allowed(const encoder_desc *ed, int rate) {
    if (!ed->rates) return rate > 0 && rate <= ed->max_rate;
    for (const int *r = ed->rates; *r; r++)
        if (*r == rate) return true;
    return false;
}

/* The first of our preferred formats the codec takes; float first so the
 * codec sees full precision. */
static enum AVSampleFormat pick_sample_format(const AVCodec *codec) {
    static const enum AVSampleFormat preferred[] = {AV_SAMPLE_FMT_FLT, AV_SAMPLE_FMT_FLTP, AV_SAMPLE_FMT_S16,
                                                    AV_SAMPLE_FMT_S16P, AV_SAMPLE_FMT_S32, AV_SAMPLE_FMT_S32P};
    if (!codec->sample_fmts) return AV_SAMPLE_FMT_NONE;
    for (size_t i = 0; i < sizeof preferred / sizeof preferred[0]; i++)
        for (const enum AVSampleFormat *f = codec->sample_fmts; *f != AV_SAMPLE_FMT_NONE; f++)
            if (*f == preferred[i]) return *f;
    return AV_SAMPLE_FMT_NONE;
}

static inline float clampf(float x) { return x > 1.0f ? 1.0f : x < -1.0f ? -1.0f : x; }

/* Copies n interleaved float frames into f (already sized) in f's format. */
static void fill_frame(AVFrame *f, const float *src, int n, int ch) {
    for (int c = 0; c < ch; c++) {
        for (int i = 0; i < n; i++) {
            float x = src[(size_t)i * ch + c];
            switch (f->format) {
            case AV_SAMPLE_FMT_FLT: ((float *)f->data[0])[i * ch + c] = x; break;
            case AV_SAMPLE_FMT_FLTP: ((float *)f->data[c])[i] = x; break;
            case AV_SAMPLE_FMT_S16: ((int16_t *)f->data[0])[i * ch + c] = (int16_t)lrintf(clampf(x) * 32767.0f); break;
            case AV_SAMPLE_FMT_S16P: ((int16_t *)f->data[c])[i] = (int16_t)lrintf(clampf(x) * 32767.0f); break;
            case AV_SAMPLE_FMT_S32: ((int32_t *)f->data[0])[i * ch + c] = (int32_t)lrint(clampf(x) * 2147483647.0); break;
            case AV_SAMPLE_FMT_S32P: ((int32_t *)f->data[c])[i] = (int32_t)lrint(clampf(x) * 2147483647.0); break;
            default: break;
            }
        }
    }
}

static int encode_failed(vx_encoder *e, vx_err *err, const char *what, int rc) {
    char eb[AV_ERROR_MAX_STRING_SIZE];
    e->failed = true;
    vx_warn("audio: %s failed: %s", what, vx_audio_av_strerror(rc, eb));
    return vx_err_set(err, VX_E_INTERNAL, "encode_failed", "encoding the output failed (%s: %s)", what, eb);
}

/* Sends one frame (NULL = flush) and writes every packet that comes out. */
static int send_and_write(vx_encoder *e, AVFrame *frame, vx_err *err) {
    int rc = avcodec_send_frame(e->enc, frame);
    if (rc < 0) return encode_failed(e, err, "encoder", rc);
    for (;;) {
        rc = avcodec_receive_packet(e->enc, e->pkt);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return 0;
        if (rc < 0) return encode_failed(e, err, "encoder", rc);
        av_packet_rescale_ts(e->pkt, e->enc->time_base, e->st->time_base);
        e->pkt->stream_index = e->st->index;
        rc = av_interleaved_write_frame(e->oc, e->pkt); /* takes the packet's reference */
        if (rc < 0) return encode_failed(e, err, "write", rc);
    }
}

static int emit(vx_encoder *e, const float *pcm, int n, vx_err *err) {
    int rc = av_frame_make_writable(e->frame);
    if (rc < 0) return encode_failed(e, err, "frame allocation", rc);
    e->frame->nb_samples = n;
    fill_frame(e->frame, pcm, n, e->channels);
    e->frame->pts = e->next_pts;
    e->next_pts += n;
    return send_and_write(e, e->frame, err);
}

vx_encoder *vx_encoder_open(const char *path, const char *format, int sample_rate, int channels, vx_err *err) {
    char eb[AV_ERROR_MAX_STRING_SIZE];
    const encoder_desc *ed = find_encoder(format);
    if (!ed) {
        vx_err_set(err, VX_E_UNPROCESSABLE, "unsupported_output_format",
                   "output format must be one of wav, flac, opus, mp3");
        return NULL;
    }
    if (channels < 1 || channels > ed->max_channels) {
        vx_err_set(err, VX_E_UNPROCESSABLE, "unsupported_channels", "%s output takes 1 to %d channels, not %d",
                   ed->format, ed->max_channels, channels);
        return NULL;
    }
    if (!rate_allowed(ed, sample_rate)) {
        if (ed->rates)
            vx_err_set(err, VX_E_UNPROCESSABLE, "unsupported_sample_rate", "%s output does not support %d Hz (%s)",
                       ed->format, sample_rate,
                       ed->rates == opus_rates ? "use 8000, 12000, 16000, 24000 or 48000"
                                               : "use 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100 or 48000");
        else
            vx_err_set(err, VX_E_UNPROCESSABLE, "unsupported_sample_rate", "%s output takes 1 to %d Hz, not %d",
                       ed->format, ed->max_rate, sample_rate);
        return NULL;
    }
    const AVCodec *codec = avcodec_find_encoder_by_name(ed->codec);
    if (!codec) {
        vx_err_set(err, VX_E_INTERNAL, "encoder_missing", "the %s encoder is not available", ed->codec);
        return NULL;
    }
    vx_encoder *e = calloc(1, sizeof *e);
    if (!e || !(e->path = strdup(path))) {
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        free(e);
        return NULL;
    }
    e->channels = channels;
    int rc = avformat_alloc_output_context2(&e->oc, NULL, ed->muxer, NULL);
    if (rc < 0 || !e->oc) goto av_fail;
    e->st = avformat_new_stream(e->oc, NULL);
    e->enc = avcodec_alloc_context3(codec);
    e->pkt = av_packet_alloc();
    e->frame = av_frame_alloc();
    if (!e->st || !e->enc || !e->pkt || !e->frame) {
        rc = AVERROR(ENOMEM);
        goto av_fail;
    }
    e->enc->sample_rate = sample_rate;
    e->enc->sample_fmt = pick_sample_format(codec);
    e->enc->time_base = (AVRational){1, sample_rate};
    av_channel_layout_default(&e->enc->ch_layout, channels);
    if (strcmp(ed->format, "mp3") == 0) {
        /* VBR (LAME -V2) adapts to every MPEG rate, unlike a fixed bit rate. */
        e->enc->flags |= AV_CODEC_FLAG_QSCALE;
        e->enc->global_quality = FF_QP2LAMBDA * 2;
    }
    if (e->oc->oformat->flags & AVFMT_GLOBALHEADER) e->enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    rc = avcodec_open2(e->enc, codec, NULL);
    if (rc < 0) goto av_fail;
    rc = avcodec_parameters_from_context(e->st->codecpar, e->enc);
    if (rc < 0) goto av_fail;
    e->st->time_base = e->enc->time_base;

    e->frame_size = e->enc->frame_size > 0 ? e->enc->frame_size : FREE_FRAME_SIZE;
    e->frame->format = e->enc->sample_fmt;
    e->frame->sample_rate = sample_rate;
    e->frame->nb_samples = e->frame_size;
    rc = av_channel_layout_copy(&e->frame->ch_layout, &e->enc->ch_layout);
    if (rc >= 0) rc = av_frame_get_buffer(e->frame, 0);
    if (rc < 0) goto av_fail;
    e->pending = malloc((size_t)e->frame_size * (size_t)channels * sizeof *e->pending);
    if (!e->pending) {
        rc = AVERROR(ENOMEM);
        goto av_fail;
    }

    rc = avio_open(&e->oc->pb, path, AVIO_FLAG_WRITE);
    if (rc < 0) {
        vx_warn("audio: cannot create output: %s", vx_audio_av_strerror(rc, eb));
        vx_err_set(err, VX_E_INTERNAL, "write_failed", "the output file could not be created");
        goto fail;
    }
    e->file_created = true;
    rc = avformat_write_header(e->oc, NULL);
    if (rc < 0) goto av_fail;
    return e;
av_fail:
    vx_warn("audio: setting up the %s encoder failed: %s", ed->codec, vx_audio_av_strerror(rc, eb));
    vx_err_set(err, VX_E_INTERNAL, "encode_failed", "the %s encoder could not be set up (%s)", ed->format, eb);
fail:
    vx_encoder_close(e);
    return NULL;
}

int vx_encoder_write(vx_encoder *e, const float *pcm, size_t frames, vx_err *err) {
    if (e->failed || e->finished)
        return vx_err_set(err, VX_E_INTERNAL, "encode_failed", "the encoder is no longer accepting audio");
    size_t ch = (size_t)e->channels, fs = (size_t)e->frame_size;
    while (frames > 0) {
        if (e->pending_len == 0 && frames >= fs) {
            /* Whole frames straight from the caller's buffer. */
            if (emit(e, pcm, (int)fs, err) != 0) return -1;
            pcm += fs * ch;
            frames -= fs;
            continue;
        }
        size_t take = fs - e->pending_len;
        if (take > frames) take = frames;
        memcpy(e->pending + e->pending_len * ch, pcm, take * ch * sizeof *pcm);
        e->pending_len += take;
        pcm += take * ch;
        frames -= take;
        if (e->pending_len == fs) {
            if (emit(e, e->pending, (int)fs, err) != 0) return -1;
            e->pending_len = 0;
        }
    }
    return 0;
}

int vx_encoder_finish(vx_encoder *e, vx_err *err) {
    char eb[AV_ERROR_MAX_STRING_SIZE];
    if (e->finished) return 0;
    if (e->failed) return vx_err_set(err, VX_E_INTERNAL, "encode_failed", "the output could not be completed");
    if (e->pending_len > 0) {
        int caps = e->enc->codec->capabilities;
        size_t n = e->pending_len;
        /* Codecs that insist on full frames get the last one padded with silence. */
        if (!(caps & (AV_CODEC_CAP_SMALL_LAST_FRAME | AV_CODEC_CAP_VARIABLE_FRAME_SIZE)) &&
            e->enc->frame_size > 0) {
            memset(e->pending + n * (size_t)e->channels, 0,
                   ((size_t)e->frame_size - n) * (size_t)e->channels * sizeof *e->pending);
            n = (size_t)e->frame_size;
        }
        if (emit(e, e->pending, (int)n, err) != 0) return -1;
        e->pending_len = 0;
    }
    if (send_and_write(e, NULL, err) != 0) return -1;
    int rc = av_write_trailer(e->oc);
    if (rc < 0) return encode_failed(e, err, "trailer", rc);
    rc = avio_closep(&e->oc->pb);
    if (rc < 0) {
        e->failed = true;
        vx_warn("audio: closing output failed: %s", vx_audio_av_strerror(rc, eb));
        return vx_err_set(err, VX_E_INTERNAL, "write_failed", "the output file could not be written");
    }
    e->finished = true;
    return 0;
}

void vx_encoder_close(vx_encoder *e) {
    if (!e) return;
    if (e->oc) {
        if (e->oc->pb) avio_closep(&e->oc->pb);
        avformat_free_context(e->oc);
    }
    if (e->file_created && !e->finished && unlink(e->path) != 0 && errno != ENOENT)
        vx_warn("audio: removing an unfinished output failed: %s", strerror(errno));
    avcodec_free_context(&e->enc);
    av_frame_free(&e->frame);
    av_packet_free(&e->pkt);
    free(e->pending);
    free(e->path);
    free(e);
}
