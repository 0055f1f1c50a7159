/* webhooks.h - the rules of webhooks: Standard Webhooks signing, endpoint
 * secrets, the retry schedule, event-type filters, which destinations a
 * webhook may reach (only http/https; never private, loopback, link-local or
 * unique-local addresses after DNS resolution unless the operator's
 * allow-list says so), and registering/rotating endpoints. The sender
 * (worker/webhook_sender.c) and the API (api/webhooks.c) use it.
 * Every function is thread-safe; vx_crypto_init() must have run. */
#ifndef VX_WEBHOOKS_H
#define VX_WEBHOOKS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "../util/err.h"
#include "app.h"

#define VX_WEBHOOK_SECRET_SIZE 64      /* "whsec_" + base64 of 24 bytes + NUL */
#define VX_WEBHOOK_SIGNATURE_SIZE 64   /* "v1," + base64 of 32 bytes + NUL */

/* A new random endpoint secret: "whsec_" + base64 (standard alphabet) of 24 bytes. */
void vx_webhook_secret_new(char out[VX_WEBHOOK_SECRET_SIZE]);

/* The webhook-signature value "v1," + base64(HMAC-SHA256(key, msg_id + "." +
 * timestamp + "." + body)), where key is the base64-decoded part of the
 * secret after "whsec_". -1 when the secret is malformed. */
int vx_webhook_sign(const char *secret, const char *msg_id, int64_t timestamp_s, const char *body, size_t len,
                    char out[VX_WEBHOOK_SIGNATURE_SIZE]);

/* Delay before the next attempt after `attempts_done` failed ones (>= 1):
 * base * 4^(attempts_done - 1), capped at a day, times a jitter factor in
 * [0.8, 1.2) taken from `random`. Pure: the same inputs give the same delay.
 * With base 15 s, 8 attempts span about 23 hours. */
int64_t vx_webhook_backoff_ms(int attempts_done, double base_s, uint32_t random);

/* Event-type filters are comma-separated type names ("" = every type). */
bool vx_webhook_types_valid(const char *csv);
bool vx_webhook_types_match(const char *csv, const char *type);

/* ---- destinations ---- */

typedef struct vx_webhook_allow vx_webhook_allow;

/* Parses the --webhook-allow list: comma-separated CIDRs or addresses
 * ("10.0.0.0/8", "127.0.0.1", "::1", "fd00::/8") and host:port entries
 * ("hooks.internal:8443", "[::1]:9000"). "" gives an empty list. NULL with
 * err INVALID "invalid_webhook_allow" naming the bad entry. Free with
 * vx_webhook_allow_free. */
vx_webhook_allow *vx_webhook_allow_parse(const char *list, vx_err *err);
void vx_webhook_allow_free(vx_webhook_allow *allow);

/* True when a webhook may connect to this address by default: false for
 * unspecified, loopback, private (RFC 1918, CGNAT), link-local, unique-local,
 * multicast, reserved and documentation ranges, and for IPv6 forms that embed
 * such an IPv4 address (mapped, compatible, NAT64, 6to4). */
bool vx_webhook_addr_public(const struct sockaddr *sa);
/* True when `allow` lets a webhook reach sa (a CIDR entry covers it). */
bool vx_webhook_addr_allowed(const vx_webhook_allow *allow, const struct sockaddr *sa);

/* Where one delivery goes, vetted. */
typedef struct vx_webhook_target {
    char host[256];             /* as in the URL, without IPv6 brackets */
    int port;
    bool host_is_ip;            /* a literal: nothing to pin */
    bool admitted_by_name;      /* a host:port allow entry admits any address */
    char address[64];           /* the vetted address to connect to */
    char resolve[384];          /* CURLOPT_RESOLVE entry "host:port:address" ("" for literals) */
} vx_webhook_target;

/* Checks the URL's shape (http/https, a host, no credentials, at most 2000
 * bytes) without DNS. INVALID "invalid_webhook_url" otherwise. */
int vx_webhook_url_check(const char *url, vx_err *err);
/* vx_webhook_url_check, then resolves the host once and vets every address:
 * UNPROCESSABLE "webhook_url_refused" if any is not public and not allowed
 * (a host:port entry of the allow-list admits its host whatever it resolves
 * to), "webhook_url_unresolvable" when DNS has no answer. */
int vx_webhook_target_resolve(const char *url, const vx_webhook_allow *allow, vx_webhook_target *out,
                              vx_err *err);

/* ---- endpoints ---- */

#define VX_WEBHOOKS_PER_USER 20
/* A rotated-out secret keeps signing (next to the new one) this long. */
#define VX_WEBHOOK_ROTATION_GRACE_MS (INT64_C(24) * 3600 * 1000)

/* Registers an endpoint of user_id after vetting url against the
 * --webhook-allow list (DNS included) and the type filter (csv, "" = all).
 * *out gets the row with its new secret (shown to the client once). Errors:
 * 400 invalid_webhook_url / invalid_event_types, 422 webhook_url_refused /
 * webhook_url_unresolvable, 409 too_many_webhooks. */
int vx_webhooks_create(vx_app *app, const char *user_id, const char *url, const char *types_csv,
                       vx_webhook_endpoint *out, vx_err *err);
/* Gives the endpoint a new secret; the old one signs too for
 * VX_WEBHOOK_ROTATION_GRACE_MS. *out gets the row after. 404 not_found. */
int vx_webhooks_rotate(vx_app *app, const char *user_id, const char *id, vx_webhook_endpoint *out, vx_err *err);

#endif
