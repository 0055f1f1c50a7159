/* fuzz_config.c - libFuzzer target for configuration loading
 * (vx_config_load in src/util/config.c). The input is split at NUL and
 * newline bytes into words; words of the form VOXD_NAME=value become the
 * environment (a private environ, so nothing leaks between runs) and the
 * others the command-line flags. A loaded config must be self-consistent. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../../src/util/config.h"
#include "../../src/util/credits.h"
#include "../../src/util/log.h"

extern char **environ;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_WORDS 64

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    vx_log_set_level(VX_LOG_ERROR);
    return 0;
}

static void check_string(const char *s, size_t cap) {
    if (strnlen(s, cap) >= cap) abort();
}

static void check_config(const vx_config *c) {
    check_string(c->listen, sizeof c->listen);
    check_string(c->data_dir, sizeof c->data_dir);
    check_string(c->db_url, sizeof c->db_url);
    check_string(c->blob_url, sizeof c->blob_url);
    check_string(c->web_dir, sizeof c->web_dir);
    check_string(c->node_id, sizeof c->node_id);
    check_string(c->admin_password, sizeof c->admin_password);
    check_string(c->log_level, sizeof c->log_level);
    if (c->data_dir[0] != '/') abort();
    if (!c->db_url[0] || !c->blob_url[0] || !c->web_dir[0]) abort();
    if (c->heartbeat_s >= c->lease_s) abort();
    /* the bounds `voxd serve --help` documents */
    if (c->http_threads < 1 || c->http_threads > 1024 || c->workers < 0 || c->workers > 1024) abort();
    if (c->request_timeout_s < 1 || c->request_timeout_s > 86400) abort();
    if (c->max_body_bytes < 1 || c->max_body_bytes > (INT64_C(1) << 30)) abort();
    if (c->max_connections < 1 || c->max_connections > 1000000) abort();
    if (c->max_upload_bytes < 1 || c->max_upload_bytes > (INT64_C(1) << 40)) abort();
    if (!(c->max_duration_s >= 1 && c->max_duration_s <= 7 * 86400)) abort();
    if (c->signup_grant_micro < 0 || c->signup_grant_micro > VX_CREDITS_MAX) abort();
    if (c->jwt_ttl_s < 10 || c->jwt_ttl_s > 30 * 86400) abort();
    if (c->lease_s < 2 || c->lease_s > 3600 || c->heartbeat_s < 1) abort();
    if (c->max_attempts < 1 || c->max_attempts > 100) abort();
    if (c->retry_base_s < 0 || c->retry_base_s > 3600 || c->shutdown_grace_s < 0 || c->shutdown_grace_s > 3600)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 8192) return 0;
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    char *args[MAX_WORDS], *env[MAX_WORDS + 1];
    int nargs = 0, nenv = 0;
    size_t start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i < size && text[i] != '\n' && text[i] != '\0') continue;
        text[i] = '\0';
        char *w = text + start;
        start = i + 1;
        if (strncmp(w, "VOXD_", 5) == 0 && strchr(w, '=')) {
            if (nenv < MAX_WORDS) env[nenv++] = w;
        } else if (nargs < MAX_WORDS && (w[0] || i < size)) {
            args[nargs++] = w;
        }
    }
    env[nenv] = NULL;

    char **saved = environ;
    environ = env;
    vx_config cfg;
    vx_err err = {0};
    vx_config_defaults(&cfg);
    int rc = vx_config_load(&cfg, nargs, args, &err);
    environ = saved;
    if (rc == 0) {
        check_config(&cfg);
    } else if (rc != -1 || err.status != VX_E_INVALID || !err.code[0] || !err.message[0]) {
        abort();
    }
    free(text);
    return 0;
}
