-- Named queries of the periodic-job scheduler (pgjobs.queue.periodic); table pgjobs.schedules.

-- name: sync_schedule
-- Record a declared schedule (every worker, at start). A new schedule, or one whose cron changed,
-- counts from now: `since` moves, so no slot before the change is ever enqueued for it.
INSERT INTO pgjobs.schedules AS s (app, name, cron, kind, since)
VALUES (%(app)s, %(name)s, %(cron)s, %(kind)s, clock_timestamp())
ON CONFLICT (app, name) DO UPDATE
SET cron = excluded.cron,
    kind = excluded.kind,
    since = CASE WHEN s.cron = excluded.cron THEN s.since ELSE excluded.since END,
    updated_at = clock_timestamp()
WHERE s.cron IS DISTINCT FROM excluded.cron OR s.kind IS DISTINCT FROM excluded.kind;

-- name: clock
-- The database's clock: every worker reckons slots by it, whatever its own host's clock says.
SELECT clock_timestamp() AS now;

-- name: take_slot
-- Claim slot %(slot)s for one schedule: the first transaction to move last_slot up to it wins, any
-- other (blocked on the row lock, then re-checking the row) updates nothing. The caller enqueues the
-- slot's job in this same transaction. The cron must be the one this worker declares (during a
-- deploy that changes it, the workers of the newest start own the schedule), the slot may not
-- precede `since`, and never lies ahead of the database's clock.
UPDATE pgjobs.schedules
SET last_slot = %(slot)s, updated_at = clock_timestamp()
WHERE app = %(app)s AND name = %(name)s AND cron = %(cron)s
  AND (last_slot IS NULL OR last_slot < %(slot)s)
  AND %(slot)s >= since AND %(slot)s <= clock_timestamp()
RETURNING last_slot;

-- name: record_slot_job
-- The job the slot enqueued (same transaction as take_slot).
UPDATE pgjobs.schedules SET last_job_id = %(job_id)s WHERE app = %(app)s AND name = %(name)s;

-- name: list_schedules
-- Stored state of the schedules of the given apps (`pgjobs schedules`), with the database's clock.
SELECT app, name, cron, kind, since, last_slot, last_job_id, clock_timestamp() AS now
FROM pgjobs.schedules
WHERE app = ANY(%(apps)s::text[])
ORDER BY app, name;
