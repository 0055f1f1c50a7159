/* log.h - leveled logging to stderr, one line per event, safe from any thread.
 * Library code logs; only main.c prints to stdout. Never log secrets. */
#ifndef VX_LOG_H
#define VX_LOG_H

typedef enum vx_log_level { VX_LOG_DEBUG, VX_LOG_INFO, VX_LOG_WARN, VX_LOG_ERROR } vx_log_level;

void vx_log_set_level(vx_log_level level);
/* Parses "debug|info|warn|error"; returns -1 on an unknown name. */
int vx_log_parse_level(const char *name, vx_log_level *out);
void vx_log(vx_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define vx_debug(...) vx_log(VX_LOG_DEBUG, __VA_ARGS__)
#define vx_info(...)  vx_log(VX_LOG_INFO, __VA_ARGS__)
#define vx_warn(...)  vx_log(VX_LOG_WARN, __VA_ARGS__)
#define vx_error(...) vx_log(VX_LOG_ERROR, __VA_ARGS__)

#endif
