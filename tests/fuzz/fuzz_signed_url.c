/* fuzz_signed_url.c - libFuzzer target for the signed direct-download URLs
 * (vx_downloads_authorize in src/core/uploads.c). The input is
 * "job_id\npart\nexpires\nsignature"; a refusal must be 403
 * invalid_signature or 410 download_expired, and a URL this server made
 * must pass, while the same URL for the other part or a later expiry fails. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../../src/core/uploads.h"
#include "../../src/util/crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static vx_app app;

/* Splits url's "...?expires=E&signature=S" into e and s. */
static void query_of(const char *url, char *e, size_t ecap, char *s, size_t scap) {
    const char *q = strstr(url, "?expires=");
    const char *amp = q ? strstr(q, "&signature=") : NULL;
    if (!q || !amp) abort();
    snprintf(e, ecap, "%.*s", (int)(amp - q - 9), q + 9);
    snprintf(s, scap, "%s", amp + 11);
}

static void own_urls_pass_and_altered_ones_fail(const char *job_id) {
    vx_err err = {0};
    char *url = vx_downloads_url(&app, "http://h", job_id, "result", 60, &err);
    if (!url) abort();
    char e[64], s[128], later[80];
    query_of(url, e, sizeof e, s, sizeof s);
    if (vx_downloads_authorize(&app, job_id, "result", e, s, &err) != 0) abort();
    if (vx_downloads_authorize(&app, job_id, "input", e, s, &err) == 0) abort();
    snprintf(later, sizeof later, "%lld", atoll(e) + 1);
    if (vx_downloads_authorize(&app, job_id, "result", later, s, &err) == 0) abort();
    free(url);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 512) return 0;
    if (!app.jwt_secret[0]) {
        vx_crypto_init();
        memset(app.jwt_secret, 0x5a, sizeof app.jwt_secret);
        own_urls_pass_and_altered_ones_fail("job_01m7yr0c5masvr8v7ksps57edy");
    }
    char buf[520];
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *fields[4] = {buf, "", "", ""};
    for (int i = 1; i < 4; i++) {
        char *nl = strchr(fields[i - 1], '\n');
        if (!nl) break;
        *nl = '\0';
        fields[i] = nl + 1;
    }
    vx_err err = {0};
    if (vx_downloads_authorize(&app, fields[0], fields[1], fields[2], fields[3], &err) != 0) {
        bool known = (err.status == VX_E_FORBIDDEN && strcmp(err.code, "invalid_signature") == 0) ||
                     (err.status == VX_E_GONE && strcmp(err.code, "download_expired") == 0);
        if (!known) abort();
    }
    return 0;
}
