-- (job_id) lookups use the unique (job_id, attempt) index: this one only cost every audit insert.
DROP INDEX public.enrichment_log_job_idx;
