"""The soak workload (issue 16): N jobs (1,000,000) through one pgjobs worker with retention on.

drivers/pgjobs_soak_driver.py feeds the queue in chunks for the whole run and the worker keeps
`--soak-keep` seconds (5) of finished families, so retention deletes while it drains. Targets: the
throughput over the last tenth of the jobs is within 10 % of the first tenth's (a table that grows
or bloats slows the claim, the completion and the pruning as it goes), and the jobs table with its
indexes stays bounded: at the end at most 1.5 x its size halfway through (a table growing with the
jobs run would be 2 x). Verified like every run: each payload seq ran exactly once, nothing left
unfinished, retention pruned.
"""

from __future__ import annotations

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
    c.say(f"  soak: {n:,} jobs through one worker, retention keeping {c.soak_keep:g} s of finished jobs")
    with bench.database("soak") as db:  # its own (bench_soak), or the suite's with --reuse-db
        run = bench.run("pgjobs", runtime, db, "soak", n, setting, n)
    bench.figures.append(Figure("pgjobs", "soak", f"soak, {n:,} jobs, retention on", [run]))


def _run(bench: Bench):
    f = next((f for f in bench.figures if f.system == "pgjobs" and f.workload == "soak"), None)
    return f.runs[0] if f and f.ok and f.runs[0].result.get("tenths") else None


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
        ratio = tenths[-1] / tenths[0]
        return {"target": self.name, "ours": tenths[-1], "theirs": tenths[0], "ratio": ratio,
                "goal": f">= {RATE_GOAL:g}x", "result": "PASS" if ratio >= RATE_GOAL else "FAIL",
                "line": f"{tenths[-1]:,.0f} jobs/s over the last tenth vs {tenths[0]:,.0f} over the first: "
                        f"{ratio:.2f}x (tenths: {' '.join(f'{t / 1000:.1f}k' for t in tenths)})"}


class SizeTarget:
    name = f"soak sizes bounded (end <= {SIZE_GOAL:g}x halfway)"

    def evaluate(self, bench: Bench) -> dict:
        run = _run(bench)
        if run is None:
            return {"target": self.name, "result": "SKIP", "why": "no verified soak run"}
        samples, n = run.result["samples"], run.result["n"]
        half, end = _total(_halfway(samples, n)), _total(samples[-1])
        peak = max(_total(s) for s in samples)
        ratio = end / half if half else float("inf")
        return {"target": self.name, "ours": end, "theirs": half, "ratio": ratio, "goal": f"<= {SIZE_GOAL:g}x",
                "result": "PASS" if ratio <= SIZE_GOAL else "FAIL",
                "line": f"jobs table + indexes {end / 2**20:.1f} MB at the end vs {half / 2**20:.1f} MB halfway "
                        f"({ratio:.2f}x; peak {peak / 2**20:.1f} MB; {run.result['pruned']:,} jobs pruned)"}


TARGETS = (RateTarget(), SizeTarget())


def summary(bench: Bench) -> list[str]:
    run = _run(bench)
    if run is None:
        return []
    res = run.result
    lines = [f"soak: {res['n']:,} jobs in {res['seconds']:.0f} s ({res['rate']:,.0f} jobs/s), retention keeping "
             f"{res['keep_seconds']:g} s: {res['pruned']:,} pruned; jobs/s per tenth: "
             + " ".join(f"{t:,.0f}" for t in res["tenths"]),
             "  t (s)   done        live rows   queued    heap MB  indexes MB"]
    samples = res["samples"]
    step = max(1, -(-len(samples) // SHOWN))
    shown = samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
    for s in shown:
        lines.append(f"  {s['t']:>6.1f}  {s['done']:>10,}  {s['live'] or 0:>10,}  {s['queued']:>7,}  "
                     f"{s['heap'] / 2**20:>8.1f}  {s['indexes'] / 2**20:>10.1f}")
    return lines
