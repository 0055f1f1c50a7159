/* log.c - one line per event on stderr: "2026-11-21T06:40:21.123Z INFO msg".
 * A single fprintf per line keeps lines whole across threads (stdio locks). */
#include "log.h"
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include "clock.h"

static atomic_int current_level = VX_LOG_INFO;
static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void vx_log_set_level(vx_log_level level) { atomic_store(&current_level, (int)level); }

int vx_log_parse_level(const char *name, vx_log_level *out) {
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (vx_log_level)i;
            return 0;
        }
    }
    return -1;
}

void vx_log(vx_log_level level, const char *fmt, ...) {
    if ((int)level < atomic_load(&current_level)) return;
    char when[VX_TIME_SIZE], msg[2048];
    vx_time_format(vx_now_ms(), when);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s %s %s\n", when, level_names[level], msg);
}
