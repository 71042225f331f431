"""Sandbox Discogs API v2: artist search (authenticated only) and artist lookups.

Authentication is `Authorization: Discogs token=…` (or `key=…, secret=…`, or `?token=`) with the
sandbox's token. Search without valid credentials is Discogs' 401; an unauthenticated artist
lookup still works but, as upstream, comes back without images. A missing or library-default
User-Agent gets the empty 200 body Discogs is known to send.
"""

from __future__ import annotations

import json
import re
import unicodedata

from pgjobs.enrichment.sandbox.exchange import Exchange, Reply, fixture_reply, is_generic_user_agent, json_reply, phrase

API = "discogs"
_ARTIST = re.compile(r"^/artists/(\d+)/?$")
_HYPHENS = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2212"), "-")


def _fold(text: str) -> str:
    # Discogs' search is forgiving about case, accents and hyphen variants ('JAY‐Z' finds 'Jay-Z').
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return " ".join(text.casefold().translate(_HYPHENS).split())


def error_reply(ex: Exchange, status: int) -> Reply:
    fixtures = ex.state.fixtures
    files = {429: "error_429_too_many_requests.json", 401: "error_401_search_requires_auth.json"}
    if status in files:
        return fixture_reply(fixtures.by_file(API, files[status]))
    messages = {
        404: "The requested resource was not found.",
        403: "You are not allowed to view this resource.",
        500: "An internal server error occurred. (Malformed query?)",
    }
    return json_reply(status, {"message": messages.get(status, phrase(status))})


def _authenticated(ex: Exchange) -> bool | None:
    """True/False for valid/invalid credentials, None when none were sent."""
    creds = ex.state.credentials
    header = ex.header("Authorization")
    if header is None:
        token = ex.arg("token")
        return None if token is None else token == creds.discogs_token
    scheme, _, params = header.partition(" ")
    if scheme != "Discogs":
        return False
    values = dict(p.strip().partition("=")[::2] for p in params.split(","))
    # No consumer key/secret exists in the sandbox: only the personal token opens the door.
    return values.get("token") == creds.discogs_token


def handle_discogs(ex: Exchange) -> Reply:
    if is_generic_user_agent(ex.header("User-Agent")):
        return Reply(200, [("Content-Type", "application/json")], b"")
    if ex.method not in ("GET", "HEAD"):
        return error_reply(ex, 405)
    auth = _authenticated(ex)
    if auth is False:
        return error_reply(ex, 401)
    if ex.path.rstrip("/") == "/database/search":
        return _search(ex) if auth else error_reply(ex, 401)
    match = _ARTIST.match(ex.path)
    if not match:
        return error_reply(ex, 404)
    found = [f for f in ex.state.fixtures.find(API, f"/artists/{match.group(1)}") if f.status == 200]
    if not found:
        return fixture_reply(ex.state.fixtures.by_file(API, "error_404_artist_not_found.json"))
    reply = fixture_reply(found[0])
    if not auth:  # image URLs are only returned to authenticated callers
        body = json.loads(found[0].body)
        body.pop("images", None)
        reply.body = (json.dumps(body, indent=2, ensure_ascii=False) + "\n").encode()
    return reply


def _search(ex: Exchange) -> Reply:
    q, kind = _fold(ex.arg("q") or ""), ex.arg("type")
    for fixture in ex.state.fixtures.find(API, "/database/search"):
        if fixture.status != 200 or "q" not in fixture.query:
            continue
        if _fold(fixture.query["q"]) == q and (kind is None or fixture.query.get("type") == kind):
            return fixture_reply(fixture)
    return fixture_reply(ex.state.fixtures.by_file(API, "search_artist_empty.json"))
