"""Spotify Web API client (client-credentials token, album search, album tracks) and its models.

The access token is cached until a minute before it expires and shared by every job using this
provider; a 401 on an API call drops it and retries once with a fresh one. Requests wait on a
limiter only when the worker has one named "spotify" (e.g. PGJOBS_RATE_LIMITS="spotify=5/s"):
Spotify's window is per app and unpublished.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Generic, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from pgjobs.enrichment.providers.base import BaseProvider, RateGate
from pgjobs.enrichment.providers.errors import AuthError, ProviderError
from pgjobs.enrichment.settings import EnrichmentSettings as Settings

T = TypeVar("T")
MAX_PAGES = 20  # album_tracks safety stop: 20 × 50 tracks


class _S(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SpotifyToken(_S):
    access_token: SecretStr
    token_type: str = "Bearer"
    expires_in: int = 3600


class SpotifyArtist(_S):
    id: str | None = None
    name: str


class SpotifyImage(_S):
    url: str
    width: int | None = None
    height: int | None = None


class SpotifyAlbum(_S):
    id: str
    name: str
    album_type: str | None = None
    total_tracks: int | None = None
    release_date: str | None = None
    release_date_precision: str | None = None
    artists: list[SpotifyArtist] = Field(default_factory=list)
    images: list[SpotifyImage] = Field(default_factory=list)  # largest first

    @property
    def artist_names(self) -> str:
        return ", ".join(a.name for a in self.artists)


class SpotifyTrack(_S):
    id: str | None = None
    name: str
    track_number: int
    disc_number: int = 1
    duration_ms: int | None = None
    explicit: bool = False
    external_ids: dict[str, str] = Field(default_factory=dict)  # only on full track objects

    @property
    def isrc(self) -> str | None:
        return self.external_ids.get("isrc")


class Paging(_S, Generic[T]):
    items: list[T] = Field(default_factory=list)
    total: int = 0
    limit: int = 0
    offset: int = 0
    next: str | None = None


class SpotifySearch(_S):
    albums: Paging[SpotifyAlbum] | None = None
    tracks: Paging[SpotifyTrack] | None = None


class Spotify(BaseProvider):
    """Client-credentials access to api.spotify.com/v1 for SPOTIFY_TRACK_FALLBACK."""

    name: ClassVar[str] = "spotify"
    limiter: ClassVar[str | None] = "spotify"
    default_retry_after: ClassVar[float] = 30.0  # the rolling window is 30 s

    def __init__(
        self,
        client: httpx.AsyncClient,
        settings: Settings,
        gate: RateGate | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(client, settings, gate)
        self._clock = clock
        self._token: SecretStr | None = None
        self._token_expires_at = 0.0
        self._token_lock = asyncio.Lock()

    def _secrets(self) -> list[str]:
        extra = [self._token.get_secret_value()] if self._token else []
        return super()._secrets() + extra

    def _token_url(self) -> str:
        return self._settings.spotify_accounts_url.rstrip("/") + "/api/token"

    def _classify(self, response: httpx.Response) -> ProviderError | None:
        # The accounts service speaks OAuth: bad credentials are a 400 `invalid_client`, not a 401.
        if str(response.request.url) != self._token_url() or response.status_code < 400:
            return None
        detail, upstream = self.error_detail(response)
        if upstream == "invalid_client" or response.status_code in (401, 403):
            return self._error(AuthError, f"token request refused: {detail}", status=response.status_code,
                               upstream_code=upstream)
        return None

    async def _access_token(self) -> str:
        async with self._token_lock:  # concurrent jobs wait for one token request, not one each
            if self._token is not None and self._clock() < self._token_expires_at:
                return self._token.get_secret_value()
            client_id = self._settings.spotify_client_id
            secret = self._settings.spotify_client_secret
            if not client_id or secret is None or not secret.get_secret_value():
                raise self._error(AuthError, "spotify_client_id and spotify_client_secret must be set",
                                  code="NOT_CONFIGURED")
            response = await self._request(
                "POST", self._token_url(), data={"grant_type": "client_credentials"},
                auth=httpx.BasicAuth(client_id, secret.get_secret_value()),
            )
            token = self._json(response, SpotifyToken)
            self._token = token.access_token
            # Refresh a minute early (half the lifetime for very short tokens).
            self._token_expires_at = self._clock() + token.expires_in - min(60.0, token.expires_in / 2)
            return token.access_token.get_secret_value()

    async def _api_get(self, url: str, params: dict[str, Any] | None = None) -> httpx.Response:
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {await self._access_token()}", "Accept": "application/json"}
            try:
                return await self._request("GET", url, params=params, headers=headers)
            except AuthError as exc:
                if exc.status != 401 or attempt == 2:
                    raise
                self._token = None  # expired or revoked: fetch a new one and retry once
        raise AssertionError("unreachable")

    def _api_url(self, path: str) -> str:
        return self._settings.spotify_api_url.rstrip("/") + path

    async def search(
        self, q: str, *, types: Sequence[str] = ("album", "track"), limit: int = 5, market: str | None = None
    ) -> SpotifySearch:
        """`GET /search`; development-mode apps get at most limit=10."""
        params = {"q": q, "type": ",".join(types), "limit": limit, "market": market or self._settings.spotify_market}
        return self._json(await self._api_get(self._api_url("/search"), params), SpotifySearch)

    async def search_albums(self, album: str, artist: str | None = None, *, limit: int = 5) -> list[SpotifyAlbum]:
        """Albums for `album:<title> artist:<name>`; re-score names, editions add suffixes."""
        q = f"album:{album}" + (f" artist:{artist}" if artist else "")
        found = await self.search(q, types=("album", "track"), limit=limit)
        return list(found.albums.items) if found.albums else []

    async def album_tracks(self, album_id: str, *, market: str | None = None) -> list[SpotifyTrack]:
        """Every track of an album, following `next` (one request per 50 tracks)."""
        url = self._api_url(f"/albums/{album_id}/tracks")
        params: dict[str, Any] = {"limit": 50, "offset": 0, "market": market or self._settings.spotify_market}
        tracks: list[SpotifyTrack] = []
        for _page in range(MAX_PAGES):
            page = self._json(await self._api_get(url, params), Paging[SpotifyTrack])
            tracks.extend(page.items)
            if not page.next:
                break
            # Take only the paging parameters from `next`: the bearer token goes to our base URL only.
            params = dict(httpx.URL(page.next).params)
        return tracks
