/* webhooks.c - webhook rules (see webhooks.h): Standard Webhooks signatures,
 * secrets, the retry schedule, type filters, destination vetting and the
 * endpoint registration that applies them. URL
 * parsing is libcurl's (the same parser the sender's transfers use), so the
 * host we vet is the host curl connects to. Thread-safe. */
#include "webhooks.h"
#include <strings.h>
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../util/clock.h"
#include "../util/crypto.h"
#include "../util/ids.h"
#include "../util/log.h"

#define SECRET_PREFIX "whsec_"
#define SECRET_BYTES 24
#define URL_MAX 2000
#define DAY_MS INT64_C(86400000)

void vx_webhook_secret_new(char out[VX_WEBHOOK_SECRET_SIZE]) {
    unsigned char key[SECRET_BYTES];
    vx_random_bytes(key, sizeof key);
    memcpy(out, SECRET_PREFIX, sizeof SECRET_PREFIX - 1);
    sodium_bin2base64(out + sizeof SECRET_PREFIX - 1, VX_WEBHOOK_SECRET_SIZE - (sizeof SECRET_PREFIX - 1), key,
                      sizeof key, sodium_base64_VARIANT_ORIGINAL);
    sodium_memzero(key, sizeof key);
}

int vx_webhook_sign(const char *secret, const char *msg_id, int64_t timestamp_s, const char *body, size_t len,
                    char out[VX_WEBHOOK_SIGNATURE_SIZE]) {
    out[0] = '\0';
    if (!secret || strncmp(secret, SECRET_PREFIX, sizeof SECRET_PREFIX - 1) != 0) return -1;
    const char *b64 = secret + sizeof SECRET_PREFIX - 1;
    unsigned char key[64];
    size_t key_len = 0;
    if (sodium_base642bin(key, sizeof key, b64, strlen(b64), NULL, &key_len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 || key_len == 0)
        return -1;
    char head[160];
    int hl = snprintf(head, sizeof head, "%s.%lld.", msg_id, (long long)timestamp_s);
    if (hl < 0 || (size_t)hl >= sizeof head) return -1;
    crypto_auth_hmacsha256_state st;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_init(&st, key, key_len);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)head, (unsigned long long)hl);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, (unsigned long long)len);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(key, sizeof key);
    memcpy(out, "v1,", 3);
    sodium_bin2base64(out + 3, VX_WEBHOOK_SIGNATURE_SIZE - 3, mac, sizeof mac, sodium_base64_VARIANT_ORIGINAL);
    return 0;
}

int64_t vx_webhook_backoff_ms(int attempts_done, double base_s, uint32_t random) {
    if (attempts_done < 1) attempts_done = 1;
    if (base_s < 0) base_s = 0;
    double d = base_s * 1000.0;
    for (int i = 1; i < attempts_done && d < (double)DAY_MS; i++) d *= 4;
    if (d > (double)DAY_MS) d = (double)DAY_MS;
    /* Jitter spreads the retries of many deliveries that failed together. */
    d *= 0.8 + 0.4 * ((double)random / 4294967296.0);
    return (int64_t)d;
}

/* ---- event-type filters ---- */

static const char *const known_types[] = {
    "job.queued", "job.started", "job.progress", "job.succeeded", "job.failed", "job.canceled", "job.retrying",
};

bool vx_webhook_types_valid(const char *csv) {
    if (!csv) return false;
    if (!*csv) return true;
    if (strlen(csv) >= 512) return false;
    for (const char *p = csv;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        bool ok = false;
        for (size_t i = 0; i < sizeof known_types / sizeof known_types[0]; i++)
            if (strlen(known_types[i]) == len && strncmp(known_types[i], p, len) == 0) ok = true;
        if (!ok) return false;
        if (!comma) return true;
        p = comma + 1;
    }
}

bool vx_webhook_types_match(const char *csv, const char *type) {
    if (!csv || !*csv) return true;
    size_t tl = strlen(type);
    for (const char *p = csv;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == tl && strncmp(p, type, len) == 0) return true;
        if (!comma) return false;
        p = comma + 1;
    }
}

/* ---- addresses ---- */

typedef struct cidr {
    int family;                 /* AF_INET / AF_INET6 */
    unsigned char addr[16];
    int prefix;
} cidr;

typedef struct host_port {
    char host[256];
    int port;
} host_port;

struct vx_webhook_allow {
    cidr *cidrs;
    size_t n_cidrs;
    host_port *hosts;
    size_t n_hosts;
};

static bool prefix_match(const unsigned char *a, const unsigned char *net, int prefix) {
    int full = prefix / 8, rest = prefix % 8;
    if (memcmp(a, net, (size_t)full) != 0) return false;
    if (!rest) return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[full] & mask) == (net[full] & mask);
}

static bool v4_public(const unsigned char a[4]) {
    static const struct { unsigned char net[4]; int prefix; } blocked[] = {
        {{0, 0, 0, 0}, 8},       {{10, 0, 0, 0}, 8},      {{100, 64, 0, 0}, 10},  {{127, 0, 0, 0}, 8},
        {{169, 254, 0, 0}, 16},  {{172, 16, 0, 0}, 12},   {{192, 0, 0, 0}, 24},   {{192, 0, 2, 0}, 24},
        {{192, 88, 99, 0}, 24},  {{192, 168, 0, 0}, 16},  {{198, 18, 0, 0}, 15},  {{198, 51, 100, 0}, 24},
        {{203, 0, 113, 0}, 24},  {{224, 0, 0, 0}, 4},     {{240, 0, 0, 0}, 4},
    };
    for (size_t i = 0; i < sizeof blocked / sizeof blocked[0]; i++)
        if (prefix_match(a, blocked[i].net, blocked[i].prefix)) return false;
    return true;
}

static bool v6_public(const unsigned char a[16]) {
    static const unsigned char zero[12] = {0};
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    /* Forms that carry an IPv4 address are judged by that address. */
    if (memcmp(a, zero, 12) == 0 || memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0)
        return v4_public(a + 12);
    if (a[0] == 0x20 && a[1] == 0x02) return v4_public(a + 2);          /* 6to4 2002::/16 */
    static const struct { unsigned char net[16]; int prefix; } blocked[] = {
        {{0, 0x64, 0xff, 0x9b, 0, 1}, 48},   /* local-use NAT64 */
        {{0x01, 0x00}, 64},                  /* discard 100::/64 */
        {{0x20, 0x01, 0x00, 0x00}, 32},      /* Teredo (embeds an obfuscated IPv4) */
        {{0x20, 0x01, 0x0d, 0xb8}, 32},      /* documentation */
        {{0xfc}, 7},                         /* unique local */
        {{0xfe, 0x80}, 10},                  /* link-local */
        {{0xfe, 0xc0}, 10},                  /* old site-local */
        {{0xff}, 8},                         /* multicast */
    };
    for (size_t i = 0; i < sizeof blocked / sizeof blocked[0]; i++)
        if (prefix_match(a, blocked[i].net, blocked[i].prefix)) return false;
    return true;
}

bool vx_webhook_addr_public(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET) return v4_public((const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr);
    if (sa->sa_family == AF_INET6)
        return v6_public((const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return false;
}

bool vx_webhook_addr_allowed(const vx_webhook_allow *allow, const struct sockaddr *sa) {
    if (!allow) return false;
    unsigned char buf[16];
    const unsigned char *a;
    int family = sa->sa_family;
    if (family == AF_INET) {
        a = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else if (family == AF_INET6) {
        a = (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, mapped, 12) == 0) { /* an IPv4 entry covers its mapped form */
            memcpy(buf, a + 12, 4);
            a = buf;
            family = AF_INET;
        }
    } else {
        return false;
    }
    for (size_t i = 0; i < allow->n_cidrs; i++)
        if (allow->cidrs[i].family == family && prefix_match(a, allow->cidrs[i].addr, allow->cidrs[i].prefix))
            return true;
    return false;
}

static bool host_allowed(const vx_webhook_allow *allow, const char *host, int port) {
    for (size_t i = 0; allow && i < allow->n_hosts; i++)
        if (allow->hosts[i].port == port && strcasecmp(allow->hosts[i].host, host) == 0) return true;
    return false;
}

static int parse_cidr(const char *text, cidr *out) {
    char buf[128];
    size_t len = strlen(text);
    if (len >= sizeof buf) return -1;
    memcpy(buf, text, len + 1);
    char *slash = strchr(buf, '/');
    if (slash) *slash = '\0';
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, buf, out->addr) == 1) out->family = AF_INET, out->prefix = 32;
    else if (inet_pton(AF_INET6, buf, out->addr) == 1) out->family = AF_INET6, out->prefix = 128;
    else return -1;
    if (slash) {
        char *end;
        long p = strtol(slash + 1, &end, 10);
        if (!slash[1] || *end || p < 0 || p > out->prefix) return -1;
        out->prefix = (int)p;
    }
    return 0;
}

static int parse_host_port(const char *text, host_port *out) {
    const char *colon;
    size_t hl;
    const char *host = text;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':') return -1;
        host = text + 1;
        hl = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (!colon || strchr(text, ':') != colon) return -1;
        hl = (size_t)(colon - text);
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (hl == 0 || hl >= sizeof out->host || !colon[1] || *end || port < 1 || port > 65535) return -1;
    memcpy(out->host, host, hl);
    out->host[hl] = '\0';
    out->port = (int)port;
    return 0;
}

/* Returns a list the caller frees with vx_webhook_allow_free. */
vx_webhook_allow *vx_webhook_allow_parse(const char *list, vx_err *err) {
    vx_webhook_allow *a = calloc(1, sizeof *a);
    size_t n = 1;
    for (const char *p = list ? list : ""; *p; p++) n += *p == ',';
    if (!a || !(a->cidrs = calloc(n, sizeof *a->cidrs)) || !(a->hosts = calloc(n, sizeof *a->hosts))) {
        vx_webhook_allow_free(a);
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        return NULL;
    }
    for (const char *p = list ? list : ""; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char entry[300];
        if (len == 0 || len >= sizeof entry) goto bad;
        memcpy(entry, p, len);
        entry[len] = '\0';
        if (parse_cidr(entry, &a->cidrs[a->n_cidrs]) == 0) a->n_cidrs++;
        else if (parse_host_port(entry, &a->hosts[a->n_hosts]) == 0) a->n_hosts++;
        else goto bad;
        if (!comma) break;
        p = comma + 1;
        if (!*p) goto bad;
        continue;
    bad:
        vx_err_set(err, VX_E_INVALID, "invalid_webhook_allow",
                   "--webhook-allow: '%.*s' is neither a CIDR, an address nor host:port", (int)(len > 64 ? 64 : len), p);
        vx_webhook_allow_free(a);
        return NULL;
    }
    return a;
}

void vx_webhook_allow_free(vx_webhook_allow *allow) {
    if (!allow) return;
    free(allow->cidrs);
    free(allow->hosts);
    free(allow);
}

/* ---- URLs ---- */

/* Splits url into host (brackets stripped) and port; 0 or -1 with err. */
static int url_parts(const char *url, char *host, size_t cap, int *port, vx_err *err) {
    int rc = -1;
    char *scheme = NULL, *h = NULL, *p = NULL, *user = NULL, *zone = NULL;
    CURLU *u = NULL;
    size_t len = url ? strlen(url) : 0;
    if (len == 0 || len > URL_MAX) goto out;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f) goto out;
    const char *rest = strncasecmp(url, "http://", 7) == 0    ? url + 7
                       : strncasecmp(url, "https://", 8) == 0 ? url + 8
                                                              : NULL;
    if (!rest || *rest == '/' || *rest == '\0') goto out; /* curl would guess a host from "http:///x" */
    if (!(u = curl_url())) goto out;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) goto out;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) goto out;
    if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) goto out;
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) goto out; /* credentials would leak into logs */
    if (curl_url_get(u, CURLUPART_ZONEID, &zone, 0) == CURLUE_OK) goto out;
    if (curl_url_get(u, CURLUPART_HOST, &h, 0) != CURLUE_OK || !*h) goto out;
    if (curl_url_get(u, CURLUPART_PORT, &p, CURLU_DEFAULT_PORT) != CURLUE_OK) goto out;
    size_t hl = strlen(h);
    const char *start = h;
    if (h[0] == '[' && hl > 2 && h[hl - 1] == ']') start = h + 1, hl -= 2;
    if (hl >= cap) goto out;
    memcpy(host, start, hl);
    host[hl] = '\0';
    *port = atoi(p);
    rc = *port > 0 && *port <= 65535 ? 0 : -1;
out:
    curl_free(scheme);
    curl_free(h);
    curl_free(p);
    curl_free(user);
    curl_free(zone);
    curl_url_cleanup(u);
    if (rc != 0)
        vx_err_set(err, VX_E_INVALID, "invalid_webhook_url",
                   "the webhook URL must be an http or https URL with a host and no credentials, at most 2000 bytes");
    return rc;
}

int vx_webhook_url_check(const char *url, vx_err *err) {
    char host[256];
    int port;
    return url_parts(url, host, sizeof host, &port, err);
}

int vx_webhook_target_resolve(const char *url, const vx_webhook_allow *allow, vx_webhook_target *out,
                              vx_err *err) {
    memset(out, 0, sizeof *out);
    if (url_parts(url, out->host, sizeof out->host, &out->port, err) != 0) return -1;
    unsigned char probe[16];
    out->host_is_ip = inet_pton(AF_INET, out->host, probe) == 1 || inet_pton(AF_INET6, out->host, probe) == 1;
    bool named_ok = host_allowed(allow, out->host, out->port);
    out->admitted_by_name = named_ok;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int gai = getaddrinfo(out->host, NULL, &hints, &res);
    if (gai != 0 || !res)
        return vx_err_set(err, VX_E_UNPROCESSABLE, "webhook_url_unresolvable", "the webhook host does not resolve");
    int rc = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        const struct sockaddr *sa = ai->ai_addr;
        if (!named_ok && !vx_webhook_addr_public(sa) && !vx_webhook_addr_allowed(allow, sa)) {
            rc = vx_err_set(err, VX_E_UNPROCESSABLE, "webhook_url_refused",
                            "the webhook host resolves to a private, loopback or link-local address");
            break;
        }
        if (out->address[0]) continue;
        const void *bin = sa->sa_family == AF_INET ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                                                  : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (!inet_ntop(sa->sa_family, bin, out->address, sizeof out->address)) out->address[0] = '\0';
    }
    freeaddrinfo(res);
    if (rc != 0) return -1;
    if (!out->address[0])
        return vx_err_set(err, VX_E_UNPROCESSABLE, "webhook_url_unresolvable", "the webhook host does not resolve");
    if (!out->host_is_ip) {
        bool v6 = strchr(out->address, ':') != NULL;
        snprintf(out->resolve, sizeof out->resolve, "%s:%d:%s%s%s", out->host, out->port, v6 ? "[" : "",
                 out->address, v6 ? "]" : "");
    }
    return 0;
}

/* ---- endpoints ---- */

int vx_webhooks_create(vx_app *app, const char *user_id, const char *url, const char *types_csv,
                       vx_webhook_endpoint *out, vx_err *err) {
    memset(out, 0, sizeof *out);
    if (!vx_webhook_types_valid(types_csv))
        return vx_err_set(err, VX_E_INVALID, "invalid_event_types",
                          "event_types must list known event types (job.queued, job.started, ...)");
    vx_webhook_allow *allow = vx_webhook_allow_parse(app->cfg->webhook_allow, err);
    if (!allow) return -1;
    vx_webhook_target target;
    int rc = vx_webhook_target_resolve(url, allow, &target, err);
    vx_webhook_allow_free(allow);
    if (rc != 0) return -1;
    vx_webhook_endpoint *eps = NULL;
    size_t n = 0, users = 0;
    if (app->store->ops->webhook_list(app->store, user_id, &eps, &n, err) != 0) return -1;
    for (size_t i = 0; i < n; i++) users += strcmp(eps[i].kind, "user") == 0;
    free(eps);
    if (users >= VX_WEBHOOKS_PER_USER)
        return vx_err_set(err, VX_E_CONFLICT, "too_many_webhooks", "at most %d webhooks per user",
                          VX_WEBHOOKS_PER_USER);
    vx_id_new(out->id, "whk");
    snprintf(out->user_id, sizeof out->user_id, "%s", user_id);
    snprintf(out->kind, sizeof out->kind, "user");
    snprintf(out->url, sizeof out->url, "%s", url);
    snprintf(out->event_types, sizeof out->event_types, "%s", types_csv);
    vx_webhook_secret_new(out->secret);
    out->created_at = vx_now_ms();
    return app->store->ops->webhook_create(app->store, out, err);
}

int vx_webhooks_rotate(vx_app *app, const char *user_id, const char *id, vx_webhook_endpoint *out, vx_err *err) {
    char secret[VX_WEBHOOK_SECRET_SIZE];
    vx_webhook_secret_new(secret);
    int rc = app->store->ops->webhook_rotate(app->store, user_id, id, secret,
                                             vx_now_ms() + VX_WEBHOOK_ROTATION_GRACE_MS, err);
    sodium_memzero(secret, sizeof secret);
    if (rc != 0) return -1;
    return app->store->ops->webhook_get(app->store, user_id, id, out, err);
}
