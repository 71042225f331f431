"""Helpers for the dashboard's tests: the real ASGI app served by uvicorn on a free loopback port
(in a thread), a plain HTTP client that follows no redirects, and headless Debian Chromium.

A uniquely named module (not a conftest) so test files import it by name, in the core's and the
enrichment app's dashboard tests alike.
"""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import uvicorn

from pgjobs.dashboard import Credentials, create_app

CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(dsn: str, *, app: Any = None, read_only: bool = False, credentials: Credentials | None = None,
          statement_timeout_ms: int = 2000) -> Iterator[str]:
    """Serve the dashboard; yields its base URL. Stops the server (and its pool) on the way out."""
    with serve_asgi(create_app(dsn, app=app, read_only=read_only, credentials=credentials,
                               statement_timeout_ms=statement_timeout_ms)) as base:
        yield base


@contextmanager
def serve_asgi(asgi: Any) -> Iterator[str]:
    """Serve any ASGI app with uvicorn on a free loopback port, in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=port, log_level="warning",
                                          lifespan="on", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    started = threading.Event()
    for _ in range(400):  # poll the started flag uvicorn sets, with a deadline (10 s)
        if server.started:
            started.set()
            break
        if not thread.is_alive():
            break
        threading.Event().wait(0.025)
    assert started.is_set(), "the dashboard did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def request(url: str, *, method: str = "GET", headers: dict[str, str] | None = None,
            data: bytes | None = None) -> Reply:
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    try:
        with _opener.open(req, timeout=15) as resp:
            return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read().decode())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read().decode())


def get(url: str, **headers: str) -> Reply:
    return request(url, headers={k.replace("_", "-"): v for k, v in headers.items()})


def post(url: str, **headers: str) -> Reply:
    return request(url, method="POST", data=b"", headers={k.replace("_", "-"): v for k, v in headers.items()})


@contextmanager
def chromium() -> Iterator[Any]:
    """Headless Debian Chromium through Playwright (never `playwright install`)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            browser.close()
