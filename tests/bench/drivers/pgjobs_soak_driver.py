"""Bench driver for pgjobs' soak (benchkit.soak): N no-op jobs through one worker with retention on.

`python pgjobs_soak_driver.py soak --dsn URL --n 1000000 [--set concurrency=2000] [--set keep=5] [--set interval=1] [--set batch=1000]`

A feeder enqueues in chunks through the public bulk API (`enqueue_many_async`) whenever fewer than
BACKLOG jobs wait, so the queue is fed for the whole run instead of holding a million rows at the
start; one Worker (as `pgjobs worker` builds it) drains them with a Retention keeping `keep`
seconds of finished families (a pass every `interval` s, 1), so retention deletes as the run goes.
The N measured jobs start once retention is deleting: until its first deletion the feeder sends
`soak-warmup` jobs (the same no-op), and the measured window opens at the commit that finishes the
last of them. Without the warm-up the first tenth ran before anything was old enough to prune (keep
5 s; a tenth lasts 2-5 s here), so the target compared a drain without retention to one with it;
the warm-up's own rate is reported beside, so retention's cost stays in view. Reported: the jobs/s
over each tenth of the measured completions (commits counted by the worker's `committed` hook), the
jobs table's heap and index sizes sampled every second (at most SAMPLES kept, evenly; `done` counts
measured jobs), the handlers' payload seqs (the harness checks each of 0..N-1 ran once), and at the
end how many jobs are left unfinished and how many retention pruned.
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


class WatchedRetention(Retention):
    """Retention that calls `on_deleted` after each pass that deleted a job."""

    def __init__(self, *args, on_deleted, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._on_deleted = on_deleted

    async def tick(self, conn: psycopg.AsyncConnection) -> int:
        deleted = await super().tick(conn)
        if deleted:
            self._on_deleted()
        return deleted


async def soak(dsn: str, n: int, concurrency: int, keep: float, interval: float = 1.0, batch: int = 0) -> dict:
    reset(dsn)
    seqs: list[int] = []
    done = {"n": 0}
    # jobs: warm-up jobs fed (known once retention prunes); first: the first commit; pruning: retention's
    # first deletion (time, jobs done by then); end: the commit that finished the warm-up
    warmup = {"jobs": None, "first": None, "pruning": None, "end": None}
    tenths: list[float] = []
    registry = Registry()

    async def handler(ctx) -> None:
        seqs.append(ctx.job.payload["seq"])

    async def warmup_handler(ctx) -> None:
        pass

    registry.register("soak", handler)
    registry.register("soak-warmup", warmup_handler)
    pool = await open_pool(dsn, max_size=6)
    worker: Worker | None = None

    def committed(count: int, seconds: float) -> None:
        now = time.perf_counter()
        if not done["n"]:
            warmup["first"] = now  # the warm-up's rate is timed from the first commit: no start-up in it
        done["n"] += count
        w = warmup["jobs"]
        if w is None:
            return
        if warmup["end"] is None and done["n"] >= w:
            warmup["end"] = now  # the measured window opens (claims go by id: warm-up jobs finish first)
        while warmup["end"] is not None and len(tenths) < 10 and done["n"] >= w + n * (len(tenths) + 1) / 10:
            tenths.append(now)
        if done["n"] >= w + n:
            worker.stop()

    def deleted() -> None:
        if warmup["pruning"] is None:
            warmup["pruning"] = (time.perf_counter(), done["n"])

    retention = WatchedRetention(keep / 86400, interval=interval, on_deleted=deleted,
                                 **({"batch": batch} if batch else {}))
    worker = Worker(pool, registry, conninfo=dsn, limits=RateLimits(pool, {}), queues=["default"],
                    concurrency=concurrency, retention=retention, hooks=WorkerHooks(committed=committed))
    samples: list[dict] = []
    enqueued = {"n": 0}

    async def feed() -> None:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            while warmup["jobs"] is None or enqueued["n"] < warmup["jobs"] + n:
                if enqueued["n"] - done["n"] >= BACKLOG:
                    await asyncio.sleep(0.02)
                    continue
                if warmup["jobs"] is None and warmup["pruning"] is not None:
                    warmup["jobs"] = enqueued["n"]
                if warmup["jobs"] is None:
                    specs = [JobSpec(kind="soak-warmup") for _ in range(CHUNK)]
                else:
                    start = enqueued["n"] - warmup["jobs"]
                    specs = [JobSpec(kind="soak", payload={"seq": start + i}) for i in range(min(CHUNK, n - start))]
                await enqueue_many_async(conn, specs)
                await conn.commit()
                enqueued["n"] += len(specs)

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
    w = warmup["jobs"]
    seconds = tenths[-1] - warmup["end"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        left, total = conn.execute("SELECT count(*) FILTER (WHERE state <> 'succeeded'), count(*) FROM pgjobs.jobs"
                                   ).fetchone()
        heap, indexes, live, queued = conn.execute(SIZES).fetchone()
    samples.append({"t": round(time.perf_counter() - started, 2), "done": done["n"], "heap": heap,
                    "indexes": indexes, "live": live, "queued": queued})
    for s in samples:  # `done` counts the measured jobs (0 through the warm-up)
        s["done"] = max(0, s["done"] - w)
    step = max(1, len(samples) // SAMPLES)
    kept = samples[::step] if samples[-1] in samples[::step] else samples[::step] + samples[-1:]
    edges = [warmup["end"]] + tenths
    rates = [n / 10 / (b - a) for a, b in zip(edges, edges[1:])]
    pruned_at, done_then = warmup["pruning"]
    unpruned = pruned_at - warmup["first"]  # the drain before retention had anything to delete
    return {"n": n, "seconds": seconds, "rate": n / seconds, "tenths": rates, "samples": kept,
            "warmup": {"jobs": w, "before_pruning_seconds": unpruned,
                       "before_pruning_rate": done_then / unpruned if unpruned > 0 else None},
            "left_unfinished": left, "pruned": w + n - total, "keep_seconds": keep,
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
