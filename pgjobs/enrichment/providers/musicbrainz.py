"""MusicBrainz WS/2 and Cover Art Archive clients, with the response models the processors use.

MusicBrainz counts every HTTP request against the global "musicbrainz" limiter (1 req/s per
source IP upstream; excess is a bare 503). The Cover Art Archive is a separate service with no
shared budget: it waits on a limiter only when the worker has one named "coverartarchive"
(PGJOBS_RATE_LIMITS).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field

from pgjobs.enrichment.providers.base import BaseProvider
from pgjobs.enrichment.providers.errors import BadResponse

RELEASE_INC = ("artist-credits", "recordings", "release-groups", "genres")
ARTIST_INC = ("url-rels", "genres")
_DISCOGS_ARTIST_URL = re.compile(r"^https?://(?:www\.)?discogs\.com/(?:[a-z]{2}(?:-[a-z]{2})?/)?artist/(\d+)", re.I)
_LUCENE_QUOTED_SPECIALS = re.compile(r'(["\\])')  # inside a quoted phrase only " and \ need escaping


def discogs_artist_id_from_url(url: str) -> int | None:
    """'https://www.discogs.com/artist/29735-Coldplay' -> 29735; None for any other URL."""
    match = _DISCOGS_ARTIST_URL.match(url.strip())
    return int(match.group(1)) if match else None


def lucene_phrase(value: str) -> str:
    return '"' + _LUCENE_QUOTED_SPECIALS.sub(r"\\\1", value) + '"'


class _MB(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class ArtistRef(_MB):
    id: str
    name: str
    sort_name: str | None = Field(default=None, alias="sort-name")
    disambiguation: str | None = None
    type: str | None = None
    country: str | None = None


class ArtistCredit(_MB):
    name: str  # the credited name (may differ from artist.name, the canonical one)
    joinphrase: str = ""
    artist: ArtistRef


def credit_string(credits: Sequence[ArtistCredit]) -> str:
    """'JAY‐Z / Linkin Park': credited names joined by their joinphrases."""
    return "".join(c.name + c.joinphrase for c in credits)


class Genre(_MB):
    id: str | None = None
    name: str
    count: int = 0


class Recording(_MB):
    id: str
    title: str
    length: int | None = None  # milliseconds


class Track(_MB):
    id: str
    position: int
    number: str  # printed number: "A1", "1"
    title: str
    length: int | None = None  # milliseconds, None when unknown
    recording: Recording | None = None
    artist_credit: list[ArtistCredit] = Field(default_factory=list, alias="artist-credit")


class Medium(_MB):
    id: str | None = None
    position: int = 1
    title: str = ""
    format: str | None = None
    track_count: int = Field(default=0, alias="track-count")
    tracks: list[Track] | None = None  # absent when MusicBrainz has no tracklist for the medium

    @property
    def has_tracklist(self) -> bool:
        return bool(self.tracks) and self.track_count > 0

    @property
    def lacks_track_data(self) -> bool:
        """No tracklist, or a track without a length: SPOTIFY_TRACK_FALLBACK's trigger."""
        return not self.has_tracklist or any(t.length is None for t in self.tracks or ())


class ReleaseGroupRef(_MB):
    id: str
    title: str
    primary_type: str | None = Field(default=None, alias="primary-type")
    secondary_types: list[str] = Field(default_factory=list, alias="secondary-types")
    first_release_date: str | None = Field(default=None, alias="first-release-date")


class CoverArtFlags(_MB):
    artwork: bool = False
    front: bool = False
    back: bool = False
    count: int = 0


class Release(_MB):
    id: str
    title: str
    status: str | None = None
    date: str | None = None
    country: str | None = None
    barcode: str | None = None
    disambiguation: str | None = None
    artist_credit: list[ArtistCredit] = Field(default_factory=list, alias="artist-credit")
    release_group: ReleaseGroupRef | None = Field(default=None, alias="release-group")
    media: list[Medium] = Field(default_factory=list)
    genres: list[Genre] = Field(default_factory=list)
    cover_art_archive: CoverArtFlags | None = Field(default=None, alias="cover-art-archive")

    @property
    def artist_credit_string(self) -> str:
        return credit_string(self.artist_credit)

    @property
    def lacks_track_data(self) -> bool:
        return not self.media or any(m.lacks_track_data for m in self.media)

    @property
    def has_front_cover(self) -> bool:
        """False means the Cover Art Archive's /front would 404: skip CACHE_ALBUM_COVER."""
        return bool(self.cover_art_archive and self.cover_art_archive.front)


class UrlTarget(_MB):
    id: str | None = None
    resource: str


class Relation(_MB):
    type: str
    type_id: str | None = Field(default=None, alias="type-id")
    target_type: str | None = Field(default=None, alias="target-type")
    url: UrlTarget | None = None


class Alias(_MB):
    name: str
    sort_name: str | None = Field(default=None, alias="sort-name")
    primary: bool | None = None
    locale: str | None = None


class Artist(ArtistRef):
    genres: list[Genre] = Field(default_factory=list)
    relations: list[Relation] = Field(default_factory=list)
    aliases: list[Alias] = Field(default_factory=list)

    @property
    def discogs_artist_id(self) -> int | None:
        """The Discogs id from a `discogs` URL relation, which lets a job skip the Discogs search."""
        for rel in self.relations:
            if rel.type == "discogs" and rel.url is not None:
                found = discogs_artist_id_from_url(rel.url.resource)
                if found is not None:
                    return found
        return None


class ReleaseRef(_MB):
    id: str
    title: str
    status: str | None = None


class ReleaseGroupHit(_MB):
    id: str
    title: str
    score: int = 0  # MusicBrainz relevance, not name similarity: re-score with matching.py
    primary_type: str | None = Field(default=None, alias="primary-type")
    secondary_types: list[str] = Field(default_factory=list, alias="secondary-types")
    first_release_date: str | None = Field(default=None, alias="first-release-date")
    artist_credit: list[ArtistCredit] = Field(default_factory=list, alias="artist-credit")
    releases: list[ReleaseRef] = Field(default_factory=list)


class ReleaseGroupSearch(_MB):
    count: int = 0
    offset: int = 0
    release_groups: list[ReleaseGroupHit] = Field(default_factory=list, alias="release-groups")


class MusicBrainz(BaseProvider):
    """Lookups and searches on MusicBrainz WS/2 (JSON)."""

    name: ClassVar[str] = "musicbrainz"
    limiter: ClassVar[str | None] = "musicbrainz"
    limiter_required: ClassVar[bool] = True
    default_retry_after: ClassVar[float] = 1.0
    busy_is_rate_limit: ClassVar[bool] = True

    def _url(self, path: str) -> str:
        return self._settings.musicbrainz_url.rstrip("/") + path

    async def _get(self, path: str, params: dict[str, str | int]) -> httpx.Response:
        # Merged entities answer 301 to the surviving MBID: follow (each hop passes the gate).
        return await self._request(
            "GET", self._url(path), params={**params, "fmt": "json"},
            headers={"Accept": "application/json"}, follow_redirects=True,
        )

    async def release(self, mbid: str, *, inc: Sequence[str] = RELEASE_INC) -> Release:
        response = await self._get(f"/release/{mbid}", {"inc": " ".join(inc)})  # space = '+' on the wire
        return self._json(response, Release)

    async def artist(self, mbid: str, *, inc: Sequence[str] = ARTIST_INC) -> Artist:
        response = await self._get(f"/artist/{mbid}", {"inc": " ".join(inc)})
        return self._json(response, Artist)

    async def search_release_groups(self, title: str, artist: str | None = None, *, limit: int = 5) -> list[ReleaseGroupHit]:
        query = f"releasegroup:{lucene_phrase(title)}"
        if artist:
            query += f" AND artist:{lucene_phrase(artist)}"
        response = await self._get("/release-group", {"query": query, "limit": limit})
        return self._json(response, ReleaseGroupSearch).release_groups


class CoverArtThumbnails(_MB):
    small: str | None = None
    large: str | None = None
    size_250: str | None = Field(default=None, alias="250")
    size_500: str | None = Field(default=None, alias="500")
    size_1200: str | None = Field(default=None, alias="1200")


class CoverArtImage(_MB):
    id: int | str  # a JSON number today, a string in older responses
    image: str
    front: bool = False
    back: bool = False
    approved: bool = True
    types: list[str] = Field(default_factory=list)
    thumbnails: CoverArtThumbnails = Field(default_factory=CoverArtThumbnails)


class CoverArtListing(_MB):
    images: list[CoverArtImage] = Field(default_factory=list)
    release: str | None = None

    @property
    def front(self) -> CoverArtImage | None:
        return next((i for i in self.images if i.front), None)


class CoverArtArchive(BaseProvider):
    """Cover Art Archive: image listings and the front-cover redirect (404 = no cover)."""

    name: ClassVar[str] = "coverartarchive"
    limiter: ClassVar[str | None] = "coverartarchive"
    default_retry_after: ClassVar[float] = 1.0

    def _url(self, kind: str, mbid: str, suffix: str = "") -> str:
        return f"{self._settings.coverart_url.rstrip('/')}/{kind}/{mbid}{suffix}"

    async def listing(self, mbid: str, *, release_group: bool = False) -> CoverArtListing:
        """All images of a release (or of the release chosen for a release group); NotFound = no art."""
        url = self._url("release-group" if release_group else "release", mbid)
        response = await self._request("GET", url, headers={"Accept": "application/json"}, follow_redirects=True)
        return self._json(response, CoverArtListing)

    async def front_url(self, mbid: str, *, size: int | None = None, release_group: bool = False) -> str:
        """Resolve /front[-250|-500|-1200] to the image's own URL without downloading it.

        Hand the result to Cloudflare's upload-by-URL: whether its fetcher follows 307s is not
        documented, so resolving first is the safe choice. NotFound when there is no front image.
        """
        if size not in (None, 250, 500, 1200):
            raise ValueError("size must be None, 250, 500 or 1200")
        suffix = "/front" if size is None else f"/front-{size}"
        url = self._url("release-group" if release_group else "release", mbid, suffix)
        response = await self._request("GET", url)
        location = response.headers.get("location")
        if not response.is_redirect or not location:
            raise self._error(BadResponse, f"GET {suffix}: expected a redirect, got HTTP {response.status_code}",
                              status=response.status_code)
        return str(response.url.join(location))
