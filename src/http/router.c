/* router.c - compiles the route table's patterns once and matches request
 * paths against them segment by segment (first match in table order wins).
 * Matching allocates one buffer per request for the decoded segments.
 * Thread-safe: the compiled router is read-only after vx_router_new. */
#include "router.h"
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "http.h"

typedef struct seg {
    bool capture;
    const char *text;   /* literal text or capture name, NUL-terminated in owned copy */
    size_t len;
} seg;

typedef struct compiled {
    const vx_route *route;
    char *copy;         /* the pattern with '/' and braces replaced by NULs */
    size_t n_segs;
    seg segs[VX_ROUTER_MAX_SEGMENTS];
} compiled;

struct vx_router {
    size_t n;
    compiled *routes;
};

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

long vx_http_percent_decode(const char *src, size_t len, char *dst) {
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] != '%') {
            dst[o++] = src[i];
            continue;
        }
        if (i + 2 >= len) return -1;
        int hi = hexval(src[i + 1]), lo = hexval(src[i + 2]);
        if (hi < 0 || lo < 0) return -1;
        dst[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    dst[o] = '\0';
    return (long)o;
}

static bool name_ok(const char *s, size_t len) {
    if (len == 0) return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

static int compile(compiled *c, const vx_route *route, vx_err *err) {
    const char *p = route->pattern;
    if (!p || p[0] != '/' || !route->method || !route->method[0] || !route->handle ||
        ((route->body == VX_BODY_UPLOAD || route->body == VX_BODY_RAW) && !route->upload_part))
        return vx_err_set(err, VX_E_INTERNAL, "invalid_route", "route %s %s is incomplete",
                          route->method ? route->method : "?", p ? p : "?");
    c->route = route;
    c->copy = strdup(p + 1);
    if (!c->copy) return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
    size_t n_caps = 0;
    char *s = c->copy;
    for (;;) {
        if (c->n_segs == VX_ROUTER_MAX_SEGMENTS) goto bad;
        char *slash = strchr(s, '/');
        if (slash) *slash = '\0';
        size_t len = strlen(s);
        seg *g = &c->segs[c->n_segs++];
        if (len >= 2 && s[0] == '{' && s[len - 1] == '}') {
            s[len - 1] = '\0';
            if (!name_ok(s + 1, len - 2) || ++n_caps > VX_ROUTER_MAX_CAPTURES) goto bad;
            *g = (seg){.capture = true, .text = s + 1, .len = len - 2};
        } else {
            /* An empty segment is only legal as the whole pattern "/". */
            if (strpbrk(s, "{}%") || (len == 0 && (c->n_segs > 1 || slash))) goto bad;
            *g = (seg){.capture = false, .text = s, .len = len};
        }
        if (!slash) break;
        s = slash + 1;
    }
    return 0;
bad:
    return vx_err_set(err, VX_E_INTERNAL, "invalid_route", "route pattern %s is invalid", p);
}

static bool same_pattern(const compiled *a, const compiled *b) {
    return strcmp(a->route->pattern, b->route->pattern) == 0;
}

vx_router *vx_router_new(const vx_route *routes, size_t n_routes, vx_err *err) {
    vx_router *r = calloc(1, sizeof *r);
    if (!r) goto oom;
    r->routes = calloc(n_routes ? n_routes : 1, sizeof *r->routes);
    if (!r->routes) goto oom;
    for (size_t i = 0; i < n_routes; i++) {
        r->n = i + 1;
        if (compile(&r->routes[i], &routes[i], err) != 0) goto fail;
        for (size_t j = 0; j < i; j++) {
            if (same_pattern(&r->routes[i], &r->routes[j]) &&
                strcmp(routes[i].method, routes[j].method) == 0) {
                vx_err_set(err, VX_E_INTERNAL, "invalid_route", "route %s %s is listed twice",
                           routes[i].method, routes[i].pattern);
                goto fail;
            }
        }
    }
    return r;
oom:
    vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
fail:
    vx_router_free(r);
    return NULL;
}

void vx_router_free(vx_router *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) free(r->routes[i].copy);
    free(r->routes);
    free(r);
}

typedef struct split {
    size_t n;
    const char *text[VX_ROUTER_MAX_SEGMENTS];  /* decoded */
    size_t len[VX_ROUTER_MAX_SEGMENTS];
    bool ok[VX_ROUTER_MAX_SEGMENTS];           /* decoded cleanly, no NUL, no '/' */
} split;

/* Decodes each segment of raw_path into buf. false if the path cannot match anything. */
static bool split_path(const char *raw, char *buf, split *sp) {
    if (raw[0] != '/') return false;
    const char *s = raw + 1;
    sp->n = 0;
    for (;;) {
        if (sp->n == VX_ROUTER_MAX_SEGMENTS) return false;
        const char *slash = strchr(s, '/');
        size_t len = slash ? (size_t)(slash - s) : strlen(s);
        long dec = vx_http_percent_decode(s, len, buf);
        size_t i = sp->n++;
        sp->text[i] = buf;
        sp->ok[i] = dec >= 0 && strlen(buf) == (size_t)dec && !strchr(buf, '/');
        sp->len[i] = dec >= 0 ? (size_t)dec : 0;
        buf += (dec >= 0 ? (size_t)dec : 0) + 1;
        if (!slash) break;
        s = slash + 1;
    }
    return true;
}

static bool pattern_matches(const compiled *c, const split *sp) {
    if (c->n_segs != sp->n) return false;
    for (size_t i = 0; i < sp->n; i++) {
        const seg *g = &c->segs[i];
        if (!sp->ok[i]) return false;
        if (g->capture) {
            if (sp->len[i] == 0) return false;
        } else if (g->len != sp->len[i] || memcmp(g->text, sp->text[i], g->len) != 0) {
            return false;
        }
    }
    return true;
}

static void allow_add(char *allow, size_t size, const char *method) {
    size_t n = strlen(method), at = 0;
    /* Skip methods already listed (exact token match). */
    for (const char *p = allow; *p;) {
        const char *end = strstr(p, ", ");
        size_t tok = end ? (size_t)(end - p) : strlen(p);
        if (tok == n && memcmp(p, method, n) == 0) return;
        if (!end) break;
        p = end + 2;
    }
    at = strlen(allow);
    if (at + n + 3 > size) return;
    if (at) {
        memcpy(allow + at, ", ", 2);
        at += 2;
    }
    memcpy(allow + at, method, n + 1);
}

vx_route_result vx_router_match(const vx_router *r, const char *method, const char *raw_path,
                                vx_route_match *m) {
    memset(m, 0, sizeof *m);
    split sp;
    size_t raw_len = strlen(raw_path);
    m->buf = malloc(raw_len + VX_ROUTER_MAX_SEGMENTS + 1);
    if (!m->buf || !split_path(raw_path, m->buf, &sp)) return VX_ROUTE_NO_PATH;

    const compiled *found = NULL, *head_fallback = NULL;
    bool any = false, has_get = false;
    for (size_t i = 0; i < r->n; i++) {
        const compiled *c = &r->routes[i];
        if (!pattern_matches(c, &sp)) continue;
        any = true;
        const char *rm = c->route->method;
        allow_add(m->allow, sizeof m->allow, rm);
        if (strcmp(rm, "GET") == 0) has_get = true;
        if (!found && strcmp(rm, method) == 0) found = c;
        if (!head_fallback && strcmp(method, "HEAD") == 0 && strcmp(rm, "GET") == 0) head_fallback = c;
    }
    if (!found) found = head_fallback;
    if (!found) {
        if (!any) return VX_ROUTE_NO_PATH;
        if (has_get) allow_add(m->allow, sizeof m->allow, "HEAD");
        return VX_ROUTE_NO_METHOD;
    }
    m->index = (size_t)(found - r->routes);
    for (size_t i = 0; i < found->n_segs; i++) {
        if (!found->segs[i].capture) continue;
        m->names[m->n_captures] = found->segs[i].text;
        m->values[m->n_captures] = sp.text[i];
        m->n_captures++;
    }
    return VX_ROUTE_FOUND;
}

void vx_route_match_clear(vx_route_match *m) {
    free(m->buf);
    m->buf = NULL;
    m->n_captures = 0;
}
