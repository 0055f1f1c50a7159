/* main.c - the voxd command line: `serve` (API + worker threads on the
 * configured backends), `worker` (job threads only, shared backends), `run`
 * (one model on one file, no server), `version`.
 * The only file that prints to stdout or calls exit. Signals are blocked in
 * every thread and taken synchronously here with sigwait. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>
#include <libavutil/log.h>
#include "api/api.h"
#include "bus/bus.h"
#include "core/events.h"
#include "core/accounts.h"
#include "http/http.h"
#include "models/asr.h"
#include "models/model.h"
#include "util/config.h"
#include "util/credits.h"
#include "util/crypto.h"
#include "util/log.h"
#include "worker/pipeline.h"
#include "worker/sweeper.h"
#include "worker/webhook_sender.h"
#include "worker/worker.h"

#define VOXD_VERSION "0.1.0"

static void usage(FILE *out) {
    fputs("voxd " VOXD_VERSION " - a self-hosted audio ML job service\n\n"
          "usage:\n"
          "  voxd serve [options]                      run the API server and worker threads\n"
          "  voxd worker [options]                     only claim and run jobs (cluster worker node)\n"
          "  voxd run MODEL INPUT [OUTPUT] [--param key=value ...]\n"
          "                                            run one model on one file, print its JSON result\n"
          "  voxd version                              print the version\n"
          "  voxd COMMAND --help                       options of a command\n\n"
          "Every serve/worker option can also be set as VOXD_<OPTION> (e.g. VOXD_LISTEN, VOXD_DATA).\n"
          "Models: GET /v1/models on a running server, or `voxd run --help`.\n",
          out);
}

static int make_dir(const char *path) {
    if (mkdir(path, 0700) == 0 || errno == EEXIST) return 0;
    fprintf(stderr, "voxd: cannot create %s: %s\n", path, strerror(errno));
    return -1;
}

/* One server per data directory: a second one would take over the first
 * one's job leases at start-up. The lock dies with the process (flock), so a
 * crash never leaves a stale lock behind. Returns the fd to keep open. */
static int lock_data_dir(const char *dir) {
    char path[VX_PATH_SIZE + 16];
    snprintf(path, sizeof path, "%s/voxd.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "voxd: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        fprintf(stderr, "voxd: the data directory %s is in use by another voxd (pid %s)\n", dir,
                pid[0] ? pid : "unknown");
        close(fd);
        return -1;
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        /* the pid is only a courtesy for the message above */
    }
    return fd;
}

/* Upload spools and outputs of a previous run are garbage now. */
static void clean_tmp(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[VX_PATH_SIZE + 300];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
}

/* Loads the configuration of `voxd <cmd>`: 0 to go on, else the exit code
 * (after --help, or a bad option). Also sets up logging and libsodium. */
static int load_config(const char *cmd, const char *what, int argc, char **argv, vx_config *cfg) {
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: voxd %s [options]\n\n%s", cmd, what);
            vx_config_print_help(stdout);
            return -1;
        }
    }
    vx_err err = {0};
    vx_config_defaults(cfg);
    if (vx_config_load(cfg, argc, argv, &err) != 0) {
        fprintf(stderr, "voxd %s: %s (see voxd %s --help)\n", cmd, err.message, cmd);
        return 2;
    }
    vx_log_level level = VX_LOG_INFO;
    if (vx_log_parse_level(cfg->log_level, &level) == 0) vx_log_set_level(level);
    /* Bad uploads are reported through vx_err; FFmpeg's own chatter only helps when debugging. */
    av_log_set_level(level == VX_LOG_DEBUG ? AV_LOG_WARNING : AV_LOG_FATAL);
    if (vx_crypto_init() != 0) {
        fprintf(stderr, "voxd: cannot initialise libsodium\n");
        return 1;
    }
    return 0;
}

/* Blocks the signals we handle before any thread starts, so all inherit the mask. */
static void block_signals(sigset_t *sigs) {
    sigemptyset(sigs);
    sigaddset(sigs, SIGTERM);
    sigaddset(sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* What serve and worker share: the store, the blob store, the bus and the
 * events hub attached to the app. */
typedef struct backends {
    vx_bus *bus;
    vx_events *events;
} backends;

/* The speech engine's shared model is loaded on first use; its pool bound
 * and model come from the configuration. */
static int configure_asr(const vx_config *cfg) {
    vx_asr_options opt;
    vx_err err = {0};
    vx_asr_options_default(&opt);
    opt.max_decoders = cfg->asr_decoders;
    if (cfg->asr_model_dir[0]) opt.model_dir = cfg->asr_model_dir;
    if (vx_asr_shared_configure(&opt, &err) != 0) {
        fprintf(stderr, "voxd: speech engine: %s\n", err.message);
        return -1;
    }
    return 0;
}

static int open_backends(vx_app *app, backends *be) {
    vx_err err = {0};
    const vx_config *cfg = app->cfg;
    if (configure_asr(cfg) != 0) return -1;
    app->store = vx_store_open(cfg->db_url, &err);
    if (!app->store) {
        fprintf(stderr, "voxd: cannot open the store: %s\n", err.message);
        return -1;
    }
    app->blob = vx_blob_open(cfg->blob_url, &err);
    if (!app->blob) {
        fprintf(stderr, "voxd: cannot open the blob store: %s\n", err.message);
        return -1;
    }
    if (!(be->bus = vx_bus_open(cfg->bus_url, &err)) ||
        !(be->events = vx_events_new(app->store, be->bus, cfg, &err)) || vx_events_attach(app, be->events, &err) != 0) {
        fprintf(stderr, "voxd: cannot start live events: %s\n", err.message);
        return -1;
    }
    return 0;
}

static void close_backends(vx_app *app, backends *be) {
    vx_asr_shared_free();
    vx_events_detach(app);
    vx_events_free(be->events);
    vx_bus_close(be->bus);
    if (app->blob) vx_blob_close(app->blob);
    if (app->store) vx_store_close(app->store);
}

static void wait_for_signal(sigset_t *sigs, vx_app *app) {
    int sig = 0;
    while (sigwait(sigs, &sig) != 0) {
    }
    vx_info("signal %d: shutting down (stop claiming, finish in-flight work)", sig);
    atomic_store(&app->shutting_down, true);
}

static int cmd_serve(int argc, char **argv) {
    static vx_config cfg;
    int lrc = load_config("serve", "", argc, argv, &cfg);
    if (lrc != 0) return lrc < 0 ? 0 : lrc;
    vx_err err = {0};
    sigset_t sigs;
    block_signals(&sigs);

    static vx_app app;
    app.cfg = &cfg;
    if (make_dir(cfg.data_dir) != 0) return 1;
    int lock_fd = lock_data_dir(cfg.data_dir);
    if (lock_fd < 0) return 1;
    snprintf(app.tmp_dir, sizeof app.tmp_dir, "%s/tmp", cfg.data_dir);
    if (make_dir(app.tmp_dir) != 0) return 1;
    clean_tmp(app.tmp_dir);
    /* The data-dir lock makes this the only server on its own SQLite
     * database; `voxd worker`s sharing it use other node ids (cmd_worker). */
    char own_db[VX_URL_SIZE + 32];
    snprintf(own_db, sizeof own_db, "sqlite://%s/voxd.db", cfg.data_dir);
    if (strcmp(cfg.db_url, own_db) == 0) cfg.exclusive_node = true;

    int rc = 1;
    vx_workers *workers = NULL;
    vx_http_server *http = NULL;
    backends be = {0};
    vx_webhook_sender *sender = NULL;
    vx_sweeper *sweeper = NULL;
    if (open_backends(&app, &be) != 0) goto out;
    char generated[64] = "";
    bool created_admin = false;
    if (vx_accounts_bootstrap(&app, generated, sizeof generated, &created_admin, &err) != 0) {
        fprintf(stderr, "voxd: %s\n", err.message);
        goto out;
    }
    if (created_admin) {
        if (generated[0])
            printf("voxd: created the admin account.\n  username: admin\n  password: %s\n"
                   "  (shown once; set VOXD_ADMIN_PASSWORD to choose it yourself)\n", generated);
        else
            printf("voxd: created the admin account 'admin' with the password from VOXD_ADMIN_PASSWORD.\n");
        fflush(stdout);
    }
    if (!(app.streams = vx_api_streams_start(&app, &err))) {
        fprintf(stderr, "voxd: cannot start live streams: %s\n", err.message);
        goto out;
    }
    size_t n_routes;
    const vx_route *routes = vx_api_routes(&n_routes);
    http = vx_http_start(&app, routes, n_routes, &err);
    if (!http) {
        fprintf(stderr, "voxd: cannot listen on %s: %s\n", cfg.listen, err.message);
        goto out;
    }
    workers = vx_workers_start(&app, cfg.workers, &err);
    if (!workers) {
        fprintf(stderr, "voxd: cannot start workers: %s\n", err.message);
        goto out;
    }
    if (!(sender = vx_webhook_sender_start(&app, be.events, &err))) {
        fprintf(stderr, "voxd: cannot start webhook deliveries: %s\n", err.message);
        goto out;
    }
    vx_err serr = {0};
    if (!(sweeper = vx_sweeper_start(&app, &serr)) && serr.status != VX_OK) {
        fprintf(stderr, "voxd: cannot start the orphan sweeper: %s\n", serr.message);
        goto out;
    }
    vx_info("voxd %s listening on %s (port %d), data in %s, %d worker(s), store schema v%d", VOXD_VERSION,
            cfg.listen, vx_http_port(http), cfg.data_dir, cfg.workers, app.store->ops->schema_version(app.store));
    printf("voxd: listening on http://%s\n", cfg.listen);
    fflush(stdout);

    wait_for_signal(&sigs, &app);
    rc = 0;
out:
    if (http) vx_http_stop(http, cfg.shutdown_grace_s * 1000);
    vx_api_streams_stop(app.streams); /* after the HTTP stop closed every stream */
    app.streams = NULL;
    if (workers) vx_workers_stop(workers, cfg.shutdown_grace_s * 1000);
    vx_webhook_sender_stop(sender);
    vx_sweeper_stop(sweeper);
    close_backends(&app, &be);
    if (rc == 0) vx_info("stopped");
    close(lock_fd);
    return rc;
}

/* A worker's own scratch directory under --data: "<data>/wtmp-<pid>", so
 * workers sharing a data directory (with each other or with serve) never
 * clear each other's files. Directories of dead workers are removed. */
static void clear_dir(const char *dir, bool remove_dir) {
    clean_tmp(dir);
    if (remove_dir) rmdir(dir);
}

static void sweep_dead_worker_dirs(const char *data_dir) {
    DIR *d = opendir(data_dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "wtmp-", 5) != 0) continue;
        long pid = strtol(e->d_name + 5, NULL, 10);
        if (pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char path[VX_PATH_SIZE + 300];
        snprintf(path, sizeof path, "%s/%s", data_dir, e->d_name);
        clear_dir(path, true);
    }
    closedir(d);
}

/* "worker-<hostname>": the default node id of `voxd worker`, never serve's
 * "local", so a serve restart never takes a live worker's leases. */
static void worker_node_id(vx_config *cfg) {
    if (strcmp(cfg->node_id, "local") != 0) return;
    char host[64] = "";
    if (gethostname(host, sizeof host - 1) != 0 || !host[0]) snprintf(host, sizeof host, "host");
    char id[64];
    snprintf(id, sizeof id, "worker-%.50s", host);
    for (char *p = id; *p; p++)
        if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-", *p)) *p = '-';
    memcpy(cfg->node_id, id, strlen(id) + 1);
}

/* /healthz and /metrics of the API, for --metrics-listen. */
static const vx_route *ops_routes(size_t *n) {
    static vx_route picked[2];
    size_t all_n, k = 0;
    const vx_route *all = vx_api_routes(&all_n);
    for (size_t i = 0; i < all_n && k < 2; i++)
        if (strcmp(all[i].method, "GET") == 0 &&
            (strcmp(all[i].pattern, "/healthz") == 0 || strcmp(all[i].pattern, "/metrics") == 0))
            picked[k++] = all[i];
    *n = k;
    return picked;
}

static const char worker_what[] =
    "Claims and runs jobs from the shared store (no API). Point --db, --blob and --bus\n"
    "at the same backends as the serve nodes; --data only holds this worker's temporary\n"
    "files (it takes no lock, so it may be a serve node's data directory). Without\n"
    "--node-id a worker is named worker-<hostname>; leases stay unique per process.\n\n";

static int cmd_worker(int argc, char **argv) {
    static vx_config cfg;
    int lrc = load_config("worker", worker_what, argc, argv, &cfg);
    if (lrc != 0) return lrc < 0 ? 0 : lrc;
    vx_err err = {0};
    sigset_t sigs;
    block_signals(&sigs);
    worker_node_id(&cfg);
    if (cfg.concurrency > 0) cfg.workers = cfg.concurrency; /* /metrics reports what runs */
    if (cfg.workers < 1) {
        fprintf(stderr, "voxd worker: needs at least one job thread (--concurrency N)\n");
        return 2;
    }
    /* The metrics server takes the listen address and serves no web UI. */
    if (cfg.metrics_listen[0]) {
        memcpy(cfg.listen, cfg.metrics_listen, strlen(cfg.metrics_listen) + 1);
        cfg.web_dir[0] = '\0';
        if (cfg.http_threads > 2) cfg.http_threads = 2;
    }

    static vx_app app;
    app.cfg = &cfg;
    if (make_dir(cfg.data_dir) != 0) return 1;
    sweep_dead_worker_dirs(cfg.data_dir);
    char tmp[VX_PATH_SIZE + 32];
    int len = snprintf(tmp, sizeof tmp, "%s/wtmp-%ld", cfg.data_dir, (long)getpid());
    if (len < 0 || (size_t)len >= sizeof app.tmp_dir) {
        fprintf(stderr, "voxd worker: the --data path is too long\n");
        return 1;
    }
    memcpy(app.tmp_dir, tmp, (size_t)len + 1);
    if (make_dir(app.tmp_dir) != 0) return 1;

    int rc = 1;
    vx_workers *workers = NULL;
    vx_http_server *http = NULL;
    backends be = {0};
    if (open_backends(&app, &be) != 0) goto out;
    if (cfg.metrics_listen[0]) {
        size_t n_routes;
        const vx_route *routes = ops_routes(&n_routes);
        if (!(http = vx_http_start(&app, routes, n_routes, &err))) {
            fprintf(stderr, "voxd: cannot listen on %s: %s\n", cfg.listen, err.message);
            goto out;
        }
    }
    if (!(workers = vx_workers_start(&app, cfg.workers, &err))) {
        fprintf(stderr, "voxd: cannot start workers: %s\n", err.message);
        goto out;
    }
    vx_info("voxd %s worker %s: %d job thread(s), bus %s, store schema v%d", VOXD_VERSION, cfg.node_id,
            cfg.workers, strncmp(cfg.bus_url, "redis", 5) == 0 ? "redis" : "local",
            app.store->ops->schema_version(app.store));
    if (http) printf("voxd: worker %s running, metrics on http://%s\n", cfg.node_id, cfg.listen);
    else printf("voxd: worker %s running\n", cfg.node_id);
    fflush(stdout);

    wait_for_signal(&sigs, &app);
    rc = 0;
out:
    if (workers) vx_workers_stop(workers, cfg.shutdown_grace_s * 1000);
    if (http) vx_http_stop(http, 1000);
    close_backends(&app, &be);
    clear_dir(app.tmp_dir, true);
    if (rc == 0) vx_info("stopped");
    return rc;
}

/* --param values: JSON scalars when they parse (0.5, true), else strings. */
static json_t *param_value(const char *text) {
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    if (v && !json_is_object(v) && !json_is_array(v)) return v;
    json_decref(v);
    return json_string(text);
}

static void print_models(FILE *out) {
    size_t n;
    const vx_model *const *all = vx_catalog_all(&n);
    fputs("models:\n", out);
    for (size_t i = 0; i < n; i++) {
        fprintf(out, "  %-12s %s\n", all[i]->name, all[i]->description);
        for (size_t p = 0; p < all[i]->n_params; p++)
            fprintf(out, "      --param %s=...  %s\n", all[i]->params[p].name, all[i]->params[p].description);
    }
}

/* The result document, or for a text-rendering model (transcribe) the
 * format its params ask for (format=text, srt, ...), as the API would. */
static int print_result(const vx_model *m, const json_t *params, const json_t *result) {
    const char *format = json_string_value(json_object_get(params, "format"));
    if (m->render && result && format && strcmp(format, "json") != 0) {
        char *out = NULL;
        size_t len = 0;
        const char *type = NULL;
        vx_err err = {0};
        if (m->render(result, format, &out, &len, &type, &err) != 0) {
            fprintf(stderr, "voxd run: %s\n", err.message);
            return 1;
        }
        fwrite(out, 1, len, stdout);
        if (len && out[len - 1] != '\n') putchar('\n');
        free(out);
        return 0;
    }
    char *text = result ? json_dumps(result, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15)) : NULL;
    printf("%s\n", text ? text : "{}");
    free(text);
    return 0;
}

static int cmd_run(int argc, char **argv) {
    const char *pos[3] = {0};
    int npos = 0;
    json_t *given = json_object();
    int rc = 2;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: voxd run MODEL INPUT [OUTPUT] [--param key=value ...]\n\n");
            print_models(stdout);
            json_decref(given);
            return 0;
        }
        if (strcmp(argv[i], "--param") == 0 || strncmp(argv[i], "--param=", 8) == 0) {
            const char *kv = argv[i][7] == '=' ? argv[i] + 8 : (i + 1 < argc ? argv[++i] : NULL);
            const char *eq = kv ? strchr(kv, '=') : NULL;
            if (!eq || eq == kv) {
                fprintf(stderr, "voxd run: --param needs key=value\n");
                goto out;
            }
            char key[128];
            snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
            json_object_set_new(given, key, param_value(eq + 1));
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "voxd run: unknown option %s\n", argv[i]);
            goto out;
        } else if (npos < 3) {
            pos[npos++] = argv[i];
        } else {
            fprintf(stderr, "voxd run: too many arguments\n");
            goto out;
        }
    }
    if (npos < 2) {
        fprintf(stderr, "usage: voxd run MODEL INPUT [OUTPUT] [--param key=value ...]\n");
        goto out;
    }
    av_log_set_level(AV_LOG_ERROR);
    const vx_model *m = vx_catalog_find(pos[0]);
    if (!m) {
        fprintf(stderr, "voxd run: unknown model '%s'\n", pos[0]);
        print_models(stderr);
        goto out;
    }
    vx_err err = {0};
    json_t *params = NULL;
    if (vx_catalog_validate_params(m, given, &params, &err) != 0) {
        fprintf(stderr, "voxd run: %s\n", err.message);
        goto out;
    }
    vx_audio_info info;
    vx_model_plan plan = {0};
    if (vx_audio_probe(pos[1], 1e9, &info, &err) != 0 || m->plan(params, &info, &plan, &err) != 0) {
        fprintf(stderr, "voxd run: %s: %s\n", pos[1], err.message);
        json_decref(params);
        rc = 1;
        goto out;
    }
    if (plan.out_format[0] && npos < 3) {
        fprintf(stderr, "voxd run: model '%s' writes audio: give an OUTPUT path\n", m->name);
        json_decref(params);
        goto out;
    }
    vx_pipeline_request req = {.model = m, .params = params, .input_path = pos[1],
                               .output_path = npos == 3 ? pos[2] : NULL};
    vx_pipeline_result res = {0};
    if (vx_pipeline_run(&req, &res, &err) != 0) {
        fprintf(stderr, "voxd run: %s (%s)\n", err.message, err.code);
        rc = 1;
    } else {
        rc = print_result(m, params, res.result);
    }
    vx_pipeline_result_clear(&res);
    vx_asr_shared_free();
    json_decref(params);
out:
    json_decref(given);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("voxd %s\n", VOXD_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "serve") == 0) return cmd_serve(argc - 2, argv + 2);
    if (strcmp(argv[1], "run") == 0) return cmd_run(argc - 2, argv + 2);
    if (strcmp(argv[1], "worker") == 0) return cmd_worker(argc - 2, argv + 2);
    fprintf(stderr, "voxd: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
