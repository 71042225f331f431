"""The providers' rate limits come from one source: the worker's RateLimits (the app's RATE_LIMITS
under PGJOBS_RATE_LIMITS), as the harness builds it exactly like run_worker."""

from __future__ import annotations

import pytest
from enrichment_harness import COLLISION_COURSE, Pipeline

from pgjobs.enrichment.kinds import Op


@pytest.mark.parametrize("override", ["", "coverartarchive=100/s"])
async def test_an_optional_limiter_is_used_when_the_workers_limits_have_it(pipeline: Pipeline, override: str):
    pipeline.rate_limits = ",".join(filter(None, ["musicbrainz=50/s,discogs=50/s", override]))
    album_id = pipeline.album_stub(COLLISION_COURSE)

    attempt = await pipeline.attempt(pipeline.enqueue(Op.CACHE_ALBUM_COVER, {"album_id": str(album_id)}))

    assert attempt.log["status"] == "SUCCESS"
    # The attempt's wait for its limiters (ctx.limiter_wait) is in its audit row: 0 ms when none
    # was used or its slot was free, never missing.
    assert isinstance(attempt.log["limiter_wait_ms"], int) and 0 <= attempt.log["limiter_wait_ms"] < 1000
    limiters = {r["name"]: r["interval_ms"] for r in pipeline.rows("SELECT name, interval_ms FROM pgjobs.rate_limits")}
    # The Cover Art Archive waited on a limiter exactly when PGJOBS_RATE_LIMITS gave the worker one.
    assert limiters == ({"coverartarchive": 10.0} if override else {})
