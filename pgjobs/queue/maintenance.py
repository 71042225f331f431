"""Maintenance: the rescuer (expired leases back to the queue). Retention (old families out) lives
in pgjobs/queue/retention.py."""

from __future__ import annotations

import logging

import psycopg

from pgjobs.queue.context import JobTransaction
from pgjobs.queue.faults import UNAVAILABLE
from pgjobs.queue.jobs import Q, RescuedJob
from pgjobs.queue.registry import Registry

log = logging.getLogger("pgjobs.rescuer")


async def rescue_expired(conn: psycopg.AsyncConnection, registry: Registry, *, limit: int = 500) -> list[RescuedJob]:
    """Re-queue (or fail, when spent) running jobs whose lease expired; returns them.

    Each kind's `on_lease_expired(tx, job)` hook runs in the same transaction (a savepoint of its
    own), so the domain's record of the lost attempt commits with the re-queue or not at all.
    """
    async with conn.transaction():
        cur = await conn.execute(Q["rescue_expired"], {"limit": limit})
        rescued = [RescuedJob(*row) for row in await cur.fetchall()]
        for job in rescued:
            handler = registry.get(job.kind)
            if handler and handler.on_lease_expired:
                try:
                    async with conn.transaction():
                        tx = JobTransaction(conn, job)
                        await handler.on_lease_expired(tx, job)
                        await tx.deferred.flush(conn)
                except UNAVAILABLE:  # the database's fault: the whole rescue is retried
                    raise
                except Exception:  # the hook's savepoint is rolled back; the rescue itself stands
                    log.exception("on_lease_expired hook failed for job %s", job.id)
        for queue in {job.queue for job in rescued if job.state == "queued"}:
            await conn.execute(Q["notify_queue"], {"queue": queue})
    for job in rescued:
        log.warning(
            "rescued job", extra={"kind": job.kind, "job_id": job.id, "root_id": job.root_id,
                                  "attempt": job.attempt, "outcome": "lease_expired", "state": job.state},
        )
    return rescued
