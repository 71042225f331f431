"""Global rate limiters stored in PostgreSQL: one row per limiter, the next free slot in it.

`acquire(name)` reserves the limiter's next slot in one atomic upsert and sleeps until it comes,
so calls are spaced `interval` apart across every process and host sharing the database: there
is no window edge to burst at. Count what hits the API: acquire once per HTTP call, not per job.
`penalize(name, seconds)` pushes every caller's next slot out when the upstream says Retry-After.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator, Mapping

from psycopg_pool import AsyncConnectionPool

from pgjobs.queue.errors import QueueError
from pgjobs.queue.jobs import Q


class RateLimits:
    def __init__(self, pool: AsyncConnectionPool, intervals: Mapping[str, float]) -> None:
        """`intervals`: seconds between calls per limiter name (see Settings.rate_limit_intervals)."""
        self._pool = pool
        self._intervals = dict(intervals)

    def interval(self, name: str) -> float:
        try:
            return self._intervals[name]
        except KeyError:
            raise QueueError(f"no rate limit named {name!r} is configured (PGJOBS_RATE_LIMITS)") from None

    async def reserve(self, name: str) -> float:
        """Reserve the next slot; return the seconds until it (0 when it is now)."""
        params = {"name": name, "interval_ms": self.interval(name) * 1000.0}
        async with self._pool.connection() as conn:
            cur = await conn.execute(Q["rate_limit_acquire"], params)
            (wait,) = await cur.fetchone()
        return float(wait)

    async def acquire(self, name: str) -> float:
        """Wait for this limiter's next slot; return how long we waited."""
        wait = await self.reserve(name)
        if wait > 0:
            await asyncio.sleep(wait)
        return wait

    async def penalize(self, name: str, seconds: float) -> None:
        params = {"name": name, "interval_ms": self.interval(name) * 1000.0, "seconds": max(0.0, seconds)}
        async with self._pool.connection() as conn:
            await conn.execute(Q["rate_limit_penalize"], params)

    @asynccontextmanager
    async def slot(self, name: str) -> AsyncIterator[None]:
        """`async with limits.slot("musicbrainz"): await client.get(...)`."""
        await self.acquire(name)
        yield
