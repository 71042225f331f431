"""Periodic jobs: cron slots (croniter) and the scheduler every worker runs beside its claim loop.

Exactly one job per slot, however many workers run, by construction: a worker enqueues slot S of a
schedule only inside the transaction whose conditional UPDATE moved the schedule's `last_slot` in
pgjobs.schedules up to S (`WHERE last_slot IS NULL OR last_slot < S`). Two workers racing for S
serialise on the row lock; the second re-reads the row, finds last_slot = S and updates nothing, so
it enqueues nothing. The slot's job is enqueued on that connection, in that transaction: either the
slot is taken and its job exists, or neither. The job's dedupe key names the slot
(`pgjobs:periodic:APP:NAME:2026-01-01T03:00:00Z`), so every job says which slot it ran for.

Catch-up rule (pgjobs.app.Periodic repeats it for users): slots that passed while no worker ran are
not replayed one by one; the most recent of them is enqueued once, when a worker starts. A running
scheduler that falls behind (a stalled process or database) enqueues each slot it passed, oldest
first, up to MAX_CATCH_UP of them (beyond that, only the newest). A schedule seen for the first time,
or whose cron changed, starts with its next slot. Slots are reckoned in UTC, on the database's clock.

Each worker's scheduler sleeps until the next slot of its schedules (no polling), wakes, and tries
the slots due since its previous pass; `stop()` ends it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Callable, Sequence

import psycopg
from croniter import croniter
from psycopg_pool import AsyncConnectionPool

from pgjobs.errors import ConfigError
from pgjobs.queue.jobs import Enqueued, JobSpec, enqueue_async
from pgjobs.sqlfiles import load_queries

P = load_queries("queue/periodic.sql")
MAX_CATCH_UP = 100  # slots a running scheduler that fell behind enqueues on its next pass, at most
_MAX_SLEEP = 300.0  # seconds: a long sleep is cut into these (the database's clock is re-read)
_WAKE_LATE = 0.002  # seconds past the slot: wake after it on the database's clock, not just before

log = logging.getLogger("pgjobs.periodic")


@dataclass(frozen=True)
class Cron:
    """A cron expression: 5 fields (minute hour day month weekday), 6 with seconds last, or an alias
    such as @daily. Times are UTC."""

    expression: str

    @classmethod
    def parse(cls, expression: str, *, what: str) -> "Cron":
        """The expression, checked: ConfigError naming `what` if croniter refuses it or it never fires."""
        text = " ".join(str(expression).split())
        if not text.startswith("@") and len(text.split()) not in (5, 6):
            raise ConfigError(f"{what}: cron {expression!r} needs 5 fields, or 6 with seconds last")
        if not croniter.is_valid(text):
            raise ConfigError(f"{what}: invalid cron {expression!r}")
        cron = cls(text)
        try:
            cron.after(datetime.now(timezone.utc))
        except Exception:  # croniter's CroniterBadDateError: e.g. 30 February
            raise ConfigError(f"{what}: cron {expression!r} never fires") from None
        return cron

    def after(self, moment: datetime) -> datetime:
        """The first slot strictly after `moment`."""
        return croniter(self.expression, moment.astimezone(timezone.utc)).get_next(datetime)

    def latest(self, upto: datetime) -> datetime:
        """The newest slot at or before `upto`."""
        upto = upto.astimezone(timezone.utc)
        before = croniter(self.expression, upto).get_prev(datetime)  # strictly before upto
        exact = self.after(before)
        return exact if exact <= upto else before

    def between(self, after: datetime, upto: datetime, limit: int) -> list[datetime]:
        """Slots in (after, upto], oldest first, at most `limit` of them."""
        slots: list[datetime] = []
        it = croniter(self.expression, after.astimezone(timezone.utc))
        while len(slots) < limit:
            slot = it.get_next(datetime)
            if slot > upto:
                break
            slots.append(slot)
        return slots


@dataclass(frozen=True)
class Schedule:
    """One periodic job as the scheduler runs it: whose it is, when, and the job each slot enqueues."""

    app: str  # the app that declares it: with `name`, the schedule's key in pgjobs.schedules
    name: str
    cron: Cron
    job: JobSpec

    def dedupe_key(self, slot: datetime) -> str:
        return f"pgjobs:periodic:{self.app}:{self.name}:{slot.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%SZ}"

    def spec_for(self, slot: datetime) -> JobSpec:
        options = {f.name: getattr(self.job, f.name) for f in fields(JobSpec)}
        return JobSpec(**options | {"dedupe_key": self.dedupe_key(slot)})


@dataclass(frozen=True)
class SlotEnqueued:
    schedule: Schedule
    slot: datetime
    job: Enqueued


def _params(schedule: Schedule) -> dict[str, str]:
    return {"app": schedule.app, "name": schedule.name, "cron": schedule.cron.expression,
            "kind": schedule.job.kind}


async def enqueue_slot(conn: psycopg.AsyncConnection, schedule: Schedule, slot: datetime) -> Enqueued | None:
    """Take `slot` of `schedule` and enqueue its job, in one transaction; None when the slot was
    already taken (by this or another worker), precedes the schedule, or is not yet due."""
    async with conn.transaction():
        cur = await conn.execute(P["take_slot"], _params(schedule) | {"slot": slot})
        if await cur.fetchone() is None:
            return None
        spec = schedule.spec_for(slot)
        options = {f.name: getattr(spec, f.name) for f in fields(JobSpec) if f.name not in ("kind", "payload")}
        job = await enqueue_async(conn, spec.kind, spec.payload, **options)
        await conn.execute(P["record_slot_job"], {"app": schedule.app, "name": schedule.name, "job_id": job.id})
    return job


class Scheduler:
    """Enqueues the due slots of `schedules`, sleeping in between; every worker runs one.

    `run()` records the schedules (`sync`), then loops: one pass (`run_due`), sleep until the next
    slot, until `stop()`. A burst worker calls `sync` and `run_due` once instead. `on_enqueued` is
    called with each SlotEnqueued (tests, embedding code)."""

    def __init__(self, pool: AsyncConnectionPool, schedules: Sequence[Schedule], *,
                 max_catch_up: int = MAX_CATCH_UP,
                 on_enqueued: Callable[[SlotEnqueued], None] | None = None) -> None:
        keys = [(s.app, s.name) for s in schedules]
        if len(set(keys)) != len(keys):
            raise ConfigError("two periodic jobs share an app and a name")
        self.pool = pool
        self.schedules = list(schedules)
        self.max_catch_up = max_catch_up
        self.on_enqueued = on_enqueued
        self.passes = 0  # completed passes (tests check the scheduler sleeps instead of polling)
        self._seen: datetime | None = None  # the database's clock at the previous pass
        self._synced = False
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """End run() (at once if it sleeps; after the slot it is taking, if it is taking one)."""
        self._stopping.set()

    async def sync(self) -> None:
        """Record the schedules in pgjobs.schedules (new ones, and changed crons, count from now)."""
        async with self.pool.connection() as conn:
            async with conn.transaction():
                for schedule in self.schedules:
                    await conn.execute(P["sync_schedule"], _params(schedule))
        self._synced = True

    async def run_due(self, now: datetime | None = None) -> list[SlotEnqueued]:
        """One pass: take and enqueue every slot due since the previous pass (on the first pass, the
        newest slot passed, per the catch-up rule); returns what this worker enqueued. `now`: the
        database's clock unless given (tests replay passes in the past; a slot ahead of the
        database's clock is never taken)."""
        async with self.pool.connection() as conn:
            if now is None:
                cur = await conn.execute(P["clock"])
                (now,) = await cur.fetchone()
            done: list[SlotEnqueued] = []
            for schedule in self.schedules:
                for slot in self._due(schedule.cron, now):
                    job = await enqueue_slot(conn, schedule, slot)
                    if job is None:
                        continue
                    done.append(SlotEnqueued(schedule, slot, job))
                    log.info("periodic job enqueued", extra={
                        "app": schedule.app, "schedule": schedule.name, "kind": schedule.job.kind,
                        "slot": slot.isoformat(), "job_id": job.id})
                    if self.on_enqueued:
                        self.on_enqueued(done[-1])
        self._seen = now
        self.passes += 1
        return done

    def _due(self, cron: Cron, now: datetime) -> list[datetime]:
        if self._seen is not None:
            slots = cron.between(self._seen, now, self.max_catch_up + 1)
            if len(slots) <= self.max_catch_up:
                return slots
        return [cron.latest(now)]

    def _next_wait(self) -> float:
        """Seconds from the previous pass to the next slot of any schedule."""
        assert self._seen is not None
        nearest = min(schedule.cron.after(self._seen) for schedule in self.schedules)
        return min((nearest - self._seen).total_seconds() + _WAKE_LATE, _MAX_SLEEP)

    async def run(self) -> None:
        if not self.schedules:
            return
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                if not self._synced:
                    await self.sync()
                await self.run_due()
                wait, backoff = self._next_wait(), 0.1
            except psycopg.Error as exc:
                # The database went away (or refused a statement): keep the worker up and try again;
                # a slot missed meanwhile is taken late, once, as the catch-up rule says.
                if isinstance(exc, psycopg.OperationalError):
                    log.warning("periodic scheduler: database unavailable (%s); retrying in %.1fs",
                                type(exc).__name__, backoff)
                else:
                    log.exception("periodic scheduler: a pass failed; retrying in %.1fs", backoff)
                wait, backoff = backoff * random.uniform(0.8, 1.2), min(backoff * 2, 5.0)
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=wait)
            except TimeoutError:
                pass
