/* postgres_events.c - job events, webhook endpoints and webhook deliveries of
 * the PostgreSQL store (migration 0003). events.id is an identity column and
 * appends hold a transaction-scoped advisory lock, so ids become visible in
 * increasing order and "after id N" never skips a late commit. A delivery is
 * inserted in the same transaction as its event. Callable from any thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../util/log.h"
#include "postgres_int.h"

#define EP_COLS "id, user_id, kind, url, event_types, secret, previous_secret, previous_until, created_at"
#define DLV_COLS                                                                                   \
    "d.id, d.endpoint_id, d.user_id, d.event_id, e.type, d.url, d.status, d.attempts, "            \
    "d.max_attempts, d.created_at, d.next_at, d.last_attempt_at, d.delivered_at, "                 \
    "d.last_status_code, d.last_latency_ms, d.last_error, d.response_prefix"
#define DLV_NCOLS 17

/* ---- events -------------------------------------------------------------- */

static int event_from_row(const PGresult *r, int row, vx_event_rec *ev) {
    ev->id = vx_pg_col_i64(r, row, 0);
    vx_pg_col_copy(r, row, 1, ev->type, sizeof ev->type);
    vx_pg_col_copy(r, row, 2, ev->job_id, sizeof ev->job_id);
    vx_pg_col_copy(r, row, 3, ev->user_id, sizeof ev->user_id);
    ev->at = vx_pg_col_i64(r, row, 4);
    ev->data_json = strdup(PQgetisnull(r, row, 5) ? "{}" : PQgetvalue(r, row, 5));
    return ev->data_json ? 0 : -1;
}

struct append_args { vx_event_rec *ev; const vx_delivery *ds; size_t n; int64_t id; };
static int append_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct append_args *a = arg;
    if (vx_pg_exec_cmd(c, PG_EVENT_LOCK, "SELECT pg_advisory_xact_lock(hashtext('voxd.events.' ||"
                       " COALESCE(current_schema(), '')))", NULL, NULL, err) != 0)
        return -1;
    vx_pg_args p = {0};
    vx_pg_text(&p, a->ev->type);
    vx_pg_text(&p, a->ev->job_id);
    vx_pg_text(&p, a->ev->user_id);
    vx_pg_i64(&p, a->ev->at);
    vx_pg_text(&p, a->ev->data_json);
    PGresult *r = vx_pg_exec(c, PG_EVENT_INSERT, "INSERT INTO events (type, job_id, user_id, at, data_json)"
                             " VALUES ($1, $2, $3, $4::bigint, $5) RETURNING id", &p, err);
    if (!r) return -1;
    a->id = vx_pg_col_i64(r, 0, 0);
    PQclear(r);
    if (a->ev->once_per_job) {
        int64_t claimed = 0;
        p.n = 0;
        vx_pg_text(&p, a->ev->job_id);
        vx_pg_i64(&p, a->id);
        if (vx_pg_exec_cmd(c, PG_TERMINAL_CLAIM, "INSERT INTO job_terminal_events (job_id, event_id)"
                           " VALUES ($1, $2::bigint) ON CONFLICT (job_id) DO NOTHING", &p, &claimed, err) != 0)
            return -1;
        if (claimed == 0)
            return vx_err_set(err, VX_E_CONFLICT, "event_recorded", "the job's terminal event is already recorded");
    }
    for (size_t i = 0; i < a->n; i++) {
        const vx_delivery *d = &a->ds[i];
        p.n = 0;
        vx_pg_text(&p, d->id);
        vx_pg_text(&p, d->endpoint_id);
        vx_pg_text(&p, d->user_id);
        vx_pg_i64(&p, a->id);
        vx_pg_text(&p, d->url);
        vx_pg_i64(&p, d->max_attempts > 0 ? d->max_attempts : 1);
        vx_pg_i64(&p, d->created_at);
        vx_pg_i64(&p, d->next_at);
        if (vx_pg_exec_cmd(c, PG_DELIVERY_INSERT, "INSERT INTO webhook_deliveries (id, endpoint_id, user_id,"
                           " event_id, url, status, max_attempts, created_at, next_at) VALUES ($1, $2, $3,"
                           " $4::bigint, $5, 'pending', $6::integer, $7::bigint, $8::bigint)", &p, NULL, err) != 0) {
            if (strcmp(vx_pg_sqlstate(c), "23503") == 0)
                return vx_err_set(err, VX_E_NOT_FOUND, "webhook_not_found", "a webhook endpoint was removed");
            return -1;
        }
    }
    return 0;
}

int vx_pg_event_append(vx_store *st, vx_event_rec *ev, const vx_delivery *deliveries, size_t n, vx_err *err) {
    if (!ev->type[0] || !ev->job_id[0] || !ev->user_id[0] || !ev->data_json)
        return vx_err_set(err, VX_E_INVALID, "invalid_event", "an event needs a type, job, user and data");
    struct append_args a = {ev, deliveries, n, 0};
    if (vx_pg_run(st, append_body, &a, err) != 0) return -1;
    ev->id = a.id;
    return 0;
}

struct without_terminal_args { int64_t from, to; int limit; char (*ids)[VX_ID_SIZE]; size_t n; };
static int without_terminal_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct without_terminal_args *a = arg;
    vx_pg_args p = {0};
    vx_pg_i64(&p, a->from);
    vx_pg_i64(&p, a->to);
    vx_pg_i64(&p, a->limit);
    PGresult *r = vx_pg_exec(c, PG_JOBS_WITHOUT_TERMINAL, "SELECT id FROM jobs WHERE finished_at > 0"
                             " AND finished_at BETWEEN $1::bigint AND $2::bigint"
                             " AND status IN ('succeeded', 'failed', 'canceled') AND NOT EXISTS"
                             " (SELECT 1 FROM job_terminal_events t WHERE t.job_id = jobs.id)"
                             " ORDER BY finished_at LIMIT $3::integer", &p, err);
    if (!r) return -1;
    int rows = PQntuples(r);
    for (a->n = 0; (int)a->n < rows && (int)a->n < a->limit; a->n++)
        snprintf(a->ids[a->n], VX_ID_SIZE, "%s", PQgetvalue(r, (int)a->n, 0));
    PQclear(r);
    return 0;
}

int vx_pg_jobs_without_terminal_event(vx_store *st, int64_t from_ms, int64_t to_ms, int limit,
                                      char (*ids)[VX_ID_SIZE], size_t *n, vx_err *err) {
    struct without_terminal_args a = {from_ms, to_ms, limit, ids, 0};
    int rc = vx_pg_run(st, without_terminal_body, &a, err);
    *n = rc == 0 ? a.n : 0;
    return rc;
}

struct event_list_args { const vx_event_filter *f; int limit; vx_event_rec *list; size_t n; };
static int event_list_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct event_list_args *a = arg;
    vx_pg_args p = {0};
    vx_pg_i64(&p, a->f->after_id);
    vx_pg_text(&p, a->f->user_id);
    vx_pg_text(&p, a->f->job_id);
    vx_pg_i64(&p, a->limit);
    PGresult *r = vx_pg_exec(c, PG_EVENT_LIST, "SELECT id, type, job_id, user_id, at, data_json FROM events"
                             " WHERE id > $1::bigint AND ($2::text IS NULL OR user_id = $2)"
                             " AND ($3::text IS NULL OR job_id = $3) ORDER BY id LIMIT $4::integer", &p, err);
    if (!r) return -1;
    int rows = PQntuples(r);
    for (int i = 0; i < rows; i++) {
        if (event_from_row(r, i, &a->list[i]) != 0) {
            for (int k = 0; k < i; k++) vx_event_rec_clear(&a->list[k]);
            PQclear(r);
            return vx_pg_oom(err);
        }
    }
    a->n = (size_t)rows;
    PQclear(r);
    return 0;
}

/* Caller frees *out with vx_event_list_free. */
int vx_pg_event_list(vx_store *st, const vx_event_filter *f, vx_event_rec **out, size_t *n, vx_err *err) {
    *out = NULL;
    *n = 0;
    struct event_list_args a = {f, f->limit < 1 ? 1 : f->limit > VX_EVENT_LIST_MAX ? VX_EVENT_LIST_MAX : f->limit,
                                NULL, 0};
    if (!(a.list = calloc((size_t)a.limit, sizeof *a.list))) return vx_pg_oom(err);
    int rc = vx_pg_run(st, event_list_body, &a, err);
    if (rc != 0 || a.n == 0) {
        vx_event_list_free(a.list, a.n);
        return rc;
    }
    *out = a.list;
    *n = a.n;
    return 0;
}

struct last_args { const vx_event_filter *f; int64_t id; };
static int last_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct last_args *a = arg;
    vx_pg_args p = {0};
    vx_pg_text(&p, a->f->user_id);
    vx_pg_text(&p, a->f->job_id);
    PGresult *r = vx_pg_exec(c, PG_EVENT_LAST, "SELECT COALESCE(MAX(id), 0) FROM events WHERE"
                             " ($1::text IS NULL OR user_id = $1) AND ($2::text IS NULL OR job_id = $2)", &p, err);
    if (!r) return -1;
    a->id = vx_pg_col_i64(r, 0, 0);
    PQclear(r);
    return 0;
}

int vx_pg_event_last_id(vx_store *st, const vx_event_filter *f, int64_t *id, vx_err *err) {
    struct last_args a = {f, 0};
    *id = 0;
    if (vx_pg_run(st, last_body, &a, err) != 0) return -1;
    *id = a.id;
    return 0;
}

struct purge_args { int64_t before; int64_t purged; };
static int purge_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct purge_args *a = arg;
    vx_pg_args p = {0};
    vx_pg_i64(&p, a->before);
    if (vx_pg_exec_cmd(c, PG_EVENT_PURGE_DELIVERIES, "DELETE FROM webhook_deliveries WHERE status <> 'pending'"
                       " AND event_id IN (SELECT id FROM events WHERE at < $1::bigint)", &p, NULL, err) != 0)
        return -1;
    return vx_pg_exec_cmd(c, PG_EVENT_PURGE, "DELETE FROM events WHERE at < $1::bigint AND NOT EXISTS"
                          " (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = events.id)", &p, &a->purged, err);
}

int vx_pg_event_purge(vx_store *st, int64_t before_ms, int64_t *purged, vx_err *err) {
    struct purge_args a = {before_ms, 0};
    *purged = 0;
    if (vx_pg_run(st, purge_body, &a, err) != 0) return -1;
    *purged = a.purged;
    return 0;
}

/* ---- endpoints ------------------------------------------------------------ */

static void endpoint_from_row(const PGresult *r, int row, vx_webhook_endpoint *ep) {
    memset(ep, 0, sizeof *ep);
    vx_pg_col_copy(r, row, 0, ep->id, sizeof ep->id);
    vx_pg_col_copy(r, row, 1, ep->user_id, sizeof ep->user_id);
    vx_pg_col_copy(r, row, 2, ep->kind, sizeof ep->kind);
    vx_pg_col_copy(r, row, 3, ep->url, sizeof ep->url);
    vx_pg_col_copy(r, row, 4, ep->event_types, sizeof ep->event_types);
    vx_pg_col_copy(r, row, 5, ep->secret, sizeof ep->secret);
    vx_pg_col_copy(r, row, 6, ep->previous_secret, sizeof ep->previous_secret);
    ep->previous_until = vx_pg_col_i64(r, row, 7);
    ep->created_at = vx_pg_col_i64(r, row, 8);
}

static const char SQL_WEBHOOK_INSERT[] =
    "INSERT INTO webhook_endpoints (" EP_COLS ") VALUES ($1, $2, $3, $4, $5, $6, '', 0, $7::bigint)";

static void endpoint_args(vx_pg_args *p, const vx_webhook_endpoint *ep) {
    p->n = 0;
    vx_pg_text(p, ep->id);
    vx_pg_text(p, ep->user_id);
    vx_pg_text(p, ep->kind);
    vx_pg_text(p, ep->url);
    vx_pg_text(p, ep->event_types);
    vx_pg_text(p, ep->secret);
    vx_pg_i64(p, ep->created_at);
}

int vx_pg_webhook_create(vx_store *st, const vx_webhook_endpoint *ep, vx_err *err) {
    if (!ep->id[0] || !ep->user_id[0] || !ep->secret[0] ||
        (strcmp(ep->kind, "user") != 0 && strcmp(ep->kind, "job") != 0))
        return vx_err_set(err, VX_E_INVALID, "invalid_webhook", "an endpoint needs an id, user, kind and secret");
    vx_pg_args p;
    endpoint_args(&p, ep);
    return vx_pg_write_one(st, PG_WEBHOOK_INSERT, SQL_WEBHOOK_INSERT, &p, NULL, err);
}

static int endpoint_get(vx_pg_conn *c, const char *user_id, const char *id, vx_webhook_endpoint *out, vx_err *err) {
    vx_pg_args p = {0};
    vx_pg_text(&p, id);
    vx_pg_text(&p, user_id);
    PGresult *r = vx_pg_exec(c, PG_WEBHOOK_GET, "SELECT " EP_COLS " FROM webhook_endpoints WHERE id = $1"
                             " AND ($2::text IS NULL OR user_id = $2)", &p, err);
    if (!r) return -1;
    int rc = 0;
    if (PQntuples(r) == 0) rc = vx_err_set(err, VX_E_NOT_FOUND, "not_found", "no such webhook");
    else endpoint_from_row(r, 0, out);
    PQclear(r);
    return rc;
}

struct ep_get_args { const char *user_id, *id; vx_webhook_endpoint *out; };
static int ep_get_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct ep_get_args *a = arg;
    return endpoint_get(c, a->user_id, a->id, a->out, err);
}

int vx_pg_webhook_get(vx_store *st, const char *user_id, const char *id, vx_webhook_endpoint *out, vx_err *err) {
    struct ep_get_args a = {user_id, id, out};
    return vx_pg_run(st, ep_get_body, &a, err);
}

struct ep_list_args { const char *user_id; vx_webhook_endpoint *list; size_t n; };
static int ep_list_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct ep_list_args *a = arg;
    vx_pg_args p = {0};
    vx_pg_text(&p, a->user_id);
    PGresult *r = vx_pg_exec(c, PG_WEBHOOK_LIST, "SELECT " EP_COLS " FROM webhook_endpoints WHERE user_id = $1"
                             " ORDER BY id", &p, err);
    if (!r) return -1;
    int rows = PQntuples(r);
    if (rows > 0 && !(a->list = calloc((size_t)rows, sizeof *a->list))) {
        PQclear(r);
        return vx_pg_oom(err);
    }
    for (int i = 0; i < rows; i++) endpoint_from_row(r, i, &a->list[i]);
    a->n = (size_t)rows;
    PQclear(r);
    return 0;
}

/* Caller frees *out with free(). */
int vx_pg_webhook_list(vx_store *st, const char *user_id, vx_webhook_endpoint **out, size_t *n, vx_err *err) {
    struct ep_list_args a = {user_id, NULL, 0};
    *out = NULL;
    *n = 0;
    if (vx_pg_run(st, ep_list_body, &a, err) != 0) {
        free(a.list);
        return -1;
    }
    *out = a.list;
    *n = a.n;
    return 0;
}

struct job_ep_args { const vx_webhook_endpoint *candidate; vx_webhook_endpoint *out; };
static int job_ep_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct job_ep_args *a = arg;
    vx_pg_args p = {0};
    vx_pg_text(&p, a->candidate->user_id);
    PGresult *r = vx_pg_exec(c, PG_WEBHOOK_JOB_GET, "SELECT " EP_COLS " FROM webhook_endpoints WHERE user_id = $1"
                             " AND kind = 'job'", &p, err);
    if (!r) return -1;
    if (PQntuples(r) > 0) {
        endpoint_from_row(r, 0, a->out);
        PQclear(r);
        return 0;
    }
    PQclear(r);
    vx_webhook_endpoint ep = *a->candidate;
    snprintf(ep.kind, sizeof ep.kind, "job");
    ep.url[0] = ep.event_types[0] = '\0';
    endpoint_args(&p, &ep);
    if (vx_pg_exec_cmd(c, PG_WEBHOOK_INSERT, SQL_WEBHOOK_INSERT, &p, NULL, err) != 0) {
        if (strcmp(vx_pg_constraint(c), "webhook_endpoints_job") == 0) vx_pg_retry(c); /* lost a race: read it */
        return -1;
    }
    *a->out = ep;
    return 0;
}

int vx_pg_webhook_job_endpoint(vx_store *st, const vx_webhook_endpoint *candidate, vx_webhook_endpoint *out,
                               vx_err *err) {
    struct job_ep_args a = {candidate, out};
    return vx_pg_run(st, job_ep_body, &a, err);
}

static int ep_delete_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct ep_get_args *a = arg;
    vx_webhook_endpoint ep;
    if (endpoint_get(c, a->user_id, a->id, &ep, err) != 0) return -1;
    vx_pg_args p = {0};
    vx_pg_text(&p, a->id);
    if (vx_pg_exec_cmd(c, PG_WEBHOOK_DELETE_DELIVERIES, "DELETE FROM webhook_deliveries WHERE endpoint_id = $1",
                       &p, NULL, err) != 0)
        return -1;
    return vx_pg_exec_cmd(c, PG_WEBHOOK_DELETE, "DELETE FROM webhook_endpoints WHERE id = $1", &p, NULL, err);
}

int vx_pg_webhook_delete(vx_store *st, const char *user_id, const char *id, vx_err *err) {
    struct ep_get_args a = {user_id, id, NULL};
    return vx_pg_run(st, ep_delete_body, &a, err);
}

int vx_pg_webhook_rotate(vx_store *st, const char *user_id, const char *id, const char *new_secret,
                         int64_t previous_until, vx_err *err) {
    if (!new_secret || !*new_secret) return vx_err_set(err, VX_E_INVALID, "invalid_webhook", "a secret is required");
    vx_pg_args p = {0};
    vx_pg_text(&p, id);
    vx_pg_text(&p, user_id);
    vx_pg_text(&p, new_secret);
    vx_pg_i64(&p, previous_until);
    int64_t changes = 0;
    if (vx_pg_write_one(st, PG_WEBHOOK_ROTATE, "UPDATE webhook_endpoints SET previous_secret = secret, secret = $3,"
                        " previous_until = $4::bigint WHERE id = $1 AND user_id = $2", &p, &changes, err) != 0)
        return -1;
    return changes ? 0 : vx_err_set(err, VX_E_NOT_FOUND, "not_found", "no such webhook");
}

/* ---- deliveries ------------------------------------------------------------- */

static void delivery_from_row(const PGresult *r, int row, vx_delivery *d) {
    vx_pg_col_copy(r, row, 0, d->id, sizeof d->id);
    vx_pg_col_copy(r, row, 1, d->endpoint_id, sizeof d->endpoint_id);
    vx_pg_col_copy(r, row, 2, d->user_id, sizeof d->user_id);
    d->event_id = vx_pg_col_i64(r, row, 3);
    vx_pg_col_copy(r, row, 4, d->event_type, sizeof d->event_type);
    vx_pg_col_copy(r, row, 5, d->url, sizeof d->url);
    const char *status = PQgetvalue(r, row, 6);
    d->status = strcmp(status, "delivered") == 0 ? VX_DELIVERY_DELIVERED
                : strcmp(status, "failed") == 0  ? VX_DELIVERY_FAILED
                                                 : VX_DELIVERY_PENDING;
    d->attempts = (int)vx_pg_col_i64(r, row, 7);
    d->max_attempts = (int)vx_pg_col_i64(r, row, 8);
    d->created_at = vx_pg_col_i64(r, row, 9);
    d->next_at = vx_pg_col_i64(r, row, 10);
    d->last_attempt_at = vx_pg_col_i64(r, row, 11);
    d->delivered_at = vx_pg_col_i64(r, row, 12);
    d->last_status_code = (int)vx_pg_col_i64(r, row, 13);
    d->last_latency_ms = vx_pg_col_i64(r, row, 14);
    vx_pg_col_copy(r, row, 15, d->last_error, sizeof d->last_error);
    vx_pg_col_copy(r, row, 16, d->response_prefix, sizeof d->response_prefix);
}

struct claim_args { const char *owner; int64_t now, lease_ms; int limit; vx_delivery *list; size_t n; };
static int dclaim_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct claim_args *a = arg;
    vx_pg_args p = {0};
    vx_pg_i64(&p, a->now);
    vx_pg_i64(&p, a->limit);
    PGresult *r = vx_pg_exec(c, PG_DELIVERY_DUE,
        "SELECT " DLV_COLS ", e.id, e.type, e.job_id, e.user_id, e.at, e.data_json,"
        " w.secret, w.previous_secret, w.previous_until"
        " FROM webhook_deliveries d JOIN events e ON e.id = d.event_id"
        " JOIN webhook_endpoints w ON w.id = d.endpoint_id"
        " WHERE d.status = 'pending' AND d.next_at <= $1::bigint AND d.lease_until < $1::bigint"
        " ORDER BY d.next_at, d.id LIMIT $2::integer FOR UPDATE OF d SKIP LOCKED", &p, err);
    if (!r) return -1;
    int rows = PQntuples(r), rc = 0, done = 0;
    for (; done < rows; done++) {
        vx_delivery *d = &a->list[done];
        memset(d, 0, sizeof *d);
        delivery_from_row(r, done, d);
        d->event.id = vx_pg_col_i64(r, done, DLV_NCOLS);
        vx_pg_col_copy(r, done, DLV_NCOLS + 1, d->event.type, sizeof d->event.type);
        vx_pg_col_copy(r, done, DLV_NCOLS + 2, d->event.job_id, sizeof d->event.job_id);
        vx_pg_col_copy(r, done, DLV_NCOLS + 3, d->event.user_id, sizeof d->event.user_id);
        d->event.at = vx_pg_col_i64(r, done, DLV_NCOLS + 4);
        vx_pg_col_copy(r, done, DLV_NCOLS + 6, d->secret, sizeof d->secret);
        vx_pg_col_copy(r, done, DLV_NCOLS + 7, d->previous_secret, sizeof d->previous_secret);
        d->previous_until = vx_pg_col_i64(r, done, DLV_NCOLS + 8);
        if (!(d->event.data_json = strdup(PQgetisnull(r, done, DLV_NCOLS + 5) ? "{}"
                                                                              : PQgetvalue(r, done, DLV_NCOLS + 5)))) {
            rc = vx_pg_oom(err);
            break;
        }
        p.n = 0;
        vx_pg_text(&p, d->id);
        vx_pg_text(&p, a->owner);
        vx_pg_i64(&p, a->now + a->lease_ms);
        if ((rc = vx_pg_exec_cmd(c, PG_DELIVERY_LEASE, "UPDATE webhook_deliveries SET lease_owner = $2,"
                                 " lease_until = $3::bigint WHERE id = $1", &p, NULL, err)) != 0) {
            done++;
            break;
        }
    }
    PQclear(r);
    if (rc != 0) {
        for (int k = 0; k < done; k++) vx_delivery_clear(&a->list[k]);
        return -1;
    }
    a->n = (size_t)rows;
    return 0;
}

/* Caller frees *out with vx_delivery_list_free. */
int vx_pg_delivery_claim(vx_store *st, const char *owner, int64_t now, int64_t lease_ms, int limit,
                         vx_delivery **out, size_t *n, vx_err *err) {
    *out = NULL;
    *n = 0;
    struct claim_args a = {owner, now, lease_ms, limit < 1 ? 1 : limit > VX_PG_LIST_MAX ? VX_PG_LIST_MAX : limit,
                           NULL, 0};
    if (!(a.list = calloc((size_t)a.limit, sizeof *a.list))) return vx_pg_oom(err);
    int rc = vx_pg_run(st, dclaim_body, &a, err);
    if (rc != 0 || a.n == 0) {
        vx_delivery_list_free(a.list, a.n);
        return rc;
    }
    *out = a.list;
    *n = a.n;
    return 0;
}

int vx_pg_delivery_record(vx_store *st, const char *id, const char *owner, const vx_delivery_attempt *a,
                          int64_t now, vx_err *err) {
    vx_pg_args p = {0};
    vx_pg_text(&p, id);
    vx_pg_text(&p, owner);
    vx_pg_text(&p, a->delivered ? "delivered" : a->retry_at > 0 ? "pending" : "failed");
    vx_pg_i64(&p, a->delivered ? now : a->retry_at > 0 ? a->retry_at : now);
    vx_pg_i64(&p, now);
    vx_pg_i64(&p, a->status_code);
    vx_pg_i64(&p, a->latency_ms);
    vx_pg_text(&p, a->error ? a->error : "");
    vx_pg_text(&p, a->response_prefix ? a->response_prefix : "");
    vx_pg_i64(&p, a->delivered ? now : 0);
    int64_t changes = 0;
    if (vx_pg_write_one(st, PG_DELIVERY_RECORD,
                        "UPDATE webhook_deliveries SET attempts = attempts + 1, status = $3, next_at = $4::bigint,"
                        " last_attempt_at = $5::bigint, last_status_code = $6::integer,"
                        " last_latency_ms = $7::bigint, last_error = $8, response_prefix = $9,"
                        " delivered_at = CASE WHEN $10::bigint > 0 THEN $10::bigint ELSE delivered_at END,"
                        " lease_owner = '', lease_until = 0"
                        " WHERE id = $1 AND lease_owner = $2 AND status = 'pending'", &p, &changes, err) != 0)
        return -1;
    return changes ? 0 : vx_err_set(err, VX_E_CONFLICT, "lease_lost", "the delivery is no longer leased here");
}

struct dlist_args { const char *endpoint_id, *cursor; int limit; vx_delivery *list; size_t n; };
static int dlist_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct dlist_args *a = arg;
    vx_pg_args p = {0};
    vx_pg_text(&p, a->endpoint_id);
    vx_pg_text(&p, a->cursor && *a->cursor ? a->cursor : VX_PG_CURSOR_TOP);
    vx_pg_i64(&p, a->limit);
    PGresult *r = vx_pg_exec(c, PG_DELIVERY_LIST, "SELECT " DLV_COLS " FROM webhook_deliveries d JOIN events e"
                             " ON e.id = d.event_id WHERE d.endpoint_id = $1 AND d.id < $2"
                             " ORDER BY d.id DESC LIMIT $3::integer", &p, err);
    if (!r) return -1;
    int rows = PQntuples(r);
    for (int i = 0; i < rows; i++) {
        memset(&a->list[i], 0, sizeof a->list[i]);
        delivery_from_row(r, i, &a->list[i]);
    }
    a->n = (size_t)rows;
    PQclear(r);
    return 0;
}

/* Caller frees *out with vx_delivery_list_free. */
int vx_pg_delivery_list(vx_store *st, const char *endpoint_id, const char *cursor, int limit, vx_delivery **out,
                        size_t *n, vx_err *err) {
    *out = NULL;
    *n = 0;
    struct dlist_args a = {endpoint_id, cursor, vx_pg_clamp_limit(limit), NULL, 0};
    if (!(a.list = calloc((size_t)a.limit, sizeof *a.list))) return vx_pg_oom(err);
    int rc = vx_pg_run(st, dlist_body, &a, err);
    if (rc != 0 || a.n == 0) {
        vx_delivery_list_free(a.list, a.n);
        return rc;
    }
    *out = a.list;
    *n = a.n;
    return 0;
}

static int delivery_load(vx_pg_conn *c, const char *endpoint_id, const char *id, vx_delivery *out, vx_err *err) {
    vx_pg_args p = {0};
    vx_pg_text(&p, id);
    vx_pg_text(&p, endpoint_id);
    PGresult *r = vx_pg_exec(c, PG_DELIVERY_GET, "SELECT " DLV_COLS " FROM webhook_deliveries d JOIN events e"
                             " ON e.id = d.event_id WHERE d.id = $1 AND d.endpoint_id = $2 FOR UPDATE OF d", &p, err);
    if (!r) return -1;
    int rc = 0;
    if (PQntuples(r) == 0) {
        rc = vx_err_set(err, VX_E_NOT_FOUND, "not_found", "no such delivery");
    } else {
        memset(out, 0, sizeof *out);
        delivery_from_row(r, 0, out);
    }
    PQclear(r);
    return rc;
}

struct redeliver_args { const char *endpoint_id, *id; int64_t now; vx_delivery *out; };
static int redeliver_body(vx_pg_conn *c, void *arg, vx_err *err) {
    struct redeliver_args *a = arg;
    vx_delivery d;
    if (delivery_load(c, a->endpoint_id, a->id, &d, err) != 0) return -1;
    vx_pg_args p = {0};
    vx_pg_text(&p, a->id);
    vx_pg_i64(&p, a->now);
    if (vx_pg_exec_cmd(c, PG_DELIVERY_REDELIVER, "UPDATE webhook_deliveries SET next_at = $2::bigint,"
                       " max_attempts = CASE WHEN status = 'pending' THEN max_attempts ELSE attempts + 1 END,"
                       " status = 'pending' WHERE id = $1", &p, NULL, err) != 0)
        return -1;
    return a->out ? delivery_load(c, a->endpoint_id, a->id, a->out, err) : 0;
}

int vx_pg_delivery_redeliver(vx_store *st, const char *endpoint_id, const char *id, int64_t now, vx_delivery *out,
                             vx_err *err) {
    struct redeliver_args a = {endpoint_id, id, now, out};
    return vx_pg_run(st, redeliver_body, &a, err);
}

int vx_pg_delivery_release_owner(vx_store *st, const char *owner_prefix, vx_err *err) {
    if (!owner_prefix || !*owner_prefix)
        return vx_err_set(err, VX_E_INVALID, "invalid_owner", "an owner prefix is required");
    vx_pg_args p = {0};
    vx_pg_text(&p, owner_prefix);
    int64_t changes = 0;
    if (vx_pg_write_one(st, PG_DELIVERY_RELEASE_OWNER,
                        "UPDATE webhook_deliveries SET lease_owner = '', lease_until = 0"
                        " WHERE status = 'pending' AND lease_owner <> ''"
                        " AND left(lease_owner, length($1::text)) = $1::text", &p, &changes, err) != 0)
        return -1;
    if (changes) vx_info("store: %lld webhook deliveries of an earlier run are due again", (long long)changes);
    return 0;
}
