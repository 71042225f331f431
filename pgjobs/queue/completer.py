"""The completer: writes finished attempts' outcomes, several jobs per transaction (group commit).

Each job's unit — its fenced state change plus its `write` callback (effects, audit row, children)
and its `rows` — is atomic: it commits whole or not at all. Fast path: one transaction for the
group; one UPDATE fences and records every outcome (its row locks keep rescuer and cancel out until
commit), then only the jobs that still held their lease run their writes, pipelined, and their rows
join the group's COPYs. If any write fails, the group is rolled back and replayed carefully: one
savepoint per job, and a job whose write failed is recorded as a failed attempt instead. Writes must
therefore touch only the database (they may run twice; only one run ever commits).
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

import psycopg

from pgjobs.queue.context import Deferred, JobTransaction
from pgjobs.queue.errors import LeaseLost
from pgjobs.queue.faults import UNAVAILABLE, FaultLog
from pgjobs.queue.jobs import Job, Q
from pgjobs.logs import log_many
from pgjobs.queue.outcomes import Complete, Outcome, Retry

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

log = logging.getLogger("pgjobs.completer")
_worker_log = logging.getLogger("pgjobs.worker")  # the outcome lines are the worker's
_MAX_GROUP = 1000  # outcomes per group commit


@dataclass(slots=True)
class Finished:
    """One finished attempt waiting to be written."""

    job: Job
    outcome: Outcome
    duration_ms: float
    state: str | None = None  # set once written: succeeded | queued | failed; None: lease lost
    write_error: str | None = None


def _params(items: Iterable[Finished]) -> dict[str, list]:
    ids, tokens, names, delays, errors, tracebacks = [], [], [], [], [], []
    for item in items:
        outcome, job = item.outcome, item.job
        ids.append(job.id)
        tokens.append(job.lease_token)
        names.append(outcome.name)
        delays.append(outcome.delay_seconds(job))
        errors.append(outcome.error)
        tracebacks.append(outcome.traceback)
    return {"ids": ids, "tokens": tokens, "outcomes": names, "delays": delays, "errors": errors,
            "tracebacks": tracebacks}


def _complete_params(items: Iterable[Finished]) -> dict[str, Any]:
    """complete_jobs' parameters: ids and token slots as comma-joined text, the distinct tokens."""
    ids, slots, slot_of = [], [], {}
    for item in items:
        ids.append(item.job.id)
        slots.append(slot_of.setdefault(item.job.lease_token, len(slot_of) + 1))
    return {"ids": ",".join(map(str, ids)), "slots": ",".join(map(str, slots)), "tokens": list(slot_of)}


# Statements that find a group's rows by primary key are never prepared (PREPARE_KEYED): each gets
# a plan for the table as it is now. Prepared, the server may keep one generic plan per session,
# and growth alone never invalidates it: made while the queue was small (a warm-up, an idle spell)
# it was a seq scan, and after a burst every 5-job group read the whole table
# (tests/core/db/test_plans_after_analyze.py; docs/performance.md). complete_jobs, the hot one,
# is prepared: its function plans with seq scans off (queue migrations 0011, 0013), since planning
# it on every call cost ~10 % of a drain at concurrency 10. All three statements live in functions
# that take the rows by `id = ANY` with nested loops off (0013): statistics that say jobs_live is
# empty cannot put it first in a join.
PREPARE_KEYED = False


async def _apply(conn: psycopg.AsyncConnection, items: list[Finished]) -> None:
    """Fence and record the outcomes of `items`; sets each item's state (None = lease lost)."""
    if all(isinstance(item.outcome, Complete) for item in items):
        cur = await conn.execute(Q["complete_jobs"], _complete_params(items))
        done = {row[0] for row in await cur.fetchall()}
        for item in items:
            item.state = "succeeded" if item.job.id in done else None
        return
    cur = await conn.execute(Q["apply_outcomes"], _params(items), prepare=PREPARE_KEYED)
    states = dict(await cur.fetchall())
    for item in items:
        item.state = states.get(item.job.id)


def _writes(outcome: Outcome) -> bool:
    return outcome.write is not None or bool(outcome.rows)


async def _write_one(conn: psycopg.AsyncConnection, item: Finished) -> None:
    tx = JobTransaction(conn, item.job)
    if item.outcome.write is not None:
        await item.outcome.write(tx)
    if item.outcome.rows:
        tx.copy_rows_later(item.outcome.rows)
    await tx.deferred.flush(conn)


# Mid-pipeline the server waits for the client's next message in state 'active', where
# idle_in_transaction_session_timeout does not apply: a partition striking there would keep the
# group's row locks (its jobs out of the rescuer's reach) for as long as the TCP peer seems alive.
# PostgreSQL 17+ bounds it with transaction_timeout, set for this transaction only, queued in the
# pipeline (no round trip of its own).
_BOUND = "SELECT set_config('transaction_timeout', %s, true)"


async def _fast(conn: psycopg.AsyncConnection, items: list[Finished], bound_ms: int = 0) -> None:
    async with conn.transaction():
        await _apply(conn, items)
        deferred = Deferred()  # the whole group's children and rows: one COPY per target
        async with AsyncExitStack() as stack:
            # Pipeline mode from a write's first statement on: writes that only defer rows
            # (audit rows, children) leave nothing to pipeline, and leaving it costs a sync.
            entered = False

            async def enter_pipeline() -> None:
                nonlocal entered
                if not entered:
                    entered = True
                    await stack.enter_async_context(conn.pipeline())
                    if bound_ms and conn.info.server_version >= 170000:
                        await conn.execute(_BOUND, (str(bound_ms),))

            for item in items:
                if item.state is None:
                    continue
                outcome = item.outcome
                if outcome.write is not None:
                    await outcome.write(JobTransaction(conn, item.job, deferred, enter_pipeline))
                if outcome.rows:
                    deferred.add_rows(outcome.rows)
        if deferred:
            await deferred.flush(conn)


async def _unit(conn: psycopg.AsyncConnection, item: Finished) -> None:
    """One job's outcome and write, in a savepoint of its own."""
    async with conn.transaction():
        await _apply(conn, [item])
        if item.state is not None and _writes(item.outcome):
            await _write_one(conn, item)


async def _careful(conn: psycopg.AsyncConnection, items: list[Finished]) -> None:
    """One savepoint per job; a job whose write raises becomes a failed attempt whose only write
    is its outcome's `on_write_error` fallback (or nothing, if that fails too)."""
    async with conn.transaction():
        for item in items:
            try:
                await _unit(conn, item)
                continue
            except UNAVAILABLE:  # the database's fault, not the job's: the whole group is retried
                raise
            except Exception as exc:  # the job's own write failed: its savepoint is gone
                item.write_error = f"{type(exc).__name__}: {exc}".strip()
            fallback = item.outcome.on_write_error
            item.outcome = Retry(f"completion write failed: {item.write_error}")
            item.outcome.write = fallback(item.write_error) if fallback else None
            try:
                await _unit(conn, item)
            except UNAVAILABLE:
                raise
            except Exception:
                item.outcome.write = None
                await _unit(conn, item)


async def write_outcomes(conn: psycopg.AsyncConnection, items: list[Finished], *,
                         hold_limit: float = 0.0) -> list[Finished]:
    """Write a group of outcomes; returns the items (each with `state` set, None when fenced out).
    `hold_limit`: seconds the server may keep the group's transaction open (0: unbounded), for
    the stretch idle_in_transaction_session_timeout does not cover (see _BOUND)."""
    if not items:
        return items
    try:
        await _fast(conn, items, int(hold_limit * 1000))
    except UNAVAILABLE:
        raise
    except Exception as exc:
        log.warning("group commit of %d outcomes failed (%s); replaying one savepoint per job", len(items), exc)
        for item in items:
            item.state = None
        await _careful(conn, items)
    return items


async def record_outcome(conn: psycopg.AsyncConnection, job: Job, outcome: Outcome) -> str:
    """Record one attempt's outcome in the caller's open transaction and run its write.

    Raises LeaseLost when the lease no longer matches; raised inside the caller's
    `async with conn.transaction()`, that rolls back everything the transaction wrote.
    """
    item = Finished(job, outcome, 0.0)
    await _apply(conn, [item])
    if item.state is None:
        raise LeaseLost(job.id, job.attempt)
    if _writes(outcome):
        await _write_one(conn, item)
    return item.state


def _outcome_fields(item: Finished) -> dict[str, object]:
    """The structured line each outcome gets: kind, id, root, attempt, outcome, duration."""
    job, outcome = item.job, item.outcome
    fields: dict[str, object] = {
        "kind": job.kind, "job_id": job.id, "root_id": job.root_id, "attempt": job.attempt,
        "outcome": outcome.name, "state": item.state or "lease_lost",
        "duration_ms": round(item.duration_ms, 2)}
    if item.state is None:
        fields["error"] = "lease lost: outcome discarded, nothing committed"
    elif not isinstance(outcome, Complete):
        fields["error"] = outcome.error
    if outcome.traceback is not None:
        fields["traceback"] = outcome.traceback
    return fields


class GroupCommitter:
    """The worker's completer loops (a mixin of Worker): each takes every finished attempt waiting,
    up to _MAX_GROUP, and writes them in one transaction while the next group accumulates."""

    pool: AsyncConnectionPool
    _done: asyncio.Queue[Finished]
    _held: dict[int, Job]
    _wake: asyncio.Event
    hooks: Any
    lease_seconds: float
    timeouts: Any  # pgjobs.database.Timeouts
    _stopping: asyncio.Event
    _faults: dict[str, FaultLog]
    _start_backlog: Callable[[], None]
    _after_fault: Callable[[BaseException], Any]

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
        # While the database is unavailable (restarting, read-only, disk full) the group is retried
        # with backoff: the jobs stay held (heartbeated once it answers, their slots taken), and
        # the write lands when it is back unless a rescuer re-queued a job first, which fencing
        # then drops. A retried group is safe: whatever committed already is fenced out the second
        # time. Patience: ten leases, one once the worker is stopping.
        faults, delay, started = self._faults["writing outcomes"], 0.2, time.monotonic()
        while True:
            try:
                async with self.pool.connection() as conn:
                    await write_outcomes(conn, batch, hold_limit=self.timeouts.idle_in_transaction_timeout)
                faults.ok()
                break
            except UNAVAILABLE as exc:
                faults.failed(exc, delay)
                await self._after_fault(exc)
                patience = self.lease_seconds * (1 if self._stopping.is_set() else 10)
                if time.monotonic() + delay - started > patience:
                    for item in batch:
                        item.state = None  # whatever its failed attempts set: nothing committed
                    _worker_log.error("gave up writing %d outcomes after %.0fs; their leases will expire and "
                                      "be rescued", len(batch), time.monotonic() - started)
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        done, troubled = [], []
        info = _worker_log.isEnabledFor(logging.INFO)
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
        log_many(_worker_log, logging.INFO, "outcome", done)
        log_many(_worker_log, logging.WARNING, "outcome", troubled)
