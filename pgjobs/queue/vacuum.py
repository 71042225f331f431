"""The worker's own VACUUMs, for churn faster than autovacuum's visits (once a minute per database:
autovacuum_naptime).

- `LiveVacuum`: after every `after` outcomes a worker wrote (50,000 by default), `VACUUM
  pgjobs.jobs_live`. Each job leaves two dead versions there (its claim's, and the row its
  completion moved to jobs_finished) and dead entries in its indexes. In the soak (1,000,000 jobs
  at ~30,000 jobs/s) a jobs_live vacuumed only by retention, every ~100,000 pruned, held 354,000
  dead rows beside 40,000 live ones in 120 MB of heap, past shared_buffers, so each of its VACUUMs
  read from outside them for seconds while every claim waded through the dead entries.
- `vacuum()`: one `VACUUM (SKIP_LOCKED)` with its outcome logged, shared with retention's VACUUM of
  the finished partitions after its pruning (pgjobs.queue.retention).

Each runs beside the worker's loops, in a task of its own on a pooled connection, one at a time:
the claim and completion never wait for it. SKIP_LOCKED: never waits for autovacuum or another
worker's VACUUM; a role that does not own the table gets a warning from the server, nothing more.
"""

from __future__ import annotations

import asyncio
import logging
import time

import psycopg
from psycopg import sql

from pgjobs.queue.faults import UNAVAILABLE

log = logging.getLogger("pgjobs.vacuum")


async def vacuum(conn: psycopg.AsyncConnection, table: str) -> float | None:
    """`VACUUM (SKIP_LOCKED) table` on an autocommit connection; its seconds, or None when it
    failed (logged). A database that is away raises (the caller's loop backs off)."""
    started = time.monotonic()
    try:
        await conn.execute(sql.SQL("VACUUM (SKIP_LOCKED) {}").format(sql.Identifier(*table.split("."))))
    except UNAVAILABLE:
        raise
    except psycopg.Error as exc:
        log.warning("VACUUM %s failed (%s)", table, exc)
        return None
    return time.monotonic() - started


class Beside:
    """At most one VACUUM task at a time, on its own pooled connection."""

    def __init__(self) -> None:
        self._task: asyncio.Task | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, pool, table: str, done=None) -> bool:
        """Start one unless one runs; `done(seconds)` after it succeeded. True if started."""
        if self.running:
            return False
        self._task = asyncio.create_task(self._run(pool, table, done), name=f"vacuum {table}")
        return True

    async def _run(self, pool, table: str, done) -> None:
        try:
            async with pool.connection() as conn:
                seconds = await vacuum(conn, table)
        except psycopg.Error as exc:  # the database away, or no connection free: the next one tries again
            log.warning("VACUUM %s not run (%s)", table, exc)
            return
        if seconds is not None and done is not None:
            done(seconds)

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


class LiveVacuum:
    """`wrote(n)` after each group of outcomes written; VACUUMs jobs_live every `after` (0: never)."""

    TABLE = "pgjobs.jobs_live"

    def __init__(self, pool, after: int = 50_000) -> None:
        self.pool, self.after = pool, after
        self.runs = 0  # VACUUMs that finished
        self._written = 0
        self._beside = Beside()

    def wrote(self, count: int) -> None:
        self._written += count
        if self.after and self._written >= self.after and self._beside.start(self.pool, self.TABLE, self._done):
            self._written = 0

    def _done(self, seconds: float) -> None:
        self.runs += 1
        log.debug("vacuumed %s in %.2fs", self.TABLE, seconds)

    def cancel(self) -> None:
        self._beside.cancel()
