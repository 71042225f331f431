-- The entity filter's trigram indexes (enrichment 0007) without GIN's pending list (issue 17).
--
-- With fastupdate on (the default), new titles and names go to an unsorted pending list that every
-- search reads whole, until a VACUUM or 4 MB of it (gin_pending_list_limit) moves it into the
-- index. Measured on the 1,000,000-root data set: the artist index's 446 pending pages (12,910
-- names) cost its search 469 buffers and 16 ms for no match; flushed, 23 buffers and 0.05 ms. The
-- roots page's entity search was 50.7 ms p95 with them. Without fastupdate an insert updates the
-- index at once: a few hundred microseconds per album or artist, written by jobs that wait on HTTP
-- for far longer. The pending lists held now are moved in here.
DO $$
DECLARE
    idx regclass;
BEGIN
    FOREACH idx IN ARRAY ARRAY[to_regclass('public.album_title_trgm_idx'), to_regclass('public.artist_name_trgm_idx'),
                               to_regclass('public.track_title_trgm_idx')] LOOP
        CONTINUE WHEN idx IS NULL;  -- no pg_trgm here (0007 said so): nothing to change
        EXECUTE format('ALTER INDEX %s SET (fastupdate = off)', idx);
        PERFORM gin_clean_pending_list(idx);
    END LOOP;
END
$$;
