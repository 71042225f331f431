"""Providers: httpx clients for the five upstream APIs, built once per worker by `build_providers`.

    async with httpx.AsyncClient() as client:
        providers = build_providers(settings, client, gate)
        with count_api_calls() as calls:
            release = await providers.musicbrainz.release(mbid)
        calls.value  # HTTP requests this job sent

Every failure surfaces as a `ProviderError` subclass (see `errors`).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from pgjobs.enrichment.providers.base import ApiCallCounter, RateGate, count_api_calls
from pgjobs.enrichment.providers.cloudflare import CachedImage, CloudflareImages, SourceImage
from pgjobs.enrichment.providers.discogs import Discogs, DiscogsArtist, DiscogsImage, DiscogsSearchResult
from pgjobs.enrichment.providers.errors import (
    AuthError,
    BadResponse,
    NotFound,
    ProviderError,
    RateLimited,
    Rejected,
    Unavailable,
)
from pgjobs.enrichment.providers.musicbrainz import (
    Artist,
    CoverArtArchive,
    CoverArtListing,
    Medium,
    MusicBrainz,
    Release,
    ReleaseGroupHit,
    Track,
    discogs_artist_id_from_url,
)
from pgjobs.enrichment.providers.spotify import Spotify, SpotifyAlbum, SpotifyTrack
from pgjobs.enrichment.settings import EnrichmentSettings as Settings


@dataclass(frozen=True)
class Providers:
    """One client per API, sharing the worker's AsyncClient and rate gate."""

    musicbrainz: MusicBrainz
    coverart: CoverArtArchive
    discogs: Discogs
    cloudflare: CloudflareImages
    spotify: Spotify


def build_providers(settings: Settings, client: httpx.AsyncClient, gate: RateGate | None = None) -> Providers:
    return Providers(
        musicbrainz=MusicBrainz(client, settings, gate),
        coverart=CoverArtArchive(client, settings, gate),
        discogs=Discogs(client, settings, gate),
        cloudflare=CloudflareImages(client, settings, gate),
        spotify=Spotify(client, settings, gate),
    )


__all__ = [
    "ApiCallCounter",
    "Artist",
    "AuthError",
    "BadResponse",
    "CachedImage",
    "CloudflareImages",
    "CoverArtArchive",
    "CoverArtListing",
    "Discogs",
    "DiscogsArtist",
    "DiscogsImage",
    "DiscogsSearchResult",
    "Medium",
    "MusicBrainz",
    "NotFound",
    "ProviderError",
    "Providers",
    "RateGate",
    "RateLimited",
    "Rejected",
    "Release",
    "ReleaseGroupHit",
    "SourceImage",
    "Spotify",
    "SpotifyAlbum",
    "SpotifyTrack",
    "Track",
    "Unavailable",
    "build_providers",
    "count_api_calls",
    "discogs_artist_id_from_url",
]
