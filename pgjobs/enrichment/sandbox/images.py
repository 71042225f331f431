"""Sandbox images: tiny real JPEG/PNG bytes and the rewriting of upstream URLs to the sandbox.

Fixture bodies name real hosts (i.discogs.com, coverartarchive.org, archive.org, i.scdn.co,
imagedelivery.net, and the API hosts in `resource_url`/`next` links). At serve time they are
rewritten to the sandbox's own base URL so a client following them never leaves the machine;
images are then served under `/_img/<host>/<path>` as an 8×8 grey JPEG (or PNG) whose shade is
derived from the path, so different images have different bytes.
"""

from __future__ import annotations

import hashlib
import re
import struct
import zlib
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

from pgjobs.enrichment.sandbox.exchange import Exchange, Reply, text_reply

# Real URL prefix -> sandbox path prefix. Web pages (www.discogs.com, musicbrainz.org) stay as they are.
REWRITES: tuple[tuple[str, str], ...] = (
    ("https://i.discogs.com/", "/_img/i.discogs.com/"),
    ("https://i.scdn.co/", "/_img/i.scdn.co/"),
    ("https://archive.org/", "/_img/archive.org/"),
    ("https://coverartarchive.org/", "/coverartarchive/"),
    ("https://imagedelivery.net/", "/imagedelivery/"),
    ("https://api.discogs.com/", "/discogs/"),
    ("https://api.spotify.com/v1/", "/spotify-api/v1/"),
    ("https://musicbrainz.org/ws/2/", "/musicbrainz/ws/2/"),  # merged-entity redirects
)
IMAGE_HOSTS = ("i.discogs.com", "i.scdn.co", "archive.org")


def rewrite_urls(body: bytes, base_url: str) -> bytes:
    """Point every known upstream URL in a JSON body at the sandbox (`base_url` has no trailing /)."""
    for real, local in REWRITES:
        body = body.replace(real.encode(), (base_url + local).encode())
    return body


def to_sandbox_url(url: str, base_url: str) -> str | None:
    """The sandbox URL standing in for a real upstream URL, or None for hosts it does not mimic."""
    for real, local in REWRITES:
        if url.startswith(real):
            return base_url + local + url[len(real):]
    return None


def shade_for(key: str) -> int:
    return 40 + hashlib.sha256(key.encode()).digest()[0] % 176


def content_type_for(path: str) -> str:
    return "image/png" if urlsplit(path).path.lower().endswith(".png") else "image/jpeg"


def image_bytes(key: str) -> tuple[bytes, str]:
    """(bytes, content type) of the stand-in image for a URL path."""
    content_type = content_type_for(key)
    shade = shade_for(key)
    return (tiny_png(shade) if content_type == "image/png" else tiny_jpeg(shade)), content_type


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">HH", marker, len(payload) + 2) + payload


def tiny_jpeg(shade: int) -> bytes:
    """A valid baseline JPEG: one 8×8 greyscale block of a flat `shade` (0–255).

    A flat block has only a DC coefficient, so one-symbol Huffman tables suffice: the DC table
    codes the value's bit-size category as '0', the AC table codes end-of-block as '0'.
    """
    dc = 8 * (min(255, max(0, shade)) - 128)  # DC of a flat level-shifted block, quantiser 1
    size = abs(dc).bit_length()
    extra = dc if dc >= 0 else dc + (1 << size) - 1  # JPEG's one's-complement form for negatives
    bits = "0" + (format(extra, f"0{size}b") if size else "") + "0"
    bits += "1" * (-len(bits) % 8)  # pad with 1s to a byte boundary
    scan = bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)).replace(b"\xff", b"\xff\x00")
    return b"".join((
        b"\xff\xd8",
        _segment(0xFFE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"),
        _segment(0xFFDB, b"\x00" + b"\x01" * 64),
        _segment(0xFFC0, b"\x08\x00\x08\x00\x08\x01\x01\x11\x00"),
        _segment(0xFFC4, b"\x00" + b"\x01" + b"\x00" * 15 + bytes([size])),
        _segment(0xFFC4, b"\x10" + b"\x01" + b"\x00" * 15 + b"\x00"),
        _segment(0xFFDA, b"\x01\x01\x00\x00\x3f\x00"),
        scan,
        b"\xff\xd9",
    ))


def tiny_png(shade: int) -> bytes:
    """A valid 8×8 greyscale PNG of a flat `shade`."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = (b"\x00" + bytes([shade & 0xFF]) * 8) * 8
    return b"".join((
        b"\x89PNG\r\n\x1a\n",
        chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0)),
        chunk(b"IDAT", zlib.compress(rows)),
        chunk(b"IEND", b""),
    ))


_IMAGE_URL = re.compile(rb"https://(i\.discogs\.com|i\.scdn\.co|archive\.org)/([^\"\s\\]+)")


def known_images_in(bodies: Iterable[bytes]) -> set[str]:
    """'host/path' of every image URL on an upstream image host named in the bodies."""
    found: set[str] = set()
    for body in bodies:
        for host, path in _IMAGE_URL.findall(body):
            found.add(unquote(f"{host.decode()}/{path.decode()}"))
    return found


def handle_images(ex: Exchange) -> Reply:
    """`/_img/<host>/<path>`: images the fixtures name (a changed URL is a 404, as on i.discogs.com)."""
    if ex.method not in ("GET", "HEAD"):
        return text_reply(405, "Method Not Allowed")
    key = unquote(ex.path.lstrip("/"))
    if key not in ex.state.known_images:
        return text_reply(404, "Not Found")
    content, content_type = image_bytes(key)
    return Reply(200, [("Content-Type", content_type), ("Cache-Control", "public, max-age=86400")], content)
