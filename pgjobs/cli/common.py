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
from psycopg.conninfo import conninfo_to_dict
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pgjobs import database, jsontext, migrations
from pgjobs.app import App
from pgjobs.errors import PgjobsError
from pgjobs.settings import Settings

# Wide enough for the timeline tables when piped (rich assumes 80 columns without a terminal).
console = Console(width=None if sys.stdout.isatty() else 150)
err_console = Console(stderr=True)


class UsageFailure(Exception):
    """Bad input or an unusable environment: printed as one line, exit code 2."""


# A password in key=value form (quoted or not, or a URL's ?password=) or in a URL's user:password@.
_PASSWORD = re.compile(r"(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&]+)|(://[^:/@\s]*:)[^\s]*@")


def redact(text: str) -> str:
    """`text` with any password a DSN in it carries (URL or key=value form) replaced by ***."""
    return _PASSWORD.sub(lambda m: (m.group(1) + "***") if m.group(1) else (m.group(3) + "***@"), text)


def check_dsn(dsn: str) -> None:
    """Refuse a DSN libpq cannot parse, or whose port is not a number, in one line that names the
    problem and never the password (psycopg would otherwise fail later, quoting the DSN)."""
    bad = "bad database URL (PGJOBS_DSN / DATABASE_URL)"
    try:
        params = conninfo_to_dict(dsn)
    except UnicodeError:  # bytes that are not UTF-8 in the environment variable
        raise UsageFailure(f"{bad}: not valid UTF-8") from None
    except psycopg.ProgrammingError as exc:
        raise UsageFailure(f"{bad}: {one_line(exc)}") from None
    for port in str(params.get("port") or "").split(","):
        if port and not port.strip().isdigit():
            raise UsageFailure(f"{bad}: port {redact(port)!r} is not a number")


def one_line(exc: BaseException) -> str:
    """An error as the one line the CLI prints: its first line, passwords redacted."""
    text = str(exc).strip()
    return redact(text.splitlines()[0] if text else type(exc).__name__)


# What the CLI reports as one line and exit code 2: bad input, bad settings, a database that is
# unreachable or refuses a statement. Anything else is a bug and keeps its traceback.
EXPECTED_ERRORS = (UsageFailure, PgjobsError, psycopg.Error)


# What some server errors mean for pgjobs, said after the server's own line.
_HINTS = {
    psycopg.errors.DuplicatePreparedStatement:
        " (the server connection is shared with other clients: a pooler in transaction mode? pgjobs needs"
        " session pooling or a direct connection, see docs/deployment.md)",
    psycopg.errors.ReadOnlySqlTransaction: " (a read-only database or a hot standby: this needs the primary)",
}


def expected_error(exc: BaseException) -> BaseException | None:
    """`exc` if the CLI reports it as one line, or the first such error inside an exception group
    (the worker's tasks raise through asyncio.TaskGroup); None: a bug, keep the traceback."""
    if isinstance(exc, EXPECTED_ERRORS):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        return next((found for leaf in exc.exceptions if (found := expected_error(leaf)) is not None), None)
    return None


def report(exc: BaseException) -> int:
    """Print an expected error as one line on stderr; the exit code (2)."""
    where = "database: " if isinstance(exc, psycopg.Error) else ""
    hint = next((text for kind, text in _HINTS.items() if isinstance(exc, kind)), "")
    print(f"pgjobs: error: {where}{one_line(exc)}{hint}", file=sys.stderr)
    return 2


def _check_utf8(args: list[str]) -> None:
    """Refuse an argument that is not valid UTF-8 (Python hands its bytes over as lone surrogates,
    which no database parameter, JSON text or message can carry)."""
    for i, arg in enumerate(args):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError as exc:
            where = f"the value of {args[i - 1]}" if i and args[i - 1].startswith("-") else f"argument {i + 1}"
            byte = ord(arg[exc.start]) - 0xDC00
            raise UsageFailure(f"{where} is not valid UTF-8 (byte 0x{byte:02x} at offset {exc.start})") from None


def invoke(root: typer.Typer, args: list[str]) -> int:
    """Run the command tree on `args`; the exit code. Typer's usage errors (a bad option value, an
    unknown command) become a UsageFailure, so they print as one line too, not a usage block."""
    _check_utf8(args)
    command = typer.main.get_command(root)
    try:
        result = command.main(args=args, prog_name="pgjobs", standalone_mode=False)
    except typer.TyperException as exc:
        message = exc.format_message()
        if not message:  # a group given no command: typer has printed its help
            return exc.exit_code
        raise UsageFailure(message) from None
    except typer.Abort:  # end of input at a prompt
        print("pgjobs: aborted", file=sys.stderr)
        return 1
    return result if type(result) is int else 0  # an int is typer.Exit's code (the worker's)


@dataclass
class Cli:
    """What every command gets (typer's ctx.obj): the settings, the loaded app, the database."""

    settings: Settings
    app: App
    _dsn: str | None = field(default=None, repr=False)

    def dsn(self) -> str:
        if self._dsn is None:
            if self.settings.dsn is not None:
                check_dsn(self.settings.dsn.get_secret_value())
            self._dsn = database.resolve_dsn(self.settings)
        return self._dsn

    def connect(self, *, migrated: bool = True, autocommit: bool = False) -> psycopg.Connection:
        conn = database.connect(self.dsn(), autocommit=autocommit,
                                timeouts=database.Timeouts.from_settings(self.settings))
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


MAX_DURATION = 100 * 365 * 86400  # a delay or age beyond a century is a typo, and overflows dates


def parse_duration(text: str, *, what: str = "duration") -> float:
    """'500ms', '10s', '5m', '2h', '7d', '1w' or a bare number of seconds (at most 100 years)."""
    match = _DURATION.match(text)
    if not match:
        raise UsageFailure(f"bad {what} {text[:40]!r}: use e.g. 30s, 5m, 2h, 7d")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds > MAX_DURATION:
        raise UsageFailure(f"bad {what} {text!r}: at most 100 years")
    return seconds


def parse_json_object(text: str | bytes, *, source: str, max_bytes: int) -> dict[str, Any]:
    """A payload from the command line or a file line, checked by jsontext.parse_object."""
    try:
        return jsontext.parse_object(text, max_bytes=max_bytes)
    except jsontext.InvalidJSON as exc:
        raise UsageFailure(f"{source}: {exc}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (UUID, Decimal)):
        return str(value)
    return value


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, default=_plain, indent=2))


def say(text: str) -> None:
    """Print a line that carries data as is: no rich markup or highlighting (a queue named "[red]"
    prints as written)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def print_table(rows: Sequence[dict[str, Any]], columns: Iterable[str], *, title: str | None = None) -> None:
    columns = list(columns)
    table = Table(title=title and Text(title), show_lines=False)
    for column in columns:
        table.add_column(column)
    for row in rows:  # Text cells: values are data, never rich markup
        table.add_row(*(Text("" if row.get(c) is None else str(_plain(row.get(c)))) for c in columns))
    console.print(table)
