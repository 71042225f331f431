"""What the rate limiters record for the dashboard and the metrics: each granted take counts in its
minute's usage row (old rows pruned by the takes), an attempt's waits add up in its JobContext,
and a confirmed send's lateness after its slot reaches the observer."""

from __future__ import annotations

import asyncio

from pgjobs.database import open_pool
from pgjobs.queue import RateLimits
from pgjobs.queue.context import JobContext


async def test_each_take_counts_in_its_minute_and_old_rows_go(fresh_dsn):
    pool = await open_pool(fresh_dsn, max_size=2)
    limits = RateLimits(pool, {"api": 0.02})
    try:
        async with pool.connection() as conn:
            await conn.execute("INSERT INTO pgjobs.rate_limit_usage (name, minute, calls) VALUES "
                               "('api', date_trunc('minute', now()) - interval '3 days', 7), "
                               "('other', date_trunc('minute', now()) - interval '3 days', 5)")
        for _ in range(5):
            await limits.take("api")
        async with pool.connection() as conn:
            rows = await (await conn.execute(
                "SELECT name, calls, minute > now() - interval '2 minutes' FROM pgjobs.rate_limit_usage "
                "ORDER BY name, minute")).fetchall()
        counted = sum(calls for name, calls, recent in rows if name == "api" and recent)
        assert counted == 5
        assert [r for r in rows if r[0] == "api" and not r[2]] == []  # the 3-day-old row of 'api' went
        assert ("other", 5, False) in rows  # another limiter's rows are its own takes' business
    finally:
        await pool.close()


async def test_an_attempts_limiter_waits_add_up_in_its_context(fresh_dsn):
    pool = await open_pool(fresh_dsn, max_size=4)
    limits = RateLimits(pool, {"api": 0.05})
    try:
        async def attempt(calls: int) -> tuple[float, int]:
            ctx = JobContext(job=None, pool=pool, limits=limits, worker_id="w")  # as the executor makes it
            # Calls from tasks the handler starts count too (they copy its context).
            await asyncio.gather(*(limits.take("api") for _ in range(calls)))
            return ctx.limiter_wait, ctx.limiter_waits.calls

        waited, calls = await asyncio.create_task(attempt(4))
        assert calls == 4
        # Four concurrent callers at 20/s: the last waits about three intervals, the others less.
        assert 0.1 < waited < 2.0
        fresh, none = await asyncio.create_task(attempt(0))
        assert (fresh, none) == (0.0, 0)  # a new attempt starts from zero
    finally:
        await pool.close()


async def test_a_late_send_reports_its_lag_after_the_granted_slot(fresh_dsn):
    pool = await open_pool(fresh_dsn, max_size=2)
    limits = RateLimits(pool, {"api": 0.5})
    lags: list[tuple[str, float]] = []
    limits.observe_lag = lambda name, seconds: lags.append((name, seconds))
    try:
        taken = await limits.take("api")
        await asyncio.sleep(0.04)  # what lies between the grant and the send: the lag measured
        await taken.confirm()
        assert len(lags) == 1 and lags[0][0] == "api"
        assert 0.04 <= lags[0][1] < 1.0
    finally:
        await pool.close()
