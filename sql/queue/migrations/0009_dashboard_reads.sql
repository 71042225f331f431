-- The dashboard's reads at millions of jobs (issue 17), each index paid only by the rows it serves.
--
-- jobs_finished_idx: the overview's throughput (finished jobs per minute/hour over the last day)
-- read every finished job of the day from the heap without it. Partial: only succeeded and failed
-- rows are in it, so a claim (queued -> running) adds no entry; a completion adds one (the row
-- changes `state`, so it was never a HOT update: the primary key and jobs_root_idx get an entry
-- anyway). `state` is included so the chart's split needs no heap visit once a page is all-visible.
CREATE INDEX jobs_finished_idx ON pgjobs.jobs (finished_at) INCLUDE (state)
    WHERE state IN ('succeeded', 'failed');

-- jobs_failed_idx: the jobs list filtered on failed or cancelled jobs (rare among finished ones),
-- newest first, and the preview of "retry all matching": without it a state filter walked ids
-- newest first until it had a page (76 ms for 1 failed job in 200,000). Succeeded jobs are not in
-- it (they are most of the table: walking ids finds them at once).
CREATE INDEX jobs_failed_idx ON pgjobs.jobs (id) WHERE state IN ('failed', 'cancelled');

-- Jobs by queue and state, estimated when the table is large: the overview reads this statistic's
-- most common (queue, state) pairs and their frequencies (pg_stats_ext) times the table's row
-- estimate, instead of counting. Kept by ANALYZE (autovacuum), no cost per row.
CREATE STATISTICS pgjobs.jobs_queue_state (mcv) ON queue, state FROM pgjobs.jobs;

-- Rate limiter usage per minute: the take (sql/queue/limits.sql) counts each call granted in its
-- minute's row, in the same statement; the overview shows how busy each limiter was over the last
-- hour (calls x interval / hour). Rows older than two days are deleted by the takes themselves.
CREATE TABLE pgjobs.rate_limit_usage (
    name   text NOT NULL,
    minute timestamptz NOT NULL,
    calls  integer NOT NULL DEFAULT 0,
    PRIMARY KEY (name, minute)
);
