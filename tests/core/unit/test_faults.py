"""pgjobs.queue.faults: which errors a worker loop rides out, and its rate-limited lines."""

import logging

import psycopg
from psycopg import errors

from pgjobs.queue.faults import UNAVAILABLE, FaultLog, reason, stale_session


def test_the_database_s_faults_are_unavailable_and_a_job_s_own_errors_are_not():
    for fault in (errors.ReadOnlySqlTransaction, errors.DiskFull, errors.InsufficientResources, errors.AdminShutdown,
                  errors.QueryCanceled, errors.IdleInTransactionSessionTimeout, errors.TransactionTimeout,
                  psycopg.OperationalError):
        assert issubclass(fault, UNAVAILABLE), fault
    for own in (errors.UniqueViolation, errors.UndefinedTable, errors.DivisionByZero, errors.CheckViolation):
        assert not issubclass(own, UNAVAILABLE), own
    assert stale_session(errors.ReadOnlySqlTransaction("x")) and not stale_session(errors.DiskFull("x"))
    assert reason(errors.DiskFull("could not extend file\nDETAIL: …")) == "DiskFull: could not extend file"


def test_a_failing_loop_says_so_once_then_at_most_every_interval_then_once_recovered(caplog, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("pgjobs.queue.faults.time.monotonic", lambda: clock[0])
    faults = FaultLog(logging.getLogger("pgjobs.test"), "claiming", every=30)
    with caplog.at_level(logging.INFO, logger="pgjobs.test"):
        for _ in range(10):  # ten failures within 9 s: one line
            faults.failed(errors.ReadOnlySqlTransaction("cannot execute UPDATE in a read-only transaction"), 0.1)
            clock[0] += 1
        clock[0] += 30
        faults.failed(errors.ReadOnlySqlTransaction("cannot execute UPDATE in a read-only transaction"))
        faults.ok()
        faults.ok()  # nothing to report twice
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "claiming failed, database unavailable (ReadOnlySqlTransaction: cannot execute UPDATE in a read-only "
        "transaction); retrying in 0.1s",
        "claiming still failing after 40s (11 failures; last: ReadOnlySqlTransaction: cannot execute UPDATE in a "
        "read-only transaction)",
        "claiming recovered after 40.0s (11 failures)",
    ]
