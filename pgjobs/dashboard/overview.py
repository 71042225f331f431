"""The overview page: jobs by queue and state, the oldest runnable job per queue, running leases,
finished jobs per minute and per hour, and each global rate limiter with how busy it was.

Every read is bounded at any table size (sql/queue/dashboard.sql): queued and running jobs are
counted exactly from their partial indexes; the finished states are counted among the newest
COUNT_CAP jobs while the table is that small, and estimated beyond (extended statistics); the
throughput charts read jobs_finished_idx, and only for the minutes this process has not kept.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from pgjobs.dashboard.server import reading, render, runtime
from pgjobs.sqlfiles import load_queries

Q = load_queries("queue/dashboard.sql")
STATES = ("queued", "running", "succeeded", "failed", "cancelled")
COUNT_CAP = 100_000
MINUTE = timedelta(minutes=1)
# A minute is final (kept, never asked for again) once it ended this long ago: a completion stamps
# finished_at with its transaction's start, and a group commit lasts milliseconds.
SETTLED = timedelta(minutes=2)


class Throughput:
    """Finished jobs per minute over the last day, kept in memory per dashboard process: each look
    asks the database only for the minutes since the last settled one (the first look reads the
    whole day through jobs_finished_idx). Settled minutes are what was finished then, as first
    seen: a job retried later (finished_at cleared) still counts where it finished."""

    def __init__(self) -> None:
        self.minutes: dict[datetime, dict[str, int]] = {}
        self.settled_until: datetime | None = None  # minutes before this are in self.minutes

    async def rows(self, cur: Any, day_since: datetime, now: datetime) -> list[dict[str, Any]]:
        since = self.settled_until if self.settled_until and self.settled_until > day_since else day_since
        await cur.execute(Q["throughput"], {"since": since, "bucket": "1 minute"})
        fresh = await cur.fetchall()
        settled = (now - SETTLED).replace(second=0, microsecond=0)
        if settled > since:
            for row in fresh:
                if row["at"] < settled:
                    self.minutes[row["at"]] = {"succeeded": row["succeeded"], "failed": row["failed"]}
            self.settled_until = settled
        for at in [at for at in self.minutes if at < day_since]:
            del self.minutes[at]
        kept = [{"at": at, **counts} for at, counts in self.minutes.items() if at < since]
        return kept + list(fresh)


def bars(rows: list[dict[str, Any]], since: datetime, bucket: timedelta, count: int) -> dict[str, Any]:
    """Throughput rows as SVG bar geometry: `count` buckets of `bucket` from `since`."""
    slots = [{"at": since + i * bucket, "succeeded": 0, "failed": 0} for i in range(count)]
    for row in rows:
        index = int((row["at"] - since) / bucket)
        if 0 <= index < count:
            slots[index]["succeeded"] += row["succeeded"]
            slots[index]["failed"] += row["failed"]
    peak = max([s["succeeded"] + s["failed"] for s in slots] + [1])
    width, height = 600, 80
    step = width / count
    for i, slot in enumerate(slots):
        total = slot["succeeded"] + slot["failed"]
        slot["x"] = round(i * step, 2)
        slot["w"] = max(round(step - 1, 2), 1)
        slot["h_ok"] = round(height * slot["succeeded"] / peak, 2)
        slot["h_fail"] = round(height * slot["failed"] / peak, 2)
        slot["y_ok"] = round(height - slot["h_ok"], 2)
        slot["y_fail"] = round(height - slot["h_ok"] - slot["h_fail"], 2)
        slot["total"] = total
    return {"slots": slots, "peak": peak, "width": width, "height": height,
            "succeeded": sum(s["succeeded"] for s in slots), "failed": sum(s["failed"] for s in slots)}


async def counts(cur: Any) -> tuple[dict[str, dict[str, int]], str]:
    """Jobs by queue and state, and how the finished states were counted: "exact", "estimated"
    (extended statistics x the row estimate) or "capped" (among the newest COUNT_CAP jobs)."""
    await cur.execute(Q["counts_active"])
    active = await cur.fetchall()
    await cur.execute(Q["table_rows"])
    rows = (await cur.fetchone())["n"]
    finished: list[dict[str, Any]] = []
    how = "exact"
    if rows > COUNT_CAP:
        await cur.execute(Q["counts_estimated"])
        estimated: dict[tuple[str, str], float] = {}
        for stat in await cur.fetchall():  # one per partition of jobs_finished
            how = "estimated"
            queue_at, state_at = stat["attnames"].index("queue"), stat["attnames"].index("state")
            for vals, freq in zip(stat["vals"], stat["freqs"]):
                key = (vals[queue_at], vals[state_at])
                estimated[key] = estimated.get(key, 0.0) + freq * stat["n"]
        finished = [{"queue": queue, "state": state, "n": round(n)} for (queue, state), n in estimated.items()]
    if how == "exact":
        await cur.execute(Q["counts_capped"], {"cap": COUNT_CAP})
        finished = await cur.fetchall()
        if sum(row["n"] for row in finished) >= COUNT_CAP:
            how = "capped"
    table: dict[str, dict[str, int]] = {}
    for row in finished:
        if row["state"] not in ("queued", "running"):
            table.setdefault(row["queue"], {})[row["state"]] = row["n"]
    for row in active:
        table.setdefault(row["queue"], {})[row["state"]] = row["n"]
    return dict(sorted(table.items())), how


def limiter_view(limiter: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A limiter row with what the page shows: callers waiting, capacity and busy share of the last
    hour, and its calls per minute as bar geometry."""
    interval = float(limiter["interval_ms"]) or 1.0
    limiter["waiting"] = int(float(limiter["ahead_ms"]) // interval)
    limiter["capacity_hour"] = int(3600_000 / interval)
    limiter["busy"] = min(1.0, limiter["calls_hour"] * interval / 3600_000)
    per_minute = max(1, int(60_000 / interval))
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=59)
    bars_ = []
    for epoch, calls in limiter.get("minutes") or []:
        index = int((datetime.fromtimestamp(epoch, timezone.utc) - start) / MINUTE)
        if 0 <= index < 60:
            height = round(20 * min(1.0, calls / per_minute), 2)
            bars_.append({"x": index * 2, "h": height, "y": round(20 - height, 2), "calls": calls})
    limiter["bars"] = bars_
    return limiter


async def overview(request: Request) -> Response:
    now = datetime.now(timezone.utc)
    hour_since = (now - timedelta(hours=1)).replace(second=0, microsecond=0) + MINUTE
    day_since = (now - timedelta(days=1)).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    throughput = runtime(request).extra.setdefault("throughput", Throughput())
    async with reading(request) as cur:
        table, how = await counts(cur)
        await cur.execute(Q["oldest_runnable"])
        oldest = await cur.fetchall()
        await cur.execute(Q["running"], {"limit": 20})
        running = await cur.fetchall()
        minutes = await throughput.rows(cur, day_since, now)  # one read for both charts
        await cur.execute(Q["limiters"])
        limiters = [limiter_view(row, now) for row in await cur.fetchall()]
    hour = bars(minutes, hour_since, MINUTE, 60)
    day = bars(minutes, day_since, timedelta(hours=1), 24)
    return render(request, "overview.html", counts=table, states=STATES, how=how, cap=COUNT_CAP, oldest=oldest,
                  running=running, hour=hour, day=day, limiters=limiters, now=now)
