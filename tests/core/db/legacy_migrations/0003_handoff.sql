-- Hand-off: an enqueue that is its own transaction gives its job straight to an idle worker.
--
-- A worker with free slots and nothing runnable advertises them here (its claim statement keeps the
-- row up to date). enqueue_handoff picks the longest-idle live waiter of the job's queue, inserts
-- the job already leased to it and notifies the worker's own channel with the claimed row: the
-- worker starts the job without a claim round trip. Liveness: each worker's listener session holds
-- the session advisory lock `lock_key`; a waiter whose lock is free is dead and is never chosen
-- (the rescuer deletes such rows).
CREATE TABLE pgjobs.waiters (
    worker_id     text PRIMARY KEY,
    queues        text[] NOT NULL,
    channel       text NOT NULL,
    lock_key      bigint NOT NULL,
    free          integer NOT NULL CHECK (free >= 0),
    lease_seconds double precision NOT NULL CHECK (lease_seconds > 0),
    since         timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- (job_id) lookups use the unique (job_id, attempt) index: this one only cost every audit insert.
DROP INDEX public.enrichment_log_job_idx;
