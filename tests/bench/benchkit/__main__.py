"""`bin/bench`: measure pgjobs and its peers in one run, print the table, write the JSON.

Exit status: 0 when every run completed and passed its exactly-once check; 1 when any run failed
or its check did (a skipped peer is not a failure); 2 with --require-targets and a target FAIL.
"""

from __future__ import annotations

import argparse
import os
import sys

from benchkit import dashboard, history, horizon, report, soak
from benchkit.envs import ROOT
from benchkit.harness import SYSTEMS, WORKLOADS, Bench, Config

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def parse(argv: list[str] | None = None) -> tuple[Config, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="bin/bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="N=2,000, one setting and one repetition per figure, 100 wake-ups (about three minutes)")
    p.add_argument("--n", type=int, help="jobs per run (default 20,000; 2,000 with --quick)")
    p.add_argument("--dsn", default=os.environ.get("PGJOBS_BENCH_DSN", DEFAULT_DSN),
                   help="PostgreSQL server to use (env PGJOBS_BENCH_DSN); each system gets bench_<system> on it")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma list of {', '.join(SYSTEMS)}")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma list of {', '.join(WORKLOADS)}")
    p.add_argument("--json", default=str(ROOT / "bench-results.json"), metavar="PATH",
                   help="where to write the results (default: bench-results.json at the repo root)")
    p.add_argument("--reuse-db", action="store_true",
                   help="run in the DSN's own database (already migrated, say by a test) instead of fresh ones")
    p.add_argument("--rep-budget", type=float, default=30.0,
                   help="repeat a figure only when its first run took at most this many seconds")
    p.add_argument("--reps", type=int, help="repetitions per figure where time allows (default 3; 1 with --quick)")
    p.add_argument("--wake-samples", type=int, help="measured wake-ups per run (default 200; 100 with --quick)")
    p.add_argument("--wake-rounds", type=int,
                   help="wake-up runs per system, systems taking turns (default 3; 1 with --quick)")
    p.add_argument("--horizon-n", type=int,
                   help="jobs per horizon drain (default 100,000; 20,000 with --quick; procrastinate at most 2,000)")
    p.add_argument("--horizon-m", type=int,
                   help="jobs drained behind the snapshot before the idle poll is timed (default 1,000,000, "
                        "issue 16's target; 100,000 with --quick)")
    p.add_argument("--history-jobs", type=int, default=10_000_000,
                   help="finished jobs in the history workload's database (default 10,000,000; cached between runs)")
    p.add_argument("--soak-n", type=int, help="jobs through the soak (default 1,000,000; 100,000 with --quick)")
    p.add_argument("--soak-keep", type=float, default=5.0, help="seconds of finished jobs the soak's retention keeps")
    p.add_argument("--horizon-poll-runs", type=int, default=200, help="timed idle polls (default 200)")
    p.add_argument("--dashboard-roots", type=int,
                   help="root families of the dashboard workload's data set (default 1,000,000; 100,000 with --quick)")
    p.add_argument("--require-targets", action="store_true", help="exit 2 when a target FAILs")
    args = p.parse_args(argv)
    systems = tuple(s for s in args.systems.split(",") if s)
    workloads = tuple(w for w in args.workloads.split(",") if w)
    for name, given, known in (("system", systems, SYSTEMS), ("workload", workloads, WORKLOADS)):
        unknown = set(given) - set(known)
        if unknown:
            p.error(f"unknown {name}(s): {', '.join(sorted(unknown))}")
    config = Config(dsn=args.dsn, n=args.n or (2000 if args.quick else 20_000), quick=args.quick,
                    systems=systems, workloads=workloads, reuse_db=args.reuse_db, rep_budget=args.rep_budget,
                    reps=args.reps or (1 if args.quick else 3),
                    wake_samples=args.wake_samples or (100 if args.quick else 200),
                    wake_rounds=args.wake_rounds or (1 if args.quick else 3),
                    horizon_n=args.horizon_n, horizon_m=args.horizon_m or (100_000 if args.quick else 1_000_000), horizon_poll_runs=args.horizon_poll_runs,
                    dashboard_roots=args.dashboard_roots,
                    history_jobs=args.history_jobs, soak_n=args.soak_n, soak_keep=args.soak_keep,
                    say=lambda line: print(line, file=sys.stderr, flush=True))
    return config, args


def main(argv: list[str] | None = None) -> int:
    config, args = parse(argv)
    bench = Bench(config)
    bench.run_all()
    env = report.environment(bench)
    extra = (*(horizon.TARGETS if "horizon" in config.workloads else ()),
             *(history.TARGETS if "history" in config.workloads else ()),
             *(soak.TARGETS if "soak" in config.workloads else ()),
             *(dashboard.TARGETS if "dashboard" in config.workloads else ()))
    targets = [t.evaluate(bench) for t in (*report.TARGETS, *extra)]
    print()
    print(report.header(env))
    print()
    print(report.table(bench))
    if bench.sweeps:
        tried = "; ".join(f"{r.system} {r.workload} {' '.join(f'{k}={v}' for k, v in r.setting.items())}: "
                          f"{r.result.get('rate', 0):,.0f}/s" for r in bench.sweeps)
        smaller = {r.system: r.result.get("n") or 0 for r in bench.sweeps
                   if r.workload == "drain" and (r.result.get("n") or 0) < config.n}
        sizes = "".join(f"; {system} {n:,}" for system, n in smaller.items())
        print(f"\nsettings tried (jobs per run: N{sizes}): {tried}")
    busiest = max((r.load for f in bench.figures for r in f.runs), default=0.0)
    if busiest > 1.0:
        print(f"\nnote: the machine was busy (1-min load average up to {busiest:.1f} on {os.cpu_count()} cores "
              "when runs started): other processes compete for the CPU, so treat figures as noisy")
    for workload, module in (("horizon", horizon), ("history", history), ("soak", soak), ("dashboard", dashboard)):
        lines = module.summary(bench) if workload in config.workloads else []
        if lines:
            print("\n" + "\n".join(lines))
    print()
    print(report.targets_table(targets))
    context = report.wake_context(bench)
    if context:
        print("\n" + "\n".join(context))
    report.write_json(args.json, report.to_json(bench, env, targets))
    print(f"\nresults: {args.json}")
    if not bench.ok:
        print("EXACTLY-ONCE VERIFICATION FAILED (or a run errored): see the rows marked FAIL/ERROR", file=sys.stderr)
        return 1
    if args.require_targets and any(t["result"] == "FAIL" for t in targets):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
