/* webhook_sender.c - the webhook delivery thread (see webhook_sender.h).
 * One thread drives a curl multi handle: claim due deliveries, resolve and
 * vet each destination, start the POSTs, record outcomes as they finish.
 * The connect itself is vetted again (opensocket callback), so neither DNS
 * rebinding nor a curl-side resolution can reach a refused address.
 * Threads: start/stop from main; the wake-up from any emitter thread. */
#include "webhook_sender.h"
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../core/webhooks.h"
#include "../util/clock.h"
#include "../util/crypto.h"
#include "../util/log.h"

#define MAX_IN_FLIGHT 16
#define TIMEOUT_MS 10000L
#define LEASE_MS 60000          /* > TIMEOUT_MS: a lease never ends mid-transfer */
#define IDLE_POLL_MS 1000
#define PURGE_EVERY_MS 60000
#define PREFIX_MAX 255          /* bytes of a response body kept for the log */

typedef struct transfer {
    vx_delivery d;
    CURL *easy;
    struct curl_slist *headers, *resolve;
    char *body;
    vx_webhook_target target;
    bool host_admitted;         /* a host:port allow entry admits any address */
    const vx_webhook_allow *allow;
    char prefix[PREFIX_MAX + 1];
    size_t prefix_len;
    int64_t started_ms;
} transfer;

struct vx_webhook_sender {
    vx_app *app;
    vx_events *events;
    vx_webhook_allow *allow;
    CURLM *multi;
    pthread_t thread;
    atomic_bool stopping;
    char owner[128];
    transfer *live[MAX_IN_FLIGHT];
    int n_live;
};

static void wake(void *user) {
    vx_webhook_sender *s = user;
    curl_multi_wakeup(s->multi);
}

static size_t keep_prefix(char *data, size_t size, size_t nmemb, void *user) {
    transfer *t = user;
    size_t n = size * nmemb;
    for (size_t i = 0; i < n && t->prefix_len < PREFIX_MAX; i++) {
        unsigned char c = (unsigned char)data[i];
        t->prefix[t->prefix_len++] = c >= 0x20 && c < 0x7f ? (char)c : ' ';
    }
    t->prefix[t->prefix_len] = '\0';
    return n; /* the rest is read and dropped */
}

/* Refuses to open a socket to an address the destination rules forbid. */
static curl_socket_t open_vetted(void *user, curlsocktype purpose, struct curl_sockaddr *a) {
    transfer *t = user;
    const struct sockaddr *sa = &a->addr;
    if (purpose != CURLSOCKTYPE_IPCXN ||
        (!t->host_admitted && !vx_webhook_addr_public(sa) && !vx_webhook_addr_allowed(t->allow, sa))) {
        vx_warn("webhooks: refused to connect delivery %s to a non-public address", t->d.id);
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype, a->protocol);
}

static void transfer_free(transfer *t) {
    if (!t) return;
    if (t->easy) curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->headers);
    curl_slist_free_all(t->resolve);
    free(t->body);
    vx_delivery_clear(&t->d);
    free(t);
}

static void record(vx_webhook_sender *s, const vx_delivery *d, int code, int64_t latency, const char *error,
                   const char *prefix, bool retryable) {
    int64_t now = vx_now_ms();
    bool delivered = code >= 200 && code < 300;
    vx_delivery_attempt a = {.status_code = code, .latency_ms = latency, .error = error,
                             .response_prefix = prefix, .delivered = delivered};
    int done = d->attempts + 1;
    if (!delivered && retryable && done < d->max_attempts) {
        uint32_t r;
        vx_random_bytes(&r, sizeof r);
        a.retry_at = now + vx_webhook_backoff_ms(done, s->app->cfg->webhook_retry_base_s, r);
    }
    vx_err err = {0};
    if (s->app->store->ops->delivery_record(s->app->store, d->id, s->owner, &a, now, &err) != 0)
        vx_warn("webhooks: delivery %s: cannot record the attempt: %s", d->id, err.message);
    else if (delivered)
        vx_info("webhooks: delivered %s (%s) with %d in %lld ms", d->id, d->event_type, code, (long long)latency);
    else
        vx_info("webhooks: delivery %s attempt %d failed (%s%s%d)%s", d->id, done, error && *error ? error : "",
                error && *error ? ", status " : "status ", code, a.retry_at ? ", will retry" : ", giving up");
}

/* Sets up one POST; on a refusal records the attempt and returns NULL. */
static transfer *transfer_new(vx_webhook_sender *s, vx_delivery *d) {
    transfer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->d = *d;
    memset(&d->event, 0, sizeof d->event); /* moved */
    t->allow = s->allow;
    vx_err err = {0};
    if (vx_webhook_target_resolve(t->d.url, s->allow, &t->target, &err) != 0) {
        /* A refused destination stays refused; a DNS failure may heal. */
        record(s, &t->d, 0, 0, err.code, "", strcmp(err.code, "webhook_url_unresolvable") == 0);
        transfer_free(t);
        return NULL;
    }
    t->host_admitted = t->target.admitted_by_name;
    char id_hdr[VX_ID_SIZE + 32], ts_hdr[64], sig_hdr[2 * VX_WEBHOOK_SIGNATURE_SIZE + 32];
    char sig[VX_WEBHOOK_SIGNATURE_SIZE], old[VX_WEBHOOK_SIGNATURE_SIZE] = "";
    int64_t ts = vx_now_ms() / 1000;
    if (!(t->body = vx_event_render(&t->d.event)) ||
        vx_webhook_sign(t->d.secret, t->d.id, ts, t->body, strlen(t->body), sig) != 0) {
        record(s, &t->d, 0, 0, "signing_failed", "", false);
        transfer_free(t);
        return NULL;
    }
    /* During a rotation both signatures go out, so receivers can switch. */
    if (t->d.previous_secret[0] && t->d.previous_until > vx_now_ms())
        vx_webhook_sign(t->d.previous_secret, t->d.id, ts, t->body, strlen(t->body), old);
    snprintf(id_hdr, sizeof id_hdr, "webhook-id: %s", t->d.id);
    snprintf(ts_hdr, sizeof ts_hdr, "webhook-timestamp: %lld", (long long)ts);
    snprintf(sig_hdr, sizeof sig_hdr, "webhook-signature: %s%s%s", sig, old[0] ? " " : "", old);
    const char *hdrs[] = {"Content-Type: application/json", "User-Agent: voxd-webhooks/1", "Expect:", id_hdr, ts_hdr,
                          sig_hdr};
    for (size_t i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++) {
        struct curl_slist *n = curl_slist_append(t->headers, hdrs[i]);
        if (!n) goto oom;
        t->headers = n;
    }
    if (t->target.resolve[0] && !(t->resolve = curl_slist_append(NULL, t->target.resolve))) goto oom;
    if (!(t->easy = curl_easy_init())) goto oom;
    CURL *e = t->easy;
    curl_easy_setopt(e, CURLOPT_URL, t->d.url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(t->body));
    if (t->resolve) curl_easy_setopt(e, CURLOPT_RESOLVE, t->resolve);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_vetted);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, t);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, keep_prefix);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_PRIVATE, t);
    t->started_ms = vx_mono_ms();
    return t;
oom:
    record(s, &t->d, 0, 0, "out_of_memory", "", true);
    transfer_free(t);
    return NULL;
}

static void claim_more(vx_webhook_sender *s) {
    int room = MAX_IN_FLIGHT - s->n_live;
    if (room <= 0) return;
    vx_delivery *ds = NULL;
    size_t n = 0;
    vx_err err = {0};
    if (s->app->store->ops->delivery_claim(s->app->store, s->owner, vx_now_ms(), LEASE_MS, room, &ds, &n, &err) != 0) {
        vx_warn("webhooks: cannot claim deliveries: %s", err.message);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        transfer *t = transfer_new(s, &ds[i]);
        if (!t) continue;
        if (curl_multi_add_handle(s->multi, t->easy) != CURLM_OK) {
            record(s, &t->d, 0, 0, "internal", "", true);
            transfer_free(t);
            continue;
        }
        s->live[s->n_live++] = t;
    }
    vx_delivery_list_free(ds, n);
}

static void finish(vx_webhook_sender *s, CURL *easy, CURLcode result) {
    transfer *t = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
    curl_multi_remove_handle(s->multi, easy);
    for (int i = 0; i < s->n_live; i++) {
        if (s->live[i] == t) {
            s->live[i] = s->live[--s->n_live];
            break;
        }
    }
    if (!t) return;
    long code = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
    int64_t latency = vx_mono_ms() - t->started_ms;
    const char *error = "";
    if (result == CURLE_OPERATION_TIMEDOUT) error = "timeout";
    else if (result == CURLE_COULDNT_CONNECT) error = "connect_failed";
    else if (result != CURLE_OK) error = "transfer_failed";
    record(s, &t->d, result == CURLE_OK ? (int)code : 0, latency, error, t->prefix, true);
    transfer_free(t);
}

static void *sender_main(void *arg) {
    vx_webhook_sender *s = arg;
    int64_t last_purge = 0;
    while (!atomic_load(&s->stopping)) {
        claim_more(s);
        int running = 0;
        curl_multi_perform(s->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(s->multi, &left)))
            if (m->msg == CURLMSG_DONE) finish(s, m->easy_handle, m->data.result);
        int64_t now = vx_mono_ms();
        if (now - last_purge >= PURGE_EVERY_MS) {
            last_purge = now;
            vx_err err = {0};
            if (vx_events_purge(s->events, vx_now_ms(), &err) != 0) vx_warn("events: purge failed: %s", err.message);
        }
        if (atomic_load(&s->stopping)) break;
        /* Short waits while transfers run; otherwise sleep until a wake-up
         * (new deliveries) or the next retry could be due. */
        curl_multi_poll(s->multi, NULL, 0, s->n_live ? 100 : IDLE_POLL_MS, NULL);
    }
    return NULL;
}

/* Returns a sender the caller stops with vx_webhook_sender_stop. */
vx_webhook_sender *vx_webhook_sender_start(vx_app *app, vx_events *ev, vx_err *err) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        vx_err_set(err, VX_E_INTERNAL, "internal", "cannot initialise libcurl");
        return NULL;
    }
    vx_webhook_sender *s = calloc(1, sizeof *s);
    if (!s) {
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        return NULL;
    }
    s->app = app;
    s->events = ev;
    char boot[9], prefix[80];
    vx_random_alnum(boot, 8);
    snprintf(s->owner, sizeof s->owner, "%s/%s/webhooks", app->cfg->node_id, boot);
    snprintf(prefix, sizeof prefix, "%s/", app->cfg->node_id);
    if (!(s->allow = vx_webhook_allow_parse(app->cfg->webhook_allow, err))) goto fail;
    /* Deliveries leased by an earlier run of this node are ours to retry at once
     * only when no other live process can share the node id; otherwise they
     * come back when their lease ends. */
    if (app->cfg->exclusive_node && app->store->ops->delivery_release_owner(app->store, prefix, err) != 0)
        goto fail;
    if (!(s->multi = curl_multi_init())) {
        vx_err_set(err, VX_E_INTERNAL, "internal", "cannot initialise libcurl");
        goto fail;
    }
    if (pthread_create(&s->thread, NULL, sender_main, s) != 0) {
        vx_err_set(err, VX_E_INTERNAL, "internal", "cannot start the webhook thread");
        goto fail;
    }
    vx_events_set_delivery_wake(ev, wake, s);
    return s;
fail:
    if (s->multi) curl_multi_cleanup(s->multi);
    vx_webhook_allow_free(s->allow);
    free(s);
    return NULL;
}

void vx_webhook_sender_stop(vx_webhook_sender *s) {
    if (!s) return;
    vx_events_set_delivery_wake(s->events, NULL, NULL);
    atomic_store(&s->stopping, true);
    curl_multi_wakeup(s->multi);
    pthread_join(s->thread, NULL);
    for (int i = 0; i < s->n_live; i++) {
        curl_multi_remove_handle(s->multi, s->live[i]->easy);
        transfer_free(s->live[i]);
    }
    vx_err err = {0};
    if (s->n_live && s->app->store->ops->delivery_release_owner(s->app->store, s->owner, &err) != 0)
        vx_warn("webhooks: cannot release deliveries in flight: %s", err.message);
    curl_multi_cleanup(s->multi);
    vx_webhook_allow_free(s->allow);
    free(s);
    curl_global_cleanup();
}
