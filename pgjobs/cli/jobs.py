"""`pgjobs jobs list|show|retry|cancel` and `pgjobs prune`."""

from __future__ import annotations

import getpass
import os
import socket
from datetime import datetime, timedelta, timezone
from typing import Optional

import typer
from rich.text import Text

from pgjobs.cli.common import cli, console, parse_duration, print_json, print_table, say
from pgjobs.queue import admin
from pgjobs.queue.retention import prune as prune_families

app = typer.Typer(help="Inspect and steer individual jobs.", no_args_is_help=True)
STATES = ("queued", "running", "succeeded", "failed", "cancelled")


@app.command("list")
def list_(
    ctx: typer.Context,
    state: Optional[str] = typer.Option(None, help="queued | running | succeeded | failed | cancelled"),
    queue: Optional[str] = typer.Option(None),
    root: Optional[int] = typer.Option(None, help="only this root job's family"),
    kind: Optional[str] = typer.Option(None),
    limit: int = typer.Option(50, min=1, max=10_000),
    json_output: bool = typer.Option(False, "--json"),
) -> None:
    """List jobs, newest first."""
    if state is not None and state not in STATES:
        raise typer.BadParameter(f"unknown state {state!r}; one of {', '.join(STATES)}", param_hint="--state")
    with cli(ctx).connect() as conn:
        rows = admin.list_jobs(conn, state=state, queue=queue, root_id=root, kind=kind, limit=limit)
    if json_output:
        print_json(rows)
    else:
        print_table(rows, ["id", "root_id", "kind", "queue", "state", "attempt", "priority", "created_at",
                           "last_error"], title=f"{len(rows)} jobs")


@app.command()
def show(ctx: typer.Context, job_id: int, json_output: bool = typer.Option(False, "--json")) -> None:
    """Everything about one job, with each failed attempt's error and traceback."""
    with cli(ctx).connect() as conn:
        job = admin.get_job(conn, job_id)
    if json_output:
        print_json(job)
        return
    for key, value in job.items():
        if key != "errors":
            console.print(Text.assemble((f"{key:>16}", "bold"), f"  {'' if value is None else value}"), soft_wrap=True)
    for error in job["errors"]:
        at = f" at {error['at']}" if error.get("at") else ""
        say(f"{'attempt ' + str(error.get('attempt')):>16}  {error.get('outcome')}{at}: {error.get('error')}")
        for line in (error.get("traceback") or "").rstrip().splitlines():
            say(" " * 18 + line)


def _who() -> str:
    """Who runs this CLI: the OS user and host (recorded with a retry or cancel)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()} (pgjobs CLI)"


@app.command()
def retry(ctx: typer.Context, job_id: int, json_output: bool = typer.Option(False, "--json")) -> None:
    """Run a finished (failed, cancelled, succeeded) job again now."""
    with cli(ctx).connect() as conn:
        admin.retry(conn, job_id, reason=admin.operator("retried", _who()))
    print_json({"retried": job_id}) if json_output else console.print(f"job {job_id} queued again")


@app.command()
def cancel(ctx: typer.Context, job_id: int, json_output: bool = typer.Option(False, "--json")) -> None:
    """Cancel a job; a root job's whole unfinished family goes with it."""
    with cli(ctx).connect() as conn:
        ids = admin.cancel(conn, job_id, reason=admin.operator("cancelled", _who()))
    if json_output:
        print_json({"cancelled": ids})
    else:
        console.print(f"cancelled {len(ids)} job(s)" + (f": {', '.join(map(str, ids))}" if ids else
                                                          " (nothing unfinished)"))


def prune(
    ctx: typer.Context,
    older_than: str = typer.Option(..., "--older-than", help="e.g. 7d, 12h"),
    json_output: bool = typer.Option(False, "--json"),
) -> None:
    """Delete whole job families that finished longer ago than --older-than (audit logs stay)."""
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=parse_duration(older_than, what="--older-than"))
    with cli(ctx).connect(autocommit=True) as conn:
        deleted = prune_families(conn, cutoff)
    if json_output:
        print_json({"deleted": deleted, "cutoff": cutoff.isoformat()})
    else:
        console.print(f"pruned {deleted} job(s) from families finished before {cutoff:%Y-%m-%d %H:%M:%S}Z")
