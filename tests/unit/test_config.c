/* test_config.c - src/util/config.c: defaults, VOXD_* variables, flags (which
 * win), value syntaxes, derived paths and the help text. Each test starts
 * from a clean environment and runs inside its own scratch directory. */
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "test.h"
#include "../../src/util/config.h"
#include "../../src/util/credits.h"

extern char **environ;

static char scratch[PATH_MAX]; /* realpath of this test's directory */
static char home[PATH_MAX];    /* where the test binary was started */

static void clear_voxd_env(void) {
    for (;;) {
        char name[256] = "";
        for (char **e = environ; *e; e++) {
            if (strncmp(*e, "VOXD_", 5) == 0) {
                size_t n = strcspn(*e, "=");
                snprintf(name, sizeof name, "%.*s", (int)n, *e);
                break;
            }
        }
        if (!name[0]) return;
        unsetenv(name);
    }
}

/* Fresh scratch dir as cwd and no VOXD_* variables. */
static void enter(void) {
    clear_voxd_env();
    if (!home[0] && !getcwd(home, sizeof home)) abort();
    char tmpl[] = "/tmp/voxd-config-XXXXXX";
    if (!mkdtemp(tmpl) || !realpath(tmpl, scratch) || chdir(scratch) != 0) abort();
}

static void leave(void) {
    clear_voxd_env();
    if (chdir(home) != 0) abort();
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", scratch);
}

/* vx_config_load from defaults on a NULL-terminated list of arguments. */
static int load_args(vx_config *cfg, vx_err *err, ...) {
    char *argv[32];
    int argc = 0;
    va_list ap;
    va_start(ap, err);
    for (char *a; argc < 31 && (a = va_arg(ap, char *));) argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    vx_config_defaults(cfg);
    vx_err_clear(err);
    return vx_config_load(cfg, argc, argv, err);
}
#define LOAD(cfg, err, ...) load_args(cfg, err, __VA_ARGS__, (char *)NULL)

static void test_defaults_are_the_documented_ones(void) {
    vx_config c;
    vx_config_defaults(&c);
    CHECK_EQ_STR(c.listen, "127.0.0.1:8080");
    CHECK_EQ_STR(c.data_dir, "./data");
    CHECK_EQ_STR(c.node_id, "local");
    CHECK_EQ_INT(c.http_threads, 4);
    CHECK_EQ_INT(c.workers, 2);
    CHECK_EQ_INT(c.request_timeout_s, 60);
    CHECK_EQ_INT(c.max_body_bytes, 1 << 20);
    CHECK_EQ_INT(c.max_connections, 1024);
    CHECK_EQ_INT(c.max_upload_bytes, 256LL << 20);
    CHECK(c.max_duration_s == 10800.0);
    CHECK_EQ_INT(c.signup_grant_micro, 10 * VX_MICRO);
    CHECK(!c.allow_self_top_up);
    CHECK(c.allow_signup);
    CHECK_EQ_INT(c.jwt_ttl_s, 900);
    CHECK_EQ_STR(c.admin_password, "");
    CHECK_EQ_INT(c.lease_s, 30);
    CHECK_EQ_INT(c.heartbeat_s, 5);
    CHECK_EQ_INT(c.max_attempts, 3);
    CHECK_EQ_INT(c.retry_base_s, 2);
    CHECK_EQ_INT(c.shutdown_grace_s, 10);
    CHECK_EQ_STR(c.log_level, "info");
    CHECK(c.access_log);
}

static void test_derived_urls_use_the_absolute_data_dir(void) {
    enter();
    vx_config c;
    vx_err err;
    char want[PATH_MAX + 64];
    CHECK_EQ_INT(LOAD(&c, &err, "--listen", "0.0.0.0:9000"), 0);
    snprintf(want, sizeof want, "%s/data", scratch);
    CHECK_EQ_STR(c.data_dir, want);
    snprintf(want, sizeof want, "sqlite://%s/data/voxd.db", scratch);
    CHECK_EQ_STR(c.db_url, want);
    snprintf(want, sizeof want, "file://%s/data/blobs", scratch);
    CHECK_EQ_STR(c.blob_url, want);
    /* Explicit URLs are kept as given. */
    CHECK_EQ_INT(LOAD(&c, &err, "--db", "sqlite:///x/y.db", "--blob=file:///b"), 0);
    CHECK_EQ_STR(c.db_url, "sqlite:///x/y.db");
    CHECK_EQ_STR(c.blob_url, "file:///b");
    leave();
}

static void test_data_dir_is_made_absolute_even_when_missing(void) {
    enter();
    vx_config c;
    vx_err err;
    char want[PATH_MAX + 64];
    REQUIRE(mkdir("sub", 0700) == 0 && symlink("sub", "link") == 0);
    CHECK_EQ_INT(LOAD(&c, &err, "--data", "link/new/"), 0); /* parent resolved, dir not yet made */
    snprintf(want, sizeof want, "%s/sub/new", scratch);
    CHECK_EQ_STR(c.data_dir, want);
    CHECK_EQ_INT(LOAD(&c, &err, "--data", "link"), 0);
    snprintf(want, sizeof want, "%s/sub", scratch);
    CHECK_EQ_STR(c.data_dir, want);
    CHECK_EQ_INT(LOAD(&c, &err, "--data", "a/b/c"), 0); /* no parent either */
    snprintf(want, sizeof want, "%s/a/b/c", scratch);
    CHECK_EQ_STR(c.data_dir, want);
    CHECK_EQ_INT(LOAD(&c, &err, "--data", "/nonexistent-voxd/x"), 0);
    CHECK_EQ_STR(c.data_dir, "/nonexistent-voxd/x");
    CHECK_EQ_STR(c.db_url, "sqlite:///nonexistent-voxd/x/voxd.db");
    leave();
}

static void test_web_dir_prefers_local_web_then_system(void) {
    enter();
    vx_config c;
    vx_err err;
    CHECK_EQ_INT(LOAD(&c, &err, "--workers", "1"), 0);
    CHECK_EQ_STR(c.web_dir, "/usr/share/voxd/web");
    REQUIRE(mkdir("web", 0700) == 0);
    CHECK_EQ_INT(LOAD(&c, &err, "--workers", "1"), 0);
    char want[PATH_MAX + 8];
    snprintf(want, sizeof want, "%s/web", scratch);
    CHECK_EQ_STR(c.web_dir, want);
    CHECK_EQ_INT(LOAD(&c, &err, "--web", "/srv/ui"), 0);
    CHECK_EQ_STR(c.web_dir, "/srv/ui");
    leave();
}

static void test_environment_variables_apply(void) {
    enter();
    setenv("VOXD_MAX_UPLOAD", "512M", 1);
    setenv("VOXD_ALLOW_SELF_TOP_UP", "yes", 1);
    setenv("VOXD_NO_SIGNUP", "true", 1);
    setenv("VOXD_NO_ACCESS_LOG", "1", 1);
    setenv("VOXD_ADMIN_PASSWORD", "s3cret-admin-pass", 1);
    setenv("VOXD_LISTEN", "127.0.0.1:0", 1);
    setenv("VOXD_SIGNUP_GRANT", "2.5", 1);
    setenv("VOXD_MAX_DURATION", "90m", 1);
    setenv("VOXD_LOG_LEVEL", "debug", 1);
    setenv("VOXD_DB", "", 1); /* empty is unset */
    vx_config c;
    vx_err err;
    CHECK_EQ_INT(LOAD(&c, &err, "--workers", "2"), 0);
    CHECK_EQ_INT(c.max_upload_bytes, 512LL << 20);
    CHECK(c.allow_self_top_up);
    CHECK(!c.allow_signup);
    CHECK(!c.access_log);
    CHECK_EQ_STR(c.admin_password, "s3cret-admin-pass");
    CHECK_EQ_STR(c.listen, "127.0.0.1:0");
    CHECK_EQ_INT(c.signup_grant_micro, 2500000);
    CHECK(c.max_duration_s == 5400.0);
    CHECK_EQ_STR(c.log_level, "debug");
    CHECK(strncmp(c.db_url, "sqlite:///", 10) == 0);
    /* "0"/"no" leave the default. */
    setenv("VOXD_ALLOW_SELF_TOP_UP", "0", 1);
    setenv("VOXD_NO_SIGNUP", "no", 1);
    CHECK_EQ_INT(LOAD(&c, &err, "--workers", "2"), 0);
    CHECK(!c.allow_self_top_up);
    CHECK(c.allow_signup);
    leave();
}

static void test_flags_win_over_environment(void) {
    enter();
    setenv("VOXD_WORKERS", "3", 1);
    setenv("VOXD_LISTEN", "127.0.0.1:1111", 1);
    vx_config c;
    vx_err err;
    CHECK_EQ_INT(LOAD(&c, &err, "--workers", "5", "--listen=[::1]:2222"), 0);
    CHECK_EQ_INT(c.workers, 5);
    CHECK_EQ_STR(c.listen, "[::1]:2222");
    CHECK_EQ_INT(LOAD(&c, &err, "--node-id", "api-1"), 0);
    CHECK_EQ_INT(c.workers, 3);
    CHECK_EQ_STR(c.node_id, "api-1");
    leave();
}

static void test_boolean_flags_take_no_value(void) {
    enter();
    vx_config c;
    vx_err err;
    CHECK_EQ_INT(LOAD(&c, &err, "--allow-self-top-up", "--no-signup", "--no-access-log"), 0);
    CHECK(c.allow_self_top_up);
    CHECK(!c.allow_signup);
    CHECK(!c.access_log);
    CHECK_EQ_INT(LOAD(&c, &err, "--allow-self-top-up=1"), -1);
    CHECK(strstr(err.message, "--allow-self-top-up") != NULL);
    /* A boolean flag does not swallow the next argument. */
    CHECK_EQ_INT(LOAD(&c, &err, "--no-signup", "yes"), -1);
    CHECK(strstr(err.message, "yes") != NULL);
    leave();
}

static void test_sizes_accept_binary_suffixes(void) {
    enter();
    vx_config c;
    vx_err err;
    static const struct { const char *text; long long bytes; } ok[] = {
        {"1048576", 1048576}, {"512K", 512 << 10}, {"256M", 256LL << 20},
        {"2G", 2LL << 30}, {"1MiB", 1 << 20}, {"3kB", 3 << 10}, {"1", 1},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        CHECK_EQ_INT(LOAD(&c, &err, "--max-upload", (char *)ok[i].text), 0);
        CHECK_EQ_INT(c.max_upload_bytes, ok[i].bytes);
    }
    static const char *const bad[] = {"1.5M", "12X", "-1", "", "0", "M", "10 M", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ_INT(LOAD(&c, &err, "--max-upload", (char *)bad[i]), -1);
        CHECK_EQ_INT(err.status, VX_E_INVALID);
        CHECK(strstr(err.message, "--max-upload") != NULL);
    }
    leave();
}

static void test_durations_accept_units_and_fractions_where_allowed(void) {
    enter();
    vx_config c;
    vx_err err;
    CHECK_EQ_INT(LOAD(&c, &err, "--max-duration", "2.5"), 0);
    CHECK(c.max_duration_s == 2.5);
    CHECK_EQ_INT(LOAD(&c, &err, "--max-duration=3h"), 0);
    CHECK(c.max_duration_s == 10800.0);
    CHECK_EQ_INT(LOAD(&c, &err, "--max-duration", "45s"), 0);
    CHECK(c.max_duration_s == 45.0);
    CHECK_EQ_INT(LOAD(&c, &err, "--jwt-ttl", "90m"), 0);
    CHECK_EQ_INT(c.jwt_ttl_s, 5400);
    CHECK_EQ_INT(LOAD(&c, &err, "--jwt-ttl", "1.5m"), 0);
    CHECK_EQ_INT(c.jwt_ttl_s, 90);
    CHECK_EQ_INT(LOAD(&c, &err, "--lease", "0.5s"), -1); /* whole seconds only */
    CHECK(strstr(err.message, "--lease") != NULL);
    CHECK_EQ_INT(LOAD(&c, &err, "--lease", "3d"), -1);
    CHECK_EQ_INT(LOAD(&c, &err, "--max-duration", "nan"), -1);
    CHECK_EQ_INT(LOAD(&c, &err, "--max-duration", "1e3"), -1);
    CHECK_EQ_INT(LOAD(&c, &err, "--max-duration", ".5"), -1);
    CHECK_EQ_INT(LOAD(&c, &err, "--jwt-ttl", "1"), -1); /* below the minimum */
    CHECK(strstr(err.message, "between") != NULL);
    leave();
}

static void test_credits_parse_as_exact_decimals(void) {
    enter();
    vx_config c;
    vx_err err;
    CHECK_EQ_INT(LOAD(&c, &err, "--signup-grant", "12.3"), 0);
    CHECK_EQ_INT(c.signup_grant_micro, 12300000);
    CHECK_EQ_INT(LOAD(&c, &err, "--signup-grant", "0"), 0);
    CHECK_EQ_INT(c.signup_grant_micro, 0);
    CHECK_EQ_INT(LOAD(&c, &err, "--signup-grant", "0.000001"), 0);
    CHECK_EQ_INT(c.signup_grant_micro, 1);
    static const char *const bad[] = {"0.0000001", "1e-7", "-1", "abc", "\"5\"", "1000000001", "5 credits"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ_INT(LOAD(&c, &err, "--signup-grant", (char *)bad[i]), -1);
        CHECK(strstr(err.message, "--signup-grant") != NULL);
    }
    leave();
}

static void test_errors_name_the_flag_or_variable(void) {
    enter();
    vx_config c;
    vx_err err;
    CHECK_EQ_INT(LOAD(&c, &err, "--bogus", "1"), -1);
    CHECK_EQ_INT(err.status, VX_E_INVALID);
    CHECK(strstr(err.message, "--bogus") != NULL);
    CHECK_EQ_INT(LOAD(&c, &err, "--workers"), -1);
    CHECK(strstr(err.message, "--workers") && strstr(err.message, "value"));
    CHECK_EQ_INT(LOAD(&c, &err, "--listen", "--workers", "2"), -1);
    CHECK(strstr(err.message, "--listen") != NULL);
    CHECK_EQ_INT(LOAD(&c, &err, "--workers", "abc"), -1);
    CHECK(strstr(err.message, "--workers") != NULL);
    CHECK_EQ_INT(LOAD(&c, &err, "--workers", "2x"), -1);
    CHECK_EQ_INT(LOAD(&c, &err, "--workers", "100000"), -1);
    CHECK_EQ_INT(LOAD(&c, &err, "--http-threads", "0"), -1);
    CHECK_EQ_INT(LOAD(&c, &err, "serve"), -1);
    CHECK(strstr(err.message, "serve") != NULL);
    CHECK_EQ_INT(LOAD(&c, &err, "--listen", "localhost"), -1);
    CHECK_EQ_INT(LOAD(&c, &err, "--listen", "localhost:70000"), -1);
    CHECK_EQ_INT(LOAD(&c, &err, "--log-level", "loud"), -1);
    CHECK(strstr(err.message, "--log-level") != NULL);
    CHECK_EQ_INT(LOAD(&c, &err, "--node-id", "a b"), -1);
    CHECK_EQ_INT(LOAD(&c, &err, "--heartbeat", "30", "--lease", "30"), -1);
    CHECK(strstr(err.message, "--heartbeat") != NULL);
    setenv("VOXD_MAX_ATTEMPTS", "many", 1);
    CHECK_EQ_INT(LOAD(&c, &err, "--workers", "1"), -1);
    CHECK(strstr(err.message, "VOXD_MAX_ATTEMPTS") != NULL);
    unsetenv("VOXD_MAX_ATTEMPTS");
    setenv("VOXD_NO_SIGNUP", "maybe", 1);
    CHECK_EQ_INT(LOAD(&c, &err, "--workers", "1"), -1);
    CHECK(strstr(err.message, "VOXD_NO_SIGNUP") != NULL);
    char longval[2000];
    memset(longval, 'a', sizeof longval - 1);
    longval[sizeof longval - 1] = '\0';
    CHECK_EQ_INT(LOAD(&c, &err, "--data", longval), -1);
    leave();
}

static void test_upload_and_sweeper_options_parse_and_public_url_is_checked(void) {
    enter();
    vx_config c;
    vx_err err;
    CHECK_EQ_INT(LOAD(&c, &err, "--workers", "1"), 0);
    CHECK_EQ_INT(c.upload_url_ttl_s, 900);
    CHECK_EQ_INT(c.download_url_ttl_s, 300);
    CHECK_EQ_INT(c.sweep_interval_s, 600);
    CHECK_EQ_INT(c.sweep_grace_s, 3600);
    CHECK_EQ_STR(c.public_url, "");
    CHECK_EQ_INT(LOAD(&c, &err, "--upload-url-ttl", "15m", "--sweep-interval", "0", "--sweep-grace", "2h",
                      "--public-url", "https://voxd.example:8443"), 0);
    CHECK_EQ_INT(c.upload_url_ttl_s, 900);
    CHECK_EQ_INT(c.sweep_interval_s, 0);
    CHECK_EQ_INT(c.sweep_grace_s, 7200);
    CHECK_EQ_STR(c.public_url, "https://voxd.example:8443");
    CHECK_EQ_INT(LOAD(&c, &err, "--public-url", "https://voxd.example/api"), -1);
    CHECK(strstr(err.message, "--public-url") != NULL);
    CHECK_EQ_INT(LOAD(&c, &err, "--public-url", "ftp://voxd.example"), -1);
    CHECK_EQ_INT(LOAD(&c, &err, "--upload-url-ttl", "0"), -1);
    leave();
}

static void test_help_lists_every_flag_with_its_variable_and_default(void) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    REQUIRE(f);
    vx_config_print_help(f);
    fclose(f);
    int flags = 0;
    /* Each option line: "  --name[ META]  VOXD_NAME" then "      help (default: X)". */
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "  --", 4) != 0) continue;
        flags++;
        char name[64], want_env[80] = "VOXD_";
        sscanf(line + 4, "%63[a-z-]", name);
        for (size_t i = 0; name[i]; i++)
            want_env[5 + i] = name[i] == '-' ? '_' : (char)(name[i] - 'a' + 'A');
        want_env[5 + strlen(name)] = '\0';
        if (!strstr(line, want_env)) fprintf(stderr, "  %s lacks %s\n", line, want_env);
        CHECK(strstr(line, want_env) != NULL);
        char *next = line + strlen(line) + 1;
        CHECK(strncmp(next, "      ", 6) == 0 && strstr(next, "(default: ") != NULL);
    }
    free(text);
    f = open_memstream(&text, &len);
    vx_config_print_help(f);
    fclose(f);
    CHECK_EQ_INT(flags, 44);
    CHECK(strstr(text, "--sync-timeout SECONDS") != NULL);
    vx_config c;
    vx_err err = {0};
    CHECK_EQ_INT(load_args(&c, &err, NULL), 0);
    CHECK_EQ_INT(c.sync_timeout_s, 600);
    CHECK_EQ_INT(load_args(&c, &err, "--sync-timeout", "2m", NULL), 0);
    CHECK_EQ_INT(c.sync_timeout_s, 120);
    CHECK_EQ_INT(load_args(&c, &err, "--sync-timeout", "0", NULL), -1);
    CHECK(strstr(text, "VOXD_ADMIN_PASSWORD") != NULL);
    CHECK(strstr(text, "127.0.0.1:8080") != NULL);
    CHECK(strstr(text, "--max-upload BYTES") && strstr(text, "256M"));
    CHECK(strstr(text, "--no-signup ") != NULL);
    free(text);
}

TEST_MAIN(TEST_ENTRY(test_defaults_are_the_documented_ones),
          TEST_ENTRY(test_derived_urls_use_the_absolute_data_dir),
          TEST_ENTRY(test_data_dir_is_made_absolute_even_when_missing),
          TEST_ENTRY(test_web_dir_prefers_local_web_then_system),
          TEST_ENTRY(test_environment_variables_apply),
          TEST_ENTRY(test_flags_win_over_environment),
          TEST_ENTRY(test_boolean_flags_take_no_value),
          TEST_ENTRY(test_sizes_accept_binary_suffixes),
          TEST_ENTRY(test_durations_accept_units_and_fractions_where_allowed),
          TEST_ENTRY(test_credits_parse_as_exact_decimals),
          TEST_ENTRY(test_errors_name_the_flag_or_variable),
          TEST_ENTRY(test_help_lists_every_flag_with_its_variable_and_default),
          TEST_ENTRY(test_upload_and_sweeper_options_parse_and_public_url_is_checked))
