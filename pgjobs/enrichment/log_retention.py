"""PRUNE_ENRICHMENT_LOG: the periodic job that keeps `enrichment_log` to PGJOBS_LOG_RETENTION_DAYS.

The audit log is the app's, so its retention is the app's too, declared with the public API
(`@app.periodic` over `@app.task`, like REENRICH_STALE_ALBUMS): one worker runs each slot
(PGJOBS_LOG_RETENTION_CRON, hourly by default), whichever holds the job. It deletes the log's
oldest rows in id order (the primary key: ids follow created_at, which is clock_timestamp() at the
insert), PGJOBS_LOG_RETENTION_BATCH rows per transaction, and stops at the first window holding a
row newer than the cutoff, or after LOG_RETENTION_MAX_BATCHES (a backlog is worked off over several
runs), pausing after each batch as long as it took. It only ever touches rows no worker writes. Deletes in bounded batches measured better
than time partitions dropped whole (docs/performance.md, "Audit-log retention"): partitions would
have cost the unique (job_id, attempt) index its meaning and every family lookup one index probe
per partition, and an existing log a rewrite.

A family straddling the cutoff loses its older rows first (the root's, so it leaves the roots view)
and the rest at the next run. The views read only the log: jobs pruned earlier (PGJOBS_RETENTION_DAYS)
take nothing from them. A maintenance kind: it writes no log row itself (see reenrich.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta, timezone

import psycopg

from pgjobs.enrichment.runner import Env, Q
from pgjobs.queue import JobContext

PRUNE_ENRICHMENT_LOG = "PRUNE_ENRICHMENT_LOG"
LOG_RETENTION_MAX_BATCHES = 200  # a run deletes at most this many batches (1,000,000 rows by default)
log = logging.getLogger("pgjobs.enrichment")


async def prune_log(conn: psycopg.AsyncConnection, cutoff: datetime, *, batch: int = 5000,
                    max_batches: int = LOG_RETENTION_MAX_BATCHES) -> int:
    """Delete log rows created before `cutoff`, oldest first, one transaction per `batch`; returns
    how many. `conn` is in autocommit mode (each batch commits on its own). After each batch it
    pauses as long as the batch took: unpaced, back-to-back batches (118,000 rows/s here) halved a
    worker's drain beside them."""
    deleted, after = 0, 0
    for _ in range(max_batches):
        started = time.monotonic()
        async with conn.transaction():
            cur = await conn.execute(Q["prune_log"], {"cutoff": cutoff, "after": after, "limit": batch})
            gone, last_id, scanned, kept = await cur.fetchone()
        deleted += gone
        if kept or scanned < batch:
            break
        after = last_id
        await asyncio.sleep(time.monotonic() - started)
    return deleted


async def prune_enrichment_log(ctx: JobContext) -> None:
    """The kind's handler: nothing when PGJOBS_LOG_RETENTION_DAYS is 0 (keep forever)."""
    env: Env = ctx.state
    days = env.settings.log_retention_days
    if not days:
        return
    cutoff = datetime.now(timezone.utc) - timedelta(days=days)
    async with env.pool.connection() as conn:
        deleted = await prune_log(conn, cutoff, batch=env.settings.log_retention_batch)
    if deleted:
        log.info("%s job %s: deleted %d enrichment_log row(s) created before %s", PRUNE_ENRICHMENT_LOG,
                 ctx.job.id, deleted, f"{cutoff:%Y-%m-%d %H:%M:%S}Z")
