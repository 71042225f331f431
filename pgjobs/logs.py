"""Structured log lines: `key=value` text (logfmt) or one JSON object per line.

Fields passed with `extra={...}` become keys; the worker logs one line per job outcome with
kind, job_id, root_id, attempt, outcome, state and duration_ms. psycopg's and psycopg_pool's own
warnings (logger "psycopg", e.g. "couldn't get a connection after 30 sec") go through the same
handler, so a `PGJOBS_LOG_FORMAT=json` stream stays all JSON.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


def _quote(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n'):
        return json.dumps(text)
    return text


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, timezone.utc).strftime("%H:%M:%S.%f")[:-3]
        parts = [stamp, record.levelname.lower(), record.name, _quote(record.getMessage())]
        parts += [f"{k}={_quote(v)}" for k, v in _fields(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
                 "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        entry |= _fields(record)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class LineHandler(logging.StreamHandler):
    """A stream handler that can also write many pre-built entries in one go (the worker's
    per-outcome lines: one write per completed group instead of one per job)."""

    def __init__(self, fmt: str) -> None:
        super().__init__(sys.stderr)
        self.json = fmt == "json"
        self.setFormatter(JsonFormatter() if self.json else LogfmtFormatter())

    def emit_many(self, level: int, name: str, message: str, rows: list[dict[str, object]]) -> None:
        now = datetime.now(timezone.utc)
        levelname = logging.getLevelName(level).lower()
        if self.json:
            head = {"ts": now.isoformat(), "level": levelname, "logger": name, "msg": message}
            text = "".join(json.dumps(head | row, default=str) + "\n" for row in rows)
        else:
            prefix = f"{now.strftime('%H:%M:%S.%f')[:-3]} {levelname} {name} {_quote(message)}"
            text = "".join(prefix + "".join(f" {k}={_quote(v)}" for k, v in row.items()) + "\n" for row in rows)
        with self.lock:
            self.stream.write(text)
            self.flush()


def log_many(logger: logging.Logger, level: int, message: str, rows: list[dict[str, object]]) -> None:
    """Log one line per row; in one write when pgjobs' own handler is the only one."""
    if not rows or not logger.isEnabledFor(level):
        return
    target = logger
    while target.name != "pgjobs" and target.propagate and target.parent is not None and not target.handlers:
        target = target.parent
    handlers = target.handlers
    if len(handlers) == 1 and isinstance(handlers[0], LineHandler) and handlers[0].level <= level:
        handlers[0].emit_many(level, logger.name, message, rows)
        return
    for row in rows:
        logger.log(level, message, extra=row)


def configure(fmt: str = "text", level: str = "INFO") -> None:
    handler = LineHandler(fmt)
    root = logging.getLogger("pgjobs")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    driver = logging.getLogger("psycopg")  # and psycopg.pool beneath it
    driver.handlers[:] = [handler]
    driver.setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
    driver.propagate = False
