"""`pgjobs worker`: the daemon, and the periodic-job scheduler beside it. SIGTERM/SIGINT stop both
gracefully; a second signal hurries the worker; SIGUSR1 logs what each of its tasks awaits."""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import AsyncExitStack
from typing import List, Optional

import typer
from psycopg.conninfo import conninfo_to_dict

from pgjobs import __version__, database, logs, migrations, stacks
from pgjobs.app import App, WorkerResources
from pgjobs.errors import ConfigError
from pgjobs.cli.common import cli
from pgjobs.queue import RateLimits, Worker
from pgjobs.queue.retention import Retention
from pgjobs.queue.worker import new_worker_id
from pgjobs.queue.periodic import Scheduler
from pgjobs.settings import Settings

log = logging.getLogger("pgjobs.worker")


async def run_worker(app: App, settings: Settings, dsn: str, *, queues: list[str] | None = None,
                     concurrency: int | None = None, burst: bool = False,
                     burst_waits_for_scheduled: bool = False, metrics_port: int | None = None,
                     metrics_host: str = "127.0.0.1") -> int:
    """Run `app`'s kinds until stopped (or drained, with burst); the CLI's and the demo's worker.

    The app's periodic jobs are scheduled beside it: a long-running worker runs the scheduler until
    it stops; a burst worker takes the slots due when it starts (the catch-up rule), then drains."""
    worker_id = new_worker_id()
    timeouts = database.Timeouts.from_settings(settings)
    pool = await database.open_pool(dsn, max_size=4, application_name=worker_id, timeouts=timeouts)
    try:
        async with pool.connection() as conn:
            await migrations.check_migrated_async(conn, app.components)
        limits = RateLimits(pool, app.intervals(settings.rate_limit_intervals))
        async with app.running(WorkerResources(pool, limits, settings, dsn)) as state:
            worker = Worker(
                pool, app.registry(), conninfo=dsn, limits=limits, queues=queues or app.queues,
                concurrency=concurrency or settings.concurrency, lease_seconds=settings.lease_seconds,
                poll_interval=settings.poll_interval, shutdown_grace=settings.shutdown_grace_seconds, burst=burst,
                burst_waits_for_scheduled=burst_waits_for_scheduled, state=state,
                app_name=app.name, on_error=app.error_hooks, handoff=settings.handoff,
                retention=None if not settings.retention_days else Retention(
                    settings.retention_days, interval=settings.retention_interval, batch=settings.retention_batch,
                    vacuum_after=settings.retention_vacuum_after),
                live_vacuum_after=settings.live_vacuum_after,
                worker_id=worker_id, timeouts=timeouts,
            )
            if settings.otel:  # after the lifespan: an app may configure its TracerProvider there
                from pgjobs.tracing import instrument
                await instrument(worker)
            scheduler = Scheduler(pool, app.schedules())
            async with AsyncExitStack() as stack:
                if metrics_port is not None:
                    await _observe(stack, worker, app, pool, metrics_host, metrics_port)
                _log_start(worker, dsn, limits.intervals)
                if burst and scheduler.schedules:
                    await scheduler.sync()
                    await scheduler.run_due()
                code = await _serve(worker, None if burst else scheduler)
            log.info("worker stopped", extra={"worker_id": worker.worker_id, "exit_code": code})
            return code
    finally:
        await pool.close()


async def _observe(stack: AsyncExitStack, worker: Worker, app: App, pool, host: str, port: int) -> None:
    """Metrics (pgjobs.metrics), the depth sampler and the /metrics /healthz /readyz endpoint."""
    from pgjobs.health import HealthServer
    from pgjobs.metrics import WorkerMetrics, prom

    metrics = WorkerMetrics(worker)

    async def ready() -> None:
        async with pool.connection(timeout=2.0) as conn:
            await migrations.check_migrated_async(conn, app.components)

    server = HealthServer(metrics=lambda: (prom.generate_latest(metrics.registry), prom.CONTENT_TYPE_LATEST),
                          ready=ready, host=host, port=port)
    try:
        await server.start()
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    stack.push_async_callback(server.close)
    sampler = asyncio.create_task(metrics.sample_forever(), name="metrics-sampler")

    async def stop_sampler() -> None:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
    stack.push_async_callback(stop_sampler)
    bound_host, bound_port = server.address
    log.info("metrics on http://%s:%d/metrics (/healthz, /readyz)", bound_host, bound_port,
             extra={"metrics_host": bound_host, "metrics_port": bound_port})


def _log_start(worker: Worker, dsn: str, intervals: dict[str, float]) -> None:
    params = conninfo_to_dict(dsn)  # host and database only: never the password
    where = f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}/{params.get('dbname') or ''}"
    log.info("worker started", extra={
        "version": __version__, "worker_id": worker.worker_id, "app": worker.app_name, "database": where,
        "queues": ",".join(worker.queues), "kinds": ",".join(worker.kinds), "concurrency": worker.concurrency,
        "limits": ",".join(f"{name}={1 / seconds:g}/s" for name, seconds in sorted(intervals.items())),
        "tracing": "otel" if worker.executor.tracer is not None else "off"})


async def _serve(worker: Worker, scheduler: Scheduler | None) -> int:
    """Run until done, with SIGTERM/SIGINT asking for a graceful stop; 1 if the scheduler failed."""
    loop = asyncio.get_running_loop()
    signals = {"count": 0}

    def on_signal() -> None:
        signals["count"] += 1
        worker.stop(now=signals["count"] > 1)  # a second signal hands running jobs back now
        if scheduler is not None:
            scheduler.stop()

    def scheduler_ended(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("periodic scheduler failed; stopping the worker", exc_info=task.exception())
            worker.stop()  # gracefully: running jobs finish

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    stacks.install(loop)  # SIGUSR1: what each task awaits, for a worker that will not stop
    scheduling = None
    if scheduler is not None and scheduler.schedules:
        scheduling = asyncio.create_task(scheduler.run(), name="periodic")
        scheduling.add_done_callback(scheduler_ended)
    try:
        await worker.run()
    finally:
        if scheduling is not None:
            scheduler.stop()
            # A pass stuck on an unreachable database is cancelled: its transaction rolls back, so
            # the slot stays free for the next worker.
            _, late = await asyncio.wait([scheduling], timeout=5.0)
            for task in late:
                task.cancel()
            await asyncio.wait([scheduling])
    return 1 if scheduling is not None and not scheduling.cancelled() and scheduling.exception() else 0


def worker(
    ctx: typer.Context,
    queue: Optional[List[str]] = typer.Option(None, "--queue", "-q",
                                              help="queue to serve (repeatable; default: every queue of the app's kinds)"),
    concurrency: Optional[int] = typer.Option(None, min=1, help="jobs in flight (PGJOBS_CONCURRENCY)"),
    burst: bool = typer.Option(False, help="exit 0 once the queues have nothing runnable or running (periodic "
                                           "slots due at start are enqueued first)"),
    wait_scheduled: bool = typer.Option(False, "--wait-scheduled",
                                        help="with --burst: also wait for jobs scheduled later (retries, snoozes)"),
    metrics_port: Optional[int] = typer.Option(None, "--metrics-port", min=0, max=65535,
                                               help="serve /metrics, /healthz, /readyz on this port (0: any free "
                                                    "one; needs pgjobs[metrics])"),
    metrics_host: str = typer.Option("127.0.0.1", "--metrics-host", help="address the metrics endpoint binds"),
) -> None:
    """Run the app's jobs until stopped (or, with --burst, until the queues are drained)."""
    state = cli(ctx)
    settings = state.settings
    logs.configure(settings.log_format, settings.log_level)
    if metrics_port is not None:
        from pgjobs.metrics import require
        require()  # before connecting: a missing extra is a one-line usage error
    if settings.otel:
        from pgjobs.tracing import require as require_otel
        require_otel()
    code = asyncio.run(run_worker(state.app, settings, state.dsn(), queues=queue, concurrency=concurrency,
                                  burst=burst, burst_waits_for_scheduled=wait_scheduled,
                                  metrics_port=metrics_port, metrics_host=metrics_host))
    raise typer.Exit(code)
