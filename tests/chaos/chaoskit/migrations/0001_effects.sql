-- The chaos workload's effects: one row per completed job, written in its completion transaction.
-- No unique key on purpose: a duplicate effect must show up as a second row, not as an error.
CREATE TABLE chaos_effects (
    job_id  bigint NOT NULL,
    attempt integer NOT NULL,
    worker  text NOT NULL,
    at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX chaos_effects_at ON chaos_effects (at);
