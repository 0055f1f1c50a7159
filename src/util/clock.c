/* clock.c - time helpers. */
#include "clock.h"
#include <stdio.h>
#include <time.h>

int64_t vx_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t vx_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void vx_time_format(int64_t ms, char out[VX_TIME_SIZE]) {
    if (ms <= 0) {
        out[0] = '\0';
        return;
    }
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(out, VX_TIME_SIZE, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, VX_TIME_SIZE - n, ".%03uZ", (unsigned)(ms % 1000));
}
