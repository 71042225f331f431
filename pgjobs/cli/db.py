"""`pgjobs db start|stop|status|url` and `pgjobs migrate`."""

from __future__ import annotations

import typer

from pgjobs import database, migrations
from pgjobs.cli.common import UsageFailure, cli, console, print_json

app = typer.Typer(help="The embedded PostgreSQL (used when PGJOBS_DSN / DATABASE_URL is not set).",
                  no_args_is_help=True)


def _require_embedded(ctx: typer.Context) -> None:
    if cli(ctx).settings.dsn is not None:
        raise UsageFailure("PGJOBS_DSN/DATABASE_URL is set: pgjobs is not using its embedded database")


@app.command()
def start(ctx: typer.Context, json_output: bool = typer.Option(False, "--json")) -> None:
    """Start the embedded PostgreSQL (initialising it on first use)."""
    _require_embedded(ctx)
    database.start_embedded(cli(ctx).settings)
    _show(ctx, json_output)


@app.command()
def stop(ctx: typer.Context, json_output: bool = typer.Option(False, "--json")) -> None:
    """Stop the embedded PostgreSQL."""
    _require_embedded(ctx)
    stopped = database.stop_embedded(cli(ctx).settings)
    if json_output:
        print_json({"stopped": stopped})
    else:
        console.print("stopped" if stopped else "not running")


@app.command()
def status(ctx: typer.Context, json_output: bool = typer.Option(False, "--json")) -> None:
    """Say whether the embedded PostgreSQL is running, and where its data lives."""
    _require_embedded(ctx)
    _show(ctx, json_output)


@app.command()
def url(ctx: typer.Context) -> None:
    """Print the connection URL (starting the embedded server if needed)."""
    typer.echo(cli(ctx).dsn())


def _show(ctx: typer.Context, json_output: bool) -> None:
    s = database.embedded_status(cli(ctx).settings)
    data = {"running": s.running, "pid": s.pid, "data_dir": str(s.data_dir), "initialised": s.initialised,
            "url": s.dsn}
    if json_output:
        print_json(data)
    else:
        state = f"running (pid {s.pid})" if s.running else "stopped"
        console.print(f"embedded PostgreSQL {state}\n  data: {s.data_dir}" + (f"\n  url:  {s.dsn}" if s.dsn else ""))


def migrate(ctx: typer.Context, json_output: bool = typer.Option(False, "--json")) -> None:
    """Apply pending schema migrations (safe to run from several processes at once)."""
    state = cli(ctx)
    applied = migrations.migrate(state.dsn(), state.app.components)
    names = [m.label for m in applied]
    if json_output:
        print_json({"applied": names})
    elif names:
        for name in names:
            console.print(f"applied {name}")
    else:
        console.print("schema is up to date")
