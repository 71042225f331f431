"""Schema migrations: numbered files in sql/migrations, applied once each under an advisory lock.

Each file runs in its own transaction and leaves a ledger row (version, name, checksum) in
pgjobs.schema_migrations. Two processes migrating at once serialise on the lock; the second
finds nothing left to do. Workers and enqueue call `check_migrated` and refuse a stale schema.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from pgjobs.sqlfiles import sql_dir

_FILENAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# pg_advisory_lock key: any fixed bigint; this one spells "pgjobsmg" in ASCII.
_LOCK_KEY = 0x70676A6F62736D67

_LEDGER = """
CREATE SCHEMA IF NOT EXISTS pgjobs;
CREATE TABLE IF NOT EXISTS pgjobs.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(Exception):
    """The schema cannot be brought up to date (or is not): the message says what to do."""


class NotMigrated(MigrationError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def available(directory: Path | None = None) -> list[Migration]:
    directory = directory or sql_dir() / "migrations"
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILENAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file {path.name!r} is not named NNNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return found


def _applied(conn: psycopg.Connection) -> dict[int, str]:
    exists = conn.execute("SELECT to_regclass('pgjobs.schema_migrations') IS NOT NULL").fetchone()[0]
    if not exists:
        return {}
    return dict(conn.execute("SELECT version, checksum FROM pgjobs.schema_migrations").fetchall())


def pending(conn: psycopg.Connection) -> list[Migration]:
    applied = _applied(conn)
    for migration in available():
        if migration.version in applied and applied[migration.version] != migration.checksum:
            raise MigrationError(
                f"migration {migration.path.name} changed after it was applied; restore it and add a new one"
            )
    return [m for m in available() if m.version not in applied]


def migrate(conninfo: str) -> list[Migration]:
    """Apply every pending migration; return the ones this call applied."""
    done: list[Migration] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            with conn.transaction():
                conn.execute(_LEDGER)
            for migration in pending(conn):
                with conn.transaction():
                    conn.execute(migration.sql)
                    conn.execute(
                        "INSERT INTO pgjobs.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                done.append(migration)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return done


def check_migrated(conn: psycopg.Connection) -> None:
    """Raise NotMigrated naming `pgjobs migrate` unless every migration is applied."""
    missing = pending(conn)
    if missing:
        names = ", ".join(m.path.name for m in missing)
        raise NotMigrated(f"database schema is not up to date (pending: {names}); run `pgjobs migrate`")


async def check_migrated_async(conn: psycopg.AsyncConnection) -> None:
    cur = await conn.execute("SELECT to_regclass('pgjobs.schema_migrations') IS NOT NULL")
    applied: dict[int, str] = {}
    if (await cur.fetchone())[0]:
        cur = await conn.execute("SELECT version, checksum FROM pgjobs.schema_migrations")
        applied = dict(await cur.fetchall())
    missing = [m.path.name for m in available() if m.version not in applied]
    if missing:
        raise NotMigrated(
            f"database schema is not up to date (pending: {', '.join(missing)}); run `pgjobs migrate`"
        )
