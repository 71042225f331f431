"""`pgjobs demo`: the whole chain on the fixture albums, offline, in one command.

A fresh `pgjobs_demo` database on the configured server (the embedded one by default), the sandbox
standing in for the five APIs on a loopback port, migrate, enqueue the albums, run a worker until
every job is finished, then print the root timeline and each album's family timeline.
"""

from __future__ import annotations

import asyncio

import psycopg
import typer
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgjobs import migrations
from pgjobs.cli.common import cli, console
from pgjobs.cli.worker import run_worker
from pgjobs.enrichment import api
from pgjobs.enrichment.cli import print_family, print_roots
from pgjobs.enrichment.settings import EnrichmentSettings

DEMO_DB = "pgjobs_demo"
DEMO_RELEASES = {
    "b7ceb41b-c078-4e25-876b-f32c166e97e2": "JAY-Z / Linkin Park - Collision Course (two credits)",
    "e61d5658-816d-4ba8-b3d2-e5c9f0c894fc": "Ella Fitzgerald & Louis Armstrong - Ella and Louis (no tracklist)",
    "fc6d2797-78c2-4f47-8723-f36b3a92ef4f": "Coldplay - A Rush of Blood to the Head (Discogs url-relation)",
}


def _fresh_database(server_dsn: str) -> str:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DEMO_DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEMO_DB)))
    return make_conninfo(server_dsn, dbname=DEMO_DB)


def demo(ctx: typer.Context, concurrency: int = typer.Option(8, min=1),
         dashboard: bool = typer.Option(False, "--dashboard", help="then serve the dashboard on it (Ctrl-C stops)"),
         port: int = typer.Option(8080, min=1, max=65535, help="the dashboard's port, with --dashboard")) -> None:
    """Run the enrichment chain on the fixture albums against the sandbox and show the timelines."""
    from pgjobs import logs
    from pgjobs.enrichment.sandbox import SandboxServer

    state = cli(ctx)
    logs.configure(state.settings.log_format, "WARNING")
    from pgjobs.enrichment.app import make_app

    dsn = _fresh_database(state.dsn())
    with SandboxServer() as sandbox:
        app = make_app(EnrichmentSettings(**sandbox.settings_overrides()))
        migrations.migrate(dsn, app.components)
        console.print(f"[bold]pgjobs demo[/bold]: database {DEMO_DB}, sandbox at {sandbox.url}")
        with psycopg.connect(dsn) as conn:
            for mbid, label in DEMO_RELEASES.items():
                root = api.enqueue_enrich_album(conn, api.album_for_mbid(conn, mbid), triggered_by="demo")
                console.print(f"  enqueued ENRICH_ALBUM root job {root.id}: {label}")
        console.print("  running a worker until every job has finished (MusicBrainz is held to 1 request/s)…")
        asyncio.run(run_worker(app, state.settings, dsn, concurrency=concurrency, burst=True,
                               burst_waits_for_scheduled=True))
        requests = len(sandbox.requests())
    with psycopg.connect(dsn) as conn:
        roots = api.roots(conn, limit=50)
        families = [(r["root_job_id"], api.family(conn, r["root_job_id"])) for r in reversed(roots)]
    console.print(f"  done: {requests} requests to the sandbox\n")
    print_roots(roots)
    for root_job_id, rows in families:
        print_family(root_job_id, rows)
    shown = make_conninfo(dsn, password="***") if conninfo_to_dict(dsn).get("password") else dsn
    console.print(f"\nExplore it: psql \"{shown}\" -c 'SELECT * FROM enrichment_roots'")
    if not dashboard:
        console.print(f"Or in the dashboard: PGJOBS_DSN=\"{shown}\" bin/pgjobs dashboard  (http://localhost:8080/roots)",
                      soft_wrap=True)
        return
    import uvicorn

    from pgjobs.dashboard import create_app

    console.print(f"The dashboard: http://localhost:{port}/roots  (Ctrl-C stops it)")
    uvicorn.run(create_app(dsn, app=app), host="127.0.0.1", port=port, log_level="warning",
                timeout_graceful_shutdown=1)
