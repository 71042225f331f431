-- Queries of the worker's metrics (pgjobs.metrics).

-- name: queue_depth
-- Unfinished jobs per queue: runnable ('queued'), scheduled for later ('scheduled': queued with a
-- future run_at) and 'running', with the age of the oldest runnable one. Reads only the partial
-- indexes' rows (state queued | running), never the finished history; run by one worker at a time.
SELECT queue,
       CASE WHEN state = 'queued' AND run_at > now() THEN 'scheduled' ELSE state::text END AS state,
       count(*)::int8 AS jobs,
       extract(epoch FROM now() - min(run_at) FILTER (WHERE state = 'queued' AND run_at <= now()))::float8
           AS oldest_runnable_seconds
FROM pgjobs.jobs
WHERE state IN ('queued', 'running')
GROUP BY 1, 2
ORDER BY 1, 2;
