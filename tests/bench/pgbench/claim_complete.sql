-- One pgbench transaction: claim :batch runnable jobs with SKIP LOCKED, then complete them.
-- Two row versions per job (queued -> running -> succeeded), as a real queue writes; one commit
-- per :batch jobs. The ORDER BY matches bench_jobs_runnable_idx, like pgjobs' claim.
BEGIN;
SELECT string_agg(id::text, ',') AS ids FROM (
    SELECT id FROM bench_jobs
    WHERE state = 'queued' AND queue = 'default' AND run_at <= now()
    ORDER BY priority, run_at, id
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
) claimed \gset
UPDATE bench_jobs SET state = 'running', attempt = attempt + 1, lease_token = gen_random_uuid(),
    lease_expires_at = now() + interval '30 seconds', attempted_at = now()
WHERE id IN (:ids);
UPDATE bench_jobs SET state = 'succeeded', finished_at = now(), lease_token = NULL, lease_expires_at = NULL
WHERE id IN (:ids);
END;
