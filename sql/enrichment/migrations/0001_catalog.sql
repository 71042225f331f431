-- The music catalog the enrichment chain fills, and its audit trail (enrichment_log).

CREATE TABLE public.artist (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                text NOT NULL,
    sort_name           text,
    musicbrainz_id      uuid UNIQUE,
    discogs_id          text,
    image_url           text,
    -- 'none' when no image could be cached (so the chain does not try again and again).
    cloudflare_image_id text,
    profile             text,
    genres              text[] NOT NULL DEFAULT '{}',
    data_quality        text NOT NULL DEFAULT 'LOW' CHECK (data_quality IN ('LOW', 'MEDIUM', 'HIGH')),
    enriched_at         timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.album (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    title               text NOT NULL,
    musicbrainz_id      uuid UNIQUE,
    release_date        text,  -- MusicBrainz dates may be partial: 1956, 1956-10, 1956-10-01
    cover_art_url       text,
    cloudflare_image_id text,
    genres              text[] NOT NULL DEFAULT '{}',
    data_quality        text NOT NULL DEFAULT 'LOW' CHECK (data_quality IN ('LOW', 'MEDIUM', 'HIGH')),
    enriched_at         timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.album_artist (
    album_id    uuid NOT NULL REFERENCES public.album (id) ON DELETE CASCADE,
    artist_id   uuid NOT NULL REFERENCES public.artist (id),
    position    integer NOT NULL,
    join_phrase text NOT NULL DEFAULT '',
    PRIMARY KEY (album_id, position)
);
CREATE INDEX album_artist_artist_idx ON public.album_artist (artist_id);

CREATE TABLE public.track (
    id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    album_id                 uuid NOT NULL REFERENCES public.album (id) ON DELETE CASCADE,
    disc                     integer NOT NULL DEFAULT 1,
    position                 integer NOT NULL,
    title                    text NOT NULL,
    duration_ms              integer,
    musicbrainz_recording_id uuid,
    spotify_id               text,
    isrc                     text,
    UNIQUE (album_id, disc, position)
);

-- One row per job attempt, written in the same transaction as the attempt's effects and children.
-- parent_job_id is the ROOT job's id for every descendant (flat), NULL for a root. Rows written
-- without a job (legacy) have job_id NULL and are neither roots nor children.
CREATE TABLE public.enrichment_log (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity_type         text NOT NULL CHECK (entity_type IN ('ALBUM', 'ARTIST', 'TRACK')),
    entity_id           uuid,
    operation           text NOT NULL,
    sources             text[] NOT NULL DEFAULT '{}',
    status              text NOT NULL
        CHECK (status IN ('SUCCESS', 'PARTIAL_SUCCESS', 'FAILED', 'SKIPPED', 'NO_DATA_AVAILABLE')),
    reason              text,
    fields_enriched     text[] NOT NULL DEFAULT '{}',
    data_quality_before text CHECK (data_quality_before IN ('LOW', 'MEDIUM', 'HIGH')),
    data_quality_after  text CHECK (data_quality_after IN ('LOW', 'MEDIUM', 'HIGH')),
    duration_ms         integer,
    api_call_count      integer NOT NULL DEFAULT 0,
    metadata            jsonb NOT NULL DEFAULT '{}',
    error_message       text,
    error_code          text,
    job_id              bigint,
    parent_job_id       bigint,
    is_root_job         boolean NOT NULL DEFAULT false,
    attempt             integer,
    triggered_by        text,
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT enrichment_log_root_has_no_parent CHECK (NOT (is_root_job AND parent_job_id IS NOT NULL)),
    CONSTRAINT enrichment_log_legacy_is_unlinked CHECK (
        job_id IS NOT NULL OR (NOT is_root_job AND parent_job_id IS NULL)),
    CONSTRAINT enrichment_log_linked CHECK (job_id IS NULL OR is_root_job OR parent_job_id IS NOT NULL)
);
-- No foreign keys to pgjobs.jobs: pruned jobs keep their logs, and deleting a root's rows never
-- touches its children's (soft orphans).
CREATE INDEX enrichment_log_parent_job_idx ON public.enrichment_log (parent_job_id, created_at)
    WHERE parent_job_id IS NOT NULL;
CREATE INDEX enrichment_log_roots_idx ON public.enrichment_log (created_at DESC) WHERE is_root_job;
CREATE INDEX enrichment_log_job_idx ON public.enrichment_log (job_id);
CREATE INDEX enrichment_log_entity_idx ON public.enrichment_log (entity_type, entity_id, created_at);
-- Each attempt of a job logs exactly once.
CREATE UNIQUE INDEX enrichment_log_attempt_idx ON public.enrichment_log (job_id, attempt)
    WHERE job_id IS NOT NULL;

-- Every linked row with the root it belongs to. Whole family, root first:
--   SELECT * FROM enrichment_timeline WHERE root_job_id = $1 ORDER BY is_root_job DESC, created_at, id;
CREATE VIEW public.enrichment_timeline AS
SELECT coalesce(l.parent_job_id, l.job_id) AS root_job_id,
       l.id, l.job_id, l.parent_job_id, l.is_root_job, l.attempt, l.operation, l.entity_type, l.entity_id,
       l.status, l.reason, l.sources, l.fields_enriched, l.data_quality_before, l.data_quality_after,
       l.duration_ms, l.api_call_count, l.error_code, l.error_message, l.metadata, l.triggered_by,
       l.created_at
FROM public.enrichment_log l
WHERE l.job_id IS NOT NULL;

-- One row per root job (a root retried twice is still one row): its latest status, first and
-- last activity across the family, descendants counted by their latest status, total duration.
CREATE VIEW public.enrichment_roots AS
WITH latest AS (
    SELECT DISTINCT ON (job_id) job_id, root_job_id, is_root_job, entity_type, entity_id, operation, status,
           triggered_by
    FROM public.enrichment_timeline
    ORDER BY job_id, created_at DESC, id DESC
), totals AS (
    SELECT root_job_id, min(created_at) AS first_activity_at, max(created_at) AS last_activity_at,
           count(*) FILTER (WHERE is_root_job) AS root_attempts, sum(duration_ms) AS total_duration_ms,
           sum(api_call_count) AS total_api_calls
    FROM public.enrichment_timeline
    GROUP BY root_job_id
), descendants AS (
    SELECT root_job_id,
           count(*) AS descendants,
           count(*) FILTER (WHERE status = 'SUCCESS') AS descendants_success,
           count(*) FILTER (WHERE status = 'PARTIAL_SUCCESS') AS descendants_partial,
           count(*) FILTER (WHERE status = 'SKIPPED') AS descendants_skipped,
           count(*) FILTER (WHERE status = 'NO_DATA_AVAILABLE') AS descendants_no_data,
           count(*) FILTER (WHERE status = 'FAILED') AS descendants_failed
    FROM latest
    WHERE NOT is_root_job
    GROUP BY root_job_id
)
SELECT r.root_job_id, r.entity_type, r.entity_id, r.operation, r.status AS latest_status, r.triggered_by,
       t.first_activity_at, t.last_activity_at, t.root_attempts,
       coalesce(d.descendants, 0) AS descendants,
       coalesce(d.descendants_success, 0) AS descendants_success,
       coalesce(d.descendants_partial, 0) AS descendants_partial,
       coalesce(d.descendants_skipped, 0) AS descendants_skipped,
       coalesce(d.descendants_no_data, 0) AS descendants_no_data,
       coalesce(d.descendants_failed, 0) AS descendants_failed,
       t.total_duration_ms, t.total_api_calls
FROM latest r
JOIN totals t USING (root_job_id)
LEFT JOIN descendants d USING (root_job_id)
WHERE r.is_root_job;
