"""The worker among apps: it claims only its registry's kinds, honours paused queues, and keeps its
row in pgjobs.workers (events and deadlines, not sleeps)."""

import asyncio
import os
import socket

import psycopg

from pgjobs.queue import Registry, default_registry
from workertools import _enqueue, _job, _worker_of, drain, running_worker, take


def _registry(*kinds: str) -> Registry:
    registry = default_registry()
    for kind in kinds:
        registry.register(kind, lambda ctx: None)
    return registry


def _sql(dsn, query, params=()):
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else None


async def test_rolling_deploy_every_new_kind_job_runs_on_the_worker_that_knows_it(fresh_dsn):
    """An old worker (no kind X) and a new one (with X) side by side: X jobs wait for the new one,
    none fails, and both share the kinds they have in common."""
    old_jobs = [_enqueue(fresh_dsn, "x_kind", {"n": n}) for n in range(30)]
    noops = [_enqueue(fresh_dsn, "noop") for _ in range(30)]
    async with running_worker(fresh_dsn, _registry(), worker_id="old", concurrency=4) as (old, old_done):
        await take(old_done, 30)  # the noops: all its registry can run
        await take(old.idle_queue, 1)  # … and nothing left for it: X jobs stay queued, untouched
        assert {_job(fresh_dsn, j)[:2] for j in old_jobs} == {("queued", 0)}
        async with running_worker(fresh_dsn, _registry("x_kind"), worker_id="new", concurrency=4) as (_, new_done):
            await take(new_done, 30)
            drain(old.idle_queue)
            # While both idle and offer hand-offs, new X jobs go to the new worker only.
            handed = [_enqueue(fresh_dsn, "x_kind", {"n": n}) for n in range(10)]
            await take(new_done, 10)
    for job_id in old_jobs + handed:
        assert _job(fresh_dsn, job_id)[:2] == ("succeeded", 1)
        assert _worker_of(fresh_dsn, job_id) == "new"
    assert {_worker_of(fresh_dsn, j) for j in noops} == {"old"}
    assert _sql(fresh_dsn, "SELECT count(*) FROM pgjobs.jobs WHERE state = 'failed'") == [(0,)]


async def test_a_paused_queue_keeps_its_jobs_queued_and_a_resume_notify_wakes_the_worker(fresh_dsn):
    _sql(fresh_dsn, "INSERT INTO pgjobs.queue_pauses (queue, paused_by) VALUES ('default', 'test')")
    before = _enqueue(fresh_dsn, "noop")
    other = _enqueue(fresh_dsn, "noop", queue="other")
    async with running_worker(fresh_dsn, default_registry(), queues=["default", "other"],
                              poll_interval=60) as (worker, finished):
        (item,) = await take(finished, 1)  # the other queue is not paused
        assert item.job.id == other
        await take(worker.idle_queue, 1)
        drain(worker.idle_queue)
        during = _enqueue(fresh_dsn, "noop")  # autocommit: not handed over either, while paused
        await take(worker.idle_queue, 1)  # its NOTIFY woke the worker, which skipped the paused queue
        assert {_job(fresh_dsn, j)[:2] for j in (before, during)} == {("queued", 0)}
        # A resume (what `pgjobs queues resume` does): delete the row, NOTIFY the queue's name. The
        # poll is a minute away, so only the notification can start these jobs this soon.
        _sql(fresh_dsn, "DELETE FROM pgjobs.queue_pauses WHERE queue = 'default';"
                        " SELECT pg_notify('pgjobs', 'default')")
        started = asyncio.get_running_loop().time()
        await take(finished, 2, timeout=5)
        assert asyncio.get_running_loop().time() - started < 1.0
    assert {_job(fresh_dsn, j)[:2] for j in (before, during)} == {("succeeded", 1)}


async def test_a_pause_lets_running_jobs_finish(fresh_dsn):
    release = asyncio.Event()
    registry = Registry()

    async def slow(ctx):
        await release.wait()

    registry.register("slow", slow)
    running = _enqueue(fresh_dsn, "slow")
    async with running_worker(fresh_dsn, registry, poll_interval=60) as (worker, finished):
        await take(worker.claimed_queue, 1)
        _sql(fresh_dsn, "INSERT INTO pgjobs.queue_pauses (queue) VALUES ('default')")
        queued = _enqueue(fresh_dsn, "slow")
        release.set()
        (item,) = await take(finished, 1)
        assert item.job.id == running and item.state == "succeeded"
        drain(worker.idle_queue)
        await take(worker.idle_queue, 1)  # the freed slot makes it claim again: nothing, paused
    assert _job(fresh_dsn, queued)[:2] == ("queued", 0)


async def test_a_worker_keeps_its_row_in_the_workers_table_while_it_runs(fresh_dsn):
    row = ("SELECT app, host, pid, queues, kinds, concurrency, heartbeat_at FROM pgjobs.workers"
           " WHERE worker_id = 'w-row'")
    async with running_worker(fresh_dsn, _registry("x_kind"), worker_id="w-row", app_name="shop",
                              queues=["default", "mail"], concurrency=3, lease_seconds=0.6) as (worker, _):
        async def registered():
            while not (rows := _sql(fresh_dsn, row)):
                await asyncio.sleep(0.02)
            return rows[0]

        first = await asyncio.wait_for(registered(), 5)
        assert first[:6] == ("shop", socket.gethostname(), os.getpid(), ["default", "mail"],
                             ["noop", "x_kind"], 3)

        async def heartbeat_moved():  # refreshed every lease/3 even though it holds no job
            while _sql(fresh_dsn, row)[0][6] == first[6]:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(heartbeat_moved(), 5)
    assert _sql(fresh_dsn, row) == []  # a clean stop removes it
