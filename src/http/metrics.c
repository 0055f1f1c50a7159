/* metrics.c - HTTP request counters by (route pattern, method, status),
 * a latency histogram per route and the in-flight gauge, rendered in the
 * Prometheus text format. One mutex per update; memory is allocated only
 * when a new (method, status) pair first appears on a route.
 * Thread-safe: record and render may be called from any thread. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "../util/strbuf.h"
#include "http_int.h"

static const double bucket_le[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                   0.25, 0.5, 1, 2.5, 5, 10};
#define N_BUCKETS (sizeof bucket_le / sizeof bucket_le[0])

/* Known methods keep the label set bounded whatever clients send. */
static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"};
#define N_METHODS (sizeof methods / sizeof methods[0])

typedef struct counter {
    unsigned method;
    int status;
    uint64_t count;
} counter;

typedef struct slot {
    const char *label;            /* route pattern, "static" or "unmatched" (borrowed) */
    uint64_t buckets[N_BUCKETS];  /* not cumulative; +Inf is `count` */
    uint64_t count;
    double sum;
    counter *counters;
    size_t n_counters, cap;
} slot;

struct vx_http_metrics {
    pthread_mutex_t mu;
    size_t n_routes;
    size_t *route_slot;           /* route index -> slot */
    size_t n_slots;               /* distinct patterns + static + unmatched */
    slot *slots;
};

vx_http_metrics *vx_http_metrics_new(const vx_route *routes, size_t n_routes) {
    vx_http_metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->route_slot = calloc(n_routes + 1, sizeof *m->route_slot);
    m->slots = calloc(n_routes + 2, sizeof *m->slots);
    if (!m->route_slot || !m->slots) {
        free(m->route_slot);
        free(m->slots);
        free(m);
        return NULL;
    }
    pthread_mutex_init(&m->mu, NULL);
    m->n_routes = n_routes;
    for (size_t i = 0; i < n_routes; i++) {
        size_t s = 0;
        while (s < m->n_slots && strcmp(m->slots[s].label, routes[i].pattern) != 0) s++;
        if (s == m->n_slots) m->slots[m->n_slots++].label = routes[i].pattern;
        m->route_slot[i] = s;
    }
    m->slots[m->n_slots++].label = "static";
    m->slots[m->n_slots++].label = "unmatched";
    return m;
}

void vx_http_metrics_free(vx_http_metrics *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_slots; i++) free(m->slots[i].counters);
    pthread_mutex_destroy(&m->mu);
    free(m->slots);
    free(m->route_slot);
    free(m);
}

static unsigned method_index(const char *method) {
    for (unsigned i = 0; i + 1 < N_METHODS; i++)
        if (strcmp(method, methods[i]) == 0) return i;
    return N_METHODS - 1;
}

void vx_http_metrics_record(vx_http_metrics *m, int route_index, const char *method, int status,
                            double seconds) {
    size_t s;
    if (route_index >= 0 && (size_t)route_index < m->n_routes) s = m->route_slot[route_index];
    else if (route_index == VX_HTTP_ROUTE_STATIC) s = m->n_slots - 2;
    else s = m->n_slots - 1;
    unsigned mi = method_index(method);
    size_t b = 0;
    while (b < N_BUCKETS && seconds > bucket_le[b]) b++;

    pthread_mutex_lock(&m->mu);
    slot *sl = &m->slots[s];
    if (b < N_BUCKETS) sl->buckets[b]++;
    sl->count++;
    sl->sum += seconds;
    size_t i = 0;
    while (i < sl->n_counters && (sl->counters[i].method != mi || sl->counters[i].status != status)) i++;
    if (i == sl->n_counters && sl->n_counters == sl->cap) {
        size_t cap = sl->cap ? sl->cap * 2 : 4;
        counter *grown = realloc(sl->counters, cap * sizeof *grown);
        if (grown) {
            sl->counters = grown;
            sl->cap = cap;
        }
    }
    if (i < sl->cap) {
        if (i == sl->n_counters) sl->counters[sl->n_counters++] = (counter){.method = mi, .status = status};
        sl->counters[i].count++;
    }
    pthread_mutex_unlock(&m->mu);
}

/* Label values per the exposition format: escape backslash, quote, newline. */
static void put_label(vx_strbuf *buf, const char *v) {
    for (const char *p = v; *p; p++) {
        if (*p == '\\') vx_strbuf_puts(buf, "\\\\");
        else if (*p == '"') vx_strbuf_puts(buf, "\\\"");
        else if (*p == '\n') vx_strbuf_puts(buf, "\\n");
        else vx_strbuf_append(buf, p, 1);
    }
}

void vx_http_metrics_render_to(vx_http_metrics *m, int in_flight, vx_strbuf *buf) {
    pthread_mutex_lock(&m->mu);
    vx_strbuf_puts(buf, "# HELP voxd_http_requests_total HTTP requests answered, by route pattern, method and status.\n"
                        "# TYPE voxd_http_requests_total counter\n");
    for (size_t s = 0; s < m->n_slots; s++) {
        const slot *sl = &m->slots[s];
        for (size_t i = 0; i < sl->n_counters; i++) {
            vx_strbuf_puts(buf, "voxd_http_requests_total{route=\"");
            put_label(buf, sl->label);
            vx_strbuf_printf(buf, "\",method=\"%s\",status=\"%d\"} %llu\n", methods[sl->counters[i].method],
                             sl->counters[i].status, (unsigned long long)sl->counters[i].count);
        }
    }
    vx_strbuf_puts(buf, "# HELP voxd_http_request_duration_seconds Time from request line to response completion.\n"
                        "# TYPE voxd_http_request_duration_seconds histogram\n");
    for (size_t s = 0; s < m->n_slots; s++) {
        const slot *sl = &m->slots[s];
        uint64_t cumulative = 0;
        for (size_t b = 0; b <= N_BUCKETS; b++) {
            vx_strbuf_puts(buf, "voxd_http_request_duration_seconds_bucket{route=\"");
            put_label(buf, sl->label);
            if (b < N_BUCKETS) {
                cumulative += sl->buckets[b];
                vx_strbuf_printf(buf, "\",le=\"%g\"} %llu\n", bucket_le[b], (unsigned long long)cumulative);
            } else {
                vx_strbuf_printf(buf, "\",le=\"+Inf\"} %llu\n", (unsigned long long)sl->count);
            }
        }
        vx_strbuf_puts(buf, "voxd_http_request_duration_seconds_sum{route=\"");
        put_label(buf, sl->label);
        vx_strbuf_printf(buf, "\"} %.6f\n", sl->sum);
        vx_strbuf_puts(buf, "voxd_http_request_duration_seconds_count{route=\"");
        put_label(buf, sl->label);
        vx_strbuf_printf(buf, "\"} %llu\n", (unsigned long long)sl->count);
    }
    pthread_mutex_unlock(&m->mu);
    vx_strbuf_printf(buf, "# HELP voxd_http_requests_in_flight HTTP requests being processed.\n"
                          "# TYPE voxd_http_requests_in_flight gauge\n"
                          "voxd_http_requests_in_flight %d\n", in_flight);
}

void vx_http_metrics_render(vx_request *req, vx_strbuf *buf) {
    vx_http_metrics_render_to(req->srv->metrics, atomic_load(&req->srv->in_flight), buf);
}
