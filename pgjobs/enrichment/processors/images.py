"""CACHE_ARTIST_IMAGE and CACHE_ALBUM_COVER: source image → Cloudflare Images, idempotently.

The Cloudflare image id is deterministic (pgjobs/artist/discogs-29735, pgjobs/album/<mbid>), so a
retried upload that finds its own earlier copy (5409) counts as cached. An image that cannot be
fetched or is refused marks the entity `cloudflare_image_id = 'none'` so the chain stops trying.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from pgjobs.enrichment.kinds import CacheAlbumCover, CacheArtistImage
from pgjobs.enrichment.processors.album import album_missing
from pgjobs.enrichment.processors.artist import artist_missing, image_cached
from pgjobs.enrichment.providers import CachedImage, NotFound, Rejected, SourceImage
from pgjobs.enrichment.runner import Env, Q, Result
from pgjobs.queue import Discard, Job, JobTransaction

CACHE_LOCATION = "cloudflare_images"


async def _upload(env: Env, image_id: str, url: str) -> tuple[SourceImage, CachedImage]:
    cloudflare = env.providers.cloudflare
    source = await cloudflare.fetch_source(url)
    filename = url.rsplit("/", 1)[-1].split("?")[0] or "image"
    cached = await cloudflare.upload_file(image_id, source.content, filename=filename,
                                          content_type=source.content_type)
    return source, cached


def _cached_metadata(before_url: str, source: SourceImage, cached: CachedImage, provider: str | None) -> dict:
    return {"beforeUrl": before_url, "afterUrl": cached.delivery_url, "cacheLocation": CACHE_LOCATION,
            "cloudflareImageId": cached.id, "imageSize": source.size, "imageFormat": source.format,
            "sourceProvider": provider, "alreadyCached": cached.already_cached}


def _unfetchable(exc: NotFound | Rejected, before_url: str, provider: str | None,
                 mark: Callable[[JobTransaction], Awaitable[None]]) -> Result:
    async def apply(tx: JobTransaction, result: Result) -> None:
        await mark(tx)
    return Result("FAILED", "image could not be fetched or was refused; marked 'none'",
                  fields_enriched=["cloudflareImageId"], error_code="IMAGE_FETCH_FAILED"
                  if isinstance(exc, NotFound) else f"IMAGE_{exc.code}", error_message=str(exc),
                  metadata={"beforeUrl": before_url, "sourceProvider": provider, "cacheLocation": CACHE_LOCATION,
                            "provider": exc.provider, "upstreamCode": exc.upstream_code},
                  apply=apply, outcome=Discard(str(exc)))


async def cache_artist_image(env: Env, job: Job, p: CacheArtistImage) -> Result:
    artist = await env.row("get_artist", {"id": p.artist_id})
    if artist is None:
        return artist_missing(p.artist_id)
    quality = artist["data_quality"]
    base = {"artistName": artist["name"]}
    if image_cached(artist) and not p.force:
        return Result("SKIPPED", "artist image already cached in Cloudflare", quality_before=quality,
                      quality_after=quality, metadata=base | {"existingCloudflareImageId": artist["cloudflare_image_id"]})
    if not artist["image_url"]:
        return Result("NO_DATA_AVAILABLE", "no image URL known for the artist", quality_before=quality,
                      quality_after=quality, metadata=base)
    key = f"discogs-{artist['discogs_id']}" if artist["discogs_id"] else str(artist["id"])
    image_id = f"pgjobs/artist/{key}"
    provider = p.source_provider or ("discogs" if artist["discogs_id"] else None)

    async def mark_none(tx: JobTransaction) -> None:
        await tx.execute(Q["set_artist_image"], {"id": artist["id"], "image_id": "none", "data_quality": quality})

    try:
        source, cached = await _upload(env, image_id, artist["image_url"])
    except (NotFound, Rejected) as exc:
        return _unfetchable(exc, artist["image_url"], provider, mark_none)
    after = "HIGH" if artist["profile"] else "MEDIUM"

    async def apply(tx: JobTransaction, result: Result) -> None:
        await tx.execute(Q["set_artist_image"], {"id": artist["id"], "image_id": cached.id, "data_quality": after})

    reason = "image already in Cloudflare (earlier attempt)" if cached.already_cached else "cached artist image"
    return Result("SUCCESS", reason + " to Cloudflare Images", fields_enriched=["cloudflareImageId"],
                  quality_before=quality, quality_after=after, apply=apply,
                  metadata=base | _cached_metadata(artist["image_url"], source, cached, provider))


async def cache_album_cover(env: Env, job: Job, p: CacheAlbumCover) -> Result:
    album = await env.row("get_album", {"id": p.album_id})
    if album is None:
        return album_missing(p.album_id)
    quality = album["data_quality"]
    base: dict[str, Any] = {"albumTitle": album["title"]}
    if album["cloudflare_image_id"] not in (None, "none") and not p.force:
        return Result("SKIPPED", "album cover already cached in Cloudflare", quality_before=quality,
                      quality_after=quality, metadata=base | {"existingCloudflareImageId": album["cloudflare_image_id"]})
    if not album["musicbrainz_id"]:
        return Result("NO_DATA_AVAILABLE", "album has no MusicBrainz release id", metadata=base)

    async def mark_none(tx: JobTransaction) -> None:
        await tx.execute(Q["set_album_cover"], {"id": album["id"], "cover_art_url": None, "image_id": "none",
                                                "data_quality": quality})

    try:
        listing = await env.providers.coverart.listing(album["musicbrainz_id"])
    except NotFound:
        async def no_art(tx: JobTransaction, result: Result) -> None:
            await mark_none(tx)
        return Result("NO_DATA_AVAILABLE", "the Cover Art Archive has no art for this release",
                      quality_before=quality, quality_after=quality, metadata=base, apply=no_art)
    front = listing.front
    if front is None:
        return Result("NO_DATA_AVAILABLE", "the release has art but no front cover", metadata=base | {
            "imagesFound": len(listing.images)})
    url = front.thumbnails.size_500 or front.thumbnails.large or front.image
    try:
        source, cached = await _upload(env, f"pgjobs/album/{album['musicbrainz_id']}", url)
    except (NotFound, Rejected) as exc:
        return _unfetchable(exc, url, "coverartarchive", mark_none)

    async def apply(tx: JobTransaction, result: Result) -> None:
        await tx.execute(Q["set_album_cover"], {"id": album["id"], "cover_art_url": front.image,
                                                "image_id": cached.id, "data_quality": "HIGH"})

    return Result("SUCCESS", "cached the front cover to Cloudflare Images", fields_enriched=["coverArtUrl",
                  "cloudflareImageId"], quality_before=quality, quality_after="HIGH", apply=apply,
                  metadata=base | _cached_metadata(url, source, cached, "coverartarchive"))
