/* store.c - picks the store backend from the URL scheme and holds the small
 * backend-neutral helpers of store.h (names of enums, freeing job records).
 * Stateless: callable from any thread. */
#include "store.h"
#include "store_int.h"
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <stdio.h>
#include "../util/clock.h"
#include "../util/ids.h"
#include "../util/log.h"
#include "postgres_int.h"
#include "sqlite_int.h"

static const vx_store_ops *const backends[] = {
    &vx_store_sqlite_ops,
    &vx_store_postgres_ops,
    &vx_store_postgresql_ops,
};

static const char *const ledger_kind_names[] = {
    [VX_LEDGER_GRANT] = "grant",     [VX_LEDGER_TOP_UP] = "top_up",   [VX_LEDGER_ADJUST] = "adjust",
    [VX_LEDGER_REFUND] = "refund",   [VX_LEDGER_HOLD] = "hold",       [VX_LEDGER_CAPTURE] = "capture",
    [VX_LEDGER_RELEASE] = "release",
};

static const char *const job_status_names[VX_JOB_STATUS_COUNT] = {
    [VX_JOB_QUEUED] = "queued",       [VX_JOB_RUNNING] = "running", [VX_JOB_SUCCEEDED] = "succeeded",
    [VX_JOB_FAILED] = "failed",       [VX_JOB_CANCELED] = "canceled",
};

const char *vx_ledger_kind_name(vx_ledger_kind kind) {
    size_t n = sizeof ledger_kind_names / sizeof ledger_kind_names[0];
    return (size_t)kind < n ? ledger_kind_names[kind] : "unknown";
}

const char *vx_job_status_name(vx_job_status s) {
    return (unsigned)s < VX_JOB_STATUS_COUNT ? job_status_names[s] : "unknown";
}

int vx_job_status_parse(const char *name, vx_job_status *out) {
    for (int i = 0; name && i < VX_JOB_STATUS_COUNT; i++) {
        if (strcmp(job_status_names[i], name) == 0) {
            *out = (vx_job_status)i;
            return 0;
        }
    }
    return -1;
}

void vx_job_clear(vx_job *job) {
    if (!job) return;
    free(job->params_json);
    free(job->result_json);
    free(job->error_json);
    free(job->webhook_url);
    job->params_json = job->result_json = job->error_json = job->webhook_url = NULL;
}

void vx_job_list_free(vx_job *jobs, size_t n) {
    for (size_t i = 0; jobs && i < n; i++) vx_job_clear(&jobs[i]);
    free(jobs);
}

/* Returns a store the caller closes with vx_store_close(). */
vx_store *vx_store_open(const char *url, vx_err *err) {
    const char *colon = url ? strchr(url, ':') : NULL;
    if (!colon) {
        vx_err_set(err, VX_E_INVALID, "unknown_store_scheme", "the store URL has no scheme");
        return NULL;
    }
    size_t len = (size_t)(colon - url);
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        const char *scheme = backends[i]->scheme;
        if (strlen(scheme) == len && strncmp(scheme, url, len) == 0) return backends[i]->open(url, err);
    }
    vx_err_set(err, VX_E_INVALID, "unknown_store_scheme", "unknown store scheme \"%.*s\" (known: sqlite, postgres)",
               (int)(len > 16 ? 16 : len), url);
    return NULL;
}

void vx_store_close(vx_store *st) {
    if (st) st->ops->close(st);
}

void vx_store_settle_entry(vx_ledger_entry *e, const char *user_id, const char *job_id, vx_ledger_kind kind,
                           int64_t held, int64_t charged, int64_t now) {
    *e = (vx_ledger_entry){.kind = kind, .held_delta = -held, .created_at = now,
                           .amount = kind == VX_LEDGER_CAPTURE ? held - charged : held,
                           .charged = kind == VX_LEDGER_CAPTURE ? charged : 0};
    vx_id_new(e->id, "led");
    snprintf(e->user_id, sizeof e->user_id, "%s", user_id);
    snprintf(e->job_id, sizeof e->job_id, "%s", job_id);
    snprintf(e->ref, sizeof e->ref, "settle:%s", job_id);
}

void vx_store_hold_entry(vx_ledger_entry *e, const char *user_id, const char *job_id, int64_t amount,
                         int64_t held_after, int64_t now) {
    *e = (vx_ledger_entry){.kind = VX_LEDGER_HOLD, .amount = -amount, .held_delta = amount, .created_at = now};
    vx_id_new(e->id, "led");
    snprintf(e->user_id, sizeof e->user_id, "%s", user_id);
    snprintf(e->job_id, sizeof e->job_id, "%s", job_id);
    if (held_after > 0) snprintf(e->ref, sizeof e->ref, "hold:%s:%lld", job_id, (long long)held_after);
    else snprintf(e->ref, sizeof e->ref, "hold:%s", job_id);
}

char *vx_store_errors_append(const char *existing, int attempt, const char *code, const char *message,
                             int64_t now) {
    json_t *arr = existing ? json_loads(existing, 0, NULL) : NULL;
    if (arr && !json_is_array(arr)) {
        json_decref(arr);
        arr = NULL;
    }
    if (!arr && existing) vx_warn("store: a job's error history was unreadable and restarts");
    if (!arr && !(arr = json_array())) return NULL;
    char at[VX_TIME_SIZE];
    vx_time_format(now, at);
    json_t *o = json_pack("{s:i, s:s, s:s, s:s}", "attempt", attempt, "code", code ? code : "error",
                          "message", message ? message : "", "at", at);
    char *text = NULL;
    if (o && json_array_append_new(arr, o) == 0) text = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    return text;
}
