"""The horizon workload on pgjobs at tiny sizes: both drains run verified at both settings, the held
ones really held a snapshot, and the idle poll reports its timings and buffers behind the snapshot
and after it ended."""

from __future__ import annotations

from benchkit import horizon
from benchkit.harness import Bench, Config, Figure, Run
from benchkit.verify import Check

N, M = 60, 300


def test_horizon_runs_are_verified_and_reported(bench_db: str) -> None:
    """--quick: one pair per setting (the full run's pgjobs pairs are the next test's)."""
    lines: list[str] = []
    bench = Bench(Config(dsn=bench_db, n=N, quick=True, systems=("pgjobs",), workloads=("horizon",),
                         reuse_db=True, reps=1, warmup=10, horizon_n=N, horizon_m=M, horizon_poll_runs=20,
                         say=lines.append))
    bench.run_all()

    figures = {f.workload: f for f in bench.figures}
    assert set(figures) == {"horizon-free-default", "horizon-held-default", "horizon-free-bench",
                            "horizon-held-bench", "idle-poll"}
    assert all(f.ok for f in figures.values()), [(f.workload, [r.error for r in f.runs]) for f in figures.values()]
    assert figures["horizon-free-default"].runs[0].setting == {"concurrency": 10}
    assert figures["horizon-held-bench"].runs[0].setting == {"concurrency": 2000}
    for name in ("horizon-held-default", "horizon-held-bench"):
        assert figures[name].runs[0].result["snapshot_xmin"]  # the other session really held one
    poll = figures["idle-poll"].runs[0].result
    assert poll["n"] == M and poll["samples"] == 20 and poll["snapshot_xmin"]
    assert poll["buffers"] > 0 and poll["p50"] > 0 and poll["after_vacuum"]["p50"] > 0
    assert poll["n_dead_tup"] >= M  # the drained jobs' old versions were still there when it polled
    checks = {c.name for c in figures["idle-poll"].runs[0].checks}
    assert "jobs succeeded once" in checks and "handler runs" in checks

    results = {t.name: t.evaluate(bench) for t in horizon.TARGETS}
    assert results["horizon degrades least, default"]["result"] == "SKIP"  # no peer ran
    assert results["horizon >= 0.5x drain, default"]["result"] in ("PASS", "FAIL")
    # 300 jobs prove nothing about 1,000,000: never a PASS below the target's size.
    assert results[horizon.PollTarget.name]["result"] in ("SKIP", "FAIL")
    summary = "\n".join(horizon.summary(bench))
    assert "concurrency=10 (default)" in summary and f"after {M:,} jobs drained behind the snapshot" in summary


def test_pgjobs_takes_three_pairs_in_alternating_order(bench_db: str) -> None:
    """Outside --quick pgjobs drains PGJOBS_PAIRS pairs per setting whatever their length (its
    default pair is over the repetition budget), and every other pair runs the held drain first."""
    bench = Bench(Config(dsn=bench_db, n=N, systems=("pgjobs",), workloads=("horizon",), reuse_db=True,
                         reps=1, rep_budget=0.0, warmup=10, horizon_n=N, horizon_m=M, horizon_poll_runs=5,
                         say=lambda line: None))
    bench.run_all()

    figures = {f.workload: f for f in bench.figures}
    for setting in ("default", "bench"):
        free, held = figures[f"horizon-free-{setting}"].runs, figures[f"horizon-held-{setting}"].runs
        assert len(free) == len(held) == horizon.PGJOBS_PAIRS
        assert all(r.ok for r in free + held)
        held_first = [h.started < f.started for f, h in zip(free, held)]
        assert held_first == [i % 2 == 1 for i in range(horizon.PGJOBS_PAIRS)]
        assert len(horizon.pair_ratios(bench, "pgjobs", setting)) == horizon.PGJOBS_PAIRS


def _pairs(bench: Bench, system: str, ratios: list[float], n: int = 100_000) -> None:
    ok = [Check("exactly once", True, n, n, 0, 0, 0, "ok")]
    free = [Run(system, "drain", {}, result={"rate": 1000.0, "n": n}, checks=ok) for _ in ratios]
    held = [Run(system, "drain", {}, result={"rate": 1000.0 * r, "n": n}, checks=ok) for r in ratios]
    bench.figures += [Figure(system, "horizon-free-bench", "", free), Figure(system, "horizon-held-bench", "", held)]


def test_degrades_least_counts_only_the_shortfall_below_one() -> None:
    """A held snapshot cannot speed a drain up: ratios above 1 are noise and tie; below 1 they rank."""
    def verdict(ours: list[float], peer: list[float], peer_n: int = 100_000) -> str:
        bench = Bench(Config(dsn="", say=lambda line: None))
        _pairs(bench, "pgjobs", ours)
        _pairs(bench, "pgqueuer", peer, peer_n)
        return horizon.LeastTarget("bench").evaluate(bench)["result"]

    assert verdict([0.94, 1.01, 1.16], [1.02, 1.02, 0.67]) == "PASS"  # 1.01 vs 1.02: neither degraded
    assert verdict([0.95, 0.97, 0.99], [0.99, 1.02, 1.05]) == "FAIL"  # 0.97 degraded, the peer did not
    assert verdict([0.80], [0.60]) == "PASS"
    assert verdict([0.60], [0.80]) == "FAIL"
    assert verdict([0.60], [0.80], peer_n=2_000) == "SKIP"  # only peers at the same N are judged
