"""The worker's metrics: the queue's depth is sampled by one worker at a time, and the per-job
counters add up (the HTTP side runs in tests/core/e2e/test_metrics_cli.py)."""

from __future__ import annotations

import prometheus_client as prom

from pgjobs.database import open_pool
from pgjobs.metrics import WorkerMetrics
from pgjobs.queue import RateLimits, Registry, Worker
from workertools import _enqueue


def _value(metrics: WorkerMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels or None)


async def test_one_worker_samples_the_depth_and_another_takes_over_when_it_goes(fresh_dsn):
    for n in range(3):
        _enqueue(fresh_dsn, "noop", {"n": n})
    _enqueue(fresh_dsn, "noop", queue="mail", delay=3600)  # scheduled for later
    pool = await open_pool(fresh_dsn, max_size=2)
    first, second = (WorkerMetrics(Worker(pool, Registry(), conninfo=fresh_dsn, limits=RateLimits(pool, {})))
                     for _ in range(2))
    try:
        held = await first._sample(None)
        assert held is not None and _value(first, "pgjobs_queue_sampler") == 1
        assert await second._sample(None) is None and _value(second, "pgjobs_queue_sampler") == 0
        assert _value(first, "pgjobs_queue_jobs", queue="default", state="queued") == 3
        assert _value(first, "pgjobs_queue_jobs", queue="mail", state="scheduled") == 1
        assert _value(first, "pgjobs_queue_oldest_runnable_seconds", queue="default") >= 0
        assert _value(second, "pgjobs_queue_jobs", queue="default", state="queued") is None  # not its job

        await held.close()  # the sampler's session ends (its worker died): the lock goes with it
        taken = await second._sample(None)
        assert taken is not None and _value(second, "pgjobs_queue_sampler") == 1
        assert _value(second, "pgjobs_queue_jobs", queue="default", state="queued") == 3
        await taken.close()
    finally:
        await pool.close()


def test_the_exposition_names_every_metric_the_docs_list(fresh_dsn):
    import asyncio

    async def text() -> str:
        pool = await open_pool(fresh_dsn, max_size=1)
        try:
            return prom.generate_latest(WorkerMetrics(Worker(pool, Registry(), conninfo=fresh_dsn,
                                                             limits=RateLimits(pool, {}))).registry).decode()
        finally:
            await pool.close()

    exposition = asyncio.run(text())
    for name in ("pgjobs_jobs_claimed", "pgjobs_jobs_finished", "pgjobs_attempt_duration_seconds",
                 "pgjobs_jobs_running", "pgjobs_rate_limiter_wait_seconds", "pgjobs_rate_limiter_slot_lag_seconds",
                 "pgjobs_lease_rescues",
                 "pgjobs_listener_reconnects", "pgjobs_group_commit_size", "pgjobs_group_commit_seconds",
                 "pgjobs_queue_jobs", "pgjobs_queue_oldest_runnable_seconds", "pgjobs_queue_sampler"):
        assert f"# TYPE {name}" in exposition, name
