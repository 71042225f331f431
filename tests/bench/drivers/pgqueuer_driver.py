"""Bench driver for pgqueuer 1.6 (run with .bench/venv's interpreter; our code, no pgqueuer code copied).

pgqueuer at its best: the asyncpg driver (its LISTEN does not stall queries the way one psycopg
connection does, see DESIGN.md pitfalls), durable tables (its default), `QueueManager.run` in
drain mode with unlimited in-flight tasks, the batch size as the knob. Jobs are enqueued with
its list form of `Queries.enqueue` (one UNNEST insert). Audited jobs insert the audit row from
the handler on a separate asyncpg pool: pgqueuer has no completion transaction to join, so that
is the closest equivalent. Fan-out roots enqueue their 5 children from the handler.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import asyncpg
from pgqueuer import AsyncpgDriver, Job, QueueManager, Queries
from pgqueuer.types import QueueExecutionMode

from protocol import (
    DRAIN_KINDS, FANOUT_CHILDREN, LOG_INSERT_DOLLAR, Args, Stopwatch, drain_result, emit, fanout_roots, log_values,
    parse_args, spacing,
)

WORKLOADS = ("drain", "audited", "fanout", "wake")
DEFAULT_BATCH = 100
TABLES = "pgqueuer, pgqueuer_log, pgqueuer_statistics, bench_enrichment_log"


class Bench:
    def __init__(self, log_pool: asyncpg.Pool | None, enqueue: Queries) -> None:
        self.executed: list[int] = []
        self.started_at: dict[int, float] = {}
        self.log_pool = log_pool
        self.enqueue = enqueue  # children are enqueued on a connection of their own
        self.expected = 0
        self.done = asyncio.Event()

    def register(self, qm: QueueManager) -> None:
        @qm.entrypoint("noop")
        async def noop(job: Job) -> None:
            self._ran(job)

        @qm.entrypoint("audited")
        async def audited(job: Job) -> None:
            await self._log(job, root_id=None)
            self._ran(job)

        @qm.entrypoint("fan.root")
        async def fan_root(job: Job) -> None:
            seq = json.loads(job.payload)["seq"]
            await self._log(job, root_id=None)
            await self.enqueue.enqueue(
                ["fan.child"] * FANOUT_CHILDREN,
                [json.dumps({"seq": seq * 10 + c + 1, "root": job.id}).encode() for c in range(FANOUT_CHILDREN)],
                [0] * FANOUT_CHILDREN,
            )
            self._ran(job)

        @qm.entrypoint("fan.child")
        async def fan_child(job: Job) -> None:
            await self._log(job, root_id=json.loads(job.payload)["root"])
            self._ran(job)

        @qm.entrypoint("wake")
        async def wake(job: Job) -> None:
            self.started_at[json.loads(job.payload)["seq"]] = time.perf_counter()
            self._ran(job)

    def _ran(self, job: Job) -> None:
        self.executed.append(job.id)
        if self.expected and len(self.executed) >= self.expected:
            self.done.set()

    async def _log(self, job: Job, root_id: int | None) -> None:
        started = time.perf_counter()
        seq = json.loads(job.payload)["seq"]
        await self.log_pool.execute(
            LOG_INSERT_DOLLAR,
            *log_values(job.id, root_id, seq, int((time.perf_counter() - started) * 1000), uuid_type=True)
        )


async def connect(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn)


async def install(dsn: str) -> None:
    conn = await connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        if not await queries.schema_is_installed():
            await queries.install()
        await conn.execute(f"TRUNCATE {TABLES}")
    finally:
        await conn.close()


async def enqueue_bulk(dsn: str, kind: str, n: int) -> Stopwatch:
    conn = await connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        with Stopwatch() as watch:
            await queries.enqueue([kind] * n, [json.dumps({"seq": i}).encode() for i in range(n)], [0] * n)
    finally:
        await conn.close()
    return watch


async def run_drain(dsn: str, bench: Bench, batch: int) -> Stopwatch:
    conn = await connect(dsn)
    try:
        qm = QueueManager(Queries(AsyncpgDriver(conn)))
        bench.register(qm)
        with Stopwatch() as watch:
            await qm.run(batch_size=batch, mode=QueueExecutionMode.drain, dequeue_timeout=timedelta(seconds=1))
    finally:
        await conn.close()
    return watch


async def drain_like(args: Args, kind: str) -> dict:
    batch = args.setting("batch", DEFAULT_BATCH)
    roots = fanout_roots(args.n) if kind == "fan.root" else args.n
    # 10 connections for the audit inserts: the best of 4/10/20 tried on this machine.
    log_pool = await asyncpg.create_pool(args.dsn, min_size=10, max_size=10)
    side = await connect(args.dsn)
    try:
        bench = Bench(log_pool, Queries(AsyncpgDriver(side)))
        await install(args.dsn)
        await enqueue_bulk(args.dsn, kind, min(args.warmup, roots))
        await run_drain(args.dsn, bench, batch)
        await install(args.dsn)  # truncates the warm-up
        bench.executed.clear()
        enq = await enqueue_bulk(args.dsn, kind, roots)
        watch = await run_drain(args.dsn, bench, batch)
    finally:
        await side.close()
        await log_pool.close()
    return drain_result(kind, roots, watch, enq, bench.executed, {"batch": batch})


async def wake(args: Args) -> dict:
    batch = args.setting("batch", DEFAULT_BATCH)
    await install(args.dsn)
    worker_conn, enqueue_conn = await connect(args.dsn), await connect(args.dsn)
    bench = Bench(None, Queries(AsyncpgDriver(enqueue_conn)))
    total = args.warmup + args.samples
    bench.expected = total
    qm = QueueManager(Queries(AsyncpgDriver(worker_conn)))
    bench.register(qm)
    task = asyncio.create_task(qm.run(batch_size=batch))
    sent: dict[int, float] = {}
    try:
        await asyncio.sleep(1.0)  # let the manager LISTEN and go idle
        for seq in range(total):
            sent[seq] = time.perf_counter()
            await bench.enqueue.enqueue("wake", json.dumps({"seq": seq}).encode())
            await asyncio.sleep(spacing(args))
        try:
            await asyncio.wait_for(bench.done.wait(), 10)
        except TimeoutError:
            pass
    finally:
        qm.shutdown.set()
        await task
        await worker_conn.close()
        await enqueue_conn.close()
    latencies = [(bench.started_at[s] - sent[s]) * 1000 for s in range(args.warmup, total) if s in bench.started_at]
    return {"n": total, "latencies_ms": latencies, "executed": bench.executed, "setting": {"batch": batch}}


def main() -> None:
    args = parse_args(WORKLOADS)
    if args.workload == "wake":
        emit(asyncio.run(wake(args)))
    else:
        emit(asyncio.run(drain_like(args, DRAIN_KINDS[args.workload])))


if __name__ == "__main__":
    main()
