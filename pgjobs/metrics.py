"""A worker's Prometheus metrics (the `metrics` extra, the official prometheus_client).

`WorkerMetrics(worker)` chains itself onto the worker's hooks and its rate limiter's observer, so
the hot path pays a dict increment per claimed job and a dict increment plus a bisect per
finished attempt: plain Python counters, turned into Prometheus families only when scraped
(prometheus_client's own Counter/Histogram take a lock per call: 2.4 µs per job instead of 0.4;
docs/observability.md has the drain measured with and without). The queue's depth and the
age of its oldest runnable job are sampled by ONE worker at a time: the one holding the sampler's
session advisory lock; the others export `pgjobs_queue_sampler 0` and no depth. Each worker keeps
its own registry (several workers may share a process in tests).

  pgjobs_jobs_claimed_total{kind}                  jobs claimed or handed over to this worker
  pgjobs_jobs_finished_total{kind,outcome}         attempts written: complete | retry | snooze |
                                                   discard | hand_back | lease_lost (fenced out)
  pgjobs_attempt_duration_seconds{kind}            histogram of handler run times
  pgjobs_jobs_running                              jobs in flight on this worker
  pgjobs_rate_limiter_wait_seconds{limiter}        histogram of the waits for a limiter's turn
  pgjobs_rate_limiter_slot_lag_seconds{limiter}    histogram of sends' lateness after their granted slot
  pgjobs_lease_rescues_total                       expired leases this worker's rescuer re-queued
  pgjobs_listener_reconnects_total                 times the LISTEN connection was replaced
  pgjobs_group_commit_size / _seconds              histograms of outcome groups written at once
  pgjobs_queue_jobs{queue,state}                   queued (runnable or scheduled) and running jobs
  pgjobs_queue_oldest_runnable_seconds{queue}      how long the oldest runnable job has waited
  pgjobs_queue_sampler                             1 on the worker that samples the two above
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from typing import TYPE_CHECKING, Any, Callable

import psycopg

from pgjobs.errors import ConfigError
from pgjobs.sqlfiles import load_queries

if TYPE_CHECKING:
    from pgjobs.queue.completer import Finished
    from pgjobs.queue.jobs import Job
    from pgjobs.queue.worker import Worker

try:
    import prometheus_client as prom
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
except ImportError:  # the extra is optional: --metrics-port says what to install
    prom = None

log = logging.getLogger("pgjobs.metrics")
M = load_queries("queue/metrics.sql")

# pg_try_advisory_lock key of the depth sampler: 'pgjobsmx' as a bigint, apart from job-derived keys.
SAMPLER_LOCK_KEY = int.from_bytes(b"pgjobsmx", "big") & 0x7FFF_FFFF_FFFF_FFFF
SAMPLE_INTERVAL = 10.0  # seconds between the sampler's depth queries (and the others' lock tries)
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1)  # the send margin is 15 ms
_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def require() -> None:
    if prom is None:
        raise ConfigError("metrics need the prometheus client: pip install 'pgjobs[metrics]'")


def _chain(first: Callable | None, then: Callable) -> Callable:
    if first is None:
        return then

    def both(*args: Any) -> None:
        first(*args)
        then(*args)
    return both


class _Histogram:
    """A histogram kept in plain lists, for the per-job path (one loop thread: no lock)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, int]]:
        cumulative, out = 0, []
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts):
            cumulative += count
            out.append((bound, cumulative))
        return out


class _LiveCollector:
    """The per-job counters and what the worker already keeps, turned into metric families at
    scrape time (on the worker's loop, like the hooks that feed them)."""

    def __init__(self, metrics: "WorkerMetrics") -> None:
        self._metrics = metrics

    def collect(self):
        m, worker = self._metrics, self._metrics.worker
        claimed = CounterMetricFamily("pgjobs_jobs_claimed", "jobs claimed or handed over", labels=["kind"])
        for kind, n in m.claimed.items():
            claimed.add_metric([kind], n)
        finished = CounterMetricFamily("pgjobs_jobs_finished", "attempts written, by outcome",
                                       labels=["kind", "outcome"])
        for (kind, outcome), n in m.finished.items():
            finished.add_metric([kind, outcome], n)
        duration = HistogramMetricFamily("pgjobs_attempt_duration_seconds", "handler run time", labels=["kind"])
        for kind, hist in m.duration.items():
            duration.add_metric([kind], hist.buckets(), hist.total)
        reconnects = CounterMetricFamily("pgjobs_listener_reconnects", "times the LISTEN connection was replaced")
        reconnects.add_metric([], worker.listener.reconnects)
        running = GaugeMetricFamily("pgjobs_jobs_running", "jobs in flight on this worker")
        running.add_metric([], len(worker._tasks))
        return [claimed, finished, duration, reconnects, running]


class WorkerMetrics:
    def __init__(self, worker: "Worker") -> None:
        require()
        self.worker = worker
        self.registry = r = prom.CollectorRegistry()
        self.claimed: dict[str, int] = {}
        self.finished: dict[tuple[str, str], int] = {}
        self.duration: dict[str, _Histogram] = {}
        self.limiter_wait = prom.Histogram("pgjobs_rate_limiter_wait_seconds", "wait for a limiter's turn",
                                           ["limiter"], buckets=_WAIT_BUCKETS, registry=r)
        self.limiter_lag = prom.Histogram("pgjobs_rate_limiter_slot_lag_seconds",
                                          "send time minus the granted slot, at confirm", ["limiter"],
                                          buckets=_LAG_BUCKETS, registry=r)
        self.rescues = prom.Counter("pgjobs_lease_rescues", "expired leases re-queued by this worker", registry=r)
        self.group_size = prom.Histogram("pgjobs_group_commit_size", "outcomes written in one transaction",
                                         buckets=_SIZE_BUCKETS, registry=r)
        self.group_seconds = prom.Histogram("pgjobs_group_commit_seconds", "time to write one group of outcomes",
                                            buckets=_DURATION_BUCKETS, registry=r)
        self.depth = prom.Gauge("pgjobs_queue_jobs", "queued and running jobs (sampled by one worker)",
                                ["queue", "state"], registry=r)
        self.oldest = prom.Gauge("pgjobs_queue_oldest_runnable_seconds", "age of the oldest runnable job",
                                 ["queue"], registry=r)
        self.sampler = prom.Gauge("pgjobs_queue_sampler", "1 on the worker that samples the queue gauges",
                                  registry=r)
        prom.Info("pgjobs_worker", "this worker", registry=r).info(
            {"worker_id": worker.worker_id, "app": worker.app_name, "queues": ",".join(worker.queues)})
        r.register(_LiveCollector(self))
        hooks = worker.hooks
        hooks.claimed = _chain(hooks.claimed, self._on_claimed)
        hooks.finished = _chain(hooks.finished, self._on_finished)
        hooks.rescued = _chain(hooks.rescued, self.rescues.inc)
        hooks.committed = _chain(hooks.committed, self._on_committed)
        worker.limits.observe = _chain(worker.limits.observe, self._on_limiter_wait)
        worker.limits.observe_lag = _chain(worker.limits.observe_lag, self._on_limiter_lag)

    # --- hooks (the worker's loop; keep them cheap) ---------------------------------------------

    def _on_claimed(self, jobs: "list[Job]") -> None:
        claimed = self.claimed
        for job in jobs:
            claimed[job.kind] = claimed.get(job.kind, 0) + 1

    def _on_finished(self, item: "Finished") -> None:
        kind = item.job.kind
        key = (kind, item.outcome.name if item.state is not None else "lease_lost")
        self.finished[key] = self.finished.get(key, 0) + 1
        hist = self.duration.get(kind)
        if hist is None:
            hist = self.duration[kind] = _Histogram(_DURATION_BUCKETS)
        hist.observe(item.duration_ms / 1000.0)

    def _on_committed(self, size: int, seconds: float) -> None:
        self.group_size.observe(size)
        self.group_seconds.observe(seconds)

    def _on_limiter_wait(self, limiter: str, seconds: float) -> None:
        self.limiter_wait.labels(limiter).observe(seconds)

    def _on_limiter_lag(self, limiter: str, seconds: float) -> None:
        self.limiter_lag.labels(limiter).observe(seconds)

    # --- the depth sampler ----------------------------------------------------------------------

    async def sample_forever(self, interval: float = SAMPLE_INTERVAL) -> None:
        """Sample the queue's depth while holding the sampler lock; try for the lock otherwise.

        The lock lives on a session of its own, held only by the sampling worker (the others
        connect once per interval to try it): when that worker dies or its connection drops, the
        server releases the lock and another worker takes over."""
        conn: psycopg.AsyncConnection | None = None
        try:
            while True:
                try:
                    conn = await self._sample(conn)
                except (psycopg.Error, OSError, TimeoutError) as exc:
                    log.warning("queue depth sampling failed (%s)", type(exc).__name__)
                    conn = await _close(conn)
                    self.sampler.set(0)
                await asyncio.sleep(interval)
        finally:
            await _close(conn)

    async def _sample(self, conn: psycopg.AsyncConnection | None) -> psycopg.AsyncConnection | None:
        worker = self.worker
        if conn is None or conn.closed:
            conn = await psycopg.AsyncConnection.connect(worker.conninfo, autocommit=True, **worker.connect_options)
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (SAMPLER_LOCK_KEY,))
            if not (await cur.fetchone())[0]:
                self.sampler.set(0)
                self.depth.clear()
                self.oldest.clear()
                return await _close(conn)
        self.sampler.set(1)
        cur = await conn.execute(M["queue_depth"])
        rows = await cur.fetchall()
        self.depth.clear()
        self.oldest.clear()
        for queue, state, jobs, oldest in rows:
            self.depth.labels(queue, state).set(jobs)
            if oldest is not None:
                self.oldest.labels(queue).set(oldest)
        return conn


async def _close(conn: psycopg.AsyncConnection | None) -> None:
    if conn is not None and not conn.closed:
        await conn.close()
    return None
