"""The web dashboard (`pgjobs dashboard`): the queue's pages for every app, plus the pages an app
adds with `App.add_dashboard`. Needs the `dashboard` extra (starlette, jinja2, uvicorn)."""

from pgjobs.dashboard.server import Credentials, Dashboard, create_app, fetch, fragment, reading, render, url

__all__ = ["Credentials", "Dashboard", "create_app", "fetch", "fragment", "reading", "render", "url"]
