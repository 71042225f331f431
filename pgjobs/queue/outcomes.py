"""What a handler tells the queue: return one of these, or raise it (or any exception to retry).

Each outcome may carry `write`, an async callback run inside the job's completion transaction
(with the fenced state change, in one savepoint): effects, audit rows and child jobs commit
together or not at all. HTTP and other slow work belongs before it, in the handler body.
Append-only rows known when the handler returns (an audit row) can ride along as `rows` instead:
`(CopyInto, values)` pairs, COPYed in the same transaction with no callback to run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Awaitable, Callable, ClassVar, NamedTuple, Sequence

from pgjobs.queue.backoff import backoff_seconds

if TYPE_CHECKING:
    from pgjobs.queue.context import JobTransaction
    from pgjobs.queue.jobs import Job

Write = Callable[["JobTransaction"], Awaitable[None]]


class CopyInto(NamedTuple):
    """Where append-only rows go: `COPY table (columns) FROM STDIN`, and optionally the columns'
    PostgreSQL type names (e.g. "int8", "text[]"), which spare psycopg a type lookup per value.
    Make one per table at import; a group commit sends all its rows for one target in one COPY."""

    statement: str
    types: tuple[str, ...] | None = None


Rows = Sequence[tuple[CopyInto, Sequence[object]]]


class Outcome(Exception):
    """Base of handler outcomes; an Exception so a handler may raise one from deep inside.

    Each class carries its `name`, the one word for it everywhere: apply_outcomes' `outcome`
    parameter, the job's `errors` history, the worker's outcome log line. `error` is the text
    recorded for the attempt (None for Complete).
    `on_write_error`, when set, gives the write to commit instead if `write` or `rows` fail (the
    attempt is then recorded as a failed one, without `rows`): e.g. an audit row saying why.
    """

    name: ClassVar[str]
    error: str | None

    write: Write | None = None
    rows: Rows | None = None  # appended after `write`, in the same savepoint
    on_write_error: Callable[[str], Write | None] | None = None
    traceback: str | None = None  # set by the executor on a Retry caused by an exception or a timeout
    error_type: str | None = None  # … with the exception's class name (a trace's error.type)

    def __init__(self, message: str, *, write: Write | None = None, rows: Rows | None = None) -> None:
        super().__init__(message)
        self.write = write
        self.rows = rows
        self.error = message

    def delay_seconds(self, job: Job) -> float:
        """Seconds until the job may run again (0 unless it is re-queued for later)."""
        return 0.0


class Complete(Outcome):
    name = "complete"

    def __init__(self, write: Write | None = None, *, rows: Rows | None = None) -> None:
        super().__init__("complete", write=write, rows=rows)
        self.error = None


class Retry(Outcome):
    """A failed attempt: retried with backoff (or after `delay` seconds) until attempts run out."""

    name = "retry"

    def __init__(self, error: str, *, delay: float | None = None, write: Write | None = None,
                 rows: Rows | None = None) -> None:
        super().__init__(error, write=write, rows=rows)
        self.delay = delay

    def delay_seconds(self, job: Job) -> float:
        if self.delay is not None:
            return self.delay
        return backoff_seconds(job.attempt - job.snoozes, base_ms=job.backoff_base_ms, cap_ms=job.backoff_cap_ms)


class Snooze(Outcome):
    """Run again after `seconds` without spending an attempt (e.g. a 429 with Retry-After)."""

    name = "snooze"

    def __init__(self, seconds: float, reason: str = "snoozed", *, write: Write | None = None,
                 rows: Rows | None = None) -> None:
        super().__init__(reason, write=write, rows=rows)
        self.seconds = max(0.0, float(seconds))
        self.reason = reason

    def delay_seconds(self, job: Job) -> float:
        return self.seconds


class Discard(Outcome):
    """Fail terminally, no retry: a bad payload, an entity that does not exist."""

    name = "discard"

    def __init__(self, reason: str, *, write: Write | None = None, rows: Rows | None = None) -> None:
        super().__init__(reason, write=write, rows=rows)
        self.reason = reason


class HandBack(Outcome):
    """The worker gives back a job it did not finish (shutdown): the run does not count at all —
    no attempt spent, and the next run reuses its attempt number (so domain logs, one row per
    attempt, stay exact)."""

    name = "hand_back"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
