"""The producer: claims jobs for free slots, and starts the jobs handed to this worker.

It claims as many jobs as there are free slots (in batches of `claim_batch`), woken by NOTIFY, a
jittered poll, the next scheduled run_at, or a slot freed by the completer; only the worker's
registry's kinds, never from a paused queue. An idle worker's claim also offers its free slots for
hand-off (pgjobs.queue.handoff): jobs handed over arrive through the listener and start at once,
or wait in a backlog, leased to us, when more arrive than we have slots for.
Claims (and the idle worker's next_run_at) start at the worker's claim floors
(pgjobs.queue.floors), so they skip the dead claim-index entries another session's old snapshot
keeps.
A mixin of Worker (pgjobs.queue.worker), which owns the state it reads.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
import uuid
from collections import deque
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import psycopg

from pgjobs.queue import handoff
from pgjobs.queue.completer import Finished
from pgjobs.queue.faults import UNAVAILABLE, FaultLog, reason
from pgjobs.queue.floors import ClaimFloors
from pgjobs.queue.jobs import Job, Q, claimed_jobs
from pgjobs.queue.outcomes import HandBack

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from pgjobs.queue.listener import Listener
    from pgjobs.queue.worker import WorkerHooks

# Python 3.12+: a job's task starts at once, inside _start, instead of one loop turn later; a
# handler that never awaits (a no-op, a pure computation) then finishes without being scheduled.
_EAGER = {"eager_start": True} if sys.version_info >= (3, 12) else {}

log = logging.getLogger("pgjobs.worker")


class Producer:
    # Worker's state, as the producer uses it.
    pool: AsyncConnectionPool
    conninfo: str
    connect_options: dict[str, Any]  # pgjobs.database.Timeouts.options: bounded waits, application_name
    worker_id: str
    queues: list[str]
    kinds: list[str]
    concurrency: int
    claim_batch: int
    lease_seconds: float
    poll_interval: float
    burst: bool
    burst_waits_for_scheduled: bool
    hooks: WorkerHooks
    _handoff: handoff.Handoff | None
    listener: Listener
    _offer_params: dict[str, Any]
    _floors: ClaimFloors  # where this worker's claims start (pgjobs.queue.floors)
    _claimer: psycopg.AsyncConnection | None
    _wake: asyncio.Event
    _stopping: asyncio.Event
    _tasks: dict[int, asyncio.Task]
    _held: dict[int, Job]
    _backlog: deque[Job]
    _offering: bool
    _done: asyncio.Queue[Finished]
    _faults: dict[str, FaultLog]

    async def _after_fault(self, exc: BaseException) -> None:
        raise NotImplementedError

    async def _execute(self, job: Job) -> None:
        raise NotImplementedError

    def _wake_up(self) -> None:
        self._wake.set()

    async def _produce_loop(self) -> None:
        backoff = 0.1
        faults: FaultLog = self._faults["claiming"]
        while not self._stopping.is_set():
            try:
                if await self._produce_once():
                    return
                backoff = 0.1
                faults.ok()
            except UNAVAILABLE as exc:
                # The database went away or refuses writes (restart, failover, killed backend, read
                # only, disk full): keep the daemon up, back off, and claim again on a new session
                # once it answers; held jobs keep their leases meanwhile.
                await self._close_claimer()
                await self._after_fault(exc)
                faults.failed(exc, backoff)
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
                self.conninfo, autocommit=True, prepare_threshold=0, **self.connect_options)
            await conn.execute("SET plan_cache_mode = force_generic_plan")
            # Index access only: jobs_live's statistics swing between a just-truncated table (a few
            # pages assumed, so a claim scanned the whole backlog for its ids: the soak's first
            # tenth at 9,000 jobs/s) and a vacuumed, emptied one (0 rows recorded).
            await conn.execute("SET enable_seqscan = off")
            self._claimer = conn
        return self._claimer

    async def _close_claimer(self) -> None:
        conn, self._claimer = self._claimer, None
        if conn is not None:
            await conn.close()

    async def _claim(self, limit: int, free: int) -> int:
        # Slots offered if idle: none while the listener is not listening (a hand-off would reach no one).
        offering = self._handoff and self.listener.connected.is_set() and not (self.burst or self._stopping.is_set())
        offer = free if offering else 0
        token = uuid.uuid4()
        params = {"queues": self.queues, "kinds": self.kinds, "limit": limit, "lease_seconds": self.lease_seconds,
                  "worker_id": self.worker_id, "idle_slots": offer, "lease_token": token} | self._offer_params
        floors = self._floors
        conn = await self._claimer_conn()
        started = time.perf_counter()
        cur = await conn.execute(Q["claim_jobs"], params | floors.params())
        jobs = claimed_jobs(await cur.fetchall(), token)
        floors.advance(jobs, time.perf_counter() - started)
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
        """A job enqueue_handoff leased to this worker (pgjobs.queue.handoff has the format)."""
        try:
            job = handoff.decode(payload, self._handoff.token)
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
        except UNAVAILABLE as exc:
            await self._close_claimer()  # a new session next time (this one may be stale: read-only)
            log.warning("could not withdraw the hand-off offer (%s)", type(exc).__name__)

    async def _hand_back_orphans(self) -> None:
        """After the listener closed: hand-offs whose notification never reached us go back at once
        instead of waiting for their lease to expire."""
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(Q["hand_back_orphans"], {"worker_id": self.worker_id,
                                                                   "held": list(self._held)})
                orphans = await cur.fetchall()
        except UNAVAILABLE as exc:
            log.warning("could not hand back unstarted hand-offs (%s); their leases will expire", reason(exc))
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
        cur = await conn.execute(Q["next_run_at"], self._floors.params(claim=False))
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
