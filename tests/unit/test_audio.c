/* test_audio.c - src/audio/: probing every accepted input format and every
 * kind of bad upload, streaming decode with resampling, and encode round
 * trips for every output format. Fixtures are made at test time with the
 * ffmpeg CLI in a mkdtemp directory that is removed at the end. */
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <libavutil/log.h>
#include "audio/audio.h"
#include "test.h"

static char dir[] = "/tmp/vx_test_audio_XXXXXX";
static bool fixtures_ready;

typedef struct fixture {
    const char *file;
    const char *ffmpeg_args;  /* output options */
    const char *format;       /* expected voxd format */
    const char *codec;
    int rate;
} fixture;

/* A 1 s 440 Hz tone at 44.1 kHz (stereo for WAV) in every accepted format. */
static const fixture inputs[] = {
    {.file = "tone.wav", .ffmpeg_args = "-ac 2 -c:a pcm_s16le", .format = "wav", .codec = "pcm_s16le", .rate = 44100},
    {.file = "tone.flac", .ffmpeg_args = "-c:a flac", .format = "flac", .codec = "flac", .rate = 44100},
    {.file = "tone.mp3", .ffmpeg_args = "-c:a libmp3lame", .format = "mp3", .codec = "mp3", .rate = 44100},
    {.file = "tone.ogg", .ffmpeg_args = "-c:a libvorbis", .format = "ogg", .codec = "vorbis", .rate = 44100},
    {.file = "tone.opus", .ffmpeg_args = "-c:a libopus", .format = "opus", .codec = "opus", .rate = 48000},
    {.file = "tone.m4a", .ffmpeg_args = "-c:a aac", .format = "m4a", .codec = "aac", .rate = 44100},
    {.file = "tone.webm", .ffmpeg_args = "-c:a libopus", .format = "webm", .codec = "opus", .rate = 48000},
};
#define N_INPUTS (sizeof inputs / sizeof inputs[0])

static void path_of(char *out, size_t n, const char *file) { snprintf(out, n, "%s/%s", dir, file); }

static int run_ffmpeg(const char *input, const char *args, const char *file) {
    char cmd[1024], p[512];
    path_of(p, sizeof p, file);
    snprintf(cmd, sizeof cmd, "ffmpeg -hide_banner -loglevel error -nostdin -y %s %s '%s'", input, args, p);
    return system(cmd);
}

static void write_file(const char *file, const void *data, size_t n) {
    char p[512];
    path_of(p, sizeof p, file);
    FILE *f = fopen(p, "wb");
    if (!f) return;
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

static void put_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_le16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* A mono 16-bit 44.1 kHz WAV whose header claims 10 hours over 1 KB of data. */
static void write_lying_wav(const char *file) {
    uint8_t b[44 + 980] = {0};
    uint32_t data_bytes = 10u * 3600u * 44100u * 2u;
    memcpy(b, "RIFF", 4);
    put_le32(b + 4, 36 + data_bytes);
    memcpy(b + 8, "WAVEfmt ", 8);
    put_le32(b + 16, 16);
    put_le16(b + 20, 1);
    put_le16(b + 22, 1);
    put_le32(b + 24, 44100);
    put_le32(b + 28, 44100 * 2);
    put_le16(b + 32, 2);
    put_le16(b + 34, 16);
    memcpy(b + 36, "data", 4);
    put_le32(b + 40, data_bytes);
    for (size_t i = 44; i + 1 < sizeof b; i += 2) put_le16(b + i, (uint16_t)(int16_t)(((i / 2) % 100) * 300 - 15000));
    write_file(file, b, sizeof b);
}

static void remove_fixtures(void);

static void make_fixtures(void) {
    if (fixtures_ready) return;
    REQUIRE(mkdtemp(dir) != NULL);
    atexit(remove_fixtures);
    /* The bad fixtures make FFmpeg complain; the tests check our errors. */
    av_log_set_level(AV_LOG_FATAL);
    const char *tone = "-f lavfi -i sine=frequency=440:duration=1:sample_rate=44100";
    for (size_t i = 0; i < N_INPUTS; i++) REQUIRE(run_ffmpeg(tone, inputs[i].ffmpeg_args, inputs[i].file) == 0);
    REQUIRE(run_ffmpeg("-f lavfi -i sine=frequency=440:duration=5:sample_rate=44100", "-c:a pcm_s16le", "long.wav") == 0);
    REQUIRE(run_ffmpeg("-f lavfi -i sine=frequency=440:duration=5:sample_rate=44100", "-c:a libmp3lame", "long.mp3") == 0);
    REQUIRE(run_ffmpeg("-f lavfi -i color=c=red:s=32x32:d=1", "-c:v mpeg4", "video.mp4") == 0);
    REQUIRE(run_ffmpeg("-f lavfi -i color=c=red:s=32x32:d=1", "-frames:v 1", "image.png") == 0);
    REQUIRE(run_ffmpeg(tone, "-c:a pcm_s16le", "half.wav") == 0);
    char p[512];
    struct stat sb;
    path_of(p, sizeof p, "half.wav");
    REQUIRE(stat(p, &sb) == 0 && truncate(p, sb.st_size / 2) == 0);
    write_file("empty.wav", "", 0);
    const char *text = "This is not audio at all, just a text file with a .wav name.\n";
    write_file("text.wav", text, strlen(text));
    write_lying_wav("ten_hours.wav");
    /* FLAC bytes under a WAV name: the content decides. */
    REQUIRE(run_ffmpeg(tone, "-c:a flac -f flac", "flac_named.wav") == 0);
    fixtures_ready = true;
}

static void remove_fixtures(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

static int probe_file(const char *file, double max_s, vx_audio_info *info, vx_err *err) {
    char p[512];
    path_of(p, sizeof p, file);
    vx_err_clear(err);
    return vx_audio_probe(p, max_s, info, err);
}

/* Decodes a whole file; returns frames (or -1) and fills pcm (caller frees). */
static long decode_all(const char *file, int rate, int channels, size_t block, float **pcm_out, vx_err *err) {
    char p[512];
    path_of(p, sizeof p, file);
    vx_decoder *d = vx_decoder_open(p, rate, channels, err);
    if (!d) return -1;
    size_t ch = (size_t)vx_decoder_channels(d), total = 0, cap = 1 << 16;
    float *all = malloc(cap * ch * sizeof *all);
    float *tmp = malloc(block * ch * sizeof *tmp);
    long n;
    while ((n = vx_decoder_read(d, tmp, block, err)) > 0) {
        while (total + (size_t)n > cap) {
            cap *= 2;
            all = realloc(all, cap * ch * sizeof *all);
        }
        memcpy(all + total * ch, tmp, (size_t)n * ch * sizeof *tmp);
        total += (size_t)n;
    }
    free(tmp);
    vx_decoder_close(d);
    if (n < 0) {
        free(all);
        return -1;
    }
    if (pcm_out)
        *pcm_out = all;
    else
        free(all);
    return (long)total;
}

/* Sign changes of channel 0 per second: a 440 Hz sine gives ~880. */
static double crossings_per_second(const float *pcm, long frames, int channels, int rate) {
    long changes = 0;
    for (long i = 1; i < frames; i++)
        if ((pcm[(i - 1) * channels] < 0) != (pcm[i * channels] < 0)) changes++;
    return frames > 0 ? changes * (double)rate / (double)frames : 0;
}

static void test_probe_accepts_every_input_format(void) {
    make_fixtures();
    for (size_t i = 0; i < N_INPUTS; i++) {
        vx_audio_info info;
        vx_err err;
        int rc = probe_file(inputs[i].file, 60, &info, &err);
        if (rc != 0) fprintf(stderr, "  %s: %s %s\n", inputs[i].file, err.code, err.message);
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_STR(info.format, inputs[i].format);
        CHECK_EQ_STR(info.codec, inputs[i].codec);
        CHECK_EQ_INT(info.sample_rate, inputs[i].rate);
        CHECK_EQ_INT(info.channels, strcmp(inputs[i].format, "wav") == 0 ? 2 : 1);
        CHECK(fabs(info.duration_s - 1.0) < 0.06);
    }
}

static void test_probe_decides_format_by_content_not_name(void) {
    make_fixtures();
    vx_audio_info info;
    vx_err err;
    CHECK_EQ_INT(probe_file("flac_named.wav", 60, &info, &err), 0);
    CHECK_EQ_STR(info.format, "flac");
}

static void test_probe_rejects_empty_file(void) {
    make_fixtures();
    vx_err err;
    CHECK_EQ_INT(probe_file("empty.wav", 60, NULL, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_UNPROCESSABLE);
    CHECK_EQ_STR(err.code, "empty_file");
}

static void test_probe_rejects_text_file_named_wav_as_unsupported(void) {
    make_fixtures();
    vx_err err;
    CHECK_EQ_INT(probe_file("text.wav", 60, NULL, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_UNSUPPORTED);
    CHECK_EQ_STR(err.code, "unsupported_format");
}

static void test_probe_rejects_image_and_video_only_files(void) {
    make_fixtures();
    vx_err err;
    CHECK_EQ_INT(probe_file("image.png", 60, NULL, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_UNSUPPORTED);
    CHECK_EQ_STR(err.code, "unsupported_format");
    CHECK_EQ_INT(probe_file("video.mp4", 60, NULL, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_UNSUPPORTED);
    CHECK_EQ_STR(err.code, "unsupported_format");
}

static void test_probe_rejects_wav_cut_in_half_as_truncated(void) {
    make_fixtures();
    vx_err err;
    CHECK_EQ_INT(probe_file("half.wav", 60, NULL, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_UNPROCESSABLE);
    CHECK_EQ_STR(err.code, "truncated_audio");
}

static void test_probe_rejects_wav_header_claiming_ten_hours(void) {
    make_fixtures();
    vx_err err;
    /* Over the limit by the header alone: refused before decoding. */
    CHECK_EQ_INT(probe_file("ten_hours.wav", 3 * 3600, NULL, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_UNPROCESSABLE);
    CHECK_EQ_STR(err.code, "duration_exceeded");
    /* Without a limit the missing audio is what gives it away. */
    CHECK_EQ_INT(probe_file("ten_hours.wav", 0, NULL, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_UNPROCESSABLE);
    CHECK_EQ_STR(err.code, "truncated_audio");
}

static void test_probe_refuses_audio_longer_than_max_duration(void) {
    make_fixtures();
    vx_audio_info info;
    vx_err err;
    CHECK_EQ_INT(probe_file("long.wav", 2, NULL, &err), -1);
    CHECK_EQ_STR(err.code, "duration_exceeded");
    CHECK_EQ_INT(probe_file("long.mp3", 2, NULL, &err), -1);
    CHECK_EQ_STR(err.code, "duration_exceeded");
    CHECK_EQ_INT(probe_file("long.wav", 6, &info, &err), 0);
    CHECK(fabs(info.duration_s - 5.0) < 0.01);
}

static void test_decode_keeps_source_rate_and_channels(void) {
    make_fixtures();
    char p[512];
    vx_err err;
    path_of(p, sizeof p, "tone.wav");
    vx_decoder *d = vx_decoder_open(p, 0, 0, &err);
    REQUIRE(d);
    CHECK_EQ_INT(vx_decoder_rate(d), 44100);
    CHECK_EQ_INT(vx_decoder_channels(d), 2);
    CHECK_EQ_STR(vx_decoder_info(d)->format, "wav");
    CHECK(fabs(vx_decoder_info(d)->duration_s - 1.0) < 0.01);
    vx_decoder_close(d);
    float *pcm = NULL;
    long n = decode_all("tone.wav", 0, 0, 4096, &pcm, &err);
    CHECK_EQ_INT(n, 44100);
    REQUIRE(pcm);
    double zc = crossings_per_second(pcm, n, 2, 44100);
    CHECK(fabs(zc - 880) < 10);
    free(pcm);
}

static void test_decode_resamples_every_format_to_16k_mono_keeping_the_tone(void) {
    make_fixtures();
    for (size_t i = 0; i < N_INPUTS; i++) {
        vx_err err;
        float *pcm = NULL;
        long n = decode_all(inputs[i].file, 16000, 1, 4096, &pcm, &err);
        /* Exact but for rounding; FFmpeg trims ~3 ms more from Ogg Vorbis's start. */
        long slack = strcmp(inputs[i].codec, "vorbis") == 0 ? 80 : 2;
        if (labs(n - 16000) > slack) fprintf(stderr, "  %s: %ld frames\n", inputs[i].file, n);
        CHECK(labs(n - 16000) <= slack);
        if (!pcm) continue;
        double zc = crossings_per_second(pcm, n, 1, 16000);
        if (fabs(zc - 880) > 20) fprintf(stderr, "  %s: %.1f crossings/s\n", inputs[i].file, zc);
        CHECK(fabs(zc - 880) <= 20);
        float peak = 0;
        for (long k = 0; k < n; k++) peak = fmaxf(peak, fabsf(pcm[k]));
        CHECK(peak > 0.05f && peak <= 1.0f);
        free(pcm);
    }
}

static void test_decode_gives_same_samples_whatever_the_read_size(void) {
    make_fixtures();
    vx_err err;
    float *a = NULL, *b = NULL;
    long na = decode_all("tone.flac", 22050, 2, 4096, &a, &err);
    long nb = decode_all("tone.flac", 22050, 2, 7, &b, &err);
    CHECK_EQ_INT(na, nb);
    CHECK(labs(na - 22050) <= 2);
    if (a && b && na == nb) CHECK(memcmp(a, b, (size_t)na * 2 * sizeof *a) == 0);
    free(a);
    free(b);
}

static void test_decoder_open_reports_bad_inputs(void) {
    make_fixtures();
    char p[512];
    vx_err err;
    path_of(p, sizeof p, "text.wav");
    CHECK(vx_decoder_open(p, 0, 0, &err) == NULL);
    CHECK_EQ_STR(err.code, "unsupported_format");
    path_of(p, sizeof p, "empty.wav");
    CHECK(vx_decoder_open(p, 0, 0, &err) == NULL);
    CHECK_EQ_STR(err.code, "empty_file");
    path_of(p, sizeof p, "does_not_exist.wav");
    CHECK(vx_decoder_open(p, 0, 0, &err) == NULL);
    CHECK_EQ_STR(err.code, "read_failed");
}

/* Encodes the WAV tone at rate/channels, then probes and decodes it back. */
static void round_trip(const char *format, int rate, int channels) {
    char in[512], out[512];
    vx_err err;
    path_of(in, sizeof in, "tone.wav");
    snprintf(out, sizeof out, "%s/out_%d_%d.%s", dir, rate, channels, vx_audio_extension(format));
    vx_decoder *d = vx_decoder_open(in, rate, channels, &err);
    REQUIRE(d);
    vx_encoder *e = vx_encoder_open(out, format, rate, channels, &err);
    if (!e) fprintf(stderr, "  %s: %s %s\n", format, err.code, err.message);
    CHECK(e != NULL);
    float buf[1000 * 8];
    long n;
    int rc = 0;
    while (e && (n = vx_decoder_read(d, buf, 1000, &err)) > 0)
        if ((rc = vx_encoder_write(e, buf, (size_t)n, &err)) != 0) break;
    vx_decoder_close(d);
    if (!e) return;
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(vx_encoder_finish(e, &err), 0);
    vx_encoder_close(e);

    vx_audio_info info;
    rc = vx_audio_probe(out, 60, &info, &err);
    if (rc != 0) fprintf(stderr, "  %s round trip: %s %s\n", format, err.code, err.message);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(info.format, format);
    /* Opus always decodes at 48 kHz whatever rate it was encoded from. */
    int decoded_rate = strcmp(format, "opus") == 0 ? 48000 : rate;
    CHECK_EQ_INT(info.sample_rate, decoded_rate);
    CHECK_EQ_INT(info.channels, channels);
    if (fabs(info.duration_s - 1.0) > 0.01) fprintf(stderr, "  %s: %.4f s\n", format, info.duration_s);
    CHECK(fabs(info.duration_s - 1.0) <= 0.01);
    float *pcm = NULL;
    char name[128];
    snprintf(name, sizeof name, "out_%d_%d.%s", rate, channels, vx_audio_extension(format));
    long frames = decode_all(name, 0, 0, 4096, &pcm, &err);
    CHECK(labs(frames - decoded_rate) <= decoded_rate / 100);
    if (pcm) {
        double zc = crossings_per_second(pcm, frames, channels, decoded_rate);
        if (fabs(zc - 880) > 20) fprintf(stderr, "  %s: %.1f crossings/s\n", format, zc);
        CHECK(fabs(zc - 880) <= 20);
    }
    free(pcm);
}

static void test_encode_round_trips_every_output_format(void) {
    make_fixtures();
    round_trip("wav", 44100, 2);
    round_trip("wav", 8000, 1);
    round_trip("flac", 44100, 2);
    round_trip("flac", 8000, 1);
    round_trip("opus", 48000, 2);
    round_trip("opus", 16000, 1);
    round_trip("mp3", 44100, 2);
    round_trip("mp3", 22050, 1);
}

static void test_encoder_refuses_rates_and_layouts_the_codec_cannot_carry(void) {
    make_fixtures();
    char out[512];
    vx_err err;
    path_of(out, sizeof out, "refused.out");
    CHECK(vx_encoder_open(out, "opus", 44100, 2, &err) == NULL);
    CHECK_EQ_INT(err.status, VX_E_UNPROCESSABLE);
    CHECK_EQ_STR(err.code, "unsupported_sample_rate");
    CHECK(vx_encoder_open(out, "mp3", 96000, 2, &err) == NULL);
    CHECK_EQ_STR(err.code, "unsupported_sample_rate");
    CHECK(vx_encoder_open(out, "mp3", 44100, 6, &err) == NULL);
    CHECK_EQ_STR(err.code, "unsupported_channels");
    CHECK(vx_encoder_open(out, "wav", 44100, 0, &err) == NULL);
    CHECK_EQ_STR(err.code, "unsupported_channels");
    CHECK(vx_encoder_open(out, "aiff", 44100, 2, &err) == NULL);
    CHECK_EQ_STR(err.code, "unsupported_output_format");
    CHECK(access(out, F_OK) != 0);
}

static void test_encoder_closed_before_finish_leaves_no_file(void) {
    make_fixtures();
    char out[512];
    vx_err err;
    path_of(out, sizeof out, "partial.flac");
    vx_encoder *e = vx_encoder_open(out, "flac", 16000, 1, &err);
    REQUIRE(e);
    float pcm[8000];
    for (int i = 0; i < 8000; i++) pcm[i] = 0.5f * sinf((float)i * 0.1f);
    CHECK_EQ_INT(vx_encoder_write(e, pcm, 8000, &err), 0);
    CHECK(access(out, F_OK) == 0);
    vx_encoder_close(e);
    CHECK(access(out, F_OK) != 0);
}

static void test_encoder_writes_multichannel_flac_and_opus(void) {
    make_fixtures();
    static const char *const formats[] = {"flac", "opus", "wav"};
    for (size_t f = 0; f < 3; f++) {
        char out[512];
        vx_err err;
        snprintf(out, sizeof out, "%s/six.%s", dir, vx_audio_extension(formats[f]));
        vx_encoder *e = vx_encoder_open(out, formats[f], 48000, 6, &err);
        if (!e) fprintf(stderr, "  %s: %s %s\n", formats[f], err.code, err.message);
        REQUIRE(e);
        float pcm[480 * 6];
        for (int blk = 0; blk < 100; blk++) {
            for (int i = 0; i < 480; i++)
                for (int c = 0; c < 6; c++) pcm[i * 6 + c] = 0.3f * sinf((float)(blk * 480 + i) * 0.0576f);
            CHECK_EQ_INT(vx_encoder_write(e, pcm, 480, &err), 0);
        }
        CHECK_EQ_INT(vx_encoder_finish(e, &err), 0);
        vx_encoder_close(e);
        vx_audio_info info;
        CHECK_EQ_INT(vx_audio_probe(out, 60, &info, &err), 0);
        CHECK_EQ_INT(info.channels, 6);
        CHECK(fabs(info.duration_s - 1.0) < 0.03);
    }
}

static void test_format_tables_name_types_and_extensions(void) {
    CHECK(vx_audio_output_format_valid("opus"));
    CHECK(!vx_audio_output_format_valid("m4a"));
    CHECK(!vx_audio_output_format_valid(NULL));
    CHECK_EQ_STR(vx_audio_content_type("wav"), "audio/wav");
    CHECK_EQ_STR(vx_audio_content_type("flac"), "audio/flac");
    CHECK_EQ_STR(vx_audio_content_type("opus"), "audio/ogg");
    CHECK_EQ_STR(vx_audio_content_type("mp3"), "audio/mpeg");
    CHECK(vx_audio_content_type("exe") == NULL);
    CHECK_EQ_STR(vx_audio_extension("opus"), "opus");
    CHECK_EQ_STR(vx_audio_extension("m4a"), "m4a");
    size_t n = 0;
    while (vx_audio_input_formats[n]) n++;
    CHECK_EQ_INT(n, 7);
}

/* Streaming resampler (live streams): pieces of any size in, the same sound
 * out at the new rate, nothing lost at the end once drained. */
static void test_resampler_converts_pieces_and_drains_its_tail(void) {
    vx_err err = {0};
    CHECK(vx_resampler_new(16000, 500, &err) == NULL);
    CHECK_EQ_STR(err.code, "unsupported_sample_rate");
    vx_resampler *r = vx_resampler_new(22050, 16000, &err);
    REQUIRE(r);
    enum { IN = 22050 };
    static float in[IN], out[IN];
    for (int i = 0; i < IN; i++) in[i] = (float)(0.5 * sin(2 * M_PI * 440.0 * i / 22050.0));
    size_t total = 0;
    static const size_t pieces[] = {1, 7, 2205, 1000, 4096};
    size_t at = 0;
    for (int k = 0; at < IN; k++) {
        size_t n = pieces[k % 5] < IN - at ? pieces[k % 5] : IN - at;
        const float *o;
        size_t m;
        REQUIRE(vx_resampler_run(r, in + at, n, &o, &m, &err) == 0);
        REQUIRE(total + m <= IN);
        for (size_t i = 0; i < m; i++) out[total + i] = o[i];
        total += m;
        at += n;
    }
    const float *o;
    size_t m;
    REQUIRE(vx_resampler_run(r, NULL, 0, &o, &m, &err) == 0);
    for (size_t i = 0; i < m && total + i < IN; i++) out[total + i] = o[i];
    total += m;
    CHECK(total >= 15990 && total <= 16010);
    /* 440 Hz: ~880 zero crossings in the second */
    int crossings = 0;
    for (size_t i = 1; i < total && i < IN; i++) crossings += (out[i - 1] < 0) != (out[i] < 0);
    CHECK(crossings >= 870 && crossings <= 890);
    vx_resampler_free(r);
}

TEST_MAIN(TEST_ENTRY(test_resampler_converts_pieces_and_drains_its_tail),
          TEST_ENTRY(test_probe_accepts_every_input_format),
          TEST_ENTRY(test_probe_decides_format_by_content_not_name),
          TEST_ENTRY(test_probe_rejects_empty_file),
          TEST_ENTRY(test_probe_rejects_text_file_named_wav_as_unsupported),
          TEST_ENTRY(test_probe_rejects_image_and_video_only_files),
          TEST_ENTRY(test_probe_rejects_wav_cut_in_half_as_truncated),
          TEST_ENTRY(test_probe_rejects_wav_header_claiming_ten_hours),
          TEST_ENTRY(test_probe_refuses_audio_longer_than_max_duration),
          TEST_ENTRY(test_decode_keeps_source_rate_and_channels),
          TEST_ENTRY(test_decode_resamples_every_format_to_16k_mono_keeping_the_tone),
          TEST_ENTRY(test_decode_gives_same_samples_whatever_the_read_size),
          TEST_ENTRY(test_decoder_open_reports_bad_inputs),
          TEST_ENTRY(test_encode_round_trips_every_output_format),
          TEST_ENTRY(test_encoder_refuses_rates_and_layouts_the_codec_cannot_carry),
          TEST_ENTRY(test_encoder_closed_before_finish_leaves_no_file),
          TEST_ENTRY(test_encoder_writes_multichannel_flac_and_opus),
          TEST_ENTRY(test_format_tables_name_types_and_extensions))
