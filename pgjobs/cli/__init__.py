"""The `pgjobs` command line: thin typer commands wiring the queue and the enrichment chain."""

from __future__ import annotations

import sys

import psycopg
import typer
from pydantic import ValidationError

from pgjobs import database, migrations
from pgjobs.cli import db, demo, enqueue, enrichment, jobs, worker
from pgjobs.cli.common import Cli, UsageFailure
from pgjobs.queue import QueueError
from pgjobs.settings import Settings

app = typer.Typer(
    name="pgjobs", no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
    help="pgjobs: a PostgreSQL job queue. The database is PGJOBS_DSN / DATABASE_URL, else an embedded "
         "PostgreSQL under PGJOBS_HOME.",
)


@app.callback()
def _root(ctx: typer.Context) -> None:
    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "PGJOBS_" + "_".join(str(p) for p in first.get("loc", ())).upper()
        raise UsageFailure(f"bad setting {name}: {first.get('msg')}") from None
    ctx.obj = Cli(settings)


app.add_typer(db.app, name="db")
app.add_typer(jobs.app, name="jobs")
app.add_typer(enqueue.app, name="enqueue")
app.command()(db.migrate)
app.command()(worker.worker)
app.command()(jobs.stats)
app.command()(jobs.prune)
app.command()(enrichment.timeline)
app.command()(demo.demo)
app.add_typer(enrichment.sandbox_app, name="sandbox")
enqueue.app.command("enrich-album")(enrichment.enrich_album)

# Failures a user can act on: one line, exit code 2, no traceback.
_EXPECTED = (UsageFailure, database.DatabaseError, migrations.MigrationError, QueueError)


def main() -> None:
    # Typer's standalone mode already turns usage errors into a message and exit code 2.
    try:
        app()
    except _EXPECTED as exc:
        print(f"pgjobs: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except psycopg.OperationalError as exc:
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"pgjobs: error: database: {line}", file=sys.stderr)
        sys.exit(2)
