"""Sandbox fixtures: loads the response bodies shipped in pgjobs/enrichment/sandbox/fixtures/<api>/ with their
index.json (request path/query, status, headers per body) so handlers can serve them byte-for-byte.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any
from urllib.parse import urlsplit

FOLDERS = ("musicbrainz", "coverartarchive", "discogs", "cloudflare-images", "spotify")


@dataclass(frozen=True)
class Fixture:
    api: str  # folder name
    file: str | None
    method: str
    path: str  # as in index.json, host stripped: '/ws/2/release/…', '/database/search', '/api/token'
    query: dict[str, str]
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    notes: str = ""


@dataclass
class FixtureSet:
    """Every index.json entry of every API folder, with its body bytes."""

    entries: dict[str, list[Fixture]] = field(default_factory=dict)
    inline: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Traversable | None = None) -> FixtureSet:
        root = root or resources.files("pgjobs.enrichment.sandbox") / "fixtures"
        fixtures = cls()
        for api in FOLDERS:
            folder = root / api
            index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
            fixtures.inline[api] = list(index.get("inline_examples", []))
            loaded = fixtures.entries.setdefault(api, [])
            for entry in index["responses"]:
                name = entry.get("file")
                body = (folder / name).read_bytes() if name else entry.get("body_text", "").encode()
                path = entry["path"]
                if path.startswith("http"):
                    path = urlsplit(path).path  # spotify's token entry names the full accounts URL
                loaded.append(Fixture(
                    api=api, file=name, method=entry.get("method", "GET").upper(), path=path,
                    query={k: str(v) for k, v in (entry.get("query") or {}).items()},
                    status=int(entry["status"]), headers=tuple((entry.get("headers") or {}).items()),
                    body=body, notes=entry.get("notes", ""),
                ))
        return fixtures

    def find(self, api: str, path: str, method: str = "GET") -> list[Fixture]:
        """Entries for exactly this path (several for searches that differ by query)."""
        return [f for f in self.entries.get(api, []) if f.path == path and f.method == method.upper()]

    def by_file(self, api: str, file: str) -> Fixture:
        for fixture in self.entries.get(api, []):
            if fixture.file == file:
                return fixture
        raise KeyError(f"{api}/{file} is not in index.json")

    def inline_body(self, api: str, status: int) -> Any:
        """Body of the first inline example with this status, or None."""
        return next((e.get("body") for e in self.inline.get(api, []) if e.get("status") == status), None)
