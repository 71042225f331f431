-- Periodic re-enrichment (REENRICH_STALE_ALBUMS): which albums are due, oldest first.
--
-- reenrich_queued_at: when the schedule last started a chain for the album. An album is due when
-- both it and enriched_at are older than the cut-off (or never set), so an album whose chain fails
-- is not picked again on every run, ahead of everything else, until it holds up the whole batch:
-- it waits a full period like the rest.
ALTER TABLE public.album ADD COLUMN reenrich_queued_at timestamptz;

-- The due albums' query (`stale_albums` in sql/enrichment/queries.sql) orders by this expression
-- and stops at the cut-off: with 100,000 albums (10,000 due) it read 100 index entries in 0.25 ms,
-- against a sequential scan and a sort of the whole catalog in 31 ms (PostgreSQL 15), growing
-- with the catalog. The expression must stay exactly as the query writes it.
CREATE INDEX album_stale_idx ON public.album
    ((coalesce(greatest(enriched_at, reenrich_queued_at), '-infinity'::timestamptz)), id)
    WHERE musicbrainz_id IS NOT NULL;
