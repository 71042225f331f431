"""The history and soak workloads on pgjobs at tiny sizes: every run verified, the history database
cached between runs (a second run reuses it), the targets and the summaries reported."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql

from benchkit import history, soak
from benchkit.harness import Bench, Config
from benchkit.schema import dbname_of, with_dbname

N = 60


def test_history_runs_are_verified_and_the_database_is_cached(bench_db: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    lines: list[str] = []
    config = Config(dsn=bench_db, n=N, quick=True, systems=("pgjobs",), workloads=("history",), reuse_db=True,
                    reps=1, warmup=10, history_jobs=120, db_prefix=prefix, say=lines.append)
    bench = Bench(config)
    try:
        bench.run_all()
        figures = {f.workload: f for f in bench.figures}
        assert set(figures) == {"history-empty-default", "history-full-default", "history-empty-bench",
                                "history-full-bench", "history-views"}
        assert all(f.ok for f in figures.values()), [(f.workload, [r.error or [c for c in r.checks if not c.ok]
                                                                   for r in f.runs]) for f in figures.values()]
        first = bench.history
        assert not first.cached and first.jobs >= 100 and first.log_rows > first.jobs
        with psycopg.connect(first.dsn) as conn:  # the history stays as loaded: only noop jobs come and go
            assert conn.execute("SELECT count(*) FROM pgjobs.jobs WHERE kind <> 'noop'").fetchone()[0] == first.jobs
        again = history.prepare(bench_db, 120, say=lines.append)
        assert again.cached and again.dsn == first.dsn and again.load_seconds == first.load_seconds
        results = {t.name: t.evaluate(bench) for t in history.TARGETS}
        assert results[history.DrainTarget("default").name]["result"] in ("PASS", "FAIL")
        assert results[history.ViewsTarget.name]["result"] in ("SKIP", "FAIL")  # 21 roots prove nothing
        assert "cached" not in history.summary(bench)[0] and "load took" in history.summary(bench)[0]
    finally:
        with psycopg.connect(with_dbname(bench_db, dbname_of(bench_db)), autocommit=True) as conn:
            for name in (dbname_of(getattr(bench, "history", None).dsn) if hasattr(bench, "history") else None,
                         f"{prefix}history_empty"):
                if name:
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


SOAK_N = 20_000  # at concurrency 2,000 3,000 jobs drained within ~0.1 s in CI: before a pass could prune


def test_soak_run_is_verified_prunes_and_reports_sizes(bench_db: str) -> None:
    lines: list[str] = []
    bench = Bench(Config(dsn=bench_db, n=N, quick=True, systems=("pgjobs",), workloads=("soak",), reuse_db=True,
                         reps=2, warmup=10, soak_n=SOAK_N, soak_keep=0.001, soak_interval=0.02,
                         say=lines.append))
    bench.run_all()
    (figure,) = bench.figures
    assert len(figure.runs) == 2  # --reps soaks, each from an empty table
    for run in figure.runs:
        assert run.ok, (run.error, [c for c in run.checks if not c.ok])
        assert run.result["pruned"] > 0 and run.result["left_unfinished"] == 0
        assert len(run.result["tenths"]) == 10 and run.result["samples"][-1]["done"] == SOAK_N
    results = {t.name: t.evaluate(bench) for t in soak.TARGETS}
    assert {r["result"] for r in results.values()} <= {"PASS", "FAIL"}
    assert all(len(r["runs"]) == 2 for r in results.values())
    rates = [run.result["tenths"][-1] / run.result["tenths"][0] for run in figure.runs]
    assert results[soak.RateTarget.name]["ratio"] == pytest.approx(sum(rates) / 2)  # the median of two
    assert "heap MB" in "\n".join(soak.summary(bench))
