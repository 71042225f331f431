"""Database faults a worker rides out instead of exiting: one home for which errors they are and
how a loop reports them.

`UNAVAILABLE` is what "the database cannot do this now" raises, as opposed to a job's own bad
write: a lost or refused connection, a restart, a statement or lock timeout, a full disk
(InsufficientResources), an administrator's shutdown (all psycopg.OperationalError), a read-only
database (`default_transaction_read_only`, a standby after a failover: ReadOnlySqlTransaction),
and a session the server ended for idling in a transaction. Every worker loop catches these, logs
through a `FaultLog` (one line when the fault starts, one every `every` seconds while it lasts,
one when it clears), backs off and tries again; nothing it holds is given up early, and fencing
makes every retried write safe.

A session opened while the database was read-only keeps `default_transaction_read_only` after
the setting is reset, so `stale_session` tells the loops to drop such connections (the claimer's
session is closed, the pool is drained) rather than fail on them for ever.
"""

from __future__ import annotations

import logging
import time

import psycopg
from psycopg import errors

UNAVAILABLE: tuple[type[Exception], ...] = (
    psycopg.OperationalError,  # connection lost, shutdown, timeouts, disk full, out of memory, ...
    errors.ReadOnlySqlTransaction,
    errors.IdleInTransactionSessionTimeout,
    errors.TransactionTimeout,
)


def stale_session(exc: BaseException) -> bool:
    """A session-level setting may outlive the fault: replace the connection that raised it."""
    return isinstance(exc, errors.ReadOnlySqlTransaction)


def reason(exc: BaseException) -> str:
    """One line: the error's class, its SQLSTATE if any, and the first line of its message."""
    text = str(exc).strip().splitlines()
    state = getattr(getattr(exc, "diag", None), "sqlstate", None)
    return f"{type(exc).__name__}{f' [{state}]' if state else ''}: {text[0] if text else '-'}"


class FaultLog:
    """Rate-limited lines for one loop: the first failure at WARNING, then at most one line every
    `every` seconds while it keeps failing (with how many failures it saw), and one INFO line when
    the loop succeeds again."""

    def __init__(self, log: logging.Logger, what: str, *, every: float = 30.0) -> None:
        self.log, self.what, self.every = log, what, every
        self.failures = 0
        self._since = 0.0
        self._last = 0.0

    def failed(self, exc: BaseException, retry_in: float | None = None) -> None:
        now = time.monotonic()
        self.failures += 1
        retry = f"; retrying in {retry_in:.1f}s" if retry_in is not None else ""
        if self.failures == 1:
            self._since = self._last = now
            self.log.warning("%s failed, database unavailable (%s)%s", self.what, reason(exc), retry)
        elif now - self._last >= self.every:
            self._last = now
            self.log.warning("%s still failing after %.0fs (%d failures; last: %s)%s", self.what,
                             now - self._since, self.failures, reason(exc), retry)

    def ok(self) -> None:
        if self.failures:
            self.log.info("%s recovered after %.1fs (%d failures)", self.what, time.monotonic() - self._since,
                          self.failures)
            self.failures = 0
