/* test_webhooks.c - core/webhooks.c: Standard Webhooks signatures against
 * known answers (computed independently with Python's hmac), secrets, the
 * retry schedule's bounds, event-type filters, the allow-list parser and the
 * destination rules, including IPv6, IPv4-mapped and numeric-IP tricks.
 * DNS is only asked about literals and "localhost". */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include "core/webhooks.h"
#include "test.h"
#include "util/crypto.h"

static void test_signature_matches_known_answers(void) {
    vx_crypto_init();
    char sig[VX_WEBHOOK_SIGNATURE_SIZE];
    /* The Standard Webhooks specification's own example. */
    const char *body = "{\"test\": 2432232314}";
    CHECK_EQ_INT(vx_webhook_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                                 1614265330, body, strlen(body), sig), 0);
    CHECK_EQ_STR(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    /* key = bytes 1..24; python3: base64(hmac(key, "msg_2Lfz1example.1700000000." + body, sha256)) */
    body = "{\"id\":\"evt_0000000000000001\",\"type\":\"job.succeeded\"}";
    CHECK_EQ_INT(vx_webhook_sign("whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcY", "msg_2Lfz1example", 1700000000, body,
                                 strlen(body), sig), 0);
    CHECK_EQ_STR(sig, "v1,BOxKBHk7A1xVVp48GB/uwhEk5JMdfIozVoWB0AG9TOk=");
}

static void test_tampered_body_changes_the_signature(void) {
    vx_crypto_init();
    char a[VX_WEBHOOK_SIGNATURE_SIZE], b[VX_WEBHOOK_SIGNATURE_SIZE];
    const char *secret = "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcY";
    CHECK_EQ_INT(vx_webhook_sign(secret, "dlv_1", 1700000000, "{\"a\":1}", 7, a), 0);
    CHECK_EQ_INT(vx_webhook_sign(secret, "dlv_1", 1700000000, "{\"a\":2}", 7, b), 0);
    CHECK(strcmp(a, b) != 0);
    CHECK_EQ_INT(vx_webhook_sign(secret, "dlv_1", 1700000001, "{\"a\":1}", 7, b), 0);
    CHECK(strcmp(a, b) != 0);
}

static void test_malformed_secret_is_refused(void) {
    vx_crypto_init();
    char sig[VX_WEBHOOK_SIGNATURE_SIZE];
    CHECK_EQ_INT(vx_webhook_sign("AQIDBAUGBwgJCgsM", "m", 1, "x", 1, sig), -1);
    CHECK_EQ_INT(vx_webhook_sign("whsec_***not base64***", "m", 1, "x", 1, sig), -1);
    CHECK_EQ_INT(vx_webhook_sign("whsec_", "m", 1, "x", 1, sig), -1);
}

static void test_new_secrets_are_prefixed_random_and_usable(void) {
    vx_crypto_init();
    char a[VX_WEBHOOK_SECRET_SIZE], b[VX_WEBHOOK_SECRET_SIZE], sig[VX_WEBHOOK_SIGNATURE_SIZE];
    vx_webhook_secret_new(a);
    vx_webhook_secret_new(b);
    CHECK(strncmp(a, "whsec_", 6) == 0);
    CHECK_EQ_INT(strlen(a), 6 + 32);
    CHECK(strcmp(a, b) != 0);
    CHECK_EQ_INT(vx_webhook_sign(a, "m", 1, "x", 1, sig), 0);
}

static void test_backoff_grows_fourfold_within_jitter_bounds(void) {
    const uint32_t lo = 0, mid = UINT32_C(1) << 31, hi = UINT32_MAX;
    for (int n = 1; n <= 7; n++) {
        double nominal = 15000.0;
        for (int i = 1; i < n; i++) nominal *= 4;
        CHECK(vx_webhook_backoff_ms(n, 15, lo) >= (int64_t)(nominal * 0.8) - 1);
        CHECK(vx_webhook_backoff_ms(n, 15, hi) < (int64_t)(nominal * 1.2) + 1);
        CHECK_EQ_INT(vx_webhook_backoff_ms(n, 15, mid), (int64_t)nominal);
        if (n > 1) CHECK(vx_webhook_backoff_ms(n, 15, lo) > vx_webhook_backoff_ms(n - 1, 15, hi));
    }
    /* 8 attempts (7 waits) span most of a day, never more than ~1.2 days. */
    int64_t lo_total = 0, hi_total = 0;
    for (int n = 1; n <= 7; n++) {
        lo_total += vx_webhook_backoff_ms(n, 15, lo);
        hi_total += vx_webhook_backoff_ms(n, 15, hi);
    }
    CHECK(lo_total >= INT64_C(15) * 3600 * 1000);
    CHECK(hi_total <= INT64_C(30) * 3600 * 1000);
    /* No single wait beyond a day (plus jitter), even far out. */
    CHECK(vx_webhook_backoff_ms(40, 15, hi) <= INT64_C(86400000) * 12 / 10);
    CHECK_EQ_INT(vx_webhook_backoff_ms(0, 15, mid), vx_webhook_backoff_ms(1, 15, mid));
}

static void test_type_filters_accept_known_types_only(void) {
    CHECK(vx_webhook_types_valid(""));
    CHECK(vx_webhook_types_valid("job.succeeded,job.failed"));
    CHECK(!vx_webhook_types_valid("job.succeeded,"));
    CHECK(!vx_webhook_types_valid("job.exploded"));
    CHECK(!vx_webhook_types_valid("job.succeeded,,job.failed"));
    CHECK(vx_webhook_types_match("", "job.progress"));
    CHECK(vx_webhook_types_match("job.succeeded,job.failed", "job.failed"));
    CHECK(!vx_webhook_types_match("job.succeeded,job.failed", "job.fail"));
    CHECK(!vx_webhook_types_match("job.succeeded", "job.progress"));
}

static struct sockaddr_storage addr(const char *text) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, text, &v4->sin_addr) == 1) v4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1) v6->sin6_family = AF_INET6;
    return ss;
}

static bool is_public(const char *text) {
    struct sockaddr_storage ss = addr(text);
    return vx_webhook_addr_public((struct sockaddr *)&ss);
}

static void test_private_and_special_addresses_are_not_public(void) {
    const char *blocked[] = {
        "127.0.0.1", "127.255.0.9", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254",
        "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "198.18.0.1", "192.0.2.5",
        "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "fec0::1", "2001:db8::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::127.0.0.1", "64:ff9b::a00:1", "2002:7f00:1::1", "2001::1",
    };
    for (size_t i = 0; i < sizeof blocked / sizeof blocked[0]; i++) {
        if (is_public(blocked[i])) fprintf(stderr, "  %s counted as public\n", blocked[i]);
        CHECK(!is_public(blocked[i]));
    }
    const char *open[] = {"93.184.216.34", "8.8.8.8", "172.32.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8",
                          "64:ff9b::808:808", "2002:808:808::1"};
    for (size_t i = 0; i < sizeof open / sizeof open[0]; i++) {
        if (!is_public(open[i])) fprintf(stderr, "  %s counted as private\n", open[i]);
        CHECK(is_public(open[i]));
    }
}

static void test_allow_list_parses_cidrs_addresses_and_host_ports(void) {
    vx_err err = {0};
    vx_webhook_allow *a = vx_webhook_allow_parse("127.0.0.1,10.0.0.0/8,fd00::/8,hooks.internal:8443,[::1]:9000", &err);
    REQUIRE(a);
    struct sockaddr_storage ss = addr("127.0.0.1");
    CHECK(vx_webhook_addr_allowed(a, (struct sockaddr *)&ss));
    ss = addr("::ffff:127.0.0.1"); /* an IPv4 entry covers the mapped form */
    CHECK(vx_webhook_addr_allowed(a, (struct sockaddr *)&ss));
    ss = addr("127.0.0.2");
    CHECK(!vx_webhook_addr_allowed(a, (struct sockaddr *)&ss));
    ss = addr("10.200.1.1");
    CHECK(vx_webhook_addr_allowed(a, (struct sockaddr *)&ss));
    ss = addr("fd99::1");
    CHECK(vx_webhook_addr_allowed(a, (struct sockaddr *)&ss));
    ss = addr("fe80::1");
    CHECK(!vx_webhook_addr_allowed(a, (struct sockaddr *)&ss));
    vx_webhook_allow_free(a);

    const char *bad[] = {"10.0.0.0/33", "hooks.internal", "a,,b", "1.2.3.4,", "host:0", "host:99999", "::1/129"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vx_err e = {0};
        vx_webhook_allow *x = vx_webhook_allow_parse(bad[i], &e);
        if (x) fprintf(stderr, "  '%s' was accepted\n", bad[i]);
        CHECK(x == NULL);
        CHECK_EQ_STR(e.code, "invalid_webhook_allow");
        vx_webhook_allow_free(x);
    }
    a = vx_webhook_allow_parse("", &err);
    CHECK(a != NULL);
    vx_webhook_allow_free(a);
}

static void test_url_shape_rules(void) {
    vx_err err = {0};
    CHECK_EQ_INT(vx_webhook_url_check("https://example.com/hook", &err), 0);
    CHECK_EQ_INT(vx_webhook_url_check("http://[2001:db8::1]:8080/x", &err), 0);
    const char *bad[] = {"ftp://example.com/", "file:///etc/passwd", "https://", "http:///path",
                         "https://user:pw@example.com/", "https://exa mple.com/", "gopher://x/",
                         "javascript:alert(1)", "https://[fe80::1%25eth0]/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vx_err e = {0};
        int rc = vx_webhook_url_check(bad[i], &e);
        if (rc == 0) fprintf(stderr, "  %s was accepted\n", bad[i]);
        CHECK_EQ_INT(rc, -1);
        CHECK_EQ_STR(e.code, "invalid_webhook_url");
    }
}

static void test_private_destinations_are_refused_after_resolution(void) {
    /* Literals, and the numeric spellings of loopback that resolvers accept. */
    const char *refused[] = {
        "http://127.0.0.1/h", "http://localhost:8080/h", "http://[::1]/h", "http://[::ffff:127.0.0.1]/h",
        "http://2130706433/h", "http://0x7f000001/h", "http://0177.0.0.1/h", "http://127.1/h",
        "http://[::ffff:7f00:1]/h", "http://169.254.169.254/latest/meta-data", "http://[fd00::1]/h",
        "http://0.0.0.0:80/h", "http://10.0.0.1/h",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        vx_webhook_target t;
        vx_err e = {0};
        int rc = vx_webhook_target_resolve(refused[i], NULL, &t, &e);
        if (rc == 0) fprintf(stderr, "  %s was allowed (%s)\n", refused[i], t.address);
        CHECK_EQ_INT(rc, -1);
        CHECK_EQ_STR(e.code, "webhook_url_refused");
    }
}

static void test_allow_list_admits_listed_destinations(void) {
    vx_err err = {0};
    vx_webhook_allow *a = vx_webhook_allow_parse("127.0.0.1", &err);
    REQUIRE(a);
    vx_webhook_target t;
    CHECK_EQ_INT(vx_webhook_target_resolve("http://127.0.0.1:8080/h", a, &t, &err), 0);
    CHECK_EQ_STR(t.address, "127.0.0.1");
    CHECK(t.host_is_ip);
    CHECK_EQ_STR(t.resolve, "");
    CHECK_EQ_INT(vx_webhook_target_resolve("http://[::ffff:127.0.0.1]:8080/h", a, &t, &err), 0);
    vx_err e = {0};
    CHECK_EQ_INT(vx_webhook_target_resolve("http://127.0.0.2/h", a, &t, &e), -1); /* 127.0.0.2 is not listed */
    CHECK_EQ_STR(e.code, "webhook_url_refused");
    vx_webhook_allow_free(a);

    /* host:port admits that name on that port only, whatever it resolves to */
    REQUIRE((a = vx_webhook_allow_parse("localhost:9000", &err)));
    CHECK_EQ_INT(vx_webhook_target_resolve("http://localhost:9000/h", a, &t, &err), 0);
    CHECK(t.admitted_by_name);
    CHECK(!t.host_is_ip);
    CHECK(strncmp(t.resolve, "localhost:9000:", 15) == 0);
    vx_err e2 = {0};
    CHECK_EQ_INT(vx_webhook_target_resolve("http://localhost:9001/h", a, &t, &e2), -1);
    CHECK_EQ_STR(e2.code, "webhook_url_refused");
    CHECK_EQ_INT(vx_webhook_target_resolve("http://127.0.0.1:9000/h", a, &t, &e2), -1);
    vx_webhook_allow_free(a);
}

static void test_public_literal_destinations_pass(void) {
    vx_webhook_target t;
    vx_err err = {0};
    CHECK_EQ_INT(vx_webhook_target_resolve("https://93.184.216.34/h", NULL, &t, &err), 0);
    CHECK_EQ_INT(t.port, 443);
    CHECK_EQ_STR(t.address, "93.184.216.34");
    CHECK_EQ_INT(vx_webhook_target_resolve("http://[2606:4700:4700::1111]:8080/h", NULL, &t, &err), 0);
    CHECK_EQ_STR(t.host, "2606:4700:4700::1111");
    CHECK_EQ_INT(t.port, 8080);
}

TEST_MAIN(TEST_ENTRY(test_signature_matches_known_answers), TEST_ENTRY(test_tampered_body_changes_the_signature),
          TEST_ENTRY(test_malformed_secret_is_refused), TEST_ENTRY(test_new_secrets_are_prefixed_random_and_usable),
          TEST_ENTRY(test_backoff_grows_fourfold_within_jitter_bounds),
          TEST_ENTRY(test_type_filters_accept_known_types_only), TEST_ENTRY(test_private_and_special_addresses_are_not_public),
          TEST_ENTRY(test_allow_list_parses_cidrs_addresses_and_host_ports), TEST_ENTRY(test_url_shape_rules),
          TEST_ENTRY(test_private_destinations_are_refused_after_resolution),
          TEST_ENTRY(test_allow_list_admits_listed_destinations), TEST_ENTRY(test_public_literal_destinations_pass))
