"""`build_family`: a finished ENRICH_ALBUM family written directly, for rendering tests that need
rows the chain never writes (a failed attempt with a traceback, a title full of markup, 600 lanes)."""

from __future__ import annotations

import json

import psycopg

EVIL_TITLE = "<script>alert(1)</script>"


def build_family(conn: psycopg.Connection, *, children: int = 2, title: str = EVIL_TITLE) -> dict:
    """A finished ENRICH_ALBUM family written directly: the root (SUCCESS), `children` children,
    the first of which failed once (with a traceback in its errors history) then succeeded."""
    album = conn.execute("INSERT INTO album (title) VALUES (%s) RETURNING id", (title,)).fetchone()[0]
    root = conn.execute(
        """INSERT INTO pgjobs.jobs (id, root_id, kind, payload, state, attempt, created_at, attempted_at, finished_at)
           VALUES (nextval('pgjobs.job_id_seq'), currval('pgjobs.job_id_seq'), 'ENRICH_ALBUM', %s, 'succeeded', 1,
                   now() - interval '10 s', now() - interval '9 s', now() - interval '8 s') RETURNING id""",
        (json.dumps({"albumId": str(album), "note": "<i>payload</i>"}),)).fetchone()[0]
    log = """INSERT INTO enrichment_log (entity_type, entity_id, operation, status, job_id, parent_job_id,
                 is_root_job, attempt, duration_ms, api_call_count, error_message, reason, created_at)
             VALUES ('ALBUM', %s, %s, %s, %s, %s, %s, %s, %s, 1, %s, %s, now() - make_interval(secs => %s))
             RETURNING id"""
    rows = {"root": conn.execute(log, (album, "ENRICH_ALBUM", "SUCCESS", root, None, True, 1, 1000, None,
                                       "enriched <b>bold</b>", 8)).fetchone()[0]}
    kids = []
    for i in range(children):
        errors = []
        if i == 0:
            errors = [{"attempt": 1, "at": "2026-01-01T00:00:00+00:00", "outcome": "retry",
                       "error": "HTTP 503 from <upstream>",
                       "traceback": "Traceback (most recent call last):\n  File \"x.py\", line 1\nRuntimeError: 503"}]
        kid = conn.execute(
            """INSERT INTO pgjobs.jobs (root_id, parent_id, kind, state, attempt, errors, created_at, attempted_at,
                                        finished_at)
               VALUES (%s, %s, 'CACHE_ALBUM_COVER', 'succeeded', %s, %s, now() - interval '8 s',
                       now() - interval '3 s', now() - interval '2 s') RETURNING id""",
            (root, root, 2 if i == 0 else 1, json.dumps(errors))).fetchone()[0]
        kids.append(kid)
        if i == 0:
            rows["failed"] = conn.execute(log, (album, "CACHE_ALBUM_COVER", "FAILED", kid, root, False, 1, 300,
                                                "HTTP 503 from <upstream>", None, 6)).fetchone()[0]
        rows[f"child{i}"] = conn.execute(log, (album, "CACHE_ALBUM_COVER", "SUCCESS", kid, root, False,
                                               2 if i == 0 else 1, 200, None, None, 2)).fetchone()[0]
    return {"root": root, "children": kids, "rows": rows, "album": album}
