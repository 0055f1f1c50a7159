/* test_blob.c - the blob layer: key validation, scheme dispatch and the
 * filesystem backend (put by rename and by copy across file systems, reads,
 * ranges, stat, remove, fetch_local, atomic replacement, failed puts). */
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include "../../src/blob/blob.h"
#include "test.h"

static char dir[64];
static char spool[128];
static vx_blob *b;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    return remove(path);
}

static int setup(void) {
    snprintf(dir, sizeof dir, "/tmp/voxd-blob-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    snprintf(spool, sizeof spool, "%s/spool", dir);
    if (mkdir(spool, 0700) != 0) return -1;
    char url[128];
    snprintf(url, sizeof url, "file://%s/objects", dir);
    vx_err err;
    b = vx_blob_open(url, &err);
    return b ? 0 : -1;
}

static void teardown(void) {
    vx_blob_close(b);
    b = NULL;
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* Writes `len` bytes of a pattern (byte i = i * 7 + seed) to path. */
static int write_pattern(const char *path, size_t len, unsigned seed) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    for (size_t i = 0; i < len; i++) fputc((int)((i * 7 + seed) & 0xff), f);
    return fclose(f);
}

static int spool_file(char *out, size_t cap, const char *name, size_t len, unsigned seed) {
    snprintf(out, cap, "%s/%s", spool, name);
    return write_pattern(out, len, seed);
}

static int count_files(const char *path) {
    int n = 0;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "find '%s' -type f | wc -l", path);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    if (fscanf(p, "%d", &n) != 1) n = -1;
    pclose(p);
    return n;
}

static void test_key_validation_refuses_traversal_and_odd_names(void) {
    CHECK(vx_blob_key_valid("inputs/job_123/input.wav"));
    CHECK(vx_blob_key_valid("a"));
    CHECK(vx_blob_key_valid("A-b_c.9/x.y"));
    const char *bad[] = {"", "/etc/passwd", "../x", "a/../b", "a/..", "..", ".", "a/./b", "a//b",
                         "a/", "a b", "a\\b", "a?b", "caf\xc3\xa9", ".tmp/x", "a/.hidden", "a:b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (vx_blob_key_valid(bad[i])) fprintf(stderr, "  accepted bad key \"%s\"\n", bad[i]);
        CHECK(!vx_blob_key_valid(bad[i]));
    }
    char longkey[600];
    memset(longkey, 'a', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    CHECK(!vx_blob_key_valid(longkey));
    CHECK(!vx_blob_key_valid(NULL));
}

static void test_unknown_scheme_is_refused(void) {
    vx_err err;
    CHECK(vx_blob_open("ftp://host/dir", &err) == NULL);
    CHECK_EQ_INT(err.status, VX_E_INVALID);
    CHECK_EQ_STR(err.code, "unknown_blob_scheme");
    CHECK(vx_blob_open("file://", &err) == NULL);
    CHECK_EQ_INT(err.status, VX_E_INVALID);
}

static void test_put_moves_the_spool_file_and_reads_back_ranges(void) {
    REQUIRE(setup() == 0);
    vx_err err;
    char src[160];
    REQUIRE(spool_file(src, sizeof src, "up1", 100000, 3) == 0);
    CHECK_EQ_INT(b->ops->ping(b, &err), 0);
    CHECK_EQ_INT(b->ops->put_file(b, "inputs/job_1/input.wav", src, &err), 0);
    CHECK(access(src, F_OK) != 0);
    int64_t size = 0;
    CHECK_EQ_INT(b->ops->stat(b, "inputs/job_1/input.wav", &size, &err), 0);
    CHECK_EQ_INT(size, 100000);

    vx_blob_reader r;
    REQUIRE(b->ops->reader_open(b, "inputs/job_1/input.wav", &r, &err) == 0);
    CHECK_EQ_INT(r.size, 100000);
    CHECK(r.fd >= 0);
    CHECK(fcntl(r.fd, F_GETFD) & FD_CLOEXEC);
    unsigned char buf[300];
    CHECK_EQ_INT(b->ops->reader_pread(&r, buf, sizeof buf, 5000, &err), 300);
    bool same = true;
    for (size_t i = 0; i < sizeof buf; i++) same &= buf[i] == (unsigned char)(((5000 + i) * 7 + 3) & 0xff);
    CHECK(same);
    CHECK_EQ_INT(b->ops->reader_pread(&r, buf, sizeof buf, 99900, &err), 100);
    CHECK_EQ_INT(buf[99], (unsigned char)((99999 * 7 + 3) & 0xff));
    CHECK_EQ_INT(b->ops->reader_pread(&r, buf, sizeof buf, 100000, &err), 0);
    CHECK_EQ_INT(b->ops->reader_pread(&r, buf, sizeof buf, -1, &err), -1);
    b->ops->reader_close(&r);
    CHECK_EQ_INT(r.fd, -1);

    char local[512];
    bool is_temp = true;
    CHECK_EQ_INT(b->ops->fetch_local(b, "inputs/job_1/input.wav", "/tmp", local, sizeof local, &is_temp, &err), 0);
    CHECK(!is_temp);
    struct stat sb;
    CHECK(stat(local, &sb) == 0 && sb.st_size == 100000);
    char tiny[8];
    CHECK_EQ_INT(b->ops->fetch_local(b, "inputs/job_1/input.wav", "/tmp", tiny, sizeof tiny, &is_temp, &err), -1);

    CHECK_EQ_INT(b->ops->remove(b, "inputs/job_1/input.wav", &err), 0);
    CHECK_EQ_INT(b->ops->stat(b, "inputs/job_1/input.wav", &size, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_NOT_FOUND);
    CHECK_EQ_INT(b->ops->remove(b, "inputs/job_1/input.wav", &err), 0);
    CHECK_EQ_INT(b->ops->remove(b, "never/was", &err), 0);
    teardown();
}

static void test_missing_and_invalid_keys_are_reported(void) {
    REQUIRE(setup() == 0);
    vx_err err;
    vx_blob_reader r;
    CHECK_EQ_INT(b->ops->reader_open(b, "nope/none.wav", &r, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_NOT_FOUND);
    CHECK_EQ_STR(err.code, "object_not_found");
    char src[160];
    REQUIRE(spool_file(src, sizeof src, "x", 10, 1) == 0);
    REQUIRE(b->ops->put_file(b, "dir/obj", src, &err) == 0);
    /* a "directory" is not an object */
    CHECK_EQ_INT(b->ops->reader_open(b, "dir", &r, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_NOT_FOUND);
    int64_t size;
    CHECK_EQ_INT(b->ops->stat(b, "dir", &size, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_NOT_FOUND);

    const char *bad[] = {"../escape", "/abs", "a//b", ".tmp/put.x"};
    REQUIRE(spool_file(src, sizeof src, "y", 10, 1) == 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ_INT(b->ops->put_file(b, bad[i], src, &err), -1);
        CHECK_EQ_STR(err.code, "invalid_key");
        CHECK_EQ_INT(b->ops->reader_open(b, bad[i], &r, &err), -1);
        CHECK_EQ_STR(err.code, "invalid_key");
        CHECK_EQ_INT(b->ops->remove(b, bad[i], &err), -1);
        CHECK_EQ_INT(b->ops->stat(b, bad[i], &size, &err), -1);
    }
    CHECK(access(src, F_OK) == 0);
    char escape[160];
    snprintf(escape, sizeof escape, "%s/escape", dir);
    CHECK(access(escape, F_OK) != 0);
    teardown();
}

static void test_failed_put_leaves_no_key_and_no_partial_file(void) {
    REQUIRE(setup() == 0);
    vx_err err;
    char missing[160];
    snprintf(missing, sizeof missing, "%s/does-not-exist", spool);
    CHECK_EQ_INT(b->ops->put_file(b, "out/a.wav", missing, &err), -1);
    int64_t size;
    CHECK_EQ_INT(b->ops->stat(b, "out/a.wav", &size, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_NOT_FOUND);
    /* a directory is not a file to store: refused, and left where it was */
    char sub[160];
    snprintf(sub, sizeof sub, "%s/adir", spool);
    REQUIRE(mkdir(sub, 0700) == 0);
    CHECK_EQ_INT(b->ops->put_file(b, "out/b.wav", sub, &err), -1);
    CHECK_EQ_INT(err.status, VX_E_INVALID);
    CHECK_EQ_INT(b->ops->stat(b, "out/b.wav", &size, &err), -1);
    struct stat sb;
    CHECK(stat(sub, &sb) == 0 && S_ISDIR(sb.st_mode));
    char objects[128];
    snprintf(objects, sizeof objects, "%s/objects", dir);
    CHECK_EQ_INT(count_files(objects), 0);
    teardown();
}

static void test_overwrite_is_atomic_for_open_readers(void) {
    REQUIRE(setup() == 0);
    vx_err err;
    char src[160];
    REQUIRE(spool_file(src, sizeof src, "v1", 4096, 1) == 0);
    REQUIRE(b->ops->put_file(b, "doc/result.json", src, &err) == 0);
    vx_blob_reader old;
    REQUIRE(b->ops->reader_open(b, "doc/result.json", &old, &err) == 0);
    REQUIRE(spool_file(src, sizeof src, "v2", 100, 2) == 0);
    CHECK_EQ_INT(b->ops->put_file(b, "doc/result.json", src, &err), 0);
    /* the open reader still sees the whole first version */
    unsigned char buf[4096];
    CHECK_EQ_INT(b->ops->reader_pread(&old, buf, sizeof buf, 0, &err), 4096);
    CHECK_EQ_INT(buf[4095], (unsigned char)((4095 * 7 + 1) & 0xff));
    b->ops->reader_close(&old);
    int64_t size = 0;
    CHECK_EQ_INT(b->ops->stat(b, "doc/result.json", &size, &err), 0);
    CHECK_EQ_INT(size, 100);
    teardown();
}

/* /dev/shm is tmpfs: rename(2) from there fails with EXDEV, so this takes the
 * copy path (spool file in <dir>/.tmp, fsync, rename). */
static void test_put_from_another_file_system_copies_and_cleans_up(void) {
    struct statfs a, c;
    REQUIRE(statfs("/tmp", &a) == 0);
    if (statfs("/dev/shm", &c) != 0 || a.f_type == c.f_type) {
        fprintf(stderr, "  (no second file system here; copy path not exercised)\n");
        return;
    }
    REQUIRE(setup() == 0);
    vx_err err;
    char src[128];
    snprintf(src, sizeof src, "/dev/shm/voxd-blob-test-%d", (int)getpid());
    REQUIRE(write_pattern(src, 300000, 5) == 0);
    CHECK_EQ_INT(b->ops->put_file(b, "x/y/z.bin", src, &err), 0);
    CHECK(access(src, F_OK) != 0);
    vx_blob_reader r;
    REQUIRE(b->ops->reader_open(b, "x/y/z.bin", &r, &err) == 0);
    CHECK_EQ_INT(r.size, 300000);
    unsigned char buf[16];
    CHECK_EQ_INT(b->ops->reader_pread(&r, buf, sizeof buf, 299990, &err), 10);
    CHECK_EQ_INT(buf[9], (unsigned char)((299999 * 7 + 5) & 0xff));
    b->ops->reader_close(&r);
    char tmpdir[128];
    snprintf(tmpdir, sizeof tmpdir, "%s/objects/.tmp", dir);
    CHECK_EQ_INT(count_files(tmpdir), 0);
    unlink(src);
    teardown();
}

typedef struct seen_keys {
    char keys[8][512];
    int64_t sizes[8];
    int n, stop_after;
} seen_keys;

static int collect(const vx_blob_entry *e, void *user) {
    seen_keys *s = user;
    if (s->n < 8) {
        snprintf(s->keys[s->n], sizeof s->keys[0], "%s", e->key);
        s->sizes[s->n] = e->size;
    }
    s->n++;
    return s->stop_after && s->n >= s->stop_after;
}

static bool saw(const seen_keys *s, const char *key) {
    for (int i = 0; i < s->n && i < 8; i++)
        if (strcmp(s->keys[i], key) == 0) return true;
    return false;
}

static void test_list_finds_objects_under_a_prefix_but_not_the_spool(void) {
    REQUIRE(setup() == 0);
    vx_err err;
    const char *keys[] = {"users/u1/job_1/input.wav", "users/u1/uploads/upl_1", "users/u10/x", "other/y"};
    char src[160];
    for (int i = 0; i < 4; i++) {
        REQUIRE(spool_file(src, sizeof src, "l", 10 + (size_t)i, 1) == 0);
        REQUIRE(b->ops->put_file(b, keys[i], src, &err) == 0);
    }
    char stray[256];
    snprintf(stray, sizeof stray, "%s/objects/.tmp/half-written", dir);
    FILE *f = fopen(stray, "w");
    REQUIRE(f != NULL);
    fclose(f);
    seen_keys all = {0}, u1 = {0}, none = {0}, first = {.stop_after = 1};
    CHECK_EQ_INT(b->ops->list(b, "", collect, &all, &err), 0);
    CHECK_EQ_INT(all.n, 4);
    CHECK_EQ_INT(b->ops->list(b, "users/u1/", collect, &u1, &err), 0);
    CHECK_EQ_INT(u1.n, 2);
    CHECK(saw(&u1, "users/u1/job_1/input.wav") && saw(&u1, "users/u1/uploads/upl_1"));
    CHECK(!saw(&u1, "users/u10/x"));
    for (int i = 0; i < u1.n; i++) CHECK(u1.sizes[i] == 10 || u1.sizes[i] == 11);
    CHECK_EQ_INT(b->ops->list(b, "users/u1", collect, &none, &err), 0); /* a plain prefix, not a folder */
    CHECK_EQ_INT(none.n, 3);
    CHECK_EQ_INT(b->ops->list(b, "users/", collect, &first, &err), 0);
    CHECK_EQ_INT(first.n, 1);
    seen_keys missing = {0};
    CHECK_EQ_INT(b->ops->list(b, "nothing/here/", collect, &missing, &err), 0);
    CHECK_EQ_INT(missing.n, 0);
    teardown();
}

TEST_MAIN(TEST_ENTRY(test_key_validation_refuses_traversal_and_odd_names),
          TEST_ENTRY(test_unknown_scheme_is_refused),
          TEST_ENTRY(test_put_moves_the_spool_file_and_reads_back_ranges),
          TEST_ENTRY(test_missing_and_invalid_keys_are_reported),
          TEST_ENTRY(test_failed_put_leaves_no_key_and_no_partial_file),
          TEST_ENTRY(test_overwrite_is_atomic_for_open_readers),
          TEST_ENTRY(test_put_from_another_file_system_copies_and_cleans_up),
          TEST_ENTRY(test_list_finds_objects_under_a_prefix_but_not_the_spool))
