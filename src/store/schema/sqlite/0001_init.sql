-- 0001_init.sql - the first voxd schema for SQLite: settings, users, API keys,
-- balances + an immutable ledger, model price overrides and the job queue.
-- STRICT tables so an integer overflow (which SQLite turns into a REAL) is
-- refused instead of stored; the CHECKs make a negative balance impossible.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL COLLATE NOCASE UNIQUE,
    email         TEXT NOT NULL DEFAULT '',
    role          TEXT NOT NULL CHECK (role IN ('user', 'admin')),
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1))
) STRICT;
CREATE INDEX users_role ON users (role);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id),
    name         TEXT NOT NULL DEFAULT '',
    prefix       TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL DEFAULT 0,
    revoked_at   INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX api_keys_user ON api_keys (user_id, id);

CREATE TABLE balances (
    user_id   TEXT PRIMARY KEY REFERENCES users (id),
    available INTEGER NOT NULL DEFAULT 0 CHECK (available >= 0),
    held      INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0)
) STRICT;

-- amount is the entry's effect on balances.available, held_delta its effect
-- on balances.held; balance_after is available right after the entry.
CREATE TABLE ledger (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id),
    kind          TEXT NOT NULL CHECK (kind IN ('grant', 'top_up', 'adjust', 'refund',
                                                'hold', 'capture', 'release')),
    amount        INTEGER NOT NULL,
    held_delta    INTEGER NOT NULL DEFAULT 0,
    charged       INTEGER NOT NULL DEFAULT 0,
    job_id        TEXT NOT NULL DEFAULT '',
    ref           TEXT NOT NULL CHECK (ref <> ''),
    note          TEXT NOT NULL DEFAULT '',
    actor_id      TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL,
    balance_after INTEGER NOT NULL,
    UNIQUE (user_id, ref)
) STRICT;
CREATE INDEX ledger_user ON ledger (user_id, id);

CREATE TRIGGER ledger_immutable_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger entries are immutable');
END;
CREATE TRIGGER ledger_immutable_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger entries are immutable');
END;

CREATE TABLE prices (
    model      TEXT PRIMARY KEY,
    per_job    INTEGER NOT NULL CHECK (per_job >= 0),
    per_second INTEGER NOT NULL CHECK (per_second >= 0),
    actor_id   TEXT NOT NULL DEFAULT '',
    updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE jobs (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users (id),
    model               TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded',
                                                        'failed', 'canceled')),
    progress            REAL NOT NULL DEFAULT 0,
    attempts            INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts        INTEGER NOT NULL CHECK (max_attempts >= 1),
    created_at          INTEGER NOT NULL,
    started_at          INTEGER NOT NULL DEFAULT 0,
    finished_at         INTEGER NOT NULL DEFAULT 0,
    updated_at          INTEGER NOT NULL,
    run_after           INTEGER NOT NULL DEFAULT 0,
    price_per_job       INTEGER NOT NULL DEFAULT 0,
    price_per_second    INTEGER NOT NULL DEFAULT 0,
    held                INTEGER NOT NULL CHECK (held >= 0),
    charged             INTEGER NOT NULL DEFAULT 0 CHECK (charged >= 0 AND charged <= held),
    duration_s          REAL NOT NULL DEFAULT 0,
    params_json         TEXT,
    result_json         TEXT,
    error_json          TEXT,
    input_key           TEXT NOT NULL DEFAULT '',
    input_name          TEXT NOT NULL DEFAULT '',
    input_content_type  TEXT NOT NULL DEFAULT '',
    input_bytes         INTEGER NOT NULL DEFAULT 0,
    input_format        TEXT NOT NULL DEFAULT '',
    output_key          TEXT NOT NULL DEFAULT '',
    output_content_type TEXT NOT NULL DEFAULT '',
    output_bytes        INTEGER NOT NULL DEFAULT 0,
    webhook_url         TEXT,
    idempotency_key     TEXT,            -- NULL when the request had none
    request_hash        TEXT NOT NULL DEFAULT '',
    lease_owner         TEXT NOT NULL DEFAULT '',
    lease_until         INTEGER NOT NULL DEFAULT 0,
    cancel_requested    INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1))
) STRICT;
CREATE UNIQUE INDEX jobs_idempotency ON jobs (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_claim ON jobs (status, run_after, id);
CREATE INDEX jobs_lease ON jobs (status, lease_until);
CREATE INDEX jobs_user ON jobs (user_id, id);
