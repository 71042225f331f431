"""The bench's output: the table, the targets with their ratios and PASS/FAIL, the JSON file.

Every figure shows its best value and every repetition; a figure whose exactly-once check
failed says so in its row (and the run exits non-zero). Targets are ratios of best values; a
target whose inputs are missing (peer skipped, run failed) is reported as SKIP, never as PASS.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone

import psycopg

from benchkit.harness import Bench, Figure


@dataclass(frozen=True)
class Target:
    name: str
    ours: tuple[str, str]  # (system, workload) of the numerator
    theirs: tuple[str, str]  # of the denominator
    goal: float
    at_most: bool = False  # True: ratio must be <= goal (latencies); else >= goal
    metric: str | None = None  # wake figures: p50 or p95

    def evaluate(self, bench: Bench) -> dict:
        ours, theirs = _figure(bench, *self.ours), _figure(bench, *self.theirs)
        a = ours.best(self.metric) if ours and ours.ok else None
        b = theirs.best(self.metric) if theirs and theirs.ok else None
        if a is None or b is None or b == 0:
            missing = "pgjobs" if a is None else f"{self.theirs[0]} {self.theirs[1]}"
            return {"target": self.name, "result": "SKIP", "why": f"no verified figure for {missing}"}
        ratio = a / b
        passed = ratio <= self.goal if self.at_most else ratio >= self.goal
        return {"target": self.name, "ours": a, "theirs": b, "ratio": ratio,
                "goal": f"{'<=' if self.at_most else '>='} {self.goal:g}x", "result": "PASS" if passed else "FAIL"}


TARGETS = (
    Target("drain >= 2.0x pgqueuer", ("pgjobs", "drain"), ("pgqueuer", "drain"), 2.0),
    Target("drain >= 1.5x BullMQ+Redis", ("pgjobs", "drain"), ("bullmq", "drain"), 1.5),
    Target("audited drain >= 0.7x own drain", ("pgjobs", "audited"), ("pgjobs", "drain"), 0.7),
    Target("fan-out >= 0.5x own drain", ("pgjobs", "fanout"), ("pgjobs", "drain"), 0.5),
    Target("bulk enqueue >= 1.5x pgqueuer", ("pgjobs", "enqueue"), ("pgqueuer", "enqueue"), 1.5),
    Target("wake-up p50 <= BullMQ's", ("pgjobs", "wake"), ("bullmq", "wake"), 1.0, at_most=True, metric="p50"),
    Target("wake-up p95 <= 2x BullMQ's", ("pgjobs", "wake"), ("bullmq", "wake"), 2.0, at_most=True, metric="p95"),
)


def wake_context(bench: Bench) -> list[str]:
    """Not targets: each wake-up p50 beside PostgreSQL's floor and BullMQ at equal durability."""
    floor = _figure(bench, "pg-floor", "wake")
    base = floor.best() if floor and floor.ok else None
    lines = []
    for f in bench.figures:
        if f.workload != "wake" or f.system == "pg-floor" or not f.ok or f.best() is None:
            continue
        above = f" ({f.best() - base:+.2f} ms vs the floor)" if base is not None else ""
        lines.append(f"      wake-up p50 {f.system:<14} {f.best():.2f} ms{above}")
    if lines and base is not None:
        lines.insert(0, f"note  floor = INSERT+NOTIFY with a durable commit, no queue (pg-floor): {base:.2f} ms p50")
    return lines


def _figure(bench: Bench, system: str, workload: str) -> Figure | None:
    return next((f for f in bench.figures if f.system == system and f.workload == workload), None)


def _num(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if metric.startswith("p") else f"{value:,.0f}"


def _cell(figure: Figure) -> tuple[str, str]:
    """(best, all repetitions) as the table shows them."""
    if figure.metric == "p50":
        best = "/".join(_num(figure.best(m), m) for m in ("p50", "p95", "p99")) + " ms"
        reps = " | ".join("/".join(_num(r.value(m), m) for m in ("p50", "p95", "p99")) for r in figure.runs if r.result)
        return best, reps
    reps = " | ".join(_num(v, "rate") for v in figure.values())
    return f"{_num(figure.best(), 'rate')} /s", reps


def _verdict(figure: Figure) -> str:
    errors = [r.error for r in figure.runs if r.error]
    if errors:
        return "ERROR " + errors[0][:60]
    failed = [c for r in figure.runs for c in r.checks if not c.ok]
    return "ok" if not failed else f"FAIL {failed[0].name}: {failed[0].detail}"[:80]


def _cpu(figure: Figure) -> str:
    run = figure.best_run
    if run is None or not run.result.get("cpu_seconds") or not run.result.get("n") or figure.workload == "enqueue":
        return "-"
    return f"{run.result['cpu_seconds'] / run.result['n'] * 1000:.3f}"


def table(bench: Bench) -> str:
    rows = [("system", "workload", "setting", "best", "runs", "driver cpu ms/job", "load", "exactly-once")]
    for f in bench.figures:
        best, reps = _cell(f)
        setting = " ".join(f"{k}={v}" for k, v in (f.runs[0].setting if f.runs else {}).items())
        if f.workload == "enqueue":
            setting = "one bulk call"
        load = max((r.load for r in f.runs), default=0.0)
        rows.append((f.system, f.label, setting, best, reps, _cpu(f), f"{load:.1f}", _verdict(f)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for system, why in bench.skipped.items():
        lines.append(f"{system}: skipped: {why}")
    return "\n".join(lines)


def targets_table(results: list[dict]) -> str:
    lines = []
    for t in results:
        if t["result"] == "SKIP":
            lines.append(f"SKIP  {t['target']:<34} ({t['why']})")
        elif "line" in t:  # targets that word their own comparison (benchkit.horizon)
            lines.append(f"{t['result']:<5} {t['target']:<34} {t['line']}")
        else:
            metric = "p" if "wake" in t["target"] else "rate"
            unit = " ms" if metric == "p" else "/s"
            lines.append(f"{t['result']:<5} {t['target']:<34} pgjobs {_num(t['ours'], metric)}{unit} vs "
                         f"{_num(t['theirs'], metric)}{unit}: ratio {t['ratio']:.2f}x (goal {t['goal']})")
    return "\n".join(lines)


def environment(bench: Bench) -> dict:
    c = bench.config
    pg: dict = {}
    try:
        with psycopg.connect(c.dsn, autocommit=True) as conn:
            pg["version"] = conn.execute("SHOW server_version").fetchone()[0]
            for name in ("fsync", "synchronous_commit", "shared_buffers", "wal_level", "max_connections"):
                pg[name] = conn.execute(f"SHOW {name}").fetchone()[0]  # names are ours, not input
    except psycopg.Error as exc:
        pg["error"] = str(exc).splitlines()[0]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(__file__)).stdout.strip()
    except OSError:
        commit = ""
    return {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "n": c.n, "quick": c.quick,
            "cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
            "loadavg_at_end": os.getloadavg(), "postgres": pg, "redis": bench.redis, "versions": bench.versions,
            "pgjobs_commit": commit or None, "warmup_jobs": c.warmup, "rep_budget_s": c.rep_budget}


def header(env: dict) -> str:
    pg = env["postgres"]
    parts = [f"N={env['n']:,}{' (quick)' if env['quick'] else ''}", f"{env['cpus']} cores",
             f"PostgreSQL {pg.get('version', '?')} (fsync={pg.get('fsync', '?')}, "
             f"synchronous_commit={pg.get('synchronous_commit', '?')})"]
    for system, redis in (env.get("redis") or {}).items():
        parts.append(f"Redis {redis['redis']} for {system} (appendonly={redis['appendonly']}, "
                     f"appendfsync={redis.get('appendfsync', '?')}, save={redis['save']})")
    return "pgjobs bench: " + ", ".join(parts)


def to_json(bench: Bench, env: dict, targets: list[dict]) -> dict:
    return {
        "environment": env, "ok": bench.ok, "skipped": bench.skipped, "targets": targets,
        "figures": [{"system": f.system, "workload": f.workload, "label": f.label, "metric": f.metric,
                     "best": f.best(), "values": f.values(), "verified": f.ok,
                     **({"best_p95": f.best("p95"), "best_p99": f.best("p99")} if f.metric == "p50" else {}),
                     "runs": [r.as_dict() for r in f.runs]} for f in bench.figures],
        "sweeps": [{"system": r.system, "workload": r.workload, "setting": r.setting, "rate": r.result.get("rate"), "n": r.result.get("n"),
                    "verified": r.ok, "error": r.error} for r in bench.sweeps],
    }


def write_json(path: str, data: dict) -> None:
    with open(path, "w") as out:
        json.dump(data, out, indent=2, default=str)
        out.write("\n")
