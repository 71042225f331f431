"""The job types of the chain: names, payloads, and the queue options each is enqueued with."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class Op(StrEnum):
    ENRICH_ALBUM = "ENRICH_ALBUM"
    ENRICH_ARTIST = "ENRICH_ARTIST"
    DISCOGS_SEARCH_ARTIST = "DISCOGS_SEARCH_ARTIST"
    DISCOGS_GET_ARTIST = "DISCOGS_GET_ARTIST"
    CACHE_ARTIST_IMAGE = "CACHE_ARTIST_IMAGE"
    CACHE_ALBUM_COVER = "CACHE_ALBUM_COVER"
    SPOTIFY_TRACK_FALLBACK = "SPOTIFY_TRACK_FALLBACK"


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    triggered_by: str = Field(default="system", max_length=200)
    force: bool = False


class EnrichAlbum(Payload):
    album_id: UUID


class EnrichArtist(Payload):
    artist_id: UUID
    # Set when another root already has this artist in hand: the job logs SKIPPED naming it.
    duplicate_of_job: int | None = None
    duplicate_of_root: int | None = None


class DiscogsSearchArtist(Payload):
    artist_id: UUID
    artist_name: str = Field(min_length=1)


class DiscogsGetArtist(Payload):
    artist_id: UUID
    discogs_id: int = Field(gt=0)


class CacheArtistImage(Payload):
    artist_id: UUID
    source_provider: str | None = None


class CacheAlbumCover(Payload):
    album_id: UUID


class SpotifyTrackFallback(Payload):
    album_id: UUID
    disc: int | None = Field(default=None, ge=1)


PAYLOADS: dict[Op, type[Payload]] = {
    Op.ENRICH_ALBUM: EnrichAlbum,
    Op.ENRICH_ARTIST: EnrichArtist,
    Op.DISCOGS_SEARCH_ARTIST: DiscogsSearchArtist,
    Op.DISCOGS_GET_ARTIST: DiscogsGetArtist,
    Op.CACHE_ARTIST_IMAGE: CacheArtistImage,
    Op.CACHE_ALBUM_COVER: CacheAlbumCover,
    Op.SPOTIFY_TRACK_FALLBACK: SpotifyTrackFallback,
}

# Which entity each job type's log rows are about, and the payload field naming it.
ENTITIES: dict[Op, tuple[str, str]] = {
    Op.ENRICH_ALBUM: ("ALBUM", "album_id"),
    Op.ENRICH_ARTIST: ("ARTIST", "artist_id"),
    Op.DISCOGS_SEARCH_ARTIST: ("ARTIST", "artist_id"),
    Op.DISCOGS_GET_ARTIST: ("ARTIST", "artist_id"),
    Op.CACHE_ARTIST_IMAGE: ("ARTIST", "artist_id"),
    Op.CACHE_ALBUM_COVER: ("ALBUM", "album_id"),
    Op.SPOTIFY_TRACK_FALLBACK: ("ALBUM", "album_id"),
}

SOURCES: dict[Op, list[str]] = {
    Op.ENRICH_ALBUM: ["MUSICBRAINZ"],
    Op.ENRICH_ARTIST: ["MUSICBRAINZ"],
    Op.DISCOGS_SEARCH_ARTIST: ["DISCOGS"],
    Op.DISCOGS_GET_ARTIST: ["DISCOGS"],
    Op.CACHE_ARTIST_IMAGE: ["CLOUDFLARE"],
    Op.CACHE_ALBUM_COVER: ["COVERARTARCHIVE", "CLOUDFLARE"],
    Op.SPOTIFY_TRACK_FALLBACK: ["SPOTIFY"],
}

# Queue options (the seed's defaults: 3 attempts, 2 s exponential backoff); lower priority runs first.
PRIORITY: dict[Op, int] = {
    Op.ENRICH_ALBUM: 1, Op.ENRICH_ARTIST: 5, Op.SPOTIFY_TRACK_FALLBACK: 5, Op.CACHE_ALBUM_COVER: 5,
    Op.DISCOGS_SEARCH_ARTIST: 6, Op.DISCOGS_GET_ARTIST: 6, Op.CACHE_ARTIST_IMAGE: 7,
}
MAX_ATTEMPTS = 3
BACKOFF_BASE_MS = 2000

VARIOUS_ARTISTS_MBID = "89ad4ac3-39f7-470e-963a-56509c546377"
