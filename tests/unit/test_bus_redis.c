/* test_bus_redis.c - the redis bus (src/bus/redis.c) against a real
 * redis-server started here on 127.0.0.1 with a free port and a temporary
 * directory, stopped by pid at the end. Skipped, saying so, when
 * redis-server is not installed. Single-threaded test, plus the buses'
 * reader threads. */
#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "../../src/bus/bus.h"
#include "../../src/util/crypto.h"
#include "test.h"

#define REDIS_BIN "redis-server"

typedef struct redis_proc {
    pid_t pid;
    int port;
    char dir[64];
} redis_proc;

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int have_redis(void) {
    const char *path = getenv("PATH");
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path ? path : "/usr/bin:/bin");
    for (char *save = NULL, *d = strtok_r(buf, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        char full[4200];
        snprintf(full, sizeof full, "%s/%s", d, REDIS_BIN);
        if (access(full, X_OK) == 0) return 1;
    }
    fprintf(stderr, "  SKIP: %s is not installed (Debian: redis-server); redis bus not tested\n", REDIS_BIN);
    return 0;
}

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

/* Starts redis on rp->port in rp->dir; waits until it answers PING. */
static int redis_start(redis_proc *rp) {
    char port[16], log[128];
    snprintf(port, sizeof port, "%d", rp->port);
    snprintf(log, sizeof log, "%s/redis.log", rp->dir);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        execlp(REDIS_BIN, REDIS_BIN, "--port", port, "--bind", "127.0.0.1", "--dir", rp->dir, "--save", "",
               "--appendonly", "no", "--daemonize", "no", "--logfile", log, (char *)NULL);
        _exit(127);
    }
    rp->pid = pid;
    for (int i = 0; i < 500; i++) {
        struct timeval tv = {0, 200000};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", rp->port, tv);
        redisReply *r = c && !c->err ? redisCommand(c, "PING") : NULL;
        int ok = r && r->type == REDIS_REPLY_STATUS;
        freeReplyObject(r);
        if (c) redisFree(c);
        if (ok) return 0;
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            rp->pid = 0;
            return -1;
        }
        sleep_ms(20);
    }
    return -1;
}

static void redis_stop(redis_proc *rp) {
    if (rp->pid <= 0) return;
    kill(rp->pid, SIGTERM);
    waitpid(rp->pid, NULL, 0);
    rp->pid = 0;
}

static int setup(redis_proc *rp) {
    signal(SIGPIPE, SIG_IGN); /* as main does: a write to a dead redis must not kill us */
    vx_crypto_init();
    snprintf(rp->dir, sizeof rp->dir, "/tmp/vx-bus-redis-XXXXXX");
    if (!mkdtemp(rp->dir)) return -1;
    rp->port = free_port();
    return rp->port > 0 ? redis_start(rp) : -1;
}

static void teardown(redis_proc *rp) {
    redis_stop(rp);
    char path[128];
    snprintf(path, sizeof path, "%s/redis.log", rp->dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/dump.rdb", rp->dir);
    unlink(path);
    rmdir(rp->dir);
}

/* ---- a subscriber that records what it saw ---- */

typedef struct seen {
    pthread_mutex_t mu;
    int count;
    long long last_seq;
    char last_type[32], last_job[64], last_user[64], last_json[256];
} seen;

static void on_msg(void *user, const vx_bus_msg *m) {
    seen *s = user;
    pthread_mutex_lock(&s->mu);
    s->count++;
    s->last_seq = m->seq;
    snprintf(s->last_type, sizeof s->last_type, "%s", m->type);
    snprintf(s->last_job, sizeof s->last_job, "%s", m->job_id ? m->job_id : "");
    snprintf(s->last_user, sizeof s->last_user, "%s", m->user_id ? m->user_id : "");
    snprintf(s->last_json, sizeof s->last_json, "%.*s", (int)m->len, m->json);
    pthread_mutex_unlock(&s->mu);
}

static int count_of(seen *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->count;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* Waits (bounded, never asserted on) until s has seen at least n. */
static int wait_count(seen *s, int n, int max_ms) {
    for (int t = 0; t < max_ms && count_of(s) < n; t += 10) sleep_ms(10);
    return count_of(s);
}

static vx_bus_msg make_msg(long long seq, const char *user, const char *job, const char *json) {
    return (vx_bus_msg){.seq = seq, .type = "job.progress", .user_id = user, .job_id = job, .json = json,
                        .len = strlen(json)};
}

static void test_bad_redis_urls_are_refused_and_an_unreachable_server_fails_open(void) {
    vx_crypto_init();
    const char *bad[] = {"redis://", "redis://:6379", "redis://h:0", "redis://h:99999", "redis://h/x",
                         "redis://h:12ab", "redis://h/1/2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vx_err err = {0};
        vx_bus *b = vx_bus_open(bad[i], &err);
        CHECK(b == NULL);
        CHECK_EQ_STR(err.code, "invalid_bus_url");
        vx_bus_close(b);
    }
    int port = free_port(); /* nobody listens there */
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/3", port);
    vx_err err = {0};
    vx_bus *b = vx_bus_open(url, &err);
    CHECK(b == NULL);
    CHECK_EQ_STR(err.code, "bus_unavailable");
    CHECK(strstr(err.message, "127.0.0.1") != NULL);
    vx_bus_close(b);
}

static void test_event_published_on_one_bus_reaches_matching_subscribers_on_another(void) {
    if (!have_redis()) return;
    redis_proc rp = {0};
    REQUIRE(setup(&rp) == 0);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", rp.port);
    vx_err err = {0};
    vx_bus *a = vx_bus_open(url, &err), *b = vx_bus_open(url, &err);
    CHECK(a && b);
    seen by_user = {.mu = PTHREAD_MUTEX_INITIALIZER}, by_job = {.mu = PTHREAD_MUTEX_INITIALIZER},
         other = {.mu = PTHREAD_MUTEX_INITIALIZER}, local = {.mu = PTHREAD_MUTEX_INITIALIZER};
    vx_bus_sub *s1 = NULL, *s2 = NULL, *s3 = NULL, *s4 = NULL;
    if (a && b) {
        s1 = vx_bus_subscribe(b, &(vx_bus_filter){.user_id = "usr_1"}, on_msg, &by_user, &err);
        s2 = vx_bus_subscribe(b, &(vx_bus_filter){.job_id = "job_9"}, on_msg, &by_job, &err);
        s3 = vx_bus_subscribe(b, &(vx_bus_filter){.user_id = "usr_2"}, on_msg, &other, &err);
        s4 = vx_bus_subscribe(a, &(vx_bus_filter){.user_id = "usr_1"}, on_msg, &local, &err);
        CHECK(s1 && s2 && s3 && s4);
        vx_bus_msg m = make_msg(42, "usr_1", "job_9", "{\"id\":\"evt_42\",\"data\":{\"fraction\":0.5}}");
        CHECK_EQ_INT(vx_bus_publish(a, &m, &err), 0);
        CHECK_EQ_INT(wait_count(&by_user, 1, 5000), 1);
        CHECK_EQ_INT(wait_count(&by_job, 1, 5000), 1);
        CHECK_EQ_INT(by_user.last_seq, 42);
        CHECK_EQ_STR(by_user.last_type, "job.progress");
        CHECK_EQ_STR(by_user.last_job, "job_9");
        CHECK_EQ_STR(by_user.last_user, "usr_1");
        CHECK_EQ_STR(by_user.last_json, "{\"id\":\"evt_42\",\"data\":{\"fraction\":0.5}}");
        /* the publisher's own subscriber gets it once, not again as an echo */
        CHECK_EQ_INT(count_of(&local), 1);
        /* a marker event to usr_2 proves the earlier one had time to arrive anywhere */
        vx_bus_msg marker = make_msg(43, "usr_2", "job_8", "{}");
        CHECK_EQ_INT(vx_bus_publish(a, &marker, &err), 0);
        CHECK_EQ_INT(wait_count(&other, 1, 5000), 1);
        CHECK_EQ_INT(other.last_seq, 43);
        CHECK_EQ_INT(count_of(&local), 1);
        CHECK_EQ_INT(count_of(&by_user), 1);
        CHECK_EQ_INT(count_of(&by_job), 1);
    }
    if (b) {
        vx_bus_unsubscribe(b, s1);
        vx_bus_unsubscribe(b, s2);
        vx_bus_unsubscribe(b, s3);
    }
    if (a) vx_bus_unsubscribe(a, s4);
    vx_bus_close(a);
    vx_bus_close(b);
    teardown(&rp);
}

static void test_buses_on_other_db_numbers_do_not_see_each_other(void) {
    if (!have_redis()) return;
    redis_proc rp = {0};
    REQUIRE(setup(&rp) == 0);
    char url0[64], url1[64];
    snprintf(url0, sizeof url0, "redis://127.0.0.1:%d/0", rp.port);
    snprintf(url1, sizeof url1, "redis://127.0.0.1:%d/1", rp.port);
    vx_err err = {0};
    vx_bus *a = vx_bus_open(url0, &err), *b1 = vx_bus_open(url1, &err), *b0 = vx_bus_open(url0, &err);
    CHECK(a && b1 && b0);
    seen in1 = {.mu = PTHREAD_MUTEX_INITIALIZER}, in0 = {.mu = PTHREAD_MUTEX_INITIALIZER};
    vx_bus_sub *s1 = NULL, *s0 = NULL;
    if (a && b1 && b0) {
        s1 = vx_bus_subscribe(b1, &(vx_bus_filter){.user_id = "usr_1"}, on_msg, &in1, &err);
        s0 = vx_bus_subscribe(b0, &(vx_bus_filter){.user_id = "usr_1"}, on_msg, &in0, &err);
        vx_bus_msg m = make_msg(7, "usr_1", "job_1", "{}");
        CHECK_EQ_INT(vx_bus_publish(a, &m, &err), 0);
        CHECK_EQ_INT(wait_count(&in0, 1, 5000), 1);
        /* redis delivers in publish order to each subscriber: had a message
         * crossed over, it would arrive before the next one on that side */
        vx_bus *a1 = vx_bus_open(url1, &err);
        CHECK(a1 != NULL);
        if (a1) {
            vx_bus_msg m1 = make_msg(8, "usr_1", "job_1", "{}");
            CHECK_EQ_INT(vx_bus_publish(a1, &m1, &err), 0);
            CHECK_EQ_INT(wait_count(&in1, 1, 5000), 1);
            CHECK_EQ_INT(in1.last_seq, 8);
            vx_bus_close(a1);
        }
        CHECK_EQ_INT(count_of(&in1), 1);
        vx_bus_msg marker = make_msg(9, "usr_1", "job_1", "{}");
        CHECK_EQ_INT(vx_bus_publish(a, &marker, &err), 0);
        CHECK_EQ_INT(wait_count(&in0, 2, 5000), 2);
        CHECK_EQ_INT(in0.last_seq, 9);
        vx_bus_unsubscribe(b1, s1);
        vx_bus_unsubscribe(b0, s0);
    }
    vx_bus_close(a);
    vx_bus_close(b1);
    vx_bus_close(b0);
    teardown(&rp);
}

static void test_subscriber_reconnects_and_receives_again_after_redis_restarts(void) {
    if (!have_redis()) return;
    redis_proc rp = {0};
    REQUIRE(setup(&rp) == 0);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", rp.port);
    vx_err err = {0};
    vx_bus *a = vx_bus_open(url, &err), *b = vx_bus_open(url, &err);
    CHECK(a && b);
    seen remote = {.mu = PTHREAD_MUTEX_INITIALIZER}, local = {.mu = PTHREAD_MUTEX_INITIALIZER};
    vx_bus_sub *sr = NULL, *sl = NULL;
    if (a && b) {
        sr = vx_bus_subscribe(b, &(vx_bus_filter){.job_id = "job_r"}, on_msg, &remote, &err);
        sl = vx_bus_subscribe(a, &(vx_bus_filter){.job_id = "job_r"}, on_msg, &local, &err);
        vx_bus_msg m = make_msg(1, "usr_r", "job_r", "{\"n\":1}");
        CHECK_EQ_INT(vx_bus_publish(a, &m, &err), 0);
        CHECK_EQ_INT(wait_count(&remote, 1, 5000), 1);

        redis_stop(&rp);
        /* redis is down: the publisher drops (with a clear code) instead of
         * waiting, and this process's own subscribers still get the event */
        vx_err perr = {0};
        vx_bus_msg down = make_msg(2, "usr_r", "job_r", "{\"n\":2}");
        CHECK_EQ_INT(vx_bus_publish(a, &down, &perr), -1);
        CHECK_EQ_STR(perr.code, "bus_unavailable");
        CHECK_EQ_INT(count_of(&local), 2);

        REQUIRE(redis_start(&rp) == 0);
        /* both sides reconnect with back-off: publish until one arrives */
        long long seq = 3;
        for (int tries = 0; tries < 150 && count_of(&remote) < 2; tries++, seq++) {
            vx_bus_msg again = make_msg(seq, "usr_r", "job_r", "{\"n\":3}");
            vx_err e = {0};
            vx_bus_publish(a, &again, &e);
            wait_count(&remote, 2, 100);
        }
        CHECK(count_of(&remote) >= 2);
        pthread_mutex_lock(&remote.mu);
        CHECK(remote.last_seq >= 3);
        CHECK_EQ_STR(remote.last_json, "{\"n\":3}");
        pthread_mutex_unlock(&remote.mu);
        vx_bus_unsubscribe(b, sr);
        vx_bus_unsubscribe(a, sl);
    }
    vx_bus_close(a);
    vx_bus_close(b);
    teardown(&rp);
}

TEST_MAIN(TEST_ENTRY(test_bad_redis_urls_are_refused_and_an_unreachable_server_fails_open),
          TEST_ENTRY(test_event_published_on_one_bus_reaches_matching_subscribers_on_another),
          TEST_ENTRY(test_buses_on_other_db_numbers_do_not_see_each_other),
          TEST_ENTRY(test_subscriber_reconnects_and_receives_again_after_redis_restarts))
