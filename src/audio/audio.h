/* audio.h - decode any supported input to float PCM, encode float PCM to a
 * file, and probe/validate uploads, all through the FFmpeg libraries.
 * PCM is interleaved float32 in [-1, 1]. Works on local paths only (blob
 * backends fetch to a local file first). No HTTP, SQL or storage here.
 * Thread-safe: every object is owned by one thread at a time. */
#ifndef VX_AUDIO_H
#define VX_AUDIO_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "../util/err.h"

typedef struct vx_audio_info {
    char format[32];        /* voxd's name of the container: wav flac mp3 ogg opus m4a webm */
    char codec[32];         /* FFmpeg codec name: pcm_s16le flac mp3 vorbis opus aac ... */
    int sample_rate;
    int channels;
    double duration_s;      /* measured (probe: by decoding; decoder: container estimate) */
    double declared_duration_s; /* what the container header claims, 0 if nothing */
    int64_t bit_rate;
} vx_audio_info;

/* Input containers voxd accepts (NULL-terminated): wav flac mp3 ogg opus m4a webm. */
extern const char *const vx_audio_input_formats[];
/* Output formats (NULL-terminated): wav flac opus mp3. */
extern const char *const vx_audio_output_formats[];

/* Validates an uploaded file completely: recognised container among the
 * accepted ones (else 415 "unsupported_format"), an audio stream (422
 * "no_audio_stream"), decodes every packet counting samples, stopping with
 * 422 "duration_exceeded" once over max_duration_s (also when the header
 * alone already claims more), 422 "empty_audio" for zero samples, 422
 * "truncated_audio" when the decodable audio is clearly shorter than the
 * header claims or the stream is corrupt, 422 "invalid_audio" for anything
 * else FFmpeg rejects. Fills *info with measured values. max_duration_s <= 0
 * means no limit. The name of the file plays no part: only its bytes. */
int vx_audio_probe(const char *path, double max_duration_s, vx_audio_info *info, vx_err *err);

typedef struct vx_decoder vx_decoder;
/* Opens path for decoding to float PCM at out_rate / out_channels (0 = keep
 * the source's). Resamples and remixes with libswresample. NULL on failure. */
vx_decoder *vx_decoder_open(const char *path, int out_rate, int out_channels, vx_err *err);
/* Source description (duration_s is the container estimate, may be 0). */
const vx_audio_info *vx_decoder_info(const vx_decoder *d);
int vx_decoder_rate(const vx_decoder *d);      /* output rate */
int vx_decoder_channels(const vx_decoder *d);  /* output channels */
/* Reads up to max_frames frames into pcm (max_frames * channels floats).
 * Returns frames read (> 0), 0 at the end, -1 on error. */
long vx_decoder_read(vx_decoder *d, float *pcm, size_t max_frames, vx_err *err);
void vx_decoder_close(vx_decoder *d);

typedef struct vx_encoder vx_encoder;
/* Creates `path` holding `format` (wav = 16-bit PCM, flac, opus in Ogg, mp3)
 * at sample_rate / channels. Opus accepts 8/12/16/24/48 kHz, mp3 the MPEG
 * rates: others 422 "unsupported_sample_rate". 1..8 channels. */
vx_encoder *vx_encoder_open(const char *path, const char *format, int sample_rate, int channels,
                            vx_err *err);
int vx_encoder_write(vx_encoder *e, const float *pcm, size_t frames, vx_err *err);
/* Flushes the codec and writes the trailer; the file is complete after this. */
int vx_encoder_finish(vx_encoder *e, vx_err *err);
/* Frees. If finish did not succeed the partial file is removed. */
void vx_encoder_close(vx_encoder *e);

bool vx_audio_output_format_valid(const char *format);
/* "audio/wav", "audio/flac", "audio/ogg", "audio/mpeg"; NULL if unknown. */
const char *vx_audio_content_type(const char *format);
/* File extension without dot for an input or output format ("opus" -> "opus"). */
const char *vx_audio_extension(const char *format);

/* ---- streaming resampler (live streams) ----
 * Mono float PCM from one rate to another, fed in pieces of any size, with
 * bounded state (libswresample). One object per stream, one thread at a
 * time. Caller frees with vx_resampler_free. NULL on failure (422
 * "unsupported_sample_rate" outside 1000..384000 Hz, 500). */
typedef struct vx_resampler vx_resampler;
vx_resampler *vx_resampler_new(int in_rate, int out_rate, vx_err *err);
void vx_resampler_free(vx_resampler *r);
/* Converts n input samples; n = 0 drains the filter's tail (end of input).
 * *out points to the converted samples, owned by r and valid until its next
 * call; *n_out is their count. */
int vx_resampler_run(vx_resampler *r, const float *in, size_t n, const float **out, size_t *n_out, vx_err *err);

#endif
