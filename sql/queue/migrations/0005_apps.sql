-- Apps: workers say which app and kinds they run, queues can be paused.
--
-- pgjobs.workers: one row per live worker process, written at start, refreshed by its heartbeat,
-- deleted at a clean stop; `pgjobs workers` lists them and `pgjobs stats` names the queued kinds no
-- live worker serves (a row whose heartbeat is older than a few leases is a dead worker's).
CREATE TABLE pgjobs.workers (
    worker_id    text PRIMARY KEY,
    app          text NOT NULL,
    host         text NOT NULL,
    pid          integer NOT NULL,
    queues       text[] NOT NULL,
    kinds        text[] NOT NULL,
    concurrency  integer NOT NULL CHECK (concurrency >= 1),
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- A paused queue keeps its jobs queued: no worker claims them and no enqueue hands one over,
-- until `pgjobs queues resume` deletes the row. Jobs already running finish.
CREATE TABLE pgjobs.queue_pauses (
    queue     text PRIMARY KEY CHECK (queue <> ''),
    paused_at timestamptz NOT NULL DEFAULT now(),
    paused_by text
);

-- A hand-off offer names the kinds its worker can run: a job of any other kind is never handed to it.
-- Nullable: an offer of an older worker has none, and is never picked.
ALTER TABLE pgjobs.waiters ADD COLUMN kinds text[];
