/* sqlite_events.c - job events, webhook endpoints and webhook deliveries of
 * the SQLite store (migration 0003). events.id is an AUTOINCREMENT sequence,
 * so ids only grow and resume cursors never see a reused id. A delivery is
 * inserted in the same transaction as its event, so none is lost to a crash.
 * Callable from any thread; writes are BEGIN IMMEDIATE like every hook. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../util/log.h"
#include "sqlite_int.h"

#define EP_COLS "id, user_id, kind, url, event_types, secret, previous_secret, previous_until, created_at"
#define DLV_COLS                                                                                   \
    "d.id, d.endpoint_id, d.user_id, d.event_id, e.type, d.url, d.status, d.attempts, "            \
    "d.max_attempts, d.created_at, d.next_at, d.last_attempt_at, d.delivered_at, "                 \
    "d.last_status_code, d.last_latency_ms, d.last_error, d.response_prefix"
#define DLV_NCOLS 17

static int oom(vx_err *err) { return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory"); }

static int step_done(vx_sqlite_conn *c, sqlite3_stmt *s, vx_err *err) {
    int r = sqlite3_step(s);
    return r == SQLITE_DONE ? 0 : vx_sqlite_fail(c, r, err);
}

/* A growable array of fixed-size records, for listings. */
typedef struct grow {
    void *items;
    size_t n, cap, size;
} grow;

static void *grow_next(grow *g) {
    if (g->n == g->cap) {
        size_t ncap = g->cap ? g->cap * 2 : 16;
        void *p = realloc(g->items, ncap * g->size);
        if (!p) return NULL;
        g->items = p;
        g->cap = ncap;
    }
    void *it = (char *)g->items + g->n++ * g->size;
    memset(it, 0, g->size);
    return it;
}

/* ---- events -------------------------------------------------------------- */

static int event_from_row(sqlite3_stmt *s, vx_event_rec *ev) {
    ev->id = sqlite3_column_int64(s, 0);
    vx_sqlite_copy_text(s, 1, ev->type, sizeof ev->type);
    vx_sqlite_copy_text(s, 2, ev->job_id, sizeof ev->job_id);
    vx_sqlite_copy_text(s, 3, ev->user_id, sizeof ev->user_id);
    ev->at = sqlite3_column_int64(s, 4);
    const unsigned char *t = sqlite3_column_text(s, 5);
    ev->data_json = strdup(t ? (const char *)t : "{}");
    return ev->data_json ? 0 : -1;
}

int vx_sqlite_event_append(vx_store *st, vx_event_rec *ev, const vx_delivery *deliveries, size_t n,
                           vx_err *err) {
    if (!ev->type[0] || !ev->job_id[0] || !ev->user_id[0] || !ev->data_json)
        return vx_err_set(err, VX_E_INVALID, "invalid_event", "an event needs a type, job, user and data");
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = vx_sqlite_begin(c, err);
    if (rc != 0) goto out;
    rc = -1;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_EVENT_INSERT,
                                     "INSERT INTO events (type, job_id, user_id, at, data_json)"
                                     " VALUES (?, ?, ?, ?, ?)", err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, ev->type);
    vx_sqlite_bind_text(s, 2, ev->job_id);
    vx_sqlite_bind_text(s, 3, ev->user_id);
    sqlite3_bind_int64(s, 4, ev->at);
    vx_sqlite_bind_text(s, 5, ev->data_json);
    if (step_done(c, s, err) != 0) goto out;
    int64_t id = sqlite3_last_insert_rowid(vx_sqlite_conn_db(c));
    if (ev->once_per_job) {
        if (!(s = vx_sqlite_stmt(c, SQ_TERMINAL_CLAIM,
                                 "INSERT INTO job_terminal_events (job_id, event_id) VALUES (?, ?)"
                                 " ON CONFLICT (job_id) DO NOTHING", err)))
            goto out;
        vx_sqlite_bind_text(s, 1, ev->job_id);
        sqlite3_bind_int64(s, 2, id);
        if (step_done(c, s, err) != 0) goto out;
        if (sqlite3_changes(vx_sqlite_conn_db(c)) == 0) {
            vx_err_set(err, VX_E_CONFLICT, "event_recorded", "the job's terminal event is already recorded");
            goto out;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const vx_delivery *d = &deliveries[i];
        if (!(s = vx_sqlite_stmt(c, SQ_DELIVERY_INSERT,
                                 "INSERT INTO webhook_deliveries (id, endpoint_id, user_id, event_id, url,"
                                 " status, max_attempts, created_at, next_at)"
                                 " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?)", err)))
            goto out;
        vx_sqlite_bind_text(s, 1, d->id);
        vx_sqlite_bind_text(s, 2, d->endpoint_id);
        vx_sqlite_bind_text(s, 3, d->user_id);
        sqlite3_bind_int64(s, 4, id);
        vx_sqlite_bind_text(s, 5, d->url);
        sqlite3_bind_int(s, 6, d->max_attempts > 0 ? d->max_attempts : 1);
        sqlite3_bind_int64(s, 7, d->created_at);
        sqlite3_bind_int64(s, 8, d->next_at);
        int r = sqlite3_step(s);
        if (r == SQLITE_CONSTRAINT_FOREIGNKEY) {
            vx_err_set(err, VX_E_NOT_FOUND, "webhook_not_found", "a webhook endpoint was removed");
            goto out;
        }
        if (r != SQLITE_DONE) {
            vx_sqlite_fail(c, r, err);
            goto out;
        }
    }
    rc = 0;
    ev->id = id;
out:
    rc = vx_sqlite_finish(c, rc, err);
    vx_sqlite_conn_put(st, c);
    return rc;
}

int vx_sqlite_jobs_without_terminal_event(vx_store *st, int64_t from_ms, int64_t to_ms, int limit,
                                          char (*ids)[VX_ID_SIZE], size_t *n, vx_err *err) {
    *n = 0;
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = -1, r;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_JOBS_WITHOUT_TERMINAL,
                                     "SELECT id FROM jobs WHERE finished_at > 0 AND finished_at BETWEEN ?1 AND ?2"
                                     " AND status IN ('succeeded', 'failed', 'canceled') AND NOT EXISTS"
                                     " (SELECT 1 FROM job_terminal_events t WHERE t.job_id = jobs.id)"
                                     " ORDER BY finished_at LIMIT ?3", err);
    if (!s) goto out;
    sqlite3_bind_int64(s, 1, from_ms);
    sqlite3_bind_int64(s, 2, to_ms);
    sqlite3_bind_int(s, 3, limit);
    while ((r = sqlite3_step(s)) == SQLITE_ROW && *n < (size_t)limit)
        snprintf(ids[(*n)++], VX_ID_SIZE, "%s", (const char *)sqlite3_column_text(s, 0));
    if (r != SQLITE_DONE && r != SQLITE_ROW) {
        vx_sqlite_fail(c, r, err);
        goto out;
    }
    rc = 0;
out:
    if (s) sqlite3_reset(s);
    vx_sqlite_conn_put(st, c);
    return rc;
}

/* Caller frees *out with vx_event_list_free. */
int vx_sqlite_event_list(vx_store *st, const vx_event_filter *f, vx_event_rec **out, size_t *n,
                         vx_err *err) {
    *out = NULL;
    *n = 0;
    int limit = f->limit < 1 ? 1 : f->limit > VX_EVENT_LIST_MAX ? VX_EVENT_LIST_MAX : f->limit;
    grow g = {.size = sizeof(vx_event_rec)};
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = -1, r;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_EVENT_LIST,
                                     "SELECT id, type, job_id, user_id, at, data_json FROM events"
                                     " WHERE id > ?1 AND (?2 IS NULL OR user_id = ?2)"
                                     " AND (?3 IS NULL OR job_id = ?3) ORDER BY id LIMIT ?4", err);
    if (!s) goto out;
    sqlite3_bind_int64(s, 1, f->after_id);
    vx_sqlite_bind_text(s, 2, f->user_id);
    vx_sqlite_bind_text(s, 3, f->job_id);
    sqlite3_bind_int(s, 4, limit);
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        vx_event_rec *ev = grow_next(&g);
        if (!ev || event_from_row(s, ev) != 0) {
            oom(err);
            goto out;
        }
    }
    if (r != SQLITE_DONE) {
        vx_sqlite_fail(c, r, err);
        goto out;
    }
    rc = 0;
out:
    vx_sqlite_conn_put(st, c);
    if (rc != 0 || g.n == 0) {
        vx_event_list_free(g.items, g.n);
        return rc;
    }
    *out = g.items;
    *n = g.n;
    return 0;
}

int vx_sqlite_event_last_id(vx_store *st, const vx_event_filter *f, int64_t *id, vx_err *err) {
    *id = 0;
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = -1;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_EVENT_LAST,
                                     "SELECT COALESCE(MAX(id), 0) FROM events WHERE"
                                     " (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR job_id = ?2)", err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, f->user_id);
    vx_sqlite_bind_text(s, 2, f->job_id);
    int r = sqlite3_step(s);
    if (r != SQLITE_ROW) {
        vx_sqlite_fail(c, r, err);
        goto out;
    }
    *id = sqlite3_column_int64(s, 0);
    rc = 0;
out:
    vx_sqlite_conn_put(st, c);
    return rc;
}

int vx_sqlite_event_purge(vx_store *st, int64_t before_ms, int64_t *purged, vx_err *err) {
    *purged = 0;
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = vx_sqlite_begin(c, err);
    if (rc != 0) goto out;
    rc = -1;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_EVENT_PURGE_DELIVERIES,
                                     "DELETE FROM webhook_deliveries WHERE status <> 'pending' AND event_id IN"
                                     " (SELECT id FROM events WHERE at < ?)", err);
    if (!s) goto out;
    sqlite3_bind_int64(s, 1, before_ms);
    if (step_done(c, s, err) != 0) goto out;
    if (!(s = vx_sqlite_stmt(c, SQ_EVENT_PURGE,
                             "DELETE FROM events WHERE at < ?1 AND NOT EXISTS"
                             " (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = events.id)", err)))
        goto out;
    sqlite3_bind_int64(s, 1, before_ms);
    if (step_done(c, s, err) != 0) goto out;
    *purged = sqlite3_changes(vx_sqlite_conn_db(c));
    rc = 0;
out:
    rc = vx_sqlite_finish(c, rc, err);
    vx_sqlite_conn_put(st, c);
    return rc;
}

/* ---- endpoints ------------------------------------------------------------ */

static void endpoint_from_row(sqlite3_stmt *s, vx_webhook_endpoint *ep) {
    memset(ep, 0, sizeof *ep);
    vx_sqlite_copy_text(s, 0, ep->id, sizeof ep->id);
    vx_sqlite_copy_text(s, 1, ep->user_id, sizeof ep->user_id);
    vx_sqlite_copy_text(s, 2, ep->kind, sizeof ep->kind);
    vx_sqlite_copy_text(s, 3, ep->url, sizeof ep->url);
    vx_sqlite_copy_text(s, 4, ep->event_types, sizeof ep->event_types);
    vx_sqlite_copy_text(s, 5, ep->secret, sizeof ep->secret);
    vx_sqlite_copy_text(s, 6, ep->previous_secret, sizeof ep->previous_secret);
    ep->previous_until = sqlite3_column_int64(s, 7);
    ep->created_at = sqlite3_column_int64(s, 8);
}

static const char SQL_WEBHOOK_INSERT[] = "INSERT INTO webhook_endpoints (" EP_COLS ") VALUES (?, ?, ?, ?, ?, ?, '', 0, ?)";

static void bind_endpoint(sqlite3_stmt *s, const void *arg) {
    const vx_webhook_endpoint *ep = arg;
    vx_sqlite_bind_text(s, 1, ep->id);
    vx_sqlite_bind_text(s, 2, ep->user_id);
    vx_sqlite_bind_text(s, 3, ep->kind);
    vx_sqlite_bind_text(s, 4, ep->url);
    vx_sqlite_bind_text(s, 5, ep->event_types);
    vx_sqlite_bind_text(s, 6, ep->secret);
    sqlite3_bind_int64(s, 7, ep->created_at);
}

int vx_sqlite_webhook_create(vx_store *st, const vx_webhook_endpoint *ep, vx_err *err) {
    if (!ep->id[0] || !ep->user_id[0] || !ep->secret[0] ||
        (strcmp(ep->kind, "user") != 0 && strcmp(ep->kind, "job") != 0))
        return vx_err_set(err, VX_E_INVALID, "invalid_webhook", "an endpoint needs an id, user, kind and secret");
    int changes = 0;
    return vx_sqlite_write_one(st, SQ_WEBHOOK_INSERT, SQL_WEBHOOK_INSERT, bind_endpoint, ep, &changes, err);
}

static int endpoint_get(vx_sqlite_conn *c, const char *user_id, const char *id, vx_webhook_endpoint *out,
                        vx_err *err) {
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_WEBHOOK_GET,
                                     "SELECT " EP_COLS " FROM webhook_endpoints WHERE id = ?1"
                                     " AND (?2 IS NULL OR user_id = ?2)", err);
    if (!s) return -1;
    vx_sqlite_bind_text(s, 1, id);
    vx_sqlite_bind_text(s, 2, user_id);
    int r = sqlite3_step(s);
    if (r == SQLITE_DONE) return vx_err_set(err, VX_E_NOT_FOUND, "not_found", "no such webhook");
    if (r != SQLITE_ROW) return vx_sqlite_fail(c, r, err);
    endpoint_from_row(s, out);
    sqlite3_reset(s);
    return 0;
}

int vx_sqlite_webhook_get(vx_store *st, const char *user_id, const char *id, vx_webhook_endpoint *out,
                          vx_err *err) {
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = endpoint_get(c, user_id, id, out, err);
    vx_sqlite_conn_put(st, c);
    return rc;
}

/* Caller frees *out with free(). */
int vx_sqlite_webhook_list(vx_store *st, const char *user_id, vx_webhook_endpoint **out, size_t *n,
                           vx_err *err) {
    *out = NULL;
    *n = 0;
    grow g = {.size = sizeof(vx_webhook_endpoint)};
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = -1, r;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_WEBHOOK_LIST,
                                     "SELECT " EP_COLS " FROM webhook_endpoints WHERE user_id = ? ORDER BY id",
                                     err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, user_id);
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        vx_webhook_endpoint *ep = grow_next(&g);
        if (!ep) {
            oom(err);
            goto out;
        }
        endpoint_from_row(s, ep);
    }
    if (r != SQLITE_DONE) {
        vx_sqlite_fail(c, r, err);
        goto out;
    }
    rc = 0;
out:
    vx_sqlite_conn_put(st, c);
    if (rc != 0 || g.n == 0) {
        free(g.items);
        return rc;
    }
    *out = g.items;
    *n = g.n;
    return 0;
}

int vx_sqlite_webhook_job_endpoint(vx_store *st, const vx_webhook_endpoint *candidate,
                                   vx_webhook_endpoint *out, vx_err *err) {
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = vx_sqlite_begin(c, err);
    if (rc != 0) goto out;
    rc = -1;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_WEBHOOK_JOB_GET,
                                     "SELECT " EP_COLS " FROM webhook_endpoints WHERE user_id = ? AND kind = 'job'",
                                     err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, candidate->user_id);
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        endpoint_from_row(s, out);
        rc = 0;
        goto out;
    }
    if (r != SQLITE_DONE) {
        vx_sqlite_fail(c, r, err);
        goto out;
    }
    vx_webhook_endpoint ep = *candidate;
    snprintf(ep.kind, sizeof ep.kind, "job");
    ep.url[0] = ep.event_types[0] = '\0';
    if (!(s = vx_sqlite_stmt(c, SQ_WEBHOOK_INSERT, SQL_WEBHOOK_INSERT, err))) goto out;
    bind_endpoint(s, &ep);
    r = sqlite3_step(s);
    if (r == SQLITE_CONSTRAINT_FOREIGNKEY) {
        vx_err_set(err, VX_E_NOT_FOUND, "user_not_found", "no such user");
        goto out;
    }
    if (r != SQLITE_DONE) {
        vx_sqlite_fail(c, r, err);
        goto out;
    }
    *out = ep;
    rc = 0;
out:
    rc = vx_sqlite_finish(c, rc, err);
    vx_sqlite_conn_put(st, c);
    return rc;
}

int vx_sqlite_webhook_delete(vx_store *st, const char *user_id, const char *id, vx_err *err) {
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    vx_webhook_endpoint ep;
    int rc = vx_sqlite_begin(c, err);
    if (rc != 0) goto out;
    if ((rc = endpoint_get(c, user_id, id, &ep, err)) != 0) goto out;
    rc = -1;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_WEBHOOK_DELETE_DELIVERIES,
                                     "DELETE FROM webhook_deliveries WHERE endpoint_id = ?", err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, id);
    if (step_done(c, s, err) != 0) goto out;
    if (!(s = vx_sqlite_stmt(c, SQ_WEBHOOK_DELETE, "DELETE FROM webhook_endpoints WHERE id = ?", err))) goto out;
    vx_sqlite_bind_text(s, 1, id);
    rc = step_done(c, s, err);
out:
    rc = vx_sqlite_finish(c, rc, err);
    vx_sqlite_conn_put(st, c);
    return rc;
}

struct rotate_args { const char *user_id, *id, *secret; int64_t until; };
static void bind_rotate(sqlite3_stmt *s, const void *arg) {
    const struct rotate_args *a = arg;
    vx_sqlite_bind_text(s, 1, a->id);
    vx_sqlite_bind_text(s, 2, a->user_id);
    vx_sqlite_bind_text(s, 3, a->secret);
    sqlite3_bind_int64(s, 4, a->until);
}

int vx_sqlite_webhook_rotate(vx_store *st, const char *user_id, const char *id, const char *new_secret,
                             int64_t previous_until, vx_err *err) {
    if (!new_secret || !*new_secret)
        return vx_err_set(err, VX_E_INVALID, "invalid_webhook", "a secret is required");
    struct rotate_args a = {user_id, id, new_secret, previous_until};
    int changes = 0;
    if (vx_sqlite_write_one(st, SQ_WEBHOOK_ROTATE,
                            "UPDATE webhook_endpoints SET previous_secret = secret, secret = ?3,"
                            " previous_until = ?4 WHERE id = ?1 AND user_id = ?2",
                            bind_rotate, &a, &changes, err) != 0)
        return -1;
    return changes ? 0 : vx_err_set(err, VX_E_NOT_FOUND, "not_found", "no such webhook");
}

/* ---- deliveries ------------------------------------------------------------- */

static void delivery_from_row(sqlite3_stmt *s, vx_delivery *d) {
    vx_sqlite_copy_text(s, 0, d->id, sizeof d->id);
    vx_sqlite_copy_text(s, 1, d->endpoint_id, sizeof d->endpoint_id);
    vx_sqlite_copy_text(s, 2, d->user_id, sizeof d->user_id);
    d->event_id = sqlite3_column_int64(s, 3);
    vx_sqlite_copy_text(s, 4, d->event_type, sizeof d->event_type);
    vx_sqlite_copy_text(s, 5, d->url, sizeof d->url);
    const unsigned char *status = sqlite3_column_text(s, 6);
    d->status = !status || strcmp((const char *)status, "pending") == 0 ? VX_DELIVERY_PENDING
                : strcmp((const char *)status, "delivered") == 0     ? VX_DELIVERY_DELIVERED
                                                                      : VX_DELIVERY_FAILED;
    d->attempts = sqlite3_column_int(s, 7);
    d->max_attempts = sqlite3_column_int(s, 8);
    d->created_at = sqlite3_column_int64(s, 9);
    d->next_at = sqlite3_column_int64(s, 10);
    d->last_attempt_at = sqlite3_column_int64(s, 11);
    d->delivered_at = sqlite3_column_int64(s, 12);
    d->last_status_code = sqlite3_column_int(s, 13);
    d->last_latency_ms = sqlite3_column_int64(s, 14);
    vx_sqlite_copy_text(s, 15, d->last_error, sizeof d->last_error);
    vx_sqlite_copy_text(s, 16, d->response_prefix, sizeof d->response_prefix);
}

/* Caller frees *out with vx_delivery_list_free. */
int vx_sqlite_delivery_claim(vx_store *st, const char *owner, int64_t now, int64_t lease_ms, int limit,
                             vx_delivery **out, size_t *n, vx_err *err) {
    *out = NULL;
    *n = 0;
    if (limit < 1) limit = 1;
    grow g = {.size = sizeof(vx_delivery)};
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = vx_sqlite_begin(c, err), r;
    if (rc != 0) goto out;
    rc = -1;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_DELIVERY_DUE,
        "SELECT " DLV_COLS ", e.id, e.type, e.job_id, e.user_id, e.at, e.data_json,"
        " w.secret, w.previous_secret, w.previous_until"
        " FROM webhook_deliveries d JOIN events e ON e.id = d.event_id"
        " JOIN webhook_endpoints w ON w.id = d.endpoint_id"
        " WHERE d.status = 'pending' AND d.next_at <= ?1 AND d.lease_until < ?1"
        " ORDER BY d.next_at, d.id LIMIT ?2", err);
    if (!s) goto out;
    sqlite3_bind_int64(s, 1, now);
    sqlite3_bind_int(s, 2, limit);
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        vx_delivery *d = grow_next(&g);
        if (!d) {
            oom(err);
            goto out;
        }
        delivery_from_row(s, d);
        sqlite3_stmt *es = s; /* the joined event and endpoint columns follow */
        d->event.id = sqlite3_column_int64(es, DLV_NCOLS);
        vx_sqlite_copy_text(es, DLV_NCOLS + 1, d->event.type, sizeof d->event.type);
        vx_sqlite_copy_text(es, DLV_NCOLS + 2, d->event.job_id, sizeof d->event.job_id);
        vx_sqlite_copy_text(es, DLV_NCOLS + 3, d->event.user_id, sizeof d->event.user_id);
        d->event.at = sqlite3_column_int64(es, DLV_NCOLS + 4);
        const unsigned char *t = sqlite3_column_text(es, DLV_NCOLS + 5);
        if (!(d->event.data_json = strdup(t ? (const char *)t : "{}"))) {
            oom(err);
            goto out;
        }
        vx_sqlite_copy_text(es, DLV_NCOLS + 6, d->secret, sizeof d->secret);
        vx_sqlite_copy_text(es, DLV_NCOLS + 7, d->previous_secret, sizeof d->previous_secret);
        d->previous_until = sqlite3_column_int64(es, DLV_NCOLS + 8);
    }
    sqlite3_reset(s);
    if (r != SQLITE_DONE && r != SQLITE_ROW) {
        vx_sqlite_fail(c, r, err);
        goto out;
    }
    vx_delivery *list = g.items;
    for (size_t i = 0; i < g.n; i++) {
        if (!(s = vx_sqlite_stmt(c, SQ_DELIVERY_LEASE,
                                 "UPDATE webhook_deliveries SET lease_owner = ?2, lease_until = ?3 WHERE id = ?1",
                                 err)))
            goto out;
        vx_sqlite_bind_text(s, 1, list[i].id);
        vx_sqlite_bind_text(s, 2, owner);
        sqlite3_bind_int64(s, 3, now + lease_ms);
        if (step_done(c, s, err) != 0) goto out;
    }
    rc = 0;
out:
    rc = vx_sqlite_finish(c, rc, err);
    vx_sqlite_conn_put(st, c);
    if (rc != 0 || g.n == 0) {
        vx_delivery_list_free(g.items, g.n);
        return rc;
    }
    *out = g.items;
    *n = g.n;
    return 0;
}

struct record_args { const char *id, *owner; const vx_delivery_attempt *a; int64_t now; };
static void bind_record(sqlite3_stmt *s, const void *arg) {
    const struct record_args *r = arg;
    const vx_delivery_attempt *a = r->a;
    vx_sqlite_bind_text(s, 1, r->id);
    vx_sqlite_bind_text(s, 2, r->owner);
    vx_sqlite_bind_text(s, 3, a->delivered ? "delivered" : a->retry_at > 0 ? "pending" : "failed");
    sqlite3_bind_int64(s, 4, a->delivered ? r->now : a->retry_at > 0 ? a->retry_at : r->now);
    sqlite3_bind_int64(s, 5, r->now);
    sqlite3_bind_int(s, 6, a->status_code);
    sqlite3_bind_int64(s, 7, a->latency_ms);
    vx_sqlite_bind_text(s, 8, a->error ? a->error : "");
    vx_sqlite_bind_text(s, 9, a->response_prefix ? a->response_prefix : "");
    sqlite3_bind_int64(s, 10, a->delivered ? r->now : 0);
}

int vx_sqlite_delivery_record(vx_store *st, const char *id, const char *owner,
                              const vx_delivery_attempt *a, int64_t now, vx_err *err) {
    struct record_args args = {id, owner, a, now};
    int changes = 0;
    if (vx_sqlite_write_one(st, SQ_DELIVERY_RECORD,
                            "UPDATE webhook_deliveries SET attempts = attempts + 1, status = ?3, next_at = ?4,"
                            " last_attempt_at = ?5, last_status_code = ?6, last_latency_ms = ?7,"
                            " last_error = ?8, response_prefix = ?9,"
                            " delivered_at = CASE WHEN ?10 > 0 THEN ?10 ELSE delivered_at END,"
                            " lease_owner = '', lease_until = 0"
                            " WHERE id = ?1 AND lease_owner = ?2 AND status = 'pending'",
                            bind_record, &args, &changes, err) != 0)
        return -1;
    return changes ? 0 : vx_err_set(err, VX_E_CONFLICT, "lease_lost", "the delivery is no longer leased here");
}

/* Caller frees *out with vx_delivery_list_free. */
int vx_sqlite_delivery_list(vx_store *st, const char *endpoint_id, const char *cursor, int limit,
                            vx_delivery **out, size_t *n, vx_err *err) {
    *out = NULL;
    *n = 0;
    limit = vx_sqlite_clamp_limit(limit);
    grow g = {.size = sizeof(vx_delivery)};
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    int rc = -1, r;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_DELIVERY_LIST,
                                     "SELECT " DLV_COLS " FROM webhook_deliveries d JOIN events e ON e.id = d.event_id"
                                     " WHERE d.endpoint_id = ? AND d.id < ? ORDER BY d.id DESC LIMIT ?", err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, endpoint_id);
    vx_sqlite_bind_text(s, 2, cursor && *cursor ? cursor : VX_SQLITE_CURSOR_TOP);
    sqlite3_bind_int(s, 3, limit);
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        vx_delivery *d = grow_next(&g);
        if (!d) {
            oom(err);
            goto out;
        }
        delivery_from_row(s, d);
    }
    if (r != SQLITE_DONE) {
        vx_sqlite_fail(c, r, err);
        goto out;
    }
    rc = 0;
out:
    vx_sqlite_conn_put(st, c);
    if (rc != 0 || g.n == 0) {
        vx_delivery_list_free(g.items, g.n);
        return rc;
    }
    *out = g.items;
    *n = g.n;
    return 0;
}

static int delivery_load(vx_sqlite_conn *c, const char *endpoint_id, const char *id, vx_delivery *out,
                         vx_err *err) {
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_DELIVERY_GET,
                                     "SELECT " DLV_COLS " FROM webhook_deliveries d JOIN events e ON e.id = d.event_id"
                                     " WHERE d.id = ? AND d.endpoint_id = ?", err);
    if (!s) return -1;
    vx_sqlite_bind_text(s, 1, id);
    vx_sqlite_bind_text(s, 2, endpoint_id);
    int r = sqlite3_step(s);
    if (r == SQLITE_DONE) return vx_err_set(err, VX_E_NOT_FOUND, "not_found", "no such delivery");
    if (r != SQLITE_ROW) return vx_sqlite_fail(c, r, err);
    memset(out, 0, sizeof *out);
    delivery_from_row(s, out);
    sqlite3_reset(s);
    return 0;
}

int vx_sqlite_delivery_redeliver(vx_store *st, const char *endpoint_id, const char *id, int64_t now,
                                 vx_delivery *out, vx_err *err) {
    vx_sqlite_conn *c = vx_sqlite_conn_get(st);
    vx_delivery d;
    int rc = vx_sqlite_begin(c, err);
    if (rc != 0) goto out;
    if ((rc = delivery_load(c, endpoint_id, id, &d, err)) != 0) goto out;
    rc = -1;
    sqlite3_stmt *s = vx_sqlite_stmt(c, SQ_DELIVERY_REDELIVER,
                                     "UPDATE webhook_deliveries SET next_at = ?2,"
                                     " max_attempts = CASE WHEN status = 'pending' THEN max_attempts"
                                     " ELSE attempts + 1 END, status = 'pending' WHERE id = ?1", err);
    if (!s) goto out;
    vx_sqlite_bind_text(s, 1, id);
    sqlite3_bind_int64(s, 2, now);
    if (step_done(c, s, err) != 0) goto out;
    rc = out ? delivery_load(c, endpoint_id, id, out, err) : 0;
out:
    rc = vx_sqlite_finish(c, rc, err);
    vx_sqlite_conn_put(st, c);
    return rc;
}

static void bind_prefix(sqlite3_stmt *s, const void *arg) { vx_sqlite_bind_text(s, 1, arg); }

int vx_sqlite_delivery_release_owner(vx_store *st, const char *owner_prefix, vx_err *err) {
    if (!owner_prefix || !*owner_prefix)
        return vx_err_set(err, VX_E_INVALID, "invalid_owner", "an owner prefix is required");
    int changes = 0;
    if (vx_sqlite_write_one(st, SQ_DELIVERY_RELEASE_OWNER,
                            "UPDATE webhook_deliveries SET lease_owner = '', lease_until = 0"
                            " WHERE status = 'pending' AND lease_owner <> ''"
                            " AND substr(lease_owner, 1, length(?1)) = ?1",
                            bind_prefix, owner_prefix, &changes, err) != 0)
        return -1;
    if (changes) vx_info("store: %d webhook deliveries of an earlier run are due again", changes);
    return 0;
}
