-- Operators' queries (pgjobs.queue.admin): queue pauses, live workers, what no live worker serves.
-- A worker is live while its heartbeat is younger than %(stale_after)s seconds; workers refresh
-- pgjobs.workers.heartbeat_at every few seconds, so a row older than that is a dead worker's.

-- name: pause_queue
-- Pause a queue (no worker claims its jobs until resumed); pausing a paused queue keeps the first
-- pause's time and author. `created` says which happened.
WITH ins AS (
    INSERT INTO pgjobs.queue_pauses (queue, paused_by) VALUES (%(queue)s, %(paused_by)s)
    ON CONFLICT (queue) DO NOTHING
    RETURNING queue, paused_at, paused_by
)
SELECT queue, paused_at, paused_by, true AS created FROM ins
UNION ALL
SELECT queue, paused_at, paused_by, false FROM pgjobs.queue_pauses
WHERE queue = %(queue)s AND NOT EXISTS (SELECT FROM ins);

-- name: resume_queue
-- Resume a paused queue and wake idle workers on it (the notification is sent at commit); no row
-- when the queue was not paused.
WITH del AS (
    DELETE FROM pgjobs.queue_pauses WHERE queue = %(queue)s RETURNING queue, paused_at, paused_by
)
SELECT queue, paused_at, paused_by, pg_notify('pgjobs', queue) IS NULL AS notified FROM del;

-- name: paused_queues
SELECT queue, paused_at, paused_by FROM pgjobs.queue_pauses ORDER BY queue;

-- name: queues
-- Every queue anyone knows of (jobs queued or running, a pause, a live worker, or %(known)s: the
-- app's own), with its unfinished jobs, its live workers and its pause.
WITH counts AS (
    SELECT queue, count(*) FILTER (WHERE state = 'queued') AS queued,
           count(*) FILTER (WHERE state = 'running') AS running
    FROM pgjobs.jobs WHERE state IN ('queued', 'running')
    GROUP BY queue
), served AS (
    SELECT q.queue, count(*) AS workers
    FROM pgjobs.workers w CROSS JOIN LATERAL unnest(w.queues) AS q(queue)
    WHERE w.heartbeat_at > now() - make_interval(secs => %(stale_after)s)
    GROUP BY q.queue
), names AS (
    SELECT queue FROM counts
    UNION SELECT queue FROM served
    UNION SELECT queue FROM pgjobs.queue_pauses
    UNION SELECT unnest(%(known)s::text[])
)
SELECT n.queue, coalesce(c.queued, 0) AS queued, coalesce(c.running, 0) AS running,
       coalesce(s.workers, 0) AS workers, p.queue IS NOT NULL AS paused, p.paused_at, p.paused_by
FROM names n
LEFT JOIN counts c USING (queue)
LEFT JOIN served s USING (queue)
LEFT JOIN pgjobs.queue_pauses p USING (queue)
ORDER BY n.queue;

-- name: workers
-- Workers (live ones, or every row with %(include_stale)s, live first), each with the running jobs it holds.
SELECT w.worker_id, w.app, w.host, w.pid, w.queues, w.kinds, w.concurrency, w.started_at, w.heartbeat_at,
       round(extract(epoch FROM now() - w.heartbeat_at), 1)::float8 AS heartbeat_age_seconds,
       w.heartbeat_at > now() - make_interval(secs => %(stale_after)s) AS live,
       coalesce(r.running, 0) AS running_jobs
FROM pgjobs.workers w
LEFT JOIN (
    SELECT worker_id, count(*) AS running FROM pgjobs.jobs WHERE state = 'running' GROUP BY worker_id
) r USING (worker_id)
WHERE %(include_stale)s OR w.heartbeat_at > now() - make_interval(secs => %(stale_after)s)
ORDER BY live DESC, w.app, w.host, w.started_at, w.worker_id;

-- name: unserved_kinds
-- (kind, queue) pairs of queued jobs that no live worker serves: none runs that kind on that queue.
-- Such jobs wait, queued, until a worker that knows the kind starts.
WITH queued AS (
    SELECT kind, queue, count(*) AS jobs FROM pgjobs.jobs WHERE state = 'queued' GROUP BY kind, queue
)
SELECT q.kind, q.queue, q.jobs
FROM queued q
WHERE NOT EXISTS (
    SELECT FROM pgjobs.workers w
    WHERE w.heartbeat_at > now() - make_interval(secs => %(stale_after)s)
      AND q.kind = ANY (w.kinds) AND q.queue = ANY (w.queues))
ORDER BY q.queue, q.kind;
