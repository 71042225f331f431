-- Finished jobs apart from the claim table (issue 16): pgjobs.jobs is now partitioned by state,
-- jobs_live holding queued and running jobs, jobs_finished the rest. Reads of pgjobs.jobs see both,
-- as before; the worker's statements name jobs_live, and an attempt that finishes its job moves the
-- row to jobs_finished (DELETE + INSERT) in the completion transaction.
--
-- Why: beside 10,000,000 finished jobs in one table, every insert and every non-HOT update
-- (claim, completion) found room on a different old page through the free space map (fillfactor
-- 90 leaves ~800 bytes on each): 80,000 jobs landed on 79,990 pages of 381,827, each read from disk
-- and written back, and a drain at concurrency 4,000 ran at 0.43x the empty database's
-- (docs/performance.md). jobs_live only ever holds the unfinished jobs, so its pages stay few and
-- cached; jobs_finished is only inserted into (fillfactor 100: its rows are never updated) and
-- deleted from by retention, so the two tables' dead versions and free space never mix.
--
-- The moves are DELETE + INSERT, not an UPDATE of state through pgjobs.jobs: that would move the row
-- too, but a session waiting to lock it (a claim's SKIP LOCKED, a heartbeat, the rescuer) then fails
-- with "tuple to be locked was already moved to another partition", where a deleted row is simply
-- skipped. An UPDATE through pgjobs.jobs still works for anyone else's one-off statement.
--
-- The upgrade keeps every row in place: the old table becomes jobs_finished (no rewrite of its
-- history), its queued and running rows move to jobs_live, and views on pgjobs.jobs are pointed at
-- the new pgjobs.jobs. The statistics jobs_queue_state (the dashboard's estimated counts of
-- finished jobs, migration 0009) stay with the old table: they now describe jobs_finished.
LOCK TABLE pgjobs.jobs IN ACCESS EXCLUSIVE MODE;

CREATE TEMP TABLE pgjobs_0011_views ON COMMIT DROP AS
SELECT DISTINCT v.oid::regclass::text AS name, pg_get_viewdef(v.oid) AS definition, v.oid
FROM pg_depend d
JOIN pg_rewrite r ON r.oid = d.objid AND d.classid = 'pg_rewrite'::regclass
JOIN pg_class v ON v.oid = r.ev_class AND v.relkind = 'v'
WHERE d.refobjid = 'pgjobs.jobs'::regclass;

ALTER TABLE pgjobs.jobs RENAME TO jobs_finished;
ALTER INDEX pgjobs.jobs_pkey RENAME TO jobs_finished_pkey;
ALTER INDEX pgjobs.jobs_root_idx RENAME TO jobs_finished_root_idx;
ALTER INDEX pgjobs.jobs_finished_idx RENAME TO jobs_finished_at_idx;
ALTER INDEX pgjobs.jobs_claim_idx RENAME TO jobs_claim_idx_0011;
ALTER INDEX pgjobs.jobs_dedupe_key_idx RENAME TO jobs_dedupe_key_idx_0011;
ALTER INDEX pgjobs.jobs_running_idx RENAME TO jobs_running_idx_0011;

CREATE TABLE pgjobs.jobs (LIKE pgjobs.jobs_finished INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY LIST (state);
ALTER SEQUENCE pgjobs.job_id_seq OWNED BY pgjobs.jobs.id;

CREATE TABLE pgjobs.jobs_live PARTITION OF pgjobs.jobs FOR VALUES IN ('queued', 'running')
    WITH (fillfactor = 90, autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02,
          autovacuum_vacuum_cost_delay = 0);
ALTER TABLE pgjobs.jobs_live ADD CONSTRAINT jobs_live_pkey PRIMARY KEY (id);
CREATE INDEX jobs_claim_idx ON pgjobs.jobs_live (queue, kind, priority, run_at, id) WHERE state = 'queued';
CREATE UNIQUE INDEX jobs_dedupe_key_idx ON pgjobs.jobs_live (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND state IN ('queued', 'running');
CREATE INDEX jobs_running_idx ON pgjobs.jobs_live (worker_id) WHERE state = 'running';

WITH moved AS (DELETE FROM pgjobs.jobs_finished WHERE state IN ('queued', 'running') RETURNING *)
INSERT INTO pgjobs.jobs_live SELECT * FROM moved;

DROP INDEX pgjobs.jobs_claim_idx_0011;
DROP INDEX pgjobs.jobs_dedupe_key_idx_0011;
DROP INDEX pgjobs.jobs_running_idx_0011;

ALTER TABLE pgjobs.jobs ATTACH PARTITION pgjobs.jobs_finished FOR VALUES IN ('succeeded', 'failed', 'cancelled');
ALTER TABLE pgjobs.jobs_finished SET (fillfactor = 100);
-- One index on root_id across both (a family spans them): attaches the two below.
CREATE INDEX jobs_live_root_idx ON pgjobs.jobs_live (root_id);
CREATE INDEX jobs_root_idx ON pgjobs.jobs (root_id);

DO $$
DECLARE
    v record;
BEGIN
    FOR v IN SELECT name, definition FROM pgjobs_0011_views ORDER BY oid LOOP
        EXECUTE format('CREATE OR REPLACE VIEW %s AS %s', v.name, v.definition);
    END LOOP;
END $$;

-- The all-`complete` group's completion (queries.sql, complete_jobs), in a function so that its
-- plan is made with sequential scans and hash or merge joins off: the rows are always found by
-- primary key. Prepared by the worker's session, the statement could keep a generic plan made
-- while the queue was small (a seq scan of jobs_live), which growth never invalidates: after a
-- burst every small group read the whole table (finding 2 in docs/performance.md). Planning it on
-- every call instead (unprepared) cost ~10 % of a drain at concurrency 10; this plan is made once
-- per session.
CREATE FUNCTION pgjobs.complete_jobs(p_ids text, p_slots text, p_tokens uuid[]) RETURNS SETOF bigint
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off
AS $$
BEGIN
    RETURN QUERY
    WITH done AS (
        DELETE FROM pgjobs.jobs_live j
        USING unnest(string_to_array(p_ids, ',')::bigint[], string_to_array(p_slots, ',')::int[]) AS o(id, slot)
        WHERE j.id = o.id AND j.lease_token = p_tokens[o.slot]  -- running: CHECK jobs_lease
        RETURNING j.*
    ), finished AS (
        INSERT INTO pgjobs.jobs_finished (id, root_id, parent_id, kind, queue, payload, state, priority, run_at,
            attempt, snoozes, max_attempts, backoff_base_ms, backoff_cap_ms, dedupe_key, lease_token,
            lease_expires_at, worker_id, last_error, errors, created_at, attempted_at, finished_at)
        SELECT d.id, d.root_id, d.parent_id, d.kind, d.queue, d.payload, 'succeeded', d.priority, d.run_at,
               d.attempt, d.snoozes, d.max_attempts, d.backoff_base_ms, d.backoff_cap_ms, d.dedupe_key, NULL, NULL,
               d.worker_id, d.last_error, d.errors, d.created_at, d.attempted_at, now()
        FROM done d
        RETURNING jobs_finished.id
    )
    SELECT f.id FROM finished f;
END
$$;

ANALYZE pgjobs.jobs_live;
