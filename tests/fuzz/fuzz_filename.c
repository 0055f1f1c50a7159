/* fuzz_filename.c - libFuzzer target for the upload file-name check
 * (vx_jobs_filename_valid in src/core/jobs.c). The input, up to its first
 * NUL, is the client's name; whatever is accepted must be a safe base name:
 * 1-255 bytes, no path separator, no control byte, no "..", not "." */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../../src/core/jobs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1024) return 0;
    char *name = malloc(size + 1);
    if (!name) return 0;
    memcpy(name, data, size);
    name[size] = '\0';
    if (vx_jobs_filename_valid(name)) {
        size_t len = strlen(name);
        if (len == 0 || len > 255) abort();
        if (strcmp(name, ".") == 0 || strstr(name, "..")) abort();
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)name[i];
            if (c < 0x20 || c == 0x7f || c == '/' || c == '\\') abort();
        }
    }
    if (vx_jobs_filename_valid(NULL)) abort();
    free(name);
    return 0;
}
