"""REENRICH_STALE_ALBUMS: the periodic job that starts fresh chains for albums not enriched lately.

A maintenance kind, not a step of the chain, so it writes no enrichment_log row: a log row is
about one entity, and as a job without a parent it would show up as a root in enrichment_roots.
Its job row (state, errors) is its record; each chain it starts logs its own root attempt, with
triggered_by "schedule". The whole batch (pick the due albums, enqueue their roots, mark them
queued) runs in the job's completion transaction, so it commits exactly once, with the job: a
worker that dies first leaves nothing behind, and the retry picks again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from uuid import UUID

import psycopg

from pgjobs.enrichment.api import album_root
from pgjobs.enrichment.runner import Env, Q
from pgjobs.queue import Complete, JobContext, JobTransaction, enqueue_async

REENRICH_STALE_ALBUMS = "REENRICH_STALE_ALBUMS"
# Scheduled roots run after those a user starts (priority 1) and after the chains' steps (5-7).
SCHEDULED_PRIORITY = 10
log = logging.getLogger("pgjobs.enrichment")


@dataclass
class Batch:
    """What one run did: chains started, and albums whose unfinished chain it joined instead."""

    started: list[UUID] = field(default_factory=list)
    joined: list[UUID] = field(default_factory=list)


async def enqueue_stale_albums(conn: psycopg.AsyncConnection, *, older_than: timedelta, limit: int) -> Batch:
    """In the caller's transaction: a root ENRICH_ALBUM for each of the `limit` oldest due albums.

    Due: neither enriched nor queued here within `older_than` (or never, given a MusicBrainz id).
    An album already enriched is enqueued with force, so the chain refreshes it. An album whose
    chain is still unfinished joins it (the dedupe key) and stays due: the next run looks again."""
    batch = Batch()
    cur = await conn.execute(Q["stale_albums"], {"older_than": older_than, "limit": limit})
    for album_id, enriched_at in await cur.fetchall():
        kind, payload, options = album_root(album_id, force=enriched_at is not None, priority=SCHEDULED_PRIORITY,
                                            triggered_by="schedule")
        root = await enqueue_async(conn, kind, payload, **options)
        (batch.started if root.created else batch.joined).append(album_id)
    if batch.started:
        await conn.execute(Q["mark_reenrich_queued"], {"ids": batch.started})
    return batch


async def reenrich_stale_albums(ctx: JobContext) -> Complete:
    """The kind's handler: nothing to do before the transaction, the batch inside it."""
    env: Env = ctx.state
    older_than = timedelta(days=env.settings.reenrich_after_days)

    async def write(tx: JobTransaction) -> None:
        batch = await enqueue_stale_albums(tx.conn, older_than=older_than, limit=env.settings.reenrich_batch)
        log.info("%s job %s: started %d album chains, %d already running", REENRICH_STALE_ALBUMS, tx.job.id,
                 len(batch.started), len(batch.joined))

    return Complete(write)
