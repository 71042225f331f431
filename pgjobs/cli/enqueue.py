"""`pgjobs enqueue KIND --payload JSON …` and `pgjobs enqueue KIND --from FILE.jsonl` (bulk)."""

from __future__ import annotations

import codecs
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from typer.core import TyperGroup

from pgjobs.app import Task
from pgjobs.cli.common import UsageFailure, cli, console, parse_duration, parse_json_object, print_json
from pgjobs.queue import PayloadError, enqueue_many

INT4_MIN, INT4_MAX = -(2**31), 2**31 - 1  # priority and max_attempts are PostgreSQL integers


class KindGroup(TyperGroup):
    """`enqueue NAME …` runs the subcommand NAME when there is one (enrich-album), else the generic one."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            return "kind", self.commands["kind"], args
        return super().resolve_command(ctx, args)


def make_group() -> typer.Typer:
    group = typer.Typer(cls=KindGroup, no_args_is_help=True,
                        help="Enqueue jobs: `enqueue KIND --payload JSON`, `enqueue KIND --from FILE.jsonl`, "
                             "or a command the app adds (e.g. `enqueue enrich-album`).")
    group.command("kind", hidden=True)(enqueue_kind)
    return group


def _task(ctx: typer.Context, kind: str) -> Task:
    """The app's declaration of `kind`: the CLI enqueues only what the app declares."""
    app = cli(ctx).app
    task = app.tasks.get(kind)
    if task is None:
        known = ", ".join(sorted(app.tasks)) or "none"
        raise UsageFailure(f"unknown job kind {kind!r}: app {app.name!r} does not declare it (known: {known})")
    return task


def _payload(task: Task, body: dict[str, Any], where: str) -> dict[str, Any]:
    """The payload as it will be stored: validated by the kind's model, if it has one."""
    try:
        return task.payload(body)
    except PayloadError as exc:
        raise UsageFailure(f"{where}: {exc}") from None


def _read_lines(source: str) -> list[tuple[int, bytes]]:
    """The non-blank lines of a JSON Lines file (or stdin), as bytes: each is decoded and checked on its own,
    so an error names its line."""
    if source == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            data = Path(source).read_bytes()
        except FileNotFoundError:
            raise UsageFailure(f"--from {source}: no such file") from None
        except OSError as exc:
            raise UsageFailure(f"--from {source}: cannot read it: {exc.strerror or exc}") from None
    data = data.removeprefix(codecs.BOM_UTF8)  # editors on Windows start files with one
    return [(n, line) for n, line in enumerate(data.split(b"\n"), 1) if line.strip()]


def enqueue_kind(
    ctx: typer.Context,
    kind: str = typer.Argument(..., help="job kind, e.g. noop"),
    payload: Optional[str] = typer.Option(None, "--payload", "-p", help="JSON object (default {})"),
    from_file: Optional[str] = typer.Option(None, "--from", help="JSON Lines file of payloads ('-' = stdin)"),
    queue: Optional[str] = typer.Option(None, "--queue", "-q", help="default: the kind's"),
    priority: Optional[int] = typer.Option(None, min=INT4_MIN, max=INT4_MAX,
                                           help="lower runs first (default: the kind's)"),
    delay: Optional[str] = typer.Option(None, help="run after this long, e.g. 30s, 5m"),
    max_attempts: Optional[int] = typer.Option(None, min=1, max=INT4_MAX, help="default: the kind's"),
    dedupe_key: Optional[str] = typer.Option(None, help="at most one unfinished job per key"),
    json_output: bool = typer.Option(False, "--json"),
) -> None:
    """Enqueue one job of KIND, or one per line of --from. Nothing is enqueued unless every payload is valid."""
    if not kind.strip():
        raise UsageFailure("the job kind must not be empty")
    if queue is not None and not queue.strip():
        raise UsageFailure("--queue must not be empty")
    task = _task(ctx, kind).options(queue=queue, priority=priority, max_attempts=max_attempts,
                                    delay=parse_duration(delay, what="--delay") if delay else None)
    max_bytes = cli(ctx).settings.max_payload_bytes
    if from_file is not None:
        if payload is not None:
            raise UsageFailure("give --payload or --from, not both")
        if dedupe_key is not None:
            raise UsageFailure("--dedupe-key applies to one job; put keys in the payloads' own kind instead")
        name = "stdin" if from_file == "-" else from_file
        specs = []
        for number, line in _read_lines(from_file):
            where = f"{name}:{number}"
            body = _payload(task, parse_json_object(line, source=where, max_bytes=max_bytes), where)
            specs.append(task.spec(body))
        with cli(ctx).connect() as conn:
            inserted = enqueue_many(conn, specs)
        print_json({"enqueued": inserted}) if json_output else console.print(f"enqueued {inserted} {kind} job(s)")
        return
    body = _payload(task, parse_json_object(payload or "{}", source="--payload", max_bytes=max_bytes), "--payload")
    with cli(ctx).connect() as conn:
        job = task.options(dedupe_key=dedupe_key).enqueue(conn, body)
    if json_output:
        print_json({"id": job.id, "root_id": job.root_id, "created": job.created})
    elif job.created:
        console.print(f"enqueued {kind} job {job.id}")
    else:
        console.print(f"job {job.id} already holds dedupe key {dedupe_key!r}; nothing new enqueued")
