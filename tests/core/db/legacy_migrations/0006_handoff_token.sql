-- One lease token per waiting worker, chosen by the worker and kept in its offer: enqueue_handoff
-- leases a handed job with it, so neither the enqueuer nor the notification carries a token and
-- the worker, which already holds it, parses none (~45 µs of an idle machine's wake-up, measured).
-- Fencing stays per job: a token is only ever written by a hand-off (new rows) or by a claim
-- (a fresh token each), so a job re-queued after its lease expired never gets this one back.
-- Nullable: an offer written by a worker that predates this column is simply never picked.
ALTER TABLE pgjobs.waiters ADD COLUMN lease_token uuid;
