/* test.h - a tiny unit-test harness: TEST(name) functions registered in a
 * table, CHECK/CHECK_EQ* macros that record failures without aborting, and a
 * closing line "N passed, N failed" that CI reads. */
#ifndef VX_TEST_H
#define VX_TEST_H
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

extern int vx_test_failures;  /* failures in the current test */

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            vx_test_failures++;                                                      \
        }                                                                            \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                              \
    do {                                                                                \
        long long a_ = (long long)(a), b_ = (long long)(b);                            \
        if (a_ != b_) {                                                                 \
            fprintf(stderr, "  %s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, \
                    #a, #b, a_, b_);                                                    \
            vx_test_failures++;                                                         \
        }                                                                               \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                              \
    do {                                                                                \
        const char *a_ = (a), *b_ = (b);                                                \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                        \
            fprintf(stderr, "  %s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__,   \
                    __LINE__, #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");          \
            vx_test_failures++;                                                         \
        }                                                                               \
    } while (0)

/* Stops the current test (after a failure that makes the rest meaningless). */
#define REQUIRE(cond)                                                                \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "  %s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond); \
            vx_test_failures++;                                                      \
            return;                                                                  \
        }                                                                            \
    } while (0)

typedef struct vx_test_case {
    const char *name;
    void (*fn)(void);
} vx_test_case;

/* Each test file ends with:  TEST_MAIN(test_a, test_b, ...)  */
int vx_test_run(const char *file, const vx_test_case *cases, size_t n);
#define TEST_ENTRY(fn) {#fn, fn}
#define TEST_MAIN(...)                                                     \
    int main(void) {                                                       \
        static const vx_test_case cases_[] = {__VA_ARGS__};                \
        return vx_test_run(__FILE__, cases_, sizeof cases_ / sizeof cases_[0]); \
    }

#endif
