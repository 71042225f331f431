"""MusicBrainz and Cover Art Archive providers against the sandbox: parsing, the gate, error mapping."""

from __future__ import annotations

import httpx
import pytest
from sandbox_support import (
    COLDPLAY,
    COLLISION_COURSE,
    ELLA_AND_LOUIS,
    JAY_Z,
    LOUIS_ARMSTRONG,
    RUSH_OF_BLOOD,
    RecordingGate,
)

from pgjobs.enrichment.matching import best_match
from pgjobs.enrichment.providers import NotFound, Providers, RateLimited, build_providers, count_api_calls
from pgjobs.enrichment.providers.musicbrainz import discogs_artist_id_from_url
from pgjobs.enrichment.sandbox import SandboxServer
from pgjobs.enrichment.settings import RATE_LIMITS
from pgjobs.enrichment.settings import EnrichmentSettings as Settings


async def test_release_with_two_credits(providers: Providers, gate: RecordingGate, sandbox: SandboxServer) -> None:
    release = await providers.musicbrainz.release(COLLISION_COURSE)
    assert release.title == "Collision Course"
    assert release.artist_credit_string == "JAY\u2010Z / Linkin Park"
    assert [c.artist.id for c in release.artist_credit] == [JAY_Z, "f59c5520-5f46-4d2c-b2c4-822eabf53419"]
    assert release.release_group is not None and release.release_group.primary_type == "EP"
    assert [g.name for g in release.genres] == ["hip hop", "alternative rock"]
    (medium,) = release.media
    assert medium.has_tracklist and medium.track_count == 6 and len(medium.tracks or []) == 6
    assert medium.tracks and medium.tracks[0].length == 244000 and medium.tracks[0].number == "1"
    assert not release.lacks_track_data and release.has_front_cover
    assert gate.acquired == ["musicbrainz"]
    (record,) = sandbox.requests()
    assert record["params"]["inc"] == ["artist-credits recordings release-groups genres"]  # '+' on the wire
    assert record["params"]["fmt"] == ["json"]


async def test_medium_without_tracklist_is_detectable(providers: Providers) -> None:
    release = await providers.musicbrainz.release(ELLA_AND_LOUIS)
    (medium,) = release.media
    assert medium.tracks is None and medium.track_count == 0
    assert not medium.has_tracklist and medium.lacks_track_data and release.lacks_track_data
    assert not release.has_front_cover  # so CACHE_ALBUM_COVER is skipped
    assert release.artist_credit_string == "Ella Fitzgerald & Louis Armstrong"


async def test_demo_coldplay_release(providers: Providers) -> None:
    release = await providers.musicbrainz.release(RUSH_OF_BLOOD)
    assert release.artist_credit[0].artist.id == COLDPLAY
    assert release.has_front_cover and not release.lacks_track_data
    assert len(release.media[0].tracks or []) == 11


async def test_artist_url_relations(providers: Providers) -> None:
    coldplay = await providers.musicbrainz.artist(COLDPLAY)
    assert coldplay.discogs_artist_id == 29735
    assert [g.name for g in coldplay.genres][:2] == ["alternative rock", "pop rock"]
    jay_z = await providers.musicbrainz.artist(JAY_Z)
    assert jay_z.name == "JAY\u2010Z" and jay_z.discogs_artist_id is None  # the search path
    louis = await providers.musicbrainz.artist(LOUIS_ARMSTRONG)
    assert louis.discogs_artist_id == 8100404


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://www.discogs.com/artist/29735", 29735),
        ("https://www.discogs.com/artist/29735-Coldplay", 29735),
        ("http://discogs.com/fr/artist/946-Coldcut", 946),
        ("https://www.discogs.com/master/12345", None),
        ("https://www.coldplay.com/", None),
    ],
)
def test_discogs_id_from_url(url: str, expected: int | None) -> None:
    assert discogs_artist_id_from_url(url) == expected


async def test_release_group_search_and_matching(providers: Providers) -> None:
    hits = await providers.musicbrainz.search_release_groups("Ella and Louis", "Ella Fitzgerald")
    assert [h.title for h in hits][:3] == ["Ella and Louis", "Ella and Louis Again", "Ella & Louis"]
    assert hits[0].releases[0].id == ELLA_AND_LOUIS
    result = best_match("Ella and Louis", hits[1:], key=lambda h: h.title)
    assert result.best is not None and result.best.title == "Ella & Louis" and result.score == 1.0
    # the full credit string finds the same release groups, as a Lucene search would
    credit = await providers.musicbrainz.search_release_groups("Ella and Louis", "Ella Fitzgerald & Louis Armstrong")
    assert [h.id for h in credit] == [h.id for h in hits]
    assert await providers.musicbrainz.search_release_groups("Nothing Like This", "Nobody") == []


async def test_unknown_mbid_is_not_found(providers: Providers) -> None:
    with pytest.raises(NotFound) as caught:
        await providers.musicbrainz.release("00000000-1111-2222-3333-444444444444")
    error = caught.value
    assert (error.code, error.status, error.retryable, error.provider) == ("NOT_FOUND", 404, False, "musicbrainz")
    assert "Not Found" in str(error)


async def test_503_with_retry_after_is_rate_limited(providers: Providers, gate: RecordingGate,
                                                    sandbox: SandboxServer) -> None:
    sandbox.add_fault("/musicbrainz/ws/2/release/", status=503, retry_after=2, times=1)
    with pytest.raises(RateLimited) as caught:
        await providers.musicbrainz.release(COLLISION_COURSE)
    assert caught.value.retry_after == 2.0 and caught.value.code == "RATE_LIMITED" and caught.value.retryable
    assert "allowable rate limit" in str(caught.value)
    assert gate.penalized == [("musicbrainz", 2.0)]
    await providers.musicbrainz.release(COLLISION_COURSE)  # the fault is spent
    assert gate.acquired == ["musicbrainz", "musicbrainz"]


async def test_bare_503_is_still_musicbrainz_rate_limiting(providers: Providers, gate: RecordingGate,
                                                           sandbox: SandboxServer) -> None:
    sandbox.add_fault("/musicbrainz/", status=503, times=1)
    with pytest.raises(RateLimited) as caught:
        await providers.musicbrainz.artist(COLDPLAY)
    assert caught.value.retry_after == 1.0
    assert gate.penalized == [("musicbrainz", 1.0)]


async def test_gate_is_acquired_per_http_request(providers: Providers, gate: RecordingGate) -> None:
    with count_api_calls() as calls:
        await providers.musicbrainz.release(COLLISION_COURSE)
        await providers.musicbrainz.artist(JAY_Z)
        await providers.musicbrainz.search_release_groups("Ella and Louis", "Ella Fitzgerald")
    assert calls.value == 3
    assert gate.acquired == ["musicbrainz"] * 3


async def test_cover_art_listing_and_front(providers: Providers, gate: RecordingGate, sandbox: SandboxServer) -> None:
    listing = await providers.coverart.listing(COLLISION_COURSE)
    assert listing.front is not None and listing.front.id == 9473182611 and listing.front.types == ["Front"]
    assert listing.front.thumbnails.size_500 and listing.front.thumbnails.size_500.startswith(sandbox.url)
    url = await providers.coverart.front_url(COLLISION_COURSE, size=500)
    assert url == (f"{sandbox.url}/_img/archive.org/download/mbid-{COLLISION_COURSE}/"
                   f"mbid-{COLLISION_COURSE}-9473182611_thumb500.jpg")
    image = await providers.cloudflare.fetch_source(url)
    assert image.format == "jpeg" and image.content_type == "image/jpeg" and image.size > 100
    group = await providers.coverart.listing("490b639f-7033-42b6-8d1b-778385e87961", release_group=True)
    assert group.release and group.release.endswith(COLLISION_COURSE)
    assert gate.acquired == []  # the CAA has no shared budget unless the worker has a limiter for it


async def test_cover_art_waits_on_a_limiter_the_gate_has(settings: Settings, client: httpx.AsyncClient) -> None:
    gate = RecordingGate([*RATE_LIMITS, "coverartarchive"])  # as with PGJOBS_RATE_LIMITS=coverartarchive=5/s
    providers = build_providers(settings, client, gate)
    await providers.coverart.listing(COLLISION_COURSE)
    await providers.musicbrainz.release(COLLISION_COURSE)
    assert gate.acquired == ["coverartarchive", "musicbrainz"]


async def test_cover_art_missing_is_not_found(providers: Providers) -> None:
    with pytest.raises(NotFound):
        await providers.coverart.front_url(ELLA_AND_LOUIS)
    with pytest.raises(NotFound):
        await providers.coverart.listing(ELLA_AND_LOUIS)
    with pytest.raises(ValueError):
        await providers.coverart.front_url(COLLISION_COURSE, size=300)


async def test_merged_mbid_redirect_passes_the_gate_per_hop(providers: Providers, gate: RecordingGate,
                                                            sandbox: SandboxServer) -> None:
    with count_api_calls() as calls:
        artist = await providers.musicbrainz.artist("5a1f32b1-3d33-4b45-a5ac-2bc4d9e0a76f")
    assert artist.id == COLDPLAY  # store the surviving id from the final body
    assert calls.value == 2 and gate.acquired == ["musicbrainz", "musicbrainz"]
    first, second = sandbox.requests()
    assert first["status"] == 301 and second["params"]["inc"] == ["url-rels genres"]
