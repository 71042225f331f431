"""Global rate limiters stored in PostgreSQL: one row per limiter, the earliest next call in it.

`acquire(name)` takes the limiter for one call (sql/queue/limits.sql): one atomic upsert grants a
send moment `interval` + a small send margin after the previous call's, at most TAKE_LEAD ahead,
or says how long to wait before asking again; the caller sleeps to that moment. `take(name)`
returns the grant as a `Taken`, whose `confirm()` right before the bytes go out moves the next
call out when this one is late, so calls are spaced from the actual sends across every process
and host sharing the database (issue 18: slots 1.000 s apart, sends 0.944 s).
Count what hits the API: acquire once per HTTP call, not per job (the enrichment providers take
and confirm from an httpx trace hook).
`penalize(name, seconds)` pushes every caller's next call out when the upstream says Retry-After.

Each granted take counts in its minute's row of pgjobs.rate_limit_usage (same statement), which the
dashboard reads for "how busy over the last hour". The time a job's attempt spent waiting for
limiters adds up in its `LimiterWaits` (`attempt_waits()`, started by each JobContext), which the
handler reads as `ctx.limiter_wait`. `observe_lag(name, seconds)`, when set (metrics), gets each
confirmed send's lateness after its granted slot.
"""

from __future__ import annotations

import asyncio
import random
import time
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import AsyncIterator, Callable, Mapping

from psycopg_pool import AsyncConnectionPool

from pgjobs.queue.bounded import bounded
from pgjobs.queue.errors import QueueError
from pgjobs.sqlfiles import load_queries

L = load_queries("queue/limits.sql")

# Between the planned send and the request reaching the API lie the caller's wake-up, its loop and
# the HTTP send. Lateness past _CONFIRM_AFTER is confirmed onto the next call (Taken.confirm); the
# margin covers what is left and what no caller can see (the API's own scheduling): 1.5 % at 1/s.
# Measured: tests/enrichment/e2e/test_chain_cli.py, four workers, 40 calls, load ~2.5 on 2 cores:
# no two MusicBrainz arrivals < 1.0 s apart, >= 0.97 calls/s.
SEND_MARGIN = 0.015
# How late a send may be after its planned moment before it is confirmed: the rest of the margin
# (5 ms) is left for the API's own scheduling of what it records.
_CONFIRM_AFTER = SEND_MARGIN - 0.005
TAKE_LEAD = 0.1  # seconds a take may be granted ahead of its send (at most half the interval)
_CONFIRM_ROUNDS = 4
STATEMENT_TIMEOUT = 10.0  # seconds: a stalled limiter row never holds a caller forever


class LimiterWaits:
    """The seconds one job attempt waited for rate limiters (every call's wait, summed) and calls."""

    __slots__ = ("seconds", "calls")

    def __init__(self) -> None:
        self.seconds, self.calls = 0.0, 0

    def add(self, seconds: float) -> None:
        self.seconds += seconds
        self.calls += 1


# A ContextVar: concurrent jobs share one RateLimits, but each runs in its own task (context copy);
# tasks a handler starts copy its context, so their waits add to the same attempt's LimiterWaits.
_attempt_waits: ContextVar[LimiterWaits | None] = ContextVar("pgjobs_limiter_waits", default=None)


def attempt_waits() -> LimiterWaits:
    """Start counting limiter waits for the attempt running in this context (JobContext does)."""
    waits = LimiterWaits()
    _attempt_waits.set(waits)
    return waits


class Taken:
    """One call let through by `RateLimits.take`; `await confirm()` right before its bytes go out."""

    __slots__ = ("limits", "name", "next_slot", "at", "waited")

    def __init__(self, limits: "RateLimits", name: str, next_slot: datetime, at: float, waited: float) -> None:
        self.limits, self.name = limits, name
        self.next_slot = next_slot  # the row's next_slot as this take set it
        # The planned send, on time.monotonic(), reckoned from when the take was asked for: never
        # later than the database's plan, so lateness is never underestimated.
        self.at = at
        self.waited = waited

    async def confirm(self) -> None:
        """The call is about to go out. Within `confirm_after` of its planned moment: nothing to
        do (the rest of the margin covers the API's own scheduling). Later (a busy loop, a new HTTP
        connection): move the next call to an interval after now, so the spacing holds from this
        send; and if another call was taken meanwhile (possible only past interval + margin), this
        take is stale: wait for a fresh one. A confirmation whose reply itself came back late is
        confirmed again (at most _CONFIRM_ROUNDS times: a machine that lags that much every time
        gets the margin only)."""
        limits = self.limits
        if limits.observe_lag is not None:
            limits.observe_lag(self.name, max(0.0, time.monotonic() - self.at))
        for _ in range(_CONFIRM_ROUNDS):
            if time.monotonic() - self.at <= limits.confirm_after:
                return
            next_slot, asked = await limits._confirm(self)
            if next_slot is not None:
                self.next_slot, self.at = next_slot, asked
            else:
                fresh = await limits.take(self.name)
                self.next_slot, self.at, self.waited = fresh.next_slot, fresh.at, self.waited + fresh.waited


class RateLimits:
    def __init__(self, pool: AsyncConnectionPool, intervals: Mapping[str, float], *,
                 margin: float = SEND_MARGIN,
                 observe: Callable[[str, float], None] | None = None) -> None:
        """`intervals`: seconds between calls per limiter name (see Settings.rate_limit_intervals);
        `observe(name, waited_seconds)` is called after each acquire (metrics)."""
        self._pool = pool
        self._intervals = dict(intervals)
        self.margin = margin
        self.confirm_after = max(0.0, margin - (SEND_MARGIN - _CONFIRM_AFTER))
        self._margin_ms = margin * 1000.0
        self.observe = observe
        self.observe_lag: Callable[[str, float], None] | None = None  # (name, send lateness in seconds)

    @property
    def intervals(self) -> dict[str, float]:
        return dict(self._intervals)

    def interval(self, name: str) -> float:
        try:
            return self._intervals[name]
        except KeyError:
            raise QueueError(f"no rate limit named {name!r} is configured (PGJOBS_RATE_LIMITS)") from None

    async def try_take(self, name: str) -> tuple[float, datetime | None, float]:
        """Take the limiter now if its next call is due: (0.0, its new next_slot, when it was
        asked); else (the seconds until it is due, None, when it was asked). "When": the
        time.monotonic() just before the statement went out (after any wait for a pool
        connection): the new next_slot was set after it.

        One autocommit statement, no transaction around it: the time from the take to the send
        is what the margin must cover, so it is kept to one round trip (a row lock on one row is
        its only wait)."""
        interval = self.interval(name)
        params = {"name": name, "interval_ms": interval * 1000.0, "margin_ms": self._margin_ms,
                  "lead_ms": min(TAKE_LEAD, interval / 2) * 1000.0}
        async with self._pool.connection() as conn:
            asked = time.monotonic()
            cur = await conn.execute(L["rate_limit_take"], params)
            row = await cur.fetchone()
        # No row: a concurrent first call created the limiter after this statement's snapshot.
        return (float(row[0]), row[1], asked) if row is not None else (0.001, None, asked)

    async def acquire(self, name: str) -> float:
        """Wait until this call may go out, and take it; return how long we waited."""
        return (await self.take(name)).waited

    async def take(self, name: str) -> Taken:
        """Wait until this call may go out, and take it; `confirm()` the result right before sending."""
        started = time.monotonic()
        while True:
            wait, next_slot, asked = await self.try_take(name)
            if next_slot is not None:
                # Granted for a send `wait` from now: sleep from the reply (never early), judge
                # lateness from the ask (never too lenient).
                if wait > 0:
                    await asyncio.sleep(wait)
                asked += wait
                break
            # Callers that asked at once would all wake at once: spread them by a few ms so the
            # row sees a queue, not a stampede (the first one through wins; the rest ask again).
            await asyncio.sleep(wait + random.uniform(0, 0.002))
        now = time.monotonic()
        if self.observe is not None:
            self.observe(name, now - started)
        waits = _attempt_waits.get()
        if waits is not None:
            waits.add(now - started)
        return Taken(self, name, next_slot, asked, now - started)

    async def _confirm(self, taken: Taken) -> tuple[datetime | None, float]:
        """Move the next call out to an interval after now: (the new next_slot, the monotonic time
        just before the statement went out); None when another call was taken since `taken`."""
        params = {"name": taken.name, "taken_next": taken.next_slot}
        async with self._pool.connection() as conn:
            asked = time.monotonic()
            cur = await conn.execute(L["rate_limit_confirm"], params)
            row = await cur.fetchone()
        return (row[0] if row is not None else None), asked

    async def penalize(self, name: str, seconds: float) -> None:
        params = {"name": name, "interval_ms": self.interval(name) * 1000.0, "seconds": max(0.0, seconds)}
        async with self._pool.connection() as conn, bounded(conn, STATEMENT_TIMEOUT):
            await conn.execute(L["rate_limit_penalize"], params)

    @asynccontextmanager
    async def slot(self, name: str) -> AsyncIterator[None]:
        """`async with limits.slot("musicbrainz"): await client.get(...)`."""
        await self.acquire(name)
        yield
