-- The enrichment app's dashboard at 1,000,000 roots (issue 17).
--
-- limiter_wait_ms: how long the attempt waited for the global rate limiters (JobContext's
-- limiter_wait: the sum of its calls' waits, pgjobs.queue.limits); the family waterfall draws it
-- as its own segment. NULL for rows written before this column (or by code that does not know it).
ALTER TABLE public.enrichment_log ADD COLUMN limiter_wait_ms integer;

-- The roots page's entity filter searches titles and names by substring (ILIKE '%…%'): trigram
-- indexes when pg_trgm can be created (a trusted extension: the database owner may), else the
-- filter scans the catalog under the dashboard's statement timeout (1,000,000 albums: ~0.3 s).
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE INDEX album_title_trgm_idx ON public.album USING gin (title gin_trgm_ops);
    CREATE INDEX artist_name_trgm_idx ON public.artist USING gin (name gin_trgm_ops);
    CREATE INDEX track_title_trgm_idx ON public.track USING gin (title gin_trgm_ops);
EXCEPTION WHEN insufficient_privilege OR undefined_file OR feature_not_supported THEN
    RAISE NOTICE 'pg_trgm is not available (%): the entity filter scans the catalog', SQLERRM;
END
$$;
