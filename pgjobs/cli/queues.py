"""`pgjobs queues pause|resume|list`, `pgjobs workers` and `pgjobs stats`: the queue-wide view and switches.

A worker counts as live while its heartbeat is younger than --stale-after (60 s by default; workers
refresh it every few seconds). `stats` names the queued kinds no live worker serves: those jobs
wait, queued, until a worker whose app declares the kind starts on their queue.
"""

from __future__ import annotations

import getpass
import shlex
import socket
from typing import Any

import typer

from pgjobs.cli.common import UsageFailure, cli, parse_duration, print_json, print_table, say
from pgjobs.queue import admin

app = typer.Typer(help="Pause, resume and list queues.", no_args_is_help=True)

_STALE_HELP = "a worker whose heartbeat is older than this is not live (default 60s)"


def _stale_after(text: str) -> float:
    seconds = parse_duration(text, what="--stale-after")
    if seconds <= 0:
        raise UsageFailure(f"bad --stale-after {text!r}: it must be positive")
    return seconds


def _queue_name(queue: str) -> str:
    if not queue.strip():
        raise UsageFailure("the queue name must not be empty")
    return queue


def _who() -> str:
    """Who paused a queue: user@host, for the record in pgjobs.queue_pauses."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        user = "?"
    return f"{user}@{socket.gethostname()}"


@app.command()
def pause(ctx: typer.Context, queue: str = typer.Argument(..., help="the queue to pause"),
          json_output: bool = typer.Option(False, "--json")) -> None:
    """Stop workers claiming QUEUE's jobs (running ones finish; enqueues still go in) until resumed."""
    queue = _queue_name(queue)
    with cli(ctx).connect() as conn:
        row = admin.pause_queue(conn, queue, paused_by=_who())
    if json_output:
        print_json({"queue": row["queue"], "paused_at": row["paused_at"], "paused_by": row["paused_by"],
                    "already_paused": not row["created"]})
    elif row["created"]:
        say(f"paused queue {queue!r}: its jobs wait until `pgjobs queues resume {shlex.quote(queue)}`")
    else:
        say(f"queue {queue!r} was already paused (since {row['paused_at']:%Y-%m-%d %H:%M:%S %Z}"
            f" by {row['paused_by'] or '?'})")


@app.command()
def resume(ctx: typer.Context, queue: str = typer.Argument(..., help="the queue to resume"),
           json_output: bool = typer.Option(False, "--json")) -> None:
    """Let workers claim QUEUE's jobs again; idle workers wake at once."""
    queue = _queue_name(queue)
    with cli(ctx).connect() as conn:
        row = admin.resume_queue(conn, queue)
    if json_output:
        print_json({"queue": queue, "resumed": row is not None})
    else:
        say(f"resumed queue {queue!r}" if row else f"queue {queue!r} was not paused")


@app.command("list")
def list_(ctx: typer.Context, stale_after: str = typer.Option("60s", help=_STALE_HELP),
          json_output: bool = typer.Option(False, "--json")) -> None:
    """Every queue with unfinished jobs, live workers or a pause (and the app's own queues)."""
    state, window = cli(ctx), _stale_after(stale_after)
    with state.connect() as conn:
        rows = admin.queues(conn, known=state.app.queues, stale_after=window)
    if json_output:
        print_json(rows)
    else:
        print_table(rows, ["queue", "queued", "running", "workers", "paused", "paused_at", "paused_by"],
                    title=f"{len(rows)} queues")


def workers(
    ctx: typer.Context,
    all_: bool = typer.Option(False, "--all", help="also list workers whose heartbeat is stale"),
    stale_after: str = typer.Option("60s", help=_STALE_HELP),
    json_output: bool = typer.Option(False, "--json"),
) -> None:
    """Live workers: app, host, pid, queues, kinds, concurrency, and the jobs each is running."""
    window = _stale_after(stale_after)
    with cli(ctx).connect() as conn:
        rows = admin.workers(conn, include_stale=all_, stale_after=window)
    if json_output:
        print_json(rows)
        return
    shown = [row | {"queues": ", ".join(row["queues"]), "kinds": ", ".join(row["kinds"]),
                    "heartbeat": f"{row['heartbeat_age_seconds']:.0f}s ago"} for row in rows]
    columns = ["worker_id", "app", "host", "pid", "queues", "kinds", "concurrency", "running_jobs", "heartbeat"]
    live = sum(row["live"] for row in rows)
    print_table(shown, columns + (["live"] if all_ else []),
                title=f"{live} live worker(s) (heartbeat within {window:g}s)")


def stats(ctx: typer.Context, stale_after: str = typer.Option("60s", help=_STALE_HELP),
          json_output: bool = typer.Option(False, "--json")) -> None:
    """Jobs by queue and state, the oldest runnable job's age, paused queues, and queued kinds that no
    live worker serves."""
    window = _stale_after(stale_after)
    with cli(ctx).connect() as conn:
        rows = admin.stats(conn)
        paused = admin.paused_queues(conn)
        unserved = admin.unserved_kinds(conn, stale_after=window)
        live = len(admin.workers(conn, stale_after=window))
    paused_names = {p["queue"] for p in paused}
    for row in rows:
        row["paused"] = row["queue"] in paused_names
        if row["oldest_runnable_seconds"] is not None:
            row["oldest_runnable_seconds"] = round(float(row["oldest_runnable_seconds"]), 3)
    if json_output:
        print_json({"queues": rows, "paused": paused, "unserved_kinds": unserved, "live_workers": live})
        return
    print_table(rows, ["queue", "state", "jobs", "oldest_runnable_seconds", "paused"], title="pgjobs")
    say(f"live workers: {live}")
    for pause in paused:
        say(f"paused: {pause['queue']} (since {pause['paused_at']:%Y-%m-%d %H:%M:%S %Z}"
            f" by {pause['paused_by'] or '?'})")
    if unserved:
        say("queued kinds no live worker serves: " + ", ".join(_unserved(u) for u in unserved))


def _unserved(row: dict[str, Any]) -> str:
    return f"{row['kind']} on {row['queue']} ({row['jobs']} queued)"
