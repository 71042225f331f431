"""Spotify provider against the sandbox: cached client-credentials token, search, album tracks."""

from __future__ import annotations

import httpx
import pytest
from sandbox_support import make_settings

from pgjobs.enrichment.providers import AuthError, Providers, RateLimited, Spotify
from pgjobs.enrichment.sandbox import SandboxServer

ALBUM = "176VGwd7ODjJVxT0DkQA7A"


def token_requests(sandbox: SandboxServer) -> int:
    return sum(1 for r in sandbox.requests() if r["path"] == "/spotify-accounts/api/token")


async def test_search_and_tracks_share_one_token(providers: Providers, sandbox: SandboxServer) -> None:
    albums = await providers.spotify.search_albums("Ella and Louis", "Ella Fitzgerald")
    assert albums[0].id == ALBUM and albums[0].total_tracks == 11 and albums[0].release_date == "1956-10-16"
    assert albums[0].artist_names == "Ella Fitzgerald, Louis Armstrong"
    tracks = await providers.spotify.album_tracks(ALBUM)
    assert len(tracks) == 11
    assert (tracks[0].track_number, tracks[0].name, tracks[0].duration_ms) == (1, "Can't We Be Friends?", 273000)
    assert tracks[0].isrc is None  # simplified tracks carry no external_ids
    assert token_requests(sandbox) == 1
    (search,) = [r for r in sandbox.requests() if r["path"] == "/spotify-api/v1/search"]
    assert search["params"]["market"] == ["US"] and search["params"]["type"] == ["album,track"]


async def test_search_tracks_carry_isrc(providers: Providers) -> None:
    found = await providers.spotify.search("album:Ella and Louis artist:Ella Fitzgerald")
    assert found.tracks is not None and found.tracks.items[0].isrc == "XXFIX5600001"


async def test_empty_search(providers: Providers) -> None:
    assert await providers.spotify.search_albums("No Such Album Zz9", "Nobody") == []


async def test_token_is_refreshed_before_expiry(sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    now = [1000.0]
    spotify = Spotify(client, make_settings(sandbox), clock=lambda: now[0])
    await spotify.album_tracks(ALBUM)
    now[0] += 3500  # 3600 s token, refreshed a minute early
    await spotify.album_tracks(ALBUM)
    assert token_requests(sandbox) == 1
    now[0] += 100
    await spotify.album_tracks(ALBUM)
    assert token_requests(sandbox) == 2


async def test_expired_token_is_replaced_once(providers: Providers, sandbox: SandboxServer) -> None:
    sandbox.add_fault("/spotify-api/v1/albums/", status=401, times=1)
    tracks = await providers.spotify.album_tracks(ALBUM)
    assert len(tracks) == 11 and token_requests(sandbox) == 2


async def test_wrong_secret_is_auth_error_without_the_secret(sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    spotify = Spotify(client, make_settings(sandbox, spotify_client_secret="spotify-wrong-secret-42"))
    with pytest.raises(AuthError) as caught:
        await spotify.search_albums("Ella and Louis")
    assert caught.value.upstream_code == "invalid_client" and caught.value.status == 400
    for text in (str(caught.value), repr(caught.value), repr(spotify), str(sandbox.requests())):
        assert "spotify-wrong-secret-42" not in text
    assert sandbox.requests()[0]["headers"]["authorization"] == "Basic REDACTED"


async def test_429_is_rate_limited(providers: Providers, sandbox: SandboxServer) -> None:
    sandbox.add_fault("/spotify-api/", status=429, retry_after=7, times=1)
    with pytest.raises(RateLimited) as caught:
        await providers.spotify.search_albums("Ella and Louis", "Ella Fitzgerald")
    assert caught.value.retry_after == 7.0 and "rate limit exceeded" in str(caught.value)
