"""The bench plan: which runs each system gets, run one after another, each verified at once.

A run is one driver subprocess doing one workload on the system's own database; right after it
returns, verify.checks_for reads that database and checks exactly-once. A figure is one number
of the table (e.g. "pgqueuer drain") with its repetitions: up to `reps` of them, more than one only
when the first took less than `rep_budget` seconds; the best is reported beside them all.

Per system: a sweep over its knob (full runs only, at the figures' N, two rounds) picks the setting for
each of drain, audited and fan-out on its own (every system alike; procrastinate's audited reuses
its drain setting: at ~300 jobs/s a sweep costs minutes); then drain (whose bulk enqueue is the
enqueue figure), audited and fan-out, their repetitions in turns; pgjobs also with 1, 2 and 4 worker processes; pgbench runs the
SQL ceilings.

Wake-up runs come last, all systems in turns (round 1: each system once, round 2: again, ...):
a millisecond figure on a shared VM drifts by up to 2x over minutes, and taking turns gives every
system the same quiet and busy spells. Beside the queues, two context rows: `pg-floor` (INSERT +
NOTIFY with a durable commit, no queue: what any durable PostgreSQL queue's wake-up must pay) and
`bullmq-aof` (BullMQ on a Redis of our own with appendfsync always: the same durability).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Callable

from benchkit import envs, pgbench, verify
from benchkit.schema import dbname_of, fresh_database, prepare, with_dbname

RESULT_MARK = "BENCH-RESULT "
# The knob each system's drain is tuned by and the values the sweep tries. The first is what
# --quick uses: the best a full run found on this machine (2 cores). procrastinate gets two values
# only: at ~300 jobs/s each sweep run costs ~15 s, and its sweeps run at SWEEP_CAP jobs.
KNOBS = {
    "pgjobs": ("concurrency", [2000, 1000, 4000, 8000]),
    "pgqueuer": ("batch", [100, 50, 500]),
    "procrastinate": ("concurrency", [50, 10]),
    "bullmq": ("concurrency", [200, 50, 500]),
    "bullmq-aof": ("concurrency", [200]),
    "pg-floor": ("", []),
}
SWEEP_CAP = {"procrastinate": 5000}
SYSTEMS = ("pgjobs", "pgqueuer", "procrastinate", "bullmq", "bullmq-aof", "pg-floor", "pgbench")
WAKE_ONLY = ("bullmq-aof", "pg-floor")  # context rows for the wake-up figure, nothing else
WORKLOADS = ("enqueue", "drain", "audited", "fanout", "wake", "procs", "ceilings", "horizon", "history", "soak",
             "dashboard")
BIG_KEYS = ("executed", "completed", "latencies_ms")
WAKE_LABELS = {"pg-floor": "wake-up floor: INSERT+NOTIFY", "bullmq-aof": "wake-up p50, AOF fsync always"}


@dataclass
class Config:
    dsn: str
    n: int = 20_000
    quick: bool = False
    systems: tuple[str, ...] = SYSTEMS
    workloads: tuple[str, ...] = WORKLOADS
    reuse_db: bool = False  # run in the DSN's own database (the test suite's fresh one), no CREATE DATABASE
    reps: int = 3  # repetitions per figure, where time allows (see Bench.in_turns)
    rep_budget: float = 30.0
    warmup: int = 200
    wake_samples: int = 200
    wake_warmup: int = 20
    wake_rounds: int = 3  # wake-up runs per system, taken in turns with the other systems
    sweep_n: int | None = None  # jobs per sweep run; None: the figures' N (capped by SWEEP_CAP)
    sweep_rounds: int = 2  # runs per knob value in a sweep, taken in turns
    procs: tuple[int, ...] = (1, 2, 4)
    db_prefix: str = "bench_"
    horizon_n: int | None = None  # jobs per horizon drain; None: 100,000, 20,000 with --quick (benchkit.horizon)
    horizon_m: int = 1_000_000  # jobs drained behind the snapshot before the idle poll is timed
    horizon_poll_runs: int = 200
    dashboard_roots: int | None = None  # benchkit.dashboard's data set; None: 1,000,000, 100,000 with --quick
    history_jobs: int = 10_000_000  # finished jobs in the history workload's (cached) database
    soak_n: int | None = None  # jobs through the soak; None: 1,000,000, 100,000 with --quick (benchkit.soak)
    soak_keep: float = 5.0  # seconds of finished jobs the soak's retention keeps
    soak_interval: float = 1.0  # seconds between its retention passes (tests: shorter, the run is tiny)
    say: Callable[[str], None] = print


@dataclass
class Run:
    system: str
    workload: str
    setting: dict
    result: dict = field(default_factory=dict)  # the driver's JSON, big lists removed
    checks: list[verify.Check] = field(default_factory=list)
    error: str | None = None
    load: float = 0.0  # 1-minute load average when the run started: the cores are shared
    records: dict = field(default_factory=dict)  # the big lists, kept in memory (tests re-verify them)
    started: float = field(default_factory=time.monotonic)  # the order runs were taken in

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.checks) and all(c.ok for c in self.checks)

    def value(self, key: str) -> float | None:
        return self.result.get(key)

    def as_dict(self) -> dict:
        return {"setting": self.setting, "result": self.result, "error": self.error, "load": self.load,
                "verified": self.ok, "checks": [c.as_dict() for c in self.checks]}


@dataclass
class Figure:
    system: str
    workload: str  # key used by the targets: enqueue, drain, audited, fanout, wake, procs-K, ceiling-…
    label: str
    runs: list[Run]
    metric: str = "rate"  # the result key shown; wake figures show p50 (and p95/p99 beside it)
    lower_is_better: bool = False

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(r.ok for r in self.runs)

    def values(self, metric: str | None = None) -> list[float]:
        return [r.value(metric or self.metric) for r in self.runs if r.value(metric or self.metric) is not None]

    def best(self, metric: str | None = None) -> float | None:
        values = self.values(metric)
        if not values:
            return None
        return min(values) if self.lower_is_better else max(values)

    @property
    def best_run(self) -> Run | None:
        best = self.best()
        return next((r for r in self.runs if r.value(self.metric) == best), None)


def wake_stats(latencies: list[float]) -> dict:
    if len(latencies) < 2:
        return {}
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98], "max": max(latencies),
            "mean": statistics.fmean(latencies), "samples": len(latencies)}


class Bench:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.figures: list[Figure] = []
        self.sweeps: list[Run] = []
        self.skipped: dict[str, str] = {}
        self.versions: dict[str, dict] = {}
        self.redis: dict = {}

    # --- driver runs --------------------------------------------------------------------------

    def run(self, system: str, runtime: envs.Runtime, db: str, workload: str, n: int, setting: dict,
            expected_n: int, extra: list[str] = ()) -> Run:
        run = Run(system, workload, dict(setting), load=os.getloadavg()[0])
        cmd = runtime.command + [workload, "--dsn", db, "--n", str(n), "--warmup", str(self.config.warmup),
                                 *extra, *(arg for k, v in setting.items() for arg in ("--set", f"{k}={v}"))]
        try:
            # Generous for ~300 jobs/s (procrastinate), short enough that a stuck driver fails the run.
            timeout = 120 + max(n, expected_n) / 50
            proc = subprocess.run(cmd, env=runtime.env, capture_output=True, text=True, timeout=timeout)
            lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARK)]
            if proc.returncode != 0 or not lines:
                tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-6:]
                raise RuntimeError(f"driver exited {proc.returncode}: " + " | ".join(tail))
            result = json.loads(lines[-1][len(RESULT_MARK):])
        except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
            run.error = str(exc)
            self.config.say(f"  {system} {workload} {_fmt_setting(setting)}: ERROR {run.error}")
            return run
        run.records = {k: result.pop(k) for k in BIG_KEYS if k in result}
        if "latencies_ms" in run.records:
            result.update(wake_stats(run.records["latencies_ms"]))
        run.result = result
        self.verify(run, db, expected_n)
        return run

    def verify(self, run: Run, db: str, expected_n: int) -> None:
        try:
            run.checks = verify.checks_for(run.system, run.workload, db, run.result | run.records, expected_n)
        except Exception as exc:  # a verifier that cannot read its records fails the run, loudly
            run.checks = [verify.Check("verification", False, expected_n, 0, 0, 0, 0, f"{type(exc).__name__}: {exc}")]
        shown = (f"p50 {run.result['p50']:.2f} ms" if "p50" in run.result else f"{run.result.get('rate', 0):,.0f} jobs/s")
        failed = [f"{c.name}: {c.detail}" for c in run.checks if not c.ok]
        self.config.say(f"  {run.system} {run.workload} {_fmt_setting(run.setting)}: {shown}  "
                        f"{'verified' if not failed else 'VERIFY FAILED ' + '; '.join(failed)}")

    def repeat(self, once: Callable[[], Run]) -> list[Run]:
        """Repetitions where time allows: more only when the first was quick enough."""
        return self.in_turns({"": once})[""]

    def in_turns(self, onces: dict[str, Callable[[], Run]]) -> dict[str, list[Run]]:
        """Repetitions of several workloads taken in turns (a, b, c, a, b, c): figures that a target
        compares (audited vs drain) then share the VM's quiet and busy spells, as wake-ups do. A
        workload repeats only while its first run was quick enough and nothing errored."""
        runs: dict[str, list[Run]] = {name: [] for name in onces}
        for _ in range(self.config.reps):
            for name, once in onces.items():
                done = runs[name]
                if done and (done[0].error is not None or done[0].result.get("seconds", 0) > self.config.rep_budget):
                    continue
                done.append(once())
        return runs

    # --- systems ------------------------------------------------------------------------------

    def bench_system(self, system: str, runtime: envs.Runtime, db: str) -> dict:
        """Every workload but wake-up; returns the setting wake-up runs with (the drain's)."""
        c, want = self.config, set(self.config.workloads)
        knob, values = KNOBS[system]
        if system in WAKE_ONLY:
            return {knob: values[0]} if knob else {}
        values = values[:1] if c.quick else values

        def tuned(workload: str) -> dict:
            """The knob value with the best rate on runs of `workload` (see below)."""
            if len(values) == 1:
                return {knob: values[0]}
            # At the figures' own N: a setting's rank changes with it (pgjobs fan-out, measured: at
            # 5,000 jobs concurrency 1,000 beat 8,000, 24.6 vs 22.8 k/s; at 20,000 8,000 was 20-37 %
            # faster, and a 5,000-job sweep had picked 1,000 for the figures).
            n = min(c.n, c.sweep_n or c.n, SWEEP_CAP.get(system, c.n))
            expected = max(1, n // 6) * 6 if workload == "fanout" else n
            # Rounds in turns, each value judged by its best run: one short run per value let a
            # noisy spell pick a setting 20 % slower (pgjobs audited at 1000 vs 4000, seen).
            sweep = [self.run(system, runtime, db, workload, n, {knob: v}, expected)
                     for _ in range(c.sweep_rounds) for v in values]
            self.sweeps += sweep
            rated = [r for r in sweep if r.ok]
            return {knob: max(rated, key=lambda r: r.result["rate"]).setting[knob] if rated else values[0]}

        setting = tuned("drain") if want & {"drain", "enqueue", "audited", "fanout", "procs"} else {knob: values[0]}
        onces: dict[str, Callable[[], Run]] = {}
        if want & {"drain", "enqueue"}:
            onces["drain"] = lambda: self.run(system, runtime, db, "drain", c.n, setting, c.n)
        if "audited" in want:
            audited = setting if system == "procrastinate" else tuned("audited")
            onces["audited"] = lambda: self.run(system, runtime, db, "audited", c.n, audited, c.n)
        if "fanout" in want and system != "procrastinate":  # ~300 jobs/s: minutes for a figure no target needs
            total = max(1, c.n // 6) * 6
            fanout = tuned("fanout")
            onces["fanout"] = lambda: self.run(system, runtime, db, "fanout", c.n, fanout, total)
        runs = self.in_turns(onces)
        if "drain" in runs and "enqueue" in want:
            self.figures.append(Figure(system, "enqueue", "bulk enqueue", runs["drain"], metric="enqueue_rate"))
        if "drain" in runs and "drain" in want:
            self.figures.append(Figure(system, "drain", "drain (1 process)", runs["drain"]))
        if "audited" in runs:
            self.figures.append(Figure(system, "audited", "audited drain", runs["audited"]))
        if "fanout" in runs:
            self.figures.append(Figure(system, "fanout", "fan-out 1+5, logged", runs["fanout"]))
        if "procs" in want and system == "pgjobs":
            for k in c.procs:
                runs = self.repeat(lambda: self.run(system, runtime, db, "procs", c.n, setting | {"procs": k}, c.n))
                self.figures.append(Figure(system, f"procs-{k}", f"drain, {k} worker process{'es' * (k > 1)}", runs))
        if "horizon" in want:
            from benchkit import horizon  # it builds on this module

            if system in horizon.SYSTEMS:
                horizon.bench_system(self, system, runtime, db, setting)
        if "history" in want and system == "pgjobs":
            from benchkit import history

            history.bench_system(self, setting)
        if "soak" in want and system == "pgjobs":
            from benchkit import soak

            soak.bench_system(self, setting)
        return setting

    def bench_wakes(self, ready: dict[str, tuple[envs.Runtime, str, dict]]) -> None:
        """Wake-up runs of every system in turns, `wake_rounds` rounds (see the module doc)."""
        c = self.config
        extra = ["--samples", str(c.wake_samples), "--warmup", str(c.wake_warmup)]
        total = c.wake_samples + c.wake_warmup
        runs: dict[str, list[Run]] = {system: [] for system in ready}
        c.say(f"wake-up: {c.wake_rounds} round(s), systems in turns")
        for _ in range(c.wake_rounds):
            for system, (runtime, db, setting) in ready.items():
                runs[system].append(self.run(system, runtime, db, "wake", 0, setting, total, extra))
        for system, system_runs in runs.items():
            self.figures.append(Figure(system, "wake", WAKE_LABELS.get(system, "wake-up p50"), system_runs,
                                       metric="p50", lower_is_better=True))

    def bench_pgbench(self, db: str) -> None:
        exe = envs.pgbench_path()
        for batch in (1, 10):
            for clients in (1, 2):
                def once() -> Run:
                    run = Run("pgbench", "claim", {"batch": batch, "clients": clients}, load=os.getloadavg()[0])
                    try:
                        run.result = pgbench.run(exe, db, self.config.n, batch, clients, self.config.warmup)
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        run.error = str(exc)
                        self.config.say(f"  pgbench batch={batch} clients={clients}: ERROR {exc}")
                        return run
                    self.verify(run, db, run.result["n"])
                    return run

                self.figures.append(Figure("pgbench", f"ceiling-{batch}x{clients}",
                                           f"claim+complete {batch}/txn, {clients} client{'s' * (clients > 1)}",
                                           self.repeat(once)))

    def runtime(self, system: str) -> envs.Runtime:
        if system == "pgjobs":
            return envs.pgjobs_runtime()
        if system == "pg-floor":
            return envs.floor_runtime()
        if system in ("bullmq", "bullmq-aof"):
            return envs.node_runtime(self.config.say)
        return envs.python_peer_runtime(system, self.config.say)

    def database(self, system: str):
        if self.config.reuse_db:
            url = with_dbname(self.config.dsn, dbname_of(self.config.dsn))
            prepare(url)
            return _Given(url)
        return fresh_database(self.config.dsn, f"{self.config.db_prefix}{system}")

    def run_all(self) -> None:
        """Systems strictly one after another, then their wake-up runs in turns; a missing runtime
        skips that system with one line. Databases (and Redis) stay up until the wake-ups are done."""
        c = self.config
        ready: dict[str, tuple[envs.Runtime, str, dict]] = {}
        with ExitStack() as stack:
            for system in c.systems:
                if system == "pgjobs" and "dashboard" in c.workloads:  # its own cached database (benchkit.dashboard)
                    from benchkit import dashboard
                    dashboard.bench(self)
                if not set(c.workloads) - {"dashboard"}:
                    continue
                if (system == "pgbench" and "ceilings" not in c.workloads) or (
                        system in WAKE_ONLY and "wake" not in c.workloads):
                    continue
                started = time.monotonic()
                try:
                    if system == "pgbench":
                        envs.pgbench_path()
                        c.say("pgbench: ceilings")
                        with self.database(system) as db:
                            self.bench_pgbench(db)
                        continue
                    runtime = self.runtime(system)
                    self.versions[system] = runtime.versions
                    if system in ("bullmq", "bullmq-aof"):
                        redis = stack.enter_context(envs.Redis(c.say, durable=system == "bullmq-aof"))
                        self.redis[system] = redis.describe()
                        runtime.env["BENCH_REDIS_URL"] = redis.url
                    c.say(f"{system} ({', '.join(f'{k} {v}' for k, v in runtime.versions.items())})")
                    db = stack.enter_context(self.database(system))
                    ready[system] = (runtime, db, self.bench_system(system, runtime, db))
                except envs.Unavailable as exc:
                    self.skipped[system] = str(exc)
                    c.say(f"{system}: skipped: {exc}")
                finally:
                    c.say(f"  ({time.monotonic() - started:.0f} s)")
            if "wake" in c.workloads and ready:
                self.bench_wakes(ready)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.figures) and all(r.ok for r in self.sweeps)


class _Given:
    """The test suite's database: used as is, never created or dropped here."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def __enter__(self) -> str:
        return self.dsn

    def __exit__(self, *exc: object) -> None:
        return None


def _fmt_setting(setting: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in setting.items())
