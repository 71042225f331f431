"""`pgjobs enqueue enrich-album`, `pgjobs timeline [ROOT_JOB_ID]`, `pgjobs sandbox serve`."""

from __future__ import annotations

from typing import Optional
from uuid import UUID

import typer
from rich.table import Table

from pgjobs.cli.common import UsageFailure, cli, console, print_json
from pgjobs.enrichment import api

sandbox_app = typer.Typer(help="The stand-in server for MusicBrainz, Cover Art Archive, Discogs, "
                               "Cloudflare Images and Spotify.", no_args_is_help=True)


def _uuid(value: str, what: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise UsageFailure(f"{what} {value!r} is not a UUID") from None


def enrich_album(
    ctx: typer.Context,
    album_id: Optional[str] = typer.Argument(None, help="album id (uuid) in the catalog"),
    mbid: Optional[str] = typer.Option(None, "--mbid", help="MusicBrainz release id; creates the album if needed"),
    force: bool = typer.Option(False, help="enrich again even if already enriched"),
    priority: Optional[int] = typer.Option(None, help="lower runs first (default 1)"),
    triggered_by: str = typer.Option("cli", "--triggered-by", help="who asked (recorded in the log)"),
    json_output: bool = typer.Option(False, "--json"),
) -> None:
    """Start an album's enrichment chain; prints the root job id."""
    if (album_id is None) == (mbid is None):
        raise UsageFailure("give exactly one of ALBUM_ID or --mbid RELEASE_MBID")
    with cli(ctx).connect() as conn:
        target = _uuid(album_id, "ALBUM_ID") if album_id else api.album_for_mbid(conn, _uuid(mbid, "--mbid"))
        job = api.enqueue_enrich_album(conn, target, force=force, priority=priority, triggered_by=triggered_by)
    if json_output:
        print_json({"root_job_id": job.id, "album_id": str(target), "created": job.created})
        return
    typer.echo(job.id)
    if not job.created:
        console.print(f"[dim]album {target} already has an unfinished chain; that is its root job[/dim]",
                      highlight=False)


def _duration(ms) -> str:
    return "" if ms is None else f"{ms} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def timeline(
    ctx: typer.Context,
    root_job_id: Optional[int] = typer.Argument(None, help="show this root's whole family"),
    limit: int = typer.Option(20, min=1, max=10_000),
    status: Optional[str] = typer.Option(None, help="only roots whose latest status is this"),
    json_output: bool = typer.Option(False, "--json"),
) -> None:
    """Root jobs newest first, or (with ROOT_JOB_ID) one root and every descendant by time."""
    if status is not None and status not in api.STATUSES:
        raise UsageFailure(f"unknown status {status!r}; one of {', '.join(api.STATUSES)}")
    with cli(ctx).connect() as conn:
        rows = api.roots(conn, limit=limit, status=status) if root_job_id is None else api.family(conn, root_job_id)
    if root_job_id is not None and not rows:
        raise UsageFailure(f"no log rows for root job {root_job_id}")
    if json_output:
        print_json(rows)
    elif root_job_id is None:
        print_roots(rows)
    else:
        print_family(root_job_id, rows)


def print_roots(rows) -> None:
    table = Table(title=f"enrichment roots ({len(rows)})")
    for column in ("root job", "operation", "entity", "status", "attempts", "descendants", "ok/skip/none/fail",
                   "duration", "started"):
        table.add_column(column)
    for r in rows:
        table.add_row(str(r["root_job_id"]), r["operation"], r["entity_name"] or str(r["entity_id"]),
                      r["latest_status"], str(r["root_attempts"]), str(r["descendants"]),
                      f"{r['descendants_success'] + r['descendants_partial']}/{r['descendants_skipped']}/"
                      f"{r['descendants_no_data']}/{r['descendants_failed']}",
                      _duration(r["total_duration_ms"]), f"{r['first_activity_at']:%Y-%m-%d %H:%M:%S}")
    console.print(table)


def print_family(root_job_id: int, rows) -> None:
    table = Table(title=f"root job {root_job_id}: {rows[0]['operation']} {rows[0]['entity_name'] or ''}")
    for column in ("job", "operation", "entity", "status", "attempt", "duration", "calls", "reason"):
        table.add_column(column, overflow="fold")
    for r in rows:
        op = r["operation"] if r["is_root_job"] else f"└ {r['operation']}"
        reason = r["reason"] or ""
        if r["error_code"]:
            reason += f" [{r['error_code']}]"
        table.add_row(str(r["job_id"]), op, r["entity_name"] or str(r["entity_id"] or ""), r["status"],
                      str(r["attempt"]), _duration(r["duration_ms"]), str(r["api_call_count"]), reason)
    console.print(table)


@sandbox_app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="address to bind (loopback by default)"),
    port: int = typer.Option(8089, min=0, max=65535),
) -> None:
    """Serve the five APIs from the fixtures shipped in the package."""
    from pgjobs.enrichment.sandbox import serve as run_sandbox

    run_sandbox(host, port)
