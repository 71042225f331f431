"""The `pgjobs` command line: generic queue commands, plus whatever commands the loaded app adds.

The app comes from `--app module:attr` (before the command) or PGJOBS_APP; without one, pgjobs runs
its built-in app (the `noop` kind). The app is loaded before typer parses anything, because its
commands are part of the command tree.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer
from pydantic import ValidationError

from pgjobs.app import App, builtin_app, load_app
from pgjobs.cli import dashboard, db, enqueue, jobs, queues, schedules, worker
from pgjobs.cli.common import EXPECTED_ERRORS, Cli, UsageFailure, expected_error, invoke, report
from pgjobs.settings import Settings

HELP = ("pgjobs: a PostgreSQL job queue. The database is PGJOBS_DSN / DATABASE_URL, else an embedded "
        "PostgreSQL under PGJOBS_HOME; the app is --app module:attr / PGJOBS_APP.")


def build(app: App) -> typer.Typer:
    """The command tree for `app`: the queue's commands and the app's own."""
    root = typer.Typer(name="pgjobs", no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                       help=HELP)

    @root.callback()
    def _root(
        ctx: typer.Context,
        _app: Optional[str] = typer.Option(None, "--app", metavar="MODULE:ATTR",
                                           help="the app whose kinds to run (PGJOBS_APP); read before the command"),
    ) -> None:
        try:
            settings = Settings()
        except ValidationError as exc:
            first = exc.errors()[0]
            name = "PGJOBS_" + "_".join(str(p) for p in first.get("loc", ())).upper()
            raise UsageFailure(f"bad setting {name}: {first.get('msg')}") from None
        ctx.obj = Cli(settings, app)

    enqueue_group = enqueue.make_group()
    for name, fn in app.enqueue_commands:
        enqueue_group.command(name)(fn)
    root.add_typer(db.app, name="db")
    root.add_typer(jobs.app, name="jobs")
    root.add_typer(enqueue_group, name="enqueue")
    root.add_typer(queues.app, name="queues")
    root.command()(db.migrate)
    root.command()(worker.worker)
    root.command()(queues.stats)
    root.command()(queues.workers)
    root.command()(jobs.prune)
    root.command()(schedules.schedules)
    root.command()(dashboard.dashboard)
    for name, fn in app.commands:
        root.command(name)(fn)
    for name, group in app.command_groups:
        root.add_typer(group, name=name)
    return root


def _take_app(argv: list[str]) -> tuple[str | None, list[str]]:
    """Remove `--app X` / `--app=X` from the global options (those before the command)."""
    for i, arg in enumerate(argv):
        if arg == "--app":
            if i + 1 >= len(argv):
                raise UsageFailure("--app needs a value: module:attribute")
            return argv[i + 1], argv[:i] + argv[i + 2:]
        if arg.startswith("--app="):
            return arg.split("=", 1)[1], argv[:i] + argv[i + 1:]
        if not arg.startswith("-"):
            break  # the command: what follows is its own
    return None, argv


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        reference, args = _take_app(args)
        reference = reference or os.environ.get("PGJOBS_APP") or None
        app = load_app(reference) if reference else builtin_app()
        code = invoke(build(app), args)
    except EXPECTED_ERRORS as exc:
        code = report(exc)
    except BaseExceptionGroup as group:
        found = expected_error(group)
        if found is None:
            raise
        code = report(found)
    sys.exit(code)
