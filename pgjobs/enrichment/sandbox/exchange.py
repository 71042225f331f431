"""Sandbox request/response values: what an API handler receives (`Exchange`) and returns (`Reply`),
plus the credentials the sandbox accepts and the state its handlers share.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from pgjobs.enrichment.sandbox.fixtures import Fixture, FixtureSet

if TYPE_CHECKING:
    from pgjobs.enrichment.sandbox.control import FaultTable, RequestLog


@dataclass(frozen=True)
class SandboxCredentials:
    """The only credentials the sandbox accepts; `settings_overrides()` hands them to pgjobs."""

    discogs_token: str = "sandbox-discogs-token"
    cloudflare_account_id: str = "sandbox-account"
    cloudflare_api_token: str = "sandbox-cloudflare-token"
    # Cloudflare's own example hash (the fixtures use it too): delivery URLs stay recognisable.
    cloudflare_account_hash: str = "Vi7wi5KSItxGFsWRG2Us6Q"
    spotify_client_id: str = "sandbox-spotify-client"
    spotify_client_secret: str = "sandbox-spotify-secret"

    def __repr__(self) -> str:
        return f"SandboxCredentials(cloudflare_account_id={self.cloudflare_account_id!r}, secrets=***)"


@dataclass
class StoredImage:
    """One image held by the Cloudflare stand-in."""

    id: str
    filename: str
    meta: dict[str, Any]
    uploaded: str
    require_signed_urls: bool
    content: bytes
    content_type: str
    source: str | None


@dataclass
class SandboxState:
    """Everything the handlers share; mutable parts are guarded by `lock`."""

    fixtures: FixtureSet
    credentials: SandboxCredentials
    faults: FaultTable
    log: RequestLog
    musicbrainz_min_interval: float | None = None
    rewrite_urls: bool = True
    own_netlocs: set[str] = field(default_factory=set)  # host:port spellings that reach this server
    images: dict[str, StoredImage] = field(default_factory=dict)  # Cloudflare store by image id
    known_images: set[str] = field(default_factory=set)  # 'host/path' of images the fixtures name
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _musicbrainz_last: float | None = None

    def musicbrainz_allowed(self) -> bool:
        """Opt-in 1 req/interval check, as MusicBrainz enforces per source IP."""
        if not self.musicbrainz_min_interval:
            return True
        with self.lock:
            now = time.monotonic()
            if self._musicbrainz_last is not None and now - self._musicbrainz_last < self.musicbrainz_min_interval:
                return False
            self._musicbrainz_last = now
            return True


@dataclass(frozen=True)
class FormField:
    value: bytes
    filename: str | None = None
    content_type: str | None = None

    @property
    def text(self) -> str:
        return self.value.decode("utf-8", errors="replace")


def _header_params(value: str) -> Message:
    message = Message()
    message["content-type"] = value
    return message


def parse_form(content_type: str | None, body: bytes) -> dict[str, FormField] | None:
    """Fields of a urlencoded or multipart/form-data body; None for any other body."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        pairs = parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        return {k: FormField(v.encode()) for k, v in pairs}
    if kind != "multipart/form-data":
        return None
    boundary = _header_params(content_type or "").get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        return None
    fields: dict[str, FormField] = {}
    # Split on the boundary ourselves: the email parser may rewrite line endings inside binary parts.
    for chunk in body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        data = data.removesuffix(b"\r\n")
        part_headers = Message()
        for line in head.decode("utf-8", errors="replace").split("\r\n"):
            name, sep, value = line.partition(":")
            if sep:
                part_headers[name.strip()] = value.strip()
        name = part_headers.get_param("name", header="content-disposition")
        if isinstance(name, str):
            filename = part_headers.get_param("filename", header="content-disposition")
            fields[name] = FormField(data, filename if isinstance(filename, str) else None,
                                     part_headers.get("content-type"))
    return fields


@dataclass
class Exchange:
    """One incoming request as an API handler sees it (path without the sandbox's API prefix)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    base_url: str  # http://host:port of the sandbox as the client addressed it
    state: SandboxState
    form: dict[str, FormField] | None = None

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def set_header(self, name: str, value: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()] + [(name, value)]


def json_reply(status: int, body: Any, *, headers: Mapping[str, str] | None = None,
               content_type: str = "application/json") -> Reply:
    data = json.dumps(body, indent=2, ensure_ascii=False).encode("utf-8")
    return Reply(status, [("Content-Type", content_type), *(headers or {}).items()], data)


def text_reply(status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> Reply:
    return Reply(status, [("Content-Type", content_type)], text.encode("utf-8"))


def fixture_reply(fixture: Fixture) -> Reply:
    """The fixture's status, index.json headers and body bytes, unchanged."""
    return Reply(fixture.status, list(fixture.headers), fixture.body)


def phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def is_generic_user_agent(value: str | None) -> bool:
    """Missing or a library default: MusicBrainz and Discogs block these."""
    if not value or not value.strip():
        return True
    return value.lower().startswith(("python-httpx/", "python-requests/", "python-urllib/", "aiohttp/"))
