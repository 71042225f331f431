"""The timeline views over enrichment_log: one root's family is found through indexes."""

from __future__ import annotations

import psycopg

from pgjobs.sqlfiles import load_queries

Q = load_queries("enrichment/queries.sql")


def _load_log(conn: psycopg.Connection, families: int) -> None:
    """`families` roots with 5 descendants each (root job ids 6, 12, ...), plus unlinked legacy rows."""
    conn.execute("""
        INSERT INTO public.enrichment_log (entity_type, operation, status, job_id, parent_job_id, is_root_job, attempt)
        SELECT 'ALBUM', 'ENRICH_ALBUM', 'SUCCESS', g, CASE WHEN g %% 6 = 0 THEN NULL ELSE g + 6 - g %% 6 END,
               g %% 6 = 0, 1
        FROM generate_series(1, %s) g""", (families * 6,))
    conn.execute("""
        INSERT INTO public.enrichment_log (entity_type, operation, status)
        SELECT 'ALBUM', 'LEGACY', 'SUCCESS' FROM generate_series(1, 100)""")
    conn.execute("ANALYZE public.enrichment_log")


def test_a_family_lookup_uses_the_indexes_and_returns_root_then_descendants(fresh_dsn):
    with psycopg.connect(fresh_dsn) as conn:
        _load_log(conn, 20_000)
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT * FROM public.enrichment_timeline WHERE root_job_id = 600").fetchall())
        named = "\n".join(r[0] for r in conn.execute("EXPLAIN " + Q["family_timeline"], {"root_job_id": 600}))
        rows = conn.execute(Q["family_timeline"], {"root_job_id": 600}).fetchall()
        everything = conn.execute("SELECT count(*), count(*) FILTER (WHERE root_job_id IS NULL)"
                                  " FROM public.enrichment_timeline").fetchone()
    for p in (plan, named):
        assert "Seq Scan on enrichment_log" not in p, p  # (album/artist are empty here: scanned)
        assert "enrichment_log_attempt_idx" in p and "enrichment_log_parent_job_idx" in p, p
    job_ids = [r[2] for r in rows]  # (root_job_id, id, job_id, ...)
    assert job_ids == [600, 595, 596, 597, 598, 599]  # the root first, then its descendants by time
    assert {r[0] for r in rows} == {600}
    assert everything == (120_000, 0)  # every linked row once, legacy rows left out


def _log(conn: psycopg.Connection, rows: list[tuple]) -> None:
    """(job_id, parent_job_id, attempt, status, duration_ms, api_calls, seconds after a fixed start)."""
    conn.cursor().executemany("""
        INSERT INTO public.enrichment_log (entity_type, operation, status, job_id, parent_job_id, is_root_job,
                                           attempt, duration_ms, api_call_count, created_at)
        VALUES ('ALBUM', 'ENRICH_ALBUM', %s, %s, %s, %s, %s, %s, %s,
                timestamptz '2026-01-01' + make_interval(secs => %s))""",
        [(status, job, parent, parent is None, attempt, ms, calls, at)
         for job, parent, attempt, status, ms, calls, at in rows])


def test_enrichment_roots_counts_each_family_once_by_latest_status(fresh_dsn):
    with psycopg.connect(fresh_dsn) as conn:
        _log(conn, [
            (1, None, 1, "FAILED", 10, 1, 0),  # root 1: failed, then succeeded
            (1, None, 2, "SUCCESS", 20, 2, 5),
            (2, 1, 1, "SUCCESS", 5, 1, 6),
            (3, 1, 1, "FAILED", 5, 1, 7),  # a descendant retried: counted once, as SKIPPED
            (3, 1, 2, "SKIPPED", 5, 0, 9),
            (4, 1, 1, "NO_DATA_AVAILABLE", 1, 1, 8),
            (10, None, 1, "PARTIAL_SUCCESS", 7, 3, 3),  # a root without descendants
            (20, None, 1, "FAILED", None, 0, 12),  # a lost attempt's row: no duration
        ])
        conn.execute("INSERT INTO public.enrichment_log (entity_type, operation, status)"
                     " VALUES ('ALBUM', 'LEGACY', 'SUCCESS')")  # an unlinked legacy row: no root
        rows = conn.execute("""
            SELECT root_job_id, latest_status, extract(epoch FROM first_activity_at - timestamptz '2026-01-01'),
                   extract(epoch FROM last_activity_at - timestamptz '2026-01-01'), root_attempts, descendants,
                   descendants_success, descendants_partial, descendants_skipped, descendants_no_data,
                   descendants_failed, total_duration_ms, total_api_calls
            FROM public.enrichment_roots ORDER BY first_activity_at DESC""").fetchall()
    assert [tuple(int(v) if v is not None and not isinstance(v, str) else v for v in r) for r in rows] == [
        (20, "FAILED", 12, 12, 1, 0, 0, 0, 0, 0, 0, None, 0),
        (10, "PARTIAL_SUCCESS", 3, 3, 1, 0, 0, 0, 0, 0, 0, 7, 3),
        (1, "SUCCESS", 0, 9, 2, 3, 1, 0, 1, 1, 0, 46, 6),
    ]


def test_the_roots_timeline_reads_the_newest_roots_through_the_roots_index(fresh_dsn):
    with psycopg.connect(fresh_dsn) as conn:
        conn.execute("""
            INSERT INTO public.enrichment_log (entity_type, operation, status, job_id, parent_job_id, is_root_job,
                                               attempt, created_at)
            SELECT 'ALBUM', 'ENRICH_ALBUM', 'SUCCESS', g, CASE WHEN g %% 6 = 0 THEN NULL ELSE g + 6 - g %% 6 END,
                   g %% 6 = 0, 1, timestamptz '2026-01-01' + make_interval(secs => g)
            FROM generate_series(1, %s) g""", (120_000,))
        conn.execute("ANALYZE public.enrichment_log")
        params = {"status": None, "limit": 20}
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + Q["list_roots"], params))
        rows = conn.execute(Q["list_roots"], params).fetchall()
    assert "enrichment_log_roots_idx" in plan and "Seq Scan on enrichment_log" not in plan, plan
    assert [r[0] for r in rows] == list(range(120_000, 120_000 - 20 * 6, -6))  # newest roots first
    assert {r[9] for r in rows} == {5}  # each with its 5 descendants
