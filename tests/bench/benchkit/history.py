"""History probe (issue 16): pgjobs' drain in a database holding finished history vs an empty one.

    PYTHONPATH=tests/bench .venv/bin/python -m benchkit.dataset --roots 300000 --fresh-db bench_history
    PYTHONPATH=tests/bench:tests/bench/drivers .venv/bin/python -m benchkit.history --db bench_history \\
        --concurrency 2000,10 --turns 3

Each turn enqueues N no-op jobs (`enqueue_many`) into each database and drains them with a burst
Worker (pgjobs_driver's set-up), empty first, then history; it prints both rates and their ratio.
Not yet a `bin/bench` workload: no exactly-once check, and the drained jobs stay in both databases.
"""

from __future__ import annotations

import argparse
import asyncio

import psycopg

from pgjobs import migrations
from pgjobs_driver import Bench, enqueue_bulk, open_pool, run_burst


async def drain(dsn: str, n: int, concurrency: int) -> float:
    enqueue_bulk(dsn, "noop", n)
    pool = await open_pool(dsn, max_size=4)
    try:
        watch = await run_burst(Bench(), pool, dsn, concurrency)
    finally:
        await pool.close()
    return n / watch.seconds


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchkit.history", description=__doc__.splitlines()[0])
    p.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/", help="DSN without a database")
    p.add_argument("--db", required=True, help="the database benchkit.dataset loaded")
    p.add_argument("--empty-db", default="bench_history_empty", help="created (replaced) for the comparison")
    p.add_argument("--concurrency", default="2000,10")
    p.add_argument("--turns", type=int, default=3)
    p.add_argument("--n", type=int, default=20_000)
    args = p.parse_args()
    with psycopg.connect(args.server + "postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.empty_db}"')
        conn.execute(f'CREATE DATABASE "{args.empty_db}"')
    history, empty = args.server + args.db, args.server + args.empty_db
    for dsn in (empty, history):
        migrations.migrate(dsn)
        with psycopg.connect(dsn) as conn:
            jobs, size = conn.execute("SELECT count(*), pg_size_pretty(pg_total_relation_size('pgjobs.jobs'))"
                                      " FROM pgjobs.jobs").fetchone()
        print(f"{dsn.rsplit('/', 1)[1]}: {jobs:,} jobs, {size}")
    for concurrency in (int(c) for c in args.concurrency.split(",")):
        for turn in range(args.turns):
            e = asyncio.run(drain(empty, args.n, concurrency))
            h = asyncio.run(drain(history, args.n, concurrency))
            print(f"concurrency {concurrency} turn {turn}: empty {e:,.0f}/s, history {h:,.0f}/s, ratio {h / e:.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
