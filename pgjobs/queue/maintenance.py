"""Maintenance: the rescuer (expired leases back to the queue) and the pruner (old families out)."""

from __future__ import annotations

import logging
import json
from datetime import datetime
from typing import Any

import psycopg

from pgjobs.queue.context import JobTransaction
from pgjobs.queue.jobs import Job, Q
from pgjobs.queue.registry import Registry

log = logging.getLogger("pgjobs.rescuer")


async def rescue_expired(conn: psycopg.AsyncConnection, registry: Registry, *, limit: int = 500) -> list[dict[str, Any]]:
    """Re-queue (or fail, when spent) running jobs whose lease expired; returns them.

    Each kind's `on_lease_expired` hook runs in the same transaction, so the domain's record of
    the lost attempt commits with the re-queue or not at all.
    """
    async with conn.transaction():
        cur = await conn.execute(Q["rescue_expired"], {"limit": limit})
        columns = [c.name for c in cur.description]
        rescued = [dict(zip(columns, row)) for row in await cur.fetchall()]
        for row in rescued:
            handler = registry.get(row["kind"])
            if handler and handler.on_lease_expired:
                # A Job view of the row for the hook; it holds no lease (lease_token None).
                job = Job(row["id"], row["root_id"], row["parent_id"], row["kind"], row["queue"], json.dumps(row["payload"]),
                          0, datetime.min, row["attempt"], 0, 0, 0, 0, None, None)  # type: ignore[arg-type]
                try:
                    async with conn.transaction():
                        tx = JobTransaction(conn, job)
                        await handler.on_lease_expired(tx, row)
                        await tx.flush_later()
                except psycopg.OperationalError:
                    raise
                except Exception:  # the hook's savepoint is rolled back; the rescue itself stands
                    log.exception("on_lease_expired hook failed for job %s", row["id"])
        for queue in {row["queue"] for row in rescued if row["state"] == "queued"}:
            await conn.execute(Q["notify_queue"], {"queue": queue})
    for row in rescued:
        log.warning(
            "rescued job", extra={"kind": row["kind"], "job_id": row["id"], "root_id": row["root_id"],
                                  "attempt": row["attempt"], "outcome": "lease_expired", "state": row["state"]},
        )
    return rescued


def prune(conn: psycopg.Connection, cutoff: datetime, *, batch: int = 1000) -> int:
    """Delete whole families whose every job finished before `cutoff`; returns jobs deleted."""
    total = 0
    while True:
        with conn.transaction():
            deleted = len(conn.execute(Q["prune_families"], {"cutoff": cutoff, "limit": batch}).fetchall())
        total += deleted
        if deleted == 0:
            return total
