"""A worker's HTTP endpoint (`pgjobs worker --metrics-port`): /metrics, /healthz, /readyz.

Served by asyncio on the worker's own event loop, on purpose: /healthz answering at all proves
the loop is responsive (a handler that blocks the loop makes it time out, which is what a liveness
probe should see). /readyz asks the database, within a deadline, whether every migration the
worker's app needs is applied: 200 "ready", else 503 and the reason in one line. /metrics is the
Prometheus text format of the worker's registry (pgjobs.metrics). Bound to 127.0.0.1 unless told
otherwise; GET only; one request per connection; no request body is read.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

log = logging.getLogger("pgjobs.health")

READY_TIMEOUT = 5.0  # seconds /readyz waits for the database before answering 503
_REQUEST_TIMEOUT = 5.0  # seconds a client may take to send its request line and headers
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}

Ready = Callable[[], Awaitable[None]]  # returns when ready; raises saying why not


class HealthServer:
    def __init__(self, *, metrics: Callable[[], tuple[bytes, str]], ready: Ready,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        """`metrics()` -> (body, content type); `ready()` raises when the worker is not ready."""
        self._metrics = metrics
        self._ready = ready
        self._host, self._port = host, port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _REQUEST_TIMEOUT)
            method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            status, body, ctype = await self._route(method, path)
            writer.write(b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                         % (status, _REASONS[status].encode(), ctype.encode(), len(body)) + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass  # a client that went away or sent no request: nothing to answer
        finally:
            writer.close()

    async def _route(self, method: str, path: str) -> tuple[int, bytes, str]:
        text = "text/plain; charset=utf-8"
        if method not in ("GET", "HEAD"):
            return 405, b"GET only\n", text
        if path == "/healthz":
            return 200, b"ok\n", text  # answered from the loop: the loop turns
        if path == "/readyz":
            try:
                await asyncio.wait_for(self._ready(), READY_TIMEOUT)
            except TimeoutError:
                return 503, f"database did not answer within {READY_TIMEOUT:g}s\n".encode(), text
            except Exception as exc:  # any reason not to be ready is reported, never raised
                return 503, (_one_line(exc) + "\n").encode(), text
            return 200, b"ready\n", text
        if path == "/metrics":
            body, ctype = self._metrics()
            return 200, body, ctype
        return 404, b"not found: /metrics, /healthz, /readyz\n", text


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"not ready: {text.splitlines()[0] if text else type(exc).__name__}"
