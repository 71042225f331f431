"""Sandbox control: injected faults and the request recording behind `/_sandbox/…`.

A fault matches requests whose path+query contains `match` (and, optionally, a method) and is
spent after `times` uses (None = until cleared). Kinds:

    status     the API's own error body for `status` (e.g. MusicBrainz 503, Discogs 429)
    html       an HTML error page (nginx style) with `status` (default 502)
    truncated  the normal response cut in half: invalid JSON
    delay      wait `delay` seconds, then answer normally (client timeouts)
    reset      drop the connection (TCP RST) without answering

`delay` may accompany any kind; `retry_after` adds a Retry-After header.
The recording keeps every request except control calls, with Authorization and other credentials
redacted, so tests can assert on headers without ever seeing a secret.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, urlencode

KINDS = ("status", "html", "truncated", "delay", "reset")
_REDACTED = "REDACTED"
_SECRET_HEADERS = {"authorization", "cookie", "x-auth-key", "x-auth-email", "proxy-authorization"}
_SECRET_PARAMS = {"token", "key", "secret", "client_secret", "access_token"}


@dataclass
class Fault:
    match: str
    kind: str = "status"
    status: int | None = None
    retry_after: float | None = None
    times: int | None = None  # None = every matching request until cleared
    delay: float | None = None
    method: str | None = None
    id: int = 0
    used: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if self.kind == "status" and self.status is None:
            raise ValueError("a 'status' fault needs a status code")
        if self.kind == "delay" and not self.delay:
            raise ValueError("a 'delay' fault needs delay seconds")
        if self.kind == "html" and self.status is None:
            self.status = 502
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1 (or null for unlimited)")
        self.method = self.method.upper() if self.method else None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Fault:
        """Build from the control API's JSON; `kind` defaults from the keys given."""
        allowed = {"match", "kind", "status", "retry_after", "times", "delay", "method"}
        unknown = set(body) - allowed
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        if "match" not in body:
            raise ValueError("a fault needs 'match' (a substring of the request path)")
        kind = body.get("kind") or ("status" if body.get("status") is not None else "delay" if body.get("delay") else None)
        if kind is None:
            raise ValueError("give 'kind', or a 'status' / 'delay'")
        return cls(**{**body, "kind": kind})


class FaultTable:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            fault.id = next(self._ids)
            self._faults.append(fault)
            return copy.copy(fault)

    def take(self, method: str, target: str) -> Fault | None:
        """The first live fault matching this request, counting one use of it."""
        with self._lock:
            for fault in self._faults:
                if fault.match in target and (fault.method is None or fault.method == method):
                    fault.used += 1
                    if fault.times is not None and fault.used >= fault.times:
                        self._faults.remove(fault)
                    return copy.copy(fault)
        return None

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


def redact_headers(headers: Message) -> dict[str, str]:
    """Header names lowercased; credentials replaced, keeping the scheme ('Bearer REDACTED')."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in _SECRET_HEADERS:
            scheme = value.split(" ", 1)[0] if key.endswith("authorization") and " " in value else ""
            value = f"{scheme} {_REDACTED}".strip()
        out[key] = value
    return out


def redact_params(params: dict[str, list[str]]) -> dict[str, list[str]]:
    return {k: ([_REDACTED] * len(v) if k.lower() in _SECRET_PARAMS else list(v)) for k, v in params.items()}


class RequestLog:
    def __init__(self) -> None:
        self._records: list[dict[str, Any]] = []
        self._seq = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, *, api: str | None, method: str, path: str, raw_query: str, headers: Message,
            form: dict[str, Any] | None) -> dict[str, Any]:
        """Record a request on arrival; the caller fills `status`/`outcome` before answering."""
        params = redact_params(parse_qs(raw_query, keep_blank_values=True))
        wall = time.time()
        record: dict[str, Any] = {
            "seq": next(self._seq),
            "monotonic": time.monotonic(),
            "wall": wall,
            "wall_iso": datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds"),
            "api": api,
            "method": method,
            "path": path,
            "query": urlencode(params, doseq=True),
            "params": params,
            "headers": redact_headers(headers),
            "form": form,
            "status": None,
            "outcome": None,  # 'fault:<kind>' or None for a normal answer
        }
        with self._lock:
            self._records.append(record)
        return record

    def update(self, record: dict[str, Any], **fields: Any) -> None:
        with self._lock:
            record.update(fields)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
