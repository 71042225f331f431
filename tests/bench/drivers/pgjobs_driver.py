"""Bench driver for pgjobs: runs one workload in-process against the queue's Python API.

Run by the harness with the project's interpreter and PYTHONPATH=repo root. Uses exactly what an
application uses: `enqueue_many` on a sync connection, a `Worker` over an autocommit pool (as
`pgjobs worker` builds it), handlers that return `Complete(rows=..., write=...)` so the audit row
and the children commit in the job's completion transaction. (Named *_driver so that, run as a script,
it does not shadow the `pgjobs` package.)

Workloads: drain (bulk enqueue N, then drain them), audited, fanout, wake, procs (K worker
processes, each a copy of this script in `_child` mode, started together on a GO line).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import psycopg

from pgjobs import jsontext, migrations
from pgjobs.queue import (Complete, CopyInto, JobSpec, RateLimits, Registry, Worker, WorkerHooks, enqueue_async,
                          enqueue_many)
from protocol import (
    DRAIN_KINDS, FANOUT_CHILDREN, LOG_COPY, LOG_COPY_TYPES, Args, Stopwatch, drain_result, emit, fanout_roots,
    log_values, parse_args, spacing,
)

try:  # the pool exactly as the CLI opens it; a plain autocommit pool if that helper moves
    from pgjobs.database import open_pool
except ImportError:  # pragma: no cover
    from psycopg_pool import AsyncConnectionPool

    async def open_pool(dsn: str, *, max_size: int = 10, name: str = "pgjobs") -> AsyncConnectionPool:
        pool = AsyncConnectionPool(dsn, min_size=2, max_size=max_size, open=False, kwargs={"autocommit": True})
        await pool.open(wait=True)
        return pool

AUDIT = CopyInto(LOG_COPY, LOG_COPY_TYPES)
WORKLOADS = ("drain", "audited", "fanout", "wake", "procs", "_child")
DEFAULT_CONCURRENCY = 100


class Bench:
    """Handlers for every bench kind, plus what they observed (ids run, wake-up times)."""

    def __init__(self) -> None:
        self.executed: list[int] = []
        self.started_at: dict[int, float] = {}  # wake-up: seq -> perf_counter at handler start
        self.last_finished = 0.0  # time.time() when the worker last wrote an outcome
        self.registry = Registry()
        self.registry.register("noop", self.noop)
        self.registry.register("audited", self.audited)
        self.registry.register("fan.root", self.fan_root)
        self.registry.register("fan.child", self.fan_child)
        self.registry.register("wake", self.wake)

    async def noop(self, ctx) -> None:
        self.executed.append(ctx.job.id)

    async def audited(self, ctx) -> Complete:
        return self._logged(ctx)

    async def fan_root(self, ctx) -> Complete:
        outcome = self._logged(ctx)
        seq = ctx.job.payload.get("seq", 0)

        async def write(tx) -> None:
            # Runs inside the completion transaction: children, audit row and state change commit
            # together. enqueue_child_later batches with the other jobs of the same group commit
            # (one COPY of children), still fenced by each job's lease.
            for c in range(FANOUT_CHILDREN):
                tx.enqueue_child_later("fan.child", {"seq": seq * 10 + c + 1})

        outcome.write = write
        return outcome

    async def fan_child(self, ctx) -> Complete:
        return self._logged(ctx)

    async def wake(self, ctx) -> None:
        self.started_at[ctx.job.payload["seq"]] = time.perf_counter()
        self.executed.append(ctx.job.id)

    def _logged(self, ctx) -> Complete:
        """The audit row rides on the outcome (`rows`): the completer COPYs it in the job's
        completion transaction, with the group's other rows."""
        started = time.perf_counter()
        job, seq = ctx.job, ctx.job.payload.get("seq", 0)
        self.executed.append(job.id)
        duration_ms = int((time.perf_counter() - started) * 1000)
        return Complete(rows=[(AUDIT, log_values(job.id, None if job.is_root else job.root_id, seq, duration_ms,
                                                 attempt=job.attempt, encode=jsontext.dumps))])


def reset(dsn: str) -> None:
    """Each run starts from empty tables (the harness verifies the previous run before this)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE pgjobs.jobs, bench_enrichment_log")


def enqueue_bulk(dsn: str, kind: str, n: int, queue: str = "default") -> Stopwatch:
    """One transaction, the public bulk API; JobSpec construction is part of what is timed."""
    with psycopg.connect(dsn) as conn:
        with Stopwatch() as watch:
            enqueue_many(conn, (JobSpec(kind=kind, queue=queue, payload={"seq": i}) for i in range(n)))
            conn.commit()
    return watch


async def run_burst(bench: Bench, pool, dsn: str, concurrency: int, queue: str = "default",
                    workers: list | None = None) -> Stopwatch:
    def finished(item) -> None:
        bench.last_finished = time.time()

    worker = Worker(pool, bench.registry, conninfo=dsn, limits=RateLimits(pool, {}), queues=[queue],
                    concurrency=concurrency, burst=True, hooks=WorkerHooks(finished=finished))
    if workers is not None:  # the horizon driver reads the worker's claim floors afterwards
        workers.append(worker)
    with Stopwatch() as watch:
        await worker.run()
    return watch


async def drain_like(args: Args, kind: str) -> dict:
    """Warm up on a small batch of the same kind, reset, then time enqueue and drain of N."""
    concurrency = args.setting("concurrency", DEFAULT_CONCURRENCY)
    bench = Bench()
    pool = await open_pool(args.dsn, max_size=4)
    try:
        roots = fanout_roots(args.n) if kind == "fan.root" else args.n
        reset(args.dsn)
        enqueue_bulk(args.dsn, kind, min(args.warmup, roots))
        await run_burst(bench, pool, args.dsn, concurrency)
        reset(args.dsn)
        bench.executed.clear()
        enq = enqueue_bulk(args.dsn, kind, roots)
        watch = await run_burst(bench, pool, args.dsn, concurrency)
    finally:
        await pool.close()
    return drain_result(kind, roots, watch, enq, bench.executed, {"concurrency": concurrency})


async def wake(args: Args) -> dict:
    """Idle worker; single enqueues spaced 10-20 ms on another connection of the same process."""
    concurrency = args.setting("concurrency", DEFAULT_CONCURRENCY)
    bench = Bench()
    reset(args.dsn)
    pool = await open_pool(args.dsn, max_size=4)
    worker = Worker(pool, bench.registry, conninfo=args.dsn, limits=RateLimits(pool, {}),
                    concurrency=concurrency)
    task = asyncio.create_task(worker.run())
    sent: dict[int, float] = {}
    try:
        await asyncio.wait_for(worker.listener.connected.wait(), 10)
        await asyncio.sleep(0.5)  # let the first poll pass: the worker is idle when we start
        total = args.warmup + args.samples
        async with await psycopg.AsyncConnection.connect(args.dsn, autocommit=True) as conn:
            for seq in range(total):
                sent[seq] = time.perf_counter()
                await enqueue_async(conn, "wake", {"seq": seq})
                await asyncio.sleep(spacing(args))
        deadline = time.monotonic() + 10
        while len(bench.started_at) < total and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    finally:
        worker.stop()
        await task
        await pool.close()
    latencies = [(bench.started_at[s] - sent[s]) * 1000 for s in range(args.warmup, total) if s in bench.started_at]
    return {"n": total, "latencies_ms": latencies, "executed": bench.executed,
            "setting": {"concurrency": concurrency}}


def procs(args: Args) -> dict:
    """K worker processes drain N jobs; time from GO (after each warmed up) to the last one done."""
    k, concurrency = args.setting("procs", 1), args.setting("concurrency", DEFAULT_CONCURRENCY)
    reset(args.dsn)
    for i in range(k):  # each child warms up on its own queue, so none of them goes cold
        enqueue_bulk(args.dsn, "noop", args.warmup, queue=f"warmup-{i}")
    cmd = [sys.executable, os.path.abspath(__file__), "_child", "--dsn", args.dsn, "--n", "0",
           "--set", f"concurrency={concurrency}"]
    children = [subprocess.Popen(cmd + ["--set", f"index={i}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True) for i in range(k)]
    try:
        for child in children:
            if child.stdout.readline().strip() != "READY":
                raise RuntimeError("a worker process died while warming up")
        reset(args.dsn)
        enq = enqueue_bulk(args.dsn, "noop", args.n)
        start = time.time()
        for child in children:
            child.stdin.write("GO\n")
            child.stdin.flush()
        reports = [json.loads(child.stdout.readline()) for child in children]
    finally:
        for child in children:
            child.stdin.close()
            if child.wait(timeout=120) != 0:
                raise RuntimeError(f"worker process exited with {child.returncode}")
    # Measured to the last completion written, not to the last process exit: a burst worker that
    # runs out of work while others still hold jobs sleeps up to a poll interval before it exits.
    seconds = max(r["end"] for r in reports) - start
    return {"n": args.n, "seconds": seconds, "rate": args.n / seconds,
            "seconds_to_exit": max(r["exit"] for r in reports) - start,
            "cpu_seconds": sum(r["cpu_seconds"] for r in reports),
            "enqueue_seconds": enq.seconds, "enqueue_rate": args.n / enq.seconds,
            "per_process": [len(r["executed"]) for r in reports],
            "executed": [job_id for r in reports for job_id in r["executed"]],
            "setting": {"procs": k, "concurrency": concurrency}}


async def child(args: Args) -> None:
    concurrency = args.setting("concurrency", DEFAULT_CONCURRENCY)
    bench = Bench()
    pool = await open_pool(args.dsn, max_size=4)
    try:
        await run_burst(bench, pool, args.dsn, concurrency, queue=f"warmup-{args.setting('index', 0)}")
        bench.executed.clear()
        print("READY", flush=True)
        if (await asyncio.to_thread(sys.stdin.readline)).strip() != "GO":
            return
        watch = await run_burst(bench, pool, args.dsn, concurrency)
        print(json.dumps({"end": bench.last_finished, "exit": time.time(), "cpu_seconds": watch.cpu_seconds,
                          "executed": bench.executed}), flush=True)
    finally:
        await pool.close()


def main() -> None:
    args = parse_args(WORKLOADS)
    if args.workload == "_child":
        asyncio.run(child(args))
        return
    migrations.migrate(args.dsn)  # the harness gives us a fresh database; a migrated one is a no-op
    if args.workload == "procs":
        emit(procs(args))
    elif args.workload == "wake":
        emit(asyncio.run(wake(args)))
    else:
        emit(asyncio.run(drain_like(args, DRAIN_KINDS[args.workload])))


if __name__ == "__main__":
    main()
