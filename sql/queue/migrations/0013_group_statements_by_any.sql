-- The statements that take a group of jobs by id (issue 16): complete_jobs, apply_outcomes and
-- extend_leases find their rows by `j.id = ANY (ids)`, an index condition on jobs_live itself,
-- and are planned with nested loops and sequential scans off, so the group's per-job data (token,
-- outcome, delay, error) joins the rows found by hash or merge: O(group) whatever the planner
-- believes of jobs_live's size.
--
-- Why: jobs_live's recorded size is often wrong in the way that hurts. A VACUUM or ANALYZE of an
-- emptied jobs_live that cannot truncate it (another session's old snapshot keeps the dead rows;
-- one future job sits on the last page) records 0 rows over its pages, and PostgreSQL >= 14 then
-- estimates ~0 rows however much the table has grown since. With a join of jobs_live and the
-- group's unnest, the planner put the "empty" table first: a walk of the whole primary key with
-- the group's list re-read per row. Measured with 100,000 queued jobs after such a VACUUM (on
-- PostgreSQL 15): a 500-job complete_jobs took 9.3 s, extend_leases 9.5 s, apply_outcomes 36 s
-- (10-50 ms with true statistics); tests/core/db/test_plans_after_analyze.py ("emptied") builds it.
-- claim_jobs has had the same guard since fc38e6f (`= ANY (ARRAY(SELECT id FROM next))`).
--
-- The functions carry the settings, so the caller's session (where an app's writes run in the
-- same transaction) keeps its own. Same signatures for complete_jobs; the other two are new and
-- queries.sql calls them.
CREATE OR REPLACE FUNCTION pgjobs.complete_jobs(p_ids text, p_slots text, p_tokens uuid[]) RETURNS SETOF bigint
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_nestloop = off SET enable_hashjoin = on SET enable_mergejoin = on
AS $$
DECLARE
    v_ids bigint[] := string_to_array(p_ids, ',')::bigint[];
BEGIN
    RETURN QUERY
    WITH done AS (
        DELETE FROM pgjobs.jobs_live j
        USING unnest(v_ids, string_to_array(p_slots, ',')::int[]) AS o(id, slot)
        WHERE j.id = ANY (v_ids) AND j.id = o.id AND j.lease_token = p_tokens[o.slot]  -- running: CHECK jobs_lease
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

-- queries.sql, apply_outcomes: each attempt's outcome, fenced on its own lease token.
CREATE FUNCTION pgjobs.apply_outcomes(p_ids bigint[], p_tokens uuid[], p_outcomes text[], p_delays float8[],
                                      p_errors text[], p_tracebacks text[])
RETURNS TABLE (id bigint, state text)
LANGUAGE sql
SET enable_seqscan = off SET enable_nestloop = off SET enable_hashjoin = on SET enable_mergejoin = on
AS $$
WITH ended AS (
    DELETE FROM pgjobs.jobs_live j
    USING unnest(p_ids, p_tokens, p_outcomes, p_delays, p_errors, p_tracebacks)
          AS o(id, token, outcome, delay, error, traceback)
    WHERE j.id = ANY (p_ids) AND j.id = o.id AND j.lease_token = o.token  -- running: CHECK jobs_lease
      AND (o.outcome IN ('complete', 'discard')
           OR (o.outcome NOT IN ('snooze', 'hand_back') AND j.attempt - j.snoozes >= j.max_attempts))
    RETURNING j.*, o.outcome, o.delay, o.error, o.traceback
), finished AS (
    INSERT INTO pgjobs.jobs_finished (id, root_id, parent_id, kind, queue, payload, state, priority, run_at,
        attempt, snoozes, max_attempts, backoff_base_ms, backoff_cap_ms, dedupe_key, lease_token,
        lease_expires_at, worker_id, last_error, errors, created_at, attempted_at, finished_at)
    SELECT e.id, e.root_id, e.parent_id, e.kind, e.queue, e.payload,
           CASE WHEN e.outcome = 'complete' THEN 'succeeded' ELSE 'failed' END::pgjobs.job_state, e.priority,
           CASE WHEN e.outcome = 'retry' THEN now() + make_interval(secs => e.delay) ELSE e.run_at END,
           e.attempt, e.snoozes, e.max_attempts, e.backoff_base_ms, e.backoff_cap_ms, e.dedupe_key, NULL, NULL,
           e.worker_id,
           CASE WHEN e.outcome = 'complete' THEN e.last_error ELSE e.error END,
           CASE WHEN e.outcome = 'complete' THEN e.errors
                ELSE e.errors || jsonb_build_array(jsonb_build_object(
                    'attempt', e.attempt, 'at', now(), 'outcome', e.outcome, 'error', e.error)
                    || CASE WHEN e.traceback IS NULL THEN '{}'::jsonb
                            ELSE jsonb_build_object('traceback', e.traceback) END) END,
           e.created_at, e.attempted_at, now()
    FROM ended e
    RETURNING jobs_finished.id, jobs_finished.state::text AS state
), requeued AS (
    UPDATE pgjobs.jobs_live j
    SET state = 'queued',
        run_at = now() + make_interval(secs => o.delay),
        attempt = j.attempt - (o.outcome = 'hand_back')::int,
        snoozes = j.snoozes + (o.outcome = 'snooze')::int,
        last_error = o.error,
        errors = j.errors || jsonb_build_array(jsonb_build_object(
                     'attempt', j.attempt, 'at', now(), 'outcome', o.outcome, 'error', o.error)
                     || CASE WHEN o.traceback IS NULL THEN '{}'::jsonb
                             ELSE jsonb_build_object('traceback', o.traceback) END),
        lease_token = NULL, lease_expires_at = NULL
    FROM unnest(p_ids, p_tokens, p_outcomes, p_delays, p_errors, p_tracebacks)
         AS o(id, token, outcome, delay, error, traceback)
    WHERE j.id = ANY (p_ids) AND j.id = o.id AND j.lease_token = o.token
      AND NOT (o.outcome IN ('complete', 'discard')
               OR (o.outcome NOT IN ('snooze', 'hand_back') AND j.attempt - j.snoozes >= j.max_attempts))
    RETURNING j.id, j.state::text AS state
)
SELECT f.id, f.state FROM finished f
UNION ALL
SELECT r.id, r.state FROM requeued r
$$;

-- queries.sql, extend_leases: the heartbeat; returns the ids still held.
CREATE FUNCTION pgjobs.extend_leases(p_ids bigint[], p_tokens uuid[], p_lease_seconds float8) RETURNS SETOF bigint
LANGUAGE sql
SET enable_seqscan = off SET enable_nestloop = off SET enable_hashjoin = on SET enable_mergejoin = on
AS $$
UPDATE pgjobs.jobs_live j
SET lease_expires_at = now() + make_interval(secs => p_lease_seconds)
FROM unnest(p_ids, p_tokens) AS t(id, token)
WHERE j.id = ANY (p_ids) AND j.id = t.id AND j.lease_token = t.token
RETURNING j.id
$$;
