"""Sandbox lifecycle: `SandboxServer` (background thread, for in-process tests), `serve()` (foreground,
for `pgjobs sandbox serve`) and `settings_overrides()` (Settings fields pointing pgjobs at a sandbox).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

from pgjobs.enrichment.sandbox.control import Fault
from pgjobs.enrichment.sandbox.exchange import SandboxCredentials
from pgjobs.enrichment.sandbox.server import _Server, new_state, reset_state

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def settings_overrides(base_url: str, credentials: SandboxCredentials | None = None, *,
                       include_credentials: bool = True) -> dict[str, str]:
    """Settings field -> value that point every provider at the sandbox at `base_url`.

    With `include_credentials` (the default) the sandbox's accepted credentials come along, so
    `Settings(**settings_overrides(url))` talks to it successfully end to end.
    """
    base = base_url.rstrip("/")
    overrides = {
        "musicbrainz_url": f"{base}/musicbrainz/ws/2",
        "coverart_url": f"{base}/coverartarchive",
        "discogs_url": f"{base}/discogs",
        "cloudflare_url": f"{base}/cloudflare/client/v4",
        "cloudflare_delivery_url": f"{base}/imagedelivery",
        "spotify_api_url": f"{base}/spotify-api/v1",
        "spotify_accounts_url": f"{base}/spotify-accounts",
    }
    if include_credentials:
        creds = credentials or SandboxCredentials()
        overrides |= {
            "discogs_token": creds.discogs_token,
            "cloudflare_account_id": creds.cloudflare_account_id,
            "cloudflare_api_token": creds.cloudflare_api_token,
            "cloudflare_account_hash": creds.cloudflare_account_hash,
            "spotify_client_id": creds.spotify_client_id,
            "spotify_client_secret": creds.spotify_client_secret,
        }
    return overrides


class SandboxServer:
    """The sandbox on a background thread: `with SandboxServer() as sandbox: sandbox.url`.

    Binds at construction (port 0 picks a free port, known at once from `.url`); `start()` serves.
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = 0,
        *,
        credentials: SandboxCredentials | None = None,
        musicbrainz_min_interval: float | None = None,
        rewrite_urls: bool = True,
        verbose: bool = False,
    ) -> None:
        self.credentials = credentials or SandboxCredentials()
        self._state = new_state(self.credentials, musicbrainz_min_interval=musicbrainz_min_interval,
                                rewrite=rewrite_urls)
        self._server = _Server((host, port), self._state, verbose=verbose)
        self.host = host
        self.port: int = self._server.server_address[1]
        self._state.own_netlocs |= {f"127.0.0.1:{self.port}", f"localhost:{self.port}", f"{host}:{self.port}",
                                    f"[::1]:{self.port}"}
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL clients can connect to (a wildcard bind is reached through loopback)."""
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(self.host, self.host)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def start(self) -> SandboxServer:
        if self._thread is None:
            # A short poll interval: stop() waits for the serve loop to notice, once per test.
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                            name=f"pgjobs-sandbox-{self.port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._state.stopping.set()  # ends injected delays at once
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.drop_connections()
        self._server.server_close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SandboxServer(url={self.url!r})"

    # -- control (the same operations as the /_sandbox/ HTTP API) -------------------------------

    def requests(self) -> list[dict[str, Any]]:
        """Every request so far (control calls excluded), credentials redacted, oldest first."""
        return self._state.log.list()

    def clear_requests(self) -> None:
        self._state.log.clear()

    def add_fault(
        self,
        match: str,
        *,
        kind: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        times: int | None = None,
        delay: float | None = None,
        method: str | None = None,
    ) -> dict[str, Any]:
        """Inject a fault (see pgjobs.enrichment.sandbox.control); returns its id, match and kind."""
        spec = {"match": match, "kind": kind, "status": status, "retry_after": retry_after, "times": times,
                "delay": delay, "method": method}
        fault = self._state.faults.add(Fault.from_json({k: v for k, v in spec.items() if v is not None}))
        return {"id": fault.id, "match": fault.match, "kind": fault.kind}

    def faults(self) -> list[dict[str, Any]]:
        return self._state.faults.list()

    def clear_faults(self) -> None:
        self._state.faults.clear()

    def uploads(self) -> list[str]:
        """Ids of the images the Cloudflare stand-in holds."""
        with self._state.lock:
            return list(self._state.images)

    def reset(self) -> None:
        """Forget faults, recorded requests and uploaded images."""
        reset_state(self._state)

    def settings_overrides(self, *, include_credentials: bool = True) -> dict[str, str]:
        return settings_overrides(self.url, self.credentials, include_credentials=include_credentials)


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Run the sandbox in the foreground until SIGINT/SIGTERM; prints one 'listening' line."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    sandbox = SandboxServer(host, port)
    try:
        sandbox.start()
        print(f"sandbox listening on {sandbox.url}", flush=True)
        while not stop.wait(1.0):  # the timeout keeps the main thread responsive to signals everywhere
            pass
    finally:
        sandbox.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
