-- Named queries of the enrichment chain (schema public): catalog reads and writes, the audit log.

-- name: copy_log
-- One enrichment_log row per attempt; lineage (job_id, parent_job_id, is_root_job, attempt) comes
-- from the job row. A group commit's rows go in together with one COPY.
COPY public.enrichment_log (
    entity_type, entity_id, operation, sources, status, reason, fields_enriched, data_quality_before,
    data_quality_after, duration_ms, api_call_count, metadata, error_message, error_code, job_id,
    parent_job_id, is_root_job, attempt, triggered_by, limiter_wait_ms)
FROM STDIN;

-- name: get_album
SELECT a.id, a.title, a.musicbrainz_id::text AS musicbrainz_id, a.release_date, a.cover_art_url,
       a.cloudflare_image_id, a.data_quality, a.enriched_at,
       (SELECT string_agg(ar.name || aa.join_phrase, '' ORDER BY aa.position)
        FROM public.album_artist aa JOIN public.artist ar ON ar.id = aa.artist_id
        WHERE aa.album_id = a.id) AS artist_credit
FROM public.album a WHERE a.id = %(id)s;

-- name: get_artist
SELECT id, name, sort_name, musicbrainz_id::text AS musicbrainz_id, discogs_id, image_url, cloudflare_image_id,
       profile, genres, data_quality, enriched_at
FROM public.artist WHERE id = %(id)s;

-- name: album_by_mbid
SELECT id FROM public.album WHERE musicbrainz_id = %(mbid)s;

-- name: create_album_stub
-- A placeholder row for a release MBID; ENRICH_ALBUM fills in the rest.
INSERT INTO public.album (title, musicbrainz_id) VALUES (%(title)s, %(mbid)s)
ON CONFLICT (musicbrainz_id) DO UPDATE SET updated_at = public.album.updated_at
RETURNING id;

-- name: update_album
UPDATE public.album
SET title = %(title)s, musicbrainz_id = %(mbid)s, release_date = %(release_date)s, genres = %(genres)s,
    data_quality = %(data_quality)s, enriched_at = now(), updated_at = now()
WHERE id = %(id)s;

-- name: upsert_artist
-- Artists are keyed by MusicBrainz id; returns the row id and whether it was enriched already.
INSERT INTO public.artist (name, sort_name, musicbrainz_id) VALUES (%(name)s, %(sort_name)s, %(mbid)s)
ON CONFLICT (musicbrainz_id) DO UPDATE SET name = excluded.name, sort_name = excluded.sort_name,
                                           updated_at = now()
RETURNING id, enriched_at;

-- name: clear_album_artists
DELETE FROM public.album_artist WHERE album_id = %(album_id)s;

-- name: add_album_artist
INSERT INTO public.album_artist (album_id, artist_id, position, join_phrase)
VALUES (%(album_id)s, %(artist_id)s, %(position)s, %(join_phrase)s);

-- name: upsert_track
INSERT INTO public.track (album_id, disc, position, title, duration_ms, musicbrainz_recording_id, spotify_id, isrc)
VALUES (%(album_id)s, %(disc)s, %(position)s, %(title)s, %(duration_ms)s, %(recording_id)s, %(spotify_id)s, %(isrc)s)
ON CONFLICT (album_id, disc, position) DO UPDATE
SET title = excluded.title,
    duration_ms = coalesce(excluded.duration_ms, public.track.duration_ms),
    musicbrainz_recording_id = coalesce(excluded.musicbrainz_recording_id, public.track.musicbrainz_recording_id),
    spotify_id = coalesce(excluded.spotify_id, public.track.spotify_id),
    isrc = coalesce(excluded.isrc, public.track.isrc);

-- name: update_artist_from_musicbrainz
-- MusicBrainz may answer for a merged MBID with the surviving artist: keep its id, unless another
-- row already holds that one (then this row keeps its own and the duplicate is left to a merge).
UPDATE public.artist a
SET name = %(name)s, sort_name = %(sort_name)s, genres = %(genres)s,
    musicbrainz_id = CASE WHEN EXISTS (SELECT FROM public.artist o WHERE o.musicbrainz_id = %(mbid)s::uuid
                                                                     AND o.id <> a.id)
                          THEN a.musicbrainz_id ELSE %(mbid)s::uuid END,
    discogs_id = coalesce(%(discogs_id)s, discogs_id), data_quality = %(data_quality)s,
    enriched_at = now(), updated_at = now()
WHERE id = %(id)s;

-- name: set_artist_discogs_id
UPDATE public.artist SET discogs_id = %(discogs_id)s, data_quality = %(data_quality)s, updated_at = now()
WHERE id = %(id)s;

-- name: update_artist_from_discogs
UPDATE public.artist
SET profile = coalesce(%(profile)s, profile), image_url = coalesce(%(image_url)s, image_url),
    discogs_id = %(discogs_id)s, data_quality = %(data_quality)s, updated_at = now()
WHERE id = %(id)s;

-- name: set_artist_image
UPDATE public.artist SET cloudflare_image_id = %(image_id)s, data_quality = %(data_quality)s, updated_at = now()
WHERE id = %(id)s;

-- name: set_album_cover
UPDATE public.album
SET cover_art_url = coalesce(%(cover_art_url)s, cover_art_url), cloudflare_image_id = %(image_id)s,
    data_quality = %(data_quality)s, updated_at = now()
WHERE id = %(id)s;

-- name: album_tracks
SELECT disc, position, title, duration_ms, spotify_id FROM public.track
WHERE album_id = %(album_id)s ORDER BY disc, position;

-- name: list_roots
-- The roots timeline: newest first, with the entity's display name.
SELECT r.*, coalesce(al.title, ar.name) AS entity_name
FROM public.enrichment_roots r
LEFT JOIN public.album al ON r.entity_type = 'ALBUM' AND al.id = r.entity_id
LEFT JOIN public.artist ar ON r.entity_type = 'ARTIST' AND ar.id = r.entity_id
WHERE (%(status)s::text IS NULL OR r.latest_status = %(status)s::text)
ORDER BY r.first_activity_at DESC
LIMIT %(limit)s;

-- name: family_timeline
-- One root's whole family: the root's attempts first, then every descendant by time.
SELECT t.*, coalesce(al.title, ar.name) AS entity_name
FROM public.enrichment_timeline t
LEFT JOIN public.album al ON t.entity_type = 'ALBUM' AND al.id = t.entity_id
LEFT JOIN public.artist ar ON t.entity_type = 'ARTIST' AND ar.id = t.entity_id
WHERE t.root_job_id = %(root_job_id)s
ORDER BY t.is_root_job DESC, t.created_at, t.id;

-- name: stale_albums
-- Albums due for re-enrichment, oldest first: known to MusicBrainz, neither enriched nor queued
-- for re-enrichment since the cut-off (album_stale_idx, migration 0005, serves this exact
-- expression). SKIP LOCKED: a second run at the same time takes the next ones.
SELECT id, enriched_at
FROM public.album
WHERE musicbrainz_id IS NOT NULL
  AND coalesce(greatest(enriched_at, reenrich_queued_at), '-infinity'::timestamptz) < now() - %(older_than)s::interval
ORDER BY coalesce(greatest(enriched_at, reenrich_queued_at), '-infinity'::timestamptz), id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: mark_reenrich_queued
UPDATE public.album SET reenrich_queued_at = now() WHERE id = ANY(%(ids)s);

-- name: prune_log
-- One batch of the audit log's retention (pgjobs/enrichment/log_retention.py): the next %(limit)s
-- rows after id %(after)s, oldest first by the primary key, and those created before %(cutoff)s
-- deleted. Returns rows deleted, the last id looked at, how many were looked at and how many were
-- kept (newer than the cutoff: the walk ends there).
WITH window_rows AS MATERIALIZED (
    SELECT id, created_at FROM public.enrichment_log WHERE id > %(after)s ORDER BY id LIMIT %(limit)s
), gone AS (
    DELETE FROM public.enrichment_log l USING window_rows w
    WHERE l.id = w.id AND w.created_at < %(cutoff)s
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone)::int, (SELECT max(id) FROM window_rows),
       (SELECT count(*) FROM window_rows)::int,
       (SELECT count(*) FROM window_rows WHERE created_at >= %(cutoff)s)::int;
