"""The chaos tests' lab: a throwaway PostgreSQL cluster of their own (tests/chaos/chaoskit), not the
suite's server, because the scenarios restart it, make it read-only and terminate its sessions."""

from __future__ import annotations

from typing import Iterator

import pytest

from chaoskit.cluster import Cluster
from chaoskit.runner import Lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Lab]:
    with Cluster() as cluster:
        lab = Lab(cluster, tmp_path_factory.mktemp("chaos-logs"))
        try:
            yield lab
        finally:
            lab.close()
