-- 0005_terminal_events.sql - at most one terminal event (job.succeeded,
-- job.failed, job.canceled) per job: event_append of a terminal event also
-- claims its job's row here, in the same transaction, so a second one (a
-- repair racing a slow emitter, a cancel seen by both API and worker) is
-- refused. Rows outlive event retention, so repairs never re-emit purged
-- events. The index serves the repair scan (jobs finished lately without one).

CREATE TABLE job_terminal_events (
    job_id   TEXT PRIMARY KEY,
    event_id INTEGER NOT NULL
) STRICT;

INSERT OR IGNORE INTO job_terminal_events (job_id, event_id)
    SELECT job_id, MIN(id) FROM events
    WHERE type IN ('job.succeeded', 'job.failed', 'job.canceled') GROUP BY job_id;

CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at > 0;
