"""The completion's plans on a table with statistics (what autovacuum's ANALYZE leaves).

ANALYZE of a table of queued jobs records that almost no row is running. With `state = 'running'`
in its WHERE clause, the completion's generic plan (the one psycopg's prepared statement ends up
with) then walked jobs_running_idx as the outer side (estimate: 1 row) and re-ran the unnest of the
group's ids once per running job: at concurrency 2000 a drain cost ~190-290 us of server CPU per
job instead of ~30 (tests/bench/benchkit/analyze_probe.py; docs/performance.md). A set lease
token already means running (CHECK jobs_lease), so the statements fence on (id, token) alone and
find their rows by primary key. Each statement here runs as the worker runs it (psycopg prepared
statement, custom and generic plan) under auto_explain, and the plan is read back as JSON.

The same plans on the opposite lie: statistics that say jobs_live is empty while it holds a
backlog. A VACUUM (or ANALYZE) of an emptied jobs_live that cannot truncate it (another session's
old snapshot keeps the dead rows) records 0 rows over its pages, and PostgreSQL >= 14 then
estimates ~0 rows at any size. Joined with the group's unnest, the "empty" table went first: with
100,000 queued a 500-job complete_jobs took 9.3 s, extend_leases 9.5 s, apply_outcomes 36 s. The
statements now find their rows by `id = ANY` with nested loops off (queue migration 0013).
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


def _emptied_behind_a_snapshot(dsn: str) -> None:
    """jobs_live emptied, then VACUUMed while another session's snapshot keeps its dead rows: 0
    rows recorded over its pages. Autovacuum is off for it, so nothing corrects that mid-test."""
    with psycopg.connect(dsn, autocommit=True) as conn, psycopg.connect(dsn, autocommit=True) as holder:
        conn.execute("ALTER TABLE pgjobs.jobs_live SET (autovacuum_enabled = false)")
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM pgjobs.migrations").fetchone()
        enqueue_many(conn, (JobSpec(kind="noop") for _ in range(8_000)))
        _claim(conn, uuid.uuid4(), 8_000)
        conn.execute("UPDATE pgjobs.jobs SET state = 'succeeded', finished_at = now(), lease_token = NULL,"
                     " lease_expires_at = NULL WHERE state = 'running'")
        conn.execute("VACUUM pgjobs.jobs_live")
        holder.execute("COMMIT")


@pytest.fixture(params=["analyzed", "emptied"])
def analyzed(request, fresh_dsn: str) -> tuple[str, list[int], uuid.UUID]:
    """QUEUED jobs, then RUNNING of them claimed: a worker's table mid-drain, with the statistics
    autovacuum took before it started ("analyzed": all queued) or ones that say it is empty
    ("emptied")."""
    emptied = request.param == "emptied"
    if emptied:
        _emptied_behind_a_snapshot(fresh_dsn)
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        with conn.transaction():
            enqueue_many(conn, (JobSpec(kind="noop", payload={"seq": i}) for i in range(QUEUED)))
        if not emptied:
            conn.execute("VACUUM ANALYZE pgjobs.jobs")
        token = uuid.uuid4()
        ids = _claim(conn, token, RUNNING)
        pages, rows = conn.execute("SELECT relpages, reltuples FROM pg_class"
                                   " WHERE oid = 'pgjobs.jobs_live'::regclass").fetchone()
    assert len(ids) == RUNNING
    assert (pages > 50 and rows == 0) if emptied else rows >= QUEUED, (pages, rows)
    return fresh_dsn, ids, token


def _plans(dsn: str, mode: str, query: str, params: dict) -> tuple[list[dict], int]:
    """Run `query` prepared (as psycopg runs the worker's statements) 6 times under plan_cache_mode
    `mode`, each in a rolled-back transaction; the plans auto_explain reported and the row count."""
    plans: list[dict] = []
    with psycopg.connect(dsn, prepare_threshold=0) as conn:
        conn.add_notice_handler(lambda d: plans.append(json.loads(d.message_primary.split("plan:", 1)[1])))
        conn.execute("LOAD 'auto_explain'")
        # nested: complete_jobs' statement runs inside its function (queue migration 0011)
        for setting in ("log_min_duration = 0", "log_analyze = on", "log_format = json", "log_level = notice",
                        "log_nested_statements = on"):
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


def _assert_keyed(plans: list[dict], group: int) -> None:
    """Rows found by primary key, the group's unnest run once: never per running job."""
    for report in plans:
        nodes = list(_nodes(report["Plan"]))
        scans = [n for n in nodes if n["Node Type"] == "Function Scan"]
        assert scans, json.dumps(report["Plan"])[:2000]
        for scan in scans:
            assert scan["Actual Loops"] == 1, json.dumps(report["Plan"])[:2000]
        assert not [n for n in nodes if n.get("Index Name") == "jobs_running_idx"], json.dumps(report["Plan"])[:2000]
        # no join compares each id with every other (n x m): a row met is a match, or (apply_outcomes,
        # whose two branches split the group) left once to the other branch
        assert sum(n.get("Rows Removed by Join Filter", 0) for n in nodes) <= group, json.dumps(report["Plan"])[:2000]


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
    _assert_keyed(plans, GROUP)


@pytest.mark.parametrize("mode", ["force_custom_plan", "force_generic_plan"])
def test_outcome_plans_stay_keyed_after_analyze(analyzed, mode):
    from pgjobs.queue import Retry

    dsn, ids, token = analyzed
    items = [_Done(i, token, Retry("boom", delay=1.0)) for i in ids[:GROUP]]
    plans, rows = _plans(dsn, mode, Q["apply_outcomes"], _params(items))
    assert rows == GROUP
    _assert_keyed(plans, GROUP)


@pytest.mark.parametrize("mode", ["force_custom_plan", "force_generic_plan"])
def test_heartbeat_plans_stay_keyed_after_analyze(analyzed, mode):
    dsn, ids, token = analyzed
    plans, rows = _plans(dsn, mode, Q["extend_leases"], {"ids": ids, "tokens": [token] * len(ids),
                                                          "lease_seconds": 30})
    assert rows == RUNNING
    _assert_keyed(plans, RUNNING)


async def test_completion_planned_on_a_small_table_stays_keyed_once_it_grows(fresh_dsn):
    """A plan cached while the queue was small must not scan it once it is big. psycopg prepares a
    statement on its 5th run and the server may then keep one generic plan for the session; growth
    alone never invalidates it (only ANALYZE, VACUUM or DDL on the table do). Planned on 200 rows
    (5 pages), complete_jobs' generic plan was a hash join over a seq scan of the table, and after
    a burst of 20,000 jobs each 5-job group read all of it: 5-7 ms per group, a drain at
    concurrency 10 at ~1/3 of its speed until autovacuum next touched the table."""
    from pgjobs.queue import Complete
    from pgjobs.queue.completer import Finished, write_outcomes
    from pgjobs.queue.jobs import Job

    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE pgjobs.jobs_live SET (autovacuum_enabled = false)")  # no ANALYZE mid-test
        enqueue_many(conn, (JobSpec(kind="noop") for _ in range(200)))
        conn.execute("VACUUM ANALYZE pgjobs.jobs_live")

    def claimed(conn: psycopg.Connection, n: int) -> list[Finished]:
        token = uuid.uuid4()
        jobs = [Job(id=i, root_id=i, parent_id=None, kind="noop", queue="default", payload_json="{}", priority=0,
                    run_at=None, attempt=1, snoozes=0, max_attempts=3, backoff_base_ms=0, backoff_cap_ms=0,
                    dedupe_key=None, lease_token=token) for i in _claim(conn, token, n)]
        assert len(jobs) == n
        return [Finished(job, Complete(), 0.0) for job in jobs]

    plans: list[dict] = []
    with psycopg.connect(fresh_dsn, autocommit=True) as sync:
        async with await psycopg.AsyncConnection.connect(fresh_dsn) as conn:  # the completer's default prepare
            # What the server chose on its own in the history drain (auto mode, after 5 custom
            # plans, on costs of the moment); forced so the test does not hang on cost estimates.
            await conn.execute("SET plan_cache_mode = force_generic_plan")
            await conn.commit()
            for _ in range(10):  # well past psycopg's prepare and the server's 5 custom plans
                await write_outcomes(conn, claimed(sync, 5))
            with sync.transaction():
                enqueue_many(sync, (JobSpec(kind="noop") for _ in range(20_000)))
            conn.add_notice_handler(lambda d: plans.append(json.loads(d.message_primary.split("plan:", 1)[1])))
            await conn.execute("LOAD 'auto_explain'")
            for setting in ("log_min_duration = 0", "log_nested_statements = on", "log_format = json",
                            "log_level = notice"):
                await conn.execute(f"SET auto_explain.{setting}")
            await conn.commit()
            plans.clear()
            items = await write_outcomes(conn, claimed(sync, 5))
    assert [item.state for item in items] == ["succeeded"] * 5
    live = [n for report in plans for n in _nodes(report["Plan"]) if n.get("Relation Name") == "jobs_live"
            and n["Node Type"] != "ModifyTable"]
    assert live, [report["Plan"]["Node Type"] for report in plans]
    for node in live:
        assert node["Node Type"] == "Index Scan" and node["Index Name"] == "jobs_live_pkey", json.dumps(node)[:2000]
