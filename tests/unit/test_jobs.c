/* test_jobs.c - core/jobs.c and worker/worker.c against a real SQLite store,
 * a filesystem blob store and real audio: pricing, submission checks (nothing
 * stored or charged on refusal), idempotency, cancel, the worker pool
 * running a job to success with the hold captured exactly once, and a late
 * heartbeat answer that must not touch the worker's next job. */
#include <dirent.h>
#include <stdatomic.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/accounts.h"
#include "core/jobs.h"
#include "test.h"
#include "util/clock.h"
#include "util/crypto.h"
#include "worker/worker.h"

typedef struct fixture {
    char dir[64];
    vx_config cfg;
    vx_app app;
    vx_principal alice;
} fixture;

static void write_wav(const char *path, int rate, double seconds) {
    FILE *f = fopen(path, "wb");
    uint32_t frames = (uint32_t)(rate * seconds), data = frames * 2, riff = 36 + data;
    uint16_t fmt_tag = 1, channels = 1, align = 2, bits = 16;
    uint32_t fmt_len = 16, byte_rate = (uint32_t)rate * 2, srate = (uint32_t)rate;
    fwrite("RIFF", 1, 4, f), fwrite(&riff, 4, 1, f), fwrite("WAVEfmt ", 1, 8, f);
    fwrite(&fmt_len, 4, 1, f), fwrite(&fmt_tag, 2, 1, f), fwrite(&channels, 2, 1, f);
    fwrite(&srate, 4, 1, f), fwrite(&byte_rate, 4, 1, f), fwrite(&align, 2, 1, f), fwrite(&bits, 2, 1, f);
    fwrite("data", 1, 4, f), fwrite(&data, 4, 1, f);
    for (uint32_t i = 0; i < frames; i++) {
        int16_t s = (int16_t)(8000 * sin(2 * M_PI * 440 * i / rate));
        fwrite(&s, 2, 1, f);
    }
    fclose(f);
}

static void init_once(void) {
    setenv("VOXD_FAST_PASSWORD_HASH", "1", 1);
    vx_crypto_init();
}

static int setup(fixture *fx, int64_t grant) {
    init_once();
    memset(fx, 0, sizeof *fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/voxd-jobs-XXXXXX");
    if (!mkdtemp(fx->dir)) return -1;
    vx_config_defaults(&fx->cfg);
    snprintf(fx->cfg.data_dir, sizeof fx->cfg.data_dir, "%s", fx->dir);
    snprintf(fx->cfg.db_url, sizeof fx->cfg.db_url, "sqlite://%s/voxd.db", fx->dir);
    snprintf(fx->cfg.blob_url, sizeof fx->cfg.blob_url, "file://%s/blobs", fx->dir);
    fx->cfg.signup_grant_micro = grant;
    fx->cfg.retry_base_s = 1;
    fx->app.cfg = &fx->cfg;
    snprintf(fx->app.tmp_dir, sizeof fx->app.tmp_dir, "%s/tmp", fx->dir);
    mkdir(fx->app.tmp_dir, 0700);
    vx_err err = {0};
    fx->app.store = vx_store_open(fx->cfg.db_url, &err);
    fx->app.blob = vx_blob_open(fx->cfg.blob_url, &err);
    if (!fx->app.store || !fx->app.blob) return -1;
    char pw[64];
    bool created;
    if (vx_accounts_bootstrap(&fx->app, pw, sizeof pw, &created, &err) != 0) return -1;
    if (vx_accounts_signup(&fx->app, "alice", "a long enough secret", NULL, &fx->alice.user, &err) != 0) return -1;
    return 0;
}

static void teardown(fixture *fx) {
    if (fx->app.blob) vx_blob_close(fx->app.blob);
    if (fx->app.store) vx_store_close(fx->app.store);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", fx->dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", fx->dir);
}

/* Copies a fresh 1 s WAV into a spool path (submission consumes it). */
static void spool(fixture *fx, char *path, size_t cap, double seconds) {
    static int n;
    snprintf(path, cap, "%s/tmp/spool-%d.wav", fx->dir, n++);
    write_wav(path, 16000, seconds);
}

static vx_job_submission submission(const char *path, const char *params, const char *idem) {
    return (vx_job_submission){.model = "convert", .params_text = params, .spool_path = path, .filename = "a.wav",
                               .content_type = "audio/wav", .bytes = 32044, .upload_sha256 = path,
                               .idempotency_key = idem};
}

static int64_t available(fixture *fx) {
    vx_balance b = {0};
    vx_err err = {0};
    fx->app.store->ops->balance_get(fx->app.store, fx->alice.user.id, &b, &err);
    return b.available;
}

static bool audit_ok(fixture *fx) {
    bool ok = false;
    vx_err err = {0};
    fx->app.store->ops->ledger_audit(fx->app.store, fx->alice.user.id, NULL, &ok, &err);
    return ok;
}

static void test_price_is_per_job_plus_rounded_up_seconds(void) {
    CHECK_EQ_INT(vx_job_price(10000, 1000, 1.0), 11000);
    CHECK_EQ_INT(vx_job_price(10000, 1000, 1.5), 11500);
    CHECK_EQ_INT(vx_job_price(0, 3, 0.5), 2);          /* 1.5 micro rounds up */
    CHECK_EQ_INT(vx_job_price(5, 0, 1000.0), 5);
    CHECK_EQ_INT(vx_job_price(1, 1000, -1.0), 1);      /* nonsense duration costs nothing extra */
}

static void test_filenames_with_paths_or_controls_are_refused(void) {
    CHECK(vx_jobs_filename_valid("speech.wav"));
    CHECK(vx_jobs_filename_valid("my talk (final).mp3"));
    CHECK(!vx_jobs_filename_valid(""));
    CHECK(!vx_jobs_filename_valid("../../etc/passwd.wav"));
    CHECK(!vx_jobs_filename_valid("..\\x.wav"));
    CHECK(!vx_jobs_filename_valid("dir/a.wav"));
    CHECK(!vx_jobs_filename_valid("a\nb.wav"));
    CHECK(!vx_jobs_filename_valid(".."));
}

static void test_submit_places_the_hold_and_queues_the_job(void) {
    fixture fx;
    REQUIRE(setup(&fx, 10 * 1000000) == 0);
    char path[256];
    spool(&fx, path, sizeof path, 1.0);
    vx_job_submission s = submission(path, "{\"format\":\"flac\"}", NULL);
    vx_job job = {0};
    bool replayed = true;
    vx_err err = {0};
    CHECK_EQ_INT(vx_jobs_submit(&fx.app, &fx.alice, &s, &job, &replayed, &err), 0);
    CHECK(!replayed);
    CHECK_EQ_INT(job.status, VX_JOB_QUEUED);
    CHECK_EQ_INT(job.held, 11000);
    CHECK_EQ_INT(available(&fx), 10 * 1000000 - 11000);
    CHECK(access(path, F_OK) != 0); /* spool consumed */
    int64_t size = 0;
    CHECK_EQ_INT(fx.app.blob->ops->stat(fx.app.blob, job.input_key, &size, &err), 0);
    CHECK(size > 30000);
    CHECK(strstr(job.params_json, "\"format\":\"flac\"") != NULL);
    CHECK(audit_ok(&fx));
    vx_job_clear(&job);
    teardown(&fx);
}

static void test_refused_submission_stores_and_charges_nothing(void) {
    fixture fx;
    REQUIRE(setup(&fx, 10 * 1000000) == 0);
    const char *bad_params[] = {"{\"sample_rate\":5}", "{\"nope\":1}", "[1]", "not json"};
    const char *codes[] = {"param_out_of_range", "unknown_param", "invalid_params_json", "invalid_params_json"};
    for (int i = 0; i < 4; i++) {
        char path[256];
        spool(&fx, path, sizeof path, 1.0);
        vx_job_submission s = submission(path, bad_params[i], NULL);
        vx_job job = {0};
        bool replayed;
        vx_err err = {0};
        CHECK_EQ_INT(vx_jobs_submit(&fx.app, &fx.alice, &s, &job, &replayed, &err), -1);
        CHECK_EQ_STR(err.code, codes[i]);
        CHECK(access(path, F_OK) != 0);
    }
    char path[256];
    snprintf(path, sizeof path, "%s/tmp/text.wav", fx.dir);
    FILE *f = fopen(path, "w");
    fputs("this is not audio at all, just some words in a text file\n", f);
    fclose(f);
    vx_job_submission s = submission(path, NULL, NULL);
    vx_job job = {0};
    bool replayed;
    vx_err err = {0};
    CHECK_EQ_INT(vx_jobs_submit(&fx.app, &fx.alice, &s, &job, &replayed, &err), -1);
    CHECK_EQ_STR(err.code, "unsupported_format");
    s.model = "no-such-model";
    spool(&fx, path, sizeof path, 1.0);
    s.spool_path = path;
    CHECK_EQ_INT(vx_jobs_submit(&fx.app, &fx.alice, &s, &job, &replayed, &err), -1);
    CHECK_EQ_STR(err.code, "unknown_model");
    CHECK_EQ_INT(available(&fx), 10 * 1000000);
    vx_job *jobs = NULL;
    size_t n = 9;
    vx_job_filter filter = {.user_id = fx.alice.user.id, .status = -1, .limit = 10};
    CHECK_EQ_INT(fx.app.store->ops->job_list(fx.app.store, &filter, &jobs, &n, &err), 0);
    CHECK_EQ_INT(n, 0);
    vx_job_list_free(jobs, n);
    teardown(&fx);
}

static void test_insufficient_credits_is_402_and_leaves_no_input_behind(void) {
    fixture fx;
    REQUIRE(setup(&fx, 5000) == 0); /* less than one job */
    char path[256];
    spool(&fx, path, sizeof path, 1.0);
    vx_job_submission s = submission(path, NULL, NULL);
    vx_job job = {0};
    bool replayed;
    vx_err err = {0};
    CHECK_EQ_INT(vx_jobs_submit(&fx.app, &fx.alice, &s, &job, &replayed, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_PAYMENT);
    CHECK_EQ_STR(err.code, "insufficient_credits");
    CHECK_EQ_INT(available(&fx), 5000);
    char users_dir[256];
    snprintf(users_dir, sizeof users_dir, "%s/blobs/users/%s", fx.dir, fx.alice.user.id);
    DIR *d = opendir(users_dir);
    int entries = 0;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.') {
                char sub[512], cmd[600];
                snprintf(sub, sizeof sub, "%s/%s", users_dir, e->d_name);
                snprintf(cmd, sizeof cmd, "test -z \"$(ls -A %s 2>/dev/null)\"", sub);
                if (system(cmd) != 0) entries++;
            }
        closedir(d);
    }
    CHECK_EQ_INT(entries, 0);
    teardown(&fx);
}

static void test_same_idempotency_key_replays_and_different_request_conflicts(void) {
    fixture fx;
    REQUIRE(setup(&fx, 10 * 1000000) == 0);
    char p1[256], p2[256], p3[256];
    spool(&fx, p1, sizeof p1, 1.0);
    spool(&fx, p2, sizeof p2, 1.0);
    spool(&fx, p3, sizeof p3, 1.0);
    vx_job a = {0}, b = {0}, c = {0};
    bool replayed = false;
    vx_err err = {0};
    vx_job_submission s = submission(p1, NULL, "key-1");
    s.upload_sha256 = "same";
    CHECK_EQ_INT(vx_jobs_submit(&fx.app, &fx.alice, &s, &a, &replayed, &err), 0);
    s.spool_path = p2;
    CHECK_EQ_INT(vx_jobs_submit(&fx.app, &fx.alice, &s, &b, &replayed, &err), 0);
    CHECK(replayed);
    CHECK_EQ_STR(a.id, b.id);
    s.spool_path = p3;
    s.params_text = "{\"format\":\"mp3\"}";
    CHECK_EQ_INT(vx_jobs_submit(&fx.app, &fx.alice, &s, &c, &replayed, &err), -1);
    CHECK_EQ_STR(err.code, "idempotency_key_reused");
    CHECK_EQ_INT(available(&fx), 10 * 1000000 - 11000); /* charged once */
    CHECK(access(p2, F_OK) != 0 && access(p3, F_OK) != 0);
    vx_job_clear(&a), vx_job_clear(&b), vx_job_clear(&c);
    teardown(&fx);
}

static void test_other_users_jobs_are_not_found(void) {
    fixture fx;
    REQUIRE(setup(&fx, 10 * 1000000) == 0);
    char path[256];
    spool(&fx, path, sizeof path, 1.0);
    vx_job_submission s = submission(path, NULL, NULL);
    vx_job job = {0}, seen = {0};
    bool replayed;
    vx_err err = {0};
    REQUIRE(vx_jobs_submit(&fx.app, &fx.alice, &s, &job, &replayed, &err) == 0);
    vx_principal bob = {0}, admin = {0};
    REQUIRE(vx_accounts_signup(&fx.app, "bob", "another long secret", NULL, &bob.user, &err) == 0);
    CHECK_EQ_INT(vx_jobs_get(&fx.app, &bob, job.id, &seen, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_NOT_FOUND);
    CHECK_EQ_INT(vx_jobs_cancel(&fx.app, &bob, job.id, &seen, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_NOT_FOUND);
    REQUIRE(fx.app.store->ops->user_get_by_name(fx.app.store, "admin", &admin.user, &err) == 0);
    CHECK_EQ_INT(vx_jobs_get(&fx.app, &admin, job.id, &seen, &err), 0);
    vx_job_clear(&seen);
    CHECK_EQ_INT(vx_jobs_get(&fx.app, &fx.alice, "job_../../x", &seen, &err), -1);
    vx_job_clear(&job);
    teardown(&fx);
}

static void test_cancel_of_a_queued_job_releases_its_hold(void) {
    fixture fx;
    REQUIRE(setup(&fx, 10 * 1000000) == 0);
    char path[256];
    spool(&fx, path, sizeof path, 1.0);
    vx_job_submission s = submission(path, NULL, NULL);
    vx_job job = {0}, after = {0};
    bool replayed;
    vx_err err = {0};
    REQUIRE(vx_jobs_submit(&fx.app, &fx.alice, &s, &job, &replayed, &err) == 0);
    CHECK_EQ_INT(vx_jobs_cancel(&fx.app, &fx.alice, job.id, &after, &err), 0);
    CHECK_EQ_INT(after.status, VX_JOB_CANCELED);
    CHECK_EQ_INT(available(&fx), 10 * 1000000);
    vx_job_clear(&after);
    CHECK_EQ_INT(vx_jobs_cancel(&fx.app, &fx.alice, job.id, &after, &err), -1);
    CHECK_EQ_STR(err.code, "job_finished");
    CHECK(audit_ok(&fx));
    vx_job_clear(&job);
    teardown(&fx);
}

static int wait_terminal(fixture *fx, const char *id, vx_job *out) {
    for (int i = 0; i < 300; i++) {
        vx_err err = {0};
        vx_job_clear(out);
        memset(out, 0, sizeof *out);
        if (fx->app.store->ops->job_get(fx->app.store, id, out, &err) == 0 && vx_job_status_terminal(out->status))
            return 0;
        usleep(50 * 1000);
    }
    return -1;
}

static void test_workers_run_a_job_to_success_and_capture_once(void) {
    fixture fx;
    REQUIRE(setup(&fx, 10 * 1000000) == 0);
    vx_err err = {0};
    vx_workers *w = vx_workers_start(&fx.app, 2, &err);
    REQUIRE(w != NULL);
    char path[256];
    spool(&fx, path, sizeof path, 2.0);
    vx_job_submission s = submission(path, "{\"format\":\"flac\",\"sample_rate\":8000}", NULL);
    vx_job job = {0}, done = {0};
    bool replayed;
    REQUIRE(vx_jobs_submit(&fx.app, &fx.alice, &s, &job, &replayed, &err) == 0);
    CHECK_EQ_INT(wait_terminal(&fx, job.id, &done), 0);
    CHECK_EQ_INT(done.status, VX_JOB_SUCCEEDED);
    CHECK_EQ_INT(done.charged, 12000);
    CHECK_EQ_INT(done.attempts, 1);
    CHECK(done.result_json && strstr(done.result_json, "\"sample_rate\":8000"));
    CHECK(done.output_bytes > 0);
    int64_t size = 0;
    CHECK_EQ_INT(fx.app.blob->ops->stat(fx.app.blob, done.output_key, &size, &err), 0);
    CHECK_EQ_INT(size, done.output_bytes);
    CHECK_EQ_INT(available(&fx), 10 * 1000000 - 12000);
    CHECK(audit_ok(&fx));
    vx_workers_stop(w, 1000);
    vx_job_clear(&job), vx_job_clear(&done);
    teardown(&fx);
}

static void test_a_job_whose_input_vanished_fails_and_releases_after_retries(void) {
    fixture fx;
    REQUIRE(setup(&fx, 10 * 1000000) == 0);
    fx.cfg.max_attempts = 2;
    char path[256];
    spool(&fx, path, sizeof path, 1.0);
    vx_job_submission s = submission(path, NULL, NULL);
    vx_job job = {0}, done = {0};
    bool replayed;
    vx_err err = {0};
    REQUIRE(vx_jobs_submit(&fx.app, &fx.alice, &s, &job, &replayed, &err) == 0);
    REQUIRE(fx.app.blob->ops->remove(fx.app.blob, job.input_key, &err) == 0);
    vx_workers *w = vx_workers_start(&fx.app, 1, &err);
    REQUIRE(w != NULL);
    CHECK_EQ_INT(wait_terminal(&fx, job.id, &done), 0);
    CHECK_EQ_INT(done.status, VX_JOB_FAILED);
    CHECK_EQ_INT(done.attempts, 2);
    CHECK(done.error_json && strstr(done.error_json, "\"attempt\":2"));
    CHECK_EQ_INT(available(&fx), 10 * 1000000);
    CHECK(audit_ok(&fx));
    vx_workers_stop(w, 1000);
    vx_job_clear(&job), vx_job_clear(&done);
    teardown(&fx);
}

/* Interleaving for the next test, driven by wrapped store/blob hooks (the
 * worker thread fetches inputs, the keeper thread heartbeats): the keeper's
 * heartbeat of the first job is held until the worker has finished that job
 * and begun fetching the second, so its answer (CONFLICT: the job is no
 * longer running) arrives while the slot runs the second job; the second
 * fetch is held until the keeper has moved on to heartbeat the second job. */
static struct {
    const vx_store_ops *store_ops;
    const vx_blob_ops *blob_ops;
    char first_id[VX_ID_SIZE];
    atomic_int fetches;
    atomic_bool first_beat, second_fetch, second_beat, first_beat_conflict;
} race;

static void await_flag(atomic_bool *flag) {
    for (int i = 0; i < 2000 && !atomic_load(flag); i++) usleep(5 * 1000);
}

static int racing_heartbeat(vx_store *st, const char *id, const char *worker, int attempt, int64_t now,
                            int64_t lease_ms, double progress, bool *cancel_requested, vx_err *err) {
    if (!atomic_load(&race.first_beat)) {
        snprintf(race.first_id, sizeof race.first_id, "%s", id);
        atomic_store(&race.first_beat, true);
        await_flag(&race.second_fetch);
        int rc = race.store_ops->job_heartbeat(st, id, worker, attempt, vx_now_ms(), lease_ms, progress,
                                               cancel_requested, err);
        atomic_store(&race.first_beat_conflict, rc != 0 && err->status == VX_E_CONFLICT);
        return rc;
    }
    if (strcmp(id, race.first_id) != 0) atomic_store(&race.second_beat, true);
    return race.store_ops->job_heartbeat(st, id, worker, attempt, now, lease_ms, progress, cancel_requested, err);
}

static int racing_fetch(vx_blob *b, const char *key, const char *tmp_dir, char *path_out, size_t cap,
                        bool *is_temp, vx_err *err) {
    int n = atomic_fetch_add(&race.fetches, 1) + 1;
    if (n == 1) {
        await_flag(&race.first_beat);
    } else if (n == 2) {
        atomic_store(&race.second_fetch, true);
        await_flag(&race.second_beat);
    }
    return race.blob_ops->fetch_local(b, key, tmp_dir, path_out, cap, is_temp, err);
}

static void test_a_late_lease_lost_answer_for_a_finished_job_spares_the_next_job(void) {
    fixture fx;
    REQUIRE(setup(&fx, 10 * 1000000) == 0);
    fx.cfg.lease_s = 600; /* a wrongly abandoned job would stay running for the whole test */
    vx_job jobs[2], done = {0};
    memset(jobs, 0, sizeof jobs);
    vx_err err = {0};
    bool replayed;
    for (int i = 0; i < 2; i++) {
        char path[256];
        spool(&fx, path, sizeof path, 1.0);
        vx_job_submission s = submission(path, NULL, NULL);
        REQUIRE(vx_jobs_submit(&fx.app, &fx.alice, &s, &jobs[i], &replayed, &err) == 0);
    }
    memset(&race, 0, sizeof race);
    race.store_ops = fx.app.store->ops;
    race.blob_ops = fx.app.blob->ops;
    vx_store_ops store_ops = *race.store_ops;
    vx_blob_ops blob_ops = *race.blob_ops;
    store_ops.job_heartbeat = racing_heartbeat;
    blob_ops.fetch_local = racing_fetch;
    fx.app.store->ops = &store_ops;
    fx.app.blob->ops = &blob_ops;
    vx_workers *w = vx_workers_start(&fx.app, 1, &err);
    REQUIRE(w != NULL);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_INT(wait_terminal(&fx, jobs[i].id, &done), 0);
        CHECK_EQ_INT(done.status, VX_JOB_SUCCEEDED);
        CHECK_EQ_INT(done.attempts, 1);
    }
    CHECK(atomic_load(&race.first_beat_conflict)); /* the interleaving did happen */
    CHECK(atomic_load(&race.second_beat));
    CHECK(audit_ok(&fx));
    vx_workers_stop(w, 1000);
    fx.app.store->ops = race.store_ops;
    fx.app.blob->ops = race.blob_ops;
    vx_job_clear(&jobs[0]), vx_job_clear(&jobs[1]), vx_job_clear(&done);
    teardown(&fx);
}

TEST_MAIN(TEST_ENTRY(test_price_is_per_job_plus_rounded_up_seconds),
          TEST_ENTRY(test_filenames_with_paths_or_controls_are_refused),
          TEST_ENTRY(test_submit_places_the_hold_and_queues_the_job),
          TEST_ENTRY(test_refused_submission_stores_and_charges_nothing),
          TEST_ENTRY(test_insufficient_credits_is_402_and_leaves_no_input_behind),
          TEST_ENTRY(test_same_idempotency_key_replays_and_different_request_conflicts),
          TEST_ENTRY(test_other_users_jobs_are_not_found), TEST_ENTRY(test_cancel_of_a_queued_job_releases_its_hold),
          TEST_ENTRY(test_workers_run_a_job_to_success_and_capture_once),
          TEST_ENTRY(test_a_job_whose_input_vanished_fails_and_releases_after_retries),
          TEST_ENTRY(test_a_late_lease_lost_answer_for_a_finished_job_spares_the_next_job))
