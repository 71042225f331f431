"""Bench driver for pgjobs' soak (benchkit.soak): N no-op jobs through one worker with retention on.

`python pgjobs_soak_driver.py soak --dsn URL --n 1000000 [--set concurrency=2000] [--set keep=5] [--set interval=1] [--set batch=1000]`

A feeder enqueues in chunks through the public bulk API (`enqueue_many_async`) whenever fewer than
BACKLOG jobs wait, so the queue is fed for the whole run instead of holding a million rows at the
start; one Worker (as `pgjobs worker` builds it) drains them with a Retention keeping `keep`
seconds of finished families (a pass every `interval` s, 1), so retention deletes as the run goes. Reported: the
jobs/s over each tenth of the completions (commits counted by the worker's `committed` hook,
timed from the first one), the
jobs table's heap and index sizes sampled every second (at most SAMPLES kept, evenly), the
handlers' payload seqs (the harness checks each of 0..N-1 ran once), and at the end how many jobs
are left unfinished and how many retention pruned.
"""

from __future__ import annotations

import asyncio
import time

import psycopg

from pgjobs import migrations
from pgjobs.queue import JobSpec, RateLimits, Registry, Worker, WorkerHooks, enqueue_many_async
from pgjobs.queue.retention import Retention
from pgjobs_driver import open_pool, reset
from protocol import emit, parse_args

CHUNK = 20_000
BACKLOG = 40_000
SAMPLES = 40
# pgjobs.jobs is partitioned (jobs_live, and jobs_finished by day: queue migrations 0011, 0012):
# sizes are the sums over its leaf partitions.
SIZES = """SELECT sum(pg_relation_size(t.relid))::bigint, sum(pg_indexes_size(t.relid))::bigint,
                  sum(s.n_live_tup)::bigint, (SELECT count(*) FROM pgjobs.jobs_live WHERE state = 'queued')
           FROM pg_partition_tree('pgjobs.jobs') t JOIN pg_stat_user_tables s ON s.relid = t.relid
           WHERE t.isleaf"""


async def soak(dsn: str, n: int, concurrency: int, keep: float, interval: float = 1.0, batch: int = 0) -> dict:
    reset(dsn)
    seqs: list[int] = []
    done = {"n": 0}
    tenths: list[float] = []
    first: list[float] = []
    registry = Registry()

    async def handler(ctx) -> None:
        seqs.append(ctx.job.payload["seq"])

    registry.register("soak", handler)
    pool = await open_pool(dsn, max_size=6)
    worker: Worker | None = None

    def committed(count: int, seconds: float) -> None:
        if not done["n"]:
            first.append(time.perf_counter())  # tenths are timed from the first commit: no start-up in them
        done["n"] += count
        while len(tenths) < 10 and done["n"] >= n * (len(tenths) + 1) / 10:
            tenths.append(time.perf_counter())
        if done["n"] >= n:
            worker.stop()

    retention = Retention(keep / 86400, interval=interval, **({"batch": batch} if batch else {}))
    worker = Worker(pool, registry, conninfo=dsn, limits=RateLimits(pool, {}), queues=["default"],
                    concurrency=concurrency, retention=retention, hooks=WorkerHooks(committed=committed))
    samples: list[dict] = []
    enqueued = {"n": 0}

    async def feed() -> None:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            while enqueued["n"] < n:
                if enqueued["n"] - done["n"] < BACKLOG:
                    count = min(CHUNK, n - enqueued["n"])
                    start = enqueued["n"]
                    await enqueue_many_async(conn, (JobSpec(kind="soak", payload={"seq": start + i})
                                                    for i in range(count)))
                    await conn.commit()
                    enqueued["n"] += count
                else:
                    await asyncio.sleep(0.02)

    async def sample(started: float) -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            while True:
                heap, indexes, live, queued = await (await conn.execute(SIZES)).fetchone()
                samples.append({"t": round(time.perf_counter() - started, 2), "done": done["n"], "heap": heap,
                                "indexes": indexes, "live": live, "queued": queued})
                await asyncio.sleep(1.0)

    started = time.perf_counter()
    feeder = asyncio.create_task(feed())
    sampler = asyncio.create_task(sample(started))
    try:
        await worker.run()
        await feeder
    finally:
        sampler.cancel()
        feeder.cancel()
        await pool.close()
    seconds = time.perf_counter() - started
    with psycopg.connect(dsn, autocommit=True) as conn:
        left, total = conn.execute("SELECT count(*) FILTER (WHERE state <> 'succeeded'), count(*) FROM pgjobs.jobs"
                                   ).fetchone()
        heap, indexes, live, queued = conn.execute(SIZES).fetchone()
    samples.append({"t": round(seconds, 2), "done": done["n"], "heap": heap, "indexes": indexes, "live": live,
                    "queued": queued})
    step = max(1, len(samples) // SAMPLES)
    kept = samples[::step] if samples[-1] in samples[::step] else samples[::step] + samples[-1:]
    edges = first[:1] + tenths
    rates = [n / 10 / (b - a) for a, b in zip(edges, edges[1:])]
    return {"n": n, "seconds": seconds, "rate": n / seconds, "tenths": rates, "samples": kept,
            "left_unfinished": left, "pruned": n - total, "keep_seconds": keep,
            "setting": {"concurrency": concurrency, "keep": keep}, "executed": seqs}


def main() -> None:
    args = parse_args(("soak",))
    migrations.migrate(args.dsn)
    keep = float(args.settings.get("keep", 5))
    interval = float(args.settings.get("interval", 1.0))
    emit(asyncio.run(soak(args.dsn, args.n, args.setting("concurrency", 2000), keep, interval,
                          args.setting("batch", 0))))


if __name__ == "__main__":
    main()
