-- The queue core: jobs, global rate limiters.
-- Lineage rule: a root job's root_id is its own id; a child carries its parent's root_id.

CREATE SCHEMA IF NOT EXISTS pgjobs;

CREATE TYPE pgjobs.job_state AS ENUM ('queued', 'running', 'succeeded', 'failed', 'cancelled');

CREATE SEQUENCE pgjobs.job_id_seq AS bigint;

CREATE TABLE pgjobs.jobs (
    id               bigint PRIMARY KEY DEFAULT nextval('pgjobs.job_id_seq'),
    root_id          bigint NOT NULL,
    parent_id        bigint REFERENCES pgjobs.jobs (id),
    kind             text NOT NULL CHECK (kind <> ''),
    queue            text NOT NULL DEFAULT 'default' CHECK (queue <> ''),
    payload          jsonb NOT NULL DEFAULT '{}',
    state            pgjobs.job_state NOT NULL DEFAULT 'queued',
    priority         integer NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL DEFAULT now(),
    -- attempt counts runs (claims); snoozes counts runs handed back without spending an attempt.
    attempt          integer NOT NULL DEFAULT 0,
    snoozes          integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    backoff_base_ms  integer NOT NULL DEFAULT 2000 CHECK (backoff_base_ms >= 0),
    backoff_cap_ms   integer NOT NULL DEFAULT 600000 CHECK (backoff_cap_ms >= 0),
    dedupe_key       text,
    lease_token      uuid,
    lease_expires_at timestamptz,
    worker_id        text,
    last_error       text,
    errors           jsonb NOT NULL DEFAULT '[]',
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempted_at     timestamptz,
    finished_at      timestamptz,
    -- A root points at itself; anything else has a parent and a root that is not itself.
    CONSTRAINT jobs_lineage CHECK (
        (parent_id IS NULL AND root_id = id) OR (parent_id IS NOT NULL AND root_id <> id)
    ),
    -- A running job always holds a lease; nothing else does.
    CONSTRAINT jobs_lease CHECK (
        (state = 'running') = (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL)
    )
);

ALTER SEQUENCE pgjobs.job_id_seq OWNED BY pgjobs.jobs.id;

-- The claim walks this index in (priority, run_at, id) order and sees only runnable rows.
CREATE INDEX jobs_runnable_idx ON pgjobs.jobs (queue, priority, run_at, id) WHERE state = 'queued';
-- A root's whole family is one index scan.
CREATE INDEX jobs_root_idx ON pgjobs.jobs (root_id);
CREATE INDEX jobs_parent_idx ON pgjobs.jobs (parent_id) WHERE parent_id IS NOT NULL;
-- The rescuer looks only at running jobs by lease expiry.
CREATE INDEX jobs_lease_idx ON pgjobs.jobs (lease_expires_at) WHERE state = 'running';
-- At most one unfinished job per dedupe key.
CREATE UNIQUE INDEX jobs_dedupe_key_idx ON pgjobs.jobs (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND state IN ('queued', 'running');

-- The hot table churns: vacuum it early so dead tuples do not pile up behind the claim index.
ALTER TABLE pgjobs.jobs SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);

-- One row per global rate limiter: the next free slot (GCRA's theoretical arrival time).
CREATE TABLE pgjobs.rate_limits (
    name        text PRIMARY KEY,
    interval_ms double precision NOT NULL CHECK (interval_ms > 0),
    next_slot   timestamptz NOT NULL DEFAULT '-infinity',
    updated_at  timestamptz NOT NULL DEFAULT now()
);
