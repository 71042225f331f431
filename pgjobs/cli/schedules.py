"""`pgjobs schedules`: the app's periodic jobs, the last slot each enqueued and its next run."""

from __future__ import annotations

from typing import Any

import typer
from psycopg.rows import dict_row

from pgjobs.cli.common import cli, print_json, print_table
from pgjobs.queue.periodic import P, Schedule


def rows(schedules: list[Schedule], stored: list[dict[str, Any]], now: Any) -> list[dict[str, Any]]:
    """One row per declared schedule: its declaration, what the database holds for it, and when it
    runs next (`due`: the slot a worker enqueues when it next starts, if one was missed)."""
    by_key = {(r["app"], r["name"]): r for r in stored}
    out = []
    for schedule in schedules:
        row = by_key.get((schedule.app, schedule.name), {})
        last, since = row.get("last_slot"), row.get("since")
        latest = schedule.cron.latest(now)
        missed = since is not None and latest >= since and (last is None or latest > last)
        out.append({
            "app": schedule.app, "name": schedule.name, "cron": schedule.cron.expression,
            "kind": schedule.job.kind, "queue": schedule.job.queue,
            "last_slot": last, "last_job_id": row.get("last_job_id"),
            "next_run": schedule.cron.after(now), "due": latest if missed else None,
            # another deploy's workers hold a different cron for it: theirs runs until ours start
            "stored_cron": row["cron"] if row and row["cron"] != schedule.cron.expression else None,
        })
    return out


def schedules(ctx: typer.Context, json_output: bool = typer.Option(False, "--json")) -> None:
    """List the app's periodic jobs: cron (UTC), kind, the last slot enqueued, the next run."""
    state = cli(ctx)
    declared = state.app.schedules()
    with state.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        stored = cur.execute(P["list_schedules"], {"apps": sorted({s.app for s in declared})}).fetchall()
        now = conn.execute(P["clock"]).fetchone()[0]
    listing = rows(declared, stored, now)
    if json_output:
        print_json(listing)
    else:
        print_table(listing, ["name", "cron", "kind", "queue", "last_slot", "last_job_id", "next_run", "due"],
                    title=f"{len(listing)} periodic job(s) of app {state.app.name!r}")
