/* test_http_deferred.c - deferred answers over a real server on 127.0.0.1
 * port 0: answered later from another thread, answered at once, a client
 * that leaves first, a handle dropped without an answer, server stop; the
 * ready callback (wake, timeout, client gone) and a route's own error body. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "../../src/http/http.h"
#include "../../src/util/crypto.h"
#include "../../src/util/log.h"
#include "../../src/util/strbuf.h"
#include "test.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static vx_deferred *handed;

static void sleep_ms(int ms) {
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* Hands the handle to the test, which answers it. */
static void h_later(vx_request *req) {
    vx_deferred *d = vx_respond_deferred(req);
    pthread_mutex_lock(&mu);
    handed = d;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&mu);
}

/* Answers through the handle before the handler returns. */
static void h_now(vx_request *req) {
    vx_deferred *d = vx_respond_deferred(req);
    vx_deferred_header(d, "X-Deferred", "now");
    vx_deferred_json(d, 202, json_pack("{s:s}", "when", "now"));
    vx_deferred_release(d);
}

/* A second answer on the request is refused (logged, dropped). */
static void h_twice(vx_request *req) {
    vx_respond_json(req, 200, json_pack("{s:i}", "first", 1));
    CHECK(vx_respond_deferred(req) == NULL);
}

static void *answer_later(void *arg) {
    vx_deferred *d = arg;
    sleep_ms(150);
    vx_deferred_header(d, "X-Deferred", "later");
    CHECK_EQ_INT(vx_deferred_bytes(d, 200, "text/plain", "done later", 10), 0);
    CHECK_EQ_INT(vx_deferred_json(d, 200, json_pack("{}")), -1);  /* exactly once */
    vx_deferred_release(d);
    return NULL;
}

static void h_thread(vx_request *req) {
    vx_deferred *d = vx_respond_deferred(req);
    pthread_t t;
    pthread_create(&t, NULL, answer_later, d);
    pthread_detach(t);
}

/* vx_deferred_on_ready: what the callback saw. */
static atomic_int ready_calls, ready_why;
static atomic_bool ready_on_waker;
static pthread_t waker;

static void ready_cb(vx_deferred *d, vx_deferred_why why, void *user) {
    (void)user;
    atomic_fetch_add(&ready_calls, 1);
    atomic_store(&ready_why, (int)why);
    atomic_store(&ready_on_waker, pthread_equal(pthread_self(), waker));
    if (why == VX_DEFERRED_TIMEOUT) vx_deferred_json(d, 504, json_pack("{s:s}", "ready", "timeout"));
    else if (why == VX_DEFERRED_WOKEN) vx_deferred_json(d, 200, json_pack("{s:s}", "ready", "woken"));
    else CHECK_EQ_INT(vx_deferred_json(d, 200, json_pack("{}")), -1); /* nobody to answer */
    vx_deferred_release(d);
}

static void hand(vx_deferred *d) {
    pthread_mutex_lock(&mu);
    handed = d;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&mu);
}

/* Waits for a wake from the test (no time bound). */
static void h_ready(vx_request *req) {
    vx_deferred *d = vx_respond_deferred(req);
    CHECK_EQ_INT(vx_deferred_on_ready(d, 0, ready_cb, NULL), 0);
    CHECK_EQ_INT(vx_deferred_on_ready(d, 0, ready_cb, NULL), -1);
    hand(d);
}

/* Bounded by 200 ms; nothing wakes it. */
static void h_ready_timeout(vx_request *req) {
    vx_deferred *d = vx_respond_deferred(req);
    vx_deferred_on_ready(d, 200, ready_cb, NULL);
}

/* Woken before the handler returns: answered at once. */
static void h_ready_now(vx_request *req) {
    vx_deferred *d = vx_respond_deferred(req);
    vx_deferred_on_ready(d, 60000, ready_cb, NULL);
    vx_deferred_wake(d);
}

static void h_fail(vx_request *req) { vx_respond_errorf(req, VX_E_PAYMENT, "insufficient_credits", "no money"); }

static json_t *other_envelope(const vx_err *err, int *http_status) {
    if (err->status == VX_E_PAYMENT) *http_status = 429; /* other statuses stay as mapped */
    return json_pack("{s:{s:s, s:s}}", "error", "message", err->message, "type", err->code);
}

static const vx_route routes[] = {
    {.method = "GET", .pattern = "/v1/ready", .handle = h_ready},
    {.method = "GET", .pattern = "/v1/ready-timeout", .handle = h_ready_timeout},
    {.method = "GET", .pattern = "/v1/ready-now", .handle = h_ready_now},
    {.method = "GET", .pattern = "/v1/fail", .handle = h_fail, .error_body = other_envelope},
    {.method = "GET", .pattern = "/v1/ready-own", .handle = h_ready, .error_body = other_envelope},
    {.method = "GET", .pattern = "/v1/later", .handle = h_later},
    {.method = "GET", .pattern = "/v1/now", .handle = h_now},
    {.method = "GET", .pattern = "/v1/twice", .handle = h_twice},
    {.method = "GET", .pattern = "/v1/thread", .handle = h_thread},
};

static vx_config cfg;
static vx_app app;
static vx_http_server *srv;
static int port;

static bool up(void) {
    vx_crypto_init();
    vx_log_set_level(getenv("VX_TEST_VERBOSE") ? VX_LOG_DEBUG : VX_LOG_ERROR);
    vx_config_defaults(&cfg);
    snprintf(cfg.listen, sizeof cfg.listen, "127.0.0.1:0");
    cfg.web_dir[0] = '\0';
    cfg.http_threads = 2;
    cfg.request_timeout_s = 30;
    cfg.access_log = false;
    app = (vx_app){.cfg = &cfg};
    vx_err err = {0};
    srv = vx_http_start(&app, routes, sizeof routes / sizeof routes[0], &err);
    if (!srv) return false;
    port = vx_http_port(srv);
    handed = NULL;
    atomic_store(&ready_calls, 0);
    atomic_store(&ready_why, -1);
    return port > 0;
}

static void down(void) {
    if (srv) vx_http_stop(srv, 2000);
    srv = NULL;
}

static vx_deferred *take(void) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&mu);
    while (!handed && pthread_cond_timedwait(&cond, &mu, &until) == 0) {}
    vx_deferred *d = handed;
    handed = NULL;
    pthread_mutex_unlock(&mu);
    return d;
}

static int client_get(const char *path) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads until `needle` is in out (or close/timeout). */
static bool read_until(int fd, vx_strbuf *out, const char *needle, int timeout_ms) {
    for (int waited = 0; waited < timeout_ms;) {
        if (out->data && strstr(out->data, needle)) return true;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) {
            waited += 50;
            continue;
        }
        char buf[4096];
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        vx_strbuf_append(out, buf, (size_t)n);
    }
    return out->data && strstr(out->data, needle);
}

static void test_deferred_answer_from_another_thread_reaches_the_client(void) {
    REQUIRE(up());
    int fd = client_get("/v1/thread");
    REQUIRE(fd >= 0);
    vx_strbuf r = {0};
    CHECK(read_until(fd, &r, "done later", 5000));
    CHECK(r.data && strstr(r.data, "HTTP/1.1 200"));
    CHECK(r.data && strcasestr(r.data, "X-Deferred: later"));
    CHECK(r.data && strcasestr(r.data, "Content-Type: text/plain"));
    CHECK(r.data && strcasestr(r.data, "X-Request-Id: req_"));
    /* the connection stays usable (keep-alive) */
    const char *again = "GET /v1/now HTTP/1.1\r\nHost: t\r\n\r\n";
    CHECK(send(fd, again, strlen(again), MSG_NOSIGNAL) == (ssize_t)strlen(again));
    CHECK(read_until(fd, &r, "{\"when\":\"now\"}", 5000));
    vx_strbuf_free(&r);
    close(fd);
    down();
}

static void test_deferred_answer_given_before_the_handler_returns_is_sent(void) {
    REQUIRE(up());
    int fd = client_get("/v1/now");
    REQUIRE(fd >= 0);
    vx_strbuf r = {0};
    CHECK(read_until(fd, &r, "{\"when\":\"now\"}", 5000));
    CHECK(r.data && strstr(r.data, "HTTP/1.1 202"));
    CHECK(r.data && strcasestr(r.data, "X-Deferred: now"));
    vx_strbuf_free(&r);
    close(fd);
    down();
}

static void test_client_gone_before_the_answer_is_noticed_and_answering_is_a_no_op(void) {
    REQUIRE(up());
    int fd = client_get("/v1/later");
    REQUIRE(fd >= 0);
    vx_deferred *d = take();
    REQUIRE(d);
    CHECK(!vx_deferred_gone(d));
    CHECK(strncmp(vx_deferred_id(d), "req_", 4) == 0);
    sleep_ms(50);
    close(fd);
    int waited = 0;
    while (!vx_deferred_gone(d) && waited < 5000) {
        sleep_ms(10);
        waited += 10;
    }
    CHECK(vx_deferred_gone(d));
    CHECK_EQ_INT(vx_deferred_json(d, 200, json_pack("{s:b}", "late", 1)), -1);
    vx_deferred_release(d);
    down();
}

static void test_released_unanswered_deferred_request_gets_500(void) {
    REQUIRE(up());
    int fd = client_get("/v1/later");
    REQUIRE(fd >= 0);
    vx_deferred *d = take();
    REQUIRE(d);
    vx_deferred_release(d);
    vx_strbuf r = {0};
    CHECK(read_until(fd, &r, "\"code\":\"internal\"", 5000));
    CHECK(r.data && strstr(r.data, "HTTP/1.1 500"));
    vx_strbuf_free(&r);
    close(fd);
    down();
}

static void test_second_answer_after_a_normal_one_is_refused(void) {
    REQUIRE(up());
    int fd = client_get("/v1/twice");
    REQUIRE(fd >= 0);
    vx_strbuf r = {0};
    CHECK(read_until(fd, &r, "{\"first\":1}", 5000));
    vx_strbuf_free(&r);
    close(fd);
    down();
}

static void test_server_stop_answers_pending_deferred_requests_with_503(void) {
    REQUIRE(up());
    int fd = client_get("/v1/later");
    REQUIRE(fd >= 0);
    vx_deferred *d = take();
    REQUIRE(d);
    down();
    vx_strbuf r = {0};
    CHECK(read_until(fd, &r, "\"code\":\"shutting_down\"", 5000));
    CHECK(r.data && strstr(r.data, "HTTP/1.1 503"));
    CHECK(vx_deferred_gone(d));
    CHECK_EQ_INT(vx_deferred_json(d, 200, json_pack("{}")), -1);
    vx_deferred_release(d);
    vx_strbuf_free(&r);
    close(fd);
}


static void test_many_deferred_requests_are_answered_in_any_order(void) {
    REQUIRE(up());
    enum { N = 50 };
    int fds[N];
    vx_deferred *ds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = client_get("/v1/later");
        ds[i] = fds[i] >= 0 ? take() : NULL;
        REQUIRE(ds[i]);
    }
    for (int i = N - 1; i >= 0; i--) {
        CHECK_EQ_INT(vx_deferred_json(ds[i], 200, json_pack("{s:i}", "n", i)), 0);
        vx_deferred_release(ds[i]);
    }
    int ok = 0;
    for (int i = 0; i < N; i++) {
        char want[32];
        snprintf(want, sizeof want, "{\"n\":%d}", i);
        vx_strbuf r = {0};
        if (read_until(fds[i], &r, want, 5000)) ok++;
        vx_strbuf_free(&r);
        close(fds[i]);
    }
    CHECK_EQ_INT(ok, N);
    down();
}

static void test_ready_callback_answers_on_an_http_thread_after_a_wake(void) {
    REQUIRE(up());
    int fd = client_get("/v1/ready");
    REQUIRE(fd >= 0);
    vx_deferred *d = take();
    REQUIRE(d);
    sleep_ms(100); /* suspended by now */
    CHECK_EQ_INT(atomic_load(&ready_calls), 0);
    waker = pthread_self();
    vx_deferred_wake(d);
    vx_deferred_wake(d); /* once is enough */
    vx_strbuf r = {0};
    CHECK(read_until(fd, &r, "{\"ready\":\"woken\"}", 5000));
    CHECK(r.data && strstr(r.data, "HTTP/1.1 200"));
    CHECK_EQ_INT(atomic_load(&ready_calls), 1);
    CHECK_EQ_INT(atomic_load(&ready_why), VX_DEFERRED_WOKEN);
    CHECK(!atomic_load(&ready_on_waker));
    vx_strbuf_free(&r);
    close(fd);
    down();
    CHECK_EQ_INT(atomic_load(&ready_calls), 1);
}

static void test_ready_callback_runs_at_the_timeout_when_nothing_wakes_it(void) {
    REQUIRE(up());
    int fd = client_get("/v1/ready-timeout");
    REQUIRE(fd >= 0);
    vx_strbuf r = {0};
    CHECK(read_until(fd, &r, "{\"ready\":\"timeout\"}", 5000));
    CHECK(r.data && strstr(r.data, "HTTP/1.1 504"));
    CHECK_EQ_INT(atomic_load(&ready_why), VX_DEFERRED_TIMEOUT);
    vx_strbuf_free(&r);
    close(fd);
    down();
    CHECK_EQ_INT(atomic_load(&ready_calls), 1);
}

static void test_wake_before_the_handler_returns_answers_at_once(void) {
    REQUIRE(up());
    int fd = client_get("/v1/ready-now");
    REQUIRE(fd >= 0);
    vx_strbuf r = {0};
    CHECK(read_until(fd, &r, "{\"ready\":\"woken\"}", 5000));
    vx_strbuf_free(&r);
    close(fd);
    down();
    CHECK_EQ_INT(atomic_load(&ready_calls), 1);
}

static void test_ready_callback_learns_that_the_client_left(void) {
    REQUIRE(up());
    int fd = client_get("/v1/ready");
    REQUIRE(fd >= 0);
    vx_deferred *d = take();
    REQUIRE(d);
    sleep_ms(50);
    close(fd);
    for (int waited = 0; atomic_load(&ready_calls) == 0 && waited < 5000; waited += 10) sleep_ms(10);
    CHECK_EQ_INT(atomic_load(&ready_calls), 1);
    CHECK_EQ_INT(atomic_load(&ready_why), VX_DEFERRED_ENDED);
    down();
    CHECK_EQ_INT(atomic_load(&ready_calls), 1);
}

static void test_a_route_renders_its_errors_in_its_own_envelope(void) {
    REQUIRE(up());
    int fd = client_get("/v1/fail");
    REQUIRE(fd >= 0);
    vx_strbuf r = {0};
    CHECK(read_until(fd, &r, "{\"error\":{\"message\":\"no money\",\"type\":\"insufficient_credits\"}}", 5000));
    CHECK(r.data && strstr(r.data, "HTTP/1.1 429"));
    vx_strbuf_free(&r);
    close(fd);
    down();
}

static void test_server_stop_answers_in_the_route_envelope_and_ends_the_wait(void) {
    REQUIRE(up());
    int fd = client_get("/v1/ready-own");
    REQUIRE(fd >= 0);
    REQUIRE(take());
    down();
    vx_strbuf r = {0};
    CHECK(read_until(fd, &r, "\"type\":\"shutting_down\"", 5000));
    CHECK(r.data && strstr(r.data, "HTTP/1.1 503"));
    CHECK_EQ_INT(atomic_load(&ready_calls), 1);
    CHECK_EQ_INT(atomic_load(&ready_why), VX_DEFERRED_ENDED);
    vx_strbuf_free(&r);
    close(fd);
}

TEST_MAIN(TEST_ENTRY(test_ready_callback_answers_on_an_http_thread_after_a_wake),
          TEST_ENTRY(test_server_stop_answers_in_the_route_envelope_and_ends_the_wait),
          TEST_ENTRY(test_ready_callback_runs_at_the_timeout_when_nothing_wakes_it),
          TEST_ENTRY(test_wake_before_the_handler_returns_answers_at_once),
          TEST_ENTRY(test_ready_callback_learns_that_the_client_left),
          TEST_ENTRY(test_a_route_renders_its_errors_in_its_own_envelope),
          TEST_ENTRY(test_deferred_answer_from_another_thread_reaches_the_client),
          TEST_ENTRY(test_deferred_answer_given_before_the_handler_returns_is_sent),
          TEST_ENTRY(test_client_gone_before_the_answer_is_noticed_and_answering_is_a_no_op),
          TEST_ENTRY(test_released_unanswered_deferred_request_gets_500),
          TEST_ENTRY(test_second_answer_after_a_normal_one_is_refused),
          TEST_ENTRY(test_server_stop_answers_pending_deferred_requests_with_503),
          TEST_ENTRY(test_many_deferred_requests_are_answered_in_any_order))
