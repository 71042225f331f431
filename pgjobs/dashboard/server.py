"""The dashboard's ASGI app: routing, the security gates, templates and bounded database reads.

`create_app(dsn, app=...)` returns a Starlette app serving the queue's pages plus every page the
pgjobs app (and the apps it includes) contributes through `App.add_dashboard`. It mounts under any
path of a user's ASGI app: links are built from the request's root_path.

Security, in one place each: `Gate` (a middleware) authenticates every request when credentials
are configured, refuses every non-GET request when read-only (the one gate on mutating routes),
and refuses a non-GET request that is not same-origin; every response carries a strict CSP.
"""

from __future__ import annotations

import base64
import hmac
import importlib
import time
import weakref
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence
from urllib.parse import urlencode, urlsplit

import psycopg
from markupsafe import Markup
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from psycopg.rows import dict_row
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from pgjobs.dashboard import formatting

HERE = Path(__file__).resolve().parent
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
SAFE_METHODS = ("GET", "HEAD")


@dataclass(frozen=True)
class Credentials:
    """Who may open the dashboard: HTTP Basic user/password, and/or a bearer token (also accepted
    as the Basic password with any user name, so a browser can use it)."""

    user: str | None = None
    password: str | None = None
    token: str | None = None

    def __bool__(self) -> bool:
        return bool((self.user and self.password) or self.token)

    def check(self, header: str) -> str | None:
        """The user an Authorization header proves, or None."""
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and self.token and hmac.compare_digest(value.strip(), self.token):
            return "token"
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        if self.token and hmac.compare_digest(password, self.token):
            return user or "token"
        if self.user and self.password and hmac.compare_digest(user, self.user) \
                and hmac.compare_digest(password, self.password):
            return user
        return None


@dataclass
class NavEntry:
    label: str
    path: str


class Dashboard:
    """What an app's `add_dashboard` setup receives: add routes, nav entries, template folders,
    overview panels and jump resolvers. Paths are relative to the dashboard's root ("/roots")."""

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self.nav: list[NavEntry] = []
        self.template_dirs: list[Path] = [HERE / "templates"]
        self.jumpers: list[Callable[[Request, str], Awaitable[str | None]]] = []
        self.job_panels: list[Callable[..., Awaitable[Markup]]] = []

    def page(self, path: str, endpoint: Callable[[Request], Awaitable[Response]], *, name: str,
             methods: Sequence[str] = ("GET",), nav: str | None = None) -> None:
        """Serve `endpoint` at `path`; `nav` puts it in the top bar. A non-GET route is mutating:
        read-only mode and the same-origin check refuse it before it runs."""
        self.routes.append(Route(path, endpoint, name=name, methods=list(methods)))
        if nav:
            self.nav.append(NavEntry(nav, path))

    def templates(self, directory: str | Path) -> None:
        self.template_dirs.append(Path(directory))

    def jump(self, resolver: Callable[[Request, str], Awaitable[str | None]]) -> None:
        """`resolver(request, text)` -> the path the jump box goes to for `text`, or None."""
        self.jumpers.append(resolver)

    def job_panel(self, provider: Callable[..., Awaitable[Markup]]) -> None:
        """`await provider(request, job, attempts)` -> HTML (from `fragment`) shown on a job's page."""
        self.job_panels.append(provider)


class NarrowTheFilter(Exception):
    """A dashboard statement hit the statement timeout."""


@dataclass
class Runtime:
    dsn: str
    read_only: bool
    timeout_ms: int
    templates: Environment
    nav: list[NavEntry]
    jumpers: list
    pool: Any = None
    live: Any = None
    configured: "weakref.WeakSet" = field(default_factory=weakref.WeakSet)  # pool connections set up for reading
    extra: dict[str, Any] = field(default_factory=dict)

    async def connection_pool(self) -> Any:
        """The pool, opened on first use: a dashboard mounted in another ASGI app may not get
        the lifespan events (Starlette's Mount does not forward them)."""
        if self.pool is None:
            from pgjobs.database import open_pool
            self.pool = await open_pool(self.dsn, max_size=8, name="pgjobs-dashboard")
        return self.pool


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime


@asynccontextmanager
async def reading(request: Request) -> AsyncIterator[psycopg.AsyncCursor]:
    """A cursor (dict rows) whose statements are read-only and under the dashboard's statement
    timeout: session settings of the dashboard's own pool connections, made once per connection,
    so a page pays no BEGIN/SET/COMMIT round trips (each statement is its own transaction, as each
    had its own snapshot under READ COMMITTED anyway)."""
    rt = runtime(request)
    try:
        async with (await rt.connection_pool()).connection() as conn:
            if conn not in rt.configured:
                # Planned per call (plan_cache_mode): optional filters are written `(%(x)s IS NULL
                # OR col = %(x)s)`, and planned with their values the unused ones fold away and
                # partial indexes apply; a server-side prepare would only add its own cost. Every
                # read is bounded: starting parallel workers (~20 ms, measured at 1M roots) costs
                # more than the scan they would share.
                conn.prepare_threshold = None
                await conn.execute(f"SET statement_timeout = {int(rt.timeout_ms)}; "
                                   "SET plan_cache_mode = force_custom_plan; "
                                   "SET max_parallel_workers_per_gather = 0; "
                                   "SET default_transaction_read_only = on")
                rt.configured.add(conn)
            async with conn.cursor(row_factory=dict_row) as cur:
                yield cur
    except psycopg.errors.QueryCanceled as exc:
        raise NarrowTheFilter() from exc


async def fetch(request: Request, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    async with reading(request) as cur:
        await cur.execute(query, params or {})
        return await cur.fetchall()


def url(request: Request, path: str, **query: Any) -> str:
    """`path` under the dashboard's mount point, with the non-empty `query` parameters."""
    base = request.scope.get("root_path", "").rstrip("/") + path
    params = {k: v for k, v in query.items() if v not in (None, "", False)}
    return base + ("?" + urlencode(params) if params else "")


def _context(request: Request, context: dict[str, Any]) -> dict[str, Any]:
    rt = runtime(request)
    live = rt.live is not None and request.query_params.get("live") != "0"
    if live:
        rt.live.start()
    return context | dict(request=request, nav=rt.nav, read_only=rt.read_only, live=live,
                          live_version=rt.live.version if live else 0,
                          user=request.scope.get("pgjobs_user"),
                          prefix=request.scope.get("root_path", "").rstrip("/"),
                          url=lambda path, **q: url(request, path, **q),
                          here=lambda **q: url(request, request.url.path[len(request.scope.get("root_path", "")):],
                                               **(dict(request.query_params) | q)))


def fragment(request: Request, template: str, **context: Any) -> Markup:
    """A template rendered to HTML for embedding in another page (already escaped)."""
    return Markup(runtime(request).templates.get_template(template).render(**_context(request, context)))


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = runtime(request).templates.get_template(template).render(**_context(request, context))
    return HTMLResponse(html, status_code=status_code)


class Gate:
    """The one gate every request passes: credentials, read-only, same-origin, security headers."""

    def __init__(self, app: ASGIApp, *, credentials: Credentials, read_only: bool) -> None:
        self.app, self.credentials, self.read_only = app, credentials, read_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self.refuse(request, scope)
        if refusal is not None:
            await self.with_headers(refusal)(scope, receive, send)
            return
        await self.app(scope, receive, self.adding_headers(send))

    def refuse(self, request: Request, scope: Scope) -> Response | None:
        if self.credentials:
            user = self.credentials.check(request.headers.get("authorization", ""))
            if user is None:
                return PlainTextResponse("authentication required", 401,
                                         headers={"WWW-Authenticate": 'Basic realm="pgjobs dashboard"'})
            scope["pgjobs_user"] = user
        if request.method in SAFE_METHODS:
            return None
        if self.read_only:
            return PlainTextResponse("read-only dashboard: actions are disabled", 403)
        if not same_origin(request):
            return PlainTextResponse("cross-origin request refused", 403)
        return None

    @staticmethod
    def headers() -> list[tuple[bytes, bytes]]:
        return [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY")]

    def with_headers(self, response: Response) -> Response:
        for name, value in self.headers():
            response.headers[name.decode()] = value.decode()
        return response

    def adding_headers(self, send: Send) -> Send:
        started = time.perf_counter()

        async def wrapped(message: dict) -> None:
            if message["type"] == "http.response.start":
                # Server-Timing: the page's time in the server, request in to response out (the
                # bench's server time; browsers show it in their network panel).
                took = f"app;dur={(time.perf_counter() - started) * 1000:.1f}".encode()
                message["headers"] = list(message.get("headers", [])) + self.headers() + [(b"server-timing", took)]
            await send(message)
        return wrapped


def same_origin(request: Request) -> bool:
    """A browser says where a request comes from: Sec-Fetch-Site, else Origin (else Referer).
    A request that says nothing (curl, a script with the credentials) is not a browser's CSRF."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return f"{parts.scheme}://{parts.netloc}" == f"{request.url.scheme}://{request.url.netloc}"


def _environment(dirs: list[Path]) -> Environment:
    # auto_reload off: templates ship with the package; a check of every file per render (a stat
    # per include: 50 table rows, 100 stats) is not for production.
    env = Environment(loader=ChoiceLoader([FileSystemLoader(str(d)) for d in dirs]), auto_reload=False,
                      autoescape=select_autoescape(default=True, default_for_string=True))
    formatting.install(env)
    return env


def _load_setup(ref: str | Callable[[Dashboard], None]) -> Callable[[Dashboard], None]:
    if callable(ref):
        return ref
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def create_app(dsn: str, *, app: Any = None, read_only: bool = False, credentials: Credentials | None = None,
               statement_timeout_ms: int = 2000, live: bool = True) -> ASGIApp:
    """The dashboard for the database at `dsn` and the pgjobs `app` (its contributed pages)."""
    from pgjobs.dashboard import live as live_module
    from pgjobs.dashboard import pages

    dash = Dashboard()
    pages.install(dash)
    for ref in (app.dashboard_extensions if app is not None else []):
        _load_setup(ref)(dash)
    rt = Runtime(dsn=dsn, read_only=read_only, timeout_ms=statement_timeout_ms,
                 templates=_environment(dash.template_dirs), nav=dash.nav, jumpers=dash.jumpers,
                 extra={"job_panels": dash.job_panels})
    rt.live = live_module.Live(dsn) if live else None

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if rt.live is not None:
                await rt.live.close()
            if rt.pool is not None:
                await rt.pool.close()

    async def narrow(request: Request, exc: Exception) -> Response:
        return render(request, "narrow.html", status_code=503)

    routes = dash.routes + [Route("/events", live_module.events, name="events"),
                            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")]
    starlette = Starlette(routes=routes, lifespan=lifespan, exception_handlers={NarrowTheFilter: narrow})
    starlette.state.runtime = rt
    return Gate(starlette, credentials=credentials or Credentials(), read_only=read_only)


__all__ = ["Credentials", "Dashboard", "NarrowTheFilter", "create_app", "fetch", "fragment", "reading", "render", "url"]
