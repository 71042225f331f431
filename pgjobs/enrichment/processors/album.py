"""ENRICH_ALBUM (the root of a chain) and SPOTIFY_TRACK_FALLBACK."""

from __future__ import annotations

from typing import Any

from pgjobs.enrichment.kinds import (VARIOUS_ARTISTS_MBID, CacheAlbumCover, EnrichAlbum, EnrichArtist, Op,
                                     SpotifyTrackFallback)
from pgjobs.enrichment.matching import best_match
from pgjobs.enrichment.providers import Release
from pgjobs.enrichment.runner import Env, Q, Result, spawn
from pgjobs.queue import Discard, Job, JobTransaction


def album_quality(album: dict[str, Any], *, enriched: bool) -> str:
    cover = album.get("cloudflare_image_id") not in (None, "none")
    if enriched and cover:
        return "HIGH"
    return "MEDIUM" if enriched else album.get("data_quality") or "LOW"


def album_missing(album_id: Any) -> Result:
    problem = f"album {album_id} does not exist"
    return Result("FAILED", "album not found in the catalog; not retried", error_code="ALBUM_NOT_FOUND",
                  error_message=problem, metadata={"requestedAlbumId": str(album_id)}, outcome=Discard(problem))


async def _find_release(env: Env, album: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The album's release MBID: its own, else the best release-group match for its title."""
    if album["musicbrainz_id"]:
        return album["musicbrainz_id"], {}
    hits = await env.providers.musicbrainz.search_release_groups(album["title"], album["artist_credit"])
    match = best_match(album["title"], hits, key=lambda hit: hit.title)
    found = {"searchQuery": album["title"], "resultsCount": len(hits), "bestScore": round(match.score, 3),
             "bestCandidate": match.best.title if match.best else None}
    if not match.matched or not match.match.releases:
        return None, found
    return match.match.releases[0].id, found | {"releaseGroupId": match.match.id}


async def enrich_album(env: Env, job: Job, p: EnrichAlbum) -> Result:
    album = await env.row("get_album", {"id": p.album_id})
    if album is None:
        return album_missing(p.album_id)
    before = album["data_quality"]
    if album["enriched_at"] and not p.force:
        return Result("SKIPPED", "album already enriched (enqueue with --force to refresh)", quality_before=before,
                      quality_after=before, metadata={"title": album["title"],
                                                      "enrichedAt": album["enriched_at"].isoformat()})
    mbid, search = await _find_release(env, album)
    if mbid is None:
        return Result("NO_DATA_AVAILABLE", "no MusicBrainz release matches the album title (confidence < 0.85)",
                      quality_before=before, quality_after=before, metadata=search)
    release = await env.providers.musicbrainz.release(mbid)
    owner = await env.row("album_by_mbid", {"mbid": release.id})
    if owner is not None and owner["id"] != album["id"]:
        # The unique musicbrainz_id would fail every attempt: say so once, do not retry.
        problem = f"album {owner['id']} holds release {release.id}"
        return Result("FAILED", f"release {release.id} already belongs to album {owner['id']}; not retried",
                      error_code="DUPLICATE_RELEASE", error_message=problem,
                      quality_before=before, quality_after=before, outcome=Discard(problem),
                      metadata=search | {"musicbrainzId": release.id, "otherAlbumId": str(owner["id"])})
    gaps = [m.position for m in release.media if m.lacks_track_data]
    after = album_quality(album, enriched=True)
    metadata = search | {
        "musicbrainzId": release.id, "title": release.title, "artistCredit": release.artist_credit_string,
        "releaseDate": release.date, "trackCount": sum(len(m.tracks or ()) for m in release.media),
        "mediaWithoutTrackData": gaps, "genres": [g.name for g in release.genres],
        "coverArtFront": release.has_front_cover,
    }

    async def apply(tx: JobTransaction, result: Result) -> None:
        await _save_release(tx, album["id"], release, quality=after)
        await _spawn_artists(tx, result, album["id"], release, p)
        if release.has_front_cover:
            await spawn(tx, result, Op.CACHE_ALBUM_COVER, CacheAlbumCover(album_id=album["id"],
                                                                          triggered_by=p.triggered_by, force=p.force))
        for disc in gaps:
            await spawn(tx, result, Op.SPOTIFY_TRACK_FALLBACK,
                        SpotifyTrackFallback(album_id=album["id"], disc=disc, triggered_by=p.triggered_by))

    fields = ["title", "releaseDate", "artists", "tracks", "genres", "musicbrainzId"]
    status = "PARTIAL_SUCCESS" if gaps else "SUCCESS"
    reason = ("enriched from MusicBrainz; " + (f"media {gaps} lack track data: Spotify fallback queued"
                                                if gaps else "full tracklist"))
    return Result(status, reason, fields_enriched=fields, quality_before=before, quality_after=after,
                  metadata=metadata, apply=apply)


async def _save_release(tx: JobTransaction, album_id: Any, release: Release, *, quality: str) -> None:
    await tx.execute(Q["update_album"], {
        "id": album_id, "title": release.title, "mbid": release.id, "release_date": release.date,
        "genres": [g.name for g in release.genres], "data_quality": quality})
    for medium in release.media:
        for track in medium.tracks or ():
            await tx.execute(Q["upsert_track"], {
                "album_id": album_id, "disc": medium.position, "position": track.position, "title": track.title,
                "duration_ms": track.length, "recording_id": track.recording.id if track.recording else None,
                "spotify_id": None, "isrc": None})


async def _spawn_artists(tx: JobTransaction, result: Result, album_id: Any, release: Release, p: EnrichAlbum) -> None:
    """Credit every artist; enrich each once across all roots (dedupe key), never Various Artists."""
    await tx.execute(Q["clear_album_artists"], {"album_id": album_id})
    for position, credit in enumerate(release.artist_credit):
        cur = await tx.execute(Q["upsert_artist"], {"name": credit.artist.name, "sort_name": credit.artist.sort_name,
                                                    "mbid": credit.artist.id})
        artist_id, enriched_at = await cur.fetchone()
        await tx.execute(Q["add_album_artist"], {"album_id": album_id, "artist_id": artist_id, "position": position,
                                                 "join_phrase": credit.joinphrase})
        if credit.artist.id == VARIOUS_ARTISTS_MBID:
            result.metadata["variousArtistsCredit"] = True
            continue
        if enriched_at is not None and not p.force:
            result.metadata.setdefault("artistsAlreadyEnriched", []).append(credit.artist.name)
            continue
        child = await spawn(tx, result, Op.ENRICH_ARTIST,
                            EnrichArtist(artist_id=artist_id, triggered_by=p.triggered_by, force=p.force),
                            dedupe_key=f"ENRICH_ARTIST:{artist_id}")
        if not child.created and child.root_id != tx.job.root_id:
            # Another root has this artist in hand: a job that logs SKIPPED here, naming that root.
            await spawn(tx, result, Op.ENRICH_ARTIST, EnrichArtist(
                artist_id=artist_id, triggered_by=p.triggered_by, duplicate_of_job=child.id,
                duplicate_of_root=child.root_id))


async def spotify_track_fallback(env: Env, job: Job, p: SpotifyTrackFallback) -> Result:
    album = await env.row("get_album", {"id": p.album_id})
    if album is None:
        return album_missing(p.album_id)
    artist = (album["artist_credit"] or "").split(" / ")[0].split(" & ")[0] or None
    albums = await env.providers.spotify.search_albums(album["title"], artist)
    match = best_match(album["title"], albums, key=lambda a: a.name)
    metadata: dict[str, Any] = {"searchQuery": album["title"], "searchArtist": artist, "resultsCount": len(albums),
                                "bestScore": round(match.score, 3), "disc": p.disc}
    if not match.matched:
        return Result("NO_DATA_AVAILABLE", "no Spotify album matches (confidence < 0.85)", metadata=metadata)
    found = match.match
    tracks = [t for t in await env.providers.spotify.album_tracks(found.id) if p.disc in (None, t.disc_number)]
    metadata |= {"spotifyAlbumId": found.id, "spotifyAlbumName": found.name, "matchConfidence": round(match.score, 3),
                 "tracksFound": len(tracks)}
    if not tracks:
        return Result("NO_DATA_AVAILABLE", "the matched Spotify album has no tracks for this disc", metadata=metadata)

    async def apply(tx: JobTransaction, result: Result) -> None:
        for track in tracks:
            await tx.execute(Q["upsert_track"], {
                "album_id": album["id"], "disc": track.disc_number, "position": track.track_number,
                "title": track.name, "duration_ms": track.duration_ms, "recording_id": None,
                "spotify_id": track.id, "isrc": track.isrc})

    return Result("SUCCESS", f"filled {len(tracks)} tracks from Spotify", fields_enriched=["tracks", "durationMs",
                  "spotifyId", "isrc"], metadata=metadata, apply=apply)
