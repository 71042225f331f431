"""Crash-drill worker: the real `pgjobs.queue.Worker`, wired as `pgjobs worker` wires it, serving one
`drill` kind whose effect is a row in `drill_effects(job_id, attempt)` (the test creates the table).

A drill job sleeps `payload.sleep_ms` on its first attempt only (so a rescued retry finishes at
once), then completes with a write that inserts its effect row in the completion transaction.

    python drill_worker.py WORKER_ID [--burst]

Settings come from the environment as for the CLI (PGJOBS_DSN, PGJOBS_LEASE_SECONDS, ...); logs are
JSON lines on stderr. SIGTERM/SIGINT stop it gracefully.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from pgjobs import database, logs, migrations
from pgjobs.queue import Complete, JobContext, JobTransaction, RateLimits, Registry, Worker
from pgjobs.settings import Settings


async def run_drill(ctx: JobContext) -> Complete:
    payload = ctx.payload if isinstance(ctx.payload, dict) else {}
    sleep_ms = payload.get("sleep_ms", 0) if ctx.job.attempt == 1 else 0
    await asyncio.sleep(sleep_ms / 1000)

    async def write(tx: JobTransaction) -> None:
        await tx.execute("INSERT INTO drill_effects (job_id, attempt) VALUES (%s, %s)", (tx.job.id, tx.job.attempt))

    return Complete(write)


async def main(worker_id: str, burst: bool) -> int:
    settings = Settings()
    logs.configure("json", settings.log_level)
    dsn = database.resolve_dsn(settings)
    registry = Registry()
    registry.register("drill", run_drill)
    pool = await database.open_pool(dsn, max_size=4)
    try:
        async with pool.connection() as conn:
            await migrations.check_migrated_async(conn)
        worker = Worker(
            pool, registry, conninfo=dsn, limits=RateLimits(pool, {}), concurrency=settings.concurrency,
            lease_seconds=settings.lease_seconds, poll_interval=settings.poll_interval,
            shutdown_grace=settings.shutdown_grace_seconds, burst=burst, worker_id=worker_id,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()
        return 0
    finally:
        await pool.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], "--burst" in sys.argv[2:])))
