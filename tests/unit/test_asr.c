/* test_asr.c - src/models/asr.c and asr_later.c: the decoder pool (reuse,
 * bound, the decoder long holds leave to brief ones, waiting, two threads at
 * once), word timing guarantees, streaming feed with partial hypotheses,
 * background decodes (same result, order, drop), and load errors. Speech is synthesized with espeak-ng (the
 * en-us+f2 voice, which PocketSphinx recognises well) in a mkdtemp dir. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
#include "models/asr.h"
#include "test.h"

static char dir[] = "/tmp/vx_test_asr_XXXXXX";
static int16_t *speech;
static size_t speech_n;
static const char *const SPOKEN = "one two three four five six seven eight nine ten";

static void cleanup(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    free(speech);
    vx_asr_shared_free();
}

/* 16 kHz mono s16 samples of SPOKEN, made once. */
static bool load_speech(void) {
    if (speech) return true;
    if (!mkdtemp(dir)) return false;
    atexit(cleanup);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "espeak-ng -v en-us+f2 -s 140 -w '%s/s.wav' '%s' && ffmpeg -hide_banner -loglevel error -nostdin -y "
             "-i '%s/s.wav' -ar 16000 -ac 1 -f s16le '%s/s.raw'",
             dir, SPOKEN, dir, dir);
    if (system(cmd) != 0) return false;
    snprintf(cmd, sizeof cmd, "%s/s.raw", dir);
    FILE *f = fopen(cmd, "rb");
    if (!f) return false;
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    speech = malloc((size_t)bytes);
    speech_n = speech ? fread(speech, 2, (size_t)bytes / 2, f) : 0;
    fclose(f);
    return speech_n > 16000;
}

/* How many of the spoken words appear in `text` (each counted once). */
static int words_found(const char *text) {
    char ref[128], *save = NULL;
    int n = 0;
    snprintf(ref, sizeof ref, "%s", SPOKEN);
    for (char *w = strtok_r(ref, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        char pat[40];
        snprintf(pat, sizeof pat, " %s ", w);
        char hay[1024];
        snprintf(hay, sizeof hay, " %s ", text);
        if (strstr(hay, pat)) n++;
    }
    return n;
}

static vx_asr_model *new_model(int max) {
    vx_asr_options o;
    vx_asr_options_default(&o);
    o.max_decoders = max;
    vx_err err = {0};
    vx_asr_model *m = vx_asr_model_new(&o, &err);
    if (!m) fprintf(stderr, "  model: %s (%s)\n", err.message, err.code);
    return m;
}

static void test_second_acquire_reuses_the_released_decoder(void) {
    vx_asr_model *m = new_model(2);
    REQUIRE(m);
    vx_err err = {0};
    vx_asr_decoder *a = vx_asr_acquire(m, 0, &err);
    REQUIRE(a);
    vx_asr_release(a);
    vx_asr_decoder *b = vx_asr_acquire(m, 0, &err);
    CHECK(b == a);
    vx_asr_pool_stats st;
    vx_asr_pool_stats_get(m, &st);
    CHECK_EQ_INT(st.creations, 1);
    CHECK_EQ_INT(st.in_use, 1);
    vx_asr_release(b);
    vx_asr_pool_stats_get(m, &st);
    CHECK_EQ_INT(st.in_use, 0);
    CHECK_EQ_INT(st.created, 1);
    vx_asr_model_free(m);
}

static void test_pool_never_holds_more_than_its_bound(void) {
    vx_asr_model *m = new_model(3);
    REQUIRE(m);
    vx_err err = {0};
    vx_asr_decoder *a = vx_asr_acquire(m, 0, &err), *b = vx_asr_acquire(m, 0, &err);
    REQUIRE(a && b);
    CHECK(a != b);
    /* the third decoder is kept for brief holds */
    CHECK(vx_asr_acquire(m, 0, &err) == NULL);
    CHECK_EQ_STR(err.code, "asr_busy");
    CHECK_EQ_INT(err.status, VX_E_UNAVAILABLE);
    vx_err_clear(&err);
    CHECK(vx_asr_acquire(m, 30, &err) == NULL); /* a bounded wait runs out too */
    CHECK_EQ_STR(err.code, "asr_busy");
    vx_err_clear(&err);
    vx_asr_decoder *brief = vx_asr_acquire_brief(m, &err);
    REQUIRE(brief);
    CHECK(brief != a && brief != b);
    vx_asr_pool_stats st;
    vx_asr_pool_stats_get(m, &st);
    CHECK_EQ_INT(st.created, 3);
    CHECK_EQ_INT(st.max, 3);
    CHECK_EQ_INT(st.in_use, 3);
    CHECK_EQ_INT(st.held, 2);
    CHECK_EQ_INT(st.reserved, 1);
    vx_asr_release(brief);
    CHECK(vx_asr_acquire(m, 0, &err) == NULL); /* idle, but reserved */
    vx_err_clear(&err);
    vx_asr_release(b);
    vx_asr_decoder *c = vx_asr_acquire(m, 0, &err);
    CHECK(c == b || c == brief);
    vx_asr_release(a);
    vx_asr_release(c);
    vx_asr_pool_stats_get(m, &st);
    CHECK_EQ_INT(st.in_use, 0);
    CHECK_EQ_INT(st.held, 0);
    vx_asr_model_free(m);
}

static void test_a_pool_of_one_has_no_reserve_and_no_background(void) {
    vx_asr_model *m = new_model(1);
    REQUIRE(m);
    vx_err err = {0};
    vx_asr_decoder *a = vx_asr_acquire(m, 0, &err);
    CHECK(a != NULL);
    vx_asr_release(a);
    CHECK(!vx_asr_background_ok(m));
    int16_t pcm[160] = {0};
    CHECK(vx_asr_decode_later(m, pcm, 160, 0, NULL, NULL, &err) == NULL);
    CHECK_EQ_STR(err.code, "asr_no_background");
    vx_asr_model_free(m);
}

typedef struct waiter {
    vx_asr_model *m;
    vx_asr_decoder *got;
} waiter;

static void *wait_for_decoder(void *arg) {
    waiter *w = arg;
    vx_err err = {0};
    w->got = vx_asr_acquire(w->m, -1, &err);
    return NULL;
}

static void test_waiting_acquire_gets_the_decoder_another_thread_releases(void) {
    vx_asr_model *m = new_model(1);
    REQUIRE(m);
    vx_err err = {0};
    vx_asr_decoder *a = vx_asr_acquire(m, 0, &err);
    REQUIRE(a);
    waiter w = {.m = m};
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, wait_for_decoder, &w) == 0);
    vx_asr_release(a); /* before or after the thread waits: it must end up with it */
    pthread_join(t, NULL);
    CHECK(w.got == a);
    vx_asr_release(w.got);
    vx_asr_model_free(m);
}

typedef struct decode_job {
    vx_asr_model *m;
    char text[512];
    int rounds;
    bool ok;
} decode_job;

static void *decode_thread(void *arg) {
    decode_job *j = arg;
    j->ok = true;
    for (int r = 0; r < j->rounds; r++) {
        vx_err err = {0};
        vx_asr_decoder *d = vx_asr_acquire(j->m, -1, &err);
        vx_asr_utterance u;
        if (!d || vx_asr_decode_s16(d, speech, speech_n, 0, &u, &err) != 0) {
            j->ok = false;
            vx_asr_release(d);
            return NULL;
        }
        snprintf(j->text, sizeof j->text, "%s", u.text);
        vx_asr_utterance_clear(&u);
        vx_asr_release(d);
    }
    return NULL;
}

static void test_two_threads_decode_at_once_with_the_same_result(void) {
    REQUIRE(load_speech());
    vx_asr_model *m = new_model(3); /* two long holds, one reserved */
    REQUIRE(m);
    decode_job solo = {.m = m, .rounds = 1};
    decode_thread(&solo);
    REQUIRE(solo.ok);
    decode_job j1 = {.m = m, .rounds = 2}, j2 = {.m = m, .rounds = 2};
    pthread_t t1, t2;
    REQUIRE(pthread_create(&t1, NULL, decode_thread, &j1) == 0);
    REQUIRE(pthread_create(&t2, NULL, decode_thread, &j2) == 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CHECK(j1.ok && j2.ok);
    CHECK_EQ_STR(j1.text, solo.text);
    CHECK_EQ_STR(j2.text, solo.text);
    CHECK(words_found(solo.text) >= 7);
    vx_asr_pool_stats st;
    vx_asr_pool_stats_get(m, &st);
    CHECK(st.creations <= 2);
    CHECK_EQ_INT(st.in_use, 0);
    vx_asr_model_free(m);
}

static void test_word_times_are_ordered_and_inside_the_utterance(void) {
    REQUIRE(load_speech());
    vx_asr_model *m = new_model(1);
    REQUIRE(m);
    vx_err err = {0};
    vx_asr_decoder *d = vx_asr_acquire(m, 0, &err);
    REQUIRE(d);
    vx_asr_utterance u;
    const double offset = 125.5, len = (double)speech_n / 16000;
    REQUIRE(vx_asr_decode_s16(d, speech, speech_n, offset, &u, &err) == 0);
    CHECK(u.n_words >= 7);
    CHECK(u.start == offset);
    CHECK(u.end > offset + len - 0.001 && u.end < offset + len + 0.001);
    double prev = offset;
    for (size_t i = 0; i < u.n_words; i++) {
        const vx_asr_word *w = &u.words[i];
        CHECK(w->start >= prev);
        CHECK(w->start <= w->end);
        CHECK(w->end <= offset + len + 1e-9);
        CHECK(w->confidence >= 0 && w->confidence <= 1);
        CHECK(strchr(w->word, '(') == NULL && w->word[0] != '<');
        prev = w->start;
    }
    vx_asr_utterance_clear(&u);
    vx_asr_release(d);
    vx_asr_model_free(m);
}

/* Feeds the speech live in 100 ms blocks; counts blocks with a partial. */
static int feed_live(vx_asr_decoder *d, double offset, vx_asr_utterance *u) {
    vx_err err = {0};
    int partials = 0;
    float block[1600];
    if (vx_asr_begin(d, offset, &err) != 0) return -1;
    for (size_t at = 0; at < speech_n; at += 1600) {
        size_t n = speech_n - at < 1600 ? speech_n - at : 1600;
        for (size_t i = 0; i < n; i++) block[i] = speech[at + i] / 32768.0f;
        if (vx_asr_feed_f32(d, block, n, &err) != 0) return -1;
        if (vx_asr_partial(d)[0]) partials++;
    }
    return vx_asr_end(d, u, &err) == 0 ? partials : -1;
}

static void test_streaming_feed_gives_partials_and_a_final_result(void) {
    REQUIRE(load_speech());
    vx_asr_model *m = new_model(1);
    REQUIRE(m);
    vx_err err = {0};
    vx_asr_decoder *d = vx_asr_acquire(m, 0, &err);
    REQUIRE(d);
    CHECK_EQ_STR(vx_asr_partial(d), ""); /* no utterance open */
    REQUIRE(vx_asr_begin(d, 0, &err) == 0);
    CHECK(vx_asr_begin(d, 0, &err) != 0); /* one utterance at a time */
    vx_asr_release(d); /* with an utterance open: dropped, decoder reusable */
    d = vx_asr_acquire(m, 0, &err);
    REQUIRE(d);
    vx_asr_utterance u;
    /* A new decoder starts from the model's initial cepstral mean, which
     * suits this synthetic voice poorly; live decoding adapts it, and the
     * decoder keeps it for its next utterances. */
    CHECK(feed_live(d, 2.0, &u) > 0);
    CHECK(u.n_words > 0 && u.words[0].start >= 2.0);
    CHECK(vx_asr_fed_seconds(d) > 1.0);
    vx_asr_utterance_clear(&u);
    CHECK(feed_live(d, 10.0, &u) > 0);
    if (words_found(u.text) < 7) fprintf(stderr, "  live: \"%s\"\n", u.text);
    CHECK(words_found(u.text) >= 7);
    CHECK(u.start == 10.0 && u.n_words > 0 && u.words[0].start >= 10.0);
    vx_asr_utterance_clear(&u);
    CHECK(vx_asr_feed_s16(d, speech, 10, &err) != 0); /* outside an utterance */
    CHECK(vx_asr_end(d, &u, &err) != 0);
    vx_asr_release(d);
    vx_asr_model_free(m);
}

static void test_a_decoders_history_never_changes_what_it_decodes_next(void) {
    REQUIRE(load_speech());
    vx_asr_model *m = new_model(1);
    REQUIRE(m);
    vx_err err = {0};
    vx_asr_decoder *d = vx_asr_acquire(m, 0, &err);
    REQUIRE(d);
    vx_asr_utterance whole, again, live1, live2;
    REQUIRE(vx_asr_decode_s16(d, speech, speech_n, 0, &whole, &err) == 0);
    REQUIRE(feed_live(d, 0, &live1) >= 0); /* live passes adapt the running normalisation */
    REQUIRE(vx_asr_decode_s16(d, speech, speech_n, 0, &again, &err) == 0);
    CHECK_EQ_STR(again.text, whole.text);
    vx_asr_release(d);
    /* the same decoder for a new user starts over: the same live result */
    d = vx_asr_acquire(m, 0, &err);
    REQUIRE(d);
    REQUIRE(feed_live(d, 0, &live2) >= 0);
    CHECK_EQ_STR(live2.text, live1.text);
    vx_asr_pool_stats st;
    vx_asr_pool_stats_get(m, &st);
    CHECK_EQ_INT(st.creations, 1);
    vx_asr_utterance_clear(&whole);
    vx_asr_utterance_clear(&again);
    vx_asr_utterance_clear(&live1);
    vx_asr_utterance_clear(&live2);
    vx_asr_release(d);
    vx_asr_model_free(m);
}

static void test_silence_decodes_to_no_words(void) {
    vx_asr_model *m = new_model(1);
    REQUIRE(m);
    vx_err err = {0};
    vx_asr_decoder *d = vx_asr_acquire(m, 0, &err);
    REQUIRE(d);
    int16_t *zero = calloc(16000, sizeof *zero);
    REQUIRE(zero);
    vx_asr_utterance u;
    CHECK(vx_asr_decode_s16(d, zero, 16000, 0, &u, &err) == 0);
    CHECK_EQ_INT(u.n_words, 0);
    CHECK_EQ_STR(u.text, "");
    vx_asr_utterance_clear(&u);
    CHECK(vx_asr_decode_s16(d, zero, 0, 0, &u, &err) == 0); /* empty input is not an error */
    vx_asr_utterance_clear(&u);
    free(zero);
    vx_asr_release(d);
    vx_asr_model_free(m);
}

static void test_missing_model_files_are_asr_unavailable(void) {
    vx_asr_options o;
    vx_asr_options_default(&o);
    o.model_dir = "/nonexistent/voxd-model";
    vx_err err = {0};
    CHECK(vx_asr_model_new(&o, &err) == NULL);
    CHECK_EQ_STR(err.code, "asr_unavailable");
    CHECK_EQ_INT(err.status, VX_E_UNAVAILABLE);
    CHECK(strstr(err.message, "/nonexistent") == NULL); /* no paths in messages */
    vx_asr_options_default(&o);
    o.engine = "whisper";
    CHECK(vx_asr_model_new(&o, &err) == NULL);
    CHECK_EQ_STR(err.code, "invalid_param");
    vx_asr_options_default(&o);
    o.max_decoders = 0;
    CHECK(vx_asr_model_new(&o, &err) == NULL);
}

/* ---- background decodes ---- */

typedef struct ready_count {
    pthread_mutex_t mu;
    int n;
} ready_count;

static void count_ready(void *user) {
    ready_count *r = user;
    pthread_mutex_lock(&r->mu);
    r->n++;
    pthread_mutex_unlock(&r->mu);
}

static int ready_seen(ready_count *r) {
    pthread_mutex_lock(&r->mu);
    int n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static void test_background_decodes_equal_decodes_in_place_in_order(void) {
    REQUIRE(load_speech());
    vx_asr_model *m = new_model(2);
    REQUIRE(m);
    vx_err err = {0};
    /* the stream's own long hold: the reserve is what the tasks use */
    vx_asr_decoder *held = vx_asr_acquire(m, 0, &err);
    REQUIRE(held);
    vx_asr_utterance want = {0};
    REQUIRE(vx_asr_decode_s16(held, speech, speech_n, 2.5, &want, &err) == 0);
    ready_count rc = {.mu = PTHREAD_MUTEX_INITIALIZER};
    vx_asr_task *t[3];
    for (int i = 0; i < 3; i++) {
        t[i] = vx_asr_decode_later(m, speech, speech_n, 2.5 + 10.0 * i, count_ready, &rc, &err);
        REQUIRE(t[i]);
    }
    for (int i = 0; i < 3; i++) {
        vx_asr_utterance u = {0};
        REQUIRE(vx_asr_task_take(t[i], &u, &err) == 0);
        CHECK_EQ_STR(u.text, want.text);
        CHECK_EQ_INT((long long)u.n_words, (long long)want.n_words);
        for (size_t w = 0; w < u.n_words && w < want.n_words; w++) {
            CHECK_EQ_STR(u.words[w].word, want.words[w].word);
            CHECK(fabs(u.words[w].start - (want.words[w].start + 10.0 * i)) < 1e-9);
            CHECK(fabs(u.words[w].end - (want.words[w].end + 10.0 * i)) < 1e-9);
        }
        vx_asr_utterance_clear(&u);
    }
    CHECK(words_found(want.text) >= 7);
    CHECK_EQ_INT(ready_seen(&rc), 3);
    vx_asr_pool_stats st;
    vx_asr_pool_stats_get(m, &st);
    CHECK_EQ_INT(st.in_use, 1);
    CHECK_EQ_INT(st.held, 1);
    vx_asr_utterance_clear(&want);
    vx_asr_release(held);
    vx_asr_background_stop();
    vx_asr_model_free(m);
}

static void test_a_dropped_task_is_never_reported_ready(void) {
    REQUIRE(load_speech());
    vx_asr_model *m = new_model(2);
    REQUIRE(m);
    vx_err err = {0};
    ready_count rc = {.mu = PTHREAD_MUTEX_INITIALIZER};
    vx_asr_task *t[6];
    for (int i = 0; i < 6; i++) REQUIRE((t[i] = vx_asr_decode_later(m, speech, speech_n, 0, count_ready, &rc, &err)));
    /* queued, running and maybe done ones: all dropped */
    for (int i = 0; i < 6; i++) vx_asr_task_drop(t[i]);
    int at_drop = ready_seen(&rc);
    int pending = 1;
    for (int i = 0; i < 600 && pending > 0; i++) {
        vx_asr_background_stats(&pending, NULL);
        if (pending > 0) usleep(10000);
    }
    CHECK_EQ_INT(pending, 0);
    CHECK_EQ_INT(ready_seen(&rc), at_drop);
    CHECK(at_drop < 6);
    vx_asr_pool_stats st;
    vx_asr_pool_stats_get(m, &st);
    CHECK_EQ_INT(st.in_use, 0);
    vx_asr_background_stop();
    vx_asr_model_free(m);
}

static void test_shared_model_is_loaded_once_and_then_fixed(void) {
    vx_asr_options o;
    vx_asr_options_default(&o);
    o.max_decoders = 3;
    vx_err err = {0};
    vx_asr_shared_free();
    REQUIRE(vx_asr_shared_configure(&o, &err) == 0);
    vx_asr_model *a = vx_asr_shared(&err), *b = vx_asr_shared(&err);
    REQUIRE(a);
    CHECK(a == b);
    vx_asr_pool_stats st;
    vx_asr_pool_stats_get(a, &st);
    CHECK_EQ_INT(st.max, 3);
    CHECK(vx_asr_shared_configure(&o, &err) != 0);
    CHECK_EQ_STR(err.code, "asr_loaded");
    CHECK_EQ_STR(vx_asr_model_engine(a), "pocketsphinx");
    CHECK_EQ_INT(vx_asr_model_rate(a), 16000);
    vx_asr_shared_free();
}

TEST_MAIN(TEST_ENTRY(test_second_acquire_reuses_the_released_decoder),
          TEST_ENTRY(test_pool_never_holds_more_than_its_bound),
          TEST_ENTRY(test_a_pool_of_one_has_no_reserve_and_no_background),
          TEST_ENTRY(test_background_decodes_equal_decodes_in_place_in_order),
          TEST_ENTRY(test_a_dropped_task_is_never_reported_ready),
          TEST_ENTRY(test_waiting_acquire_gets_the_decoder_another_thread_releases),
          TEST_ENTRY(test_two_threads_decode_at_once_with_the_same_result),
          TEST_ENTRY(test_word_times_are_ordered_and_inside_the_utterance),
          TEST_ENTRY(test_streaming_feed_gives_partials_and_a_final_result),
          TEST_ENTRY(test_a_decoders_history_never_changes_what_it_decodes_next),
          TEST_ENTRY(test_silence_decodes_to_no_words),
          TEST_ENTRY(test_missing_model_files_are_asr_unavailable),
          TEST_ENTRY(test_shared_model_is_loaded_once_and_then_fixed))
