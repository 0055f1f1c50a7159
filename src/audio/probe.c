/* probe.c - full validation of an uploaded file (vx_audio_probe): decodes
 * every packet and counts samples, with no resampling, so a 200 MB upload is
 * checked quickly in constant memory. The header is believed only as far as
 * the decodable audio confirms it. Any thread; owns nothing between calls. */
#include <inttypes.h>
#include <string.h>
#include "../util/log.h"
#include "audio_int.h"

/* Audio shorter than the header claims by both margins is "truncated";
 * the slack absorbs codec priming/padding (AAC, MP3, Opus). */
#define TRUNCATED_MIN_GAP_S 0.25
#define TRUNCATED_MIN_RATIO 0.95

typedef struct probe_count {
    double seconds;        /* decoded audio */
    int64_t samples;       /* decoded frames (per channel) */
    int64_t packets;
    int64_t bad_packets;   /* rejected by the decoder */
} probe_count;

/* Drains every frame the decoder has ready into the count. Returns 0, or 1
 * once the duration limit is passed, or a negative FFmpeg error. */
static int drain(AVCodecContext *dec, AVFrame *frame, probe_count *c, double max_s) {
    for (;;) {
        int rc = avcodec_receive_frame(dec, frame);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return 0;
        if (rc < 0) {
            c->bad_packets++;
            return 0;
        }
        int rate = frame->sample_rate > 0 ? frame->sample_rate : dec->sample_rate;
        c->samples += frame->nb_samples;
        if (rate > 0) c->seconds += (double)frame->nb_samples / rate;
        av_frame_unref(frame);
        if (max_s > 0 && c->seconds > max_s) return 1;
    }
}

static int duration_exceeded(vx_err *err, double max_s, const char *how) {
    return vx_err_set(err, VX_E_UNPROCESSABLE, "duration_exceeded",
                      "the audio %s longer than the limit of %.0f seconds", how, max_s);
}

int vx_audio_probe(const char *path, double max_duration_s, vx_audio_info *info, vx_err *err) {
    vx_audio_input in;
    AVPacket *pkt = NULL;
    AVFrame *frame = NULL;
    probe_count c = {0};
    bool read_error = false;
    int ret = -1;
    char eb[AV_ERROR_MAX_STRING_SIZE];

    if (info) memset(info, 0, sizeof *info);
    if (vx_audio_input_open(&in, path, err) != 0) return -1;
    const double declared = in.info.declared_duration_s;
    if (max_duration_s > 0 && declared > max_duration_s) {
        duration_exceeded(err, max_duration_s, "header says it is");
        goto out;
    }
    pkt = av_packet_alloc();
    frame = av_frame_alloc();
    if (!pkt || !frame) {
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        goto out;
    }
    for (;;) {
        int rc = av_read_frame(in.fmt, pkt);
        if (rc < 0) {
            if (rc != AVERROR_EOF) {
                vx_debug("audio: probe read stopped: %s", vx_audio_av_strerror(rc, eb));
                read_error = true;
            }
            break;
        }
        if (pkt->stream_index != in.stream) {
            av_packet_unref(pkt);
            continue;
        }
        c.packets++;
        int full = 0;
        while ((rc = avcodec_send_packet(in.dec, pkt)) == AVERROR(EAGAIN) &&
               (full = drain(in.dec, frame, &c, max_duration_s)) == 0)
            ;
        av_packet_unref(pkt);
        if (rc < 0 && rc != AVERROR(EAGAIN)) c.bad_packets++;
        if (full == 1 || drain(in.dec, frame, &c, max_duration_s) == 1) {
            duration_exceeded(err, max_duration_s, "is");
            goto out;
        }
    }
    avcodec_send_packet(in.dec, NULL); /* flush the decoder's delayed frames */
    if (drain(in.dec, frame, &c, max_duration_s) == 1) {
        duration_exceeded(err, max_duration_s, "is");
        goto out;
    }

    if (in.trim_s > 0 && c.seconds > in.trim_s) c.seconds = in.trim_s;
    if (c.samples == 0) {
        if (c.bad_packets > 0 || read_error)
            vx_err_set(err, VX_E_UNPROCESSABLE, "invalid_audio", "no audio could be decoded from the file");
        else
            vx_err_set(err, VX_E_UNPROCESSABLE, "empty_audio", "the file contains no audio samples");
        goto out;
    }
    if (declared > 0 && declared - c.seconds > TRUNCATED_MIN_GAP_S &&
        c.seconds < declared * TRUNCATED_MIN_RATIO) {
        vx_err_set(err, VX_E_UNPROCESSABLE, "truncated_audio",
                   "the file holds %.2f s of audio but its header declares %.2f s (truncated upload?)",
                   c.seconds, declared);
        goto out;
    }
    /* A few bad frames are common in real MP3s; many mean a damaged file. */
    if (c.bad_packets > 2 && c.bad_packets * 20 > c.packets) {
        vx_err_set(err, VX_E_UNPROCESSABLE, "truncated_audio",
                   "the audio stream is corrupt (%" PRId64 " of %" PRId64 " packets undecodable)",
                   c.bad_packets, c.packets);
        goto out;
    }
    if (info) {
        *info = in.info;
        info->duration_s = c.seconds;
        /* The decoder is the authority on what the stream really carries. */
        if (in.dec->sample_rate > 0) info->sample_rate = in.dec->sample_rate;
        if (in.dec->ch_layout.nb_channels > 0) info->channels = in.dec->ch_layout.nb_channels;
    }
    ret = 0;
out:
    av_frame_free(&frame);
    av_packet_free(&pkt);
    vx_audio_input_close(&in);
    return ret;
}
