"""The timeline views over enrichment_log: one root's family is found through indexes."""

from __future__ import annotations

import psycopg

from pgjobs.sqlfiles import load_queries

Q = load_queries("enrichment.sql")


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
