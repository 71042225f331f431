"""The enrichment app's dashboard pages: the roots table (rows expand in place into their family),
a root family's waterfall with its audit rows (a table, JSON and CSV), log-row permalinks, and the
audit rows beside a job's attempts on the queue's job page.

Installed through `App.add_dashboard("pgjobs.enrichment.dashboard:install")`; the SQL is in
sql/enrichment/dashboard.sql.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from uuid import UUID

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from pgjobs.dashboard import Dashboard, fetch, fragment, reading, render, url
from pgjobs.dashboard.pages import WINDOWS, BadFilter, int_param, window
from pgjobs.enrichment import waterfall
from pgjobs.sqlfiles import load_queries

Q = load_queries("enrichment/dashboard.sql")
STATUSES = ("SUCCESS", "PARTIAL_SUCCESS", "SKIPPED", "NO_DATA_AVAILABLE", "FAILED")
PAGE = 50
CHILDREN = 100
LANES, MAX_LANES = 200, 5000
EXPORT_CAP = 20_000
ENTITY_CAP = 10_000  # root jobs an entity filter considers
# Root rows one roots page reads at most (newest first from its cursor): the status, operation and
# "has failures" filters run on those, so a rare match costs a bounded page that offers to search
# further back, never a walk of a 30-day window.
ROOT_SCAN = 2000


def root_filters(request: Request) -> dict[str, Any]:
    q = request.query_params
    status = q.get("status") or None
    if status is not None and status not in STATUSES:
        raise BadFilter(f"status must be one of {', '.join(STATUSES)}")
    before_at, before_id = None, None
    if q.get("before"):
        at, _, rid = q["before"].rpartition("_")
        try:
            before_at, before_id = datetime.fromisoformat(at), int(rid)
        except ValueError:
            raise BadFilter("bad cursor: follow the page's own 'older' link") from None
    return {"status": status, "operation": q.get("operation") or None, "entity": (q.get("entity") or "").strip() or None,
            "failures": q.get("failures") == "1", "before_at": before_at, "before_id": before_id}


def as_uuid(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


def opener(request: Request, query: dict[str, str]):
    """open_link(root, expanded) -> the roots page URL with that root expanded (or collapsed)."""
    def open_link(root_id: int, expanded: bool) -> str:
        return url(request, "/roots", **(query | {"open": None if expanded else root_id}))
    return open_link


def like_pattern(text: str) -> str:
    """`text` as an ILIKE substring pattern, its own % _ and \\ taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def roots(request: Request) -> Response:
    name, since, until = window(request)
    context = dict(window=name, windows=WINDOWS, statuses=STATUSES, q=request.query_params, rows=[], next_url=None,
                   error=None, open_id=None, children={}, open_link=opener(request, dict(request.query_params)),
                   searched_to=None, scan=ROOT_SCAN)
    try:
        filters = root_filters(request)
        context["open_id"] = int_param(request, "open")
    except BadFilter as exc:
        return render(request, "roots.html", status_code=400, **(context | {"error": str(exc)}))
    async with reading(request) as cur:
        filters["entity_roots"] = None
        if filters["entity"]:
            await cur.execute(Q["entity_roots"], {"pattern": like_pattern(filters["entity"]),
                                                  "entity_id": as_uuid(filters["entity"]),
                                                  "since": since, "until": until, "cap": ENTITY_CAP})
            filters["entity_roots"] = [r["job_id"] for r in await cur.fetchall()]
        params = filters | {"since": since, "until": until, "scan": ROOT_SCAN, "limit": PAGE + 1}
        await cur.execute(Q["root_ids"], params)
        found = await cur.fetchall()
        rows = []
        if found:
            await cur.execute(Q["roots"], {"ids": [r["job_id"] for r in found[:PAGE]]})
            rows = await cur.fetchall()
        cursor = None
        if len(found) > PAGE:
            cursor = (found[PAGE - 1]["created_at"], found[PAGE - 1]["job_id"])
        else:  # fewer than a page in ROOT_SCAN root rows: go on from the last one read, if any is left
            await cur.execute(Q["root_scan_edge"], params)
            edge = await cur.fetchone()
            if edge is not None:
                cursor = (edge["created_at"], edge["job_id"])
                context["searched_to"] = edge["created_at"]
        if cursor is not None:
            context["next_url"] = url(request, "/roots", **(dict(request.query_params) | {
                "before": f"{cursor[0].isoformat()}_{cursor[1]}"}))
        if context["open_id"] is not None:
            await cur.execute(Q["children"], {"root": context["open_id"], "limit": CHILDREN + 1})
            context["children"] = {context["open_id"]: await cur.fetchall()}
    return render(request, "roots.html", **(context | {"rows": rows}))


async def root_row(request: Request) -> Response:
    """One root's <tbody>, expanded (?open=1) or not: what a row's toggle swaps in place."""
    root_id = request.path_params["root_id"]
    expanded = request.query_params.get("open") == "1"
    async with reading(request) as cur:
        await cur.execute(Q["root"], {"root": root_id})
        row = await cur.fetchone()
        children = []
        if row is not None and expanded:
            await cur.execute(Q["children"], {"root": root_id, "limit": CHILDREN + 1})
            children = await cur.fetchall()
    if row is None:
        return render(request, "missing.html", status_code=404, what=f"root {root_id}")
    # htmx says which page the row is on: keep that page's filters, and put the expansion in its URL.
    current = urlsplit(request.headers.get("hx-current-url", ""))
    query = dict(parse_qsl(current.query)) if current.path.endswith("/roots") else {}
    open_link = opener(request, query)
    response = render(request, "root_row.html", r=row, expanded=expanded, children=children, open_link=open_link)
    if current.path.endswith("/roots"):
        response.headers["HX-Push-Url"] = url(request, "/roots", **(query | {"open": root_id if expanded else None}))
    return response


async def family(request: Request) -> Response:
    root_id = request.path_params["root_id"]
    try:
        lanes_wanted = min(max(int_param(request, "lanes") or LANES, 1), MAX_LANES)
        selected = int_param(request, "seg")
    except BadFilter as exc:
        return render(request, "missing.html", status_code=400, what=str(exc))
    async with reading(request) as cur:
        await cur.execute(Q["root"], {"root": root_id})
        root = await cur.fetchone()
        await cur.execute(Q["lane_ids"], {"root": root_id, "limit": lanes_wanted})
        ids = await cur.fetchall()
        lane_ids = [r["id"] for r in ids]
        await cur.execute(Q["lane_jobs"], {"ids": lane_ids})
        jobs = {j["id"]: j for j in await cur.fetchall()}
        await cur.execute(Q["lane_logs"], {"ids": lane_ids})
        log_rows = await cur.fetchall()
        picked = None
        if selected is not None:
            picked = next((r for r in log_rows if r["id"] == selected), None)
            if picked is None:  # a row of a lane not shown (past the lane cap), if of this family
                await cur.execute(Q["log_row"], {"id": selected})
                picked = await cur.fetchone()
                if picked is not None and picked["root_job_id"] != root_id:
                    picked = None
    if root is None and not lane_ids:
        return render(request, "missing.html", status_code=404, what=f"root {root_id}")
    logs: dict[int, list[dict]] = {}
    for row in log_rows:
        logs.setdefault(row["job_id"], []).append(row)
    now = datetime.now(timezone.utc)
    chart = waterfall.layout(lane_ids, jobs, logs, now, selected)
    total = ids[0]["total"] if ids else 0
    final = all(j["state"] not in ("queued", "running") for j in jobs.values())
    detail = attempt_detail(picked, jobs.get(picked["job_id"]) if picked else None)
    more = url(request, f"/roots/{root_id}", lanes=min(lanes_wanted + LANES, MAX_LANES)) if total > len(lane_ids) else None
    return render(request, "family.html", root=root, root_id=root_id, chart=chart, rows=log_rows, detail=detail,
                  total_lanes=total, shown_lanes=len(lane_ids), more_url=more, final=final, selected=selected)


def attempt_detail(row: dict | None, job: dict | None) -> dict | None:
    """The selected audit row beside its job's error entry for that attempt."""
    if row is None:
        return None
    error = None
    for entry in (job or {}).get("errors") or []:
        if isinstance(entry, dict) and entry.get("attempt") == row["attempt"]:
            error = entry
    return {"row": row, "error": error, "job": job}


def _jsonable(row: dict) -> dict:
    return {k: (v.isoformat() if isinstance(v, datetime) else str(v) if k == "entity_id" and v else v)
            for k, v in row.items()}


async def export(request: Request) -> Response:
    root_id, fmt = request.path_params["root_id"], request.path_params["fmt"]
    rows = [_jsonable(r) for r in await fetch(request, Q["family_log"], {"root": root_id, "limit": EXPORT_CAP})]
    filename = f"root-{root_id}-log.{fmt}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if fmt == "json":
        return Response(json.dumps(rows, indent=1, default=str), media_type="application/json", headers=headers)
    if fmt != "csv":
        return render(request, "missing.html", status_code=404, what=f"format {fmt}")
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()})
    return Response(out.getvalue(), media_type="text/csv", headers=headers)


async def log_row(request: Request) -> Response:
    """A log row's permalink: its family's waterfall with the row selected."""
    rows = await fetch(request, Q["log_row"], {"id": request.path_params["log_id"]})
    if not rows or rows[0]["root_job_id"] is None:
        return render(request, "missing.html", status_code=404, what=f"log row {request.path_params['log_id']}")
    return RedirectResponse(url(request, f"/roots/{rows[0]['root_job_id']}", seg=rows[0]["id"]), status_code=303)


async def jump(request: Request, text: str) -> str | None:
    words = text.lower().replace(":", " ").replace("#", " ").split()
    if len(words) == 2 and words[0] in ("log", "l") and words[1].isdigit():
        return f"/log/{words[1]}"
    if len(words) == 1 and words[0].isdigit():
        rows = await fetch(request, Q["is_root"], {"id": int(words[0])})
        if rows and rows[0]["exists"]:
            return f"/roots/{words[0]}"
    return None


async def job_panel(request: Request, job: dict, attempts: list[dict]) -> Markup:
    rows = await fetch(request, Q["job_log"], {"id": job["id"]})
    errors = {a.get("attempt"): a for a in attempts}
    return fragment(request, "job_audit.html", rows=rows, errors=errors, job=job)


def install(dash: Dashboard) -> None:
    dash.templates(Path(__file__).resolve().parent / "templates")
    dash.page("/roots", roots, name="roots", nav="Roots")
    dash.page("/roots/{root_id:int}/row", root_row, name="root_row")
    dash.page("/roots/{root_id:int}", family, name="family")
    dash.page("/roots/{root_id:int}/log.{fmt}", export, name="family_export")
    dash.page("/log/{log_id:int}", log_row, name="log_row")
    dash.jump(jump)
    dash.job_panel(job_panel)
