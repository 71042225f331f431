"""bin/chaos's fast subset, in bin/test: the scenarios that hold on today's code, with small N.

Held today (docs/reliability.md, full N): pg_restart, backends_terminated. Each asserts every
invariant the harness checks (every job succeeded, exactly one effect per job, no job running on a
long-expired lease, no worker exited) and that work resumed within a few seconds.
"""

from __future__ import annotations

import pytest

from chaoskit import report
from chaoskit.scenarios import run_scenario

pytestmark = pytest.mark.slow
FAST = ["pg_restart", "backends_terminated"]


@pytest.mark.parametrize("name", FAST)
def test_the_worker_survives(lab, name):
    result = run_scenario(lab, name, 300)
    assert result.held, report.line(result) + "\n" + "\n".join(f"--- {w} ---\n{t}" for w, t in result.logs.items())
    assert result.recovery_s is not None and result.recovery_s < 10, report.line(result)
