/* formats.c - which containers voxd accepts and produces, their MIME types
 * and extensions, and opening an input by content (shared by probe.c and
 * decode.c). The file name never decides the format: a text file called
 * x.wav must be refused. Any thread; no shared mutable state. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include "../util/log.h"
#include "audio_int.h"

const char *const vx_audio_input_formats[] = {"wav", "flac", "mp3", "ogg", "opus", "m4a", "webm", NULL};
const char *const vx_audio_output_formats[] = {"wav", "flac", "opus", "mp3", NULL};

typedef struct format_desc {
    const char *name;
    const char *content_type;
    const char *extension;
} format_desc;

static const format_desc format_table[] = {
    {.name = "wav", .content_type = "audio/wav", .extension = "wav"},
    {.name = "flac", .content_type = "audio/flac", .extension = "flac"},
    {.name = "mp3", .content_type = "audio/mpeg", .extension = "mp3"},
    {.name = "ogg", .content_type = "audio/ogg", .extension = "ogg"},
    {.name = "opus", .content_type = "audio/ogg", .extension = "opus"},
    {.name = "m4a", .content_type = "audio/mp4", .extension = "m4a"},
    {.name = "webm", .content_type = "audio/webm", .extension = "webm"},
};

static const format_desc *find_format(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof format_table / sizeof format_table[0]; i++)
        if (strcmp(format_table[i].name, name) == 0) return &format_table[i];
    return NULL;
}

bool vx_audio_output_format_valid(const char *format) {
    if (!format) return false;
    for (size_t i = 0; vx_audio_output_formats[i]; i++)
        if (strcmp(vx_audio_output_formats[i], format) == 0) return true;
    return false;
}

const char *vx_audio_content_type(const char *format) {
    const format_desc *f = find_format(format);
    return f ? f->content_type : NULL;
}

const char *vx_audio_extension(const char *format) {
    const format_desc *f = find_format(format);
    return f ? f->extension : NULL;
}

const char *vx_audio_format_from_ffmpeg(const char *demuxer, enum AVCodecID codec) {
    if (!demuxer) return NULL;
    if (strcmp(demuxer, "wav") == 0) return "wav";
    if (strcmp(demuxer, "flac") == 0) return "flac";
    if (strcmp(demuxer, "mp3") == 0) return "mp3";
    if (strcmp(demuxer, "ogg") == 0) {
        if (codec == AV_CODEC_ID_OPUS) return "opus";
        if (codec == AV_CODEC_ID_VORBIS || codec == AV_CODEC_ID_FLAC) return "ogg";
        return NULL;
    }
    /* FFmpeg has one demuxer for the whole ISO-BMFF family and one for
     * Matroska/WebM; the codec tells an audio file from anything else. */
    if (strcmp(demuxer, "mov,mp4,m4a,3gp,3g2,mj2") == 0)
        return codec == AV_CODEC_ID_AAC || codec == AV_CODEC_ID_ALAC ? "m4a" : NULL;
    if (strcmp(demuxer, "matroska,webm") == 0)
        return codec == AV_CODEC_ID_OPUS || codec == AV_CODEC_ID_VORBIS ? "webm" : NULL;
    return NULL;
}

const char *vx_audio_av_strerror(int code, char buf[AV_ERROR_MAX_STRING_SIZE]) {
    if (av_strerror(code, buf, AV_ERROR_MAX_STRING_SIZE) < 0)
        snprintf(buf, AV_ERROR_MAX_STRING_SIZE, "error %d", code);
    return buf;
}

static bool has_real_video(const AVFormatContext *fmt) {
    for (unsigned i = 0; i < fmt->nb_streams; i++) {
        const AVStream *st = fmt->streams[i];
        /* Cover art in MP3/M4A/FLAC is a one-picture "video" stream. */
        if (st->codecpar->codec_type == AVMEDIA_TYPE_VIDEO &&
            !(st->disposition & AV_DISPOSITION_ATTACHED_PIC))
            return true;
    }
    return false;
}

/* What the header states about the length, in seconds; 0 when it states
 * nothing or FFmpeg only guessed it from the bit rate. */
static void fill_durations(const AVFormatContext *fmt, const AVStream *st, vx_audio_info *info) {
    double estimate = 0;
    if (st->duration > 0 && st->duration != AV_NOPTS_VALUE)
        estimate = (double)st->duration * av_q2d(st->time_base);
    else if (fmt->duration > 0 && fmt->duration != AV_NOPTS_VALUE)
        estimate = (double)fmt->duration / AV_TIME_BASE;
    info->duration_s = estimate;
    info->declared_duration_s =
        fmt->duration_estimation_method == AVFMT_DURATION_FROM_BITRATE ? 0 : estimate;
}

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* FFmpeg's WAV demuxer quietly shrinks a data chunk that overruns the file,
 * so the header's own claim is read here: data size / byte rate, or 0 when
 * the header states no usable length (streamed WAVs write 0 or ~0, RF64). */
static double wav_claimed_seconds(const char *path) {
    unsigned char h[12], c[8], fmt[16];
    double seconds = 0;
    uint32_t byte_rate = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    if (fread(h, 1, 12, f) != 12 || memcmp(h, "RIFF", 4) != 0 || memcmp(h + 8, "WAVE", 4) != 0) goto out;
    for (int i = 0; i < 64 && fread(c, 1, 8, f) == 8; i++) {
        uint32_t size = le32(c + 4);
        if (memcmp(c, "fmt ", 4) == 0 && size >= 16) {
            if (fread(fmt, 1, 16, f) != 16) break;
            byte_rate = le32(fmt + 8);
            size -= 16;
        } else if (memcmp(c, "data", 4) == 0) {
            if (byte_rate > 0 && size > 0 && size != UINT32_MAX) seconds = (double)size / byte_rate;
            break;
        }
        if (fseek(f, (long)size + (size & 1), SEEK_CUR) != 0) break;
    }
out:
    fclose(f);
    return seconds;
}

int vx_audio_input_open(vx_audio_input *in, const char *path, vx_err *err) {
    char eb[AV_ERROR_MAX_STRING_SIZE];
    const AVInputFormat *ifmt = NULL;
    const AVCodec *codec = NULL;
    int rc;
    memset(in, 0, sizeof *in);
    in->stream = -1;

    struct stat sb;
    if (stat(path, &sb) != 0) {
        vx_warn("audio: cannot stat input: %s", strerror(errno));
        vx_err_set(err, VX_E_INTERNAL, "read_failed", "the audio file could not be read");
        goto fail;
    }
    if (sb.st_size == 0) {
        vx_err_set(err, VX_E_UNPROCESSABLE, "empty_file", "the uploaded file is empty");
        goto fail;
    }
    rc = avio_open(&in->io, path, AVIO_FLAG_READ);
    if (rc < 0) {
        vx_warn("audio: cannot open input: %s", vx_audio_av_strerror(rc, eb));
        vx_err_set(err, VX_E_INTERNAL, "read_failed", "the audio file could not be read");
        goto fail;
    }
    /* An empty name keeps FFmpeg from scoring demuxers by extension. */
    rc = av_probe_input_buffer2(in->io, &ifmt, "", NULL, 0, 0);
    if (rc < 0 || !ifmt) {
        vx_err_set(err, VX_E_UNSUPPORTED, "unsupported_format",
                   "the file is not a recognised audio format (accepted: wav, flac, mp3, ogg, opus, m4a, webm)");
        goto fail;
    }
    in->fmt = avformat_alloc_context();
    if (!in->fmt) {
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        goto fail;
    }
    in->fmt->pb = in->io;
    rc = avformat_open_input(&in->fmt, "", ifmt, NULL);
    if (rc < 0) {
        in->fmt = NULL; /* freed by avformat_open_input on failure */
        vx_err_set(err, VX_E_UNPROCESSABLE, "invalid_audio", "the %s container could not be read (%s)",
                   ifmt->name, vx_audio_av_strerror(rc, eb));
        goto fail;
    }
    rc = avformat_find_stream_info(in->fmt, NULL);
    if (rc < 0) {
        vx_err_set(err, VX_E_UNPROCESSABLE, "invalid_audio", "the audio streams could not be read (%s)",
                   vx_audio_av_strerror(rc, eb));
        goto fail;
    }
    rc = av_find_best_stream(in->fmt, AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
    if (rc == AVERROR_DECODER_NOT_FOUND) {
        vx_err_set(err, VX_E_UNSUPPORTED, "unsupported_format", "no decoder for this audio codec");
        goto fail;
    }
    if (rc < 0) {
        if (has_real_video(in->fmt) || !vx_audio_format_from_ffmpeg(in->fmt->iformat->name, AV_CODEC_ID_NONE))
            vx_err_set(err, VX_E_UNSUPPORTED, "unsupported_format",
                       "the file holds no audio voxd accepts (video and image files are not accepted)");
        else
            vx_err_set(err, VX_E_UNPROCESSABLE, "no_audio_stream", "the file contains no audio stream");
        goto fail;
    }
    in->stream = rc;
    AVStream *st = in->fmt->streams[in->stream];
    const char *name = vx_audio_format_from_ffmpeg(in->fmt->iformat->name, st->codecpar->codec_id);
    if (!name) {
        vx_err_set(err, VX_E_UNSUPPORTED, "unsupported_format",
                   "%s audio in the %s container is not accepted (accepted: wav, flac, mp3, ogg, opus, m4a, webm)",
                   avcodec_get_name(st->codecpar->codec_id), in->fmt->iformat->name);
        goto fail;
    }
    if (!codec) {
        vx_err_set(err, VX_E_UNSUPPORTED, "unsupported_format", "no decoder for %s audio",
                   avcodec_get_name(st->codecpar->codec_id));
        goto fail;
    }
    in->dec = avcodec_alloc_context3(codec);
    if (!in->dec) {
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        goto fail;
    }
    rc = avcodec_parameters_to_context(in->dec, st->codecpar);
    if (rc >= 0) {
        in->dec->pkt_timebase = st->time_base;
        rc = avcodec_open2(in->dec, codec, NULL);
    }
    if (rc < 0) {
        vx_err_set(err, VX_E_UNPROCESSABLE, "invalid_audio", "the %s decoder rejected the stream (%s)",
                   codec->name, vx_audio_av_strerror(rc, eb));
        goto fail;
    }
    /* Streams we do not read need not be demuxed into packets. */
    for (unsigned i = 0; i < in->fmt->nb_streams; i++)
        if ((int)i != in->stream) in->fmt->streams[i]->discard = AVDISCARD_ALL;

    snprintf(in->info.format, sizeof in->info.format, "%s", name);
    snprintf(in->info.codec, sizeof in->info.codec, "%s", avcodec_get_name(st->codecpar->codec_id));
    in->info.sample_rate = in->dec->sample_rate;
    in->info.channels = in->dec->ch_layout.nb_channels;
    in->info.bit_rate = in->fmt->bit_rate > 0 ? in->fmt->bit_rate : st->codecpar->bit_rate;
    fill_durations(in->fmt, st, &in->info);
    if (strcmp(name, "wav") == 0) in->info.declared_duration_s = wav_claimed_seconds(path);
    /* MP4 states the exact presentation length, but FFmpeg 5.1 still hands
     * out AAC's final padding frame; cut there so lengths come out exact. */
    if (strcmp(name, "m4a") == 0) in->trim_s = in->info.declared_duration_s;
    if (in->info.sample_rate <= 0 || in->info.channels <= 0) {
        vx_err_set(err, VX_E_UNPROCESSABLE, "invalid_audio", "the audio stream has no valid sample rate or channel count");
        goto fail;
    }
    return 0;
fail:
    vx_audio_input_close(in);
    return -1;
}

void vx_audio_input_close(vx_audio_input *in) {
    if (!in) return;
    avcodec_free_context(&in->dec);
    avformat_close_input(&in->fmt); /* leaves our custom io open */
    avio_closep(&in->io);
    in->stream = -1;
}
