"""Provider base: the HTTP edge every API client shares — rate gate, per-job call counting,
User-Agent, timeouts, redirects and the translation of failures into `errors.ProviderError`.

Providers never build their own client: they take an injected `httpx.AsyncClient` (one per worker,
shared by concurrent jobs), the `Settings`, and an optional `RateGate`: the worker's own
`pgjobs.queue.RateLimits` (the app's RATE_LIMITS under PGJOBS_RATE_LIMITS), global limiters in
PostgreSQL. Whether a provider waits on a limiter is asked of that gate, never of the settings.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar, Protocol, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from pgjobs.enrichment.providers.errors import (
    AuthError,
    BadResponse,
    NotFound,
    ProviderError,
    RateLimited,
    Rejected,
    Unavailable,
)
from pgjobs.enrichment.settings import EnrichmentSettings as Settings
from pgjobs.queue import QueueError

M = TypeVar("M", bound=BaseModel)

MAX_REDIRECTS = 5
_MESSAGE_LIMIT = 300


class RateGate(Protocol):
    """Global limiters (the worker's `RateLimits`); `None` in its place means no limiting."""

    def interval(self, name: str) -> float:
        """Seconds between this limiter's calls; QueueError when no such limiter is configured."""

    async def acquire(self, name: str) -> Any:
        """Wait for this limiter's next slot (called before every HTTP request). A gate that also
        has `take(name)` (RateLimits) is asked that instead, and what it returns is `confirm()`ed
        right before the request's bytes go out."""

    async def penalize(self, name: str, seconds: float) -> None:
        """The server said Retry-After: hold this limiter's slots back for `seconds`."""


def _confirm_on_send(taken: Any) -> Callable[[str, Any], Awaitable[None]]:
    """An httpcore trace hook confirming the limiter's take right before the request's bytes are
    written (after any new connection), so the spacing holds from the send (pgjobs.queue.limits)."""
    async def trace(event: str, info: Any) -> None:
        if event.endswith("send_request_headers.started"):
            await taken.confirm()
    return trace


def has_limiter(gate: RateGate | None, name: str) -> bool:
    """Whether `gate` has a limiter called `name` (RateLimits answers through `interval`)."""
    if gate is None:
        return False
    try:
        gate.interval(name)
    except QueueError:
        return False
    return True


class ApiCallCounter:
    """HTTP requests sent inside one `count_api_calls()` block (nested blocks also count upward)."""

    __slots__ = ("value", "_parent")

    def __init__(self, parent: ApiCallCounter | None = None) -> None:
        self.value = 0
        self._parent = parent

    def increment(self) -> None:
        self.value += 1
        if self._parent is not None:
            self._parent.increment()

    def __repr__(self) -> str:
        return f"ApiCallCounter(value={self.value})"


# A ContextVar, not a client hook: concurrent jobs share one AsyncClient, but each asyncio task
# runs in its own context copy, so each job sees only its own counter.
_current_counter: ContextVar[ApiCallCounter | None] = ContextVar("pgjobs_api_calls", default=None)


@contextmanager
def count_api_calls() -> Iterator[ApiCallCounter]:
    """`with count_api_calls() as calls: ...; calls.value` = HTTP requests sent by providers inside."""
    counter = ApiCallCounter(_current_counter.get())
    token = _current_counter.set(counter)
    try:
        yield counter
    finally:
        _current_counter.reset(token)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP-date; None when absent or unparseable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def looks_like_html(response: httpx.Response) -> bool:
    if "html" in response.headers.get("content-type", "").lower():
        return True
    return response.content.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html"))


class BaseProvider:
    """Shared request/response edge; subclasses add endpoints and parse into pydantic models."""

    name: ClassVar[str] = "provider"
    limiter: ClassVar[str | None] = None  # RateGate name
    limiter_required: ClassVar[bool] = False  # else acquire only when the gate has this limiter
    default_retry_after: ClassVar[float] = 1.0  # when a rate-limit answer carries no Retry-After
    busy_is_rate_limit: ClassVar[bool] = False  # MusicBrainz answers its rate limit with a bare 503

    def __init__(self, client: httpx.AsyncClient, settings: Settings, gate: RateGate | None = None) -> None:
        self._client = client
        self._settings = settings
        self._gate = gate
        # Decided once, from the gate the worker built: a required limiter it lacks fails loudly at
        # the first call; an optional one (PGJOBS_RATE_LIMITS="spotify=5/s") is used when present.
        wanted = self.limiter is not None and (self.limiter_required or has_limiter(gate, self.limiter))
        self._limiter = self.limiter if wanted else None
        self._timeout = httpx.Timeout(settings.http_timeout)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} limiter={self._limiter!r}>"

    # -- secrets ---------------------------------------------------------------------------

    def _secrets(self) -> list[str]:
        s = self._settings
        found = [v.get_secret_value() for v in (s.discogs_token, s.cloudflare_api_token, s.spotify_client_secret) if v]
        return [v for v in found if v]

    def _scrub(self, text: str) -> str:
        for secret in self._secrets():
            text = text.replace(secret, "***")
        return text

    def _error(self, cls: type[ProviderError], message: str, **kwargs: Any) -> ProviderError:
        return cls(self._scrub(f"{self.name}: {message}"), provider=self.name, **kwargs)

    # -- sending ---------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        files: Mapping[str, Any] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        follow_redirects: bool = False,
        limited: bool = True,
    ) -> httpx.Response:
        """Send one logical request; every HTTP hop waits on the gate and counts as one call.

        `limited=False` skips the gate for requests that are not this API's (e.g. an image CDN).

        Returns a 2xx response (or the 3xx itself when not following); raises ProviderError otherwise.
        """
        all_headers = {"User-Agent": self._settings.user_agent, **(headers or {})}
        target = httpx.URL(url)
        for _hop in range(MAX_REDIRECTS + 1):
            response = await self._send_once(
                method, target, limited, params=params, headers=all_headers, data=data, files=files, auth=auth
            )
            if not (follow_redirects and response.is_redirect and "location" in response.headers):
                await self._check(response, penalize=limited)
                return response
            # Redirects are followed here, not by httpx, so each hop passes the rate gate too.
            next_url = response.url.join(response.headers["location"])
            if (next_url.scheme, next_url.host, next_url.port) != (target.scheme, target.host, target.port):
                all_headers = {k: v for k, v in all_headers.items() if k.lower() != "authorization"}
                auth = None
            target, params, data, files = next_url, None, None, None
            method = "HEAD" if method == "HEAD" else "GET"
        raise self._error(BadResponse, f"more than {MAX_REDIRECTS} redirects from {method} {httpx.URL(url).path}")

    async def _send_once(self, method: str, url: httpx.URL, limited: bool, **kwargs: Any) -> httpx.Response:
        extensions = None
        if limited and self._gate is not None and self._limiter is not None:
            take = getattr(self._gate, "take", None)
            if take is None:
                await self._gate.acquire(self._limiter)
            else:
                extensions = {"trace": _confirm_on_send(await take(self._limiter))}
        counter = _current_counter.get()
        if counter is not None:
            counter.increment()
        what = f"{method} {url.path}"
        try:
            return await self._client.request(method, url, timeout=self._timeout, follow_redirects=False,
                                              extensions=extensions, **kwargs)
        except httpx.TimeoutException as exc:
            # `from None`: the httpx exception holds the request, and with it the credentials.
            raise self._error(
                Unavailable, f"{what} timed out after {self._settings.http_timeout:g}s ({type(exc).__name__})",
                code="TIMEOUT",
            ) from None
        except httpx.TransportError as exc:
            raise self._error(Unavailable, f"{what} failed: {type(exc).__name__}: {exc}", code="CONNECTION_ERROR") from None

    # -- response translation --------------------------------------------------------------

    def _classify(self, response: httpx.Response) -> ProviderError | None:
        """Provider-specific verdict on a response (e.g. Cloudflare's envelope codes); None = generic."""
        return None

    async def _check(self, response: httpx.Response, *, penalize: bool = True) -> None:
        error = self._classify(response) or self._generic_error(response)
        if error is None:
            return
        if penalize and isinstance(error, RateLimited) and self._gate is not None and self._limiter is not None:
            await self._gate.penalize(self._limiter, error.retry_after)
        raise error

    def _generic_error(self, response: httpx.Response) -> ProviderError | None:
        status = response.status_code
        if status < 400:
            return None
        detail, upstream = self.error_detail(response)
        what = f"{response.request.method} {response.request.url.path} -> HTTP {status}"
        if detail:
            what = f"{what}: {detail}"
        kwargs: dict[str, Any] = {"status": status, "upstream_code": upstream}
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if status == 404:
            return self._error(NotFound, what, **kwargs)
        if status in (401, 403):
            return self._error(AuthError, what, **kwargs)
        if status == 429 or (status == 503 and (retry_after is not None or self.busy_is_rate_limit)):
            wait = self.default_retry_after if retry_after is None else retry_after
            return self._error(RateLimited, what, retry_after=wait, **kwargs)
        if looks_like_html(response):
            return self._error(BadResponse, f"{what} (HTML error page instead of JSON)", **kwargs)
        if status >= 500:
            return self._error(Unavailable, what, **kwargs)
        return self._error(Rejected, what, **kwargs)

    def error_detail(self, response: httpx.Response) -> tuple[str | None, int | str | None]:
        """(message, upstream code) from any of the five APIs' error bodies; scrubbed and short."""
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError):
            text = response.text.strip() if not looks_like_html(response) else ""
            return (self._scrub(text[:_MESSAGE_LIMIT]) or None), None
        message: Any = None
        upstream: Any = None
        if isinstance(body, dict):
            errors = body.get("errors")
            error = body.get("error")
            if isinstance(errors, list) and errors and isinstance(errors[0], dict):  # Cloudflare
                message, upstream = errors[0].get("message"), errors[0].get("code")
            elif isinstance(error, dict):  # Spotify Web API
                message, upstream = error.get("message"), error.get("reason")
            elif isinstance(error, str):  # MusicBrainz; Spotify accounts (OAuth)
                message = body.get("error_description") or error
                upstream = error if "error_description" in body else None
            elif isinstance(body.get("message"), str):  # Discogs
                message = body["message"]
        if not isinstance(message, str):
            return None, upstream
        return self._scrub(message[:_MESSAGE_LIMIT]), upstream

    def _json(self, response: httpx.Response, model: type[M]) -> M:
        """Parse a 2xx body into `model`; anything that is not the expected JSON is BadResponse."""
        what = f"{response.request.method} {response.request.url.path}"
        if looks_like_html(response):
            raise self._error(BadResponse, f"{what}: HTML page instead of JSON", status=response.status_code)
        try:
            data = json.loads(response.content)
        except (ValueError, UnicodeDecodeError) as exc:
            raise self._error(
                BadResponse, f"{what}: invalid JSON ({len(response.content)} bytes, {type(exc).__name__})",
                status=response.status_code,
            ) from None
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}"
                for e in exc.errors(include_url=False, include_input=False, include_context=False)[:3]
            )
            raise self._error(
                BadResponse, f"{what}: unexpected response shape ({problems})", status=response.status_code
            ) from None
