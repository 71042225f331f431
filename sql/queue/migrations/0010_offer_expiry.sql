-- Hand-off liveness that a worker which cannot answer loses quickly (issue 18).
--
-- Until now enqueue_handoff picked a waiter whose listener held its session advisory lock. The
-- server keeps that lock as long as it believes the TCP peer lives: a worker behind a half-open
-- network, or stopped (SIGSTOP, a long GC pause, a frozen VM), kept being handed jobs, and each
-- waited a full lease before the rescuer gave it to someone else (bin/chaos handoff_partitioned:
-- 20 of 20 autocommit enqueues, median 3.8 s with a 3 s lease).
--
-- An offer now carries the last time its worker was heard from and an expiry: the worker's idle
-- claims and its listener's probes (same session as the LISTEN) push both forward; an offer whose
-- expiry passed is never picked, and among live offers the one heard from most recently goes
-- first, so a worker that went silent is passed over as soon as a live one has spoken after it.
-- Both NULL on offers written by workers that predate this migration: enqueue_handoff (new) never
-- picks those (they still get their jobs by claim, after the NOTIFY a plain enqueue sends), and
-- new workers still take the advisory lock, so old enqueuers and old rescuers keep working with them.
ALTER TABLE pgjobs.waiters ADD COLUMN heard_at timestamptz;
ALTER TABLE pgjobs.waiters ADD COLUMN expires_at timestamptz;
