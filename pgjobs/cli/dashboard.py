"""`pgjobs dashboard`: serve the web dashboard (pgjobs.dashboard) for the loaded app with uvicorn.

It binds 127.0.0.1 by default; any other address needs credentials (PGJOBS_DASHBOARD_USER and
PGJOBS_DASHBOARD_PASSWORD, or PGJOBS_DASHBOARD_TOKEN), read from the environment only.
"""

from __future__ import annotations

import ipaddress
import os

import typer

from pgjobs.cli.common import UsageFailure, cli, console


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def credentials_from_env():
    from pgjobs.dashboard import Credentials

    user, password = os.environ.get("PGJOBS_DASHBOARD_USER"), os.environ.get("PGJOBS_DASHBOARD_PASSWORD")
    if bool(user) != bool(password):
        raise UsageFailure("set both PGJOBS_DASHBOARD_USER and PGJOBS_DASHBOARD_PASSWORD, or neither")
    return Credentials(user=user or None, password=password or None,
                       token=os.environ.get("PGJOBS_DASHBOARD_TOKEN") or None)


def dashboard(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="address to bind; not loopback only with credentials"),
    port: int = typer.Option(8080, min=0, max=65535),
    read_only: bool = typer.Option(False, "--read-only", help="refuse every action (retry, cancel) server-side"),
) -> None:
    """Serve the web dashboard: overview, jobs, and the app's pages (e.g. the roots timeline)."""
    try:
        import uvicorn

        from pgjobs.dashboard import create_app
    except ImportError as exc:
        raise UsageFailure(f"the dashboard needs the `dashboard` extra (pip install 'pgjobs[dashboard]'): {exc}") from None
    credentials = credentials_from_env()
    if not is_loopback(host) and not credentials:
        raise UsageFailure(f"refusing to bind {host} without credentials: set PGJOBS_DASHBOARD_USER and "
                           "PGJOBS_DASHBOARD_PASSWORD (or PGJOBS_DASHBOARD_TOKEN), or bind 127.0.0.1")
    state = cli(ctx)
    dsn = state.dsn()
    app = create_app(dsn, app=state.app, read_only=read_only, credentials=credentials)
    shown = "localhost" if is_loopback(host) else host
    console.print(f"pgjobs dashboard on http://{shown}:{port}/" + (" (read-only)" if read_only else ""))
    # Open pages hold an event stream each: on Ctrl-C, give them a second, then close them.
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=1)
