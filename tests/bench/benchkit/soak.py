"""The soak workload (issue 16): N jobs (1,000,000) through one pgjobs worker with retention on.

drivers/pgjobs_soak_driver.py feeds the queue in chunks for the whole run and the worker keeps
`--soak-keep` seconds (5) of finished families, so retention deletes while it drains; the N jobs
are timed from once retention is deleting (a warm-up drains until then, its rate printed beside:
what retention's deletes cost). Targets: the throughput over the last tenth of the jobs is within
10 % of the first tenth's (a table that grows or bloats slows the claim, the completion and the
pruning as it goes), and the jobs table with its indexes stays bounded: at the end at most 1.5 x
its size halfway through (a table growing with the jobs run would be 2 x). Verified like every run: each payload seq ran exactly once, nothing left
unfinished, retention pruned. The soak runs --reps times (one with --quick): one run's tenths move
8-19 k jobs/s on this 2-core VM, so the rate figure is the median of the runs' last/first ratios;
the size figure is the worst run's.
"""

from __future__ import annotations

import statistics
import sys

from benchkit import envs
from benchkit.harness import Bench, Figure

SOAK_N, SOAK_N_QUICK = 1_000_000, 100_000
KEEP_SECONDS = 5.0
RATE_GOAL = 0.9
SIZE_GOAL = 1.5
SHOWN = 12  # size lines printed under the table


def bench_system(bench: Bench, swept: dict) -> None:
    c = bench.config
    n = c.soak_n or (SOAK_N_QUICK if c.quick else SOAK_N)
    runtime = envs.pgjobs_runtime()
    runtime.command = [sys.executable, str(envs.DRIVERS / "pgjobs_soak_driver.py")]
    setting = (swept or {"concurrency": 2000}) | {"keep": c.soak_keep} | (
        {"interval": c.soak_interval} if c.soak_interval != 1.0 else {})
    c.say(f"  soak: {n:,} jobs through one worker, retention keeping {c.soak_keep:g} s of finished jobs, "
          f"{c.reps} run(s)")
    runs = []
    with bench.database("soak") as db:  # its own (bench_soak), or the suite's with --reuse-db
        for _ in range(c.reps):  # the driver starts each run from an empty table
            runs.append(bench.run("pgjobs", runtime, db, "soak", n, setting, n))
    bench.figures.append(Figure("pgjobs", "soak", f"soak, {n:,} jobs, retention on", runs))


def _runs(bench: Bench) -> list:
    """The verified soak runs (a failed one fails the bench on its own; the targets read the rest)."""
    f = next((f for f in bench.figures if f.system == "pgjobs" and f.workload == "soak"), None)
    return [r for r in f.runs if r.ok and r.result.get("tenths")] if f else []


def _rate_ratio(run) -> float:
    return run.result["tenths"][-1] / run.result["tenths"][0]


def _size_ratio(run) -> float:
    half, end = _total(_halfway(run.result["samples"], run.result["n"])), _total(run.result["samples"][-1])
    return end / half if half else float("inf")


def _run(bench: Bench):
    """The run whose rate ratio is the median (the one the summary shows in full)."""
    runs = sorted(_runs(bench), key=_rate_ratio)
    return runs[(len(runs) - 1) // 2] if runs else None


def _total(sample: dict) -> int:
    return sample["heap"] + sample["indexes"]


def _halfway(samples: list[dict], n: int) -> dict:
    return next((s for s in samples if s["done"] >= n / 2), samples[-1])


class RateTarget:
    name = f"soak last 10% >= {RATE_GOAL:g}x first 10%"

    def evaluate(self, bench: Bench) -> dict:
        run = _run(bench)
        if run is None:
            return {"target": self.name, "result": "SKIP", "why": "no verified soak run"}
        tenths = run.result["tenths"]
        ratios = [_rate_ratio(r) for r in _runs(bench)]
        ratio = statistics.median(ratios)
        return {"target": self.name, "ours": tenths[-1], "theirs": tenths[0], "ratio": ratio,
                "goal": f">= {RATE_GOAL:g}x", "result": "PASS" if ratio >= RATE_GOAL else "FAIL", "runs": ratios,
                "line": f"median of {len(ratios)} run(s) {ratio:.2f}x (runs {' '.join(f'{r:.2f}' for r in ratios)}); "
                        f"the median run: {tenths[-1]:,.0f} jobs/s over the last tenth vs {tenths[0]:,.0f} over "
                        f"the first (tenths: {' '.join(f'{t / 1000:.1f}k' for t in tenths)})"}


class SizeTarget:
    name = f"soak sizes bounded (end <= {SIZE_GOAL:g}x halfway)"

    def evaluate(self, bench: Bench) -> dict:
        runs = _runs(bench)
        if not runs:
            return {"target": self.name, "result": "SKIP", "why": "no verified soak run"}
        run = max(runs, key=_size_ratio)  # the worst run decides
        samples, n = run.result["samples"], run.result["n"]
        half, end = _total(_halfway(samples, n)), _total(samples[-1])
        peak = max(_total(s) for s in samples)
        ratio = _size_ratio(run)
        return {"target": self.name, "ours": end, "theirs": half, "ratio": ratio, "goal": f"<= {SIZE_GOAL:g}x",
                "result": "PASS" if ratio <= SIZE_GOAL else "FAIL", "runs": [_size_ratio(r) for r in runs],
                "line": f"worst of {len(runs)} run(s): jobs table + indexes {end / 2**20:.1f} MB at the end vs "
                        f"{half / 2**20:.1f} MB halfway ({ratio:.2f}x; peak {peak / 2**20:.1f} MB; "
                        f"{run.result['pruned']:,} jobs pruned; runs "
                        f"{' '.join(f'{_size_ratio(r):.2f}' for r in runs)})"}


TARGETS = (RateTarget(), SizeTarget())


def summary(bench: Bench) -> list[str]:
    run = _run(bench)
    if run is None:
        return []
    res = run.result
    runs = _runs(bench)
    lines = [f"soak: {len(runs)} run(s); last/first tenth {' '.join(f'{_rate_ratio(r):.2f}' for r in runs)}, "
             f"end/halfway size {' '.join(f'{_size_ratio(r):.2f}' for r in runs)}; the median run:",
             f"  {res['n']:,} jobs in {res['seconds']:.0f} s ({res['rate']:,.0f} jobs/s), retention keeping "
             f"{res['keep_seconds']:g} s: {res['pruned']:,} pruned; jobs/s per tenth: "
             + " ".join(f"{t:,.0f}" for t in res["tenths"])]
    warm = res.get("warmup")
    if warm and warm.get("before_pruning_rate"):
        lines.append(f"  warm-up: {warm['jobs']:,} jobs until retention's first deletion; before it "
                     f"{warm['before_pruning_rate']:,.0f} jobs/s over {warm['before_pruning_seconds']:.1f} s "
                     f"(the measured run: {res['rate'] / warm['before_pruning_rate']:.2f}x that, with retention deleting)")
    lines.append("  t (s)   done        live rows   queued    heap MB  indexes MB")
    samples = res["samples"]
    step = max(1, -(-len(samples) // SHOWN))
    shown = samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
    for s in shown:
        lines.append(f"  {s['t']:>6.1f}  {s['done']:>10,}  {s['live'] or 0:>10,}  {s['queued']:>7,}  "
                     f"{s['heap'] / 2**20:>8.1f}  {s['indexes'] / 2**20:>10.1f}")
    return lines
