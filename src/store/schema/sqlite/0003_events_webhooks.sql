-- 0003_events_webhooks.sql - job events kept for a retention window (resume
-- of live feeds) and webhooks: per-user endpoints with their signing secrets,
-- and one delivery row per (event, endpoint) that survives restarts.
-- events.id is the store's own sequence: AUTOINCREMENT never reuses an id,
-- even after the newest rows were purged, so resume cursors stay valid.

CREATE TABLE events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    type      TEXT NOT NULL,
    job_id    TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    at        INTEGER NOT NULL,
    data_json TEXT NOT NULL
) STRICT;
CREATE INDEX events_user ON events (user_id, id);
CREATE INDEX events_job ON events (job_id, id);
CREATE INDEX events_at ON events (at);

-- kind 'user': an endpoint the user registered (url, event_types filter);
-- kind 'job': the one per-user row whose secret signs deliveries to the
-- webhook_url of that user's jobs (url is then '').
CREATE TABLE webhook_endpoints (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users (id),
    kind            TEXT NOT NULL CHECK (kind IN ('user', 'job')),
    url             TEXT NOT NULL,
    event_types     TEXT NOT NULL DEFAULT '',
    secret          TEXT NOT NULL,
    previous_secret TEXT NOT NULL DEFAULT '',
    previous_until  INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX webhook_endpoints_user ON webhook_endpoints (user_id, id);
CREATE UNIQUE INDEX webhook_endpoints_job ON webhook_endpoints (user_id) WHERE kind = 'job';

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints (id),
    user_id          TEXT NOT NULL,
    event_id         INTEGER NOT NULL REFERENCES events (id),
    url              TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL CHECK (max_attempts >= 1),
    created_at       INTEGER NOT NULL,
    next_at          INTEGER NOT NULL,
    lease_owner      TEXT NOT NULL DEFAULT '',
    lease_until      INTEGER NOT NULL DEFAULT 0,
    last_attempt_at  INTEGER NOT NULL DEFAULT 0,
    last_status_code INTEGER NOT NULL DEFAULT 0,
    last_latency_ms  INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT NOT NULL DEFAULT '',
    response_prefix  TEXT NOT NULL DEFAULT '',
    delivered_at     INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_at);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
