"""Helpers for the in-process worker tests: run a Worker with test hooks, wait on its signals."""

import asyncio
from contextlib import asynccontextmanager

import psycopg

from pgjobs.database import open_pool
from pgjobs.queue import RateLimits, Worker, WorkerHooks, enqueue


@asynccontextmanager
async def running_worker(dsn, registry, **options):
    """Start a Worker; yield (worker, finished queue); stop it and prove it stopped."""
    pool = await open_pool(dsn, max_size=4)
    finished: asyncio.Queue = asyncio.Queue()
    claimed: asyncio.Queue = asyncio.Queue()
    idle: asyncio.Queue = asyncio.Queue()
    hooks = WorkerHooks(claimed=lambda jobs: [claimed.put_nowait(j) for j in jobs], finished=finished.put_nowait,
                        idle=lambda: idle.put_nowait(None))
    worker = Worker(pool, registry, conninfo=dsn, limits=RateLimits(pool, {}), hooks=hooks, **options)
    worker.claimed_queue = claimed
    worker.idle_queue = idle
    task = asyncio.create_task(worker.run())
    try:
        yield worker, finished
    finally:
        worker.stop(now=True)
        await asyncio.wait_for(task, 10)
        await pool.close()


async def take(queue: asyncio.Queue, n: int, timeout: float = 10.0) -> list:
    return [await asyncio.wait_for(queue.get(), timeout) for _ in range(n)]


def _enqueue(dsn, kind, payload=None, **options):
    with psycopg.connect(dsn) as conn:
        return enqueue(conn, kind, payload or {}, **options).id


def drain(queue: asyncio.Queue) -> None:
    while not queue.empty():
        queue.get_nowait()


def _worker_of(dsn, job_id):
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT worker_id FROM pgjobs.jobs WHERE id = %s", (job_id,)).fetchone()[0]


def _job(dsn, job_id):
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT state::text, attempt, snoozes, last_error FROM pgjobs.jobs WHERE id = %s",
                            (job_id,)).fetchone()
