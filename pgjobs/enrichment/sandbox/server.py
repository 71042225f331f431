"""Sandbox server: one stdlib ThreadingHTTPServer standing in for all five APIs, routed by prefix,
with fault injection and request recording; `SandboxServer` runs it in a background thread and
`serve()` runs it in the foreground for `pgjobs sandbox serve`.

    /musicbrainz/ws/2/…          MusicBrainz          /spotify-api/v1/…         Spotify Web API
    /coverartarchive/…           Cover Art Archive    /spotify-accounts/api/token  Spotify accounts
    /discogs/…                   Discogs              /imagedelivery/…          Cloudflare delivery
    /cloudflare/client/v4/…      Cloudflare API       /_img/<host>/<path>       upstream images
    /_sandbox/…                  control: faults, requests, uploads, reset, health
"""

from __future__ import annotations

import functools
import json
import socket
import struct
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pgjobs.enrichment.sandbox import cloudflare, discogs, musicbrainz, spotify
from pgjobs.enrichment.sandbox.control import Fault, FaultTable, RequestLog
from pgjobs.enrichment.sandbox.exchange import (
    Exchange,
    Reply,
    SandboxCredentials,
    SandboxState,
    json_reply,
    parse_form,
    phrase,
    text_reply,
)
from pgjobs.enrichment.sandbox.fixtures import FixtureSet
from pgjobs.enrichment.sandbox.images import handle_images, known_images_in, rewrite_urls

Handler = Callable[[Exchange], Reply]
HTML_PAGE = (
    "<!DOCTYPE html>\n<html>\n<head><title>{status} {phrase}</title></head>\n<body>\n"
    "<center><h1>{status} {phrase}</h1></center>\n<hr><center>nginx</center>\n</body>\n</html>\n"
)


@dataclass(frozen=True)
class Route:
    prefix: str
    api: str
    handle: Handler
    error: Callable[[Exchange, int], Reply]  # the API's own body for an injected status


def _plain_error(ex: Exchange, status: int) -> Reply:
    return text_reply(status, f"{status}")


ROUTES: tuple[Route, ...] = (
    Route("/musicbrainz", "musicbrainz", musicbrainz.handle_musicbrainz, musicbrainz.error_reply),
    Route("/coverartarchive", "coverartarchive", musicbrainz.handle_coverart, musicbrainz.caa_error_reply),
    Route("/discogs", "discogs", discogs.handle_discogs, discogs.error_reply),
    Route("/cloudflare/client/v4", "cloudflare", cloudflare.handle_cloudflare, cloudflare.error_reply),
    Route("/imagedelivery", "imagedelivery", cloudflare.handle_delivery, _plain_error),
    Route("/spotify-api", "spotify", spotify.handle_api, spotify.api_error_reply),
    Route("/spotify-accounts", "spotify-accounts", spotify.handle_accounts, spotify.accounts_error_reply),
    Route("/_img", "images", handle_images, _plain_error),
)


def _route(path: str) -> Route | None:
    return next((r for r in ROUTES if path == r.prefix or path.startswith(r.prefix + "/")), None)


def _form_summary(form: dict[str, Any] | None) -> dict[str, Any] | None:
    if form is None:
        return None
    out: dict[str, Any] = {}
    for name, field in form.items():
        if field.filename is not None:
            out[name] = {"filename": field.filename, "content_type": field.content_type, "size": len(field.value)}
        elif name.lower() in ("client_secret", "token", "secret"):
            out[name] = "REDACTED"
        else:
            out[name] = field.text[:500]
    return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients reuse connections upstream
    server: _Server
    server_version = "pgjobs-sandbox/1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without NODELAY, Nagle plus the client's
        # delayed ACK would add ~40 ms to every keep-alive response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.verbose:
            sys.stderr.write(f"sandbox: {self.address_string()} {format % args}\n")

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _dispatch(self) -> None:
        state = self.server.state
        split = urlsplit(self.path)
        body = self._read_body()
        base_url = f"http://{self.headers.get('Host') or self.server.netloc}"
        if split.path.startswith("/_sandbox/") or split.path == "/_sandbox":
            return self._send(self._control(split.path, body, base_url))
        route = _route(split.path)
        ex = Exchange(
            method=self.command, path=split.path[len(route.prefix):] if route else split.path,
            query=parse_qs(split.query, keep_blank_values=True), headers=self.headers, body=body,
            base_url=base_url, state=state, form=parse_form(self.headers.get("Content-Type"), body),
        )
        record = state.log.add(api=route.api if route else None, method=self.command, path=split.path,
                               raw_query=split.query, headers=self.headers, form=_form_summary(ex.form))
        fault = state.faults.take(self.command, self.path)
        if fault is not None:
            state.log.update(record, outcome=f"fault:{fault.kind}")
            if fault.delay and state.stopping.wait(fault.delay):
                self.close_connection = True
                return
            if fault.kind == "reset":
                return self._reset()
        reply = self._answer(route, ex, fault)
        if state.rewrite_urls and "json" in (reply.header("Content-Type") or ""):
            reply.body = rewrite_urls(reply.body, base_url)
        state.log.update(record, status=reply.status)
        self._send(reply)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _answer(self, route: Route | None, ex: Exchange, fault: Fault | None) -> Reply:
        if route is None:
            return text_reply(404, f"no sandbox API under {ex.path}; see /_sandbox/health")
        if fault is not None and fault.kind == "status":
            reply = route.error(ex, fault.status or 500)
        elif fault is not None and fault.kind == "html":
            status = fault.status or 502
            reply = text_reply(status, HTML_PAGE.format(status=status, phrase=phrase(status)), "text/html")
        else:
            try:
                reply = route.handle(ex)
            except Exception:  # a sandbox bug must answer, not hang the client
                traceback.print_exc()
                reply = text_reply(500, "sandbox handler crashed; see the server's stderr")
            if fault is not None and fault.kind == "truncated":
                reply.body = reply.body[: max(1, len(reply.body) // 2)]
        if fault is not None and fault.retry_after is not None:
            reply.set_header("Retry-After", f"{fault.retry_after:g}")
        return reply

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers:
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD" and reply.body:
            self.wfile.write(reply.body)

    def _reset(self) -> None:
        # SO_LINGER 0 turns close() into a TCP RST: the client sees "connection reset by peer".
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _control(self, path: str, body: bytes, base_url: str) -> Reply:
        state, method = self.server.state, self.command
        if path == "/_sandbox/health" and method == "GET":
            return json_reply(200, {"ok": True, "url": base_url})
        if path == "/_sandbox/requests":
            if method == "GET":
                return json_reply(200, state.log.list())
            if method == "DELETE":
                state.log.clear()
                return Reply(204)
        if path == "/_sandbox/faults":
            if method == "GET":
                return json_reply(200, state.faults.list())
            if method == "DELETE":
                state.faults.clear()
                return Reply(204)
            if method == "POST":
                try:
                    fault = state.faults.add(Fault.from_json(json.loads(body or b"{}")))
                except (ValueError, TypeError) as exc:
                    return json_reply(400, {"error": str(exc)})
                return json_reply(201, {"id": fault.id, "match": fault.match, "kind": fault.kind})
        if path == "/_sandbox/uploads" and method == "GET":
            with state.lock:
                return json_reply(200, [{"id": i.id, "filename": i.filename, "source": i.source, "size": len(i.content)}
                                        for i in state.images.values()])
        if path == "/_sandbox/reset" and method == "POST":
            reset_state(state)
            return Reply(204)
        return json_reply(404, {"error": f"no control endpoint {method} {path}"})


def reset_state(state: SandboxState) -> None:
    state.faults.clear()
    state.log.clear()
    with state.lock:
        state.images.clear()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() closes connections itself instead of waiting on handlers
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: SandboxState, *, verbose: bool = False) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.state = state
        self.verbose = verbose
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        host, port = self.server_address[:2]
        self.netloc = f"{host}:{port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Wake handler threads parked on idle keep-alive connections so they exit."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@functools.cache
def _shipped_fixtures() -> tuple[FixtureSet, frozenset[str]]:
    # Read once per process: the fixtures are read-only, and tests start a sandbox per test.
    fixtures = FixtureSet.load()
    bodies = [f.body for entries in fixtures.entries.values() for f in entries]
    return fixtures, frozenset(known_images_in(bodies) | musicbrainz.known_archive_images(fixtures))


def new_state(credentials: SandboxCredentials | None = None, *, musicbrainz_min_interval: float | None = None,
              rewrite: bool = True) -> SandboxState:
    fixtures, known_images = _shipped_fixtures()
    return SandboxState(fixtures=fixtures, credentials=credentials or SandboxCredentials(), faults=FaultTable(),
                        log=RequestLog(), musicbrainz_min_interval=musicbrainz_min_interval, rewrite_urls=rewrite,
                        known_images=set(known_images))
