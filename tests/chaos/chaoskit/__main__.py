"""bin/chaos: run the fault scenarios against the pgjobs checked out here, print one line each.

    bin/chaos [--scenarios a,b] [--n N] [--json PATH] [--write-docs]

Exit 0 when every scenario held, 1 when one failed, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from chaoskit import report
from chaoskit.cluster import Cluster
from chaoskit.runner import Lab
from chaoskit.scenarios import SCENARIOS, run_scenario
from chaoskit.workload import query


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).parent)
    dirty = subprocess.run(["git", "status", "--porcelain", "pgjobs"], capture_output=True, text=True,
                           cwd=Path(__file__).parents[3]).stdout.strip()
    return (done.stdout.strip() or "unknown") + ("+dirty" if dirty else "")


class Interrupted(BaseException):
    """SIGINT/SIGTERM: raised instead of KeyboardInterrupt, which psycopg turns into a cancelled
    query that the observer's retry loops would take for a restarting server."""


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bin/chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated, in order")
    parser.add_argument("--n", type=int, default=2000, help="jobs per scenario (default 2000)")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--write-docs", action="store_true", help="regenerate docs/reliability.md")
    args = parser.parse_args(argv)
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in names if s not in SCENARIOS]
    if unknown or not names or args.n < 50:
        problem = f"unknown scenario(s) {', '.join(unknown)} (known: {', '.join(SCENARIOS)})" if unknown \
            else "--n must be at least 50" if args.n < 50 else "no scenario given"
        print(f"bin/chaos: {problem}", file=sys.stderr)
        return 2
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)  # unwind: stop the workers, the proxy and the cluster
    results = []
    with Cluster() as cluster, tempfile.TemporaryDirectory(prefix="pgjobs-chaos-logs-") as logdir:
        version = query(cluster.dsn(), "SHOW server_version")[0][0]
        print(f"chaos: PostgreSQL {version} on 127.0.0.1:{cluster.port}, {len(names)} scenarios, n={args.n}",
              flush=True)
        lab = Lab(cluster, Path(logdir))
        try:
            for name in names:
                result = run_scenario(lab, name, args.n)
                results.append(result)
                print(report.line(result), flush=True)
        finally:
            lab.close()
    meta = report.meta(version, _commit())
    if args.json:
        report.write_json(results, args.json, meta)
    if args.write_docs:
        report.write_docs(results, meta)
        print(f"wrote {report.DOCS}")
    return 0 if all(r.held for r in results) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Interrupted as stopped:
        print(f"bin/chaos: interrupted ({stopped}); cleaned up", file=sys.stderr)
        sys.exit(130)
