"""End-to-end fixtures (the real CLI in subprocesses): see tests/clitools.py. Here `cli` runs the
enrichment app (PGJOBS_APP) on the test's database, and `sandbox` is `pgjobs sandbox serve`."""

import pytest
from chain_support import Sandbox
from clitools import make_cli, procs, sql, wait_for  # noqa: F401  (fixtures)

ENRICHMENT_APP = "pgjobs.enrichment.app:app"


@pytest.fixture
def cli(make_cli, fresh_dsn):
    return make_cli(fresh_dsn, ENRICHMENT_APP)


@pytest.fixture
def sandbox(cli, wait_for):
    box = Sandbox.start(cli, wait_for)
    try:
        yield box
    finally:
        box.close()
