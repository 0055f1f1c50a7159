-- 0001_init.sql - the first voxd schema for PostgreSQL, the same tables and
-- meaning as sqlite/0001: settings, users, API keys, balances + an immutable
-- ledger, model price overrides and the job queue. The CHECKs make a negative
-- balance impossible; BIGINT overflow is refused by the database. Ids use
-- the "C" collation so listings page in byte order like SQLite.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE users (
    id            TEXT COLLATE "C" PRIMARY KEY,
    username      TEXT NOT NULL,
    email         TEXT NOT NULL DEFAULT '',
    role          TEXT NOT NULL CHECK (role IN ('user', 'admin')),
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1))
);
-- usernames are unique case-insensitively (SQLite: COLLATE NOCASE)
CREATE UNIQUE INDEX users_username ON users (lower(username));
CREATE INDEX users_role ON users (role);

CREATE TABLE api_keys (
    id           TEXT COLLATE "C" PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id),
    name         TEXT NOT NULL DEFAULT '',
    prefix       TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL DEFAULT 0,
    revoked_at   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX api_keys_user ON api_keys (user_id, id);

CREATE TABLE balances (
    user_id   TEXT PRIMARY KEY REFERENCES users (id),
    available BIGINT NOT NULL DEFAULT 0 CONSTRAINT balances_available_check CHECK (available >= 0),
    held      BIGINT NOT NULL DEFAULT 0 CONSTRAINT balances_held_check CHECK (held >= 0)
);

-- amount is the entry's effect on balances.available, held_delta its effect
-- on balances.held; balance_after is available right after the entry.
CREATE TABLE ledger (
    id            TEXT COLLATE "C" PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id),
    kind          TEXT NOT NULL CHECK (kind IN ('grant', 'top_up', 'adjust', 'refund',
                                                'hold', 'capture', 'release')),
    amount        BIGINT NOT NULL,
    held_delta    BIGINT NOT NULL DEFAULT 0,
    charged       BIGINT NOT NULL DEFAULT 0,
    job_id        TEXT NOT NULL DEFAULT '',
    ref           TEXT NOT NULL CHECK (ref <> ''),
    note          TEXT NOT NULL DEFAULT '',
    actor_id      TEXT NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL,
    balance_after BIGINT NOT NULL,
    CONSTRAINT ledger_user_ref UNIQUE (user_id, ref)
);
CREATE INDEX ledger_user ON ledger (user_id, id);

CREATE FUNCTION ledger_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are immutable' USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER ledger_immutable_update BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_immutable();
CREATE TRIGGER ledger_immutable_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_immutable();

CREATE TABLE prices (
    model      TEXT PRIMARY KEY,
    per_job    BIGINT NOT NULL CHECK (per_job >= 0),
    per_second BIGINT NOT NULL CHECK (per_second >= 0),
    actor_id   TEXT NOT NULL DEFAULT '',
    updated_at BIGINT NOT NULL
);

CREATE TABLE jobs (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users (id),
    model               TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded',
                                                        'failed', 'canceled')),
    progress            DOUBLE PRECISION NOT NULL DEFAULT 0,
    attempts            INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts        INTEGER NOT NULL CHECK (max_attempts >= 1),
    created_at          BIGINT NOT NULL,
    started_at          BIGINT NOT NULL DEFAULT 0,
    finished_at         BIGINT NOT NULL DEFAULT 0,
    updated_at          BIGINT NOT NULL,
    run_after           BIGINT NOT NULL DEFAULT 0,
    price_per_job       BIGINT NOT NULL DEFAULT 0,
    price_per_second    BIGINT NOT NULL DEFAULT 0,
    held                BIGINT NOT NULL CHECK (held >= 0),
    charged             BIGINT NOT NULL DEFAULT 0 CHECK (charged >= 0 AND charged <= held),
    duration_s          DOUBLE PRECISION NOT NULL DEFAULT 0,
    params_json         TEXT,
    result_json         TEXT,
    error_json          TEXT,
    input_key           TEXT NOT NULL DEFAULT '',
    input_name          TEXT NOT NULL DEFAULT '',
    input_content_type  TEXT NOT NULL DEFAULT '',
    input_bytes         BIGINT NOT NULL DEFAULT 0,
    input_format        TEXT NOT NULL DEFAULT '',
    output_key          TEXT NOT NULL DEFAULT '',
    output_content_type TEXT NOT NULL DEFAULT '',
    output_bytes        BIGINT NOT NULL DEFAULT 0,
    webhook_url         TEXT,
    idempotency_key     TEXT,            -- NULL when the request had none
    request_hash        TEXT NOT NULL DEFAULT '',
    lease_owner         TEXT NOT NULL DEFAULT '',
    lease_until         BIGINT NOT NULL DEFAULT 0,
    cancel_requested    INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1))
);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_claim ON jobs (status, run_after, id);
CREATE INDEX jobs_lease ON jobs (status, lease_until);
CREATE INDEX jobs_user ON jobs (user_id, id);
