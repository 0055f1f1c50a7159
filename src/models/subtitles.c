/* subtitles.c - transcription documents as json / verbose_json / text /
 * SRT / WebVTT. Segments become cues of at most two balanced lines of ~42
 * characters (the usual broadcast limit), timed from the words when the
 * document has them. Pure functions over a borrowed document: any thread. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "../util/strbuf.h"
#include "subtitles.h"

const char *const vx_subtitles_formats[] = {"json", "verbose_json", "text", "srt", "vtt", NULL};

void vx_subtitles_timestamp(double seconds, bool vtt, char out[VX_SUBTITLE_TIME_SIZE]) {
    /* Capped at ~31 years so the arithmetic stays exact and the text fits. */
    if (!isfinite(seconds) || seconds < 0) seconds = 0;
    if (seconds > 1e9) seconds = 1e9;
    unsigned long long ms = (unsigned long long)llround(seconds * 1000.0);
    unsigned h = (unsigned)(ms / 3600000), m = (unsigned)(ms / 60000 % 60), s = (unsigned)(ms / 1000 % 60),
             frac = (unsigned)(ms % 1000);
    snprintf(out, VX_SUBTITLE_TIME_SIZE, "%02u:%02u:%02u%c%03u", h, m, s, vtt ? '.' : ',', frac);
}

static int invalid(vx_err *err, const char *what) {
    return vx_err_set(err, VX_E_INTERNAL, "invalid_result", "the stored transcription is malformed (%s)", what);
}

/* Characters, not bytes: a cue line limit is about what a viewer reads. */
static size_t utf8_chars(const char *s, size_t bytes) {
    size_t n = 0;
    for (size_t i = 0; i < bytes; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) n++;
    return n;
}

typedef struct token {
    const char *s;
    size_t bytes, chars;
    double start, end;
} token;

typedef struct token_list {
    token *v;
    size_t n, cap;
} token_list;

static int push_token(token_list *l, const char *s, size_t bytes) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        token *v = realloc(l->v, cap * sizeof *v);
        if (!v) return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (token){.s = s, .bytes = bytes, .chars = utf8_chars(s, bytes)};
    return 0;
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Times by character position: the best guess without word times. */
static void interpolate(token_list *t, const char *text, double start, double end) {
    size_t total = strlen(text);
    for (size_t i = 0; i < t->n; i++) {
        double a = (double)(t->v[i].s - text), b = a + (double)t->v[i].bytes;
        t->v[i].start = start + (end - start) * (total ? a / (double)total : 0);
        t->v[i].end = start + (end - start) * (total ? b / (double)total : 0);
    }
}

static double midpoint(const json_t *w) {
    return (json_number_value(json_object_get(w, "start")) + json_number_value(json_object_get(w, "end"))) / 2;
}

/* Uses the words whose midpoints fall inside the segment when they spell
 * exactly its tokens; *cursor walks the (time-ordered) words once for all
 * segments. Returns whether the word times were taken. */
static bool take_word_times(token_list *t, const json_t *words, size_t *cursor, double start, double end) {
    size_t n = json_array_size(words), i = *cursor;
    while (i < n && midpoint(json_array_get(words, i)) < start - 1e-6) i++;
    size_t first = i, k = 0;
    bool match = true;
    for (; i < n && midpoint(json_array_get(words, i)) <= end + 1e-6; i++, k++) {
        const char *w = json_string_value(json_object_get(json_array_get(words, i), "word"));
        if (k >= t->n || !w || strlen(w) != t->v[k].bytes || memcmp(w, t->v[k].s, t->v[k].bytes) != 0) match = false;
    }
    *cursor = i;
    if (!match || k != t->n) return false;
    for (k = 0; k < t->n; k++) {
        const json_t *w = json_array_get(words, first + k);
        double a = json_number_value(json_object_get(w, "start")), b = json_number_value(json_object_get(w, "end"));
        a = a < start ? start : a > end ? end : a;
        b = b < a ? a : b > end ? end : b;
        t->v[k].start = a;
        t->v[k].end = b;
    }
    return true;
}

static size_t span_chars(const token *v, size_t a, size_t b) {
    size_t n = 0;
    for (size_t i = a; i < b; i++) n += v[i].chars + (i > a);
    return n;
}

/* Greedy: as many tokens as fit in VX_SUBTITLE_MAX_LINES lines. Returns the
 * end (exclusive) of the cue that starts at `a`. */
static size_t cue_end(const token *v, size_t a, size_t n) {
    size_t line = 0, lines = 1, i = a;
    for (; i < n; i++) {
        if (i == a) line = v[i].chars;
        else if (line + 1 + v[i].chars <= VX_SUBTITLE_LINE_CHARS) line += 1 + v[i].chars;
        else if (lines < VX_SUBTITLE_MAX_LINES) {
            lines++;
            line = v[i].chars;
        } else break;
    }
    return i;
}

/* Where to break a cue's tokens [a, b) into two lines: none (returns b) when
 * it fits on one, else the split with the shortest longer line. */
static size_t line_break(const token *v, size_t a, size_t b) {
    if (span_chars(v, a, b) <= VX_SUBTITLE_LINE_CHARS || b - a < 2) return b;
    size_t best = a + 1, best_len = SIZE_MAX;
    for (size_t k = a + 1; k < b; k++) {
        size_t l1 = span_chars(v, a, k), l2 = span_chars(v, k, b), longer = l1 > l2 ? l1 : l2;
        if (longer < best_len) {
            best_len = longer;
            best = k;
        }
    }
    return best;
}

static int add_cue(vx_subtitle_cue **cues, size_t *n, size_t *cap, const token *v, size_t a, size_t b,
                   double seg_start, double seg_end) {
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 16;
        vx_subtitle_cue *nc = realloc(*cues, c * sizeof *nc);
        if (!nc) return -1;
        *cues = nc;
        *cap = c;
    }
    size_t brk = line_break(v, a, b);
    vx_strbuf text = {0};
    for (size_t i = a; i < b; i++) {
        if (i > a) vx_strbuf_puts(&text, i == brk ? "\n" : " ");
        vx_strbuf_append(&text, v[i].s, v[i].bytes);
    }
    double start = v[a].start, end = v[b - 1].end;
    if (start < seg_start) start = seg_start;
    if (end > seg_end) end = seg_end;
    if (end < start) end = start;
    (*cues)[(*n)++] = (vx_subtitle_cue){.start = start, .end = end, .text = vx_strbuf_take(&text)};
    return 0;
}

int vx_subtitles_cues(const json_t *result, vx_subtitle_cue **cues, size_t *n, vx_err *err) {
    *cues = NULL;
    *n = 0;
    const json_t *segments = json_object_get(result, "segments");
    const json_t *words = json_object_get(result, "words");
    if (segments && !json_is_array(segments)) return invalid(err, "segments");
    if (words && !json_is_array(words)) words = NULL;
    size_t cap = 0, cursor = 0;
    token_list toks = {0};
    for (size_t s = 0; s < json_array_size(segments); s++) {
        const json_t *seg = json_array_get(segments, s);
        const char *text = json_string_value(json_object_get(seg, "text"));
        const json_t *js = json_object_get(seg, "start"), *je = json_object_get(seg, "end");
        if (!text || !json_is_number(js) || !json_is_number(je)) {
            free(toks.v);
            vx_subtitles_cues_free(*cues, *n);
            *cues = NULL;
            *n = 0;
            return invalid(err, "segment");
        }
        double start = json_number_value(js), end = json_number_value(je);
        if (end < start) end = start;
        toks.n = 0;
        for (const char *p = text; *p;) {
            while (*p && is_space(*p)) p++;
            const char *q = p;
            while (*q && !is_space(*q)) q++;
            if (q > p && push_token(&toks, p, (size_t)(q - p)) != 0) goto oom;
            p = q;
        }
        if (toks.n == 0) continue;
        if (!words || !take_word_times(&toks, words, &cursor, start, end)) interpolate(&toks, text, start, end);
        for (size_t a = 0; a < toks.n;) {
            size_t b = cue_end(toks.v, a, toks.n);
            if (add_cue(cues, n, &cap, toks.v, a, b, start, end) != 0) goto oom;
            a = b;
        }
    }
    free(toks.v);
    return 0;
oom:
    free(toks.v);
    vx_subtitles_cues_free(*cues, *n);
    *cues = NULL;
    *n = 0;
    return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
}

void vx_subtitles_cues_free(vx_subtitle_cue *cues, size_t n) {
    for (size_t i = 0; i < n; i++) free(cues[i].text);
    free(cues);
}

static char *render_cues(const json_t *result, bool vtt, vx_err *err) {
    vx_subtitle_cue *cues;
    size_t n;
    if (vx_subtitles_cues(result, &cues, &n, err) != 0) return NULL;
    vx_strbuf b = {0};
    if (vtt) vx_strbuf_puts(&b, "WEBVTT\n\n");
    for (size_t i = 0; i < n; i++) {
        char t0[VX_SUBTITLE_TIME_SIZE], t1[VX_SUBTITLE_TIME_SIZE];
        vx_subtitles_timestamp(cues[i].start, vtt, t0);
        vx_subtitles_timestamp(cues[i].end, vtt, t1);
        if (!vtt) vx_strbuf_printf(&b, "%zu\n", i + 1);
        vx_strbuf_printf(&b, "%s --> %s\n%s\n\n", t0, t1, cues[i].text);
    }
    vx_subtitles_cues_free(cues, n);
    return vx_strbuf_take(&b);
}

static const char *language_name(const char *code) {
    return code && strcmp(code, "en") == 0 ? "english" : code ? code : "english";
}

/* Whisper's repetition check, computed the same way: UTF-8 bytes of the
 * text over its zlib-compressed size (0 for empty text). */
static double compression_ratio(const char *text) {
    size_t len = strlen(text);
    if (len == 0) return 0;
    uLongf cap = compressBound((uLong)len);
    Bytef *buf = malloc(cap);
    double r = 0;
    if (buf && compress2(buf, &cap, (const Bytef *)text, (uLong)len, Z_DEFAULT_COMPRESSION) == Z_OK && cap > 0)
        r = round((double)len / (double)cap * 1e4) / 1e4;
    free(buf);
    return r;
}

/* OpenAI's verbose_json. tokens is empty and temperature 0 (PocketSphinx has
 * no token ids and does not sample); no_speech_prob is 0 because a segment
 * only exists where the speech gate opened and words were recognised. */
static json_t *verbose_json(const json_t *result) {
    const char *text = json_string_value(json_object_get(result, "text"));
    json_t *segs = json_array(), *out;
    const json_t *seg, *w;
    size_t i;
    json_array_foreach(json_object_get(result, "segments"), i, seg) {
        double start = json_number_value(json_object_get(seg, "start"));
        const char *seg_text = json_string_value(json_object_get(seg, "text"));
        if (!seg_text) seg_text = "";
        json_t *o = json_pack("{s:I, s:I, s:f, s:f, s:s, s:[], s:f, s:f, s:f}", "id", (json_int_t)i, "seek",
                              (json_int_t)llround(start * 100.0), "start", start, "end",
                              json_number_value(json_object_get(seg, "end")), "text", seg_text, "tokens",
                              "temperature", 0.0, "compression_ratio", compression_ratio(seg_text),
                              "no_speech_prob", 0.0);
        const json_t *conf = json_object_get(seg, "confidence");
        if (o && json_is_number(conf) && json_number_value(conf) > 0)
            json_object_set_new(o, "avg_logprob", json_real(round(log(json_number_value(conf)) * 1e4) / 1e4));
        if (o) json_array_append_new(segs, o);
    }
    out = json_pack("{s:s, s:s, s:f, s:s, s:o}", "task", "transcribe", "language",
                    language_name(json_string_value(json_object_get(result, "language"))), "duration",
                    json_number_value(json_object_get(result, "duration")), "text", text ? text : "", "segments", segs);
    const json_t *words = json_object_get(result, "words");
    if (out && json_is_array(words)) {
        json_t *ws = json_array();
        json_array_foreach(words, i, w) {
            const char *word = json_string_value(json_object_get(w, "word"));
            json_array_append_new(ws, json_pack("{s:s, s:f, s:f}", "word", word ? word : "", "start",
                                                json_number_value(json_object_get(w, "start")), "end",
                                                json_number_value(json_object_get(w, "end"))));
        }
        json_object_set_new(out, "words", ws);
    }
    return out;
}

int vx_subtitles_render(const json_t *result, const char *format, char **out, size_t *len,
                        const char **content_type, vx_err *err) {
    *out = NULL;
    *len = 0;
    if (!json_is_object(result)) return invalid(err, "not an object");
    const char *text = json_string_value(json_object_get(result, "text"));
    if (!format) format = "json";
    if (strcmp(format, "srt") == 0 || strcmp(format, "vtt") == 0) {
        bool vtt = format[0] == 'v';
        *out = render_cues(result, vtt, err);
        if (!*out) return -1;
        *content_type = vtt ? "text/vtt; charset=utf-8" : "application/x-subrip; charset=utf-8";
    } else if (strcmp(format, "text") == 0) {
        vx_strbuf b = {0};
        vx_strbuf_printf(&b, "%s\n", text ? text : "");
        *out = vx_strbuf_take(&b);
        *content_type = "text/plain; charset=utf-8";
    } else if (strcmp(format, "json") == 0 || strcmp(format, "verbose_json") == 0) {
        json_t *doc = format[0] == 'j' ? json_pack("{s:s}", "text", text ? text : "") : verbose_json(result);
        *out = doc ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
        json_decref(doc);
        if (!*out) return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        *content_type = "application/json";
    } else {
        return vx_err_set(err, VX_E_INVALID, "invalid_format",
                          "transcriptions render as json, verbose_json, text, srt or vtt, not \"%.32s\"", format);
    }
    *len = strlen(*out);
    return 0;
}
