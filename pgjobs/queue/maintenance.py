"""Maintenance: the rescuer (expired leases back to the queue) and the pruner (old families out),
which `pgjobs prune` runs once and a worker with a retention setting runs on a schedule."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone

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


def prune(conn: psycopg.Connection, cutoff: datetime, *, batch: int = 1000) -> int:
    """Delete whole families whose every job finished before `cutoff`; returns jobs deleted."""
    total = 0
    while True:
        with conn.transaction():
            deleted = len(conn.execute(Q["prune_families"], {"cutoff": cutoff, "limit": batch}).fetchall())
        total += deleted
        if deleted == 0:
            return total


async def prune_async(conn: psycopg.AsyncConnection, cutoff: datetime, *, batch: int = 1000,
                      max_batches: int = 10) -> int:
    """`prune` in bounded steps: at most `max_batches` transactions of `batch` families each, so a
    backlog of history is worked off over several runs instead of one long transaction. Only
    finished rows are deleted (and locked), which no worker touches: workers never wait on it."""
    total = 0
    for _ in range(max_batches):
        async with conn.transaction():
            cur = await conn.execute(Q["prune_families"], {"cutoff": cutoff, "limit": batch})
            deleted = len(await cur.fetchall())
        total += deleted
        if deleted == 0:
            break
    return total


class Retention:
    """Retention that runs itself: every `interval` seconds (first at the worker's start) the
    worker's maintenance loop deletes whole families finished more than `days` ago
    (PGJOBS_RETENTION_DAYS). The audit log is the app's and is not touched: the timeline outlives
    the jobs."""

    def __init__(self, days: float, *, interval: float = 600.0, batch: int = 1000, max_batches: int = 10) -> None:
        self.days, self.interval, self.batch, self.max_batches = days, interval, batch, max_batches
        self._next = 0.0

    async def tick(self, conn: psycopg.AsyncConnection) -> int:
        """Prune when due; returns the jobs deleted (0 when not due)."""
        if time.monotonic() < self._next:
            return 0
        cutoff = datetime.now(timezone.utc) - timedelta(days=self.days)
        try:
            deleted = await prune_async(conn, cutoff, batch=self.batch, max_batches=self.max_batches)
        except psycopg.OperationalError:
            raise  # the connection is gone: the rescue loop logs it and tries again
        except psycopg.Error as exc:  # never the worker's end: log it, try again in `interval`
            log.warning("retention failed (%s); trying again in %.0fs", exc, self.interval)
            self._next = time.monotonic() + self.interval
            return 0
        # A full run means more is waiting: come back at the next maintenance turn, not in `interval`.
        full = deleted >= self.batch * self.max_batches
        self._next = time.monotonic() + (0.0 if full else self.interval)
        if deleted:
            log.info("retention: pruned %d job(s) of families finished before %s", deleted, f"{cutoff:%Y-%m-%d %H:%M:%S}Z")
        return deleted
