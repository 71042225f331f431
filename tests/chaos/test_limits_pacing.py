"""chaoskit.limits.pacing: what the provider_limits scenario reads off the sandbox's arrival times
(the scenario itself takes ~5 minutes: `bin/chaos --scenarios provider_limits`)."""

from __future__ import annotations

import pytest

from chaoskit.limits import intervals, pacing


def test_the_app_limits_are_one_call_a_second_for_both_providers():
    assert intervals() == {"musicbrainz": 1.0, "discogs": 1.0}  # 1/s and 60/min: spaced evenly


def test_evenly_spaced_calls_at_the_limit():
    p = pacing([100.0 + k for k in range(121)], 1.0)
    assert (p["calls"], p["min_gap"], p["max_gap"], p["span"]) == (121, 1.0, 1.0, 120.0)
    assert p["rate"] == pytest.approx(1.0) and p["of_limit"] == pytest.approx(1.0)
    assert p["max_per_60s"] == 60  # a call exactly 60 s after another is in the next window


def test_one_close_pair_shows_as_the_smallest_gap_and_a_busier_window():
    arrivals = [0.0, 1.02, 2.04, 2.99, 4.01] + [5.0 + 1.02 * k for k in range(60)]
    p = pacing(list(reversed(arrivals)), 1.0)  # order of recording does not matter
    assert p["min_gap"] == pytest.approx(0.95)
    assert p["rate"] == pytest.approx((len(arrivals) - 1) / (arrivals[-1] - arrivals[0]))
    assert p["max_per_60s"] == 59


def test_a_backlog_with_a_stall_falls_below_the_rate():
    p = pacing([0.0, 1.0, 2.0, 10.0], 1.0)
    assert p["of_limit"] == pytest.approx(0.3) and p["max_gap"] == 8.0
