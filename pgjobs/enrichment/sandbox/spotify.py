"""Sandbox Spotify: the accounts service's client-credentials token and the Web API's search and
album-tracks endpoints.

The token endpoint takes the sandbox's client id/secret as HTTP Basic (or as form fields) and
returns the fixture token; anything else is OAuth's `invalid_client`. The Web API wants that
token as a Bearer; without one it answers 401 as Spotify does. Search matches a fixture's `q`
(case and spacing folded), else an empty paging object per requested type.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from urllib.parse import urlencode

from pgjobs.enrichment.sandbox.exchange import Exchange, Reply, fixture_reply, json_reply, phrase

API = "spotify"
_TRACKS = re.compile(r"^/v1/albums/([A-Za-z0-9]+)/tracks/?$")
_SEARCH_MAX_LIMIT = 10  # development-mode apps since 2026


def _web_error(status: int, message: str) -> Reply:
    return json_reply(status, {"error": {"status": status, "message": message}},
                      content_type="application/json; charset=utf-8")


def api_error_reply(ex: Exchange, status: int) -> Reply:
    if status == 429:
        return fixture_reply(ex.state.fixtures.by_file(API, "error_429_rate_limited.json"))
    body = ex.state.fixtures.inline_body(API, status)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return _web_error(status, str(body["error"].get("message", phrase(status))))
    return _web_error(status, phrase(status))


def accounts_error_reply(ex: Exchange, status: int) -> Reply:
    if status in (400, 401):
        reply = fixture_reply(ex.state.fixtures.by_file(API, "token_error_invalid_client.json"))
        reply.status = status
        return reply
    return json_reply(status, {"error": "server_error", "error_description": phrase(status)})


def handle_accounts(ex: Exchange) -> Reply:
    if ex.path.rstrip("/") != "/api/token":
        return json_reply(404, {"error": "not_found", "error_description": "Not Found"})
    if ex.method != "POST":
        return json_reply(405, {"error": "invalid_request", "error_description": "Only POST is supported"})
    form = ex.form or {}
    client_id = form["client_id"].text if "client_id" in form else None
    secret = form["client_secret"].text if "client_secret" in form else None
    header = ex.header("Authorization") or ""
    if header.startswith("Basic "):
        try:
            client_id, _, secret = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            client_id = secret = None
    creds = ex.state.credentials
    if (client_id, secret) != (creds.spotify_client_id, creds.spotify_client_secret):
        return accounts_error_reply(ex, 400)  # invalid_client
    grant = form["grant_type"].text if "grant_type" in form else None
    if grant != "client_credentials":
        return json_reply(400, {"error": "unsupported_grant_type",
                                "error_description": "grant_type parameter is missing or not supported"})
    return fixture_reply(ex.state.fixtures.by_file(API, "token_client_credentials.json"))


def _issued_token(ex: Exchange) -> str:
    return json.loads(ex.state.fixtures.by_file(API, "token_client_credentials.json").body)["access_token"]


def handle_api(ex: Exchange) -> Reply:
    header = ex.header("Authorization")
    if not header:
        return _web_error(401, "No token provided")
    if header != f"Bearer {_issued_token(ex)}":
        return _web_error(401, "Invalid access token")
    if ex.method not in ("GET", "HEAD"):
        return _web_error(405, "Method not allowed")
    if ex.path.rstrip("/") == "/v1/search":
        return _search(ex)
    match = _TRACKS.match(ex.path)
    if match:
        found = [f for f in ex.state.fixtures.find(API, ex.path.rstrip("/")) if f.status == 200]
        return fixture_reply(found[0]) if found else api_error_reply(ex, 404)
    return _web_error(404, "Service not found")


def _search(ex: Exchange) -> Reply:
    q, types = ex.arg("q"), [t for t in (ex.arg("type") or "").split(",") if t]
    if not q:
        return _web_error(400, "No search query")
    if not types:
        return _web_error(400, "Missing parameter type")
    limit_text = ex.arg("limit") or "5"
    if not limit_text.isdigit() or int(limit_text) > _SEARCH_MAX_LIMIT:
        return _web_error(400, "Invalid limit")
    wanted = " ".join(q.casefold().split())
    for fixture in ex.state.fixtures.find(API, "/v1/search"):
        if fixture.status == 200 and " ".join(fixture.query.get("q", "").casefold().split()) == wanted:
            return fixture_reply(fixture)
    base = f"{ex.base_url}/spotify-api/v1/search" if ex.state.rewrite_urls else "https://api.spotify.com/v1/search"
    body = {
        f"{t}s": {"href": f"{base}?{urlencode({'offset': 0, 'limit': limit_text, 'query': q, 'type': t})}",
                  "items": [], "limit": int(limit_text), "next": None, "offset": 0, "previous": None, "total": 0}
        for t in types
    }
    return json_reply(200, body, content_type="application/json; charset=utf-8")
