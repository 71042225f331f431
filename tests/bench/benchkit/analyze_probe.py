"""Probe: does a table with planner statistics (ANALYZE, as autovacuum runs it) drain slower?

    python -m benchkit.analyze_probe --dsn postgresql://postgres@127.0.0.1:5432/analyze_probe \
        --n 60000 --concurrency 10,2000 --turns 2 [--explain]

Per turn and concurrency, in turns: N queued no-op jobs drained by an in-process burst Worker (as
drivers/pgjobs_driver.py builds it) on a table (a) without statistics (TRUNCATE, pg_statistic rows
dropped: what a fresh benchmark table is) and (b) after VACUUM ANALYZE. Prints wall time and the
server CPU of the database's backends (/proc utime+stime, sampled while they live) per job.
Autovacuum is off on the probe database's jobs table so that (a) stays unanalyzed.

--explain: every statement the worker runs is EXPLAINed (ANALYZE, BUFFERS) by auto_explain inside
the worker's own sessions (their prepared statements, their plan cache), and the plans of
claim_jobs and complete_jobs are summarised per case: node shapes and their share of the time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT)]

from pgjobs import migrations  # noqa: E402
from pgjobs.queue import JobSpec, RateLimits, Registry, Worker, enqueue_many  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
AUTO_EXPLAIN = ("LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; SET auto_explain.log_analyze = on; "
                "SET auto_explain.log_buffers = on; SET auto_explain.log_level = notice")


def setup(dsn: str) -> None:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    name = info["dbname"]
    if not name.startswith("analyze_"):
        raise SystemExit("analyze_probe: use a database named analyze_* (it truncates pgjobs.jobs)")
    with psycopg.connect(psycopg.conninfo.make_conninfo(dsn, dbname="postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    migrations.migrate(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE pgjobs.jobs_live SET (autovacuum_enabled = false)")


def fill(dsn: str, n: int, analyzed: bool) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE pgjobs.jobs")
        conn.execute("DELETE FROM pg_statistic WHERE starelid = 'pgjobs.jobs_live'::regclass")
        conn.execute("VACUUM pgjobs.jobs")  # same for both: only the statistics differ
        conn.autocommit = False
        enqueue_many(conn, (JobSpec(kind="noop", payload={"seq": i}) for i in range(n)))
        conn.commit()
        conn.autocommit = True
        if analyzed:
            conn.execute("VACUUM ANALYZE pgjobs.jobs")
        else:
            conn.execute("VACUUM pgjobs.jobs")
            conn.execute("DELETE FROM pg_statistic WHERE starelid = 'pgjobs.jobs_live'::regclass")


class ServerCpu:
    """Sums utime+stime of the database's backends, sampled every 50 ms while they live."""

    def __init__(self, dsn: str) -> None:
        self.dsn, self.last, self.stop = dsn, {}, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            db = conn.info.dbname
            me = conn.info.backend_pid
            while not self.stop.is_set():
                pids = [r[0] for r in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> %s", (db, me))]
                for pid in pids:
                    try:
                        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    except OSError:
                        continue
                    self.last[pid] = (int(fields[11]) + int(fields[12])) / TICKS
                self.stop.wait(0.05)

    def __enter__(self) -> "ServerCpu":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def seconds(self) -> float:
        return sum(self.last.values())  # the backends are the worker's own: all start during the run


async def drain(dsn: str, n: int, concurrency: int, notices: list | None) -> tuple[float, float]:
    from pgjobs.database import open_pool

    done: list[int] = []
    registry = Registry()

    async def noop(ctx) -> None:
        done.append(ctx.job.id)

    registry.register("noop", noop)
    restore = None
    if notices is not None:
        original = psycopg.AsyncConnection.connect.__func__

        async def connect(cls, *a, **kw):  # every session the worker opens reports its plans here
            conn = await original(cls, *a, **kw)
            for statement in AUTO_EXPLAIN.split("; "):  # the worker's connect options replace any of ours
                await conn.execute(statement, prepare=False)
            conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
            return conn

        psycopg.AsyncConnection.connect, restore = classmethod(connect), psycopg.AsyncConnection.connect
    try:
        pool = await open_pool(dsn, max_size=4)
        try:
            worker = Worker(pool, registry, conninfo=dsn, limits=RateLimits(pool, {}), queues=["default"],
                            concurrency=concurrency, burst=True)
            with ServerCpu(dsn) as cpu:
                started = time.perf_counter()
                await worker.run()
                wall = time.perf_counter() - started
                time.sleep(0.1)  # two more samples of the sessions' CPU before they close
        finally:
            await pool.close()
    finally:
        if restore is not None:
            psycopg.AsyncConnection.connect = restore
    if len(done) != n or len(set(done)) != n:
        raise SystemExit(f"analyze_probe: drained {len(done)} ({len(set(done))} distinct) of {n}")
    return wall, cpu.seconds()


def summarise(notices: list[str]) -> dict[str, Counter]:
    """Per statement (claim / complete / other): plan shape -> count, and the UPDATE nodes' time."""
    shapes: dict[str, Counter] = defaultdict(Counter)
    for text in notices:
        kind = ("claim" if "lease_token = $" in text and "waiters" in text else
                "complete" if "string_to_array" in text else
                "apply" if "o.outcome" in text else "other")
        if kind == "other":
            m = re.search(r"duration: ([\d.]+) ms", text)
            query = text.split("Query Text:", 1)[-1].strip().splitlines()[0][:60] if "Query Text:" in text else "?"
            shapes["other statement ms"][query] += float(m.group(1)) if m else 0.0
            continue
        plan = text.split("\n", 2)[-1] if "Query Text" in text else text
        nodes = [re.sub(r"\s+\(.*", "", line.strip().lstrip("-> ").strip())
                 for line in plan.splitlines() if "(cost=" in line or "(actual" in line]
        shapes[kind][" / ".join(nodes[:14])] += 1
        m = re.search(r"duration: ([\d.]+) ms", text)
        if m:
            shapes[kind + " statement ms"]["total"] += float(m.group(1))
        for line in plan.splitlines():
            m = re.search(r"^\s*(?:->\s*)?Update on .*actual time=[\d.]+\.\.([\d.]+) rows=(\d+)", line)
            if m:
                shapes[kind + " update ms"]["total"] += float(m.group(1))
                shapes[kind + " update ms"]["rows"] += int(m.group(2))
    return shapes


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="analyze_probe", description=__doc__.splitlines()[0])
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/analyze_probe")
    p.add_argument("--n", type=int, default=60_000)
    p.add_argument("--concurrency", default="10,2000")
    p.add_argument("--turns", type=int, default=2)
    p.add_argument("--explain", action="store_true", help="auto_explain every statement; print plan shapes")
    args = p.parse_args(argv)
    setup(args.dsn)
    for turn in range(args.turns):
        for conc in [int(c) for c in args.concurrency.split(",")]:
            for analyzed in ((False, True) if turn % 2 == 0 else (True, False)):
                fill(args.dsn, args.n, analyzed)
                notices: list | None = [] if args.explain else None
                wall, cpu = asyncio.run(drain(args.dsn, args.n, conc, notices))
                label = "analyzed  " if analyzed else "unanalyzed"
                print(f"turn {turn} c={conc:<5} {label} wall {wall:6.2f} s  {args.n / wall:7.0f} jobs/s  "
                      f"server cpu {cpu * 1e6 / args.n:6.1f} us/job", flush=True)
                if notices is not None:
                    for kind, counter in sorted(summarise(notices).items()):
                        for shape, count in counter.most_common(4):
                            print(f"    {kind:18} {count:>9.1f}  {shape}")


if __name__ == "__main__":
    main()
