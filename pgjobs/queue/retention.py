"""Retention: whole finished job families out of pgjobs.jobs, by hand (`pgjobs prune`) or by the
worker on a schedule (PGJOBS_RETENTION_DAYS, 7 by default; 0 turns it off).

A pass walks the roots in id order (the primary key, no extra index: an index on finished_at would
cost every completion an entry) in scans of `batch` roots, one transaction each, and deletes the
families of the scanned roots whose every job finished before the cutoff. Ids follow creation, so
the walk stops at the first scan that reaches a root created after the cutoff (nothing later can
have finished before it): with nothing due a pass reads one scan. One pruner runs at a time (a
transaction advisory lock; a worker that finds it taken tries again at its next pass), and only
finished rows are deleted, which no worker touches: workers never wait on it. An unfinished family
stays whole; the walk passes it.

Behind (a scan found a full batch due), a pass keeps going without pausing and doubles its scans
up to `max_batch` roots; caught up, it waits `interval`. Measured in the soak (bin/bench, 1,000,000
jobs at ~15,000 jobs/s, 5 s kept): the pause after each turn and 1,000-root scans kept it to 29 %
of the jobs; now it keeps pace, and a VACUUM after each 100,000 pruned keeps the table's size
bounded (docs/performance.md, "History and soak").
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Awaitable, Callable

import psycopg

from pgjobs.queue.faults import UNAVAILABLE, FaultLog
from pgjobs.queue.jobs import Q
from pgjobs.queue.vacuum import Beside, vacuum

log = logging.getLogger("pgjobs.retention")
# The transaction advisory lock of a retention step: 'pgjobspr' as a bigint, apart from job-derived keys.
PRUNER_LOCK_KEY = int.from_bytes(b"pgjobspr", "big")
FINISHED = "pgjobs.jobs_finished"  # what retention VACUUMs: every day partition, where it deleted


@dataclass
class Scan:
    deleted: int  # jobs deleted
    last_id: int | None  # the last root scanned: the next scan starts after it
    more: bool  # whether roots old enough to be due may follow


def _scan(row: tuple, batch: int, cutoff: datetime) -> Scan:
    deleted, last_id, scanned, newest = row
    return Scan(deleted, last_id, scanned >= batch and newest is not None and newest < cutoff)


def prune(conn: psycopg.Connection, cutoff: datetime, *, batch: int = 1000) -> int:
    """Delete whole families whose every job finished before `cutoff`; returns jobs deleted (waits
    for a worker's retention step, if one runs, instead of skipping)."""
    total, after = 0, 0
    while True:
        with conn.transaction():
            row = conn.execute(Q["prune_scan"], {"cutoff": cutoff, "after": after, "limit": batch, "wait": True,
                                                 "lock_key": PRUNER_LOCK_KEY}).fetchone()
            scan = _scan(row, batch, cutoff)
        total += scan.deleted
        if not scan.more:
            return total
        after = scan.last_id


class Retention:
    """Retention that runs itself: the worker runs `run(pool)` beside its other loops; every
    `interval` seconds (first at the worker's start) a pass deletes the families finished more than
    `days` ago, in turns of at most `max_batches` scans (one transaction each, its own connection
    from the pool per turn); a pass that did not end goes on where it stopped at once, its scans
    doubling from `batch` up to `max_batch` roots while each finds a full scan's worth due, so a
    backlog of history is worked off in short transactions as fast as the database deletes it."""

    def __init__(self, days: float, *, interval: float = 600.0, batch: int = 1000, max_batches: int = 10,
                 max_batch: int | None = None, vacuum_after: int = 100_000) -> None:
        self.days, self.interval, self.batch, self.max_batches = days, interval, batch, max_batches
        self.max_batch = max(batch, max_batch if max_batch is not None else 10 * batch)
        self._size = batch  # roots per scan now: grows while behind, back to `batch` when a pass ends
        self.vacuum_after = vacuum_after  # jobs deleted since the last VACUUM that call for one (0: never)
        self._unvacuumed = 0
        self._pool = None  # set by run(): its VACUUMs then run beside the pruning, on their own connection
        self._vacuuming = Beside()
        self._next = 0.0
        self._after: int | None = None  # where an unfinished pass goes on; None: start a new one
        self._cutoff: datetime | None = None

    async def run(self, pool, on_fault: Callable[[BaseException], Awaitable[None]] | None = None) -> None:
        """Turns for as long as the worker runs (cancelled when it stops). A database that cannot
        prune now (away, read-only, disk full: pgjobs.queue.faults) means a new pass later, never an
        exit; `on_fault` lets the worker drop sessions such a fault leaves stale."""
        faults = FaultLog(log, "retention")
        self._pool = pool
        try:
            while True:
                try:
                    async with pool.connection() as conn:
                        await self.tick(conn)
                    faults.ok()
                except UNAVAILABLE as exc:
                    retry = min(self.interval, 30.0)
                    faults.failed(exc, retry)
                    self._end_pass(retry)
                    if on_fault is not None:
                        await on_fault(exc)
                # Behind (_next is 0): straight on, yielding to the worker's other tasks between turns.
                await asyncio.sleep(max(self._next - time.monotonic(), 0.0))
        finally:
            self._vacuuming.cancel()

    async def tick(self, conn: psycopg.AsyncConnection) -> int:
        """Prune when due; returns the jobs deleted (0 when not due)."""
        if time.monotonic() < self._next:
            return 0
        if self._after is None:
            self._after, self._cutoff = 0, datetime.now(timezone.utc) - timedelta(days=self.days)
        deleted, more = 0, True
        try:
            for _ in range(self.max_batches):
                async with conn.transaction():
                    cur = await conn.execute(Q["prune_scan"], {"cutoff": self._cutoff, "after": self._after,
                                                               "limit": self._size, "wait": False,
                                                               "lock_key": PRUNER_LOCK_KEY})
                    scan = _scan(await cur.fetchone(), self._size, self._cutoff)
                deleted += scan.deleted
                more = scan.more
                if not more:
                    break
                self._after = scan.last_id
                self._size = min(2 * self._size, self.max_batch)
        except UNAVAILABLE:
            raise  # the database cannot prune now: run() logs it and starts a new pass later
        except psycopg.Error as exc:  # never the worker's end: log it, try again in `interval`
            log.warning("retention failed (%s); trying again in %.0fs", exc, self.interval)
            self._end_pass(self.interval)
            return deleted
        if deleted:
            log.info("retention: pruned %d job(s) of families finished before %s", deleted,
                     f"{self._cutoff:%Y-%m-%d %H:%M:%S}Z")
        self._unvacuumed += deleted
        if more:  # the pass goes on at the next maintenance turn, not in `interval`
            self._next = 0.0
        else:
            self._end_pass(self.interval)
            if self.vacuum_after and self._unvacuumed >= self.vacuum_after:
                await self._start_vacuum(conn)
        return deleted

    def _end_pass(self, wait: float) -> None:
        """The next pass starts afresh (the first root, scans of `batch`) in `wait` seconds."""
        self._after, self._size, self._next = None, self.batch, time.monotonic() + wait

    async def _start_vacuum(self, conn: psycopg.AsyncConnection) -> None:
        """VACUUM the finished partitions now on `conn` (a tick called on its own), or, under run(),
        in a task of its own beside the pruning (one at a time): a VACUUM of a table a fast drain
        churns takes seconds (2.5 s in the soak at 32,000 jobs/s), and pruning that waited for it
        fell behind. Space the pass freed is then reusable at once, not at autovacuum's next visit
        (a database is visited once a minute: autovacuum_naptime): inserts otherwise extend the
        table meanwhile. It also cuts emptied days' files down, so the workers' partition upkeep
        can drop them (pgjobs.queue.maintenance.maintain_partitions). jobs_live, where the claims'
        and completions' dead versions are, is the worker's own LiveVacuum's (pgjobs.queue.vacuum)."""
        pruned, self._unvacuumed = self._unvacuumed, 0

        def done(seconds: float) -> None:
            log.info("retention: vacuumed %s after %d job(s) pruned in %.1fs", FINISHED, pruned, seconds)

        if self._pool is None:
            if (seconds := await vacuum(conn, FINISHED)) is not None:
                done(seconds)
        else:
            self._vacuuming.start(self._pool, FINISHED, done)
