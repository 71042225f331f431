-- A worker claims only the kinds its app declares: the runnable index leads with (queue, kind).
--
-- claim_jobs walks one index range per (queue, kind) pair it serves (LATERAL, equality on both
-- leading columns keeps (priority, run_at, id) order: no sort, no finished rows) and merges them.
-- The old (queue, priority, run_at, id) index is dropped rather than kept beside it: every
-- enqueue and every claim (state changes, so no update is HOT) would pay for two index entries.
-- Measured (20,000 queued noop jobs, PostgreSQL 18, one queue): a 10-job claim through one
-- (queue, kind) range costs the same as through the old queue range; a worker serving k kinds
-- pays k index descents per claim (a few µs each), and queries by queue alone (stats,
-- next_run_at) still use the leading column.
CREATE INDEX jobs_claim_idx ON pgjobs.jobs (queue, kind, priority, run_at, id) WHERE state = 'queued';
DROP INDEX pgjobs.jobs_runnable_idx;
