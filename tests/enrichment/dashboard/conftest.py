"""The enrichment pages' data: the demo's real chain (sandbox + real worker) run once per session on
a database of its own, and `build_family` for rendering tests that need rows the chain never
writes (a failed attempt with a traceback, an album titled like markup, hundreds of lanes)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Iterator

import psycopg
import pytest

from dbtools import _create_db, _drop_db


@pytest.fixture(scope="session")
def demo_dsn(server_dsn: str, template_db: str) -> Iterator[str]:
    """A database on which the demo ran: its three albums, every job finished."""
    from pgjobs.cli.worker import run_worker
    from pgjobs.enrichment import api
    from pgjobs.enrichment.app import make_app
    from pgjobs.enrichment.demo import DEMO_RELEASES
    from pgjobs.enrichment.sandbox import SandboxServer
    from pgjobs.enrichment.settings import EnrichmentSettings
    from pgjobs.settings import Settings

    name = f"pgjobs_d_{uuid.uuid4().hex[:10]}"
    dsn = _create_db(server_dsn, name, template=template_db)
    with SandboxServer() as sandbox:
        app = make_app(EnrichmentSettings(**sandbox.settings_overrides()))
        with psycopg.connect(dsn) as conn:
            for mbid in DEMO_RELEASES:
                api.enqueue_enrich_album(conn, api.album_for_mbid(conn, mbid), triggered_by="demo")
        asyncio.run(run_worker(app, Settings(dsn=dsn), dsn, concurrency=8, burst=True,
                               burst_waits_for_scheduled=True))
    yield dsn
    _drop_db(server_dsn, name)
