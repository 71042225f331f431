-- Finished jobs by day (issue 16): jobs_finished is now partitioned by RANGE (finished_at), one
-- partition per UTC day (jobs_finished_YYYYMMDD), made ahead by the workers
-- (pgjobs.maintain_finished_partitions, below), with jobs_finished_default catching any row no day
-- holds (finished_at NULL, or a day not made in time).
--
-- Why: a job's end inserts its row into jobs_finished. Beside 10,000,000 finished jobs in one
-- table, the free space map lists the gaps between the history's rows (varied sizes) once any
-- VACUUM has seen them, and each small new row went to a different old page: a drain of 80,000 jobs
-- read 77,174 heap blocks of jobs_finished where the empty database read 1,784, and wrote 87,085
-- back (docs/performance.md, finding 1). Today's partition holds only today's rows: nothing but a
-- retry (the row moves back to jobs_live) deletes from it while it is written, so its inserts
-- append to the few pages at its end, whatever the history holds. Retention's deletes and the free
-- space they leave stay in the older days, where no insert goes.
--
-- Upgrade in place: the rows jobs_finished holds (finished before now) become the partition
-- jobs_finished_history, [MINVALUE, now), with their indexes and statistics (no rewrite; ATTACH
-- reads the table once to check the range). Rows without a finished_at move to the default.
-- A primary key on a partitioned table must name the partition key, so each partition has its own
-- on id (ids come from job_id_seq: unique by construction, as the pair jobs_live/jobs_finished was).
LOCK TABLE pgjobs.jobs IN ACCESS EXCLUSIVE MODE;

CREATE TEMP TABLE pgjobs_0012_views ON COMMIT DROP AS
SELECT DISTINCT v.oid::regclass::text AS name, pg_get_viewdef(v.oid) AS definition, v.oid
FROM pg_depend d
JOIN pg_rewrite r ON r.oid = d.objid AND d.classid = 'pg_rewrite'::regclass
JOIN pg_class v ON v.oid = r.ev_class AND v.relkind = 'v'
WHERE d.refobjid = 'pgjobs.jobs_finished'::regclass;

ALTER TABLE pgjobs.jobs DETACH PARTITION pgjobs.jobs_finished;
ALTER TABLE pgjobs.jobs_finished RENAME TO jobs_finished_history;
ALTER INDEX pgjobs.jobs_finished_pkey RENAME TO jobs_finished_history_pkey;
ALTER INDEX pgjobs.jobs_finished_root_idx RENAME TO jobs_finished_history_root_idx;
ALTER INDEX pgjobs.jobs_failed_idx RENAME TO jobs_finished_history_failed_idx;
ALTER INDEX pgjobs.jobs_finished_at_idx RENAME TO jobs_finished_history_at_idx;
ALTER STATISTICS pgjobs.jobs_queue_state RENAME TO jobs_finished_history_queue_state;

CREATE TABLE pgjobs.jobs_finished (LIKE pgjobs.jobs_finished_history INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (finished_at);
CREATE TABLE pgjobs.jobs_finished_default PARTITION OF pgjobs.jobs_finished DEFAULT
    WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02,
          autovacuum_vacuum_cost_delay = 0);
ALTER TABLE pgjobs.jobs_finished_default ADD PRIMARY KEY (id);
CREATE STATISTICS pgjobs.jobs_finished_default_queue_state (mcv) ON queue, state FROM pgjobs.jobs_finished_default;

WITH moved AS (DELETE FROM pgjobs.jobs_finished_history WHERE finished_at IS NULL RETURNING *)
INSERT INTO pgjobs.jobs_finished_default SELECT * FROM moved;
-- The history ends at now() or after its last row (a clock that went back), whichever is later.
DO $$
DECLARE
    upper timestamptz := greatest(now(), (SELECT max(finished_at) + interval '1 microsecond'
                                          FROM pgjobs.jobs_finished_history));
BEGIN
    EXECUTE format('ALTER TABLE pgjobs.jobs_finished ATTACH PARTITION pgjobs.jobs_finished_history '
                   'FOR VALUES FROM (MINVALUE) TO (%L)', upper);
END $$;

-- The partitioned indexes adopt the history's (same definitions) and the default gets its own.
CREATE INDEX jobs_finished_root_idx ON pgjobs.jobs_finished (root_id);
CREATE INDEX jobs_failed_idx ON pgjobs.jobs_finished (id) WHERE state IN ('failed', 'cancelled');
CREATE INDEX jobs_finished_at_idx ON pgjobs.jobs_finished (finished_at) INCLUDE (state)
    WHERE state IN ('succeeded', 'failed');
ALTER TABLE pgjobs.jobs ATTACH PARTITION pgjobs.jobs_finished FOR VALUES IN ('succeeded', 'failed', 'cancelled');

-- A view on jobs_finished (anyone's) followed the rename to the history: it reads the new table again.
DO $$
DECLARE
    v record;
BEGIN
    FOR v IN SELECT name, definition FROM pgjobs_0012_views ORDER BY oid LOOP
        EXECUTE format('CREATE OR REPLACE VIEW %s AS %s', v.name, v.definition);
    END LOOP;
END $$;

-- Today's and the next days' partitions, made ahead of the rows (the workers call it every hour and
-- at start). Each day: [midnight UTC, next midnight), or from just above the default's newest row
-- if the default caught rows of that day (a partition may not overlap rows the default holds).
-- Made as a table, then attached: ATTACH takes SHARE UPDATE EXCLUSIVE on jobs_finished, so the
-- completions' inserts go on meanwhile (CREATE TABLE ... PARTITION OF would lock them out); it takes
-- ACCESS EXCLUSIVE on the default partition only, which a reader of pgjobs.jobs may hold: readers
-- wait for it at most the lock timeout.
-- Then drops the partitions of past days that hold no rows any more (retention emptied them).
-- One session at a time (advisory lock; the others return at once); lock_timeout: a worker never
-- waits long behind a reader of the table (a pg_dump) - the next call tries again.
CREATE FUNCTION pgjobs.maintain_finished_partitions(p_ahead interval DEFAULT interval '2 days',
                                                    p_now timestamptz DEFAULT now())
RETURNS TABLE (partition text, action text)
LANGUAGE plpgsql
SET lock_timeout = '1s'
AS $$
DECLARE
    day date;
    name text;
    lower timestamptz;
    upper timestamptz;
    caught timestamptz;
    busy boolean;
BEGIN
    -- 'pgjobsfp' as a bigint, apart from job-derived keys and the pruner's.
    IF NOT pg_try_advisory_xact_lock(8099559481474770544) THEN
        RETURN;
    END IF;
    FOR day IN SELECT generate_series((p_now AT TIME ZONE 'UTC')::date,
                                      ((p_now + p_ahead) AT TIME ZONE 'UTC')::date, interval '1 day')::date LOOP
        name := 'jobs_finished_' || to_char(day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(format('pgjobs.%I', name)) IS NOT NULL;
        lower := day::timestamp AT TIME ZONE 'UTC';
        upper := lower + interval '1 day';
        -- Not below the history's end (the upgrade's day) nor the default's newest row of that day.
        SELECT max(d.finished_at) INTO caught FROM ONLY pgjobs.jobs_finished_default d
        WHERE d.finished_at >= lower AND d.finished_at < upper;
        SELECT greatest(lower, max(b.upper_bound), caught + interval '1 microsecond') INTO lower
        FROM (SELECT (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''(.*)''\)'))[1]::timestamptz
                     AS upper_bound
              FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'pgjobs.jobs_finished'::regclass AND c.relname = 'jobs_finished_history') b;
        CONTINUE WHEN lower >= upper;
        EXECUTE format('CREATE TABLE pgjobs.%I (LIKE pgjobs.jobs_finished INCLUDING DEFAULTS INCLUDING CONSTRAINTS) '
                       'WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02, '
                       'autovacuum_vacuum_cost_delay = 0)', name);
        EXECUTE format('ALTER TABLE pgjobs.%I ADD PRIMARY KEY (id)', name);
        EXECUTE format('CREATE STATISTICS pgjobs.%I (mcv) ON queue, state FROM pgjobs.%I', name || '_queue_state', name);
        EXECUTE format('ALTER TABLE pgjobs.jobs_finished ATTACH PARTITION pgjobs.%I FOR VALUES FROM (%L) TO (%L)',
                       name, lower, upper);
        partition := name;
        action := 'made';
        RETURN NEXT;
    END LOOP;
    -- Past days left empty by retention: found cheaply (the statistics say no live rows, and VACUUM
    -- has cut the file to at most 1 MB, so the check reads no long run of dead rows), then checked
    -- under the lock DROP takes anyway. Dropping locks jobs_finished out for a moment: it waits at
    -- most 100 ms for it; a busy table is tried again next time.
    FOR name IN
        SELECT c.relname
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_stat_user_tables s ON s.relid = c.oid
        WHERE i.inhparent = 'pgjobs.jobs_finished'::regclass AND s.n_live_tup = 0
          AND pg_relation_size(c.oid) <= 1048576
          AND c.relname ~ '^jobs_finished_[0-9]{8}$'
          AND to_date(right(c.relname, 8), 'YYYYMMDD') < (p_now AT TIME ZONE 'UTC')::date
        ORDER BY c.relname
    LOOP
        BEGIN
            PERFORM set_config('lock_timeout', '100ms', true);
            LOCK TABLE ONLY pgjobs.jobs_finished IN ACCESS EXCLUSIVE MODE;
            EXECUTE format('SELECT EXISTS (SELECT FROM ONLY pgjobs.%I)', name) INTO busy;
            CONTINUE WHEN busy;
            EXECUTE format('DROP TABLE pgjobs.%I', name);
            partition := name;
            action := 'dropped';
            RETURN NEXT;
        EXCEPTION WHEN lock_not_available THEN
            partition := name;
            action := 'busy';
            RETURN NEXT;
        END;
    END LOOP;
END
$$;

SELECT pgjobs.maintain_finished_partitions();
