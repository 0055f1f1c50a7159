-- 0006_ledger_seq.sql - ledger entries are listed in the order they were
-- written (rowid; PostgreSQL's 0006 adds a sequence for the same), not by
-- id, so listings stay right if ids ever stop being in write order. An
-- index on user_id alone carries rowid as its last key: pages of one user
-- come straight off it, without a sort.

CREATE INDEX ledger_user_rowid ON ledger (user_id);
