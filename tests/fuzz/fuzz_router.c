/* fuzz_router.c - libFuzzer target for request routing (src/http/router.c).
 * Mode 0 (first byte even): "METHOD path" is matched against voxd's real
 * route table (src/api/routes.c), and the path is percent-decoded on its
 * own. Mode 1: the input is a route table, one "METHOD pattern" per line,
 * and its last line a request to match, so pattern compilation is fuzzed too. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../../src/api/api.h"
#include "../../src/http/router.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ROUTES 16

static vx_router *api_router;
static const vx_route *api_routes;
static size_t n_api_routes;

static void handle_nothing(vx_request *req) { (void)req; }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    vx_err err = {0};
    api_routes = vx_api_routes(&n_api_routes);
    api_router = vx_router_new(api_routes, n_api_routes, &err);
    if (!api_router) abort();
    return 0;
}

static size_t count_captures(const char *pattern) {
    size_t n = 0;
    for (const char *p = pattern; *p; p++) n += *p == '{';
    return n;
}

/* The result must agree with the table: the method, the number of captures,
 * and capture values free of '/' (they are single decoded segments). */
static void match_and_check(const vx_router *r, const vx_route *routes, size_t n, const char *method,
                            const char *path) {
    vx_route_match m;
    memset(&m, 0, sizeof m);
    vx_route_result res = vx_router_match(r, method, path, &m);
    if (res == VX_ROUTE_FOUND) {
        if (m.index >= n) abort();
        const vx_route *rt = &routes[m.index];
        if (strcmp(rt->method, method) != 0 && !(strcmp(method, "HEAD") == 0 && strcmp(rt->method, "GET") == 0))
            abort();
        if (m.n_captures != count_captures(rt->pattern) || m.n_captures > VX_ROUTER_MAX_CAPTURES) abort();
        for (size_t i = 0; i < m.n_captures; i++) {
            if (!m.names[i] || !m.values[i] || strchr(m.values[i], '/')) abort();
            if (!strstr(rt->pattern, m.names[i])) abort();
        }
    } else if (res == VX_ROUTE_NO_METHOD) {
        if (!m.allow[0] || strnlen(m.allow, sizeof m.allow) == sizeof m.allow) abort();
    } else if (res != VX_ROUTE_NO_PATH) {
        abort();
    }
    vx_route_match_clear(&m);
}

static void check_decode(const char *path) {
    size_t len = strlen(path);
    char *out = malloc(len + 1);
    if (!out) return;
    long n = vx_http_percent_decode(path, len, out);
    if (n > (long)len || (n >= 0 && out[n] != '\0')) abort();
    if (n >= 0 && !strchr(path, '%') && (n != (long)len || memcmp(out, path, len) != 0)) abort();
    free(out);
}

/* Splits "METHOD rest" in place; the method is at most 15 bytes, as in
 * server.c (longer methods are truncated and never match). */
static void split_request(char *line, const char **method, const char **path) {
    char *sp = strchr(line, ' ');
    *method = line;
    *path = "";
    if (sp) {
        *sp = '\0';
        *path = sp + 1;
    }
    if (strlen(line) > 15) line[15] = '\0';
}

static void fuzz_table(char *text) {
    vx_route routes[MAX_ROUTES];
    char *lines[MAX_ROUTES + 1];
    size_t n_lines = 0;
    for (char *p = text; n_lines < MAX_ROUTES + 1;) {
        lines[n_lines++] = p;
        char *nl = strchr(p, '\n');
        if (!nl) break;
        *nl = '\0';
        p = nl + 1;
    }
    if (n_lines < 2) return;
    size_t n = n_lines - 1;
    for (size_t i = 0; i < n; i++) {
        const char *method, *pattern;
        split_request(lines[i], &method, &pattern);
        routes[i] = (vx_route){.method = method, .pattern = pattern, .handle = handle_nothing};
    }
    vx_err err = {0};
    vx_router *r = vx_router_new(routes, n, &err);
    if (!r) {
        if (err.status == VX_OK || !err.code[0]) abort();
        return;
    }
    const char *method, *path;
    split_request(lines[n], &method, &path);
    match_and_check(r, routes, n, method, path);
    vx_router_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 4096) return 0;
    char *text = malloc(size);
    if (!text) return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    if (data[0] % 2 == 0) {
        const char *method, *path;
        split_request(text, &method, &path);
        check_decode(path);
        match_and_check(api_router, api_routes, n_api_routes, method, path);
    } else {
        fuzz_table(text);
    }
    free(text);
    return 0;
}
