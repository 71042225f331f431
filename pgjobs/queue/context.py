"""What a handler gets: JobContext while it runs, JobTransaction inside its completion transaction.

Children exist only through JobTransaction.enqueue_child: the insert takes parent_id and root_id
from the parent's row in the same transaction that records the parent's outcome, so a child is
never without its root, and a parent fenced out of its lease spawns nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import psycopg
from psycopg_pool import AsyncConnectionPool

from pgjobs.queue.errors import QueueError
from pgjobs.queue.jobs import Enqueued, Job, JobSpec, Q

if TYPE_CHECKING:
    from pgjobs.queue.limits import RateLimits


@dataclass(frozen=True)
class JobContext:
    job: Job
    payload: Any  # the kind's payload model instance, or the raw dict when it has none
    pool: AsyncConnectionPool  # for reads before the completion transaction
    limits: RateLimits
    worker_id: str


class JobTransaction:
    """The completion transaction of one job attempt (a savepoint within a group commit)."""

    def __init__(self, conn: psycopg.AsyncConnection, job: Job) -> None:
        self.conn = conn
        self.job = job

    async def execute(self, query: str, params: Mapping[str, Any] | tuple | None = None) -> psycopg.AsyncCursor:
        return await self.conn.execute(query, params)

    async def enqueue_child(self, kind: str, payload: Mapping[str, Any] | None = None, **options: Any) -> Enqueued:
        spec = JobSpec(kind=kind, payload=payload if payload is not None else {}, **options)
        params = spec.params() | {"parent_id": self.job.id}
        for _ in range(5):
            cur = await self.conn.execute(Q["enqueue_child"], params)
            rows = await cur.fetchall()
            if rows:
                job_id, root_id, created, _ = rows[0]
                return Enqueued(job_id, root_id, created)
            exists = await (await self.conn.execute(Q["get_job"], {"id": self.job.id})).fetchone()
            if exists is None:
                raise QueueError(f"parent job {self.job.id} does not exist")
        raise QueueError(f"could not settle dedupe key {spec.dedupe_key!r}")
