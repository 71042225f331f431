"""Enrichment tier: every processor through the real worker, the sandbox APIs and a fresh database.

`pipeline` = a sandbox on a loopback port + a pool on a fresh database cloned from the migrated
template; see enrichment_harness.Pipeline. After each test it proves that no sandbox credential
reached enrichment_log or the jobs' error columns, and that every log row keeps its lineage.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from enrichment_harness import Pipeline

from pgjobs.database import open_pool
from pgjobs.enrichment.sandbox import SandboxServer


@pytest.fixture
async def pipeline(fresh_dsn: str) -> AsyncIterator[Pipeline]:
    with SandboxServer() as sandbox:
        pool = await open_pool(fresh_dsn, max_size=12)
        harness = Pipeline(fresh_dsn, sandbox, pool)
        try:
            yield harness
            assert harness.leaked_secrets() == []
            harness.assert_lineage()
        finally:
            harness.close()
            await pool.close()
