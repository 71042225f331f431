"""The bench tests' database: the suite's fresh migrated one, as the URL the harness hands its drivers."""

from __future__ import annotations

import psycopg
import pytest

from benchkit.schema import prepare, with_dbname


@pytest.fixture
def bench_db(fresh_dsn: str) -> str:
    assert fresh_dsn, "the test suite gave no database DSN (set PGJOBS_TEST_DSN or see tests/conftest.py)"
    url = with_dbname(fresh_dsn, psycopg.conninfo.conninfo_to_dict(fresh_dsn)["dbname"])
    prepare(url)
    return url
