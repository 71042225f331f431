"""Sandbox MusicBrainz WS/2 and Cover Art Archive: lookups, searches, image listings, redirects.

Lookups match on path only (any valid `inc` is fine; the body is the fixture's). Unknown MBIDs get
MusicBrainz's 404 body; malformed MBIDs and unknown `inc` values its 400s; a missing or
library-default User-Agent its 403. Searches match a search fixture when the Lucene fields both
queries name agree (case and spacing folded, one value may contain the other) and are otherwise
empty, as MusicBrainz answers them: 200 with count 0.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from pgjobs.enrichment.sandbox.exchange import (
    Exchange,
    Reply,
    fixture_reply,
    is_generic_user_agent,
    json_reply,
    phrase,
    text_reply,
)
from pgjobs.enrichment.sandbox.fixtures import FixtureSet
from pgjobs.enrichment.sandbox.images import to_sandbox_url

API = "musicbrainz"
CAA = "coverartarchive"
HELP = "For usage, please see: https://musicbrainz.org/development/mmd"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PLURAL = {
    "area": "areas", "artist": "artists", "event": "events", "instrument": "instruments", "label": "labels",
    "place": "places", "recording": "recordings", "release": "releases", "release-group": "release-groups",
    "series": "series", "work": "works", "url": "urls", "genre": "genres",
}
_COMMON_INC = {"aliases", "annotation", "tags", "user-tags", "genres", "user-genres", "ratings", "user-ratings"}
INC_ALLOWED: dict[str, set[str]] = {
    "release": _COMMON_INC | {"artists", "labels", "recordings", "release-groups", "collections", "user-collections",
                              "artist-credits", "discids", "media", "recording-level-rels", "release-group-level-rels",
                              "work-level-rels", "isrcs"},
    "release-group": _COMMON_INC | {"artists", "releases", "artist-credits", "media", "discids"},
    "artist": _COMMON_INC | {"recordings", "releases", "release-groups", "works", "various-artists", "media", "discids"},
    "recording": _COMMON_INC | {"artists", "releases", "artist-credits", "isrcs", "release-groups", "work-level-rels"},
}
_REL_INC = re.compile(r"^[a-z-]+-rels$")
_LUCENE_TERM = re.compile(r'(\w+):"((?:[^"\\]|\\.)*)"|(\w+):([^\s"()]+)')
_CAA_PATH = re.compile(r"^/(release|release-group)/([^/]+)(?:/([^/]+))?/?$")
_CAA_IMAGE = re.compile(r"^(front|back|\d+)(?:-(250|500|1200))?(?:\.jpg)?$")
_CAA_IMAGE_URL = re.compile(r"/release/([0-9a-f-]{36})/(\d+)")


def _mb_error(status: int, message: str) -> Reply:
    return json_reply(status, {"error": message, "help": HELP}, content_type="application/json; charset=utf-8")


def error_reply(ex: Exchange, status: int) -> Reply:
    """MusicBrainz's own body for an error status (for injected faults)."""
    fixtures = ex.state.fixtures
    if status == 503:
        fixture = fixtures.by_file(API, "error_503_rate_limited.json")
        return Reply(503, [("Content-Type", "application/json; charset=utf-8")], fixture.body)
    if status == 404:
        return fixture_reply(fixtures.by_file(API, "error_404_not_found.json"))
    if status == 403:
        return _mb_error(403, "You are not authorized to access this resource.")
    return _mb_error(status, phrase(status))


def _fold(text: str) -> str:
    return " ".join(text.casefold().split())


def handle_musicbrainz(ex: Exchange) -> Reply:
    if is_generic_user_agent(ex.header("User-Agent")):
        return error_reply(ex, 403)  # MB blocks anonymous and library-default User-Agents
    if not ex.state.musicbrainz_allowed():
        reply = error_reply(ex, 503)
        reply.set_header("Retry-After", "1")
        return reply
    if ex.method not in ("GET", "HEAD"):
        return _mb_error(405, "Method Not Allowed")
    if not ex.path.startswith("/ws/2/"):
        return error_reply(ex, 404)
    parts = [p for p in ex.path[len("/ws/2/"):].split("/") if p]
    if not parts or parts[0] not in PLURAL:
        return error_reply(ex, 404)
    entity = parts[0]
    if len(parts) == 1:
        return _search(ex, entity)
    if len(parts) != 2:
        return error_reply(ex, 404)
    mbid = parts[1]
    if not UUID.match(mbid):
        return _mb_error(400, "Invalid mbid.")
    for inc in (ex.arg("inc") or "").replace("+", " ").split():
        if not (_REL_INC.match(inc) or inc in INC_ALLOWED.get(entity, _COMMON_INC)):
            return _mb_error(400, f"{inc} is not a valid inc parameter for the {entity} resource.")
    found = ex.state.fixtures.find(API, f"/ws/2/{entity}/{mbid}")
    if not found:
        return error_reply(ex, 404)
    reply = fixture_reply(found[0])
    location = reply.header("Location")
    if location:  # a merged entity: the same URL with the surviving MBID
        if ex.state.rewrite_urls:
            location = to_sandbox_url(location, ex.base_url) or location
        query = urlencode(ex.query, doseq=True)
        reply.set_header("Location", f"{location}?{query}" if query else location)
    return reply


def _lucene_fields(query: str) -> dict[str, str]:
    """{'releasegroup': 'ella and louis', 'artist': 'ella fitzgerald'} from a Lucene query."""
    fields = {}
    for quoted_field, quoted, bare_field, bare in _LUCENE_TERM.findall(query):
        value = quoted.replace('\\"', '"').replace("\\\\", "\\") if quoted_field else bare
        fields[(quoted_field or bare_field).lower()] = _fold(value)
    return fields


def _search_matches(fixture_query: str, query: str) -> bool:
    # A stand-in for Lucene relevance: the fields both queries name must agree, a value containing
    # the other or sitting inside it (artist:"Ella Fitzgerald & Louis Armstrong" finds the fixture
    # searched with artist:"Ella Fitzgerald"); a query naming fewer fields still finds it.
    if _fold(fixture_query) == _fold(query):
        return True
    wanted, given = _lucene_fields(fixture_query), _lucene_fields(query)
    common = wanted.keys() & given.keys()
    return bool(common) and all(wanted[f] in given[f] or given[f] in wanted[f] for f in common)


def _search(ex: Exchange, entity: str) -> Reply:
    query = ex.arg("query")
    if query is not None:
        for fixture in ex.state.fixtures.find(API, f"/ws/2/{entity}"):
            if fixture.status == 200 and _search_matches(fixture.query.get("query", ""), query):
                return fixture_reply(fixture)
    created = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    offset = int(ex.arg("offset") or 0) if (ex.arg("offset") or "0").isdigit() else 0
    return json_reply(200, {"created": created, "count": 0, "offset": offset, PLURAL[entity]: []},
                      content_type="application/json; charset=utf-8")


# -- Cover Art Archive ---------------------------------------------------------------------------


def archive_path(release_mbid: str, image_id: int | str, size: str | None) -> str:
    """archive.org path of a CAA image: the original, or its _thumb250/_thumb500/_thumb1200."""
    suffix = f"_thumb{size}" if size else ""
    return f"/download/mbid-{release_mbid}/mbid-{release_mbid}-{image_id}{suffix}.jpg"


def known_archive_images(fixtures: FixtureSet) -> set[str]:
    """'archive.org/<path>' of every image (and thumbnail) in the CAA listing fixtures."""
    known: set[str] = set()
    for fixture in fixtures.entries.get(CAA, []):
        if fixture.status != 200 or not fixture.body:
            continue
        for image in json.loads(fixture.body).get("images", []):
            match = _CAA_IMAGE_URL.search(image.get("image", ""))
            if match:
                for size in (None, "250", "500", "1200"):
                    known.add("archive.org" + archive_path(match.group(1), match.group(2), size))
    return known


def caa_error_reply(ex: Exchange, status: int) -> Reply:
    return text_reply(status, phrase(status))


def handle_coverart(ex: Exchange) -> Reply:
    if ex.method not in ("GET", "HEAD"):
        return caa_error_reply(ex, 405)
    match = _CAA_PATH.match(ex.path)
    if not match:
        return caa_error_reply(ex, 404)
    kind, mbid, rest = match.groups()
    if not UUID.match(mbid):
        return Reply(400, [], b"")  # as the index says: 400, no body
    found = [f for f in ex.state.fixtures.find(CAA, f"/{kind}/{mbid}") if f.status == 200]
    if not found:
        return caa_error_reply(ex, 404)  # no such release, or no art: a plain-text 404
    if rest is None:
        return fixture_reply(found[0])
    wanted = _CAA_IMAGE.match(rest)
    if not wanted:
        return caa_error_reply(ex, 404)
    which, size = wanted.groups()
    images: list[dict[str, Any]] = json.loads(found[0].body).get("images", [])
    if which in ("front", "back"):
        image = next((i for i in images if i.get(which)), None)
    else:
        image = next((i for i in images if str(i.get("id")) == which), None)
    url_match = _CAA_IMAGE_URL.search(image.get("image", "")) if image else None
    if not url_match:
        return caa_error_reply(ex, 404)
    target = "https://archive.org" + archive_path(url_match.group(1), url_match.group(2), size)
    if ex.state.rewrite_urls:
        target = f"{ex.base_url}/_img/archive.org" + archive_path(url_match.group(1), url_match.group(2), size)
    return Reply(307, [("Location", target), ("Content-Type", "text/plain; charset=utf-8")], f"See: {target}\n".encode())
