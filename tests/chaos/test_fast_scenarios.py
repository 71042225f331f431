"""bin/chaos's fast subset, in bin/test: the scenarios that hold and take seconds, with small N
(chaoskit.scenarios.FAST; docs/reliability.md has the whole run at full N).

Each asserts every invariant the harness checks (every job succeeded, exactly one effect per job,
no job running on a long-expired lease, no worker exited), the scenario's own checks, and that
work resumed within a few seconds. `disk_full` mounts a tmpfs: it needs root.
"""

from __future__ import annotations

import os

import pytest

from chaoskit import report
from chaoskit.scenarios import FAST, run_scenario

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", list(FAST))
def test_the_worker_survives(lab, name):
    if name == "disk_full" and os.geteuid() != 0:
        pytest.skip("the disk-full drill mounts a small tmpfs: root only")
    result = run_scenario(lab, name, FAST[name] or 300)
    assert result.held, report.line(result) + "\n" + "\n".join(f"--- {w} ---\n{t}" for w, t in result.logs.items())
    assert result.recovery_s is not None and result.recovery_s < 10, report.line(result)
