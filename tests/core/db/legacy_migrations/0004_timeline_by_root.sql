-- enrichment_timeline, same rows and columns, written as roots UNION ALL descendants so that
-- `WHERE root_job_id = $1` (what the README and `pgjobs log ROOT` ask) reaches the indexes: the
-- roots' branch reads it as job_id = $1 (the unique (job_id, attempt) index), the descendants'
-- as parent_job_id = $1 (enrichment_log_parent_job_idx). As coalesce(parent_job_id, job_id) it
-- matched no index, and every family lookup scanned the whole log. (Rows with a job_id and no
-- parent are roots, with a parent descendants: the table's CHECKs say so.)
CREATE OR REPLACE VIEW public.enrichment_timeline AS
SELECT l.job_id AS root_job_id,
       l.id, l.job_id, l.parent_job_id, l.is_root_job, l.attempt, l.operation, l.entity_type, l.entity_id,
       l.status, l.reason, l.sources, l.fields_enriched, l.data_quality_before, l.data_quality_after,
       l.duration_ms, l.api_call_count, l.error_code, l.error_message, l.metadata, l.triggered_by,
       l.created_at
FROM public.enrichment_log l
WHERE l.job_id IS NOT NULL AND l.parent_job_id IS NULL
UNION ALL
SELECT l.parent_job_id AS root_job_id,
       l.id, l.job_id, l.parent_job_id, l.is_root_job, l.attempt, l.operation, l.entity_type, l.entity_id,
       l.status, l.reason, l.sources, l.fields_enriched, l.data_quality_before, l.data_quality_after,
       l.duration_ms, l.api_call_count, l.error_code, l.error_message, l.metadata, l.triggered_by,
       l.created_at
FROM public.enrichment_log l
WHERE l.job_id IS NOT NULL AND l.parent_job_id IS NOT NULL;
