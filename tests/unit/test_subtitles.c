/* test_subtitles.c - src/models/subtitles.c: SRT/VTT timestamps (hours,
 * rounding, bad input), cue splitting into two balanced lines of at most 42
 * characters, cue timing from words or by interpolation, the text, json and
 * verbose_json renderings, and errors for unknown formats and bad documents. */
#include <math.h>
#include <stdlib.h>
#include "models/subtitles.h"
#include "test.h"

static json_t *doc_from(const char *text) {
    json_error_t e;
    json_t *d = json_loads(text, 0, &e);
    if (!d) fprintf(stderr, "  bad fixture: %s\n", e.text);
    return d;
}

static char *render(const json_t *doc, const char *format, const char **ctype, vx_err *err) {
    char *out = NULL;
    size_t len = 0;
    if (vx_subtitles_render(doc, format, &out, &len, ctype, err) != 0) return NULL;
    if (strlen(out) != len) {
        free(out);
        return NULL;
    }
    return out;
}

static void test_timestamps_have_hours_and_round_to_the_millisecond(void) {
    char t[VX_SUBTITLE_TIME_SIZE];
    vx_subtitles_timestamp(0, false, t);
    CHECK_EQ_STR(t, "00:00:00,000");
    vx_subtitles_timestamp(3723.456, false, t);
    CHECK_EQ_STR(t, "01:02:03,456");
    vx_subtitles_timestamp(3723.456, true, t);
    CHECK_EQ_STR(t, "01:02:03.456");
    vx_subtitles_timestamp(59.9996, false, t); /* rounds up across the minute */
    CHECK_EQ_STR(t, "00:01:00,000");
    vx_subtitles_timestamp(1.23449, true, t);
    CHECK_EQ_STR(t, "00:00:01.234");
    vx_subtitles_timestamp(1.23451, true, t);
    CHECK_EQ_STR(t, "00:00:01.235");
    vx_subtitles_timestamp(100 * 3600 + 0.001, false, t); /* hours grow past two digits */
    CHECK_EQ_STR(t, "100:00:00,001");
    vx_subtitles_timestamp(-3, false, t);
    CHECK_EQ_STR(t, "00:00:00,000");
    vx_subtitles_timestamp(NAN, true, t);
    CHECK_EQ_STR(t, "00:00:00.000");
}

static const char *TWO_SEGMENTS =
    "{\"text\":\"hello world good morning\",\"language\":\"en\",\"duration\":5.0,"
    "\"segments\":[{\"id\":0,\"start\":0.5,\"end\":1.25,\"text\":\"hello world\",\"confidence\":0.9},"
    "{\"id\":1,\"start\":3661.0,\"end\":3662.5,\"text\":\"good morning\",\"confidence\":0.5}],"
    "\"words\":[{\"word\":\"hello\",\"start\":0.5,\"end\":0.8,\"confidence\":0.9},"
    "{\"word\":\"world\",\"start\":0.8,\"end\":1.25,\"confidence\":0.9},"
    "{\"word\":\"good\",\"start\":3661.0,\"end\":3661.5,\"confidence\":0.5},"
    "{\"word\":\"morning\",\"start\":3661.5,\"end\":3662.5,\"confidence\":0.5}]}";

static void test_srt_numbers_cues_and_uses_comma_times(void) {
    json_t *doc = doc_from(TWO_SEGMENTS);
    REQUIRE(doc);
    vx_err err = {0};
    const char *ct = NULL;
    char *srt = render(doc, "srt", &ct, &err);
    REQUIRE(srt);
    CHECK_EQ_STR(srt, "1\n00:00:00,500 --> 00:00:01,250\nhello world\n\n"
                      "2\n01:01:01,000 --> 01:01:02,500\ngood morning\n\n");
    CHECK(strstr(ct, "subrip") != NULL);
    free(srt);
    json_decref(doc);
}

static void test_vtt_has_the_webvtt_header_and_dot_times(void) {
    json_t *doc = doc_from(TWO_SEGMENTS);
    REQUIRE(doc);
    vx_err err = {0};
    const char *ct = NULL;
    char *vtt = render(doc, "vtt", &ct, &err);
    REQUIRE(vtt);
    CHECK_EQ_STR(vtt, "WEBVTT\n\n00:00:00.500 --> 00:00:01.250\nhello world\n\n"
                      "01:01:01.000 --> 01:01:02.500\ngood morning\n\n");
    CHECK(strncmp(ct, "text/vtt", 8) == 0);
    free(vtt);
    json_decref(doc);
}

/* A document with one long segment of n numbered words ("w0 w1 ..."), each
 * word 0.5 s long from `start`, optionally with its words listed. */
static json_t *long_segment(int n, double start, bool with_words) {
    json_t *words = json_array();
    char text[4096] = "";
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        char w[16];
        snprintf(w, sizeof w, "word%d", i);
        used += (size_t)snprintf(text + used, sizeof text - used, "%s%s", i ? " " : "", w);
        json_array_append_new(words, json_pack("{s:s, s:f, s:f, s:f}", "word", w, "start", start + i * 0.5, "end",
                                               start + i * 0.5 + 0.4, "confidence", 0.8));
    }
    json_t *doc = json_pack("{s:s, s:[{s:i, s:f, s:f, s:s}]}", "text", text, "segments", "id", 0, "start", start,
                            "end", start + n * 0.5, "text", text);
    if (with_words) json_object_set(doc, "words", words);
    json_decref(words);
    return doc;
}

static size_t line_chars(const char *line, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)line[i] & 0xC0) != 0x80) c++;
    return c;
}

/* Every cue: 1-2 lines of <= 42 chars, in order, inside the segment; the
 * cues' words in sequence spell the segment. */
static void check_cues(const vx_subtitle_cue *cues, size_t n, const char *text, double start, double end) {
    char joined[4096] = "";
    size_t used = 0;
    double prev_end = start;
    for (size_t i = 0; i < n; i++) {
        const char *nl = strchr(cues[i].text, '\n');
        CHECK(!nl || strchr(nl + 1, '\n') == NULL);
        size_t l1 = nl ? (size_t)(nl - cues[i].text) : strlen(cues[i].text);
        CHECK(line_chars(cues[i].text, l1) <= VX_SUBTITLE_LINE_CHARS);
        if (nl) CHECK(line_chars(nl + 1, strlen(nl + 1)) <= VX_SUBTITLE_LINE_CHARS);
        CHECK(cues[i].start >= prev_end - 1e-9);
        CHECK(cues[i].start <= cues[i].end);
        CHECK(cues[i].end <= end + 1e-9);
        prev_end = cues[i].end;
        for (const char *p = cues[i].text; *p && used + 1 < sizeof joined; p++) joined[used++] = *p == '\n' ? ' ' : *p;
        if (i + 1 < n) joined[used++] = ' ';
        joined[used] = '\0';
    }
    CHECK_EQ_STR(joined, text);
}

static void test_long_segments_split_into_cues_of_two_short_lines(void) {
    json_t *doc = long_segment(40, 10.0, true); /* ~270 characters */
    REQUIRE(doc);
    vx_subtitle_cue *cues;
    size_t n;
    vx_err err = {0};
    REQUIRE(vx_subtitles_cues(doc, &cues, &n, &err) == 0);
    CHECK(n >= 4);
    const char *text = json_string_value(json_object_get(doc, "text"));
    check_cues(cues, n, text, 10.0, 30.0);
    /* Times come from the words: a cue starts when its first word does. */
    int first = atoi(cues[1].text + 4);
    CHECK(fabs(cues[1].start - (10.0 + first * 0.5)) < 1e-9);
    CHECK(fabs(cues[0].start - 10.0) < 1e-9);
    vx_subtitles_cues_free(cues, n);
    json_decref(doc);
}

static void test_two_line_cues_are_balanced(void) {
    /* 55 characters: fits two lines; the break goes near the middle rather
     * than after 42 characters. */
    json_t *doc = doc_from("{\"text\":\"x\",\"segments\":[{\"start\":0,\"end\":4,"
                           "\"text\":\"the quick brown fox jumps over the lazy dog every day\"}]}");
    REQUIRE(doc);
    vx_subtitle_cue *cues;
    size_t n;
    vx_err err = {0};
    REQUIRE(vx_subtitles_cues(doc, &cues, &n, &err) == 0);
    REQUIRE(n == 1);
    CHECK_EQ_STR(cues[0].text, "the quick brown fox jumps\nover the lazy dog every day");
    vx_subtitles_cues_free(cues, n);
    json_decref(doc);
}

static void test_without_words_cue_times_are_interpolated_inside_the_segment(void) {
    json_t *doc = long_segment(40, 100.0, false);
    REQUIRE(doc);
    vx_subtitle_cue *cues;
    size_t n;
    vx_err err = {0};
    REQUIRE(vx_subtitles_cues(doc, &cues, &n, &err) == 0);
    REQUIRE(n >= 4);
    check_cues(cues, n, json_string_value(json_object_get(doc, "text")), 100.0, 120.0);
    CHECK(fabs(cues[0].start - 100.0) < 1e-9);
    CHECK(fabs(cues[n - 1].end - 120.0) < 1e-9);
    CHECK(cues[1].start > cues[0].start && cues[1].start < cues[n - 1].start);
    vx_subtitles_cues_free(cues, n);
    json_decref(doc);
}

static void test_words_that_do_not_match_the_text_are_not_used_for_times(void) {
    json_t *doc = doc_from("{\"text\":\"a b\",\"segments\":[{\"start\":0,\"end\":2,\"text\":\"alpha beta\"}],"
                           "\"words\":[{\"word\":\"gamma\",\"start\":0.5,\"end\":0.6},"
                           "{\"word\":\"beta\",\"start\":1.5,\"end\":1.6}]}");
    REQUIRE(doc);
    vx_subtitle_cue *cues;
    size_t n;
    vx_err err = {0};
    REQUIRE(vx_subtitles_cues(doc, &cues, &n, &err) == 0);
    REQUIRE(n == 1);
    CHECK(cues[0].start == 0 && cues[0].end == 2); /* the segment's, not 0.5..1.6 */
    vx_subtitles_cues_free(cues, n);
    json_decref(doc);
}

static void test_a_word_longer_than_a_line_gets_a_line_of_its_own(void) {
    json_t *doc = doc_from("{\"text\":\"x\",\"segments\":[{\"start\":0,\"end\":3,\"text\":\"a "
                           "pneumonoultramicroscopicsilicovolcanoconiosis-extraordinary b\"}]}");
    REQUIRE(doc);
    vx_subtitle_cue *cues;
    size_t n;
    vx_err err = {0};
    REQUIRE(vx_subtitles_cues(doc, &cues, &n, &err) == 0);
    REQUIRE(n >= 1);
    bool alone = false;
    for (size_t i = 0; i < n; i++) {
        char *copy = strdup(cues[i].text), *save = NULL;
        for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
            if (strcmp(l, "pneumonoultramicroscopicsilicovolcanoconiosis-extraordinary") == 0) alone = true;
        free(copy);
    }
    CHECK(alone);
    vx_subtitles_cues_free(cues, n);
    json_decref(doc);
}

static void test_text_and_json_renderings(void) {
    json_t *doc = doc_from(TWO_SEGMENTS);
    REQUIRE(doc);
    vx_err err = {0};
    const char *ct = NULL;
    char *text = render(doc, "text", &ct, &err);
    REQUIRE(text);
    CHECK_EQ_STR(text, "hello world good morning\n");
    CHECK(strncmp(ct, "text/plain", 10) == 0);
    free(text);
    char *js = render(doc, "json", &ct, &err);
    REQUIRE(js);
    CHECK_EQ_STR(js, "{\"text\":\"hello world good morning\"}");
    CHECK_EQ_STR(ct, "application/json");
    free(js);
    json_decref(doc);
}

static void test_verbose_json_has_openai_segments_and_words(void) {
    json_t *doc = doc_from(TWO_SEGMENTS);
    REQUIRE(doc);
    vx_err err = {0};
    const char *ct = NULL;
    char *out = render(doc, "verbose_json", &ct, &err);
    REQUIRE(out);
    json_t *v = json_loads(out, 0, NULL);
    free(out);
    REQUIRE(v);
    CHECK_EQ_STR(json_string_value(json_object_get(v, "task")), "transcribe");
    CHECK_EQ_STR(json_string_value(json_object_get(v, "language")), "english");
    CHECK(json_number_value(json_object_get(v, "duration")) == 5.0);
    CHECK_EQ_STR(json_string_value(json_object_get(v, "text")), "hello world good morning");
    const json_t *segs = json_object_get(v, "segments");
    REQUIRE(json_array_size(segs) == 2);
    const json_t *s1 = json_array_get(segs, 1);
    CHECK_EQ_INT(json_integer_value(json_object_get(s1, "id")), 1);
    CHECK(json_number_value(json_object_get(s1, "start")) == 3661.0);
    CHECK(json_number_value(json_object_get(s1, "end")) == 3662.5);
    CHECK_EQ_STR(json_string_value(json_object_get(s1, "text")), "good morning");
    CHECK(json_is_array(json_object_get(s1, "tokens")));
    CHECK(fabs(json_number_value(json_object_get(s1, "avg_logprob")) - log(0.5)) < 1e-3);
    /* "good morning": 12 bytes; zlib adds framing, so short text compresses to more than it was */
    double cr = json_number_value(json_object_get(s1, "compression_ratio"));
    CHECK(cr > 0 && cr < 1);
    CHECK(json_is_number(json_object_get(s1, "no_speech_prob")) &&
          json_number_value(json_object_get(s1, "no_speech_prob")) == 0);
    const json_t *words = json_object_get(v, "words");
    REQUIRE(json_array_size(words) == 4);
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(words, 3), "word")), "morning");
    CHECK(json_number_value(json_object_get(json_array_get(words, 3), "end")) == 3662.5);
    json_decref(v);
    json_decref(doc);
}

static void test_unknown_format_and_bad_documents_are_refused(void) {
    json_t *doc = doc_from(TWO_SEGMENTS);
    REQUIRE(doc);
    vx_err err = {0};
    const char *ct = NULL;
    CHECK(render(doc, "docx", &ct, &err) == NULL);
    CHECK_EQ_STR(err.code, "invalid_format");
    CHECK_EQ_INT(err.status, VX_E_INVALID);
    json_decref(doc);
    doc = doc_from("{\"text\":\"x\",\"segments\":[{\"start\":\"soon\",\"end\":1,\"text\":\"x\"}]}");
    REQUIRE(doc);
    CHECK(render(doc, "srt", &ct, &err) == NULL);
    CHECK_EQ_STR(err.code, "invalid_result");
    json_decref(doc);
    doc = json_array();
    CHECK(render(doc, "text", &ct, &err) == NULL);
    json_decref(doc);
    /* no segments at all: an empty subtitle file, not an error */
    doc = doc_from("{\"text\":\"\"}");
    REQUIRE(doc);
    char *vtt = render(doc, "vtt", &ct, &err);
    CHECK_EQ_STR(vtt, "WEBVTT\n\n");
    free(vtt);
    char *srt = render(doc, "srt", &ct, &err);
    CHECK_EQ_STR(srt, "");
    free(srt);
    json_decref(doc);
}

TEST_MAIN(TEST_ENTRY(test_timestamps_have_hours_and_round_to_the_millisecond),
          TEST_ENTRY(test_srt_numbers_cues_and_uses_comma_times),
          TEST_ENTRY(test_vtt_has_the_webvtt_header_and_dot_times),
          TEST_ENTRY(test_long_segments_split_into_cues_of_two_short_lines),
          TEST_ENTRY(test_two_line_cues_are_balanced),
          TEST_ENTRY(test_without_words_cue_times_are_interpolated_inside_the_segment),
          TEST_ENTRY(test_words_that_do_not_match_the_text_are_not_used_for_times),
          TEST_ENTRY(test_a_word_longer_than_a_line_gets_a_line_of_its_own),
          TEST_ENTRY(test_text_and_json_renderings),
          TEST_ENTRY(test_verbose_json_has_openai_segments_and_words),
          TEST_ENTRY(test_unknown_format_and_bad_documents_are_refused))
