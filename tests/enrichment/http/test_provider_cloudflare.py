"""Cloudflare Images provider against the stateful sandbox store: idempotent uploads and error codes."""

from __future__ import annotations

import httpx
import pytest
from sandbox_support import COLLISION_COURSE, make_settings

from pgjobs.enrichment.providers import (
    AuthError,
    CloudflareImages,
    NotFound,
    Providers,
    RateLimited,
    Rejected,
    Unavailable,
    count_api_calls,
)
from pgjobs.enrichment.sandbox import SandboxServer

IMAGE_ID = "pgjobs/artist/discogs-29735"


async def primary_image_url(providers: Providers) -> str:
    artist = await providers.discogs.artist(29735)
    assert artist.primary_image is not None
    return artist.primary_image.uri


async def test_upload_by_url_then_repeat_is_already_cached(providers: Providers, client: httpx.AsyncClient,
                                                           sandbox: SandboxServer) -> None:
    source = await primary_image_url(providers)
    first = await providers.cloudflare.upload_url(IMAGE_ID, source, metadata={"source": "discogs", "discogs_artist_id": "29735"})
    assert first.id == IMAGE_ID and not first.already_cached
    assert first.filename == "NzM3Mi5qcGVn.jpeg" and first.uploaded
    assert first.delivery_url == f"{sandbox.url}/imagedelivery/Vi7wi5KSItxGFsWRG2Us6Q/{IMAGE_ID}/public"
    delivered = await client.get(first.delivery_url)
    assert delivered.headers["content-type"] == "image/jpeg"
    with count_api_calls() as calls:
        again = await providers.cloudflare.upload_url(IMAGE_ID, source)
    assert again.already_cached and again.id == IMAGE_ID
    assert again.variants == first.variants  # recovered with a details call after the 5409
    assert calls.value == 2
    assert sandbox.uploads() == [IMAGE_ID]


async def test_already_cached_without_details_falls_back_to_settings(providers: Providers,
                                                                     sandbox: SandboxServer) -> None:
    source = await primary_image_url(providers)
    await providers.cloudflare.upload_url(IMAGE_ID, source)
    sandbox.add_fault("/images/v1/pgjobs", status=503, times=1)  # the details GET fails
    again = await providers.cloudflare.upload_url(IMAGE_ID, source)
    assert again.already_cached
    assert again.delivery_url == providers.cloudflare.delivery_url(IMAGE_ID)


async def test_source_that_404s_is_rejected_5400(providers: Providers, sandbox: SandboxServer) -> None:
    with pytest.raises(Rejected) as caught:
        await providers.cloudflare.upload_url("pgjobs/artist/x", f"{sandbox.url}/_img/i.discogs.com/changed.jpeg")
    assert caught.value.upstream_code == 5400 and caught.value.code == "REJECTED" and not caught.value.retryable
    assert "origin returned 404" in str(caught.value)


async def test_upload_file_after_fetching_the_cover(providers: Providers) -> None:
    listing = await providers.coverart.listing(COLLISION_COURSE)
    assert listing.front is not None and listing.front.thumbnails.size_500 is not None
    with count_api_calls() as calls:  # the CAA thumbnail URL 307s to archive.org: two requests
        source = await providers.cloudflare.fetch_source(listing.front.thumbnails.size_500)
    assert calls.value == 2 and source.url.endswith("_thumb500.jpg")
    cached = await providers.cloudflare.upload_file(f"pgjobs/release/{COLLISION_COURSE}/front", source.content,
                                                    filename="front-500.jpg", content_type=source.content_type)
    assert cached.filename == "front-500.jpg" and not cached.already_cached
    got = await providers.cloudflare.get(cached.id)
    assert got.variants == cached.variants


async def test_non_image_file_is_rejected(providers: Providers) -> None:
    with pytest.raises(Rejected) as caught:
        await providers.cloudflare.upload_file("pgjobs/x", b"<html>no</html>", filename="x.html", content_type="text/html")
    assert caught.value.upstream_code == 5455


async def test_fetch_source_rejects_what_is_not_an_image(providers: Providers, sandbox: SandboxServer) -> None:
    with pytest.raises(Rejected):
        await providers.cloudflare.fetch_source(f"{sandbox.url}/_sandbox/health")
    with pytest.raises(NotFound):
        await providers.cloudflare.fetch_source(f"{sandbox.url}/_img/i.discogs.com/changed.jpeg")


async def test_bad_token_is_auth_error_without_the_token(sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    settings = make_settings(sandbox, cloudflare_api_token="cf-wrong-token-987")
    images = CloudflareImages(client, settings)
    with pytest.raises(AuthError) as caught:
        await images.upload_url(IMAGE_ID, "https://example.org/a.jpg")
    assert caught.value.upstream_code == 10000 and "Authentication error" in str(caught.value)
    for text in (str(caught.value), repr(caught.value), repr(images), str(sandbox.requests())):
        assert "cf-wrong-token-987" not in text


async def test_not_configured(sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    images = CloudflareImages(client, make_settings(sandbox, cloudflare_api_token=None))
    with pytest.raises(AuthError) as caught:
        await images.upload_url(IMAGE_ID, "https://example.org/a.jpg")
    assert caught.value.code == "NOT_CONFIGURED"
    assert sandbox.requests() == []


async def test_code_971_is_rate_limited(providers: Providers, sandbox: SandboxServer) -> None:
    sandbox.add_fault("/cloudflare/", status=429, retry_after=300, times=1)
    with pytest.raises(RateLimited) as caught:
        await providers.cloudflare.upload_url(IMAGE_ID, "https://example.org/a.jpg")
    assert caught.value.retry_after == 300.0 and caught.value.upstream_code == 971


async def test_5xx_is_unavailable(providers: Providers, sandbox: SandboxServer) -> None:
    sandbox.add_fault("/cloudflare/", status=500, times=1)
    with pytest.raises(Unavailable) as caught:
        await providers.cloudflare.upload_url(IMAGE_ID, "https://example.org/a.jpg")
    assert caught.value.retryable and caught.value.upstream_code == 5500
