/* test.c - runner for test.h: runs each case, prints one line per failing
 * case and the closing "N passed, N failed" line. Exit 1 if any failed. */
#include "test.h"
#include <stdlib.h>

int vx_test_failures;

int vx_test_run(const char *file, const vx_test_case *cases, size_t n) {
    const char *only = getenv("VX_TEST_ONLY");
    int passed = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (only && strcmp(only, cases[i].name) != 0) continue;
        vx_test_failures = 0;
        cases[i].fn();
        if (vx_test_failures) {
            fprintf(stderr, "FAIL %s: %s\n", file, cases[i].name);
            failed++;
        } else {
            passed++;
        }
    }
    printf("%s: %d passed, %d failed\n", file, passed, failed);
    return failed ? 1 : 0;
}
