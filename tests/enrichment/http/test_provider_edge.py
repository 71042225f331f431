"""The shared provider edge over real sockets: broken answers, timeouts, resets, per-job call counts,
User-Agent on every request, and credentials kept out of errors and recordings."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import httpx
import pytest
from sandbox_support import (
    COLDPLAY,
    COLLISION_COURSE,
    ELLA_AND_LOUIS,
    JAY_Z,
    RUSH_OF_BLOOD,
    USER_AGENT,
    RecordingGate,
    assert_no_secrets,
    make_settings,
    secrets_of,
)

from pgjobs.enrichment.matching import best_match
from pgjobs.enrichment.providers import (
    BadResponse,
    ProviderError,
    Providers,
    Unavailable,
    build_providers,
    count_api_calls,
)
from pgjobs.enrichment.sandbox import SandboxServer

Call = Callable[[Providers], Awaitable[object]]
CALLS: dict[str, tuple[str, Call]] = {
    "musicbrainz": ("/musicbrainz/ws/2/release/", lambda p: p.musicbrainz.release(COLLISION_COURSE)),
    "coverart": ("/coverartarchive/release/", lambda p: p.coverart.listing(COLLISION_COURSE)),
    "discogs": ("/discogs/artists/", lambda p: p.discogs.artist(29735)),
    "cloudflare": ("/cloudflare/", lambda p: p.cloudflare.get("pgjobs/artist/discogs-29735")),
    "spotify": ("/spotify-api/", lambda p: p.spotify.album_tracks("176VGwd7ODjJVxT0DkQA7A")),
}


@pytest.mark.parametrize("api", CALLS)
async def test_other_5xx_is_unavailable(api: str, providers: Providers, sandbox: SandboxServer) -> None:
    match, call = CALLS[api]
    sandbox.add_fault(match, status=500)
    with pytest.raises(Unavailable) as caught:
        await call(providers)
    assert (caught.value.code, caught.value.status, caught.value.retryable) == ("UNAVAILABLE", 500, True)
    assert caught.value.provider == ("coverartarchive" if api == "coverart" else api)


@pytest.mark.parametrize("api", CALLS)
@pytest.mark.parametrize("status", [200, 502])
async def test_html_page_is_bad_response(api: str, status: int, providers: Providers, sandbox: SandboxServer) -> None:
    match, call = CALLS[api]
    sandbox.add_fault(match, kind="html", status=status)
    with pytest.raises(BadResponse) as caught:
        await call(providers)
    assert caught.value.code == "BAD_RESPONSE" and "HTML" in str(caught.value)


@pytest.mark.parametrize("api", CALLS)
async def test_truncated_json_is_bad_response(api: str, providers: Providers, sandbox: SandboxServer) -> None:
    match, call = CALLS[api]
    if api == "cloudflare":  # make the details call succeed first so there is a body to cut
        artist = await providers.discogs.artist(29735)
        assert artist.primary_image is not None
        await providers.cloudflare.upload_url("pgjobs/artist/discogs-29735", artist.primary_image.uri)
    sandbox.add_fault(match, kind="truncated", method="GET")
    with pytest.raises(BadResponse) as caught:
        await call(providers)
    assert "invalid JSON" in str(caught.value)


async def test_unexpected_shape_is_bad_response(sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    # Aim the MusicBrainz client at a Cover Art Archive listing: valid JSON, but no artist in it.
    listing = f"{sandbox.url}/coverartarchive/release/{COLLISION_COURSE}?ignored="
    providers = build_providers(make_settings(sandbox, musicbrainz_url=listing), client)
    with pytest.raises(BadResponse) as caught:
        await providers.musicbrainz.artist(COLDPLAY)
    assert "unexpected response shape" in str(caught.value) and "name: Field required" in str(caught.value)


async def test_timeout_is_unavailable(sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    providers = build_providers(make_settings(sandbox, http_timeout=0.25), client)
    sandbox.add_fault("/musicbrainz/", kind="delay", delay=10, times=1)
    with pytest.raises(Unavailable) as caught:
        await providers.musicbrainz.artist(COLDPLAY)
    assert caught.value.code == "TIMEOUT" and caught.value.retryable and "0.25s" in str(caught.value)


async def test_connection_reset_is_unavailable(providers: Providers, sandbox: SandboxServer) -> None:
    sandbox.add_fault("/discogs/", kind="reset", times=1)
    with pytest.raises(Unavailable) as caught:
        await providers.discogs.search_artists("Coldplay")
    assert caught.value.code == "CONNECTION_ERROR"
    assert_no_secrets(str(caught.value) + repr(caught.value), providers.discogs._settings)  # noqa: SLF001


async def test_refused_connection_is_unavailable(client: httpx.AsyncClient) -> None:
    with SandboxServer() as gone:
        settings = make_settings(gone)
    providers = build_providers(settings, client)  # the server is closed now
    with pytest.raises(Unavailable) as caught:
        await providers.musicbrainz.artist(COLDPLAY)
    assert caught.value.code == "CONNECTION_ERROR"


async def test_call_counts_are_per_job_under_concurrency(providers: Providers) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def job(calls_wanted: int) -> int:
        with count_api_calls() as calls:
            for _ in range(calls_wanted):
                await providers.musicbrainz.artist(JAY_Z)
                started.set()
                await release.wait()  # interleave the two jobs' requests on the shared client
        return calls.value

    with count_api_calls() as total:
        one = asyncio.create_task(job(1))
        three = asyncio.create_task(job(3))
        await started.wait()
        release.set()
        assert await asyncio.gather(one, three) == [1, 3]
    assert total.value == 4


async def test_demo_chain_user_agent_and_redaction(providers: Providers, gate: RecordingGate,
                                                   sandbox: SandboxServer) -> None:
    """Every API once, the way the processors chain them; then inspect the whole recording."""
    with count_api_calls() as calls:
        release = await providers.musicbrainz.release(RUSH_OF_BLOOD)
        artist = await providers.musicbrainz.artist(release.artist_credit[0].artist.id)
        assert artist.discogs_artist_id == 29735
        jay_z = await providers.musicbrainz.artist(JAY_Z)
        hits = await providers.discogs.search_artists(jay_z.name)
        match = best_match(jay_z.name, hits.results, key=lambda r: r.title).match
        assert match is not None and match.id == 8100101
        discogs_artist = await providers.discogs.artist(artist.discogs_artist_id)
        assert discogs_artist.primary_image is not None
        await providers.cloudflare.upload_url("pgjobs/artist/discogs-29735", discogs_artist.primary_image.uri)
        cover = await providers.coverart.front_url(RUSH_OF_BLOOD)
        await providers.cloudflare.upload_url(f"pgjobs/release/{RUSH_OF_BLOOD}/front", cover)
        ella = await providers.musicbrainz.release(ELLA_AND_LOUIS)
        assert ella.lacks_track_data
        albums = await providers.spotify.search_albums(ella.title, ella.artist_credit[0].name)
        tracks = await providers.spotify.album_tracks(albums[0].id)
        assert len(tracks) == 11
    assert calls.value == 12  # MusicBrainz 4, Discogs 2, CAA 1, Cloudflare 2, Spotify token + 2
    records = sandbox.requests()
    ours = [r for r in records if not r["headers"].get("user-agent", "").startswith("Cloudflare-Images-Sandbox")]
    assert len(ours) == calls.value
    assert all(r["headers"].get("user-agent") == USER_AGENT for r in ours)
    assert all(r["headers"].get("user-agent") for r in records)  # Cloudflare's own fetches too
    assert gate.acquired.count("musicbrainz") == 4 and gate.acquired.count("discogs") == 2
    dumped = json.dumps(records)
    for secret in secrets_of(providers.discogs._settings):  # noqa: SLF001
        assert secret not in dumped
    authorizations = {r["headers"]["authorization"] for r in records if "authorization" in r["headers"]}
    assert authorizations == {"Discogs REDACTED", "Bearer REDACTED", "Basic REDACTED"}


async def test_errors_never_carry_secrets(sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    # Secrets that the server echoes back in an error body must still be scrubbed.
    settings = make_settings(sandbox)
    providers = build_providers(settings, client)
    errors: list[ProviderError] = []
    for api, (match, call) in CALLS.items():
        sandbox.add_fault(match, status=404 if api != "cloudflare" else 500)
        with pytest.raises(ProviderError) as caught:
            await call(providers)
        errors.append(caught.value)
    text = " ".join(str(e) + repr(e) for e in errors) + repr(providers)
    assert_no_secrets(text, settings)
    # and a body that echoes a secret is scrubbed at the edge
    discogs = providers.discogs
    scrubbed = discogs._scrub(f"token {settings.discogs_token.get_secret_value()} leaked")  # noqa: SLF001
    assert scrubbed == "token *** leaked"
