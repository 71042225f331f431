"""A database migrated by the previous release (one ledger, pgjobs.schema_migrations, versions 1-7)
upgrades in place: nothing re-applied, nothing lost, the old ledger untouched, the schema the same
as a freshly migrated database's.

legacy_migrations/ holds that release's seven files verbatim; `_migrate_like_the_previous_release`
applies them as its runner did.
"""

import hashlib
import re
import uuid
from pathlib import Path

import psycopg
import pytest
from dbtools import ENRICHMENT, _create_db, _drop_db

from pgjobs import migrations
from pgjobs.migrations import QUEUE
from pgjobs.schema_dump import dump_schema

LEGACY_DIR = Path(__file__).parent / "legacy_migrations"
# The files of the previous release each became these (component, version): the rest is new.
TAKEN_OVER = {("queue", v) for v in (1, 2, 3, 4)} | {("enrichment", v) for v in (1, 2, 3, 4)}
# Tables whose rows must survive; compared on the columns the previous release knew.
TABLES = {"pgjobs.jobs": "id", "pgjobs.rate_limits": "name", "public.artist": "id", "public.album": "id",
          "public.album_artist": "album_id, position", "public.track": "id", "public.enrichment_log": "id"}


def _migrate_like_the_previous_release(dsn: str) -> None:
    """Its runner: the ledger first, then each file and its ledger row in one transaction."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("""
                CREATE SCHEMA IF NOT EXISTS pgjobs;
                CREATE TABLE IF NOT EXISTS pgjobs.schema_migrations (
                    version    integer PRIMARY KEY,
                    name       text NOT NULL,
                    checksum   text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )""")
        for path in sorted(LEGACY_DIR.glob("*.sql")):
            version, name = re.match(r"^(\d{4})_([a-z0-9_]+)\.sql$", path.name).groups()
            with conn.transaction():
                conn.execute(path.read_text(encoding="utf-8"))
                conn.execute("INSERT INTO pgjobs.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                             (int(version), name, hashlib.sha256(path.read_bytes()).hexdigest()))


def _fill(dsn: str) -> dict[str, int]:
    """Jobs in every state, a family of a root and two children, the catalog and its audit rows."""
    with psycopg.connect(dsn) as conn:
        def job(kind, *, state="queued", root=None, **columns) -> int:
            columns |= {"kind": kind, "state": state}
            if state == "running":
                columns |= {"lease_token": uuid.uuid4(), "lease_expires_at": "2030-01-01", "worker_id": "w1",
                            "attempt": 1}
            if state in ("succeeded", "failed", "cancelled"):
                columns |= {"finished_at": "2026-01-01", "attempt": 1}
            new_id = conn.execute("SELECT nextval('pgjobs.job_id_seq')").fetchone()[0]
            columns |= {"id": new_id, "root_id": root or new_id, "parent_id": root}
            names = ", ".join(columns)
            marks = ", ".join(f"%({c})s" for c in columns)
            conn.execute(f"INSERT INTO pgjobs.jobs ({names}) VALUES ({marks})",
                         {k: psycopg.types.json.Jsonb(v) if isinstance(v, list) else v for k, v in columns.items()})
            return new_id

        ids = {
            "queued": job("noop", payload=psycopg.types.json.Jsonb({"n": 1}), dedupe_key="k1", priority=5),
            "running": job("noop", state="running"),
            "succeeded": job("noop", state="succeeded"),
            "failed": job("noop", state="failed", last_error="RuntimeError: no",
                          errors=[{"attempt": 1, "error": "RuntimeError: no"}]),
            "root": job("ENRICH_ALBUM", state="succeeded"),
        }
        ids["child_queued"] = job("ENRICH_ARTIST", root=ids["root"])
        ids["child_succeeded"] = job("CACHE_ALBUM_COVER", state="succeeded", root=ids["root"])
        conn.execute("INSERT INTO pgjobs.rate_limits (name, interval_ms) VALUES ('musicbrainz', 1000)")
        album = conn.execute("INSERT INTO album (title) VALUES ('Kind of Blue') RETURNING id").fetchone()[0]
        artist = conn.execute("INSERT INTO artist (name) VALUES ('Miles Davis') RETURNING id").fetchone()[0]
        conn.execute("INSERT INTO album_artist (album_id, artist_id, position) VALUES (%s, %s, 0)", (album, artist))
        conn.execute("INSERT INTO track (album_id, position, title) VALUES (%s, 1, 'So What')", (album,))
        log = ("INSERT INTO enrichment_log (entity_type, entity_id, operation, status, job_id, parent_job_id,"
               " is_root_job, attempt) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)")
        conn.execute(log, ("ALBUM", album, "ENRICH_ALBUM", "SUCCESS", ids["root"], None, True, 1))
        conn.execute(log, ("ALBUM", album, "CACHE_ALBUM_COVER", "SUCCESS", ids["child_succeeded"], ids["root"],
                           False, 1))
        conn.execute(log, ("ARTIST", artist, "ENRICH_ARTIST", "SKIPPED", None, None, False, None))  # no job
        conn.commit()
    return ids


def _rows(dsn: str, columns: dict[str, list[str]]) -> dict[str, list[tuple]]:
    """Each row as PostgreSQL's text of the given columns (exact, and '-infinity' needs no Python)."""
    with psycopg.connect(dsn) as conn:
        return {table: conn.execute(f"SELECT ROW({', '.join(columns[table])})::text FROM {table} ORDER BY {key}"
                                    ).fetchall()
                for table, key in TABLES.items()}


def _columns(dsn: str) -> dict[str, list[str]]:
    with psycopg.connect(dsn) as conn:
        return {table: [name for (name,) in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
            " ORDER BY attnum", (table,))] for table in TABLES}


def _old_ledger(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT * FROM pgjobs.schema_migrations ORDER BY version").fetchall()


@pytest.fixture
def new_db(server_dsn):
    made = []

    def make() -> str:
        name = f"pgjobs_l_{uuid.uuid4().hex[:10]}"
        made.append(name)
        return _create_db(server_dsn, name)

    yield make
    for name in made:
        _drop_db(server_dsn, name)


@pytest.fixture
def legacy_dsn(new_db) -> str:
    dsn = new_db()
    _migrate_like_the_previous_release(dsn)
    _fill(dsn)
    return dsn


def _fresh_schema(new_db) -> str:
    dsn = new_db()
    migrations.migrate(dsn, [ENRICHMENT])
    return dump_schema(dsn)


def test_the_legacy_files_are_the_previous_release_verbatim():
    files = sorted(p.name for p in LEGACY_DIR.glob("*.sql"))
    assert files == ["0001_queue.sql", "0002_catalog.sql", "0003_handoff.sql", "0004_timeline_by_root.sql",
                     "0005_lineage_by_construction.sql", "0006_handoff_token.sql", "0007_roots_by_index.sql"]
    # Unchanged pieces are byte for byte today's files.
    assert (LEGACY_DIR / "0001_queue.sql").read_bytes() == (QUEUE.directory / "0001_queue.sql").read_bytes()
    assert (LEGACY_DIR / "0002_catalog.sql").read_bytes() == (ENRICHMENT.directory / "0001_catalog.sql").read_bytes()


def test_a_previous_release_database_upgrades_in_place(legacy_dsn, new_db):
    columns = _columns(legacy_dsn)
    rows = _rows(legacy_dsn, columns)
    old_ledger = _old_ledger(legacy_dsn)
    assert [v for v, *_ in old_ledger] == [1, 2, 3, 4, 5, 6, 7]

    applied = migrations.migrate(legacy_dsn, [ENRICHMENT])

    expected = [m for m in migrations.available([ENRICHMENT]) if (m.component, m.version) not in TAKEN_OVER]
    assert applied == expected and applied[0].label == "queue/0005_apps.sql"
    assert _rows(legacy_dsn, columns) == rows
    assert _old_ledger(legacy_dsn) == old_ledger
    with psycopg.connect(legacy_dsn) as conn:
        ledger = conn.execute("SELECT component, version, checksum FROM pgjobs.migrations").fetchall()
        migrations.check_migrated(conn, [ENRICHMENT])
    assert {(c, v) for c, v, s in ledger if s == "legacy"} == TAKEN_OVER
    assert {(c, v, s) for c, v, s in ledger if s != "legacy"} == {
        (m.component, m.version, m.checksum) for m in expected}
    assert dump_schema(legacy_dsn, exclude_tables=["pgjobs.schema_migrations"]) == _fresh_schema(new_db)
    assert migrations.migrate(legacy_dsn, [ENRICHMENT]) == []


async def test_the_upgraded_queue_runs_the_jobs_it_held(legacy_dsn, claim_jobs):
    migrations.migrate(legacy_dsn, [ENRICHMENT])
    async with await psycopg.AsyncConnection.connect(legacy_dsn, autocommit=True) as aconn:
        cur = await aconn.execute("SELECT id FROM pgjobs.jobs WHERE state = 'queued' ORDER BY id")
        queued = [i for (i,) in await cur.fetchall()]
        claimed = await claim_jobs(aconn, limit=10)
    assert len(queued) == 2 and sorted(j.id for j in claimed) == queued


def test_a_previous_release_database_takes_the_queue_alone_then_the_app(legacy_dsn, new_db):
    columns = _columns(legacy_dsn)
    rows = _rows(legacy_dsn, columns)
    old_ledger = _old_ledger(legacy_dsn)

    applied = migrations.migrate(legacy_dsn)  # a core-only install: the queue component alone

    assert applied == [m for m in QUEUE.migrations() if ("queue", m.version) not in TAKEN_OVER]
    with psycopg.connect(legacy_dsn) as conn:
        migrations.check_migrated(conn)
        # The catalog the previous release made stays, and is known as the enrichment app's.
        assert conn.execute("SELECT to_regclass('public.track') IS NOT NULL").fetchone()[0]
        taken = conn.execute("SELECT component, version FROM pgjobs.migrations WHERE checksum = 'legacy'").fetchall()
    assert set(taken) == TAKEN_OVER
    assert _rows(legacy_dsn, columns) == rows and _old_ledger(legacy_dsn) == old_ledger

    later = migrations.migrate(legacy_dsn, [ENRICHMENT])  # the app installed afterwards
    assert later == [m for m in ENRICHMENT.migrations() if ("enrichment", m.version) not in TAKEN_OVER]
    assert dump_schema(legacy_dsn, exclude_tables=["pgjobs.schema_migrations"]) == _fresh_schema(new_db)


def _reads(dsn: str, ids: dict[str, int]) -> dict[str, object]:
    """What the CLI's and the admin's reads answer (jobs, job, family, stats, the timeline views)."""
    from pgjobs.queue import admin
    from pgjobs.queue.jobs import Q

    with psycopg.connect(dsn) as conn:
        return {
            "jobs": admin.list_jobs(conn, limit=100),
            "job": [admin.get_job(conn, i) for i in sorted(ids.values())],
            "family": conn.execute(Q["family"], {"root_id": ids["root"]}).fetchall(),
            "stats": [{k: v for k, v in s.items() if k != "oldest_runnable_seconds"} for s in admin.stats(conn)],
            "roots": conn.execute("SELECT ROW(r.*)::text FROM enrichment_roots r ORDER BY 1").fetchall(),
            "timeline": conn.execute("SELECT ROW(t.*)::text FROM enrichment_timeline t ORDER BY 1").fetchall(),
        }


def test_reads_answer_the_same_after_the_upgrade_and_operators_act_as_before(new_db):
    """A database holding jobs in every state and audit rows, migrated through today's files (the
    storage migration, queue 0008, included): every read answers the same, and cancel, retry and
    prune still act on the upgraded jobs table."""
    from datetime import datetime, timezone

    from pgjobs.queue import admin
    from pgjobs.queue.retention import prune

    dsn = new_db()
    _migrate_like_the_previous_release(dsn)
    ids = _fill(dsn)
    before = _reads(dsn, ids)
    migrations.migrate(dsn, [ENRICHMENT])
    assert _reads(dsn, ids) == before
    with psycopg.connect(dsn, autocommit=True) as conn:
        admin.retry(conn, ids["failed"])
        assert admin.get_job(conn, ids["failed"])["state"] == "queued"
        assert admin.cancel(conn, ids["root"]) == [ids["child_queued"]]  # the root's unfinished family
        assert prune(conn, datetime(2027, 1, 1, tzinfo=timezone.utc)) == 4  # succeeded, and the whole family
        left = {r[0] for r in conn.execute("SELECT id FROM pgjobs.jobs")}
    assert left == {ids["queued"], ids["running"], ids["failed"]}
    with psycopg.connect(dsn) as conn:  # the audit log outlives the pruned jobs
        assert conn.execute("SELECT count(*) FROM enrichment_log").fetchone()[0] == 3
