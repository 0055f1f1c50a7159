-- 0002_claim_index.sql - the claim takes the oldest ready job (id order): a
-- partial index over queued jobs in id order, carrying run_after, lets it
-- stop at the first ready one instead of sorting every ready job.
DROP INDEX jobs_claim;
CREATE INDEX jobs_claim ON jobs (id, run_after) WHERE status = 'queued';
