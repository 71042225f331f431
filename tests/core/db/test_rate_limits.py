"""Global rate limiters hold across processes, with even spacing and Retry-After penalties."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pgjobs.database import open_pool
from pgjobs.queue import QueueError, RateLimits

CLIENT = Path(__file__).with_name("limiter_client.py")


def test_three_processes_share_one_5_per_second_limiter(fresh_dsn):
    start, seconds = time.time() + 1.5, 4.0
    procs = [subprocess.Popen([sys.executable, str(CLIENT), fresh_dsn, str(start), str(seconds)],
                              stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=30)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    per_process = [json.loads(out) for out in outputs]
    grants = sorted(t for times in per_process for t in times if start <= t <= start + seconds)
    assert all(per_process), "every process got tokens"
    assert 15 <= len(grants) <= 21
    gaps = [b - a for a, b in zip(grants, grants[1:])]
    assert min(gaps) >= 0.150, f"two tokens {min(gaps) * 1000:.0f} ms apart"


async def test_penalty_pushes_every_callers_next_slot_out(fresh_dsn):
    pool = await open_pool(fresh_dsn, max_size=2)
    limits = RateLimits(pool, {"musicbrainz": 1.0})
    try:
        assert (await limits.try_take("musicbrainz"))[0] == 0
        assert 0.9 < (await limits.try_take("musicbrainz"))[0] <= 1.1  # not yet: a second after the last call
        await limits.penalize("musicbrainz", 30)
        assert 29.0 < (await limits.try_take("musicbrainz"))[0] <= 30.1
        with pytest.raises(QueueError, match="no rate limit named 'spotify'"):
            await limits.acquire("spotify")
    finally:
        await pool.close()
