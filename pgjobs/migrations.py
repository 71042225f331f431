"""Schema migrations: each component (the queue, then each app) owns numbered SQL files.

A component is a name and a folder of `NNNN_name.sql` files. `migrate` applies every pending file,
each in its own transaction, under one advisory lock, and leaves a ledger row (component, version,
name, checksum) in pgjobs.migrations. Two processes migrating at once serialise on the lock; the
second finds nothing left to do. Workers and the CLI call `check_migrated` and refuse a stale schema.

The queue's component comes first and always; an app adds its own (see pgjobs.app.App). A database
migrated before components existed (one ledger, pgjobs.schema_migrations, versions 1-7) is taken
over in place: its rows are mapped onto the components' files, nothing runs twice, and the old
ledger is left as it was (so a worker of that release still starts during a rolling deploy).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import psycopg

from pgjobs.errors import PgjobsError
from pgjobs.sqlfiles import sql_dir

_FILENAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# pg_advisory_lock key: any fixed bigint; this one spells "pgjobsmg" in ASCII.
_LOCK_KEY = 0x70676A6F62736D67

_LEDGER = """
CREATE SCHEMA IF NOT EXISTS pgjobs;
CREATE TABLE IF NOT EXISTS pgjobs.migrations (
    component  text NOT NULL,
    version    integer NOT NULL,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
)
"""

# The single ledger of releases before components: old version -> the files it became.
_LEGACY = {
    1: [("queue", 1)], 2: [("enrichment", 1)], 3: [("queue", 2), ("enrichment", 3)], 4: [("enrichment", 2)],
    5: [("queue", 3)], 6: [("queue", 4)], 7: [("enrichment", 4)],
}
_LEGACY_CHECKSUM = "legacy"  # taken over from pgjobs.schema_migrations: its own checksum was of another file


class MigrationError(PgjobsError):
    """The schema cannot be brought up to date (or is not): the message says what to do."""


class NotMigrated(MigrationError):
    pass


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.component}/{self.path.name}"


@dataclass(frozen=True)
class Component:
    """A named folder of migrations; the name keys its rows in the ledger."""

    name: str
    directory: Path

    def migrations(self) -> list[Migration]:
        if not self.directory.is_dir():
            raise MigrationError(f"migrations of {self.name!r}: no folder {self.directory}")
        found = []
        for path in sorted(self.directory.glob("*.sql")):
            match = _FILENAME.match(path.name)
            if not match:
                raise MigrationError(f"migration file {path.name!r} of {self.name!r} is not named NNNN_name.sql")
            found.append(Migration(self.name, int(match.group(1)), match.group(2), path))
        versions = [m.version for m in found]
        if len(set(versions)) != len(versions):
            raise MigrationError(f"two migration files of {self.name!r} share a version number")
        return found


QUEUE = Component("queue", sql_dir() / "queue" / "migrations")


def _components(components: Iterable[Component] | None) -> list[Component]:
    """The queue first, then the others in the given order, each once."""
    chosen = [QUEUE] + [c for c in (components or ()) if c.name != QUEUE.name]
    names = [c.name for c in chosen]
    if len(set(names)) != len(names):
        raise MigrationError("two components share a name")
    return chosen


def available(components: Iterable[Component] | None = None) -> list[Migration]:
    return [m for c in _components(components) for m in c.migrations()]


def _exists(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]


def _applied(conn: psycopg.Connection) -> dict[tuple[str, int], str]:
    if _exists(conn, "pgjobs.migrations"):
        rows = conn.execute("SELECT component, version, checksum FROM pgjobs.migrations").fetchall()
        return {(c, v): s for c, v, s in rows}
    if _exists(conn, "pgjobs.schema_migrations"):  # not yet taken over: read it as it will be
        old = conn.execute("SELECT version FROM pgjobs.schema_migrations").fetchall()
        return {key: _LEGACY_CHECKSUM for (version,) in old for key in _LEGACY.get(version, [])}
    return {}


def _take_over_legacy(conn: psycopg.Connection) -> None:
    """Copy the old single ledger into pgjobs.migrations, once (inside the migration lock)."""
    if _exists(conn, "pgjobs.migrations") or not _exists(conn, "pgjobs.schema_migrations"):
        return
    rows = conn.execute("SELECT version, name, applied_at FROM pgjobs.schema_migrations").fetchall()
    with conn.transaction():
        conn.execute(_LEDGER)
        for version, name, applied_at in rows:
            for component, new_version in _LEGACY.get(version, []):
                conn.execute(
                    "INSERT INTO pgjobs.migrations (component, version, name, checksum, applied_at)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (component, new_version, name, _LEGACY_CHECKSUM, applied_at))


def pending(conn: psycopg.Connection, components: Iterable[Component] | None = None) -> list[Migration]:
    applied = _applied(conn)
    todo = []
    for migration in available(components):
        checksum = applied.get((migration.component, migration.version))
        if checksum is None:
            todo.append(migration)
        elif checksum not in (migration.checksum, _LEGACY_CHECKSUM):
            raise MigrationError(
                f"migration {migration.label} changed after it was applied; restore it and add a new one")
    return todo


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def migrate(conninfo: str, components: Sequence[Component] | None = None) -> list[Migration]:
    """Apply every pending migration of the queue and `components`; return the ones applied."""
    done: list[Migration] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            try:
                _take_over_legacy(conn)
                with conn.transaction():
                    conn.execute(_LEDGER)
            except psycopg.DatabaseError as exc:
                if isinstance(exc, psycopg.OperationalError):
                    raise
                raise MigrationError(f"cannot set up the migration ledger pgjobs.migrations: {_first_line(exc)}"
                                     ) from None
            for migration in pending(conn, components):
                try:
                    with conn.transaction():
                        conn.execute(migration.sql)
                        conn.execute(
                            "INSERT INTO pgjobs.migrations (component, version, name, checksum)"
                            " VALUES (%s, %s, %s, %s)",
                            (migration.component, migration.version, migration.name, migration.checksum))
                except psycopg.DatabaseError as exc:
                    if isinstance(exc, psycopg.OperationalError):
                        raise
                    raise MigrationError(
                        f"migration {migration.label} failed, nothing of it was applied: {_first_line(exc)}"
                    ) from None
                done.append(migration)
        finally:
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return done


def _not_migrated(missing: list[Migration]) -> NotMigrated:
    names = ", ".join(m.label for m in missing)
    return NotMigrated(f"database schema is not up to date (pending: {names}); run `pgjobs migrate`")


def check_migrated(conn: psycopg.Connection, components: Iterable[Component] | None = None) -> None:
    """Raise NotMigrated naming `pgjobs migrate` unless every migration is applied."""
    missing = pending(conn, components)
    if missing:
        raise _not_migrated(missing)


async def check_migrated_async(conn: psycopg.AsyncConnection, components: Iterable[Component] | None = None) -> None:
    applied: dict[tuple[str, int], str] = {}
    cur = await conn.execute("SELECT to_regclass('pgjobs.migrations') IS NOT NULL,"
                             " to_regclass('pgjobs.schema_migrations') IS NOT NULL")
    new, old = await cur.fetchone()
    if new:
        cur = await conn.execute("SELECT component, version FROM pgjobs.migrations")
        applied = {(c, v): "" for c, v in await cur.fetchall()}
    elif old:
        cur = await conn.execute("SELECT version FROM pgjobs.schema_migrations")
        applied = {key: "" for (version,) in await cur.fetchall() for key in _LEGACY.get(version, [])}
    missing = [m for m in available(components) if (m.component, m.version) not in applied]
    if missing:
        raise _not_migrated(missing)
