/* config.c - builds the vx_config (see config.h): defaults, then VOXD_*
 * environment variables, then command-line flags, then derived defaults.
 * Every option is one row of `options`; parsing, help and the environment
 * names all come from that table. Called once by main before threads start. */
#include "config.h"
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include "credits.h"
#include "log.h"

typedef enum opt_type {
    OPT_STRING,   /* char[] of `size` bytes, optionally checked */
    OPT_INT,      /* int within [min, max] */
    OPT_SECONDS,  /* int seconds within [min, max]; "90", "90s", "1.5m", "3h" */
    OPT_DURATION, /* double seconds within [min, max]; fractions allowed */
    OPT_SIZE,     /* int64 bytes within [min, max]; "1048576", "512K", "256M", "2G" */
    OPT_CREDITS,  /* int64 micro-credits, a decimal number of credits >= 0 */
    OPT_ON,       /* bool set true by the flag */
    OPT_OFF,      /* bool set false by the flag (--no-...) */
} opt_type;

typedef struct option {
    const char *name;     /* flag without "--"; NULL = environment only */
    const char *env;
    opt_type type;
    size_t offset;        /* into vx_config */
    size_t size;          /* OPT_STRING buffer size */
    int64_t min, max;     /* numeric bounds */
    const char *metavar;  /* shown in help */
    const char *help;
    const char *default_text; /* help text when the default is derived */
    /* OPT_STRING shape check; returns 0 when acceptable. */
    int (*check)(const char *value);
    const char *expect;   /* what the check wants, for the error message */
} option;

static int check_listen(const char *v);
static int check_log_level(const char *v);
static int check_node_id(const char *v);
static int check_nonempty(const char *v) { return v[0] ? 0 : -1; }
/* The scheme only; the bus backend checks the rest when it opens. */
static int check_bus_url(const char *v) { return strchr(v, ':') && v[0] != ':' ? 0 : -1; }
static int check_allow_list(const char *v);
static int check_public_url(const char *v) {
    const char *rest = strncmp(v, "https://", 8) == 0 ? v + 8 : strncmp(v, "http://", 7) == 0 ? v + 7 : NULL;
    if (!rest || !*rest || strchr(rest, '/') || strchr(rest, '?')) return -1;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f) return -1;
    return 0;
}

#define STR(field) .type = OPT_STRING, .offset = offsetof(vx_config, field), \
                   .size = sizeof(((vx_config *)0)->field)
#define NUM(t, field, lo, hi) .type = t, .offset = offsetof(vx_config, field), .min = lo, .max = hi
#define BOOL(t, field) .type = t, .offset = offsetof(vx_config, field)

static const option options[] = {
    {.name = "listen", .env = "VOXD_LISTEN", STR(listen), .metavar = "HOST:PORT",
     .help = "address to serve HTTP on (port 0 picks a free one)", .check = check_listen,
     .expect = "HOST:PORT with a port from 0 to 65535"},
    {.name = "data", .env = "VOXD_DATA", STR(data_dir), .metavar = "DIR",
     .help = "data directory (database, blobs, temporary files)", .check = check_nonempty,
     .expect = "a directory"},
    {.name = "db", .env = "VOXD_DB", STR(db_url), .metavar = "URL",
     .help = "state store URL", .default_text = "sqlite://<data>/voxd.db"},
    {.name = "blob", .env = "VOXD_BLOB", STR(blob_url), .metavar = "URL",
     .help = "object store URL", .default_text = "file://<data>/blobs"},
    {.name = "web", .env = "VOXD_WEB", STR(web_dir), .metavar = "DIR",
     .help = "web UI directory", .default_text = "./web if present, else /usr/share/voxd/web"},
    {.name = "node-id", .env = "VOXD_NODE_ID", STR(node_id), .metavar = "NAME",
     .help = "name of this process in job leases", .check = check_node_id,
     .expect = "1-63 characters of [A-Za-z0-9._-]"},
    {.name = "exclusive-node", .env = "VOXD_EXCLUSIVE_NODE", BOOL(OPT_ON, exclusive_node),
     .help = "no other live process uses this --node-id on the store: reclaim its leases at start-up "
             "without waiting for them to expire (implied by serve with its own SQLite database)"},
    {.name = "bus", .env = "VOXD_BUS", STR(bus_url), .metavar = "URL",
     .help = "live-event bus URL: local: (this process) or redis://host:port[/db] (across nodes)",
     .check = check_bus_url, .expect = "local: or redis://host:port[/db]"},
    {.name = "concurrency", .env = "VOXD_CONCURRENCY", NUM(OPT_INT, concurrency, 0, 1024), .metavar = "N",
     .help = "job threads of `voxd worker` (0: as many as --workers)"},
    {.name = "metrics-listen", .env = "VOXD_METRICS_LISTEN", STR(metrics_listen), .metavar = "HOST:PORT",
     .help = "`voxd worker` serves /healthz and /metrics there", .default_text = "none",
     .check = check_listen, .expect = "HOST:PORT with a port from 0 to 65535"},
    {.name = "http-threads", .env = "VOXD_HTTP_THREADS", NUM(OPT_INT, http_threads, 1, 1024),
     .metavar = "N", .help = "HTTP server threads"},
    {.name = "workers", .env = "VOXD_WORKERS", NUM(OPT_INT, workers, 0, 1024), .metavar = "N",
     .help = "job worker threads (0: this node only serves the API)"},
    {.name = "asr-decoders", .env = "VOXD_ASR_DECODERS", NUM(OPT_INT, asr_decoders, 1, 256), .metavar = "N",
     .help = "speech decoders kept for reuse (each holds its own model copy, ~90 MB); jobs and streams with "
             "partials hold one each, and one is kept for the background decodes of live streams"},
    {.name = "asr-model-dir", .env = "VOXD_ASR_MODEL_DIR", STR(asr_model_dir), .metavar = "DIR",
     .help = "speech model directory", .default_text = "Debian's pocketsphinx-en-us"},
    {.name = "stream-threads", .env = "VOXD_STREAM_THREADS", NUM(OPT_INT, stream_threads, 1, 256),
     .metavar = "N", .help = "threads that run recognition for live streams (GET /v1/stream)"},
    {.name = "stream-idle-timeout", .env = "VOXD_STREAM_IDLE_TIMEOUT",
     NUM(OPT_SECONDS, stream_idle_timeout_s, 1, 86400), .metavar = "SECONDS",
     .help = "a live stream that sends nothing (audio or keepalive) this long is closed"},
    {.name = "stream-hold", .env = "VOXD_STREAM_HOLD", NUM(OPT_SECONDS, stream_hold_s, 1, 3600),
     .metavar = "SECONDS", .help = "audio time whose price is held at once while a live stream runs"},
    {.name = "max-streams", .env = "VOXD_MAX_STREAMS", NUM(OPT_INT, max_streams, 1, 100000), .metavar = "N",
     .help = "concurrent live streams per node"},
    {.name = "request-timeout", .env = "VOXD_REQUEST_TIMEOUT",
     NUM(OPT_SECONDS, request_timeout_s, 1, 86400), .metavar = "SECONDS",
     .help = "idle connection timeout"},
    {.name = "max-body", .env = "VOXD_MAX_BODY", NUM(OPT_SIZE, max_body_bytes, 1, INT64_C(1) << 30),
     .metavar = "BYTES", .help = "largest JSON request body (K/M/G suffixes)"},
    {.name = "max-connections", .env = "VOXD_MAX_CONNECTIONS",
     NUM(OPT_INT, max_connections, 1, 1000000), .metavar = "N",
     .help = "concurrent HTTP connections"},
    {.name = "max-upload", .env = "VOXD_MAX_UPLOAD",
     NUM(OPT_SIZE, max_upload_bytes, 1, INT64_C(1) << 40), .metavar = "BYTES",
     .help = "largest audio upload (K/M/G suffixes)"},
    {.name = "max-duration", .env = "VOXD_MAX_DURATION",
     NUM(OPT_DURATION, max_duration_s, 1, 7 * 86400), .metavar = "SECONDS",
     .help = "longest accepted audio (also 90m, 3h)"},
    {.name = "signup-grant", .env = "VOXD_SIGNUP_GRANT",
     NUM(OPT_CREDITS, signup_grant_micro, 0, VX_CREDITS_MAX), .metavar = "CREDITS",
     .help = "credits given to each new user"},
    {.name = "allow-self-top-up", .env = "VOXD_ALLOW_SELF_TOP_UP", BOOL(OPT_ON, allow_self_top_up),
     .help = "enable POST /v1/balance/top-up (users add credits themselves)"},
    {.name = "no-signup", .env = "VOXD_NO_SIGNUP", BOOL(OPT_OFF, allow_signup),
     .help = "refuse POST /v1/users (only admins create accounts)"},
    {.name = "jwt-ttl", .env = "VOXD_JWT_TTL", NUM(OPT_SECONDS, jwt_ttl_s, 10, 30 * 86400),
     .metavar = "SECONDS", .help = "lifetime of login tokens"},
    {.name = NULL, .env = "VOXD_ADMIN_PASSWORD", STR(admin_password),
     .help = "password for the first admin account (environment only, kept out of ps)",
     .default_text = "generated and printed once"},
    {.name = "lease", .env = "VOXD_LEASE", NUM(OPT_SECONDS, lease_s, 2, 3600), .metavar = "SECONDS",
     .help = "job lease; a silent worker's job is retried after it"},
    {.name = "heartbeat", .env = "VOXD_HEARTBEAT", NUM(OPT_SECONDS, heartbeat_s, 1, 3600),
     .metavar = "SECONDS", .help = "how often a worker extends its lease (< --lease)"},
    {.name = "max-attempts", .env = "VOXD_MAX_ATTEMPTS", NUM(OPT_INT, max_attempts, 1, 100),
     .metavar = "N", .help = "tries before a job fails for good"},
    {.name = "retry-base", .env = "VOXD_RETRY_BASE", NUM(OPT_SECONDS, retry_base_s, 0, 3600),
     .metavar = "SECONDS", .help = "first retry back-off (doubles each attempt)"},
    {.name = "shutdown-grace", .env = "VOXD_SHUTDOWN_GRACE",
     NUM(OPT_SECONDS, shutdown_grace_s, 0, 3600), .metavar = "SECONDS",
     .help = "time in-flight work gets to finish on SIGTERM"},
    {.name = "event-retention", .env = "VOXD_EVENT_RETENTION",
     NUM(OPT_SECONDS, event_retention_s, 1, 366 * 86400), .metavar = "SECONDS",
     .help = "how long job events are kept for feed resume (also 90m, 24h)"},
    {.name = "webhook-allow", .env = "VOXD_WEBHOOK_ALLOW", STR(webhook_allow), .metavar = "LIST",
     .help = "comma-separated CIDRs (10.0.0.0/8, ::1) or host:port entries webhooks may reach "
             "although private, loopback or link-local", .default_text = "none",
     .check = check_allow_list, .expect = "comma-separated CIDRs, IP addresses or host:port entries"},
    {.name = "webhook-max-attempts", .env = "VOXD_WEBHOOK_MAX_ATTEMPTS",
     NUM(OPT_INT, webhook_max_attempts, 1, 50), .metavar = "N",
     .help = "delivery attempts before a webhook delivery is marked failed"},
    {.name = "webhook-retry-base", .env = "VOXD_WEBHOOK_RETRY_BASE",
     NUM(OPT_DURATION, webhook_retry_base_s, 0, 3600), .metavar = "SECONDS",
     .help = "first webhook retry delay; each further one waits 4x longer, with jitter"},
    {.name = "sync-timeout", .env = "VOXD_SYNC_TIMEOUT", NUM(OPT_SECONDS, sync_timeout_s, 1, 86400),
     .metavar = "SECONDS",
     .help = "how long POST /v1/audio/transcriptions waits for its job before answering 504 (the job goes on)"},
    {.name = "upload-url-ttl", .env = "VOXD_UPLOAD_URL_TTL",
     NUM(OPT_SECONDS, upload_url_ttl_s, 1, 7 * 86400), .metavar = "SECONDS",
     .help = "how long a direct-upload URL from POST /v1/uploads accepts the upload"},
    {.name = "download-url-ttl", .env = "VOXD_DOWNLOAD_URL_TTL",
     NUM(OPT_SECONDS, download_url_ttl_s, 1, 7 * 86400), .metavar = "SECONDS",
     .help = "how long a direct-download URL (?redirect=1) stays valid"},
    {.name = "public-url", .env = "VOXD_PUBLIC_URL", STR(public_url), .metavar = "URL",
     .help = "scheme://host[:port] clients reach this server at, for the URLs it hands out",
     .default_text = "http:// + the request's Host header", .check = check_public_url,
     .expect = "an http:// or https:// URL without a path"},
    {.name = "sweep-interval", .env = "VOXD_SWEEP_INTERVAL",
     NUM(OPT_SECONDS, sweep_interval_s, 0, 7 * 86400), .metavar = "SECONDS",
     .help = "how often one node removes stored objects no job or live upload refers to (0 = never)"},
    {.name = "sweep-grace", .env = "VOXD_SWEEP_GRACE",
     NUM(OPT_SECONDS, sweep_grace_s, 0, 366 * 86400), .metavar = "SECONDS",
     .help = "how old an unreferenced object must be before the sweeper removes it"},
    {.name = "log-level", .env = "VOXD_LOG_LEVEL", STR(log_level), .metavar = "LEVEL",
     .help = "debug, info, warn or error", .check = check_log_level,
     .expect = "debug, info, warn or error"},
    {.name = "no-access-log", .env = "VOXD_NO_ACCESS_LOG", BOOL(OPT_OFF, access_log),
     .help = "do not log one line per HTTP request"},
};
#define N_OPTIONS (sizeof options / sizeof options[0])

void vx_config_defaults(vx_config *cfg) {
    *cfg = (vx_config){
        .listen = "127.0.0.1:8080",
        .data_dir = "./data",
        .node_id = "local",
        .bus_url = "local:",
        .http_threads = 4,
        .asr_decoders = 4,
        .workers = 2,
        .request_timeout_s = 60,
        .stream_threads = 2,
        .stream_idle_timeout_s = 30,
        .stream_hold_s = 30,
        .max_streams = 64,
        .max_body_bytes = 1 << 20,
        .max_connections = 1024,
        .max_upload_bytes = INT64_C(256) << 20,
        .max_duration_s = 3 * 3600.0,
        .signup_grant_micro = 10 * VX_MICRO,
        .allow_self_top_up = false,
        .allow_signup = true,
        .jwt_ttl_s = 900,
        .lease_s = 30,
        .heartbeat_s = 5,
        .max_attempts = 3,
        .retry_base_s = 2,
        .shutdown_grace_s = 10,
        .event_retention_s = 86400,
        .webhook_max_attempts = 8,
        .webhook_retry_base_s = 15,
        .sync_timeout_s = 600,
        .upload_url_ttl_s = 900,
        .download_url_ttl_s = 300,
        .sweep_interval_s = 600,
        .sweep_grace_s = 3600,
        .log_level = "info",
        .access_log = true,
    };
}

static int check_listen(const char *v) {
    const char *colon = strrchr(v, ':');
    if (!colon || colon == v || !colon[1] || strlen(colon + 1) > 5) return -1;
    if (strspn(colon + 1, "0123456789") != strlen(colon + 1)) return -1;
    return atoi(colon + 1) <= 65535 ? 0 : -1;
}

/* Shape only (util/ must not know webhook rules); the webhook module parses
 * the entries at start-up and names a bad one. */
static int check_allow_list(const char *v) {
    static const char ok[] = "0123456789abcdefABCDEFghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ.:/,[]-_";
    return strspn(v, ok) == strlen(v) ? 0 : -1;
}

static int check_log_level(const char *v) {
    vx_log_level level;
    return vx_log_parse_level(v, &level);
}

static int check_node_id(const char *v) {
    size_t n = strlen(v);
    static const char ok[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";
    return n >= 1 && n <= 63 && strspn(v, ok) == n ? 0 : -1;
}

/* "123", "1.5" (when fractions are allowed): the number before any suffix.
 * Returns the position after it, or NULL when there is no number. */
static const char *parse_decimal(const char *s, bool fraction, double *out) {
    if (!(*s >= '0' && *s <= '9')) return NULL;
    double v = 0;
    while (*s >= '0' && *s <= '9') v = v * 10 + (*s++ - '0');
    if (fraction && *s == '.') {
        s++;
        if (!(*s >= '0' && *s <= '9')) return NULL;
        double scale = 0.1;
        while (*s >= '0' && *s <= '9') {
            v += (*s++ - '0') * scale;
            scale /= 10;
        }
    }
    *out = v;
    return s;
}

static int parse_seconds(const char *s, double *out) {
    double v;
    const char *end = parse_decimal(s, true, &v);
    if (!end) return -1;
    double mult = 1;
    if (*end == 's') mult = 1, end++;
    else if (*end == 'm') mult = 60, end++;
    else if (*end == 'h') mult = 3600, end++;
    if (*end) return -1;
    *out = v * mult;
    return 0;
}

static int parse_size(const char *s, int64_t *out) {
    double v;
    const char *end = parse_decimal(s, false, &v);
    if (!end || v > 9e15) return -1;
    int shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    default: break;
    }
    if (shift && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0)) end += strlen(end);
    if (*end) return -1;
    double bytes = ldexp(v, shift);
    if (bytes > 9e15) return -1;
    *out = (int64_t)bytes;
    return 0;
}

static int parse_credits(const char *s, int64_t *out) {
    json_t *v = json_loads(s, JSON_DECODE_ANY, NULL);
    int rc = -1;
    if (json_is_number(v) && json_number_value(v) == 0) {
        *out = 0; /* a zero grant is valid here, unlike an amount */
        rc = 0;
    } else if (v) {
        vx_err ignored;
        rc = vx_credits_parse(v, 0, out, &ignored);
    }
    json_decref(v);
    return rc;
}

/* 1/true/yes, 0/false/no (environment form of on/off flags). */
static int parse_bool(const char *s, bool *out) {
    static const char *const yes[] = {"1", "true", "yes", "on"}, *const no[] = {"0", "false", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) return *out = true, 0;
        if (strcasecmp(s, no[i]) == 0) return *out = false, 0;
    }
    return -1;
}

static int bad_value(const option *o, const char *who, vx_err *err) {
    const char *want = o->expect;
    switch (o->type) {
    case OPT_INT: want = "a whole number"; break;
    case OPT_SECONDS: want = "whole seconds such as 30, 90s, 5m or 1h"; break;
    case OPT_DURATION: want = "seconds such as 2.5, 90m or 3h"; break;
    case OPT_SIZE: want = "bytes such as 1048576, 512K, 256M or 2G"; break;
    case OPT_CREDITS: want = "a number of credits with at most 6 decimals"; break;
    case OPT_ON: case OPT_OFF: want = "1/true/yes or 0/false/no"; break;
    case OPT_STRING: break;
    }
    return vx_err_set(err, VX_E_INVALID, "invalid_option", "%s: expected %s", who,
                      want ? want : "a value that fits");
}

static int out_of_range(const option *o, const char *who, vx_err *err) {
    return vx_err_set(err, VX_E_INVALID, "invalid_option", "%s: must be between %lld and %lld", who,
                      (long long)o->min, (long long)o->max);
}

/* Stores `value` into the field of `o`. `who` names the flag or variable. */
static int apply(vx_config *cfg, const option *o, const char *value, const char *who, vx_err *err) {
    char *field = (char *)cfg + o->offset;
    double d;
    int64_t n;
    bool b;
    switch (o->type) {
    case OPT_STRING:
        if (strlen(value) >= o->size)
            return vx_err_set(err, VX_E_INVALID, "invalid_option", "%s: value is too long", who);
        if (o->check && o->check(value) != 0) return bad_value(o, who, err);
        memcpy(field, value, strlen(value) + 1);
        return 0;
    case OPT_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (!(*value >= '0' && *value <= '9') || *end || errno) return bad_value(o, who, err);
        if (v < o->min || v > o->max) return out_of_range(o, who, err);
        *(int *)field = (int)v;
        return 0;
    }
    case OPT_SECONDS:
        if (parse_seconds(value, &d) != 0 || d != floor(d)) return bad_value(o, who, err);
        if (d < (double)o->min || d > (double)o->max) return out_of_range(o, who, err);
        *(int *)field = (int)d;
        return 0;
    case OPT_DURATION:
        if (parse_seconds(value, &d) != 0) return bad_value(o, who, err);
        if (d < (double)o->min || d > (double)o->max) return out_of_range(o, who, err);
        *(double *)field = d;
        return 0;
    case OPT_SIZE:
        if (parse_size(value, &n) != 0) return bad_value(o, who, err);
        if (n < o->min || n > o->max) return out_of_range(o, who, err);
        *(int64_t *)field = n;
        return 0;
    case OPT_CREDITS:
        if (parse_credits(value, &n) != 0 || n < o->min || n > o->max) return bad_value(o, who, err);
        *(int64_t *)field = n;
        return 0;
    case OPT_ON:
    case OPT_OFF:
        if (parse_bool(value, &b) != 0) return bad_value(o, who, err);
        /* VOXD_NO_SIGNUP=1 means "no sign-up"; =0 leaves the default. */
        if (b) *(bool *)field = o->type == OPT_ON;
        return 0;
    }
    return -1;
}

static const option *find_flag(const char *name, size_t len) {
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (options[i].name && strlen(options[i].name) == len && strncmp(options[i].name, name, len) == 0)
            return &options[i];
    return NULL;
}

static int apply_env(vx_config *cfg, vx_err *err) {
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const char *v = getenv(options[i].env);
        if (!v || !v[0]) continue; /* empty means unset */
        if (apply(cfg, &options[i], v, options[i].env, err) != 0) return -1;
    }
    return 0;
}

static int apply_flags(vx_config *cfg, int argc, char **argv, vx_err *err) {
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0 || !arg[2])
            return vx_err_set(err, VX_E_INVALID, "invalid_option", "unexpected argument '%.64s'", arg);
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const option *o = find_flag(name, len);
        if (!o)
            return vx_err_set(err, VX_E_INVALID, "invalid_option", "unknown option --%.*s", (int)(len > 64 ? 64 : len), name);
        char who[80];
        snprintf(who, sizeof who, "--%s", o->name);
        if (o->type == OPT_ON || o->type == OPT_OFF) {
            if (eq) return vx_err_set(err, VX_E_INVALID, "invalid_option", "%s takes no value", who);
            *(bool *)((char *)cfg + o->offset) = o->type == OPT_ON;
            continue;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (!value) {
            if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)
                return vx_err_set(err, VX_E_INVALID, "invalid_option", "%s needs a value", who);
            value = argv[++i];
        }
        if (apply(cfg, o, value, who, err) != 0) return -1;
    }
    return 0;
}

/* An absolute form of `dir`, which need not exist yet: realpath of the
 * directory itself or of its parent, else joined to the working directory. */
static int absolute_dir(const char *dir, char *out, size_t cap) {
    char path[VX_PATH_SIZE], resolved[PATH_MAX];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) return -1;
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') path[--len] = '\0';
    if (realpath(path, resolved))
        return snprintf(out, cap, "%s", resolved) < (int)cap ? 0 : -1;
    char *slash = strrchr(path, '/');
    const char *parent = slash ? (slash == path ? "/" : path) : ".";
    const char *base = slash ? slash + 1 : path;
    if (slash && slash != path) *slash = '\0';
    if (strcmp(base, ".") != 0 && strcmp(base, "..") != 0 && realpath(parent, resolved))
        return snprintf(out, cap, "%s%s%s", resolved, strcmp(resolved, "/") ? "/" : "", base) < (int)cap ? 0 : -1;
    if (slash) *slash = '/';
    if (path[0] == '/') return snprintf(out, cap, "%s", path) < (int)cap ? 0 : -1;
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return -1;
    return snprintf(out, cap, "%s/%s", cwd, path) < (int)cap ? 0 : -1;
}

static int derive(vx_config *cfg, vx_err *err) {
    char abs_dir[VX_PATH_SIZE];
    if (absolute_dir(cfg->data_dir, abs_dir, sizeof abs_dir) != 0)
        return vx_err_set(err, VX_E_INVALID, "invalid_option", "--data: cannot resolve the directory");
    memcpy(cfg->data_dir, abs_dir, strlen(abs_dir) + 1);
    if (!cfg->db_url[0]) snprintf(cfg->db_url, sizeof cfg->db_url, "sqlite://%s/voxd.db", abs_dir);
    if (!cfg->blob_url[0]) snprintf(cfg->blob_url, sizeof cfg->blob_url, "file://%s/blobs", abs_dir);
    if (!cfg->web_dir[0]) {
        struct stat sb;
        char resolved[PATH_MAX];
        if (stat("web", &sb) == 0 && S_ISDIR(sb.st_mode) && realpath("web", resolved) &&
            strlen(resolved) < sizeof cfg->web_dir)
            memcpy(cfg->web_dir, resolved, strlen(resolved) + 1);
        else
            snprintf(cfg->web_dir, sizeof cfg->web_dir, "/usr/share/voxd/web");
    }
    if (cfg->heartbeat_s >= cfg->lease_s)
        return vx_err_set(err, VX_E_INVALID, "invalid_option",
                          "--heartbeat (%d s) must be shorter than --lease (%d s)", cfg->heartbeat_s,
                          cfg->lease_s);
    return 0;
}

int vx_config_load(vx_config *cfg, int argc, char **argv, vx_err *err) {
    if (apply_env(cfg, err) != 0) return -1;
    if (apply_flags(cfg, argc, argv, err) != 0) return -1;
    return derive(cfg, err);
}

static void default_text(const vx_config *d, const option *o, char *out, size_t cap) {
    const char *field = (const char *)d + o->offset;
    if (o->default_text) {
        snprintf(out, cap, "%s", o->default_text);
        return;
    }
    switch (o->type) {
    case OPT_STRING: snprintf(out, cap, "%s", field); break;
    case OPT_INT: case OPT_SECONDS: snprintf(out, cap, "%d", *(const int *)field); break;
    case OPT_DURATION: snprintf(out, cap, "%g", *(const double *)field); break;
    case OPT_SIZE: {
        int64_t b = *(const int64_t *)field;
        if (b % (1 << 20) == 0) snprintf(out, cap, "%lldM", (long long)(b >> 20));
        else snprintf(out, cap, "%lld", (long long)b);
        break;
    }
    case OPT_CREDITS: {
        char c[32];
        vx_credits_format(*(const int64_t *)field, c);
        snprintf(out, cap, "%s", c);
        break;
    }
    case OPT_ON: case OPT_OFF:
        /* what the flag does by default: --no-signup is "off" while sign-up is on */
        snprintf(out, cap, "%s", *(const bool *)field == (o->type == OPT_ON) ? "on" : "off");
        break;
    }
}

void vx_config_print_help(FILE *out) {
    vx_config d;
    vx_config_defaults(&d);
    /* main prints the usage line; this is the part every caller shares. */
    fputs("Every option can also be set with the environment variable shown;\n"
          "a flag on the command line wins over the environment.\n"
          "Flags take a value as `--flag VALUE` or `--flag=VALUE`; on/off flags take none\n"
          "(their variables accept 1/true/yes).\n\n",
          out);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const option *o = &options[i];
        char flag[64], def[96];
        if (o->name)
            snprintf(flag, sizeof flag, "--%s%s%s", o->name, o->metavar ? " " : "", o->metavar ? o->metavar : "");
        else
            snprintf(flag, sizeof flag, "(no flag)");
        default_text(&d, o, def, sizeof def);
        fprintf(out, "  %-30s %s\n      %s (default: %s)\n", flag, o->env, o->help, def);
    }
}
