-- Periodic jobs: one row per schedule, keyed by (the app that declares it, its name), so two apps on
-- one database never share one. `last_slot` is the newest cron slot a job was enqueued for; a
-- worker enqueues slot S only in the transaction whose conditional UPDATE moved last_slot up to S
-- (`WHERE last_slot IS NULL OR last_slot < S`), so however many workers race for a slot, one wins.
-- `since`: slots before it are never enqueued (set when the schedule first appears and whenever its
-- cron changes), so a new or changed schedule starts with its next slot, not with one in the past.
CREATE TABLE pgjobs.schedules (
    app         text NOT NULL,
    name        text NOT NULL,
    cron        text NOT NULL,
    kind        text NOT NULL,
    since       timestamptz NOT NULL DEFAULT now(),
    last_slot   timestamptz,
    last_job_id bigint,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app, name)
);
