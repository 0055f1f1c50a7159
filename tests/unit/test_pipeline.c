/* test_pipeline.c - src/worker/pipeline.c: convert runs end to end for
 * several formats, progress is reported and monotonic, cancellation and
 * model/encoder failures stop the run and leave no output file. Fixtures
 * are made with the ffmpeg CLI in a mkdtemp directory removed at exit. */
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <libavutil/log.h>
#include "worker/pipeline.h"
#include "test.h"

static char dir[] = "/tmp/vx_test_pipeline_XXXXXX";
static bool fixtures_ready;

static void path_of(char *out, size_t n, const char *file) { snprintf(out, n, "%s/%s", dir, file); }

static int run_ffmpeg(const char *input, const char *args, const char *file) {
    char cmd[1024], p[512];
    path_of(p, sizeof p, file);
    snprintf(cmd, sizeof cmd, "ffmpeg -hide_banner -loglevel error -nostdin -y %s %s '%s'", input, args, p);
    return system(cmd);
}

static void remove_fixtures(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

static void make_fixtures(void) {
    if (fixtures_ready) return;
    REQUIRE(mkdtemp(dir) != NULL);
    atexit(remove_fixtures);
    av_log_set_level(AV_LOG_FATAL);
    const char *tone = "-f lavfi -i sine=frequency=440:duration=1:sample_rate=44100";
    REQUIRE(run_ffmpeg(tone, "-ac 2 -c:a pcm_s16le", "tone.wav") == 0);
    REQUIRE(run_ffmpeg(tone, "-c:a libmp3lame", "tone.mp3") == 0);
    REQUIRE(run_ffmpeg(tone, "-c:a libvorbis", "tone.ogg") == 0);
    REQUIRE(run_ffmpeg(tone, "-c:a aac", "tone.m4a") == 0);
    REQUIRE(run_ffmpeg(tone, "-c:a libopus", "tone.webm") == 0);
    REQUIRE(run_ffmpeg("-f lavfi -i sine=frequency=440:duration=30:sample_rate=44100", "-ac 2 -c:a pcm_s16le",
                       "long.wav") == 0);
    char p[512];
    path_of(p, sizeof p, "text.wav");
    FILE *f = fopen(p, "w");
    REQUIRE(f);
    fputs("not audio\n", f);
    fclose(f);
    fixtures_ready = true;
}

static bool exists(const char *path) { return access(path, F_OK) == 0; }

/* Runs convert on `input` with params JSON; output goes to dir/out_name. */
static int run_convert(const char *input, const char *params_text, const char *out_name, vx_progress_fn progress,
                       void *user, const atomic_bool *cancel, vx_pipeline_result *res, vx_err *err) {
    char in[512], out[512];
    path_of(in, sizeof in, input);
    path_of(out, sizeof out, out_name);
    json_t *given = params_text ? json_loads(params_text, 0, NULL) : NULL, *params = NULL;
    int rc = vx_catalog_validate_params(&vx_model_convert, given, &params, err);
    json_decref(given);
    if (rc != 0) return -2;
    vx_pipeline_request req = {.model = &vx_model_convert, .params = params, .input_path = in, .output_path = out,
                               .progress = progress, .progress_user = user, .cancel = cancel};
    rc = vx_pipeline_run(&req, res, err);
    json_decref(params);
    return rc;
}

static void test_convert_wav_to_flac_8k_mono(void) {
    make_fixtures();
    vx_pipeline_result res;
    vx_err err;
    char out[512];
    path_of(out, sizeof out, "a.flac");
    int rc = run_convert("tone.wav", "{\"format\":\"flac\",\"sample_rate\":8000,\"channels\":1}", "a.flac", NULL,
                         NULL, NULL, &res, &err);
    if (rc) fprintf(stderr, "  %s: %s\n", err.code, err.message);
    REQUIRE(rc == 0);
    CHECK(res.has_output);
    CHECK_EQ_STR(res.output_format, "flac");
    struct stat sb;
    REQUIRE(stat(out, &sb) == 0);
    CHECK_EQ_INT(res.output_bytes, sb.st_size);
    CHECK(res.output_bytes > 100);
    CHECK(fabs(res.input_duration_s - 1.0) < 0.01);
    CHECK_EQ_STR(json_string_value(json_object_get(res.result, "format")), "flac");
    CHECK_EQ_INT(json_integer_value(json_object_get(res.result, "sample_rate")), 8000);
    CHECK_EQ_INT(json_integer_value(json_object_get(res.result, "channels")), 1);
    CHECK(fabs(json_number_value(json_object_get(res.result, "duration_s")) - 1.0) < 0.01);
    vx_audio_info info;
    CHECK_EQ_INT(vx_audio_probe(out, 60, &info, &err), 0);
    CHECK_EQ_STR(info.format, "flac");
    CHECK_EQ_INT(info.sample_rate, 8000);
    CHECK_EQ_INT(info.channels, 1);
    CHECK(fabs(info.duration_s - 1.0) < 0.01);
    vx_pipeline_result_clear(&res);
    CHECK(res.result == NULL);
}

static void test_convert_to_mp3_and_opus_from_every_kind_of_input(void) {
    make_fixtures();
    static const char *const inputs[] = {"tone.wav", "tone.mp3", "tone.ogg", "tone.m4a", "tone.webm"};
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        for (int opus = 0; opus <= 1; opus++) {
            vx_pipeline_result res;
            vx_err err;
            char name[64], out[512];
            snprintf(name, sizeof name, "b%zu.%s", i, opus ? "opus" : "mp3");
            path_of(out, sizeof out, name);
            int rc = run_convert(inputs[i], opus ? "{\"format\":\"opus\"}" : "{\"format\":\"mp3\"}", name, NULL, NULL,
                                 NULL, &res, &err);
            if (rc) fprintf(stderr, "  %s -> %s: %s %s\n", inputs[i], name, err.code, err.message);
            CHECK_EQ_INT(rc, 0);
            if (rc) continue;
            /* Opus cannot carry 44.1 kHz: keeping the input rate means 48 kHz.
             * MP3 keeps it (the WebM input is Opus, hence 48 kHz). */
            int want_rate = opus || strstr(inputs[i], "webm") ? 48000 : 44100;
            CHECK_EQ_INT(json_integer_value(json_object_get(res.result, "sample_rate")), want_rate);
            vx_audio_info info;
            CHECK_EQ_INT(vx_audio_probe(out, 60, &info, &err), 0);
            CHECK_EQ_STR(info.format, opus ? "opus" : "mp3");
            CHECK_EQ_INT(info.sample_rate, want_rate);
            CHECK(fabs(info.duration_s - 1.0) < 0.03);
            CHECK(fabs(res.input_duration_s - 1.0) < 0.03);
            vx_pipeline_result_clear(&res);
        }
    }
}

typedef struct progress_log {
    double fractions[4096];
    int n;
    int cancel_after;           /* > 0: set *cancel at this call */
    atomic_bool *cancel;
} progress_log;

static void record_progress(void *user, double fraction) {
    progress_log *log = user;
    if (log->n < 4096) log->fractions[log->n] = fraction;
    log->n++;
    if (log->cancel_after > 0 && log->n == log->cancel_after) atomic_store(log->cancel, true);
}

static void test_progress_is_reported_monotonic_and_below_one(void) {
    make_fixtures();
    static progress_log log;
    memset(&log, 0, sizeof log);
    vx_pipeline_result res;
    vx_err err;
    REQUIRE(run_convert("long.wav", "{\"format\":\"flac\"}", "c.flac", record_progress, &log, NULL, &res, &err) == 0);
    CHECK(log.n >= 1);
    for (int i = 0; i < log.n && i < 4096; i++) {
        CHECK(log.fractions[i] > 0 && log.fractions[i] < 1);
        if (i > 0) CHECK(log.fractions[i] > log.fractions[i - 1]);
    }
    CHECK(fabs(res.input_duration_s - 30.0) < 0.01);
    vx_pipeline_result_clear(&res);
}

static void test_cancel_stops_with_canceled_and_leaves_no_output(void) {
    make_fixtures();
    static progress_log log;
    memset(&log, 0, sizeof log);
    atomic_bool cancel = false;
    log.cancel = &cancel;
    log.cancel_after = 1; /* the first progress report comes after the first block */
    vx_pipeline_result res;
    vx_err err;
    char out[512];
    path_of(out, sizeof out, "d.flac");
    CHECK_EQ_INT(run_convert("long.wav", "{\"format\":\"flac\"}", "d.flac", record_progress, &log, &cancel, &res, &err),
                 -1);
    CHECK_EQ_INT(err.status, VX_E_CANCELED);
    CHECK_EQ_STR(err.code, "canceled");
    CHECK_EQ_INT(log.n, 1);
    CHECK(!exists(out));
    CHECK(res.result == NULL && !res.has_output);
    /* Canceled before it starts: nothing is written at all. */
    CHECK_EQ_INT(run_convert("tone.wav", "{\"format\":\"mp3\"}", "d.mp3", NULL, NULL, &cancel, &res, &err), -1);
    CHECK_EQ_STR(err.code, "canceled");
    path_of(out, sizeof out, "d.mp3");
    CHECK(!exists(out));
}

static void test_bad_input_or_plan_refusal_leaves_no_output(void) {
    make_fixtures();
    vx_pipeline_result res;
    vx_err err;
    char out[512];
    CHECK_EQ_INT(run_convert("text.wav", NULL, "e.wav", NULL, NULL, NULL, &res, &err), -1);
    CHECK_EQ_STR(err.code, "unsupported_format");
    path_of(out, sizeof out, "e.wav");
    CHECK(!exists(out));
    CHECK_EQ_INT(run_convert("tone.wav", "{\"format\":\"opus\",\"sample_rate\":44100}", "e.opus", NULL, NULL, NULL,
                             &res, &err),
                 -1);
    CHECK_EQ_STR(err.code, "unsupported_sample_rate");
    path_of(out, sizeof out, "e.opus");
    CHECK(!exists(out));
}

/* A model that fails on demand, to prove the runner cleans up after it. */
typedef struct flaky {
    int process_calls;
} flaky;
static int flaky_fail_at_process;  /* fail on this process() call; 0 = never */
static bool flaky_fail_finish;
static const char *flaky_format = "wav";
static bool flaky_silent;          /* emit no audio, like an analysis model */

static int flaky_plan(const json_t *params, const vx_audio_info *in, vx_model_plan *plan, vx_err *err) {
    memset(plan, 0, sizeof *plan);
    plan->in_rate = plan->out_rate = 16000;
    plan->in_channels = plan->out_channels = 1;
    snprintf(plan->out_format, sizeof plan->out_format, "%s", flaky_format);
    return 0;
}
static void *flaky_open(const json_t *params, const vx_model_plan *plan, vx_err *err) { return calloc(1, sizeof(flaky)); }
static int flaky_process(void *state, const float *pcm, size_t frames, const vx_pcm_out *out, vx_err *err) {
    flaky *f = state;
    if (++f->process_calls == flaky_fail_at_process)
        return vx_err_set(err, VX_E_INTERNAL, "model_failed", "injected failure");
    if (flaky_silent) return 0;
    return out->write(out->user, pcm, frames, err);
}
static int flaky_finish(void *state, const vx_pcm_out *out, json_t **result, vx_err *err) {
    if (flaky_fail_finish) return vx_err_set(err, VX_E_INTERNAL, "model_failed", "injected finish failure");
    *result = json_pack("{s:i}", "calls", ((flaky *)state)->process_calls);
    return 0;
}
static void flaky_close(void *state) { free(state); }
static const vx_model flaky_model = {.name = "flaky", .kind = "analysis", .description = "test",
                                     .plan = flaky_plan, .open = flaky_open, .process = flaky_process,
                                     .finish = flaky_finish, .close = flaky_close};

static int run_flaky(const char *out_name, vx_pipeline_result *res, vx_err *err) {
    char in[512], out[512];
    path_of(in, sizeof in, "long.wav");
    path_of(out, sizeof out, out_name);
    json_t *params = json_object();
    vx_pipeline_request req = {.model = &flaky_model, .params = params, .input_path = in, .output_path = out};
    int rc = vx_pipeline_run(&req, res, err);
    json_decref(params);
    return rc;
}

static void test_model_failures_remove_the_partial_output(void) {
    make_fixtures();
    vx_pipeline_result res;
    vx_err err;
    char out[512];
    path_of(out, sizeof out, "f.wav");
    flaky_fail_at_process = 3;
    CHECK_EQ_INT(run_flaky("f.wav", &res, &err), -1);
    CHECK_EQ_STR(err.code, "model_failed");
    CHECK(!exists(out));
    flaky_fail_at_process = 0;
    flaky_fail_finish = true;
    CHECK_EQ_INT(run_flaky("f.wav", &res, &err), -1);
    CHECK(strstr(err.message, "finish") != NULL);
    CHECK(!exists(out));
    flaky_fail_finish = false;
    REQUIRE(run_flaky("f.wav", &res, &err) == 0);
    CHECK(exists(out));
    /* 30 s at 16 kHz in blocks of 4096 frames. */
    CHECK_EQ_INT(json_integer_value(json_object_get(res.result, "calls")), (480000 + 4095) / 4096);
    vx_pipeline_result_clear(&res);
}

static void test_model_without_audio_output_succeeds_without_a_file(void) {
    make_fixtures();
    vx_pipeline_result res;
    vx_err err;
    char out[512];
    path_of(out, sizeof out, "g.wav");
    flaky_format = "";
    flaky_fail_at_process = 0;
    flaky_silent = true;
    REQUIRE(run_flaky("g.wav", &res, &err) == 0);
    CHECK(!res.has_output);
    CHECK_EQ_INT(res.output_bytes, 0);
    CHECK(json_integer_value(json_object_get(res.result, "calls")) > 0);
    CHECK(fabs(res.input_duration_s - 30.0) < 0.01);
    CHECK(!exists(out));
    vx_pipeline_result_clear(&res);
    /* Audio from a model that planned no output file is a bug, not data to drop. */
    flaky_silent = false;
    CHECK_EQ_INT(run_flaky("g.wav", &res, &err), -1);
    CHECK_EQ_STR(err.code, "model_failed");
    CHECK(!exists(out));
    flaky_format = "wav";
}

TEST_MAIN(TEST_ENTRY(test_convert_wav_to_flac_8k_mono),
          TEST_ENTRY(test_convert_to_mp3_and_opus_from_every_kind_of_input),
          TEST_ENTRY(test_progress_is_reported_monotonic_and_below_one),
          TEST_ENTRY(test_cancel_stops_with_canceled_and_leaves_no_output),
          TEST_ENTRY(test_bad_input_or_plan_refusal_leaves_no_output),
          TEST_ENTRY(test_model_failures_remove_the_partial_output),
          TEST_ENTRY(test_model_without_audio_output_succeeds_without_a_file))
