"""The queue's pages: the jobs list, a job's detail with retry/cancel, and the jump box (the
overview is in pgjobs.dashboard.overview). Every app's dashboard has them.

State lives in the query string; lists are keyset-paged and time-bounded (see sql/queue/dashboard.sql).
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from pgjobs.dashboard import overview
from pgjobs.dashboard.server import Dashboard, NarrowTheFilter, fetch, reading, render, runtime, url
from pgjobs.sqlfiles import load_queries

Q = load_queries("queue/dashboard.sql")
STATES = ("queued", "running", "succeeded", "failed", "cancelled")
WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}
PAGE = 50
# Ids one jobs-list page reads at most (from `before` down): a filter that matches little offers
# "search older" instead of walking the table. Failed/cancelled filters read jobs_failed_idx, whose
# entries are few, so they may reach further down.
SCAN_IDS = 20_000
SCAN_IDS_FAILED = 1_000_000
BULK_CAP = 1000  # jobs one "retry/cancel all matching" may touch
BULK_STATES = {"retry": ("failed", "cancelled", "succeeded"), "cancel": ("queued", "running")}


class BadFilter(ValueError):
    pass


def window(request: Request, default: str = "24h") -> tuple[str, datetime, datetime]:
    """The page's time window: ?window=1h|24h|7d|30d (default 24h), ending now."""
    name = request.query_params.get("window") or default
    if name not in WINDOWS:
        name = default
    until = datetime.now(timezone.utc)
    return name, until - WINDOWS[name], until + timedelta(seconds=1)


def int_param(request: Request, name: str) -> int | None:
    raw = (request.query_params.get(name) or "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadFilter(f"{name} must be a whole number, not {raw!r}") from None


def job_filters(request: Request) -> dict[str, Any]:
    q = request.query_params
    state = q.get("state") or None
    if state is not None and state not in STATES:
        raise BadFilter(f"state must be one of {', '.join(STATES)}")
    payload = None
    if q.get("payload"):
        key, sep, value = q["payload"].partition(":")
        if not sep or not key.strip():
            raise BadFilter("payload filter: expected key:value")
        try:
            parsed: Any = json.loads(value)
        except ValueError:
            parsed = value
        payload = json.dumps({key.strip(): parsed})
    return {"state": state, "queue": q.get("queue") or None, "kind": q.get("kind") or None,
            "priority": int_param(request, "priority"), "id": int_param(request, "id"),
            "root_id": int_param(request, "root"), "payload": payload}


async def jobs(request: Request) -> Response:
    name, since, until = window(request)
    try:
        filters = job_filters(request)
        before = int_param(request, "before")
    except BadFilter as exc:
        return render(request, "jobs.html", status_code=400, error=str(exc), rows=[], window=name,
                      windows=WINDOWS, states=STATES, q=request.query_params, next_url=None)
    async with reading(request) as cur:
        floor = None
        if filters["id"] is None and filters["root_id"] is None:  # else an index finds the few rows
            top = before
            if top is None:
                await cur.execute(Q["top_id"])
                top = (await cur.fetchone())["id"]
            floor = max(top - (SCAN_IDS_FAILED if filters["state"] in ("failed", "cancelled") else SCAN_IDS), 0)
        await cur.execute(Q["jobs"], {**filters, "since": since, "until": until, "before": before, "floor": floor,
                                      "limit": PAGE + 1})
        rows = await cur.fetchall()
        next_url, searched = None, None
        if len(rows) > PAGE:
            rows = rows[:PAGE]
            next_url = url(request, "/jobs", **(dict(request.query_params) | {"before": rows[-1]["id"]}))
        elif floor:  # fewer than a page between `before` and floor: offer the ids below, if in the window
            await cur.execute(Q["created_below"], {"id": floor})
            below = await cur.fetchone()
            if below is not None and below["created_at"] >= since:
                searched = floor
                next_url = url(request, "/jobs", **(dict(request.query_params) | {"before": floor}))
    bulk = None  # the preview: how many jobs "all matching" means, for the state filtered on
    action = next((a for a, states in BULK_STATES.items() if filters["state"] in states), None)
    if action and not runtime(request).read_only:
        try:
            matching = await matching_ids(request, filters, since, until)
            bulk = {"action": action, "count": len(matching), "capped": len(matching) >= BULK_CAP}
        except NarrowTheFilter:  # too many to find in time: the list still shows
            bulk = {"action": action, "count": None, "capped": True}
    return render(request, "jobs.html", rows=rows, window=name, windows=WINDOWS, states=STATES,
                  q=request.query_params, next_url=next_url, error=None, bulk=bulk, cap=BULK_CAP, searched=searched,
                  scan=f"{SCAN_IDS:,}")


async def matching_ids(request: Request, filters: dict[str, Any], since: datetime, until: datetime) -> list[int]:
    rows = await fetch(request, Q["matching_ids"], {**filters, "since": since, "until": until, "limit": BULK_CAP})
    return [r["id"] for r in rows]


async def bulk(request: Request) -> Response:
    """POST /jobs/all/retry|cancel with the list's filters: the same operation on every matching job
    (at most BULK_CAP, newest first), in one transaction."""
    from pgjobs.queue import admin

    action = request.path_params["action"]
    _, since, until = window(request)
    try:
        filters = job_filters(request)
    except BadFilter as exc:
        return render(request, "missing.html", status_code=400, what=str(exc))
    if action not in BULK_STATES or filters["state"] not in BULK_STATES[action]:
        return render(request, "missing.html", status_code=400,
                      what=f"{action} on all matching needs a state filter of {', '.join(BULK_STATES.get(action, ()))}")
    ids = await matching_ids(request, filters, since, until)
    actor = who(request)

    def run() -> int:
        done = 0
        with psycopg.connect(runtime(request).dsn) as conn:
            for job_id in ids:
                if action == "retry":
                    admin.retry(conn, job_id, reason=f"retried by {actor} (all matching)")
                    done += 1
                else:
                    done += len(admin.cancel(conn, job_id, reason=f"cancelled by {actor} (all matching)"))
        return done

    done = await asyncio.to_thread(run)
    query = {k: v for k, v in request.query_params.items() if k != "before"}
    return RedirectResponse(url(request, "/jobs", **(query | {"done": f"{action}: {done} job(s)"})), status_code=303)


async def job(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    async with reading(request) as cur:
        await cur.execute(Q["job"], {"id": job_id})
        row = await cur.fetchone()
        children = []
        if row is not None:
            await cur.execute(Q["children"], {"root_id": row["root_id"], "id": job_id, "limit": 200})
            children = await cur.fetchall()
    if row is None:
        return render(request, "missing.html", status_code=404, what=f"job {job_id}")
    attempts = attempts_of(row)
    extras = []
    for provider in runtime(request).extra.get("job_panels", []):
        extras.append(await provider(request, row, attempts))
    return render(request, "job.html", job=row, children=children, attempts=attempts, panels=extras,
                  done=request.query_params.get("done"), problem=request.query_params.get("problem"))


def attempts_of(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's errors history as one entry per attempt (outcome, error, traceback if recorded)."""
    return [dict(entry) for entry in (job.get("errors") or []) if isinstance(entry, dict)]


def who(request: Request) -> str:
    user = request.scope.get("pgjobs_user") or "anonymous"
    client = request.client.host if request.client else "?"
    return f"dashboard user {user} from {client} at {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"


async def act(request: Request) -> Response:
    """POST /jobs/{id}/retry|cancel: the same operations as `pgjobs jobs retry|cancel`."""
    from pgjobs.queue import admin

    job_id, action = request.path_params["job_id"], request.path_params["action"]
    if action not in ("retry", "cancel"):
        return render(request, "missing.html", status_code=404, what=f"action {action}")
    actor = who(request)

    def run() -> str:
        with psycopg.connect(runtime(request).dsn) as conn:
            if action == "retry":
                admin.retry(conn, job_id, reason=f"retried by {actor}")
                return "retried"
            ids = admin.cancel(conn, job_id, reason=f"cancelled by {actor}")
            return f"cancelled {len(ids)}"

    try:
        done = await asyncio.to_thread(run)
    except Exception as exc:  # JobNotFound, or a job in the wrong state: say it on the page
        from pgjobs.cli.common import one_line
        return RedirectResponse(url(request, f"/jobs/{job_id}", problem=one_line(exc)), status_code=303)
    return RedirectResponse(url(request, f"/jobs/{job_id}", done=done), status_code=303)


async def jump(request: Request) -> Response:
    """The jump box: a job id, a root id or a log-row id (`log 12`) goes straight to its page."""
    text = (request.query_params.get("q") or "").strip()
    for resolver in runtime(request).jumpers:
        target = await resolver(request, text)
        if target:
            return RedirectResponse(url(request, target), status_code=303)
    if text.isdigit():
        rows = await fetch(request, Q["job_exists"], {"id": int(text)})
        if rows and rows[0]["exists"]:
            return RedirectResponse(url(request, f"/jobs/{text}"), status_code=303)
    return render(request, "missing.html", status_code=404, what=repr(text))


async def home(request: Request) -> Response:
    return RedirectResponse(url(request, "/overview"), status_code=307)


def install(dash: Dashboard) -> None:
    dash.page("/", home, name="home")
    dash.page("/overview", overview.overview, name="overview", nav="Overview")
    dash.page("/jobs", jobs, name="jobs", nav="Jobs")
    dash.page("/jobs/{job_id:int}", job, name="job")
    dash.page("/jobs/{job_id:int}/{action}", act, name="job_action", methods=("POST",))
    dash.page("/jobs/all/{action}", bulk, name="jobs_bulk", methods=("POST",))
    dash.page("/jump", jump, name="jump")
