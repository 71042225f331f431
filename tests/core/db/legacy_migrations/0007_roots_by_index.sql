-- enrichment_roots, same rows and columns, driven by each root's first log row so that the roots
-- timeline (`ORDER BY first_activity_at DESC LIMIT n`, what `pgjobs timeline` and the README ask)
-- reads enrichment_log_roots_idx newest first and looks up only the families it returns, through
-- the indexes enrichment_timeline reaches by root_job_id (0004). The old definition aggregated the
-- whole log on every query, so that index, which every root's log row pays for, served nothing.
--
-- first_activity_at is the root's first row: a family's first row by construction, since children
-- are enqueued only by the root's completion transaction, which writes that row. The rest is as
-- before: latest_status and the entity from the root's latest row, totals over the whole family,
-- descendants counted once each, by their latest row's status.
CREATE OR REPLACE VIEW public.enrichment_roots AS
SELECT f.job_id AS root_job_id, r.entity_type, r.entity_id, r.operation, r.status AS latest_status,
       r.triggered_by, f.created_at AS first_activity_at, t.last_activity_at, t.root_attempts,
       d.descendants, d.descendants_success, d.descendants_partial, d.descendants_skipped,
       d.descendants_no_data, d.descendants_failed, t.total_duration_ms, t.total_api_calls
FROM public.enrichment_log f
CROSS JOIN LATERAL (
    SELECT l.entity_type, l.entity_id, l.operation, l.status, l.triggered_by
    FROM public.enrichment_log l
    WHERE l.job_id = f.job_id
    ORDER BY l.created_at DESC, l.id DESC
    LIMIT 1
) r
CROSS JOIN LATERAL (
    SELECT max(tl.created_at) AS last_activity_at, count(*) FILTER (WHERE tl.is_root_job) AS root_attempts,
           sum(tl.duration_ms) AS total_duration_ms, sum(tl.api_call_count) AS total_api_calls
    FROM public.enrichment_timeline tl
    WHERE tl.root_job_id = f.job_id
) t
CROSS JOIN LATERAL (
    SELECT count(*) AS descendants,
           count(*) FILTER (WHERE latest.status = 'SUCCESS') AS descendants_success,
           count(*) FILTER (WHERE latest.status = 'PARTIAL_SUCCESS') AS descendants_partial,
           count(*) FILTER (WHERE latest.status = 'SKIPPED') AS descendants_skipped,
           count(*) FILTER (WHERE latest.status = 'NO_DATA_AVAILABLE') AS descendants_no_data,
           count(*) FILTER (WHERE latest.status = 'FAILED') AS descendants_failed
    FROM (SELECT DISTINCT ON (l.job_id) l.status
          FROM public.enrichment_log l
          WHERE l.parent_job_id = f.job_id
          ORDER BY l.job_id, l.created_at DESC, l.id DESC) latest
) d
WHERE f.is_root_job
  AND NOT EXISTS (SELECT FROM public.enrichment_log e  -- an earlier row of the same root
                  WHERE e.job_id = f.job_id AND e.is_root_job
                    AND (e.created_at, e.id) < (f.created_at, f.id));
