/* store.h - state and job queue behind one interface (DESIGN.md "store").
 * A backend is a const table of hooks chosen from the URL scheme at start-up
 * (sqlite:///path now, postgres:// with the cluster issue). Nothing outside
 * src/store/ knows which backend is in use or sees any SQL.
 *
 * Every hook is callable from any thread concurrently (backends keep a small
 * connection pool). Every multi-row change is one transaction: a hook either
 * applies all of its effects or none. Hooks return 0 on success or -1 with
 * err set: VX_E_NOT_FOUND, VX_E_CONFLICT (unique key / wrong state),
 * VX_E_PAYMENT (balance would go negative), VX_E_UNAVAILABLE (database
 * down/busy beyond the timeout), VX_E_INTERNAL. Time arguments are Unix ms.
 * Money is int64 micro-credits. */
#ifndef VX_STORE_H
#define VX_STORE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "../util/err.h"
#include "../util/ids.h"

typedef struct vx_store vx_store;

/* ---- records --------------------------------------------------------- */

typedef struct vx_user {
    char id[VX_ID_SIZE];
    char username[64];
    char email[256];            /* "" when none */
    char role[16];              /* "user" | "admin" */
    char password_hash[128];
    int64_t created_at;
    bool disabled;
} vx_user;

typedef struct vx_api_key {
    char id[VX_ID_SIZE];
    char user_id[VX_ID_SIZE];
    char name[128];
    char prefix[16];            /* first chars of the key, shown in lists */
    char key_hash[65];          /* sha256 hex of the whole key */
    int64_t created_at;
    int64_t last_used_at;       /* 0 = never */
    int64_t revoked_at;         /* 0 = active */
} vx_api_key;

typedef struct vx_balance {
    int64_t available;          /* spendable; the database keeps it >= 0 */
    int64_t held;               /* sum of open holds; >= 0 */
} vx_balance;

/* Ledger entry kinds. Each entry has `amount`, its effect on `available`,
 * and `held_delta`, its effect on `held`; so at all times
 * available = SUM(amount) and held = SUM(held_delta) over the user's entries.
 *   grant/top_up/adjust/refund: amount = +-x, held_delta = 0
 *   hold:    amount = -h, held_delta = +h
 *   capture: amount = h - charged (the unused part comes back), held_delta = -h
 *   release: amount = +h, held_delta = -h
 * `ref` is unique per user: a retry with the same ref is a no-op that
 * reports the first entry (capture and release of one job share the ref
 * "settle:<job_id>" so a hold is settled exactly once). */
typedef enum vx_ledger_kind {
    VX_LEDGER_GRANT, VX_LEDGER_TOP_UP, VX_LEDGER_ADJUST, VX_LEDGER_REFUND,
    VX_LEDGER_HOLD, VX_LEDGER_CAPTURE, VX_LEDGER_RELEASE,
} vx_ledger_kind;

const char *vx_ledger_kind_name(vx_ledger_kind kind);  /* "grant", "top_up", ... */

typedef struct vx_ledger_entry {
    char id[VX_ID_SIZE];
    char user_id[VX_ID_SIZE];
    vx_ledger_kind kind;
    int64_t amount;
    int64_t held_delta;
    int64_t charged;            /* capture only: what the job cost */
    char job_id[VX_ID_SIZE];    /* "" when not about a job */
    char ref[160];
    char note[256];             /* reason given by an admin, etc. */
    char actor_id[VX_ID_SIZE];  /* who caused it (admin id for adjust), "" = system */
    int64_t created_at;
    int64_t balance_after;      /* available after this entry */
} vx_ledger_entry;

/* What an audit compares: the balance row and the sums over the ledger. */
typedef struct vx_ledger_sums {
    int64_t available, held;     /* the balance row */
    int64_t amount_sum, held_sum;/* SUM(amount), SUM(held_delta) over the ledger */
} vx_ledger_sums;

typedef enum vx_job_status {
    VX_JOB_QUEUED, VX_JOB_RUNNING, VX_JOB_SUCCEEDED, VX_JOB_FAILED, VX_JOB_CANCELED,
} vx_job_status;
#define VX_JOB_STATUS_COUNT 5
const char *vx_job_status_name(vx_job_status s);          /* "queued", ... */
int vx_job_status_parse(const char *name, vx_job_status *out); /* -1 if unknown */
static inline bool vx_job_status_terminal(vx_job_status s) { return s >= VX_JOB_SUCCEEDED; }

/* A job row. String members that may be long are malloc'd and owned by the
 * record: release them with vx_job_clear(). */
typedef struct vx_job {
    char id[VX_ID_SIZE];
    char user_id[VX_ID_SIZE];
    char model[64];
    vx_job_status status;
    double progress;            /* 0..1 */
    int attempts;               /* claims so far */
    int max_attempts;
    int64_t created_at, started_at, finished_at, updated_at; /* 0 = not yet */
    int64_t run_after;          /* not claimable before this time */
    int64_t price_per_job;      /* price accepted at submit */
    int64_t price_per_second;
    int64_t held;               /* hold placed at submit */
    int64_t charged;            /* captured on success; 0 otherwise */
    double duration_s;          /* probed input duration */
    char *params_json;          /* validated params with defaults filled, JSON object text */
    char *result_json;          /* JSON object text on success, else NULL */
    char *error_json;           /* JSON array of {attempt, code, message, at}, or NULL */
    char input_key[512];        /* blob key */
    char input_name[256];       /* sanitized client file name */
    char input_content_type[96];
    int64_t input_bytes;
    char input_format[32];      /* probed container, e.g. "wav" */
    char output_key[512];       /* "" until succeeded with a file */
    char output_content_type[96];
    int64_t output_bytes;
    char *webhook_url;          /* NULL when none */
    char idempotency_key[256];  /* "" when none */
    char request_hash[65];      /* sha256 hex of the request, for idempotency */
    char lease_owner[96];       /* worker id while running */
    int64_t lease_until;
    bool cancel_requested;
} vx_job;

void vx_job_clear(vx_job *job);   /* frees owned strings, leaves the rest */

/* input_format of a live stream's job (GET /v1/stream): it has no input
 * file; the reaper settles it (capture of `charged`) instead of retrying. */
#define VX_JOB_STREAM_FORMAT "stream"

/* Filter and page for listings. Results are newest first; `cursor` is the
 * id of the last item of the previous page ("" = from the newest). */
typedef struct vx_job_filter {
    const char *user_id;        /* NULL = all users (admin) */
    const char *model;          /* NULL = any */
    int status;                 /* -1 = any, else vx_job_status */
    const char *cursor;
    int limit;                  /* 1..200 */
} vx_job_filter;

/* ---- events and webhooks (issue 5) ------------------------------------ */

/* One stored job event. `id` is the store's own sequence: strictly
 * increasing within a store, never reused, so "after id N" is a gap-free
 * resume cursor. data_json is owned (vx_event_rec_clear). */
typedef struct vx_event_rec {
    int64_t id;
    char type[32];              /* "job.queued", "job.progress", ... */
    char job_id[VX_ID_SIZE];
    char user_id[VX_ID_SIZE];
    int64_t at;
    char *data_json;            /* JSON object text */
    bool once_per_job;          /* a terminal event: event_append refuses a second one for the job */
} vx_event_rec;

/* Backend-neutral and tiny, hence inline here. */
static inline void vx_event_rec_clear(vx_event_rec *ev) {
    if (ev) free(ev->data_json), ev->data_json = NULL;
}
static inline void vx_event_list_free(vx_event_rec *evs, size_t n) {
    for (size_t i = 0; evs && i < n; i++) vx_event_rec_clear(&evs[i]);
    free(evs);
}

/* Which events: of one user and/or one job (NULL = any), with id > after_id,
 * oldest first, at most limit (1..VX_EVENT_LIST_MAX). */
#define VX_EVENT_LIST_MAX 500
typedef struct vx_event_filter {
    const char *user_id;
    const char *job_id;
    int64_t after_id;
    int limit;
} vx_event_filter;

/* A webhook endpoint. kind "user": registered by the user (url, event
 * filter); kind "job": one per user, url "", its secret signs deliveries to
 * the webhook_url given with that user's jobs. */
typedef struct vx_webhook_endpoint {
    char id[VX_ID_SIZE];
    char user_id[VX_ID_SIZE];
    char kind[8];
    char url[2048];
    char event_types[512];      /* comma-separated types; "" = every type */
    char secret[128];           /* "whsec_" + base64 */
    char previous_secret[128];  /* after a rotation, still signed with until previous_until */
    int64_t previous_until;
    int64_t created_at;
} vx_webhook_endpoint;

typedef enum vx_delivery_status {
    VX_DELIVERY_PENDING, VX_DELIVERY_DELIVERED, VX_DELIVERY_FAILED,
} vx_delivery_status;
static inline const char *vx_delivery_status_name(vx_delivery_status s) {
    return s == VX_DELIVERY_PENDING ? "pending" : s == VX_DELIVERY_DELIVERED ? "delivered" : "failed";
}

/* One event for one endpoint (its id is the webhook-id header, stable over
 * retries). delivery_claim also fills `event` (owned: vx_delivery_clear) and
 * the endpoint's secrets; listings leave them empty. */
typedef struct vx_delivery {
    char id[VX_ID_SIZE];
    char endpoint_id[VX_ID_SIZE];
    char user_id[VX_ID_SIZE];
    int64_t event_id;
    char event_type[32];
    char url[2048];
    vx_delivery_status status;
    int attempts, max_attempts;
    int64_t created_at, next_at, last_attempt_at, delivered_at;
    int last_status_code;       /* 0: no HTTP answer */
    int64_t last_latency_ms;
    char last_error[256];
    char response_prefix[256];
    vx_event_rec event;
    char secret[128], previous_secret[128];
    int64_t previous_until;
} vx_delivery;

static inline void vx_delivery_clear(vx_delivery *d) {
    if (d) vx_event_rec_clear(&d->event);
}
static inline void vx_delivery_list_free(vx_delivery *ds, size_t n) {
    for (size_t i = 0; ds && i < n; i++) vx_delivery_clear(&ds[i]);
    free(ds);
}

/* The outcome of one delivery attempt. */
typedef struct vx_delivery_attempt {
    int status_code;            /* 0: no HTTP answer (error says why) */
    int64_t latency_ms;
    const char *error;          /* "" / NULL when answered */
    const char *response_prefix;
    bool delivered;             /* 2xx */
    int64_t retry_at;           /* not delivered: next try, 0 = give up (failed) */
} vx_delivery_attempt;

/* ---- direct uploads (migration 0004) ---------------------------------- */

typedef enum vx_upload_state {
    VX_UPLOAD_PENDING, VX_UPLOAD_USED, VX_UPLOAD_EXPIRED,
} vx_upload_state;
static inline const char *vx_upload_state_name(vx_upload_state s) {
    return s == VX_UPLOAD_PENDING ? "pending" : s == VX_UPLOAD_USED ? "used" : "expired";
}

/* One direct-upload URL handed out: the object `key` may be written until
 * expires_at; a job takes it at most once (used_by_job). */
typedef struct vx_upload {
    char id[VX_ID_SIZE];
    char user_id[VX_ID_SIZE];
    char key[512];
    char filename[256];         /* "" when not given */
    char content_type[96];      /* "" when not given */
    int64_t declared_bytes;     /* 0 when not given */
    vx_upload_state state;
    int64_t created_at, expires_at;
    char used_by_job[VX_ID_SIZE]; /* "" while unused */
} vx_upload;

/* ---- the backend table ----------------------------------------------- */

typedef struct vx_store_ops {
    const char *scheme;         /* "sqlite", "postgres" */

    /* Opens from URL, applies pending migrations (idempotent, in order, each
     * in its own transaction). NULL on failure with err set. */
    vx_store *(*open)(const char *url, vx_err *err);
    void (*close)(vx_store *st);
    /* Cheap liveness check for /readyz. */
    int (*ping)(vx_store *st, vx_err *err);
    /* Schema version applied (highest migration number). */
    int (*schema_version)(vx_store *st);

    /* settings: small key/value strings (e.g. the JWT secret). get: NOT_FOUND if absent.
     * put_if_absent: stores unless present; either way `value` ends up holding
     * the stored value (cap bytes), so concurrent starters agree. */
    int (*setting_get)(vx_store *st, const char *key, char *value, size_t cap, vx_err *err);
    int (*setting_put_if_absent)(vx_store *st, const char *key, char *value, size_t cap, vx_err *err);

    /* users. create: inserts user, its balance row and (grant > 0) a grant
     * entry with ref "signup", atomically; CONFLICT "username_taken" on a
     * duplicate username (case-insensitive). */
    int (*user_create)(vx_store *st, const vx_user *u, int64_t signup_grant, vx_err *err);
    int (*user_get)(vx_store *st, const char *id, vx_user *out, vx_err *err);
    int (*user_get_by_name)(vx_store *st, const char *username, vx_user *out, vx_err *err);
    /* Newest first after cursor (a user id). Caller frees *out with free(). */
    int (*user_list)(vx_store *st, const char *cursor, int limit, vx_user **out, size_t *n, vx_err *err);
    int (*user_count_role)(vx_store *st, const char *role, int64_t *count, vx_err *err);
    int (*user_set_role)(vx_store *st, const char *id, const char *role, vx_err *err);

    /* api keys */
    int (*api_key_create)(vx_store *st, const vx_api_key *k, vx_err *err);
    /* Finds an active (not revoked) key by hash and its user. NOT_FOUND otherwise. */
    int (*api_key_find)(vx_store *st, const char *key_hash, vx_api_key *key, vx_user *user, vx_err *err);
    int (*api_key_list)(vx_store *st, const char *user_id, vx_api_key **out, size_t *n, vx_err *err);
    /* Sets revoked_at; NOT_FOUND if no such key of this user (already revoked is ok). */
    int (*api_key_revoke)(vx_store *st, const char *user_id, const char *key_id, int64_t now, vx_err *err);
    int (*api_key_touch)(vx_store *st, const char *key_id, int64_t now, vx_err *err);

    /* credits */
    int (*balance_get)(vx_store *st, const char *user_id, vx_balance *out, vx_err *err);
    /* Appends one grant/top_up/adjust/refund entry (e->kind, amount, ref,
     * note, actor_id, user_id; id and created_at filled by caller) and updates
     * the balance in one transaction. PAYMENT "insufficient_credits" if
     * available would go below 0. Same (user, ref) again with the same kind
     * and amount: no change, returns 0 and sets *replayed = true; with a
     * different kind or amount: CONFLICT "idempotency_key_reused".
     * out_balance gets the balance after. */
    int (*ledger_apply)(vx_store *st, const vx_ledger_entry *e, bool *replayed,
                        vx_balance *out_balance, vx_err *err);
    /* Newest first after cursor (an entry id). Caller frees *out. */
    int (*ledger_list)(vx_store *st, const char *user_id, const char *cursor, int limit,
                       vx_ledger_entry **out, size_t *n, vx_err *err);
    /* Checks available == SUM(amount) and held == SUM(held_delta) for one user
     * (tests and admin audit). *ok=false on mismatch; *sums (may be NULL)
     * gets the four figures compared. */
    int (*ledger_audit)(vx_store *st, const char *user_id, vx_ledger_sums *sums, bool *ok, vx_err *err);

    /* model prices set by admins (override the catalog's defaults) */
    int (*price_get)(vx_store *st, const char *model, int64_t *per_job, int64_t *per_second, vx_err *err); /* NOT_FOUND = no override */
    int (*price_set)(vx_store *st, const char *model, int64_t per_job, int64_t per_second,
                     const char *actor_id, int64_t now, vx_err *err);

    /* jobs. submit: in one transaction inserts the job (status queued, all
     * fields from *job incl. held, prices, idempotency key and request hash)
     * and the hold entry (ref "hold:<job_id>", amount -held). PAYMENT
     * "insufficient_credits" if the hold does not fit. If job->idempotency_key
     * is set and the user already has a job with that key: CONFLICT
     * "idempotency_key_reused" and *existing gets that job (caller compares
     * request hashes; caller clears *existing). */
    int (*job_submit)(vx_store *st, const vx_job *job, vx_job *existing, vx_err *err);
    int (*job_get)(vx_store *st, const char *id, vx_job *out, vx_err *err);
    /* Caller frees with vx_job_list_free. */
    int (*job_list)(vx_store *st, const vx_job_filter *f, vx_job **out, size_t *n, vx_err *err);
    /* Cancel: queued -> canceled + release of the hold (ref "settle:<id>"),
     * atomically; running -> cancel_requested = 1 (the worker finishes it);
     * terminal -> CONFLICT "job_finished". *out gets the job after. */
    int (*job_cancel)(vx_store *st, const char *id, int64_t now, vx_job *out, vx_err *err);

    /* queue. claim: oldest queued job with run_after <= now becomes running
     * with lease_owner = worker, lease_until = now + lease_ms, attempts + 1,
     * started_at set if 0. NOT_FOUND "queue_empty" when none. */
    int (*job_claim)(vx_store *st, const char *worker, int64_t now, int64_t lease_ms, vx_job *out, vx_err *err);
    /* While running and still owned by (worker, attempt): extends the lease,
     * stores progress, reports cancel_requested. CONFLICT "lease_lost" if the
     * job is no longer ours (expired and re-claimed, or finished). */
    int (*job_heartbeat)(vx_store *st, const char *id, const char *worker, int attempt, int64_t now,
                         int64_t lease_ms, double progress, bool *cancel_requested, vx_err *err);
    /* Success, atomically: status succeeded, progress 1, result/output fields
     * from *done, finished_at, and a capture entry (ref "settle:<id>",
     * charged = done->charged <= held). CONFLICT "lease_lost" if not ours. */
    int (*job_succeed)(vx_store *st, const vx_job *done, const char *worker, int64_t now, vx_err *err);
    /* Failed attempt: appends {attempt, code, message, at} to error_json. If
     * retry_at > 0: back to queued with run_after = retry_at. Else final:
     * status failed (or canceled when `canceled`), finished_at, and a release
     * entry (ref "settle:<id>"). CONFLICT "lease_lost" if not ours. */
    int (*job_fail)(vx_store *st, const char *id, const char *worker, int attempt, const char *code,
                    const char *message, int64_t retry_at, bool canceled, int64_t now, vx_err *err);
    /* Gives a running job back without counting the attempt (graceful
     * shutdown): queued, attempts - 1, lease cleared. */
    int (*job_release)(vx_store *st, const char *id, const char *worker, int attempt, int64_t now, vx_err *err);
    /* Reaper: every running job whose lease ended before now (or, when
     * owner_prefix is not NULL, whose lease_owner starts with it: leases of
     * a previous run of this node) gets an error entry "lease_expired"; it
     * goes back to the queue (run_after = now + backoff_ms * 2^(attempts-1))
     * if attempts < max_attempts, else fails for good with its hold released.
     * *requeued and *failed count what happened. */
    int (*job_reap)(vx_store *st, int64_t now, const char *owner_prefix, int64_t backoff_ms,
                    int *requeued, int *failed, vx_err *err);
    /* counts[status] for every status, for /metrics. */
    int (*job_counts)(vx_store *st, int64_t counts[VX_JOB_STATUS_COUNT], vx_err *err);
    /* ---- events and webhooks. Appended; see the records above. ---- */
    /* Inserts ev (type, job_id, user_id, at, data_json) and sets ev->id; in
     * the same transaction one pending delivery per `deliveries` entry (id,
     * endpoint_id, user_id, url, max_attempts, created_at, next_at; event_id
     * is taken from the new event). NOT_FOUND if an endpoint vanished;
     * CONFLICT "event_recorded" (nothing stored) for a once_per_job event
     * when the job already has one. */
    int (*event_append)(vx_store *st, vx_event_rec *ev, const vx_delivery *deliveries, size_t n,
                        vx_err *err);
    /* Oldest first. Caller frees *out with vx_event_list_free. */
    int (*event_list)(vx_store *st, const vx_event_filter *f, vx_event_rec **out, size_t *n, vx_err *err);
    /* The newest event id matching (after_id and limit ignored); 0 if none. */
    int (*event_last_id)(vx_store *st, const vx_event_filter *f, int64_t *id, vx_err *err);
    /* Deletes finished deliveries of events older than before_ms, then those
     * events unless a pending delivery still needs them. *purged = events gone. */
    int (*event_purge)(vx_store *st, int64_t before_ms, int64_t *purged, vx_err *err);

    /* endpoints. create: CONFLICT "already_exists" for a second "job" row. */
    int (*webhook_create)(vx_store *st, const vx_webhook_endpoint *ep, vx_err *err);
    /* NOT_FOUND unless the endpoint exists and belongs to user_id (NULL = any). */
    int (*webhook_get)(vx_store *st, const char *user_id, const char *id, vx_webhook_endpoint *out, vx_err *err);
    /* Every endpoint of the user (both kinds), oldest first. Caller frees *out. */
    int (*webhook_list)(vx_store *st, const char *user_id, vx_webhook_endpoint **out, size_t *n, vx_err *err);
    /* The user's "job" endpoint; inserts *candidate first when there is none.
     * *out gets the stored row either way. */
    int (*webhook_job_endpoint)(vx_store *st, const vx_webhook_endpoint *candidate,
                                vx_webhook_endpoint *out, vx_err *err);
    /* Removes the endpoint and all its deliveries. NOT_FOUND if not the user's. */
    int (*webhook_delete)(vx_store *st, const char *user_id, const char *id, vx_err *err);
    /* secret := new_secret; previous_secret := the old one until previous_until. */
    int (*webhook_rotate)(vx_store *st, const char *user_id, const char *id, const char *new_secret,
                          int64_t previous_until, vx_err *err);

    /* deliveries. claim: up to limit pending deliveries with next_at <= now
     * and no live lease, oldest due first; each gets lease (owner, now +
     * lease_ms). Caller frees *out with vx_delivery_list_free. */
    int (*delivery_claim)(vx_store *st, const char *owner, int64_t now, int64_t lease_ms, int limit,
                          vx_delivery **out, size_t *n, vx_err *err);
    /* Records one attempt of a delivery leased by owner: attempts + 1, last_*
     * fields; delivered -> status delivered; else pending with next_at =
     * retry_at, or failed when retry_at is 0. Lease cleared. CONFLICT
     * "lease_lost" if owner no longer holds it. */
    int (*delivery_record)(vx_store *st, const char *id, const char *owner, const vx_delivery_attempt *a,
                           int64_t now, vx_err *err);
    /* Newest first after cursor (a delivery id). Caller frees *out. */
    int (*delivery_list)(vx_store *st, const char *endpoint_id, const char *cursor, int limit,
                         vx_delivery **out, size_t *n, vx_err *err);
    /* Due now: a failed or delivered one becomes pending for one more attempt
     * (max_attempts = attempts + 1); a pending one is only moved to now.
     * NOT_FOUND unless it belongs to endpoint_id. *out gets it after. */
    int (*delivery_redeliver)(vx_store *st, const char *endpoint_id, const char *id, int64_t now,
                              vx_delivery *out, vx_err *err);
    /* Clears leases whose owner starts with owner_prefix (a previous run). */
    int (*delivery_release_owner)(vx_store *st, const char *owner_prefix, vx_err *err);
    /* ---- direct uploads and leases (migration 0004). Appended. ---- */
    /* Inserts u (state pending). CONFLICT "already_exists" on a duplicate id
     * or key, NOT_FOUND "user_not_found" for an unknown user. */
    int (*upload_create)(vx_store *st, const vx_upload *u, vx_err *err);
    /* NOT_FOUND "upload_not_found" if absent. */
    int (*upload_get)(vx_store *st, const char *id, vx_upload *out, vx_err *err);
    /* job_submit that also takes upload `upload_id`, in the same
     * transaction: it must belong to job->user_id, be pending and unexpired
     * at `now`; it becomes used with used_by_job = job->id. The idempotency
     * check comes first (same CONFLICT "idempotency_key_reused" as
     * job_submit); an upload that cannot be taken: CONFLICT "upload_used"
     * and nothing changes. */
    int (*job_submit_upload)(vx_store *st, const vx_job *job, const char *upload_id, int64_t now,
                             vx_job *existing, vx_err *err);
    /* Marks up to `limit` pending uploads with expires_at <= now expired and
     * returns them, oldest first (caller frees *out with free()). */
    int (*upload_expire)(vx_store *st, int64_t now, int limit, vx_upload **out, size_t *n, vx_err *err);
    /* A named lease for cluster-wide chores: *acquired = true when `owner`
     * now holds `name` until now + ttl_ms (free, expired, or already its
     * own); false while another owner's lease is live. */
    int (*lease_acquire)(vx_store *st, const char *name, const char *owner, int64_t now, int64_t ttl_ms,
                         bool *acquired, vx_err *err);

    /* Optional (NULL: the backend has no cross-process signal, callers poll).
     * Calls fn(user) on a thread of the store's own whenever a job may have
     * become claimable in any process on this store (submitted, requeued,
     * given back), and once after each reconnect of that thread, since
     * signals may have been missed. One listener per store; fn NULL stops it
     * and returns once no call runs any more. Failing to reach the server is
     * not an error (the thread keeps trying); -1 only when out of resources. */
    int (*job_listen)(vx_store *st, void (*fn)(void *user), void *user, vx_err *err);
    /* Optional, with job_listen (a store shared by processes): a job submitted
     * with run_after in the future becomes claimable at `now` (and listeners
     * are woken), so its submitter can store "job.queued" before any worker
     * in another process may start it. No effect on a job already claimable
     * or no longer queued. */
    int (*job_ready)(vx_store *st, const char *id, int64_t now, vx_err *err);
    /* Up to `limit` ids of jobs that finished (finished_at) within
     * [from_ms, to_ms] and have no terminal event recorded (a process died
     * between settling a job and storing its event), oldest first. */
    int (*jobs_without_terminal_event)(vx_store *st, int64_t from_ms, int64_t to_ms, int limit,
                                       char (*ids)[VX_ID_SIZE], size_t *n, vx_err *err);

    /* ---- live streams (issue 4). Appended. A stream is a job with
     * input_format VX_JOB_STREAM_FORMAT, running from its first moment and
     * settled with job_succeed (attempt 1); if its lease runs out, job_reap
     * fails it and captures the `charged` last recorded. ---- */
    /* Inserts *job as running (attempts 1, started_at = created_at,
     * job->lease_owner until job->lease_until) with its hold entry (ref
     * "hold:<id>", amount -job->held), atomically. PAYMENT
     * "insufficient_credits" if the hold does not fit: nothing is written. */
    int (*stream_open)(vx_store *st, const vx_job *job, vx_err *err);
    /* While running and leased to owner: records the seconds streamed
     * (duration_s) and what they cost (charged), extends the lease to now +
     * lease_ms and, when extra_hold > 0, adds a hold entry (ref
     * "hold:<id>:<held after>") that raises held. Atomic. PAYMENT
     * "insufficient_credits" when the extra hold does not fit; INVALID
     * "charge_exceeds_hold" when charged > held after; CONFLICT "lease_lost"
     * when not ours; nothing changes on any error. */
    int (*stream_record)(vx_store *st, const char *id, const char *owner, double seconds, int64_t charged,
                         int64_t extra_hold, int64_t now, int64_t lease_ms, vx_err *err);
} vx_store_ops;

struct vx_store {
    const vx_store_ops *ops;
};

/* Chooses the backend by URL scheme and opens it; unknown scheme: INVALID
 * "unknown_store_scheme". */
vx_store *vx_store_open(const char *url, vx_err *err);
void vx_store_close(vx_store *st);
void vx_job_list_free(vx_job *jobs, size_t n);

#endif
