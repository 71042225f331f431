"""Cloudflare Images client: idempotent uploads under deterministic custom ids, plus source fetches.

Cloudflare answers with an envelope `{success, errors[{code, message}], result}` and its codes,
not the HTTP status, carry the meaning, so `_classify` keys on `errors[].code`. A custom id that
already exists (5409) is the normal outcome of a retried job and comes back as a success with
`already_cached=True`. Requests wait on a limiter only when the worker has one named "cloudflare".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from pgjobs.enrichment.providers.base import BaseProvider, parse_retry_after
from pgjobs.enrichment.providers.errors import (
    AuthError,
    NotFound,
    ProviderError,
    RateLimited,
    Rejected,
    Unavailable,
)

MAX_IMAGE_BYTES = 10 * 1024 * 1024  # Cloudflare's upload limit
_AUTH_CODES = {10000, 5403}
_RATE_CODES = {971, 10429}
_RETRY_CODES = {5408, 5433, 5450, 5500, 5503, 5540, 5541, 5542, 5543, 5544, 5550}
_MAGIC = ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF8", "gif"), (b"RIFF", "webp"))


class _AlreadyExists(Rejected):
    """5409: the custom id is taken. Never leaves this module."""


class CloudflareImage(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    id: str
    filename: str | None = None
    uploaded: str | None = None
    variants: list[str] = Field(default_factory=list)
    # The API model calls it `meta`; one docs page says `metadata`: accept both.
    meta: dict[str, Any] = Field(default_factory=dict, validation_alias=AliasChoices("meta", "metadata"))
    require_signed_urls: bool = Field(default=False, alias="requireSignedURLs")


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore")

    success: bool
    result: CloudflareImage | None = None


@dataclass(frozen=True)
class CachedImage:
    """An image held by Cloudflare; `already_cached` = an earlier attempt had uploaded it."""

    id: str
    variants: tuple[str, ...] = ()
    filename: str | None = None
    uploaded: str | None = None
    already_cached: bool = False

    @property
    def delivery_url(self) -> str | None:
        """The `public` variant's URL (else the first variant)."""
        public = [v for v in self.variants if v.rstrip("/").endswith("/public")]
        return (public or list(self.variants) or [None])[0]


@dataclass(frozen=True)
class SourceImage:
    """Bytes of an image fetched from its origin (Discogs, Cover Art Archive…) before uploading."""

    url: str  # final URL after redirects
    content: bytes
    content_type: str

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def format(self) -> str | None:
        """'jpeg' | 'png' | 'gif' | 'webp' from the bytes themselves, else None."""
        return next((name for magic, name in _MAGIC if self.content.startswith(magic)), None)

    def __repr__(self) -> str:
        return f"SourceImage(url={self.url!r}, content_type={self.content_type!r}, size={self.size})"


class CloudflareImages(BaseProvider):
    """Uploads to `POST /accounts/{account_id}/images/v1` (multipart) and image lookups."""

    name: ClassVar[str] = "cloudflare"
    limiter: ClassVar[str | None] = "cloudflare"
    default_retry_after: ClassVar[float] = 300.0  # an exceeded global limit blocks calls for 5 minutes

    def _images_url(self, image_id: str | None = None) -> str:
        s = self._settings
        api_token = s.cloudflare_api_token.get_secret_value() if s.cloudflare_api_token else ""
        if not s.cloudflare_account_id or not api_token:
            raise self._error(AuthError, "cloudflare_account_id and cloudflare_api_token must be set",
                              code="NOT_CONFIGURED")
        url = f"{s.cloudflare_url.rstrip('/')}/accounts/{quote(s.cloudflare_account_id, safe='')}/images/v1"
        return url if image_id is None else f"{url}/{quote(image_id, safe='')}"

    def _auth_headers(self) -> dict[str, str]:
        token = self._settings.cloudflare_api_token
        return {"Authorization": f"Bearer {token.get_secret_value() if token else ''}"}

    def delivery_url(self, image_id: str, variant: str = "public") -> str | None:
        """imagedelivery.net URL built from settings, when the account hash is configured."""
        account_hash = self._settings.cloudflare_account_hash
        if not account_hash:
            return None
        return f"{self._settings.cloudflare_delivery_url.rstrip('/')}/{account_hash}/{image_id}/{variant}"

    def _classify(self, response: httpx.Response) -> ProviderError | None:
        if not str(response.request.url).startswith(self._settings.cloudflare_url.rstrip("/")):
            return None  # a source-image fetch, not the Cloudflare API
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(body, dict) or (body.get("success") is not False and response.status_code < 400):
            return None
        detail, upstream = self.error_detail(response)
        status = response.status_code
        what = f"{response.request.method} images/v1 -> HTTP {status}, code {upstream}: {detail}"
        kwargs: dict[str, Any] = {"status": status, "upstream_code": upstream}
        if upstream == 5409:
            return self._error(_AlreadyExists, what, **kwargs)
        if upstream in _AUTH_CODES:
            return self._error(AuthError, what, **kwargs)
        if upstream in _RATE_CODES or status == 429:
            retry = parse_retry_after(response.headers.get("retry-after"))
            return self._error(RateLimited, what, retry_after=self.default_retry_after if retry is None else retry,
                               **kwargs)
        if upstream == 5404:
            return self._error(NotFound, what, **kwargs)
        if upstream in _RETRY_CODES or status >= 500:
            return self._error(Unavailable, what, **kwargs)
        return self._error(Rejected, what, **kwargs)  # 5400 origin fetch failed, 5413, 5415, 5455, …

    def _parse(self, response: httpx.Response, *, already_cached: bool = False) -> CachedImage:
        envelope = self._json(response, _Envelope)
        if envelope.result is None:
            raise self._error(Unavailable, "images/v1 answered success without a result", status=response.status_code)
        image = envelope.result
        return CachedImage(id=image.id, variants=tuple(image.variants), filename=image.filename,
                           uploaded=image.uploaded, already_cached=already_cached)

    async def _upload(self, image_id: str, files: dict[str, Any], metadata: Mapping[str, Any] | None) -> CachedImage:
        url = self._images_url()
        files = {**files, "id": (None, image_id)}
        if metadata:
            files["metadata"] = (None, json.dumps(dict(metadata), separators=(",", ":")))
        try:
            response = await self._request("POST", url, files=files, headers=self._auth_headers())
        except _AlreadyExists:
            return await self._recover(image_id)
        return self._parse(response)

    async def _recover(self, image_id: str) -> CachedImage:
        # A retried job hit its own earlier upload: fetch the details for the variants if we can.
        try:
            found = await self.get(image_id)
        except ProviderError:
            url = self.delivery_url(image_id)
            return CachedImage(id=image_id, variants=(url,) if url else (), already_cached=True)
        return CachedImage(id=found.id, variants=found.variants, filename=found.filename,
                           uploaded=found.uploaded, already_cached=True)

    async def upload_url(self, image_id: str, source_url: str, *, metadata: Mapping[str, Any] | None = None) -> CachedImage:
        """Let Cloudflare fetch `source_url` and store it as `image_id` (idempotent).

        Rejected with upstream_code 5400 when Cloudflare cannot fetch the source (e.g. it 404s).
        """
        return await self._upload(image_id, {"url": (None, source_url)}, metadata)

    async def upload_file(
        self,
        image_id: str,
        content: bytes,
        *,
        filename: str = "image",
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, Any] | None = None,
    ) -> CachedImage:
        """Upload image bytes (e.g. a `SourceImage` fetched first) as `image_id` (idempotent)."""
        return await self._upload(image_id, {"file": (filename, content, content_type)}, metadata)

    async def get(self, image_id: str) -> CachedImage:
        response = await self._request("GET", self._images_url(image_id), headers=self._auth_headers())
        return self._parse(response)

    async def fetch_source(self, url: str, *, max_bytes: int = MAX_IMAGE_BYTES) -> SourceImage:
        """Download a source image (following redirects); Rejected if it is not an image or too big."""
        response = await self._request("GET", url, follow_redirects=True, limited=False)
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if not content_type.startswith("image/"):
            raise self._error(Rejected, f"source {response.url.host} answered {content_type or 'no content type'}, "
                              "not an image", status=response.status_code)
        if len(response.content) > max_bytes:
            raise self._error(Rejected, f"source image is {len(response.content)} bytes (limit {max_bytes})",
                              status=response.status_code)
        return SourceImage(url=str(response.url), content=response.content, content_type=content_type)
