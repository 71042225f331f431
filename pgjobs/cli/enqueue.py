"""`pgjobs enqueue KIND --payload JSON …` and `pgjobs enqueue KIND --from FILE.jsonl` (bulk)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer
from pydantic import BaseModel, ValidationError
from typer.core import TyperGroup

from pgjobs.cli.common import UsageFailure, cli, console, parse_duration, parse_json_object, print_json
from pgjobs.app import Task
from pgjobs.queue import enqueue_many


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


def _validate(task: Task, payload: dict[str, Any], where: str) -> None:
    kind = task.kind
    model: type[BaseModel] | None = task.payload_model
    if model is not None:
        try:
            model.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first.get("loc", ())) or "payload"
            raise UsageFailure(f"{where}: invalid payload for {kind}: {field}: {first.get('msg')}") from None


def _read_lines(source: str) -> list[tuple[int, str]]:
    if source == "-":
        text = sys.stdin.read()
    else:
        path = Path(source)
        if not path.is_file():
            raise UsageFailure(f"--from {source}: no such file")
        text = path.read_text(encoding="utf-8")
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def enqueue_kind(
    ctx: typer.Context,
    kind: str = typer.Argument(..., help="job kind, e.g. noop"),
    payload: str = typer.Option("{}", "--payload", "-p", help="JSON object"),
    from_file: Optional[str] = typer.Option(None, "--from", help="JSON Lines file of payloads ('-' = stdin)"),
    queue: Optional[str] = typer.Option(None, "--queue", "-q", help="default: the kind's"),
    priority: Optional[int] = typer.Option(None, help="lower runs first (default: the kind's)"),
    delay: Optional[str] = typer.Option(None, help="run after this long, e.g. 30s, 5m"),
    max_attempts: Optional[int] = typer.Option(None, min=1, help="default: the kind's"),
    dedupe_key: Optional[str] = typer.Option(None, help="at most one unfinished job per key"),
    json_output: bool = typer.Option(False, "--json"),
) -> None:
    """Enqueue one job of KIND, or one per line of --from."""
    task = _task(ctx, kind).options(queue=queue, priority=priority, max_attempts=max_attempts,
                                    delay=parse_duration(delay, what="--delay") if delay else None)
    if from_file is not None:
        if dedupe_key is not None:
            raise UsageFailure("--dedupe-key applies to one job; put keys in the payloads' own kind instead")
        specs = []
        for number, line in _read_lines(from_file):
            where = f"{from_file}:{number}"
            body = parse_json_object(line, source=where)
            _validate(task, body, where)
            specs.append(task.spec(body))
        with cli(ctx).connect() as conn:
            inserted = enqueue_many(conn, specs)
        print_json({"enqueued": inserted}) if json_output else console.print(f"enqueued {inserted} {kind} job(s)")
        return
    body = parse_json_object(payload)
    _validate(task, body, "--payload")
    with cli(ctx).connect() as conn:
        job = task.options(dedupe_key=dedupe_key).enqueue(conn, body)
    if json_output:
        print_json({"id": job.id, "root_id": job.root_id, "created": job.created})
    elif job.created:
        console.print(f"enqueued {kind} job {job.id}")
    else:
        console.print(f"job {job.id} already holds dedupe key {dedupe_key!r}; nothing new enqueued")
