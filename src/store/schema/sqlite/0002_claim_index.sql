-- 0002_claim_index.sql - the claim takes the oldest ready job: with
-- (status, id, run_after) it walks queued jobs in id order and reads run_after
-- from the index, so it stops at the first ready one instead of sorting every
-- ready job (0001's (status, run_after, id) needed a temp b-tree per claim).
DROP INDEX jobs_claim;
CREATE INDEX jobs_claim ON jobs (status, id, run_after);
