/* audio_int.h - private parts shared by the files of src/audio/ (formats.c,
 * probe.c, decode.c, encode.c): opening an input by its content, never its
 * name, and mapping FFmpeg's demuxer/codec pair to voxd's format names.
 * Not for use outside src/audio/. Same threading rule as audio.h. */
#ifndef VX_AUDIO_INT_H
#define VX_AUDIO_INT_H
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include "audio.h"

/* An opened input: container, the chosen audio stream and its decoder. */
typedef struct vx_audio_input {
    AVFormatContext *fmt;
    AVIOContext *io;      /* ours: opened before probing so the name plays no part */
    AVCodecContext *dec;
    int stream;           /* index of the audio stream in fmt */
    vx_audio_info info;   /* duration_s = container estimate; declared_duration_s
                             only when the header states it (not a bitrate guess) */
    double trim_s;        /* > 0: audio past this point is codec padding to drop */
} vx_audio_input;

/* Opens path, recognises the container from its bytes, checks it is one voxd
 * accepts, picks the audio stream and opens its decoder. Errors as audio.h
 * documents for vx_audio_probe (empty_file, unsupported_format,
 * no_audio_stream, invalid_audio). On failure *in is left closed. */
int vx_audio_input_open(vx_audio_input *in, const char *path, vx_err *err);
void vx_audio_input_close(vx_audio_input *in);

/* voxd's name for a demuxer + audio codec, NULL when voxd does not accept it. */
const char *vx_audio_format_from_ffmpeg(const char *demuxer, enum AVCodecID codec);

/* Short, path-free description of an FFmpeg error code, for messages. */
const char *vx_audio_av_strerror(int code, char buf[AV_ERROR_MAX_STRING_SIZE]);

#endif
