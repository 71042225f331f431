"""Registers the chain's job types with a queue Registry (the CLI's worker wiring calls this)."""

from __future__ import annotations

from pgjobs.enrichment.kinds import PAYLOADS, Op
from pgjobs.enrichment.processors.album import enrich_album, spotify_track_fallback
from pgjobs.enrichment.processors.artist import discogs_get_artist, discogs_search_artist, enrich_artist
from pgjobs.enrichment.processors.images import cache_album_cover, cache_artist_image
from pgjobs.enrichment.runner import Env, Processor, lease_expired_hook, make_handler
from pgjobs.queue import JobContext, Registry

PROCESSORS: dict[Op, Processor] = {
    Op.ENRICH_ALBUM: enrich_album,
    Op.ENRICH_ARTIST: enrich_artist,
    Op.DISCOGS_SEARCH_ARTIST: discogs_search_artist,
    Op.DISCOGS_GET_ARTIST: discogs_get_artist,
    Op.CACHE_ARTIST_IMAGE: cache_artist_image,
    Op.CACHE_ALBUM_COVER: cache_album_cover,
    Op.SPOTIFY_TRACK_FALLBACK: spotify_track_fallback,
}


async def _unwired(ctx: JobContext) -> None:
    raise RuntimeError("enrichment handlers need providers: register them with an Env")


def register(registry: Registry, env: Env | None) -> None:
    """Register every job type; with env=None only the payload models (for `pgjobs enqueue` checks)."""
    for op, processor in PROCESSORS.items():
        run = make_handler(op, processor, env) if env is not None else _unwired
        # The runner validates payloads itself so a bad one still gets its FAILED log row.
        registry.register(op.value, run, payload_model=PAYLOADS[op], validate_payload=False,
                          on_lease_expired=lease_expired_hook(op))
