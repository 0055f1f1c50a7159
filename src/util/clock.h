/* clock.h - wall-clock milliseconds and RFC 3339 UTC rendering. Thread-safe. */
#ifndef VX_CLOCK_H
#define VX_CLOCK_H
#include <stdint.h>

#define VX_TIME_SIZE 32

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t vx_now_ms(void);
/* Monotonic milliseconds, for durations and timeouts. */
int64_t vx_mono_ms(void);
/* "2026-11-21T06:40:21.123Z"; ms <= 0 renders as "" (caller emits null). */
void vx_time_format(int64_t ms, char out[VX_TIME_SIZE]);

#endif
