/* test_sigv4.c - AWS Signature Version 4 (src/blob/sigv4.c) against the
 * known answers AWS publishes: the signing-key derivation example of the AWS
 * General Reference, the four header-signed examples (GET Object, PUT Object,
 * GET Bucket Lifecycle, GET Bucket List Objects) and the presigned GET URL of
 * the S3 API Reference ("Authenticating Requests: Using Query Parameters");
 * then the encoding and presigning rules around them. */
#include <stdlib.h>
#include <string.h>
#include "../../src/blob/sigv4.h"
#include "test.h"

#define DOC_KEY_ID "AKIAIOSFODNN7EXAMPLE"
#define DOC_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define DOC_HOST "examplebucket.s3.amazonaws.com"
#define DOC_DATE "20130524T000000Z"

static void hex(const unsigned char *bin, size_t len, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[bin[i] >> 4];
        out[2 * i + 1] = digits[bin[i] & 15];
    }
    out[2 * len] = '\0';
}

static char *encoded(const char *s, bool keep_slash) {
    vx_strbuf b = {0};
    vx_sigv4_uri_encode(&b, s, keep_slash);
    return vx_strbuf_take(&b);
}

static void test_signing_key_matches_the_aws_derivation_example(void) {
    vx_crypto_init();
    unsigned char key[32];
    char text[65];
    /* AWS General Reference, "derive a signing key" (note the '+' secret). */
    vx_sigv4_signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam", key);
    hex(key, sizeof key, text);
    CHECK_EQ_STR(text, "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
}

static void test_get_object_example_signs_as_documented(void) {
    vx_crypto_init();
    vx_sigv4_request req = {
        .method = "GET",
        .canonical_uri = "/test.txt",
        .canonical_query = "",
        .canonical_headers = "host:" DOC_HOST "\nrange:bytes=0-9\nx-amz-content-sha256:" VX_SIGV4_EMPTY_SHA256
                             "\nx-amz-date:" DOC_DATE "\n",
        .signed_headers = "host;range;x-amz-content-sha256;x-amz-date",
        .payload_hash = VX_SIGV4_EMPTY_SHA256,
        .amz_date = DOC_DATE,
        .region = "us-east-1",
        .service = "s3",
    };
    char *sts = vx_sigv4_string_to_sign(&req);
    CHECK_EQ_STR(sts, "AWS4-HMAC-SHA256\n" DOC_DATE "\n20130524/us-east-1/s3/aws4_request\n"
                      "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
    free(sts);
    char sig[VX_SHA256_HEX_SIZE];
    vx_sigv4_sign(&req, DOC_SECRET, sig);
    CHECK_EQ_STR(sig, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

static void test_put_object_example_signs_as_documented(void) {
    vx_crypto_init();
    static const char body[] = "Welcome to Amazon S3.";
    char payload[VX_SHA256_HEX_SIZE];
    vx_sha256_hex(body, strlen(body), payload);
    CHECK_EQ_STR(payload, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    /* The key "test$file.text" shows the path encoding ('$' -> %24). */
    char *uri_tail = encoded("test$file.text", true);
    char uri[64];
    snprintf(uri, sizeof uri, "/%s", uri_tail);
    free(uri_tail);
    CHECK_EQ_STR(uri, "/test%24file.text");
    char headers[512];
    snprintf(headers, sizeof headers,
             "date:Fri, 24 May 2013 00:00:00 GMT\nhost:" DOC_HOST "\nx-amz-content-sha256:%s\nx-amz-date:" DOC_DATE
             "\nx-amz-storage-class:REDUCED_REDUNDANCY\n",
             payload);
    vx_sigv4_request req = {
        .method = "PUT",
        .canonical_uri = uri,
        .canonical_query = "",
        .canonical_headers = headers,
        .signed_headers = "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
        .payload_hash = payload,
        .amz_date = DOC_DATE,
        .region = "us-east-1",
        .service = "s3",
    };
    char sig[VX_SHA256_HEX_SIZE];
    vx_sigv4_sign(&req, DOC_SECRET, sig);
    CHECK_EQ_STR(sig, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

static void sign_bucket_get(const char *query, char sig[VX_SHA256_HEX_SIZE]) {
    vx_sigv4_request req = {
        .method = "GET",
        .canonical_uri = "/",
        .canonical_query = query,
        .canonical_headers = "host:" DOC_HOST "\nx-amz-content-sha256:" VX_SIGV4_EMPTY_SHA256
                             "\nx-amz-date:" DOC_DATE "\n",
        .signed_headers = "host;x-amz-content-sha256;x-amz-date",
        .payload_hash = VX_SIGV4_EMPTY_SHA256,
        .amz_date = DOC_DATE,
        .region = "us-east-1",
        .service = "s3",
    };
    vx_sigv4_sign(&req, DOC_SECRET, sig);
}

static void test_bucket_examples_sign_their_canonical_queries_as_documented(void) {
    vx_crypto_init();
    char sig[VX_SHA256_HEX_SIZE];
    /* GET ?lifecycle: a bare parameter is "name=". */
    vx_strbuf q = {0};
    vx_sigv4_canonical_query(&q, (vx_sigv4_param[]){{.name = "lifecycle", .value = ""}}, 1);
    CHECK_EQ_STR(q.data, "lifecycle=");
    sign_bucket_get(q.data, sig);
    CHECK_EQ_STR(sig, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
    vx_strbuf_free(&q);
    /* GET ?prefix=J&max-keys=2, given unsorted: the canonical form sorts. */
    vx_sigv4_canonical_query(&q, (vx_sigv4_param[]){{.name = "prefix", .value = "J"}, {.name = "max-keys", .value = "2"}},
                             2);
    CHECK_EQ_STR(q.data, "max-keys=2&prefix=J");
    sign_bucket_get(q.data, sig);
    CHECK_EQ_STR(sig, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
    vx_strbuf_free(&q);
}

static vx_sigv4_presign doc_presign(void) {
    return (vx_sigv4_presign){
        .method = "GET",
        .base_url = "https://" DOC_HOST,
        .path = "/test.txt",
        .region = "us-east-1",
        .service = "s3",
        .access_key = DOC_KEY_ID,
        .secret_key = DOC_SECRET,
        .expires = 86400,
        .now = 1369353600, /* 2013-05-24T00:00:00Z */
    };
}

static void test_presigned_get_matches_the_documented_url(void) {
    vx_crypto_init();
    vx_sigv4_presign p = doc_presign();
    vx_err err = {0};
    char *url = vx_sigv4_presign_url(&p, &err);
    REQUIRE(url != NULL);
    CHECK_EQ_STR(url, "https://" DOC_HOST "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                      "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
                      "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
                      "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
    free(url);
    /* The same example's canonical request hash, via the string to sign. */
    vx_sigv4_request req = {
        .method = "GET",
        .canonical_uri = "/test.txt",
        .canonical_query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2F"
                           "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400"
                           "&X-Amz-SignedHeaders=host",
        .canonical_headers = "host:" DOC_HOST "\n",
        .signed_headers = "host",
        .payload_hash = VX_SIGV4_UNSIGNED_PAYLOAD,
        .amz_date = DOC_DATE,
        .region = "us-east-1",
        .service = "s3",
    };
    char *sts = vx_sigv4_string_to_sign(&req);
    CHECK(strstr(sts, "\n3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04") != NULL);
    free(sts);
}

static void test_uri_encoding_keeps_only_unreserved_characters(void) {
    char *a = encoded("a b/c~d._-*+=&%\xc3\xa9", true);
    CHECK_EQ_STR(a, "a%20b/c~d._-%2A%2B%3D%26%25%C3%A9");
    char *b = encoded("a b/c", false);
    CHECK_EQ_STR(b, "a%20b%2Fc");
    char *c = encoded("", false);
    CHECK_EQ_STR(c, "");
    free(a);
    free(b);
    free(c);
    vx_strbuf q = {0};
    vx_sigv4_canonical_query(&q, (vx_sigv4_param[]){{.name = "uploadId", .value = "a+b/c="},
                                                   {.name = "partNumber", .value = "10"}},
                             2);
    CHECK_EQ_STR(q.data, "partNumber=10&uploadId=a%2Bb%2Fc%3D");
    vx_strbuf_free(&q);
}

static char *signature_of(const char *url) {
    const char *s = strstr(url, "X-Amz-Signature=");
    return s ? strdup(s + 16) : strdup("");
}

static void test_presigned_url_binds_method_path_host_and_expiry(void) {
    vx_crypto_init();
    vx_err err = {0};
    vx_sigv4_presign base = doc_presign();
    char *ref_url = vx_sigv4_presign_url(&base, &err);
    REQUIRE(ref_url != NULL);
    char *ref = signature_of(ref_url);
    vx_sigv4_presign variants[5];
    for (int i = 0; i < 5; i++) variants[i] = base;
    variants[0].method = "PUT";
    variants[1].path = "/test2.txt";
    variants[2].base_url = "https://other.s3.amazonaws.com";
    variants[3].expires = 86401;
    variants[4].now = base.now + 1;
    for (int i = 0; i < 5; i++) {
        char *url = vx_sigv4_presign_url(&variants[i], &err);
        REQUIRE(url != NULL);
        char *sig = signature_of(url);
        CHECK(strlen(sig) == 64 && strcmp(sig, ref) != 0);
        free(sig);
        free(url);
    }
    free(ref);
    free(ref_url);
}

static void test_presign_signs_the_host_a_client_sends(void) {
    vx_crypto_init();
    vx_err err = {0};
    vx_sigv4_presign a = doc_presign(), b = doc_presign(), c = doc_presign();
    a.base_url = "http://127.0.0.1";
    b.base_url = "http://127.0.0.1:80"; /* clients omit the default port */
    c.base_url = "http://127.0.0.1:9000";
    char *ua = vx_sigv4_presign_url(&a, &err), *ub = vx_sigv4_presign_url(&b, &err),
         *uc = vx_sigv4_presign_url(&c, &err);
    REQUIRE(ua && ub && uc);
    char *sa = signature_of(ua), *sb = signature_of(ub), *sc = signature_of(uc);
    CHECK_EQ_STR(sa, sb);
    CHECK(strcmp(sa, sc) != 0);
    CHECK(strncmp(uc, "http://127.0.0.1:9000/test.txt?", 31) == 0);
    free(sa), free(sb), free(sc), free(ua), free(ub), free(uc);
}

static void test_presign_carries_a_session_token_inside_the_signature(void) {
    vx_crypto_init();
    vx_err err = {0};
    vx_sigv4_presign p = doc_presign();
    p.session_token = "tok/en+1=";
    char *url = vx_sigv4_presign_url(&p, &err);
    REQUIRE(url != NULL);
    /* Signed parameters are sorted, so the token comes before SignedHeaders. */
    CHECK(strstr(url, "&X-Amz-Security-Token=tok%2Fen%2B1%3D&X-Amz-SignedHeaders=host&X-Amz-Signature=") != NULL);
    char *with = signature_of(url);
    p.session_token = "other";
    char *url2 = vx_sigv4_presign_url(&p, &err);
    REQUIRE(url2 != NULL);
    char *other = signature_of(url2);
    CHECK(strcmp(with, other) != 0);
    free(with), free(other), free(url), free(url2);
}

static void test_presign_refuses_bad_input(void) {
    vx_crypto_init();
    vx_err err = {0};
    vx_sigv4_presign p = doc_presign();
    p.expires = 0;
    CHECK(vx_sigv4_presign_url(&p, &err) == NULL);
    CHECK_EQ_INT(err.status, VX_E_INVALID);
    CHECK_EQ_STR(err.code, "invalid_presign");
    p.expires = VX_SIGV4_MAX_EXPIRES + 1;
    CHECK(vx_sigv4_presign_url(&p, &err) == NULL);
    p = doc_presign();
    p.method = "DELETE";
    CHECK(vx_sigv4_presign_url(&p, &err) == NULL);
    p = doc_presign();
    p.base_url = "ftp://host";
    CHECK(vx_sigv4_presign_url(&p, &err) == NULL);
    p.base_url = "https://host/path";
    CHECK(vx_sigv4_presign_url(&p, &err) == NULL);
    p = doc_presign();
    p.path = "test.txt";
    CHECK(vx_sigv4_presign_url(&p, &err) == NULL);
    p = doc_presign();
    p.expires = VX_SIGV4_MAX_EXPIRES;
    char *url = vx_sigv4_presign_url(&p, &err);
    CHECK(url != NULL && strstr(url, "X-Amz-Expires=604800&") != NULL);
    free(url);
}

TEST_MAIN(TEST_ENTRY(test_signing_key_matches_the_aws_derivation_example),
          TEST_ENTRY(test_get_object_example_signs_as_documented),
          TEST_ENTRY(test_put_object_example_signs_as_documented),
          TEST_ENTRY(test_bucket_examples_sign_their_canonical_queries_as_documented),
          TEST_ENTRY(test_presigned_get_matches_the_documented_url),
          TEST_ENTRY(test_uri_encoding_keeps_only_unreserved_characters),
          TEST_ENTRY(test_presigned_url_binds_method_path_host_and_expiry),
          TEST_ENTRY(test_presign_signs_the_host_a_client_sends),
          TEST_ENTRY(test_presign_carries_a_session_token_inside_the_signature),
          TEST_ENTRY(test_presign_refuses_bad_input))
