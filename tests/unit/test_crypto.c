/* test_crypto.c - src/util/crypto.c and src/util/ids.c against published
 * test vectors (FIPS 180-2 SHA-256, RFC 4231 HMAC, RFC 4648 base64) and the
 * id layout promised in ids.h. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "test.h"
#include "../../src/util/clock.h"
#include "../../src/util/crypto.h"
#include "../../src/util/ids.h"

static void hex(const unsigned char *bin, size_t len, char *out) {
    for (size_t i = 0; i < len; i++) sprintf(out + 2 * i, "%02x", bin[i]);
}

static void test_sha256_matches_fips_vectors(void) {
    /* Fast argon2id for the password tests below; read once at init. */
    setenv("VOXD_FAST_PASSWORD_HASH", "1", 1);
    REQUIRE(vx_crypto_init() == 0);
    CHECK_EQ_INT(vx_crypto_init(), 0); /* idempotent */
    char out[VX_SHA256_HEX_SIZE];
    vx_sha256_hex("", 0, out);
    CHECK_EQ_STR(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    vx_sha256_hex("abc", 3, out);
    CHECK_EQ_STR(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_incremental_sha256_equals_one_shot(void) {
    size_t n = 1000000;
    char *a = malloc(n);
    REQUIRE(a);
    memset(a, 'a', n);
    char whole[VX_SHA256_HEX_SIZE], inc[VX_SHA256_HEX_SIZE];
    vx_sha256_hex(a, n, whole);
    CHECK_EQ_STR(whole, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    vx_sha256 h;
    vx_sha256_init(&h);
    size_t off = 0, step = 1;
    while (off < n) { /* uneven chunks cross block boundaries */
        size_t len = step < n - off ? step : n - off;
        vx_sha256_update(&h, a + off, len);
        off += len;
        step = step * 3 + 1;
    }
    vx_sha256_final_hex(&h, inc);
    CHECK_EQ_STR(inc, whole);
    free(a);
}

static void test_hmac_sha256_matches_rfc4231(void) {
    unsigned char mac[32];
    char out[65];
    unsigned char key1[20];
    memset(key1, 0x0b, sizeof key1);
    vx_hmac_sha256(key1, sizeof key1, "Hi There", 8, mac);
    hex(mac, 32, out);
    CHECK_EQ_STR(out, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    vx_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac);
    hex(mac, 32, out);
    CHECK_EQ_STR(out, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    unsigned char key6[131]; /* longer than the block: hashed first */
    memset(key6, 0xaa, sizeof key6);
    const char *msg = "Test Using Larger Than Block-Size Key - Hash Key First";
    vx_hmac_sha256(key6, sizeof key6, msg, strlen(msg), mac);
    hex(mac, 32, out);
    CHECK_EQ_STR(out, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

static void test_base64url_matches_rfc4648_without_padding(void) {
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const coded[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char enc[16], dec[16];
        CHECK(vx_base64url_size(strlen(plain[i])) <= sizeof enc);
        vx_base64url_encode(plain[i], strlen(plain[i]), enc);
        CHECK_EQ_STR(enc, coded[i]);
        long n = vx_base64url_decode(coded[i], strlen(coded[i]), dec, sizeof dec);
        CHECK_EQ_INT(n, (long)strlen(plain[i]));
        if (n >= 0) {
            dec[n] = '\0';
            CHECK_EQ_STR(dec, plain[i]);
        }
    }
    /* The URL-safe alphabet: 0xfb 0xff is "+/8" in standard base64. */
    const unsigned char bytes[] = {0xfb, 0xff};
    char enc[8];
    vx_base64url_encode(bytes, 2, enc);
    CHECK_EQ_STR(enc, "-_8");
    unsigned char back[4];
    CHECK_EQ_INT(vx_base64url_decode("-_8", 3, back, sizeof back), 2);
    CHECK(back[0] == 0xfb && back[1] == 0xff);
}

static void test_base64url_decode_refuses_malformed_input(void) {
    unsigned char out[16];
    CHECK_EQ_INT(vx_base64url_decode("Zm9v=", 5, out, sizeof out), -1);   /* padding */
    CHECK_EQ_INT(vx_base64url_decode("Zg==", 4, out, sizeof out), -1);
    CHECK_EQ_INT(vx_base64url_decode("+/8", 3, out, sizeof out), -1);     /* standard alphabet */
    CHECK_EQ_INT(vx_base64url_decode("Zm9v YmFy", 9, out, sizeof out), -1);
    CHECK_EQ_INT(vx_base64url_decode("Zm9v.", 5, out, sizeof out), -1);
    CHECK_EQ_INT(vx_base64url_decode("Z", 1, out, sizeof out), -1);       /* impossible length */
    CHECK_EQ_INT(vx_base64url_decode("Zh", 2, out, sizeof out), -1);      /* non-zero spare bits */
    CHECK_EQ_INT(vx_base64url_decode("Zm9vYmFy", 8, out, 5), -1);         /* output too small */
    /* Only text_len bytes are read. */
    CHECK_EQ_INT(vx_base64url_decode("Zm9v!!!", 4, out, sizeof out), 3);
}

static void test_password_hash_verifies_only_the_right_password(void) {
    char h1[VX_PASSWORD_HASH_SIZE], h2[VX_PASSWORD_HASH_SIZE];
    REQUIRE(vx_password_hash("correct horse battery", h1) == 0);
    REQUIRE(vx_password_hash("correct horse battery", h2) == 0);
    CHECK(strncmp(h1, "$argon2id$", 10) == 0);
    CHECK(strcmp(h1, h2) != 0); /* salted */
    CHECK(vx_password_verify(h1, "correct horse battery"));
    CHECK(vx_password_verify(h2, "correct horse battery"));
    CHECK(!vx_password_verify(h1, "correct horse batterY"));
    CHECK(!vx_password_verify(h1, ""));
    CHECK(!vx_password_verify("", "correct horse battery"));
    CHECK(!vx_password_verify("$argon2id$garbage", "correct horse battery"));
}

static void test_random_alnum_has_length_and_alphabet(void) {
    char a[41], b[41];
    vx_random_alnum(a, 40);
    vx_random_alnum(b, 40);
    CHECK_EQ_INT(strlen(a), 40);
    CHECK(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") == 40);
    CHECK(strcmp(a, b) != 0);
    char empty[1] = {'x'};
    vx_random_alnum(empty, 0);
    CHECK_EQ_STR(empty, "");
    /* Every character of the set shows up in a long enough sample. */
    char big[4001];
    vx_random_alnum(big, 4000);
    int seen[256] = {0};
    for (int i = 0; i < 4000; i++) seen[(unsigned char)big[i]] = 1;
    int distinct = 0;
    for (int i = 0; i < 256; i++) distinct += seen[i];
    CHECK_EQ_INT(distinct, 62);
}

static void test_ct_equal_compares_bytes(void) {
    CHECK(vx_ct_equal("abcd", "abcd", 4));
    CHECK(!vx_ct_equal("abcd", "abce", 4));
    CHECK(!vx_ct_equal("xbcd", "abcd", 4));
    CHECK(vx_ct_equal("a", "b", 0));
}

static void test_id_has_prefix_timestamp_and_random_part(void) {
    int64_t before = vx_now_ms();
    char id[VX_ID_SIZE];
    vx_id_new(id, "job");
    int64_t after = vx_now_ms();
    CHECK_EQ_INT(strlen(id), 4 + 26);
    CHECK(strncmp(id, "job_", 4) == 0);
    CHECK(vx_id_valid(id, "job"));
    static const char alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";
    int64_t ms = 0;
    for (int i = 0; i < 10; i++) ms = ms * 32 + (strchr(alphabet, id[4 + i]) - alphabet);
    CHECK(ms >= before && ms <= after);
}

static void test_ids_made_in_one_millisecond_still_increase(void) {
    vx_crypto_init();
    static char ids[5000][VX_ID_SIZE];
    for (int i = 0; i < 5000; i++) vx_id_new(ids[i], "led");
    int out_of_order = 0;
    for (int i = 1; i < 5000; i++)
        if (strcmp(ids[i - 1], ids[i]) >= 0) out_of_order++;
    CHECK_EQ_INT(out_of_order, 0);
    CHECK(vx_id_valid(ids[4999], "led"));
}

static void test_ids_are_unique_and_sort_by_creation_time(void) {
    enum { N = 5000 };
    char(*ids)[VX_ID_SIZE] = malloc(N * sizeof *ids);
    REQUIRE(ids);
    for (int i = 0; i < N; i++) vx_id_new(ids[i], "usr");
    qsort(ids, N, sizeof *ids, (int (*)(const void *, const void *))strcmp);
    for (int i = 1; i < N; i++) CHECK(strcmp(ids[i - 1], ids[i]) != 0);
    free(ids);
    char first[VX_ID_SIZE], second[VX_ID_SIZE];
    vx_id_new(first, "led");
    struct timespec pause = {0, 3 * 1000 * 1000}; /* next millisecond, not a timing check */
    nanosleep(&pause, NULL);
    vx_id_new(second, "led");
    CHECK(strcmp(first, second) < 0);
}

static void test_id_valid_refuses_wrong_shapes(void) {
    char id[VX_ID_SIZE];
    vx_id_new(id, "key");
    CHECK(vx_id_valid(id, "key"));
    CHECK(!vx_id_valid(id, "job"));
    CHECK(!vx_id_valid(id, "ke"));
    CHECK(!vx_id_valid(NULL, "key"));
    CHECK(!vx_id_valid("", "key"));
    CHECK(!vx_id_valid("key_", "key"));
    char bad[VX_ID_SIZE + 16];
    snprintf(bad, sizeof bad, "%s0", id);
    CHECK(!vx_id_valid(bad, "key"));          /* too long */
    snprintf(bad, sizeof bad, "%.*s", (int)strlen(id) - 1, id);
    CHECK(!vx_id_valid(bad, "key"));          /* too short */
    static const char *const wrong_chars[] = {"u", "i", "l", "o", "A", "/", "."};
    for (size_t i = 0; i < sizeof wrong_chars / sizeof *wrong_chars; i++) {
        snprintf(bad, sizeof bad, "%s", id);
        bad[10] = wrong_chars[i][0];
        CHECK(!vx_id_valid(bad, "key"));
    }
    snprintf(bad, sizeof bad, "key-%s", id + 4);
    CHECK(!vx_id_valid(bad, "key"));
}

static void test_overlong_prefix_still_fits_the_buffer(void) {
    char id[VX_ID_SIZE + 8];
    memset(id, 'Z', sizeof id);
    vx_id_new(id, "abcdefghijklmnopqrstuvwxyzabcdefghij");
    CHECK(memchr(id, '\0', VX_ID_SIZE) != NULL);
    CHECK_EQ_INT(id[VX_ID_SIZE], 'Z');
}

TEST_MAIN(TEST_ENTRY(test_sha256_matches_fips_vectors),
          TEST_ENTRY(test_incremental_sha256_equals_one_shot),
          TEST_ENTRY(test_hmac_sha256_matches_rfc4231),
          TEST_ENTRY(test_base64url_matches_rfc4648_without_padding),
          TEST_ENTRY(test_base64url_decode_refuses_malformed_input),
          TEST_ENTRY(test_password_hash_verifies_only_the_right_password),
          TEST_ENTRY(test_random_alnum_has_length_and_alphabet),
          TEST_ENTRY(test_ct_equal_compares_bytes),
          TEST_ENTRY(test_id_has_prefix_timestamp_and_random_part),
          TEST_ENTRY(test_ids_are_unique_and_sort_by_creation_time),
          TEST_ENTRY(test_ids_made_in_one_millisecond_still_increase),
          TEST_ENTRY(test_id_valid_refuses_wrong_shapes),
          TEST_ENTRY(test_overlong_prefix_still_fits_the_buffer))
