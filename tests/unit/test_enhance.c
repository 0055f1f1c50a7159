/* test_enhance.c - the `enhance` model (src/models/enhance*.c) on synthetic
 * signals whose right answer is known: hum removal depth, a clean sine left
 * alone stage by stage, loudness to target under a true-peak ceiling (also
 * for a high-crest voice, by limiting), a clipped sine repaired, white noise
 * suppressed, knocks in a quiet room suppressed while syllables after pauses
 * are not, exact output length and the report's fields, linked channels,
 * and parameter validation. */
#include <ebur128.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "models/model.h"
#include "test.h"

#define RATE 16000

typedef struct capture {
    float *pcm;
    size_t frames, cap;
    int channels;
} capture;

static int capture_write(void *user, const float *pcm, size_t frames, vx_err *err) {
    capture *c = user;
    if (c->frames + frames > c->cap) {
        size_t cap = (c->frames + frames) * 2;
        float *p = realloc(c->pcm, cap * (size_t)c->channels * sizeof(float));
        if (!p) return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        c->pcm = p;
        c->cap = cap;
    }
    memcpy(c->pcm + c->frames * (size_t)c->channels, pcm, frames * (size_t)c->channels * sizeof(float));
    c->frames += frames;
    return 0;
}

/* Runs enhance over `in` (interleaved) in odd-sized blocks. Returns the
 * output (caller frees) and its frame count; *result gets the report. */
static float *run(const char *params_json, const float *in, size_t frames, int channels, size_t *out_frames,
                  json_t **result) {
    json_error_t je;
    json_t *given = params_json ? json_loads(params_json, 0, &je) : NULL, *params = NULL;
    vx_err err;
    float *ret = NULL;
    void *state = NULL;
    capture cap = {.channels = channels};
    vx_pcm_out out = {.write = capture_write, .user = &cap};
    vx_model_plan plan;
    vx_audio_info info = {.sample_rate = RATE, .channels = channels};
    if (result) *result = NULL;
    if (vx_catalog_validate_params(&vx_model_enhance, given, &params, &err) != 0) {
        fprintf(stderr, "  params refused: %s\n", err.message);
        goto out;
    }
    if (vx_model_enhance.plan(params, &info, &plan, &err) != 0) goto out;
    state = vx_model_enhance.open(params, &plan, &err);
    if (!state) goto out;
    for (size_t i = 0; i < frames;) {
        size_t n = frames - i < 3001 ? frames - i : 3001;
        if (vx_model_enhance.process(state, in + i * (size_t)channels, n, &out, &err) != 0) goto out;
        i += n;
    }
    json_t *doc = NULL;
    if (vx_model_enhance.finish(state, &out, &doc, &err) != 0) goto out;
    if (result)
        *result = doc;
    else
        json_decref(doc);
    ret = cap.pcm ? cap.pcm : malloc(sizeof(float)); /* empty output is still a success */
    cap.pcm = NULL;
    *out_frames = cap.frames;
out:
    if (!ret) fprintf(stderr, "  enhance failed: %s %s\n", err.code, err.message);
    if (state) vx_model_enhance.close(state);
    free(cap.pcm);
    json_decref(given);
    json_decref(params);
    return ret;
}

#define ONLY(extra)                                                                                       \
    "{\"dc_removal\":false,\"highpass_hz\":0,\"dehum\":\"off\",\"denoise\":false,\"declip\":false,"      \
    "\"normalize\":false,\"limiter\":false" extra "}"

static double energy(const float *x, size_t n) {
    double e = 0;
    for (size_t i = 0; i < n; i++) e += (double)x[i] * x[i];
    return e;
}

static unsigned seed = 7;
static double gauss(void) {
    double u = 0;
    for (int i = 0; i < 12; i++) {
        seed = seed * 1664525u + 1013904223u;
        u += (double)(seed >> 8) / 16777216.0;
    }
    return u - 6.0;
}

/* A vowel-like signal: harmonics of a gliding 150 Hz pitch in syllables
 * with pauses between them (pitch avoids staying on multiples of 50/60 Hz). */
static void speechlike(float *x, size_t n, double amp) {
    double ph = 0;
    for (size_t i = 0; i < n; i++) {
        double t = (double)i / RATE, f0 = 150 + 30 * sin(2 * M_PI * 0.7 * t);
        ph += 2 * M_PI * f0 / RATE;
        double env = fmax(0.0, sin(2 * M_PI * 1.6 * t)), v = 0;
        for (int k = 1; k <= 12; k++) v += sin(k * ph) / k;
        x[i] = (float)(amp * env * v);
    }
}

/* Tones at 470 and 1230 Hz (no multiple of 50 or 60 Hz) with a slow
 * level change, under 50 Hz hum and its harmonics. */
static void tones(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double t = (double)i / RATE, env = 0.6 + 0.4 * sin(2 * M_PI * 1.3 * t);
        x[i] = (float)(env * (0.08 * sin(2 * M_PI * 470 * t) + 0.05 * sin(2 * M_PI * 1230 * t)));
    }
}

/* Removal depth of 50 Hz hum under `clean`: hum energy over what is left
 * of it (output minus the clean part), dB. */
static double hum_removal_db(const float *clean, size_t n, json_t **doc) {
    float *in = malloc(n * sizeof *in);
    double hum_e = 0;
    for (size_t i = 0; i < n; i++) {
        double t = (double)i / RATE, h = 0;
        for (int k = 1; k <= 9; k++) h += (k % 2 ? 0.1 : 0.04) / k * sin(2 * M_PI * 50 * k * t + k);
        in[i] = clean[i] + (float)h;
        hum_e += h * h;
    }
    size_t m = 0;
    float *out = run(ONLY(",\"dehum\":\"auto\""), in, n, 1, &m, doc);
    double res = 0;
    for (size_t i = 0; out && i < m && m == n; i++) res += ((double)out[i] - clean[i]) * ((double)out[i] - clean[i]);
    free(out);
    free(in);
    return m == n && res > 0 ? 10 * log10(hum_e / res) : -1;
}

static void test_50hz_hum_with_harmonics_is_removed_by_30_db(void) {
    const size_t n = RATE * 5;
    float *clean = malloc(n * sizeof *clean);
    tones(clean, n);
    json_t *doc = NULL;
    double db = hum_removal_db(clean, n, &doc);
    if (db < 30) fprintf(stderr, "  hum removed by %.1f dB\n", db);
    CHECK(db >= 30);
    json_t *dehum = json_object_get(json_object_get(doc, "stages"), "dehum");
    CHECK(json_is_true(json_object_get(dehum, "acted")));
    CHECK_EQ_INT(json_integer_value(json_object_get(dehum, "mains_hz")), 50);
    CHECK(json_integer_value(json_object_get(dehum, "harmonics")) >= 5);
    json_decref(doc);
    free(clean);
}

/* A voice whose pitch glides across the hum harmonics is the hard case:
 * the canceller must still take most of the hum. */
static void test_hum_under_gliding_speechlike_voice_is_mostly_removed(void) {
    const size_t n = RATE * 5;
    float *clean = malloc(n * sizeof *clean);
    speechlike(clean, n, 0.08);
    json_t *doc = NULL;
    double db = hum_removal_db(clean, n, &doc);
    if (db < 15) fprintf(stderr, "  hum removed by %.1f dB\n", db);
    CHECK(db >= 15);
    json_decref(doc);
    free(clean);
}

static void test_60hz_hum_is_told_from_50hz(void) {
    const size_t n = RATE * 3;
    float *in = malloc(n * sizeof *in);
    speechlike(in, n, 0.05);
    for (size_t i = 0; i < n; i++)
        for (int k = 1; k <= 5; k++) in[i] += (float)(0.05 / k * sin(2 * M_PI * 60 * k * i / RATE));
    size_t m = 0;
    json_t *doc = NULL;
    float *out = run(ONLY(",\"dehum\":\"auto\""), in, n, 1, &m, &doc);
    REQUIRE(out);
    json_t *dehum = json_object_get(json_object_get(doc, "stages"), "dehum");
    CHECK_EQ_INT(json_integer_value(json_object_get(dehum, "mains_hz")), 60);
    json_decref(doc);
    free(out);
    free(in);
}

/* Error of `out` against `ref` relative to ref, dB (more negative = closer). */
static double error_db(const float *ref, const float *out, size_t from, size_t to) {
    double e = 0, r = 0;
    for (size_t i = from; i < to; i++) {
        e += ((double)out[i] - ref[i]) * ((double)out[i] - ref[i]);
        r += (double)ref[i] * ref[i];
    }
    return 10 * log10((e + 1e-30) / r);
}

static void test_clean_sine_passes_each_stage_untouched(void) {
    const size_t n = RATE * 3;
    float *in = malloc(n * sizeof *in);
    for (size_t i = 0; i < n; i++) in[i] = (float)(0.3 * sin(2 * M_PI * 440.0 * i / RATE));
    const char *stages[] = {
        ONLY(""),                              ONLY(",\"dc_removal\":true"),
        ONLY(",\"highpass_hz\":70"),           ONLY(",\"dehum\":\"auto\""),
        ONLY(",\"dehum\":\"50hz\""),             ONLY(",\"declip\":true"),
        ONLY(",\"limiter\":true"),
    };
    for (size_t s = 0; s < sizeof stages / sizeof stages[0]; s++) {
        size_t m = 0;
        float *out = run(stages[s], in, n, 1, &m, NULL);
        CHECK(out && m == n);
        if (!out || m != n) continue;
        double db = error_db(in, out, 0, n);
        if (db > -50) fprintf(stderr, "  %s: sine changed, error %.1f dB\n", stages[s], db);
        CHECK(db <= -50);
        free(out);
    }
    free(in);
}

static double loudness(const float *x, size_t n, int channels, double *true_peak_db) {
    ebur128_state *st = ebur128_init((unsigned)channels, RATE, EBUR128_MODE_I | EBUR128_MODE_TRUE_PEAK);
    ebur128_add_frames_float(st, x, n);
    double l = -HUGE_VAL, tp = 0, v;
    ebur128_loudness_global(st, &l);
    for (int c = 0; c < channels; c++)
        if (ebur128_true_peak(st, (unsigned)c, &v) == EBUR128_SUCCESS && v > tp) tp = v;
    *true_peak_db = 20 * log10(tp);
    ebur128_destroy(&st);
    return l;
}

static void scale_to_lufs(float *x, size_t n, double target) {
    double tp, l = loudness(x, n, 1, &tp), g = pow(10, (target - l) / 20);
    for (size_t i = 0; i < n; i++) x[i] = (float)(x[i] * g);
}

static void test_minus_30_lufs_comes_out_at_minus_16_under_the_ceiling(void) {
    const size_t n = RATE * 6;
    float *in = malloc(n * sizeof *in);
    tones(in, n);
    scale_to_lufs(in, n, -30);
    size_t m = 0;
    json_t *doc = NULL;
    float *out = run(NULL, in, n, 1, &m, &doc); /* every default */
    REQUIRE(out && m == n);
    double tp, l = loudness(out, m, 1, &tp);
    if (fabs(l + 16) > 0.5 || tp > -1) fprintf(stderr, "  out %.2f LUFS, %.2f dBTP\n", l, tp);
    CHECK(fabs(l + 16) <= 0.5);
    CHECK(tp <= -1.0);
    json_t *in_l = json_object_get(json_object_get(doc, "input"), "loudness_lufs");
    CHECK(fabs(json_number_value(in_l) + 30) < 0.3);
    json_t *out_l = json_object_get(json_object_get(doc, "processed"), "loudness_lufs");
    CHECK(fabs(json_number_value(out_l) - l) < 0.1);
    json_decref(doc);
    free(out);
    free(in);
}

static void test_peaky_input_is_limited_to_the_true_peak_ceiling(void) {
    /* Sparse clicks over a quiet tone: reaching -16 LUFS needs more than
     * the ceiling allows at the clicks, so the limiter must work. */
    const size_t n = RATE * 4;
    float *in = malloc(n * sizeof *in);
    for (size_t i = 0; i < n; i++) {
        in[i] = (float)(0.02 * sin(2 * M_PI * 330.0 * i / RATE));
        if (i % 8000 < 3) in[i] += 0.15f;
    }
    size_t m = 0;
    json_t *doc = NULL;
    float *out = run(ONLY(",\"normalize\":true,\"limiter\":true,\"max_limiting_db\":20"), in, n, 1, &m, &doc);
    REQUIRE(out && m == n);
    double tp, l = loudness(out, m, 1, &tp);
    if (tp > -1.0 || fabs(l + 16) > 0.5) fprintf(stderr, "  limited: %.2f LUFS, %.2f dBTP\n", l, tp);
    CHECK(tp <= -1.0);
    /* The gain makes up for the loudness the limiting takes (dry run). */
    CHECK(fabs(l + 16) <= 0.5);
    json_t *lim = json_object_get(json_object_get(doc, "stages"), "limiter");
    CHECK(json_is_true(json_object_get(lim, "acted")));
    json_decref(doc);
    free(out);
    /* With no limiting allowed the gain stops short instead, peaks intact. */
    out = run(ONLY(",\"normalize\":true,\"limiter\":true,\"max_limiting_db\":0"), in, n, 1, &m, &doc);
    REQUIRE(out);
    l = loudness(out, m, 1, &tp);
    CHECK(tp <= -1.0);
    CHECK(l < -17);
    json_decref(doc);
    free(out);
    free(in);
}

static void test_high_crest_voice_reaches_minus_16_lufs_by_limiting_or_keeps_its_peaks_by_default(void) {
    /* Glottal-pulse-like voice: a sharp pulse train through two resonances,
     * peak-to-loudness ratio over the 15 dB that -16 LUFS at -1 dBTP
     * allows: with max_limiting_db it is limited to reach the target; by
     * default the ceiling caps the gain and no peak is reshaped. */
    const size_t n = RATE * 6;
    float *in = calloc(n, sizeof *in);
    double y1 = 0, y2 = 0, z1 = 0, z2 = 0;
    for (size_t i = 0; i < n; i++) {
        double t = (double)i / RATE, env = fmax(0.0, sin(2 * M_PI * 1.1 * t));
        double x = i % 133 == 0 ? env : 0.0; /* ~120 Hz pulses */
        double y = x + 1.85 * y1 - 0.95 * y2;  /* resonance near 450 Hz */
        y2 = y1, y1 = y;
        double z = y + 1.2 * z1 - 0.9 * z2;    /* and near 1.7 kHz */
        z2 = z1, z1 = z;
        in[i] = (float)z;
    }
    scale_to_lufs(in, n, -30);
    double tp_in, l_in = loudness(in, n, 1, &tp_in);
    if (tp_in - l_in <= 16) fprintf(stderr, "  crest %.1f dB\n", tp_in - l_in);
    REQUIRE(tp_in - l_in > 16);
    size_t m = 0;
    json_t *doc = NULL;
    float *out = run("{\"max_limiting_db\":20}", in, n, 1, &m, &doc);
    REQUIRE(out && m == n);
    double tp, l = loudness(out, m, 1, &tp);
    if (fabs(l + 16) > 0.5 || tp > -1) fprintf(stderr, "  high crest: %.2f LUFS, %.2f dBTP\n", l, tp);
    CHECK(fabs(l + 16) <= 0.5);
    CHECK(tp <= -1.0);
    json_t *lim = json_object_get(json_object_get(doc, "stages"), "limiter");
    CHECK(json_is_true(json_object_get(lim, "acted")));
    json_decref(doc);
    free(out);
    doc = NULL;
    out = run(NULL, in, n, 1, &m, &doc); /* defaults: the ceiling caps the gain */
    REQUIRE(out && m == n);
    l = loudness(out, m, 1, &tp);
    CHECK(l < -16.5);
    CHECK(tp <= -1.0 && tp > -1.6);
    lim = json_object_get(json_object_get(doc, "stages"), "limiter");
    CHECK(!json_is_true(json_object_get(lim, "acted")));
    json_decref(doc);
    free(out);
    free(in);
}

static void test_clipped_sine_is_repaired_closer_to_the_original(void) {
    const size_t n = RATE * 2;
    float *orig = malloc(n * sizeof *orig), *clipped = malloc(n * sizeof *clipped);
    for (size_t i = 0; i < n; i++) {
        orig[i] = (float)(0.9 * sin(2 * M_PI * 310.0 * i / RATE));
        clipped[i] = fmaxf(-0.6f, fminf(0.6f, orig[i]));
    }
    size_t m = 0;
    json_t *doc = NULL;
    float *out = run(ONLY(",\"declip\":true"), clipped, n, 1, &m, &doc);
    REQUIRE(out && m == n);
    double before = error_db(orig, clipped, 0, n), after = error_db(orig, out, 0, n);
    if (!(after < before - 6)) fprintf(stderr, "  clipped %.1f dB, repaired %.1f dB\n", before, after);
    CHECK(after < before - 6);
    json_t *dc = json_object_get(json_object_get(doc, "stages"), "declip");
    CHECK(json_is_true(json_object_get(dc, "acted")));
    CHECK(json_integer_value(json_object_get(dc, "repaired_samples")) > 0);
    json_decref(doc);
    free(out);
    free(orig);
    free(clipped);
}

static void test_white_noise_alone_is_strongly_attenuated(void) {
    const size_t n = RATE * 4;
    float *in = malloc(n * sizeof *in);
    for (size_t i = 0; i < n; i++) in[i] = (float)(0.05 * gauss());
    size_t m = 0;
    json_t *doc = NULL;
    float *out = run(ONLY(",\"denoise\":true"), in, n, 1, &m, &doc);
    REQUIRE(out && m == n);
    /* After the first second the estimate has settled. */
    double db = 10 * log10(energy(in + RATE, n - RATE) / energy(out + RATE, n - RATE));
    if (db < 12) fprintf(stderr, "  white noise attenuated by %.1f dB\n", db);
    CHECK(db >= 12);
    json_t *dn = json_object_get(json_object_get(doc, "stages"), "denoise");
    CHECK(json_is_true(json_object_get(dn, "acted")));
    json_decref(doc);
    free(out);
    free(in);
}

/* Knocks over a quiet room: decaying bursts of noise (2 ms attack, 25 ms
 * decay, a resonance at 1.5 kHz) every second over a faint noise floor. */
static size_t knocks(float *x, size_t n, size_t *starts, size_t max_starts) {
    size_t count = 0;
    double y1 = 0, y2 = 0;
    for (size_t i = 0; i < n; i++) {
        size_t at = i % RATE;
        if (at == 0 && i >= RATE / 2 && count < max_starts) starts[count++] = i;
        double t = (double)at / RATE, env = i >= RATE / 2 ? (1 - exp(-t / 0.002)) * exp(-t / 0.025) : 0;
        double y = gauss() + 1.6 * y1 - 0.88 * y2; /* band-pass around 1.5 kHz */
        y2 = y1, y1 = y;
        x[i] = (float)(0.05 * env * y + 0.0005 * gauss());
    }
    return count;
}

static void test_knocks_in_a_quiet_room_are_suppressed_and_counted(void) {
    const size_t n = RATE * 7;
    float *in = malloc(n * sizeof *in);
    size_t starts[16], count = knocks(in, n, starts, 16);
    size_t m = 0;
    json_t *doc = NULL;
    float *out = run(ONLY(",\"denoise\":true"), in, n, 1, &m, &doc);
    REQUIRE(out && m == n);
    double e_in = 0, e_out = 0;
    for (size_t b = 0; b < count; b++) {
        size_t len = RATE / 10;
        if (starts[b] + len > n) len = n - starts[b];
        e_in += energy(in + starts[b], len);
        e_out += energy(out + starts[b], len);
    }
    double db = 10 * log10(e_in / e_out);
    json_t *dn = json_object_get(json_object_get(doc, "stages"), "denoise");
    json_int_t found = json_integer_value(json_object_get(dn, "bursts"));
    if (db < 8 || found < (json_int_t)count - 1 || found > (json_int_t)count) fprintf(stderr, "  knocks: %.1f dB down, %d of %zu found\n", db, (int)found, count);
    CHECK(db >= 8);
    CHECK(found >= (json_int_t)count - 1 && found <= (json_int_t)count);
    json_decref(doc);
    free(out);
    /* Without the suppressor's evidence (denoise off) they pass. */
    out = run(ONLY(""), in, n, 1, &m, NULL);
    REQUIRE(out && m == n);
    CHECK(fabs(10 * log10(energy(in, n) / energy(out, n))) < 0.1);
    free(out);
    free(in);
}

static void test_syllables_after_pauses_are_not_taken_for_bursts(void) {
    const size_t n = RATE * 4;
    float *in = malloc(n * sizeof *in);
    speechlike(in, n, 0.1);
    for (size_t i = 0; i < n; i++) in[i] += (float)(0.0005 * gauss());
    size_t m = 0;
    json_t *doc = NULL;
    float *out = run(ONLY(",\"denoise\":true"), in, n, 1, &m, &doc);
    REQUIRE(out && m == n);
    json_t *dn = json_object_get(json_object_get(doc, "stages"), "denoise");
    CHECK(json_integer_value(json_object_get(dn, "bursts")) == 0);
    /* and the voice comes through: under 1 dB of its energy is lost */
    double db = 10 * log10(energy(in, n) / energy(out, n));
    if (db > 1) fprintf(stderr, "  syllables lost %.2f dB\n", db);
    CHECK(db <= 1);
    json_decref(doc);
    free(out);
    free(in);
}

static void test_noisy_speechlike_input_gets_cleaner(void) {
    const size_t n = RATE * 5;
    float *clean = malloc(n * sizeof *clean), *in = malloc(n * sizeof *in);
    speechlike(clean, n, 0.1);
    for (size_t i = 0; i < n; i++) in[i] = clean[i] + (float)(0.02 * gauss());
    size_t m = 0;
    json_t *doc = NULL;
    float *out = run(ONLY(",\"denoise\":true"), in, n, 1, &m, &doc);
    REQUIRE(out && m == n);
    double before = error_db(clean, in, RATE, n), after = error_db(clean, out, RATE, n);
    if (!(after < before - 3)) fprintf(stderr, "  noisy %.1f dB, cleaned %.1f dB\n", before, after);
    CHECK(after < before - 3);
    double snr = json_number_value(json_object_get(json_object_get(doc, "input"), "snr_db"));
    CHECK(snr > 5 && snr < 30);
    json_decref(doc);
    free(out);
    free(clean);
    free(in);
}

static void test_stereo_output_has_input_length_linked_channels_and_full_report(void) {
    const size_t n = 12345; /* not a multiple of any hop */
    float *in = malloc(n * 2 * sizeof *in);
    for (size_t i = 0; i < n; i++) {
        float v = (float)(0.1 * sin(2 * M_PI * 500.0 * i / RATE) + 0.01 * gauss());
        in[2 * i] = v;
        in[2 * i + 1] = v;
    }
    size_t m = 0;
    json_t *doc = NULL;
    float *out = run(NULL, in, n, 2, &m, &doc);
    REQUIRE(out && doc);
    CHECK_EQ_INT(m, n);
    double diff = 0;
    for (size_t i = 0; i < m; i++) diff = fmax(diff, fabs(out[2 * i] - out[2 * i + 1]));
    CHECK(diff == 0);
    CHECK_EQ_INT(json_integer_value(json_object_get(doc, "channels")), 2);
    CHECK_EQ_INT(json_integer_value(json_object_get(doc, "sample_rate")), RATE);
    CHECK(json_is_number(json_object_get(json_object_get(doc, "input"), "loudness_lufs")));
    CHECK(json_object_get(json_object_get(doc, "input"), "snr_db") != NULL);
    CHECK(json_is_number(json_object_get(json_object_get(doc, "processed"), "loudness_lufs")));
    CHECK(json_is_number(json_object_get(json_object_get(doc, "processed"), "true_peak_dbtp")));
    const char *names[] = {"dc_removal", "highpass", "dehum", "denoise", "declip", "loudness", "limiter"};
    json_t *stages = json_object_get(doc, "stages");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        json_t *s = json_object_get(stages, names[i]);
        CHECK(json_is_boolean(json_object_get(s, "enabled")) && json_is_boolean(json_object_get(s, "acted")));
    }
    CHECK(json_is_array(json_object_get(doc, "stages_acted")));
    json_decref(doc);
    free(out);
    free(in);
}

static void test_empty_input_gives_empty_output_and_a_report(void) {
    size_t m = 99;
    json_t *doc = NULL;
    float dummy = 0;
    float *out = run(NULL, &dummy, 0, 1, &m, &doc);
    CHECK(m == 0);
    CHECK(doc != NULL);
    CHECK(json_is_null(json_object_get(json_object_get(doc, "input"), "loudness_lufs")));
    json_decref(doc);
    free(out);
}

static void expect_refused(const char *text, const char *code) {
    json_error_t je;
    json_t *given = json_loads(text, 0, &je), *out = NULL;
    vx_err err;
    vx_err_clear(&err);
    CHECK_EQ_INT(vx_catalog_validate_params(&vx_model_enhance, given, &out, &err), -1);
    CHECK_EQ_STR(err.code, code);
    json_decref(given);
    json_decref(out);
}

static void test_params_are_validated_through_the_catalog(void) {
    CHECK(vx_catalog_find("enhance") == &vx_model_enhance);
    json_t *out = NULL;
    vx_err err;
    REQUIRE(vx_catalog_validate_params(&vx_model_enhance, NULL, &out, &err) == 0);
    CHECK(json_number_value(json_object_get(out, "highpass_hz")) == 70);
    CHECK(json_number_value(json_object_get(out, "target_lufs")) == -16);
    CHECK(json_number_value(json_object_get(out, "true_peak_dbtp")) == -1);
    CHECK_EQ_STR(json_string_value(json_object_get(out, "dehum")), "auto");
    CHECK(json_is_true(json_object_get(out, "denoise")));
    json_decref(out);
    expect_refused("{\"strenght\":1}", "unknown_param");
    expect_refused("{\"strength\":9}", "param_out_of_range");
    expect_refused("{\"strength\":\"high\"}", "invalid_param");
    expect_refused("{\"dehum\":\"55\"}", "param_out_of_range");
    expect_refused("{\"target_lufs\":0}", "param_out_of_range");
    expect_refused("{\"denoise\":1}", "invalid_param");
    /* The plan refuses what the codecs cannot carry. */
    json_t *given = json_pack("{s:s, s:i}", "format", "opus", "sample_rate", 44100);
    REQUIRE(vx_catalog_validate_params(&vx_model_enhance, given, &out, &err) == 0);
    vx_model_plan plan;
    vx_audio_info info = {.sample_rate = RATE, .channels = 1};
    vx_err_clear(&err);
    CHECK_EQ_INT(vx_model_enhance.plan(out, &info, &plan, &err), -1);
    CHECK_EQ_STR(err.code, "unsupported_sample_rate");
    json_decref(out);
    json_decref(given);
}

TEST_MAIN(TEST_ENTRY(test_50hz_hum_with_harmonics_is_removed_by_30_db), TEST_ENTRY(test_60hz_hum_is_told_from_50hz),
          TEST_ENTRY(test_hum_under_gliding_speechlike_voice_is_mostly_removed),
          TEST_ENTRY(test_clean_sine_passes_each_stage_untouched),
          TEST_ENTRY(test_minus_30_lufs_comes_out_at_minus_16_under_the_ceiling),
          TEST_ENTRY(test_peaky_input_is_limited_to_the_true_peak_ceiling),
          TEST_ENTRY(test_high_crest_voice_reaches_minus_16_lufs_by_limiting_or_keeps_its_peaks_by_default),
          TEST_ENTRY(test_clipped_sine_is_repaired_closer_to_the_original),
          TEST_ENTRY(test_white_noise_alone_is_strongly_attenuated),
          TEST_ENTRY(test_knocks_in_a_quiet_room_are_suppressed_and_counted),
          TEST_ENTRY(test_syllables_after_pauses_are_not_taken_for_bursts),
          TEST_ENTRY(test_noisy_speechlike_input_gets_cleaner),
          TEST_ENTRY(test_stereo_output_has_input_length_linked_channels_and_full_report),
          TEST_ENTRY(test_empty_input_gives_empty_output_and_a_report),
          TEST_ENTRY(test_params_are_validated_through_the_catalog))
