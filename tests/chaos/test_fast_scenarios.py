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

# Seconds within which work must resume. chain_sigstop's recovery is the whole rest of the chain
# after the stop (SIGSTOP for 7.5 s, then ~10 s of MusicBrainz calls at 1/s even without a fault).
RESUMED_WITHIN = {"chain_sigstop": 30.0}


@pytest.mark.parametrize("name", list(FAST))
def test_the_worker_survives(lab, name):
    if name == "disk_full" and os.geteuid() != 0:
        pytest.skip("the disk-full drill mounts a small tmpfs: root only")
    result = run_scenario(lab, name, FAST[name] or 300)
    assert result.held, report.line(result) + "\n" + "\n".join(f"--- {w} ---\n{t}" for w, t in result.logs.items())
    assert result.recovery_s is not None and result.recovery_s < RESUMED_WITHIN.get(name, 10.0), report.line(result)
