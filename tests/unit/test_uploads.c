/* test_uploads.c - direct uploads and the orphan sweep: the store's upload
 * rows, their one-time take by a job (also under concurrency), expiry and
 * named leases (SQLite, or PostgreSQL with VOXD_TEST_STORE_URL), and
 * vx_uploads_sweep against the file backend and against S3 (the test server
 * of tests/s3/s3server.sh, started on loopback). Run from the repo root. */
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "../../src/core/uploads.h"
#include "../../src/util/clock.h"
#include "../../src/util/crypto.h"
#include "test.h"

#define T0 INT64_C(1700000000000)
#define S3_SCRIPT "tests/s3/s3server.sh"

static char dir[64];
static vx_store *st;
static vx_user user, other;
static vx_config cfg;
static vx_app app;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) { return remove(path); }

static void store_url(char *out, size_t cap, const char *sqlite_path) {
    const char *base = getenv("VOXD_TEST_STORE_URL");
    if (!base || !*base) {
        snprintf(out, cap, "sqlite://%s", sqlite_path);
        return;
    }
    char schema[VX_ID_SIZE];
    vx_id_new(schema, "t");
    snprintf(out, cap, "%s%cschema=%s", base, strchr(base, '?') ? '&' : '?', schema);
}

static int add_user(vx_user *u, const char *name) {
    memset(u, 0, sizeof *u);
    vx_id_new(u->id, "usr");
    snprintf(u->username, sizeof u->username, "%s", name);
    snprintf(u->role, sizeof u->role, "user");
    snprintf(u->password_hash, sizeof u->password_hash, "x");
    u->created_at = T0;
    vx_err err;
    return st->ops->user_create(st, u, 100000000, &err);
}

/* A fresh store with two users. */
static int setup(void) {
    vx_crypto_init();
    snprintf(dir, sizeof dir, "/tmp/voxd-uploads-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    char url[256], path[128];
    snprintf(path, sizeof path, "%s/voxd.db", dir);
    store_url(url, sizeof url, path);
    vx_err err;
    if (!(st = vx_store_open(url, &err))) return -1;
    return add_user(&user, "uploader") | add_user(&other, "someone");
}

static void teardown(void) {
    if (app.blob) vx_blob_close(app.blob);
    app.blob = NULL;
    vx_store_close(st);
    st = NULL;
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static vx_upload make_upload(const vx_user *owner, int64_t expires_at) {
    vx_upload u = {.created_at = T0, .expires_at = expires_at, .declared_bytes = 10};
    vx_id_new(u.id, "upl");
    snprintf(u.user_id, sizeof u.user_id, "%s", owner->id);
    snprintf(u.key, sizeof u.key, "users/%s/uploads/%s", owner->id, u.id);
    snprintf(u.filename, sizeof u.filename, "a.wav");
    return u;
}

static vx_job make_job(const vx_user *owner, const char *input_key) {
    vx_job j = {0};
    vx_id_new(j.id, "job");
    snprintf(j.user_id, sizeof j.user_id, "%s", owner->id);
    snprintf(j.model, sizeof j.model, "convert");
    j.max_attempts = 3;
    j.created_at = j.run_after = T0;
    j.held = j.price_per_job = 1000;
    j.params_json = "{}";
    snprintf(j.input_key, sizeof j.input_key, "%s", input_key);
    snprintf(j.input_name, sizeof j.input_name, "a.wav");
    snprintf(j.input_format, sizeof j.input_format, "wav");
    return j;
}

static int64_t held(const vx_user *u) {
    vx_balance b = {0};
    vx_err err;
    st->ops->balance_get(st, u->id, &b, &err);
    return b.held;
}

static void test_upload_rows_round_trip_and_duplicates_conflict(void) {
    REQUIRE(setup() == 0);
    vx_upload u = make_upload(&user, T0 + 60000), got;
    vx_err err = {0};
    CHECK_EQ_INT(st->ops->upload_create(st, &u, &err), 0);
    CHECK_EQ_INT(st->ops->upload_get(st, u.id, &got, &err), 0);
    CHECK_EQ_STR(got.key, u.key);
    CHECK_EQ_STR(got.filename, "a.wav");
    CHECK_EQ_INT(got.state, VX_UPLOAD_PENDING);
    CHECK_EQ_INT(got.expires_at, T0 + 60000);
    CHECK_EQ_INT(got.declared_bytes, 10);
    CHECK_EQ_STR(got.used_by_job, "");
    CHECK_EQ_INT(st->ops->upload_create(st, &u, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_CONFLICT);
    CHECK_EQ_INT(st->ops->upload_get(st, "upl_missing", &got, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_NOT_FOUND);
    CHECK_EQ_STR(err.code, "upload_not_found");
    teardown();
}

static void test_a_job_takes_an_upload_once_and_a_refused_take_changes_nothing(void) {
    REQUIRE(setup() == 0);
    vx_upload u = make_upload(&user, T0 + 60000), got;
    vx_err err = {0};
    REQUIRE(st->ops->upload_create(st, &u, &err) == 0);
    vx_job first = make_job(&user, u.key), second = make_job(&user, u.key), foreign = make_job(&other, u.key);
    vx_job existing = {0};
    CHECK_EQ_INT(st->ops->job_submit_upload(st, &foreign, u.id, T0, &existing, &err), -1); /* not theirs */
    CHECK_EQ_STR(err.code, "upload_used");
    CHECK_EQ_INT(st->ops->job_submit_upload(st, &first, u.id, T0 + 60000, &existing, &err), -1); /* expired */
    CHECK_EQ_STR(err.code, "upload_used");
    CHECK_EQ_INT(held(&user), 0);
    CHECK_EQ_INT(st->ops->job_submit_upload(st, &first, u.id, T0 + 1, &existing, &err), 0);
    CHECK_EQ_INT(held(&user), 1000);
    CHECK_EQ_INT(st->ops->job_submit_upload(st, &second, u.id, T0 + 2, &existing, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_CONFLICT);
    CHECK_EQ_STR(err.code, "upload_used");
    CHECK_EQ_INT(held(&user), 1000);
    vx_job j = {0};
    CHECK_EQ_INT(st->ops->job_get(st, second.id, &j, &err), -1); /* no row for the loser */
    CHECK_EQ_INT(st->ops->upload_get(st, u.id, &got, &err), 0);
    CHECK_EQ_INT(got.state, VX_UPLOAD_USED);
    CHECK_EQ_STR(got.used_by_job, first.id);
    CHECK_EQ_INT(st->ops->job_get(st, first.id, &j, &err), 0);
    CHECK_EQ_STR(j.input_key, u.key);
    vx_job_clear(&j);
    teardown();
}

#define RACERS 8
static const char *race_upload;
static int race_ok, race_conflict, race_other;
static pthread_mutex_t race_mu = PTHREAD_MUTEX_INITIALIZER;

static void *racer(void *arg) {
    (void)arg;
    vx_upload u;
    vx_err err = {0};
    st->ops->upload_get(st, race_upload, &u, &err);
    vx_job j = make_job(&user, u.key), existing = {0};
    int rc = st->ops->job_submit_upload(st, &j, race_upload, T0 + 1, &existing, &err);
    pthread_mutex_lock(&race_mu);
    if (rc == 0) race_ok++;
    else if (err.status == VX_E_CONFLICT && strcmp(err.code, "upload_used") == 0) race_conflict++;
    else race_other++;
    pthread_mutex_unlock(&race_mu);
    return NULL;
}

static void test_concurrent_takes_of_one_upload_make_exactly_one_job(void) {
    REQUIRE(setup() == 0);
    vx_upload u = make_upload(&user, T0 + 60000);
    vx_err err = {0};
    REQUIRE(st->ops->upload_create(st, &u, &err) == 0);
    race_upload = u.id;
    race_ok = race_conflict = race_other = 0;
    pthread_t t[RACERS];
    for (int i = 0; i < RACERS; i++) pthread_create(&t[i], NULL, racer, NULL);
    for (int i = 0; i < RACERS; i++) pthread_join(t[i], NULL);
    CHECK_EQ_INT(race_ok, 1);
    CHECK_EQ_INT(race_conflict, RACERS - 1);
    CHECK_EQ_INT(race_other, 0);
    CHECK_EQ_INT(held(&user), 1000);
    teardown();
}

static void test_expire_marks_only_pending_uploads_past_their_expiry(void) {
    REQUIRE(setup() == 0);
    vx_upload old = make_upload(&user, T0 + 10), used = make_upload(&user, T0 + 10), live = make_upload(&user, T0 + 999);
    vx_err err = {0};
    REQUIRE(st->ops->upload_create(st, &old, &err) == 0);
    REQUIRE(st->ops->upload_create(st, &used, &err) == 0);
    REQUIRE(st->ops->upload_create(st, &live, &err) == 0);
    vx_job j = make_job(&user, used.key), existing = {0};
    REQUIRE(st->ops->job_submit_upload(st, &j, used.id, T0, &existing, &err) == 0);
    vx_upload *gone = NULL;
    size_t n = 0;
    CHECK_EQ_INT(st->ops->upload_expire(st, T0 + 500, 10, &gone, &n, &err), 0);
    REQUIRE(n == 1);
    CHECK_EQ_STR(gone[0].id, old.id);
    CHECK_EQ_STR(gone[0].key, old.key);
    free(gone);
    CHECK_EQ_INT(st->ops->upload_expire(st, T0 + 500, 10, &gone, &n, &err), 0); /* once only */
    CHECK_EQ_INT(n, 0);
    CHECK(gone == NULL);
    vx_upload got;
    st->ops->upload_get(st, old.id, &got, &err);
    CHECK_EQ_INT(got.state, VX_UPLOAD_EXPIRED);
    st->ops->upload_get(st, live.id, &got, &err);
    CHECK_EQ_INT(got.state, VX_UPLOAD_PENDING);
    teardown();
}

static void test_lease_is_exclusive_renewable_and_taken_over_after_it_ends(void) {
    REQUIRE(setup() == 0);
    bool a = false, b = true;
    vx_err err = {0};
    CHECK_EQ_INT(st->ops->lease_acquire(st, "sweeper", "node-a", T0, 1000, &a, &err), 0);
    CHECK(a);
    CHECK_EQ_INT(st->ops->lease_acquire(st, "sweeper", "node-b", T0 + 500, 1000, &b, &err), 0);
    CHECK(!b);
    CHECK_EQ_INT(st->ops->lease_acquire(st, "sweeper", "node-a", T0 + 900, 1000, &a, &err), 0); /* renews */
    CHECK(a);
    CHECK_EQ_INT(st->ops->lease_acquire(st, "sweeper", "node-b", T0 + 1500, 1000, &b, &err), 0);
    CHECK(!b); /* renewed until T0 + 1900 */
    CHECK_EQ_INT(st->ops->lease_acquire(st, "other-chore", "node-b", T0 + 1500, 1000, &b, &err), 0);
    CHECK(b);
    CHECK_EQ_INT(st->ops->lease_acquire(st, "sweeper", "node-b", T0 + 1900, 1000, &b, &err), 0);
    CHECK(b);
    CHECK_EQ_INT(st->ops->lease_acquire(st, "sweeper", "node-a", T0 + 2000, 1000, &a, &err), 0);
    CHECK(!a);
    CHECK_EQ_INT(st->ops->lease_acquire(st, "sweeper", "", T0, 1000, &a, &err), -1);
    teardown();
}

/* ---- the sweep, on a given blob store ---- */

static int put_bytes(const char *key, const char *text) {
    char path[128];
    snprintf(path, sizeof path, "%s/spool-XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    ssize_t w = write(fd, text, strlen(text));
    close(fd);
    vx_err err = {0};
    if (w < 0 || app.blob->ops->put_file(app.blob, key, path, &err) != 0) {
        fprintf(stderr, "  put %s: %s\n", key, err.message);
        unlink(path);
        return -1;
    }
    return 0;
}

static bool exists(const char *key) {
    int64_t size;
    vx_err err = {0};
    return app.blob->ops->stat(app.blob, key, &size, &err) == 0;
}

/* Every kind of object the sweep meets; with grace 0 only the referenced ones stay. */
static void sweep_keeps_referenced_objects_and_removes_the_rest(const char *blob_url) {
    REQUIRE(setup() == 0);
    vx_config_defaults(&cfg);
    app = (vx_app){.cfg = &cfg, .store = st};
    vx_err err = {0};
    app.blob = vx_blob_open(blob_url, &err);
    REQUIRE(app.blob != NULL);
    int64_t now = vx_now_ms();
    vx_upload pending = make_upload(&user, now + 60000), expired = make_upload(&user, now - 1),
              used = make_upload(&user, now + 60000), stolen = make_upload(&other, now + 60000);
    REQUIRE(st->ops->upload_create(st, &pending, &err) == 0);
    REQUIRE(st->ops->upload_create(st, &expired, &err) == 0);
    REQUIRE(st->ops->upload_create(st, &used, &err) == 0);
    REQUIRE(st->ops->upload_create(st, &stolen, &err) == 0);
    vx_job from_upload = make_job(&user, used.key), existing = {0};
    REQUIRE(st->ops->job_submit_upload(st, &from_upload, used.id, now, &existing, &err) == 0);
    char input[160], output[160], orphan[160], wrong_owner[160], stray_upload[160], stolen_key[160];
    vx_job plain = make_job(&user, "");
    snprintf(input, sizeof input, "users/%s/%s/input.wav", user.id, plain.id);
    snprintf(output, sizeof output, "users/%s/%s/output.flac", user.id, plain.id);
    snprintf(plain.input_key, sizeof plain.input_key, "%s", input);
    REQUIRE(st->ops->job_submit(st, &plain, &existing, &err) == 0);
    snprintf(orphan, sizeof orphan, "users/%s/job_0000000000000000000000orph/input.wav", user.id);
    snprintf(wrong_owner, sizeof wrong_owner, "users/%s/%s/input.wav", other.id, plain.id);
    snprintf(stray_upload, sizeof stray_upload, "users/%s/uploads/upl_00000000000000000000000none", user.id);
    /* the other user's upload id under this user's prefix: no row owns that key */
    snprintf(stolen_key, sizeof stolen_key, "users/%s/uploads/%s", user.id, stolen.id);
    const char *keep[] = {pending.key, used.key, input, output, stolen.key};
    const char *drop[] = {expired.key, orphan, wrong_owner, stray_upload, stolen_key};
    for (size_t i = 0; i < 5; i++) REQUIRE(put_bytes(keep[i], "keep") == 0 && put_bytes(drop[i], "drop") == 0);
    REQUIRE(put_bytes("elsewhere/not-swept", "x") == 0);

    vx_sweep_stats stats;
    /* a grace longer than the objects' age keeps everything but the expired upload */
    CHECK_EQ_INT(vx_uploads_sweep(&app, vx_now_ms(), 3600 * 1000, &stats, &err), 0);
    CHECK_EQ_INT(stats.expired_uploads, 1);
    CHECK_EQ_INT(stats.removed, 0);
    CHECK_EQ_INT(stats.listed, 9);
    CHECK(!exists(expired.key));
    CHECK(exists(orphan));

    CHECK_EQ_INT(vx_uploads_sweep(&app, vx_now_ms() + 1000, 0, &stats, &err), 0);
    CHECK_EQ_INT(stats.failed, 0);
    CHECK_EQ_INT(stats.removed, 4);
    CHECK_EQ_INT(stats.listed, 9);
    for (size_t i = 0; i < 5; i++) {
        if (!exists(keep[i])) fprintf(stderr, "  removed %s\n", keep[i]);
        CHECK(exists(keep[i]));
        CHECK(!exists(drop[i]));
    }
    CHECK(exists("elsewhere/not-swept"));
    vx_upload got;
    st->ops->upload_get(st, expired.id, &got, &err);
    CHECK_EQ_INT(got.state, VX_UPLOAD_EXPIRED);
    teardown();
}

static void test_sweep_on_the_file_backend(void) {
    char url[128];
    snprintf(url, sizeof url, "file:///tmp/voxd-sweep-blobs-%d", (int)getpid());
    sweep_keeps_referenced_objects_and_removes_the_rest(url);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf /tmp/voxd-sweep-blobs-%d", (int)getpid());
    CHECK_EQ_INT(system(cmd), 0);
}

static char s3_dir[64];
static void s3_stop(void) {
    if (!s3_dir[0]) return;
    char cmd[256];
    snprintf(cmd, sizeof cmd, S3_SCRIPT " stop '%s'; rm -rf '%s'", s3_dir, s3_dir);
    if (system(cmd) != 0) fprintf(stderr, "  could not stop the s3 test server\n");
}

static void test_sweep_on_s3_lists_every_page(void) {
    snprintf(s3_dir, sizeof s3_dir, "/tmp/voxd-s3sweep-XXXXXX");
    REQUIRE(mkdtemp(s3_dir) != NULL);
    atexit(s3_stop);
    setenv("S3_TEST_ACCESS_KEY", "VOXDSWEEPKEY", 1);
    setenv("S3_TEST_SECRET_KEY", "sweep-secret", 1);
    setenv("S3_TEST_REGION", "us-east-1", 1);
    setenv("S3_TEST_BUCKET", "voxd-sweep", 1);
    char owner[24], cmd[160];
    snprintf(owner, sizeof owner, "%d", (int)getpid());
    setenv("S3_TEST_OWNER_PID", owner, 1);
    setenv("AWS_ACCESS_KEY_ID", "VOXDSWEEPKEY", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "sweep-secret", 1);
    /* s3rver makes ListObjectsV2 continuation tokens with DES, which Node 20's
     * OpenSSL 3 only has in its legacy provider: without it every truncated
     * listing page is a 500 (tests/s3/s3server.sh does not set this). */
    setenv("NODE_OPTIONS", "--openssl-legacy-provider", 1);
    snprintf(cmd, sizeof cmd, S3_SCRIPT " start '%s' 0", s3_dir);
    FILE *p = popen(cmd, "r");
    int port = 0;
    if (!p || fscanf(p, "%d", &port) != 1) port = 0;
    if (p) pclose(p);
    REQUIRE(port > 0);
    char url[256];
    snprintf(url, sizeof url, "s3://voxd-sweep?endpoint=http://127.0.0.1:%d&region=us-east-1&prefix=t/", port);
    sweep_keeps_referenced_objects_and_removes_the_rest(url);

    /* more objects than one listing page (50) are all seen */
    REQUIRE(setup() == 0);
    vx_err err = {0};
    snprintf(url, sizeof url, "s3://voxd-sweep?endpoint=http://127.0.0.1:%d&region=us-east-1&prefix=paged/", port);
    app.blob = vx_blob_open(url, &err);
    REQUIRE(app.blob != NULL);
    char key[96];
    for (int i = 0; i < 120; i++) {
        snprintf(key, sizeof key, "users/usr_x/job_%026d/input.wav", i);
        REQUIRE(put_bytes(key, "o") == 0);
    }
    vx_config_defaults(&cfg);
    app.cfg = &cfg;
    app.store = st;
    vx_sweep_stats stats;
    CHECK_EQ_INT(vx_uploads_sweep(&app, vx_now_ms() + 1000, 0, &stats, &err), 0);
    CHECK_EQ_INT(stats.listed, 120);
    CHECK_EQ_INT(stats.removed, 120);
    CHECK(!exists("users/usr_x/job_00000000000000000000000077/input.wav"));
    teardown();
}

TEST_MAIN(TEST_ENTRY(test_upload_rows_round_trip_and_duplicates_conflict),
          TEST_ENTRY(test_a_job_takes_an_upload_once_and_a_refused_take_changes_nothing),
          TEST_ENTRY(test_concurrent_takes_of_one_upload_make_exactly_one_job),
          TEST_ENTRY(test_expire_marks_only_pending_uploads_past_their_expiry),
          TEST_ENTRY(test_lease_is_exclusive_renewable_and_taken_over_after_it_ends),
          TEST_ENTRY(test_sweep_on_the_file_backend),
          TEST_ENTRY(test_sweep_on_s3_lists_every_page))
