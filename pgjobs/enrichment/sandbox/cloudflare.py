"""Sandbox Cloudflare Images: a stateful image store behind the v1 upload/details/delete API, plus
the imagedelivery.net stand-in that serves what was uploaded.

Uploads are multipart (`url=` or `file=`, optional custom `id`, `metadata`, `requireSignedURLs`).
A custom id uploads once; a repeat is the 5409 duplicate. `url=` sources on the sandbox itself (or
on an upstream image host it mimics) are really fetched over HTTP, so a 404ing image gives 5400
and a non-image 5455 — the paths a CACHE_* job must handle. Other hosts cannot be reached
offline and are accepted unverified.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import quote, unquote, urlsplit
from urllib.request import ProxyHandler, Request, build_opener

from pgjobs.enrichment.sandbox.exchange import Exchange, Reply, StoredImage, fixture_reply, json_reply, text_reply
from pgjobs.enrichment.sandbox.images import IMAGE_HOSTS, image_bytes, to_sandbox_url

API = "cloudflare-images"
MAX_BYTES = 10 * 1024 * 1024
_PATH = re.compile(r"^/accounts/([^/]+)/images/v1(?:/(.+))?$")
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"RIFF", b"<svg", b"<?xml")
_FETCH_UA = "Cloudflare-Images-Sandbox/1.0 (+origin fetch)"


def envelope_error(status: int, code: int, message: str, *extra: tuple[int, str]) -> Reply:
    errors = [{"code": code, "message": message}] + [{"code": c, "message": m} for c, m in extra]
    return json_reply(status, {"result": None, "success": False, "errors": errors, "messages": []})


def error_reply(ex: Exchange, status: int) -> Reply:
    files = {429: "error_971_rate_limited.json", 403: "error_10000_authentication.json",
             401: "error_10000_authentication.json", 409: "error_5409_duplicate_id.json",
             415: "error_5455_unsupported_format.json"}
    if status in files:
        reply = fixture_reply(ex.state.fixtures.by_file(API, files[status]))
        reply.status = status
        return reply
    if status == 404:
        return envelope_error(404, 5404, "Image not found")
    if status >= 500:
        return envelope_error(status, 5500 if status != 503 else 5503, "Internal Error")
    return envelope_error(status, 5400, "Bad request")


def _ok(result: Any) -> Reply:
    return json_reply(200, {"result": result, "result_info": None, "success": True, "errors": [], "messages": []})


def _describe(ex: Exchange, image: StoredImage) -> dict[str, Any]:
    account_hash = ex.state.credentials.cloudflare_account_hash
    delivery = f"{ex.base_url}/imagedelivery" if ex.state.rewrite_urls else "https://imagedelivery.net"
    return {
        "id": image.id, "filename": image.filename, "meta": image.meta, "uploaded": image.uploaded,
        "requireSignedURLs": image.require_signed_urls,
        "variants": [f"{delivery}/{account_hash}/{image.id}/{v}" for v in ("public", "thumbnail")],
    }


def handle_cloudflare(ex: Exchange) -> Reply:
    match = _PATH.match(ex.path)
    if not match:
        return envelope_error(400, 7003, f"Could not route to {ex.path}, perhaps your object identifier is invalid?",
                              (7000, "No route for that URI"))
    creds = ex.state.credentials
    if ex.header("Authorization") != f"Bearer {creds.cloudflare_api_token}":
        return error_reply(ex, 403)  # code 10000 Authentication error
    account, rest = match.groups()
    if account != creds.cloudflare_account_id:
        return envelope_error(400, 7003, f"Could not route to /accounts/{account}/images/v1, perhaps your object "
                              "identifier is invalid?", (7000, "No route for that URI"))
    if rest is None:
        if ex.method == "POST":
            return _upload(ex)
        if ex.method == "GET":
            with ex.state.lock:
                images = [_describe(ex, i) for i in ex.state.images.values()]
            return _ok({"images": images})
        return envelope_error(405, 10405, "Method not allowed")
    image_id = unquote(rest)
    with ex.state.lock:
        image = ex.state.images.get(image_id)
        if image is not None and ex.method == "DELETE":
            del ex.state.images[image_id]
            return _ok({})
    if image is None:
        return error_reply(ex, 404)
    return _ok(_describe(ex, image)) if ex.method == "GET" else envelope_error(405, 10405, "Method not allowed")


def _upload(ex: Exchange) -> Reply:
    form = ex.form
    if form is None or "multipart/form-data" not in (ex.header("Content-Type") or ""):
        return envelope_error(415, 5415, "Images must be uploaded as a form, not as raw image data. "
                              "Please use multipart/form-data format")
    if ("url" in form) == ("file" in form):
        return envelope_error(400, 5400, "Bad request: exactly one of 'url' or 'file' is required")
    image_id = form["id"].text if "id" in form else str(uuid.uuid4())
    signed = form["requireSignedURLs"].text.lower() == "true" if "requireSignedURLs" in form else False
    if signed and "id" in form:
        return envelope_error(400, 5400, "Bad request: custom ids cannot require signed URLs")
    meta: dict[str, Any] = {}
    if "metadata" in form:
        if len(form["metadata"].value) > 1024:
            return envelope_error(400, 5400, "Bad request: metadata must be at most 1024 bytes")
        try:
            meta = json.loads(form["metadata"].text)
        except ValueError:
            return envelope_error(400, 5400, "Bad request: metadata must be a JSON object")
    with ex.state.lock:
        taken = image_id in ex.state.images
    if taken:
        return error_reply(ex, 409)  # 5409 Resource already exists
    if "url" in form:
        source = form["url"].text
        fetched = _fetch(ex, source)
        if isinstance(fetched, Reply):
            return fetched
        content, content_type = fetched
        filename = urlsplit(source).path.rsplit("/", 1)[-1] or "image"
    else:
        source, content = None, form["file"].value
        content_type = form["file"].content_type or "application/octet-stream"
        filename = form["file"].filename or "image"
        if len(content) > MAX_BYTES:
            return envelope_error(413, 5413, "Maximum image size of 10 MB reached")
        if not content.lstrip().startswith(_MAGIC):
            return error_reply(ex, 415)
    uploaded = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    image = StoredImage(id=image_id, filename=filename, meta=meta, uploaded=uploaded, require_signed_urls=signed,
                        content=content, content_type=content_type, source=source)
    with ex.state.lock:
        if image_id in ex.state.images:  # a concurrent twin won the race
            return error_reply(ex, 409)
        ex.state.images[image_id] = image
    return _ok(_describe(ex, image))


def _fetch(ex: Exchange, source: str) -> tuple[bytes, str] | Reply:
    """Fetch a `url=` source as Cloudflare would: over HTTP, following redirects."""
    parts = urlsplit(source)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return envelope_error(400, 5400, "Bad request: url must be an absolute http(s) URL")
    if parts.netloc not in ex.state.own_netlocs and parts.netloc != urlsplit(ex.base_url).netloc:
        local = to_sandbox_url(source, ex.base_url) if parts.hostname in (*IMAGE_HOSTS, "coverartarchive.org") else None
        if local is None:  # somewhere the offline sandbox cannot reach: accept, unverified
            content, content_type = image_bytes(source)
            return content, content_type
        source = local
    opener = build_opener(ProxyHandler({}))  # loopback only, whatever the environment's proxy says
    try:
        with opener.open(Request(source, headers={"User-Agent": _FETCH_UA}), timeout=10) as response:
            content = response.read(MAX_BYTES + 1)
            content_type = response.headers.get("Content-Type", "")
    except HTTPError as exc:
        exc.close()
        return envelope_error(400, 5400, f"Bad request: could not fetch the image from the given URL "
                              f"(origin returned {exc.code})")
    except (URLError, OSError) as exc:
        return envelope_error(400, 5400, f"Bad request: could not fetch the image from the given URL ({exc})")
    if len(content) > MAX_BYTES:
        return envelope_error(413, 5413, "Maximum image size of 10 MB reached")
    if not content_type.lower().startswith("image/"):
        return error_reply(ex, 415)  # 5455 unsupported format
    return content, content_type.split(";")[0]


def handle_delivery(ex: Exchange) -> Reply:
    """imagedelivery.net/<account_hash>/<image_id…>/<variant>: the stored bytes."""
    parts = ex.path.strip("/").split("/")
    if len(parts) < 3 or parts[0] != ex.state.credentials.cloudflare_account_hash or ex.method not in ("GET", "HEAD"):
        return text_reply(404, "ERROR 9404: Image not found")
    image_id, variant = unquote("/".join(parts[1:-1])), parts[-1]
    with ex.state.lock:
        image = ex.state.images.get(image_id)
    if image is None or variant not in ("public", "thumbnail"):
        return text_reply(404, "ERROR 9404: Image not found")
    return Reply(200, [("Content-Type", image.content_type), ("Cache-Control", "public, max-age=31536000"),
                       ("Cf-Images-Id", quote(image.id))], image.content)
