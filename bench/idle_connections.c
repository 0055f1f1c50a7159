/* idle_connections.c - resident memory of idle long-lived connections:
 * starts voxd's HTTP layer (src/http/) with a WebSocket route and an SSE
 * route, has a child process open N idle connections of each kind on
 * loopback, and prints the server process's VmRSS growth per connection.
 * Not part of voxd; built against a voxd build's libvoxd.a by
 * bench/idle_connections.sh. Prints figures, asserts nothing.
 *   idle_connections [N]            (default 1000)
 *   idle_connections client PORT N ws|sse   (the child, run by the parent) */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "http/http.h"
#include "util/crypto.h"
#include "util/log.h"

/* ---- server side ---- */

static void ws_close(vx_ws *ws, int code, const char *reason, void *user) { (void)ws, (void)code, (void)reason, (void)user; }

static void h_ws(vx_request *req) {
    static const vx_ws_handlers h = {.on_close = ws_close};
    vx_ws_options o = {.ping_interval_ms = 600000};
    vx_ws *ws = vx_respond_websocket(req, &h, &o, NULL);
    vx_ws_release(ws);  /* idle: nobody sends; the transport keeps it */
}

static void h_sse(vx_request *req) { vx_sse_release(vx_respond_sse(req, NULL)); }

static const vx_route routes[] = {
    {.method = "GET", .pattern = "/ws", .handle = h_ws},
    {.method = "GET", .pattern = "/sse", .handle = h_sse},
};

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kib = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kib;
}

static void sleep_ms(int ms) {
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* Runs the client child for `kind`; returns after it holds n connections
 * (child pid in *pid, its stdin pipe in *ctl: closing it ends the child). */
static int spawn_client(const char *self, int port, int n, const char *kind, pid_t *pid, int *ctl) {
    int to_child[2], from_child[2];
    if (pipe(to_child) != 0 || pipe(from_child) != 0) return -1;
    *pid = fork();
    if (*pid == 0) {
        dup2(to_child[0], 0);
        dup2(from_child[1], 1);
        close(to_child[1]);
        close(from_child[0]);
        char p[16], c[16];
        snprintf(p, sizeof p, "%d", port);
        snprintf(c, sizeof c, "%d", n);
        execl(self, self, "client", p, c, kind, (char *)NULL);
        _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    char buf[64] = "";
    ssize_t r = read(from_child[0], buf, sizeof buf - 1);
    close(from_child[0]);
    *ctl = to_child[1];
    return r > 0 && strncmp(buf, "ready", 5) == 0 ? 0 : -1;
}

static void measure(const char *self, int port, int n, const char *kind, const char *label) {
    pid_t pid;
    int ctl;
    /* warm-up: thread arenas and MHD's first allocations are not per connection */
    if (spawn_client(self, port, 50, kind, &pid, &ctl) == 0) {
        close(ctl);
        waitpid(pid, NULL, 0);
    }
    sleep_ms(500);
    long before = rss_kib();
    if (spawn_client(self, port, n, kind, &pid, &ctl) != 0) {
        fprintf(stderr, "%s: client failed\n", label);
        return;
    }
    sleep_ms(1000);
    long after = rss_kib();
    printf("%-10s %5d idle: VmRSS %6ld -> %6ld KiB, +%.1f MiB, %.1f KiB (%ld bytes) per connection\n", label, n,
           before, after, (double)(after - before) / 1024.0, (double)(after - before) / n,
           (after - before) * 1024 / n);
    close(ctl);
    waitpid(pid, NULL, 0);
    sleep_ms(1000);
}

/* ---- client side ---- */

static int client(int port, int n, const char *kind) {
    static const char ws_req[] =
        "GET /ws HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    static const char sse_req[] = "GET /sse HTTP/1.1\r\nHost: b\r\nAccept: text/event-stream\r\n\r\n";
    bool ws = strcmp(kind, "ws") == 0;
    const char *req = ws ? ws_req : sse_req;
    const char *until = ws ? "\r\n\r\n" : ": ok\n\n";
    int *fds = calloc((size_t)n, sizeof *fds);
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
            send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req)) {
            fprintf(stderr, "client: connection %d failed: %s\n", i, strerror(errno));
            return 1;
        }
        char buf[1024];
        size_t got = 0;
        while (got < sizeof buf - 1) {
            ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
            if (r <= 0) return 1;
            got += (size_t)r;
            buf[got] = '\0';
            if (strstr(buf, until)) break;
        }
        fds[i] = fd;
    }
    if (write(1, "ready\n", 6) != 6) return 1;
    char c;
    while (read(0, &c, 1) > 0) {}
    for (int i = 0; i < n; i++) close(fds[i]);
    free(fds);
    return 0;
}

int main(int argc, char **argv) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (argc == 5 && strcmp(argv[1], "client") == 0) return client(atoi(argv[2]), atoi(argv[3]), argv[4]);
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    if (n <= 0 || (rlim_t)n + 100 > rl.rlim_cur) {
        fprintf(stderr, "N must be 1..%ld (open file limit)\n", (long)rl.rlim_cur - 100);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    vx_crypto_init();
    vx_log_set_level(VX_LOG_WARN);
    static vx_config cfg;
    vx_config_defaults(&cfg);
    snprintf(cfg.listen, sizeof cfg.listen, "127.0.0.1:0");
    cfg.web_dir[0] = '\0';
    cfg.http_threads = 2;
    cfg.max_connections = n + 200;
    cfg.access_log = false;
    static vx_app app;
    app = (vx_app){.cfg = &cfg};
    vx_err err = {0};
    vx_http_server *srv = vx_http_start(&app, routes, sizeof routes / sizeof routes[0], &err);
    if (!srv) {
        fprintf(stderr, "server: %s\n", err.message);
        return 1;
    }
    printf("idle connections on loopback, server RSS growth (2 HTTP threads + the stream thread)\n");
    measure(argv[0], vx_http_port(srv), n, "ws", "websocket");
    measure(argv[0], vx_http_port(srv), n, "sse", "sse");
    vx_http_stop(srv, 2000);
    return 0;
}
