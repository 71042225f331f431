"""The worker: producer (claims), executor (runs handlers), completer (writes outcomes), upkeep.

One asyncio loop. The producer claims as many jobs as there are free slots, woken by NOTIFY, a
jittered poll, the next scheduled run_at, or a slot freed by the completer. An idle worker also
offers its free slots for hand-off: an enqueue that is its own transaction then inserts the job
already leased to it and the listener starts it at once (no claim round trip on the wake-up path).
Each claimed job runs as its own task; its outcome goes to the completer, which writes whatever has accumulated in one
group transaction. A heartbeat extends held leases; the rescuer re-queues other workers' expired
ones. stop() (SIGTERM/SIGINT) stops claiming, lets in-flight jobs finish within the grace period,
and hands the rest back without spending an attempt.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import socket
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Sequence

import orjson
import psycopg
from psycopg_pool import AsyncConnectionPool

from pgjobs.queue.completer import Finished, write_outcomes
from pgjobs.queue.executor import ErrorHook, Executor
from pgjobs.queue.jobs import DEFAULT_QUEUE, Job, Q, claimed_jobs
from pgjobs.queue.limits import RateLimits
from pgjobs.queue.listener import Handoff, Listener
from pgjobs.queue.maintenance import rescue_expired
from pgjobs.queue.outcomes import Complete, HandBack
from pgjobs.logs import log_many
from pgjobs.queue.registry import Registry

# Python 3.12+: a job's task starts at once, inside _start, instead of one loop turn later; a
# handler that never awaits (a no-op, a pure computation) then finishes without being scheduled.
_EAGER = {"eager_start": True} if sys.version_info >= (3, 12) else {}

log = logging.getLogger("pgjobs.worker")


@dataclass
class WorkerHooks:
    """Callbacks for tests and embedding code; each runs on the worker's loop and must not block."""

    claimed: Callable[[list[Job]], None] | None = None
    finished: Callable[[Finished], None] | None = None
    idle: Callable[[], None] | None = None  # a claim found nothing to run


def _outcome_fields(item: Finished) -> dict[str, object]:
    """The structured line each outcome gets: kind, id, root, attempt, outcome, duration."""
    job, outcome = item.job, item.outcome
    fields: dict[str, object] = {
        "kind": job.kind, "job_id": job.id, "root_id": job.root_id, "attempt": job.attempt,
        "outcome": type(outcome).__name__.lower(), "state": item.state or "lease_lost",
        "duration_ms": round(item.duration_ms, 2)}
    if item.state is None:
        fields["error"] = "lease lost: outcome discarded, nothing committed"
    elif not isinstance(outcome, Complete):
        fields["error"] = str(outcome)
    if outcome.traceback is not None:
        fields["traceback"] = outcome.traceback
    return fields


_MAX_GROUP = 1000  # outcomes per group commit


class Worker:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        registry: Registry,
        *,
        conninfo: str,
        limits: RateLimits,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
        concurrency: int = 10,
        claim_batch: int | None = None,
        completers: int = 2,
        tune_gc: bool = True,
        lease_seconds: float = 30.0,
        poll_interval: float = 2.0,
        shutdown_grace: float = 10.0,
        burst: bool = False,
        burst_waits_for_scheduled: bool = False,
        hooks: WorkerHooks | None = None,
        worker_id: str | None = None,
        state: object = None,
        on_error: Sequence[ErrorHook] = (),
        app_name: str = "pgjobs",
    ) -> None:
        self.pool = pool
        self.registry = registry
        self.limits = limits
        self.queues = list(dict.fromkeys(queues))
        self.kinds = registry.kinds()  # the only kinds this worker claims or is handed
        self.app_name = app_name
        self.concurrency = concurrency
        # Claims sized to half the slots: a second batch is claimed while the first one runs.
        self.claim_batch = claim_batch or max(1, min(1000, concurrency // 2))
        self.completers = completers
        self.tune_gc = tune_gc
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.shutdown_grace = shutdown_grace
        self.burst = burst
        # With burst: also wait for jobs scheduled later (retries in backoff), not only runnable ones.
        self.burst_waits_for_scheduled = burst_waits_for_scheduled
        self.hooks = hooks or WorkerHooks()
        self.state = state  # handed to every handler as ctx.state (the app's lifespan's value)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.executor = Executor(registry, pool, limits, self.worker_id, state, on_error)
        self.conninfo = conninfo
        # Hand-off: jobs leased to this worker by enqueue_handoff arrive on its own channel.
        self._channel = f"pgjobs_w_{uuid.uuid4().hex[:16]}"
        self._lock_key = random.getrandbits(63)
        self._handoff_token = uuid.uuid4()  # the lease token of every job handed to us (our offer holds it)
        self.listener = Listener(conninfo, self.queues, self._wake_up,
                                 handoff=Handoff(self._channel, self._lock_key, self._handed))
        self._claimer: psycopg.AsyncConnection | None = None  # the producer's own session
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._tasks: dict[int, asyncio.Task] = {}  # job id -> running handler
        self._held: dict[int, Job] = {}  # claimed and not yet written: the leases we heartbeat
        self._backlog: deque[Job] = deque()  # handed to us beyond our free slots: held, not started
        self._offering = False  # our hand-off offer (pgjobs.waiters) may be open
        self._done: asyncio.Queue[Finished] = asyncio.Queue()

    # --- public -------------------------------------------------------------------------------

    def stop(self, *, now: bool = False) -> None:
        """Stop claiming and shut down gracefully; `now` skips what is left of the grace period.

        Idempotent and safe to call from a signal handler on the worker's loop."""
        self._stopping.set()
        if now:
            self._hurry.set()
        self._wake.set()

    async def run(self) -> None:
        # Thousands of short-lived job objects per second would trigger the cyclic GC every few
        # milliseconds (~15 % of a no-op drain); they are freed by refcounting anyway. So while the
        # worker runs, startup objects are frozen and young collections come 20x less often.
        threshold = gc.get_threshold()
        if self.tune_gc:
            gc.freeze()
            gc.set_threshold(max(threshold[0], 20_000), *threshold[1:])
        try:
            await self._run()
        finally:
            if self.tune_gc:
                gc.set_threshold(*threshold)
                gc.unfreeze()

    async def _run(self) -> None:
        await self._register()
        async with asyncio.TaskGroup() as group:
            listener = group.create_task(self.listener.run(), name="listener")
            # Two completers: while one group commits, the next is already being written.
            completers = [group.create_task(self._complete_loop(), name=f"completer-{n}")
                          for n in range(self.completers)]
            upkeep = [
                group.create_task(self._heartbeat_loop(), name="heartbeat"),
                group.create_task(self._rescue_loop(), name="rescuer"),
            ]
            try:
                await self._produce_loop()
                await self._withdraw()
                await self._drain()
            finally:
                await self._close_claimer()
                for task in (listener, *upkeep):
                    task.cancel()
                await self._done.join()
                await self._hand_back_orphans()
                for completer in completers:
                    completer.cancel()
        await self._unregister()

    # --- the workers table --------------------------------------------------------------------

    def _worker_row(self) -> dict[str, object]:
        return {"worker_id": self.worker_id, "app": self.app_name, "host": socket.gethostname(),
                "pid": os.getpid(), "queues": self.queues, "kinds": self.kinds,
                "concurrency": self.concurrency}

    async def _register(self) -> None:
        """Our row in pgjobs.workers, written at start and refreshed by every heartbeat."""
        try:
            async with self.pool.connection() as conn:
                await conn.execute(Q["upsert_worker"], self._worker_row())
        except psycopg.OperationalError as exc:  # the heartbeat writes it once the database answers
            log.warning("could not register the worker (%s)", type(exc).__name__)

    async def _unregister(self) -> None:
        try:
            async with self.pool.connection() as conn:
                await conn.execute(Q["delete_worker"], {"worker_id": self.worker_id})
        except psycopg.OperationalError as exc:
            log.warning("could not remove the worker's row (%s); it ages out", type(exc).__name__)

    # --- producer -----------------------------------------------------------------------------

    def _wake_up(self) -> None:
        self._wake.set()

    async def _produce_loop(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                if await self._produce_once():
                    return
                backoff = 0.1
            except psycopg.OperationalError as exc:
                # The database went away (restart, failover, killed backend): keep the daemon up,
                # back off, and claim again once it answers; held jobs keep their leases meanwhile.
                await self._close_claimer()
                log.warning("claiming failed (%s); retrying in %.1fs", type(exc).__name__, backoff)
                await self._sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, 5.0)

    async def _produce_once(self) -> bool:
        """One claim cycle, then wait for a reason to claim again; True when burst is done."""
        free = self.concurrency - len(self._held)
        if free <= 0 and self._offering:  # hand-offs filled our slots: stop being chosen
            await self._withdraw()
        claimed = await self._claim(min(free, self.claim_batch), free) if free > 0 else 0
        if claimed and claimed == min(free, self.claim_batch):
            return False  # there may be more: claim again at once if slots remain
        idle = free > 0 and not claimed
        if self.burst and idle and not self._held:
            if not await self._pending():
                log.info("burst: nothing runnable or running in %s; exiting", ",".join(self.queues))
                return True
            # Other workers still hold jobs (which may spawn more): look again soon.
            await self._sleep(min(0.1, await self._next_wait()))
            return False
        await self._sleep(await self._next_wait() if idle else self.poll_interval)
        return False

    async def _claimer_conn(self) -> psycopg.AsyncConnection:
        """The producer's own session, opened on first use and again after it failed.

        Own, not pooled: a wake-up claims without waiting for a pool slot. And planned once: with
        the default plan cache mode PostgreSQL re-plans the claim on every call (~0.3 ms of a ~1 ms
        wake-up), while its generic plan is the same index scan per queue at any batch size."""
        if self._claimer is None or self._claimer.closed:
            conn = await psycopg.AsyncConnection.connect(
                self.conninfo, autocommit=True, prepare_threshold=0, keepalives=1, keepalives_idle=10,
                keepalives_interval=5, keepalives_count=3)
            await conn.execute("SET plan_cache_mode = force_generic_plan")
            self._claimer = conn
        return self._claimer

    async def _close_claimer(self) -> None:
        conn, self._claimer = self._claimer, None
        if conn is not None:
            await conn.close()

    async def _claim(self, limit: int, free: int) -> int:
        offer = 0 if self.burst or self._stopping.is_set() else free  # slots offered for hand-off if idle
        token = uuid.uuid4()
        params = {"queues": self.queues, "limit": limit, "lease_seconds": self.lease_seconds,
                  "worker_id": self.worker_id, "channel": self._channel, "lock_key": self._lock_key,
                  "idle_slots": offer, "lease_token": token, "handoff_token": self._handoff_token,
                  "kinds": self.kinds}
        conn = await self._claimer_conn()
        cur = await conn.execute(Q["claim_jobs"], params)
        jobs = claimed_jobs(await cur.fetchall(), token)
        self._offering = len(jobs) < limit and offer > len(jobs)  # as the statement's offer CTE decides
        self._start(jobs)
        if not jobs and self.hooks.idle:
            self.hooks.idle()
        return len(jobs)

    def _start(self, jobs: list[Job]) -> None:
        loop = asyncio.get_running_loop()
        for job in jobs:
            self._held[job.id] = job
            task = asyncio.Task(self._execute(job), loop=loop, name=f"job-{job.id}", **_EAGER)
            if not task.done():  # an eager task may already have finished (and left _tasks)
                self._tasks[job.id] = task
        if jobs and self.hooks.claimed:
            self.hooks.claimed(jobs)

    def _handed(self, payload: str) -> None:
        """A job enqueue_handoff leased to this worker (see sql/queries/queue.sql for the fields)."""
        try:
            head, _, payload_json = payload.partition("\n")
            # Our own format (ints within int64, a float, strings): orjson as is.
            (job_id, run_at, kind, queue, priority, max_attempts, backoff_base_ms,
             backoff_cap_ms) = orjson.loads(head)
            job = Job(job_id, job_id, None, kind, queue, payload_json, priority,
                      datetime.fromtimestamp(run_at, timezone.utc), 1, 0, max_attempts, backoff_base_ms,
                      backoff_cap_ms, None, self._handoff_token)
        except (ValueError, TypeError) as exc:  # not ours to guess at: its lease expires and it is rescued
            log.error("ignoring a malformed hand-off notification (%s)", exc)
            return
        if job.id in self._held:
            return
        if self._stopping.is_set():  # too late to start it: give the run back at once
            self._held[job.id] = job
            self._hand_back_unstarted(job)
            return
        if self._started() >= self.concurrency:
            # Enqueuers read our offer without updating it, so a burst can hand us more than we
            # offered: the extra jobs stay leased to us (heartbeated) and start as slots free up.
            self._held[job.id] = job
            self._backlog.append(job)
        else:
            self._start([job])
        if len(self._held) >= self.concurrency:
            self._wake.set()  # full: the producer withdraws the offer

    def _started(self) -> int:
        """Jobs we hold that took a slot (running, or finished and not yet written)."""
        return len(self._held) - len(self._backlog)

    def _hand_back_unstarted(self, job: Job) -> None:
        self._done.put_nowait(Finished(job, HandBack("handed back: worker is stopping"), 0.0))

    def _start_backlog(self) -> None:
        if self._stopping.is_set():  # _drain hands the backlog back
            return
        while self._backlog and self._started() < self.concurrency:
            self._start([self._backlog.popleft()])

    async def _withdraw(self) -> None:
        """Take back the hand-off offer, when full or stopping (best effort: a dead session's offer
        is never used); the next claim that finds less than it asked offers again."""
        try:
            conn = await self._claimer_conn()
            await conn.execute(Q["withdraw_waiter"], {"worker_id": self.worker_id})
            self._offering = False
        except psycopg.OperationalError as exc:
            log.warning("could not withdraw the hand-off offer (%s)", type(exc).__name__)

    async def _hand_back_orphans(self) -> None:
        """After the listener closed: hand-offs whose notification never reached us go back at once
        instead of waiting for their lease to expire."""
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(Q["hand_back_orphans"], {"worker_id": self.worker_id,
                                                                   "held": list(self._held)})
                orphans = await cur.fetchall()
        except psycopg.OperationalError as exc:
            log.warning("could not hand back unstarted hand-offs (%s); their leases will expire", exc)
            return
        if orphans:
            log.info("handed back %d hand-off(s) that arrived as the worker stopped", len(orphans))

    async def _pending(self) -> bool:
        conn = await self._claimer_conn()
        cur = await conn.execute(Q["pending_work"], {"queues": self.queues, "kinds": self.kinds,
                                                     "scheduled": self.burst_waits_for_scheduled})
        return (await cur.fetchone())[0]

    async def _next_wait(self) -> float:
        """Sleep until the jittered poll, or sooner when a scheduled job comes due."""
        wait = self.poll_interval * random.uniform(0.8, 1.2)
        conn = await self._claimer_conn()
        cur = await conn.execute(Q["next_run_at"], {"queues": self.queues, "kinds": self.kinds})
        (next_run_at,) = await cur.fetchone()
        if next_run_at is not None:
            due = (next_run_at - datetime.now(timezone.utc)).total_seconds()
            wait = min(wait, max(due, 0.005))
        return wait

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        except TimeoutError:
            pass
        self._wake.clear()

    # --- executor -----------------------------------------------------------------------------

    async def _execute(self, job: Job) -> None:
        started = time.perf_counter()
        try:
            outcome = await self.executor.execute(job)
        except asyncio.CancelledError:
            # Cancelled at the end of the shutdown grace, or because our lease was lost.
            outcome = HandBack("handed back: worker shut down before the job finished")
        self._tasks.pop(job.id, None)
        self._done.put_nowait(Finished(job, outcome, (time.perf_counter() - started) * 1000))

    # --- completer ----------------------------------------------------------------------------

    async def _complete_loop(self) -> None:
        while True:
            batch = [await self._done.get()]
            while not self._done.empty() and len(batch) < _MAX_GROUP:
                batch.append(self._done.get_nowait())
            try:
                await self._write(batch)
            finally:
                for _ in batch:
                    self._done.task_done()

    async def _write(self, batch: list[Finished]) -> None:
        for attempt in range(3):
            try:
                async with self.pool.connection() as conn:
                    await write_outcomes(conn, batch)
                break
            except psycopg.OperationalError as exc:
                # A retried group is safe: whatever committed already is fenced out the second time.
                log.warning("writing %d outcomes failed (%s); retrying", len(batch), exc)
                await asyncio.sleep(0.2 * (attempt + 1))
        else:
            log.error("gave up writing %d outcomes; their leases will expire and be rescued", len(batch))
        done, troubled = [], []
        info = log.isEnabledFor(logging.INFO)
        for item in batch:
            self._held.pop(item.job.id, None)
            if self.hooks.finished:
                self.hooks.finished(item)
            if item.state is not None and isinstance(item.outcome, Complete):
                if info:
                    done.append(_outcome_fields(item))
            else:
                troubled.append(_outcome_fields(item))
        self._start_backlog()
        self._wake.set()  # slots are free again
        log_many(log, logging.INFO, "outcome", done)
        log_many(log, logging.WARNING, "outcome", troubled)

    # --- upkeep -------------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            await self._register()  # our pgjobs.workers row says we are alive, busy or not
            held = list(self._held.values())
            if not held:
                continue
            params = {"ids": [j.id for j in held], "tokens": [j.lease_token for j in held],
                      "lease_seconds": self.lease_seconds}
            try:
                async with self.pool.connection() as conn:
                    cur = await conn.execute(Q["extend_leases"], params)
                    alive = {row[0] for row in await cur.fetchall()}
            except psycopg.OperationalError as exc:
                log.warning("heartbeat failed (%s)", exc)
                continue
            for job in held:
                task = self._tasks.get(job.id)
                if job.id not in alive and task is not None:
                    log.warning("lease lost while running (cancelled or rescued); stopping the handler",
                                extra={"kind": job.kind, "job_id": job.id, "root_id": job.root_id})
                    task.cancel()

    async def _rescue_loop(self) -> None:
        while True:
            try:
                async with self.pool.connection() as conn:
                    await rescue_expired(conn, self.registry)
                    await conn.execute(Q["prune_dead_waiters"])
            except psycopg.OperationalError as exc:
                log.warning("rescuer failed (%s)", exc)
            await asyncio.sleep(max(0.5, self.lease_seconds / 2) * random.uniform(0.8, 1.2))

    async def _drain(self) -> None:
        """Shutdown: let running handlers finish within the grace period, then hand the rest back."""
        while self._backlog:  # handed to us, never started
            self._hand_back_unstarted(self._backlog.popleft())
        running = list(self._tasks.values())
        if not running:
            return
        log.info("stopping: waiting up to %.1fs for %d running jobs", self.shutdown_grace, len(running))
        all_done = asyncio.create_task(asyncio.wait(running))
        hurry = asyncio.create_task(self._hurry.wait())
        await asyncio.wait([all_done, hurry], timeout=self.shutdown_grace, return_when=asyncio.FIRST_COMPLETED)
        all_done.cancel()
        hurry.cancel()
        late = [task for task in running if not task.done()]
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
