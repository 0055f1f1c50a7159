/* subtitles.h - renders a transcription result document (the JSON the
 * `transcribe` model stores: text, segments, words) as json, verbose_json,
 * text, SRT or WebVTT. The `render` hook of transcribe and the OpenAI
 * endpoint's response bodies. Pure functions: any thread. */
#ifndef VX_SUBTITLES_H
#define VX_SUBTITLES_H
#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include "../util/err.h"

/* Subtitle cues hold at most this many lines of at most this many
 * characters (a longer single word gets a line of its own). */
#define VX_SUBTITLE_LINE_CHARS 42
#define VX_SUBTITLE_MAX_LINES 2
#define VX_SUBTITLE_TIME_SIZE 24

/* "HH:MM:SS,mmm" (SRT) or "HH:MM:SS.mmm" (vtt = true), rounded to the
 * nearest millisecond; negative or non-finite times render as zero; hours
 * grow past two digits when needed. */
void vx_subtitles_timestamp(double seconds, bool vtt, char out[VX_SUBTITLE_TIME_SIZE]);

typedef struct vx_subtitle_cue {
    double start, end;
    char *text;          /* lines separated by '\n' */
} vx_subtitle_cue;

/* Splits the document's segments into cues. Segment times bound each cue;
 * inside a segment, cue times come from the document's words when they
 * match the segment's text, else they are interpolated by character
 * position. *cues is malloc'd (free with vx_subtitles_cues_free). A
 * document without "segments" gives zero cues; malformed entries 500
 * "invalid_result". */
int vx_subtitles_cues(const json_t *result, vx_subtitle_cue **cues, size_t *n, vx_err *err);
void vx_subtitles_cues_free(vx_subtitle_cue *cues, size_t n);

/* The formats vx_subtitles_render knows, NULL-terminated. */
extern const char *const vx_subtitles_formats[];

/* Renders `result` as `format`: "json" ({"text"}), "verbose_json" (task,
 * language, duration, text, segments, words: OpenAI's shape), "text",
 * "srt", "vtt". *out is malloc'd (caller frees), *len its length,
 * *content_type static. Unknown format: 400 "invalid_format". */
int vx_subtitles_render(const json_t *result, const char *format, char **out, size_t *len,
                        const char **content_type, vx_err *err);

#endif
