"""Bench driver for procrastinate 3.10 (run with .bench/venv's interpreter; our code, none of theirs).

procrastinate as documented: PsycopgConnector, schema applied by its SchemaManager, tasks
enqueued with `batch_defer_async` (one insert for the batch), an async worker with LISTEN/NOTIFY
on, `wait=False` so it returns once the queue is empty (its burst mode), concurrency as the knob.
Jobs are kept (`delete_jobs="never"`, the default) so the harness can verify them. Audited tasks
insert the audit row from the task through the app's own connector: procrastinate finishes the
job in a separate statement, so that is the closest equivalent to pgjobs' completion transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from procrastinate import App, JobContext, PsycopgConnector

from protocol import (
    DRAIN_KINDS, FANOUT_CHILDREN, LOG_COLUMNS, Args, Stopwatch, drain_result, emit, fanout_roots, log_values,
    parse_args, spacing,
)

WORKLOADS = ("drain", "audited", "fanout", "wake")
DEFAULT_CONCURRENCY = 10
LOG_INSERT_NAMED = (
    f"INSERT INTO bench_enrichment_log ({', '.join(LOG_COLUMNS)}) "
    f"VALUES ({', '.join(f'%({c})s' for c in LOG_COLUMNS)})"
)


class Bench:
    def __init__(self, dsn: str) -> None:
        self.executed: list[int] = []
        self.started_at: dict[int, float] = {}
        self.app = App(connector=PsycopgConnector(conninfo=dsn))
        app = self.app

        @app.task(name="noop", pass_context=True)
        async def noop(context: JobContext, seq: int) -> None:
            self.executed.append(context.job.id)

        @app.task(name="audited", pass_context=True)
        async def audited(context: JobContext, seq: int) -> None:
            await self._log(context, seq, root_id=None)
            self.executed.append(context.job.id)

        @app.task(name="fan.root", pass_context=True)
        async def fan_root(context: JobContext, seq: int) -> None:
            await self._log(context, seq, root_id=None)
            await self.tasks["fan.child"].batch_defer_async(
                *({"seq": seq * 10 + c + 1, "root": context.job.id} for c in range(FANOUT_CHILDREN))
            )
            self.executed.append(context.job.id)

        @app.task(name="fan.child", pass_context=True)
        async def fan_child(context: JobContext, seq: int, root: int) -> None:
            await self._log(context, seq, root_id=root)
            self.executed.append(context.job.id)

        @app.task(name="wake", pass_context=True)
        async def wake(context: JobContext, seq: int) -> None:
            self.started_at[seq] = time.perf_counter()
            self.executed.append(context.job.id)

        self.tasks = {"noop": noop, "audited": audited, "fan.root": fan_root, "fan.child": fan_child,
                      "wake": wake}

    async def _log(self, context: JobContext, seq: int, root_id: int | None) -> None:
        started = time.perf_counter()
        values = log_values(context.job.id, root_id, seq, int((time.perf_counter() - started) * 1000),
                            encode=None)
        await self.app.connector.execute_query_async(LOG_INSERT_NAMED, **dict(zip(LOG_COLUMNS, values)))

    async def reset(self) -> None:
        exists = await self.app.connector.execute_query_one_async(
            "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS ok")
        if not exists["ok"]:
            await self.app.schema_manager.apply_schema_async()
        await self.app.connector.execute_query_async("TRUNCATE procrastinate_jobs, bench_enrichment_log CASCADE")

    async def enqueue_bulk(self, kind: str, n: int) -> Stopwatch:
        with Stopwatch() as watch:
            await self.tasks[kind].batch_defer_async(*({"seq": i} for i in range(n)))
        return watch

    async def run_burst(self, concurrency: int) -> Stopwatch:
        with Stopwatch() as watch:
            await self.app.run_worker_async(wait=False, concurrency=concurrency, install_signal_handlers=False,
                                            listen_notify=True)
        return watch


async def drain_like(args: Args, kind: str) -> dict:
    concurrency = args.setting("concurrency", DEFAULT_CONCURRENCY)
    roots = fanout_roots(args.n) if kind == "fan.root" else args.n
    bench = Bench(args.dsn)
    async with bench.app.open_async():
        await bench.reset()
        await bench.enqueue_bulk(kind, min(args.warmup, roots))
        await bench.run_burst(concurrency)
        await bench.reset()
        bench.executed.clear()
        enq = await bench.enqueue_bulk(kind, roots)
        watch = await bench.run_burst(concurrency)
    return drain_result(kind, roots, watch, enq, bench.executed, {"concurrency": concurrency})


async def wake(args: Args) -> dict:
    concurrency = args.setting("concurrency", DEFAULT_CONCURRENCY)
    bench = Bench(args.dsn)
    total = args.warmup + args.samples
    sent: dict[int, float] = {}
    async with bench.app.open_async():
        await bench.reset()
        task = asyncio.create_task(bench.app.run_worker_async(
            wait=True, concurrency=concurrency, install_signal_handlers=False, listen_notify=True))
        try:
            await asyncio.sleep(1.0)  # let the worker LISTEN and go idle
            for seq in range(total):
                sent[seq] = time.perf_counter()
                await bench.tasks["wake"].defer_async(seq=seq)
                await asyncio.sleep(spacing(args))
            deadline = time.monotonic() + 10
            while len(bench.started_at) < total and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        finally:
            task.cancel()  # procrastinate 3 stops its worker gracefully on cancellation
            with contextlib.suppress(asyncio.CancelledError):
                await task
    latencies = [(bench.started_at[s] - sent[s]) * 1000 for s in range(args.warmup, total) if s in bench.started_at]
    return {"n": total, "latencies_ms": latencies, "executed": bench.executed,
            "setting": {"concurrency": concurrency}}


def main() -> None:
    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    args = parse_args(WORKLOADS)
    if args.workload == "wake":
        emit(asyncio.run(wake(args)))
    else:
        emit(asyncio.run(drain_like(args, DRAIN_KINDS[args.workload])))


if __name__ == "__main__":
    main()
