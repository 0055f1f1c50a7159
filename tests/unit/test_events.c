/* test_events.c - core/events.c, bus/local.c and the event/webhook hooks of
 * the SQLite store: ids strictly increase and "after id" replays without
 * gaps or duplicates, live subscribers see events in id order even with
 * concurrent emitters, the progress throttle, job states as events, a real
 * job's emission order (queued, started, progress..., succeeded), webhook
 * deliveries planned per matching endpoint and their claim/record/
 * redeliver/purge life cycle. Real SQLite store in a mkdtemp dir. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "bus/bus.h"
#include "core/accounts.h"
#include "core/events.h"
#include "core/jobs.h"
#include "core/webhooks.h"
#include "test.h"
#include "util/clock.h"
#include "util/crypto.h"
#include "worker/worker.h"

typedef struct fixture {
    char dir[64];
    vx_config cfg;
    vx_app app;
    vx_bus *bus;
    vx_events *ev;
    vx_principal alice;
} fixture;

static int setup(fixture *fx) {
    setenv("VOXD_FAST_PASSWORD_HASH", "1", 1);
    vx_crypto_init();
    memset(fx, 0, sizeof *fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/voxd-events-XXXXXX");
    if (!mkdtemp(fx->dir)) return -1;
    vx_config_defaults(&fx->cfg);
    snprintf(fx->cfg.data_dir, sizeof fx->cfg.data_dir, "%s", fx->dir);
    snprintf(fx->cfg.db_url, sizeof fx->cfg.db_url, "sqlite://%s/voxd.db", fx->dir);
    snprintf(fx->cfg.blob_url, sizeof fx->cfg.blob_url, "file://%s/blobs", fx->dir);
    fx->cfg.webhook_max_attempts = 3;
    fx->app.cfg = &fx->cfg;
    snprintf(fx->app.tmp_dir, sizeof fx->app.tmp_dir, "%s/tmp", fx->dir);
    mkdir(fx->app.tmp_dir, 0700);
    vx_err err = {0};
    if (!(fx->app.store = vx_store_open(fx->cfg.db_url, &err))) return -1;
    if (!(fx->app.blob = vx_blob_open(fx->cfg.blob_url, &err))) return -1;
    if (!(fx->bus = vx_bus_open("local:", &err))) return -1;
    if (!(fx->ev = vx_events_new(fx->app.store, fx->bus, &fx->cfg, &err))) return -1;
    if (vx_events_attach(&fx->app, fx->ev, &err) != 0) return -1;
    char pw[64];
    bool created;
    if (vx_accounts_bootstrap(&fx->app, pw, sizeof pw, &created, &err) != 0) return -1;
    return vx_accounts_signup(&fx->app, "alice", "a long enough secret", NULL, &fx->alice.user, &err);
}

static void teardown(fixture *fx) {
    vx_events_detach(&fx->app);
    vx_events_free(fx->ev);
    vx_bus_close(fx->bus);
    if (fx->app.blob) vx_blob_close(fx->app.blob);
    if (fx->app.store) vx_store_close(fx->app.store);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", fx->dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", fx->dir);
}

static json_t *fraction(double f) { return json_pack("{s:f, s:s}", "fraction", f, "stage", "processing"); }

static void test_progress_gate_throttles_to_the_interval(void) {
    vx_progress_gate g = {0};
    CHECK(vx_progress_gate_pass(&g, 1000, 0.1));        /* the first step goes out */
    CHECK(!vx_progress_gate_pass(&g, 1100, 0.2));       /* too soon */
    CHECK(!vx_progress_gate_pass(&g, 1249, 0.3));
    CHECK(vx_progress_gate_pass(&g, 1250, 0.3));        /* interval reached */
    CHECK(!vx_progress_gate_pass(&g, 2000, 0.3));       /* no growth, no event */
    CHECK(!vx_progress_gate_pass(&g, 2000, 0.2));
    CHECK(vx_progress_gate_pass(&g, 2000, 0.31));
    /* 100 steps 100 ms apart (what the pipeline reports) give at most one event per 250 ms */
    vx_progress_gate h = {0};
    int passed = 0;
    for (int i = 0; i < 100; i++) passed += vx_progress_gate_pass(&h, i * 100, (i + 1) / 101.0);
    CHECK_EQ_INT(passed, 34); /* t = 0, 300, 600, ... 9900 */
}

static void test_event_ids_increase_and_replay_after_an_id_has_no_gaps(void) {
    fixture fx;
    REQUIRE(setup(&fx) == 0);
    int64_t ids[20];
    for (int i = 0; i < 20; i++) {
        const char *job = i % 2 ? "job_b" : "job_a";
        ids[i] = vx_events_emit(fx.ev, VX_EV_PROGRESS, job, fx.alice.user.id, NULL, fraction(i / 20.0));
        CHECK(ids[i] > 0);
        if (i) CHECK(ids[i] > ids[i - 1]);
    }
    vx_err err = {0};
    /* resume after the 7th event: the 13 after it, in order, nothing else */
    vx_event_filter f = {.user_id = fx.alice.user.id, .after_id = ids[6], .limit = 500};
    vx_event_rec *evs = NULL;
    size_t n = 0;
    REQUIRE(fx.app.store->ops->event_list(fx.app.store, &f, &evs, &n, &err) == 0);
    CHECK_EQ_INT(n, 13);
    for (size_t i = 0; i < n; i++) CHECK_EQ_INT(evs[i].id, ids[7 + i]);
    vx_event_list_free(evs, n);
    /* paging with a small limit walks the same sequence */
    int64_t after = 0;
    int seen = 0;
    for (;;) {
        vx_event_filter p = {.job_id = "job_a", .after_id = after, .limit = 3};
        REQUIRE(fx.app.store->ops->event_list(fx.app.store, &p, &evs, &n, &err) == 0);
        for (size_t i = 0; i < n; i++, seen++) CHECK_EQ_INT(evs[i].id, ids[2 * seen]);
        if (n) after = evs[n - 1].id;
        vx_event_list_free(evs, n);
        if (n < 3) break;
    }
    CHECK_EQ_INT(seen, 10);
    int64_t last = 0;
    vx_event_filter lf = {.job_id = "job_b"};
    CHECK_EQ_INT(fx.app.store->ops->event_last_id(fx.app.store, &lf, &last, &err), 0);
    CHECK_EQ_INT(last, ids[19]);
    /* a purge does not reuse ids */
    int64_t purged = 0;
    CHECK_EQ_INT(fx.app.store->ops->event_purge(fx.app.store, vx_now_ms() + 1000, &purged, &err), 0);
    CHECK_EQ_INT(purged, 20);
    CHECK(vx_events_emit(fx.ev, VX_EV_QUEUED, "job_c", fx.alice.user.id, NULL, NULL) > ids[19]);
    teardown(&fx);
}

typedef struct seen_log {
    pthread_mutex_t mu;
    int64_t seqs[400];
    int n;
    bool ordered;
} seen_log;

static void record_seq(void *user, const vx_bus_msg *m) {
    seen_log *l = user;
    pthread_mutex_lock(&l->mu);
    if (l->n && m->seq <= l->seqs[l->n - 1]) l->ordered = false;
    if (l->n < 400) l->seqs[l->n++] = m->seq;
    pthread_mutex_unlock(&l->mu);
}

typedef struct emitter { fixture *fx; char job[16]; } emitter;

static void *emit_many(void *arg) {
    emitter *e = arg;
    for (int i = 0; i < 50; i++)
        vx_events_emit(e->fx->ev, VX_EV_PROGRESS, e->job, e->fx->alice.user.id, NULL, fraction(i / 50.0));
    return NULL;
}

static void test_live_subscribers_see_concurrent_emitters_in_id_order(void) {
    fixture fx;
    REQUIRE(setup(&fx) == 0);
    seen_log user_log = {.ordered = true}, job_log = {.ordered = true};
    pthread_mutex_init(&user_log.mu, NULL);
    pthread_mutex_init(&job_log.mu, NULL);
    vx_err err = {0};
    vx_bus_filter uf = {.user_id = fx.alice.user.id}, jf = {.job_id = "job_2"};
    vx_bus_sub *us = vx_bus_subscribe(fx.bus, &uf, record_seq, &user_log, &err);
    vx_bus_sub *js = vx_bus_subscribe(fx.bus, &jf, record_seq, &job_log, &err);
    REQUIRE(us && js);
    vx_bus_filter both = {.user_id = "u", .job_id = "j"};
    CHECK(vx_bus_subscribe(fx.bus, &both, record_seq, &job_log, &err) == NULL);
    pthread_t t[4];
    emitter e[4];
    for (int i = 0; i < 4; i++) {
        e[i].fx = &fx;
        snprintf(e[i].job, sizeof e[i].job, "job_%d", i);
        pthread_create(&t[i], NULL, emit_many, &e[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    vx_bus_unsubscribe(fx.bus, us);
    vx_bus_unsubscribe(fx.bus, js);
    CHECK_EQ_INT(user_log.n, 200);
    CHECK(user_log.ordered);
    CHECK_EQ_INT(job_log.n, 50);
    CHECK(job_log.ordered);
    /* what went out live is exactly what a replay from 0 gives */
    vx_event_filter f = {.user_id = fx.alice.user.id, .limit = 500};
    vx_event_rec *evs = NULL;
    size_t n = 0;
    REQUIRE(fx.app.store->ops->event_list(fx.app.store, &f, &evs, &n, &err) == 0);
    CHECK_EQ_INT(n, 200);
    for (size_t i = 0; i < n && i < (size_t)user_log.n; i++) CHECK_EQ_INT(evs[i].id, user_log.seqs[i]);
    vx_event_list_free(evs, n);
    /* after unsubscribe nothing arrives */
    vx_events_emit(fx.ev, VX_EV_QUEUED, "job_2", fx.alice.user.id, NULL, NULL);
    CHECK_EQ_INT(job_log.n, 50);
    pthread_mutex_destroy(&user_log.mu);
    pthread_mutex_destroy(&job_log.mu);
    teardown(&fx);
}

static void test_job_states_map_to_event_types(void) {
    vx_job j = {.status = VX_JOB_QUEUED};
    snprintf(j.model, sizeof j.model, "convert");
    vx_event_type t;
    json_t *d = vx_events_job_state(&j, &t);
    CHECK_EQ_INT(t, VX_EV_QUEUED);
    json_decref(d);
    j.attempts = 1;
    j.error_json = strdup("[{\"attempt\":1,\"code\":\"boom\",\"message\":\"m\",\"at\":\"x\"}]");
    d = vx_events_job_state(&j, &t);
    CHECK_EQ_INT(t, VX_EV_RETRYING);
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(d, "error"), "code")), "boom");
    json_decref(d);
    j.status = VX_JOB_RUNNING;
    d = vx_events_job_state(&j, &t);
    CHECK_EQ_INT(t, VX_EV_STARTED);
    json_decref(d);
    j.status = VX_JOB_SUCCEEDED;
    j.result_json = strdup("{\"a\":1}");
    d = vx_events_job_state(&j, &t);
    CHECK_EQ_INT(t, VX_EV_SUCCEEDED);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(d, "result"), "a")), 1);
    json_decref(d);
    j.status = VX_JOB_FAILED;
    d = vx_events_job_state(&j, &t);
    CHECK_EQ_INT(t, VX_EV_FAILED);
    json_decref(d);
    j.status = VX_JOB_CANCELED;
    d = vx_events_job_state(&j, &t);
    CHECK_EQ_INT(t, VX_EV_CANCELED);
    CHECK(vx_event_type_terminal(t));
    json_decref(d);
    vx_job_clear(&j);
    int64_t id;
    char text[VX_EVENT_ID_SIZE];
    vx_event_id_format(42, text);
    CHECK_EQ_STR(text, "evt_0000000000000042");
    CHECK(vx_event_id_parse(text, &id) == 0 && id == 42);
    CHECK(vx_event_id_parse("17", &id) == 0 && id == 17);
    CHECK_EQ_INT(vx_event_id_parse("evt_x1", &id), -1);
    CHECK_EQ_INT(vx_event_id_parse("", &id), -1);
    CHECK_EQ_INT(vx_event_id_parse("-3", &id), -1);
}

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

static void test_a_real_job_emits_queued_started_progress_succeeded_in_order(void) {
    fixture fx;
    REQUIRE(setup(&fx) == 0);
    vx_err err = {0};
    vx_workers *w = vx_workers_start(&fx.app, 1, &err);
    REQUIRE(w != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/tmp/spool.wav", fx.dir);
    write_wav(path, 16000, 3.0);
    vx_job_submission s = {.model = "convert", .spool_path = path, .filename = "a.wav", .content_type = "audio/wav",
                           .bytes = 96044, .upload_sha256 = "x"};
    vx_job job = {0};
    bool replayed;
    REQUIRE(vx_jobs_submit(&fx.app, &fx.alice, &s, &job, &replayed, &err) == 0);
    vx_event_rec *evs = NULL;
    size_t n = 0;
    for (int i = 0; i < 600; i++) { /* until the terminal event is stored */
        vx_event_filter f = {.job_id = job.id, .limit = 500};
        vx_event_list_free(evs, n);
        REQUIRE(fx.app.store->ops->event_list(fx.app.store, &f, &evs, &n, &err) == 0);
        if (n && strcmp(evs[n - 1].type, "job.succeeded") == 0) break;
        usleep(20000);
    }
    vx_workers_stop(w, 1000);
    REQUIRE(n >= 4);
    CHECK_EQ_STR(evs[0].type, "job.queued");
    CHECK_EQ_STR(evs[1].type, "job.started");
    for (size_t i = 2; i + 1 < n; i++) CHECK_EQ_STR(evs[i].type, "job.progress");
    CHECK_EQ_STR(evs[n - 1].type, "job.succeeded");
    for (size_t i = 0; i < n; i++) CHECK_EQ_STR(evs[i].user_id, fx.alice.user.id);
    CHECK(strstr(evs[n - 1].data_json, "\"charged\"") != NULL);
    vx_event_list_free(evs, n);
    vx_job_clear(&job);
    teardown(&fx);
}

/* Terminal events of the job, counted from the store. */
static int terminal_events(fixture *fx, const char *job_id) {
    vx_event_rec *evs = NULL;
    size_t n = 0;
    vx_err err = {0};
    vx_event_filter f = {.job_id = job_id, .limit = 500};
    if (fx->app.store->ops->event_list(fx->app.store, &f, &evs, &n, &err) != 0) return -1;
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        vx_event_type t;
        if (vx_event_type_parse(evs[i].type, &t) == 0 && vx_event_type_terminal(t)) count++;
    }
    vx_event_list_free(evs, n);
    return count;
}

static void test_a_job_settled_without_its_event_gets_exactly_one_by_repair(void) {
    fixture fx;
    REQUIRE(setup(&fx) == 0);
    vx_err err = {0};
    char path[256];
    snprintf(path, sizeof path, "%s/tmp/spool.wav", fx.dir);
    write_wav(path, 16000, 1.0);
    vx_job_submission s = {.model = "convert", .spool_path = path, .filename = "a.wav", .content_type = "audio/wav",
                           .bytes = 32044, .upload_sha256 = "x"};
    vx_job job = {0}, gone = {0};
    bool replayed;
    REQUIRE(vx_jobs_submit(&fx.app, &fx.alice, &s, &job, &replayed, &err) == 0);
    /* settled behind the event hub's back, as by a process that died before emitting */
    int64_t now = vx_now_ms();
    REQUIRE(fx.app.store->ops->job_cancel(fx.app.store, job.id, now, &gone, &err) == 0);
    CHECK_EQ_INT(terminal_events(&fx, job.id), 0);
    int repaired = -1;
    /* too recent: its own process still has time */
    CHECK_EQ_INT(vx_events_repair(&fx.app, now + 1000, 5000, &repaired, &err), 0);
    CHECK_EQ_INT(repaired, 0);
    CHECK_EQ_INT(vx_events_repair(&fx.app, now + 6000, 5000, &repaired, &err), 0);
    CHECK_EQ_INT(repaired, 1);
    CHECK_EQ_INT(terminal_events(&fx, job.id), 1);
    /* again, and the late emitter as well: both refused by the store */
    CHECK_EQ_INT(vx_events_repair(&fx.app, now + 7000, 5000, &repaired, &err), 0);
    CHECK_EQ_INT(repaired, 0);
    vx_events_job_changed(&fx.app, &gone);
    CHECK_EQ_INT(terminal_events(&fx, job.id), 1);
    /* outside the repair window nothing is looked at */
    vx_job other = {0}, other_gone = {0};
    write_wav(path, 16000, 1.0);
    REQUIRE(vx_jobs_submit(&fx.app, &fx.alice, &s, &other, &replayed, &err) == 0);
    REQUIRE(fx.app.store->ops->job_cancel(fx.app.store, other.id, now, &other_gone, &err) == 0);
    CHECK_EQ_INT(vx_events_repair(&fx.app, now + VX_EVENTS_REPAIR_WINDOW_MS + 1000, 5000, &repaired, &err), 0);
    CHECK_EQ_INT(repaired, 0);
    vx_job_clear(&job);
    vx_job_clear(&gone);
    vx_job_clear(&other);
    vx_job_clear(&other_gone);
    teardown(&fx);
}

static void test_deliveries_follow_endpoint_filters_and_survive_their_life_cycle(void) {
    fixture fx;
    REQUIRE(setup(&fx) == 0);
    vx_store *st = fx.app.store;
    vx_err err = {0};
    snprintf(fx.cfg.webhook_allow, sizeof fx.cfg.webhook_allow, "127.0.0.1");
    vx_webhook_endpoint ep;
    REQUIRE(vx_webhooks_create(&fx.app, fx.alice.user.id, "http://127.0.0.1:9/h", "job.succeeded", &ep, &err) == 0);
    CHECK(strncmp(ep.secret, "whsec_", 6) == 0);
    vx_err e2 = {0};
    vx_webhook_endpoint bad;
    CHECK_EQ_INT(vx_webhooks_create(&fx.app, fx.alice.user.id, "http://10.0.0.1/h", "", &bad, &e2), -1);
    CHECK_EQ_STR(e2.code, "webhook_url_refused");
    CHECK_EQ_INT(vx_webhooks_create(&fx.app, fx.alice.user.id, "http://127.0.0.1/h", "job.nope", &bad, &e2), -1);
    CHECK_EQ_STR(e2.code, "invalid_event_types");

    /* queued: only the job's own URL; succeeded: both */
    vx_events_emit(fx.ev, VX_EV_QUEUED, "job_x", fx.alice.user.id, "http://127.0.0.1:9/job", NULL);
    vx_events_emit(fx.ev, VX_EV_SUCCEEDED, "job_x", fx.alice.user.id, "http://127.0.0.1:9/job", NULL);
    vx_delivery *ds = NULL;
    size_t n = 0;
    int64_t now = vx_now_ms() + 10;
    REQUIRE(st->ops->delivery_claim(st, "node/a/webhooks", now, 60000, 10, &ds, &n, &err) == 0);
    CHECK_EQ_INT(n, 3);
    int to_endpoint = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK(ds[i].secret[0] != '\0');
        CHECK(ds[i].event.data_json != NULL);
        if (strcmp(ds[i].endpoint_id, ep.id) == 0) {
            to_endpoint++;
            CHECK_EQ_STR(ds[i].event.type, "job.succeeded");
        }
    }
    CHECK_EQ_INT(to_endpoint, 1);
    /* leased: a second claim gets nothing */
    vx_delivery *again = NULL;
    size_t m = 0;
    CHECK_EQ_INT(st->ops->delivery_claim(st, "node/b/webhooks", now, 60000, 10, &again, &m, &err), 0);
    CHECK_EQ_INT(m, 0);
    /* one delivered, one retried later, one failed for good */
    vx_delivery_attempt ok = {.status_code = 204, .latency_ms = 5, .delivered = true};
    vx_delivery_attempt retry = {.status_code = 500, .latency_ms = 7, .retry_at = now + 1000000};
    vx_delivery_attempt fail = {.status_code = 0, .error = "timeout"};
    CHECK_EQ_INT(st->ops->delivery_record(st, ds[0].id, "node/a/webhooks", &ok, now, &err), 0);
    CHECK_EQ_INT(st->ops->delivery_record(st, ds[1].id, "node/a/webhooks", &retry, now, &err), 0);
    CHECK_EQ_INT(st->ops->delivery_record(st, ds[2].id, "node/a/webhooks", &fail, now, &err), 0);
    vx_err e3 = {0};
    CHECK_EQ_INT(st->ops->delivery_record(st, ds[0].id, "node/a/webhooks", &ok, now, &e3), -1); /* lease gone */
    CHECK_EQ_STR(e3.code, "lease_lost");
    CHECK_EQ_INT(st->ops->delivery_claim(st, "node/a/webhooks", now + 10, 60000, 10, &again, &m, &err), 0);
    CHECK_EQ_INT(m, 0); /* the retry is not due yet */
    vx_delivery_list_free(again, m);
    /* a manual redeliver of the failed one makes it due now, for one attempt */
    vx_delivery red = {0};
    CHECK_EQ_INT(st->ops->delivery_redeliver(st, ds[2].endpoint_id, ds[2].id, now, &red, &err), 0);
    CHECK_EQ_INT(red.status, VX_DELIVERY_PENDING);
    CHECK_EQ_INT(red.max_attempts, 2);
    vx_delivery_clear(&red);
    REQUIRE(st->ops->delivery_claim(st, "node/c/webhooks", now + 10, 60000, 10, &again, &m, &err) == 0);
    CHECK_EQ_INT(m, 1);
    if (m) CHECK_EQ_STR(again[0].id, ds[2].id);
    vx_delivery_list_free(again, m);
    /* a restart of node c gives its leases back */
    CHECK_EQ_INT(st->ops->delivery_release_owner(st, "node/", &err), 0);
    REQUIRE(st->ops->delivery_claim(st, "node/d/webhooks", now + 20, 60000, 10, &again, &m, &err) == 0);
    CHECK_EQ_INT(m, 1);
    vx_delivery_list_free(again, m);
    /* the log */
    vx_delivery *log = NULL;
    size_t nl = 0;
    CHECK_EQ_INT(st->ops->delivery_list(st, ep.id, NULL, 50, &log, &nl, &err), 0);
    CHECK_EQ_INT(nl, 1);
    vx_delivery_list_free(log, nl);
    /* purge keeps events a pending delivery still needs */
    int64_t purged = 0;
    CHECK_EQ_INT(st->ops->event_purge(st, vx_now_ms() + 100000, &purged, &err), 0);
    CHECK(purged < 2);
    vx_delivery_list_free(ds, n);
    /* rotation keeps the old secret for the grace period */
    vx_webhook_endpoint rot;
    CHECK_EQ_INT(vx_webhooks_rotate(&fx.app, fx.alice.user.id, ep.id, &rot, &err), 0);
    CHECK(strcmp(rot.secret, ep.secret) != 0);
    CHECK_EQ_STR(rot.previous_secret, ep.secret);
    CHECK_EQ_INT(st->ops->webhook_delete(st, fx.alice.user.id, ep.id, &err), 0);
    vx_err e4 = {0};
    CHECK_EQ_INT(st->ops->webhook_get(st, fx.alice.user.id, ep.id, &rot, &e4), -1);
    CHECK_EQ_STR(e4.code, "not_found");
    teardown(&fx);
}

TEST_MAIN(TEST_ENTRY(test_progress_gate_throttles_to_the_interval),
          TEST_ENTRY(test_event_ids_increase_and_replay_after_an_id_has_no_gaps),
          TEST_ENTRY(test_live_subscribers_see_concurrent_emitters_in_id_order),
          TEST_ENTRY(test_job_states_map_to_event_types),
          TEST_ENTRY(test_a_real_job_emits_queued_started_progress_succeeded_in_order),
          TEST_ENTRY(test_a_job_settled_without_its_event_gets_exactly_one_by_repair),
          TEST_ENTRY(test_deliveries_follow_endpoint_filters_and_survive_their_life_cycle))
