"""What every command shares: settings, the database handle, output as tables or --json, errors.

Commands raise `UsageFailure` (or a known library error) and `main` turns it into one line on
stderr and exit code 2 — never a traceback.
"""

from __future__ import annotations

import json
import sys
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Iterable, Sequence
from uuid import UUID

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from pgjobs import database, migrations
from pgjobs.app import App
from pgjobs.settings import Settings

# Wide enough for the timeline tables when piped (rich assumes 80 columns without a terminal).
console = Console(width=None if sys.stdout.isatty() else 150)
err_console = Console(stderr=True)


class UsageFailure(Exception):
    """Bad input or an unusable environment: printed as one line, exit code 2."""


_PASSWORD = re.compile(r"(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)|(://[^:/@\s]+:)[^@\s]+@")


def redact(text: str) -> str:
    """`text` with any password a DSN in it carries (URL or key=value form) replaced by ***."""
    return _PASSWORD.sub(lambda m: (m.group(1) + "***") if m.group(1) else (m.group(3) + "***@"), text)


def one_line(exc: BaseException) -> str:
    """An error as the one line the CLI prints: its first line, passwords redacted."""
    text = str(exc).strip()
    return redact(text.splitlines()[0] if text else type(exc).__name__)


@dataclass
class Cli:
    """What every command gets (typer's ctx.obj): the settings, the loaded app, the database."""

    settings: Settings
    app: App
    _dsn: str | None = field(default=None, repr=False)

    def dsn(self) -> str:
        if self._dsn is None:
            self._dsn = database.resolve_dsn(self.settings)
        return self._dsn

    def connect(self, *, migrated: bool = True, autocommit: bool = False) -> psycopg.Connection:
        conn = database.connect(self.dsn(), autocommit=autocommit)
        if migrated:
            try:
                migrations.check_migrated(conn, self.app.components)
            except Exception:
                conn.close()
                raise
        return conn


def cli(ctx: typer.Context) -> Cli:
    return ctx.find_root().obj


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, None: 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str, *, what: str = "duration") -> float:
    """'500ms', '10s', '5m', '2h', '7d', '1w' or a bare number of seconds."""
    match = _DURATION.match(text)
    if not match:
        raise UsageFailure(f"bad {what} {text!r}: use e.g. 30s, 5m, 2h, 7d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_json_object(text: str, *, source: str = "--payload") -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageFailure(f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(value, dict):
        raise UsageFailure(f"{source} must be a JSON object, got {type(value).__name__}")
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (UUID, Decimal)):
        return str(value)
    return value


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, default=_plain, indent=2))


def print_table(rows: Sequence[dict[str, Any]], columns: Iterable[str], *, title: str | None = None) -> None:
    columns = list(columns)
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(_plain(row.get(c))) for c in columns))
    console.print(table)
