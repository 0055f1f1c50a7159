/* test_router.c - unit tests of src/http/router.c: pattern compilation,
 * literal and capture matching with percent-decoding, 404 vs 405 + Allow,
 * HEAD falling back to GET. */
#include "../../src/http/http.h"
#include "../../src/http/router.h"
#include "test.h"

static void noop(vx_request *req) { (void)req; }

static const vx_route routes[] = {
    {.method = "GET", .pattern = "/v1/jobs", .handle = noop},
    {.method = "POST", .pattern = "/v1/jobs", .handle = noop},
    {.method = "GET", .pattern = "/v1/jobs/{id}", .handle = noop},
    {.method = "DELETE", .pattern = "/v1/jobs/{id}", .handle = noop},
    {.method = "GET", .pattern = "/v1/jobs/{id}/result", .handle = noop},
    {.method = "GET", .pattern = "/v1/users/{user}/keys/{key}", .handle = noop},
    {.method = "GET", .pattern = "/", .handle = noop},
};
#define N_ROUTES (sizeof routes / sizeof routes[0])

static vx_router *make(void) {
    vx_err err = {0};
    vx_router *r = vx_router_new(routes, N_ROUTES, &err);
    if (!r) fprintf(stderr, "  router: %s\n", err.message);
    return r;
}

static void test_literal_pattern_matches_exact_path_only(void) {
    vx_router *r = make();
    REQUIRE(r);
    vx_route_match m;
    CHECK_EQ_INT(vx_router_match(r, "GET", "/v1/jobs", &m), VX_ROUTE_FOUND);
    CHECK_EQ_INT(m.index, 0);
    CHECK_EQ_INT(m.n_captures, 0);
    vx_route_match_clear(&m);
    CHECK_EQ_INT(vx_router_match(r, "POST", "/v1/jobs", &m), VX_ROUTE_FOUND);
    CHECK_EQ_INT(m.index, 1);
    vx_route_match_clear(&m);
    CHECK_EQ_INT(vx_router_match(r, "GET", "/v1/jobs/", &m), VX_ROUTE_NO_PATH);
    vx_route_match_clear(&m);
    CHECK_EQ_INT(vx_router_match(r, "GET", "/v1/job", &m), VX_ROUTE_NO_PATH);
    vx_route_match_clear(&m);
    CHECK_EQ_INT(vx_router_match(r, "GET", "/v1//jobs", &m), VX_ROUTE_NO_PATH);
    vx_route_match_clear(&m);
    CHECK_EQ_INT(vx_router_match(r, "GET", "/", &m), VX_ROUTE_FOUND);
    CHECK_EQ_INT(m.index, 6);
    vx_route_match_clear(&m);
    CHECK_EQ_INT(vx_router_match(r, "GET", "relative", &m), VX_ROUTE_NO_PATH);
    vx_route_match_clear(&m);
    vx_router_free(r);
}

static void test_captures_are_decoded_and_named(void) {
    vx_router *r = make();
    REQUIRE(r);
    vx_route_match m;
    REQUIRE(vx_router_match(r, "GET", "/v1/jobs/job%5F1%20x/result", &m) == VX_ROUTE_FOUND);
    CHECK_EQ_INT(m.index, 4);
    CHECK_EQ_INT(m.n_captures, 1);
    CHECK_EQ_STR(m.names[0], "id");
    CHECK_EQ_STR(m.values[0], "job_1 x");
    vx_route_match_clear(&m);
    REQUIRE(vx_router_match(r, "GET", "/v1/users/u+1/keys/k%41", &m) == VX_ROUTE_FOUND);
    CHECK_EQ_INT(m.n_captures, 2);
    CHECK_EQ_STR(m.names[0], "user");
    CHECK_EQ_STR(m.values[0], "u+1");
    CHECK_EQ_STR(m.names[1], "key");
    CHECK_EQ_STR(m.values[1], "kA");
    vx_route_match_clear(&m);
    /* A literal segment may be percent-encoded too. */
    CHECK_EQ_INT(vx_router_match(r, "GET", "/v1/%6aobs", &m), VX_ROUTE_FOUND);
    vx_route_match_clear(&m);
    vx_router_free(r);
}

static void test_capture_with_slash_nul_bad_escape_or_empty_never_matches(void) {
    vx_router *r = make();
    REQUIRE(r);
    const char *bad[] = {"/v1/jobs/a%2Fb", "/v1/jobs/a%2fb/result", "/v1/jobs/a%00b", "/v1/jobs/a%zz",
                         "/v1/jobs/a%4", "/v1/jobs//result"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vx_route_match m;
        vx_route_result res = vx_router_match(r, "GET", bad[i], &m);
        if (res != VX_ROUTE_NO_PATH) fprintf(stderr, "  matched: %s\n", bad[i]);
        CHECK_EQ_INT(res, VX_ROUTE_NO_PATH);
        vx_route_match_clear(&m);
    }
    vx_router_free(r);
}

static void test_wrong_method_gives_405_with_allow_list(void) {
    vx_router *r = make();
    REQUIRE(r);
    vx_route_match m;
    CHECK_EQ_INT(vx_router_match(r, "PUT", "/v1/jobs/job_1", &m), VX_ROUTE_NO_METHOD);
    CHECK_EQ_STR(m.allow, "GET, DELETE, HEAD");
    vx_route_match_clear(&m);
    CHECK_EQ_INT(vx_router_match(r, "DELETE", "/v1/jobs", &m), VX_ROUTE_NO_METHOD);
    CHECK_EQ_STR(m.allow, "GET, POST, HEAD");
    vx_route_match_clear(&m);
    vx_router_free(r);
}

static void test_head_falls_back_to_get_route(void) {
    vx_router *r = make();
    REQUIRE(r);
    vx_route_match m;
    CHECK_EQ_INT(vx_router_match(r, "HEAD", "/v1/jobs/x/result", &m), VX_ROUTE_FOUND);
    CHECK_EQ_INT(m.index, 4);
    CHECK_EQ_STR(m.values[0], "x");
    vx_route_match_clear(&m);
    vx_router_free(r);
}

static void test_bad_route_tables_are_refused(void) {
    const vx_route bad_tables[][2] = {
        {{.method = "GET", .pattern = "v1/jobs", .handle = noop}},
        {{.method = "GET", .pattern = "/v1/{}", .handle = noop}},
        {{.method = "GET", .pattern = "/v1/{id", .handle = noop}},
        {{.method = "GET", .pattern = "/v1/a{id}", .handle = noop}},
        {{.method = "GET", .pattern = "/v1//x", .handle = noop}},
        {{.method = "GET", .pattern = "/v1/x", .handle = NULL}},
        {{.method = "POST", .pattern = "/v1/up", .body = VX_BODY_UPLOAD, .handle = noop}},
        {{.method = "GET", .pattern = "/v1/{a}", .handle = noop}, {.method = "GET", .pattern = "/v1/{a}", .handle = noop}},
    };
    const size_t counts[] = {1, 1, 1, 1, 1, 1, 1, 2};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        vx_err err = {0};
        vx_router *r = vx_router_new(bad_tables[i], counts[i], &err);
        CHECK(r == NULL);
        CHECK_EQ_STR(err.code, "invalid_route");
        vx_router_free(r);
    }
    const vx_route nine[] = {{.method = "GET", .pattern = "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", .handle = noop}};
    vx_err err = {0};
    vx_router *r = vx_router_new(nine, 1, &err);
    CHECK(r == NULL);
    vx_router_free(r);
}

static void test_percent_decode_rejects_truncated_escapes(void) {
    char out[32];
    CHECK_EQ_INT(vx_http_percent_decode("a%41+b", 6, out), 4);
    CHECK_EQ_STR(out, "aA+b");
    CHECK_EQ_INT(vx_http_percent_decode("%4", 2, out), -1);
    CHECK_EQ_INT(vx_http_percent_decode("%", 1, out), -1);
    CHECK_EQ_INT(vx_http_percent_decode("%g0", 3, out), -1);
    CHECK_EQ_INT(vx_http_percent_decode("", 0, out), 0);
}

TEST_MAIN(TEST_ENTRY(test_literal_pattern_matches_exact_path_only),
          TEST_ENTRY(test_captures_are_decoded_and_named),
          TEST_ENTRY(test_capture_with_slash_nul_bad_escape_or_empty_never_matches),
          TEST_ENTRY(test_wrong_method_gives_405_with_allow_list),
          TEST_ENTRY(test_head_falls_back_to_get_route),
          TEST_ENTRY(test_bad_route_tables_are_refused),
          TEST_ENTRY(test_percent_decode_rejects_truncated_escapes))
