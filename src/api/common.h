/* common.h - helpers shared by the handlers in src/api/: authentication,
 * JSON bodies, pagination arguments and rendering of the core records.
 * Functions that may answer the request return -1 after answering. */
#ifndef VX_API_COMMON_H
#define VX_API_COMMON_H
#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include "../core/accounts.h"
#include "../http/http.h"
#include "../store/store.h"

/* Authenticates from Authorization / X-API-Key; answers 401/403 on failure. */
int vx_api_auth(vx_request *req, vx_principal *who);
/* As vx_api_auth, also from ?access_token= / ?api_key= when no header is
 * given (browsers cannot set headers on WebSocket or EventSource). */
int vx_api_auth_query(vx_request *req, vx_principal *who);
/* As vx_api_auth, and answers 403 "forbidden" unless the user is an admin. */
int vx_api_auth_admin(vx_request *req, vx_principal *who);
/* Parses the body as a JSON object; answers 400 "invalid_json" otherwise.
 * Returns a new reference or NULL (already answered). */
json_t *vx_api_body_object(vx_request *req);
/* Reads a string member: absent/null -> *out = NULL and 0; not a string ->
 * answers 400 "invalid_request" and -1. required: absent answers too. */
int vx_api_string_field(vx_request *req, json_t *obj, const char *name, bool required, const char **out);
/* ?limit= (1..200, default 50) and ?cursor=; answers 400 on bad values. */
int vx_api_page_args(vx_request *req, int *limit, const char **cursor);
/* Idempotency-Key header: NULL if absent; answers 400 when malformed (-1). */
int vx_api_idempotency_key(vx_request *req, const char **key);

/* A new spool file for an upload under the app's tmp dir: its path in
 * path (cap bytes), the open fd returned; -1 with err (503). */
int vx_api_spool_open(vx_app *app, char *path, size_t cap, vx_err *err);
/* Writes all of data to a spool fd; -1 with err (503) on failure. */
int vx_api_spool_write(int fd, const char *data, size_t size, vx_err *err);

/* Where clients reach this server, for URLs it hands out: --public-url, else
 * http:// + the Host header (answers 400 invalid_host and -1 without one). */
int vx_api_base_url(vx_request *req, char *out, size_t cap);

json_t *vx_api_time(int64_t ms);                  /* RFC 3339 string or null */
json_t *vx_api_balance_json(const vx_balance *b);
json_t *vx_api_user_json(const vx_user *u);
json_t *vx_api_job_json(const vx_job *job, bool with_user);
/* {"data":[...],"next_cursor":...}; steals data. */
json_t *vx_api_page_json(json_t *data, const char *next_cursor);

#endif
