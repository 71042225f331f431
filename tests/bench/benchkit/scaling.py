"""The written ceiling's measurements (docs/scaling.md): K real `pgjobs worker --burst` processes
drain N no-op jobs from one PostgreSQL, and the server's own CPU is read from /proc.

    python -m benchkit.scaling --dsn postgresql://postgres@127.0.0.1:55433/postgres --procs 1,2,4

The server must run on this machine (its postmaster's children are read from /proc: live backends'
utime+stime plus the postmaster's cutime+cstime for the ones that exited) and the role must be a
superuser (data_directory). Each K gets a fresh database cloned from a migrated template. Throughput
is the database's own span: first claim to last completion (no process start-up in it). Worker
CPU is the workers' whole lives (start-up ~0.5 s each included). Not a bin/bench workload: it
compares pgjobs with itself, against a server of your own.

    python -m benchkit.scaling --dsn … --connections    # a running worker's connections, counted
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgjobs.queue import JobSpec, enqueue_many

TICK = os.sysconf("SC_CLK_TCK")
PGJOBS = [sys.executable, "-m", "pgjobs"]


def _dsn(base: str, dbname: str) -> str:
    return make_conninfo(base, dbname=dbname)


def server_cpu(admin: str) -> float:
    """Seconds of CPU the server's processes have used so far (exited backends included)."""
    with psycopg.connect(admin) as conn:
        data = conn.execute("SHOW data_directory").fetchone()[0]
    postmaster = int(Path(data, "postmaster.pid").read_text().split()[0])
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        pid, ppid = int(entry.name), int(fields[1])
        if pid == postmaster:
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        elif ppid == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def _env(dsn: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGJOBS_")}
    return env | {"PGJOBS_DSN": dsn, "PGJOBS_LOG_LEVEL": "WARNING"} | extra


def template(admin: str) -> str:
    name = f"scaling_tpl_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run([*PGJOBS, "migrate"], env=_env(_dsn(admin, name)), check=True, capture_output=True)
    return name


def drain(admin: str, tpl: str, procs: int, jobs: int, concurrency: int) -> dict:
    name = f"scaling_{procs}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{tpl}"')
    dsn = _dsn(admin, name)
    try:
        with psycopg.connect(dsn) as conn:
            enqueue_many(conn, [JobSpec(kind="noop") for _ in range(jobs)])
        cpu_before, children_before = server_cpu(admin), resource.getrusage(resource.RUSAGE_CHILDREN)
        workers = [subprocess.Popen([*PGJOBS, "worker", "--burst", "--concurrency", str(concurrency)],
                                    env=_env(dsn), stdout=subprocess.DEVNULL) for _ in range(procs)]
        codes = [w.wait(timeout=600) for w in workers]
        cpu = server_cpu(admin) - cpu_before
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        worker_cpu = (after.ru_utime + after.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
        with psycopg.connect(dsn) as conn:
            done, span = conn.execute(
                "SELECT count(*) FILTER (WHERE state = 'succeeded' AND attempt = 1),"
                " extract(epoch FROM max(finished_at) - min(attempted_at)) FROM pgjobs.jobs").fetchone()
        assert codes == [0] * procs and done == jobs, (codes, done)
        return {"procs": procs, "jobs_per_s": round(jobs / float(span)), "server_cpu_s": round(cpu, 2),
                "server_us_per_job": round(cpu / jobs * 1e6, 1), "worker_cpu_s": round(worker_cpu, 2),
                "worker_us_per_job": round(worker_cpu / jobs * 1e6, 1), "load": os.getloadavg()[0]}
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def connections(admin: str, tpl: str) -> dict:
    """A worker's sessions, counted in pg_stat_activity by its application_name: idle, then busy."""
    name = f"scaling_conn_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{tpl}"')
    dsn = _dsn(admin, name)
    out: dict = {}
    try:
        for label, flags in (("plain", []), ("metrics", ["--metrics-port", "0"])):
            worker = subprocess.Popen([*PGJOBS, "worker", "--concurrency", "50", *flags], env=_env(dsn),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    count = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                             " AND split_part(application_name, ':', 2) = %s")
                    pid = str(worker.pid)
                    deadline = time.monotonic() + 30
                    idle = 0
                    while time.monotonic() < deadline and not conn.execute(
                            "SELECT 1 FROM pgjobs.workers WHERE pid = %s", (worker.pid,)).fetchone():
                        time.sleep(0.05)
                    idle = conn.execute(count, (pid,)).fetchone()[0]
                    enqueue_many(conn, [JobSpec(kind="noop", payload={"sleep_ms": 20}) for _ in range(3000)])
                    busy = 0
                    while conn.execute("SELECT count(*) FROM pgjobs.jobs WHERE state <> 'succeeded'").fetchone()[0]:
                        busy = max(busy, conn.execute(count, (pid,)).fetchone()[0])
                        time.sleep(0.02)
                    after = conn.execute(count, (pid,)).fetchone()[0]  # settled: every session open
                out[label] = {"at_start": idle, "busy_max": busy, "idle_after": after}
            finally:
                worker.terminate()
                worker.wait(timeout=60)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True, help="a maintenance database of a local server (superuser)")
    parser.add_argument("--procs", default="1,2,4")
    parser.add_argument("--jobs", type=int, default=60_000)
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--connections", action="store_true")
    args = parser.parse_args()
    tpl = template(args.dsn)
    try:
        if args.connections:
            print(connections(args.dsn, tpl), flush=True)
            return
        for _ in range(args.rounds):
            for k in (int(p) for p in args.procs.split(",")):
                print(drain(args.dsn, tpl, k, args.jobs, args.concurrency), flush=True)
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{tpl}" WITH (FORCE)')


if __name__ == "__main__":
    main()
