"""Claim floors (pgjobs.queue.floors): behind another session's old snapshot a claim does not walk
the dead claim-index entries of the jobs claimed before it, and no runnable job is lost to a floor."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from pgjobs.queue import JobSpec, enqueue, enqueue_many
from pgjobs.queue.floors import ClaimFloors, full_ranges
from pgjobs.queue.jobs import Q, claimed_jobs


def _claim(conn: psycopg.Connection, floors: ClaimFloors, limit: int = 10, *, claim: bool = True) -> list:
    token = uuid.uuid4()
    params = {"queues": ["default"], "kinds": ["noop"], "limit": limit, "lease_seconds": 30, "worker_id": "w",
              "channel": "c", "lock_key": 0, "idle_slots": 0, "lease_token": token, "handoff_token": None,
              "offer_ttl": 10, "offer_refresh": 0.2}
    jobs = claimed_jobs(conn.execute(Q["claim_jobs"], params | floors.params(claim=claim)).fetchall(), token)
    floors.advance(jobs)
    return jobs


def _buffers(conn: psycopg.Connection, query: str, params: dict) -> int:
    plan = psycopg.ClientCursor(conn).execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query, params).fetchone()[0]
    top = plan[0]["Plan"]
    return top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)


def _idle_claim_params(ranges: dict) -> dict:
    return {"queues": ["default"], "kinds": ["noop"], "limit": 5, "lease_seconds": 30, "worker_id": "idle",
            "channel": "c", "lock_key": 0, "idle_slots": 0, "lease_token": uuid.uuid4(),
            "handoff_token": None, "offer_ttl": 10, "offer_refresh": 0.2} | ranges


@pytest.fixture
def old_snapshot(fresh_dsn):
    """Another session's REPEATABLE READ snapshot: vacuum removes nothing newer while it lives."""
    with psycopg.connect(fresh_dsn, autocommit=True) as holder:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM pgjobs.migrations").fetchone()
        yield
        holder.execute("COMMIT")


def test_an_idle_claim_behind_an_old_snapshot_does_not_walk_the_dead_prefix(fresh_dsn, old_snapshot):
    floors = ClaimFloors(["default"], ["noop"], margin=0.0)  # no margin: the jobs here are all < 1 s old
    figures = []
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        for total in (2_000, 8_000):
            enqueue_many(conn, [JobSpec(kind="noop") for _ in range(total - sum(f[0] for f in figures))])
            while _claim(conn, floors, limit=500):
                pass
            ranges = floors.params(claim=False)
            floored = _buffers(conn, Q["claim_jobs"], _idle_claim_params(ranges))
            whole = _buffers(conn, Q["claim_jobs"], _idle_claim_params(full_ranges(["default"], ["noop"])))
            wait = _buffers(conn, Q["next_run_at"], ranges)
            figures.append((total, floored, whole, wait))
        dead = conn.execute("SELECT count(*) FROM pgjobs.jobs WHERE state = 'running'").fetchone()[0]
    assert dead == 8_000
    (_, floored_2k, whole_2k, wait_2k), (_, floored_8k, whole_8k, wait_8k) = figures
    # Whole ranges walk every dead entry (the cost this avoids), and it grows with the dead jobs ...
    assert whole_8k > 3 * whole_2k and whole_2k > 50, figures
    # ... the floored claim and next_run_at touch a few index pages whatever the number of dead jobs.
    assert floored_2k <= 10 and floored_8k <= 10 and wait_2k <= 10 and wait_8k <= 10, figures


def test_an_idle_claim_after_a_vacuum_of_the_emptied_claim_table_stays_bounded(fresh_dsn, old_snapshot):
    """A VACUUM (a worker's own: pgjobs.queue.vacuum, or autovacuum) of jobs_live once every job
    moved out, behind an old snapshot: it may neither remove the dead rows nor truncate, and records
    0 rows over the table's pages. The planner then takes the table for empty; joined with the
    jobs to claim, it put jobs_live first and read its whole primary key, dead entries and all."""
    floors = ClaimFloors(["default"], ["noop"], margin=0.0)
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        enqueue_many(conn, [JobSpec(kind="noop") for _ in range(8_000)])
        while _claim(conn, floors, limit=500):
            pass
        conn.execute("UPDATE pgjobs.jobs SET state = 'succeeded', finished_at = now(), lease_token = NULL,"
                     " lease_expires_at = NULL WHERE state = 'running'")
        conn.execute("VACUUM pgjobs.jobs_live")
        pages, rows = conn.execute("SELECT relpages, reltuples FROM pg_class"
                                   " WHERE oid = 'pgjobs.jobs_live'::regclass").fetchone()
        assert pages > 50 and rows == 0  # the state the planner misread
        floored = _buffers(conn, Q["claim_jobs"], _idle_claim_params(floors.params(claim=False)))
    assert floored <= 10, floored


def test_a_job_committed_after_a_later_one_was_claimed_is_found_within_the_margin(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn, psycopg.connect(fresh_dsn) as late:
        early = enqueue(late, "noop").id  # run_at = its transaction's start; not committed yet
        floors = ClaimFloors(["default"], ["noop"], margin=0.0)
        enqueue(conn, "noop")
        assert len(_claim(conn, floors)) == 1  # the floor is now past the uncommitted job's run_at
        late.commit()
        assert _claim(conn, floors) == []  # without a margin the floor hides it ...
        floors.margin = 1.0
        assert [j.id for j in _claim(conn, floors)] == [early]  # ... the margin finds it


def test_a_past_run_at_is_found_by_the_periodic_whole_range_claim(fresh_dsn):
    from datetime import datetime, timedelta, timezone

    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        floors = ClaimFloors(["default"], ["noop"], margin=0.0, rescan=3600)
        enqueue(conn, "noop")
        assert len(_claim(conn, floors)) == 1
        past = enqueue(conn, "noop", run_at=datetime.now(timezone.utc) - timedelta(hours=1)).id
        assert _claim(conn, floors) == []  # below the floor
        floors.rescan = 0.0  # the rescan interval has passed
        assert [j.id for j in _claim(conn, floors)] == [past]


def test_a_lower_priority_number_enqueued_after_the_floor_still_runs_first(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        floors = ClaimFloors(["default"], ["noop"], margin=0.0, rescan=3600)
        enqueue(conn, "noop", priority=5)
        assert len(_claim(conn, floors)) == 1
        for priority in (7, 0, 5, 3):
            enqueue(conn, "noop", priority=priority)
        assert [j.priority for j in _claim(conn, floors)] == [0, 3, 5, 7]


def test_ranges_split_each_pair_at_its_floored_priorities():
    from datetime import datetime, timezone
    from types import SimpleNamespace

    floors = ClaimFloors(["q"], ["a", "b"])
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    floors.advance([SimpleNamespace(queue="q", kind="a", priority=p, run_at=at, id=i) for p, i in ((0, 4), (0, 9), (5, 2))])
    p = floors.params(claim=False)
    assert list(zip(p["r_kinds"], p["lo_priorities"], p["lo_ids"], p["hi_priorities"])) == [
        ("a", -(2**31), -(2**63), 0), ("a", 0, 9, 5), ("a", 5, 2, 2**31),  # below 0, from each floor
        ("b", -(2**31), -(2**63), 2**31)]  # never claimed: the whole range


def test_a_slow_whole_range_claim_spaces_out_the_next_one(monkeypatch):
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from pgjobs.queue import floors as floors_module

    clock = [1000.0]
    monkeypatch.setattr(floors_module.time, "monotonic", lambda: clock[0])
    floors = ClaimFloors(["q"], ["a"], rescan=5.0)
    job = SimpleNamespace(queue="q", kind="a", priority=0, run_at=datetime(2026, 1, 1, tzinfo=timezone.utc), id=1)
    floors.params()
    assert floors.full  # no floor yet: whole ranges
    floors.advance([job], seconds=0.2)  # the whole-range claim took 200 ms (1,000,000 dead entries)
    clock[0] += 6
    floors.params()
    assert not floors.full  # 5 s passed, but 100 x 200 ms have not
    clock[0] += 15
    floors.params()
    assert floors.full
    floors.advance([], seconds=0.001)  # fast again (the snapshot ended, vacuum ran): back to every 5 s
    clock[0] += 5.5
    floors.params()
    assert floors.full
