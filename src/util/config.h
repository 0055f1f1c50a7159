/* config.h - the whole runtime configuration, read once at start-up from
 * command-line flags and VOXD_* environment variables (flag wins), then passed
 * down read-only. No other module reads the environment for settings. */
#ifndef VX_CONFIG_H
#define VX_CONFIG_H
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include "err.h"

#define VX_PATH_SIZE 1024
#define VX_URL_SIZE 2048

typedef struct vx_config {
    /* server */
    char listen[256];          /* --listen HOST:PORT, default 127.0.0.1:8080 */
    char data_dir[VX_PATH_SIZE]; /* --data DIR, default ./data */
    char db_url[VX_URL_SIZE];  /* --db, default sqlite:///<data>/voxd.db */
    char blob_url[VX_URL_SIZE];/* --blob, default file:///<data>/blobs */
    char web_dir[VX_PATH_SIZE];/* --web DIR, default ./web next to the binary's repo or /usr/share/voxd/web */
    char node_id[64];          /* --node-id, default "local"; names this process's leases */
    bool exclusive_node;       /* --exclusive-node: no other live process uses node_id (start-up reclaims its leases at once) */
    char bus_url[VX_URL_SIZE]; /* --bus, live-event bus URL, default "local:" */
    int concurrency;           /* --concurrency, job threads of `voxd worker`, default 0 = as --workers */
    char metrics_listen[256];  /* --metrics-listen HOST:PORT, `voxd worker`'s /healthz + /metrics, default none */
    int http_threads;          /* --http-threads, default 4 */
    int workers;               /* --workers, worker threads, default 2 */
    int asr_decoders;          /* --asr-decoders, speech decoders kept per process, default 4 */
    char asr_model_dir[VX_PATH_SIZE]; /* --asr-model-dir, "" = the engine's default model */
    int request_timeout_s;     /* --request-timeout, idle connection timeout, default 60 */
    int64_t max_body_bytes;    /* --max-body, JSON request bodies, default 1 MiB */
    int max_connections;       /* --max-connections, default 1024 */

    /* uploads and audio limits */
    int64_t max_upload_bytes;  /* --max-upload, default 256 MiB */
    double max_duration_s;     /* --max-duration, default 3 hours */

    /* accounts and credits */
    int64_t signup_grant_micro;/* --signup-grant (credits), default 10 */
    bool allow_self_top_up;    /* --allow-self-top-up */
    bool allow_signup;         /* --no-signup turns it off; default on */
    int jwt_ttl_s;             /* --jwt-ttl, default 900 */
    char admin_password[256];  /* VOXD_ADMIN_PASSWORD; empty = generate and print once */

    /* queue */
    int lease_s;               /* --lease, default 30 */
    int heartbeat_s;           /* --heartbeat, default 5 */
    int max_attempts;          /* --max-attempts, default 3 */
    int retry_base_s;          /* --retry-base, first back-off, default 2 (doubles) */
    int shutdown_grace_s;      /* --shutdown-grace, default 10 */

    /* live events and webhooks */
    int event_retention_s;     /* --event-retention, how long events stay for resume, default 24h */
    char webhook_allow[1024];  /* --webhook-allow, CIDRs / host:port allowed despite being private, default none */
    int webhook_max_attempts;  /* --webhook-max-attempts, default 8 */
    double webhook_retry_base_s; /* --webhook-retry-base, first retry delay (x4 per attempt), default 15 */
    int sync_timeout_s;        /* --sync-timeout, longest wait of a synchronous request (OpenAI endpoint), default 600 */

    /* direct uploads and downloads, orphan sweeper */
    int upload_url_ttl_s;      /* --upload-url-ttl, life of a POST /v1/uploads URL, default 900 */
    int download_url_ttl_s;    /* --download-url-ttl, life of a ?redirect=1 URL, default 300 */
    char public_url[VX_URL_SIZE]; /* --public-url, base of URLs voxd hands out, default from the Host header */
    int sweep_interval_s;      /* --sweep-interval, orphan-object sweeps, default 600, 0 = never */
    int sweep_grace_s;         /* --sweep-grace, age before an unreferenced object is removed, default 3600 */

    /* live streams (GET /v1/stream) */
    int stream_threads;        /* --stream-threads, recognition threads for streams, default 2 */
    int stream_idle_timeout_s; /* --stream-idle-timeout, close a stream silent this long, default 30 */
    int stream_hold_s;         /* --stream-hold, seconds of audio held per block of credits, default 30 */
    int max_streams;           /* --max-streams, concurrent streams per node, default 64 */

    char log_level[16];        /* --log-level, default info */
    bool access_log;           /* --no-access-log turns it off */
} vx_config;

/* Fills defaults. */
void vx_config_defaults(vx_config *cfg);
/* Applies VOXD_* environment variables, then argv flags (argv[0] is the
 * subcommand's first flag, i.e. after "serve"). Unknown flag or bad value:
 * -1 with a message naming it. Derived defaults (db_url, blob_url from
 * data_dir) are filled last. */
int vx_config_load(vx_config *cfg, int argc, char **argv, vx_err *err);
/* Writes the `serve --help` text (every option, its variable and default). */
void vx_config_print_help(FILE *out);

#endif
