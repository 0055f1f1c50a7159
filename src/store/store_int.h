/* store_int.h - record rules every store backend shares (how a settle entry
 * is formed, how a job's error history grows), so backends differ only in
 * SQL. Private to src/store/. Pure functions; any thread. */
#ifndef VX_STORE_INT_H
#define VX_STORE_INT_H
#include <stdint.h>
#include "store.h"

/* The ledger entry that settles a job's hold: a capture of `charged` out of
 * `held`, or a release of all of it; ref "settle:<job_id>", fresh id. */
void vx_store_settle_entry(vx_ledger_entry *e, const char *user_id, const char *job_id, vx_ledger_kind kind,
                           int64_t held, int64_t charged, int64_t now);

/* The hold entry of a job: `amount` more held, fresh id; ref "hold:<job_id>"
 * for the first (held_after 0), "hold:<job_id>:<held_after>" for a stream's
 * later holds (unique per total). */
void vx_store_hold_entry(vx_ledger_entry *e, const char *user_id, const char *job_id, int64_t amount,
                         int64_t held_after, int64_t now);

/* Returns `existing` (a JSON array text or NULL) with one more
 * {attempt, code, message, at} object, as a new malloc'd string (caller
 * frees); NULL when out of memory. Unreadable history restarts (logged). */
char *vx_store_errors_append(const char *existing, int attempt, const char *code, const char *message,
                             int64_t now);

#endif
