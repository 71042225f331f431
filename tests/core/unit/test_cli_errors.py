"""The CLI's one-line errors: a database error raised inside the worker's task group is reported
like any other (one line, exit 2), with what it means for pgjobs where that is known."""

from __future__ import annotations

import psycopg
from psycopg import errors

from pgjobs.cli.common import expected_error, report


def test_an_expected_error_inside_nested_task_groups_is_found():
    refused = errors.DuplicatePreparedStatement('prepared statement "_pg3_0" already exists')
    group = BaseExceptionGroup("worker", [ValueError("x"), ExceptionGroup("claimer", [refused])])
    assert expected_error(group) is refused
    assert expected_error(ExceptionGroup("bug", [ValueError("a bug keeps its traceback")])) is None
    assert expected_error(psycopg.OperationalError("gone")) is not None


def test_the_line_names_what_the_server_error_means(capsys):
    assert report(errors.DuplicatePreparedStatement('prepared statement "_pg3_0" already exists')) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith('pgjobs: error: database: prepared statement "_pg3_0" already exists')
    assert "transaction mode" in line and "session pooling" in line
    assert report(errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction")) == 2
    assert "hot standby" in capsys.readouterr().err
