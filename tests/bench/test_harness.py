"""bin/bench's harness on pgjobs and the PostgreSQL wake-up floor (no peers, no npm), tiny N: the
exactly-once check runs, passes on honest runs, and catches a job completed twice, whether in the
database or in its input, and a notification the floor's listener never got."""

from __future__ import annotations

import json

import psycopg

from benchkit import report, verify
from benchkit.envs import floor_runtime, pgjobs_runtime
from benchkit.harness import WORKLOADS, Bench, Config, Figure

N = 50


def config(dsn: str, **overrides) -> Config:
    lines: list[str] = []
    base = dict(dsn=dsn, n=N, quick=True, systems=("pgjobs", "pg-floor"), reuse_db=True, reps=1, warmup=10,
                workloads=tuple(w for w in WORKLOADS if w not in ("horizon", "history", "soak", "dashboard")),  # their own tests
                wake_samples=10, wake_warmup=2, wake_rounds=1, procs=(1, 2), say=lines.append)
    return Config(**(base | overrides))


def test_every_pgjobs_run_is_verified_exactly_once(bench_db: str, tmp_path) -> None:
    bench = Bench(config(bench_db))
    bench.run_all()

    assert not bench.skipped
    workloads = {f.workload for f in bench.figures if f.system == "pgjobs"}
    assert workloads == {"enqueue", "drain", "audited", "fanout", "wake", "procs-1", "procs-2"}
    assert [f.workload for f in bench.figures if f.system == "pg-floor"] == ["wake"]
    for figure in bench.figures:
        for run in figure.runs:
            assert run.error is None, run.error
            assert run.checks, f"{figure.workload}: no exactly-once check ran"
            assert all(c.ok for c in run.checks), [c for c in run.checks if not c.ok]
    names = {f.workload: {c.name for r in f.runs for c in r.checks} for f in bench.figures if f.system == "pgjobs"}
    assert {"jobs succeeded once", "handler runs"} <= names["drain"]
    assert "log rows" in names["audited"]
    assert {"children per root", "log lineage", "log rows"} <= names["fanout"]
    floor = next(f for f in bench.figures if f.system == "pg-floor").runs[0]
    assert [c.name for c in floor.checks] == ["notifications received once", "durable settings"]
    assert floor.checks[0].expected == 12 and floor.result["samples"] == 10  # warm-up 2 + 10 measured
    fanout = next(f for f in bench.figures if f.workload == "fanout").runs[0]
    assert fanout.checks[0].expected == (N // 6) * 6  # every root and every child was counted
    assert bench.ok

    targets = [t.evaluate(bench) for t in report.TARGETS]
    out = tmp_path / "bench.json"
    report.write_json(str(out), report.to_json(bench, report.environment(bench), targets))
    data = json.loads(out.read_text())
    assert data["ok"] is True and all(f["verified"] for f in data["figures"])
    assert "FAIL" not in report.table(bench).split("exactly-once", 1)[1]


def test_a_job_completed_twice_is_caught(bench_db: str) -> None:
    bench = Bench(config(bench_db))
    run = bench.run("pgjobs", pgjobs_runtime(), bench_db, "audited", N, {"concurrency": 10}, N)
    assert run.ok, [c for c in run.checks if not c.ok]

    # A duplicate completion record in the verifier's input: the handler "ran" one job twice.
    executed = run.records["executed"] + run.records["executed"][:1]
    doubled = verify.checks_for("pgjobs", "audited", bench_db, run.result | {"executed": executed}, N)
    handler = next(c for c in doubled if c.name == "handler runs")
    assert not handler.ok and handler.duplicated == 1

    # The same in the database: a second audit row for a job (a second attempt's log).
    with psycopg.connect(bench_db, autocommit=True) as conn:
        conn.execute("INSERT INTO bench_enrichment_log (entity_type, operation, status, job_id, is_root_job, attempt)"
                     " SELECT 'ALBUM', 'BENCH_NOOP', 'SUCCESS', min(job_id), true, 2 FROM bench_enrichment_log")
    bench.verify(run, bench_db, N)
    logs = next(c for c in run.checks if c.name == "log rows")
    assert not logs.ok and logs.duplicated == 1

    # A failing check fails the figure, the whole run (bin/bench exits 1) and shows in its row.
    bench.figures.append(Figure("pgjobs", "audited", "audited drain", [run]))
    assert not bench.ok
    assert "FAIL log rows" in report.table(bench)


def test_exactly_once_counts_every_kind_of_mistake() -> None:
    assert verify.exactly_once("ok", [1, 2, 3], [3, 1, 2], expected_count=3).ok
    missing = verify.exactly_once("x", [1, 2, 3], [1, 2])
    assert (missing.ok, missing.missing) == (False, 1)
    twice = verify.exactly_once("x", [1, 2], [1, 2, 2])
    assert (twice.ok, twice.duplicated) == (False, 1)
    stranger = verify.exactly_once("x", [1], [1, 9])
    assert (stranger.ok, stranger.unexpected) == (False, 1)
    assert not verify.exactly_once("x", [1, 2], [1, 2], expected_count=3).ok  # a job was never enqueued
    assert verify.exactly_once("x", [7], [7] * 5, times=5).ok
    assert not verify.exactly_once("x", [7], [7] * 4, times=5).ok


def test_a_lost_or_doubled_floor_notification_is_caught(bench_db: str) -> None:
    bench = Bench(config(bench_db, systems=("pg-floor",)))
    run = bench.run("pg-floor", floor_runtime(), bench_db, "wake", 0, {}, 12, ["--samples", "10", "--warmup", "2"])
    assert run.ok, [c for c in run.checks if not c.ok]

    received = run.records["executed"]
    lost = verify.checks_for("pg-floor", "wake", bench_db, {"executed": received[1:]}, 12)[0]
    assert not lost.ok and lost.missing == 1
    doubled = verify.checks_for("pg-floor", "wake", bench_db, {"executed": received + received[:1]}, 12)[0]
    assert not doubled.ok and doubled.duplicated == 1
