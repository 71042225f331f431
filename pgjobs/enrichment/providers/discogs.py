"""Discogs API v2 client (artist search and artist lookup) and its response models.

Every request passes the global "discogs" limiter (60/min per source IP upstream). Search needs
`Authorization: Discogs token=…`, and artist images only come back to authenticated callers, so
the token is sent on every call; it never appears in errors or reprs.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from pgjobs.enrichment.providers.base import BaseProvider


class _D(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class DiscogsSearchResult(_D):
    id: int
    type: str = "artist"
    title: str  # for artist hits this IS the name, with Discogs' ' (2)' suffix when ambiguous
    uri: str | None = None
    thumb: str = ""
    cover_image: str = ""
    resource_url: str | None = None


class DiscogsPagination(_D):
    page: int = 1
    pages: int = 1
    per_page: int = 0
    items: int = 0


class DiscogsSearch(_D):
    pagination: DiscogsPagination = Field(default_factory=DiscogsPagination)
    results: list[DiscogsSearchResult] = Field(default_factory=list)


class DiscogsImage(_D):
    type: str = "secondary"  # "primary" | "secondary"
    uri: str  # signed URL: never edit it, a changed URL is a 404
    uri150: str | None = None
    resource_url: str | None = None
    width: int | None = None
    height: int | None = None


class DiscogsMember(_D):
    id: int
    name: str
    active: bool | None = None


class DiscogsArtist(_D):
    id: int
    name: str
    realname: str | None = None
    profile: str = ""  # Discogs markup ([a=Name], [b]…[/b]); may be ""
    images: list[DiscogsImage] = Field(default_factory=list)
    urls: list[str] = Field(default_factory=list)
    namevariations: list[str] = Field(default_factory=list)
    members: list[DiscogsMember] = Field(default_factory=list)
    uri: str | None = None
    data_quality: str | None = None

    @property
    def primary_image(self) -> DiscogsImage | None:
        """The image marked primary, else the first one, else None."""
        return next((i for i in self.images if i.type == "primary"), self.images[0] if self.images else None)

    @property
    def names(self) -> list[str]:
        """Name plus its spellings on releases: extra candidates for `matching.best_match(key=...)`."""
        return [self.name, *self.namevariations]


class Discogs(BaseProvider):
    """Artist search and lookup on api.discogs.com."""

    name: ClassVar[str] = "discogs"
    limiter: ClassVar[str | None] = "discogs"
    limiter_required: ClassVar[bool] = True
    # Discogs promises no Retry-After; its window is a moving 60 s, so wait it out.
    default_retry_after: ClassVar[float] = 60.0

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/vnd.discogs.v2.discogs+json"}
        token = self._settings.discogs_token
        if token is not None and token.get_secret_value():
            headers["Authorization"] = f"Discogs token={token.get_secret_value()}"
        return headers

    def _url(self, path: str) -> str:
        return self._settings.discogs_url.rstrip("/") + path

    async def search_artists(self, query: str, *, per_page: int = 5, page: int = 1) -> DiscogsSearch:
        """`GET /database/search?q=…&type=artist`; re-score the hits, relevance order is loose."""
        params: dict[str, str | int] = {"q": query, "type": "artist", "per_page": per_page}
        if page != 1:
            params["page"] = page
        response = await self._request("GET", self._url("/database/search"), params=params, headers=self._headers())
        return self._json(response, DiscogsSearch)

    async def artist(self, artist_id: int) -> DiscogsArtist:
        response = await self._request("GET", self._url(f"/artists/{int(artist_id)}"), headers=self._headers())
        return self._json(response, DiscogsArtist)
