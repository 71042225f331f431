"""Global rate limiters stored in PostgreSQL: one row per limiter, the earliest next call in it.

`acquire(name)` takes the limiter at the moment of sending (sql/queue/limits.sql): one atomic
upsert lets the call through only when `interval` has passed since the previous call *went
through*, and otherwise says how long to wait, after which the caller asks again. So calls are
spaced `interval` (+ a small send margin) apart across every process and host sharing the
database, measured from the actual sends: a caller that wakes late pushes the next call out
instead of leaving the next slot closer to its own (issue 18: slots 1.000 s apart, sends 0.944 s).
Count what hits the API: acquire once per HTTP call, not per job. When the request goes out later
than the take by more than the send margin (a busy loop, a new connection), `Taken.sent(at)`
pushes the next call out by the difference, so the spacing holds from the actual send.
`penalize(name, seconds)` pushes every caller's next call out when the upstream says Retry-After.
"""

from __future__ import annotations

import asyncio
import random
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import AsyncIterator, Callable, Mapping

from psycopg_pool import AsyncConnectionPool

from pgjobs.queue.bounded import bounded
from pgjobs.queue.errors import QueueError
from pgjobs.sqlfiles import load_queries

L = load_queries("queue/limits.sql")

# Between the take (in the database) and the request reaching the API lie the reply, the caller's
# loop and the HTTP send. Lateness beyond the margin is pushed onto the next call (Taken.sent);
# the margin covers what no caller can see (the reply's and the API's own scheduling: a few ms on a
# loaded 2-core machine, tests/enrichment/e2e/test_chain_cli.py, four workers). At 1/s it costs 1 %.
SEND_MARGIN = 0.010
STATEMENT_TIMEOUT = 10.0  # seconds: a stalled limiter row never holds a caller forever


@dataclass(frozen=True)
class Taken:
    """One call let through: report when it actually went out with `sent(time.monotonic())`."""

    limits: "RateLimits"
    name: str
    next_slot: datetime  # the row's next_slot as this take set it
    at: float  # time.monotonic() when the take returned
    waited: float

    async def sent(self, at: float) -> None:
        late = at - self.at
        # Within half the margin the spacing holds already, with the other half for the replies'
        # own differences; beyond it, one more statement moves the next call out.
        if late > self.limits.margin / 2:
            await self.limits._push(self, late)


class RateLimits:
    def __init__(self, pool: AsyncConnectionPool, intervals: Mapping[str, float], *,
                 margin: float = SEND_MARGIN,
                 observe: Callable[[str, float], None] | None = None) -> None:
        """`intervals`: seconds between calls per limiter name (see Settings.rate_limit_intervals);
        `observe(name, waited_seconds)` is called after each acquire (metrics)."""
        self._pool = pool
        self._intervals = dict(intervals)
        self.margin = margin
        self._margin_ms = margin * 1000.0
        self.observe = observe

    @property
    def intervals(self) -> dict[str, float]:
        return dict(self._intervals)

    def interval(self, name: str) -> float:
        try:
            return self._intervals[name]
        except KeyError:
            raise QueueError(f"no rate limit named {name!r} is configured (PGJOBS_RATE_LIMITS)") from None

    async def try_take(self, name: str) -> tuple[float, datetime | None]:
        """Take the limiter now if its next call is due: (0.0, its new next_slot); else (the
        seconds until it is due, None).

        One autocommit statement, no transaction around it: the time from the take to the send
        is what the margin must cover, so it is kept to one round trip (a row lock on one row is
        its only wait)."""
        params = {"name": name, "interval_ms": self.interval(name) * 1000.0, "margin_ms": self._margin_ms}
        async with self._pool.connection() as conn:
            cur = await conn.execute(L["rate_limit_take"], params)
            row = await cur.fetchone()
        # No row: a concurrent first call created the limiter after this statement's snapshot.
        return (float(row[0]), row[1]) if row is not None else (0.001, None)

    async def acquire(self, name: str) -> Taken:
        """Wait until this call may go out, and take it."""
        started = time.monotonic()
        while True:
            wait, next_slot = await self.try_take(name)
            if wait <= 0 and next_slot is not None:
                break
            # Callers that asked at once would all wake at once: spread them by a few ms so the
            # row sees a queue, not a stampede (the first one through wins; the rest ask again).
            await asyncio.sleep(wait + random.uniform(0, 0.002))
        now = time.monotonic()
        if self.observe is not None:
            self.observe(name, now - started)
        return Taken(self, name, next_slot, now, now - started)

    async def _push(self, taken: Taken, late: float) -> None:
        params = {"name": taken.name, "taken_next": taken.next_slot, "late_s": late}
        async with self._pool.connection() as conn:
            await conn.execute(L["rate_limit_sent"], params)

    async def penalize(self, name: str, seconds: float) -> None:
        params = {"name": name, "interval_ms": self.interval(name) * 1000.0, "seconds": max(0.0, seconds)}
        async with self._pool.connection() as conn, bounded(conn, STATEMENT_TIMEOUT):
            await conn.execute(L["rate_limit_penalize"], params)

    @asynccontextmanager
    async def slot(self, name: str) -> AsyncIterator[None]:
        """`async with limits.slot("musicbrainz"): await client.get(...)`."""
        await self.acquire(name)
        yield
