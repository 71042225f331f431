"""Discogs provider against the sandbox: search + best match, artist images, auth and throttling."""

from __future__ import annotations

import httpx
import pytest
from sandbox_support import RecordingGate, assert_no_secrets, make_settings

from pgjobs.enrichment.matching import best_match
from pgjobs.enrichment.providers import AuthError, Discogs, NotFound, Providers, RateLimited
from pgjobs.enrichment.sandbox import SandboxServer


async def test_search_then_best_match(providers: Providers, gate: RecordingGate) -> None:
    found = await providers.discogs.search_artists("Coldplay")
    assert found.pagination.items == 127
    titles = [r.title for r in found.results]
    assert titles == ["Coldplay", "Cold Play (2)", "Goldplay", "Coldplayers", "Coldcut"]
    result = best_match("Coldplay", found.results, key=lambda r: r.title)
    assert result.best is not None and (result.best.id, result.score) == (29735, 1.0)
    assert gate.acquired == ["discogs"]


async def test_wrong_artist_listed_first_loses(providers: Providers) -> None:
    found = await providers.discogs.search_artists("Linkin Park")
    assert found.results[0].title == "Linkin Parks"  # 0.957: above the threshold, and wrong
    result = best_match("Linkin Park", found.results, key=lambda r: r.title)
    assert result.best is not None and (result.best.id, result.best.title) == (8100202, "Linkin Park")


async def test_musicbrainz_hyphen_finds_and_matches(providers: Providers) -> None:
    found = await providers.discogs.search_artists("JAY\u2010Z")
    result = best_match("JAY\u2010Z", found.results, key=lambda r: r.title)
    assert result.best is not None and result.best.title == "Jay-Z" and result.score == 1.0
    artist = await providers.discogs.artist(result.best.id)
    assert artist.realname == "Shawn Corey Carter" and artist.primary_image is not None


async def test_artist_profile_and_images(providers: Providers, sandbox: SandboxServer) -> None:
    artist = await providers.discogs.artist(29735)
    assert artist.name == "Coldplay" and artist.profile.startswith("British rock band")
    assert artist.primary_image is not None and artist.primary_image.type == "primary"
    assert artist.primary_image.uri.startswith(f"{sandbox.url}/_img/i.discogs.com/")
    assert (artist.primary_image.width, artist.primary_image.height) == (600, 385)
    assert "Goldplay" in artist.names and artist.urls[0] == "https://www.coldplay.com/"
    assert [m.name for m in artist.members][0] == "Chris Martin"


async def test_empty_search(providers: Providers) -> None:
    found = await providers.discogs.search_artists("Zzyzx Quartet Nonexistent")
    assert found.results == [] and found.pagination.items == 0


async def test_unknown_artist(providers: Providers) -> None:
    with pytest.raises(NotFound) as caught:
        await providers.discogs.artist(999999999)
    assert "Artist not found." in str(caught.value)


@pytest.mark.parametrize(("retry_after", "expected"), [(30, 30.0), (None, 60.0)])
async def test_429_is_rate_limited(providers: Providers, gate: RecordingGate, sandbox: SandboxServer,
                                   retry_after: int | None, expected: float) -> None:
    sandbox.add_fault("/discogs/database/search", status=429, retry_after=retry_after, times=1)
    with pytest.raises(RateLimited) as caught:
        await providers.discogs.search_artists("Coldplay")
    assert caught.value.retry_after == expected and caught.value.status == 429
    assert "too quickly" in str(caught.value)
    assert gate.penalized == [("discogs", expected)]


async def test_bad_token_is_auth_error_without_the_token(sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    settings = make_settings(sandbox, discogs_token="wrong-token-123456")
    discogs = Discogs(client, settings)
    with pytest.raises(AuthError) as caught:
        await discogs.search_artists("Coldplay")
    assert caught.value.code == "AUTH_FAILED" and not caught.value.retryable
    for text in (str(caught.value), repr(caught.value), repr(discogs)):
        assert "wrong-token-123456" not in text
    (record,) = sandbox.requests()
    assert record["headers"]["authorization"] == "Discogs REDACTED"


async def test_missing_token_cannot_search(sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    discogs = Discogs(client, make_settings(sandbox, discogs_token=None))
    with pytest.raises(AuthError):
        await discogs.search_artists("Coldplay")
    artist = await discogs.artist(29735)  # lookups work, but without images
    assert artist.images == [] and artist.primary_image is None
    assert_no_secrets(str(sandbox.requests()), make_settings(sandbox))
