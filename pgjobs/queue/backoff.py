"""Retry backoff: a pure function of the attempt number (and a random draw for jitter)."""

from __future__ import annotations

import random


def backoff_seconds(
    attempt: int, *, base_ms: int, cap_ms: int, jitter: float = 0.25, rand: float | None = None
) -> float:
    """Exponential backoff with a cap: base, 2·base, 4·base, … ≤ cap, then ± `jitter` of it.

    `rand` in [0, 1) makes it deterministic for tests; jitter spreads retries of jobs that failed
    together so they do not return together.
    """
    exponent = max(0, attempt - 1)
    delay = min(cap_ms, base_ms * (2 ** min(exponent, 32))) / 1000.0
    draw = random.random() if rand is None else rand
    return max(0.0, delay * (1 + jitter * (2 * draw - 1)))
