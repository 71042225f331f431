-- The dashboard's reads of the queue (pgjobs.dashboard). Every one is bounded: by an index, a LIMIT,
-- a time window or a cap; the dashboard runs each under a statement timeout.

-- name: counts_active
-- Queued and running jobs by queue: exact, each from its partial index (jobs_claim_idx,
-- jobs_running_idx), so the finished jobs are never read.
SELECT queue, 'queued' AS state, count(*) AS n FROM pgjobs.jobs WHERE state = 'queued' GROUP BY queue
UNION ALL
SELECT queue, 'running', count(*) FROM pgjobs.jobs WHERE state = 'running' GROUP BY queue;

-- name: counts_capped
-- Finished jobs by queue and state among the newest %(cap)s ids: exact while jobs_finished is
-- smaller than the cap (the overview uses it only then, or when the estimate below is not readable).
SELECT queue, state::text AS state, count(*) AS n
FROM (SELECT queue, state FROM pgjobs.jobs_finished ORDER BY id DESC LIMIT %(cap)s) j
GROUP BY queue, state;

-- name: table_rows
-- jobs_finished's row estimate: its day partitions' (queue migration 0012), each kept by
-- VACUUM/ANALYZE (autovacuum never analyzes a partitioned table's parent): no count.
SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint AS n
FROM pg_partition_tree('pgjobs.jobs_finished') t JOIN pg_class c ON c.oid = t.relid
WHERE t.isleaf;

-- name: counts_estimated
-- Finished jobs by queue and state, estimated per partition: the (queue, state) pairs ANALYZE found
-- most common (each partition's statistics <partition>_queue_state, queue migrations 0009 and 0012)
-- with their frequencies and the partition's row estimate; the overview multiplies and sums them.
-- pg_stats_ext shows them to the table's owner only: no row for anyone else (the overview then
-- counts the newest jobs instead).
SELECT s.attnames, s.most_common_vals AS vals, s.most_common_freqs AS freqs, greatest(c.reltuples, 0) AS n
FROM pg_partition_tree('pgjobs.jobs_finished') t
JOIN pg_class c ON c.oid = t.relid
JOIN pg_stats_ext s ON s.schemaname = 'pgjobs' AND s.tablename = c.relname
                   AND s.statistics_name = c.relname || '_queue_state'
WHERE t.isleaf AND s.most_common_vals IS NOT NULL;

-- name: oldest_runnable
-- Per queue, the run_at of its oldest job that is due: a skip scan of jobs_claim_idx (queue,
-- kind, priority, run_at, id), one index probe per (queue, kind, priority) present and one for
-- its earliest run_at, instead of reading every queued job's entry (a backlog of millions).
WITH RECURSIVE groups AS (
    (SELECT queue, kind, priority FROM pgjobs.jobs WHERE state = 'queued'
     ORDER BY queue, kind, priority LIMIT 1)
    UNION ALL
    SELECT n.queue, n.kind, n.priority
    FROM groups g
    CROSS JOIN LATERAL (SELECT j.queue, j.kind, j.priority FROM pgjobs.jobs j
                        WHERE j.state = 'queued' AND (j.queue, j.kind, j.priority) > (g.queue, g.kind, g.priority)
                        ORDER BY j.queue, j.kind, j.priority LIMIT 1) n
)
SELECT g.queue, min(o.run_at) AS run_at
FROM groups g
CROSS JOIN LATERAL (SELECT j.run_at FROM pgjobs.jobs j
                    WHERE j.state = 'queued' AND j.queue = g.queue AND j.kind = g.kind
                      AND j.priority = g.priority AND j.run_at <= now()
                    ORDER BY j.run_at LIMIT 1) o
GROUP BY g.queue
ORDER BY 2;

-- name: running
-- Running jobs (jobs_running_idx), the soonest lease expiry first; expired ones are flagged.
SELECT id, root_id, kind, queue, attempt, worker_id, attempted_at, lease_expires_at,
       lease_expires_at < now() AS expired
FROM pgjobs.jobs
WHERE state = 'running'
ORDER BY lease_expires_at
LIMIT %(limit)s;

-- name: throughput
-- Finished jobs per bucket (succeeded / failed) since %(since)s, bucketed by %(bucket)s, through
-- jobs_finished_idx (queue migration 0009). The overview asks only for the minutes it has not
-- kept from an earlier look (pgjobs.dashboard.pages.Throughput).
SELECT date_bin(%(bucket)s::interval, finished_at, %(since)s::timestamptz) AS at,
       count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE state = 'failed') AS failed
FROM pgjobs.jobs
WHERE finished_at >= %(since)s AND state IN ('succeeded', 'failed')
GROUP BY 1
ORDER BY 1;

-- name: limiters
-- Every global rate limiter: its interval, its next free slot, how far ahead it is booked (each
-- caller reserves one slot, so booked-ahead / interval = callers waiting on it), and its calls in
-- the last hour (pgjobs.rate_limit_usage, counted by each take).
SELECT r.name, r.interval_ms, r.next_slot, r.updated_at,
       greatest(0, extract(epoch FROM r.next_slot - clock_timestamp()) * 1000) AS ahead_ms,
       coalesce(u.calls, 0) AS calls_hour, u.minutes
FROM pgjobs.rate_limits r
LEFT JOIN LATERAL (SELECT sum(calls)::bigint AS calls,
                          array_agg(ARRAY[extract(epoch FROM minute)::bigint, calls::bigint] ORDER BY minute) AS minutes
                   FROM pgjobs.rate_limit_usage u
                   WHERE u.name = r.name AND u.minute > now() - interval '1 hour') u ON true
ORDER BY r.name;

-- name: jobs
-- The jobs list, newest first, keyset-paged on id (`before`), every filter optional, bounded by
-- a created_at window and by `floor`: the page reads ids from `before` down to `floor` at most
-- (the page offers to search further down), so a filter that matches little never walks the
-- whole table. A failed or cancelled filter reads jobs_failed_idx (queue migration 0009).
SELECT id, root_id, parent_id, kind, queue, state::text AS state, priority, attempt, max_attempts,
       run_at, created_at, finished_at, last_error
FROM pgjobs.jobs
WHERE created_at >= %(since)s AND created_at < %(until)s
  AND (%(before)s::bigint IS NULL OR id < %(before)s)
  AND (%(floor)s::bigint IS NULL OR id >= %(floor)s)
  AND (%(state)s::text IS NULL OR state = %(state)s::pgjobs.job_state)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(kind)s::text IS NULL OR kind = %(kind)s)
  AND (%(priority)s::int IS NULL OR priority = %(priority)s)
  AND (%(id)s::bigint IS NULL OR id = %(id)s)
  AND (%(root_id)s::bigint IS NULL OR root_id = %(root_id)s)
  AND (%(payload)s::jsonb IS NULL OR payload @> %(payload)s::jsonb)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: matching_ids
-- The ids "retry/cancel all matching" acts on (and the list previews the count of): the jobs
-- list's filters without a page or a floor, ids only, at most %(limit)s.
SELECT id
FROM pgjobs.jobs
WHERE created_at >= %(since)s AND created_at < %(until)s
  AND (%(state)s::text IS NULL OR state = %(state)s::pgjobs.job_state)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(kind)s::text IS NULL OR kind = %(kind)s)
  AND (%(priority)s::int IS NULL OR priority = %(priority)s)
  AND (%(id)s::bigint IS NULL OR id = %(id)s)
  AND (%(root_id)s::bigint IS NULL OR root_id = %(root_id)s)
  AND (%(payload)s::jsonb IS NULL OR payload @> %(payload)s::jsonb)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: top_id
SELECT coalesce(max(id), 0) + 1 AS id FROM pgjobs.jobs;

-- name: created_below
-- When the newest job below id %(id)s was created (whether searching further down is in the window).
SELECT created_at FROM pgjobs.jobs WHERE id < %(id)s ORDER BY id DESC LIMIT 1;

-- name: job
SELECT id, root_id, parent_id, kind, queue, payload, state::text AS state, priority, run_at, attempt,
       snoozes, max_attempts, dedupe_key, worker_id, lease_expires_at, last_error, errors, created_at,
       attempted_at, finished_at
FROM pgjobs.jobs
WHERE id = %(id)s;

-- name: children
-- A job's direct children (through jobs_root_idx: they share its root).
SELECT id, kind, state::text AS state, attempt, created_at, finished_at
FROM pgjobs.jobs
WHERE root_id = %(root_id)s AND parent_id = %(id)s
ORDER BY id
LIMIT %(limit)s;

-- name: job_exists
SELECT EXISTS (SELECT FROM pgjobs.jobs WHERE id = %(id)s);
