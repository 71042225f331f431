"""A root family as a waterfall: one lane per job, one segment per attempt, as SVG geometry.

Each attempt's run is its enrichment_log row: it ends at created_at (the row is written when the
attempt ends) and lasts duration_ms; the part of it spent waiting for rate limiters
(limiter_wait_ms, the sum of its calls' waits, recorded since enrichment migration 0007) is drawn
as its own segment at the run's start (the waits fall anywhere in the run; their sum is exact). Before it, the lane shows the wait: from the job's creation
for the first attempt, from the previous attempt's end for a retry (its backoff). Entries of the
job's `errors` history without an audit row (snoozes, expired leases) are markers at their time.
A job still queued or running extends to now. The template draws what `layout` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

LABEL_W, PLOT_W, LANE_H, TOP = 290, 840, 22, 26
MIN_W = 2.5  # px: an attempt of a few ms must stay clickable


@dataclass
class Segment:
    kind: str  # queued | run | marker
    x: float
    w: float
    css: str
    title: str
    log_id: int | None = None
    wait_w: float = 0.0  # px of a run spent waiting for rate limiters, drawn at its start
    wait_title: str = ""


@dataclass
class Lane:
    job_id: int
    label: str
    meta: str
    y: float
    segments: list[Segment] = field(default_factory=list)


def _parse(value: Any) -> datetime | None:
    if isinstance(value, datetime) or value is None:
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def layout(lane_ids: list[int], jobs: dict[int, dict], logs: dict[int, list[dict]], now: datetime,
           selected: int | None = None) -> dict[str, Any]:
    starts, ends = [], []
    for jid in lane_ids:
        job = jobs.get(jid)
        if job:
            starts.append(job["created_at"])
            ends.append(job["finished_at"] or (now if job["state"] in ("queued", "running") else job["created_at"]))
        for row in logs.get(jid, []):
            starts.append(row["created_at"] - timedelta(milliseconds=row["duration_ms"] or 0))
            ends.append(row["created_at"])
    if not starts:
        return {"lanes": [], "width": LABEL_W + PLOT_W, "height": TOP, "ticks": []}
    t0, t1 = min(starts), max(ends + starts)
    total = max((t1 - t0).total_seconds(), 0.001)

    def x(at: datetime) -> float:
        return round(LABEL_W + PLOT_W * (at - t0).total_seconds() / total, 2)

    def bar(kind: str, start: datetime, end: datetime, css: str, title: str, log_id: int | None = None) -> Segment:
        left, right = x(start), x(max(end, start))
        return Segment(kind, left, round(max(right - left, MIN_W if kind == "run" else 0), 2), css, title, log_id)

    lanes = []
    for index, jid in enumerate(lane_ids):
        job, rows = jobs.get(jid), logs.get(jid, [])
        first = rows[0] if rows else {}
        kind = job["kind"] if job else first.get("operation", "?")
        lane = Lane(jid, f"#{jid} {kind}", (job["state"] if job else "pruned"), TOP + index * LANE_H)
        prev = job["created_at"] if job else None
        logged = set()
        for row in rows:
            end = row["created_at"]
            start = end - timedelta(milliseconds=row["duration_ms"] or 0)
            if prev is not None and start > prev:
                what = "queued" if not logged else "waiting to retry"
                gap = bar("queued", prev, start, "queued", f"{what}: {(start - prev).total_seconds():.2f} s")
                lane.segments.append(gap)
            status = (row["status"] or "").lower()
            run = bar("run", start, end, f"seg st-{status}" + (" selected" if row["id"] == selected else ""),
                      f"attempt {row['attempt']}: {row['status']} in {row['duration_ms']} ms", row["id"])
            waited = row.get("limiter_wait_ms") or 0
            if waited > 0:
                run.wait_w = round(min(run.w, PLOT_W * waited / 1000 / total), 2)
                run.wait_title = f"attempt {row['attempt']}: {waited} ms waiting for the rate limiter"
            lane.segments.append(run)
            logged.add(row["attempt"])
            prev = end
        for entry in (job or {}).get("errors") or []:
            at = _parse(entry.get("at")) if isinstance(entry, dict) else None
            if at is not None and entry.get("attempt") not in logged:
                lane.segments.append(Segment("marker", x(at), 0, "marker",
                                             f"attempt {entry.get('attempt')}: {entry.get('outcome')}: {entry.get('error')}"))
        if job and job["state"] in ("queued", "running"):
            begin = job["attempted_at"] if job["state"] == "running" and job["attempted_at"] else (prev or job["created_at"])
            if job["state"] == "queued" and prev is not None and now > prev:
                lane.segments.append(bar("queued", prev, now, "queued", "queued: waiting for a worker"))
            elif job["state"] == "running":
                lane.segments.append(bar("run", begin, now, "seg st-running", f"attempt {job['attempt']}: running"))
        lanes.append(lane)
    ticks = [{"x": round(LABEL_W + PLOT_W * i / 4, 2), "label": f"+{total * i / 4:.2f} s"} for i in range(5)]
    return {"lanes": lanes, "width": LABEL_W + PLOT_W + 40, "height": TOP + len(lanes) * LANE_H + 6,
            "ticks": ticks, "t0": t0, "total": total, "label_w": LABEL_W, "lane_h": LANE_H}
