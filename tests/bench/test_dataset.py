"""The history data set (benchkit.dataset) on 20 roots: the lineage contract holds for every job
and log row, outcomes match attempts and errors, the catalog has every entity, the views read it,
and the same seed plans the same families."""

from __future__ import annotations

import psycopg
import pytest

from benchkit import dataset
from pgjobs import migrations
from pgjobs.enrichment.app import app

ROOTS = 20


@pytest.fixture
def history_dsn(fresh_dsn: str) -> str:
    migrations.migrate(fresh_dsn, app.components)
    loaded = dataset.load(fresh_dsn, ROOTS, seed=7, days=2, say=lambda line: None)
    assert loaded.roots == ROOTS and loaded.jobs >= ROOTS * 3 and loaded.log_rows >= loaded.jobs
    return fresh_dsn


def rows(conn: psycopg.Connection, query: str) -> list[tuple]:
    return conn.execute(query).fetchall()


def test_every_job_and_log_row_keeps_the_lineage_contract(history_dsn: str) -> None:
    with psycopg.connect(history_dsn) as conn:
        assert rows(conn, "SELECT count(*) FROM pgjobs.jobs WHERE parent_id IS NULL") == [(ROOTS,)]
        assert rows(conn, "SELECT count(*) FROM pgjobs.jobs WHERE parent_id IS NULL AND kind = 'ENRICH_ALBUM'"
                    ) == [(ROOTS,)]
        # A child's root is its parent's root; its parent succeeded and finished before it was created.
        assert rows(conn, """SELECT c.id FROM pgjobs.jobs c LEFT JOIN pgjobs.jobs p ON p.id = c.parent_id
                             WHERE c.parent_id IS NOT NULL AND (p.id IS NULL OR c.root_id <> p.root_id
                               OR p.state <> 'succeeded' OR c.created_at < p.finished_at)""") == []
        assert rows(conn, "SELECT state::text, count(*) > 0 FROM pgjobs.jobs GROUP BY 1 ORDER BY 1"
                    ) == [("failed", True), ("succeeded", True)]
        # One log row per attempt, numbered 1..attempt, with the job's lineage.
        assert rows(conn, """SELECT j.id FROM pgjobs.jobs j
                             LEFT JOIN enrichment_log l ON l.job_id = j.id
                             GROUP BY j.id, j.attempt
                             HAVING count(l.id) <> j.attempt OR min(l.attempt) <> 1 OR max(l.attempt) <> j.attempt
                             """) == []
        assert rows(conn, """SELECT l.id FROM enrichment_log l JOIN pgjobs.jobs j ON j.id = l.job_id
                             WHERE l.is_root_job <> (j.parent_id IS NULL) OR l.operation <> j.kind
                                OR l.parent_job_id IS DISTINCT FROM
                                   CASE WHEN j.parent_id IS NULL THEN NULL ELSE j.root_id END""") == []
        assert rows(conn, "SELECT count(*) FROM enrichment_log WHERE job_id IS NULL") == [(0,)]
        # Outcomes: a failed attempt per errors entry; the last attempt FAILED exactly when the job did.
        assert rows(conn, """SELECT j.id FROM pgjobs.jobs j JOIN enrichment_log l ON l.job_id = j.id
                             GROUP BY j.id, j.errors, j.state
                             HAVING count(*) FILTER (WHERE l.status = 'FAILED') <> jsonb_array_length(j.errors)
                                 OR (j.state = 'failed') <> bool_or(l.status = 'FAILED' AND l.attempt = j.attempt)
                             """) == []
        # Every entity a log row names is in the catalog.
        assert rows(conn, """SELECT l.id FROM enrichment_log l
                             WHERE (l.entity_type = 'ALBUM'
                                    AND NOT EXISTS (SELECT FROM album a WHERE a.id = l.entity_id))
                                OR (l.entity_type = 'ARTIST'
                                    AND NOT EXISTS (SELECT FROM artist a WHERE a.id = l.entity_id))
                             """) == []
        assert rows(conn, "SELECT count(*) FROM album_artist") == [(ROOTS,)]
        # The sequence moved past the generated ids: the next enqueue cannot collide.
        assert conn.execute("SELECT nextval('pgjobs.job_id_seq') > max(id) FROM pgjobs.jobs").fetchone()[0]


def test_the_views_read_the_data_set(history_dsn: str) -> None:
    with psycopg.connect(history_dsn) as conn:
        roots = rows(conn, "SELECT root_job_id, descendants, root_attempts FROM enrichment_roots")
        assert len(roots) == ROOTS
        families = dict(rows(conn, "SELECT root_id, count(*) - 1 FROM pgjobs.jobs GROUP BY root_id"))
        attempts = dict(rows(conn, "SELECT id, attempt FROM pgjobs.jobs WHERE parent_id IS NULL"))
        assert {r[0]: (r[1], r[2]) for r in roots} == {k: (families[k], attempts[k]) for k in families}
        root = roots[0][0]
        timeline = rows(conn, f"SELECT job_id FROM enrichment_timeline WHERE root_job_id = {int(root)}")
        assert sorted(timeline) == sorted(rows(conn, f"""SELECT l.job_id FROM enrichment_log l
                                                         JOIN pgjobs.jobs j ON j.id = l.job_id
                                                         WHERE j.root_id = {int(root)}"""))
    times = dataset.measure(history_dsn, runs=5)
    assert times["newest_20_roots"]["rows"] == 20 and times["family"]["rows"] >= 1


def test_the_same_seed_plans_the_same_families() -> None:
    def planned(seed: int) -> list[tuple]:
        return [row for batch in dataset.plan(50, seed, 1, 0.0, 3600.0) for row in batch]

    assert planned(3) == planned(3)
    assert planned(3) != planned(4)
