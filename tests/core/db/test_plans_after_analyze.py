"""The completion's plans on a table with statistics (what autovacuum's ANALYZE leaves).

ANALYZE of a table of queued jobs records that almost no row is running. With `state = 'running'`
in its WHERE clause, the completion's generic plan (the one psycopg's prepared statement ends up
with) then walked jobs_running_idx as the outer side (estimate: 1 row) and re-ran the unnest of the
group's ids once per running job: at concurrency 2000 a drain cost ~190-290 us of server CPU per
job instead of ~30 (tests/bench/benchkit/analyze_probe.py; docs/performance.md). A set lease
token already means running (CHECK jobs_lease), so the statements fence on (id, token) alone and
find their rows by primary key. Each statement here runs as the worker runs it (psycopg prepared
statement, custom and generic plan) under auto_explain, and the plan is read back as JSON.
"""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from pgjobs.queue import JobSpec, enqueue_many
from pgjobs.queue.completer import _complete_params, _params
from pgjobs.queue.floors import full_ranges
from pgjobs.queue.jobs import Q

QUEUED, RUNNING, GROUP = 6000, 600, 300


def _claim(conn: psycopg.Connection, token: uuid.UUID, limit: int) -> list[int]:
    params = {"queues": ["default"], "kinds": ["noop"], "limit": limit, "lease_seconds": 30, "worker_id": "w",
              "channel": "c", "lock_key": 0, "idle_slots": 0, "lease_token": token, "handoff_token": None,
              "offer_ttl": 10, "offer_refresh": 0.2}
    return [row[0] for row in conn.execute(Q["claim_jobs"], params | full_ranges(["default"], ["noop"]))]


@pytest.fixture
def analyzed(fresh_dsn: str) -> tuple[str, list[int], uuid.UUID]:
    """QUEUED jobs, ANALYZEd while all were queued, then RUNNING of them claimed: a worker's
    table mid-drain, with the statistics autovacuum took before it started."""
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        with conn.transaction():
            enqueue_many(conn, (JobSpec(kind="noop", payload={"seq": i}) for i in range(QUEUED)))
        conn.execute("VACUUM ANALYZE pgjobs.jobs")
        token = uuid.uuid4()
        ids = _claim(conn, token, RUNNING)
    assert len(ids) == RUNNING
    return fresh_dsn, ids, token


def _plans(dsn: str, mode: str, query: str, params: dict) -> tuple[list[dict], int]:
    """Run `query` prepared (as psycopg runs the worker's statements) 6 times under plan_cache_mode
    `mode`, each in a rolled-back transaction; the plans auto_explain reported and the row count."""
    plans: list[dict] = []
    with psycopg.connect(dsn, prepare_threshold=0) as conn:
        conn.add_notice_handler(lambda d: plans.append(json.loads(d.message_primary.split("plan:", 1)[1])))
        conn.execute("LOAD 'auto_explain'")
        for setting in ("log_min_duration = 0", "log_analyze = on", "log_format = json", "log_level = notice"):
            conn.execute(f"SET auto_explain.{setting}")
        conn.execute("SELECT set_config('plan_cache_mode', %s, false)", (mode,))
        conn.commit()
        plans.clear()
        for _ in range(6):  # past plancache's 5 custom plans, in case `mode` were auto
            rows = len(conn.execute(query, params).fetchall())
            conn.rollback()
    assert plans, "auto_explain reported no plan"
    return plans, rows


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _assert_keyed(plans: list[dict]) -> None:
    """Rows found by primary key, the group's unnest run once: never per running job."""
    for report in plans:
        nodes = list(_nodes(report["Plan"]))
        scans = [n for n in nodes if n["Node Type"] == "Function Scan"]
        assert scans, json.dumps(report["Plan"])[:2000]
        for scan in scans:
            assert scan["Actual Loops"] == 1, json.dumps(report["Plan"])[:2000]
        assert not [n for n in nodes if n.get("Index Name") == "jobs_running_idx"], json.dumps(report["Plan"])[:2000]
        # every row met is a match: no join compares each id with every other (n x m)
        assert sum(n.get("Rows Removed by Join Filter", 0) for n in nodes) == 0, json.dumps(report["Plan"])[:2000]


class _Done:
    def __init__(self, job_id: int, token: uuid.UUID, outcome) -> None:
        from types import SimpleNamespace

        self.job = SimpleNamespace(id=job_id, lease_token=token)
        self.outcome = outcome


@pytest.mark.parametrize("mode", ["force_custom_plan", "force_generic_plan"])
def test_completion_plans_stay_keyed_after_analyze(analyzed, mode):
    from pgjobs.queue import Complete

    dsn, ids, token = analyzed
    items = [_Done(i, token, Complete()) for i in ids[:GROUP]]
    plans, rows = _plans(dsn, mode, Q["complete_jobs"], _complete_params(items))
    assert rows == GROUP
    _assert_keyed(plans)


@pytest.mark.parametrize("mode", ["force_custom_plan", "force_generic_plan"])
def test_outcome_plans_stay_keyed_after_analyze(analyzed, mode):
    from pgjobs.queue import Retry

    dsn, ids, token = analyzed
    items = [_Done(i, token, Retry("boom", delay=1.0)) for i in ids[:GROUP]]
    plans, rows = _plans(dsn, mode, Q["apply_outcomes"], _params(items))
    assert rows == GROUP
    _assert_keyed(plans)


@pytest.mark.parametrize("mode", ["force_custom_plan", "force_generic_plan"])
def test_heartbeat_plans_stay_keyed_after_analyze(analyzed, mode):
    dsn, ids, token = analyzed
    plans, rows = _plans(dsn, mode, Q["extend_leases"], {"ids": ids, "tokens": [token] * len(ids),
                                                          "lease_seconds": 30})
    assert rows == RUNNING
    _assert_keyed(plans)
