"""The enrichment app's tests: databases migrated with the app's component too (session fixtures
are cached by definition, so the app's template and shared database are fixtures of their own)."""

from __future__ import annotations

from typing import Iterator

import pytest
from dbtools import migrated_template, shared_database

from pgjobs.enrichment.app import app


@pytest.fixture(scope="session")
def template_db(server_dsn: str) -> Iterator[str]:
    yield from migrated_template(server_dsn, app.components)


@pytest.fixture(scope="session")
def shared_dsn(server_dsn: str, template_db: str) -> Iterator[str]:
    yield from shared_database(server_dsn, template_db)
