"""ENRICH_ARTIST (MusicBrainz), DISCOGS_SEARCH_ARTIST and DISCOGS_GET_ARTIST."""

from __future__ import annotations

from typing import Any

from pgjobs.enrichment.kinds import (CacheArtistImage, DiscogsGetArtist, DiscogsSearchArtist, EnrichArtist, Op)
from pgjobs.enrichment.matching import best_match
from pgjobs.enrichment.runner import Env, Q, Result, spawn
from pgjobs.queue import Discard, Job, JobTransaction

PROFILE_EXCERPT = 500


def artist_missing(artist_id: Any) -> Result:
    problem = f"artist {artist_id} does not exist"
    return Result("FAILED", "artist not found in the catalog; not retried", error_code="ARTIST_NOT_FOUND",
                  error_message=problem, metadata={"requestedArtistId": str(artist_id)}, outcome=Discard(problem))


def image_cached(artist: dict[str, Any]) -> bool:
    return artist["cloudflare_image_id"] not in (None, "none")


async def enrich_artist(env: Env, job: Job, p: EnrichArtist) -> Result:
    artist = await env.row("get_artist", {"id": p.artist_id})
    if artist is None:
        return artist_missing(p.artist_id)
    quality = artist["data_quality"]
    if p.duplicate_of_root is not None:
        return Result("SKIPPED", f"artist is already being enriched under root job {p.duplicate_of_root}",
                      quality_before=quality, quality_after=quality,
                      metadata={"artistName": artist["name"], "otherRootJobId": p.duplicate_of_root,
                                "otherJobId": p.duplicate_of_job})
    if artist["enriched_at"] and not p.force:
        return Result("SKIPPED", "artist already enriched", quality_before=quality, quality_after=quality,
                      metadata={"artistName": artist["name"], "enrichedAt": artist["enriched_at"].isoformat()})
    if not artist["musicbrainz_id"]:
        async def search_only(tx: JobTransaction, result: Result) -> None:
            await spawn(tx, result, Op.DISCOGS_SEARCH_ARTIST, DiscogsSearchArtist(
                artist_id=artist["id"], artist_name=artist["name"], triggered_by=p.triggered_by))
        return Result("NO_DATA_AVAILABLE", "artist has no MusicBrainz id; searching Discogs by name",
                      quality_before=quality, quality_after=quality, metadata={"artistName": artist["name"]},
                      apply=search_only)

    found = await env.providers.musicbrainz.artist(artist["musicbrainz_id"])
    discogs_id = found.discogs_artist_id
    genres = [g.name for g in found.genres]
    after = "HIGH" if quality == "HIGH" else "MEDIUM"

    async def apply(tx: JobTransaction, result: Result) -> None:
        await tx.execute(Q["update_artist_from_musicbrainz"], {
            "id": artist["id"], "name": found.name, "sort_name": found.sort_name, "genres": genres, "mbid": found.id,
            "discogs_id": str(discogs_id) if discogs_id else None, "data_quality": after})
        common = {"artist_id": artist["id"], "triggered_by": p.triggered_by}
        if discogs_id is not None:
            await spawn(tx, result, Op.DISCOGS_GET_ARTIST, DiscogsGetArtist(discogs_id=discogs_id, **common))
        else:
            await spawn(tx, result, Op.DISCOGS_SEARCH_ARTIST, DiscogsSearchArtist(artist_name=found.name, **common))
            if artist["image_url"] and not image_cached(artist):
                await spawn(tx, result, Op.CACHE_ARTIST_IMAGE, CacheArtistImage(**common))

    fields = ["name", "sortName", "genres"] + (["discogsId"] if discogs_id else [])
    return Result("SUCCESS", "enriched from MusicBrainz" + (
        "; Discogs id from its url-relation (no search needed)" if discogs_id else "; searching Discogs"),
        fields_enriched=fields, quality_before=quality, quality_after=after, apply=apply,
        metadata={"musicbrainzId": found.id, "artistName": found.name, "genres": genres,
                  "discogsIdFromUrlRelation": discogs_id, "relationsFound": len(found.relations)})


async def discogs_search_artist(env: Env, job: Job, p: DiscogsSearchArtist) -> Result:
    artist = await env.row("get_artist", {"id": p.artist_id})
    if artist is None:
        return artist_missing(p.artist_id)
    quality = artist["data_quality"]
    search = await env.providers.discogs.search_artists(p.artist_name, per_page=10)
    metadata: dict[str, Any] = {"searchQuery": p.artist_name, "resultsCount": len(search.results)}
    if not search.results:
        return Result("NO_DATA_AVAILABLE", "no Discogs results for the artist", quality_before=quality,
                      quality_after=quality, metadata=metadata)
    match = best_match(p.artist_name, search.results, key=lambda r: r.title)
    metadata |= {"bestScore": round(match.score, 3), "bestCandidate": match.best.title, "threshold": match.threshold}
    if not match.matched:
        return Result("NO_DATA_AVAILABLE", f"no confident Discogs match (best {match.score:.2f} < "
                      f"{match.threshold:.2f})", quality_before=quality, quality_after=quality, metadata=metadata)
    hit = match.match
    metadata |= {"discogsId": str(hit.id), "discogsTitle": hit.title, "matchConfidence": round(match.score, 3)}

    async def apply(tx: JobTransaction, result: Result) -> None:
        await tx.execute(Q["set_artist_discogs_id"], {"id": artist["id"], "discogs_id": str(hit.id),
                                                      "data_quality": quality})
        await spawn(tx, result, Op.DISCOGS_GET_ARTIST, DiscogsGetArtist(
            artist_id=artist["id"], discogs_id=hit.id, triggered_by=p.triggered_by))

    return Result("SUCCESS", "found the Discogs artist; fetching it", fields_enriched=["discogsId"],
                  quality_before=quality, quality_after=quality, metadata=metadata, apply=apply)


async def discogs_get_artist(env: Env, job: Job, p: DiscogsGetArtist) -> Result:
    artist = await env.row("get_artist", {"id": p.artist_id})
    if artist is None:
        return artist_missing(p.artist_id)
    quality = artist["data_quality"]
    found = await env.providers.discogs.artist(p.discogs_id)
    image = found.primary_image
    profile = found.profile.strip() or None
    after = "HIGH" if profile and (image or image_cached(artist)) else "MEDIUM"
    metadata = {"discogsId": str(found.id), "discogsTitle": found.name,
                "matchedProfile": (profile or "")[:PROFILE_EXCERPT] or None, "imagesFound": len(found.images),
                "primaryImageUrl": image.uri if image else None, "genres": [],  # Discogs keeps genres on releases
                "members": [m.name for m in found.members], "urlsFound": len(found.urls)}
    fields = (["profile"] if profile else []) + (["imageUrl"] if image else [])

    async def apply(tx: JobTransaction, result: Result) -> None:
        await tx.execute(Q["update_artist_from_discogs"], {
            "id": artist["id"], "profile": profile, "image_url": image.uri if image else None,
            "discogs_id": str(found.id), "data_quality": after})
        if image and (not image_cached(artist) or p.force):
            await spawn(tx, result, Op.CACHE_ARTIST_IMAGE, CacheArtistImage(
                artist_id=artist["id"], source_provider="discogs", triggered_by=p.triggered_by, force=p.force))

    status = "SUCCESS" if profile and image else "PARTIAL_SUCCESS"
    reason = "fetched the Discogs artist" + ("" if image else "; it has no image") + ("" if profile else "; no profile")
    return Result(status, reason, fields_enriched=fields, quality_before=quality, quality_after=after,
                  metadata=metadata, apply=apply)
