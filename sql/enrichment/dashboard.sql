-- The enrichment app's dashboard pages (pgjobs.enrichment.dashboard): the roots table, a root's
-- family (lanes and attempts), one audit row. Each is bounded by an index, a window or a LIMIT.

-- name: root_ids
-- The roots page's rows, newest first: each root's first log row in the window through
-- enrichment_log_roots_idx (created_at DESC WHERE is_root_job), keyset-paged on (created_at,
-- job_id) = the view's (first_activity_at, root_job_id). At most %(scan)s root rows are read
-- (`scanned`): the filters then run on those only, each a probe by root id, so a filter that
-- matches little costs a bounded page that offers to search further, never a walk of the window.
-- status = the root's latest row's; failures = that is FAILED or a child's latest row is
-- (enrichment_roots' descendants_failed > 0).
WITH scanned AS (
    SELECT f.job_id, f.created_at, f.operation
    FROM public.enrichment_log f
    WHERE f.is_root_job AND f.created_at >= %(since)s AND f.created_at < %(until)s
      AND (%(before_at)s::timestamptz IS NULL OR f.created_at <= %(before_at)s)
      AND (%(before_at)s::timestamptz IS NULL
           OR (f.created_at, f.job_id) < (%(before_at)s::timestamptz, %(before_id)s::bigint))
      AND (%(entity_roots)s::bigint[] IS NULL OR f.job_id = ANY(%(entity_roots)s::bigint[]))
    ORDER BY f.created_at DESC, f.job_id DESC
    LIMIT %(scan)s
)
SELECT f.job_id, f.created_at
FROM scanned f
CROSS JOIN LATERAL (SELECT l.status FROM public.enrichment_log l WHERE l.job_id = f.job_id
                    ORDER BY l.attempt DESC LIMIT 1) latest  -- one entry of (job_id, attempt): a job's attempts are sequential
WHERE NOT EXISTS (SELECT FROM public.enrichment_log e  -- not the root's first row: a retry's
                  WHERE e.job_id = f.job_id AND e.is_root_job AND e.created_at < f.created_at)
  AND (%(operation)s::text IS NULL OR f.operation = %(operation)s)
  AND (%(status)s::text IS NULL OR latest.status = %(status)s)
  AND (NOT %(failures)s OR latest.status = 'FAILED'
       OR EXISTS (SELECT FROM (SELECT DISTINCT ON (c.job_id) c.status
                               FROM public.enrichment_log c WHERE c.parent_job_id = f.job_id
                               ORDER BY c.job_id, c.created_at DESC, c.id DESC) d
                  WHERE d.status = 'FAILED'))
ORDER BY f.created_at DESC, f.job_id DESC
LIMIT %(limit)s;

-- name: root_scan_edge
-- The last root row root_ids read when it read all %(scan)s it may (same conditions): where the
-- next search goes on from. No row: the window held fewer, nothing is left to search.
SELECT f.created_at, f.job_id
FROM public.enrichment_log f
WHERE f.is_root_job AND f.created_at >= %(since)s AND f.created_at < %(until)s
  AND (%(before_at)s::timestamptz IS NULL OR f.created_at <= %(before_at)s)
  AND (%(before_at)s::timestamptz IS NULL
       OR (f.created_at, f.job_id) < (%(before_at)s::timestamptz, %(before_id)s::bigint))
  AND (%(entity_roots)s::bigint[] IS NULL OR f.job_id = ANY(%(entity_roots)s::bigint[]))
ORDER BY f.created_at DESC, f.job_id DESC
OFFSET %(scan)s - 1 LIMIT 1;

-- name: roots
-- enrichment_roots for the given root ids (root_ids' page), newest first, with each entity's name.
SELECT r.*, coalesce(al.title, ar.name, tr.title) AS entity_label
FROM public.enrichment_roots r
LEFT JOIN public.album al ON r.entity_type = 'ALBUM' AND al.id = r.entity_id
LEFT JOIN public.artist ar ON r.entity_type = 'ARTIST' AND ar.id = r.entity_id
LEFT JOIN public.track tr ON r.entity_type = 'TRACK' AND tr.id = r.entity_id
WHERE r.root_job_id = ANY(%(ids)s::bigint[])
ORDER BY r.first_activity_at DESC, r.root_job_id DESC;

-- name: entity_roots
-- The roots filter on an entity: the root jobs (started in the window) whose entity's title or
-- name contains %(pattern)s (ILIKE, through the trigram indexes of enrichment migration 0007 when
-- pg_trgm is there), or whose entity id it is, through enrichment_log_entity_idx; the roots
-- query then reads only those families.
SELECT DISTINCT l.job_id
FROM (SELECT 'ALBUM' AS entity_type, id FROM public.album WHERE title ILIKE %(pattern)s
      UNION ALL SELECT 'ARTIST', id FROM public.artist WHERE name ILIKE %(pattern)s
      UNION ALL SELECT 'TRACK', id FROM public.track WHERE title ILIKE %(pattern)s
      UNION ALL SELECT t, %(entity_id)s::uuid FROM unnest(ARRAY['ALBUM', 'ARTIST', 'TRACK']) t
                WHERE %(entity_id)s::uuid IS NOT NULL) e
JOIN public.enrichment_log l ON l.entity_type = e.entity_type AND l.entity_id = e.id
WHERE l.is_root_job AND l.created_at >= %(since)s AND l.created_at < %(until)s
LIMIT %(cap)s;

-- name: root
SELECT r.*, coalesce(al.title, ar.name, tr.title) AS entity_label
FROM public.enrichment_roots r
LEFT JOIN public.album al ON r.entity_type = 'ALBUM' AND al.id = r.entity_id
LEFT JOIN public.artist ar ON r.entity_type = 'ARTIST' AND ar.id = r.entity_id
LEFT JOIN public.track tr ON r.entity_type = 'TRACK' AND tr.id = r.entity_id
WHERE r.root_job_id = %(root)s;

-- name: children
-- A root's children as the expanded row shows them: each child job's latest audit row (children
-- carry the root's id as parent_job_id), then children not yet logged (queued or running).
SELECT * FROM (
    SELECT c.job_id, c.operation, c.entity_type, c.status, c.attempt, c.duration_ms, c.api_call_count, c.created_at,
           c.error_message, j.state::text AS job_state, coalesce(j.kind, c.operation) AS kind,
           coalesce(al.title, ar.name, tr.title) AS entity_label
    FROM (SELECT DISTINCT ON (l.job_id) l.*
          FROM public.enrichment_log l
          WHERE l.parent_job_id = %(root)s
          ORDER BY l.job_id, l.created_at DESC, l.id DESC) c
    LEFT JOIN pgjobs.jobs j ON j.id = c.job_id
    LEFT JOIN public.album al ON c.entity_type = 'ALBUM' AND al.id = c.entity_id
    LEFT JOIN public.artist ar ON c.entity_type = 'ARTIST' AND ar.id = c.entity_id
    LEFT JOIN public.track tr ON c.entity_type = 'TRACK' AND tr.id = c.entity_id
    UNION ALL
    SELECT j.id, NULL, NULL, NULL, j.attempt, NULL, NULL, j.created_at, j.last_error, j.state::text, j.kind, NULL
    FROM pgjobs.jobs j
    WHERE j.root_id = %(root)s AND j.id <> %(root)s
      AND NOT EXISTS (SELECT FROM public.enrichment_log l WHERE l.job_id = j.id)
) family
ORDER BY job_id
LIMIT %(limit)s;

-- name: lane_ids
-- The family's jobs, by id: from the queue, and from the log for jobs since pruned.
SELECT id, count(*) OVER () AS total FROM (
    SELECT id FROM pgjobs.jobs WHERE root_id = %(root)s
    UNION SELECT job_id FROM public.enrichment_log WHERE job_id = %(root)s
    UNION SELECT job_id FROM public.enrichment_log WHERE parent_job_id = %(root)s
) ids
ORDER BY id
LIMIT %(limit)s;

-- name: lane_jobs
SELECT id, parent_id, kind, state::text AS state, created_at, run_at, attempt, snoozes, max_attempts,
       errors, attempted_at, finished_at, last_error
FROM pgjobs.jobs
WHERE id = ANY(%(ids)s::bigint[]);

-- name: lane_logs
-- The audit rows of the given jobs, one per attempt (enrichment_log_attempt_idx).
SELECT l.*, coalesce(al.title, ar.name, tr.title) AS entity_label
FROM public.enrichment_log l
LEFT JOIN public.album al ON l.entity_type = 'ALBUM' AND al.id = l.entity_id
LEFT JOIN public.artist ar ON l.entity_type = 'ARTIST' AND ar.id = l.entity_id
LEFT JOIN public.track tr ON l.entity_type = 'TRACK' AND tr.id = l.entity_id
WHERE l.job_id = ANY(%(ids)s::bigint[])
ORDER BY l.created_at, l.id;

-- name: family_log
-- Every audit row of a family, for the export (capped).
SELECT * FROM (
    SELECT * FROM public.enrichment_log WHERE job_id = %(root)s
    UNION ALL
    SELECT * FROM public.enrichment_log WHERE parent_job_id = %(root)s
) f
ORDER BY created_at, id
LIMIT %(limit)s;

-- name: log_row
SELECT l.*, coalesce(l.parent_job_id, l.job_id) AS root_job_id
FROM public.enrichment_log l
WHERE l.id = %(id)s;

-- name: job_log
-- One job's audit rows, by attempt (the job page shows them beside its errors).
SELECT * FROM public.enrichment_log WHERE job_id = %(id)s ORDER BY attempt, id;

-- name: is_root
SELECT EXISTS (SELECT FROM public.enrichment_log WHERE job_id = %(id)s AND is_root_job);
