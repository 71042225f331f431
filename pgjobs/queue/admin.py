"""Operators' view of the queue: look up, list, cancel, retry jobs; counts by queue and state; pause
and resume queues; live workers, and the queued kinds none of them serves.

A worker is live while its heartbeat (pgjobs.workers.heartbeat_at) is younger than `stale_after`
seconds, LIVE_WINDOW by default: workers refresh it every few seconds, so a row older than a minute
belongs to a worker that died without deleting it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Sequence

import psycopg
from psycopg.rows import dict_row

from pgjobs.queue.errors import JobNotFound
from pgjobs.queue.jobs import Q
from pgjobs.sqlfiles import load_queries

A = load_queries("queue/admin.sql")
LIVE_WINDOW = 60.0  # seconds since its last heartbeat that a worker still counts as live


def _dicts(conn: psycopg.Connection, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def operator(verb: str, who: str) -> str:
    """The line an operator's action leaves in last_error: "retried by ops@host at 2026-12-06 21:40:03 UTC"."""
    return f"{verb} by {who} at {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"


def get_job(conn: psycopg.Connection, job_id: int) -> dict[str, Any]:
    rows = _dicts(conn, Q["get_job"], {"id": job_id})
    if not rows:
        raise JobNotFound(f"no job with id {job_id}")
    return rows[0]


def list_jobs(
    conn: psycopg.Connection, *, state: str | None = None, queue: str | None = None,
    root_id: int | None = None, kind: str | None = None, limit: int = 50,
) -> list[dict[str, Any]]:
    return _dicts(conn, Q["list_jobs"], {"state": state, "queue": queue, "root_id": root_id, "kind": kind,
                                         "limit": limit})


def cancel(conn: psycopg.Connection, job_id: int, *, reason: str = "cancelled by operator") -> list[int]:
    """Cancel a job; cancelling a root cancels its whole unfinished family. Returns ids cancelled."""
    job = get_job(conn, job_id)
    if job["parent_id"] is None:
        rows = conn.execute(Q["cancel_family"], {"root_id": job_id, "reason": reason}).fetchall()
    else:
        rows = conn.execute(Q["cancel_job"], {"id": job_id, "reason": reason}).fetchall()
    return sorted(r[0] for r in rows)


def retry(conn: psycopg.Connection, job_id: int, *, reason: str = "retried by operator") -> None:
    """Make a finished job runnable now (one more attempt if it had spent them all); `reason` (who
    and when, as for cancel) goes in its last_error."""
    get_job(conn, job_id)
    row = conn.execute(Q["retry_job"], {"id": job_id, "reason": reason}).fetchone()
    if row is None:
        raise JobNotFound(f"job {job_id} is still queued or running; only finished jobs can be retried")
    conn.execute(Q["notify_queue"], {"queue": row[1]})


def stats(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Jobs by queue and state, with the age of each queue's oldest runnable job."""
    return _dicts(conn, Q["stats"], {})


# --- queues ---------------------------------------------------------------------------------------


def pause_queue(conn: psycopg.Connection, queue: str, *, paused_by: str | None) -> dict[str, Any]:
    """Pause `queue`: workers stop claiming its jobs (running ones finish). Returns the pause, with
    `created` False when the queue was already paused (that earlier pause is kept)."""
    return _dicts(conn, A["pause_queue"], {"queue": queue, "paused_by": paused_by})[0]


def resume_queue(conn: psycopg.Connection, queue: str) -> dict[str, Any] | None:
    """Resume `queue` and wake idle workers on it (at commit); the pause lifted, None if it had none."""
    rows = _dicts(conn, A["resume_queue"], {"queue": queue})
    return rows[0] if rows else None


def paused_queues(conn: psycopg.Connection) -> list[dict[str, Any]]:
    return _dicts(conn, A["paused_queues"], {})


def queues(conn: psycopg.Connection, *, known: Sequence[str] = (), stale_after: float = LIVE_WINDOW
           ) -> list[dict[str, Any]]:
    """Every queue with jobs, a pause or a live worker (and those in `known`): unfinished jobs, live
    workers serving it, its pause."""
    return _dicts(conn, A["queues"], {"known": list(known), "stale_after": stale_after})


# --- workers --------------------------------------------------------------------------------------


def workers(conn: psycopg.Connection, *, include_stale: bool = False, stale_after: float = LIVE_WINDOW
            ) -> list[dict[str, Any]]:
    """Live workers (every registered one with include_stale), each with `running_jobs` it holds."""
    return _dicts(conn, A["workers"], {"include_stale": include_stale, "stale_after": stale_after})


def unserved_kinds(conn: psycopg.Connection, *, stale_after: float = LIVE_WINDOW) -> list[dict[str, Any]]:
    """(kind, queue, jobs) of queued jobs that no live worker runs: they wait for one that does."""
    return _dicts(conn, A["unserved_kinds"], {"stale_after": stale_after})
