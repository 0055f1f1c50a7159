-- 0004_uploads.sql - direct uploads (POST /v1/uploads): one row per upload
-- URL handed out; state 'pending' until a job takes it ('used', used_by_job
-- set in the job's own transaction) or it expires unused ('expired', set by
-- the orphan sweeper, which then deletes the object). And named leases, so
-- that one node at a time runs a cluster-wide chore such as the sweeper.

CREATE TABLE uploads (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id),
    key            TEXT NOT NULL UNIQUE,
    filename       TEXT NOT NULL DEFAULT '',
    content_type   TEXT NOT NULL DEFAULT '',
    declared_bytes INTEGER NOT NULL DEFAULT 0,
    state          TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'used', 'expired')),
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_by_job    TEXT UNIQUE
) STRICT;
CREATE INDEX uploads_pending ON uploads (state, expires_at);

CREATE TABLE leases (
    name  TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until INTEGER NOT NULL
) STRICT;
