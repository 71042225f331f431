-- The dashboard's reads of the queue (pgjobs.dashboard). Every one is bounded: by an index, a LIMIT,
-- a time window or a cap; the dashboard runs each under a statement timeout.

-- name: counts_active
-- Queued and running jobs by queue: exact, each from its partial index (jobs_claim_idx,
-- jobs_running_idx), so the finished jobs are never read.
SELECT queue, 'queued' AS state, count(*) AS n FROM pgjobs.jobs WHERE state = 'queued' GROUP BY queue
UNION ALL
SELECT queue, 'running', count(*) FROM pgjobs.jobs WHERE state = 'running' GROUP BY queue;

-- name: counts_capped
-- Jobs by queue and state among the newest %(cap)s ids: exact while the table is smaller than
-- the cap, a lower bound (the page says so) beyond it.
SELECT queue, state::text AS state, count(*) AS n
FROM (SELECT queue, state FROM pgjobs.jobs ORDER BY id DESC LIMIT %(cap)s) j
GROUP BY queue, state;

-- name: oldest_runnable
-- Per queue, the run_at of its oldest job that is due (jobs_claim_idx).
SELECT q.queue, o.run_at
FROM (SELECT DISTINCT queue FROM pgjobs.jobs WHERE state = 'queued') q
CROSS JOIN LATERAL (SELECT min(run_at) AS run_at FROM pgjobs.jobs j
                    WHERE j.state = 'queued' AND j.queue = q.queue AND j.run_at <= now()) o
WHERE o.run_at IS NOT NULL
ORDER BY o.run_at;

-- name: running
-- Running jobs (jobs_running_idx), the soonest lease expiry first; expired ones are flagged.
SELECT id, root_id, kind, queue, attempt, worker_id, attempted_at, lease_expires_at,
       lease_expires_at < now() AS expired
FROM pgjobs.jobs
WHERE state = 'running'
ORDER BY lease_expires_at
LIMIT %(limit)s;

-- name: throughput
-- Finished jobs per bucket (succeeded / failed) since %(since)s, bucketed by %(bucket)s.
SELECT date_bin(%(bucket)s::interval, finished_at, %(since)s::timestamptz) AS at,
       count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE state = 'failed') AS failed
FROM pgjobs.jobs
WHERE finished_at >= %(since)s AND state IN ('succeeded', 'failed')
GROUP BY 1
ORDER BY 1;

-- name: limiters
-- Every global rate limiter: its interval, its next free slot, and how far ahead it is booked
-- (each caller reserves one slot, so booked-ahead / interval = callers waiting on it).
SELECT name, interval_ms, next_slot, updated_at,
       greatest(0, extract(epoch FROM next_slot - clock_timestamp()) * 1000) AS ahead_ms
FROM pgjobs.rate_limits
ORDER BY name;

-- name: jobs
-- The jobs list, newest first, keyset-paged on id (`before`), every filter optional, bounded by
-- a created_at window.
SELECT id, root_id, parent_id, kind, queue, state::text AS state, priority, attempt, max_attempts,
       run_at, created_at, finished_at, last_error
FROM pgjobs.jobs
WHERE created_at >= %(since)s AND created_at < %(until)s
  AND (%(before)s::bigint IS NULL OR id < %(before)s)
  AND (%(state)s::text IS NULL OR state = %(state)s::pgjobs.job_state)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(kind)s::text IS NULL OR kind = %(kind)s)
  AND (%(priority)s::int IS NULL OR priority = %(priority)s)
  AND (%(id)s::bigint IS NULL OR id = %(id)s)
  AND (%(root_id)s::bigint IS NULL OR root_id = %(root_id)s)
  AND (%(payload)s::jsonb IS NULL OR payload @> %(payload)s::jsonb)
ORDER BY id DESC
LIMIT %(limit)s;

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
