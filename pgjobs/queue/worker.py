"""The worker: one asyncio loop of a producer, an executor, a completer, and upkeep.

- producer (pgjobs.queue.producer): claims the registry's kinds for free slots, woken by NOTIFY, a
  jittered poll, a scheduled run_at or a freed slot, and starts jobs handed over by enqueuers
  (pgjobs.queue.handoff);
- executor (pgjobs.queue.executor): runs one handler per job as its own task (timeouts, tracebacks,
  on_error hooks) and turns what it did into an outcome;
- completer (pgjobs.queue.completer): writes whatever outcomes accumulated in one group transaction;
- upkeep (here): a heartbeat extends held leases and refreshes the worker's pgjobs.workers row,
  the rescuer re-queues other workers' expired ones, and stop() (SIGTERM/SIGINT) stops claiming,
  lets in-flight jobs finish within the grace period and hands the rest back without spending an
  attempt.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import socket
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import psycopg
from psycopg import errors
from psycopg_pool import AsyncConnectionPool

from pgjobs.queue import defaults
from pgjobs.queue.bounded import bounded
from pgjobs.queue.completer import PREPARE_KEYED, Finished, GroupCommitter
from pgjobs.queue.executor import ErrorHook, Executor
from pgjobs.queue.faults import UNAVAILABLE, FaultLog, stale_session
from pgjobs.queue.handoff import OFFER_REFRESH, Handoff
from pgjobs.queue.jobs import DEFAULT_QUEUE, Job, Q
from pgjobs.queue.limits import RateLimits
from pgjobs.queue.listener import Listener
from pgjobs.queue.maintenance import PARTITIONS_EVERY, maintain_partitions, rescue_expired
from pgjobs.queue.retention import Retention
from pgjobs.queue.outcomes import HandBack
from pgjobs.queue.floors import ClaimFloors
from pgjobs.queue.producer import Producer
from pgjobs.queue.registry import Registry
from pgjobs.queue.vacuum import LiveVacuum

if TYPE_CHECKING:
    from pgjobs.database import Timeouts

log = logging.getLogger("pgjobs.worker")
HEARTBEAT_LOCK_WAIT = 0.2  # seconds the heartbeat waits for a row lock before it retries (see extend_leases)


def new_worker_id() -> str:
    """host:pid:random — also the application_name of every connection the worker opens."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

# A worker with hand-offs off offers nothing (idle_slots 0): these only fill the claim's parameters.
_NO_OFFER: dict[str, Any] = {"channel": "", "lock_key": 0, "handoff_token": None, "offer_ttl": 0,
                             "offer_refresh": OFFER_REFRESH}




@dataclass
class WorkerHooks:
    """Callbacks for tests and embedding code; each runs on the worker's loop and must not block."""

    claimed: Callable[[list[Job]], None] | None = None
    finished: Callable[[Finished], None] | None = None
    idle: Callable[[], None] | None = None  # a claim found nothing to run
    rescued: Callable[[int], None] | None = None  # the rescuer re-queued this many expired leases
    committed: Callable[[int, float], None] | None = None  # a group of n outcomes written, in seconds


class Worker(Producer, GroupCommitter):
    """One asyncio loop running an app's registry: see the module docstring for its parts."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        registry: Registry,
        *,
        conninfo: str,
        limits: RateLimits,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
        concurrency: int = defaults.CONCURRENCY,
        claim_batch: int | None = None,
        lease_seconds: float = defaults.LEASE_SECONDS,
        poll_interval: float = defaults.POLL_INTERVAL,
        shutdown_grace: float = defaults.SHUTDOWN_GRACE,
        burst: bool = False,
        burst_waits_for_scheduled: bool = False,
        hooks: WorkerHooks | None = None,
        worker_id: str | None = None,
        state: object = None,
        on_error: Sequence[ErrorHook] = (),
        app_name: str = "pgjobs",
        handoff: bool = defaults.HANDOFF,
        retention: Retention | None = None,
        live_vacuum_after: int = defaults.LIVE_VACUUM_AFTER,
        timeouts: "Timeouts | None" = None,
    ) -> None:
        """`timeouts`: the bounded waits of the worker's own sessions (claimer, listener) and of
        its upkeep statements (default: the PGJOBS_* settings' defaults); the pool brings its own.
        `live_vacuum_after`: outcomes written between two VACUUMs of jobs_live (pgjobs.queue.vacuum; 0: never)."""
        from pgjobs.database import Timeouts  # pgjobs.database -> settings -> pgjobs.queue: import late

        self.pool = pool
        self.registry = registry
        self.limits = limits
        self.queues = list(dict.fromkeys(queues))
        self.kinds = registry.kinds()  # the only kinds this worker claims or is handed
        self._floors = ClaimFloors(self.queues, self.kinds)
        self.app_name = app_name
        self.concurrency = concurrency
        # Claims sized to half the slots: a second batch is claimed while the first one runs.
        self.claim_batch = claim_batch or max(1, min(1000, concurrency // 2))
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.shutdown_grace = shutdown_grace
        self.burst = burst
        # With burst: also wait for jobs scheduled later (retries in backoff), not only runnable ones.
        self.burst_waits_for_scheduled = burst_waits_for_scheduled
        self.hooks = hooks or WorkerHooks()
        self.state = state  # handed to every handler as ctx.state (the app's lifespan's value)
        self.worker_id = worker_id or new_worker_id()
        self.timeouts = timeouts or Timeouts.default()
        # The claimer and the listener: sessions only the queue uses, so statement_timeout applies.
        self.connect_options = self.timeouts.options(self.worker_id, statement_timeout=True)
        self.executor = Executor(registry, pool, limits, self.worker_id, state, on_error)
        self.conninfo = conninfo
        self.retention = retention  # finished families pruned by a loop of its own (pgjobs.queue.retention)
        self.live_vacuum = LiveVacuum(pool, live_vacuum_after)
        # Hand-off (pgjobs.queue.handoff): jobs leased to this worker arrive on its own channel.
        # An offer lives through two missed refreshes (pgjobs.queue.handoff, "Liveness"): an idle
        # worker claims at least every 1.2 poll intervals (jitter), its listener probes every interval.
        offer_ttl = 2 * min(1.2 * poll_interval, self.timeouts.listener_probe_interval)
        self._handoff = Handoff(self._handed, self.worker_id, offer_ttl) if handoff else None
        self._offer_params = {"channel": self._handoff.channel, "lock_key": self._handoff.lock_key,
                              "handoff_token": self._handoff.token, "offer_ttl": offer_ttl,
                              "offer_refresh": OFFER_REFRESH} if self._handoff else _NO_OFFER
        self.listener = Listener(conninfo, self.queues, self._wake_up, handoff=self._handoff,
                                 probe_interval=self.timeouts.listener_probe_interval,
                                 probe_timeout=self.timeouts.listener_probe_timeout,
                                 connect_options=self.connect_options)
        self._claimer: psycopg.AsyncConnection | None = None  # the producer's own session
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._tasks: dict[int, asyncio.Task] = {}  # job id -> running handler
        self._held: dict[int, Job] = {}  # claimed and not yet written: the leases we heartbeat
        self._backlog: deque[Job] = deque()  # handed to us beyond our free slots: held, not started
        self._offering = False  # our hand-off offer (pgjobs.waiters) may be open
        self._done: asyncio.Queue[Finished] = asyncio.Queue()
        self._faults = {what: FaultLog(log, what) for what in ("claiming", "heartbeat", "rescuer", "writing outcomes")}
        self._drained_at = 0.0

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
        gc.freeze()
        gc.set_threshold(max(threshold[0], 20_000), *threshold[1:])
        try:
            await self._run()
        finally:
            gc.set_threshold(*threshold)
            gc.unfreeze()

    async def _run(self) -> None:
        await self._register()
        async with asyncio.TaskGroup() as group:
            listener = group.create_task(self.listener.run(), name="listener")
            # Two completers: while one group commits, the next is already being written.
            completers = [group.create_task(self._complete_loop(), name=f"completer-{n}")
                          for n in range(2)]
            upkeep = [
                group.create_task(self._heartbeat_loop(), name="heartbeat"),
                group.create_task(self._rescue_loop(), name="rescuer"),
            ]
            if self.retention is not None:
                upkeep.append(group.create_task(self.retention.run(self.pool, self._after_fault), name="retention"))
            try:
                await self._produce_loop()
                await self._withdraw()
                await self._drain()
            finally:
                await self._close_claimer()
                for task in (listener, *upkeep):
                    task.cancel()
                self.live_vacuum.cancel()
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
            async with self.pool.connection() as conn, bounded(conn, self.timeouts.statement_timeout):
                await conn.execute(Q["upsert_worker"], self._worker_row())
        except UNAVAILABLE as exc:  # the heartbeat writes it once the database answers
            await self._after_fault(exc)
            log.warning("could not register the worker (%s)", type(exc).__name__)

    async def _unregister(self) -> None:
        try:
            async with self.pool.connection() as conn, bounded(conn, self.timeouts.statement_timeout):
                await conn.execute(Q["delete_worker"], {"worker_id": self.worker_id})
        except UNAVAILABLE as exc:
            log.warning("could not remove the worker's row (%s); it ages out", type(exc).__name__)

    async def _after_fault(self, exc: BaseException) -> None:
        """Connections opened while the database was read-only stay read-only after it is reset:
        drop the pool's (at most once a second); the claimer's session is replaced by its loop."""
        if stale_session(exc) and time.monotonic() - self._drained_at >= 1.0:
            self._drained_at = time.monotonic()
            await self.pool.drain()

    # --- executor (pgjobs.queue.executor runs the handler) -------------------------------------

    async def _execute(self, job: Job) -> None:
        started = time.perf_counter()
        try:
            outcome = await self.executor.execute(job)
        except asyncio.CancelledError:
            # Cancelled at the end of the shutdown grace, or because our lease was lost.
            outcome = HandBack("handed back: worker shut down before the job finished")
        self._tasks.pop(job.id, None)
        self._done.put_nowait(Finished(job, outcome, (time.perf_counter() - started) * 1000))

    async def _write(self, batch: list[Finished]) -> None:
        """The completer's group write (pgjobs.queue.completer), timed for the `committed` hook."""
        if self.hooks.committed is None:
            await super()._write(batch)
        else:
            started = time.perf_counter()
            await super()._write(batch)
            self.hooks.committed(len(batch), time.perf_counter() - started)
        self.live_vacuum.wrote(len(batch))

    # --- upkeep -------------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        faults = self._faults["heartbeat"]
        pause = self.lease_seconds / 3
        while True:
            await asyncio.sleep(pause)
            pause = self.lease_seconds / 3
            held, alive = sorted(self._held.values(), key=lambda j: j.id), set()
            try:
                async with self.pool.connection() as conn:
                    async with bounded(conn, self.timeouts.statement_timeout):
                        # our pgjobs.workers row says we are alive, busy or not
                        await conn.execute(Q["upsert_worker"], self._worker_row())
                    if held:
                        params = {"ids": [j.id for j in held], "tokens": [j.lease_token for j in held],
                                  "lease_seconds": self.lease_seconds}
                        # a row our completer holds: give up this round at once, never wait (see the query)
                        async with bounded(conn, self.timeouts.statement_timeout, lock_timeout=HEARTBEAT_LOCK_WAIT):
                            cur = await conn.execute(Q["extend_leases"], params, prepare=PREPARE_KEYED)
                            alive = {row[0] for row in await cur.fetchall()}
                faults.ok()
            except errors.LockNotAvailable:
                pause = 1.0  # the completer commits in milliseconds; the leases have two rounds to spare
                continue
            except UNAVAILABLE as exc:
                faults.failed(exc)
                await self._after_fault(exc)
                continue
            for job in held:
                task = self._tasks.get(job.id)
                if job.id not in alive and task is not None:
                    log.warning("lease lost while running (cancelled or rescued); stopping the handler",
                                extra={"kind": job.kind, "job_id": job.id, "root_id": job.root_id})
                    task.cancel()

    async def _rescue_loop(self) -> None:
        faults = self._faults["rescuer"]
        partitions_due = 0.0  # the first turn, at start: today's partition exists before many jobs end
        while True:
            try:
                # Not bounded by statement_timeout: kinds' on_lease_expired hooks run in it.
                async with self.pool.connection() as conn:
                    rescued = await rescue_expired(conn, self.registry)
                    async with bounded(conn, self.timeouts.statement_timeout):
                        await conn.execute(Q["prune_dead_waiters"])
                        if time.monotonic() >= partitions_due:
                            await maintain_partitions(conn)
                            partitions_due = time.monotonic() + PARTITIONS_EVERY * random.uniform(0.9, 1.1)
                faults.ok()
                if rescued:
                    self._floors.rescan_next()  # they kept their run_at: below our floors, at the front
                    if self.hooks.rescued is not None:
                        self.hooks.rescued(len(rescued))
            except UNAVAILABLE as exc:
                faults.failed(exc)
                await self._after_fault(exc)
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
