"""Maintenance: the rescuer (expired leases back to the queue) and the finished jobs' day
partitions (made ahead, emptied ones dropped). Retention (old families out) lives in
pgjobs/queue/retention.py."""

from __future__ import annotations

import logging

import psycopg

from pgjobs.queue.context import JobTransaction
from pgjobs.queue.faults import UNAVAILABLE
from pgjobs.queue.jobs import Q, RescuedJob
from pgjobs.queue.registry import Registry

log = logging.getLogger("pgjobs.rescuer")
partitions_log = logging.getLogger("pgjobs.partitions")
PARTITIONS_EVERY = 3600.0  # seconds between two calls of maintain_partitions by a worker (days are made 2 ahead)


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


async def maintain_partitions(conn: psycopg.AsyncConnection) -> list[tuple[str, str]]:
    """Make the next days' partitions of pgjobs.jobs_finished and drop past ones left empty (queue
    migration 0012); returns (partition, action) pairs. A row no partition holds lands in
    jobs_finished_default, so a late call costs nothing but that. A table busy beyond the function's
    lock timeout, or a role that may not create tables, is logged and tried again next time."""
    try:
        async with conn.transaction():
            cur = await conn.execute(Q["maintain_finished_partitions"])
            done = [(row[0], row[1]) for row in await cur.fetchall()]
    except UNAVAILABLE:
        raise
    except psycopg.Error as exc:
        partitions_log.warning("could not maintain the finished jobs' partitions (%s); trying again later",
                               str(exc).strip().splitlines()[0])
        return []
    for partition, action in done:
        partitions_log.info("finished jobs' partition %s: %s", partition, action)
    return done
