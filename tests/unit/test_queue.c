/* test_queue.c - jobs and the job queue of the store (SQLite, or PostgreSQL
 * with VOXD_TEST_STORE_URL): submit with its
 * hold, idempotency, claim/heartbeat/succeed/fail/release/reap with leases,
 * cancel, listings, the jobs of live streams (open, record, reaped with a
 * capture), the ledger staying consistent under concurrency, and
 * (PostgreSQL) the cross-process job wake-ups. */
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "../../src/store/store.h"
#include "../../src/util/clock.h"
#include "../../src/util/crypto.h"
#include "test.h"

#define T0 INT64_C(1700000000000)
#define LEASE 30000

static char dir[64];
static char store_url_used[256]; /* the URL setup opened, for a second handle */
static vx_store *st;
static vx_user user;

/* VOXD_TEST_STORE_URL (a postgres:// URL, see scripts/with_postgres.sh) runs
 * these tests against that server, each setup in a fresh schema; unset, a
 * SQLite file at sqlite_path. */
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

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    return remove(path);
}

/* A fresh store with one user holding `credits`. */
static int setup(int64_t credits) {
    vx_crypto_init();
    snprintf(dir, sizeof dir, "/tmp/voxd-queue-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    char url[256], path[128];
    snprintf(path, sizeof path, "%s/voxd.db", dir);
    store_url(url, sizeof url, path);
    snprintf(store_url_used, sizeof store_url_used, "%s", url);
    vx_err err;
    if (!(st = vx_store_open(url, &err))) return -1;
    memset(&user, 0, sizeof user);
    vx_id_new(user.id, "usr");
    snprintf(user.username, sizeof user.username, "worker-test");
    snprintf(user.role, sizeof user.role, "user");
    snprintf(user.password_hash, sizeof user.password_hash, "x");
    user.created_at = T0;
    return st->ops->user_create(st, &user, credits, &err);
}

static void teardown(void) {
    vx_store_close(st);
    st = NULL;
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static vx_balance balance(void) {
    vx_balance b = {-1, -1};
    vx_err err;
    st->ops->balance_get(st, user.id, &b, &err);
    return b;
}

static bool audit_ok(void) {
    bool ok = false;
    vx_err err;
    return st->ops->ledger_audit(st, user.id, NULL, &ok, &err) == 0 && ok;
}

/* A job of `held` credits; id "job_<seq>" so that submission order is id order. */
static vx_job make_job(int seq, int64_t held, const char *idem) {
    vx_job j = {0};
    snprintf(j.id, sizeof j.id, "job_%026d", seq);
    snprintf(j.user_id, sizeof j.user_id, "%s", user.id);
    snprintf(j.model, sizeof j.model, "%s", seq % 2 ? "convert" : "loudness");
    j.max_attempts = 3;
    j.created_at = T0 + seq;
    j.price_per_job = held;
    j.held = held;
    j.duration_s = 1.5;
    j.params_json = "{\"format\":\"wav\"}";
    snprintf(j.input_key, sizeof j.input_key, "inputs/%s", j.id);
    snprintf(j.input_name, sizeof j.input_name, "a.wav");
    snprintf(j.input_content_type, sizeof j.input_content_type, "audio/wav");
    j.input_bytes = 1234;
    snprintf(j.input_format, sizeof j.input_format, "wav");
    if (idem) snprintf(j.idempotency_key, sizeof j.idempotency_key, "%s", idem);
    snprintf(j.request_hash, sizeof j.request_hash, "hash-%d", seq);
    return j;
}

static int submit(int seq, int64_t held, vx_err *err) {
    vx_job j = make_job(seq, held, NULL), existing = {0};
    int rc = st->ops->job_submit(st, &j, &existing, err);
    vx_job_clear(&existing);
    return rc;
}

static vx_job_status status_of(const char *id) {
    vx_job j;
    vx_err err;
    if (st->ops->job_get(st, id, &j, &err) != 0) return (vx_job_status)-1;
    vx_job_status s = j.status;
    vx_job_clear(&j);
    return s;
}

static void test_submit_places_the_hold_atomically(void) {
    REQUIRE(setup(1000) == 0);
    vx_err err;
    CHECK_EQ_INT(submit(1, 300, &err), 0);
    vx_balance b = balance();
    CHECK_EQ_INT(b.available, 700);
    CHECK_EQ_INT(b.held, 300);
    CHECK(audit_ok());
    vx_job j;
    REQUIRE(st->ops->job_get(st, "job_00000000000000000000000001", &j, &err) == 0);
    CHECK_EQ_INT(j.status, VX_JOB_QUEUED);
    CHECK_EQ_INT(j.held, 300);
    CHECK_EQ_INT(j.attempts, 0);
    CHECK_EQ_STR(j.params_json, "{\"format\":\"wav\"}");
    CHECK_EQ_STR(j.input_key, "inputs/job_00000000000000000000000001");
    CHECK_EQ_INT(j.input_bytes, 1234);
    CHECK(j.result_json == NULL && j.error_json == NULL && j.webhook_url == NULL);
    vx_job_clear(&j);
    vx_ledger_entry *e = NULL;
    size_t n = 0;
    REQUIRE(st->ops->ledger_list(st, user.id, NULL, 10, &e, &n, &err) == 0);
    bool found = false;
    for (size_t i = 0; i < n; i++)
        if (e[i].kind == VX_LEDGER_HOLD) {
            found = true;
            CHECK_EQ_INT(e[i].amount, -300);
            CHECK_EQ_INT(e[i].held_delta, 300);
            CHECK_EQ_STR(e[i].ref, "hold:job_00000000000000000000000001");
            CHECK_EQ_STR(e[i].job_id, "job_00000000000000000000000001");
        }
    CHECK(found);
    free(e);
    teardown();
}

static void test_submit_beyond_balance_is_refused_without_a_job_row(void) {
    REQUIRE(setup(100) == 0);
    vx_err err;
    CHECK_EQ_INT(submit(1, 101, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_PAYMENT);
    CHECK_EQ_STR(err.code, "insufficient_credits");
    CHECK_EQ_INT((int)status_of("job_00000000000000000000000001"), -1);
    int64_t counts[VX_JOB_STATUS_COUNT];
    REQUIRE(st->ops->job_counts(st, counts, &err) == 0);
    CHECK_EQ_INT(counts[VX_JOB_QUEUED], 0);
    vx_balance b = balance();
    CHECK_EQ_INT(b.available, 100);
    CHECK_EQ_INT(b.held, 0);
    CHECK(audit_ok());
    teardown();
}

static void test_reused_idempotency_key_conflicts_and_returns_the_existing_job(void) {
    REQUIRE(setup(1000) == 0);
    vx_err err;
    vx_job a = make_job(1, 100, "idem-1"), b = make_job(2, 100, "idem-1"), existing = {0};
    CHECK_EQ_INT(st->ops->job_submit(st, &a, &existing, &err), 0);
    CHECK_EQ_INT(st->ops->job_submit(st, &b, &existing, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_CONFLICT);
    CHECK_EQ_STR(err.code, "idempotency_key_reused");
    CHECK_EQ_STR(existing.id, a.id);
    CHECK_EQ_STR(existing.request_hash, "hash-1");
    vx_job_clear(&existing);
    CHECK_EQ_INT(balance().available, 900);
    /* jobs without a key never collide */
    CHECK_EQ_INT(submit(3, 10, &err), 0);
    CHECK_EQ_INT(submit(4, 10, &err), 0);
    CHECK(audit_ok());
    teardown();
}

static void test_claim_heartbeat_succeed_captures_exactly_once(void) {
    REQUIRE(setup(1000) == 0);
    vx_err err;
    REQUIRE(submit(1, 400, &err) == 0);
    vx_job j;
    REQUIRE(st->ops->job_claim(st, "node-a/w1", T0, LEASE, &j, &err) == 0);
    CHECK_EQ_INT(j.status, VX_JOB_RUNNING);
    CHECK_EQ_INT(j.attempts, 1);
    CHECK_EQ_INT(j.started_at, T0);
    CHECK_EQ_INT(j.lease_until, T0 + LEASE);
    CHECK_EQ_STR(j.lease_owner, "node-a/w1");
    vx_job none;
    CHECK_EQ_INT(st->ops->job_claim(st, "node-a/w2", T0, LEASE, &none, &err), -1);
    CHECK_EQ_STR(err.code, "queue_empty");

    bool cancel = true;
    CHECK_EQ_INT(st->ops->job_heartbeat(st, j.id, "node-a/w1", 1, T0 + 1000, LEASE, 0.5, &cancel, &err), 0);
    CHECK(!cancel);
    CHECK_EQ_INT(st->ops->job_heartbeat(st, j.id, "node-b/w1", 1, T0 + 1000, LEASE, 0.5, &cancel, &err), -1);
    CHECK_EQ_STR(err.code, "lease_lost");

    vx_job done = j;
    done.charged = 250;
    done.result_json = "{\"ok\":true}";
    snprintf(done.output_key, sizeof done.output_key, "outputs/%s.wav", j.id);
    snprintf(done.output_content_type, sizeof done.output_content_type, "audio/wav");
    done.output_bytes = 999;
    CHECK_EQ_INT(st->ops->job_succeed(st, &done, "node-a/w1", T0 + 2000, &err), 0);
    vx_balance b = balance();
    CHECK_EQ_INT(b.available, 750);
    CHECK_EQ_INT(b.held, 0);
    CHECK(audit_ok());
    CHECK_EQ_INT(st->ops->job_succeed(st, &done, "node-a/w1", T0 + 3000, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_CONFLICT);
    CHECK_EQ_STR(err.code, "lease_lost");
    b = balance();
    CHECK_EQ_INT(b.available, 750);
    CHECK_EQ_INT(b.held, 0);
    CHECK_EQ_INT(st->ops->job_heartbeat(st, j.id, "node-a/w1", 1, T0 + 3000, LEASE, 0.9, &cancel, &err), -1);

    vx_job after;
    REQUIRE(st->ops->job_get(st, j.id, &after, &err) == 0);
    CHECK_EQ_INT(after.status, VX_JOB_SUCCEEDED);
    CHECK_EQ_INT(after.charged, 250);
    CHECK(after.progress == 1.0);
    CHECK_EQ_INT(after.finished_at, T0 + 2000);
    CHECK_EQ_STR(after.result_json, "{\"ok\":true}");
    CHECK_EQ_STR(after.output_key, done.output_key);
    CHECK_EQ_INT(after.output_bytes, 999);
    vx_job_clear(&after);
    vx_job_clear(&j);
    teardown();
}

static void test_succeed_charging_more_than_the_hold_is_refused(void) {
    REQUIRE(setup(1000) == 0);
    vx_err err;
    REQUIRE(submit(1, 100, &err) == 0);
    vx_job j;
    REQUIRE(st->ops->job_claim(st, "w", T0, LEASE, &j, &err) == 0);
    vx_job done = j;
    done.charged = 101;
    CHECK_EQ_INT(st->ops->job_succeed(st, &done, "w", T0 + 1, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_INVALID);
    CHECK_EQ_INT(status_of(j.id), VX_JOB_RUNNING);
    CHECK_EQ_INT(balance().held, 100);
    done.charged = 100;
    CHECK_EQ_INT(st->ops->job_succeed(st, &done, "w", T0 + 2, &err), 0);
    CHECK_EQ_INT(balance().available, 900);
    CHECK(audit_ok());
    vx_job_clear(&j);
    teardown();
}

static int error_count(const char *id, char *last_code, size_t cap) {
    vx_job j;
    vx_err err;
    if (st->ops->job_get(st, id, &j, &err) != 0) return -1;
    json_t *arr = j.error_json ? json_loads(j.error_json, 0, NULL) : NULL;
    int n = arr ? (int)json_array_size(arr) : 0;
    if (n > 0 && last_code) {
        json_t *o = json_array_get(arr, (size_t)n - 1);
        snprintf(last_code, cap, "%s", json_string_value(json_object_get(o, "code")));
        if (!json_is_integer(json_object_get(o, "attempt")) || !json_string_value(json_object_get(o, "at")))
            n = -2;
    }
    json_decref(arr);
    vx_job_clear(&j);
    return n;
}

static void test_fail_with_retry_requeues_after_run_after_and_final_fail_releases(void) {
    REQUIRE(setup(1000) == 0);
    vx_err err;
    REQUIRE(submit(1, 200, &err) == 0);
    vx_job j;
    REQUIRE(st->ops->job_claim(st, "w", T0, LEASE, &j, &err) == 0);
    CHECK_EQ_INT(st->ops->job_fail(st, j.id, "w", 1, "decode_failed", "bad frame", T0 + 5000, false,
                                   T0 + 10, &err), 0);
    char code[64] = "";
    CHECK_EQ_INT(error_count(j.id, code, sizeof code), 1);
    CHECK_EQ_STR(code, "decode_failed");
    CHECK_EQ_INT(status_of(j.id), VX_JOB_QUEUED);
    CHECK_EQ_INT(balance().held, 200);
    vx_job_clear(&j);
    CHECK_EQ_INT(st->ops->job_claim(st, "w", T0 + 4999, LEASE, &j, &err), -1);
    CHECK_EQ_STR(err.code, "queue_empty");
    REQUIRE(st->ops->job_claim(st, "w", T0 + 5000, LEASE, &j, &err) == 0);
    CHECK_EQ_INT(j.attempts, 2);
    /* a stale attempt number is not ours */
    CHECK_EQ_INT(st->ops->job_fail(st, j.id, "w", 1, "x", "y", 0, false, T0 + 5001, &err), -1);
    CHECK_EQ_STR(err.code, "lease_lost");
    CHECK_EQ_INT(st->ops->job_fail(st, j.id, "w", 2, "model_error", "it broke", 0, false, T0 + 5002, &err), 0);
    CHECK_EQ_INT(status_of(j.id), VX_JOB_FAILED);
    CHECK_EQ_INT(error_count(j.id, code, sizeof code), 2);
    CHECK_EQ_STR(code, "model_error");
    vx_balance b = balance();
    CHECK_EQ_INT(b.available, 1000);
    CHECK_EQ_INT(b.held, 0);
    CHECK(audit_ok());
    vx_job_clear(&j);
    teardown();
}

static void test_cancel_queued_releases_running_sets_flag_finished_conflicts(void) {
    REQUIRE(setup(1000) == 0);
    vx_err err;
    REQUIRE(submit(1, 100, &err) == 0);
    REQUIRE(submit(2, 100, &err) == 0);
    vx_job out;
    CHECK_EQ_INT(st->ops->job_cancel(st, "job_00000000000000000000000002", T0 + 1, &out, &err), 0);
    CHECK_EQ_INT(out.status, VX_JOB_CANCELED);
    CHECK_EQ_INT(out.finished_at, T0 + 1);
    vx_job_clear(&out);
    CHECK_EQ_INT(balance().available, 900);
    CHECK(audit_ok());
    CHECK_EQ_INT(st->ops->job_cancel(st, "job_00000000000000000000000002", T0 + 2, &out, &err), -1);
    CHECK_EQ_STR(err.code, "job_finished");

    vx_job j;
    REQUIRE(st->ops->job_claim(st, "w", T0, LEASE, &j, &err) == 0);
    CHECK_EQ_STR(j.id, "job_00000000000000000000000001");
    CHECK_EQ_INT(st->ops->job_cancel(st, j.id, T0 + 3, &out, &err), 0);
    CHECK_EQ_INT(out.status, VX_JOB_RUNNING);
    CHECK(out.cancel_requested);
    vx_job_clear(&out);
    bool cancel = false;
    CHECK_EQ_INT(st->ops->job_heartbeat(st, j.id, "w", 1, T0 + 4, LEASE, 0.2, &cancel, &err), 0);
    CHECK(cancel);
    CHECK_EQ_INT(st->ops->job_fail(st, j.id, "w", 1, "canceled", "canceled by the user", 0, true, T0 + 5, &err), 0);
    CHECK_EQ_INT(status_of(j.id), VX_JOB_CANCELED);
    vx_balance b = balance();
    CHECK_EQ_INT(b.available, 1000);
    CHECK_EQ_INT(b.held, 0);
    CHECK(audit_ok());
    CHECK_EQ_INT(st->ops->job_cancel(st, "job_missing", T0, &out, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_NOT_FOUND);
    vx_job_clear(&j);
    teardown();
}

static void test_reap_requeues_expired_lease_with_backoff_then_fails_and_releases(void) {
    REQUIRE(setup(1000) == 0);
    vx_err err;
    REQUIRE(submit(1, 300, &err) == 0);
    int requeued = -1, failed = -1;
    int64_t now = T0;
    for (int attempt = 1; attempt <= 3; attempt++) {
        vx_job j;
        REQUIRE(st->ops->job_claim(st, "w", now, LEASE, &j, &err) == 0);
        CHECK_EQ_INT(j.attempts, attempt);
        /* not expired yet: nothing to reap */
        CHECK_EQ_INT(st->ops->job_reap(st, now + LEASE - 1, NULL, 1000, &requeued, &failed, &err), 0);
        CHECK_EQ_INT(requeued + failed, 0);
        now += LEASE + 1;
        CHECK_EQ_INT(st->ops->job_reap(st, now, NULL, 1000, &requeued, &failed, &err), 0);
        vx_job after;
        REQUIRE(st->ops->job_get(st, j.id, &after, &err) == 0);
        if (attempt < 3) {
            CHECK_EQ_INT(requeued, 1);
            CHECK_EQ_INT(failed, 0);
            CHECK_EQ_INT(after.status, VX_JOB_QUEUED);
            CHECK_EQ_INT(after.run_after, now + 1000 * (INT64_C(1) << (attempt - 1)));
            CHECK_EQ_STR(after.lease_owner, "");
            now = after.run_after;
        } else {
            CHECK_EQ_INT(requeued, 0);
            CHECK_EQ_INT(failed, 1);
            CHECK_EQ_INT(after.status, VX_JOB_FAILED);
        }
        vx_job_clear(&after);
        /* the dead worker's late report changes nothing */
        vx_job done = j;
        CHECK_EQ_INT(st->ops->job_succeed(st, &done, "w", now, &err), -1);
        vx_job_clear(&j);
    }
    char code[64] = "";
    CHECK_EQ_INT(error_count("job_00000000000000000000000001", code, sizeof code), 3);
    CHECK_EQ_STR(code, "lease_expired");
    vx_balance b = balance();
    CHECK_EQ_INT(b.available, 1000);
    CHECK_EQ_INT(b.held, 0);
    CHECK(audit_ok());
    teardown();
}

static void test_reap_by_owner_prefix_reclaims_only_this_nodes_live_leases(void) {
    REQUIRE(setup(1000) == 0);
    vx_err err;
    REQUIRE(submit(1, 10, &err) == 0);
    REQUIRE(submit(2, 10, &err) == 0);
    vx_job a, b;
    REQUIRE(st->ops->job_claim(st, "node-a/w1", T0, LEASE, &a, &err) == 0);
    REQUIRE(st->ops->job_claim(st, "node-b/w1", T0, LEASE, &b, &err) == 0);
    int requeued = -1, failed = -1;
    CHECK_EQ_INT(st->ops->job_reap(st, T0 + 1, "node-a/", 0, &requeued, &failed, &err), 0);
    CHECK_EQ_INT(requeued, 1);
    CHECK_EQ_INT(failed, 0);
    CHECK_EQ_INT(status_of(a.id), VX_JOB_QUEUED);
    CHECK_EQ_INT(status_of(b.id), VX_JOB_RUNNING);
    /* an empty prefix does not mean "everyone" */
    CHECK_EQ_INT(st->ops->job_reap(st, T0 + 1, "", 0, &requeued, &failed, &err), 0);
    CHECK_EQ_INT(requeued, 0);
    CHECK_EQ_INT(status_of(b.id), VX_JOB_RUNNING);
    vx_job_clear(&a);
    vx_job_clear(&b);
    CHECK(audit_ok());
    teardown();
}

static void test_release_returns_the_job_without_counting_the_attempt(void) {
    REQUIRE(setup(1000) == 0);
    vx_err err;
    REQUIRE(submit(1, 10, &err) == 0);
    vx_job j;
    REQUIRE(st->ops->job_claim(st, "w", T0, LEASE, &j, &err) == 0);
    CHECK_EQ_INT(st->ops->job_release(st, j.id, "other", 1, T0 + 1, &err), -1);
    CHECK_EQ_STR(err.code, "lease_lost");
    CHECK_EQ_INT(st->ops->job_release(st, j.id, "w", 1, T0 + 1, &err), 0);
    vx_job_clear(&j);
    REQUIRE(st->ops->job_claim(st, "w2", T0 + 2, LEASE, &j, &err) == 0);
    CHECK_EQ_INT(j.attempts, 1);
    CHECK_EQ_INT(j.started_at, T0);
    vx_job_clear(&j);
    teardown();
}

static void test_claim_takes_the_oldest_ready_job_and_lists_filter_and_page(void) {
    REQUIRE(setup(100000) == 0);
    vx_err err;
    for (int i = 1; i <= 6; i++) REQUIRE(submit(i, 10, &err) == 0);
    vx_job j;
    REQUIRE(st->ops->job_claim(st, "w", T0, LEASE, &j, &err) == 0);
    CHECK_EQ_STR(j.id, "job_00000000000000000000000001");
    vx_job_clear(&j);

    vx_job_filter f = {.user_id = user.id, .status = -1, .limit = 4};
    vx_job *list = NULL;
    size_t n = 0;
    CHECK_EQ_INT(st->ops->job_list(st, &f, &list, &n, &err), 0);
    REQUIRE(n == 4);
    CHECK_EQ_STR(list[0].id, "job_00000000000000000000000006");
    CHECK_EQ_STR(list[3].id, "job_00000000000000000000000003");
    char cursor[VX_ID_SIZE];
    snprintf(cursor, sizeof cursor, "%s", list[3].id);
    vx_job_list_free(list, n);
    f.cursor = cursor;
    CHECK_EQ_INT(st->ops->job_list(st, &f, &list, &n, &err), 0);
    CHECK_EQ_INT(n, 2);
    vx_job_list_free(list, n);

    vx_job_filter by_model = {.user_id = user.id, .model = "convert", .status = -1, .limit = 50};
    CHECK_EQ_INT(st->ops->job_list(st, &by_model, &list, &n, &err), 0);
    CHECK_EQ_INT(n, 3);
    vx_job_list_free(list, n);
    vx_job_filter by_status = {.user_id = NULL, .status = VX_JOB_RUNNING, .limit = 50};
    CHECK_EQ_INT(st->ops->job_list(st, &by_status, &list, &n, &err), 0);
    REQUIRE(n == 1);
    CHECK_EQ_STR(list[0].id, "job_00000000000000000000000001");
    vx_job_list_free(list, n);
    vx_job_filter other = {.user_id = "usr_other", .status = -1, .limit = 50};
    CHECK_EQ_INT(st->ops->job_list(st, &other, &list, &n, &err), 0);
    CHECK_EQ_INT(n, 0);

    int64_t counts[VX_JOB_STATUS_COUNT];
    REQUIRE(st->ops->job_counts(st, counts, &err) == 0);
    CHECK_EQ_INT(counts[VX_JOB_QUEUED], 5);
    CHECK_EQ_INT(counts[VX_JOB_RUNNING], 1);
    CHECK_EQ_INT(counts[VX_JOB_SUCCEEDED], 0);
    teardown();
}

/* ---- concurrency ---------------------------------------------------------- */

#define CLAIM_JOBS 200
#define CLAIMERS 8

static int claimed_by[CLAIM_JOBS + 1];
static int claims_total;
static pthread_mutex_t claimed_mu = PTHREAD_MUTEX_INITIALIZER;

static void *claimer(void *arg) {
    int me = (int)(intptr_t)arg;
    char worker[32];
    snprintf(worker, sizeof worker, "w%d", me);
    for (;;) {
        vx_job j;
        vx_err err;
        if (st->ops->job_claim(st, worker, T0 + 10, LEASE, &j, &err) != 0) {
            if (err.status == VX_E_NOT_FOUND) break;
            continue;
        }
        int seq = atoi(j.id + 4);
        pthread_mutex_lock(&claimed_mu);
        if (seq >= 1 && seq <= CLAIM_JOBS) claimed_by[seq]++;
        bool enough = ++claims_total >= 2 * CLAIM_JOBS; /* bounds a broken queue */
        pthread_mutex_unlock(&claimed_mu);
        vx_job done = j;
        done.charged = 1;
        st->ops->job_succeed(st, &done, worker, T0 + 20, &err);
        vx_job_clear(&j);
        if (enough) break;
    }
    return NULL;
}

static void test_eight_threads_claim_two_hundred_jobs_each_exactly_once(void) {
    REQUIRE(setup(CLAIM_JOBS * 10) == 0);
    vx_err err;
    for (int i = 1; i <= CLAIM_JOBS; i++) REQUIRE(submit(i, 10, &err) == 0);
    memset(claimed_by, 0, sizeof claimed_by);
    claims_total = 0;
    pthread_t t[CLAIMERS];
    for (int i = 0; i < CLAIMERS; i++) pthread_create(&t[i], NULL, claimer, (void *)(intptr_t)i);
    for (int i = 0; i < CLAIMERS; i++) pthread_join(t[i], NULL);
    int once = 0;
    for (int i = 1; i <= CLAIM_JOBS; i++) once += claimed_by[i] == 1;
    CHECK_EQ_INT(once, CLAIM_JOBS);
    int64_t counts[VX_JOB_STATUS_COUNT];
    REQUIRE(st->ops->job_counts(st, counts, &err) == 0);
    CHECK_EQ_INT(counts[VX_JOB_SUCCEEDED], CLAIM_JOBS);
    vx_balance b = balance();
    CHECK_EQ_INT(b.available, CLAIM_JOBS * 9);
    CHECK_EQ_INT(b.held, 0);
    CHECK(audit_ok());
    teardown();
}

#define SUBMITS 150
#define AFFORDABLE 100
#define PRICE 1000

static int submit_ok, submit_payment, submit_other;

static void *submitter(void *arg) {
    int seq = (int)(intptr_t)arg;
    vx_err err;
    vx_job j = make_job(seq, PRICE, NULL);
    vx_id_new(j.id, "job");
    vx_job existing = {0};
    int rc = st->ops->job_submit(st, &j, &existing, &err);
    vx_job_clear(&existing);
    pthread_mutex_lock(&claimed_mu);
    if (rc == 0) submit_ok++;
    else if (err.status == VX_E_PAYMENT) submit_payment++;
    else submit_other++;
    pthread_mutex_unlock(&claimed_mu);
    return NULL;
}

static void test_concurrent_submits_beyond_credit_accept_exactly_what_fits(void) {
    REQUIRE(setup(AFFORDABLE * PRICE) == 0);
    submit_ok = submit_payment = submit_other = 0;
    pthread_t t[SUBMITS];
    for (int i = 0; i < SUBMITS; i++) pthread_create(&t[i], NULL, submitter, (void *)(intptr_t)(i + 1));
    for (int i = 0; i < SUBMITS; i++) pthread_join(t[i], NULL);
    CHECK_EQ_INT(submit_ok, AFFORDABLE);
    CHECK_EQ_INT(submit_payment, SUBMITS - AFFORDABLE);
    CHECK_EQ_INT(submit_other, 0);
    vx_balance b = balance();
    CHECK_EQ_INT(b.available, 0);
    CHECK_EQ_INT(b.held, AFFORDABLE * PRICE);
    CHECK(audit_ok());
    vx_err err;
    int64_t counts[VX_JOB_STATUS_COUNT];
    REQUIRE(st->ops->job_counts(st, counts, &err) == 0);
    CHECK_EQ_INT(counts[VX_JOB_QUEUED], AFFORDABLE);
    teardown();
}

#define SAME_KEY 8

typedef struct keyed { int seq, rc; vx_status status; char existing_id[VX_ID_SIZE]; } keyed;

static void *keyed_submitter(void *arg) {
    keyed *k = arg;
    vx_err err;
    vx_job j = make_job(k->seq, PRICE, "same-key"), existing = {0};
    k->rc = st->ops->job_submit(st, &j, &existing, &err);
    k->status = k->rc ? err.status : VX_OK;
    snprintf(k->existing_id, sizeof k->existing_id, "%s", existing.id);
    vx_job_clear(&existing);
    return NULL;
}

/* Racing retries of one request: one job and one hold, every other submit
 * sees that job as the existing one. */
static void test_concurrent_submits_with_one_idempotency_key_create_one_job(void) {
    REQUIRE(setup(SAME_KEY * PRICE) == 0);
    keyed k[SAME_KEY];
    pthread_t t[SAME_KEY];
    for (int i = 0; i < SAME_KEY; i++) {
        k[i] = (keyed){.seq = i + 1};
        pthread_create(&t[i], NULL, keyed_submitter, &k[i]);
    }
    for (int i = 0; i < SAME_KEY; i++) pthread_join(t[i], NULL);
    int ok = 0, winner = -1;
    for (int i = 0; i < SAME_KEY; i++)
        if (k[i].rc == 0) ok++, winner = k[i].seq;
    REQUIRE(ok == 1);
    char winner_id[VX_ID_SIZE];
    snprintf(winner_id, sizeof winner_id, "job_%026d", winner);
    for (int i = 0; i < SAME_KEY; i++) {
        if (k[i].rc == 0) continue;
        CHECK_EQ_INT(k[i].status, VX_E_CONFLICT);
        CHECK_EQ_STR(k[i].existing_id, winner_id);
    }
    vx_balance b = balance();
    CHECK_EQ_INT(b.held, PRICE);
    CHECK(audit_ok());
    teardown();
}

/* ---- job wake-ups (LISTEN/NOTIFY) ---- */

static pthread_mutex_t wake_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cv = PTHREAD_COND_INITIALIZER;
static int wakes;
static int64_t last_wake_ms;

static void on_wake(void *unused) {
    pthread_mutex_lock(&wake_mu);
    wakes++;
    last_wake_ms = vx_now_ms();
    pthread_cond_broadcast(&wake_cv);
    pthread_mutex_unlock(&wake_mu);
}

/* Waits (at most 10 s, a hang guard) for a wake-up after `seen`; returns the count. */
static int wait_wake(int seen) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    pthread_mutex_lock(&wake_mu);
    while (wakes <= seen && pthread_cond_timedwait(&wake_cv, &wake_mu, &ts) == 0) {
    }
    int n = wakes;
    pthread_mutex_unlock(&wake_mu);
    return n;
}

static void test_job_listener_wakes_on_another_handles_submit_and_at_a_retrys_due_time(void) {
    REQUIRE(setup(1000) == 0);
    if (!st->ops->job_listen) {
        /* SQLite: no cross-process signal; the worker pool polls instead. */
        CHECK(strncmp(store_url_used, "sqlite://", 9) == 0);
        teardown();
        return;
    }
    vx_err err;
    vx_store *other = vx_store_open(store_url_used, &err);
    REQUIRE(other != NULL);
    wakes = 0;
    REQUIRE(st->ops->job_listen(st, on_wake, NULL, &err) == 0);
    int n = wait_wake(0); /* the wake-up every (re)connect gives */
    CHECK_EQ_INT(n, 1);
    /* a job queued through another connection (another process) */
    vx_job j = make_job(1, 100, NULL), existing = {0};
    REQUIRE(other->ops->job_submit(other, &j, &existing, &err) == 0);
    n = wait_wake(n);
    CHECK_EQ_INT(n, 2);
    /* a retry due later wakes when it is due, not before */
    vx_job c;
    REQUIRE(other->ops->job_claim(other, "w", T0 + 10, LEASE, &c, &err) == 0);
    int64_t due = vx_now_ms() + 400;
    REQUIRE(other->ops->job_fail(other, c.id, "w", 1, "io", "flaky", due, false, T0 + 20, &err) == 0);
    n = wait_wake(n);
    CHECK_EQ_INT(n, 3);
    pthread_mutex_lock(&wake_mu);
    int64_t at = last_wake_ms;
    pthread_mutex_unlock(&wake_mu);
    CHECK(at >= due);
    /* stopped: no call after it returns */
    REQUIRE(st->ops->job_listen(st, NULL, NULL, &err) == 0);
    vx_job j2 = make_job(2, 100, NULL);
    REQUIRE(other->ops->job_submit(other, &j2, &existing, &err) == 0);
    vx_job_clear(&c);
    vx_job_clear(&existing);
    vx_store_close(other);
    pthread_mutex_lock(&wake_mu);
    CHECK_EQ_INT(wakes, 3);
    pthread_mutex_unlock(&wake_mu);
    teardown();
}

static void test_a_job_held_back_at_submit_becomes_claimable_only_when_ready(void) {
    REQUIRE(setup(1000) == 0);
    if (!st->ops->job_ready) {
        CHECK(strncmp(store_url_used, "sqlite://", 9) == 0); /* in-process ordering needs no hold-back */
        teardown();
        return;
    }
    vx_err err;
    vx_job j = make_job(1, 100, NULL), existing = {0}, c = {0};
    j.run_after = T0 + 30000;
    REQUIRE(st->ops->job_submit(st, &j, &existing, &err) == 0);
    CHECK_EQ_INT(st->ops->job_claim(st, "w", T0 + 5, LEASE, &c, &err), -1);
    CHECK_EQ_STR(err.code, "queue_empty");
    REQUIRE(st->ops->job_ready(st, j.id, T0 + 5, &err) == 0);
    REQUIRE(st->ops->job_claim(st, "w", T0 + 5, LEASE, &c, &err) == 0);
    CHECK_EQ_STR(c.id, j.id);
    /* no effect on a job that is no longer queued */
    CHECK_EQ_INT(st->ops->job_ready(st, j.id, T0 + 6, &err), 0);
    CHECK_EQ_INT(status_of(j.id), VX_JOB_RUNNING);
    vx_job_clear(&c);
    vx_job_clear(&existing);
    teardown();
}

/* ---- live streams' jobs (issue 4) ---- */

static vx_job stream_job(int seq, int64_t held, const char *owner, int64_t lease_until) {
    vx_job j = make_job(seq, held, NULL);
    j.max_attempts = 1;
    j.input_key[0] = '\0';
    snprintf(j.input_format, sizeof j.input_format, "%s", VX_JOB_STREAM_FORMAT);
    snprintf(j.lease_owner, sizeof j.lease_owner, "%s", owner);
    j.lease_until = lease_until;
    return j;
}

static void test_stream_opens_running_with_its_hold_and_records_more_holds(void) {
    REQUIRE(setup(1000) == 0);
    vx_err err;
    vx_job j = stream_job(1, 300, "n1/b/stream", T0 + LEASE);
    REQUIRE(st->ops->stream_open(st, &j, &err) == 0);
    vx_job got;
    REQUIRE(st->ops->job_get(st, j.id, &got, &err) == 0);
    CHECK_EQ_INT(got.status, VX_JOB_RUNNING);
    CHECK_EQ_INT(got.attempts, 1);
    CHECK_EQ_STR(got.lease_owner, "n1/b/stream");
    CHECK_EQ_INT(got.started_at, j.created_at);
    vx_job_clear(&got);
    CHECK_EQ_INT(balance().available, 700);
    /* more hold, seconds and charge so far */
    CHECK_EQ_INT(st->ops->stream_record(st, j.id, "n1/b/stream", 12.5, 350, 200, T0 + 5000, LEASE, &err), 0);
    REQUIRE(st->ops->job_get(st, j.id, &got, &err) == 0);
    CHECK_EQ_INT(got.held, 500);
    CHECK_EQ_INT(got.charged, 350);
    CHECK(got.duration_s == 12.5);
    CHECK_EQ_INT(got.lease_until, T0 + 5000 + LEASE);
    vx_job_clear(&got);
    vx_balance b = balance();
    CHECK_EQ_INT(b.available, 500);
    CHECK_EQ_INT(b.held, 500);
    /* a hold beyond the balance changes nothing */
    CHECK(st->ops->stream_record(st, j.id, "n1/b/stream", 20, 400, 501, T0 + 6000, LEASE, &err) != 0);
    CHECK_EQ_STR(err.code, "insufficient_credits");
    CHECK(st->ops->stream_record(st, j.id, "n1/b/stream", 20, 501, 0, T0 + 6000, LEASE, &err) != 0);
    CHECK_EQ_STR(err.code, "charge_exceeds_hold");
    CHECK(st->ops->stream_record(st, j.id, "other", 20, 400, 0, T0 + 6000, LEASE, &err) != 0);
    CHECK_EQ_STR(err.code, "lease_lost");
    REQUIRE(st->ops->job_get(st, j.id, &got, &err) == 0);
    CHECK_EQ_INT(got.held, 500);
    CHECK(got.duration_s == 12.5);
    vx_job_clear(&got);
    /* settled once: capture of the charge, the rest released */
    vx_job done = {.attempts = 1, .charged = 420, .result_json = "{\"text\":\"hi\"}"};
    snprintf(done.id, sizeof done.id, "%s", j.id);
    CHECK_EQ_INT(st->ops->job_succeed(st, &done, "n1/b/stream", T0 + 7000, &err), 0);
    b = balance();
    CHECK_EQ_INT(b.available, 580);
    CHECK_EQ_INT(b.held, 0);
    CHECK(audit_ok());
    teardown();
}

static void test_stream_open_beyond_the_balance_writes_nothing(void) {
    REQUIRE(setup(100) == 0);
    vx_err err;
    vx_job j = stream_job(1, 101, "n1/b/stream", T0 + LEASE);
    CHECK(st->ops->stream_open(st, &j, &err) != 0);
    CHECK_EQ_STR(err.code, "insufficient_credits");
    CHECK(st->ops->job_get(st, j.id, &j, &err) != 0);
    CHECK_EQ_INT(balance().available, 100);
    CHECK(audit_ok());
    teardown();
}

static void test_reaper_settles_a_lost_stream_with_its_recorded_charge(void) {
    REQUIRE(setup(1000) == 0);
    vx_err err;
    vx_job j = stream_job(1, 300, "n1/b/stream", T0 + LEASE);
    REQUIRE(st->ops->stream_open(st, &j, &err) == 0);
    REQUIRE(st->ops->stream_record(st, j.id, "n1/b/stream", 3.0, 120, 0, T0 + 1000, LEASE, &err) == 0);
    int requeued = -1, failed = -1;
    /* not expired yet */
    REQUIRE(st->ops->job_reap(st, T0 + 2000, NULL, 1000, &requeued, &failed, &err) == 0);
    CHECK_EQ_INT(status_of(j.id), VX_JOB_RUNNING);
    REQUIRE(st->ops->job_reap(st, T0 + 1000 + LEASE + 1, NULL, 1000, &requeued, &failed, &err) == 0);
    CHECK_EQ_INT(requeued, 0);
    CHECK_EQ_INT(failed, 1);
    vx_job got;
    REQUIRE(st->ops->job_get(st, j.id, &got, &err) == 0);
    CHECK_EQ_INT(got.status, VX_JOB_FAILED);
    CHECK_EQ_INT(got.charged, 120);
    CHECK(got.error_json && strstr(got.error_json, "lease_expired"));
    vx_job_clear(&got);
    vx_balance b = balance();
    CHECK_EQ_INT(b.available, 880);
    CHECK_EQ_INT(b.held, 0);
    CHECK(audit_ok());
    /* exactly one settlement */
    REQUIRE(st->ops->job_reap(st, T0 + 10 * LEASE, NULL, 1000, &requeued, &failed, &err) == 0);
    CHECK_EQ_INT(failed, 0);
    CHECK_EQ_INT(balance().available, 880);
    teardown();
}

TEST_MAIN(TEST_ENTRY(test_submit_places_the_hold_atomically),
          TEST_ENTRY(test_submit_beyond_balance_is_refused_without_a_job_row),
          TEST_ENTRY(test_reused_idempotency_key_conflicts_and_returns_the_existing_job),
          TEST_ENTRY(test_claim_heartbeat_succeed_captures_exactly_once),
          TEST_ENTRY(test_succeed_charging_more_than_the_hold_is_refused),
          TEST_ENTRY(test_fail_with_retry_requeues_after_run_after_and_final_fail_releases),
          TEST_ENTRY(test_cancel_queued_releases_running_sets_flag_finished_conflicts),
          TEST_ENTRY(test_reap_requeues_expired_lease_with_backoff_then_fails_and_releases),
          TEST_ENTRY(test_reap_by_owner_prefix_reclaims_only_this_nodes_live_leases),
          TEST_ENTRY(test_release_returns_the_job_without_counting_the_attempt),
          TEST_ENTRY(test_claim_takes_the_oldest_ready_job_and_lists_filter_and_page),
          TEST_ENTRY(test_eight_threads_claim_two_hundred_jobs_each_exactly_once),
          TEST_ENTRY(test_concurrent_submits_beyond_credit_accept_exactly_what_fits),
          TEST_ENTRY(test_concurrent_submits_with_one_idempotency_key_create_one_job),
          TEST_ENTRY(test_job_listener_wakes_on_another_handles_submit_and_at_a_retrys_due_time),
          TEST_ENTRY(test_a_job_held_back_at_submit_becomes_claimable_only_when_ready),
          TEST_ENTRY(test_stream_opens_running_with_its_hold_and_records_more_holds),
          TEST_ENTRY(test_stream_open_beyond_the_balance_writes_nothing),
          TEST_ENTRY(test_reaper_settles_a_lost_stream_with_its_recorded_charge))
