"""Exactly-once verification: after every run, each job must have exactly one completion record.

A check compares the set of jobs that exist (expected ids, and how many there must be) with a
list of records, one entry per completion record or handler execution. A job with no record is
missing; with more than one, it ran or completed twice; a record for an unknown id is unexpected.
Records come from the system's own tables (read here with SQL, never taken on a driver's word
where the database can answer) and from the ids the driver's handlers saw.

    exactly_once(name, expected_ids, records, expected_count=None, times=1) -> Check   (pure)
    checks_for(system, workload, dsn, result, expected_n) -> list[Check]              (reads the db)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Iterable

import psycopg


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    expected: int
    records: int
    missing: int
    duplicated: int
    unexpected: int
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


def exactly_once(name: str, expected_ids: Iterable, records: Iterable, *, expected_count: int | None = None,
                 times: int = 1) -> Check:
    """Every expected id must appear exactly `times` times in records, and nothing else may."""
    expected = Counter(int(i) for i in expected_ids)
    seen = Counter(int(r) for r in records)
    dup_expected = [i for i, c in expected.items() if c > 1]
    missing = [i for i in expected if seen[i] < times]
    duplicated = [i for i in expected if seen[i] > times]
    unexpected = [i for i in seen if i not in expected]
    problems = []
    if expected_count is not None and len(expected) != expected_count:
        problems.append(f"{len(expected)} jobs exist, expected {expected_count}")
    if dup_expected:
        problems.append(f"{len(dup_expected)} ids listed twice as jobs (e.g. {dup_expected[:3]})")
    if missing:
        problems.append(f"{len(missing)} without {'a' if times == 1 else times} record(s) (e.g. {sorted(missing)[:3]})")
    if duplicated:
        problems.append(f"{len(duplicated)} with too many records (e.g. {sorted(duplicated)[:3]})")
    if unexpected:
        problems.append(f"{len(unexpected)} records for unknown ids (e.g. {sorted(unexpected)[:3]})")
    return Check(name, not problems, len(expected), sum(seen.values()), len(missing), len(duplicated),
                 len(unexpected), "; ".join(problems) or "ok")


def _ids(conn: psycopg.Connection, query: str) -> list[int]:
    return [row[0] for row in conn.execute(query).fetchall()]


def _logs(conn: psycopg.Connection, expected: list[int], n: int, roots: list[int] | None = None) -> list[Check]:
    """One audit row (bench_enrichment_log) per job; in fan-out, every child's row names its root, 5 per root."""
    checks = [exactly_once("log rows", expected, _ids(conn, "SELECT job_id FROM bench_enrichment_log"), expected_count=n)]
    if roots is not None:
        children = _ids(conn, "SELECT parent_job_id FROM bench_enrichment_log WHERE parent_job_id IS NOT NULL")
        checks.append(exactly_once("log lineage", roots, children, times=5))
    return checks


def _pgjobs(conn: psycopg.Connection, workload: str, result: dict, n: int) -> list[Check]:
    if workload == "soak":  # retention deleted most of them: the driver's own account (benchkit.soak)
        return _soak(result, n)
    # history: the run's no-op jobs, beside the data set's finished families
    where = " WHERE kind = 'noop'" if workload.startswith("history") else ""
    rows = conn.execute("SELECT id, state::text, attempt, parent_id, root_id FROM pgjobs.jobs" + where).fetchall()
    expected = [r[0] for r in rows]
    # One record per run of a succeeded job: attempt = 2 means it ran twice, so it counts twice.
    runs = [r[0] for r in rows if r[1] == "succeeded" for _ in range(r[2])]
    checks = [exactly_once("jobs succeeded once", expected, runs, expected_count=n),
              exactly_once("handler runs", expected, result.get("executed", []))]
    if workload == "fanout":
        roots = [r[0] for r in rows if r[3] is None]
        bad_root = [r[0] for r in rows if r[3] is not None and r[4] not in roots]
        checks.append(exactly_once("children per root", roots, [r[3] for r in rows if r[3] is not None], times=5))
        if bad_root:
            checks.append(Check("root links", False, len(rows), len(rows), 0, 0, len(bad_root),
                                f"{len(bad_root)} children whose root_id is not a root"))
    if workload in ("audited", "fanout"):
        checks += _logs(conn, expected, n, [r[0] for r in rows if r[3] is None] if workload == "fanout" else None)
    return checks


def _soak(result: dict, n: int) -> list[Check]:
    """Every job enqueued ran once (the handlers' payload seqs against 0..N-1), none is left
    unfinished, and retention pruned some (the rest are still there, succeeded)."""
    checks = [exactly_once("handler runs", range(n), result.get("executed", []))]
    left, pruned = result.get("left_unfinished", -1), result.get("pruned", 0)
    checks.append(Check("nothing left unfinished", left == 0, n, n - max(left, 0), max(left, 0), 0, 0,
                        "ok" if left == 0 else f"{left} jobs not succeeded at the end"))
    checks.append(Check("retention pruned", pruned > 0, n, pruned, 0, 0, 0,
                        "ok" if pruned > 0 else "retention deleted nothing"))
    return checks


def _pgqueuer(conn: psycopg.Connection, workload: str, result: dict, n: int) -> list[Check]:
    # pgqueuer deletes a finished job and logs it: 'queued' rows list every job ever enqueued,
    # 'successful' rows the completions; nothing may be left in the queue table.
    expected = _ids(conn, "SELECT job_id FROM pgqueuer_log WHERE status = 'queued'")
    checks = [
        exactly_once("completions logged", expected,
                     _ids(conn, "SELECT job_id FROM pgqueuer_log WHERE status = 'successful'"), expected_count=n),
        exactly_once("queue empty", [], _ids(conn, "SELECT id FROM pgqueuer")),
        exactly_once("handler runs", expected, result.get("executed", [])),
    ]
    if workload in ("audited", "fanout"):
        roots = (_ids(conn, "SELECT job_id FROM pgqueuer_log WHERE status = 'queued' AND entrypoint = 'fan.root'")
                 if workload == "fanout" else None)
        checks += _logs(conn, expected, n, roots)
    return checks


def _procrastinate(conn: psycopg.Connection, workload: str, result: dict, n: int) -> list[Check]:
    expected = _ids(conn, "SELECT id FROM procrastinate_jobs")
    checks = [
        exactly_once("jobs succeeded", expected,
                     _ids(conn, "SELECT id FROM procrastinate_jobs WHERE status = 'succeeded'"), expected_count=n),
        # The events table gets a 'started' row each time a worker starts the job.
        exactly_once("starts", expected,
                     _ids(conn, "SELECT job_id FROM procrastinate_events WHERE type = 'started'")),
        exactly_once("handler runs", expected, result.get("executed", [])),
    ]
    if workload in ("audited", "fanout"):
        roots = (_ids(conn, "SELECT id FROM procrastinate_jobs WHERE task_name = 'fan.root'")
                 if workload == "fanout" else None)
        checks += _logs(conn, expected, n, roots)
    return checks


def _bullmq(conn: psycopg.Connection, workload: str, result: dict, n: int) -> list[Check]:
    # Redis is read by the driver: the completed set, each id repeated by its start count.
    completed = result.get("completed", [])
    expected = sorted(set(completed) | set(result.get("executed", [])))
    checks = [
        exactly_once("completed once", expected, completed, expected_count=n),
        exactly_once("handler runs", expected, result.get("executed", [])),
        exactly_once("queue empty", [], [0] * int(result.get("leftover", 0))),
    ]
    if workload in ("audited", "fanout"):
        roots = None
        if workload == "fanout":
            roots = _ids(conn, "SELECT job_id FROM bench_enrichment_log WHERE is_root_job")
        checks += _logs(conn, expected, n, roots)
    return checks


def _pgbench(conn: psycopg.Connection, workload: str, result: dict, n: int) -> list[Check]:
    rows = conn.execute("SELECT id, state, attempt FROM bench_jobs").fetchall()
    return [exactly_once("jobs succeeded once", [r[0] for r in rows],
                         [r[0] for r in rows if r[1] == "succeeded" for _ in range(r[2])], expected_count=n)]


def _floor(conn: psycopg.Connection, workload: str, result: dict, n: int) -> list[Check]:
    # No queue: each inserted row's NOTIFY must have reached the listener once.
    return [exactly_once("notifications received once", _ids(conn, "SELECT id FROM bench_floor"),
                         result.get("executed", []), expected_count=n)]


SYSTEMS = {"pgjobs": _pgjobs, "pgqueuer": _pgqueuer, "procrastinate": _procrastinate, "bullmq": _bullmq,
           "bullmq-aof": _bullmq, "pg-floor": _floor, "pgbench": _pgbench}


def durable(conn: psycopg.Connection) -> Check:
    """Durable settings only: no unlogged table in the run's database (pgqueuer, say, can install
    its tables unlogged), and fsync/synchronous_commit on as a new session of it sees them."""
    unlogged = [r[0] for r in conn.execute("SELECT relname FROM pg_class WHERE relpersistence = 'u'").fetchall()]
    settings = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in ("fsync", "synchronous_commit")}
    problems = [f"unlogged: {', '.join(unlogged[:5])}"] if unlogged else []
    problems += [f"{k}={v}" for k, v in settings.items() if v != "on"]
    return Check("durable settings", not problems, 0, 0, 0, 0, len(unlogged), "; ".join(problems) or "ok")


def checks_for(system: str, workload: str, dsn: str, result: dict, expected_n: int | None) -> list[Check]:
    """Read the run's completion records from its database and check them."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return SYSTEMS[system](conn, workload, result, expected_n) + [durable(conn)]
