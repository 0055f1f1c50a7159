-- 0006_ledger_seq.sql - ledger entries listed in commit order. Entry ids
-- are time-ordered per process only; with several API and worker processes
-- two entries of one user written within the same millisecond could list
-- in the wrong order (balance_after not descending). Entries of one user
-- are written one at a time (the balance row is locked), so a sequence
-- value taken at insert orders them as they happened. Existing rows are
-- numbered in their physical order (an append-only table: insertion order).

ALTER TABLE ledger ADD COLUMN seq BIGSERIAL;
CREATE INDEX ledger_user_seq ON ledger (user_id, seq);
