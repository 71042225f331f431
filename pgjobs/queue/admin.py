"""Operators' view of the queue: look up, list, cancel, retry jobs; counts by queue and state."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgjobs.queue.errors import JobNotFound
from pgjobs.queue.jobs import Q


def _dicts(conn: psycopg.Connection, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(Q[name], params).fetchall()


def get_job(conn: psycopg.Connection, job_id: int) -> dict[str, Any]:
    rows = _dicts(conn, "get_job", {"id": job_id})
    if not rows:
        raise JobNotFound(f"no job with id {job_id}")
    return rows[0]


def list_jobs(
    conn: psycopg.Connection, *, state: str | None = None, queue: str | None = None,
    root_id: int | None = None, kind: str | None = None, limit: int = 50,
) -> list[dict[str, Any]]:
    return _dicts(conn, "list_jobs", {"state": state, "queue": queue, "root_id": root_id, "kind": kind,
                                      "limit": limit})


def family(conn: psycopg.Connection, root_id: int) -> list[dict[str, Any]]:
    return _dicts(conn, "family", {"root_id": root_id})


def cancel(conn: psycopg.Connection, job_id: int, *, reason: str = "cancelled by operator") -> list[int]:
    """Cancel a job; cancelling a root cancels its whole unfinished family. Returns ids cancelled."""
    job = get_job(conn, job_id)
    if job["parent_id"] is None:
        rows = conn.execute(Q["cancel_family"], {"root_id": job_id, "reason": reason}).fetchall()
    else:
        rows = conn.execute(Q["cancel_job"], {"id": job_id, "reason": reason}).fetchall()
    return sorted(r[0] for r in rows)


def retry(conn: psycopg.Connection, job_id: int) -> None:
    """Make a finished job runnable now (one more attempt if it had spent them all)."""
    get_job(conn, job_id)
    row = conn.execute(Q["retry_job"], {"id": job_id}).fetchone()
    if row is None:
        raise JobNotFound(f"job {job_id} is still queued or running; only finished jobs can be retried")
    conn.execute(Q["notify_queue"], {"queue": row[1]})


def stats(conn: psycopg.Connection) -> list[dict[str, Any]]:
    return _dicts(conn, "stats", {})
