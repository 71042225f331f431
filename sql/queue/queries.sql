-- Named queries of the queue core (schema pgjobs). Each block starts with `-- name: NAME`.
-- Array parameters use %(name)b: psycopg adapts lists in binary, far cheaper than text arrays.
-- Every outcome statement is fenced on id AND lease_token: a worker whose lease was taken over
-- matches no row, and the caller rolls its whole transaction back.

-- name: enqueue
-- Insert one root job (root_id = its own id), or return the unfinished job holding its dedupe key.
WITH new AS (
    SELECT nextval('pgjobs.job_id_seq') AS id
), ins AS (
    INSERT INTO pgjobs.jobs_live (id, root_id, kind, queue, payload, priority, run_at,
                             max_attempts, backoff_base_ms, backoff_cap_ms, dedupe_key)
    SELECT new.id, new.id, %(kind)s, %(queue)s, %(payload)s::jsonb, %(priority)s,
           coalesce(%(run_at)s, now()) + make_interval(secs => %(delay)s),
           %(max_attempts)s, %(backoff_base_ms)s, %(backoff_cap_ms)s, %(dedupe_key)s
    FROM new
    ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND state IN ('queued', 'running') DO NOTHING
    RETURNING id, root_id, queue
)
SELECT id, root_id, true AS created, pg_notify('pgjobs', queue) IS NULL AS notified FROM ins
UNION ALL
SELECT id, root_id, false, false FROM pgjobs.jobs_live
WHERE dedupe_key = %(dedupe_key)s AND state IN ('queued', 'running') AND NOT EXISTS (SELECT FROM ins);

-- name: enqueue_handoff
-- Enqueue one root job and, when a live worker waits idle on its queue (not paused) and runs its
-- kind, hand it over in the same
-- statement: the row goes in already leased to that worker (attempt 1, the lease token its offer
-- holds) and the notification on the worker's own channel carries it, so the worker starts it
-- without claiming. With no such waiter (or a job too big for a notification: %(note)s NULL, or a
-- long payload) this is a plain enqueue. Callers use it only for a statement that is its own
-- transaction, so the lease starts when the job becomes visible. The caller makes the
-- notification's middle (%(note)s: `,"kind","queue",priority,max_attempts,backoff_base_ms,
-- backoff_cap_ms]`): json_build_array here cost ~40 µs of every wake-up. The notification is
-- `[id,run_at epoch` + note + newline + the payload as jsonb prints it (so a handed job reads the
-- same payload text as a claimed one).
-- The waiter is only read, never locked or updated (that cost ~0.1 ms of every wake-up): its offer
-- is refreshed by its own claims, and a worker handed more than it has free slots for keeps the
-- extra ones leased and starts them as slots free up (pgjobs.queue.worker), withdrawing its offer.
-- Liveness (migration 0010): only an offer that has not expired (its worker's idle claims and
-- listener probes push expires_at forward), of a waiter whose listener session still holds its
-- lock (the server frees it at once when that session ends); the one heard from most recently
-- first, so a worker that went silent (half-open network, SIGSTOP) is passed over as soon as
-- another has spoken since, long before its offer expires.
WITH taken AS (
    SELECT w.worker_id, w.channel, w.lease_seconds, w.lease_token
    FROM pgjobs.waiters w
    WHERE %(queue)s = ANY (w.queues) AND %(kind)s = ANY (w.kinds) AND w.free > 0 AND w.lease_token IS NOT NULL
      AND w.expires_at > now()
      AND NOT EXISTS (SELECT FROM pgjobs.queue_pauses p WHERE p.queue = %(queue)s)
      AND %(note)s::text IS NOT NULL AND octet_length(%(payload)s::text) <= 6900  -- NOTIFY takes < 8000 bytes
      AND NOT pg_try_advisory_xact_lock_shared(w.lock_key)  -- its listener holds it while alive
    ORDER BY w.heard_at DESC
    LIMIT 1
), new AS (
    SELECT nextval('pgjobs.job_id_seq') AS id
), ins AS (
    INSERT INTO pgjobs.jobs_live (id, root_id, kind, queue, payload, priority, max_attempts, backoff_base_ms,
                             backoff_cap_ms, state, attempt, lease_token, lease_expires_at, attempted_at,
                             worker_id)
    SELECT new.id, new.id, %(kind)s, %(queue)s, %(payload)s::jsonb, %(priority)s, %(max_attempts)s,
           %(backoff_base_ms)s, %(backoff_cap_ms)s,
           CASE WHEN t.worker_id IS NULL THEN 'queued' ELSE 'running' END::pgjobs.job_state,
           (t.worker_id IS NOT NULL)::int,
           t.lease_token,
           now() + make_interval(secs => t.lease_seconds),
           CASE WHEN t.worker_id IS NOT NULL THEN now() END,
           t.worker_id
    FROM new LEFT JOIN taken t ON true
    RETURNING id, root_id, queue, run_at, payload
)
SELECT ins.id, ins.root_id, true AS created,
       pg_notify(coalesce(t.channel, 'pgjobs'), CASE WHEN t.channel IS NULL THEN ins.queue ELSE
           '[' || ins.id || ',' || extract(epoch FROM ins.run_at) || %(note)s::text || E'\n' || ins.payload::text
       END) IS NULL AS notified
FROM ins LEFT JOIN taken t ON true;

-- name: enqueue_child
-- Insert a child of %(parent_id)s: its root comes from the parent row, never from the caller.
WITH ins AS (
    INSERT INTO pgjobs.jobs_live (id, root_id, parent_id, kind, queue, payload, priority, run_at,
                             max_attempts, backoff_base_ms, backoff_cap_ms, dedupe_key)
    SELECT nextval('pgjobs.job_id_seq'), p.root_id, p.id, %(kind)s, %(queue)s, %(payload)s::jsonb, %(priority)s,
           coalesce(%(run_at)s, now()) + make_interval(secs => %(delay)s),
           %(max_attempts)s, %(backoff_base_ms)s, %(backoff_cap_ms)s, %(dedupe_key)s
    FROM pgjobs.jobs p
    WHERE p.id = %(parent_id)s
    ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND state IN ('queued', 'running') DO NOTHING
    RETURNING id, root_id, queue
)
SELECT id, root_id, true AS created, pg_notify('pgjobs', queue) IS NULL AS notified FROM ins
UNION ALL
SELECT id, root_id, false, false FROM pgjobs.jobs_live
WHERE dedupe_key = %(dedupe_key)s AND state IN ('queued', 'running') AND NOT EXISTS (SELECT FROM ins);

-- name: enqueue_children
-- Insert many children at once (a group's deferred children); each takes its root from its parent row.
WITH rows AS (
    SELECT r.*, p.root_id
    FROM unnest(%(parent_ids)b::bigint[], %(kinds)b::text[], %(queues)b::text[], %(payloads)b::jsonb[],
                %(priorities)b::int[], %(run_ats)b::timestamptz[], %(delays)b::float8[], %(max_attempts)b::int[],
                %(backoff_base_ms)b::int[], %(backoff_cap_ms)b::int[], %(dedupe_keys)b::text[])
         WITH ORDINALITY AS r(parent_id, kind, queue, payload, priority, run_at, delay, max_attempts,
                              backoff_base_ms, backoff_cap_ms, dedupe_key, n)
    JOIN pgjobs.jobs p ON p.id = r.parent_id
    ORDER BY r.n
), ins AS (
    INSERT INTO pgjobs.jobs_live (id, root_id, parent_id, kind, queue, payload, priority, run_at,
                             max_attempts, backoff_base_ms, backoff_cap_ms, dedupe_key)
    SELECT nextval('pgjobs.job_id_seq'), root_id, parent_id, kind, queue, payload, priority,
           coalesce(run_at, now()) + make_interval(secs => delay), max_attempts, backoff_base_ms,
           backoff_cap_ms, dedupe_key
    FROM rows
    ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND state IN ('queued', 'running') DO NOTHING
    RETURNING queue
)
SELECT count(*) AS inserted, pg_notify('pgjobs', queue) IS NULL AS notified FROM ins GROUP BY queue;

-- name: copy_children
-- Bulk load of a group's plain children (no dedupe key, no schedule): the cheapest insert there is.
-- Each row's root_id is its parent's, taken from the parent's claimed row (a root never changes);
-- the parent row exists and is locked by this transaction, which has just recorded its outcome.
COPY pgjobs.jobs_live (root_id, parent_id, kind, queue, payload, priority, max_attempts, backoff_base_ms, backoff_cap_ms)
FROM STDIN;

-- name: enqueue_many
-- Bulk insert of root jobs from parallel arrays in one statement; duplicates of a dedupe key are skipped.
WITH rows AS (
    SELECT nextval('pgjobs.job_id_seq') AS id, r.*
    FROM unnest(%(kinds)b::text[], %(queues)b::text[], %(payloads)b::jsonb[], %(priorities)b::int[],
                %(run_ats)b::timestamptz[], %(delays)b::float8[], %(max_attempts)b::int[],
                %(backoff_base_ms)b::int[], %(backoff_cap_ms)b::int[], %(dedupe_keys)b::text[])
         AS r(kind, queue, payload, priority, run_at, delay, max_attempts, backoff_base_ms, backoff_cap_ms,
              dedupe_key)
), ins AS (
    INSERT INTO pgjobs.jobs_live (id, root_id, kind, queue, payload, priority, run_at,
                             max_attempts, backoff_base_ms, backoff_cap_ms, dedupe_key)
    SELECT id, id, kind, queue, payload, priority, coalesce(run_at, now()) + make_interval(secs => delay),
           max_attempts, backoff_base_ms, backoff_cap_ms, dedupe_key
    FROM rows
    ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND state IN ('queued', 'running') DO NOTHING
    RETURNING id, queue
)
SELECT count(*) AS inserted, pg_notify('pgjobs', queue) IS NULL AS notified FROM ins GROUP BY queue;

-- name: next_job_ids
-- Ids for a COPY of root jobs (each root's root_id is its own id).
SELECT nextval('pgjobs.job_id_seq') FROM generate_series(1, %(n)s);

-- name: copy_jobs
-- Bulk load of plain root jobs; run_at, state and the rest take their defaults.
COPY pgjobs.jobs_live (id, root_id, kind, queue, payload, priority, max_attempts, backoff_base_ms, backoff_cap_ms)
FROM STDIN;

-- name: notify_queue
SELECT pg_notify('pgjobs', %(queue)s);

-- name: claim_jobs
-- Mark up to %(limit)s runnable jobs of the worker's %(kinds)s running for one worker; SKIP LOCKED lets
-- workers claim side by side, and keep the worker's hand-off offer (pgjobs.waiters) in step, in the
-- same statement. Paused queues (pgjobs.queue_pauses) are skipped: their jobs stay queued.
-- One fresh %(lease_token)s per claim fences all its jobs: fencing is on (id, token), and any later
-- claim of one of them (after its lease expired) writes another token. Rows come back without it.
-- One index scan per claim range (LATERAL: equality on jobs_claim_idx's two leading columns keeps
-- its order, so the scan never walks finished rows or sorts, on PostgreSQL 15 as on 18), then the
-- best across ranges (migration 0006 records the trade-off).
-- Claim ranges (pgjobs.queue.jobs.ClaimFloors builds them): each claimed job leaves a dead entry in
-- jobs_claim_idx that vacuum cannot remove while any session holds an older snapshot, and a scan
-- from the start of (queue, kind) walks them all, each with a heap visit (100,000 claimed jobs
-- behind a REPEATABLE READ snapshot: 7.5 ms per idle claim, 24,000 buffers at 1,000,000). So a
-- worker remembers, per (queue, kind, priority), the last (run_at, id) it claimed (its floor) and
-- scans from there: each range is one priority from its floor (%(lo_*)s, inclusive) up to the next
-- floored priority (%(hi_priorities)s, exclusive), plus one range below the lowest; a range without
-- a floor starts at the beginning. A floor younger than %(floor_margin)s seconds is moved back to
-- now() minus the margin: a transaction that took run_at = now() at its start and committed after
-- a later job was claimed (enqueue, retry, rescue) still lands inside the range. The worker drops
-- its floors every few seconds and scans whole ranges (jobs enqueued with a past run_at, rows
-- skipped because another session held their lock).
WITH next AS (
    SELECT j.id
    FROM (SELECT * FROM unnest(%(r_queues)b::text[], %(r_kinds)b::text[], %(lo_priorities)b::int[],
                               %(lo_run_ats)b::timestamptz[], %(lo_ids)b::bigint[], %(hi_priorities)b::bigint[])
                        AS r(queue, kind, lo_p, lo_r, lo_i, hi_p)
          WHERE NOT EXISTS (SELECT FROM pgjobs.queue_pauses p WHERE p.queue = r.queue)) AS r
    CROSS JOIN LATERAL (
        SELECT id, priority, run_at FROM pgjobs.jobs_live
        WHERE state = 'queued' AND queue = r.queue AND kind = r.kind AND run_at <= now()
          AND (priority, run_at, id) >= (r.lo_p, least(r.lo_r, now() - make_interval(secs => %(floor_margin)s)),
                                         CASE WHEN r.lo_r <= now() - make_interval(secs => %(floor_margin)s)
                                              THEN r.lo_i ELSE -9223372036854775808 END)
          AND priority < r.hi_p
        ORDER BY priority, run_at, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS j
    ORDER BY j.priority, j.run_at, j.id
    LIMIT %(limit)s
), claimed AS (
    UPDATE pgjobs.jobs_live j
    SET state = 'running', attempt = j.attempt + 1, lease_token = %(lease_token)s,
        lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
        attempted_at = now(), worker_id = %(worker_id)s
    -- Not a join with `next`: after a VACUUM of jobs_live with (almost) no live rows left, the
    -- planner takes the table for empty (0 rows over its pages) and put it first in the join,
    -- reading its whole primary key, dead entries and all (horizon bench: 552,656 buffers for an
    -- idle claim behind 300,000 dead jobs). `= ANY` is one primary-key probe per claimed id.
    WHERE j.id = ANY (ARRAY(SELECT id FROM next))
    RETURNING j.id, j.root_id, j.parent_id, j.kind, j.queue, j.payload::text AS payload, j.priority, j.run_at,
              j.attempt, j.snoozes, j.max_attempts, j.backoff_base_ms, j.backoff_cap_ms, j.dedupe_key
), offer AS (
    -- Found less than asked: nothing else is runnable, so offer the slots left for hand-off
    -- (none when the claim was full, or when %(idle_slots)s is 0: burst or stopping workers take none).
    SELECT CASE WHEN count(*) < %(limit)s THEN greatest(%(idle_slots)s - count(*), 0) ELSE 0 END AS free
    FROM claimed
), offered AS (
    INSERT INTO pgjobs.waiters (worker_id, queues, kinds, channel, lock_key, free, lease_seconds, lease_token,
                                heard_at, expires_at)
    SELECT %(worker_id)s, %(queues)b::text[], %(kinds)b::text[], %(channel)s, %(lock_key)s, offer.free,
           %(lease_seconds)s, %(handoff_token)s, clock_timestamp(),
           clock_timestamp() + make_interval(secs => %(offer_ttl)s)
    FROM offer WHERE offer.free > 0
    ON CONFLICT (worker_id) DO NOTHING
), changed AS (
    -- Only a changed offer is written (enqueue_handoff only reads it), or a standing one last
    -- heard of more than %(offer_refresh)s seconds ago: its proof of life (migration 0010).
    UPDATE pgjobs.waiters w
    SET free = offer.free, since = CASE WHEN w.free <> offer.free THEN clock_timestamp() ELSE w.since END,
        heard_at = clock_timestamp(), expires_at = clock_timestamp() + make_interval(secs => %(offer_ttl)s)
    FROM offer
    WHERE w.worker_id = %(worker_id)s
      AND (w.free <> offer.free OR (offer.free > 0 AND (w.heard_at IS NULL
           OR w.heard_at < clock_timestamp() - make_interval(secs => %(offer_refresh)s))))
)
SELECT * FROM claimed;

-- name: apply_outcomes
-- Record the outcomes of several attempts in one statement, each fenced on its own lease token.
-- outcome (each Outcome class's `name`): complete | retry (terminal once attempts are spent) |
-- discard (terminal) | snooze (no attempt spent) | hand_back (the run is undone: attempt
-- decremented). A failure caused by an exception or a timeout also stores its traceback in the
-- attempt's `errors` entry. Returns the rows that still held their lease, with their new state;
-- the row locks this takes keep rescuer and cancel away until the caller's transaction commits.
-- A terminal outcome moves the row to jobs_finished (migration 0011); the rest stay in jobs_live.
-- The statement lives in the function pgjobs.apply_outcomes (queue migration 0013): it finds the
-- group's rows by `id = ANY`, planned with nested loops off, whatever jobs_live's statistics say.
SELECT id, state FROM pgjobs.apply_outcomes(%(ids)b::bigint[], %(tokens)b::uuid[], %(outcomes)b::text[],
                                            %(delays)b::float8[], %(errors)b::text[], %(tracebacks)b::text[]);

-- name: complete_jobs
-- apply_outcomes for a group whose every outcome is `complete` (the common case), fenced the same
-- way: the function pgjobs.complete_jobs (queue migrations 0011 and 0013, where its statement
-- lives) moves the group's rows from jobs_live to jobs_finished and returns their ids. Its
-- parameters are text:
-- psycopg adapts a list parameter element by element in Python (~1 µs per job and array, measured)
-- while the caller's str.join is ~50x cheaper. %(ids)s is "id,id,…"; %(slots)s gives each job's
-- 1-based index into %(tokens)b, the group's distinct lease tokens (one per claim), so every job
-- is still fenced on its own (id, token) pair.
SELECT id FROM pgjobs.complete_jobs(%(ids)s, %(slots)s, %(tokens)b::uuid[]) AS id;

-- name: extend_leases
-- Heartbeat: push out the leases this worker still holds; returns the ids still held. The worker
-- runs it under a short lock_timeout (pgjobs/queue/worker.py): a row its own completer holds locked
-- makes this round give up at once and retry, rather than wait in a lock order that deadlocked
-- against the completer's group transaction (seen with two workers). (A SKIP LOCKED form avoided
-- the wait too, but its row locks cost the heartbeat its HOT updates on PostgreSQL 15.)
-- No `state = 'running'` here, in complete_jobs or in apply_outcomes: a set lease token means
-- running (CHECK jobs_lease), and that predicate let the planner, on statistics taken while the
-- jobs were queued, walk jobs_running_idx (estimate: 1 row) and re-scan the group's ids once per
-- running job (tests/core/db/test_plans_after_analyze.py; docs/performance.md). The statement lives in
-- the function pgjobs.extend_leases (queue migration 0013), planned like apply_outcomes.
SELECT id FROM pgjobs.extend_leases(%(ids)b::bigint[], %(tokens)b::uuid[], %(lease_seconds)s::float8) AS id;

-- name: rescue_expired
-- Re-queue running jobs whose lease expired (their worker died); the lost run counts as an attempt.
-- A re-queued job keeps its run_at, so it goes back to its place at the front of the queue, not
-- behind everything enqueued since (claim floors skip it until the next whole-range claim, which
-- the rescuing worker makes at once: pgjobs.queue.worker). One that spent its attempts fails, and
-- moves to jobs_finished.
WITH expired AS (
    -- the lost attempt's error, made once for both branches from the row it locks
    SELECT id, attempt - snoozes >= max_attempts AS spent,
           'lease expired: worker ' || coalesce(worker_id, '?') || ' stopped heartbeating' AS last_error,
           errors || jsonb_build_array(jsonb_build_object(
               'attempt', attempt, 'at', now(), 'outcome', 'lease_expired', 'worker', worker_id,
               'error', 'lease expired at ' || lease_expires_at::text)) AS errors
    FROM pgjobs.jobs_live
    WHERE state = 'running' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), spent AS (
    DELETE FROM pgjobs.jobs_live j
    USING expired e
    WHERE j.id = e.id AND e.spent
    RETURNING j.*, e.last_error AS new_last_error, e.errors AS new_errors
), failed AS (
    INSERT INTO pgjobs.jobs_finished (id, root_id, parent_id, kind, queue, payload, state, priority, run_at,
        attempt, snoozes, max_attempts, backoff_base_ms, backoff_cap_ms, dedupe_key, lease_token,
        lease_expires_at, worker_id, last_error, errors, created_at, attempted_at, finished_at)
    SELECT id, root_id, parent_id, kind, queue, payload, 'failed', priority, run_at, attempt, snoozes,
           max_attempts, backoff_base_ms, backoff_cap_ms, dedupe_key, NULL, NULL, worker_id, new_last_error,
           new_errors, created_at, attempted_at, now()
    FROM spent
    RETURNING id, root_id, parent_id, kind, queue, payload, attempt, state::text AS state, last_error
), requeued AS (
    UPDATE pgjobs.jobs_live j
    SET state = 'queued', last_error = e.last_error, errors = e.errors, lease_token = NULL, lease_expires_at = NULL
    FROM expired e
    WHERE j.id = e.id AND NOT e.spent
    RETURNING j.id, j.root_id, j.parent_id, j.kind, j.queue, j.payload, j.attempt, j.state::text AS state,
              j.last_error
)
SELECT * FROM failed
UNION ALL
SELECT * FROM requeued;

-- name: upsert_worker
-- A worker's row in pgjobs.workers: written at start, and again by every heartbeat (busy or idle),
-- which also puts it back if someone pruned it while the worker was unreachable.
INSERT INTO pgjobs.workers (worker_id, app, host, pid, queues, kinds, concurrency)
VALUES (%(worker_id)s, %(app)s, %(host)s, %(pid)s, %(queues)s, %(kinds)s, %(concurrency)s)
ON CONFLICT (worker_id) DO UPDATE SET heartbeat_at = now();

-- name: delete_worker
-- A clean stop removes the worker's row.
DELETE FROM pgjobs.workers WHERE worker_id = %(worker_id)s;

-- name: withdraw_waiter
-- A worker takes back its hand-off offer: when stopping, or when hand-offs filled its slots.
DELETE FROM pgjobs.waiters WHERE worker_id = %(worker_id)s;

-- name: hand_back_orphans
-- After its listener closed: jobs handed to this worker whose notification it never acted on go
-- back to the queue, their run undone (no handler started them).
UPDATE pgjobs.jobs_live
SET state = 'queued', attempt = attempt - 1, lease_token = NULL, lease_expires_at = NULL, run_at = now()
WHERE worker_id = %(worker_id)s AND state = 'running' AND id <> ALL (%(held)b::bigint[])
RETURNING id;

-- name: maintain_finished_partitions
-- The finished jobs' day partitions: the next days' made, past ones left empty dropped (migration 0012).
SELECT partition, action FROM pgjobs.maintain_finished_partitions();

-- name: prune_dead_waiters
-- Offers of workers whose listener session is gone (the lock is free: taking it here proves it),
-- and offers that expired (never picked anyway; a worker that comes back offers again).
DELETE FROM pgjobs.waiters w WHERE w.expires_at < now() OR pg_try_advisory_xact_lock(w.lock_key);

-- name: listener_probe
-- The listener's probe, on the session that LISTENs: is it still listening on 'pgjobs'? And, as
-- proof that worker %(worker_id)s still hears its channel, its standing hand-off offer (if any)
-- stays live for another %(offer_ttl)s seconds ('' for a listener without hand-offs: no row).
WITH refreshed AS (
    UPDATE pgjobs.waiters
    SET heard_at = clock_timestamp(), expires_at = clock_timestamp() + make_interval(secs => %(offer_ttl)s)
    WHERE worker_id = %(worker_id)s
)
SELECT 'pgjobs' = ANY (ARRAY(SELECT pg_listening_channels())) AS listening;

-- name: pending_work
-- For --burst: is anything in these queues running (it may spawn more), or runnable by this worker
-- now (or later, with %(scheduled)s): one of its %(kinds)s, in a queue that is not paused?
SELECT EXISTS (
    SELECT FROM pgjobs.jobs_live
    WHERE queue = ANY(%(queues)b::text[]) AND state = 'running'
) OR EXISTS (
    SELECT FROM pgjobs.jobs_live
    WHERE queue = ANY(%(queues)b::text[]) AND kind = ANY(%(kinds)b::text[]) AND state = 'queued'
      AND (run_at <= now() OR %(scheduled)s)
      AND NOT EXISTS (SELECT FROM pgjobs.queue_pauses p WHERE p.queue = jobs_live.queue)
) AS pending;

-- name: next_run_at
-- When the earliest scheduled job this worker can run becomes runnable (NULL when none is queued),
-- read through the same claim ranges as claim_jobs (so it neither walks the dead entries below the
-- worker's floors nor names a job the next claim would not look at).
SELECT min(m.run_at) AS next_run_at
FROM (SELECT * FROM unnest(%(r_queues)b::text[], %(r_kinds)b::text[], %(lo_priorities)b::int[],
                           %(lo_run_ats)b::timestamptz[], %(lo_ids)b::bigint[], %(hi_priorities)b::bigint[])
                    AS r(queue, kind, lo_p, lo_r, lo_i, hi_p)
      WHERE NOT EXISTS (SELECT FROM pgjobs.queue_pauses p WHERE p.queue = r.queue)) AS r
CROSS JOIN LATERAL (
    SELECT min(run_at) AS run_at FROM pgjobs.jobs_live
    WHERE state = 'queued' AND queue = r.queue AND kind = r.kind
      AND (priority, run_at, id) >= (r.lo_p, least(r.lo_r, now() - make_interval(secs => %(floor_margin)s)),
                                     CASE WHEN r.lo_r <= now() - make_interval(secs => %(floor_margin)s)
                                          THEN r.lo_i ELSE -9223372036854775808 END)
      AND priority < r.hi_p
) AS m;

-- name: cancel_job
-- Cancel one unfinished job (every row of jobs_live is one). A running one loses its lease, so its
-- worker can no longer commit.
WITH gone AS (
    DELETE FROM pgjobs.jobs_live WHERE id = %(id)s RETURNING *
)
INSERT INTO pgjobs.jobs_finished (id, root_id, parent_id, kind, queue, payload, state, priority, run_at,
    attempt, snoozes, max_attempts, backoff_base_ms, backoff_cap_ms, dedupe_key, lease_token,
    lease_expires_at, worker_id, last_error, errors, created_at, attempted_at, finished_at)
SELECT id, root_id, parent_id, kind, queue, payload, 'cancelled', priority, run_at, attempt, snoozes, max_attempts,
       backoff_base_ms, backoff_cap_ms, dedupe_key, NULL, NULL, worker_id, %(reason)s, errors, created_at,
       attempted_at, now()
FROM gone
RETURNING id;

-- name: cancel_family
-- Cancel every unfinished job of a root's family (the root included).
WITH gone AS (
    DELETE FROM pgjobs.jobs_live WHERE root_id = %(root_id)s RETURNING *
)
INSERT INTO pgjobs.jobs_finished (id, root_id, parent_id, kind, queue, payload, state, priority, run_at,
    attempt, snoozes, max_attempts, backoff_base_ms, backoff_cap_ms, dedupe_key, lease_token,
    lease_expires_at, worker_id, last_error, errors, created_at, attempted_at, finished_at)
SELECT id, root_id, parent_id, kind, queue, payload, 'cancelled', priority, run_at, attempt, snoozes, max_attempts,
       backoff_base_ms, backoff_cap_ms, dedupe_key, NULL, NULL, worker_id, %(reason)s, errors, created_at,
       attempted_at, now()
FROM gone
RETURNING id;

-- name: retry_job
-- Operator retry of a finished job: runnable now, with one more attempt if it had spent them all;
-- last_error says who retried it and when (as a cancel's does; each attempt's error stays in errors).
-- The row moves back to jobs_live.
WITH back AS (
    DELETE FROM pgjobs.jobs_finished WHERE id = %(id)s RETURNING *
)
INSERT INTO pgjobs.jobs_live (id, root_id, parent_id, kind, queue, payload, state, priority, run_at,
    attempt, snoozes, max_attempts, backoff_base_ms, backoff_cap_ms, dedupe_key, lease_token,
    lease_expires_at, worker_id, last_error, errors, created_at, attempted_at, finished_at)
SELECT id, root_id, parent_id, kind, queue, payload, 'queued', priority, now(), attempt, snoozes,
       greatest(max_attempts, attempt - snoozes + 1), backoff_base_ms, backoff_cap_ms, dedupe_key, NULL, NULL,
       worker_id, %(reason)s, errors, created_at, attempted_at, NULL
FROM back
RETURNING id, queue;

-- name: prune_scan
-- One step of retention (pgjobs/queue/retention.py): the next %(limit)s roots after %(after)s in id
-- order (the primary key), and the whole families of those whose every job finished before
-- %(cutoff)s deleted; unfinished families stay whole. One pruner at a time: the step holds a
-- transaction advisory lock (waits for it with %(wait)s, else scans nothing while another pruner
-- holds it), so no row needs a lock of its own: a row lock per root doubled the heap writes of a
-- single-job family (measured on 200,000 of them: 1,000-root steps 62k -> 95k jobs deleted/s,
-- 10,000-root steps 100k -> 155k).
-- The DELETE restates what `roots` proved of every row it removes (finished, before the cutoff or
-- with no finished_at) so that the planner leaves out the partitions that cannot hold one: jobs_live
-- and the days from the cutoff on (migrations 0011, 0012). Measured on 200,000 one-job families,
-- 10,000-root steps: 196,000 -> 231,000 jobs deleted/s.
-- Returns jobs deleted, the last root scanned, how many were scanned and the newest one's
-- created_at (the walk ends at a root created after the cutoff).
WITH pruner AS MATERIALIZED (
    SELECT CASE WHEN %(wait)s THEN (SELECT true FROM (SELECT pg_advisory_xact_lock(%(lock_key)s)) AS waited)
                ELSE pg_try_advisory_xact_lock(%(lock_key)s) END AS held
), scan AS MATERIALIZED (
    SELECT id, created_at, state, finished_at FROM pgjobs.jobs
    WHERE id > %(after)s AND parent_id IS NULL AND (SELECT held FROM pruner)
    ORDER BY id
    LIMIT %(limit)s
), roots AS (
    SELECT s.id FROM scan s
    WHERE s.state IN ('succeeded', 'failed', 'cancelled') AND s.finished_at < %(cutoff)s
      AND NOT EXISTS (
          SELECT FROM pgjobs.jobs d
          WHERE d.root_id = s.id AND (d.state IN ('queued', 'running') OR d.finished_at >= %(cutoff)s))
), deleted AS (
    DELETE FROM pgjobs.jobs WHERE root_id IN (SELECT id FROM roots)
      AND state IN ('succeeded', 'failed', 'cancelled') AND (finished_at < %(cutoff)s OR finished_at IS NULL)
    RETURNING 1
)
SELECT (SELECT count(*) FROM deleted)::int, (SELECT max(id) FROM scan), (SELECT count(*) FROM scan)::int,
       (SELECT created_at FROM scan ORDER BY id DESC LIMIT 1);

-- name: get_job
SELECT id, root_id, parent_id, kind, queue, payload, state::text AS state, priority, run_at, attempt, snoozes,
       max_attempts, dedupe_key, worker_id, lease_expires_at, last_error, errors, created_at, attempted_at,
       finished_at
FROM pgjobs.jobs WHERE id = %(id)s;

-- name: list_jobs
SELECT id, root_id, parent_id, kind, queue, state::text AS state, priority, attempt, max_attempts, run_at,
       created_at, finished_at, last_error
FROM pgjobs.jobs
WHERE (%(state)s::text IS NULL OR state::text = %(state)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(root_id)s::bigint IS NULL OR root_id = %(root_id)s::bigint)
  AND (%(kind)s::text IS NULL OR kind = %(kind)s::text)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: family
-- A root's whole family, root first then by id (one index scan on jobs_root_idx).
SELECT id, root_id, parent_id, kind, queue, state::text AS state, attempt, created_at, finished_at, last_error
FROM pgjobs.jobs WHERE root_id = %(root_id)s
ORDER BY (id = root_id) DESC, id;

-- name: stats
-- Counts by queue x state, and the age of the oldest runnable job per queue.
SELECT queue, state::text AS state, count(*) AS jobs,
       extract(epoch FROM now() - min(run_at) FILTER (WHERE state = 'queued' AND run_at <= now()))
           AS oldest_runnable_seconds
FROM pgjobs.jobs
GROUP BY queue, state
ORDER BY queue, state;
