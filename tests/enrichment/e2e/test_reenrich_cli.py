"""Periodic re-enrichment end to end, through real processes: after a first run of the fixture
albums, two of them age past PGJOBS_REENRICH_AFTER_DAYS; `pgjobs enqueue REENRICH_STALE_ALBUMS`
(what the scheduler does at each slot) and `pgjobs worker --burst` run fresh chains for exactly
those two, which show in the timeline as roots triggered by the schedule, and the chain
invariants still hold. The limits are raised so that two runs of the chain take seconds."""

from __future__ import annotations

import pytest
from chain_support import ALBUMS, COLLISION_COURSE, ELLA_AND_LOUIS, RUSH_OF_BLOOD, assert_chain_invariants

pytestmark = pytest.mark.slow
FAST = {"PGJOBS_RATE_LIMITS": "musicbrainz=20/s,discogs=20/s"}


def test_stale_albums_get_fresh_chains_from_the_periodic_kind(cli, fresh_dsn, sandbox, sql):
    env = cli.env(**sandbox.env(), **FAST)
    first = {mbid: cli.json("enqueue", "enrich-album", "--mbid", mbid, env=env)["root_job_id"] for mbid in ALBUMS}
    assert cli("worker", "--burst", env=env, timeout=60).returncode == 0
    aged = (COLLISION_COURSE, ELLA_AND_LOUIS)
    sql(fresh_dsn, "UPDATE album SET enriched_at = enriched_at - interval '40 days'"
                   " WHERE musicbrainz_id = ANY(%s::uuid[])", (list(aged),))
    before = dict(sql(fresh_dsn, "SELECT musicbrainz_id::text, enriched_at FROM album"))

    job = cli.json("enqueue", "REENRICH_STALE_ALBUMS", env=env)
    assert job["created"] is True
    assert cli("worker", "--burst", env=env, timeout=60).returncode == 0

    assert sql(fresh_dsn, "SELECT state::text FROM pgjobs.jobs WHERE id = %s", (job["id"],)) == [("succeeded",)]
    roots = {r["root_job_id"]: r for r in cli.json("timeline", env=env)}
    assert job["id"] not in roots  # the maintenance job is no root of the timeline
    scheduled = {r["entity_name"]: r for r in roots.values() if r["triggered_by"] == "schedule"}
    assert sorted(scheduled) == ["Collision Course", "Ella and Louis"]
    assert set(roots) - {r["root_job_id"] for r in scheduled.values()} == set(first.values())
    for row in scheduled.values():
        assert row["latest_status"] in ("SUCCESS", "PARTIAL_SUCCESS") and row["descendants"] > 0
        assert row["descendants_failed"] == 0
    after = dict(sql(fresh_dsn, "SELECT musicbrainz_id::text, enriched_at FROM album"))
    assert all(after[mbid] > before[mbid] for mbid in aged)  # enriched again
    assert after[RUSH_OF_BLOOD] == before[RUSH_OF_BLOOD]  # not due: left alone
    assert_chain_invariants(fresh_dsn)
